package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/pipeline"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

// fixture is a pop3test server with several users and a place for a run's
// files. Passwords are in files, one per user.
type fixture struct {
	*tlsServer
	dir     string
	journal string
	out     string            // Maildirs are out/<user>
	pwFiles map[string]string // user -> password file
}

// newFixture serves a mailbox of n[i] messages for each users[i].
func newFixture(t *testing.T, users []string, n []int, o pop3test.ServerOptions) *fixture {
	t.Helper()
	var boxes []testMailbox
	var mbs []pop3test.Mailbox
	for i, u := range users {
		tm, mb := makeMailbox(u, "pw-"+u+"-Zq81x", n[i])
		boxes = append(boxes, tm)
		mbs = append(mbs, mb)
	}
	dir := t.TempDir()
	f := &fixture{
		tlsServer: startTLSServer(t, boxes, mbs, o),
		dir:       dir,
		journal:   filepath.Join(dir, "journal.db"),
		out:       filepath.Join(dir, "out"),
		pwFiles:   map[string]string{},
	}
	for _, b := range boxes {
		f.pwFiles[b.user] = writeFile(t, dir, b.user+".password", b.password+"\n")
	}
	return f
}

// account is the default account name of user on the fixture's server.
func (f *fixture) account(user string) string { return user + "@127.0.0.1" }

// source is the pop3s:// URL of user.
func (f *fixture) source(user string) string { return "pop3s://" + user + "@" + f.addr }

// csv writes an accounts CSV with one row per user (password files) and
// returns its path.
func (f *fixture) csv(t *testing.T, users ...string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("source,password_file\n")
	for _, u := range users {
		fmt.Fprintf(&b, "%s,%s\n", f.source(u), f.pwFiles[u])
	}
	return writeFile(t, f.dir, "accounts.csv", b.String())
}

// runArgs are the arguments every run of the fixture shares.
func (f *fixture) runArgs(extra ...string) []string {
	return append([]string{"run", "--ca-file", f.caFile, "--journal", f.journal,
		"--to", "maildir:" + filepath.Join(f.out, "{user}")}, extra...)
}

func (f *fixture) checkMaildir(t *testing.T, user string) {
	t.Helper()
	checkMaildir(t, filepath.Join(f.out, user), f.account(user), f.boxes[user])
}

// tableRow returns the cells of the row of account in a human table
// (columns are separated by two or more spaces), or fails the test.
func tableRow(t *testing.T, out, account string) []string {
	t.Helper()
	sep := regexp.MustCompile(`\s{2,}`)
	for _, line := range strings.Split(out, "\n") {
		cells := sep.Split(strings.TrimSpace(line), -1)
		if len(cells) > 0 && cells[0] == account {
			return cells
		}
	}
	t.Fatalf("no table row for %s in:\n%s", account, out)
	return nil
}

func TestRunHumanReport(t *testing.T) {
	f := newFixture(t, []string{"alice"}, []int{3}, pop3test.ServerOptions{Implicit: true})
	t.Setenv("POPMIGRATE_TEST_PW", f.boxes["alice"].password)
	args := f.runArgs("--source", f.source("alice"), "--password-env", "POPMIGRATE_TEST_PW")

	r := runMain(t, args...)
	r.wantCode(t, exitOK)
	if !regexp.MustCompile(`(?m)^ACCOUNT\s{2,}ON SERVER\s{2,}STORED\s{2,}ALREADY STORED\s{2,}ADOPTED\s{2,}FAILED\s{2,}STATUS$`).MatchString(r.stdout) {
		t.Errorf("no table header:\n%s", r.stdout)
	}
	row := tableRow(t, r.stdout, f.account("alice"))
	// ACCOUNT, ON SERVER "3 (n B)", STORED, ALREADY STORED, ADOPTED, FAILED, STATUS
	if len(row) != 7 || !strings.HasPrefix(row[1], "3 (") || row[2] != "3" || row[3] != "0" || row[4] != "0" || row[5] != "0" || row[6] != "ok" {
		t.Errorf("row = %q, want 3 on server, 3 stored, ok", row)
	}
	if !strings.Contains(r.stdout, "1 accounts (0 not whole): 3 messages on the servers; stored 3") {
		t.Errorf("no totals line:\n%s", r.stdout)
	}
	// Not a terminal: one plain progress line per account on stderr.
	if !strings.Contains(r.stderr, "popmigrate: alice@127.0.0.1: 3 on server, stored 3, already stored 0, failed 0: ok") {
		t.Errorf("stderr lacks the account's progress line:\n%s", r.stderr)
	}
	f.checkMaildir(t, "alice")

	// Again: nothing is downloaded twice.
	r = runMain(t, args...)
	r.wantCode(t, exitOK)
	row = tableRow(t, r.stdout, f.account("alice"))
	if len(row) != 7 || row[2] != "0" || row[3] != "3" || row[6] != "ok" {
		t.Errorf("second run row = %q, want 0 stored, 3 already stored", row)
	}
	f.checkMaildir(t, "alice")
	if got := f.srv.Stats().Retrs; got != 3 {
		t.Errorf("the server sent %d messages over two runs, want 3", got)
	}
}

