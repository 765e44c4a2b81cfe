package pipeline_test

import (
	"context"
	"testing"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/pipeline"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
	"github.com/popmigrate/popmigrate/verify"
)

// TestGmailSlicesAreAllFetched: a server that lists a mailbox in slices
// of the oldest messages not yet downloaded, and hides what a session
// retrieved (Gmail's POP3): with UntilEmpty every message is stored once,
// in as many sessions as slices, and verify is clean (hidden is not gone).
func TestGmailSlicesAreAllFetched(t *testing.T) {
	msgs := smallMsgs("g", 23)
	e := newEnv(t, []pop3test.Mailbox{mailbox("alice", msgs)}, &pop3test.ServerOptions{
		UserFaults: map[string]pop3test.Faults{"alice": {GmailSlice: 5}},
	})
	o := testOptions()
	o.UntilEmpty = true
	a := e.account("alice")
	rep := e.run([]*config.Account{a}, o)
	ar := accountReport(t, rep, "alice")
	if ar.Stored != 23 || !ar.Whole || ar.Sessions < 5 {
		t.Fatalf("stored %d whole %v in %d sessions; want 23 in at least 5 sessions (%+v)", ar.Stored, ar.Whole, ar.Sessions, ar)
	}
	storedOnly(t, e, msgs)
	for _, m := range msgs {
		if n := e.srv.RetrCount("alice", m.uid); n != 1 {
			t.Errorf("%s retrieved %d times", m.uid, n)
		}
	}
	res, err := pipeline.Verify(context.Background(), e.j, []*config.Account{a}, &pipeline.VerifyOptions{Options: *o, AgainstSource: true})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Problems() != 0 || res[0].Counts[verify.GoneFromServer] != 0 || res[0].Counts[verify.Match] != 23 {
		t.Errorf("verify: %+v", res[0])
	}
	// An account whose provider hides what was retrieved is run so
	// without the option.
	e3 := newEnv(t, []pop3test.Mailbox{mailbox("alice", msgs)}, &pop3test.ServerOptions{
		UserFaults: map[string]pop3test.Faults{"alice": {GmailSlice: 5}},
	})
	a3 := e3.account("alice")
	a3.UntilEmpty = true
	if ar := accountReport(t, e3.run([]*config.Account{a3}, testOptions()), "alice"); ar.Stored != 23 || !ar.Whole {
		t.Errorf("account's UntilEmpty: stored %d whole %v, want 23 true", ar.Stored, ar.Whole)
	}
	// Without UntilEmpty one session stores one slice only.
	e2 := newEnv(t, []pop3test.Mailbox{mailbox("alice", msgs)}, &pop3test.ServerOptions{
		UserFaults: map[string]pop3test.Faults{"alice": {GmailSlice: 5}},
	})
	if ar := accountReport(t, e2.run([]*config.Account{e2.account("alice")}, testOptions()), "alice"); ar.Stored != 5 {
		t.Errorf("without UntilEmpty: stored %d, want one slice of 5", ar.Stored)
	}
}
