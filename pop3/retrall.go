package pop3

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/popmigrate/popmigrate/pop3/internal/wire"
)

// DefaultWindow is the number of RETR commands RetrAll keeps in flight
// when the server offers PIPELINING and the caller passes window <= 0.
const DefaultWindow = 32

// RetrAll retrieves the messages ids in order and calls fn for each. When
// the server announces PIPELINING (RFC 2449) it keeps up to window RETR
// commands in flight (window <= 0 means DefaultWindow), refilled half a
// window at a time in one write; otherwise it sends one RETR at a time.
//
// In pipelined mode every "RETR n" is followed, in the same write, by a
// marker "LIST n". Once the body of n has been read to its terminating
// line, the marker's reply must be "+OK n size", with the size the
// session's last List reported for n when it listed n. A reply that does
// not fit means the server's replies no longer match the commands (for
// example a body line "." the server did not dot-stuff): the Body's Read
// fails with an error wrapping ErrOutOfSync instead of returning io.EOF.
// Without pipelining, bytes that arrive after a response and before the
// next RETR is sent mean the same; and since such bytes may also come a
// moment later, the next RETR is sent (strictly after the body's
// terminator, so still one command at a time) and the first line of its
// answer read before the body reports io.EOF: a line that is neither +OK
// nor -ERR is out of sync and fails the body. The last body gets a marker
// "LIST n" instead (one round trip per call). So a Body that returned io.EOF was
// complete and, as far as the client can tell, the answer to RETR of its
// own message; no other body is handed to fn after an out-of-sync one.
//
// RETRs sent with the login (Options.RetrAtLogin) count as sent when ids
// begin with them, in order, and this session's LIST listed them: their
// answers are handled as those of RETRs sent here (with their markers,
// even when the capabilities after login no longer offer PIPELINING),
// and RetrAll sends nothing before it has read them. The answers to the
// others are read and dropped before the answers to the RETRs sent
// here (a failure there is a *RetrError naming the number whose answer
// was dropped, Started true, or, after the last body, the plain error).
//
// fn gets either a body (err nil) or a per-message *Error for a "-ERR"
// answer to that RETR (body nil); such an error is not fatal and RetrAll
// goes on (in pipelined mode the marker after a "-ERR" may be "+OK n size"
// or "-ERR"; garbage is out of sync). The body is valid only during the
// call: fn may read all of it, part of it or none, and RetrAll drains the
// rest.
//
// If fn returns an error RetrAll stops and returns it as it is; when
// commands were still in flight or the body was not finished the client is
// then unusable, so Close it. The exception is an error that wraps the
// error the body's Read returned (the session broke inside the body): that
// is reported as the *RetrError below.
//
// When the session breaks (a network or protocol error, a timeout, replies
// out of sync, the end of ctx) RetrAll returns a *RetrError naming the
// message whose response was being waited for (Started false) or read
// (Started true), and the client is unusable. A failure inside the body of
// n or at its marker is RetrError{ID: n, Started: true}. When the body of n
// was complete but its marker could not be read (the connection dropped or
// timed out right after the body; Read returned io.EOF), the error is
// reported as RetrError{ID: next, Started: false} for the id after n, or,
// when n was the last id, as the plain error, not a *RetrError: every body
// was then delivered. errors.Is(err, ErrTimeout) and the like see through
// RetrError. Errors found before any RETR is sent (bad ids, CAPA failing,
// an unusable client, ctx already done) are returned as they are.
func (c *Client) RetrAll(ctx context.Context, ids []int, window int, fn func(id int, body *Body, err error) error) error {
	return c.fetchAll(ctx, "RETR", "", ids, window, fn)
}

