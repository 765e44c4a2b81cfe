package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popmigrate/popmigrate/internal/testfs"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/all"
	"github.com/popmigrate/popmigrate/exporters/maildir"
	"github.com/popmigrate/popmigrate/exporters/mbox"
	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/pipeline"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
	"github.com/popmigrate/popmigrate/verify"
)

// verifyDests gives account a of e a Maildir, an mbox file and an eml
// tree (shared by the accounts), and returns the mbox path.
func verifyDests(e *env, a *config.Account) string {
	mb := filepath.Join(e.dir, "mbox", a.Name+".mbox")
	a.To = append(a.To, "mbox:"+mb, "eml:"+filepath.Join(e.dir, "eml"))
	return mb
}

// runVerify runs pipeline.Verify and fails the test on an error or a
// result count that is not one per account.
func runVerify(t *testing.T, e *env, accounts []*config.Account, o *pipeline.VerifyOptions) []*verify.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if o == nil {
		o = &pipeline.VerifyOptions{Options: pipeline.Options{Destinations: all.Registry()}}
	}
	res, err := pipeline.Verify(ctx, e.j, accounts, o)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if len(res) != len(accounts) {
		t.Fatalf("Verify returned %d results, want %d", len(res), len(accounts))
	}
	return res
}

// kinds returns the findings of res as "kind uidl" strings.
func kinds(res *verify.Result) []string {
	var out []string
	for _, f := range res.Findings {
		out = append(out, string(f.Kind)+" "+f.UIDL)
	}
	return out
}

func TestVerifyAfterRun(t *testing.T) {
	alice, bob := smallMsgs("a", 3), smallMsgs("b", 2)
	e := newEnv(t, []pop3test.Mailbox{mailbox("alice", alice), mailbox("bob", bob)}, nil)
	accounts := []*config.Account{e.account("bob"), e.account("alice")}
	bobMbox := verifyDests(e, accounts[0])
	verifyDests(e, accounts[1])
	e.run(accounts, testOptions())

	res := runVerify(t, e, accounts, nil)
	if res[0].Account != "alice" || res[1].Account != "bob" {
		t.Fatalf("results for %s, %s; want alice, bob", res[0].Account, res[1].Account)
	}
	for i, n := range []int{3, 2} {
		r := res[i]
		if r.Checked != 3*n || r.Counts[verify.Match] != 3*n || len(r.Findings) != 0 || !r.OK() {
			t.Errorf("%s: %+v; want %d copies, all matching", r.Account, r, 3*n)
		}
	}
	for _, name := range []string{"alice", "bob"} {
		rows, err := e.j.Messages(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range rows {
			if m.State != journal.StateVerified {
				t.Errorf("%s: message %s is %s after verify, want verified", name, m.UIDL, m.State)
			}
		}
	}

	// Damage one copy of each account: alice's Maildir file of a2 is
	// deleted, a byte of b1 in bob's mbox changes.
	if err := os.Remove(filepath.Join(e.maildir("alice"), "new", exporters.MessageKey("alice", "a2")+maildir.Suffix)); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(bobMbox)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte("Body of message 0"))
	if i < 0 {
		t.Fatal("b1 is not in bob's mbox")
	}
	b[i] = 'b'
	if err := os.WriteFile(bobMbox, b, 0o600); err != nil {
		t.Fatal(err)
	}
	res = runVerify(t, e, accounts, nil)
	if got := kinds(res[0]); len(got) != 1 || got[0] != "missing a2" || res[0].Findings[0].DestID != "maildir:"+e.maildir("alice") {
		t.Errorf("alice: findings %v (%+v), want a2 missing from the Maildir", got, res[0].Findings)
	}
	if got := kinds(res[1]); len(got) != 1 || got[0] != "checksum b1" || res[1].Findings[0].DestID != "mbox:"+bobMbox {
		t.Errorf("bob: findings %v (%+v), want b1's checksum in the mbox", got, res[1].Findings)
	}
}

