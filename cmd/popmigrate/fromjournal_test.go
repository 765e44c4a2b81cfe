package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/internal/dovecottest"
	"github.com/popmigrate/popmigrate/internal/pgtest"
	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

// imapFolderName is the IMAP folder the workers of these tests upload to,
// beside each user's INBOX, which POP3 serves.
const imapFolderName = "Migrated"

// dovecotMigration is a real Dovecot whose users are migrated into a
// Maildir each and into a folder of their own IMAP account: what
// journal enrol records and run --from-journal workers move.
type dovecotMigration struct {
	srv   *dovecottest.Server
	dir   string // password files, the accounts CSV
	out   string // the Maildirs: out/USER
	users []string
	msgs  map[string][][]byte // canonical form, by user
	pw    map[string]string
	csv   string // source column only: the journal records no secret
}

// newDovecotMigration starts Dovecot with users, n messages each.
func newDovecotMigration(t *testing.T, users []string, n int) *dovecotMigration {
	t.Helper()
	m := &dovecotMigration{dir: t.TempDir(), users: users, msgs: map[string][][]byte{}, pw: map[string]string{}}
	m.out = filepath.Join(m.dir, "out")
	var dus []dovecottest.User
	for _, u := range users {
		for i := 1; i <= n; i++ {
			m.msgs[u] = append(m.msgs[u], fmt.Appendf(nil, "From: sender%d@example.org\nTo: %s@example.org\n"+
				"Message-ID: <%s.%d@example.org>\nSubject: message %d of %s\n\nBody %d of %s.\n.a dot line\n", i, u, u, i, i, u, i, u))
		}
		m.pw[u] = "pw-" + u + "-Kx71q"
		writeFile(t, m.dir, u+".password", m.pw[u]+"\n")
		dus = append(dus, dovecottest.User{Name: u, Password: m.pw[u], Messages: m.msgs[u]})
	}
	m.srv = dovecottest.Start(t, dus, nil)
	var b strings.Builder
	b.WriteString("source\n")
	for _, u := range users {
		fmt.Fprintf(&b, "pop3s://%s@%s\n", u, m.srv.POP3SAddr)
	}
	m.csv = writeFile(t, m.dir, "accounts.csv", b.String())
	return m
}

// account is the journal's name of user.
func (m *dovecotMigration) account(user string) string { return user + "@127.0.0.1" }

// enrolArgs enrol every user into the journal j: a Maildir and an IMAP
// folder each.
func (m *dovecotMigration) enrolArgs(j string, extra ...string) []string {
	return append([]string{"journal", "enrol", "--journal", j, "--accounts", m.csv,
		"--to", "maildir:" + filepath.Join(m.out, "{user}"),
		"--to", "imaps://{user}@" + m.srv.IMAPSAddr + "/" + imapFolderName}, extra...)
}

// workerArgs are those of a worker on the journal j: accounts and
// destinations from the journal, each account's secrets from a file
// named after it.
func (m *dovecotMigration) workerArgs(j string, extra ...string) []string {
	return append([]string{"run", "--from-journal", "--journal", j, "--ca-file", m.srv.CAFile,
		"--password-file", filepath.Join(m.dir, "{user}.password"),
		"--to-password-file", filepath.Join(m.dir, "{user}.password"),
		"--json", "--no-progress"}, extra...)
}

// checkOnce fails the test unless user's Maildir and IMAP folder each
// hold every message of user exactly once, byte for byte.
func (m *dovecotMigration) checkOnce(t *testing.T, user string) {
	t.Helper()
	var inMaildir [][]byte
	for _, body := range maildirFiles(t, filepath.Join(m.out, user)) {
		inMaildir = append(inMaildir, body)
	}
	sameMessages(t, user+"'s Maildir", inMaildir, m.msgs[user])
	sameMessages(t, user+"'s IMAP folder", imapBodies(t, m.srv, user, m.pw[user], imapFolderName), m.msgs[user])
}

