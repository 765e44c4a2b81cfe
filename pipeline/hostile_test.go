package pipeline_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/pipeline"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

// Servers that misbehave in ways that used to cost a message: one message
// that stalls or drops every time, a server that does not dot-stuff, a body
// that forges a reply, a LIST size the delivered bytes cannot explain, and
// two runs on one journal.

// hostileOptions are testOptions with a short idle timeout, so that a
// stalled server costs a test a fraction of a second.
func hostileOptions() *pipeline.Options {
	o := testOptions()
	o.Timeout = 300 * time.Millisecond
	return o
}

// failureOf returns the report's failure of uidl.
func failureOf(a *pipeline.AccountReport, uidl string) (pipeline.MessageFailure, bool) {
	for _, f := range a.Failures {
		if f.UIDL == uidl {
			return f, true
		}
	}
	return pipeline.MessageFailure{}, false
}

func journalRow(t *testing.T, j *journal.Journal, account, uidl string) journal.MessageRow {
	t.Helper()
	rows, err := j.Messages(context.Background(), account)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.UIDL == uidl {
			return r
		}
	}
	t.Fatalf("journal has no message %q of %s", uidl, account)
	return journal.MessageRow{}
}

// storedOnly checks that exactly the messages of msgs except those named in
// missing are in alice's Maildir, each once and byte-exact.
func storedOnly(t *testing.T, e *env, msgs []srcMsg, missing ...string) {
	t.Helper()
	var want []srcMsg
	for _, m := range msgs {
		if !contains(missing, m.uid) {
			want = append(want, m)
		}
	}
	checkMaildir(t, e.maildir("alice"), "alice", want, false)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestStalledMessageDoesNotBlockTheRest pins the fault where a message
// whose RETR stalls was asked for first in every session, so the messages
// after it were never fetched and it stayed 'listed' with 0 attempts.
func TestStalledMessageDoesNotBlockTheRest(t *testing.T) {
	for _, tc := range []struct {
		name   string
		faults pop3test.Faults
		// retrs is how many RETRs of the bad message the first run
		// sends: a stall or a drop counts as an attempt only when the
		// message was the first asked for in its session (a server
		// that breaks every session after so many bytes or seconds,
		// whatever the message, must not use up the attempts of the
		// message it happens to be sending), so each attempt but the
		// first costs two sessions: one where it comes last after the
		// rest, one where it comes first.
		retrs int
	}{
		{"stall inside the body", pop3test.Faults{StallInRetr: map[int]int64{2: 40}}, 5},
		{"stall before +OK", pop3test.Faults{StallInRetr: map[int]int64{2: -1}}, 5},
		{"stall inside the body, no pipelining", pop3test.Faults{StallInRetr: map[int]int64{2: 40}, NoPipelining: true}, 5},
		{"drop inside the body", pop3test.Faults{DropInRetr: map[int]int64{2: 40}}, 5},
		{"drop before +OK", pop3test.Faults{DropInRetr: map[int]int64{2: -1}}, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msgs := smallMsgs("s", 6)
			e, a := faultRun(t, msgs, userFaults(tc.faults), hostileOptions())
			const bad = "s2"
			wantCounts(t, a, 6, 5, 0, 1, false)
			f, ok := failureOf(a, bad)
			if !ok || f.ID != 2 || f.Error == "" {
				t.Fatalf("failures %+v, want %s (message 2) with its reason", a.Failures, bad)
			}
			storedOnly(t, e, msgs, bad)
			row := journalRow(t, e.j, "alice", bad)
			if row.State != journal.StateFailed || row.Attempts != 3 || row.Error == "" {
				t.Errorf("journal row of %s: state %s attempts %d error %q; want failed after 3 attempts", bad, row.State, row.Attempts, row.Error)
			}
			retrs := e.srv.RetrCount("alice", bad)
			if retrs != tc.retrs {
				t.Errorf("RETR of %s asked %d times, want %d", bad, retrs, tc.retrs)
			}

			// The next run asks for it once more (the server's trouble
			// may have passed), and says so.
			rep := e.run([]*config.Account{e.account("alice")}, hostileOptions())
			a2 := accountReport(t, rep, "alice")
			wantCounts(t, a2, 6, 0, 5, 1, false)
			if f, ok := failureOf(a2, bad); !ok || !strings.Contains(f.Error, "--retry-failed") {
				t.Errorf("second run failures %+v, want %s with a hint", a2.Failures, bad)
			}
			if n := e.srv.RetrCount("alice", bad); n != retrs+1 {
				t.Errorf("second run: %d RETRs of %s in all, want %d (once more)", n, bad, retrs+1)
			}
			retrs++

			// --retry-failed gives it the attempts of one more run
			// (and it fails again here).
			o := hostileOptions()
			o.RetryFailed = true
			e.run([]*config.Account{e.account("alice")}, o)
			// Alone in its plan, it is the first asked for in every
			// session: one RETR per attempt.
			if n := e.srv.RetrCount("alice", bad); n != retrs+3 {
				t.Errorf("retry-failed run: %d RETRs of %s in all, want %d", n, bad, retrs+3)
			}
		})
	}
}

