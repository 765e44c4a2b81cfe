package imap

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/exporters"
)

// TestCrashBetweenAppendAndCommit puts 5 messages with the journal's save
// recording the state, never commits, and checks that a new Exporter
// resumed from the last saved state stores the same 5 again without
// appending any: the folder holds exactly 5.
func TestCrashBetweenAppendAndCommit(t *testing.T) {
	for _, noUIDPlus := range []bool{false, true} {
		t.Run(fmt.Sprintf("noUIDPlus=%v", noUIDPlus), func(t *testing.T) {
			srv := startMem(t, memConfig{noUIDPlus: noUIDPlus})
			testCrash(t, srv.options("Crash"), func() int { return len(srv.messages(t, "Crash")) })
		})
	}
}

// testCrash is the crash test against any server; count returns the
// number of messages in the folder.
func testCrash(t *testing.T, o *Options, count func() int) {
	c := testCtx(t)
	j := &fakeJournal{}
	e1, err := New(c, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := e1.Resume(c, "", j.save); err != nil {
		t.Fatal(err)
	}
	var refs []string
	for i := range 5 {
		refs = append(refs, mustPut(t, e1, msgN(i)))
	}
	if len(j.saves) != 1 {
		t.Errorf("%d journal writes for one batch, want 1: %q", len(j.saves), j.saves)
	}
	var st state
	if err := json.Unmarshal([]byte(j.last()), &st); err != nil || !st.Open || st.UIDValidity != e1.UIDValidity() {
		t.Fatalf("saved state %q (%v), want an open intent with UIDVALIDITY %d", j.last(), err, e1.UIDValidity())
	}
	if err := e1.Close(); err != nil { // crash: no Sync, no CommitState
		t.Fatal(err)
	}
	if n := count(); n != 5 {
		t.Fatalf("%d messages after the first run, want 5", n)
	}

	e2, err := New(c, o)
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	if err := e2.Resume(c, j.last(), j.save); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if got := mustPut(t, e2, msgN(i)); got != refs[i] {
			t.Errorf("message %d after resume: Ref %q, want %q", i, got, refs[i])
		}
	}
	if n := count(); n != 5 {
		t.Errorf("%d messages after resuming, want exactly 5", n)
	}
	if err := e2.Sync(c); err != nil {
		t.Fatal(err)
	}
	var done state
	if err := json.Unmarshal([]byte(e2.CommitState()), &done); err != nil || done.Open || len(done.Pending) != 0 {
		t.Errorf("CommitState after every found message was put = %q, want closed", e2.CommitState())
	}
	// A new message after the resume is appended as usual.
	ref := mustPut(t, e2, msgN(5))
	if n := count(); n != 6 {
		t.Errorf("%d messages after a new Put, want 6", n)
	}
	if got := mustOpen(t, e2, ref); !bytes.Equal(got, messageBytes(msgN(5))) {
		t.Errorf("new message read back differs: %q", got)
	}
}

// TestSecondCrash checks that messages found on Resume but not yet put
// again survive a second crash: the committed state lists them as
// pending, and a third run still finds them.
func TestSecondCrash(t *testing.T) {
	srv := startMem(t, memConfig{})
	o := srv.options("Twice")
	c := testCtx(t)
	j := &fakeJournal{}
	e1 := newExporter(t, o)
	e1.Resume(c, "", j.save)
	refs := make([]string, 4)
	for i := range 4 {
		refs[i] = mustPut(t, e1, msgN(i))
	}
	e1.Close() // crash 1: 4 messages appended, none committed

	e2 := newExporter(t, o)
	if err := e2.Resume(c, j.last(), j.save); err != nil {
		t.Fatal(err)
	}
	// The resumed run puts message 0 and commits, then crashes before it
	// gets to messages 1-3.
	if got := mustPut(t, e2, msgN(0)); got != refs[0] {
		t.Fatalf("Ref %q, want %q", got, refs[0])
	}
	if err := e2.Sync(c); err != nil {
		t.Fatal(err)
	}
	j.save(c, e2.CommitState())
	var st state
	json.Unmarshal([]byte(j.last()), &st)
	if len(st.Pending) != 3 {
		t.Errorf("committed state %q, want 3 pending UIDs", j.last())
	}
	e2.Close()

	e3 := newExporter(t, o)
	if err := e3.Resume(c, j.last(), j.save); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 4; i++ {
		if got := mustPut(t, e3, msgN(i)); got != refs[i] {
			t.Errorf("message %d: Ref %q, want %q", i, got, refs[i])
		}
	}
	if n := len(srv.messages(t, "Twice")); n != 4 {
		t.Errorf("%d messages, want 4", n)
	}
}

// TestUIDValidityChanged deletes and re-creates the folder between runs:
// Resume must fail with ErrUIDValidity, naming the folder; so must Open
// of an old Ref (not found) and a new connection of a running Exporter.
func TestUIDValidityChanged(t *testing.T) {
	srv := startMem(t, memConfig{})
	o := srv.options("Recreated")
	c := testCtx(t)
	e1 := newExporter(t, o)
	ref := mustPut(t, e1, msgN(1))
	if err := e1.Sync(c); err != nil {
		t.Fatal(err)
	}
	committed := e1.CommitState()

	cl := srv.client(t)
	defer cl.Close()
	if err := cl.Delete("Recreated").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := cl.Create("Recreated", nil).Wait(); err != nil {
		t.Fatal(err)
	}

	e2 := newExporter(t, o)
	err := e2.Resume(c, committed, nil)
	if !errors.Is(err, ErrUIDValidity) || !strings.Contains(err.Error(), `"Recreated"`) {
		t.Errorf("Resume after the folder was re-created: %v, want ErrUIDValidity naming the folder", err)
	}
	if _, err := e2.Open(c, ref); !errors.Is(err, exporters.ErrNotFound) {
		t.Errorf("Open of a Ref from the old folder: %v, want ErrNotFound", err)
	}
	// e1's connection still has the old folder selected; its next
	// connection sees the new UIDVALIDITY.
	for range 2 {
		if cc, err := e1.acquire(c); err == nil {
			cc.kill(errConnBroken)
			e1.release(cc)
		}
	}
	if _, err := e1.Put(c, msgN(2)); !errors.Is(err, ErrUIDValidity) {
		t.Errorf("Put after the folder was re-created: %v, want ErrUIDValidity", err)
	}
}