// sameMessages fails the test unless got holds each message of want
// exactly once and nothing else.
func sameMessages(t *testing.T, where string, got, want [][]byte) {
	t.Helper()
	sortBytes := func(s [][]byte) [][]byte {
		s = slices.Clone(s)
		slices.SortFunc(s, bytes.Compare)
		return s
	}
	g, w := sortBytes(got), sortBytes(want)
	if len(g) != len(w) {
		t.Errorf("%s holds %d messages, want %d, each once", where, len(g), len(w))
		return
	}
	for i := range g {
		if !bytes.Equal(g[i], w[i]) {
			t.Errorf("%s: message %q, want %q", where, g[i], w[i])
		}
	}
}

// imapBodies returns the canonical form of every message in user's IMAP
// folder, read without changing it.
func imapBodies(t *testing.T, srv *dovecottest.Server, user, password, folder string) [][]byte {
	t.Helper()
	c, err := imapclient.DialTLS(srv.IMAPSAddr, &imapclient.Options{TLSConfig: srv.PKI.ClientConfig()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(user, password).Wait(); err != nil {
		t.Fatalf("IMAP login as %s: %v", user, err)
	}
	sel, err := c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatalf("EXAMINE %s of %s: %v", folder, user, err)
	}
	if sel.NumMessages == 0 {
		return nil
	}
	var all imap.SeqSet
	all.AddRange(1, 0)
	section := &imap.FetchItemBodySection{Peek: true}
	bufs, err := c.Fetch(all, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{section}}).Collect()
	if err != nil {
		t.Fatalf("FETCH from %s of %s: %v", folder, user, err)
	}
	var out [][]byte
	for _, b := range bufs {
		out = append(out, exporters.Canonicalize(b.FindBodySection(section)))
	}
	return out
}

// runConcurrently runs popmigrate once per argument list, all at once,
// and returns their results in the same order.
func runConcurrently(t *testing.T, argss ...[]string) []result {
	t.Helper()
	results := make([]result, len(argss))
	var wg sync.WaitGroup
	for i, args := range argss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = runMain(t, args...)
		}()
	}
	wg.Wait()
	return results
}

// Enrolment, then two workers on one PostgreSQL journal, one shard each,
// as the Kubernetes Indexed Job runs them: each account is migrated by
// exactly one of them, every message lands once in its Maildir and once
// in its IMAP folder, and a later worker without a shard finds everything
// done.
func TestRunFromJournalTwoShardsOnPostgres(t *testing.T) {
	users := []string{"ann", "ben", "cat", "dan", "eve", "fay"}
	const n = 5
	m := newDovecotMigration(t, users, n)
	pg := pgtest.Start(t)
	db := pg.NewDB(t)

	r := runMain(t, m.enrolArgs(db)...)
	r.wantCode(t, exitOK)
	if !strings.Contains(r.stdout, "enrolled 6 accounts") || !strings.Contains(r.stdout, "6 new") {
		t.Errorf("enrol output:\n%s", r)
	}
	results := runConcurrently(t, m.workerArgs(db, "--shard", "0/2", "--wait"), m.workerArgs(db, "--shard", "1/2", "--wait"))
	ranBy := map[string]int{}
	for i, r := range results {
		r.wantCode(t, exitOK)
		if strings.Contains(r.stdout+r.stderr, pg.Password) {
			t.Errorf("worker %d shows the database's password:\n%s", i, r)
		}
		rep := decodeReport(t, r.stdout)
		if len(rep.Accounts) == 0 {
			t.Errorf("worker %d had no account: the shards are not balanced for this test", i)
		}
		for _, a := range rep.Accounts {
			ranBy[a.Account]++
			if shardOf(a.Account, 2) != i {
				t.Errorf("worker %d (shard %d/2) ran %s of shard %d", i, i, a.Account, shardOf(a.Account, 2))
			}
			if !a.Whole || a.Stored != n || a.SkippedAlreadyStored != 0 || len(a.Destinations) != 2 {
				t.Errorf("worker %d: %s: %+v, want %d stored in 2 destinations, whole", i, a.Account, a, n)
			}
		}
	}
	for _, u := range users {
		if ranBy[m.account(u)] != 1 {
			t.Errorf("%s was run by %d workers, want 1", u, ranBy[m.account(u)])
		}
		m.checkOnce(t, u)
	}
	js := journalStatus(t, db)
	for _, u := range users {
		if s := js[m.account(u)]; s.Verified != n || s.ServerCount != n || s.Failed != 0 {
			t.Errorf("journal status of %s: %+v, want %d verified", u, s, n)
		}
	}

	// A worker without a shard takes every account and finds it done.
	r = runMain(t, m.workerArgs(db)...)
	r.wantCode(t, exitOK)
	rep := decodeReport(t, r.stdout)
	if rep.Totals.Accounts != len(users) || rep.Totals.Stored != 0 || rep.Totals.SkippedAlreadyStored != n*len(users) {
		t.Errorf("a run after the workers: totals %+v, want %d accounts with nothing new", rep.Totals, len(users))
	}
	for _, u := range users {
		m.checkOnce(t, u)
	}
}

