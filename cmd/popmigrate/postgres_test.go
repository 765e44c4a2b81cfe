package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/popmigrate/popmigrate/internal/pgtest"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

// The commands work on a PostgreSQL journal as on a file: run stores and
// records, status, verify, purge and manifest read it back, two runs started at
// once on it (two workers) share the accounts through the leases and move
// each message once, and the database's password shows nowhere.
func TestRunAndStatusOnAPostgresJournal(t *testing.T) {
	users := []string{"alice", "bob", "carol"}
	counts := []int{3, 2, 4}
	f := newFixture(t, users, counts, pop3test.ServerOptions{Implicit: true})
	srv := pgtest.Start(t)
	db := srv.NewDB(t)
	csv := f.csv(t, users...)
	args := []string{"run", "--ca-file", f.caFile, "--journal", db, "--accounts", csv,
		"--to", "maildir:" + filepath.Join(f.out, "{user}"), "--wait", "--json"}
	noPassword := func(what string, r result) {
		t.Helper()
		if strings.Contains(r.stdout+r.stderr, srv.Password) {
			t.Errorf("%s shows the database's password:\n%s", what, r)
		}
	}

	// Two workers at once on the same journal and accounts.
	var wg sync.WaitGroup
	results := make([]result, 2)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = runMain(t, args...)
		}()
	}
	wg.Wait()
	total := 0
	for _, n := range counts {
		total += n
	}
	stored := 0
	for i, r := range results {
		r.wantCode(t, exitOK)
		noPassword("run", r)
		rep := decodeReport(t, r.stdout)
		stored += rep.Totals.Stored
		if rep.Totals.Stored+rep.Totals.SkippedAlreadyStored != total {
			t.Errorf("worker %d: totals %+v, want %d messages stored or already stored", i, rep.Totals, total)
		}
	}
	if stored != total {
		t.Errorf("the two workers stored %d messages, want %d: each once", stored, total)
	}
	if got := f.srv.Stats().Retrs; got != total {
		t.Errorf("the server sent %d messages, want %d", got, total)
	}
	for _, u := range users {
		f.checkMaildir(t, u)
	}

	// status reads it, with the journal's counts.
	r := runMain(t, "status", "--journal", db, "--json")
	r.wantCode(t, exitOK)
	noPassword("status", r)
	var st []statusJSON
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, r.stdout)
	}
	if len(st) != len(users) {
		t.Fatalf("status has %d accounts, want %d:\n%s", len(st), len(users), r.stdout)
	}
	js := journalStatus(t, db)
	for i, u := range users {
		s := st[i]
		if s.Account != f.account(u) || s.Stored != counts[i] || s.Verified != counts[i] || s.ServerCount != counts[i] ||
			s.Failed != 0 || js[s.Account].Verified != counts[i] {
			t.Errorf("status of %s: %+v (journal %+v), want %d stored and verified", u, s, js[s.Account], counts[i])
		}
	}
	r = runMain(t, "status", "--journal", db)
	r.wantCode(t, exitOK)
	if row := tableRow(t, r.stdout, f.account("carol")); len(row) < 2 {
		t.Errorf("status table row %q", row)
	}

	// verify and manifest need nothing but the journal (and the copies).
	r = runMain(t, "verify", "--journal", db, "--accounts", csv, "--ca-file", f.caFile,
		"--to", "maildir:"+filepath.Join(f.out, "{user}"))
	r.wantCode(t, exitOK)
	noPassword("verify", r)
	r = runMain(t, "purge", "--journal", db, "--accounts", csv, "--ca-file", f.caFile,
		"--to", "maildir:"+filepath.Join(f.out, "{user}"), "--dry-run")
	r.wantCode(t, exitOK)
	noPassword("purge", r)
	if got := f.srv.Stats().DelesCommitted; got != 0 {
		t.Errorf("purge --dry-run deleted %d messages", got)
	}
	out := filepath.Join(f.dir, "alice.manifest.jsonl")
	r = runMain(t, "manifest", "--journal", db, "--account", f.account("alice"), "--out", out)
	r.wantCode(t, exitOK)
	r = runMain(t, "manifest", "--journal", db, "--account", "nobody", "--out", out)
	if r.code == exitOK || strings.Contains(r.stderr, srv.Password) || !strings.Contains(r.stderr, "xxxxx") {
		t.Errorf("manifest of an unknown account:\n%s", r)
	}

	// purge deletes what was verified, and the journal says so.
	r = runMain(t, "purge", "--journal", db, "--accounts", csv, "--ca-file", f.caFile,
		"--to", "maildir:"+filepath.Join(f.out, "{user}"))
	r.wantCode(t, exitOK)
	if got := f.srv.Stats().DelesCommitted; got != total {
		t.Errorf("purge deleted %d messages, want %d", got, total)
	}
	for i, u := range users {
		if s := journalStatus(t, db)[f.account(u)]; s.Deleted != counts[i] {
			t.Errorf("%s after purge: %+v, want %d deleted", u, s, counts[i])
		}
	}
}
