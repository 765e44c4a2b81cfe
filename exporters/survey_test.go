package exporters

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"testing/iotest"
)

func sumOf(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// TestHeaderSum: the answer to TOP n 0 (CRLF, with the blank line), an
// IMAP BODY[HEADER] and the whole canonical message give one sum, that of
// the canonical header lines.
func TestHeaderSum(t *testing.T) {
	head := "Received: from a by b; Tue, 4 Feb 2025 08:00:00 +0000\nSubject: hi\nMessage-ID: <1@x>\n"
	for _, tc := range []struct {
		name, in, want string
	}{
		{"whole canonical message", head + "\nbody\n\nmore\n", head},
		{"TOP n 0 on the wire", strings.ReplaceAll(head, "\n", "\r\n") + "\r\n", head},
		{"header without body", head, head},
		{"header without final line end", "Subject: x", "Subject: x"},
		{"no header", "\nbody only\n", ""},
		{"empty", "", ""},
		{"bare CR kept", "Subject: a\rb\n\nbody", "Subject: a\rb\n"},
		{"CRLF split across reads", "Subject: a\r\n\r\nbody", "Subject: a\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := HeaderSum(iotest.OneByteReader(strings.NewReader(tc.in)))
			if err != nil {
				t.Fatal(err)
			}
			if got != sumOf(tc.want) {
				t.Errorf("HeaderSum(%q) is not the sum of %q", tc.in, tc.want)
			}
		})
	}
}

// TestHeaderSumBounded: a header block past MaxHeaderBlock is hashed up
// to the bound, and HeaderSum stops reading soon after.
func TestHeaderSumBounded(t *testing.T) {
	long := "X-Long: " + strings.Repeat("a", 2*MaxHeaderBlock) + "\n\nbody\n"
	r := strings.NewReader(long)
	got, err := HeaderSum(r)
	if err != nil {
		t.Fatal(err)
	}
	if got != sumOf(long[:MaxHeaderBlock]) {
		t.Error("a long header block is not hashed up to MaxHeaderBlock")
	}
	if read := int64(len(long)) - int64(r.Len()); read > MaxHeaderBlock+8<<10 {
		t.Errorf("read %d bytes of a long header block", read)
	}
	wire := bytes.Repeat([]byte("A: b\r\n"), MaxHeaderBlock/3)
	if got, _ := HeaderSum(bytes.NewReader(wire)); got != sumOf(string(Canonicalize(wire))[:MaxHeaderBlock]) {
		t.Error("a long CRLF header block is not hashed in canonical form up to MaxHeaderBlock")
	}
}
