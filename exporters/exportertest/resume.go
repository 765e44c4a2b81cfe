package exportertest

import (
	"testing"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/internal/testmsg"
)

// testResumeState drives an exporters.Resumable destination through the
// runs of a migration that crashes, as the pipeline's journal sees them:
//
//  1. the first run resumes with "", stores A and commits it (Sync, then
//     CommitState); Resume after that Put fails and loses nothing;
//  2. the next run, resumed with that state, holds A; it stores B and
//     syncs, but crashes before the journal commits B;
//  3. the next one stores B again and C, and crashes before any Sync;
//  4. the next one stores B and C again: after Resume the destination
//     either cut what was not committed or kept it, but holds nothing
//     twice (the Put of a kept message returns it; Count and List do not
//     grow); it commits;
//  5. the last one, resumed with that state, holds A, B and C.
func (s *suite) testResumeState(t *testing.T) {
	c := ctx(t)
	dir := t.TempDir()
	j := &journal{}
	run := func(what string) (exporters.Exporter, exporters.Resumable) {
		t.Helper()
		e := s.openRaw(t, dir, false)
		t.Cleanup(func() { e.Close() })
		r := e.(exporters.Resumable)
		if err := r.Resume(c, j.last(), j.save); err != nil {
			t.Fatalf("%s: Resume(%q): %v", what, j.last(), err)
		}
		return e, r
	}
	commit := func(e exporters.Exporter, r exporters.Resumable) {
		t.Helper()
		if err := e.Sync(c); err != nil {
			t.Fatalf("Sync: %v", err)
		}
		j.save(c, r.CommitState())
	}
	closeNow := func(e exporters.Exporter) {
		t.Helper()
		if err := e.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	dataA := testmsg.Find(t, "from-lines").Data
	dataB := testmsg.Find(t, "dot-lines").Data
	dataC := testmsg.Find(t, "trace-headers").Data
	msgA := func() *exporters.Message { return NewMessage("resume-state-a", dataA) }
	msgB := func() *exporters.Message { return NewMessage("resume-state-b", dataB) }
	msgC := func() *exporters.Message { return NewMessage("resume-state-c", dataC) }

	e1, r1 := run("first run")
	refA := s.put(t, c, e1, msgA())
	commit(e1, r1)
	if err := r1.Resume(c, j.last(), j.save); err == nil {
		t.Error("Resume after a Put succeeded")
	}
	checkStored(t, c, e1, msgA(), dataA, refA)
	closeNow(e1)

	e2, _ := run("second run")
	checkStored(t, c, e2, msgA(), dataA, refA)
	s.put(t, c, e2, msgB())
	if err := e2.Sync(c); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	closeNow(e2) // crash before the journal commits B

	e3, _ := run("third run")
	s.put(t, c, e3, msgB())
	s.put(t, c, e3, msgC())
	closeNow(e3) // crash before any Sync
	n, _ := s.count(t, dir)

	e4, r4 := run("fourth run")
	kept := map[string]string{}
	if f, ok := e4.(exporters.Finder); ok {
		for _, m := range []*exporters.Message{msgB(), msgC()} {
			if d, found, err := f.Has(c, m.Key); err != nil {
				t.Fatalf("Has %s: %v", m.UIDL, err)
			} else if found {
				kept[m.Key] = d.Ref
			}
		}
	}
	refB := s.put(t, c, e4, msgB())
	refC := s.put(t, c, e4, msgC())
	for key, ref := range map[string]string{msgB().Key: refB, msgC().Key: refC} {
		if was, ok := kept[key]; ok && was != ref {
			t.Errorf("Put of %s, which Has found after Resume at %q, = %q: a second copy", key, was, ref)
		}
	}
	commit(e4, r4)
	s.checkCount(t, dir, n, "Puts after resuming from two crashes")
	check := func(e exporters.Exporter, what string) {
		t.Helper()
		checkStored(t, c, e, msgA(), dataA, refA)
		checkStored(t, c, e, msgB(), dataB, refB)
		checkStored(t, c, e, msgC(), dataC, refC)
		l, ok := e.(exporters.Lister)
		if !ok {
			return
		}
		got, err := l.List(c, Account)
		if err != nil {
			t.Fatalf("%s: List: %v", what, err)
		}
		seen := map[string]int{}
		for _, x := range got {
			seen[x.Key]++
		}
		for _, m := range []*exporters.Message{msgA(), msgB(), msgC()} {
			if seen[m.Key] != 1 {
				t.Errorf("%s: List gives %s %d times, want once", what, m.UIDL, seen[m.Key])
			}
		}
		if len(got) != 3 {
			t.Errorf("%s: List gives %d messages, want 3: %v", what, len(got), got)
		}
	}
	check(e4, "after the Puts")
	closeNow(e4)

	e5, _ := run("last run")
	check(e5, "resumed from the last commit")
	s.checkCount(t, dir, n, "resuming from the last commit")
}
