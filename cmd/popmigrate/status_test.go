package main

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

func statusOf(t *testing.T, journalPath, account string) statusJSON {
	t.Helper()
	r := runMain(t, "status", "--journal", journalPath, "--json")
	r.wantCode(t, exitOK)
	var st []statusJSON
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, r.stdout)
	}
	for _, s := range st {
		if s.Account == account {
			return s
		}
	}
	t.Fatalf("status has no account %q:\n%s", account, r.stdout)
	return statusJSON{}
}

// A verified message is a stored one too: STORED counts every message
// whose copies are stored, VERIFIED the part of them read back intact.
func TestStatusCountsVerifiedMessagesAsStored(t *testing.T) {
	f := newFixture(t, []string{"alice"}, []int{3}, pop3test.ServerOptions{Implicit: true})
	runMain(t, f.runArgs("--source", f.source("alice"), "--password-file", f.pwFiles["alice"], "--no-verify")...).wantCode(t, exitOK)
	if s := statusOf(t, f.journal, f.account("alice")); s.Stored != 3 || s.Verified != 0 || s.Listed != 0 {
		t.Errorf("after a run without verify: %+v, want 3 stored, 0 verified", s)
	}
	runMain(t, "verify", "--journal", f.journal, "--source", f.source("alice"), "--to", "maildir:"+filepath.Join(f.out, "{user}")).wantCode(t, exitOK)
	if s := statusOf(t, f.journal, f.account("alice")); s.Stored != 3 || s.Verified != 3 || s.Listed != 0 {
		t.Errorf("after verify: %+v, want 3 stored, 3 verified", s)
	}
	r := runMain(t, "status", "--journal", f.journal)
	r.wantCode(t, exitOK)
	if row := tableRow(t, r.stdout, f.account("alice")); len(row) < 5 || row[3] != "3" || row[4] != "3" {
		t.Errorf("status row %q, want STORED 3 and VERIFIED 3", row)
	}
}

// journalFile is what a reader must not change in the journal file.
type journalFile struct {
	sum   [sha256.Size]byte
	mtime time.Time
}

func journalFileOf(t *testing.T, path string) journalFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return journalFile{sum: sha256.Sum256(b), mtime: fi.ModTime()}
}

// status and manifest only read: the journal file keeps its bytes and its
// modification time.
func TestStatusAndManifestDoNotWriteTheJournal(t *testing.T) {
	f := newFixture(t, []string{"alice"}, []int{2}, pop3test.ServerOptions{Implicit: true})
	runMain(t, f.runArgs("--source", f.source("alice"), "--password-file", f.pwFiles["alice"])...).wantCode(t, exitOK)
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(f.journal, old, old); err != nil {
		t.Fatal(err)
	}
	before := journalFileOf(t, f.journal)
	for _, args := range [][]string{
		{"status", "--journal", f.journal},
		{"status", "--journal", f.journal, "--json"},
		{"manifest", "--journal", f.journal, "--account", f.account("alice"), "--out", "-"},
		{"manifest", "--journal", f.journal, "--account", f.account("alice"), "--out", filepath.Join(f.dir, "alice.manifest")},
	} {
		runMain(t, args...).wantCode(t, exitOK)
		if after := journalFileOf(t, f.journal); after != before {
			t.Fatalf("%s changed the journal file: before %+v, after %+v", strings.Join(args, " "), before, after)
		}
	}
}

// setJournalVersion writes the journal's schema version, as an older or a
// newer popmigrate would have left it.
func setJournalVersion(t *testing.T, path string, v int) {
	t.Helper()
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(fmt.Sprintf("PRAGMA user_version = %d", v)); err != nil {
		t.Fatal(err)
	}
}

