package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/pipeline"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

// parsePurge parses args as `popmigrate purge ARGS`.
func parsePurge(t *testing.T, args ...string) *purgeOptions {
	t.Helper()
	return parseFlags(t, newPurgeCmd, args...)
}

func TestPurgeFlags(t *testing.T) {
	o := parsePurge(t)
	if o.Journal != "popmigrate.db" || o.DryRun || o.KeepDays != 0 || o.JSON || o.Jobs != 8 || o.PerHost != 4 ||
		o.Timeout != 60*time.Second || o.Attempts != 5 {
		t.Errorf("defaults: %+v", o)
	}
	o = parsePurge(t, "--source", "pop3s://alice@mail.example.org", "--password-env", "PW",
		"--to", "maildir:/srv/a", "--to", "mbox:/srv/a.mbox", "--journal", "j.db",
		"--dry-run", "--keep-days", "30", "--json", "--jobs", "2", "--timeout", "5s")
	want := accountFlags{Source: "pop3s://alice@mail.example.org", PasswordEnv: "PW", To: []string{"maildir:/srv/a", "mbox:/srv/a.mbox"}}
	if !reflect.DeepEqual(o.accountFlags, want) {
		t.Errorf("account flags %+v, want %+v", o.accountFlags, want)
	}
	if o.Journal != "j.db" || !o.DryRun || o.KeepDays != 30 || !o.JSON || o.Jobs != 2 || o.Timeout != 5*time.Second {
		t.Errorf("parsed: %+v", o)
	}
}

