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
//
// io.EOF is the promise that the body is complete and that the session was
// in sync when it ended. When nothing else is in flight (Retr, Top, and
// RetrAll without pipelining or for the last command in flight), bytes that
// arrived after the terminating line, before any further command was sent,
// make Read fail with an error wrapping ErrOutOfSync instead. In pipelined
// RetrAll each body is also confirmed by the reply to the LIST marker sent
// after its RETR (see RetrAll); a marker reply that does not fit fails
// Read with ErrOutOfSync too.
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

	marker    bool  // read and check the reply to "LIST id" after the terminator
	quiet     bool  // nothing else is in flight: bytes after the end mean out of sync
	markerErr error // the marker could not be read (I/O): body complete, session broken
	// next, in lockstep RetrAll, sends the command after this body once
	// its terminator has arrived, and reads the first line of the answer:
	// the next RETR's status, or a LIST marker after the last body. A line
	// that does not fit is out of sync and fails the body; an I/O error
	// leaves the body complete and breaks the session, as for markers.
	next func() (ioErr, syncErr error)
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
				if err := b.end(); err != nil {
					return 0, err
				}
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
		if err := b.end(); err != nil {
			// The bytes are handed over; the next Read reports the error.
			return k, nil
		}
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

// end runs the checks due after the terminating line (the marker reply, or
// that nothing more arrived) and finishes the body. It returns the error
// that replaces io.EOF, already recorded and applied to the client.
func (b *Body) end() error {
	c := b.c
	if b.marker {
		ioErr, syncErr := c.readMarker(b.id, false)
		if syncErr != nil {
			return b.fail(syncErr)
		}
		if ioErr != nil {
			// The body is complete; only the session is lost. RetrAll
			// reports ioErr at its next step.
			b.markerErr = ioErr
			b.finish()
			return nil
		}
	}
	if b.quiet {
		if err := c.outOfSyncIfBuffered(b.verb, b.id); err != nil {
			return b.fail(err)
		}
	}
	if b.next != nil {
		ioErr, syncErr := b.next()
		if syncErr != nil {
			return b.fail(syncErr)
		}
		b.markerErr = ioErr
	}
	b.finish()
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