// Two workers without shards on one SQLite journal, at once: they share
// the accounts (one leaves to the other an account it holds, and skips it
// once the other finished it), every message is stored once, and both
// report every account whole. The second reads the passwords with a
// command, as the Kubernetes workers do.
func TestRunFromJournalTwoWorkersWithoutShards(t *testing.T) {
	users := []string{"gus", "hal", "ann"}
	const n = 4
	m := newDovecotMigration(t, users, n)
	jpath := filepath.Join(m.dir, "journal.db")
	runMain(t, m.enrolArgs(jpath)...).wantCode(t, exitOK)

	cat := "cat " + filepath.Join(m.dir, "{user}.password")
	byCommand := []string{"run", "--from-journal", "--journal", jpath, "--ca-file", m.srv.CAFile,
		"--password-command", cat, "--to-password-command", cat, "--json", "--no-progress"}
	results := runConcurrently(t, m.workerArgs(jpath), byCommand)
	stored := 0
	for i, r := range results {
		r.wantCode(t, exitOK)
		if strings.Contains(r.stderr, "WARNING") {
			t.Errorf("worker %d warns:\n%s", i, r.stderr)
		}
		rep := decodeReport(t, r.stdout)
		stored += rep.Totals.Stored
		if rep.Totals.Accounts != len(users) || rep.Totals.AccountsFailed != 0 {
			t.Errorf("worker %d: totals %+v, want every account whole", i, rep.Totals)
		}
	}
	if stored != n*len(users) {
		t.Errorf("the two workers stored %d messages, want %d: each once", stored, n*len(users))
	}
	for _, u := range users {
		m.checkOnce(t, u)
	}
}

// A worker that died holding an account's lease (on another machine, so
// its process cannot be seen) leaves the account to the others once the
// lease expires: a worker runs its other accounts meanwhile, then takes
// the account over and completes it.
func TestRunFromJournalTakesOverAnExpiredLease(t *testing.T) {
	users := []string{"alice", "bob"}
	f := newFixture(t, users, []int{3, 2}, pop3test.ServerOptions{Implicit: true})
	runMain(t, "journal", "enrol", "--journal", f.journal, "--accounts", f.csv(t, users...),
		"--to", "maildir:"+filepath.Join(f.out, "{user}")).wantCode(t, exitOK)

	ctx := context.Background()
	dead := journal.Holder{ID: "dead-worker", PID: 4242, Host: "worker-7.example.org"}
	// deadHolds makes the dead worker hold alice's lease until ttl from
	// now (taking it, or renewing it with that ttl).
	deadHolds := func(ttl time.Duration) {
		t.Helper()
		j, err := journal.Open(ctx, f.journal)
		if err != nil {
			t.Fatal(err)
		}
		defer j.Close()
		if _, err := j.AcquireLease(ctx, f.account("alice"), dead, ttl); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"run", "--from-journal", "--journal", f.journal, "--ca-file", f.caFile,
		"--password-file", filepath.Join(f.dir, "{user}.password"), "--json", "--no-progress"}
	// Without --wait the worker runs bob and leaves alice to the other
	// worker while its lease lives; once it expired, it takes alice over.
	const ttl = 2 * time.Second
	deadHolds(ttl)
	taken := time.Now()
	r := runMain(t, args...)
	r.wantCode(t, exitOK)
	if waited := time.Since(taken); waited < ttl {
		t.Errorf("the account was taken over after %v, before its lease expired (%v)", waited, ttl)
	}
	rep := decodeReport(t, r.stdout)
	if a := accountReport(t, rep, f.account("alice")); !a.Whole || a.Stored != 3 || a.DoneBy != "" {
		t.Errorf("alice after the lease expired: %+v, want 3 stored here, whole", a)
	}
	if a := accountReport(t, rep, f.account("bob")); !a.Whole || a.Stored != 2 {
		t.Errorf("bob: %+v, want whole", a)
	}
	f.checkMaildir(t, "alice")
	f.checkMaildir(t, "bob")
	j, err := journal.OpenReadOnly(ctx, f.journal)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	leases, err := j.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leases {
		if l.Account == f.account("alice") && (l.Epoch != 2 || l.Holder.ID != "") {
			t.Errorf("alice's lease after the takeover: %+v, want epoch 2 (taken over once), released", l)
		}
	}
}

