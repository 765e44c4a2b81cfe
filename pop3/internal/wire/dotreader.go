package wire

import (
	"bufio"
	"bytes"
	"io"
)

// DotReader reads the body of a multi-line POP3 response (RFC 1939 section
// 3) from a *bufio.Reader: it removes the byte-stuffed leading dot of each
// line and stops at the terminating line ".".
//
// Unlike net/textproto's DotReader it does not rewrite line endings: CRLF,
// bare LF and bare CR reach the caller exactly as they were on the wire. A
// line starts at the beginning of the body or after an LF. Lines have no
// length limit: the body is streamed, so the caller bounds the total.
//
// After the terminator Read returns io.EOF, leaving the bufio.Reader
// positioned just after it. If the stream ends before the terminator Read
// returns io.ErrUnexpectedEOF. Errors are sticky.
type DotReader struct {
	r     *bufio.Reader
	state int
	err   error
}

const (
	stateBeginLine = iota // at the start of a line
	stateDot              // read "." at the start of a line
	stateDotCR            // read ".\r" at the start of a line
	stateData             // inside a line
)

// dotLine is a line end followed by a line that starts with a dot.
var dotLine = []byte("\n.")

// NewDotReader returns a DotReader reading from r.
func NewDotReader(r *bufio.Reader) *DotReader {
	return &DotReader{r: r}
}

// Done reports whether the terminating line has been read.
func (d *DotReader) Done() bool { return d.err == io.EOF }

// Read reads unstuffed body bytes into p. It returns what it has rather
// than blocking for more once it has read at least one byte.
func (d *DotReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) && d.err == nil {
		if n > 0 && d.r.Buffered() == 0 {
			return n, nil
		}
		switch d.state {
		case stateBeginLine:
			c, err := d.r.ReadByte()
			if err != nil {
				d.fail(err)
				break
			}
			if c == '.' {
				d.state = stateDot
				break
			}
			_ = d.r.UnreadByte()
			d.state = stateData
		case stateDot:
			c, err := d.r.ReadByte()
			if err != nil {
				d.fail(err)
				break
			}
			switch c {
			case '\r':
				d.state = stateDotCR
			case '\n':
				// QUIRK: a sloppy server ends the body with ".\n" instead
				// of ".\r\n" (pop3.TestQuirkLFTerminator).
				d.err = io.EOF
			default:
				// The leading dot was stuffing: drop it, keep the rest.
				_ = d.r.UnreadByte()
				d.state = stateData
			}
		case stateDotCR:
			c, err := d.r.ReadByte()
			if err != nil {
				d.fail(err)
				break
			}
			if c == '\n' {
				d.err = io.EOF
				break
			}
			// ".\r" then something else: the dot was stuffing and the CR
			// is data.
			_ = d.r.UnreadByte()
			p[n] = '\r'
			n++
			d.state = stateData
		case stateData:
			if d.r.Buffered() == 0 {
				if _, err := d.r.Peek(1); err != nil {
					d.fail(err)
					break
				}
			}
			m := d.r.Buffered()
			if m > len(p)-n {
				m = len(p) - n
			}
			b, _ := d.r.Peek(m)
			// Copy through line ends whose next line is buffered and
			// does not start with a dot: only a line that does, or
			// whose first byte has not arrived, needs the states
			// above. One copy per chunk, not per line.
			if i := bytes.Index(b, dotLine); i >= 0 {
				b = b[:i+1]
				d.state = stateBeginLine
			} else if b[len(b)-1] == '\n' {
				d.state = stateBeginLine
			}
			n += copy(p[n:], b)
			_, _ = d.r.Discard(len(b))
		}
	}
	if n > 0 && d.err == io.EOF {
		return n, nil
	}
	if n > 0 && d.err != nil {
		// Report the bytes now and the error on the next call.
		return n, nil
	}
	return n, d.err
}

// fail records a read error; io.EOF before the terminator becomes
// io.ErrUnexpectedEOF.
func (d *DotReader) fail(err error) {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	d.err = err
}
