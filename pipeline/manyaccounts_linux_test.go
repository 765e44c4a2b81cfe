package pipeline_test

import (
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

// Two hundred accounts at once (--jobs 200, --per-host 200) against one
// server: every message is stored, the Go heap stays far below the 256 MiB
// the process may take for it (the server, in this process too, holds
// every message), and the open descriptors stay below the process's limit
// with room to spare: one POP3 connection and a few files per account.
func TestTwoHundredAccountsAtOnce(t *testing.T) {
	const accounts, perAccount = 200, 3
	var boxes []pop3test.Mailbox
	names := make([]string, accounts)
	for i := range accounts {
		names[i] = fmt.Sprintf("u%03d", i)
		boxes = append(boxes, mailbox(names[i], smallMsgs(names[i], perAccount)))
	}
	e := newEnv(t, boxes, nil)
	var list []*config.Account
	for _, n := range names {
		list = append(list, e.account(n))
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	o := testOptions()
	o.Jobs, o.PerHost = accounts, accounts

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	peaks := samplePeaks(5 * time.Millisecond)
	start := time.Now()
	rep := e.run(list, o)
	heap, fds := peaks()
	for _, n := range names {
		wantCounts(t, accountReport(t, rep, n), perAccount, perAccount, 0, 0, true)
	}
	t.Logf("%d accounts at once: peak heap in use %d MiB (%d before), peak open descriptors %d (limit %d), %v",
		accounts, heap>>20, before.HeapInuse>>20, fds, lim.Cur, time.Since(start).Round(time.Millisecond))
	if heap > 256<<20 {
		t.Errorf("peak heap in use %d MiB; want at most 256", heap>>20)
	}
	// Both ends of each POP3 connection are in this process: two
	// descriptors an account, plus the destinations' and the journal's.
	if fds > 8*accounts || fds > lim.Cur*3/4 {
		t.Errorf("peak %d open descriptors for %d accounts (limit %d); want at most %d and well below the limit", fds, accounts, lim.Cur, 8*accounts)
	}
}
