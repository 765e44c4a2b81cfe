package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/popmigrate/popmigrate/journal"
)

// errLeaseLost is the cause of an account context that ended because the
// account's lease was taken over: the account stops before it writes to a
// destination again.
var errLeaseLost = errors.New("the account's lease in the journal was taken over by another popmigrate; stopped before writing again")

// heldLease is an account lease and its heartbeat.
type heldLease struct {
	l    *journal.Lease
	stop func()
	done chan struct{}
}

// takeLease acquires account's lease for this process (waiting for it when
// wait is set), starts its heartbeat and returns a context that ends when
// the lease is lost, together with the lease. Call release when the
// account is done. The error names the holder when another process has
// the account.
func (r *runner) takeLease(ctx context.Context, account string, wait bool) (context.Context, *heldLease, error) {
	o := &r.opts
	var (
		l   *journal.Lease
		err error
	)
	poll := leasePoll(o.LeaseTTL)
	for {
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
	h := &heldLease{l: l, done: make(chan struct{})}
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
			err := r.j.RenewLease(lctx, l)
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

// leasePoll is how often a process asks again for a lease another one
// holds: often enough to take a dead holder's accounts over soon after the
// expiry (ttl), seldom enough not to load a shared journal.
func leasePoll(ttl time.Duration) time.Duration {
	return min(ttl/4, 2*time.Second)
}

// release stops the heartbeat and gives the lease up.
func (r *runner) releaseLease(ctx context.Context, h *heldLease) {
	if h == nil {
		return
	}
	h.stop()
	if err := r.j.ReleaseLease(context.WithoutCancel(ctx), h.l); err != nil {
		r.opts.Logger.Warn("releasing the account's lease", "account", h.l.Account, "error", err)
	}
}

// leaseErr turns a journal error of a fenced commit into the account's
// error when the lease was lost: the other accounts go on.
func leaseErr(err error) error {
	if errors.Is(err, journal.ErrLeaseLost) {
		return fmt.Errorf("%w: %w", errLeaseLost, err)
	}
	return &journalError{err}
}
