package journal

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func holder(id string) Holder { return Holder{ID: id, PID: os.Getpid(), Host: "host-a"} }

// A second process asking for a held account is refused with the holder
// named; the holder itself renews; an expired lease is taken over with a
// higher epoch.
func TestLeaseOneHolderPerAccount(t *testing.T) { forEachBackend(t, testLeaseOneHolderPerAccount) }

func testLeaseOneHolderPerAccount(t *testing.T, be backend) {
	j, _ := be.open(t)
	c := newClock(j)
	ctx := testCtx(t)
	a, b := holder("aaaa"), holder("bbbb")
	la, err := j.AcquireLease(ctx, "alice", a, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if la.Epoch != 1 {
		t.Errorf("first epoch = %d, want 1", la.Epoch)
	}
	_, err = j.AcquireLease(ctx, "alice", b, time.Minute)
	var held *LeaseHeldError
	if !errors.As(err, &held) || held.Holder.ID != "aaaa" || !strings.Contains(err.Error(), "pid ") || !strings.Contains(err.Error(), "--wait") {
		t.Fatalf("second holder: err = %v, want a *LeaseHeldError naming the first", err)
	}
	// Another account is free.
	if _, err := j.AcquireLease(ctx, "bob", b, time.Minute); err != nil {
		t.Fatalf("other account: %v", err)
	}
	// The holder again: renewed, same epoch.
	again, err := j.AcquireLease(ctx, "alice", a, time.Minute)
	if err != nil || again.Epoch != 1 {
		t.Fatalf("holder again: %+v, %v", again, err)
	}
	c.advance(59 * time.Second)
	if err := j.RenewLease(ctx, la); err != nil {
		t.Fatal(err)
	}
	c.advance(59 * time.Second)
	if _, err := j.AcquireLease(ctx, "alice", b, time.Minute); !errors.As(err, &held) {
		t.Fatalf("renewed lease taken: %v", err)
	}
	c.advance(2 * time.Second) // past the renewed expiry
	lb, err := j.AcquireLease(ctx, "alice", b, time.Minute)
	if err != nil || lb.Epoch != 2 {
		t.Fatalf("expired lease: %+v, %v; want epoch 2", lb, err)
	}
	if lb.Prev.Holder.ID != "aaaa" || lb.Prev.Epoch != 1 {
		t.Errorf("taken over from %+v; want the expired lease of aaaa, epoch 1", lb.Prev)
	}
	if err := j.RenewLease(ctx, la); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("old holder renews: %v, want ErrLeaseLost", err)
	}
}

// A commit fenced by a lease another process took over records nothing.
func TestLeaseFencedCommitAfterTakeoverRecordsNothing(t *testing.T) {
	forEachBackend(t, testLeaseFencedCommitAfterTakeoverRecordsNothing)
}