// TestRunJSONReport checks that --json prints exactly one pipeline.Report,
// with the documented field names, that agrees with the Maildirs, and that
// status --json agrees with the journal and the disk.
func TestRunJSONReport(t *testing.T) {
	users := []string{"alice", "bob", "carol"}
	counts := []int{4, 1, 7}
	f := newFixture(t, users, counts, pop3test.ServerOptions{Implicit: true})
	args := f.runArgs("--accounts", f.csv(t, users...), "--json", "--batch-size", "2")

	r := runMain(t, args...)
	r.wantCode(t, exitOK)
	rep := decodeReport(t, r.stdout)
	// The field names are an interface for scripts: pin a few.
	var raw map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &raw); err != nil {
		t.Fatal(err)
	}
	acc0, _ := raw["accounts"].([]any)[0].(map[string]any)
	for _, k := range []string{"account", "source", "destinations", "server_messages", "server_bytes", "stored", "stored_bytes",
		"skipped_already_stored", "failed", "sessions", "whole"} {
		if _, ok := acc0[k]; !ok {
			t.Errorf("accounts[0] has no %q field: %v", k, acc0)
		}
	}
	if _, ok := raw["totals"].(map[string]any)["accounts_failed"]; !ok {
		t.Errorf("totals has no accounts_failed field: %v", raw["totals"])
	}

	total := 0
	for i, u := range users {
		a := accountReport(t, rep, f.account(u))
		dir := filepath.Join(f.out, u)
		if a.ServerMessages != counts[i] || a.Stored != counts[i] || a.SkippedAlreadyStored != 0 || a.Failed != 0 || !a.Whole || a.Error != "" {
			t.Errorf("%s: report %+v, want %d stored, whole", u, a, counts[i])
		}
		if a.Source != f.source(u) {
			t.Errorf("%s: source %q, want %q", u, a.Source, f.source(u))
		}
		if want := []string{"maildir:" + dir}; len(a.Destinations) != 1 || a.Destinations[0] != want[0] {
			t.Errorf("%s: destinations %q, want %q", u, a.Destinations, want)
		}
		var bytesOnDisk int64
		for _, data := range maildirFiles(t, dir) {
			bytesOnDisk += int64(len(data))
		}
		if a.StoredBytes != bytesOnDisk {
			t.Errorf("%s: stored_bytes %d, the Maildir holds %d bytes", u, a.StoredBytes, bytesOnDisk)
		}
		f.checkMaildir(t, u)
		total += counts[i]
	}
	if tt := rep.Totals; tt.Accounts != 3 || tt.AccountsFailed != 0 || tt.Stored != total || tt.ServerMessages != total || tt.Failed != 0 {
		t.Errorf("totals %+v, want 3 accounts, %d stored", tt, total)
	}
	if rep.Finished.Before(rep.Started) || rep.Duration < 0 {
		t.Errorf("times: started %v finished %v duration %v", rep.Started, rep.Finished, rep.Duration)
	}

	// A second run stores nothing and says everything was already there.
	r = runMain(t, args...)
	r.wantCode(t, exitOK)
	rep = decodeReport(t, r.stdout)
	for i, u := range users {
		a := accountReport(t, rep, f.account(u))
		if a.Stored != 0 || a.SkippedAlreadyStored != counts[i] || !a.Whole {
			t.Errorf("%s: second run %+v, want 0 stored, %d already stored", u, a, counts[i])
		}
		f.checkMaildir(t, u)
	}
	if rep.Totals.Stored != 0 || rep.Totals.SkippedAlreadyStored != total {
		t.Errorf("second run totals %+v", rep.Totals)
	}

	// status --json agrees with the journal and the disk.
	r = runMain(t, "status", "--journal", f.journal, "--json")
	r.wantCode(t, exitOK)
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	dec.DisallowUnknownFields()
	var st []statusJSON
	if err := dec.Decode(&st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, r.stdout)
	}
	js := journalStatus(t, f.journal)
	if len(st) != len(users) || len(js) != len(users) {
		t.Fatalf("status has %d accounts, the journal %d, want %d:\n%s", len(st), len(js), len(users), r.stdout)
	}
	for _, s := range st {
		j := js[s.Account]
		user := strings.TrimSuffix(s.Account, "@127.0.0.1")
		onDisk := len(maildirFiles(t, filepath.Join(f.out, user)))
		want := len(f.boxes[user].uids)
		// run verifies what it stored (the default verify phase). A
		// verified message counts as stored too.
		if s.Verified != want || j.Verified != want || onDisk != want || s.ServerCount != want || s.Failed != 0 {
			t.Errorf("%s: status %+v, journal %+v, %d on disk; want %d verified", s.Account, s, j, onDisk, want)
		}
		if s.Stored != want || s.Listed != 0 || s.Deleted != 0 {
			t.Errorf("%s: status %+v; want %d stored (verified or not), none listed or deleted", s.Account, s, want)
		}
		if s.Source != j.Source || s.Source != f.source(user) || s.ServerBytes != j.ServerBytes || s.LastError != "" {
			t.Errorf("%s: status %+v disagrees with journal %+v", s.Account, s, j)
		}
		if s.LastRun == nil || time.Since(*s.LastRun) > time.Minute {
			t.Errorf("%s: last_run %v", s.Account, s.LastRun)
		}
	}

	// The human status names every account.
	r = runMain(t, "status", "--journal", f.journal)
	r.wantCode(t, exitOK)
	for i, u := range users {
		row := tableRow(t, r.stdout, f.account(u))
		if len(row) < 5 || row[3] != fmt.Sprint(counts[i]) || row[4] != fmt.Sprint(counts[i]) {
			t.Errorf("status row %q, want %d stored and %d verified", row, counts[i], counts[i])
		}
	}
}

