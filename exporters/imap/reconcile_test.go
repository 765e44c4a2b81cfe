package imap

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/popmigrate/popmigrate/exporters/exportertest"
)

// TestIdenticalMessagesNotMerged checks that two different keys with the
// same content are two messages, also when found on Resume: one found
// copy serves one Put.
func TestIdenticalMessagesNotMerged(t *testing.T) {
	srv := startMem(t, memConfig{})
	o := srv.options("Same")
	c := testCtx(t)
	body := []byte("Subject: same\n\nsame\n")
	j := &fakeJournal{}
	e1 := newExporter(t, o)
	e1.Resume(c, "", j.save)
	r1 := mustPut(t, e1, exportertest.NewMessage("a", body))
	e1.Close()

	e2 := newExporter(t, o)
	e2.Resume(c, j.last(), j.save)
	if got := mustPut(t, e2, exportertest.NewMessage("a", body)); got != r1 {
		t.Errorf("found copy: Ref %q, want %q", got, r1)
	}
	r2 := mustPut(t, e2, exportertest.NewMessage("b", body))
	if r2 == r1 {
		t.Errorf("a second key with the same content got the same Ref %q", r1)
	}
	if n := len(srv.messages(t, "Same")); n != 2 {
		t.Errorf("%d messages, want 2", n)
	}
}

// TestLostAppendAnswer drops the connection right after the server
// stored a message, before its tagged OK reaches the client: Put must
// reconnect, find the stored message and not append it again.
func TestLostAppendAnswer(t *testing.T) {
	for _, noUIDPlus := range []bool{false, true} {
		t.Run(fmt.Sprintf("noUIDPlus=%v", noUIDPlus), func(t *testing.T) {
			srv := startMem(t, memConfig{noUIDPlus: noUIDPlus})
			f := &faults{}
			o := srv.options("Lost")
			o.Dial = f.dial
			e := newExporter(t, o)
			j := &fakeJournal{}
			e.Resume(testCtx(t), "", j.save)
			f.dropAppendOK.Store(1)
			ref := mustPut(t, e, msgN(1))
			if f.dropAppendOK.Load() > 0 {
				t.Fatal("the fault was not triggered")
			}
			stored := srv.messages(t, "Lost")
			if len(stored) != 1 {
				t.Fatalf("%d messages, want 1", len(stored))
			}
			if got := mustOpen(t, e, ref); !bytes.Equal(got, messageBytes(msgN(1))) {
				t.Errorf("read back %q", got)
			}
			if n := f.dials.Load(); n != 2 {
				t.Errorf("%d dials, want 2 (one reconnection)", n)
			}
			if err := e.Sync(testCtx(t)); err != nil {
				t.Fatal(err)
			}
			if st := e.CommitState(); strings.Contains(st, `"open":true`) {
				t.Errorf("CommitState = %s, want closed once the lost answer was resolved", st)
			}
		})
	}
}
