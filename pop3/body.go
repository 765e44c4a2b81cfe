package pop3

import (
	"fmt"
	"io"

	"github.com/popmigrate/popmigrate/pop3/internal/wire"
)

// Body is the stream of one RETR or TOP response: the message after
// dot-unstuffing, line endings as on the wire. It is an io.ReadCloser.
// Read returns io.EOF after the terminating line; errors are sticky and,
// except at EOF, leave the client unusable.
type Body struct {
	c       *Client
	verb    string
	id      int
	dr      *wire.DotReader
	max     int64
	n       int64
	done    bool
	err     error
	release func() // unbinds the context once the body is finished
}

// openBody starts reading a body; the client refuses other commands until
// the body is finished.
func (c *Client) openBody(verb string, id int, release func()) *Body {
	b := &Body{
		c:       c,
		verb:    verb,
		id:      id,
		dr:      wire.NewDotReader(c.br),
		max:     c.opts.MaxMessageSize,
		release: release,
	}
	c.body = b
	return b
}

// ID returns the message number the body belongs to.
func (b *Body) ID() int { return b.id }

// WireBytes returns the number of bytes delivered so far, after
// dot-unstuffing and with line endings as received. Once the body is read
// to EOF it is comparable to the size LIST reported.
func (b *Body) WireBytes() int64 { return b.n }

// Read reads the next bytes of the message.
func (b *Body) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.done {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if room := b.max - b.n; int64(len(p)) > room {
		if room == 0 {
			// Exactly at the limit: anything but the terminator is too much.
			var one [1]byte
			k, err := b.dr.Read(one[:])
			switch {
			case k > 0:
				return 0, b.fail(fmt.Errorf("pop3: %s: %w (over %d bytes)", label(b.verb, b.id), ErrMessageTooLarge, b.max))
			case err == io.EOF:
				b.finish()
				return 0, io.EOF
			case err != nil:
				return 0, b.fail(b.c.ioError(label(b.verb, b.id), err))
			}
			return 0, nil
		}
		p = p[:room]
	}
	k, err := b.dr.Read(p)
	b.n += int64(k)
	if err == nil && b.dr.Done() {
		err = io.EOF
	}
	switch {
	case err == io.EOF:
		b.finish()
		if k > 0 {
			return k, nil
		}
		return 0, io.EOF
	case err != nil:
		return k, b.fail(b.c.ioError(label(b.verb, b.id), err))
	}
	return k, nil
}

// Close reads and discards the rest of the body, so that the next command
// can be sent, and returns any error met on the way. It is safe to call
// more than once.
func (b *Body) Close() error {
	if b.err != nil {
		return b.err
	}
	var buf [8192]byte
	for !b.done {
		if _, err := b.Read(buf[:]); err != nil && err != io.EOF {
			return err
		}
	}
	return nil
}

// finish marks the body complete and frees the client for the next command.
func (b *Body) finish() {
	b.done = true
	b.c.body = nil
	if b.release != nil {
		b.release()
	}
}

// fail records a fatal error (already wrapped and applied to the client).
func (b *Body) fail(err error) error {
	b.err = err
	if b.c.body == b {
		b.c.body = nil
	}
	_ = b.c.fatal(err)
	if b.release != nil {
		b.release()
	}
	return err
}