// A message going to one Maildir is streamed into a tmp file of that
// Maildir while it arrives; a body that breaks after many chunks were
// written there leaves no file, in new/, cur/ or tmp/, and no delivery in
// the journal, and the message is journaled as failed.
func TestBodyBrokenMidStreamLeavesNothing(t *testing.T) {
	big := bytes.Repeat([]byte("a line of a large message, written into the tmp file as it comes.\n"), 16<<10)
	msgs := append(smallMsgs("s", 3), newMsg("big", big))
	msgs[1], msgs[3] = msgs[3], msgs[1] // message 2 is the large one
	e, a := faultRun(t, msgs, userFaults(pop3test.Faults{DropInRetr: map[int]int64{2: 600 << 10}}), hostileOptions())
	wantCounts(t, a, 4, 3, 0, 1, false)
	storedOnly(t, e, msgs, "big") // tmp/ empty too
	row := journalRow(t, e.j, "alice", "big")
	if row.State != journal.StateFailed || row.Error == "" {
		t.Errorf("journal row of the broken message: state %s error %q; want failed with its reason", row.State, row.Error)
	}
	dels, err := e.j.Deliveries(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if d := dels["big"]; len(d) != 0 {
		t.Errorf("journal: the broken message has deliveries %v, want none", d)
	}
	checkDeliveriesOnDisk(t, e.j, e.maildir("alice"), "alice")
}

// A server that is slow but alive (bytes keep coming) is not a failure,
// even when a message takes many times the idle timeout.
func TestTricklingServerIsNotAFailure(t *testing.T) {
	msgs := smallMsgs("t", 2)
	o := testOptions()
	o.Timeout = 150 * time.Millisecond
	// About 190 bytes a message, 8 bytes every 20 ms: ~0.5 s a message.
	e, a := faultRun(t, msgs, userFaults(pop3test.Faults{Trickle: 20 * time.Millisecond, TrickleChunk: 8}), o)
	wantCounts(t, a, 2, 2, 0, 0, true)
	storedOnly(t, e, msgs)
}

// dotLineMsgs returns messages of which the second has a line that is a
// lone "." in the middle, followed by more text; a server that does not
// dot-stuff ends its RETR there. With forge, the text after the dot forges
// the reply to the next RETR.
func dotLineMsgs(forge bool) []srcMsg {
	var msgs []srcMsg
	for i := 1; i <= 4; i++ {
		msgs = append(msgs, newMsg(fmt.Sprintf("d%d", i), []byte(fmt.Sprintf("Subject: message %d\n\nno dot line in message %d\n", i, i))))
	}
	rest := "the rest of the message\n"
	if forge {
		rest = "+OK 60 octets\nSubject: forged\n\nforged body\n.\n"
	}
	msgs[1] = newMsg("d2", []byte("Subject: has a dot line\n\nbefore the dot\n.\n"+rest+"last line\n"))
	return msgs
}

// TestNoDotStuffingServerNeverStoresATruncatedCopy pins the fault where a
// server that does not dot-stuff cost the user a message: the truncated
// copy was stored, the next run said "ok", and purge deleted the full
// message; with a forged reply in the body, the forgery was stored under
// the next message's UIDL.
func TestNoDotStuffingServerNeverStoresATruncatedCopy(t *testing.T) {
	for _, tc := range []struct {
		name     string
		forge    bool
		pipeline bool
	}{
		{"pipelined", false, true},
		{"pipelined, forged reply", true, true},
		{"lockstep", false, false},
		{"lockstep, forged reply", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msgs := dotLineMsgs(tc.forge)
			f := pop3test.Faults{NoDotStuff: true, NoPipelining: !tc.pipeline}
			e, _ := purgeEnv(t, "alice", msgs, f)
			a := e.account("alice")
			rep := e.run([]*config.Account{a}, hostileOptions())
			ar := accountReport(t, rep, "alice")
			wantCounts(t, ar, 4, 3, 0, 1, false)
			if _, ok := failureOf(ar, "d2"); !ok {
				t.Fatalf("failures %+v, want d2", ar.Failures)
			}
			// Every other message exactly once and byte-exact: in
			// particular d3 is d3, not the forgery.
			storedOnly(t, e, msgs, "d2")
			if row := journalRow(t, e.j, "alice", "d2"); row.State == journal.StateStored || row.State == journal.StateVerified || row.SHA256 != "" {
				t.Errorf("d2 journaled as %s (sha %q): a truncated copy was recorded", row.State, row.SHA256)
			}
			// Nothing that is not whole is ever deleted.
			markAllVerified(t, e.j, "alice")
			prep := purgeOne(t, e.j, a, nil)
			if e.srv.DeleCount("alice", "d2") != 0 {
				t.Errorf("DELE of d2 sent (purge planned %+v)", prep.Planned)
			}
			for _, it := range prep.Planned {
				if it.UIDL == "d2" {
					t.Errorf("purge planned d2")
				}
			}
		})
	}
}

