package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/internal/testmsg"
	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/pipeline"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

// TestWireFormCanonicalizes pins the test's own model of the wire: the
// canonical form of the served CRLF form is the sample itself (plus the
// line end the server must add to an unterminated last line).
func TestWireFormCanonicalizes(t *testing.T) {
	for _, s := range testmsg.Load(t) {
		want := s.Data
		if s.Name == "no-final-newline" {
			want = append(bytes.Clone(s.Data), '\n')
		}
		if got := exporters.Canonicalize(wireForm(s.Data)); !bytes.Equal(got, want) {
			t.Errorf("%s: Canonicalize(wire form) differs from the sample", s.Name)
		}
	}
}

func TestRunStoresEveryMessageOnce(t *testing.T) {
	users := []string{"alice", "bob", "carol"}
	msgs := map[string][]srcMsg{}
	var boxes []pop3test.Mailbox
	for _, u := range users {
		msgs[u] = trickyMsgs(t, u+"-")
		boxes = append(boxes, mailbox(u, msgs[u]))
	}
	e := newEnv(t, boxes, nil)
	var accounts []*config.Account
	for _, u := range users {
		accounts = append(accounts, e.account(u))
	}
	o := testOptions()
	o.BatchSize = 4

	rep := e.run(accounts, o)
	var wantStored int
	var wantStoredBytes, wantServerBytes int64
	for _, u := range users {
		a := accountReport(t, rep, u)
		n := len(msgs[u])
		wantCounts(t, a, n, n, 0, 0, true)
		var storedBytes, serverBytes int64
		for _, m := range msgs[u] {
			storedBytes += int64(len(m.want))
			serverBytes += int64(len(m.wire))
		}
		if a.StoredBytes != storedBytes || a.ServerBytes != serverBytes {
			t.Errorf("%s: stored bytes %d server bytes %d, want %d %d", u, a.StoredBytes, a.ServerBytes, storedBytes, serverBytes)
		}
		if a.Sessions != 1 || a.NoUIDL || a.DuplicateUIDLs != 0 || len(a.SizeMismatches) != 0 || a.Error != "" {
			t.Errorf("%s: sessions %d noUIDL %v dups %d mismatches %v error %q; want a clean single session",
				u, a.Sessions, a.NoUIDL, a.DuplicateUIDLs, a.SizeMismatches, a.Error)
		}
		if len(a.Destinations) != 1 || a.Destinations[0] != "maildir:"+e.maildir(u) {
			t.Errorf("%s: destinations %v", u, a.Destinations)
		}
		wantStored += n
		wantStoredBytes += storedBytes
		wantServerBytes += serverBytes
		checkMaildir(t, e.maildir(u), u, msgs[u], false)
		checkJournal(t, e.j, e.maildir(u), u, msgs[u])
	}
	tot := rep.Totals
	if tot.Accounts != 3 || tot.AccountsFailed != 0 || tot.ServerMessages != wantStored || tot.Stored != wantStored ||
		tot.StoredBytes != wantStoredBytes || tot.ServerBytes != wantServerBytes || tot.SkippedAlreadyStored != 0 || tot.Failed != 0 {
		t.Errorf("totals %+v; want 3 accounts, %d stored (%d bytes), %d server bytes", tot, wantStored, wantStoredBytes, wantServerBytes)
	}
	if rep.Finished.Before(rep.Started) || rep.Duration < 0 {
		t.Errorf("report times: started %v finished %v duration %v", rep.Started, rep.Finished, rep.Duration)
	}

	before := stamps(t, filepath.Join(e.dir, "mail"))
	rep = e.run(accounts, o)
	for _, u := range users {
		a := accountReport(t, rep, u)
		n := len(msgs[u])
		wantCounts(t, a, n, 0, n, 0, true)
		if a.StoredBytes != 0 {
			t.Errorf("%s: second run stored %d bytes", u, a.StoredBytes)
		}
		checkJournal(t, e.j, e.maildir(u), u, msgs[u])
	}
	if rep.Totals.Stored != 0 || rep.Totals.SkippedAlreadyStored != wantStored {
		t.Errorf("second run totals %+v; want 0 stored, %d skipped", rep.Totals, wantStored)
	}
	sameFiles(t, filepath.Join(e.dir, "mail"), before)
}

// faultRun migrates msgs of account alice from a server with the options
// so (faults), and returns the env and alice's report.
func faultRun(t *testing.T, msgs []srcMsg, so *pop3test.ServerOptions, o *pipeline.Options) (*env, *pipeline.AccountReport) {
	t.Helper()
	e := newEnv(t, []pop3test.Mailbox{mailbox("alice", msgs)}, so)
	rep := e.run([]*config.Account{e.account("alice")}, o)
	return e, accountReport(t, rep, "alice")
}

