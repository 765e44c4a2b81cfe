package pipeline_test

import (
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

// A server that announces LOGIN-DELAY refuses a login sooner than that
// after the last one: a retried session waits for it instead of being
// refused, and a run with verify logs in once.
func TestLoginDelayIsHonoured(t *testing.T) {
	msgs := smallMsgs("d", 6)
	e := newEnv(t, []pop3test.Mailbox{mailbox("alice", msgs)}, &pop3test.ServerOptions{
		Faults: pop3test.Faults{LoginDelay: time.Second, DropAfterRetrs: 4},
	})
	o := testOptions()
	o.VerifyInSession = true
	start := time.Now()
	rep := e.run([]*config.Account{e.account("alice")}, o)
	took := time.Since(start)
	a := accountReport(t, rep, "alice")
	wantCounts(t, a, 6, 6, 0, 0, true)
	st := e.srv.Stats()
	if st.FailedLogins != 0 {
		t.Errorf("%d logins refused: the retry did not wait for LOGIN-DELAY", st.FailedLogins)
	}
	if st.Logins != a.Sessions || a.Sessions < 2 {
		t.Errorf("%d logins for %d sessions; want one login a session, and a retry", st.Logins, a.Sessions)
	}
	if took < time.Second {
		t.Errorf("the run took %v, less than one LOGIN-DELAY between its sessions", took)
	}
	if len(rep.Verify) != 1 || rep.Verify[0].Problems() != 0 {
		t.Errorf("verify in the session: %+v", rep.Verify)
	}
}
