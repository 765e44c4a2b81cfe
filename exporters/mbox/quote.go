package mbox

import (
	"bytes"
	"fmt"
	"io"
)

// fromPrefix is what a From_ line starts with, and what mboxrd quoting
// looks for after any number of '>' at the start of a body line.
const fromPrefix = "From "

// errUnquotedFrom is returned by an unquoting quoter for a body line that
// starts with "From " without any '>': in an mboxrd file such a line is a
// From_ line, so it cannot be inside a message.
var errUnquotedFrom = fmt.Errorf("%w: unquoted From_ line inside a message", ErrCorrupt)

// quoter applies mboxrd quoting (or removes it) to a stream of bytes, one
// chunk at a time, with O(1) state whatever the chunk boundaries:
//
//   - quoting: every line matching ^>*From  gets one more '>';
//   - unquoting: every line matching ^>+From  loses one '>'.
//
// Adding a '>' at the start of a run of '>' is the same as adding it at the
// end of the run, so a quoter passes '>' through as it sees them and only
// holds back a partial "From " (at most 4 bytes, kept as a count k since
// they are a prefix of fromPrefix). When unquoting it also holds back one
// '>' of the run: the one it drops if "From " follows.
//
// The zero quoter quotes and starts at the start of a line.
type quoter struct {
	unquote bool
	inLine  bool // past the prefix of the current line: copy up to the next LF
	gts     bool // the prefix of the current line has at least one '>'
	k       int  // bytes of fromPrefix matched after the '>' run
}

// transform appends the transformed src to dst and returns it. It returns
// errUnquotedFrom when unquoting a line "From ...".
func (q *quoter) transform(dst, src []byte) ([]byte, error) {
	for len(src) > 0 {
		if q.inLine {
			i := bytes.IndexByte(src, '\n')
			if i < 0 {
				return append(dst, src...), nil
			}
			dst = append(dst, src[:i+1]...)
			src = src[i+1:]
			q.inLine, q.gts, q.k = false, false, 0
			continue
		}
		c := src[0]
		switch {
		case q.k == 0 && c == '>':
			if !q.unquote || q.gts {
				// Unquoting emits the '>' held back so far and
				// holds this one instead: the same bytes.
				dst = append(dst, '>')
			}
			q.gts = true
			src = src[1:]
		case c == fromPrefix[q.k]:
			q.k++
			src = src[1:]
			if q.k < len(fromPrefix) {
				continue
			}
			if q.unquote {
				if !q.gts {
					return dst, errUnquotedFrom
				}
				// The '>' held back is the one removed.
			} else {
				dst = append(dst, '>')
			}
			dst = append(dst, fromPrefix...)
			q.inLine = true
		default:
			// Not a From line: release what was held back and copy
			// the rest of the line (c included) unchanged.
			dst = q.release(dst)
			q.inLine = true
		}
	}
	return dst, nil
}

// release appends the bytes held back in the prefix of the current line.
func (q *quoter) release(dst []byte) []byte {
	if q.unquote && q.gts {
		dst = append(dst, '>')
	}
	dst = append(dst, fromPrefix[:q.k]...)
	q.gts, q.k = false, 0
	return dst
}

// flush appends what is held back at the end of the stream: a last line
// without LF that is a prefix of a From line is not one.
func (q *quoter) flush(dst []byte) []byte {
	if !q.inLine {
		dst = q.release(dst)
	}
	q.inLine, q.gts, q.k = false, false, 0
	return dst
}

// unquoteReader reads an mboxrd-quoted message body from r and returns the
// original bytes.
type unquoteReader struct {
	r   io.Reader
	q   quoter
	in  []byte // read buffer
	out []byte // transformed bytes not yet returned
	pos int    // next byte of out to return
	err error  // sticky: io.EOF at the end
}

func newUnquoteReader(r io.Reader, bufSize int) *unquoteReader {
	return &unquoteReader{r: r, q: quoter{unquote: true}, in: make([]byte, bufSize)}
}

// Read implements io.Reader.
func (u *unquoteReader) Read(p []byte) (int, error) {
	for u.pos == len(u.out) {
		if u.err != nil {
			return 0, u.err
		}
		u.out, u.pos = u.out[:0], 0
		n, err := u.r.Read(u.in)
		if n > 0 {
			var terr error
			u.out, terr = u.q.transform(u.out, u.in[:n])
			if terr != nil {
				u.err = terr
				continue
			}
		}
		if err == io.EOF {
			u.out = u.q.flush(u.out)
			u.err = io.EOF
		} else if err != nil {
			u.err = err
		}
	}
	n := copy(p, u.out[u.pos:])
	u.pos += n
	return n, nil
}
