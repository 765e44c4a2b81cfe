package pipeline_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/internal/dovecottest"
	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/pipeline"
	"github.com/popmigrate/popmigrate/pop3"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

// purgeLog collects a pop3test transcript ("3 C: DELE 1") written from
// the server's goroutines.
type purgeLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *purgeLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// commands returns the client commands of the transcript whose verb is
// verb, without the session number ("DELE 2").
func (l *purgeLog) commands(verb string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(l.b.String(), "\n") {
		_, cmd, ok := strings.Cut(line, " C: ")
		if ok && (cmd == verb || strings.HasPrefix(cmd, verb+" ")) {
			out = append(out, cmd)
		}
	}
	return out
}

// purgeEnv starts a server for user holding msgs, with a transcript, and
// the faults f for user.
func purgeEnv(t *testing.T, user string, msgs []srcMsg, f pop3test.Faults) (*env, *purgeLog) {
	t.Helper()
	log := &purgeLog{}
	e := newEnv(t, []pop3test.Mailbox{mailbox(user, msgs)}, &pop3test.ServerOptions{
		Log:        log,
		UserFaults: map[string]pop3test.Faults{user: f},
	})
	return e, log
}

// markAllVerified records every delivery of account as verified, as
// verify would after reading each copy back, and returns how many.
func markAllVerified(t *testing.T, j *journal.Journal, account string) int {
	t.Helper()
	ctx := context.Background()
	dels, err := j.Deliveries(ctx, account)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for uidl, byDest := range dels {
		for dest := range byDest {
			if err := j.MarkVerified(ctx, account, uidl, dest, time.Time{}); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	return n
}

// journalStates returns the state of every message of account by UIDL.
func journalStates(t *testing.T, j *journal.Journal, account string) map[string]string {
	t.Helper()
	rows, err := j.Messages(context.Background(), account)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]string, len(rows))
	for _, r := range rows {
		out[r.UIDL] = r.State
	}
	return out
}

// purge runs Purge and fails the test if it returns an error or not one
// report per account.
func purge(t *testing.T, j *journal.Journal, accounts []*config.Account, po *pipeline.PurgeOptions) []*pipeline.PurgeReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	reps, err := pipeline.Purge(ctx, j, accounts, testOptions(), po)
	if err != nil {
		t.Fatalf("Purge: %v", err)
	}
	if len(reps) != len(accounts) {
		t.Fatalf("Purge returned %d reports, want %d", len(reps), len(accounts))
	}
	return reps
}

// purgeOne purges a single account and returns its report.
func purgeOne(t *testing.T, j *journal.Journal, a *config.Account, po *pipeline.PurgeOptions) *pipeline.PurgeReport {
	t.Helper()
	return purge(t, j, []*config.Account{a}, po)[0]
}

// wantPurge checks a report's counts: planned, deleted, skips, and
// whether it has an error.
func wantPurge(t *testing.T, rep *pipeline.PurgeReport, planned, deleted int, skipped map[string]int, wantErr bool) {
	t.Helper()
	if skipped == nil {
		skipped = map[string]int{}
	}
	if len(rep.Planned) != planned || rep.Deleted != deleted || !reflect.DeepEqual(rep.Skipped, skipped) || (rep.Error != "") != wantErr {
		t.Errorf("account %s: planned %d deleted %d skipped %v error %q; want %d %d %v error %v (warnings %q)",
			rep.Account, len(rep.Planned), rep.Deleted, rep.Skipped, rep.Error, planned, deleted, skipped, wantErr, rep.Warnings)
	}
}

// serverUIDs returns the UIDLs user's mailbox holds now.
func serverUIDs(srv *pop3test.Server, user string) []string {
	var out []string
	for _, m := range srv.Mailbox(user) {
		out = append(out, m.UID)
	}
	return out
}