// Workers that ran an enrolled migration purge it the same way: purge
// --from-journal takes the accounts and destinations from the journal and
// --shard splits them, so two purges, one shard each, empty every
// server mailbox, each deleting only its shard's accounts, and every copy
// stays in its Maildir and IMAP folder.
func TestPurgeFromJournalByShards(t *testing.T) {
	users := []string{"ivy", "jon", "kim", "lea"}
	const n = 3
	m := newDovecotMigration(t, users, n)
	jpath := filepath.Join(m.dir, "journal.db")
	runMain(t, m.enrolArgs(jpath)...).wantCode(t, exitOK)
	runMain(t, m.workerArgs(jpath)...).wantCode(t, exitOK)

	purgeArgs := func(extra ...string) []string {
		return append([]string{"purge", "--from-journal", "--journal", jpath, "--ca-file", m.srv.CAFile,
			"--password-file", filepath.Join(m.dir, "{user}.password"),
			"--to-password-file", filepath.Join(m.dir, "{user}.password"), "--json"}, extra...)
	}
	if r := runMain(t, purgeArgs("--to", "maildir:"+m.out)...); r.code != exitUsage || !strings.Contains(r.stderr, "--to would change them") {
		t.Errorf("purge --from-journal --to: exit %d, stderr %q; want %d and why", r.code, r.stderr, exitUsage)
	}
	deletedBy := map[string]string{}
	for _, sh := range []string{"0/2", "1/2"} {
		r := runMain(t, purgeArgs("--shard", sh)...)
		r.wantCode(t, exitOK)
		var out purgeJSON
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
			t.Fatalf("purge --shard %s: %v\n%s", sh, err, r.stdout)
		}
		for _, rep := range out.Accounts {
			if prev, dup := deletedBy[rep.Account]; dup {
				t.Errorf("account %s purged by shards %s and %s", rep.Account, prev, sh)
			}
			deletedBy[rep.Account] = sh
			if rep.Deleted != n || rep.Error != "" {
				t.Errorf("purge --shard %s: %s deleted %d (error %q), want %d", sh, rep.Account, rep.Deleted, rep.Error, n)
			}
		}
	}
	for _, u := range users {
		if _, ok := deletedBy[m.account(u)]; !ok {
			t.Errorf("no shard purged %s", m.account(u))
		}
		var left int
		for _, sub := range []string{"new", "cur"} {
			es, err := os.ReadDir(filepath.Join(m.srv.MaildirPath(u), sub))
			if err != nil {
				t.Fatal(err)
			}
			left += len(es)
		}
		if left != 0 {
			t.Errorf("%s's server mailbox holds %d messages after the purge, want 0", u, left)
		}
		m.checkOnce(t, u)
	}
}
