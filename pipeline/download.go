package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/pop3"
)

// fetched is one message handed from the downloader to the writer: a
// spooled body, or the error that prevented its download.
type fetched struct {
	p    *planned
	body *spooled
	wire int64 // octets as received (CRLF), to compare with LIST
	err  error
}

// errTooLarge ends a session after a message over the size cap: the POP3
// client cannot skip the rest of it, so the session is retried without it.
var errTooLarge = errors.New("message over the size cap; reconnecting without it")

// download retrieves the planned messages (pipelined when the server
// allows) and stores them. The downloader and the writer run concurrently:
// while one message is written and synced, the next ones arrive.
func (ar *accountRun) download(ctx context.Context, c *pop3.Client, plan []planned) error {
	byID := make(map[int]*planned, len(plan))
	ids := make([]int, 0, len(plan))
	for i := range plan {
		p := &plan[i]
		if ar.skip[p.uidl] {
			continue
		}
		byID[p.id] = p
		ids = append(ids, p.id)
	}
	ch := make(chan fetched, 2)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return ar.writer(gctx, ch) })

	send := func(f fetched) error {
		select {
		case ch <- f:
			return nil
		case <-gctx.Done():
			if f.body != nil {
				f.body.Release()
			}
			return gctx.Err()
		}
	}
	rerr := c.RetrAll(gctx, ids, ar.r.opts.Window, func(id int, body *pop3.Body, err error) error {
		p, ok := byID[id]
		if !ok {
			return fmt.Errorf("retr: server answered for message %d, which was not asked for", id)
		}
		if err != nil {
			return send(fetched{p: p, err: fmt.Errorf("retr %d (uidl %q): %w", id, p.uidl, err)})
		}
		sp, err := ar.r.spool.fill(body)
		if err != nil {
			if errors.Is(err, pop3.ErrMessageTooLarge) {
				ar.skip[p.uidl] = true
				send(fetched{p: p, err: fmt.Errorf("retr %d (uidl %q): %w", id, p.uidl, err)})
				return errTooLarge
			}
			return fmt.Errorf("retr %d (uidl %q): %w", id, p.uidl, err)
		}
		return send(fetched{p: p, body: sp, wire: body.WireBytes()})
	})
	close(ch)
	werr := g.Wait()
	// A writer that stopped early leaves bodies in ch: free their memory
	// and spool files now rather than at the next GC.
	for f := range ch {
		if f.body != nil {
			f.body.Release()
		}
	}
	if werr != nil {
		return werr
	}
	return rerr
}

// writer Puts each fetched message into the destinations that lack it and
// group-commits: every BatchSize messages or BatchInterval, each written
// destination is Synced, then one journal transaction records the batch.
// Messages that arrived before a download error are still committed.
func (ar *accountRun) writer(ctx context.Context, ch <-chan fetched) error {
	o := &ar.r.opts
	var (
		batch   journal.Batch
		done    []func() // report updates, applied once the batch commits
		dirty   = make([]bool, len(ar.dests))
		timer   = time.NewTimer(time.Hour)
		timerOn bool
	)
	timer.Stop()
	defer timer.Stop()
	// Sync and Commit are bounded (local writes, or an IMAP server's
	// answers within its timeout); they run even when ctx is cancelled so
	// that what was written before an interrupt is recorded rather than
	// downloaded again.
	wctx := context.WithoutCancel(ctx)
	commit := func() error {
		if timerOn {
			timer.Stop()
			timerOn = false
		}
		if batch.Len() == 0 {
			return nil
		}
		for i, d := range ar.dests {
			if !dirty[i] {
				continue
			}
			if err := d.Sync(wctx); err != nil {
				return &destError{dest: ar.ids[i], err: fmt.Errorf("sync: %w", err)}
			}
			dirty[i] = false
			// The destination's resume state goes into the same
			// transaction as the deliveries it covers.
			if rs, ok := d.(exporters.Resumable); ok {
				batch.DestState(ar.a.Name, ar.ids[i], rs.CommitState())
			}
		}
		if h := o.hooks.afterSync; h != nil {
			h(ar.r.syncCount.next())
		}
		if err := ar.r.j.Commit(wctx, &batch); err != nil {
			return &journalError{err}
		}
		if h := o.hooks.afterCommit; h != nil {
			h(ar.r.commitCount.next())
		}
		for _, f := range done {
			f()
		}
		done = done[:0]
		batch.Reset()
		return nil
	}
	for {
		select {
		case f, ok := <-ch:
			if !ok {
				return commit()
			}
			if err := ar.store(ctx, f, &batch, &done, dirty); err != nil {
				// Interrupted: what was Put before still gets its
				// Sync and commit, as wctx promises.
				if ctx.Err() != nil {
					if cerr := commit(); cerr != nil {
						return cerr
					}
				}
				return err
			}
			if batch.Len() >= o.BatchSize {
				if err := commit(); err != nil {
					return err
				}
			} else if !timerOn && batch.Len() > 0 {
				timer.Reset(o.BatchInterval)
				timerOn = true
			}
		case <-timer.C:
			timerOn = false
			if err := commit(); err != nil {
				return err
			}
		}
	}
}