// TestSuspectSizeIsKeptOnTheServer: a message whose delivered size LIST
// cannot explain is stored but marked suspect, listed in the report and
// never deleted, unless the user asks for it explicitly.
func TestSuspectSizeIsKeptOnTheServer(t *testing.T) {
	msgs := smallMsgs("k", 3)
	e, _ := purgeEnv(t, "alice", msgs, pop3test.Faults{SizeSkew: 40})
	a := e.account("alice")
	rep := e.run([]*config.Account{a}, testOptions())
	ar := accountReport(t, rep, "alice")
	wantCounts(t, ar, 3, 3, 0, 0, true)
	if ar.Suspect != 3 || len(ar.SizeMismatches) != 3 || !ar.SizeMismatches[0].Suspect {
		t.Fatalf("suspect %d, mismatches %+v; want 3 suspect", ar.Suspect, ar.SizeMismatches)
	}
	if row := journalRow(t, e.j, "alice", "k1"); row.Suspect == "" {
		t.Errorf("k1 not marked suspect in the journal")
	}
	markAllVerified(t, e.j, "alice")
	prep := purgeOne(t, e.j, a, nil)
	wantPurge(t, prep, 0, 0, map[string]int{pipeline.SkipSuspect: 3}, false)
	prep = purgeOne(t, e.j, a, &pipeline.PurgeOptions{DeleteSuspect: true})
	wantPurge(t, prep, 3, 3, map[string]int{}, false)
}

// A small difference the line ends explain is a mismatch, not a suspect.
func TestSizeDifferenceOfLineEndsIsNotSuspect(t *testing.T) {
	msgs := smallMsgs("l", 2)
	// Served with CRLF; a server that counts LF-only sizes lists fewer
	// octets: one per line.
	_, a := faultRun(t, msgs, userFaults(pop3test.Faults{SizeSkew: -5}), testOptions())
	if a.Suspect != 0 || len(a.SizeMismatches) != 2 {
		t.Errorf("suspect %d mismatches %+v, want 2 mismatches and none suspect", a.Suspect, a.SizeMismatches)
	}
}

// TestSecondRunOnTheSameJournalLeavesTheAccount pins the fault where two
// runs on one journal both downloaded every message and both reported
// "stored": a run that finds the account's lease held opens nothing and
// logs in nowhere while the holder lives, and takes the account over once
// the holder's lease expired.
func TestSecondRunOnTheSameJournalLeavesTheAccount(t *testing.T) {
	msgs := smallMsgs("r", 3)
	e := newEnv(t, []pop3test.Mailbox{mailbox("alice", msgs)}, &pop3test.ServerOptions{
		UserFaults: map[string]pop3test.Faults{"alice": {NoLock: true}},
	})
	ctx := context.Background()
	other := journal.Holder{ID: "another-run", PID: 1, Host: "elsewhere"}
	const ttl = 1500 * time.Millisecond
	if _, err := e.j.AcquireLease(ctx, "alice", other, ttl); err != nil {
		t.Fatal(err)
	}
	o := testOptions()
	o.LeaseTTL = 400 * time.Millisecond // polls every 100ms
	loginsWhileHeld := make(chan int, 1)
	go func() {
		time.Sleep(ttl - 200*time.Millisecond)
		loginsWhileHeld <- e.srv.Stats().Logins
	}()
	start := time.Now()
	rep := e.run([]*config.Account{e.account("alice")}, o)
	a := accountReport(t, rep, "alice")
	wantCounts(t, a, 3, 3, 0, 0, true)
	if a.DoneBy != "" {
		t.Errorf("DoneBy %q: the holder never released the lease, this run took it over", a.DoneBy)
	}
	if took := time.Since(start); took < ttl-100*time.Millisecond {
		t.Errorf("the account was taken over after %v, before the holder's lease (%v) expired", took, ttl)
	}
	if n := <-loginsWhileHeld; n != 0 {
		t.Errorf("%d logins while another process held the lease", n)
	}
}

