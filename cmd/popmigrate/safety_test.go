package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

// TestCorruptJournalIsAUsageError pins the fault where a damaged journal
// gave exit 1 ("retry"): every command that meets it exits 2 and says what
// to do.
func TestCorruptJournalIsAUsageError(t *testing.T) {
	f := newFixture(t, []string{"alice"}, []int{1}, pop3test.ServerOptions{Implicit: true})
	if err := os.WriteFile(f.journal, []byte(strings.Repeat("not a journal at all\n", 300)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		f.runArgs("--source", f.source("alice"), "--password-file", f.pwFiles["alice"]),
		{"status", "--journal", f.journal},
		{"verify", "--journal", f.journal, "--source", f.source("alice"), "--to", "maildir:" + filepath.Join(f.out, "{user}")},
	} {
		r := runMain(t, args...)
		r.wantCode(t, exitUsage)
		if !strings.Contains(r.stderr, "journal file is damaged") || !strings.Contains(r.stderr, "--journal") {
			t.Errorf("%s: stderr does not say what to do:\n%s", args[0], r.stderr)
		}
	}
	if got := f.srv.Stats().Logins; got != 0 {
		t.Errorf("%d logins with a damaged journal", got)
	}
}

// A message that stalls is reported by UIDL and number, exit 1, and the
// rest of the mailbox is stored.
func TestRunReportsAStalledMessageAndStoresTheRest(t *testing.T) {
	f := newFixture(t, []string{"alice"}, []int{4}, pop3test.ServerOptions{Implicit: true,
		Faults: pop3test.Faults{StallInRetr: map[int]int64{3: 10}}})
	args := f.runArgs("--source", f.source("alice"), "--password-file", f.pwFiles["alice"], "--timeout", "300ms", "--no-verify")
	r := runMain(t, args...)
	r.wantCode(t, exitFailed)
	if !strings.Contains(r.stdout, `message 3 (uidl "alice-uid-003")`) {
		t.Errorf("report does not name the stalled message by number and UIDL:\n%s", r.stdout)
	}
	row := tableRow(t, r.stdout, f.account("alice"))
	if row[2] != "3" || row[5] != "1" { // ACCOUNT, ON SERVER, STORED, ALREADY STORED, ADOPTED, FAILED
		t.Errorf("row %q, want 3 stored and 1 failed", row)
	}
	st := journalStatus(t, f.journal)[f.account("alice")]
	if st.Failed != 1 || len(st.Failures) != 1 || st.Failures[0].Attempts != 3 {
		t.Errorf("journal status %+v, want one failure after 3 attempts", st)
	}
	s := runMain(t, "status", "--journal", f.journal)
	s.wantCode(t, exitOK)
	if !strings.Contains(s.stdout, `message "alice-uid-003" (3 attempts)`) {
		t.Errorf("status does not list the failure with its attempts:\n%s", s.stdout)
	}
}

// Suspect messages are listed by run, status and verify, and --delete
// keeps them on the server unless --delete-suspect.
func TestSuspectMessagesAreListedAndKept(t *testing.T) {
	f := newFixture(t, []string{"alice"}, []int{2}, pop3test.ServerOptions{Implicit: true,
		Faults: pop3test.Faults{SizeSkew: 50}})
	args := f.runArgs("--source", f.source("alice"), "--password-file", f.pwFiles["alice"], "--delete")
	r := runMain(t, args...)
	r.wantCode(t, exitOK)
	if !strings.Contains(r.stdout, "SUSPECT") || !strings.Contains(r.stdout, "--delete-suspect") {
		t.Errorf("run report does not flag the suspect messages:\n%s", r.stdout)
	}
	if n := len(f.srv.Mailbox("alice")); n != 2 {
		t.Errorf("the server holds %d messages after --delete, want both suspect ones kept", n)
	}
	s := runMain(t, "status", "--journal", f.journal)
	if !strings.Contains(s.stdout, "is SUSPECT, kept on the server") {
		t.Errorf("status does not list suspects:\n%s", s.stdout)
	}
	v := runMain(t, "verify", "--journal", f.journal, "--source", f.source("alice"), "--to", "maildir:"+filepath.Join(f.out, "{user}"))
	v.wantCode(t, exitOK)
	if !strings.Contains(v.stdout, "suspect, kept on the server") {
		t.Errorf("verify does not list suspects:\n%s", v.stdout)
	}
	r = runMain(t, append(args, "--delete-suspect")...)
	r.wantCode(t, exitOK)
	if n := len(f.srv.Mailbox("alice")); n != 0 {
		t.Errorf("the server holds %d messages after --delete --delete-suspect, want 0", n)
	}
}

// A second run on a journal whose account another popmigrate holds leaves
// the account to it, saying so, and logs in nowhere while the holder's
// lease lives; once it expired (the holder died), the run takes the
// account over and finishes it.
func TestRunLeavesAnAccountAnotherRunHoldsUntilItsLeaseExpires(t *testing.T) {
	f := newFixture(t, []string{"alice"}, []int{2}, pop3test.ServerOptions{Implicit: true})
	ctx := context.Background()
	j, err := journal.Open(ctx, f.journal)
	if err != nil {
		t.Fatal(err)
	}
	const ttl = 2 * time.Second
	if _, err := j.AcquireLease(ctx, f.account("alice"), journal.Holder{ID: "x", PID: 4242, Host: "otherhost"}, ttl); err != nil {
		t.Fatal(err)
	}
	j.Close()
	start := time.Now()
	r := runMain(t, f.runArgs("--source", f.source("alice"), "--password-file", f.pwFiles["alice"], "--lease-ttl", "4s", "-v")...)
	r.wantCode(t, exitOK)
	if !strings.Contains(r.stderr, "pid 4242 on otherhost") || !strings.Contains(r.stderr, "another popmigrate works on the account") {
		t.Errorf("the run does not say whose the account was:\n%s", r)
	}
	if took := time.Since(start); took < ttl {
		t.Errorf("the account was taken over after %v, before the holder's lease (%v) expired", took, ttl)
	}
	if got := f.srv.Stats().Logins; got != 1 {
		t.Errorf("%d logins; want 1, after the takeover", got)
	}
	if r := runMain(t, f.runArgs("--source", f.source("alice"), "--password-file", f.pwFiles["alice"], "--lease-ttl", "500ms")...); r.code != exitUsage || !strings.Contains(r.stderr, "--lease-ttl") {
		t.Errorf("--lease-ttl 500ms: want a usage error naming it:\n%s", r)
	}
}

// A password helper that fails after printing the secret (on stdout and
// stderr) fails its account with how it ended; the secret is nowhere: not
// in the report, --json, stderr, status or the journal.
func TestFailingPasswordHelperNeverLeaksItsOutput(t *testing.T) {
	f := newFixture(t, []string{"alice"}, []int{1}, pop3test.ServerOptions{Implicit: true})
	const secret = "S3CRET-" + "printed-by-the-helper"
	helper := "echo " + secret + "; echo " + secret + " >&2; exit 3"
	var outputs []byte
	for _, extra := range [][]string{nil, {"--json"}} {
		r := runMain(t, f.runArgs(append([]string{"--source", f.source("alice"), "--password-command", helper}, extra...)...)...)
		r.wantCode(t, exitFailed)
		if !strings.Contains(r.stdout, "exit status 3") {
			t.Errorf("the report does not say how the helper ended:\n%s", r)
		}
		outputs = append(outputs, r.stdout+r.stderr...)
	}
	for _, args := range [][]string{{"status", "--journal", f.journal}, {"status", "--journal", f.journal, "--json"}} {
		r := runMain(t, args...)
		outputs = append(outputs, r.stdout+r.stderr...)
	}
	for where, data := range map[string][]byte{"outputs": outputs, "journal": journalBytes(t, f.journal)} {
		if strings.Contains(string(data), secret) {
			t.Errorf("%s holds the helper's output", where)
		}
	}
}

// run --delete downloads, reads back, lists and deletes in one session per
// account: one login each, also against a server that announces
// LOGIN-DELAY 60 (it refuses a second login within the minute), and
// without waiting for the delay.
func TestRunDeleteLogsInOncePerAccount(t *testing.T) {
	for _, delay := range []time.Duration{0, 60 * time.Second} {
		t.Run(fmt.Sprintf("LOGIN-DELAY %v", delay), func(t *testing.T) {
			f := newFixture(t, []string{"alice", "bob"}, []int{3, 2}, pop3test.ServerOptions{Implicit: true, Faults: pop3test.Faults{LoginDelay: delay}})
			start := time.Now()
			r := runMain(t, f.runArgs("--accounts", f.csv(t, "alice", "bob"), "--delete")...)
			r.wantCode(t, exitOK)
			if st := f.srv.Stats(); st.Logins != 2 || st.FailedLogins != 0 || st.DelesCommitted != 5 {
				t.Errorf("logins %d (%d refused), deletions %d; want 2 logins (one per account) and 5 deletions", st.Logins, st.FailedLogins, st.DelesCommitted)
			}
			if took := time.Since(start); took > 15*time.Second {
				t.Errorf("the run took %v: it waited for the LOGIN-DELAY", took)
			}
			for _, u := range []string{"alice", "bob"} {
				if n := len(f.srv.Mailbox(u)); n != 0 {
					t.Errorf("%s still holds %d messages", u, n)
				}
				f.checkMaildir(t, u)
			}
		})
	}
}

// The journal describes its migration: after a run, verify needs nothing
// but --journal (every account and destination the run recorded; --to
// narrows them), and an account that never got to its listing shows as
// unknown on the server, not as an empty mailbox.
func TestVerifyNeedsOnlyTheJournal(t *testing.T) {
	f := newFixture(t, []string{"alice", "bob"}, []int{3, 2}, pop3test.ServerOptions{Implicit: true})
	mbox := filepath.Join(f.dir, "archive", "{user}.mbox")
	r := runMain(t, append(f.runArgs("--accounts", f.csv(t, "alice", "bob")), "--to", "mbox:"+mbox)...)
	r.wantCode(t, exitOK)
	v := runMain(t, "verify", "--journal", f.journal)
	v.wantCode(t, exitOK)
	if !strings.Contains(v.stdout, "2 accounts: 10 copies checked: 10 match") {
		t.Errorf("verify --journal alone:\n%s", v)
	}
	v = runMain(t, "verify", "--journal", f.journal, "--to", "maildir:"+filepath.Join(f.out, "alice"))
	v.wantCode(t, exitOK)
	if !strings.Contains(v.stdout, "alice@127.0.0.1: 3 copies checked: 3 match") || strings.Contains(v.stdout, "bob") {
		t.Errorf("verify --journal --to narrows to one destination:\n%s", v)
	}

	// An account whose login fails never lists: unknown, not 0.
	bad := writeFile(t, f.dir, "wrong.password", "wrong\n")
	r = runMain(t, f.runArgs("--source", "pop3s://carol@"+f.addr, "--password-file", bad)...)
	r.wantCode(t, exitFailed)
	if row := tableRow(t, r.stdout, "carol@127.0.0.1"); row[1] != "unknown" {
		t.Errorf("run report row %q, want the server count unknown", row)
	}
	s := runMain(t, "status", "--journal", f.journal)
	if row := tableRow(t, s.stdout, "carol@127.0.0.1"); row[1] != "unknown" {
		t.Errorf("status row %q, want the server count unknown", row)
	}
}
