package pipeline_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/maildir"
	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/pipeline"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
	"github.com/popmigrate/popmigrate/verify"
)

// TestWriterReadsBackItsCopies: with verify in the session, the writer
// reads each Maildir copy back after its batch's Sync and records it
// verified in the batch's own commit. A copy damaged between the Sync and
// that read is recorded stored, not verified, and the session's verify
// reads it again and reports it; a copy the writer read back is not read
// again in the session (so damage done after that read is found by a
// later verify, not by the session's).
func TestWriterReadsBackItsCopies(t *testing.T) {
	msgs := smallMsgs("r", 12) // r1 ... r12, in batches of 4
	e := newEnv(t, []pop3test.Mailbox{mailbox("alice", msgs)}, nil)
	file := func(uidl string) string {
		return filepath.Join(e.maildir("alice"), "new", exporters.MessageKey("alice", uidl)+maildir.Suffix)
	}
	damage := func(uidl string) {
		t.Helper()
		b, err := os.ReadFile(file(uidl))
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)-2] ^= 1
		if err := os.WriteFile(file(uidl), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	states := func() map[string]string {
		rows, err := e.j.Messages(context.Background(), "alice")
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, m := range rows {
			out[m.UIDL] = m.State
		}
		return out
	}
	o := testOptions()
	o.VerifyInSession = true
	o.BatchSize, o.BatchInterval = 4, time.Minute
	var afterFirst map[string]string
	pipeline.SetTestHooks(o, nil, func(n int) {
		if n == 2 {
			damage("r6") // after the Sync of r5 ... r8, before their read-back
		}
	}, func(n int) {
		switch n {
		case 1:
			afterFirst = states()
		case 3:
			damage("r1") // read back, verified and committed already
		}
	})
	rep := e.run([]*config.Account{e.account("alice")}, o)
	wantCounts(t, accountReport(t, rep, "alice"), 12, 12, 0, 0, true)

	for _, uidl := range []string{"r1", "r2", "r3", "r4"} {
		if afterFirst[uidl] != journal.StateVerified {
			t.Errorf("after the first commit %s is %q, want verified in that commit", uidl, afterFirst[uidl])
		}
	}
	if len(rep.Verify) != 1 {
		t.Fatalf("verify results: %+v", rep.Verify)
	}
	res := rep.Verify[0]
	if got := kinds(res); res.Checked != 12 || res.Counts[verify.Match] != 11 || len(got) != 1 || got[0] != "checksum r6" {
		t.Errorf("the session's verify: %d checked, %d match, findings %v; want 12, 11 and r6's checksum", res.Checked, res.Counts[verify.Match], got)
	}
	for uidl, st := range states() {
		want := journal.StateVerified
		if uidl == "r6" {
			want = journal.StateStored
		}
		if st != want {
			t.Errorf("%s is %s, want %s", uidl, st, want)
		}
	}

	// A verify of its own reads every copy: r1's damage shows.
	after := runVerify(t, e, []*config.Account{e.account("alice")}, nil)
	if got := kinds(after[0]); len(got) != 2 || got[0] != "checksum r1" || got[1] != "checksum r6" {
		t.Errorf("verify after the run: findings %v, want the checksums of r1 and r6", got)
	}
}

// TestWriterReadsBackEachFileDestination: into a Maildir, an eml tree and
// an mbox at once, the writer reads back the Maildir and eml copies; the
// mbox copies are left to the session's verify (an mbox entry is only
// delimited by parsing the file), so the messages become verified there,
// every copy checked once.
func TestWriterReadsBackEachFileDestination(t *testing.T) {
	msgs := smallMsgs("f", 6)
	e := newEnv(t, []pop3test.Mailbox{mailbox("alice", msgs)}, nil)
	a := e.account("alice")
	a.To = []string{"maildir:" + e.maildir("alice"), "eml:" + filepath.Join(e.dir, "eml"), "mbox:" + filepath.Join(e.dir, "alice.mbox")}
	o := testOptions()
	o.VerifyInSession = true
	var readBack map[string]map[string]journal.Delivery
	pipeline.SetTestHooks(o, nil, nil, func(n int) {
		if n == 1 {
			var err error
			if readBack, err = e.j.Deliveries(context.Background(), "alice"); err != nil {
				t.Error(err)
			}
		}
	})
	rep := e.run([]*config.Account{a}, o)
	wantCounts(t, accountReport(t, rep, "alice"), 6, 6, 0, 0, true)
	for uidl, byDest := range readBack {
		for id, d := range byDest {
			if byWriter := !d.VerifiedAt.IsZero(); byWriter != !strings.HasPrefix(id, "mbox:") {
				t.Errorf("%s in %s: verified by the writer %v, want only Maildir and eml copies", uidl, id, byWriter)
			}
		}
	}
	if len(readBack) == 0 {
		t.Fatal("nothing committed in the first batch")
	}
	res := rep.Verify[0]
	if res.Checked != 18 || res.Counts[verify.Match] != 18 || !res.OK() {
		t.Errorf("the session's verify: %+v; want 18 copies, all matching", res)
	}
	rows, err := e.j.Messages(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range rows {
		if m.State != journal.StateVerified {
			t.Errorf("%s is %s, want verified", m.UIDL, m.State)
		}
	}
}
