package pipeline_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/pipeline"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

// TestDownloadGoesOnWhileABatchCommits: while the writer syncs and
// commits a batch, the download goes on for up to a batch of streamed
// messages, each one ended (complete, closed, staged) before it waits for
// the writer, so that a slow barrier does not stall the session and the
// messages waiting hold no open file.
func TestDownloadGoesOnWhileABatchCommits(t *testing.T) {
	const batch = 8
	e := newEnv(t, []pop3test.Mailbox{mailbox("alice", smallMsgs("q", 3*batch))}, nil)
	o := testOptions()
	o.BatchSize, o.BatchInterval = batch, time.Minute
	tmp, cur := filepath.Join(e.maildir("alice"), "tmp"), filepath.Join(e.maildir("alice"), "new")
	var waiting, open int
	pipeline.SetTestHooks(o, nil, func(n int) {
		if n != 1 {
			return
		}
		// The first batch is synced and its commit waits here: the
		// download fills the queue meanwhile (bounded in time). The
		// messages it finished before the Sync were renamed into new/
		// with the batch; the others wait in tmp/.
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			staged, err := os.ReadDir(tmp)
			if err != nil {
				t.Error(err)
				return
			}
			published, err := os.ReadDir(cur)
			if err != nil {
				t.Error(err)
				return
			}
			if waiting = len(staged) + len(published) - batch; waiting >= batch {
				break
			}
		}
		time.Sleep(50 * time.Millisecond) // the message after the queue's last, if it is written into while the queue is full
		open = openUnder(t, tmp)
	}, nil)
	rep := e.run([]*config.Account{e.account("alice")}, o)
	wantCounts(t, accountReport(t, rep, "alice"), 3*batch, 3*batch, 0, 0, true)
	if waiting < batch {
		t.Errorf("while the first batch committed, %d messages of the next were written (in tmp/, or new/ with the batch); want the download to go on for a batch (%d)", waiting, batch)
	}
	if open > 1 {
		t.Errorf("while the first batch committed, %d files in tmp/ were open; want none but the one being downloaded", open)
	}
}

// openUnder counts this process's open descriptors on files in dir.
func openUnder(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ent := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", ent.Name()))
		if err == nil && strings.HasPrefix(target, dir+string(filepath.Separator)) {
			n++
		}
	}
	return n
}
