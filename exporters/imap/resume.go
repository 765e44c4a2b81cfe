package imap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/emersion/go-imap/v2"

	"github.com/popmigrate/popmigrate/exporters"
)

// state is the journal state of the Exporter (see the package
// documentation).
type state struct {
	UIDValidity uint32   `json:"uidvalidity"`
	UIDNext     uint32   `json:"uidnext"`
	Open        bool     `json:"open"`
	Pending     []uint32 `json:"pending,omitempty"`
}

func (s state) encode() string {
	b, _ := json.Marshal(s)
	return string(b)
}

// ensureIntent saves the append intent in the journal before the first
// APPEND after a Sync or Resume: the folder's UIDVALIDITY and a UIDNEXT at
// or below the UID of every message this batch appends, so that a crash
// before the batch is committed finds them.
func (e *Exporter) ensureIntent(ctx context.Context) error {
	e.mu.Lock()
	save, saved := e.save, e.intentSaved
	e.mu.Unlock()
	if save == nil || saved {
		return nil
	}
	select {
	case e.intentSem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-e.intentSem }()
	e.mu.Lock()
	if e.intentSaved {
		e.mu.Unlock()
		return nil
	}
	st := e.stateLocked(true)
	e.mu.Unlock()
	if err := save(ctx, st.encode()); err != nil {
		return fmt.Errorf("record the append intent: %w", err)
	}
	e.mu.Lock()
	e.intentSaved, e.intentNext = true, imap.UID(st.UIDNext)
	e.mu.Unlock()
	return nil
}

// stateLocked describes what a resume must look at: UIDs from UIDNext
// when Open, and the Pending UIDs (messages in the folder that the journal
// may not record). intent asks for the state saved before an APPEND.
func (e *Exporter) stateLocked(intent bool) state {
	st := state{UIDValidity: e.uidValidity, UIDNext: uint32(e.uidNext), Open: intent}
	if e.intentSaved {
		st.Open = true
		st.UIDNext = min(st.UIDNext, uint32(e.intentNext))
	}
	for _, u := range e.uncertain {
		st.Open = true
		st.UIDNext = min(st.UIDNext, uint32(u.lo))
	}
	for _, uids := range e.found {
		for _, uid := range uids {
			st.Pending = append(st.Pending, uint32(uid))
		}
	}
	for _, uid := range e.claimed {
		st.Pending = append(st.Pending, uint32(uid))
	}
	slices.Sort(st.Pending)
	return st
}

// Sync waits for the Puts in flight (new Puts wait meanwhile) and closes
// the current batch: the next APPEND saves a new intent. Every Put that
// returned nil is already durable (the server's tagged OK). Sync returns
// the first error, other than a rejected message, of a Put it waited for.
func (e *Exporter) Sync(ctx context.Context) error {
	wrap := func(err error) error { return fmt.Errorf("imap: %s: sync: %w", e.id, err) }
	if e.opts.ReadOnly {
		return wrap(exporters.ErrReadOnly)
	}
	if err := ctx.Err(); err != nil {
		return wrap(err)
	}
	select {
	case e.syncSem <- struct{}{}:
	case <-ctx.Done():
		return wrap(ctx.Err())
	}
	defer func() { <-e.syncSem }()
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return wrap(exporters.ErrClosed)
	}
	gate := make(chan struct{})
	e.gate, e.syncErr = gate, nil
	var drained chan struct{}
	if e.inflight > 0 {
		drained = make(chan struct{})
		e.drained = drained
	}
	e.mu.Unlock()
	if drained != nil {
		select {
		case <-drained:
		case <-ctx.Done():
			e.mu.Lock()
			e.gate, e.drained = nil, nil
			close(gate)
			e.mu.Unlock()
			return wrap(ctx.Err())
		}
	}
	e.mu.Lock()
	err := e.syncErr
	e.intentSaved, e.claimed, e.syncErr, e.gate = false, nil, nil, nil
	close(gate)
	e.mu.Unlock()
	if err != nil {
		return wrap(fmt.Errorf("a Put in flight failed: %w", err))
	}
	return nil
}

// CommitState returns the state that describes everything synced so far:
// {"uidvalidity":N,"uidnext":N,"open":false} when nothing is outstanding.
// It stays open (or lists pending UIDs) while the folder may hold
// messages the journal does not record: APPENDs whose answer was lost,
// and messages found on Resume that no Put has claimed yet.
func (e *Exporter) CommitState() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stateLocked(false).encode()
}

// Resume takes the state last committed for this destination ("" on the
// first run) and save, which records a new state in the journal at once.
// It must be called before any Put. If the state is open, Resume reads
// back every message from its UIDNEXT on (and its pending UIDs), so that
// a later Put of one of them returns it instead of appending it again.
// It fails with ErrUIDValidity, naming the folder, when the folder was
// created again since the state was recorded.
func (e *Exporter) Resume(ctx context.Context, st string, save func(ctx context.Context, state string) error) error {
	wrap := func(err error) error { return fmt.Errorf("imap: %s: resume: %w", e.id, err) }
	if e.opts.ReadOnly {
		return wrap(exporters.ErrReadOnly)
	}
	e.mu.Lock()
	switch {
	case e.closed:
		e.mu.Unlock()
		return wrap(exporters.ErrClosed)
	case e.started:
		e.mu.Unlock()
		return wrap(errors.New("called after Put"))
	}
	e.save = save
	e.intentSaved = false
	e.mu.Unlock()
	if st == "" {
		return nil
	}
	var s state
	if err := json.Unmarshal([]byte(st), &s); err != nil {
		return wrap(fmt.Errorf("%w %q: %v", ErrInvalidState, st, err))
	}
	if s.UIDValidity == 0 {
		return wrap(fmt.Errorf("%w %q: no uidvalidity", ErrInvalidState, st))
	}
	if s.UIDValidity != e.uidValidity {
		return wrap(e.uidValidityErr(e.uidValidity, s.UIDValidity))
	}
	if !s.Open && len(s.Pending) == 0 {
		return nil
	}
	lo := imap.UID(max(s.UIDNext, 1))
	var set imap.UIDSet
	if s.Open {
		set.AddRange(lo, 0) // lo:*
	}
	pending := make(map[imap.UID]bool, len(s.Pending))
	for _, uid := range s.Pending {
		if uid != 0 {
			set.AddNum(imap.UID(uid))
			pending[imap.UID(uid)] = true
		}
	}
	if len(set) == 0 {
		return nil
	}
	c, err := e.acquire(ctx)
	if err != nil {
		return wrap(err)
	}
	defer e.release(c)
	if s.Open {
		// The process that left the intent open may have been killed
		// just after it sent a group, which the server may still be
		// storing (a takeover of a dead process's account is at once).
		if err := e.settle(ctx, c); err != nil {
			return wrap(fmt.Errorf("wait for the folder to settle: %w", err))
		}
	}
	o := c.begin(ctx)
	sums, err := fetchSums(c, o, set)
	o.end()
	if err != nil {
		return wrap(fmt.Errorf("read back the messages of an unfinished batch: %w", err))
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for uid, sum := range sums {
		// "lo:*" holds the last message even when its UID is below lo.
		if (s.Open && uid >= lo || pending[uid]) && !e.owned[uid] {
			e.addFoundLocked(sum, uid)
		}
	}
	return nil
}
