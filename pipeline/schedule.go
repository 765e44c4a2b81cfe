package pipeline

import (
	"container/heap"
	"context"
	"strings"
	"sync"
	"time"
)

// The scheduler decides which account works when.
//
// A job slot (Options.Jobs) is held by an account only while it works: it
// opens its destinations and runs sessions. An account that waits does not
// hold one:
//
//   - An account whose host has no free session slot (Options.PerHost, or
//     its provider's) is not started: the scheduler starts the first
//     account, in the order given, whose host has one. A slow or
//     rate-limited host does not keep the accounts of other hosts waiting.
//   - An account that waits between two sessions (its backoff after a
//     temporary error, the server's LOGIN-DELAY) gives its slots back for
//     the time and takes them again before its next session, ahead of the
//     accounts not yet started. Such a "parked" account keeps its
//     destinations open; at most Jobs accounts are parked at once, so at
//     most 2 x Jobs accounts have destinations open. When that many are
//     parked already, an account waits in its slot as it did before.
//   - An account whose lease another process holds (a second worker on the
//     same journal) opens nothing: it is put back, and asked for again
//     after a poll interval (see Run).
//
// Nothing here is hand-rolled for want of a library: errgroup's SetLimit
// (used before) and x/sync/semaphore bound one count, while this needs a
// choice among waiting accounts by host, so the state is one mutex-guarded
// struct with a broadcast channel.
type scheduler struct {
	mu sync.Mutex
	// changed is closed (and replaced) whenever a slot is freed or an
	// account is put back: every waiter looks again.
	changed chan struct{}

	jobs      int // free job slots
	parked    int // accounts started that hold no job slot
	maxParked int
	running   int // accounts started and not finished (parked included)
	// wanting counts the parked accounts waiting to take their slots
	// back, per host: they go before the accounts not started.
	wanting map[*hostSlots]int

	hosts map[string]*hostSlots
	ready hostHeap // hosts with a pending account and a free slot
	// deferred are accounts put back until a time (their lease was held).
	deferred []deferredAccount
	pending  int // accounts in host queues
	perHost  int
}

type deferredAccount struct {
	idx  int
	host *hostSlots
	at   time.Time
}

// hostSlots is one host's session slots and its accounts not started.
type hostSlots struct {
	name      string
	limit     int
	busy      int
	queue     []int // pending account indices, ascending
	heapIndex int   // in scheduler.ready; -1 when not there
}

func newScheduler(jobs, perHost int) *scheduler {
	return &scheduler{
		changed:   make(chan struct{}),
		jobs:      jobs,
		maxParked: jobs,
		wanting:   map[*hostSlots]int{},
		hosts:     map[string]*hostSlots{},
		perHost:   perHost,
	}
}

// host returns the slots of a host, creating them with limit (or the
// default per-host limit when limit is 0) the first time. Call with mu
// held.
func (s *scheduler) host(name string, limit int) *hostSlots {
	name = strings.ToLower(name)
	h := s.hosts[name]
	if h == nil {
		if limit <= 0 {
			limit = s.perHost
		}
		h = &hostSlots{name: name, limit: limit, heapIndex: -1}
		s.hosts[name] = h
	}
	return h
}