// TestRunWrongPassword: one account with a wrong password fails (exit 1,
// named in the report and the journal), the others are stored.
func TestRunWrongPassword(t *testing.T) {
	users := []string{"alice", "bob", "carol"}
	f := newFixture(t, users, []int{2, 3, 2}, pop3test.ServerOptions{Implicit: true})
	writeFile(t, f.dir, "bob.password", "not-bobs-password\n")
	r := runMain(t, f.runArgs("--accounts", f.csv(t, users...))...)
	r.wantCode(t, exitFailed)

	row := tableRow(t, r.stdout, f.account("bob"))
	if row[len(row)-1] != "NOT WHOLE" || row[2] != "0" {
		t.Errorf("bob's row %q, want NOT WHOLE with 0 stored", row)
	}
	if !regexp.MustCompile(`(?m)^! bob@127\.0\.0\.1: login as bob: .*(password|credentials)`).MatchString(r.stdout) {
		t.Errorf("the report does not say why bob failed:\n%s", r.stdout)
	}
	if !strings.Contains(r.stderr, "1 of 3 accounts not whole") {
		t.Errorf("stderr lacks the summary:\n%s", r.stderr)
	}
	for _, u := range []string{"alice", "carol"} {
		if row := tableRow(t, r.stdout, f.account(u)); row[len(row)-1] != "ok" {
			t.Errorf("%s's row %q, want ok", u, row)
		}
		f.checkMaildir(t, u)
	}
	if files := maildirFiles(t, filepath.Join(f.out, "bob")); len(files) != 0 {
		t.Errorf("bob's Maildir holds %d messages, want none", len(files))
	}
	// A refused password is not retried: one failed login, no more.
	if st := f.srv.Stats(); st.FailedLogins != 1 {
		t.Errorf("the server saw %d failed logins, want 1", st.FailedLogins)
	}

	js := journalStatus(t, f.journal)
	if b := js[f.account("bob")]; b.Stored != 0 || !strings.Contains(b.LastError, "login as bob") {
		t.Errorf("journal for bob: %+v", b)
	}
	r = runMain(t, "status", "--journal", f.journal)
	r.wantCode(t, exitOK)
	if !strings.Contains(r.stdout, "! bob@127.0.0.1: login as bob") {
		t.Errorf("status does not show bob's error:\n%s", r.stdout)
	}

	// With the right password the next run completes bob, and only bob.
	writeFile(t, f.dir, "bob.password", f.boxes["bob"].password+"\n")
	r = runMain(t, f.runArgs("--accounts", f.csv(t, users...), "--json")...)
	r.wantCode(t, exitOK)
	rep := decodeReport(t, r.stdout)
	if rep.Totals.Stored != 3 || rep.Totals.SkippedAlreadyStored != 4 {
		t.Errorf("totals %+v, want 3 stored (bob), 4 already stored", rep.Totals)
	}
	f.checkMaildir(t, "bob")
	if js := journalStatus(t, f.journal); js[f.account("bob")].LastError != "" {
		t.Errorf("bob's last error was not cleared: %q", js[f.account("bob")].LastError)
	}
}

