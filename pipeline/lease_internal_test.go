package pipeline

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/journal"
)

// A holder whose lease went stale (it was paused, its heartbeat stopped)
// asks the journal before it writes: it goes on when the lease is still
// its own, and stops, ending the account's context, when another process
// took the account over.
func TestHeldLeaseCheckAfterAPause(t *testing.T) {
	ctx := context.Background()
	j, err := journal.Open(ctx, filepath.Join(t.TempDir(), "j.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	me := journal.Holder{ID: "me", PID: 1, Host: "here"}
	l, err := j.AcquireLease(ctx, "alice", me, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	lctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	h := &heldLease{l: l, j: j, cancel: cancel}
	h.renewed(time.Now())
	if err := h.check(lctx); err != nil {
		t.Fatalf("fresh lease: %v", err)
	}

	// Stale, but nobody took the account: renewed, and fresh again.
	h.fresh = time.Now().Add(-time.Second)
	if err := h.check(lctx); err != nil {
		t.Fatalf("stale lease still ours: %v", err)
	}
	if !time.Now().Before(h.fresh) {
		t.Fatal("the renewal did not make the lease fresh again")
	}

	// Stale, and another process took the account over meanwhile.
	h.fresh = time.Now().Add(-time.Second)
	if err := j.ReleaseLease(ctx, l); err != nil {
		t.Fatal(err)
	}
	if _, err := j.AcquireLease(ctx, "alice", journal.Holder{ID: "other", PID: 2, Host: "there"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	err = h.check(lctx)
	if !errors.Is(err, errLeaseLost) || !errors.Is(context.Cause(lctx), errLeaseLost) {
		t.Fatalf("taken over: check = %v, context cause %v; want errLeaseLost for both", err, context.Cause(lctx))
	}
	// Every read of a fenced body stops too.
	body := fencedBody{Body: bytesBody("hello"), ctx: lctx, h: h}
	if _, err := body.ReadAt(make([]byte, 5), 0); !errors.Is(err, errLeaseLost) {
		t.Fatalf("fenced read after the takeover: %v", err)
	}
}

type bytesBody string

func (b bytesBody) ReadAt(p []byte, off int64) (int, error) { return copy(p, b[off:]), nil }
func (b bytesBody) Size() int64                             { return int64(len(b)) }

// A held account is asked for again soon at first, then at most every
// leasePoll.
func TestHeldPoll(t *testing.T) {
	ttl := time.Minute
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond,
		1600 * time.Millisecond, 2 * time.Second, 2 * time.Second}
	for i, w := range want {
		if got := heldPoll(i+1, ttl); got != w {
			t.Errorf("poll %d: %v, want %v", i+1, got, w)
		}
	}
	if got := heldPoll(1, 200*time.Millisecond); got != 50*time.Millisecond {
		t.Errorf("short TTL: %v, want its quarter", got)
	}
}
