package pipeline_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/pipeline"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
	"github.com/popmigrate/popmigrate/verify"
)

// TestAdoptedMessagesAreNeverDownloadedOrDeleted: the UIDLs another
// client fetched (journal import) are left on the server by run, its
// in-session verify and --delete, and by purge: only popmigrate's own
// copies are verified and deleted.
func TestAdoptedMessagesAreNeverDownloadedOrDeleted(t *testing.T) {
	msgs := smallMsgs("a", 5)
	e, log := purgeEnv(t, "alice", msgs, pop3test.Faults{})
	a := e.account("alice")
	ctx := context.Background()
	// a1..a3 were fetched by mpop; "gone" is no longer on the server.
	if n, err := e.j.Adopt(ctx, "alice", "mpop", "/home/alice/.mpop_uidls/alice", []string{"a1", "a2", "a3", "gone"}); err != nil || n != 4 {
		t.Fatalf("Adopt = %d, %v", n, err)
	}

	o := testOptions()
	o.VerifyInSession = true
	o.PurgeInSession = &pipeline.PurgeOptions{}
	rep := e.run([]*config.Account{a}, o)
	ar := accountReport(t, rep, "alice")
	wantCounts(t, ar, 5, 2, 0, 0, true)
	if ar.Adopted != 3 || rep.Totals.Adopted != 3 {
		t.Errorf("adopted %d (totals %d), want 3", ar.Adopted, rep.Totals.Adopted)
	}
	if got := e.srv.Stats().Retrs; got != 2 {
		t.Errorf("the server sent %d messages, want only the 2 not adopted", got)
	}
	files, _ := maildirFiles(t, e.maildir("alice"))
	if len(files) != 2 {
		t.Errorf("the Maildir holds %d messages, want 2", len(files))
	}
	// The verify of the session expects no copy of an adopted message,
	// and --delete leaves them on the server.
	if len(rep.Verify) != 1 || !rep.Verify[0].OK() || rep.Verify[0].Counts[verify.NotStored] != 0 || rep.Verify[0].Counts[verify.Match] != 2 {
		t.Fatalf("verify %+v, want 2 copies matching and nothing else", rep.Verify)
	}
	if len(rep.Purge) != 1 {
		t.Fatalf("purge reports %+v", rep.Purge)
	}
	wantPurge(t, rep.Purge[0], 2, 2, map[string]int{pipeline.SkipAdopted: 3}, false)
	if got := serverUIDs(e.srv, "alice"); !reflect.DeepEqual(got, []string{"a1", "a2", "a3"}) {
		t.Errorf("the server holds %q, want the adopted a1 a2 a3", got)
	}

	// A second run downloads nothing; purge deletes nothing.
	rep = e.run([]*config.Account{a}, testOptions())
	wantCounts(t, accountReport(t, rep, "alice"), 3, 0, 0, 0, true)
	if ar := accountReport(t, rep, "alice"); ar.Adopted != 3 {
		t.Errorf("second run: adopted %d, want 3", ar.Adopted)
	}
	prep := purgeOne(t, e.j, a, nil)
	wantPurge(t, prep, 0, 0, map[string]int{pipeline.SkipAdopted: 3}, false)
	if got := log.commands("DELE"); len(got) != 2 {
		t.Errorf("DELE sent: %q, want the two popmigrate stored", got)
	}
	// Verify against the server does not call them not stored.
	res, err := pipeline.Verify(ctx, e.j, []*config.Account{a}, &pipeline.VerifyOptions{Options: *testOptions(), AgainstSource: true})
	if err != nil || len(res) != 1 || !res[0].OK() || res[0].Counts[verify.NotStored] != 0 {
		t.Errorf("verify against the server: %+v, %v", res, err)
	}
}
