package pipeline

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"

	"github.com/popmigrate/popmigrate/exporters"
)

// spooler turns a RETR stream into a spooled body in canonical form while
// hashing it: one pass over the bytes (read -> canonicalise -> hash ->
// spool). Bodies up to threshold bytes stay in memory; a larger body moves
// to an unlinked temporary file in dir, so memory stays flat whatever the
// message size and a crash leaves nothing behind.
type spooler struct {
	dir       string
	threshold int64
	bufs      sync.Pool
}

func newSpooler(dir string, threshold int64) *spooler {
	return &spooler{dir: dir, threshold: threshold}
}

// spooled is a message body held by the spool. It implements
// exporters.Body. Release frees it; it must not be used afterwards.
type spooled struct {
	sp   *spooler
	mem  []byte
	file *os.File
	size int64
	sum  string
}

func (s *spooled) Size() int64 { return s.size }

func (s *spooled) ReadAt(p []byte, off int64) (int, error) {
	if s.file != nil {
		return s.file.ReadAt(p, off)
	}
	if off >= int64(len(s.mem)) {
		return 0, io.EOF
	}
	n := copy(p, s.mem[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Release returns the memory or closes the temporary file.
func (s *spooled) Release() {
	if s.file != nil {
		s.file.Close()
		s.file = nil
	}
	if s.mem != nil && int64(cap(s.mem)) <= s.sp.threshold {
		b := s.mem[:0]
		s.sp.bufs.Put(&b)
	}
	s.mem = nil
}

var _ exporters.Body = (*spooled)(nil)

// spoolWriter collects canonical bytes: in memory up to the threshold, then
// in a temporary file.
type spoolWriter struct {
	sp   *spooler
	mem  []byte
	file *os.File
	n    int64
}

func (w *spoolWriter) Write(p []byte) (int, error) {
	if w.file == nil && int64(len(w.mem)+len(p)) > w.sp.threshold {
		f, err := anonymousFile(w.sp.dir)
		if err != nil {
			return 0, fmt.Errorf("spool: %w", err)
		}
		if _, err := f.Write(w.mem); err != nil {
			f.Close()
			return 0, fmt.Errorf("spool: %w", err)
		}
		w.file = f
		w.release()
	}
	if w.file != nil {
		n, err := w.file.Write(p)
		w.n += int64(n)
		if err != nil {
			return n, fmt.Errorf("spool: %w", err)
		}
		return n, nil
	}
	w.mem = append(w.mem, p...)
	w.n += int64(len(p))
	return len(p), nil
}

func (w *spoolWriter) release() {
	if w.mem != nil {
		b := w.mem[:0]
		w.sp.bufs.Put(&b)
		w.mem = nil
	}
}

// fill reads r to EOF and returns the canonical, hashed body. On error
// nothing is kept.
func (sp *spooler) fill(r io.Reader) (*spooled, error) {
	w := &spoolWriter{sp: sp}
	if b, ok := sp.bufs.Get().(*[]byte); ok {
		w.mem = (*b)[:0]
	}
	h := sha256.New()
	cw := exporters.NewCanonicalWriter(io.MultiWriter(h, w))
	_, err := copyBuffer(cw, r)
	if err == nil {
		err = cw.Close()
	}
	if err != nil {
		if w.file != nil {
			w.file.Close()
		}
		w.release()
		return nil, err
	}
	return &spooled{sp: sp, mem: w.mem, file: w.file, size: w.n, sum: hexSum(h)}, nil
}

func hexSum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

func copyBuffer(dst io.Writer, src io.Reader) (int64, error) {
	b := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(b)
	return io.CopyBuffer(dst, src, *b)
}

// anonymousFile returns a read-write file in dir that has no name, so that
// a crash or kill at any instant leaves no spool file behind: an O_TMPFILE
// file where the system and file system offer it, else a temporary file
// unlinked at once (a kill between the two steps could leave that one).
func anonymousFile(dir string) (*os.File, error) {
	if f, err := openTmpfile(dir); err == nil {
		return f, nil
	}
	f, err := os.CreateTemp(dir, "popmigrate-spool-*")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name())
	return f, nil
}