func TestStatusMissingJournal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "never-ran.db")
	for _, args := range [][]string{{"status", "--journal", path}, {"status", "--journal", path, "--json"}} {
		r := runMain(t, args...)
		r.wantCode(t, exitUsage)
		if !strings.Contains(r.stderr, path) || !strings.Contains(r.stderr, "--journal") {
			t.Errorf("stderr does not name the journal:\n%s", r.stderr)
		}
		if r.stdout != "" {
			t.Errorf("stdout: %q", r.stdout)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("status created the journal (stat: %v)", err)
		}
	}
}

// TestStatusAccountNeverListed: an account that failed before its first
// listing is in the status, with nothing stored and its error.
func TestStatusAccountNeverListed(t *testing.T) {
	f := newFixture(t, []string{"alice"}, []int{1}, pop3test.ServerOptions{Implicit: true})
	writeFile(t, f.dir, "alice.password", "wrong\n")
	runMain(t, f.runArgs("--accounts", f.csv(t, "alice"))...).wantCode(t, exitFailed)
	r := runMain(t, "status", "--journal", f.journal, "--json")
	r.wantCode(t, exitOK)
	var st []statusJSON
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	if len(st) != 1 || st[0].Stored != 0 || st[0].LastError == "" {
		t.Errorf("status %+v, want alice with 0 stored and an error", st)
	}
}

