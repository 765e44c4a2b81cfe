package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"

	"github.com/popmigrate/popmigrate/exporters"
)

// spooler turns a RETR stream into a body in canonical form while hashing
// it: one pass over the bytes (read -> canonicalise in place -> hash ->
// sink), a pooled chunk at a time. The sink is the one destination's
// temporary file when a message goes to one destination that can take it
// as it arrives (exporters.Streamer), else the spool: bodies up to
// threshold bytes stay in memory; a larger body moves to an unlinked
// temporary file in dir, so memory stays flat whatever the message size
// and a crash leaves nothing behind.
type spooler struct {
	dir       string
	threshold int64
	bufs      sync.Pool
}

func newSpooler(dir string, threshold int64) *spooler {
	return &spooler{dir: dir, threshold: threshold}
}

// spooled is a message body held by the spool, or written into a
// destination's stream. It implements exporters.Body when spooled.
// Release frees it (aborting a stream not yet committed); it must not be
// used afterwards.
type spooled struct {
	sp   *spooler
	mem  []byte
	file *os.File
	size int64
	sum  string

	// stream, when not nil, holds the body instead of the spool: the
	// writer commits it. streamErr is the first error writing to it, after
	// which the rest of the body was read and hashed but not written.
	stream    exporters.Stream
	streamErr error
	// ended is set once end ended the stream's file.
	ended bool
}

// end ends a streamed body's file as soon as the body is complete
// (exporters.Ender: its length checked and the file closed), on the
// downloader's goroutine, so that a message waiting for the writer holds
// neither memory nor an open file: the downloader may then run a batch
// ahead of a writer that is syncing and committing. The writer's Commit
// then stages the file, so that a Sync publishes only what the writer
// records. A body whose stream already failed is aborted at once; an error
// of End becomes streamErr, which the writer records as the message's
// failure there. end does nothing to a spooled body, nor to a stream
// that cannot end early, and nothing the second time.
func (s *spooled) end(ctx context.Context) {
	if s.stream == nil || s.ended {
		return
	}
	s.ended = true
	if s.streamErr != nil {
		s.stream.Abort()
		return
	}
	if e, ok := s.stream.(exporters.Ender); ok {
		s.streamErr = e.End(ctx, s.size)
	}
}

func (s *spooled) Size() int64 { return s.size }

func (s *spooled) ReadAt(p []byte, off int64) (int, error) {
	if s.stream != nil {
		return 0, errors.New("spool: the body went to a destination's stream and cannot be read again")
	}
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

// Release returns the memory, closes the temporary file, or aborts a
// stream that was not committed.
func (s *spooled) Release() {
	if s.stream != nil {
		s.stream.Abort()
	}
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

// fill reads r to EOF and returns the canonical, hashed body: spooled when
// stream is nil, else written into stream (and only its size and hash
// kept). An error writing to stream does not end the read: the rest of the
// body is read and hashed, so that the POP3 session goes on, and the error
// is the body's streamErr. On a read error nothing is kept; stream is left
// to the caller to abort.
func (sp *spooler) fill(r io.Reader, stream exporters.Stream) (*spooled, error) {
	w := &spoolWriter{sp: sp}
	if stream == nil {
		if b, ok := sp.bufs.Get().(*[]byte); ok {
			w.mem = (*b)[:0]
		}
	}
	out := &spooled{sp: sp, stream: stream}
	h := sha256.New()
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	carry := 0 // a CR kept back at buf[0]: an LF may follow in the next chunk
	for {
		n, err := readFull(r, buf[carry:])
		chunk := buf[:carry+n]
		carry = 0
		if err == nil && chunk[len(chunk)-1] == '\r' {
			chunk, carry = chunk[:len(chunk)-1], 1
		}
		if err != nil && err != io.EOF {
			if w.file != nil {
				w.file.Close()
			}
			w.release()
			return nil, err
		}
		c := exporters.CanonicalizeInPlace(chunk)
		h.Write(c)
		out.size += int64(len(c))
		switch {
		case len(c) == 0:
		case stream == nil:
			if _, werr := w.Write(c); werr != nil {
				if w.file != nil {
					w.file.Close()
				}
				w.release()
				return nil, werr
			}
		case out.streamErr == nil:
			if _, werr := stream.Write(c); werr != nil {
				out.streamErr = werr
			}
		}
		if err == io.EOF {
			break
		}
		buf[0] = '\r' // the CR kept back, when carry is 1
	}
	out.sum = hexSum(h)
	out.mem, out.file = w.mem, w.file
	return out, nil
}

// readFull reads from r until p is full, an error, or io.EOF, which it
// returns with what it read.
func readFull(r io.Reader, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k, err := r.Read(p[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func hexSum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }

// copyBufs holds the chunks fill reads, canonicalises and hashes a body
// in, and copyBuffer's.
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
