package journal

import (
	"fmt"
	"sync"
	"testing"
)

// commitAccount lists n messages of account and commits them in batches of
// batchSize, every seventh one as a failure; it returns the first error.
func commitAccount(t *testing.T, j *Journal, account string, n, batchSize int) error {
	ctx := testCtx(t)
	if err := j.RecordListing(ctx, account, "pop3s://"+account+"@pop.example", listing("u", n)); err != nil {
		return err
	}
	var b Batch
	for i := 0; i < n; i++ {
		uidl := fmt.Sprintf("u%04d", i)
		if i%7 == 0 {
			b.Failed(account, uidl, "injected")
		} else {
			b.Stored(stored(account, uidl, true, "maildir", "mbox"))
		}
		if b.Len() == batchSize || i == n-1 {
			if err := j.Commit(ctx, &b); err != nil {
				return fmt.Errorf("account %s: %w", account, err)
			}
			b.Reset()
		}
	}
	return j.SetAccountError(ctx, account, "")
}

func checkAccount(t *testing.T, j *Journal, account string, n int) {
	t.Helper()
	st := statusOf(t, j, account)
	failed := (n + 6) / 7
	if st.Stored != n-failed || st.Failed != failed || st.Listed != 0 || st.ServerCount != n {
		t.Errorf("%s: %+v, want %d stored, %d failed", account, st, n-failed, failed)
	}
}

// TestConcurrentAccounts is the pipeline's pattern: one goroutine per
// account committing its own batches, many accounts at once, with status
// readers alongside. No SQLITE_BUSY, deadlock (or any other error) may
// surface.
func TestConcurrentAccounts(t *testing.T) { forEachBackend(t, testConcurrentAccounts) }

func testConcurrentAccounts(t *testing.T, be backend) {
	j, _ := be.open(t)
	const accounts, perAccount, batchSize = 8, 150, 16

	var wg sync.WaitGroup
	errs := make(chan error, accounts+2)
	done := make(chan struct{})
	for a := 0; a < accounts; a++ {
		wg.Add(1)
		go func(account string) {
			defer wg.Done()
			if err := commitAccount(t, j, account, perAccount, batchSize); err != nil {
				errs <- err
			}
		}(fmt.Sprintf("user%02d", a))
	}
	var readers sync.WaitGroup
	for r := 0; r < 2; r++ {
		readers.Add(1)
		go func() {
			defer readers.Done()
			ctx := testCtx(t)
			for i := 0; i < 500; i++ { // bounded; stops early when the writers are done
				select {
				case <-done:
					return
				default:
				}
				if _, err := j.Status(ctx); err != nil {
					errs <- fmt.Errorf("reader: %w", err)
					return
				}
				if _, err := j.Deliveries(ctx, "user00"); err != nil {
					errs <- fmt.Errorf("reader: %w", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(done)
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for a := 0; a < accounts; a++ {
		checkAccount(t, j, fmt.Sprintf("user%02d", a), perAccount)
	}
}

// TestTwoJournalsOnOneFile stands for two popmigrate processes sharing a
// journal: their writers meet inside the database, where SQLite's BEGIN
// IMMEDIATE and busy_timeout make them wait for each other instead of
// failing, and PostgreSQL's run side by side.
func TestTwoJournalsOnOneFile(t *testing.T) { forEachBackend(t, testTwoJournalsOnOneFile) }

func testTwoJournalsOnOneFile(t *testing.T, be backend) {
	path := be.newPath(t)
	j1, err := Open(testCtx(t), path)
	if err != nil {
		t.Fatal(err)
	}
	defer j1.Close()
	j2, err := Open(testCtx(t), path)
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()

	const perJournal, perAccount = 3, 100
	var wg sync.WaitGroup
	errs := make(chan error, 2*perJournal)
	for i, j := range []*Journal{j1, j2} {
		for a := 0; a < perJournal; a++ {
			wg.Add(1)
			go func(j *Journal, account string) {
				defer wg.Done()
				if err := commitAccount(t, j, account, perAccount, 8); err != nil {
					errs <- err
				}
			}(j, fmt.Sprintf("j%d-user%d", i, a))
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range 2 {
		for a := 0; a < perJournal; a++ {
			checkAccount(t, j1, fmt.Sprintf("j%d-user%d", i, a), perAccount)
		}
	}
}

// TestConcurrentOpenOfNewJournal stands for several popmigrate processes
// started at once on a journal that does not exist yet (a new file, an
// empty database): each migration transaction reads the schema version and
// then writes, and only one may create the schema. None may fail, and each
// migration is applied once.
func TestConcurrentOpenOfNewJournal(t *testing.T) { forEachBackend(t, testConcurrentOpenOfNewJournal) }

func testConcurrentOpenOfNewJournal(t *testing.T, be backend) {
	path := be.newPath(t)
	const n = 4
	var wg sync.WaitGroup
	journals := make([]*Journal, n)
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			journals[i], errs[i] = Open(testCtx(t), path)
		}()
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Errorf("Open %d: %v", i, errs[i])
			continue
		}
		defer journals[i].Close()
	}
	if t.Failed() {
		return
	}
	// Every one of them works on the same, single schema.
	for i, j := range journals {
		mustListing(t, j, fmt.Sprintf("user%d", i), listing("u", 2))
	}
	st, err := journals[0].Status(testCtx(t))
	if err != nil || len(st) != n {
		t.Errorf("Status = %+v, %v; want %d accounts", st, err, n)
	}
	if v := be.schemaVersion(t, path); v != SchemaVersion {
		t.Errorf("schema version %d, want %d", v, SchemaVersion)
	}
}
