package journal

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// openChildEnv names the journal a child process of the test binary opens
// (see TestMain and openChild).
const openChildEnv = "POPMIGRATE_TEST_OPEN_JOURNAL"

// openAtEnv holds the moment (unix nanoseconds) at which the children
// open the journal, so that they race.
const openAtEnv = "POPMIGRATE_TEST_OPEN_AT"

// openChild opens the SQLite journal at path at the moment openAtEnv
// gives, records one account and closes it: what a worker does first. It
// returns the exit code.
func openChild(path string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if at, err := strconv.ParseInt(os.Getenv(openAtEnv), 10, 64); err == nil {
		time.Sleep(time.Until(time.Unix(0, at)))
	}
	j, err := Open(ctx, path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer j.Close()
	if err := j.SaveDestinations(ctx, fmt.Sprintf("acct-%d", os.Getpid()), "", nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// TestSQLiteJournalOpenedByManyProcessesAtOnce: four processes that
// create and open one new SQLite journal at the same moment, as workers
// started together do, all succeed (SQLite refuses the losers of the
// switch to WAL mode with SQLITE_BUSY at once, without its busy handler;
// before Open retried, 1 round in 15 failed with "database is locked").
func TestSQLiteJournalOpenedByManyProcessesAtOnce(t *testing.T) {
	const rounds, procs = 10, 4
	for round := range rounds {
		path := filepath.Join(t.TempDir(), "journal.db")
		var wg sync.WaitGroup
		errs := make([]string, procs)
		at := time.Now().Add(150 * time.Millisecond).UnixNano()
		for i := range procs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cmd := exec.Command(os.Args[0], "-test.run", "^$")
				cmd.Env = append(os.Environ(), openChildEnv+"="+path, openAtEnv+"="+strconv.FormatInt(at, 10))
				if out, err := cmd.CombinedOutput(); err != nil {
					errs[i] = fmt.Sprintf("%v: %s", err, strings.TrimSpace(string(out)))
				}
			}()
		}
		wg.Wait()
		for i, e := range errs {
			if e != "" {
				t.Errorf("round %d, process %d: %s", round, i, e)
			}
		}
		j, err := OpenReadOnly(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		accounts, err := j.Accounts(context.Background())
		j.Close()
		if err != nil || len(accounts) != procs {
			t.Fatalf("round %d: %d accounts recorded (%v), want %d", round, len(accounts), err, procs)
		}
	}
}
