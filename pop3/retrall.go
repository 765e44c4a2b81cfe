package pop3

import (
	"context"
	"errors"
	"fmt"
	"strconv"
)

// DefaultWindow is the number of RETR commands RetrAll keeps in flight
// when the server offers PIPELINING and the caller passes window <= 0.
const DefaultWindow = 32

// RetrAll retrieves the messages ids in order and calls fn for each. When
// the server announces PIPELINING (RFC 2449) it keeps up to window RETR
// commands in flight (window <= 0 means DefaultWindow); otherwise it sends
// one RETR at a time.
//
// fn gets either a body (err nil) or a per-message *Error for a "-ERR"
// answer to that RETR (body nil); such an error is not fatal and RetrAll
// goes on. The body is valid only during the call: fn may read all of it,
// part of it or none, and RetrAll drains the rest. If fn returns an error
// RetrAll stops and returns it; when commands were still in flight or the
// body was not finished the client is then unusable, so Close it. A
// network or protocol error, a timeout or the end of ctx ends RetrAll
// with that error and leaves the client unusable.
func (c *Client) RetrAll(ctx context.Context, ids []int, window int, fn func(id int, body *Body, err error) error) error {
	const verb = "RETR"
	for _, id := range ids {
		if err := checkID(verb, id); err != nil {
			return err
		}
	}
	if len(ids) == 0 {
		return c.usable(verb)
	}
	caps, err := c.Capabilities(ctx)
	if err != nil {
		return err
	}
	switch {
	case !caps.Pipelining():
		window = 1
	case window <= 0:
		window = DefaultWindow
	}
	release, err := c.begin(ctx, verb)
	if err != nil {
		return err
	}
	defer release()
	sent := 0
	// Refill in batches: once half the window has been answered, send
	// the next half in one write. One RETR per answer would cost the
	// server a wakeup and a TLS record per message.
	refill := max(window/2, 1)
	for recv, id := range ids {
		if sent < len(ids) && sent-recv <= window-refill {
			for sent < recv+window && sent < len(ids) {
				line := "RETR " + strconv.Itoa(ids[sent])
				c.queue(line, line)
				sent++
			}
			if err := c.flush(label(verb, id)); err != nil {
				return err
			}
		}
		inFlight := sent > recv+1
		if _, err := c.status(verb, id); err != nil {
			var pe *Error
			if errors.As(err, &pe) {
				if ferr := fn(id, nil, pe); ferr != nil {
					return c.stopRetrAll(ferr, inFlight)
				}
				continue
			}
			return err
		}
		b := c.openBody(verb, id, nil)
		if ferr := fn(id, b, nil); ferr != nil {
			if !b.done && b.err == nil {
				c.body = nil
				return c.stopRetrAll(ferr, true)
			}
			return c.stopRetrAll(ferr, inFlight)
		}
		if err := b.Close(); err != nil {
			return err
		}
	}
	return nil
}

// stopRetrAll ends RetrAll early with the caller's error; when the session
// is out of step (responses pending) the client is made unusable.
func (c *Client) stopRetrAll(err error, outOfStep bool) error {
	if outOfStep {
		_ = c.fatal(fmt.Errorf("pop3: RETR: stopped with responses pending: %w", err))
	}
	return err
}