// TestSecretsNeverAppear runs accounts whose passwords come from the
// environment, a file, a CSV cell and a command (one of them wrong), with
// tracing and verbose logs on, and looks for every password in everything
// popmigrate wrote: stdout, stderr, the journal and the traces.
func TestSecretsNeverAppear(t *testing.T) {
	users := []string{"alice", "bob", "carol", "dave"}
	f := newFixture(t, users, []int{2, 2, 2, 2}, pop3test.ServerOptions{Implicit: true, Faults: pop3test.Faults{SASLPlain: true}})
	const wrong = "wrong-pw-for-dave-Kx93"
	t.Setenv("POPMIGRATE_TEST_ALICE", f.boxes["alice"].password)
	csv := writeFile(t, f.dir, "accounts.csv", "source,password_env,password_file,password,password_command\n"+
		f.source("alice")+",POPMIGRATE_TEST_ALICE,,,\n"+
		f.source("bob")+",,"+f.pwFiles["bob"]+",,\n"+
		f.source("carol")+",,,"+f.boxes["carol"].password+",\n"+
		f.source("dave")+",,,,printf %s "+wrong+"\n")
	traces := filepath.Join(f.dir, "traces")
	var outputs []byte
	r := runMain(t, f.runArgs("--accounts", csv, "--trace-dir", traces, "-v")...)
	r.wantCode(t, exitFailed) // dave
	outputs = append(outputs, r.stdout+r.stderr...)
	r = runMain(t, f.runArgs("--accounts", csv, "--trace-dir", traces, "-v", "--json")...)
	r.wantCode(t, exitFailed)
	outputs = append(outputs, r.stdout+r.stderr...)
	rep := decodeReport(t, r.stdout)
	if d := accountReport(t, rep, f.account("dave")); d.Error == "" {
		t.Errorf("dave did not fail: %+v", d)
	}
	for _, args := range [][]string{{"status", "--journal", f.journal}, {"status", "--journal", f.journal, "--json"}} {
		r = runMain(t, args...)
		r.wantCode(t, exitOK)
		outputs = append(outputs, r.stdout+r.stderr...)
	}
	for _, u := range []string{"alice", "bob", "carol"} {
		f.checkMaildir(t, u)
	}

	places := map[string][]byte{
		"stdout and stderr": outputs,
		"journal":           journalBytes(t, f.journal),
	}
	entries, err := os.ReadDir(traces)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(users) {
		t.Errorf("%d trace files, want %d", len(entries), len(users))
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(traces, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		// The trace must hold the login exchange for the check to mean
		// anything.
		if !bytes.Contains(data, []byte("AUTH PLAIN")) && !bytes.Contains(data, []byte("PASS")) {
			t.Errorf("trace %s shows no login:\n%s", e.Name(), data)
		}
		places["trace "+e.Name()] = data
	}
	secrets := []string{wrong}
	for _, u := range users {
		secrets = append(secrets, f.boxes[u].password)
	}
	for where, data := range places {
		for _, s := range secrets {
			if bytes.Contains(data, []byte(s)) {
				t.Errorf("%s contains the password %q", where, s)
			}
		}
	}
	// The journal does record the run, and names the accounts: the check
	// above looked at a real journal.
	if !bytes.Contains(places["journal"], []byte("alice@127.0.0.1")) {
		t.Errorf("the journal does not name alice: was it read?")
	}
}

func TestInsecureSkipVerifyWarns(t *testing.T) {
	f := newFixture(t, []string{"alice"}, []int{2}, pop3test.ServerOptions{Implicit: true})
	args := []string{"run", "--journal", f.journal, "--to", "maildir:" + filepath.Join(f.out, "{user}"),
		"--source", f.source("alice"), "--password-file", f.pwFiles["alice"], "--insecure-skip-verify"}
	r := runMain(t, args...)
	r.wantCode(t, exitOK)
	if !strings.Contains(r.stderr, "WARNING: account alice@127.0.0.1: TLS certificate verification is OFF") {
		t.Errorf("no warning on stderr:\n%s", r.stderr)
	}
	if strings.Contains(r.stdout, "WARNING") {
		t.Errorf("the warning went to stdout:\n%s", r.stdout)
	}
	f.checkMaildir(t, "alice")

	r = runMain(t, "check", "--source", f.source("alice"), "--password-file", f.pwFiles["alice"], "--insecure-skip-verify")
	r.wantCode(t, exitOK)
	if !strings.Contains(r.stderr, "WARNING: account alice@127.0.0.1: TLS certificate verification is OFF") {
		t.Errorf("check: no warning on stderr:\n%s", r.stderr)
	}
}

// TestUntrustedCertificate: without --ca-file the private CA is not
// trusted; the account fails with a certificate error, is not retried,
// sends no credential and stores nothing.
func TestUntrustedCertificate(t *testing.T) {
	f := newFixture(t, []string{"alice"}, []int{2}, pop3test.ServerOptions{Implicit: true})
	r := runMain(t, "run", "--journal", f.journal, "--to", "maildir:"+filepath.Join(f.out, "{user}"),
		"--source", f.source("alice"), "--password-file", f.pwFiles["alice"], "--json")
	r.wantCode(t, exitFailed)
	rep := decodeReport(t, r.stdout)
	a := accountReport(t, rep, f.account("alice"))
	if !strings.Contains(a.Error, "certificate") || !strings.Contains(a.Error, "--ca-file") {
		t.Errorf("error %q does not name the certificate problem and --ca-file", a.Error)
	}
	if a.Whole || a.Stored != 0 || a.Sessions != 1 {
		t.Errorf("report %+v, want not whole, nothing stored, one session", a)
	}
	if files := maildirFiles(t, filepath.Join(f.out, "alice")); len(files) != 0 {
		t.Errorf("%d messages stored, want none", len(files))
	}
	if st := f.srv.Stats(); st.Logins != 0 || st.FailedLogins != 0 || st.Retrs != 0 {
		t.Errorf("server stats %+v: credentials or commands reached the server", st)
	}
	if js := journalStatus(t, f.journal); js[f.account("alice")].Stored != 0 {
		t.Errorf("journal: %+v", js[f.account("alice")])
	}
}

// TestRunSTLS: pop3:// upgrades with STLS and needs no --insecure-plaintext.
func TestRunSTLS(t *testing.T) {
	log := &syncWriter{w: &bytes.Buffer{}}
	f := newFixture(t, []string{"alice"}, []int{3}, pop3test.ServerOptions{Log: log})
	src := "pop3://alice@" + f.addr
	r := runMain(t, "run", "--journal", f.journal, "--ca-file", f.caFile, "--to", "maildir:"+filepath.Join(f.out, "{user}"),
		"--source", src, "--password-file", f.pwFiles["alice"])
	r.wantCode(t, exitOK)
	if strings.Contains(r.stderr, "WARNING") {
		t.Errorf("unexpected warning:\n%s", r.stderr)
	}
	f.checkMaildir(t, "alice")
	tr := log.String()
	stls, user := strings.Index(tr, "C: STLS"), strings.Index(tr, "C: USER")
	if stls < 0 || (user >= 0 && user < stls) {
		t.Errorf("STLS was not sent before the credentials:\n%s", tr)
	}
}

// TestRunInterrupted cancels a run midway: exit 130, what was stored is
// recorded, and the next run completes with every message exactly once.
func TestRunInterrupted(t *testing.T) {
	const n = 12
	f := newFixture(t, []string{"alice"}, []int{n}, pop3test.ServerOptions{Implicit: true,
		Faults: pop3test.Faults{Delay: 10 * time.Millisecond, NoPipelining: true}})
	args := f.runArgs("--source", f.source("alice"), "--password-file", f.pwFiles["alice"], "--batch-size", "1")

	// Main turns SIGINT into a cancelled context; drive the same path with
	// a context the test cancels.
	opts := parseRun(t, args[1:]...)
	var out bytes.Buffer
	errOut := &syncWriter{w: &bytes.Buffer{}}
	opts.io = &iostreams{Out: &out, Err: errOut}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() { done <- exitCode(ctx, runRun(ctx, opts), errOut) }()
	md := filepath.Join(f.out, "alice")
	deadline := time.Now().Add(10 * time.Second)
	for len(maildirFiles(t, md)) < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	var code int
	select {
	case code = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the run did not end within 10s of the cancel")
	}
	if code != exitInterrupted {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitInterrupted, out.String(), errOut.String())
	}
	if !strings.Contains(errOut.String(), "run the same command again to resume") {
		t.Errorf("stderr does not say how to resume:\n%s", errOut.String())
	}
	// Stored, or verified too: the writer reads each copy back before
	// the batch that records it commits.
	st := journalStatus(t, f.journal)[f.account("alice")]
	stored := st.Stored + st.Verified
	onDisk := len(maildirFiles(t, md))
	if stored < 1 || stored >= n || onDisk < stored {
		t.Errorf("after the interrupt: journal stored %d, %d on disk, of %d", stored, onDisk, n)
	}

	// The server holds the mailbox lock until it notices the client is
	// gone; resuming earlier would meet [IN-USE] and back off for seconds.
	for f.srv.Stats().Concurrent > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	r := runMain(t, append(args, "--json")...)
	r.wantCode(t, exitOK)
	a := accountReport(t, decodeReport(t, r.stdout), f.account("alice"))
	if a.SkippedAlreadyStored != stored || a.Stored != n-stored {
		t.Errorf("resume: %+v, want %d already stored and %d stored", a, stored, n-stored)
	}
	f.checkMaildir(t, "alice")
}

