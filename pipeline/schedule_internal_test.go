package pipeline

import (
	"context"
	"testing"
	"time"
)

// startN takes n accounts from s, failing when next blocks for a second.
func startN(t *testing.T, s *scheduler, n int) ([]int, []*ticket) {
	t.Helper()
	var idx []int
	var ts []*ticket
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		i, tk, err := s.next(ctx)
		cancel()
		if err != nil {
			t.Fatalf("next after %v: %v", idx, err)
		}
		idx, ts = append(idx, i), append(ts, tk)
	}
	return idx, ts
}

// blocked reports whether next would block now.
func blocked(s *scheduler) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, _, err := s.next(ctx)
	return err != nil
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Accounts start in the order given, except that one whose host is full
// lets the next account of another host go first.
func TestSchedulerSkipsFullHosts(t *testing.T) {
	s := newScheduler(3, 1)
	for i, h := range []string{"a", "a", "a", "B", "b", "c"} {
		s.add(i, h, 0)
	}
	got, ts := startN(t, s, 3)
	if want := []int{0, 3, 5}; !equalInts(got, want) {
		t.Fatalf("started %v; want %v (host a and b, case aside, take one session each)", got, want)
	}
	if !blocked(s) {
		t.Fatal("a fourth account started with 3 jobs")
	}
	ts[0].done() // host a frees its slot
	if got, _ := startN(t, s, 1); got[0] != 1 {
		t.Fatalf("after host a's first account: started %d, want 1", got[0])
	}
}

// A parked account gives its job slot to an account not started, takes it
// back before the others, and at most Jobs accounts are parked at once.
func TestSchedulerParking(t *testing.T) {
	s := newScheduler(1, 4)
	for i := range 4 {
		s.add(i, "h", 0)
	}
	_, ts := startN(t, s, 1)
	ts[0].park() // account 0 waits between sessions
	got, ts2 := startN(t, s, 1)
	if got[0] != 1 {
		t.Fatalf("while 0 is parked, started %d; want 1", got[0])
	}
	// A second account may not park: Jobs (1) are parked. It keeps its
	// job slot while it waits.
	ts2[0].park()
	if !blocked(s) {
		t.Fatal("an account started while the only job slot was kept by an account that could not park")
	}
	// Account 0 wants its slots back: it goes before account 2.
	acquired := make(chan error, 1)
	go func() { acquired <- ts[0].acquire(context.Background()) }()
	ts2[0].done()
	select {
	case err := <-acquired:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Second):
		t.Fatal("the parked account did not get its slots back")
	}
	if !blocked(s) {
		t.Fatal("account 2 started while the parked account took the only job slot")
	}
	ts[0].done()
	if got, _ := startN(t, s, 1); got[0] != 2 {
		t.Fatalf("started %d; want 2", got[0])
	}
}

// An account put back (its lease held elsewhere) comes back at its time,
// in its place, and next reports the end only when nothing is left.
func TestSchedulerRetryAt(t *testing.T) {
	s := newScheduler(2, 4)
	for i := range 3 {
		s.add(i, "h", 0)
	}
	_, ts := startN(t, s, 2) // 0 and 1
	ts[0].retryAt(0, time.Now().Add(150*time.Millisecond))
	got, two := startN(t, s, 1)
	if got[0] != 2 {
		t.Fatalf("started %d; want 2 while 0 is put back", got[0])
	}
	ts[1].done()
	start := time.Now()
	got, last := startN(t, s, 1)
	if got[0] != 0 || time.Since(start) < 100*time.Millisecond {
		t.Fatalf("started %d after %v; want 0 again after its time", got[0], time.Since(start))
	}
	last[0].done()
	// Account 2 still runs: next waits for it, then reports the end.
	ended := make(chan int, 1)
	go func() {
		i, _, _ := s.next(context.Background())
		ended <- i
	}()
	select {
	case i := <-ended:
		t.Fatalf("next returned %d while an account still ran", i)
	case <-time.After(50 * time.Millisecond):
	}
	two[0].done()
	select {
	case i := <-ended:
		if i != -1 {
			t.Fatalf("next returned %d after the last account; want -1", i)
		}
	case <-time.After(time.Second):
		t.Fatal("next did not report the end")
	}
}