func TestVerifyAgainstSource(t *testing.T) {
	msgs := smallMsgs("m", 3)
	e := newEnv(t, []pop3test.Mailbox{mailbox("alice", msgs)}, nil)
	a := e.account("alice")
	e.run([]*config.Account{a}, testOptions())
	// m1 is deleted by another client; m4 arrives after the run.
	deleteOnServer(t, e, "alice", 1)
	e.srv.AddMessage("alice", pop3test.Message{UID: "m4", Data: []byte("Subject: late\r\n\r\nlate\r\n"), Raw: true})
	before := e.srv.Stats()

	res := runVerify(t, e, []*config.Account{a}, &pipeline.VerifyOptions{Options: *testOptions(), AgainstSource: true})[0]
	got := kinds(res)
	if len(got) != 2 || got[0] != "gone-from-server m1" || got[1] != "not-stored m4" || res.Error != "" {
		t.Errorf("findings %v (error %q), want m1 gone from the server and m4 not stored", got, res.Error)
	}
	if res.Checked != 3 || res.Counts[verify.Match] != 3 || res.Problems() != 1 {
		t.Errorf("checked %d, counts %v; want 3 matching copies and one problem", res.Checked, res.Counts)
	}
	after := e.srv.Stats()
	if after.Retrs != before.Retrs || after.DelesCommitted != before.DelesCommitted || after.Logins != before.Logins+1 {
		t.Errorf("server stats %+v then %+v: verify must log in once, download and delete nothing", before, after)
	}
	rows, err := e.j.Messages(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range rows {
		if m.UIDL == "m4" {
			t.Errorf("verify recorded a listing: the journal now knows m4")
		}
	}
}

// TestVerifyDestinationAndServerFailures: a destination that cannot be
// opened is one unreadable finding (the other destinations are still
// checked), and a server that refuses the login sets the account's error.
func TestVerifyDestinationAndServerFailures(t *testing.T) {
	msgs := smallMsgs("m", 3)
	e := newEnv(t, []pop3test.Mailbox{mailbox("alice", msgs)}, nil)
	a := e.account("alice")
	mb := verifyDests(e, a)
	e.run([]*config.Account{a}, testOptions())
	if err := os.Rename(mb, mb+".moved"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(mb, 0o700); err != nil {
		t.Fatal(err)
	}
	wrong := e.accountWithPassword("alice", "not-the-password")
	nowhere := filepath.Join(e.dir, "nowhere")
	wrong.To = append(a.To, "maildir:"+nowhere)

	res := runVerify(t, e, []*config.Account{wrong}, &pipeline.VerifyOptions{Options: *testOptions(), AgainstSource: true})[0]
	if len(res.Findings) != 2 {
		t.Fatalf("findings %+v, want two", res.Findings)
	}
	f := res.Findings[0]
	if f.Kind != verify.Unreadable || f.DestID != "mbox:"+mb || !strings.Contains(f.Detail, "3 recorded copies not checked") {
		t.Errorf("finding %+v; want the mbox unreadable, its 3 copies not checked", f)
	}
	f = res.Findings[1]
	if f.Kind != verify.Unreadable || f.DestID != "maildir:"+nowhere || !strings.Contains(f.Detail, "no such file") {
		t.Errorf("finding %+v; want the missing Maildir unreadable", f)
	}
	if _, err := os.Stat(nowhere); !os.IsNotExist(err) {
		t.Errorf("verify created the missing Maildir: %v", err)
	}
	if res.Checked != 6 || res.Counts[verify.Match] != 6 {
		t.Errorf("checked %d, counts %v; want the Maildir's and the eml tree's 6 copies matching", res.Checked, res.Counts)
	}
	if res.Error == "" || !strings.Contains(res.Error, "login") || res.OK() {
		t.Errorf("error %q; want the failed login", res.Error)
	}
}

// destRoots returns the folders holding the destinations verifyDests gave
// the accounts of e.
func destRoots(e *env) []string {
	return []string{filepath.Join(e.dir, "mail"), filepath.Join(e.dir, "mbox"), filepath.Join(e.dir, "eml")}
}

// manifestOf writes the manifest of account from e's journal.
func manifestOf(t *testing.T, e *env, account string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := verify.WriteManifest(context.Background(), e.j, account, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// verifyAllMatch checks that Verify and VerifyManifest of alice's three
// destinations find n matching messages in each, and nothing else.
func verifyAllMatch(t *testing.T, e *env, a *config.Account, n int) {
	t.Helper()
	res := runVerify(t, e, []*config.Account{a}, nil)[0]
	if res.Checked != 3*n || res.Counts[verify.Match] != 3*n || len(res.Findings) != 0 || !res.OK() {
		t.Errorf("Verify: checked %d, counts %v, findings %+v; want %d copies, all matching", res.Checked, res.Counts, res.Findings, 3*n)
	}
	manifest := manifestOf(t, e, a.Name)
	for _, spec := range a.To {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		res, err := pipeline.VerifyManifest(ctx, bytes.NewReader(manifest), spec, a, &pipeline.VerifyOptions{Options: pipeline.Options{Destinations: all.Registry()}})
		cancel()
		if err != nil {
			t.Errorf("VerifyManifest %s: %v", spec, err)
			continue
		}
		if res.Counts[verify.Match] != n || len(res.Findings) != 0 || !res.OK() {
			t.Errorf("VerifyManifest %s: counts %v, findings %+v; want %d matching", spec, res.Counts, res.Findings, n)
		}
	}
}

// TestVerifyChangesNoDestination: Verify and VerifyManifest read every
// destination and change nothing in it: no name, size, time or byte,
// temporary files a writer would clean up (Maildir tmp/, eml .tmp/) and
// the mbox index included.
func TestVerifyChangesNoDestination(t *testing.T) {
	e := newEnv(t, []pop3test.Mailbox{mailbox("alice", smallMsgs("m", 3))}, nil)
	a := e.account("alice")
	verifyDests(e, a)
	e.run([]*config.Account{a}, testOptions())
	for _, p := range []string{
		filepath.Join(e.maildir("alice"), "tmp", "left-by-a-crash.tmp"),
		filepath.Join(e.dir, "eml", "alice", ".tmp", "left-by-a-crash.tmp"),
	} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	before := map[string]map[string]string{}
	for _, root := range destRoots(e) {
		testfs.Backdate(t, root)
		before[root] = testfs.Snapshot(t, root)
	}
	verifyAllMatch(t, e, a, 3)
	for _, root := range destRoots(e) {
		testfs.Unchanged(t, root, before[root])
	}
}

// TestVerifyMboxWhileAWriterHoldsIt: an mbox file locked by a writer (a
// run appending to it) is verified, not reported unreadable.
func TestVerifyMboxWhileAWriterHoldsIt(t *testing.T) {
	e := newEnv(t, []pop3test.Mailbox{mailbox("alice", smallMsgs("m", 3))}, nil)
	a := e.account("alice")
	mb := verifyDests(e, a)
	e.run([]*config.Account{a}, testOptions())
	w, err := mbox.New(mb, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w2, err := mbox.New(mb, nil); !errors.Is(err, mbox.ErrLocked) {
		if err == nil {
			w2.Close()
		}
		t.Fatalf("second writer: %v; want ErrLocked (the lock must be held for this test)", err)
	}
	verifyAllMatch(t, e, a, 3)
}

// TestVerifyReadOnlyMedia verifies destinations on read-only bind mounts
// (the journal stays writable): every copy matches and is recorded as
// verified. The test is skipped where the mounts are not allowed.
func TestVerifyReadOnlyMedia(t *testing.T) {
	e := newEnv(t, []pop3test.Mailbox{mailbox("alice", smallMsgs("m", 3))}, nil)
	a := e.account("alice")
	verifyDests(e, a)
	e.run([]*config.Account{a}, testOptions())
	for _, root := range destRoots(e) {
		testfs.ReadOnlyMount(t, root, root)
	}
	if _, err := maildir.New(e.maildir("alice"), nil); err == nil {
		t.Fatal("a writer opened the Maildir on the read-only mount")
	}
	verifyAllMatch(t, e, a, 3)
	rows, err := e.j.Messages(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range rows {
		if m.State != journal.StateVerified {
			t.Errorf("message %s is %s, want verified", m.UIDL, m.State)
		}
	}
}
