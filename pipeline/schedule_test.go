package pipeline_test

import (
	"sync"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/pipeline"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

// doneOrder records the order in which accounts finish.
type doneOrder struct {
	mu    sync.Mutex
	order []string
}

func (d *doneOrder) AccountStart(string, int, int64) {}
func (d *doneOrder) MessageDone(string, int64)       {}
func (d *doneOrder) AccountDone(name string, _ *pipeline.AccountReport) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.order = append(d.order, name)
}

func (d *doneOrder) get() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.order...)
}

// An account that waits between its sessions (the server said [IN-USE])
// does not hold the only job slot: the next account runs meanwhile.
func TestWaitingAccountFreesItsJobSlot(t *testing.T) {
	alice, bob := smallMsgs("a", 3), smallMsgs("b", 3)
	e := newEnv(t, []pop3test.Mailbox{mailbox("alice", alice), mailbox("bob", bob)}, &pop3test.ServerOptions{
		UserFaults: map[string]pop3test.Faults{"alice": {LoginErr: "[IN-USE] mailbox locked by another client", LoginErrCount: 1}},
	})
	o := testOptions()
	o.Jobs = 1
	o.Backoff, o.MaxBackoff = 2*time.Second, 2*time.Second // waits 1 to 2s
	d := &doneOrder{}
	o.Progress = d
	rep := e.run([]*config.Account{e.account("alice"), e.account("bob")}, o)
	wantCounts(t, accountReport(t, rep, "alice"), 3, 3, 0, 0, true)
	wantCounts(t, accountReport(t, rep, "bob"), 3, 3, 0, 0, true)
	if got := d.get(); len(got) != 2 || got[0] != "bob" {
		t.Errorf("accounts finished in the order %v; want bob first, while alice waited", got)
	}
	if n := accountReport(t, rep, "alice").Sessions; n != 2 {
		t.Errorf("alice: %d sessions; want 2", n)
	}
}

// With one session per host, an account of a busy host does not keep an
// account of another host from starting: of three accounts, the second
// (same host as the first, a slow one) goes after the third.
func TestBusyHostDoesNotHoldUpOtherHosts(t *testing.T) {
	slow, a2, other := smallMsgs("s", 3), smallMsgs("t", 3), smallMsgs("o", 3)
	e := newEnv(t, []pop3test.Mailbox{mailbox("slow", slow), mailbox("second", a2), mailbox("other", other)}, &pop3test.ServerOptions{
		UserFaults: map[string]pop3test.Faults{"slow": {Trickle: 20 * time.Millisecond, TrickleChunk: 256}},
	})
	o := testOptions()
	o.Jobs, o.PerHost = 2, 1
	d := &doneOrder{}
	o.Progress = d
	// "other" reaches the same server by another name: another host.
	oa := e.account("other")
	oa.Host = "localhost"
	rep := e.run([]*config.Account{e.account("slow"), e.account("second"), oa}, o)
	for _, n := range []string{"slow", "second", "other"} {
		wantCounts(t, accountReport(t, rep, n), 3, 3, 0, 0, true)
	}
	if got := d.get(); len(got) != 3 || got[0] != "other" || got[2] != "second" {
		t.Errorf("accounts finished in the order %v; want other first (its host was free) and second last (behind slow)", got)
	}
}
