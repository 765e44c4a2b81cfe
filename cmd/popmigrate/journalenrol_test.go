package main

import (
	"context"
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

// journalInfos returns the accounts the journal at path describes, by
// name.
func journalInfos(t *testing.T, path string) map[string]journal.AccountInfo {
	t.Helper()
	ctx := context.Background()
	j, err := journal.OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	infos, err := j.Accounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]journal.AccountInfo{}
	for _, i := range infos {
		out[i.Name] = i
	}
	return out
}

// Enrolment records sources and destinations and nothing else, contacts
// no server, and may be repeated: an account keeps what it had and gains
// what is new.
func TestJournalEnrol(t *testing.T) {
	users := []string{"alice", "bob"}
	f := newFixture(t, users, []int{1, 1}, pop3test.ServerOptions{Implicit: true})
	csv := f.csv(t, users...) // with a password_file column
	maildir := "maildir:" + filepath.Join(f.out, "{user}")
	enrol := func(extra ...string) result {
		return runMain(t, append([]string{"journal", "enrol", "--journal", f.journal, "--accounts", csv}, extra...)...)
	}

	// A dry run writes nothing, not even an empty journal.
	r := enrol("--to", maildir, "--dry-run")
	r.wantCode(t, exitOK)
	if !strings.Contains(r.stdout, "would enrol (dry run) 2 accounts") {
		t.Errorf("dry run:\n%s", r)
	}
	if _, err := os.Stat(f.journal); !os.IsNotExist(err) {
		t.Fatalf("a dry run created the journal (%v)", err)
	}

	r = enrol("--to", maildir)
	r.wantCode(t, exitOK)
	if !strings.Contains(r.stdout, "enrolled 2 accounts in "+f.journal+": 2 new, 0 with new destinations, 0 unchanged; 2 destinations") {
		t.Errorf("first enrolment:\n%s", r)
	}
	// The CSV's password files are not recorded, and the note says what
	// the workers need instead.
	if !strings.Contains(r.stderr, "the journal records no secret") || !strings.Contains(r.stderr, "{user}") {
		t.Errorf("no note about the secrets:\n%s", r)
	}
	if got := f.srv.Stats().Sessions; got != 0 {
		t.Errorf("enrol opened %d POP3 sessions, want none", got)
	}
	infos := journalInfos(t, f.journal)
	for _, u := range users {
		info := infos[f.account(u)]
		want := "maildir:" + filepath.Join(f.out, u)
		if info.Source != f.source(u) || len(info.Destinations) != 1 || info.Destinations[0].Spec != want || info.Destinations[0].ID != want {
			t.Errorf("%s in the journal: %+v, want source %s and destination %s", u, info, f.source(u), want)
		}
	}
	for _, suffix := range []string{"", "-wal"} {
		if b, err := os.ReadFile(f.journal + suffix); err == nil && strings.Contains(string(b), f.boxes["alice"].password) {
			t.Errorf("the journal holds alice's password")
		}
	}

	// Again: nothing changes.
	r = enrol("--to", maildir)
	r.wantCode(t, exitOK)
	if !strings.Contains(r.stdout, "0 new, 0 with new destinations, 2 unchanged") {
		t.Errorf("second enrolment:\n%s", r)
	}

	// A new destination is added to the recorded one; an IMAP destination
	// is recorded without its password, which only the workers need.
	imapSpec := "imaps://{user}@imap.example.org/INBOX"
	r = enrol("--to", maildir, "--to", imapSpec, "--json")
	r.wantCode(t, exitOK)
	var rep enrolReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("--json: %v\n%s", err, r.stdout)
	}
	if len(rep.Accounts) != 2 || rep.Totals[enrolAdded] != 2 || rep.Accounts[0].State != enrolAdded || len(rep.Accounts[0].Destinations) != 2 ||
		rep.Accounts[0].Destinations[0].New || !rep.Accounts[0].Destinations[1].New {
		t.Errorf("--json after adding a destination: %+v", rep)
	}
	if got := len(journalInfos(t, f.journal)[f.account("bob")].Destinations); got != 2 {
		t.Errorf("bob has %d destinations in the journal, want 2", got)
	}
	// Leaving a destination out removes nothing: it holds copies.
	r = enrol("--to", maildir)
	r.wantCode(t, exitOK)
	if got := len(journalInfos(t, f.journal)[f.account("bob")].Destinations); got != 2 {
		t.Errorf("bob has %d destinations after an enrolment without the IMAP one, want 2", got)
	}
}

