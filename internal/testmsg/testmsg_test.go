package testmsg

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

var update = flag.Bool("update", false, "rewrite testdata/messages from the generator in this file")

// generated returns the sample messages this file generates, by name
// (without Ext). It is the source of the files in testdata/messages: change
// a message here and run `go test ./internal/testmsg -update`.
func generated() map[string][]byte {
	const longLine = 200 << 10   // bytes in the one body line of long-line
	const attachment = 768 << 10 // decoded bytes; 1 MiB once base64-encoded

	m := map[string][]byte{}
	add := func(name string, lines ...string) {
		m[name] = []byte(strings.Join(lines, ""))
	}

	add("plain-ascii",
		"From: Alice Example <alice@example.org>\n",
		"To: Bob Example <bob@example.net>\n",
		"Subject: Plain ASCII message\n",
		"Date: Mon, 3 Mar 2025 10:00:00 +0000\n",
		"Message-ID: <plain-ascii@example.org>\n",
		"MIME-Version: 1.0\n",
		"Content-Type: text/plain; charset=us-ascii\n",
		"\n",
		"Hello Bob,\n",
		"\n",
		"this is a plain 7-bit ASCII message with LF line ends.\n",
		"\n",
		"-- \n",
		"Alice\n")

	add("lf-only",
		"From: alice@example.org\n",
		"To: bob@example.net\n",
		"Subject: LF only, with folded headers\n",
		"  and blank lines everywhere\n",
		"X-Folded: first\n",
		"\tsecond after a tab\n",
		"Message-ID: <lf-only@example.org>\n",
		"\n",
		"\n",
		"\n",
		"The body starts after two blank lines.\n",
		"Trailing spaces:   \n",
		"Trailing tab:\t\n",
		"   \n",
		"\t\n",
		"\n",
		"\n",
		"\n",
		"and ends with three blank lines.\n",
		"\n",
		"\n",
		"\n")

	add("bare-cr",
		"From: alice@example.org\n",
		"To: bob@example.net\n",
		"Subject: bare\rCR in a header\n",
		"Message-ID: <bare-cr@example.org>\n",
		"\n",
		"a bare\rCR inside a line\n",
		"\rat the start of a line\n",
		"two\r\rin a row\n",
		"last line\rof the message\n")

	add("crlf-in-canonical",
		"From: alice@example.org\n",
		"To: bob@example.net\n",
		"Subject: CR LF that survives canonicalisation\n",
		"Message-ID: <crlf-in-canonical@example.org>\n",
		"\n",
		"On the wire this line ended CR CR LF,\r\n",
		"so its canonical form ends CR LF.\r\n",
		"This line ends with a plain LF.\n",
		"\r\n",
		"The line above was a lone CR.\n")

	add("nul-bytes",
		"From: alice@example.org\n",
		"To: bob@example.net\n",
		"Subject: NUL bytes\n",
		"X-Nul: a\x00b\n",
		"Message-ID: <nul-bytes@example.org>\n",
		"\n",
		"NUL\x00inside a line\n",
		"\x00at the start\n",
		"\x00\n",
		"\x00\x00\x00\n",
		"at the end\x00\n")

	add("eight-bit",
		"From: alice@example.org\n",
		"To: bob@example.net\n",
		"Subject: Caf\xe9 au lait (raw latin-1 in a header)\n",
		"Message-ID: <eight-bit@example.org>\n",
		"MIME-Version: 1.0\n",
		"Content-Type: text/plain; charset=iso-8859-1\n",
		"Content-Transfer-Encoding: 8bit\n",
		"\n",
		"Gr\xfc\xdfe aus K\xf6ln, \xe0 bient\xf4t.\n",
		"Invalid UTF-8: truncated \xe2\x82, bad continuation \xc3\x28,\n",
		"overlong \xc0\xaf, surrogate \xed\xa0\x80, bytes \xfe\xff\x80\x9f.\n",
		"All 128 high bytes follow.\n",
		highBytes(),
		"\n")

	add("no-headers",
		"This message has no header section at all.\n",
		"Its first line is body text\n",
		"and a later line looks like: a header.\n")

	add("headers-only",
		"From: alice@example.org\n",
		"To: bob@example.net\n",
		"Subject: headers and no body, not even the blank line\n",
		"Message-ID: <headers-only@example.org>\n")

	add("dot-lines",
		"From: alice@example.org\n",
		"To: bob@example.net\n",
		"Subject: lines of dots\n",
		"Message-ID: <dot-lines@example.org>\n",
		"\n",
		".\n",
		"..\n",
		"...\n",
		".foo\n",
		"..foo\n",
		". \n",
		".\t\n",
		" .\n",
		"the next line is a lone dot, and so is the last one\n",
		".\n",
		"text\n",
		".\n")

	add("from-lines",
		"From: alice@example.org\n",
		"To: bob@example.net\n",
		"Subject: From lines in the body\n",
		"Message-ID: <from-lines@example.org>\n",
		"\n",
		"From here on, every line tests mbox quoting.\n",
		"From alice@example.org Mon Mar  3 10:00:00 2025\n",
		">From one quote\n",
		">>From two quotes\n",
		">>>From three quotes\n",
		"From\n",
		"From:\n",
		" From indented\n",
		"from lower case\n",
		">From\n",
		"\n",
		"From the last line\n")

	var long bytes.Buffer
	long.WriteString("From: alice@example.org\n" +
		"To: bob@example.net\n" +
		"Subject: one body line of 200 KiB\n" +
		"Message-ID: <long-line@example.org>\n" +
		"\n")
	for i := range longLine {
		long.WriteByte("abcdefghijklmnopqrstuvwxyz0123456789"[i%36])
	}
	long.WriteString("\n")
	m["long-line"] = long.Bytes()

	m["empty"] = []byte{}

	add("no-final-newline",
		"From: alice@example.org\n",
		"To: bob@example.net\n",
		"Subject: no newline at the end\n",
		"Message-ID: <no-final-newline@example.org>\n",
		"\n",
		"The last line has no line end.")

	var att bytes.Buffer
	att.WriteString("From: alice@example.org\n" +
		"To: bob@example.net\n" +
		"Subject: a 1 MiB base64 attachment\n" +
		"Message-ID: <base64-attachment@example.org>\n" +
		"MIME-Version: 1.0\n" +
		"Content-Type: multipart/mixed; boundary=\"=_popmigrate_boundary\"\n" +
		"\n" +
		"This is a multi-part message in MIME format.\n" +
		"\n" +
		"--=_popmigrate_boundary\n" +
		"Content-Type: text/plain; charset=us-ascii\n" +
		"\n" +
		"The attachment is 768 KiB of pseudo-random bytes.\n" +
		"\n" +
		"--=_popmigrate_boundary\n" +
		"Content-Type: application/octet-stream; name=\"random.bin\"\n" +
		"Content-Transfer-Encoding: base64\n" +
		"Content-Disposition: attachment; filename=\"random.bin\"\n" +
		"\n")
	enc := base64.StdEncoding.EncodeToString(pseudoRandom(attachment))
	for len(enc) > 0 {
		n := min(76, len(enc))
		att.WriteString(enc[:n])
		att.WriteByte('\n')
		enc = enc[n:]
	}
	att.WriteString("--=_popmigrate_boundary--\n")
	m["base64-attachment"] = att.Bytes()

	add("trace-headers",
		"Return-Path: <alice@example.org>\n",
		"Delivered-To: bob@example.net\n",
		"Received: from mx2.example.net (mx2.example.net [192.0.2.20])\n",
		"\tby pop.example.net (Postfix) with ESMTPS id 4F2A81C0042\n",
		"\tfor <bob@example.net>; Mon, 3 Mar 2025 10:00:05 +0000 (UTC)\n",
		"Received: from mail.example.org (mail.example.org [198.51.100.7])\n",
		"\tby mx2.example.net with ESMTPS id 9C1B2D3E4F;\n",
		"\tMon, 3 Mar 2025 10:00:03 +0000\n",
		"Received: from [192.0.2.99] (unknown [192.0.2.99])\n",
		"\tby mail.example.org with ESMTPSA; Mon, 3 Mar 2025 11:00:01 +0100\n",
		"Date: Mon, 3 Mar 2025 11:00:00 +0100\n",
		"From: Alice Example <alice@example.org>\n",
		"To: bob@example.net\n",
		"Subject: trace headers\n",
		"Message-ID: <trace-headers@example.org>\n",
		"\n",
		"Three Received headers, a Return-Path and a Date.\n")

	add("unicode-headers",
		"From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <juergen@example.org>\n",
		"To: Zoë Ångström <zoe@example.net>\n",
		"Cc: =?ISO-8859-1?Q?Andr=E9?= <andre@example.net>\n",
		"Subject: =?UTF-8?B?w4ljaGFudGlsbG9uIOKAlCDmloflrZfljJbjgZE=?=\n",
		" =?UTF-8?Q?_and_more_=F0=9F=93=A8?=\n",
		"X-Raw-UTF8: 日本語のヘッダー, emoji 📬\n",
		"Message-ID: <unicode-headers@example.org>\n",
		"MIME-Version: 1.0\n",
		"Content-Type: text/plain; charset=utf-8\n",
		"Content-Transfer-Encoding: 8bit\n",
		"\n",
		"Grüße, привет, 你好, مرحبا.\n")

	return m
}

