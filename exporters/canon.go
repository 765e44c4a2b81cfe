package exporters

import (
	"bytes"
	"io"
)

// CanonicalWriter turns every CRLF in the bytes written to it into LF and
// passes everything else through unchanged: a bare CR, a bare LF, NUL bytes
// and 8-bit bytes are kept as they are. This is the canonical form that
// popmigrate stores and checksums.
//
// A CR at the end of one Write is held back until the next Write or Close
// shows whether an LF follows it. Close flushes such a CR; it does not close
// the underlying writer.
type CanonicalWriter struct {
	w      io.Writer
	heldCR bool
	buf    []byte
}

// NewCanonicalWriter returns a CanonicalWriter writing to w.
func NewCanonicalWriter(w io.Writer) *CanonicalWriter {
	return &CanonicalWriter{w: w}
}

// Write converts p and writes the result. It returns len(p) on success.
func (c *CanonicalWriter) Write(p []byte) (int, error) {
	n := len(p)
	if n == 0 {
		return 0, nil
	}
	out := c.buf[:0]
	if c.heldCR {
		c.heldCR = false
		if p[0] != '\n' {
			out = append(out, '\r')
		}
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\r')
		if i < 0 {
			out = append(out, p...)
			break
		}
		out = append(out, p[:i]...)
		p = p[i+1:]
		if len(p) == 0 {
			c.heldCR = true
			break
		}
		if p[0] != '\n' {
			out = append(out, '\r')
		}
	}
	c.buf = out[:0]
	if len(out) > 0 {
		if _, err := c.w.Write(out); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// Close writes a CR held back by the last Write. It does not close the
// underlying writer.
func (c *CanonicalWriter) Close() error {
	if c.heldCR {
		c.heldCR = false
		_, err := c.w.Write([]byte{'\r'})
		return err
	}
	return nil
}

var crlf = []byte("\r\n")

// CanonicalizeInPlace turns every CRLF in p into LF in place and returns
// the result, a prefix of p; it allocates nothing. A CR at the end of p is
// left as it is: a caller converting a stream chunk by chunk keeps such a
// CR back and puts it before the next chunk, where an LF may follow it,
// and leaves it as it is at the end of the stream (as CanonicalWriter
// does).
func CanonicalizeInPlace(p []byte) []byte {
	i := bytes.Index(p, crlf)
	if i < 0 {
		return p
	}
	// w is where the next byte goes, r the LF of the CRLF found last.
	w, r := i, i+1
	for {
		j := bytes.Index(p[r+1:], crlf)
		if j < 0 {
			w += copy(p[w:], p[r:])
			return p[:w]
		}
		w += copy(p[w:], p[r:r+1+j])
		r += j + 2
	}
}

// Canonicalize returns b with every CRLF turned into LF.
func Canonicalize(b []byte) []byte {
	var out bytes.Buffer
	out.Grow(len(b))
	cw := NewCanonicalWriter(&out)
	cw.Write(b)
	cw.Close()
	return out.Bytes()
}
