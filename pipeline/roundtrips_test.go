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
		want     int
	}{
		// greeting, CAPA, USER, PASS, CAPA+LIST+UIDL, the RETRs, QUIT
		{10, false, 7},
		// the in-session verify reads the destination, not the server
		{10, true, 7},
		// the RETRs go out in windows
		{200, true, 19},
	} {
		t.Run(fmt.Sprintf("%d messages, verify %v", c.messages, c.verify), func(t *testing.T) {
			e := newEnv(t, []pop3test.Mailbox{mailbox("alice", smallMsgs("r", c.messages))}, nil)
			o := testOptions()
			o.VerifyInSession = c.verify
			rep := e.run([]*config.Account{e.account("alice")}, o)
			wantCounts(t, accountReport(t, rep, "alice"), c.messages, c.messages, 0, 0, true)
			st := e.srv.Stats()
			if st.Sessions != 1 || st.Turns > c.want {
				t.Logf("%d round trips", st.Turns)
				t.Errorf("%d sessions, %d round trips; want 1 session of at most %d", st.Sessions, st.Turns, c.want)
			}
		})
	}
}
