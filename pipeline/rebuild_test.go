package pipeline_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/maildir"
	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/pipeline"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

// rebuild runs pipeline.Rebuild of the env's journal and returns the one
// account's report.
func (e *env) rebuild(t *testing.T, user string, ro *pipeline.RebuildOptions) *pipeline.RebuildReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	reps, err := pipeline.Rebuild(ctx, e.j, []*config.Account{e.account(user)}, testOptions(), ro)
	if err != nil {
		t.Fatalf("Rebuild: %v", err)
	}
	if len(reps) != 1 || reps[0].Error != "" {
		t.Fatalf("Rebuild reported %+v", reps)
	}
	return reps[0]
}

// TestRebuildMaildirByKey: after the journal of a run into a Maildir is
// lost, rebuild matches every copy by its key without downloading
// anything (the in-memory server counts no RETR), leaves a copy the server
// no longer lists alone, and the next run stores nothing. A dry run
// records nothing.
func TestRebuildMaildirByKey(t *testing.T) {
	msgs := smallMsgs("k", 5)
	e := newEnv(t, []pop3test.Mailbox{mailbox("kim", msgs)}, nil)
	rep := e.run([]*config.Account{e.account("kim")}, testOptions())
	wantCounts(t, accountReport(t, rep, "kim"), 5, 5, 0, 0, true)

	// The journal is lost; the Maildir holds a copy of a message the
	// server no longer lists.
	e.j.Close()
	for _, s := range []string{"", "-wal", "-shm"} {
		os.Remove(e.jpath + s)
	}
	e.jpath = filepath.Join(e.dir, "rebuilt.db")
	e.j = e.openJournal()
	gone := filepath.Join(e.maildir("kim"), "new", exporters.MessageKey("kim", "gone")+maildir.Suffix)
	if err := os.WriteFile(gone, []byte("Subject: gone\n\nlong gone\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	retrs := e.srv.Stats().Retrs

	dry := e.rebuild(t, "kim", &pipeline.RebuildOptions{DryRun: true})
	if dry.Matched != 5 || dry.ByKey != 5 {
		t.Errorf("dry run: %+v; want 5 matched by key", dry)
	}
	if rows, _ := e.j.Messages(context.Background(), "kim"); len(rows) != 0 {
		t.Errorf("a dry run recorded %d messages", len(rows))
	}

	got := e.rebuild(t, "kim", nil)
	if got.ServerMessages != 5 || got.Matched != 5 || got.ByKey != 5 || got.Complete != 5 || got.Missing != 0 || got.Retrieved != 0 {
		t.Errorf("rebuild: %+v; want 5 matched by key, complete", got)
	}
	if d := got.Dests[0]; d.Held != 6 || d.Matched != 5 || d.Unmatched != 1 {
		t.Errorf("rebuild: destination %+v; want 6 held, 5 matched, the copy of a message the server does not list unmatched", d)
	}
	if n := e.srv.Stats().Retrs; n != retrs {
		t.Errorf("rebuild sent %d RETRs, want none", n-retrs)
	}
	by, err := e.j.Rebuilt(context.Background(), "kim")
	if err != nil || len(by) != 5 {
		t.Fatalf("Rebuilt = %v, %v", by, err)
	}
	for uidl, how := range by {
		if how != journal.MatchedByKey {
			t.Errorf("uidl %q matched by %q, want key", uidl, how)
		}
	}
	// Again: everything is recorded already.
	if again := e.rebuild(t, "kim", nil); again.Matched != 0 || again.AlreadyRecorded != 5 {
		t.Errorf("second rebuild: %+v; want all 5 already recorded", again)
	}
	rep = e.run([]*config.Account{e.account("kim")}, testOptions())
	wantCounts(t, accountReport(t, rep, "kim"), 5, 0, 5, 0, true)
	if err := os.Remove(gone); err != nil {
		t.Fatal(err)
	}
	checkMaildir(t, e.maildir("kim"), "kim", msgs, false)
}