func testLeaseFencedCommitAfterTakeoverRecordsNothing(t *testing.T, be backend) {
	j, _ := be.open(t)
	c := newClock(j)
	ctx := testCtx(t)
	mustListing(t, j, "alice", listing("u", 2))
	la, err := j.AcquireLease(ctx, "alice", holder("aaaa"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var b Batch
	b.Fence(la)
	b.Stored(stored("alice", "u0000", true, "d"))
	mustCommit(t, j, &b) // the holder commits
	c.advance(2 * time.Minute)
	if _, err := j.AcquireLease(ctx, "alice", holder("bbbb"), time.Minute); err != nil {
		t.Fatal(err)
	}
	b.Stored(stored("alice", "u0001", true, "d"))
	if err := j.Commit(ctx, &b); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("stale holder's commit = %v, want ErrLeaseLost", err)
	}
	if st := messagesByUIDL(t, j, "alice")["u0001"].State; st != StateListed {
		t.Errorf("u0001 state %q after a refused commit, want listed", st)
	}
}

// A released lease is free at once; releasing twice is harmless.
func TestLeaseReleaseFreesTheAccount(t *testing.T) {
	forEachBackend(t, testLeaseReleaseFreesTheAccount)
}

func testLeaseReleaseFreesTheAccount(t *testing.T, be backend) {
	j, _ := be.open(t)
	ctx := testCtx(t)
	la, err := j.AcquireLease(ctx, "alice", holder("aaaa"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.ReleaseLease(ctx, la); err != nil {
		t.Fatal(err)
	}
	if err := j.ReleaseLease(ctx, la); err != nil {
		t.Fatal(err)
	}
	lb, err := j.AcquireLease(ctx, "alice", holder("bbbb"), time.Hour)
	if err != nil || lb.Epoch != 2 {
		t.Fatalf("after release: %+v, %v", lb, err)
	}
	if lb.Prev.Holder.ID != "" || lb.Prev.Epoch != 1 || lb.Prev.Holder.PID != la.Holder.PID {
		t.Errorf("taken from %+v; want the released lease of epoch 1, its pid kept", lb.Prev)
	}
	if la.Prev != (LeaseInfo{}) {
		t.Errorf("a first lease says it was taken from %+v", la.Prev)
	}
	ls, err := j.Leases(ctx)
	if err != nil || len(ls) != 1 || ls[0].Holder.ID != "bbbb" || ls[0].Epoch != 2 {
		t.Fatalf("Leases = %+v, %v", ls, err)
	}
}

// FinishAccount records the account's error and releases its lease in one
// transaction; with the lease lost to another holder, the error is still
// recorded and the other's lease is left alone.
func TestFinishAccount(t *testing.T) { forEachBackend(t, testFinishAccount) }

func testFinishAccount(t *testing.T, be backend) {
	j, _ := be.open(t)
	clk := newClock(j)
	ctx := testCtx(t)
	la, err := j.AcquireLease(ctx, "alice", holder("aaaa"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.FinishAccount(ctx, la, "pop3: auth: -ERR [AUTH] invalid credentials"); err != nil {
		t.Fatal(err)
	}
	if st := statusOf(t, j, "alice"); st.LastError != "pop3: auth: -ERR [AUTH] invalid credentials" {
		t.Errorf("error after FinishAccount = %q", st.LastError)
	}
	lb, err := j.AcquireLease(ctx, "alice", holder("bbbb"), time.Minute)
	if err != nil || lb.Prev.Holder.ID != "" || lb.Prev.Epoch != 1 {
		t.Fatalf("after FinishAccount the lease is %+v, %v; want released", lb, err)
	}

	// b's lease expires and c takes it over; b, finishing late, records
	// its outcome without touching c's lease.
	clk.advance(2 * time.Minute)
	lc, err := j.AcquireLease(ctx, "alice", holder("cccc"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.FinishAccount(ctx, lb, ""); err != nil {
		t.Fatal(err)
	}
	if st := statusOf(t, j, "alice"); st.LastError != "" {
		t.Errorf("error after the late FinishAccount = %q, want cleared", st.LastError)
	}
	ls, err := j.Leases(ctx)
	if err != nil || len(ls) != 1 || ls[0].Holder.ID != "cccc" || ls[0].Epoch != lc.Epoch {
		t.Fatalf("Leases = %+v, %v; want c's lease kept", ls, err)
	}
}

// The lease of a process that is gone, on the same host, is taken over at
// once: a run killed with SIGKILL does not make the next one wait.
func TestLeaseOfAGoneProcessOnThisHostIsTakenAtOnce(t *testing.T) {
	forEachBackend(t, testLeaseOfAGoneProcessOnThisHostIsTakenAtOnce)
}

func testLeaseOfAGoneProcessOnThisHostIsTakenAtOnce(t *testing.T, be backend) {
	j, _ := be.open(t)
	ctx := testCtx(t)
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	gone := cmd.Process.Pid // reaped: no such process any more
	dead := Holder{ID: "dead", PID: gone, Host: "host-a"}
	if _, err := j.AcquireLease(ctx, "alice", dead, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := j.AcquireLease(ctx, "alice", holder("live"), time.Hour); err != nil {
		t.Fatalf("lease of a gone process: %v", err)
	}
	// On another host the same pid says nothing: wait for the expiry.
	if _, err := j.AcquireLease(ctx, "bob", Holder{ID: "far", PID: gone, Host: "host-b"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	var held *LeaseHeldError
	if _, err := j.AcquireLease(ctx, "bob", holder("live"), time.Hour); !errors.As(err, &held) {
		t.Fatalf("lease of another host's process: %v, want LeaseHeldError", err)
	}
}

// Suspect messages are recorded, kept once marked, and listed by Status.
func TestSuspectIsRecordedAndListed(t *testing.T) { forEachBackend(t, testSuspectIsRecordedAndListed) }

func testSuspectIsRecordedAndListed(t *testing.T, be backend) {
	j, _ := be.open(t)
	mustListing(t, j, "alice", listing("u", 3))
	var b Batch
	m := stored("alice", "u0001", true, "d")
	m.Suspect = "received 10 bytes, LIST said 100"
	b.Stored(m)
	b.Stored(stored("alice", "u0002", true, "d"))
	mustCommit(t, j, &b)
	b.Stored(stored("alice", "u0001", true, "d")) // stored again, no mark: the mark stays
	mustCommit(t, j, &b)
	rows := messagesByUIDL(t, j, "alice")
	if rows["u0001"].Suspect == "" || rows["u0002"].Suspect != "" {
		t.Fatalf("suspect marks: u0001 %q, u0002 %q", rows["u0001"].Suspect, rows["u0002"].Suspect)
	}
	st := statusOf(t, j, "alice")
	if st.Suspect != 1 || len(st.Suspects) != 1 || st.Suspects[0].UIDL != "u0001" || !strings.Contains(st.Suspects[0].Error, "LIST said") {
		t.Fatalf("status suspects: %d %+v", st.Suspect, st.Suspects)
	}
}

// A damaged journal file is recognised as such (IsCorrupt), so commands can
// say what to do instead of "retry".
func TestCorruptJournalIsRecognised(t *testing.T) {
	dir := t.TempDir()
	notDB := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(notDB, []byte(strings.Repeat("this is not a database\n", 400)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(testCtx(t), notDB)
	if err == nil || !IsCorrupt(err) {
		t.Fatalf("Open of a non-database: %v, IsCorrupt %v", err, IsCorrupt(err))
	}
	if IsCorrupt(errors.New("database disk image is malformed")) {
		t.Error("IsCorrupt of a plain error")
	}
}

// Two journals on one database are two processes: the second is refused
// while the first holds the account, takes it over once the lease expired,
// and from then on the first can neither commit nor renew.
func TestLeaseTakeoverAcrossTwoJournals(t *testing.T) {
	forEachBackend(t, testLeaseTakeoverAcrossTwoJournals)
}

func testLeaseTakeoverAcrossTwoJournals(t *testing.T, be backend) {
	j1, path := be.open(t)
	j2, err := Open(testCtx(t), path)
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	c := newClock(j1)
	j2.now = c.now // one clock for both processes
	ctx := testCtx(t)
	mustListing(t, j1, "alice", listing("u", 3))

	l1, err := j1.AcquireLease(ctx, "alice", Holder{ID: "one", PID: 1, Host: "host-1"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var held *LeaseHeldError
	if _, err := j2.AcquireLease(ctx, "alice", Holder{ID: "two", PID: 2, Host: "host-2"}, time.Minute); !errors.As(err, &held) ||
		held.Holder.ID != "one" || held.Holder.Host != "host-1" {
		t.Fatalf("second process: err = %v, want a *LeaseHeldError naming the first", err)
	}
	var b1 Batch
	b1.Fence(l1)
	b1.Stored(stored("alice", "u0000", true, "d"))
	mustCommit(t, j1, &b1)

	c.advance(61 * time.Second) // the first process stopped renewing
	l2, err := j2.AcquireLease(ctx, "alice", Holder{ID: "two", PID: 2, Host: "host-2"}, time.Minute)
	if err != nil || l2.Epoch != l1.Epoch+1 {
		t.Fatalf("takeover: %+v, %v; want epoch %d", l2, err, l1.Epoch+1)
	}
	b1.Stored(stored("alice", "u0001", true, "d"))
	if err := j1.Commit(ctx, &b1); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("first process's commit after the takeover: %v, want ErrLeaseLost", err)
	}
	if err := j1.RenewLease(ctx, l1); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("first process's renewal after the takeover: %v, want ErrLeaseLost", err)
	}
	var b2 Batch
	b2.Fence(l2)
	b2.Stored(stored("alice", "u0002", true, "d"))
	mustCommit(t, j2, &b2)
	rows := messagesByUIDL(t, j1, "alice")
	if rows["u0000"].State != StateStored || rows["u0001"].State != StateListed || rows["u0002"].State != StateStored {
		t.Errorf("states %s %s %s, want stored listed stored", rows["u0000"].State, rows["u0001"].State, rows["u0002"].State)
	}
	ls, err := j1.Leases(ctx)
	if err != nil || len(ls) != 1 || ls[0].Holder.ID != "two" || ls[0].Epoch != l2.Epoch {
		t.Errorf("Leases = %+v, %v", ls, err)
	}
}

// Many processes that ask at once for an expired lease: exactly one gets
// it, with the next epoch, and every other is told who holds it. On
// PostgreSQL they really run at once, on two journals' connections.
func TestLeaseRaceHasOneWinner(t *testing.T) { forEachBackend(t, testLeaseRaceHasOneWinner) }

func testLeaseRaceHasOneWinner(t *testing.T, be backend) {
	j1, path := be.open(t)
	j2, err := Open(testCtx(t), path)
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	c := newClock(j1)
	j2.now = c.now
	ctx := testCtx(t)
	for round := range 5 {
		account := fmt.Sprintf("user%d", round)
		old, err := j1.AcquireLease(ctx, account, Holder{ID: "old", PID: 1, Host: "gone"}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		c.advance(2 * time.Minute)

		const n = 8
		var wg sync.WaitGroup
		leases := make([]*Lease, n)
		errs := make([]error, n)
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				j := []*Journal{j1, j2}[i%2]
				leases[i], errs[i] = j.AcquireLease(ctx, account, Holder{ID: fmt.Sprintf("h%d", i), PID: 100 + i, Host: fmt.Sprintf("host-%d", i)}, time.Minute)
			}()
		}
		close(start)
		wg.Wait()
		winner := -1
		for i := range n {
			var held *LeaseHeldError
			switch {
			case errs[i] == nil:
				if winner >= 0 {
					t.Fatalf("round %d: both h%d and h%d took the lease", round, winner, i)
				}
				winner = i
			case errors.As(errs[i], &held):
			default:
				t.Errorf("round %d: h%d: %v", round, i, errs[i])
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: nobody took the expired lease: %v", round, errs)
		}
		if leases[winner].Epoch != old.Epoch+1 {
			t.Errorf("round %d: winner's epoch %d, want %d", round, leases[winner].Epoch, old.Epoch+1)
		}
		for i := range n {
			var held *LeaseHeldError
			if errors.As(errs[i], &held) && held.Holder.ID != fmt.Sprintf("h%d", winner) {
				t.Errorf("round %d: h%d was told %q holds the lease, not the winner h%d", round, i, held.Holder.ID, winner)
			}
		}
	}
}

// AccountOutcome says how the last worker left an account: its error and
// its failed messages.
func TestAccountOutcome(t *testing.T) { forEachBackend(t, testAccountOutcome) }

func testAccountOutcome(t *testing.T, be backend) {
	j, _ := be.open(t)
	ctx := testCtx(t)
	if text, n, left, err := j.AccountOutcome(ctx, "alice"); err != nil || text == "" || n != 0 || left != 0 {
		t.Fatalf("never listed: %q %d %d %v; want a text saying so", text, n, left, err)
	}
	mustListing(t, j, "alice", listing("u", 3))
	if text, n, left, err := j.AccountOutcome(ctx, "alice"); err != nil || text != "" || n != 0 || left != 3 {
		t.Fatalf("listed: %q %d %d %v; want 3 left", text, n, left, err)
	}
	var b Batch
	b.Stored(stored("alice", "u0000", true, "d"))
	b.Failed("alice", "u0001", "broken")
	mustCommit(t, j, &b)
	if _, err := j.Adopt(ctx, "alice", "mpop", "/x", []string{"u0002"}); err != nil {
		t.Fatal(err)
	}
	if err := j.SetAccountError(ctx, "alice", "login refused"); err != nil {
		t.Fatal(err)
	}
	if text, n, left, err := j.AccountOutcome(ctx, "alice"); err != nil || text != "login refused" || n != 1 || left != 0 {
		t.Fatalf("after a failure: %q %d %d %v; want the error, 1 failed, none left (u0002 is adopted)", text, n, left, err)
	}
}

// A dead pid of another pid space on a host of the same name (a container
// with the host name of another) takes no lease before its expiry; one of
// this process's space does.
func TestLeaseOfAGoneProcessInAnotherPidSpaceWaits(t *testing.T) {
	j, _ := sqliteBackend.open(t)
	ctx := testCtx(t)
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	gone := cmd.Process.Pid
	me := NewHolder()
	if me.space() == "" {
		t.Fatal("NewHolder names no pid space on this system")
	}
	other := Holder{ID: "dead@another-space", PID: gone, Host: me.Host}
	if _, err := j.AcquireLease(ctx, "alice", other, time.Hour); err != nil {
		t.Fatal(err)
	}
	var held *LeaseHeldError
	if _, err := j.AcquireLease(ctx, "alice", me, time.Hour); !errors.As(err, &held) {
		t.Fatalf("lease of a gone pid of another pid space: %v; want it held until it expires", err)
	}
	same := Holder{ID: "dead@" + me.space(), PID: gone, Host: me.Host}
	if _, err := j.AcquireLease(ctx, "bob", same, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := j.AcquireLease(ctx, "bob", me, time.Hour); err != nil {
		t.Fatalf("lease of a gone pid of this pid space: %v; want it taken at once", err)
	}
}
