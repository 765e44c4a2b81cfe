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

func TestMessageKeyIsSafeName(t *testing.T) {
	k := MessageKey("alice@example.org", "../../etc/passwd")
	if len(k) != 32 || bytes.ContainsAny([]byte(k), "/.:*") {
		t.Fatalf("unsafe key %q", k)
	}
	if MessageKey("a", "bc") == MessageKey("ab", "c") {
		t.Fatal("keys of different (account, uidl) pairs collide")
	}
}
