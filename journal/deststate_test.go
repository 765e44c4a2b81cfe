package journal

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func mustDestState(t testing.TB, j *Journal, account, destID string) string {
	t.Helper()
	s, err := j.DestState(testCtx(t), account, destID)
	if err != nil {
		t.Fatalf("DestState(%s, %s): %v", account, destID, err)
	}
	return s
}

func mustSaveDestState(t testing.TB, j *Journal, account, destID, state string) {
	t.Helper()
	if err := j.SaveDestState(testCtx(t), account, destID, state); err != nil {
		t.Fatalf("SaveDestState(%s, %s): %v", account, destID, err)
	}
}

// destStateRows returns every dest_states row as "account/dest_id" -> state.
func destStateRows(t testing.TB, j *Journal) map[string]string {
	t.Helper()
	rows, err := j.r.QueryContext(testCtx(t), `SELECT account, dest_id, state FROM dest_states`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := make(map[string]string)
	for rows.Next() {
		var a, d, s string
		if err := rows.Scan(&a, &d, &s); err != nil {
			t.Fatal(err)
		}
		out[a+"/"+d] = s
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDestStateRoundTrip(t *testing.T) { forEachBackend(t, testDestStateRoundTrip) }

func testDestStateRoundTrip(t *testing.T, be backend) {
	j, _ := be.open(t)
	c := newClock(j)
	ctx := testCtx(t)

	if s := mustDestState(t, j, "alice", "mbox:/srv/alice.mbox"); s != "" {
		t.Errorf("state never recorded = %q, want \"\"", s)
	}
	// No listing is needed: a destination may resume before the first one.
	mustSaveDestState(t, j, "alice", "mbox:/srv/alice.mbox", "8192")
	intent := `{"folder":"INBOX/Archiv äöü","uidvalidity":1700000000,"uidnext":42}`
	mustSaveDestState(t, j, "alice", "imap:archive", intent)
	mustSaveDestState(t, j, "bob", "mbox:/srv/alice.mbox", "17") // same destination id, other account

	if s := mustDestState(t, j, "alice", "mbox:/srv/alice.mbox"); s != "8192" {
		t.Errorf("alice mbox = %q", s)
	}
	if s := mustDestState(t, j, "alice", "imap:archive"); s != intent {
		t.Errorf("alice imap = %q, want %q", s, intent)
	}
	if s := mustDestState(t, j, "bob", "mbox:/srv/alice.mbox"); s != "17" {
		t.Errorf("bob mbox = %q", s)
	}
	if s := mustDestState(t, j, "bob", "imap:archive"); s != "" {
		t.Errorf("bob imap = %q, want \"\"", s)
	}

	// A new state replaces the old one and its time.
	at := c.advance(time.Hour)
	mustSaveDestState(t, j, "alice", "mbox:/srv/alice.mbox", "16384")
	if s := mustDestState(t, j, "alice", "mbox:/srv/alice.mbox"); s != "16384" {
		t.Errorf("after replace = %q", s)
	}
	var updated int64
	if err := j.r.QueryRowContext(ctx, `SELECT updated_at FROM dest_states WHERE account = 'alice' AND dest_id = 'mbox:/srv/alice.mbox'`).
		Scan(&updated); err != nil {
		t.Fatal(err)
	}
	if updated != at.UnixNano() {
		t.Errorf("updated_at = %d, want %d", updated, at.UnixNano())
	}

	// An empty state clears it, and is recorded as such.
	mustSaveDestState(t, j, "alice", "imap:archive", "")
	if s := mustDestState(t, j, "alice", "imap:archive"); s != "" {
		t.Errorf("after clear = %q", s)
	}
	if s, ok := destStateRows(t, j)["alice/imap:archive"]; !ok || s != "" {
		t.Errorf("cleared row = %q (present %v), want an empty state", s, ok)
	}

	// The largest state allowed round-trips byte for byte.
	big := strings.Repeat("0123456789abcdef", maxDestState/16)
	mustSaveDestState(t, j, "carol", "imap:x", big)
	if s := mustDestState(t, j, "carol", "imap:x"); s != big {
		t.Errorf("state of %d bytes came back as %d bytes", len(big), len(s))
	}
}

func TestDestStateRefusesMalformedWrites(t *testing.T) {
	forEachBackend(t, testDestStateRefusesMalformedWrites)
}

func testDestStateRefusesMalformedWrites(t *testing.T, be backend) {
	j, _ := be.open(t)
	ctx := testCtx(t)
	mustListing(t, j, "alice", listing("u", 1))
	mustSaveDestState(t, j, "alice", "mbox", "100")

	const secret = "SECRET-STATE-"
	for _, tc := range []struct {
		name, account, destID, state, want string
	}{
		{"empty account", "", "mbox", "1", "empty account or destination"},
		{"empty destination", "alice", "", "1", "empty account or destination"},
		{"too long", "alice", "mbox", secret + strings.Repeat("x", maxDestState), "longer than"},
		{"invalid UTF-8", "alice", "mbox", secret + "\xff\xfe", "not valid UTF-8"},
		{"NUL byte", "alice", "mbox", secret + "a\x00b", "NUL byte"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check := func(how string, err error) {
				t.Helper()
				if err == nil || !strings.HasPrefix(err.Error(), "journal: ") || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%s: err = %v, want it to contain %q", how, err, tc.want)
					return
				}
				if tc.account != "" && tc.destID != "" &&
					(!strings.Contains(err.Error(), `"`+tc.account+`"`) || !strings.Contains(err.Error(), `"`+tc.destID+`"`)) {
					t.Errorf("%s: error %q does not name the account and destination", how, err)
				}
				if strings.Contains(err.Error(), secret) {
					t.Errorf("%s: error repeats the state: %.200q", how, err)
				}
			}
			check("SaveDestState", j.SaveDestState(ctx, tc.account, tc.destID, tc.state))

			var b Batch
			b.Stored(stored("alice", "u0000", true, "mbox")) // valid, first: must not be recorded either
			b.DestState(tc.account, tc.destID, tc.state)
			check("Commit", j.Commit(ctx, &b))

			assertUntouched(t, j, 1)
			if got := destStateRows(t, j); len(got) != 1 || got["alice/mbox"] != "100" {
				t.Errorf("states after a refused write: %q", got)
			}
		})
	}
	for _, k := range [][2]string{{"", "mbox"}, {"alice", ""}} {
		if _, err := j.DestState(ctx, k[0], k[1]); err == nil || !strings.Contains(err.Error(), "empty account or destination") {
			t.Errorf("DestState(%q, %q): err = %v", k[0], k[1], err)
		}
	}
}

func TestBatchDestStateCommitsWithTheDeliveries(t *testing.T) {
	forEachBackend(t, testBatchDestStateCommitsWithTheDeliveries)
}

func testBatchDestStateCommitsWithTheDeliveries(t *testing.T, be backend) {
	j, _ := be.open(t)
	mustListing(t, j, "alice", listing("u", 2))

	var b Batch
	b.Stored(stored("alice", "u0000", true, "mbox"))
	b.Stored(stored("alice", "u0001", true, "mbox"))
	b.DestState("alice", "mbox", "4096")
	if b.Len() != 3 {
		t.Errorf("Len = %d, want 3", b.Len())
	}
	mustCommit(t, j, &b)
	if s := mustDestState(t, j, "alice", "mbox"); s != "4096" {
		t.Errorf("state = %q", s)
	}
	if rows := messagesByUIDL(t, j, "alice"); rows["u0000"].State != StateStored || rows["u0001"].State != StateStored {
		t.Errorf("messages = %+v", rows)
	}

	// A batch holding only state writes commits; they apply in order.
	b.DestState("alice", "mbox", "5000")
	b.DestState("alice", "imap", "intent-1")
	b.DestState("alice", "mbox", "6000")
	if b.Len() != 3 {
		t.Errorf("Len of a state-only batch = %d, want 3", b.Len())
	}
	mustCommit(t, j, &b)
	if s := mustDestState(t, j, "alice", "mbox"); s != "6000" {
		t.Errorf("mbox after two writes in one batch = %q, want the later", s)
	}
	if s := mustDestState(t, j, "alice", "imap"); s != "intent-1" {
		t.Errorf("imap = %q", s)
	}
}

func TestBatchDestStateIsAtomic(t *testing.T) { forEachBackend(t, testBatchDestStateIsAtomic) }

func testBatchDestStateIsAtomic(t *testing.T, be backend) {
	j, _ := be.open(t)
	ctx := testCtx(t)
	mustListing(t, j, "alice", listing("u", 2))
	mustSaveDestState(t, j, "alice", "mbox", "old")
	wantStates := map[string]string{"alice/mbox": "old"}

	t.Run("message never listed", func(t *testing.T) {
		var b Batch
		b.DestState("alice", "mbox", "new")
		b.Stored(stored("alice", "u0000", true, "mbox"))
		b.Stored(stored("alice", "never-listed", true, "mbox")) // last: the state write ran inside the transaction
		if err := j.Commit(ctx, &b); !errors.Is(err, ErrNotListed) {
			t.Fatalf("err = %v, want ErrNotListed", err)
		}
		assertUntouched(t, j, 2)
		if got := destStateRows(t, j); fmt.Sprint(got) != fmt.Sprint(wantStates) {
			t.Errorf("states = %q, want %q", got, wantStates)
		}
	})

	t.Run("database refuses the state", func(t *testing.T) {
		defer be.injectFailure(t, j, "inject_state_failure", "dest_states", "NEW.state = 'broken'")()
		var b Batch
		b.Stored(stored("alice", "u0000", true, "mbox"))
		b.DestState("alice", "imap", "fine")
		b.DestState("alice", "mbox", "broken")
		err := j.Commit(ctx, &b)
		if err == nil || !strings.Contains(err.Error(), "injected failure") ||
			!strings.Contains(err.Error(), `"alice"`) || !strings.Contains(err.Error(), `destination "mbox"`) {
			t.Fatalf("err = %v, want the injected failure naming account and destination", err)
		}
		assertUntouched(t, j, 2)
		if got := destStateRows(t, j); fmt.Sprint(got) != fmt.Sprint(wantStates) {
			t.Errorf("states = %q, want %q", got, wantStates)
		}
	})

	t.Run("cancelled context", func(t *testing.T) {
		var b Batch
		b.DestState("alice", "mbox", "new")
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := j.Commit(cctx, &b); !errors.Is(err, context.Canceled) {
			t.Fatalf("Commit: err = %v, want context.Canceled", err)
		}
		if err := j.SaveDestState(cctx, "alice", "mbox", "new"); !errors.Is(err, context.Canceled) {
			t.Fatalf("SaveDestState: err = %v, want context.Canceled", err)
		}
		if s := mustDestState(t, j, "alice", "mbox"); s != "old" {
			t.Errorf("state = %q, want \"old\"", s)
		}
	})
}

func TestSaveDestStateIsDurableAcrossReopen(t *testing.T) {
	forEachBackend(t, testSaveDestStateIsDurableAcrossReopen)
}

func testSaveDestStateIsDurableAcrossReopen(t *testing.T, be backend) {
	path := be.newPath(t)
	ctx := testCtx(t)
	j, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	mustSaveDestState(t, j, "alice", "imap:archive", "intent-7")

	// Committed when SaveDestState returns: another journal on the file
	// (another process) sees it while the first is still open.
	other, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if s := mustDestState(t, other, "alice", "imap:archive"); s != "intent-7" {
		t.Errorf("second journal sees %q", s)
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	var b Batch
	b.DestState("alice", "mbox", "12345")
	mustCommit(t, j, &b)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	j, err = Open(ctx, path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer j.Close()
	if s := mustDestState(t, j, "alice", "imap:archive"); s != "intent-7" {
		t.Errorf("imap after reopen = %q", s)
	}
	if s := mustDestState(t, j, "alice", "mbox"); s != "12345" {
		t.Errorf("mbox after reopen = %q", s)
	}
}

func TestOpenUpgradesVersion1InPlace(t *testing.T) {
	forEachBackend(t, testOpenUpgradesVersion1InPlace)
}

func testOpenUpgradesVersion1InPlace(t *testing.T, be backend) {
	path := be.newPath(t)
	openV1(t, path)
	ctx := testCtx(t)

	j, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open of a version-1 journal: %v", err)
	}
	defer j.Close()
	if v := schemaVersionIn(t, j.w, j.d); v != SchemaVersion {
		t.Errorf("schema version = %d, want SchemaVersion %d", v, SchemaVersion)
	}

	// The version-1 data is all there.
	rows := messagesByUIDL(t, j, "alice")
	if r := rows["u0000"]; r.State != StateStored || r.ReceivedSize != 98 || r.SHA256 != sum("m0") || r.StoredAt.UnixNano() != 1600 {
		t.Errorf("u0000 = %+v", r)
	}
	if r := rows["u0001"]; r.State != StateFailed || r.Error != "pop3: retr 2: timeout" || r.Attempts != 1 {
		t.Errorf("u0001 = %+v", r)
	}
	d, err := j.Deliveries(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if got := d["u0000"]["mbox"]; got.Ref != "0" || got.SHA256 != sum("m0") {
		t.Errorf("delivery = %+v", got)
	}
	if st := statusOf(t, j, "alice"); st.Stored != 1 || st.Failed != 1 || st.ServerCount != 2 || st.ServerBytes != 300 {
		t.Errorf("status = %+v", st)
	}
	runs, err := j.Runs(ctx)
	if err != nil || len(runs) != 1 || runs[0].Args != "run --to mbox:/x" || string(runs[0].Summary) != `{"ok":1}` {
		t.Errorf("runs = %+v, %v", runs, err)
	}

	// The new table works, and the old writes still do.
	if s := mustDestState(t, j, "alice", "mbox"); s != "" {
		t.Errorf("state after upgrade = %q, want \"\"", s)
	}
	var b Batch
	b.Stored(stored("alice", "u0001", true, "mbox"))
	b.DestState("alice", "mbox", "512")
	mustCommit(t, j, &b)
	if s := mustDestState(t, j, "alice", "mbox"); s != "512" {
		t.Errorf("state = %q", s)
	}
	if r := messagesByUIDL(t, j, "alice")["u0001"]; r.State != StateStored {
		t.Errorf("u0001 after store = %+v", r)
	}
}

// TestFailedUpgradeLeavesVersion1 pins that a migration and its version bump
// are one transaction: an upgrade that fails half way leaves a version-1
// journal that a later Open upgrades.
func TestFailedUpgradeLeavesVersion1(t *testing.T) {
	forEachBackend(t, testFailedUpgradeLeavesVersion1)
}

func testFailedUpgradeLeavesVersion1(t *testing.T, be backend) {
	path := be.newPath(t)
	openV1(t, path)
	ctx := testCtx(t)
	raw := be.raw(t, path)
	// A table in the way makes migration 2 fail.
	if _, err := raw.ExecContext(ctx, `CREATE TABLE dest_states (x INTEGER)`); err != nil {
		t.Fatal(err)
	}

	j, err := Open(ctx, path)
	if err == nil {
		j.Close()
		t.Fatal("Open succeeded with a table in the migration's way")
	}
	if !strings.HasPrefix(err.Error(), "journal: ") || !strings.Contains(err.Error(), redactDSN(path)) || !strings.Contains(err.Error(), "migration 2") {
		t.Errorf("error %q does not name the journal and the migration", err)
	}
	var n int
	v := schemaVersionIn(t, raw, be.d)
	if err := raw.QueryRowContext(ctx, "SELECT COUNT(*) FROM messages").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if v != 1 || n != 2 {
		t.Errorf("after the failed upgrade: schema version %d, %d messages; want 1, 2", v, n)
	}

	if _, err := raw.ExecContext(ctx, `DROP TABLE dest_states`); err != nil {
		t.Fatal(err)
	}
	j, err = Open(ctx, path)
	if err != nil {
		t.Fatalf("Open after removing the obstacle: %v", err)
	}
	defer j.Close()
	mustSaveDestState(t, j, "alice", "mbox", "1")
	if s := mustDestState(t, j, "alice", "mbox"); s != "1" {
		t.Errorf("state = %q", s)
	}
}

// TestDestStateConcurrentAccounts is the pipeline's pattern with resumable
// destinations: one goroutine per account records IMAP intents with
// SaveDestState and mbox offsets in its group commits, many accounts at
// once, on two journals sharing one file (two processes). Every account
// reads back its own last write and never another account's.
func TestDestStateConcurrentAccounts(t *testing.T) {
	forEachBackend(t, testDestStateConcurrentAccounts)
}

func testDestStateConcurrentAccounts(t *testing.T, be backend) {
	path := be.newPath(t)
	var journals [2]*Journal
	for i := range journals {
		j, err := Open(testCtx(t), path)
		if err != nil {
			t.Fatal(err)
		}
		defer j.Close()
		journals[i] = j
	}
	const accounts, perAccount, batchSize = 6, 20, 5

	var wg sync.WaitGroup
	errs := make(chan error, accounts)
	for a := range accounts {
		wg.Add(1)
		go func(j *Journal, account string) {
			defer wg.Done()
			errs <- runResumableAccount(testCtx(t), j, account, perAccount, batchSize)
		}(journals[a%2], fmt.Sprintf("user%02d", a))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	for a := range accounts {
		account := fmt.Sprintf("user%02d", a)
		for _, j := range journals {
			if s := mustDestState(t, j, account, "imap"); s != fmt.Sprintf("%s intent %d", account, perAccount-1) {
				t.Errorf("%s imap = %q", account, s)
			}
			if s := mustDestState(t, j, account, "mbox"); s != fmt.Sprintf("%s offset %d", account, perAccount) {
				t.Errorf("%s mbox = %q", account, s)
			}
		}
		if st := statusOf(t, journals[0], account); st.Stored != perAccount {
			t.Errorf("%s: %+v", account, st)
		}
	}
}

// runResumableAccount lists n messages of account, then for each records an
// IMAP intent at once and adds the message and the mbox offset to a batch,
// committed every batchSize messages. After each write it reads the state
// back. It returns the first error.
func runResumableAccount(ctx context.Context, j *Journal, account string, n, batchSize int) error {
	if err := j.RecordListing(ctx, account, "pop3s://"+account+"@pop.example", listing("u", n)); err != nil {
		return err
	}
	readBack := func(destID, want string) error {
		got, err := j.DestState(ctx, account, destID)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("%s %s: read back %q, want %q", account, destID, got, want)
		}
		return nil
	}
	var b Batch
	for i := range n {
		intent := fmt.Sprintf("%s intent %d", account, i)
		if err := j.SaveDestState(ctx, account, "imap", intent); err != nil {
			return err
		}
		if err := readBack("imap", intent); err != nil {
			return err
		}
		b.Stored(stored(account, fmt.Sprintf("u%04d", i), true, "imap", "mbox"))
		if (i+1)%batchSize == 0 || i == n-1 {
			offset := fmt.Sprintf("%s offset %d", account, i+1)
			b.DestState(account, "mbox", offset)
			if err := j.Commit(ctx, &b); err != nil {
				return err
			}
			b.Reset()
			if err := readBack("mbox", offset); err != nil {
				return err
			}
		}
	}
	return nil
}