// TopAll issues TOP id lines (RFC 1939 section 7) for the messages ids in
// order and calls fn with each answer: the headers, the blank line and the
// first lines lines of the body, as Top returns them. It pipelines, checks
// the replies' sync with LIST markers and reports errors exactly as
// RetrAll does (a *RetrError names the message of a broken session); a
// negative lines is refused before anything is sent.
func (c *Client) TopAll(ctx context.Context, ids []int, lines, window int, fn func(id int, body *Body, err error) error) error {
	if lines < 0 {
		return fmt.Errorf("pop3: TOP: %w: negative line count", ErrInvalidArgument)
	}
	return c.fetchAll(ctx, "TOP", " "+strconv.Itoa(lines), ids, window, fn)
}

// fetchAll is RetrAll and TopAll: it sends "verb id" + arg for every id.
func (c *Client) fetchAll(ctx context.Context, verb, arg string, ids []int, window int, fn func(id int, body *Body, err error) error) error {
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
	pipelined := caps.Pipelining()
	switch {
	case !pipelined:
		window = 1
	case window <= 0:
		window = DefaultWindow
	}
	release, err := c.start(ctx, verb, verb == "RETR")
	if err != nil {
		return err
	}
	defer release()
	// The RETRs sent with the login (Options.RetrAtLogin) that ids begin
	// with, each listed by this session's LIST, are taken as sent, each
	// with its marker (also when the capabilities after login no longer
	// offer PIPELINING: the server took them pipelined); the answers to
	// the others (extra) come next and are dropped. Nothing is sent here
	// before all of them are read: a command sent to a server that
	// hung up after answering some could have the answers still unread
	// thrown away (a reset), where before the first window was sent
	// only after the listing.
	early := c.ahead
	c.ahead = nil
	taken := 0
	for taken < len(early) && taken < len(ids) && ids[taken] == early[taken] {
		if _, listed := c.listSizes[ids[taken]]; !listed {
			break
		}
		taken++
	}
	extra := early[taken:]
	if taken == 0 && len(extra) > 0 {
		if _, err := c.dropAhead(extra); err != nil {
			return err
		}
		extra = nil
	}
	sent := taken
	// Refill in batches: once half the window has been answered, send
	// the next half in one write. One RETR per answer would cost the
	// server a wakeup and a TLS record per message. A window slot is a
	// RETR and its LIST marker.
	refill := max(window/2, 1)
	// lost is the I/O error that broke the session after a complete
	// response (its marker could not be read).
	var lost error
	// ahead is set in lockstep mode when a body's end already sent the
	// next RETR and read its status line (aheadErr: its -ERR).
	var (
		ahead    bool
		aheadErr *Error
	)
	for recv, id := range ids {
		if lost != nil {
			return &RetrError{ID: id, Err: lost}
		}
		if err := ctx.Err(); err != nil && recv > 0 {
			// Answers already buffered would otherwise still be handed
			// over; the first iteration was checked by begin.
			return &RetrError{ID: id, Err: c.fatal(fmt.Errorf("pop3: %s: %w", label(verb, id), err))}
		}
		if recv == taken && len(extra) > 0 {
			if n, err := c.dropAhead(extra); err != nil {
				return &RetrError{ID: n, Started: true, Err: err}
			}
			extra = nil
		}
		if ahead {
			sent = recv + 1
		} else if recv >= taken && sent < len(ids) && sent-recv <= window-refill {
			for sent < recv+window && sent < len(ids) {
				line := verb + " " + strconv.Itoa(ids[sent]) + arg
				c.queue(line, line)
				if pipelined {
					marker := "LIST " + strconv.Itoa(ids[sent])
					c.queue(marker, marker)
				}
				sent++
			}
			if err := c.flush(label(verb, id)); err != nil {
				return &RetrError{ID: id, Err: err}
			}
		}
		// alone: nothing was sent after this RETR (always so in lockstep),
		// so nothing may follow its response.
		alone := sent == recv+1 && len(extra) == 0
		var err error
		if ahead {
			ahead, err = false, nil
			if aheadErr != nil {
				err, aheadErr = aheadErr, nil
			}
		} else {
			_, err = c.status(verb, id)
		}
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				var pre *ProtocolError
				started := errors.As(err, &pre) || errors.Is(err, ErrLineTooLong)
				return &RetrError{ID: id, Started: started, Err: err}
			}
			if pipelined || recv < taken {
				ioErr, syncErr := c.readMarker(id, true)
				if syncErr != nil {
					return &RetrError{ID: id, Started: true, Err: c.fatal(syncErr)}
				}
				lost = ioErr
			}
			if alone && lost == nil {
				if err := c.quiet(verb, id); err != nil {
					return &RetrError{ID: id, Started: true, Err: err}
				}
			}
			if ferr := fn(id, nil, pe); ferr != nil {
				return c.stopRetrAll(verb, ferr, !alone)
			}
			continue
		}
		b := c.openBody(verb, id, nil)
		b.marker = pipelined || recv < taken
		b.quiet = alone
		if !b.marker {
			var next int
			if recv+1 < len(ids) {
				next = ids[recv+1]
			}
			b.next = func() (ioErr, syncErr error) {
				st, ioErr, syncErr := c.lookahead(verb, arg, id, next)
				if ioErr == nil && syncErr == nil && next > 0 {
					ahead = true
					if !st.OK {
						aheadErr = &Error{Command: verb, ID: next, Code: st.Code, Text: st.Text}
					}
				}
				return ioErr, syncErr
			}
		}
		if ferr := fn(id, b, nil); ferr != nil {
			if b.err != nil && errors.Is(ferr, b.err) {
				return &RetrError{ID: id, Started: true, Err: b.err}
			}
			if !b.done && b.err == nil {
				c.body = nil
				return c.stopRetrAll(verb, ferr, true)
			}
			return c.stopRetrAll(verb, ferr, !alone || ahead)
		}
		if err := b.Close(); err != nil {
			return &RetrError{ID: id, Started: true, Err: err}
		}
		lost = b.markerErr
	}
	if lost == nil && len(extra) > 0 {
		// Every body was delivered; the answers after them are dropped.
		_, err := c.dropAhead(extra)
		if err == nil {
			err = c.quiet(verb, extra[len(extra)-1])
		}
		return err
	}
	return lost
}

