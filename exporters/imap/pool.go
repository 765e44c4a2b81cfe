package imap

import (
	"context"
	"fmt"

	"github.com/popmigrate/popmigrate/exporters"
)

// acquire returns a connection for the caller's exclusive use, opening one
// when none is idle and fewer than Options.Conns are open. The caller
// hands it back with release.
func (e *Exporter) acquire(ctx context.Context) (*conn, error) {
	for {
		select {
		case c := <-e.idle:
			if c.isDead() {
				e.discard(c)
				continue
			}
			return c, nil
		default:
		}
		select {
		case c := <-e.idle:
			if c.isDead() {
				e.discard(c)
				continue
			}
			return c, nil
		case e.slots <- struct{}{}:
			c, err := e.connect(ctx)
			if err != nil {
				<-e.slots
				return nil, err
			}
			e.mu.Lock()
			closed := e.closed
			if !closed {
				e.conns[c] = struct{}{}
			}
			e.mu.Unlock()
			if closed {
				c.close()
				<-e.slots
				return nil, exporters.ErrClosed
			}
			return c, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-e.closing:
			return nil, exporters.ErrClosed
		}
	}
}

// connect opens a connection and EXAMINEs the folder, checking that its
// UIDVALIDITY has not changed.
func (e *Exporter) connect(ctx context.Context) (*conn, error) {
	c, err := e.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", e.opts.Addr, err)
	}
	e.mu.Lock()
	gen := e.gen
	e.mu.Unlock()
	sel, err := c.examine(ctx, e.mailbox)
	if err == nil && sel.UIDValidity != e.uidValidity {
		err = e.uidValidityErr(sel.UIDValidity, e.uidValidity)
	}
	if err != nil {
		c.close()
		return nil, err
	}
	c.gen = gen
	e.mu.Lock()
	e.uidNext = max(e.uidNext, sel.UIDNext)
	e.mu.Unlock()
	return c, nil
}

func (e *Exporter) uidValidityErr(now, was uint32) error {
	return fmt.Errorf("%w: folder %q has UIDVALIDITY %d, not %d: it was deleted and created again, and the stored references no longer name its messages",
		ErrUIDValidity, e.mailbox, now, was)
}

// release hands c back to the pool, or closes it if it is broken or the
// Exporter is closed.
func (e *Exporter) release(c *conn) {
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed || c.isDead() {
		e.discard(c)
		return
	}
	e.idle <- c
}

func (e *Exporter) discard(c *conn) {
	c.close()
	e.mu.Lock()
	delete(e.conns, c)
	e.mu.Unlock()
	<-e.slots
}

// enter registers a Put; it waits while a Sync is draining the Puts in
// flight.
func (e *Exporter) enter(ctx context.Context) error {
	e.mu.Lock()
	for e.gate != nil && !e.closed {
		g := e.gate
		e.mu.Unlock()
		select {
		case <-g:
		case <-ctx.Done():
			return ctx.Err()
		}
		e.mu.Lock()
	}
	defer e.mu.Unlock()
	if e.closed {
		return exporters.ErrClosed
	}
	e.started = true
	e.inflight++
	return nil
}

// leave ends a Put that returned err.
func (e *Exporter) leave(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.inflight--
	if e.gate != nil && err != nil && !IsRejected(err) && e.syncErr == nil {
		e.syncErr = err
	}
	if e.inflight == 0 && e.drained != nil {
		close(e.drained)
		e.drained = nil
	}
}