// purgeFixture is a fixture whose users' messages were stored by a run
// (through Main) and then marked verified in the journal.
func purgeFixture(t *testing.T, n int, o pop3test.ServerOptions) *fixture {
	t.Helper()
	o.Implicit = true
	f := newFixture(t, []string{"alice"}, []int{n}, o)
	runMain(t, f.runArgs("--source", f.source("alice"), "--password-file", f.pwFiles["alice"])...).wantCode(t, exitOK)
	ctx := context.Background()
	j, err := journal.Open(ctx, f.journal)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	dels, err := j.Deliveries(ctx, f.account("alice"))
	if err != nil {
		t.Fatal(err)
	}
	if len(dels) != n {
		t.Fatalf("the run recorded %d messages, want %d", len(dels), n)
	}
	for uidl, byDest := range dels {
		for dest := range byDest {
			if err := j.MarkVerified(ctx, f.account("alice"), uidl, dest, time.Time{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return f
}

// purgeArgs are the arguments of a purge of alice on the fixture.
func (f *fixture) purgeArgs(extra ...string) []string {
	return append([]string{"purge", "--source", f.source("alice"), "--password-file", f.pwFiles["alice"],
		"--ca-file", f.caFile, "--journal", f.journal, "--to", "maildir:" + filepath.Join(f.out, "{user}")}, extra...)
}

func TestPurgeDryRunThenDelete(t *testing.T) {
	f := purgeFixture(t, 3, pop3test.ServerOptions{})
	late := pop3test.Message{UID: "late-1", Data: []byte("Subject: late\r\n\r\narrived after the run\r\n"), Raw: true}
	f.srv.AddMessage("alice", late)
	account := f.account("alice")

	r := runMain(t, f.purgeArgs("--dry-run")...)
	r.wantCode(t, exitOK)
	for _, want := range []string{
		account + ": would delete 3 of 4 (dry run)\n",
		`    - message 1: uidl "alice-uid-001", `,
		`    - message 3: uidl "alice-uid-003", `,
		"    skipped 1: not verified\n",
		"dry run: would delete 3 messages from 1 accounts; nothing was deleted\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, r)
		}
	}
	if n := len(f.srv.Mailbox("alice")); n != 4 {
		t.Fatalf("after the dry run the server holds %d messages, want 4", n)
	}
	if st := journalStatus(t, f.journal)[account]; st.Verified != 3 || st.Deleted != 0 {
		t.Errorf("after the dry run the journal has %d verified, %d deleted; want 3, 0", st.Verified, st.Deleted)
	}

	r = runMain(t, f.purgeArgs()...)
	r.wantCode(t, exitOK)
	for _, want := range []string{
		account + ": deleted 3 of 4\n",
		"    skipped 1: not verified\n",
		"deleted 3 messages from 1 accounts\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("purge output lacks %q:\n%s", want, r)
		}
	}
	if got := f.srv.Mailbox("alice"); len(got) != 1 || got[0].UID != "late-1" {
		t.Errorf("server holds %v, want only the late message", got)
	}
	if st := journalStatus(t, f.journal)[account]; st.Verified != 0 || st.Deleted != 3 {
		t.Errorf("journal has %d verified, %d deleted; want 0, 3", st.Verified, st.Deleted)
	}
	// The purge is on record in the journal; the dry run is not.
	j, err := journal.Open(context.Background(), f.journal)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	runs, err := j.Runs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 || !strings.HasPrefix(runs[1].Args, "purge ") || runs[1].ExitCode != exitOK || runs[1].FinishedAt.IsZero() {
		t.Errorf("runs %+v, want the run and one finished purge", runs)
	}
	// The Maildir keeps every message.
	f.checkMaildir(t, "alice")
}

func TestPurgeJSON(t *testing.T) {
	f := purgeFixture(t, 2, pop3test.ServerOptions{})
	r := runMain(t, f.purgeArgs("--json")...)
	r.wantCode(t, exitOK)
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	dec.DisallowUnknownFields()
	var out purgeJSON
	if err := dec.Decode(&out); err != nil || dec.More() {
		t.Fatalf("stdout is not one purge JSON document (%v):\n%s", err, r.stdout)
	}
	if out.DryRun || len(out.Accounts) != 1 {
		t.Fatalf("json: %+v", out)
	}
	a := out.Accounts[0]
	if a.Account != f.account("alice") || a.Deleted != 2 || len(a.Planned) != 2 || a.ServerMessages != 2 || a.Error != "" {
		t.Errorf("json account: %+v", a)
	}
	// The server's size: every LF is served as CRLF.
	canon := f.boxes["alice"].canon["alice-uid-001"]
	if want := (pipeline.PurgeItem{UIDL: "alice-uid-001", ID: 1, Size: int64(len(canon) + bytes.Count(canon, []byte("\n")))}); a.Planned[0] != want {
		t.Errorf("planned[0] = %+v, want %+v", a.Planned[0], want)
	}
}

// TestPurgeQuitDropped: the server drops the connection instead of
// answering QUIT: exit 1, the error is reported, nothing is deleted or
// marked.
func TestPurgeQuitDropped(t *testing.T) {
	f := purgeFixture(t, 2, pop3test.ServerOptions{})
	f.srv.SetFaults("alice", pop3test.Faults{DropBeforeQuitOK: true})
	r := runMain(t, f.purgeArgs()...)
	r.wantCode(t, exitFailed)
	account := f.account("alice")
	if !strings.Contains(r.stdout, account+": deleted 0 of 2\n") || !strings.Contains(r.stdout, "! "+account+": quit after 2 DELE") {
		t.Errorf("output does not report the failed QUIT:\n%s", r)
	}
	if !strings.Contains(r.stderr, "1 of 1 accounts failed") {
		t.Errorf("stderr: %s", r.stderr)
	}
	if n := len(f.srv.Mailbox("alice")); n != 2 {
		t.Errorf("server holds %d messages, want 2", n)
	}
	if st := journalStatus(t, f.journal)[account]; st.Verified != 2 || st.Deleted != 0 {
		t.Errorf("journal has %d verified, %d deleted; want 2, 0", st.Verified, st.Deleted)
	}
}

func TestPurgeUsageErrors(t *testing.T) {
	f := newFixture(t, []string{"alice"}, []int{1}, pop3test.ServerOptions{Implicit: true})
	pw := f.pwFiles["alice"]
	missing := filepath.Join(f.dir, "no-such-journal.db")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no destination", []string{"purge", "--source", f.source("alice"), "--password-file", pw, "--journal", missing}, "destination"},
		{"negative keep-days", []string{"purge", "--source", f.source("alice"), "--password-file", pw, "--to", "maildir:" + f.out, "--keep-days", "-1"}, "--keep-days"},
		{"missing journal", []string{"purge", "--source", f.source("alice"), "--password-file", pw, "--to", "maildir:" + f.out, "--journal", missing}, "no-such-journal.db"},
		{"no account", []string{"purge", "--to", "maildir:" + f.out}, "no accounts"},
		{"argument", []string{"purge", "extra"}, "extra"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := runMain(t, c.args...)
			r.wantCode(t, exitUsage)
			if !strings.Contains(r.stderr, c.want) {
				t.Errorf("stderr lacks %q:\n%s", c.want, r)
			}
		})
	}
	if s := f.srv.Stats(); s.Sessions != 0 {
		t.Errorf("usage errors opened %d sessions", s.Sessions)
	}
}