// status and manifest refuse a journal of another schema version (exit 2,
// saying what to do) and leave it as it is: a read never migrates.
func TestStatusAndManifestRefuseAnotherSchemaVersion(t *testing.T) {
	f := newFixture(t, []string{"alice"}, []int{1}, pop3test.ServerOptions{Implicit: true})
	runMain(t, f.runArgs("--source", f.source("alice"), "--password-file", f.pwFiles["alice"])...).wantCode(t, exitOK)
	for _, c := range []struct {
		version int
		want    string
	}{
		{2, "run a command that writes the journal (popmigrate run, verify or purge) once to upgrade it"},
		{99, "use a newer popmigrate"},
	} {
		setJournalVersion(t, f.journal, c.version)
		before := journalFileOf(t, f.journal)
		for _, args := range [][]string{
			{"status", "--journal", f.journal},
			{"manifest", "--journal", f.journal, "--account", f.account("alice"), "--out", "-"},
		} {
			r := runMain(t, args...)
			r.wantCode(t, exitUsage)
			if !strings.Contains(r.stderr, f.journal) || !strings.Contains(r.stderr, c.want) {
				t.Errorf("%s on schema version %d: stderr does not say what to do (%q):\n%s", args[0], c.version, c.want, r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("%s on schema version %d: stdout %q", args[0], c.version, r.stdout)
			}
		}
		if after := journalFileOf(t, f.journal); after != before {
			t.Errorf("schema version %d: the refused journal changed", c.version)
		}
	}
}

// status shows which worker runs an account and since when, and
// status --workers the migration as a whole: accounts by state, what is
// left, and each worker with what it finished and stored.
func TestStatusShowsWorkers(t *testing.T) {
	f := newFixture(t, []string{"alice", "bob"}, []int{3, 2}, pop3test.ServerOptions{Implicit: true})
	runMain(t, f.runArgs("--accounts", f.csv(t, "alice", "bob"))...).wantCode(t, exitOK)
	ctx := context.Background()
	j, err := journal.Open(ctx, f.journal)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.AcquireLease(ctx, f.account("bob"), journal.Holder{ID: "w2", PID: 77, Host: "node-b"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	j.Close()

	if s := statusOf(t, f.journal, f.account("bob")); s.State != "running" || s.Worker != "pid 77 on node-b" || s.Since == nil {
		t.Errorf("bob: state %q worker %q since %v; want running on pid 77 on node-b", s.State, s.Worker, s.Since)
	}
	if s := statusOf(t, f.journal, f.account("alice")); s.State != "done" || s.Worker != "" {
		t.Errorf("alice: state %q worker %q; want done, no worker", s.State, s.Worker)
	}
	r := runMain(t, "status", "--journal", f.journal, "--workers", "--json")
	r.wantCode(t, exitOK)
	var v workersJSON
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("status --workers --json: %v\n%s", err, r)
	}
	if v.Accounts["done"] != 1 || v.Accounts["running"] != 1 || v.RemainingMessages != 0 || v.Unlisted != 0 {
		t.Errorf("migration view %+v; want 1 done, 1 running, nothing left", v)
	}
	var other, me *workerJSON
	for i, w := range v.Workers {
		switch {
		case w.Worker == "pid 77 on node-b":
			other = &v.Workers[i]
		case strings.HasPrefix(w.Worker, fmt.Sprintf("pid %d on ", os.Getpid())):
			me = &v.Workers[i]
		}
	}
	if other == nil || !other.Live || other.Running != 1 || other.Messages != 0 {
		t.Errorf("the other worker: %+v; want live, running bob, nothing stored yet", other)
	}
	if me == nil || me.Live || me.Finished != 1 || me.Messages != 3 {
		t.Errorf("this process as a worker: %+v; want alice finished with its 3 messages", me)
	}
	text := runMain(t, "status", "--journal", f.journal, "--workers")
	text.wantCode(t, exitOK)
	for _, want := range []string{"accounts: 1 done, 1 running, 0 waiting, 0 failed", "pid 77 on node-b", "WORKER"} {
		if !strings.Contains(text.stdout, want) {
			t.Errorf("status --workers lacks %q:\n%s", want, text.stdout)
		}
	}
}