// stopRetrAll ends RetrAll early with the caller's error; when the session
// is out of step (responses pending) the client is made unusable.
func (c *Client) stopRetrAll(verb string, err error, outOfStep bool) error {
	if outOfStep {
		_ = c.fatal(fmt.Errorf("pop3: %s: stopped with responses pending: %w", verb, err))
	}
	return err
}

// lookahead runs in lockstep RetrAll (TopAll) after the terminator of the
// body of id: it sends "RETR next" ("TOP next" + arg) and reads its status line, or, when next is 0
// (id was the last), sends the marker "LIST id" and checks it. A status
// line that is neither +OK nor -ERR is out of sync: the rest of a body the
// server ended early. ioErr is an I/O error (the body of id is complete,
// the session is broken); syncErr wraps ErrOutOfSync.
func (c *Client) lookahead(verb, arg string, id, next int) (st wire.Status, ioErr, syncErr error) {
	if next == 0 {
		line := "LIST " + strconv.Itoa(id)
		if err := c.send(line, line, line); err != nil {
			return st, err, nil
		}
		ioErr, syncErr = c.readMarker(id, false)
		return st, ioErr, syncErr
	}
	cmd := verb + " " + strconv.Itoa(next) + arg
	if err := c.send(cmd, cmd, cmd); err != nil {
		return st, err, nil
	}
	line, long, err := c.rawLine(cmd, false)
	switch {
	case err != nil:
		return st, c.ioError(cmd, err), nil
	case long > 0:
		return st, nil, fmt.Errorf("pop3: %s %d: %w: %s after its body answered a line over %d bytes", verb, id, ErrOutOfSync, cmd, c.opts.MaxLineLength)
	}
	st, ok := wire.ParseStatus(line)
	if !ok {
		return st, nil, fmt.Errorf("pop3: %s %d: %w: %s after its body answered %q (expected +OK or -ERR)", verb, id, ErrOutOfSync, cmd, truncate(string(line), 80))
	}
	return st, nil, nil
}