func userFaults(f pop3test.Faults) *pop3test.ServerOptions {
	return &pop3test.ServerOptions{UserFaults: map[string]pop3test.Faults{"alice": f}}
}

func TestRunFaults(t *testing.T) {
	tricky := trickyMsgs(t, "m-")
	n := len(tricky)

	t.Run("DropAfterBytes", func(t *testing.T) {
		// Larger than the largest sample (the 1 MiB attachment), smaller
		// than the mailbox: every session stores something and ends in
		// the middle of a message.
		o := testOptions()
		o.Attempts = 20
		o.BatchSize = 3
		e, a := faultRun(t, tricky, userFaults(pop3test.Faults{DropAfterBytes: 1_200_000}), o)
		wantCounts(t, a, n, n, 0, 0, true)
		if a.Sessions < 2 {
			t.Errorf("sessions %d, want more than 1", a.Sessions)
		}
		if s := e.srv.Stats(); s.Logins != a.Sessions {
			t.Errorf("server saw %d logins, report says %d sessions", s.Logins, a.Sessions)
		}
		checkMaildir(t, e.maildir("alice"), "alice", tricky, false)
		checkJournal(t, e.j, e.maildir("alice"), "alice", tricky)
	})

	t.Run("DropAfterRetrs", func(t *testing.T) {
		o := testOptions()
		e, a := faultRun(t, tricky, userFaults(pop3test.Faults{DropAfterRetrs: 5}), o)
		wantCounts(t, a, n, n, 0, 0, true)
		// Each session stores exactly 5 messages and commits them before
		// the next session plans.
		if want := (n + 4) / 5; a.Sessions != want {
			t.Errorf("sessions %d, want %d", a.Sessions, want)
		}
		if s := e.srv.Stats(); s.Retrs != n {
			t.Errorf("server sent %d RETR responses, want %d: something was downloaded twice", s.Retrs, n)
		}
		checkMaildir(t, e.maildir("alice"), "alice", tricky, false)
		checkJournal(t, e.j, e.maildir("alice"), "alice", tricky)
	})

	t.Run("RetrErr", func(t *testing.T) {
		const bad = 3
		badKey := tricky[bad-1].key
		e, a := faultRun(t, tricky, userFaults(pop3test.Faults{RetrErr: map[int]string{bad: "[SYS/PERM] message unreadable"}}), testOptions())
		wantCounts(t, a, n, n-1, 0, 1, false)
		if a.Sessions != 1 || a.Error != "" {
			t.Errorf("sessions %d error %q; want 1 session and no account error", a.Sessions, a.Error)
		}
		if len(a.Failures) == 1 {
			f := a.Failures[0]
			if f.UIDL != badKey || !strings.Contains(f.Error, badKey) || !strings.Contains(f.Error, "RETR 3") || !strings.Contains(f.Error, "unreadable") {
				t.Errorf("failure %+v: want uidl %q and an error naming it and the server's answer", f, badKey)
			}
		}
		var others []srcMsg
		for i, m := range tricky {
			if i != bad-1 {
				others = append(others, m)
			}
		}
		checkMaildir(t, e.maildir("alice"), "alice", others, false)
		rows, err := e.j.Messages(context.Background(), "alice")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if r.UIDL == badKey {
				if r.State != journal.StateFailed || !strings.Contains(r.Error, badKey) || !strings.Contains(r.Error, "-ERR") || r.Attempts != 1 {
					t.Errorf("journal row of the failed message: state %q error %q attempts %d", r.State, r.Error, r.Attempts)
				}
			} else if r.State != journal.StateStored {
				t.Errorf("journal: %q is %q, want stored", r.UIDL, r.State)
			}
		}
		checkDeliveriesOnDisk(t, e.j, e.maildir("alice"), "alice")

		e.srv.SetFaults("alice", pop3test.Faults{})
		rep := e.run([]*config.Account{e.account("alice")}, testOptions())
		a = accountReport(t, rep, "alice")
		wantCounts(t, a, n, 1, n-1, 0, true)
		checkMaildir(t, e.maildir("alice"), "alice", tricky, false)
		checkJournal(t, e.j, e.maildir("alice"), "alice", tricky)
	})

	t.Run("NoUIDL", func(t *testing.T) {
		msgs := make([]srcMsg, n)
		for i, m := range tricky {
			m.uid, m.key = "", ""
			msgs[i] = m
		}
		e, a := faultRun(t, msgs, userFaults(pop3test.Faults{NoUIDL: true}), testOptions())
		wantCounts(t, a, n, n, 0, 0, true)
		if !a.NoUIDL {
			t.Error("report does not say NoUIDL")
		}
		checkMaildir(t, e.maildir("alice"), "alice", msgs, false)
		checkJournal(t, e.j, e.maildir("alice"), "alice", msgs)
		rows, err := e.j.Messages(context.Background(), "alice")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if r.Kind != journal.KindSynthetic || r.State != journal.StateStored {
				t.Errorf("journal: %q kind %q state %q, want a stored synthetic key", r.UIDL, r.Kind, r.State)
			}
		}
		before := stamps(t, e.maildir("alice"))
		rep := e.run([]*config.Account{e.account("alice")}, testOptions())
		a = accountReport(t, rep, "alice")
		wantCounts(t, a, n, 0, n, 0, true)
		if !a.NoUIDL {
			t.Error("second run: report does not say NoUIDL")
		}
		sameFiles(t, e.maildir("alice"), before)
	})

	t.Run("DuplicateUIDLs", func(t *testing.T) {
		msgs := smallMsgs("d", 4)
		msgs[2].uid, msgs[2].key = msgs[0].uid, msgs[0].uid+" dup2"
		e, a := faultRun(t, msgs, nil, testOptions())
		wantCounts(t, a, 4, 4, 0, 0, true)
		if a.DuplicateUIDLs != 1 {
			t.Errorf("DuplicateUIDLs %d, want 1", a.DuplicateUIDLs)
		}
		checkMaildir(t, e.maildir("alice"), "alice", msgs, false)
		checkJournal(t, e.j, e.maildir("alice"), "alice", msgs)
		rows, err := e.j.Messages(context.Background(), "alice")
		if err != nil {
			t.Fatal(err)
		}
		kinds := map[string]string{}
		for _, r := range rows {
			kinds[r.UIDL] = r.Kind
		}
		if kinds[msgs[0].key] != journal.KindUIDL || kinds[msgs[2].key] != journal.KindDup {
			t.Errorf("journal kinds %v: want %q uidl and %q dup", kinds, msgs[0].key, msgs[2].key)
		}
		before := stamps(t, e.maildir("alice"))
		rep := e.run([]*config.Account{e.account("alice")}, testOptions())
		a = accountReport(t, rep, "alice")
		wantCounts(t, a, 4, 0, 4, 0, true)
		if a.DuplicateUIDLs != 1 {
			t.Errorf("second run: DuplicateUIDLs %d, want 1", a.DuplicateUIDLs)
		}
		sameFiles(t, e.maildir("alice"), before)
	})

	t.Run("OddUIDLs", func(t *testing.T) {
		odd := []string{"../x", "a/b", ":2,S", "*", "..", "/etc/passwd", strings.Repeat("../", 23) + "x"}
		if l := len(odd[len(odd)-1]); l != 70 {
			t.Fatalf("long UIDL is %d characters", l)
		}
		msgs := smallMsgs("o", len(odd))
		for i := range msgs {
			msgs[i].uid, msgs[i].key = odd[i], odd[i]
		}
		e, a := faultRun(t, msgs, nil, testOptions())
		wantCounts(t, a, len(odd), len(odd), 0, 0, true)
		checkMaildir(t, e.maildir("alice"), "alice", msgs, false)
		checkJournal(t, e.j, e.maildir("alice"), "alice", msgs)
		// Every file under mail/ is a key-named message in alice's new/.
		name := regexp.MustCompile(`^alice/new/[0-9a-f]{32}\.popmigrate$`)
		all := stamps(t, filepath.Join(e.dir, "mail"))
		for rel := range all {
			if !name.MatchString(filepath.ToSlash(rel)) {
				t.Errorf("unexpected file mail/%s", rel)
			}
		}
		if len(all) != len(odd) {
			t.Errorf("%d files under mail/, want %d", len(all), len(odd))
		}
		// Nothing escaped next to the Maildir either.
		entries, err := os.ReadDir(e.dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, de := range entries {
			switch de.Name() {
			case "mail", "journal.db", "journal.db-wal", "journal.db-shm", "ca.pem", "server.pem", "server.key", "secret-alice":
			default:
				t.Errorf("unexpected entry %s next to the Maildir", de.Name())
			}
		}
	})

	t.Run("SizeSkew", func(t *testing.T) {
		const skew = 3
		e, a := faultRun(t, tricky, userFaults(pop3test.Faults{SizeSkew: skew}), testOptions())
		wantCounts(t, a, n, n, 0, 0, true)
		if len(a.SizeMismatches) != n {
			t.Fatalf("%d size mismatches, want %d", len(a.SizeMismatches), n)
		}
		wire := map[string]int64{}
		var serverBytes int64
		for _, m := range tricky {
			wire[m.key] = int64(len(m.wire))
			serverBytes += int64(len(m.wire)) + skew
		}
		for _, sm := range a.SizeMismatches {
			if got, ok := wire[sm.UIDL]; !ok || sm.Received != got || sm.Listed != got+skew {
				t.Errorf("mismatch %+v; want received %d listed %d", sm, got, got+skew)
			}
		}
		if a.ServerBytes != serverBytes {
			t.Errorf("server bytes %d, want %d (as listed)", a.ServerBytes, serverBytes)
		}
		checkMaildir(t, e.maildir("alice"), "alice", tricky, false)
		checkJournal(t, e.j, e.maildir("alice"), "alice", tricky)
		rows, err := e.j.Messages(context.Background(), "alice")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if r.ListedSize != r.ReceivedSize+skew || r.ReceivedSize != wire[r.UIDL] {
				t.Errorf("journal %q: listed %d received %d; want received %d", r.UIDL, r.ListedSize, r.ReceivedSize, wire[r.UIDL])
			}
		}
	})

	t.Run("LoginInUse", func(t *testing.T) {
		msgs := smallMsgs("l", 5)
		start := time.Now()
		e, a := faultRun(t, msgs, userFaults(pop3test.Faults{LoginErr: "[IN-USE] mailbox locked", LoginErrCount: 2}), testOptions())
		elapsed := time.Since(start)
		wantCounts(t, a, 5, 5, 0, 0, true)
		if a.Sessions != 3 {
			t.Errorf("sessions %d, want 3 (two refused logins, then success)", a.Sessions)
		}
		if s := e.srv.Stats(); s.FailedLogins != 2 || s.Logins != 1 {
			t.Errorf("server: %d failed logins, %d logins; want 2 and 1", s.FailedLogins, s.Logins)
		}
		// Backoff 10ms: the first retry waits 5..10ms, the second 10..20ms.
		if elapsed < 15*time.Millisecond {
			t.Errorf("run took %v: the retries did not back off", elapsed)
		}
		checkMaildir(t, e.maildir("alice"), "alice", msgs, false)
		checkJournal(t, e.j, e.maildir("alice"), "alice", msgs)
	})

	t.Run("WrongPassword", func(t *testing.T) {
		am, bm := smallMsgs("a", 3), smallMsgs("b", 4)
		e := newEnv(t, []pop3test.Mailbox{mailbox("alice", am), mailbox("bob", bm)}, nil)
		rep := e.run([]*config.Account{e.accountWithPassword("alice", "wrong"), e.account("bob")}, testOptions())
		a := accountReport(t, rep, "alice")
		wantCounts(t, a, 0, 0, 0, 0, false)
		if a.Sessions != 1 || !strings.Contains(a.Error, "login") || !strings.Contains(a.Error, "AUTH") {
			t.Errorf("alice: sessions %d error %q; want 1 session and a login error", a.Sessions, a.Error)
		}
		if strings.Contains(a.Error, "wrong") {
			t.Errorf("alice: error %q shows the password", a.Error)
		}
		b := accountReport(t, rep, "bob")
		wantCounts(t, b, 4, 4, 0, 0, true)
		if rep.Totals.AccountsFailed != 1 || rep.Totals.Accounts != 2 {
			t.Errorf("totals %+v: want 1 of 2 accounts failed", rep.Totals)
		}
		if s := e.srv.Stats(); s.Sessions != 2 {
			t.Errorf("server saw %d sessions, want 2: a wrong password was retried", s.Sessions)
		}
		checkMaildir(t, e.maildir("bob"), "bob", bm, false)
		checkJournal(t, e.j, e.maildir("bob"), "bob", bm)
		st, err := e.j.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range st {
			if s.Account == "alice" && !strings.Contains(s.LastError, "login") {
				t.Errorf("journal: alice's last error %q, want the login failure", s.LastError)
			}
			if s.Account == "bob" && (s.LastError != "" || s.Stored != 4) {
				t.Errorf("journal: bob last error %q stored %d", s.LastError, s.Stored)
			}
		}
	})

	t.Run("NoPipelining", func(t *testing.T) {
		o := testOptions()
		o.BatchSize = 5
		e, a := faultRun(t, tricky, userFaults(pop3test.Faults{NoPipelining: true}), o)
		wantCounts(t, a, n, n, 0, 0, true)
		checkMaildir(t, e.maildir("alice"), "alice", tricky, false)
		checkJournal(t, e.j, e.maildir("alice"), "alice", tricky)
	})

	t.Run("ManyMessages", func(t *testing.T) {
		const count, batch = 2000, 7
		msgs := smallMsgs("n", count)
		o := testOptions()
		o.BatchSize = batch
		o.BatchInterval = time.Minute // only size closes a batch
		var commits int
		pipeline.SetTestHooks(o, nil, nil, func(n int) { commits = n })
		e, a := faultRun(t, msgs, nil, o)
		wantCounts(t, a, count, count, 0, 0, true)
		if want := (count + batch - 1) / batch; commits != want {
			t.Errorf("%d journal commits, want %d", commits, want)
		}
		checkMaildir(t, e.maildir("alice"), "alice", msgs, false)
		checkJournal(t, e.j, e.maildir("alice"), "alice", msgs)
	})

	t.Run("PerHost", func(t *testing.T) {
		users := []string{"u1", "u2", "u3", "u4"}
		// The account's provider limit (config.Account.PerHost) wins
		// over the run's.
		for _, c := range []struct{ perHost, account int }{{1, 0}, {4, 0}, {4, 1}} {
			var boxes []pop3test.Mailbox
			msgs := map[string][]srcMsg{}
			for _, u := range users {
				msgs[u] = smallMsgs(u+"-", 6)
				boxes = append(boxes, mailbox(u, msgs[u]))
			}
			// A small delay per response makes sessions overlap whenever
			// the limit lets them.
			e := newEnv(t, boxes, &pop3test.ServerOptions{Faults: pop3test.Faults{Delay: 2 * time.Millisecond}})
			var accounts []*config.Account
			for _, u := range users {
				a := e.account(u)
				a.PerHost = c.account
				accounts = append(accounts, a)
			}
			o := testOptions()
			o.Jobs, o.PerHost = 4, c.perHost
			rep := e.run(accounts, o)
			for _, u := range users {
				wantCounts(t, accountReport(t, rep, u), 6, 6, 0, 0, true)
				checkMaildir(t, e.maildir(u), u, msgs[u], false)
			}
			got := e.srv.Stats().MaxConcurrent
			if (c.perHost == 1 || c.account == 1) && got != 1 {
				t.Errorf("PerHost %d, account's %d: server saw %d sessions at once", c.perHost, c.account, got)
			}
			// The control: without the limit the same run overlaps, so
			// the check above can fail.
			if c.perHost == 4 && c.account == 0 && got < 2 {
				t.Errorf("PerHost 4: server saw at most %d session at once; the test cannot tell the limit works", got)
			}
		}
	})
}

