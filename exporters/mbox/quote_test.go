package mbox

import (
	"bytes"
	"errors"
	"io"
	"regexp"
	"testing"
	"testing/iotest"
)

var (
	quoteRE   = regexp.MustCompile(`^>*From `)
	unquoteRE = regexp.MustCompile(`^>+From `)
)

// refQuote is mboxrd quoting done the obvious way, line by line: the
// reference the streaming quoter is checked against.
func refQuote(b []byte, unquote bool) []byte {
	var out []byte
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		switch {
		case !unquote && quoteRE.Match(line):
			out = append(out, '>')
			out = append(out, line...)
		case unquote && unquoteRE.Match(line):
			out = append(out, line[1:]...)
		default:
			out = append(out, line...)
		}
	}
	return out
}

// runQuoter feeds b to a quoter in chunks of size step.
func runQuoter(t *testing.T, b []byte, unquote bool, step int) []byte {
	t.Helper()
	q := quoter{unquote: unquote}
	var out []byte
	for len(b) > 0 {
		n := min(step, len(b))
		var err error
		out, err = q.transform(out, b[:n])
		if err != nil {
			t.Fatalf("transform: %v", err)
		}
		b = b[n:]
	}
	return q.flush(out)
}

func TestQuote(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"From x\n", ">From x\n"},
		{">From x\n", ">>From x\n"},
		{">>>From x\n", ">>>>From x\n"},
		{"From", "From"},
		{"From\n", "From\n"},
		{"From:\n", "From:\n"},
		{">From", ">From"},
		{"From ", ">From "},
		{" From x\n", " From x\n"},
		{"from x\n", "from x\n"},
		{">>\n>F\nFro\n", ">>\n>F\nFro\n"},
		{"a\nFrom b\n>From c\nFrom", "a\n>From b\n>>From c\nFrom"},
		{"x From y\nFrom From \n", "x From y\n>From From \n"},
		{">>From>From \n", ">>From>From \n"},
	} {
		for _, step := range []int{1, 2, 3, 1 << 20} {
			if got := runQuoter(t, []byte(tc.in), false, step); string(got) != tc.want {
				t.Errorf("quote(%q) in chunks of %d = %q, want %q", tc.in, step, got, tc.want)
			}
			if got := runQuoter(t, []byte(tc.want), true, step); string(got) != tc.in {
				t.Errorf("unquote(%q) in chunks of %d = %q, want %q", tc.want, step, got, tc.in)
			}
		}
	}
}

// Every line of the from-lines sample, split at every byte, quotes as the
// line-by-line reference does, and unquotes back.
func TestQuoteEverySplit(t *testing.T) {
	in := []byte("From a\n>From b\n>>>From c\nFrom\n>F\n>\n\nFro\n>>From")
	want := refQuote(in, false)
	for split := range len(in) + 1 {
		q := quoter{}
		out, _ := q.transform(nil, in[:split])
		out, _ = q.transform(out, in[split:])
		out = q.flush(out)
		if !bytes.Equal(out, want) {
			t.Fatalf("split at %d: %q, want %q", split, out, want)
		}
		u := quoter{unquote: true}
		back, err := u.transform(nil, out[:split])
		if err == nil {
			back, err = u.transform(back, out[split:])
		}
		if err != nil {
			t.Fatalf("split at %d: unquote: %v", split, err)
		}
		if back = u.flush(back); !bytes.Equal(back, in) {
			t.Fatalf("split at %d: unquoted %q, want %q", split, back, in)
		}
	}
}

// Unquoting a line "From " without '>' is not mboxrd: inside an entry it
// means the entry is corrupt.
func TestUnquoteRejectsFromLine(t *testing.T) {
	q := quoter{unquote: true}
	_, err := q.transform(nil, []byte("text\nFrom x\n"))
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("unquote of a bare From line: err = %v, want ErrCorrupt", err)
	}
	r := newUnquoteReader(bytes.NewReader([]byte("a\n>From b\nFrom c\n")), 4)
	got, err := io.ReadAll(r)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("unquoteReader: err = %v, want ErrCorrupt", err)
	}
	if string(got) != "a\nFrom b\n" {
		t.Errorf("unquoteReader returned %q before the error, want %q", got, "a\nFrom b\n")
	}
}

func TestUnquoteReader(t *testing.T) {
	in := []byte(">From a\n>>From b\nplain\n>>")
	want := refQuote(in, true)
	for _, size := range []int{1, 3, 64} {
		r := newUnquoteReader(iotest.OneByteReader(bytes.NewReader(in)), size)
		if err := iotest.TestReader(r, want); err != nil {
			t.Errorf("buffer %d: %v", size, err)
		}
	}
}
