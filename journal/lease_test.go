package journal

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func holder(id string) Holder { return Holder{ID: id, PID: os.Getpid(), Host: "host-a"} }

// A second process asking for a held account is refused with the holder
// named; the holder itself renews; an expired lease is taken over with a
// higher epoch.
func TestLeaseOneHolderPerAccount(t *testing.T) {
	j, _ := openTest(t)
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
	if err := j.RenewLease(ctx, la); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("old holder renews: %v, want ErrLeaseLost", err)
	}
}

// A commit fenced by a lease another process took over records nothing.
func TestLeaseFencedCommitAfterTakeoverRecordsNothing(t *testing.T) {
	j, _ := openTest(t)
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
	j, _ := openTest(t)
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
	ls, err := j.Leases(ctx)
	if err != nil || len(ls) != 1 || ls[0].Holder.ID != "bbbb" || ls[0].Epoch != 2 {
		t.Fatalf("Leases = %+v, %v", ls, err)
	}
}

// The lease of a process that is gone, on the same host, is taken over at
// once: a run killed with SIGKILL does not make the next one wait.
func TestLeaseOfAGoneProcessOnThisHostIsTakenAtOnce(t *testing.T) {
	j, _ := openTest(t)
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
func TestSuspectIsRecordedAndListed(t *testing.T) {
	j, _ := openTest(t)
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
