package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestParseStatus(t *testing.T) {
	tests := []struct {
		line string
		ok   bool // parsed at all
		want Status
	}{
		{"+OK", true, Status{OK: true}},
		{"+OK ready", true, Status{OK: true, Text: "ready"}},
		{"+ok ready", true, Status{OK: true, Text: "ready"}},
		{"+OK \t two  spaces", true, Status{OK: true, Text: "two  spaces"}},
		{"-ERR", true, Status{}},
		{"-ERR [IN-USE] locked", true, Status{Code: "IN-USE", Text: "locked"}},
		{"-err [sys/temp] later", true, Status{Code: "SYS/TEMP", Text: "later"}},
		{"-ERR [LOGIN-DELAY]", true, Status{Code: "LOGIN-DELAY"}},
		{"-ERR [not a code] x", true, Status{Text: "[not a code] x"}},
		{"-ERR [] x", true, Status{Text: "[] x"}},
		{"-ERR [AUTH", true, Status{Text: "[AUTH"}},
		{"+OKAY", false, Status{}},
		{"-ERROR", false, Status{}},
		{"", false, Status{}},
		{"+", false, Status{}},
		{"* OK", false, Status{}},
		{"OK", false, Status{}},
	}
	for _, tt := range tests {
		got, ok := ParseStatus([]byte(tt.line))
		if ok != tt.ok || got != tt.want {
			t.Errorf("ParseStatus(%q) = %+v, %v; want %+v, %v", tt.line, got, ok, tt.want, tt.ok)
		}
	}
}