func TestCheck(t *testing.T) {
	users := []string{"alice", "bob"}
	f := newFixture(t, users, []int{3, 1}, pop3test.ServerOptions{Implicit: true})
	r := runMain(t, "check", "--accounts", f.csv(t, users...), "--ca-file", f.caFile, "--json")
	r.wantCode(t, exitOK)
	var res []pipeline.CheckResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	if len(res) != 2 || res[0].Messages != 3 || res[1].Messages != 1 || !res[0].OK() || !res[0].UIDL {
		t.Errorf("check results %+v", res)
	}
	if f.srv.Stats().Retrs != 0 {
		t.Errorf("check downloaded messages")
	}
	if _, err := os.Stat(f.out); !os.IsNotExist(err) {
		t.Errorf("check created the destination folder (stat: %v)", err)
	}

	writeFile(t, f.dir, "bob.password", "wrong\n")
	r = runMain(t, "check", "--accounts", f.csv(t, users...), "--ca-file", f.caFile)
	r.wantCode(t, exitFailed)
	if row := tableRow(t, r.stdout, f.account("bob")); row[1] != "FAILED" {
		t.Errorf("bob's row %q", row)
	}
	if !strings.Contains(r.stdout, "! bob@127.0.0.1: ") {
		t.Errorf("no error line for bob:\n%s", r.stdout)
	}
}