// highBytes returns the bytes 0x80 to 0xff in order.
func highBytes() string {
	var b []byte
	for c := 0x80; c <= 0xff; c++ {
		b = append(b, byte(c))
	}
	return string(b)
}

// pseudoRandom returns n reproducible bytes: sha256 in counter mode.
func pseudoRandom(n int) []byte {
	out := make([]byte, 0, n+sha256.Size)
	var ctr [8]byte
	for i := uint64(0); len(out) < n; i++ {
		binary.BigEndian.PutUint64(ctr[:], i)
		sum := sha256.Sum256(ctr[:])
		out = append(out, sum[:]...)
	}
	return out[:n]
}

// TestFilesMatchGenerator pins every generated file byte for byte, so that
// an editor, a git setting (core.autocrlf) or a copy that rewrites line
// ends is caught. With -update it rewrites the files instead.
func TestFilesMatchGenerator(t *testing.T) {
	d := Dir(t)
	for name, want := range generated() {
		path := filepath.Join(d, name+Ext)
		if *update {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("%v (run go test ./internal/testmsg -update)", err)
			continue
		}
		if !bytes.Equal(got, want) {
			i := 0
			for i < len(got) && i < len(want) && got[i] == want[i] {
				i++
			}
			t.Errorf("%s: %d bytes, want %d; first difference at offset %d (run go test ./internal/testmsg -update)",
				path, len(got), len(want), i)
		}
	}
}

