package pipeline_test

import (
	"fmt"
	"testing"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

// TestRoundTripsPerAccount counts the round trips of one account's run on
// a pipelining server (pop3test's Stats.Turns: the times the client waited
// for the server, the greeting and QUIT included), so that a change that
// adds one shows. Against the same server mpop 1.4.18 (keep on, USER/PASS)
// took 18 for 10 messages and 208 for 200: it waits for each RETR.
func TestRoundTripsPerAccount(t *testing.T) {
	for _, c := range []struct {
		messages int
		verify   bool
		noUIDL   bool
		want     int
	}{
		// greeting, CAPA, USER+PASS+CAPA+LIST+UIDL, the RETRs, QUIT
		// (6 with LIST and UIDL after the login's answer)
		{10, false, false, 5},
		// the in-session verify reads the destination, not the server
		{10, true, false, 5},
		// the RETRs go out in windows
		{200, true, false, 16},
		// without UIDL, the TOP n 0 that key the messages go out in
		// windows too (one TOP per message, waited for, took 17 and
		// 218): one more round trip for 10 messages, 11 more for 200
		{10, true, true, 6},
		{200, true, true, 28},
	} {
		t.Run(fmt.Sprintf("%d messages, verify %v, no UIDL %v", c.messages, c.verify, c.noUIDL), func(t *testing.T) {
			e := newEnv(t, []pop3test.Mailbox{mailbox("alice", smallMsgs("r", c.messages))}, &pop3test.ServerOptions{
				Faults: pop3test.Faults{NoUIDL: c.noUIDL},
			})
			o := testOptions()
			o.VerifyInSession = c.verify
			rep := e.run([]*config.Account{e.account("alice")}, o)
			a := accountReport(t, rep, "alice")
			wantCounts(t, a, c.messages, c.messages, 0, 0, true)
			if a.NoUIDL != c.noUIDL {
				t.Errorf("NoUIDL %v, want %v", a.NoUIDL, c.noUIDL)
			}
			st := e.srv.Stats()
			t.Logf("%d round trips", st.Turns)
			if st.Sessions != 1 || st.Turns > c.want {
				t.Errorf("%d sessions, %d round trips; want 1 session of at most %d", st.Sessions, st.Turns, c.want)
			}
		})
	}
}
