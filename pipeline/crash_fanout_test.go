//go:build unix

package pipeline_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

// TestCrashFanout is TestCrash with three destinations at once: a Maildir,
// an mbox file and an eml tree. Each scenario kills a child process with
// SIGKILL at one or more points in a row (one per run: after the n-th Put,
// after the n-th batch's Sync before its journal commit, after the n-th
// commit), runs it again until it completes, and checks that every
// message is in each destination exactly once, that the mbox has no torn
// or uncommitted tail left (every entry parses, the file ends with the
// blank line of its last entry, its size is the committed state), and that
// the journal agrees with all three.
func TestCrashFanout(t *testing.T) {
	msgs := trickyMsgs(t, "t-")
	msgs = append(msgs, smallMsgs("s-", 30-len(msgs))...)
	if len(msgs) != 30 {
		t.Fatalf("%d messages, want 30", len(msgs))
	}
	const dests = 3
	puts, commits := dests*len(msgs), (len(msgs)+crashBatch-1)/crashBatch

	// Each scenario is the crash points of successive runs. Puts go
	// Maildir, mbox, eml for each message, so afterPut:3k+1 leaves a
	// message in the Maildir only and afterPut:3k+2 in the Maildir and
	// the mbox.
	scenarios := [][]string{
		{"afterPut:8", "afterPut:2"},
		{"afterSync:3", "afterPut:5", "afterCommit:1"},
	}
	for _, n := range []int{1, 2, 3, 4, 5, 6, 7, 14, 26, 27, 28, 29, 44, 45, 46, 61, 62, 88, 89, puts} {
		scenarios = append(scenarios, []string{fmt.Sprintf("afterPut:%d", n)})
	}
	for _, n := range []int{1, 4, 7, commits} {
		scenarios = append(scenarios, []string{fmt.Sprintf("afterSync:%d", n)})
	}
	for _, n := range []int{1, 5, 9, commits} {
		scenarios = append(scenarios, []string{fmt.Sprintf("afterCommit:%d", n)})
	}

	boxes := make([]pop3test.Mailbox, len(scenarios))
	for i := range scenarios {
		boxes[i] = mailbox(fmt.Sprintf("f%d", i), msgs)
	}
	e := newEnv(t, boxes, nil)

	for i, points := range scenarios {
		user := fmt.Sprintf("f%d", i)
		t.Run(strings.Join(points, "+"), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			pwFile := filepath.Join(dir, "password")
			if err := os.WriteFile(pwFile, []byte(passwordOf(user)), 0o600); err != nil {
				t.Fatal(err)
			}
			d := fanDestsIn(dir, user)
			specs := d.specs()
			c := crashConfig{
				port: e.port, caFile: e.pki.CAFile, pwFile: pwFile,
				jpath: filepath.Join(dir, "journal.db"), maildir: d.maildir, user: user,
				extraTo: specs[1:],
			}
			for _, p := range points {
				crash := c
				crash.point = p
				if res := runChild(t, crash, parentKill{}); !res.killed {
					t.Fatalf("child did not die at %s (ok %v): %s", p, res.ok, res.output)
				}
				if len(points) == 1 {
					checkKillPoint(t, c.jpath, d, p, len(msgs))
				}
			}
			var res childResult
			for attempt := 1; attempt <= 3 && !res.ok; attempt++ {
				res = runChild(t, c, parentKill{})
			}
			if !res.ok {
				t.Fatalf("the run after the crash did not complete: %s", res.output)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			j, err := journal.Open(ctx, c.jpath)
			if err != nil {
				t.Fatal(err)
			}
			defer j.Close()
			checkFanout(t, j, d, msgs, true)
		})
	}
}

// checkKillPoint checks, after a first run killed at point, that the
// kill happened where the scenario says, so that each scenario tests the
// state it is named after: after the k-th commit, the journal holds k
// batches and the mbox ends exactly at its committed state; after the
// k-th Sync, it holds k-1 batches and the mbox is longer than its
// committed state (a synced but uncommitted tail that the next run must
// cut).
func checkKillPoint(t *testing.T, jpath string, d fanDests, point string, total int) {
	t.Helper()
	hook, nstr, _ := strings.Cut(point, ":")
	n, err := strconv.Atoi(nstr)
	if err != nil {
		t.Fatal(err)
	}
	var wantStored int
	switch hook {
	case "afterCommit":
		wantStored = min(n*crashBatch, total)
	case "afterSync":
		wantStored = (n - 1) * crashBatch
	default:
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	j, err := journal.Open(ctx, jpath)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	rows, err := j.Messages(ctx, d.account)
	if err != nil {
		t.Fatal(err)
	}
	stored := 0
	for _, r := range rows {
		if r.State == journal.StateStored {
			stored++
		}
	}
	state, err := j.DestState(ctx, d.account, d.ids(t)[1])
	if err != nil {
		t.Fatal(err)
	}
	committed, err := strconv.ParseInt(state, 10, 64)
	if err != nil {
		t.Fatalf("mbox state %q: %v", state, err)
	}
	fi, err := os.Stat(d.mbox)
	if err != nil {
		t.Fatal(err)
	}
	if stored != wantStored {
		t.Errorf("killed at %s: %d messages stored in the journal, want %d", point, stored, wantStored)
	}
	if hook == "afterCommit" && fi.Size() != committed {
		t.Errorf("killed at %s: mbox of %d bytes, committed state %d; want them equal", point, fi.Size(), committed)
	}
	if hook == "afterSync" && fi.Size() <= committed {
		t.Errorf("killed at %s: mbox of %d bytes, committed state %d; want a synced, uncommitted tail", point, fi.Size(), committed)
	}
}
