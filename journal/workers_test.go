package journal

import (
	"testing"
	"time"
)

// Workers names each worker of a shared migration with what it holds,
// what it finished and what it stored while it held its accounts; a
// crashed worker's expired lease is neither running nor finished.
func TestWorkers(t *testing.T) { forEachBackend(t, testWorkers) }

func testWorkers(t *testing.T, be backend) {
	j, _ := be.open(t)
	c := newClock(j)
	ctx := testCtx(t)
	w1 := Holder{ID: "w1", PID: 11, Host: "node-a"}
	w2 := Holder{ID: "w2", PID: 22, Host: "node-b"}
	w3 := Holder{ID: "w3", PID: 33, Host: "node-c"}
	for _, a := range []string{"alice", "bob", "carol", "dave"} {
		mustListing(t, j, a, listing("u", 3))
	}
	// A message stored before any lease of this migration counts for
	// nobody.
	var early Batch
	early.Stored(stored("alice", "u0000", true, "d"))
	mustCommit(t, j, &early)
	c.advance(time.Second)

	la, err := j.AcquireLease(ctx, "alice", w1, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	lb, err := j.AcquireLease(ctx, "bob", w2, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.AcquireLease(ctx, "dave", w3, time.Minute); err != nil {
		t.Fatal(err)
	}
	for i, uidl := range []string{"u0001", "u0002"} {
		c.advance(time.Second)
		var b Batch
		b.Fence(la)
		b.Stored(stored("alice", uidl, true, "d"))
		mustCommit(t, j, &b)
		if i == 0 {
			var b Batch
			b.Fence(lb)
			b.Stored(stored("bob", "u0000", true, "d"))
			mustCommit(t, j, &b)
		}
	}
	if err := j.ReleaseLease(ctx, lb); err != nil {
		t.Fatal(err)
	}
	c.advance(2 * time.Minute) // w3 died: its lease expired; w1's too
	if _, err := j.AcquireLease(ctx, "carol", w1, time.Hour); err != nil {
		t.Fatal(err)
	}
	ws, err := j.Workers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 3 {
		t.Fatalf("workers %+v; want 3", ws)
	}
	first := ws[0]
	if !first.Live || first.Holder.PID != 11 || first.Running != 1 || first.Messages != 2 || first.Bytes != 84 {
		t.Errorf("live worker: %+v; want pid 11 running carol, 2 messages of alice (84 bytes) counted", first)
	}
	if r := first.Rate(); r != 84 {
		t.Errorf("rate %v; want 84 B/s (84 bytes in the second between its first and last store)", r)
	}
	var w2s, w3s *WorkerStatus
	for i := range ws[1:] {
		switch ws[1+i].Holder.PID {
		case 22:
			w2s = &ws[1+i]
		case 33:
			w3s = &ws[1+i]
		}
	}
	if w2s == nil || w2s.Live || w2s.Finished != 1 || w2s.Messages != 1 {
		t.Errorf("finished worker: %+v; want bob finished, 1 message", w2s)
	}
	if w3s == nil || w3s.Live || w3s.Finished != 0 || w3s.Running != 0 {
		t.Errorf("dead worker: %+v; want neither running nor finished", w3s)
	}
	bps, mps, err := j.RecentRate(ctx, 5*time.Minute)
	if err != nil || mps*300 < 3.99 || bps*300 < 4*42-0.01 {
		t.Errorf("recent rate %v B/s %v msg/s, %v; want the 4 messages of the last 5 minutes", bps, mps, err)
	}
	// alice: 0 left; bob: 2; carol, dave: 3 each (sizes 100, 101, 102).
	msgs, bytes, unlisted, err := j.Remaining(ctx)
	if err != nil || msgs != 8 || bytes != 101+102+2*(100+101+102) || unlisted != 0 {
		t.Errorf("remaining %d messages, %d bytes, %d unlisted, %v; want 8, %d, 0", msgs, bytes, unlisted, err, 101+102+2*(100+101+102))
	}
}
