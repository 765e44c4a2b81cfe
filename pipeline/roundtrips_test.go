package pipeline_test

import (
	"testing"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

// TestRoundTripsPerAccount counts the round trips of one account's run on
// a pipelining server (pop3test's Stats.Turns: the times the client waited
// for the server, the greeting and QUIT included), so that a change that
// adds one shows. Against the same server mpop 1.4.18 (keep on, USER/PASS)
// took 18 for 10 messages and 208 for 200: it waits for each RETR.
//
// An account the journal holds nothing of sends the first RETRs (up to
// pop3.MaxRetrAtLogin) with the login; every message is still retrieved
// once (RetrCount), and a message the journal already holds is not
// retrieved again.
func TestRoundTripsPerAccount(t *testing.T) {
	for _, c := range []struct {
		name     string
		messages int
		stored   int // messages a run before stored
		verify   bool
		noUIDL   bool
		want     int
	}{
		// greeting, CAPA, USER+PASS+CAPA+LIST+UIDL+RETR 1..8, RETR 9
		// and 10, QUIT (6 with LIST and UIDL after the login's answer)
		{name: "10", messages: 10, want: 5},
		// the in-session verify reads the destination, not the server
		{name: "10 verify", messages: 10, verify: true, want: 5},
		// greeting, CAPA, the login with the listing and every RETR,
		// QUIT (5 before RETRs went out with the login)
		{name: "5 verify", messages: 5, verify: true, want: 4},
		// the RETRs past the count are answered -ERR, dropped at QUIT
		{name: "empty", messages: 0, verify: true, want: 4},
		// the RETRs go out in windows
		{name: "200 verify", messages: 200, verify: true, want: 16},
		// the journal holds 3 of them: no RETR with the login
		{name: "3 stored of 5", messages: 5, stored: 3, verify: true, want: 5},
		// without UIDL, the TOP n 0 that key the messages go out in
		// windows too (one TOP per message, waited for, took 17 and
		// 218): one more round trip for 10 messages, 11 more for 200;
		// no RETR goes out with the login
		{name: "10 no UIDL", messages: 10, verify: true, noUIDL: true, want: 6},
		{name: "200 no UIDL", messages: 200, verify: true, noUIDL: true, want: 28},
	} {
		t.Run(c.name, func(t *testing.T) {
			msgs := smallMsgs("r", c.messages)
			first := msgs
			if c.stored > 0 {
				first = msgs[:c.stored]
			}
			e := newEnv(t, []pop3test.Mailbox{mailbox("alice", first)}, &pop3test.ServerOptions{
				Faults: pop3test.Faults{NoUIDL: c.noUIDL},
			})
			o := testOptions()
			o.VerifyInSession = c.verify
			if c.stored > 0 {
				rep := e.run([]*config.Account{e.account("alice")}, o)
				wantCounts(t, accountReport(t, rep, "alice"), c.stored, c.stored, 0, 0, true)
				for _, m := range mailbox("alice", msgs[c.stored:]).Messages {
					e.srv.AddMessage("alice", m)
				}
			}
			before := e.srv.Stats()
			rep := e.run([]*config.Account{e.account("alice")}, o)
			a := accountReport(t, rep, "alice")
			wantCounts(t, a, c.messages, c.messages-c.stored, c.stored, 0, true)
			if a.NoUIDL != c.noUIDL {
				t.Errorf("NoUIDL %v, want %v", a.NoUIDL, c.noUIDL)
			}
			st := e.srv.Stats()
			sessions, turns := st.Sessions-before.Sessions, st.Turns-before.Turns
			t.Logf("%d round trips", turns)
			if sessions != 1 || turns > c.want {
				t.Errorf("%d sessions, %d round trips; want 1 session of at most %d", sessions, turns, c.want)
			}
			for _, m := range msgs {
				if n := e.srv.RetrCount("alice", m.uid); n != 1 {
					t.Errorf("message %s retrieved %d times, want once", m.uid, n)
				}
			}
			if a.Failed != 0 || len(a.Failures) != 0 {
				t.Errorf("failures %v", a.Failures)
			}
		})
	}
}
