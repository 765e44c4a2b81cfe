package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/popmigrate/popmigrate/journal"
)

// errLeaseLost is the cause of an account context that ended because the
// account's lease was taken over: the account stops before it writes to a
// destination again.
var errLeaseLost = errors.New("the account's lease in the journal was taken over by another popmigrate; stopped before writing again")

// heldLease is an account lease and its heartbeat.
//
// The journal's fence (a commit carries the lease's epoch) keeps a process
// whose lease was taken over from recording anything; it cannot keep it
// from writing to a destination, which knows nothing of leases. So a
// holder also fences itself before every destination write (see check):
// it writes only while it renewed the lease less than three quarters of
// the TTL ago, and otherwise asks the journal first. A process that was
// paused past its expiry (SIGSTOP, a VM frozen, a GC pause) wakes up with
// a stale lease and learns from the journal whether another took the
// account over before it writes another byte. The quarter of the TTL left
// is the margin for the clocks of the workers, which decide expiry each by
// its own: keep them within TTL/4 of each other (NTP does far better).
type heldLease struct {
	l      *journal.Lease
	j      *journal.Journal
	stop   func()
	cancel context.CancelCauseFunc
	done   chan struct{}

	mu    sync.Mutex
	fresh time.Time // writes need no word from the journal before this

	renewing sync.Mutex // held by the check that renews a stale lease
}

// isFresh reports whether writes need no word from the journal now.
func (h *heldLease) isFresh() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return time.Now().Before(h.fresh)
}

// renewed notes a renewal that began at t (a heartbeat, a fenced commit).
func (h *heldLease) renewed(t time.Time) {
	if h == nil {
		return
	}
	ttl := h.l.TTL
	h.mu.Lock()
	defer h.mu.Unlock()
	if f := t.Add(ttl - ttl/4); f.After(h.fresh) {
		h.fresh = f
	}
}

// check returns nil when the account is still this process's to write
// to: at once while the lease is fresh, else after renewing it in the
// journal. When another process took the account over it ends the
// account's context and returns an error wrapping errLeaseLost; when the
// journal cannot say, that error, and nothing may be written either. A
// nil h (verify) always passes.
func (h *heldLease) check(ctx context.Context) error {
	if h == nil {
		return nil
	}
	if h.isFresh() {
		return nil
	}
	// One renewal for all the writers that found the lease stale at once
	// (every connection of a destination, after a pause): the others wait
	// for it and find the lease fresh.
	h.renewing.Lock()
	defer h.renewing.Unlock()
	if h.isFresh() {
		return nil
	}
	began := time.Now()
	err := h.j.RenewLease(context.WithoutCancel(ctx), h.l)
	switch {
	case errors.Is(err, journal.ErrLeaseLost):
		h.cancel(errLeaseLost)
		return fmt.Errorf("%w: %w", errLeaseLost, err)
	case err != nil:
		return &journalError{fmt.Errorf("the account's lease was not renewed for %v and the journal cannot confirm it; nothing more is written: %w",
			h.l.TTL-h.l.TTL/4, err)}
	}
	h.renewed(began)
	return nil
}

// takeLease acquires account's lease for this process (waiting for it when
// wait is set), starts its heartbeat and returns a context that ends when
// the lease is lost, together with the lease. Call release when the
// account is done. The error names the holder when another process has
// the account.
func (r *runner) takeLease(ctx context.Context, account string, wait bool) (context.Context, *heldLease, error) {
	o := &r.opts
	var (
		l     *journal.Lease
		err   error
		began time.Time
	)
	poll := leasePoll(o.LeaseTTL)
	for {
		began = time.Now()
		l, err = r.j.AcquireLease(ctx, account, o.Holder, o.LeaseTTL)
		var held *journal.LeaseHeldError
		if err == nil || !errors.As(err, &held) || !wait {
			break
		}
		o.Logger.Info("waiting for the account's lease", "account", account, "holder", held.Holder.String())
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, nil, fmt.Errorf("waiting for the lease of account %q held by %s: %w", account, held.Holder, ctx.Err())
		case <-t.C:
		}
	}
	if err != nil {
		var held *journal.LeaseHeldError
		if errors.As(err, &held) {
			return nil, nil, err
		}
		return nil, nil, &journalError{err}
	}
	lctx, cancel := context.WithCancelCause(ctx)
	h := &heldLease{l: l, j: r.j, cancel: cancel, done: make(chan struct{})}
	h.renewed(began)
	stopBeat := make(chan struct{})
	h.stop = func() { close(stopBeat); <-h.done; cancel(nil) }
	go func() {
		defer close(h.done)
		t := time.NewTicker(max(o.LeaseTTL/3, time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-stopBeat:
				return
			case <-lctx.Done():
				return
			case <-t.C:
			}
			began := time.Now()
			err := r.j.RenewLease(lctx, l)
			if err == nil {
				h.renewed(began)
			}
			switch {
			case errors.Is(err, journal.ErrLeaseLost):
				o.Logger.Warn("lease lost", "account", account, "error", err)
				cancel(errLeaseLost)
				return
			case err != nil && lctx.Err() == nil:
				// A busy journal: the next beat (or a fenced
				// commit) renews it.
				o.Logger.Warn("renewing the account's lease", "account", account, "error", err)
			}
		}
	}()
	return lctx, h, nil
}

// maxLeaseLosses is how often a run puts an account back after losing its
// lease before it reports the loss as the account's error.
const maxLeaseLosses = 3

// leasePoll is how often a process asks again for a lease another one
// holds: often enough to take a dead holder's accounts over soon after the
// expiry (ttl), seldom enough not to load a shared journal.
func leasePoll(ttl time.Duration) time.Duration {
	return min(ttl/4, 2*time.Second)
}

// heldPoll is when a run asks again, for the n-th time, for an account
// another process holds: 100 ms, doubling up to leasePoll, so that a
// worker waiting for a small account another one is finishing does not
// wait a whole poll interval for it, and one waiting for a big one does
// not load the journal.
func heldPoll(n int, ttl time.Duration) time.Duration {
	d := 100 * time.Millisecond
	for i := 1; i < n && d < leasePoll(ttl); i++ {
		d *= 2
	}
	return min(d, leasePoll(ttl))
}

// releaseLease stops the heartbeat and gives the lease up. With record,
// it also records *record as the account's error, in the same transaction
// (journal.FinishAccount), and returns that transaction's failure; without,
// a failure to release is logged (the lease then expires) and nil
// returned.
func (r *runner) releaseLease(ctx context.Context, h *heldLease, record *string) error {
	if h == nil {
		return nil
	}
	h.stop()
	ctx = context.WithoutCancel(ctx)
	if record != nil {
		return r.j.FinishAccount(ctx, h.l, *record)
	}
	if err := r.j.ReleaseLease(ctx, h.l); err != nil {
		r.opts.Logger.Warn("releasing the account's lease", "account", h.l.Account, "error", err)
	}
	return nil
}

// leaseErr turns a journal error of a fenced commit into the account's
// error when the lease was lost: the other accounts go on.
func leaseErr(err error) error {
	if errors.Is(err, journal.ErrLeaseLost) {
		return fmt.Errorf("%w: %w", errLeaseLost, err)
	}
	return &journalError{err}
}