func TestRunCancel(t *testing.T) {
	msgs := smallMsgs("c", 60)
	e := newEnv(t, []pop3test.Mailbox{mailbox("alice", msgs)}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o := testOptions()
	o.BatchSize = 4
	const cancelAt = 10
	var cancelled time.Time
	pipeline.SetTestHooks(o, func(n int) {
		if n == cancelAt {
			cancelled = time.Now()
			cancel()
		}
	}, nil, nil)
	rep, err := pipeline.Run(ctx, e.j, []*config.Account{e.account("alice")}, o)
	returned := time.Now()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}
	if cancelled.IsZero() {
		t.Fatal("the run never reached the cancellation point")
	}
	if d := returned.Sub(cancelled); d > 2*time.Second {
		t.Errorf("Run returned %v after the cancellation, want < 2s", d)
	}
	a := accountReport(t, rep, "alice")
	if a.Whole || a.Error == "" {
		t.Errorf("cancelled account: whole %v error %q", a.Whole, a.Error)
	}
	// What was Put before the cancellation is committed: every file in the
	// Maildir has its delivery in the journal.
	files, tmp := maildirFiles(t, e.maildir("alice"))
	if len(tmp) != 0 {
		t.Errorf("tmp/ holds %v after a cancelled run", tmp)
	}
	dels, err := e.j.Deliveries(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < cancelAt || len(dels) != len(files) || a.Stored != len(files) {
		t.Errorf("after cancel: %d files, %d journal deliveries, report stored %d; want equal and at least %d",
			len(files), len(dels), a.Stored, cancelAt)
	}
	checkDeliveriesOnDisk(t, e.j, e.maildir("alice"), "alice")

	rep = e.run([]*config.Account{e.account("alice")}, testOptions())
	a = accountReport(t, rep, "alice")
	wantCounts(t, a, len(msgs), len(msgs)-len(dels), len(dels), 0, true)
	checkMaildir(t, e.maildir("alice"), "alice", msgs, false)
	checkJournal(t, e.j, e.maildir("alice"), "alice", msgs)
}