// store Puts one fetched message into every destination that lacks it and
// adds the outcome to the batch. A destination that fails for this message
// does not undo the others: the journal records which destinations hold it.
func (ar *accountRun) store(ctx context.Context, f fetched, batch *journal.Batch, done *[]func(), dirty []bool) error {
	name, uidl := ar.a.Name, f.p.uidl
	rep := ar.rep
	if f.err != nil {
		batch.Failed(name, uidl, f.err.Error())
		*done = append(*done, func() { rep.fail(uidl, f.err) })
		return nil
	}
	defer f.body.Release()
	if f.wire != f.p.size {
		listed, got := f.p.size, f.wire
		*done = append(*done, func() {
			rep.SizeMismatches = append(rep.SizeMismatches, SizeMismatch{UIDL: uidl, Listed: listed, Received: got})
		})
	}
	msg := &exporters.Message{
		Key:      exporters.MessageKey(name, uidl),
		Account:  name,
		UIDL:     uidl,
		Body:     f.body,
		SHA256:   f.body.sum,
		Received: time.Now(),
	}
	var (
		dels    []journal.Delivery
		failure error
	)
	for _, i := range f.p.missing {
		d, err := ar.dests[i].Put(ctx, msg)
		if h := ar.r.opts.hooks.afterPut; h != nil {
			h(ar.r.putCount.next())
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if failure == nil {
				failure = fmt.Errorf("message %d (uidl %q): destination %s: %w", f.p.id, uidl, ar.ids[i], err)
			}
			if path, ok := quarantined(err); ok {
				q := Quarantined{UIDL: uidl, Destination: ar.ids[i], Path: path, Reason: err.Error()}
				*done = append(*done, func() { rep.Quarantined = append(rep.Quarantined, q) })
			}
			continue
		}
		dirty[i] = true
		dels = append(dels, journal.Delivery{DestID: ar.ids[i], Ref: d.Ref, SHA256: msg.SHA256})
	}
	batch.Stored(journal.StoredMessage{
		Account:      name,
		UIDL:         uidl,
		ReceivedSize: f.wire,
		SHA256:       msg.SHA256,
		Deliveries:   dels,
		Complete:     failure == nil,
	})
	size := f.body.Size()
	if failure != nil {
		batch.Failed(name, uidl, failure.Error())
		*done = append(*done, func() { rep.fail(uidl, failure) })
	} else {
		*done = append(*done, func() {
			rep.Stored++
			rep.StoredBytes += size
			ar.storedNow[uidl] = true
			rep.succeed(uidl)
		})
	}
	ar.r.opts.Progress.MessageDone(name, size)
	return nil
}
