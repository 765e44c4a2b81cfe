package main

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

// run --delete verifies what it stored, then deletes exactly the verified
// messages from the server; --dry-run deletes nothing.
func TestRunDelete(t *testing.T) {
	f := newFixture(t, []string{"alice"}, []int{4}, pop3test.ServerOptions{Implicit: true})
	account := f.account("alice")
	args := f.runArgs("--source", f.source("alice"), "--password-file", f.pwFiles["alice"], "--delete")

	r := runMain(t, append(args, "--dry-run")...)
	r.wantCode(t, exitOK)
	if !strings.Contains(r.stdout, account+": would delete 4 of 4 (dry run)") || !strings.Contains(r.stdout, "4 copies checked: 4 match") {
		t.Errorf("dry run output:\n%s", r)
	}
	if n := len(f.srv.Mailbox("alice")); n != 4 {
		t.Fatalf("a dry run left %d messages on the server, want 4", n)
	}

	r = runMain(t, args...)
	r.wantCode(t, exitOK)
	if !strings.Contains(r.stdout, account+": deleted 4 of 4") {
		t.Errorf("output:\n%s", r)
	}
	if n := len(f.srv.Mailbox("alice")); n != 0 {
		t.Errorf("the server still holds %d messages, want 0", n)
	}
	if st := journalStatus(t, f.journal)[account]; st.Deleted != 4 {
		t.Errorf("journal: %+v, want 4 deleted", st)
	}
	if n := len(maildirFiles(t, filepath.Join(f.out, "alice"))); n != 4 {
		t.Errorf("the Maildir holds %d messages, want 4", n)
	}
}

func TestRunDeleteUsageErrors(t *testing.T) {
	f := newFixture(t, []string{"alice"}, []int{1}, pop3test.ServerOptions{Implicit: true})
	base := f.runArgs("--source", f.source("alice"), "--password-file", f.pwFiles["alice"])
	for _, c := range []struct {
		extra []string
		want  string
	}{
		{[]string{"--delete", "--no-verify"}, "--delete needs the verify phase"},
		{[]string{"--dry-run"}, "go with --delete"},
		{[]string{"--delete", "--keep-days", "-1"}, "want 0 or more"},
	} {
		r := runMain(t, append(base, c.extra...)...)
		r.wantCode(t, exitUsage)
		if !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: stderr %q, want %q", c.extra, r.stderr, c.want)
		}
	}
	if n := len(f.srv.Mailbox("alice")); n != 1 {
		t.Errorf("a refused command touched the server: %d messages left", n)
	}
}

// Regression: a copy verified by one run and damaged afterwards kept its
// verification mark, so a later purge would have deleted the source of a
// message whose only copy was corrupt. Verify now clears the mark, and the
// purge skips the message.
func TestPurgeSkipsCopyCorruptedAfterVerification(t *testing.T) {
	f := newFixture(t, []string{"alice"}, []int{3}, pop3test.ServerOptions{Implicit: true})
	account := f.account("alice")
	runMain(t, f.runArgs("--source", f.source("alice"), "--password-file", f.pwFiles["alice"])...).wantCode(t, exitOK)
	if st := journalStatus(t, f.journal)[account]; st.Verified != 3 {
		t.Fatalf("after the run: %+v, want 3 verified", st)
	}
	dir := filepath.Join(f.out, "alice", "new")
	names, err := os.ReadDir(dir)
	if err != nil || len(names) != 3 {
		t.Fatalf("maildir: %v, %v", names, err)
	}
	var files []string
	for _, n := range names {
		files = append(files, n.Name())
	}
	sort.Strings(files)
	victim := filepath.Join(dir, files[0])
	data, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x20
	if err := os.WriteFile(victim, data, 0o600); err != nil {
		t.Fatal(err)
	}

	r := runMain(t, "verify", "--journal", f.journal, "--source", f.source("alice"), "--password-file", f.pwFiles["alice"],
		"--ca-file", f.caFile, "--to", "maildir:"+filepath.Join(f.out, "{user}"))
	r.wantCode(t, exitMismatch)
	if st := journalStatus(t, f.journal)[account]; st.Verified != 2 || st.Stored != 1 {
		t.Fatalf("after verify found the damage: %+v, want 2 verified and 1 back to stored", st)
	}

	r = runMain(t, "purge", "--source", f.source("alice"), "--password-file", f.pwFiles["alice"],
		"--ca-file", f.caFile, "--journal", f.journal, "--to", "maildir:"+filepath.Join(f.out, "{user}"))
	r.wantCode(t, exitOK)
	if !strings.Contains(r.stdout, "deleted 2 of 3") || !strings.Contains(r.stdout, "skipped 1: not verified") {
		t.Errorf("purge output:\n%s", r)
	}
	if n := len(f.srv.Mailbox("alice")); n != 1 {
		t.Errorf("the server holds %d messages, want 1: the one whose copy is damaged", n)
	}
}

// A copy that verify finds missing is forgotten by the journal, so the next
// run downloads the message again and the Maildir is whole once more.
func TestRunRefetchesCopyFoundMissing(t *testing.T) {
	f := newFixture(t, []string{"alice"}, []int{3}, pop3test.ServerOptions{Implicit: true})
	account := f.account("alice")
	args := f.runArgs("--source", f.source("alice"), "--password-file", f.pwFiles["alice"])
	runMain(t, args...).wantCode(t, exitOK)
	dir := filepath.Join(f.out, "alice", "new")
	names, err := os.ReadDir(dir)
	if err != nil || len(names) != 3 {
		t.Fatalf("maildir: %v, %v", names, err)
	}
	lost := filepath.Join(dir, names[0].Name())
	want, err := os.ReadFile(lost)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(lost); err != nil {
		t.Fatal(err)
	}
	// The run's own verify phase finds the copy missing (exit 3) ...
	r := runMain(t, args...)
	r.wantCode(t, exitMismatch)
	if !strings.Contains(r.stdout, " missing") {
		t.Errorf("verify phase did not report the missing copy:\n%s", r)
	}
	if st := journalStatus(t, f.journal)[account]; st.Failed != 1 {
		t.Errorf("journal after verify: %+v, want the message failed", st)
	}
	// ... and the next run fetches it again.
	r = runMain(t, args...)
	r.wantCode(t, exitOK)
	got, err := os.ReadFile(lost)
	if err != nil || string(got) != string(want) {
		t.Fatalf("the copy was not restored byte for byte: %v", err)
	}
	if st := journalStatus(t, f.journal)[account]; st.Verified != 3 || st.Failed != 0 {
		t.Errorf("journal: %+v, want 3 verified", st)
	}
	if rep := decodeReport(t, runMain(t, append(args, "--json")...).stdout); rep.Totals.Stored != 0 {
		t.Errorf("a later run stored %d again", rep.Totals.Stored)
	}
}