// runAndVerify runs the pipeline for accounts, checks each is whole and
// marks every delivery verified.
func runAndVerify(t *testing.T, e *env, accounts ...*config.Account) {
	t.Helper()
	rep := e.run(accounts, testOptions())
	for _, a := range accounts {
		if ar := accountReport(t, rep, a.Name); !ar.Whole {
			t.Fatalf("run of %s not whole: %+v", a.Name, ar)
		}
		markAllVerified(t, e.j, a.Name)
	}
}

func TestPurgeDeletesVerifiedMessages(t *testing.T) {
	msgs := smallMsgs("m", 4)
	e, log := purgeEnv(t, "alice", msgs, pop3test.Faults{})
	a := e.account("alice")
	runAndVerify(t, e, a)
	// A message that arrives after the run was never stored: not deleted.
	late := newMsg("late", []byte("Subject: late\n\narrived after the run\n"))
	e.srv.AddMessage("alice", pop3test.Message{UID: late.uid, Data: late.wire, Raw: true})

	rep := purgeOne(t, e.j, a, nil)
	wantPurge(t, rep, 4, 4, map[string]int{pipeline.SkipNotVerified: 1}, false)
	if rep.ServerMessages != 5 || len(rep.Warnings) != 0 {
		t.Errorf("server messages %d warnings %q; want 5, none", rep.ServerMessages, rep.Warnings)
	}
	for i, it := range rep.Planned {
		want := pipeline.PurgeItem{UIDL: msgs[i].uid, ID: i + 1, Size: int64(len(msgs[i].wire))}
		if it != want {
			t.Errorf("planned[%d] = %+v, want %+v", i, it, want)
		}
	}
	if got := serverUIDs(e.srv, "alice"); !reflect.DeepEqual(got, []string{"late"}) {
		t.Errorf("server holds %q, want only the late message", got)
	}
	if got := log.commands("DELE"); !reflect.DeepEqual(got, []string{"DELE 1", "DELE 2", "DELE 3", "DELE 4"}) {
		t.Errorf("DELE sent: %q", got)
	}
	if got := e.srv.Stats().DelesCommitted; got != 4 {
		t.Errorf("server committed %d deletions, want 4", got)
	}
	states := journalStates(t, e.j, "alice")
	for _, m := range msgs {
		if states[m.uid] != journal.StateDeleted {
			t.Errorf("journal: %s is %q, want deleted", m.uid, states[m.uid])
		}
	}
	// The Maildir still holds every message.
	checkMaildir(t, e.maildir("alice"), "alice", msgs, false)

	// A second purge finds nothing to delete and nothing amiss.
	rep = purgeOne(t, e.j, a, nil)
	wantPurge(t, rep, 0, 0, map[string]int{pipeline.SkipNotVerified: 1}, false)
	if len(rep.Warnings) != 0 {
		t.Errorf("second purge warnings %q, want none", rep.Warnings)
	}
	if n := len(log.commands("DELE")); n != 4 {
		t.Errorf("second purge sent DELE: %d in all, want still 4", n)
	}
}

