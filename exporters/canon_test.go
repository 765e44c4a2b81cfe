package exporters

import (
	"bytes"
	"testing"
)

func TestCanonicalize(t *testing.T) {
	cases := []struct{ in, want string }{
		{"", ""},
		{"a\r\nb\r\n", "a\nb\n"},
		{"bare\rcr\n", "bare\rcr\n"},
		{"bare lf\nx", "bare lf\nx"},
		{"\r\r\n", "\r\n"},
		{"end\r", "end\r"},
		{"nul\x00\r\n8bit\xff\r\n", "nul\x00\n8bit\xff\n"},
	}
	for _, c := range cases {
		if got := string(Canonicalize([]byte(c.in))); got != c.want {
			t.Errorf("Canonicalize(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// Every split of the input into two writes gives the same output as one
// write: a CR at the end of a write must be held back, not emitted early.
func TestCanonicalWriterSplitCR(t *testing.T) {
	in := []byte("a\r\nb\rc\r\r\nd\r")
	want := Canonicalize(in)
	for i := 0; i <= len(in); i++ {
		var out bytes.Buffer
		cw := NewCanonicalWriter(&out)
		if n, err := cw.Write(in[:i]); err != nil || n != i {
			t.Fatalf("split %d: Write = %d, %v", i, n, err)
		}
		if n, err := cw.Write(in[i:]); err != nil || n != len(in)-i {
			t.Fatalf("split %d: Write = %d, %v", i, n, err)
		}
		cw.Close()
		if !bytes.Equal(out.Bytes(), want) {
			t.Errorf("split %d: got %q, want %q", i, out.Bytes(), want)
		}
	}
}

func FuzzCanonicalWriter(f *testing.F) {
	f.Add([]byte("a\r\nb\r"), 3)
	f.Fuzz(func(t *testing.T, in []byte, split int) {
		if split < 0 || split > len(in) {
			split = len(in) / 2
		}
		var out bytes.Buffer
		cw := NewCanonicalWriter(&out)
		cw.Write(in[:split])
		cw.Write(in[split:])
		cw.Close()
		want := bytes.ReplaceAll(in, []byte("\r\n"), []byte("\n"))
		if !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("got %q, want %q", out.Bytes(), want)
		}
	})
}

// canonicalizeChunks converts in as the pipeline's spool does: chunks of
// at most size bytes converted in place, a CR at the end of a chunk kept
// back for the next one.
func canonicalizeChunks(in []byte, size int) []byte {
	var out []byte
	buf := make([]byte, size)
	carry := 0
	for len(in) > 0 {
		n := copy(buf[carry:], in)
		in = in[n:]
		chunk := buf[:carry+n]
		carry = 0
		if len(in) > 0 && chunk[len(chunk)-1] == '\r' {
			chunk, carry = chunk[:len(chunk)-1], 1
		}
		out = append(out, CanonicalizeInPlace(chunk)...)
		buf[0] = '\r' // kept back when carry is 1
	}
	return out
}

func TestCanonicalizeInPlace(t *testing.T) {
	for _, in := range []string{"", "x", "\r", "\n", "\r\n", "a\r\nb\r\n", "\r\r\n", "\r\n\r\n\r", "a\rb\r\r\r\nc\r\n\n", "end\r"} {
		want := Canonicalize([]byte(in))
		if got := CanonicalizeInPlace([]byte(in)); !bytes.Equal(got, want) {
			t.Errorf("CanonicalizeInPlace(%q) = %q, want %q", in, got, want)
		}
		for size := 2; size <= len(in)+1; size++ {
			if got := canonicalizeChunks([]byte(in), size); !bytes.Equal(got, want) {
				t.Errorf("in chunks of %d: %q gives %q, want %q", size, in, got, want)
			}
		}
	}
}

func FuzzCanonicalizeInPlace(f *testing.F) {
	f.Add([]byte("a\r\nb\r"), 3)
	f.Fuzz(func(t *testing.T, in []byte, size int) {
		want := bytes.ReplaceAll(in, []byte("\r\n"), []byte("\n"))
		if got := CanonicalizeInPlace(bytes.Clone(in)); !bytes.Equal(got, want) {
			t.Fatalf("CanonicalizeInPlace(%q) = %q, want %q", in, got, want)
		}
		size = 2 + abs(size)%64
		if got := canonicalizeChunks(in, size); !bytes.Equal(got, want) {
			t.Fatalf("in chunks of %d: %q gives %q, want %q", size, in, got, want)
		}
	})
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

func TestMessageKeyIsSafeName(t *testing.T) {
	k := MessageKey("alice@example.org", "../../etc/passwd")
	if len(k) != 32 || bytes.ContainsAny([]byte(k), "/.:*") {
		t.Fatalf("unsafe key %q", k)
	}
	if MessageKey("a", "bc") == MessageKey("ab", "c") {
		t.Fatal("keys of different (account, uidl) pairs collide")
	}
}
