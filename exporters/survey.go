package exporters

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
)

// Surveyor is implemented by destinations that can describe every message
// they hold by its header block, without reading the bodies, so that a
// journal can be rebuilt from a destination that cannot tell popmigrate's
// message key (an IMAP folder holds the messages byte for byte, with no
// name of popmigrate's). A destination whose Lister gives every copy's key
// needs no Surveyor: its copies are matched by key.
type Surveyor interface {
	// Survey returns every message the destination holds for account,
	// in no particular order, each with the HeaderSum of its header
	// block. A destination that holds one account only returns
	// everything it holds whatever account is. Survey reads the
	// destination as it is now and changes nothing in it (no flag is
	// set, nothing is created).
	Survey(ctx context.Context, account string) ([]Surveyed, error)
}

// Surveyed is one message a Surveyor found.
type Surveyed struct {
	// Ref is the message's reference, as Put returns it and
	// Opener.Open accepts it.
	Ref string
	// HeaderSHA256 is the HeaderSum of the message as stored.
	HeaderSHA256 string
	// Size is the message's size as the destination counts it (an IMAP
	// server's RFC822.SIZE counts every line end as CRLF), or -1 when
	// unknown. It is a hint: a match is decided on the copy read back.
	Size int64
}

// MaxHeaderBlock bounds the header block HeaderSum hashes, in canonical
// bytes. A header block longer than that is hashed up to the bound, on
// every side alike.
const MaxHeaderBlock = 256 << 10

// HeaderSum returns the sha256 (lower-case hex) of the header block of the
// message r holds, in canonical form (see Canonicalize): the bytes from
// the start up to and including the LF that ends the last header line,
// without the empty line after it. A message that starts with an empty
// line has an empty header block; one without an empty line is all
// header. So the answer to POP3's TOP n 0 (RFC 1939 section 7: the
// headers and the blank line), an IMAP server's BODY[HEADER] (RFC 3501
// section 6.4.5: the header fields and the blank line) and the whole
// stored copy of the same message give the same sum. HeaderSum reads r
// only up to the end of the header block (at most a few KiB past it, and
// never more than 2*MaxHeaderBlock bytes); the caller drains or closes r.
func HeaderSum(r io.Reader) (string, error) {
	var hc headerCollector
	cw := NewCanonicalWriter(&hc)
	buf := make([]byte, 4<<10)
	var read int64
	for !hc.done && read < 2*MaxHeaderBlock {
		n, err := r.Read(buf)
		read += int64(n)
		cw.Write(buf[:n]) // headerCollector never fails
		if err == io.EOF {
			cw.Close()
			break
		}
		if err != nil {
			return "", err
		}
	}
	b := hc.b
	if end := headerEnd(b); end >= 0 {
		b = b[:end]
	}
	if len(b) > MaxHeaderBlock {
		b = b[:MaxHeaderBlock]
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:]), nil
}

// headerCollector keeps the canonical bytes written to it until they
// hold the end of the header block or MaxHeaderBlock of them.
type headerCollector struct {
	b    []byte
	done bool
}

func (c *headerCollector) Write(p []byte) (int, error) {
	if !c.done {
		room := MaxHeaderBlock + 1 - len(c.b)
		c.b = append(c.b, p[:min(len(p), room)]...)
		c.done = len(c.b) > MaxHeaderBlock || headerEnd(c.b) >= 0
	}
	return len(p), nil
}

// headerEnd returns the length of the header block of canonical b (up to
// and including the LF before the empty line), 0 when b starts with the
// empty line, or -1 when b holds no end of it yet.
func headerEnd(b []byte) int {
	if len(b) > 0 && b[0] == '\n' {
		return 0
	}
	if i := bytes.Index(b, []byte("\n\n")); i >= 0 {
		return i + 1
	}
	return -1
}
