package imap

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/internal/mailhdr"
)

const (
	// chunkSize is the number of body bytes read per ReadAt.
	chunkSize = 64 << 10
	// maxHeaderScan bounds the bytes of the header section that Put keeps
	// to find the dates and the Message-ID: as many as mailhdr reads.
	maxHeaderScan = mailhdr.MaxHeader
	// maxMessageID bounds the Message-ID used in a search.
	maxMessageID = 512
)

var chunkPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// scan is what the first pass over a body learns.
type scan struct {
	wireSize int64  // bytes of the APPEND literal: the body with every LF as CRLF
	hasNUL   bool   // IMAP literals cannot carry NUL (RFC 3501 CHAR8)
	header   []byte // the header section (bounded by maxHeaderScan)
	sha      string // sha256 of the body, lower-case hex
}

// readChunks calls f with successive chunks of body, exactly body.Size()
// bytes in all, checking ctx before each. A body that ends early fails
// with exporters.ErrShortBody; a read error is wrapped.
func readChunks(ctx context.Context, body exporters.Body, f func([]byte) error) error {
	bp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bp)
	buf := *bp
	size := body.Size()
	if size < 0 {
		return fmt.Errorf("negative body size %d", size)
	}
	var off int64
	for off < size {
		if err := ctx.Err(); err != nil {
			return err
		}
		want := int(min(int64(len(buf)), size-off))
		n, rerr := body.ReadAt(buf[:want], off)
		if n > 0 {
			if err := f(buf[:n]); err != nil {
				return err
			}
			off += int64(n)
		}
		switch {
		case n == want:
			// A full read may come with io.EOF at the end: fine.
		case rerr == io.EOF || rerr == nil && n < want:
			return fmt.Errorf("%w: %d of %d bytes", exporters.ErrShortBody, off, size)
		}
		if rerr != nil && rerr != io.EOF {
			return fmt.Errorf("read body at offset %d: %w", off, rerr)
		}
	}
	return ctx.Err()
}

// scanBody reads body once: it counts the LFs (each becomes CRLF on the
// wire), looks for NUL bytes, keeps the header section and computes the
// sha256 (the one that matches a copy read back, whatever msg.SHA256
// says).
func scanBody(ctx context.Context, body exporters.Body) (*scan, error) {
	s := &scan{wireSize: body.Size()}
	h := sha256.New()
	headerDone := false
	err := readChunks(ctx, body, func(p []byte) error {
		h.Write(p)
		s.wireSize += int64(bytes.Count(p, []byte{'\n'}))
		if !s.hasNUL && bytes.IndexByte(p, 0) >= 0 {
			s.hasNUL = true
		}
		if !headerDone {
			s.header = append(s.header, p[:min(len(p), maxHeaderScan-len(s.header))]...)
			if i := headerEnd(s.header); i >= 0 {
				s.header, headerDone = s.header[:i], true
			} else if len(s.header) >= maxHeaderScan {
				headerDone = true
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.sha = hex.EncodeToString(h.Sum(nil))
	return s, nil
}

// headerEnd returns the length of the header section in b (up to and
// including the LF before the empty line), or -1 if b holds no end yet.
func headerEnd(b []byte) int {
	if len(b) > 0 && b[0] == '\n' {
		return 0 // no header at all: the message starts with the empty line
	}
	if i := bytes.Index(b, []byte("\n\n")); i >= 0 {
		return i + 1
	}
	return -1
}

// crlfWriter writes a canonical body as the IMAP wire needs it: every LF
// becomes CRLF. Canonicalisation turned every CRLF into LF, so a CR the
// body holds before an LF was a CR before a CRLF on the original wire; it
// is sent as CR CR LF again, and exporters.Canonicalize of the stored
// message gives the body back byte for byte.
type crlfWriter struct {
	w   io.Writer
	buf []byte
	n   int64 // bytes written to w
}

func (c *crlfWriter) write(p []byte) error {
	out := c.buf[:0]
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			out = append(out, p...)
			break
		}
		out = append(out, p[:i]...)
		out = append(out, '\r', '\n')
		p = p[i+1:]
	}
	c.buf = out[:0]
	n, err := c.w.Write(out)
	c.n += int64(n)
	return err
}

// hashCanonical returns the lower-case hex sha256 of r's bytes after
// CRLF->LF: the checksum popmigrate computes for a message read back.
func hashCanonical(r io.Reader) (string, error) {
	h := sha256.New()
	cw := exporters.NewCanonicalWriter(h)
	if _, err := io.Copy(cw, r); err != nil {
		return "", err
	}
	cw.Close()
	return hex.EncodeToString(h.Sum(nil)), nil
}

// canonicalReader reads r with every CRLF turned into LF.
type canonicalReader struct {
	r    io.Reader
	out  bytes.Buffer
	cw   *exporters.CanonicalWriter
	buf  []byte
	err  error
	tick func() // called after each read from r (watchdog progress)
}

func newCanonicalReader(r io.Reader, tick func()) *canonicalReader {
	cr := &canonicalReader{r: r, buf: make([]byte, 32<<10), tick: tick}
	cr.cw = exporters.NewCanonicalWriter(&cr.out)
	return cr
}

// reset makes cr read r from its start, keeping its buffers.
func (cr *canonicalReader) reset(r io.Reader, tick func()) {
	cr.r, cr.err, cr.tick = r, nil, tick
	cr.out.Reset()
	cr.cw = exporters.NewCanonicalWriter(&cr.out)
}

func (cr *canonicalReader) Read(p []byte) (int, error) {
	for cr.out.Len() == 0 && cr.err == nil {
		n, err := cr.r.Read(cr.buf)
		if cr.tick != nil {
			cr.tick()
		}
		cr.cw.Write(cr.buf[:n])
		if err != nil {
			cr.cw.Close()
			cr.err = err
		}
	}
	if cr.out.Len() > 0 {
		return cr.out.Read(p)
	}
	return 0, cr.err
}

// internalDate picks the INTERNALDATE of a message per policy
// (DateFromReceived, DateFromDate or DateFromDownload): mailhdr's date of
// its header h, the date every destination gives the message (the
// mbox From_ line, the .eml file name), with downloaded (or now, when it
// is zero) as the fallback. It is in UTC.
func internalDate(policy string, h mailhdr.Header, downloaded time.Time) time.Time {
	if downloaded.IsZero() {
		downloaded = time.Now()
	}
	return h.Date(mailhdr.Policy(policy), downloaded)
}

// messageID returns the message's Message-ID for a SEARCH HEADER, or ""
// when it has none usable (absent, too long, not printable ASCII).
func messageID(h mailhdr.Header) string {
	id := h.Get("Message-ID")
	if id == "" || len(id) > maxMessageID {
		return ""
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x20 || id[i] > 0x7e {
			return ""
		}
	}
	return id
}
