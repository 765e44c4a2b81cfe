package pipeline

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/popmigrate/popmigrate/exporters"
)

// chunkReader returns its data in reads of at most n bytes, so that a CR
// can end one read and its LF start the next.
type chunkReader struct {
	data []byte
	n    int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), r.n)], r.data)
	r.data = r.data[k:]
	return k, nil
}

// readBody reads all of b through ReadAt.
func readBody(t *testing.T, b *spooled) []byte {
	t.Helper()
	got, err := io.ReadAll(exporters.NewBodyReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func sumHex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// emptyDir fails the test unless dir holds no entry: spool files are
// unlinked as soon as they are created.
func emptyDir(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("%s holds %d entries, want none", dir, len(entries))
	}
}

func TestSpoolThresholdBoundary(t *testing.T) {
	const threshold = 1024
	dir := t.TempDir()
	sp := newSpooler(dir, threshold)
	cases := []struct {
		name   string
		input  []byte
		inFile bool
	}{
		{"empty", nil, false},
		{"one under", bytes.Repeat([]byte("a"), threshold-1), false},
		{"exactly at", bytes.Repeat([]byte("a"), threshold), false},
		{"one over", bytes.Repeat([]byte("a"), threshold+1), true},
		// The threshold is on the canonical form: 1024 canonical bytes
		// that arrive as 1536 wire bytes stay in memory.
		{"CRLF at", bytes.Repeat([]byte("a\r\n"), threshold/2), false},
		{"CRLF over", append(bytes.Repeat([]byte("a\r\n"), threshold/2), 'b'), true},
		{"large", bytes.Repeat([]byte("0123456789abcdef\r\n"), 10*threshold), true},
	}
	for _, c := range cases {
		for _, chunk := range []int{1, 7, 64 << 10} {
			b, err := sp.fill(&chunkReader{data: c.input, n: chunk}, nil)
			if err != nil {
				t.Fatalf("%s/%d: %v", c.name, chunk, err)
			}
			want := exporters.Canonicalize(c.input)
			if got := readBody(t, b); !bytes.Equal(got, want) {
				t.Errorf("%s/%d: spooled %d bytes differ from the canonical %d", c.name, chunk, len(got), len(want))
			}
			if b.Size() != int64(len(want)) || b.sum != sumHex(want) {
				t.Errorf("%s/%d: size %d sum %s, want %d %s", c.name, chunk, b.Size(), b.sum, len(want), sumHex(want))
			}
			if (b.file != nil) != c.inFile {
				t.Errorf("%s/%d: in a file %v, want %v", c.name, chunk, b.file != nil, c.inFile)
			}
			if b.file != nil && b.mem != nil {
				t.Errorf("%s/%d: a file body still holds memory", c.name, chunk)
			}
			emptyDir(t, dir)
			b.Release()
		}
	}
}

// TestSpoolCRAtChunkBoundary feeds every CR as the last byte of a read,
// at every threshold, so that the held-back CR of the canonical writer
// meets the switch from memory to file at every position.
func TestSpoolCRAtChunkBoundary(t *testing.T) {
	input := []byte("A: b\r\n\r\nx\r\r\ny\rz\r\n\r\r\r\n.\r\nend\r")
	want := []byte("A: b\n\nx\r\ny\rz\n\r\r\n.\nend\r")
	dir := t.TempDir()
	for threshold := int64(1); threshold <= int64(len(input))+1; threshold++ {
		sp := newSpooler(dir, threshold)
		for _, r := range []io.Reader{iotest.OneByteReader(bytes.NewReader(input)), &chunkReader{data: input, n: 2}, iotest.HalfReader(bytes.NewReader(input))} {
			b, err := sp.fill(r, nil)
			if err != nil {
				t.Fatalf("threshold %d: %v", threshold, err)
			}
			if got := readBody(t, b); !bytes.Equal(got, want) || b.sum != sumHex(want) {
				t.Errorf("threshold %d: got %q, want %q", threshold, got, want)
			}
			b.Release()
		}
	}
	emptyDir(t, dir)
}

func TestSpoolRelease(t *testing.T) {
	dir := t.TempDir()
	sp := newSpooler(dir, 16)

	b, err := sp.fill(strings.NewReader(strings.Repeat("line\r\n", 100)), nil)
	if err != nil {
		t.Fatal(err)
	}
	f := b.file
	if f == nil {
		t.Fatal("600 bytes over a 16-byte threshold are not in a file")
	}
	b.Release()
	if _, err := f.Stat(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("spool file after Release: Stat = %v, want closed", err)
	}
	if b.file != nil || b.mem != nil {
		t.Error("Release left the body holding its storage")
	}
	b.Release() // twice is harmless

	m, err := sp.fill(strings.NewReader("short\r\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.file != nil || string(readBody(t, m)) != "short\n" {
		t.Fatalf("small body: file %v content %q", m.file != nil, readBody(t, m))
	}
	m.Release()
	if m.mem != nil {
		t.Error("Release kept the memory of a small body")
	}
	m.Release()
	emptyDir(t, dir)
}

// TestSpoolErrorKeepsNothing checks that a body whose stream fails, in
// memory or after the move to a file, leaves nothing behind.
func TestSpoolErrorKeepsNothing(t *testing.T) {
	dir := t.TempDir()
	sp := newSpooler(dir, 100)
	boom := errors.New("connection reset")
	for _, n := range []int{10, 1000} {
		r := io.MultiReader(bytes.NewReader(bytes.Repeat([]byte("x"), n)), iotest.ErrReader(boom))
		b, err := sp.fill(r, nil)
		if !errors.Is(err, boom) || b != nil {
			t.Errorf("%d bytes then an error: body %v err %v", n, b, err)
		}
	}
	emptyDir(t, dir)

	sp = newSpooler(filepath.Join(dir, "missing"), 4)
	if _, err := sp.fill(strings.NewReader("more than four bytes"), nil); err == nil || !strings.Contains(err.Error(), "spool") {
		t.Errorf("unusable spool folder: err %v, want a spool error", err)
	}
}