// TestRunYAMLConfig: accounts and defaults from --config; flags fill what
// the file leaves out (here the CA file).
func TestRunYAMLConfig(t *testing.T) {
	users := []string{"alice", "bob"}
	f := newFixture(t, users, []int{2, 3}, pop3test.ServerOptions{Implicit: true})
	cfg := writeFile(t, f.dir, "popmigrate.yaml", fmt.Sprintf(`defaults:
  to: ["maildir:%s/{account}"]
accounts:
  - source: %s
    name: alice-box
    password_file: %s
  - host: 127.0.0.1
    port: %s
    user: bob
    password_file: %s
`, f.out, f.source("alice"), f.pwFiles["alice"], f.addr[strings.LastIndexByte(f.addr, ':')+1:], f.pwFiles["bob"]))
	r := runMain(t, "run", "--config", cfg, "--ca-file", f.caFile, "--journal", f.journal, "--json")
	r.wantCode(t, exitOK)
	rep := decodeReport(t, r.stdout)
	if a := accountReport(t, rep, "alice-box"); a.Stored != 2 || !a.Whole {
		t.Errorf("alice-box: %+v", a)
	}
	if a := accountReport(t, rep, "bob@127.0.0.1"); a.Stored != 3 || !a.Whole || a.Source != f.source("bob") {
		t.Errorf("bob: %+v", a)
	}
	checkMaildir(t, filepath.Join(f.out, "alice-box"), "alice-box", f.boxes["alice"])
	checkMaildir(t, filepath.Join(f.out, "bob@127.0.0.1"), "bob@127.0.0.1", f.boxes["bob"])
}
