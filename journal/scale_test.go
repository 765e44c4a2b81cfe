package journal

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"
)

var (
	flagScale         = flag.Bool("journal-scale", false, "run TestJournalAtScale: a journal of -journal-scale-accounts accounts and -journal-scale-messages messages each (make bench)")
	flagScaleAccounts = flag.Int("journal-scale-accounts", 100_000, "TestJournalAtScale: accounts enrolled")
	flagScaleMessages = flag.Int("journal-scale-messages", 100, "TestJournalAtScale: message rows per account")
)

// TestJournalAtScale measures, on both backends, what a migration of many
// accounts asks of the journal once it is big: -journal-scale-accounts
// accounts (100 000 by default) with -journal-scale-messages rows each (10
// million in all, inserted synthetically in SQL), then the time of status,
// of the workers' view, of taking and releasing a lease, of one account's
// outcome and listing, and of a group commit. It only runs with
// -journal-scale (make bench), and prints the figures.
func TestJournalAtScale(t *testing.T) {
	if !*flagScale {
		t.Skip("a measurement: run with -journal-scale (make bench)")
	}
	forEachBackend(t, testJournalAtScale)
}

func testJournalAtScale(t *testing.T, be backend) {
	j, _ := be.open(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	nAcc, nMsg := *flagScaleAccounts, *flagScaleMessages
	now := time.Now().UnixNano()
	series := func(n int) string { // rows g = 1..n
		if be.name == "postgres" {
			return fmt.Sprintf("generate_series(1, %d) AS s(g)", n)
		}
		return fmt.Sprintf("(WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < %d) SELECT g FROM s)", n)
	}
	concat := func(parts ...string) string { return strings.Join(parts, " || ") }
	text := func(expr string) string {
		if be.name == "postgres" {
			return "(" + expr + ")::text"
		}
		return "CAST(" + expr + " AS TEXT)"
	}
	start := time.Now()
	for _, s := range []string{
		fmt.Sprintf(`INSERT INTO accounts (account, source, last_run, server_count, server_bytes, updated_at)
SELECT %s, %s, %d, %d, %d, %d FROM %s`,
			concat("'acct'", text("g")), concat("'pop3s://acct'", text("g"), "'@pop.example:995'"), now, nMsg, int64(nMsg)*5000, now, series(nAcc)),
		fmt.Sprintf(`INSERT INTO messages (account, uidl, uid_kind, listed_size, received_size, sha256, state, attempts, first_seen, last_seen, stored_at)
SELECT %s, %s, 'uidl', 5000, 5000, 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', 'stored', 0, %d, %d, %d FROM %s`,
			concat("'acct'", text(fmt.Sprintf("(g - 1) / %d + 1", nMsg))), concat("'u'", text("g")), now, now, now, series(nAcc*nMsg)),
	} {
		if _, err := j.w.ExecContext(ctx, s); err != nil {
			t.Fatalf("insert: %v\n%s", err, s)
		}
	}
	if be.name == "postgres" {
		if _, err := j.w.ExecContext(ctx, "ANALYZE"); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%s: %d accounts and %d message rows inserted in %v", be.name, nAcc, nAcc*nMsg, time.Since(start).Round(time.Millisecond))

	measure := func(what string, reps int, f func(i int) error) {
		t.Helper()
		start := time.Now()
		for i := range reps {
			if err := f(i); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		}
		t.Logf("%s: %-34s %10v per call (%d calls)", be.name, what, (time.Since(start) / time.Duration(reps)).Round(time.Microsecond), reps)
	}
	h := Holder{ID: "scale", PID: 1, Host: "bench"}
	measure("take and release a lease", 200, func(i int) error {
		l, err := j.AcquireLease(ctx, fmt.Sprintf("acct%d", 1+i*nAcc/200), h, time.Minute)
		if err != nil {
			return err
		}
		return j.ReleaseLease(ctx, l)
	})
	measure("an account's outcome", 200, func(i int) error {
		_, _, _, err := j.AccountOutcome(ctx, fmt.Sprintf("acct%d", 1+i*nAcc/200))
		return err
	})
	measure("an account's messages", 50, func(i int) error {
		_, err := j.Messages(ctx, fmt.Sprintf("acct%d", 1+i*nAcc/50))
		return err
	})
	measure("a listing of 100 messages", 20, func(i int) error {
		return j.RecordListing(ctx, fmt.Sprintf("new%d", i), "pop3s://new@pop.example:995", listing("n", 100))
	})
	measure("a group commit of 64", 20, func(i int) error {
		var b Batch
		for k := range 64 {
			b.Stored(stored(fmt.Sprintf("new%d", i), fmt.Sprintf("n%04d", k%100), true, "d"))
		}
		return j.Commit(ctx, &b)
	})
	measure("workers", 3, func(int) error {
		_, err := j.Workers(ctx)
		return err
	})
	measure("status (every account)", 3, func(int) error {
		st, err := j.Status(ctx)
		if err == nil && len(st) < nAcc {
			err = fmt.Errorf("%d accounts in the status, want %d", len(st), nAcc)
		}
		return err
	})
}