func TestParseContinuation(t *testing.T) {
	tests := []struct {
		line string
		want string
		ok   bool
	}{
		{"+ ", "", true},
		{"+", "", true},
		{"+ abc=", "abc=", true},
		{"+OK", "", false},
		{"-ERR", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, ok := ParseContinuation([]byte(tt.line))
		if got != tt.want || ok != tt.ok {
			t.Errorf("ParseContinuation(%q) = %q, %v; want %q, %v", tt.line, got, ok, tt.want, tt.ok)
		}
	}
}

func TestTrimEOL(t *testing.T) {
	for in, want := range map[string]string{
		"a\r\n": "a", "a\n": "a", "a": "a", "a\r": "a\r", "a\r\r\n": "a\r", "\n": "", "": "",
	} {
		if got := string(TrimEOL([]byte(in))); got != want {
			t.Errorf("TrimEOL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseListLine(t *testing.T) {
	tests := []struct {
		line string
		id   int
		size int64
		err  bool
	}{
		{"1 120", 1, 120, false},
		{"2  \t 0 extra words", 2, 0, false},
		{"0 1", 0, 0, true},
		{"-1 1", 0, 0, true},
		{"1 -5", 0, 0, true},
		{"1", 0, 0, true},
		{"a 1", 0, 0, true},
		{"1 1x", 0, 0, true},
		{"99999999999 1", 0, 0, true},
		{"1 99999999999999999999", 0, 0, true},
	}
	for _, tt := range tests {
		id, size, err := ParseListLine([]byte(tt.line))
		if (err != nil) != tt.err || id != tt.id || size != tt.size {
			t.Errorf("ParseListLine(%q) = %d, %d, %v", tt.line, id, size, err)
		}
	}
}

func TestParseStat(t *testing.T) {
	n, size, err := ParseStat([]byte("0 0"))
	if err != nil || n != 0 || size != 0 {
		t.Errorf("ParseStat(0 0) = %d %d %v", n, size, err)
	}
	n, size, err = ParseStat([]byte("12 3456 (whatever)"))
	if err != nil || n != 12 || size != 3456 {
		t.Errorf("ParseStat = %d %d %v", n, size, err)
	}
	if _, _, err := ParseStat([]byte("12")); err == nil {
		t.Error("ParseStat(12): want error")
	}
}

func TestParseUIDLLine(t *testing.T) {
	id, uid, err := ParseUIDLLine([]byte("3 \tabc/../*: extra"))
	if err != nil || id != 3 || uid != "abc/../*:" {
		t.Errorf("ParseUIDLLine = %d %q %v", id, uid, err)
	}
	for _, bad := range []string{"3", "x y", "", " 3", "0 abc"} {
		if _, _, err := ParseUIDLLine([]byte(bad)); err == nil {
			t.Errorf("ParseUIDLLine(%q): want error", bad)
		}
	}
}

// unstuffRef is the reference unstuffing: split into lines after each LF,
// stop at a line "." + CRLF or "." + LF, drop the first dot of any other
// line starting with a dot.
func unstuffRef(in []byte) (out []byte, rest []byte, ok bool) {
	for len(in) > 0 {
		line := in
		if i := bytes.IndexByte(in, '\n'); i >= 0 {
			line = in[:i+1]
		} else {
			// Unterminated tail: unstuff it too, so that whatever a
			// streaming reader delivered before failing is a prefix.
			if line[0] == '.' {
				line = line[1:]
			}
			return append(out, line...), nil, false
		}
		in = in[len(line):]
		if string(line) == ".\r\n" || string(line) == ".\n" {
			return out, in, true
		}
		if line[0] == '.' {
			line = line[1:]
		}
		out = append(out, line...)
	}
	return out, nil, false
}

func readDot(t *testing.T, in []byte, bufSize int, oneByte bool) (out []byte, rest []byte, err error) {
	t.Helper()
	var src io.Reader = bytes.NewReader(in)
	if oneByte {
		src = iotest.OneByteReader(src)
	}
	br := bufio.NewReaderSize(src, bufSize)
	d := NewDotReader(br)
	out, err = io.ReadAll(d)
	rest, _ = io.ReadAll(br)
	return out, rest, err
}

func TestDotReader(t *testing.T) {
	tests := []struct {
		in, want, rest string
	}{
		{".\r\n", "", ""},
		{"a\r\n.\r\nNEXT", "a\r\n", "NEXT"},
		{"..a\r\n.b\r\n...\r\n.\r\n", ".a\r\nb\r\n..\r\n", ""},
		{"bare\nlf\n.\r\n", "bare\nlf\n", ""},
		{"bare\rcr\r\n.\r\n", "bare\rcr\r\n", ""},
		{"x\r\n.\rnot end\r\n.\r\n", "x\r\n\rnot end\r\n", ""},
		{"x\r\n.\r\r\n.\r\n", "x\r\n\r\r\n", ""},
		{"a\r.\r\n.\r\n", "a\r.\r\n", ""},
		{"\r\n\r\n.\r\n", "\r\n\r\n", ""},
		{"nul\x00\xff\r\n.\r\n", "nul\x00\xff\r\n", ""},
		{"lf only\n.\nrest", "lf only\n", "rest"},
		{strings.Repeat("long", 50000) + "\r\n.\r\n", strings.Repeat("long", 50000) + "\r\n", ""},
	}
	for _, tt := range tests {
		for _, size := range []int{16, 4096} {
			for _, one := range []bool{false, true} {
				got, rest, err := readDot(t, []byte(tt.in), size, one)
				if err != nil || string(got) != tt.want || string(rest) != tt.rest {
					t.Errorf("DotReader(%.40q, buf %d, onebyte %v) = %.40q, rest %q, %v; want %.40q, rest %q",
						tt.in, size, one, got, rest, err, tt.want, tt.rest)
				}
			}
		}
	}
}

func TestDotReaderUnexpectedEOF(t *testing.T) {
	for _, in := range []string{"", "abc", "abc\r\n", "abc\r\n.", "abc\r\n.\r", "a\r\n..\r\n"} {
		_, _, err := readDot(t, []byte(in), 16, false)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("DotReader(%q): err = %v, want io.ErrUnexpectedEOF", in, err)
		}
	}
}

// FuzzDotReader checks that the streaming DotReader never panics and
// agrees with the reference unstuffing, whatever the buffer size and read
// pattern.
func FuzzDotReader(f *testing.F) {
	for _, s := range []string{
		".\r\n", "a\r\n.\r\n", "..\r\n.\r\n", ".\r.\r\n", "a\nb\r\n.\n", ".x\r\n.\r\nrest", "\r\n.\r", "x",
	} {
		f.Add([]byte(s), uint8(16), false)
	}
	f.Fuzz(func(t *testing.T, in []byte, size uint8, oneByte bool) {
		bufSize := int(size) + 16 // bufio's minimum is 16
		want, wantRest, ok := unstuffRef(in)
		got, rest, err := readDot(t, in, bufSize, oneByte)
		if !ok {
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("input %q without terminator: err = %v, want io.ErrUnexpectedEOF", in, err)
			}
			if !bytes.HasPrefix(want, got) {
				t.Fatalf("input %q: got %q, reference prefix %q", in, got, want)
			}
			return
		}
		if err != nil {
			t.Fatalf("input %q: err = %v", in, err)
		}
		if !bytes.Equal(got, want) || !bytes.Equal(rest, wantRest) {
			t.Fatalf("input %q: got %q rest %q, want %q rest %q", in, got, rest, want, wantRest)
		}
	})
}

// FuzzResponse checks that status-line parsing never panics and is
// consistent: an OK status has no "-ERR" prefix, a code has no spaces and
// is upper-case, and the text is a suffix of the line.
func FuzzResponse(f *testing.F) {
	for _, s := range []string{"+OK", "-ERR [IN-USE] x", "+ok [", "-ERR [a]", "+ abc", "1 2 3", "-ERR [SYS/TEMP]\t y"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		st, ok := ParseStatus(line)
		if ok {
			upper := strings.ToUpper(string(line))
			if st.OK != strings.HasPrefix(upper, "+OK") {
				t.Fatalf("%q: OK = %v", line, st.OK)
			}
			if strings.ContainsAny(st.Code, " \t[") || st.Code != strings.ToUpper(st.Code) {
				t.Fatalf("%q: bad code %q", line, st.Code)
			}
			if !strings.HasSuffix(string(line), st.Text) {
				t.Fatalf("%q: text %q is not a suffix", line, st.Text)
			}
		} else if st != (Status{}) {
			t.Fatalf("%q: not ok but %+v", line, st)
		}
		_, _ = ParseContinuation(line)
		_, _, _ = ParseListLine(line)
		_, _, _ = ParseUIDLLine(line)
		_, _, _ = ParseStat(line)
		out, end := Unstuff(line)
		if end && string(line) != "." {
			t.Fatalf("%q: Unstuff says end", line)
		}
		if !end && len(line)-len(out) > 1 {
			t.Fatalf("%q: Unstuff removed too much", line)
		}
	})
}

// FuzzListing checks the listing and status-text parsers: no panic, message
// numbers >= 1, sizes and counts >= 0, a parsed unique id non-empty and free
// of spaces, tabs, CR and LF, a response code free of spaces and
// upper-case, and ParseUIDLPrefix agreeing with ParseUIDLLine.
func FuzzListing(f *testing.F) {
	for _, s := range []string{
		"1 120", "2\t  200 (flagged)", "0 5", "1 -5", "12345678901 1", "1 99999999999999999999",
		"1 abc", "1  abc def", "1 a\rb", "1 \xe9\xff", "3 " + strings.Repeat("x", 100), "[SYS/TEMP] x", "[] y", "[a b] c",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		if id, size, err := ParseListLine(line); err == nil && (id < 1 || size < 0) {
			t.Fatalf("ParseListLine(%q) = %d, %d", line, id, size)
		}
		if n, size, err := ParseStat(line); err == nil && (n < 0 || size < 0) {
			t.Fatalf("ParseStat(%q) = %d, %d", line, n, size)
		}
		id, uid, err := ParseUIDLLine(line)
		if err == nil {
			if id < 1 || uid == "" || strings.ContainsAny(uid, " \t\r\n") {
				t.Fatalf("ParseUIDLLine(%q) = %d, %q", line, id, uid)
			}
			if pid, perr := ParseUIDLPrefix(line); perr != nil || pid != id {
				t.Fatalf("ParseUIDLPrefix(%q) = %d, %v; ParseUIDLLine says %d", line, pid, perr, id)
			}
		}
		if pid, perr := ParseUIDLPrefix(line); perr == nil && pid < 1 {
			t.Fatalf("ParseUIDLPrefix(%q) = %d", line, pid)
		}
		code, rest := ParseCode(string(line))
		if strings.ContainsAny(code, " \t[]") || code != strings.ToUpper(code) || !strings.HasSuffix(string(line), rest) {
			t.Fatalf("ParseCode(%q) = %q, %q", line, code, rest)
		}
		if code == "" && rest != string(line) {
			t.Fatalf("ParseCode(%q) = no code but rest %q", line, rest)
		}
	})
}