func TestPurgeDryRunTouchesNothing(t *testing.T) {
	msgs := smallMsgs("d", 3)
	e, log := purgeEnv(t, "alice", msgs, pop3test.Faults{})
	a := e.account("alice")
	runAndVerify(t, e, a)
	before, err := e.j.Messages(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	mail := stamps(t, e.maildir("alice"))

	rep := purgeOne(t, e.j, a, &pipeline.PurgeOptions{DryRun: true})
	wantPurge(t, rep, 3, 0, nil, false)
	if got := log.commands("DELE"); len(got) != 0 {
		t.Errorf("dry run sent %q", got)
	}
	if got := log.commands("QUIT"); len(got) != 2 { // the run's and the dry run's
		t.Errorf("QUIT sent %d times, want 2 (a clean end of the dry run's session)", len(got))
	}
	if s := e.srv.Stats(); s.DelesCommitted != 0 {
		t.Errorf("server committed %d deletions", s.DelesCommitted)
	}
	if got := len(e.srv.Mailbox("alice")); got != 3 {
		t.Errorf("server holds %d messages, want 3", got)
	}
	after, err := e.j.Messages(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(before, after) {
		t.Errorf("dry run changed the journal:\nbefore %+v\nafter  %+v", before, after)
	}
	sameFiles(t, e.maildir("alice"), mail)
}

func TestPurgeSkipReasons(t *testing.T) {
	ctx := context.Background()

	t.Run("not verified", func(t *testing.T) {
		e, log := purgeEnv(t, "alice", smallMsgs("v", 3), pop3test.Faults{})
		a := e.account("alice")
		e.run([]*config.Account{a}, testOptions())
		// Verify one of the three only.
		if err := e.j.MarkVerified(ctx, "alice", "v2", "maildir:"+e.maildir("alice"), time.Time{}); err != nil {
			t.Fatal(err)
		}
		rep := purgeOne(t, e.j, a, nil)
		wantPurge(t, rep, 1, 1, map[string]int{pipeline.SkipNotVerified: 2}, false)
		if got := serverUIDs(e.srv, "alice"); !reflect.DeepEqual(got, []string{"v1", "v3"}) {
			t.Errorf("server holds %q, want v1 v3", got)
		}
		if got := log.commands("DELE"); !reflect.DeepEqual(got, []string{"DELE 2"}) {
			t.Errorf("DELE sent: %q", got)
		}
	})

	t.Run("copy made after verification", func(t *testing.T) {
		// Verified in A; a later run adds destination B, without
		// verify: B's copy was never read back, so the message is
		// 'stored' again in the journal.
		e, _ := purgeEnv(t, "alice", smallMsgs("c", 2), pop3test.Faults{})
		a := e.account("alice")
		runAndVerify(t, e, a)
		b := e.account("alice")
		b.To = append(b.To, "maildir:"+filepath.Join(e.dir, "second"))
		e.run([]*config.Account{b}, testOptions())
		if st := journalStates(t, e.j, "alice"); st["c1"] != journal.StateStored {
			t.Fatalf("setup: c1 is %q, want stored (a copy is not verified)", st["c1"])
		}
		rep := purgeOne(t, e.j, b, nil)
		wantPurge(t, rep, 0, 0, map[string]int{pipeline.SkipNotVerified: 2}, false)
		// With only A configured they go: every delivery must be verified,
		// so no.
		rep = purgeOne(t, e.j, a, nil)
		wantPurge(t, rep, 0, 0, map[string]int{pipeline.SkipNotVerified: 2}, false)
		if n := len(e.srv.Mailbox("alice")); n != 2 {
			t.Errorf("server holds %d messages, want 2", n)
		}
	})

	t.Run("not in every destination", func(t *testing.T) {
		e, log := purgeEnv(t, "alice", smallMsgs("n", 2), pop3test.Faults{})
		a := e.account("alice")
		runAndVerify(t, e, a)
		b := e.account("alice")
		b.To = append(b.To, "mbox:"+filepath.Join(e.dir, "never-written.mbox"))
		rep := purgeOne(t, e.j, b, nil)
		wantPurge(t, rep, 0, 0, map[string]int{pipeline.SkipNotEverywhere: 2}, false)
		if got := log.commands("DELE"); len(got) != 0 {
			t.Errorf("DELE sent: %q", got)
		}
		if _, err := os.Stat(filepath.Join(e.dir, "never-written.mbox")); !os.IsNotExist(err) {
			t.Errorf("purge created the destination it only had to name: %v", err)
		}
	})

	t.Run("duplicate uidl", func(t *testing.T) {
		msgs := smallMsgs("u", 3)
		twin := newMsg("u1", []byte("Subject: twin of u1\n\nsame UIDL, other message\n"))
		msgs = append(msgs, twin)
		e, log := purgeEnv(t, "alice", msgs, pop3test.Faults{})
		a := e.account("alice")
		runAndVerify(t, e, a)
		if st := journalStates(t, e.j, "alice"); st["u1 dup2"] != journal.StateVerified {
			t.Fatalf("setup: journal %v, want the twin verified as \"u1 dup2\"", st)
		}
		rep := purgeOne(t, e.j, a, nil)
		wantPurge(t, rep, 2, 2, map[string]int{pipeline.SkipDuplicateUIDL: 2}, false)
		if got := serverUIDs(e.srv, "alice"); !reflect.DeepEqual(got, []string{"u1", "u1"}) {
			t.Errorf("server holds %q, want both u1", got)
		}
		if got := log.commands("DELE"); !reflect.DeepEqual(got, []string{"DELE 2", "DELE 3"}) {
			t.Errorf("DELE sent: %q", got)
		}
	})

	t.Run("uidl repeated after the run", func(t *testing.T) {
		// The server gives a new message the UIDL of a verified one: the
		// journal never saw the repeat, the listing shows it.
		e, log := purgeEnv(t, "alice", smallMsgs("w", 2), pop3test.Faults{})
		a := e.account("alice")
		runAndVerify(t, e, a)
		reuse := newMsg("w1", []byte("Subject: new message, old UIDL\n\nbody\n"))
		e.srv.AddMessage("alice", pop3test.Message{UID: reuse.uid, Data: reuse.wire, Raw: true})
		rep := purgeOne(t, e.j, a, nil)
		wantPurge(t, rep, 1, 1, map[string]int{pipeline.SkipDuplicateUIDL: 2}, false)
		if got := log.commands("DELE"); !reflect.DeepEqual(got, []string{"DELE 2"}) {
			t.Errorf("DELE sent: %q", got)
		}
		if got := serverUIDs(e.srv, "alice"); !reflect.DeepEqual(got, []string{"w1", "w1"}) {
			t.Errorf("server holds %q, want both w1", got)
		}
	})

	t.Run("no uidl", func(t *testing.T) {
		e, log := purgeEnv(t, "alice", smallMsgs("s", 3), pop3test.Faults{NoUIDL: true})
		a := e.account("alice")
		runAndVerify(t, e, a)
		st := journalStates(t, e.j, "alice")
		if len(st) != 3 {
			t.Fatalf("setup: journal %v", st)
		}
		for k, v := range st {
			if v != journal.StateVerified {
				t.Fatalf("setup: %q is %q, want verified", k, v)
			}
		}
		rep := purgeOne(t, e.j, a, nil)
		wantPurge(t, rep, 0, 0, map[string]int{pipeline.SkipNoUIDL: 3}, false)
		if got := log.commands("DELE"); len(got) != 0 {
			t.Errorf("DELE sent: %q", got)
		}
	})

	t.Run("size changed", func(t *testing.T) {
		e, log := purgeEnv(t, "alice", smallMsgs("z", 2), pop3test.Faults{})
		a := e.account("alice")
		runAndVerify(t, e, a)
		e.srv.SetFaults("alice", pop3test.Faults{SizeSkew: 7})
		rep := purgeOne(t, e.j, a, nil)
		wantPurge(t, rep, 0, 0, map[string]int{pipeline.SkipSizeChanged: 2}, false)
		if got := log.commands("DELE"); len(got) != 0 {
			t.Errorf("DELE sent: %q", got)
		}
	})

	t.Run("not on server", func(t *testing.T) {
		e, _ := purgeEnv(t, "alice", smallMsgs("g", 3), pop3test.Faults{})
		a := e.account("alice")
		runAndVerify(t, e, a)
		deleteOnServer(t, e, "alice", 1) // another client removes g1
		rep := purgeOne(t, e.j, a, nil)
		wantPurge(t, rep, 2, 2, map[string]int{pipeline.SkipNotOnServer: 1}, false)
		// The journal does not claim a deletion it did not see.
		st := journalStates(t, e.j, "alice")
		if st["g1"] != journal.StateVerified || st["g2"] != journal.StateDeleted || st["g3"] != journal.StateDeleted {
			t.Errorf("journal %v, want g1 verified, g2 g3 deleted", st)
		}
	})
}

// TestPurgeUIDLOnceDuplicated pins that a UIDL an earlier listing repeated
// is never deleted, even when only one message with it is listed now: the
// UIDL no longer tells which of the two was verified.
func TestPurgeUIDLOnceDuplicated(t *testing.T) {
	msgs := []srcMsg{
		newMsg("same", []byte("Subject: first\n\nfirst body\n")),
		newMsg("same", []byte("Subject: second\n\nsecond body, longer than the first\n")),
		newMsg("other", []byte("Subject: other\n\nother body\n")),
	}
	e, log := purgeEnv(t, "alice", msgs, pop3test.Faults{})
	a := e.account("alice")
	runAndVerify(t, e, a)
	deleteOnServer(t, e, "alice", 1) // "same" is listed once from now on
	rep := purgeOne(t, e.j, a, nil)
	wantPurge(t, rep, 1, 1, map[string]int{pipeline.SkipDuplicateUIDL: 1}, false)
	if got := log.commands("DELE"); !reflect.DeepEqual(got, []string{"DELE 1", "DELE 2"}) {
		t.Errorf("DELE sent: %q (the first by the test's own client)", got)
	}
	if got := serverUIDs(e.srv, "alice"); !reflect.DeepEqual(got, []string{"same"}) {
		t.Errorf("server holds %q, want the remaining \"same\"", got)
	}
}

func TestPurgeKeepDays(t *testing.T) {
	e, _ := purgeEnv(t, "alice", smallMsgs("k", 3), pop3test.Faults{})
	a := e.account("alice")
	runAndVerify(t, e, a)
	now := time.Now()

	rep := purgeOne(t, e.j, a, &pipeline.PurgeOptions{KeepDays: 7, Now: func() time.Time { return now.Add(6 * 24 * time.Hour) }})
	wantPurge(t, rep, 0, 0, map[string]int{pipeline.SkipTooRecent: 3}, false)
	if n := len(e.srv.Mailbox("alice")); n != 3 {
		t.Fatalf("server holds %d messages, want 3", n)
	}
	rep = purgeOne(t, e.j, a, &pipeline.PurgeOptions{KeepDays: 7, Now: func() time.Time { return now.Add(8 * 24 * time.Hour) }})
	wantPurge(t, rep, 3, 3, nil, false)
	if n := len(e.srv.Mailbox("alice")); n != 0 {
		t.Errorf("server holds %d messages, want 0", n)
	}

	ctx := context.Background()
	if _, err := pipeline.Purge(ctx, e.j, []*config.Account{a}, testOptions(), &pipeline.PurgeOptions{KeepDays: -1}); err == nil {
		t.Error("Purge with KeepDays -1: no error")
	}
}

// TestPurgeDropBeforeQuitOK: the connection drops after the DELEs and
// before QUIT's +OK. RFC 1939: the server deleted nothing; the journal
// must not claim it did.
func TestPurgeDropBeforeQuitOK(t *testing.T) {
	msgs := smallMsgs("q", 3)
	e, log := purgeEnv(t, "alice", msgs, pop3test.Faults{})
	a := e.account("alice")
	runAndVerify(t, e, a)
	e.srv.SetFaults("alice", pop3test.Faults{DropBeforeQuitOK: true})

	rep := purgeOne(t, e.j, a, nil)
	wantPurge(t, rep, 3, 0, nil, true)
	if !strings.Contains(rep.Error, "quit") {
		t.Errorf("error %q does not say the QUIT failed", rep.Error)
	}
	if got := log.commands("DELE"); len(got) != 3 {
		t.Errorf("DELE sent: %q, want 3", got)
	}
	if n := len(e.srv.Mailbox("alice")); n != 3 {
		t.Errorf("server holds %d messages, want 3", n)
	}
	for uid, st := range journalStates(t, e.j, "alice") {
		if st != journal.StateVerified {
			t.Errorf("journal: %s is %q, want verified", uid, st)
		}
	}
	// Once the server behaves, the next purge deletes them.
	e.srv.SetFaults("alice", pop3test.Faults{})
	rep = purgeOne(t, e.j, a, nil)
	wantPurge(t, rep, 3, 3, nil, false)
}

// TestPurgeFakeDele: a server that answers +OK to DELE and QUIT but keeps
// the messages. The next purge says so, and sends no DELE for them again.
func TestPurgeFakeDele(t *testing.T) {
	e, log := purgeEnv(t, "alice", smallMsgs("f", 3), pop3test.Faults{FakeDele: true})
	a := e.account("alice")
	runAndVerify(t, e, a)
	rep := purgeOne(t, e.j, a, nil)
	wantPurge(t, rep, 3, 3, nil, false)
	if len(rep.Warnings) != 0 {
		t.Errorf("first purge warnings %q", rep.Warnings)
	}

	rep = purgeOne(t, e.j, a, nil)
	wantPurge(t, rep, 0, 0, map[string]int{pipeline.SkipAlreadyDeleted: 3}, false)
	if len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "server still lists 3 messages it acknowledged deleting") {
		t.Errorf("warnings %q, want one about 3 messages still listed", rep.Warnings)
	}
	if got := log.commands("DELE"); len(got) != 3 {
		t.Errorf("DELE sent %d times in all, want 3 (none by the second purge)", len(got))
	}
}

// TestPurgeDeleErr: the server answers -ERR to one DELE. The session is
// reset (RSET) and ended (QUIT): nothing is deleted, nothing is marked.
func TestPurgeDeleErr(t *testing.T) {
	msgs := smallMsgs("r", 3)
	e, log := purgeEnv(t, "alice", msgs, pop3test.Faults{})
	a := e.account("alice")
	runAndVerify(t, e, a)
	proxied := *a
	proxied.Port = refusingProxy(t, e, "DELE 2")

	rep := purgeOne(t, e.j, &proxied, nil)
	wantPurge(t, rep, 3, 0, nil, true)
	if !strings.Contains(rep.Error, "DELE 2") || !strings.Contains(rep.Error, `"r2"`) {
		t.Errorf("error %q does not name DELE 2 and its UIDL", rep.Error)
	}
	// The server saw DELE 1 (DELE 2 was answered by the proxy), then RSET
	// and QUIT; DELE 3 was never sent.
	if got := log.commands("DELE"); !reflect.DeepEqual(got, []string{"DELE 1"}) {
		t.Errorf("server got DELE %q, want DELE 1 only", got)
	}
	if got := log.commands("RSET"); len(got) != 1 {
		t.Errorf("server got RSET %d times, want 1", len(got))
	}
	if got := log.commands("QUIT"); len(got) != 2 { // the run's and the purge's
		t.Errorf("server got QUIT %d times, want 2", len(got))
	}
	if s := e.srv.Stats(); s.DelesCommitted != 0 {
		t.Errorf("server committed %d deletions", s.DelesCommitted)
	}
	if n := len(e.srv.Mailbox("alice")); n != 3 {
		t.Errorf("server holds %d messages, want 3", n)
	}
	for uid, st := range journalStates(t, e.j, "alice") {
		if st != journal.StateVerified {
			t.Errorf("journal: %s is %q, want verified", uid, st)
		}
	}
}

func TestPurgeRetriesLoginInUse(t *testing.T) {
	e, _ := purgeEnv(t, "alice", smallMsgs("i", 2), pop3test.Faults{})
	a := e.account("alice")
	runAndVerify(t, e, a)
	e.srv.SetFaults("alice", pop3test.Faults{LoginErr: "[IN-USE] mailbox locked", LoginErrCount: 1})
	rep := purgeOne(t, e.j, a, nil)
	wantPurge(t, rep, 2, 2, nil, false)
	if s := e.srv.Stats(); s.FailedLogins != 1 {
		t.Errorf("failed logins %d, want 1", s.FailedLogins)
	}
}

func TestPurgeRefusesAccountWithoutDestination(t *testing.T) {
	e, _ := purgeEnv(t, "alice", smallMsgs("x", 2), pop3test.Faults{})
	a := e.account("alice")
	runAndVerify(t, e, a)
	sessions := e.srv.Stats().Sessions
	bare := *a
	bare.To = nil
	rep := purgeOne(t, e.j, &bare, nil)
	wantPurge(t, rep, 0, 0, nil, true)
	if !strings.Contains(rep.Error, "no destination") {
		t.Errorf("error %q", rep.Error)
	}
	if s := e.srv.Stats(); s.Sessions != sessions {
		t.Errorf("purge opened %d sessions, want none", s.Sessions-sessions)
	}
}

// TestPurgeEveryFileDestinationKind deletes messages stored in Maildir,
// mbox and eml at once: the destination ids purge expects are those the
// run recorded.
func TestPurgeEveryFileDestinationKind(t *testing.T) {
	e, _ := purgeEnv(t, "alice", smallMsgs("e", 3), pop3test.Faults{})
	a := e.account("alice")
	a.To = append(a.To, "mbox:"+filepath.Join(e.dir, "alice.mbox"), "eml:"+filepath.Join(e.dir, "eml"))
	runAndVerify(t, e, a)
	rep := purgeOne(t, e.j, a, nil)
	wantPurge(t, rep, 3, 3, nil, false)
	if n := len(e.srv.Mailbox("alice")); n != 0 {
		t.Errorf("server holds %d messages, want 0", n)
	}
}

// TestPurgeManyAccounts: accounts are independent; one failing does not
// stop the others, and the reports come sorted by account.
func TestPurgeManyAccounts(t *testing.T) {
	users := []string{"carol", "alice", "bob"}
	var boxes []pop3test.Mailbox
	for _, u := range users {
		boxes = append(boxes, mailbox(u, smallMsgs(u, 2)))
	}
	e := newEnv(t, boxes, nil)
	var accounts []*config.Account
	for _, u := range users {
		accounts = append(accounts, e.account(u))
	}
	runAndVerify(t, e, accounts...)
	e.srv.SetFaults("bob", pop3test.Faults{DropBeforeQuitOK: true})
	reps := purge(t, e.j, accounts, nil)
	for i, want := range []string{"alice", "bob", "carol"} {
		if reps[i].Account != want {
			t.Fatalf("report %d is %s, want %s", i, reps[i].Account, want)
		}
	}
	wantPurge(t, reps[0], 2, 2, nil, false)
	wantPurge(t, reps[1], 2, 0, nil, true)
	wantPurge(t, reps[2], 2, 2, nil, false)
	if n := len(e.srv.Mailbox("bob")); n != 2 {
		t.Errorf("bob's server holds %d messages, want 2", n)
	}
}

// TestPurgeDovecot: run against a real Dovecot, verify, purge: exactly the
// stored messages leave the user's Maildir; one delivered after the run
// stays.
func TestPurgeDovecot(t *testing.T) {
	const n = 5
	var msgs [][]byte
	for i := range n {
		msgs = append(msgs, fmt.Appendf(nil, "From: a@example.org\nSubject: dovecot %d\n\nBody %d.\n.\n", i, i))
	}
	srv := dovecottest.Start(t, []dovecottest.User{{Name: "dora", Password: "pw-dora-Kx71", Messages: msgs}}, nil)
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("pw-dora-Kx71\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := config.FromFlags("pop3s://dora@"+srv.POP3SAddr, "dora", config.Defaults{
		To:       []string{"maildir:" + filepath.Join(dir, "out")},
		Password: config.Secret{File: pw},
		CAFile:   srv.CAFile,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	j, err := journal.Open(ctx, filepath.Join(dir, "journal.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	rep, err := pipeline.Run(ctx, j, []*config.Account{a}, testOptions())
	if err != nil || !rep.Accounts[0].Whole || rep.Accounts[0].Stored != n {
		t.Fatalf("run: %v %+v", err, rep.Accounts[0])
	}
	if got := markAllVerified(t, j, "dora"); got != n {
		t.Fatalf("verified %d deliveries, want %d", got, n)
	}
	late := []byte("From: b@example.org\nSubject: delivered after the run\n\nlate\n")
	srv.AddMessage(t, "dora", late)
	if got := dovecotFiles(t, srv.MaildirPath("dora")); len(got) != n+1 {
		t.Fatalf("setup: Maildir holds %d messages, want %d", len(got), n+1)
	}

	preps := purge(t, j, []*config.Account{a}, nil)
	wantPurge(t, preps[0], n, n, map[string]int{pipeline.SkipNotVerified: 1}, false)
	left := dovecotFiles(t, srv.MaildirPath("dora"))
	if len(left) != 1 || !bytes.Equal(left[0], late) {
		t.Errorf("Maildir holds %d messages after the purge, want only the late one: %q", len(left), left)
	}
	for uid, st := range journalStates(t, j, "dora") {
		if st != journal.StateDeleted {
			t.Errorf("journal: %s is %q, want deleted", uid, st)
		}
	}
	// The next purge finds the server and the journal agreeing.
	preps = purge(t, j, []*config.Account{a}, nil)
	wantPurge(t, preps[0], 0, 0, map[string]int{pipeline.SkipNotVerified: 1}, false)
	if len(preps[0].Warnings) != 0 {
		t.Errorf("warnings %q", preps[0].Warnings)
	}
}

// dovecotFiles returns the contents of the message files in the cur/ and
// new/ folders of a Dovecot Maildir.
func dovecotFiles(t *testing.T, dir string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, sub := range []string{"cur", "new"} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, de := range entries {
			if !de.Type().IsRegular() {
				continue
			}
			data, err := os.ReadFile(filepath.Join(dir, sub, de.Name()))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, data)
		}
	}
	return out
}

// deleteOnServer deletes message id of user with a client of its own, as
// another mail client of the user would.
func deleteOnServer(t *testing.T, e *env, user string, id int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pop3.Dial(ctx, fmt.Sprintf("127.0.0.1:%d", e.port), &pop3.Options{Security: pop3.SecurityTLS, TLSConfig: e.pki.ClientConfig()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(ctx, &pop3.Auth{Username: user, Password: passwordOf(user)}); err != nil {
		t.Fatal(err)
	}
	if err := c.Dele(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(ctx); err != nil {
		t.Fatal(err)
	}
}

// refusingProxy relays POP3 between clients and e's server (TLS on both
// legs, with e's certificate) and answers the command refuse itself with
// "-ERR", without passing it on. It returns the port it listens on.
func refusingProxy(t *testing.T, e *env, refuse string) int {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", e.pki.ServerConfig)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	track := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	backendAddr := fmt.Sprintf("127.0.0.1:%d", e.port)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			track(client)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer client.Close()
				backend, err := tls.Dial("tcp", backendAddr, e.pki.ClientConfig())
				if err != nil {
					return
				}
				track(backend)
				defer backend.Close()
				var wmu sync.Mutex // client writes: the relay and the refusals
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer client.Close()
					buf := make([]byte, 32<<10)
					for {
						n, err := backend.Read(buf)
						if n > 0 {
							wmu.Lock()
							_, werr := client.Write(buf[:n])
							wmu.Unlock()
							if werr != nil {
								return
							}
						}
						if err != nil {
							return
						}
					}
				}()
				br := bufio.NewReader(client)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if strings.TrimRight(line, "\r\n") == refuse {
						wmu.Lock()
						_, err = io.WriteString(client, "-ERR [SYS/PERM] message is under legal hold\r\n")
						wmu.Unlock()
					} else {
						_, err = io.WriteString(backend, line)
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}