// TestOneIntentPerBatch checks that the journal is written once before
// the first APPEND of each batch, not per message, and that CommitState
// closes the intent.
func TestOneIntentPerBatch(t *testing.T) {
	srv := startMem(t, memConfig{})
	e := newExporter(t, srv.options("Batch"))
	c := testCtx(t)
	j := &fakeJournal{}
	if err := e.Resume(c, "", j.save); err != nil {
		t.Fatal(err)
	}
	if len(j.saves) != 0 {
		t.Fatalf("Resume saved %q", j.saves)
	}
	for batch := range 3 {
		for i := range 4 {
			mustPut(t, e, msgN(batch*4+i))
		}
		if len(j.saves) != batch+1 {
			t.Fatalf("batch %d: %d journal writes, want %d", batch, len(j.saves), batch+1)
		}
		var intent state
		json.Unmarshal([]byte(j.saves[batch]), &intent)
		if !intent.Open || intent.UIDNext != uint32(batch*4+1) {
			t.Errorf("batch %d: intent %s, want open from UID %d", batch, j.saves[batch], batch*4+1)
		}
		if err := e.Sync(c); err != nil {
			t.Fatal(err)
		}
		var committed state
		json.Unmarshal([]byte(e.CommitState()), &committed)
		if committed.Open || committed.UIDNext != uint32(batch*4+5) || committed.UIDValidity != e.UIDValidity() {
			t.Errorf("batch %d: CommitState %s", batch, e.CommitState())
		}
	}
	// A batch of messages already in the key map appends nothing and
	// saves nothing.
	mustPut(t, e, msgN(0))
	if len(j.saves) != 3 {
		t.Errorf("a Put that appends nothing saved an intent: %q", j.saves)
	}
}

func TestSaveFailureStopsAppend(t *testing.T) {
	srv := startMem(t, memConfig{})
	e := newExporter(t, srv.options("SaveFail"))
	boom := errors.New("journal is read-only")
	e.Resume(testCtx(t), "", func(context.Context, string) error { return boom })
	if _, err := e.Put(testCtx(t), msgN(1)); !errors.Is(err, boom) {
		t.Errorf("Put when the intent cannot be saved: %v, want %v", err, boom)
	}
	if n := len(srv.messages(t, "SaveFail")); n != 0 {
		t.Errorf("%d messages appended without a saved intent", n)
	}
}

func TestResumeErrors(t *testing.T) {
	srv := startMem(t, memConfig{})
	e := newExporter(t, srv.options("Resume"))
	c := testCtx(t)
	for _, st := range []string{"{", `{"uidnext":3}`, "[]"} {
		if err := e.Resume(c, st, nil); !errors.Is(err, ErrInvalidState) {
			t.Errorf("Resume(%q) = %v, want ErrInvalidState", st, err)
		}
	}
	// The conformance suite checks that Resume after a Put fails.
}

// TestSyncWaitsForPuts checks that Sync waits for a Put in flight and
// that Puts started during Sync wait for it.
func TestSyncWaitsForPuts(t *testing.T) {
	srv := startMem(t, memConfig{})
	f := &faults{}
	o := srv.options("SyncWait")
	o.Dial = f.dial
	o.Timeout = 300 * time.Millisecond
	e := newExporter(t, o)
	f.stall.Store(1)
	done := make(chan error, 1)
	go func() {
		_, err := e.Put(testCtx(t), msgN(1))
		done <- err
	}()
	// Wait until the Put is in flight.
	deadline := time.Now().Add(5 * time.Second)
	for {
		e.mu.Lock()
		n := e.inflight
		e.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the Put never started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := e.Sync(testCtx(t)); err != nil {
		t.Fatalf("Sync: %v (the Put in flight recovers by reconnecting)", err)
	}
	// The Put has left when Sync returns; its goroutine may not have
	// handed its result over yet.
	e.mu.Lock()
	n := e.inflight
	e.mu.Unlock()
	if n != 0 {
		t.Fatal("Sync returned before the Put in flight")
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Put: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the Put did not return after Sync")
	}
	// A short context ends a Sync waiting for a stalled Put.
	f.stallOn = []string{" APPEND ", " SEARCH "}
	f.stall.Store(2)
	go func() {
		_, err := e.Put(testCtx(t), msgN(2))
		done <- err
	}()
	for {
		e.mu.Lock()
		n := e.inflight
		e.mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := e.Sync(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Sync with a short context: %v", err)
	}
	// A Sync that waits for the failing Put returns its error.
	if err := e.Sync(testCtx(t)); !errors.Is(err, ErrTimeout) {
		t.Errorf("Sync waiting for a failing Put: %v, want ErrTimeout", err)
	}
	if err := <-done; !errors.Is(err, ErrTimeout) {
		t.Errorf("Put with stalled answers: %v, want ErrTimeout", err)
	}
	if err := e.Sync(testCtx(t)); err != nil {
		t.Errorf("Sync with nothing in flight: %v", err)
	}
}