// broadcast wakes every waiter. Call with mu held.
func (s *scheduler) broadcast() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// waitFor calls try with mu held until it returns true, waiting for a
// change between calls, or until ctx ends. wake, when not zero, is when
// to look again even if nothing changed.
func (s *scheduler) waitFor(ctx context.Context, try func() (ok bool, wake time.Time)) error {
	for {
		s.mu.Lock()
		ok, wake := try()
		ch := s.changed
		s.mu.Unlock()
		if ok {
			return nil
		}
		var timer *time.Timer
		var fire <-chan time.Time
		if !wake.IsZero() {
			timer = time.NewTimer(max(time.Until(wake), 0))
			fire = timer.C
		}
		select {
		case <-ch:
		case <-fire:
		case <-ctx.Done():
		}
		if timer != nil {
			timer.Stop()
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// add queues account idx for host (limit as in host). Accounts must be
// added in ascending idx before next is called.
func (s *scheduler) add(idx int, host string, limit int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.host(host, limit)
	h.queue = append(h.queue, idx)
	s.pending++
	s.fix(h)
}

// fix puts h in or out of the ready heap, or moves it there. Call with mu
// held.
func (s *scheduler) fix(h *hostSlots) {
	want := len(h.queue) > 0 && h.busy < h.limit
	switch {
	case want && h.heapIndex < 0:
		heap.Push(&s.ready, h)
	case want:
		heap.Fix(&s.ready, h.heapIndex)
	case h.heapIndex >= 0:
		heap.Remove(&s.ready, h.heapIndex)
	}
}

// next blocks until an account may start and returns its index, with a
// job slot and a session slot of its host taken for it (see ticket); it
// returns -1 when every account is finished. An error is ctx's.
func (s *scheduler) next(ctx context.Context) (idx int, t *ticket, err error) {
	idx = -1
	err = s.waitFor(ctx, func() (bool, time.Time) {
		wake := s.promoteDue(time.Now())
		if s.pending == 0 && len(s.deferred) == 0 && s.running == 0 {
			return true, time.Time{}
		}
		if s.jobs == 0 || s.ready.Len() == 0 || s.parkedCanGo() {
			return false, wake
		}
		h := s.ready[0]
		idx, h.queue = h.queue[0], h.queue[1:]
		s.pending--
		h.busy++
		s.jobs--
		s.running++
		s.fix(h)
		t = &ticket{s: s, h: h, job: true, slot: true}
		return true, time.Time{}
	})
	return idx, t, err
}

// parkedCanGo reports whether a parked account waiting for its slots
// could take the free ones now: it goes first. Call with mu held.
func (s *scheduler) parkedCanGo() bool {
	for h, n := range s.wanting {
		if n > 0 && h.busy < h.limit {
			return true
		}
	}
	return false
}

// promoteDue queues the deferred accounts whose time has come and returns
// when the next one is due (zero if none). Call with mu held.
func (s *scheduler) promoteDue(now time.Time) time.Time {
	var wake time.Time
	kept := s.deferred[:0]
	for _, d := range s.deferred {
		if now.Before(d.at) {
			kept = append(kept, d)
			if wake.IsZero() || d.at.Before(wake) {
				wake = d.at
			}
			continue
		}
		// Back in order among the host's pending accounts.
		q := d.host.queue
		i := len(q)
		for i > 0 && q[i-1] > d.idx {
			i--
		}
		d.host.queue = append(q[:i], append([]int{d.idx}, q[i:]...)...)
		s.pending++
		s.fix(d.host)
	}
	s.deferred = kept
	return wake
}

// ticket is what a started account holds: a job slot and a session slot
// of its host, either of which it gives back while it waits.
type ticket struct {
	s      *scheduler
	h      *hostSlots
	job    bool // holds a job slot
	slot   bool // holds a session slot of h
	parked bool // started, holding no job slot (counted in s.parked)
}

// acquire takes the job slot and the host's session slot back, when the
// ticket gave them up (see park), before a session. It returns ctx's
// error.
func (t *ticket) acquire(ctx context.Context) error {
	if t == nil {
		return nil
	}
	s := t.s
	s.mu.Lock()
	if t.job && t.slot {
		s.mu.Unlock()
		return nil
	}
	s.wanting[t.h]++
	s.mu.Unlock()
	err := s.waitFor(ctx, func() (bool, time.Time) {
		if (!t.job && s.jobs == 0) || (!t.slot && t.h.busy >= t.h.limit) {
			return false, time.Time{}
		}
		if !t.job {
			s.jobs--
			t.job = true
		}
		if !t.slot {
			t.h.busy++
			t.slot = true
			s.fix(t.h)
		}
		if t.parked {
			t.parked = false
			s.parked--
		}
		return true, time.Time{}
	})
	s.mu.Lock()
	if s.wanting[t.h]--; s.wanting[t.h] == 0 {
		delete(s.wanting, t.h)
	}
	s.broadcast() // the accounts not started may go now
	s.mu.Unlock()
	return err
}

// park gives the slots back for a wait between sessions: the session
// slot always, the job slot unless Jobs accounts are parked already.
func (t *ticket) park() {
	s := t.s
	s.mu.Lock()
	defer s.mu.Unlock()
	t.releaseSlot()
	if t.job && s.parked < s.maxParked {
		t.job = false
		s.jobs++
		t.parked = true
		s.parked++
	}
	s.broadcast()
}

// releaseSlot gives the host's session slot back. Call with mu held.
func (t *ticket) releaseSlot() {
	if t.slot {
		t.slot = false
		t.h.busy--
		t.s.fix(t.h)
	}
}

// releaseAll gives every slot back. Call with mu held.
func (t *ticket) releaseAll() {
	t.releaseSlot()
	if t.job {
		t.job = false
		t.s.jobs++
	}
	if t.parked {
		t.parked = false
		t.s.parked--
	}
}

// done finishes the account: its slots are freed.
func (t *ticket) done() {
	s := t.s
	s.mu.Lock()
	defer s.mu.Unlock()
	t.releaseAll()
	s.running--
	s.broadcast()
}

// retryAt puts the account back, not started, until at: its slots are
// freed and next hands it out again from then on.
func (t *ticket) retryAt(idx int, at time.Time) {
	s := t.s
	s.mu.Lock()
	defer s.mu.Unlock()
	t.releaseAll()
	s.running--
	s.deferred = append(s.deferred, deferredAccount{idx: idx, host: t.h, at: at})
	s.broadcast()
}

// hostSlot takes a session slot of host without a job slot (verify, purge
// and check, which bound their accounts themselves) and returns the
// function that frees it.
func (s *scheduler) hostSlot(ctx context.Context, host string, limit int) (func(), error) {
	s.mu.Lock()
	h := s.host(host, limit)
	s.mu.Unlock()
	err := s.waitFor(ctx, func() (bool, time.Time) {
		if h.busy >= h.limit {
			return false, time.Time{}
		}
		h.busy++
		s.fix(h)
		return true, time.Time{}
	})
	if err != nil {
		return nil, err
	}
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		h.busy--
		s.fix(h)
		s.broadcast()
	}, nil
}

// hostHeap orders the ready hosts by their first pending account.
type hostHeap []*hostSlots

func (h hostHeap) Len() int           { return len(h) }
func (h hostHeap) Less(i, j int) bool { return h[i].queue[0] < h[j].queue[0] }
func (h hostHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIndex, h[j].heapIndex = i, j
}
func (h *hostHeap) Push(x any) {
	e := x.(*hostSlots)
	e.heapIndex = len(*h)
	*h = append(*h, e)
}
func (h *hostHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.heapIndex = -1
	*h = old[:len(old)-1]
	return e
}

// park gives the account's slots back for a wait between sessions (see
// ticket.park); its next session takes them again. It does nothing
// outside a Run.
func (ar *accountRun) park() {
	if ar.ticket != nil {
		ar.ticket.park()
		ar.r.opts.Metrics.AccountState(ar.a.Name, "waiting")
	}
}