// What enrol refuses, before it writes anything.
func TestJournalEnrolRefuses(t *testing.T) {
	f := newFixture(t, []string{"alice", "bob"}, []int{1, 1}, pop3test.ServerOptions{Implicit: true})
	maildir := "maildir:" + filepath.Join(f.out, "{user}")
	runMain(t, "journal", "enrol", "--journal", f.journal, "--source", f.source("alice"), "--to", maildir).wantCode(t, exitOK)
	before := journalInfos(t, f.journal)

	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no accounts", []string{"--to", maildir}, "no accounts to enrol"},
		{"no destination", []string{"--source", f.source("bob")}, "no destination"},
		{"a relative path", []string{"--source", f.source("bob"), "--to", "maildir:out/{user}"}, "relative path"},
		{"another source under a recorded name", []string{"--source", "pop3s://alice@other.example.org", "--name", f.account("alice"), "--to", maildir},
			"is enrolled in " + f.journal + " with source " + f.source("alice")},
		{"a place another account of the journal writes to", []string{"--source", f.source("bob"), "--to", "maildir:" + filepath.Join(f.out, "alice")},
			"which account alice@127.0.0.1 of " + f.journal + " writes to"},
		{"a password in the source", []string{"--source", "pop3s://bob:secret@127.0.0.1", "--to", maildir}, "password in the URL"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := runMain(t, append([]string{"journal", "enrol", "--journal", f.journal}, c.args...)...)
			r.wantCode(t, exitUsage)
			if !strings.Contains(r.stderr, c.want) {
				t.Errorf("stderr lacks %q:\n%s", c.want, r)
			}
			if got := journalInfos(t, f.journal); fmt.Sprint(got) != fmt.Sprint(before) {
				t.Errorf("the journal changed:\n%v\nwas\n%v", got, before)
			}
		})
	}
}