func TestLoad(t *testing.T) {
	samples := Load(t)
	var names []string
	for _, s := range samples {
		names = append(names, s.Name)
	}
	if !slices.IsSorted(names) {
		t.Errorf("Load names not sorted: %q", names)
	}
	gen := generated()
	for name, want := range gen {
		i := slices.Index(names, name)
		if i < 0 {
			t.Errorf("Load is missing %q", name)
			continue
		}
		if !bytes.Equal(samples[i].Data, want) {
			t.Errorf("Load %q: data differs from the generator", name)
		}
	}
	// Callers own the bytes: changing them does not change a later Load.
	i := slices.IndexFunc(samples, func(s Sample) bool { return len(s.Data) > 0 })
	samples[i].Data[0] ^= 0xff
	if again := Load(t); again[i].Data[0] == samples[i].Data[0] {
		t.Errorf("Load %q returned shared bytes", samples[i].Name)
	}
}

func TestFind(t *testing.T) {
	s := Find(t, "dot-lines")
	if s.Name != "dot-lines" || !bytes.Equal(s.Data, generated()["dot-lines"]) {
		t.Errorf("Find(dot-lines) = %q, %d bytes", s.Name, len(s.Data))
	}
}

// TestREADMEListsEverySample keeps README.md true: every sample file is
// described there.
func TestREADMEListsEverySample(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(Dir(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range Load(t) {
		if !bytes.Contains(readme, []byte("`"+s.Name+Ext+"`")) {
			t.Errorf("README.md does not describe %s%s", s.Name, Ext)
		}
	}
}

// TestSampleProperties checks that each sample still tests what README.md
// says it tests.
func TestSampleProperties(t *testing.T) {
	got := map[string][]byte{}
	for _, s := range Load(t) {
		got[s.Name] = s.Data
	}
	body := func(name string) []byte {
		_, b, ok := bytes.Cut(got[name], []byte("\n\n"))
		if !ok {
			t.Fatalf("%s: no blank line after the headers", name)
		}
		return b
	}
	lines := func(name string) []string {
		return strings.Split(string(body(name)), "\n")
	}
	checks := []struct {
		name string
		ok   bool
	}{
		{"empty is 0 bytes", len(got["empty"]) == 0},
		{"plain-ascii is 7-bit without CR", isASCII(got["plain-ascii"]) && !bytes.ContainsRune(got["plain-ascii"], '\r')},
		{"lf-only has no CR", len(got["lf-only"]) > 0 && !bytes.ContainsRune(got["lf-only"], '\r')},
		{"bare-cr has CR never before LF", bytes.Contains(got["bare-cr"], []byte("\r")) && !bytes.Contains(got["bare-cr"], []byte("\r\n"))},
		{"crlf-in-canonical holds CR LF", bytes.Contains(got["crlf-in-canonical"], []byte("\r\n"))},
		{"nul-bytes holds NUL", bytes.Count(got["nul-bytes"], []byte{0}) >= 6},
		{"eight-bit is invalid UTF-8", !utf8.Valid(got["eight-bit"])},
		{"no-headers starts with body text", !bytes.Contains(bytes.SplitN(got["no-headers"], []byte("\n"), 2)[0], []byte(":"))},
		{"headers-only has no blank line", !bytes.Contains(got["headers-only"], []byte("\n\n")) && bytes.HasSuffix(got["headers-only"], []byte("\n"))},
		{"dot-lines has . .. .foo and ends with .", slices.Contains(lines("dot-lines"), ".") && slices.Contains(lines("dot-lines"), "..") &&
			slices.Contains(lines("dot-lines"), ".foo") && bytes.HasSuffix(got["dot-lines"], []byte("\n.\n"))},
		{"from-lines has From, >From, >>From", slices.Contains(lines("from-lines"), "From the last line") &&
			slices.Contains(lines("from-lines"), ">From one quote") && slices.Contains(lines("from-lines"), ">>From two quotes")},
		{"long-line has one 200 KiB line", len(lines("long-line")) == 2 && len(lines("long-line")[0]) == 200<<10},
		{"no-final-newline lacks the final LF", len(got["no-final-newline"]) > 0 && !bytes.HasSuffix(got["no-final-newline"], []byte("\n"))},
		{"base64-attachment is over 1 MiB", len(got["base64-attachment"]) > 1<<20},
		{"trace-headers has 3 Received", bytes.Count(got["trace-headers"], []byte("\nReceived: ")) == 3 &&
			bytes.HasPrefix(got["trace-headers"], []byte("Return-Path: ")) && bytes.Contains(got["trace-headers"], []byte("\nDate: "))},
		{"unicode-headers has encoded words and raw UTF-8", bytes.Contains(got["unicode-headers"], []byte("=?UTF-8?B?")) &&
			utf8.Valid(got["unicode-headers"]) && !isASCII(got["unicode-headers"])},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("property does not hold: %s", c.name)
		}
	}
	// No sample but crlf-in-canonical may hold CR LF: the files are the
	// canonical form, and a stray CRLF elsewhere means a line-end rewrite.
	for name, data := range got {
		if name != "crlf-in-canonical" && bytes.Contains(data, []byte("\r\n")) {
			t.Errorf("%s holds CR LF", name)
		}
	}
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}