// A run that finds the account's lease held by a process that then
// finishes the account whole reports it done by that process and does
// nothing to it; with WaitForLease it runs the account anyway.
func TestAccountFinishedByAnotherProcessIsLeftToIt(t *testing.T) {
	msgs := smallMsgs("f", 3)
	e := newEnv(t, []pop3test.Mailbox{mailbox("alice", msgs)}, nil)
	// An earlier run stored everything: the journal says the account is
	// whole.
	wantCounts(t, accountReport(t, e.run([]*config.Account{e.account("alice")}, testOptions()), "alice"), 3, 3, 0, 0, true)
	logins := e.srv.Stats().Logins

	for _, wait := range []bool{false, true} {
		ctx := context.Background()
		other := journal.Holder{ID: fmt.Sprintf("other-%v", wait), PID: 1, Host: "elsewhere"}
		l, err := e.j.AcquireLease(ctx, "alice", other, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			time.Sleep(300 * time.Millisecond)
			e.j.ReleaseLease(context.Background(), l)
		}()
		o := testOptions()
		o.LeaseTTL = 400 * time.Millisecond
		o.WaitForLease = wait
		a := accountReport(t, e.run([]*config.Account{e.account("alice")}, o), "alice")
		now := e.srv.Stats().Logins
		if !wait {
			if a.DoneBy != "pid 1 on elsewhere" || !a.Whole || a.Error != "" || now != logins {
				t.Errorf("done by %q, whole %v, error %q, %d logins; want left to pid 1 on elsewhere, whole, no login", a.DoneBy, a.Whole, a.Error, now-logins)
			}
		} else if a.DoneBy != "" || !a.Whole || now != logins+1 {
			t.Errorf("WaitForLease: done by %q, whole %v, %d logins; want run here with one login", a.DoneBy, a.Whole, now-logins)
		}
		logins = now
	}
}

// Runs at once on one journal (the workers of a migration), against a
// server without mailbox locking: every message is downloaded once, every
// account is logged in to once, and every run reports every account whole,
// done by itself or by another.
func TestConcurrentRunsOnOneJournalDownloadEachMessageOnce(t *testing.T) {
	users := []string{"alice", "bob", "carol", "dave", "erin", "frank"}
	var boxes []pop3test.Mailbox
	msgs := map[string][]srcMsg{}
	faults := map[string]pop3test.Faults{}
	for _, u := range users {
		msgs[u] = smallMsgs(u[:1], 10)
		boxes = append(boxes, mailbox(u, msgs[u]))
		faults[u] = pop3test.Faults{NoLock: true, Delay: 2 * time.Millisecond}
	}
	e := newEnv(t, boxes, &pop3test.ServerOptions{UserFaults: faults})
	var accounts []*config.Account
	for _, u := range users {
		accounts = append(accounts, e.account(u))
	}
	type result struct {
		rep *pipeline.Report
		err error
	}
	const workers = 3
	out := make(chan result, workers)
	for w := range workers {
		j := e.j
		if w > 0 {
			j = e.openJournal() // another process's handle on the same file
		}
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			o := testOptions()
			o.Holder = journal.NewHolder()
			o.LeaseTTL = 2 * time.Second
			o.Jobs = 2
			rep, err := pipeline.Run(ctx, j, accounts, o)
			out <- result{rep, err}
		}()
	}
	stored := map[string]int{}
	for range workers {
		r := <-out
		if r.err != nil {
			t.Fatal(r.err)
		}
		for _, u := range users {
			a := accountReport(t, r.rep, u)
			if !a.Whole {
				t.Errorf("%s: not whole in one worker's report: %+v", u, a)
			}
			stored[u] += a.Stored
		}
	}
	// One login per account over all the workers: an account another
	// worker took and finished during a run is not run again.
	if n := e.srv.Stats().Logins; n != len(users) {
		t.Errorf("%d logins over the workers; want %d, one per account", n, len(users))
	}
	for _, u := range users {
		if stored[u] != 10 {
			t.Errorf("%s: stored %d in total over the workers; want 10", u, stored[u])
		}
		for _, m := range msgs[u] {
			if n := e.srv.RetrCount(u, m.uid); n != 1 {
				t.Errorf("%s %s downloaded %d times", u, m.uid, n)
			}
		}
	}
}