// What run --from-journal refuses, with what to do, before it contacts any
// server.
func TestRunFromJournalRefuses(t *testing.T) {
	f := newFixture(t, []string{"alice"}, []int{1}, pop3test.ServerOptions{Implicit: true})
	pw := "--password-file=" + filepath.Join(f.dir, "{user}.password")
	run := func(journalPath string, extra ...string) result {
		t.Helper()
		return runMain(t, append([]string{"run", "--from-journal", "--journal", journalPath, "--ca-file", f.caFile, pw}, extra...)...)
	}

	// A journal that does not exist is not created.
	missing := filepath.Join(f.dir, "missing.db")
	r := run(missing)
	r.wantCode(t, exitUsage)
	if !strings.Contains(r.stderr, "does not exist") || !strings.Contains(r.stderr, "popmigrate journal enrol --journal "+missing) {
		t.Errorf("missing journal:\n%s", r)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("run --from-journal created %s", missing)
	}

	// A journal without accounts.
	ctx := context.Background()
	empty := filepath.Join(f.dir, "empty.db")
	j, err := journal.Open(ctx, empty)
	if err != nil {
		t.Fatal(err)
	}
	j.Close()
	r = run(empty)
	r.wantCode(t, exitUsage)
	if !strings.Contains(r.stderr, "holds no accounts") || !strings.Contains(r.stderr, "journal enrol") {
		t.Errorf("empty journal:\n%s", r)
	}

	// A journal with alice enrolled, an account it knows only by its
	// listing (no destination), and one whose destination was recorded
	// with a relative path from elsewhere.
	runMain(t, "journal", "enrol", "--journal", f.journal, "--source", f.source("alice"),
		"--to", "maildir:"+filepath.Join(f.out, "{user}")).wantCode(t, exitOK)
	if j, err = journal.Open(ctx, f.journal); err != nil {
		t.Fatal(err)
	}
	if err := j.SaveDestinations(ctx, "orphan", "pop3s://orphan@127.0.0.1:1", nil); err != nil {
		t.Fatal(err)
	}
	if err := j.SaveDestinations(ctx, "moved", "pop3s://moved@127.0.0.1:1",
		[]journal.AccountDestination{{ID: "maildir:/elsewhere/out/moved", Spec: "maildir:out/moved"}}); err != nil {
		t.Fatal(err)
	}
	j.Close()
	r = run(f.journal)
	r.wantCode(t, exitUsage)
	for _, want := range []string{"cannot run 2 accounts", "account orphan: the journal knows no destination", "account moved: destination maildir:/elsewhere/out/moved",
		"relative path", "journal enrol", "--account"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r)
		}
	}
	if got := f.srv.Stats().Sessions; got != 0 {
		t.Fatalf("a refused run opened %d POP3 sessions", got)
	}

	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"an account not in the journal", []string{"--account", "nobody@example.org"}, "--account nobody@example.org: no such account in the journal"},
		{"--accounts", []string{"--accounts", "users.csv"}, "--accounts and --config name them from a file"},
		{"--source", []string{"--source", f.source("alice")}, "--source and --name describe another"},
		{"--to", []string{"--to", "maildir:/srv/x"}, "--to would change them"},
		{"a bad shard", []string{"--shard", "4/4"}, "want INDEX/COUNT with 0 <= INDEX < COUNT"},
		{"a short lease", []string{"--lease-ttl", "500ms"}, "--lease-ttl 500ms: want 1s or more"},
		{"no password", []string{"--password-file="}, "journal " + f.journal + ": account alice: no password"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := run(f.journal, c.args...)
			r.wantCode(t, exitUsage)
			if !strings.Contains(r.stderr, c.want) {
				t.Errorf("stderr lacks %q:\n%s", c.want, r)
			}
		})
	}

	// Naming the good account runs it alone.
	r = run(f.journal, "--account", f.account("alice"), "--json")
	r.wantCode(t, exitOK)
	rep := decodeReport(t, r.stdout)
	if len(rep.Accounts) != 1 || !rep.Accounts[0].Whole || rep.Accounts[0].Stored != 1 {
		t.Errorf("--account alice: %+v", rep.Accounts)
	}
	f.checkMaildir(t, "alice")

	// A shard that holds none of the accounts has nothing to do: exit 0.
	other := fmt.Sprintf("%d/2", 1-shardOf(f.account("alice"), 2))
	r = run(f.journal, "--account", f.account("alice"), "--shard", other, "--json")
	r.wantCode(t, exitOK)
	if !strings.Contains(r.stderr, "shard "+other+" holds none of the accounts") || len(decodeReport(t, r.stdout).Accounts) != 0 {
		t.Errorf("empty shard:\n%s", r)
	}
}

func TestRunFromJournalFlags(t *testing.T) {
	o := parseRun(t, "--from-journal", "--account", "a@example.org", "--account", "b@example.org", "--shard", "1/3", "--lease-ttl", "90s")
	if !o.FromJournal || len(o.Only) != 2 || o.Only[1] != "b@example.org" || o.Shard != "1/3" || o.LeaseTTL != 90*time.Second {
		t.Errorf("parsed %+v", o)
	}
	if d := parseRun(t); d.FromJournal || d.Shard != "" || d.LeaseTTL != journal.DefaultLeaseTTL {
		t.Errorf("defaults: from-journal %v, shard %q, lease-ttl %v", d.FromJournal, d.Shard, d.LeaseTTL)
	}
	e := parseFlags(t, newJournalEnrolCmd, "--accounts", "u.csv", "--to", "maildir:/m/{user}", "--journal", "j.db", "--dry-run", "--json")
	if e.Accounts != "u.csv" || len(e.To) != 1 || e.Journal != "j.db" || !e.DryRun || !e.JSON {
		t.Errorf("enrol parsed %+v", e)
	}
}

