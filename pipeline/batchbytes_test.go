package pipeline_test

import (
	"bytes"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/pipeline"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

// A group commit ends at BatchBytes as well as at BatchSize: six messages
// of 100 KiB with batches of at most 250 KiB are committed three at a
// time, not all six together.
func TestGroupCommitEndsAtBatchBytes(t *testing.T) {
	var msgs []srcMsg
	for i := range 6 {
		body := fmt.Sprintf("Subject: big %d\n\n%s", i, bytes.Repeat([]byte("0123456789abcdef\n"), 100<<10/17))
		msgs = append(msgs, newMsg(fmt.Sprintf("b%d", i), []byte(body)))
	}
	e := newEnv(t, []pop3test.Mailbox{mailbox("alice", msgs)}, nil)
	o := testOptions()
	o.BatchSize, o.BatchBytes, o.BatchInterval = 64, 250<<10, time.Hour
	var commits atomic.Int32
	pipeline.SetTestHooks(o, nil, nil, func(int) { commits.Add(1) })
	rep := e.run([]*config.Account{e.account("alice")}, o)
	wantCounts(t, accountReport(t, rep, "alice"), 6, 6, 0, 0, true)
	if n := commits.Load(); n != 2 {
		t.Errorf("%d group commits; want 2, of three messages each", n)
	}
	checkMaildir(t, e.maildir("alice"), "alice", msgs, false)
}