// A process whose lease was taken over (it was paused past the expiry)
// cannot commit, and its account stops; it is put back, and when the
// process that took it lets it go unfinished, the run finishes it.
func TestLeaseTakenOverStopsTheAccount(t *testing.T) {
	msgs := smallMsgs("p", 6)
	e := newEnv(t, []pop3test.Mailbox{mailbox("alice", msgs)}, &pop3test.ServerOptions{
		UserFaults: map[string]pop3test.Faults{"alice": {Trickle: 30 * time.Millisecond, TrickleChunk: 64}},
	})
	o := testOptions()
	o.LeaseTTL = time.Hour // no heartbeat during the test: the fence decides
	o.BatchSize = 1
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	done := make(chan *pipeline.Report, 1)
	go func() {
		rep, err := pipeline.Run(ctx, e.j, []*config.Account{e.account("alice")}, o)
		if err != nil {
			t.Error(err)
		}
		done <- rep
	}()
	// Wait for the first commit, then take the account over as another
	// process whose clock says the lease expired.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if st := journalStates(t, e.j, "alice"); st["p1"] == journal.StateStored {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no commit within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	ls, err := e.j.Leases(ctx)
	if err != nil || len(ls) != 1 {
		t.Fatalf("leases %+v %v", ls, err)
	}
	newcomer := takeOver(t, e, ls[0])
	// The run stops the account and leaves it to the newcomer, which
	// gives it up unfinished: the run takes it back and finishes it.
	time.Sleep(500 * time.Millisecond)
	if st := journalStates(t, e.j, "alice"); st["p6"] == journal.StateStored {
		t.Fatal("the run went on storing after the takeover")
	}
	if err := e.j.ReleaseLease(ctx, newcomer); err != nil {
		t.Fatal(err)
	}
	rep := <-done
	a := accountReport(t, rep, "alice")
	if !a.Whole || a.DoneBy != "" {
		t.Fatalf("account after the newcomer let it go unfinished: whole %v, done by %q, error %q; want finished here", a.Whole, a.DoneBy, a.Error)
	}
	checkMaildir(t, e.maildir("alice"), "alice", msgs, false)
}

// takeOver makes another holder own l's account with a higher epoch, as a
// process would after l expired, and returns its lease.
func takeOver(t *testing.T, e *env, l journal.LeaseInfo) *journal.Lease {
	t.Helper()
	if err := e.j.ReleaseLease(context.Background(), &journal.Lease{Account: l.Account, Holder: l.Holder, Epoch: l.Epoch}); err != nil {
		t.Fatal(err)
	}
	nl, err := e.j.AcquireLease(context.Background(), l.Account, journal.Holder{ID: "newcomer", PID: 1, Host: "elsewhere"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return nl
}

// TestOverlongUIDLFailsNoAccount pins the fault where one UIDL over the
// line bound failed the whole account's listing: that message is keyed
// like one of a server without UIDL, one over RFC 1939's 70 octets is kept
// as it is, and every message is stored.
func TestOverlongUIDLFailsNoAccount(t *testing.T) {
	msgs := smallMsgs("o", 3)
	msgs[0].uid, msgs[0].key = strings.Repeat("x", 5000), "" // over the 4096-byte line bound
	msgs[1].uid = strings.Repeat("y", 100)                   // over RFC 1939's 70
	msgs[1].key = msgs[1].uid
	e, a := faultRun(t, msgs, nil, testOptions())
	wantCounts(t, a, 3, 3, 0, 0, true)
	if a.OverlongUIDLs != 1 {
		t.Errorf("overlong UIDLs %d, want 1", a.OverlongUIDLs)
	}
	storedOnly(t, e, msgs)
	// A second run finds all three again: the synthetic key is stable.
	rep := e.run([]*config.Account{e.account("alice")}, testOptions())
	wantCounts(t, accountReport(t, rep, "alice"), 3, 0, 3, 0, true)
}