func TestParseShard(t *testing.T) {
	for _, c := range []struct {
		in   string
		want shard
		ok   bool
	}{
		{"", shard{}, true},
		{"0/1", shard{0, 1}, true},
		{"3/4", shard{3, 4}, true},
		{" 2 / 8 ", shard{2, 8}, true},
		{"4/4", shard{}, false},
		{"-1/4", shard{}, false},
		{"0/0", shard{}, false},
		{"1", shard{}, false},
		{"a/b", shard{}, false},
		{"1/2/3", shard{}, false},
	} {
		got, err := parseShard(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("parseShard(%q) = %v, %v; want %v, ok %v", c.in, got, err, c.want, c.ok)
		}
	}
}

// An account's shard is fixed forever: workers of different versions
// must agree on it. The values pin FNV-1a.
func TestShardOfIsStable(t *testing.T) {
	for _, c := range []struct {
		name         string
		count, shard int
	}{
		{"alice@example.org", 4, 1},
		{"bob@example.org", 4, 2},
		{"alice@example.org", 10, 9},
		{"bob@127.0.0.1", 2, 1},
	} {
		if got := shardOf(c.name, c.count); got != c.shard {
			t.Errorf("shardOf(%q, %d) = %d, want %d", c.name, c.count, got, c.shard)
		}
	}
	// And spreads accounts evenly.
	const n, count = 20000, 8
	per := make([]int, count)
	for i := range n {
		per[shardOf(fmt.Sprintf("user%05d@example.org", i), count)]++
	}
	for i, k := range per {
		if k < n/count*9/10 || k > n/count*11/10 {
			t.Errorf("shard %d of %d holds %d of %d accounts: %v", i, count, k, n, per)
		}
	}
}

// --account and --shard narrow the accounts of a file as they narrow the
// journal's.
func TestRunAccountNarrowsAFile(t *testing.T) {
	users := []string{"alice", "bob"}
	f := newFixture(t, users, []int{2, 3}, pop3test.ServerOptions{Implicit: true})
	csv := f.csv(t, users...)
	r := runMain(t, f.runArgs("--accounts", csv, "--account", "nobody")...)
	r.wantCode(t, exitUsage)
	if !strings.Contains(r.stderr, "--account nobody: no such account in the accounts given") {
		t.Errorf("--account nobody:\n%s", r)
	}
	if _, err := os.Stat(f.journal); !os.IsNotExist(err) {
		t.Errorf("a refused run created the journal (%v)", err)
	}
	r = runMain(t, f.runArgs("--accounts", csv, "--account", f.account("bob"), "--json")...)
	r.wantCode(t, exitOK)
	if rep := decodeReport(t, r.stdout); len(rep.Accounts) != 1 || rep.Accounts[0].Account != f.account("bob") || rep.Accounts[0].Stored != 3 {
		t.Errorf("--account bob: %+v", rep.Accounts)
	}
	r = runMain(t, f.runArgs("--accounts", csv, "--shard", fmt.Sprintf("%d/2", shardOf(f.account("alice"), 2)), "--json")...)
	r.wantCode(t, exitOK)
	if rep := decodeReport(t, r.stdout); len(rep.Accounts) != 1 || rep.Accounts[0].Account != f.account("alice") {
		t.Errorf("alice's shard: %+v", rep.Accounts)
	}
}
