package journal

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// assertUntouched checks that alice's messages u0000..u{n-1} are all still
// 'listed' with no store data and that no delivery was recorded.
func assertUntouched(t *testing.T, j *Journal, n int) {
	t.Helper()
	rows := messagesByUIDL(t, j, "alice")
	if len(rows) != n {
		t.Fatalf("%d rows, want %d", len(rows), n)
	}
	for uidl, r := range rows {
		if r.State != StateListed || r.SHA256 != "" || r.ReceivedSize != 0 || r.Attempts != 0 || r.Error != "" || !r.StoredAt.IsZero() {
			t.Errorf("%s was written by a failed commit: %+v", uidl, r)
		}
	}
	d, err := j.Deliveries(testCtx(t), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(d) != 0 {
		t.Errorf("a failed commit recorded deliveries: %+v", d)
	}
}

func TestCommitIsAtomicWhenAMessageWasNeverListed(t *testing.T) {
	forEachBackend(t, testCommitIsAtomicWhenAMessageWasNeverListed)
}

func testCommitIsAtomicWhenAMessageWasNeverListed(t *testing.T, be backend) {
	j, _ := be.open(t)
	mustListing(t, j, "alice", listing("u", 4))
	var b Batch
	b.Stored(stored("alice", "u0000", true, "maildir", "mbox"))
	b.Failed("alice", "u0001", "boom")
	b.Stored(stored("alice", "u0002", false, "maildir"))
	b.Stored(stored("alice", "never-listed", true, "maildir")) // last: the others ran inside the transaction
	err := j.Commit(testCtx(t), &b)
	if !errors.Is(err, ErrNotListed) {
		t.Fatalf("err = %v, want ErrNotListed", err)
	}
	if !strings.Contains(err.Error(), `"never-listed"`) || !strings.Contains(err.Error(), `"alice"`) {
		t.Errorf("error %q does not name the message", err)
	}
	assertUntouched(t, j, 4)
	if b.Len() != 4 {
		t.Errorf("Commit changed the batch: Len %d", b.Len())
	}
}

func TestCommitIsAtomicWhenTheDatabaseRefusesAStatement(t *testing.T) {
	forEachBackend(t, testCommitIsAtomicWhenTheDatabaseRefusesAStatement)
}

func testCommitIsAtomicWhenTheDatabaseRefusesAStatement(t *testing.T, be backend) {
	j, _ := be.open(t)
	ctx := testCtx(t)
	mustListing(t, j, "alice", listing("u", 3))
	// Inject a failure inside the database, on the last statement of the batch.
	be.injectFailure(t, j, "inject_failure", "deliveries", "NEW.dest_id = 'broken'")
	var b Batch
	b.Stored(stored("alice", "u0000", true, "maildir"))
	b.Failed("alice", "u0001", "boom")
	b.Stored(stored("alice", "u0002", true, "maildir", "broken"))
	err := j.Commit(ctx, &b)
	if err == nil || !strings.Contains(err.Error(), "injected failure") || !strings.Contains(err.Error(), `"broken"`) {
		t.Fatalf("err = %v, want the injected failure naming the destination", err)
	}
	assertUntouched(t, j, 3)

	// The same batch without the broken destination commits whole.
	b.Reset()
	b.Stored(stored("alice", "u0000", true, "maildir"))
	b.Failed("alice", "u0001", "boom")
	b.Stored(stored("alice", "u0002", true, "maildir"))
	mustCommit(t, j, &b)
	rows := messagesByUIDL(t, j, "alice")
	if rows["u0000"].State != StateStored || rows["u0001"].State != StateFailed || rows["u0002"].State != StateStored {
		t.Errorf("after retry: %+v", rows)
	}
}

func TestCommitWithCancelledContextRecordsNothing(t *testing.T) {
	forEachBackend(t, testCommitWithCancelledContextRecordsNothing)
}

func testCommitWithCancelledContextRecordsNothing(t *testing.T, be backend) {
	j, _ := be.open(t)
	mustListing(t, j, "alice", listing("u", 2))
	var b Batch
	b.Stored(stored("alice", "u0000", true, "maildir"))
	b.Stored(stored("alice", "u0001", true, "maildir"))
	ctx, cancel := context.WithCancel(testCtx(t))
	cancel()
	if err := j.Commit(ctx, &b); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	assertUntouched(t, j, 2)
}

func TestCommitRefusesMalformedWrites(t *testing.T) {
	forEachBackend(t, testCommitRefusesMalformedWrites)
}

func testCommitRefusesMalformedWrites(t *testing.T, be backend) {
	j, _ := be.open(t)
	mustListing(t, j, "alice", listing("u", 1))
	good := stored("alice", "u0000", true, "maildir")
	for _, tc := range []struct {
		name string
		add  func(*Batch)
		want string
	}{
		{"upper-case sha256", func(b *Batch) {
			m := good
			m.SHA256 = strings.ToUpper(m.SHA256)
			b.Stored(m)
		}, "not 64 lower-case hex"},
		{"short sha256", func(b *Batch) { m := good; m.SHA256 = "abc"; b.Stored(m) }, "not 64 lower-case hex"},
		{"bad delivery sha256", func(b *Batch) {
			m := stored("alice", "u0000", true)
			m.Deliveries = []Delivery{{DestID: "d", SHA256: "zz"}}
			b.Stored(m)
		}, `delivery to "d"`},
		{"empty destination", func(b *Batch) { m := stored("alice", "u0000", true, ""); b.Stored(m) }, "empty destination id"},
		{"same destination twice", func(b *Batch) { b.Stored(stored("alice", "u0000", true, "d", "d")) }, `two deliveries to "d"`},
		{"complete without deliveries", func(b *Batch) { b.Stored(stored("alice", "u0000", true)) }, "without any delivery"},
		{"negative size", func(b *Batch) { m := good; m.ReceivedSize = -1; b.Stored(m) }, "negative size"},
		{"failed without uidl", func(b *Batch) { b.Failed("alice", "", "x") }, "empty account or uidl"},
		{"verified without destination", func(b *Batch) { b.Verified("alice", "u0000", "", time.Time{}) }, "empty account, uidl or destination"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b Batch
			b.Stored(good) // valid, first: must not be recorded either
			tc.add(&b)
			err := j.Commit(testCtx(t), &b)
			if err == nil || !strings.HasPrefix(err.Error(), "journal: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			assertUntouched(t, j, 1)
		})
	}
}

func TestFailedThenStored(t *testing.T) { forEachBackend(t, testFailedThenStored) }

func testFailedThenStored(t *testing.T, be backend) {
	j, _ := be.open(t)
	mustListing(t, j, "alice", listing("u", 2))
	var b Batch
	b.Failed("alice", "u0000", "pop3: retr 1: connection reset")
	mustCommit(t, j, &b)
	b.Failed("alice", "u0000", "pop3: retr 1: timeout")
	mustCommit(t, j, &b)

	r := messagesByUIDL(t, j, "alice")["u0000"]
	if r.State != StateFailed || r.Attempts != 2 || r.Error != "pop3: retr 1: timeout" {
		t.Fatalf("after two failures: %+v", r)
	}
	st := statusOf(t, j, "alice")
	want := []MessageFailure{{UIDL: "u0000", Error: "pop3: retr 1: timeout", Attempts: 2}}
	if st.Failed != 1 || st.Listed != 1 || !reflect.DeepEqual(st.Failures, want) {
		t.Errorf("status = %+v", st)
	}

	b.Stored(stored("alice", "u0000", true, "maildir"))
	mustCommit(t, j, &b)
	r = messagesByUIDL(t, j, "alice")["u0000"]
	if r.State != StateStored || r.Error != "" || r.Attempts != 2 || r.StoredAt.IsZero() || r.SHA256 != sum("aliceu0000") || r.ReceivedSize != 42 {
		t.Errorf("after store: %+v", r)
	}
	if st := statusOf(t, j, "alice"); st.Failed != 0 || st.Stored != 1 || len(st.Failures) != 0 {
		t.Errorf("status after store = %+v", st)
	}

	// A later failure (say, a new destination) does not lower the state.
	b.Failed("alice", "u0000", "imap: append: NO quota")
	mustCommit(t, j, &b)
	r = messagesByUIDL(t, j, "alice")["u0000"]
	if r.State != StateStored || r.Attempts != 3 || r.Error != "imap: append: NO quota" {
		t.Errorf("failure after store: %+v", r)
	}
}

func TestFailedAndStoredInOneBatchApplyInOrder(t *testing.T) {
	forEachBackend(t, testFailedAndStoredInOneBatchApplyInOrder)
}

func testFailedAndStoredInOneBatchApplyInOrder(t *testing.T, be backend) {
	j, _ := be.open(t)
	mustListing(t, j, "alice", listing("u", 2))
	var b Batch
	b.Failed("alice", "u0000", "first try")
	b.Stored(stored("alice", "u0000", true, "d"))
	b.Stored(stored("alice", "u0001", true, "d"))
	b.Failed("alice", "u0001", "too late")
	mustCommit(t, j, &b)
	rows := messagesByUIDL(t, j, "alice")
	if r := rows["u0000"]; r.State != StateStored || r.Error != "" || r.Attempts != 1 {
		t.Errorf("failed then stored: %+v", r)
	}
	if r := rows["u0001"]; r.State != StateStored || r.Error != "too late" || r.Attempts != 1 {
		t.Errorf("stored then failed: %+v", r)
	}
}

func TestPartialStoreKeepsStateAndRecordsDeliveries(t *testing.T) {
	forEachBackend(t, testPartialStoreKeepsStateAndRecordsDeliveries)
}

func testPartialStoreKeepsStateAndRecordsDeliveries(t *testing.T, be backend) {
	j, _ := be.open(t)
	c := newClock(j)
	ctx := testCtx(t)
	mustListing(t, j, "alice", listing("u", 2))
	var b Batch
	b.Failed("alice", "u0001", "imap down")
	mustCommit(t, j, &b)

	t1 := c.advance(time.Second)
	b.Stored(stored("alice", "u0000", false, "maildir"))
	b.Stored(stored("alice", "u0001", false, "maildir"))
	mustCommit(t, j, &b)
	rows := messagesByUIDL(t, j, "alice")
	if rows["u0000"].State != StateListed || rows["u0001"].State != StateFailed || !rows["u0000"].StoredAt.IsZero() {
		t.Errorf("partial store changed states: %+v", rows)
	}
	if rows["u0001"].Error != "imap down" {
		t.Errorf("partial store cleared the error: %+v", rows["u0001"])
	}

	// The other destination catches up: complete.
	t2 := c.advance(time.Second)
	b.Stored(stored("alice", "u0000", true, "imap"))
	mustCommit(t, j, &b)
	r := messagesByUIDL(t, j, "alice")["u0000"]
	if r.State != StateStored || !r.StoredAt.Equal(t2) {
		t.Errorf("after completion: %+v", r)
	}
	d, err := j.Deliveries(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(d["u0000"]) != 2 || !d["u0000"]["maildir"].StoredAt.Equal(t1) || !d["u0000"]["imap"].StoredAt.Equal(t2) {
		t.Errorf("deliveries = %+v", d["u0000"])
	}
}

func TestDeliveriesRoundTrip(t *testing.T) { forEachBackend(t, testDeliveriesRoundTrip) }

func testDeliveriesRoundTrip(t *testing.T, be backend) {
	j, _ := be.open(t)
	c := newClock(j)
	ctx := testCtx(t)
	mustListing(t, j, "alice", listing("u", 3))
	mustListing(t, j, "bob", listing("u", 1))

	storedAt := time.Date(2024, 1, 2, 3, 4, 5, 6, time.UTC)
	verifiedAt := storedAt.Add(time.Minute)
	other := sum("imap copy")
	var b Batch
	b.Stored(StoredMessage{
		Account: "alice", UIDL: "u0000", ReceivedSize: 1000, SHA256: sum("m0"), Complete: true,
		Deliveries: []Delivery{
			{DestID: "maildir:/srv/alice", Ref: "cur/1700000000.abc:2,"},
			{DestID: "imap:archive", Ref: "1234567/42", SHA256: other, StoredAt: storedAt, VerifiedAt: verifiedAt},
		},
	})
	b.Stored(StoredMessage{Account: "alice", UIDL: "u0001", ReceivedSize: 7, SHA256: sum("m1"), Complete: true,
		Deliveries: []Delivery{{DestID: "mbox:/srv/alice.mbox", Ref: "8192"}}})
	b.Stored(StoredMessage{Account: "bob", UIDL: "u0000", ReceivedSize: 7, SHA256: sum("b0"), Complete: true,
		Deliveries: []Delivery{{DestID: "mbox:/srv/bob.mbox", Ref: "0"}}})
	mustCommit(t, j, &b)

	got, err := j.Deliveries(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	now := c.now()
	want := map[string]map[string]Delivery{
		"u0000": {
			"maildir:/srv/alice": {DestID: "maildir:/srv/alice", Ref: "cur/1700000000.abc:2,", SHA256: sum("m0"), StoredAt: now},
			"imap:archive":       {DestID: "imap:archive", Ref: "1234567/42", SHA256: other, StoredAt: storedAt, VerifiedAt: verifiedAt},
		},
		"u0001": {
			"mbox:/srv/alice.mbox": {DestID: "mbox:/srv/alice.mbox", Ref: "8192", SHA256: sum("m1"), StoredAt: now},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Deliveries(alice) =\n%+v\nwant\n%+v", got, want)
	}

	none, err := j.Deliveries(ctx, "nobody")
	if err != nil || none == nil || len(none) != 0 {
		t.Errorf("Deliveries(nobody) = %v, %v; want empty map", none, err)
	}

	// A destination that stores the message again replaces its row, unverified.
	b.Stored(StoredMessage{Account: "alice", UIDL: "u0000", ReceivedSize: 1000, SHA256: sum("m0"), Complete: true,
		Deliveries: []Delivery{{DestID: "imap:archive", Ref: "1234568/7"}}})
	mustCommit(t, j, &b)
	got, err = j.Deliveries(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if d := got["u0000"]["imap:archive"]; d.Ref != "1234568/7" || !d.VerifiedAt.IsZero() || d.SHA256 != sum("m0") || len(got["u0000"]) != 2 {
		t.Errorf("after re-store: %+v", got["u0000"])
	}
}

func TestBatchCopiesAndResets(t *testing.T) { forEachBackend(t, testBatchCopiesAndResets) }

func testBatchCopiesAndResets(t *testing.T, be backend) {
	var b Batch
	if b.Len() != 0 {
		t.Fatal("zero Batch is not empty")
	}
	m := stored("alice", "u0000", true, "d1")
	b.Stored(m)
	m.Deliveries[0].DestID = "changed"
	b.Failed("alice", "u0001", "x")
	b.Verified("alice", "u0000", "d1", time.Time{})
	if b.Len() != 3 {
		t.Errorf("Len = %d, want 3", b.Len())
	}
	if got := b.ops[0].stored.Deliveries[0].DestID; got != "d1" {
		t.Errorf("Batch kept the caller's slice: DestID %q", got)
	}
	b.Reset()
	if b.Len() != 0 {
		t.Errorf("Len after Reset = %d", b.Len())
	}

	j, _ := be.open(t)
	if err := j.Commit(testCtx(t), &b); err != nil {
		t.Errorf("Commit of an empty batch: %v", err)
	}
	if err := j.Commit(testCtx(t), nil); err != nil {
		t.Errorf("Commit(nil): %v", err)
	}
}

func TestMarkVerifiedAndDeleted(t *testing.T) { forEachBackend(t, testMarkVerifiedAndDeleted) }

func testMarkVerifiedAndDeleted(t *testing.T, be backend) {
	j, _ := be.open(t)
	c := newClock(j)
	ctx := testCtx(t)
	mustListing(t, j, "alice", listing("u", 3))
	var b Batch
	b.Stored(stored("alice", "u0000", true, "maildir", "imap"))
	b.Stored(stored("alice", "u0001", true, "maildir"))
	mustCommit(t, j, &b)

	at := c.advance(time.Minute)
	if err := j.MarkVerified(ctx, "alice", "u0000", "maildir", time.Time{}); err != nil {
		t.Fatal(err)
	}
	r := messagesByUIDL(t, j, "alice")["u0000"]
	if r.State != StateStored || !r.VerifiedAt.IsZero() {
		t.Errorf("verified in one of two destinations: %+v", r)
	}
	d, _ := j.Deliveries(ctx, "alice")
	if !d["u0000"]["maildir"].VerifiedAt.Equal(at) || !d["u0000"]["imap"].VerifiedAt.IsZero() {
		t.Errorf("deliveries = %+v", d["u0000"])
	}

	explicit := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := j.MarkVerified(ctx, "alice", "u0000", "imap", explicit); err != nil {
		t.Fatal(err)
	}
	r = messagesByUIDL(t, j, "alice")["u0000"]
	if r.State != StateVerified || !r.VerifiedAt.Equal(explicit) {
		t.Errorf("verified in both destinations: %+v", r)
	}

	err := j.MarkVerified(ctx, "alice", "u0001", "imap", time.Time{})
	if !errors.Is(err, ErrNotDelivered) || !strings.Contains(err.Error(), `"imap"`) || !strings.Contains(err.Error(), `"u0001"`) {
		t.Errorf("verify of a destination without delivery: %v", err)
	}
	if err := j.MarkVerified(ctx, "alice", "u0002", "maildir", time.Time{}); !errors.Is(err, ErrNotDelivered) {
		t.Errorf("verify of an unstored message: %v", err)
	}
	// Verifying a message still 'listed' (partial deliveries) does not promote it.
	b.Stored(stored("alice", "u0002", false, "maildir"))
	mustCommit(t, j, &b)
	if err := j.MarkVerified(ctx, "alice", "u0002", "maildir", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if r := messagesByUIDL(t, j, "alice")["u0002"]; r.State != StateListed {
		t.Errorf("partially stored message became %s", r.State)
	}

	// MarkDeleted is all or nothing.
	err = j.MarkDeleted(ctx, "alice", []string{"u0000", "nope"})
	if !errors.Is(err, ErrNotListed) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("MarkDeleted with an unknown uidl: %v", err)
	}
	if r := messagesByUIDL(t, j, "alice")["u0000"]; r.State != StateVerified || !r.DeletedAt.IsZero() {
		t.Errorf("failed MarkDeleted recorded: %+v", r)
	}
	del := c.advance(time.Minute)
	if err := j.MarkDeleted(ctx, "alice", []string{"u0000"}); err != nil {
		t.Fatal(err)
	}
	r = messagesByUIDL(t, j, "alice")["u0000"]
	if r.State != StateDeleted || !r.DeletedAt.Equal(del) || !r.VerifiedAt.Equal(explicit) {
		t.Errorf("after MarkDeleted: %+v", r)
	}
	if err := j.MarkDeleted(ctx, "alice", nil); err != nil {
		t.Errorf("MarkDeleted of nothing: %v", err)
	}
}

func TestVerifiedMessageGivenAnUnverifiedCopy(t *testing.T) {
	forEachBackend(t, testVerifiedMessageGivenAnUnverifiedCopy)
}

// testVerifiedMessageGivenAnUnverifiedCopy: a 'verified' message that a
// later run stores again somewhere (a destination added to the account,
// a copy written again) goes back to 'stored' until the new copy is
// verified too, whether the store is complete or partial; a store whose
// copies were read back keeps it 'verified'.
func testVerifiedMessageGivenAnUnverifiedCopy(t *testing.T, be backend) {
	j, _ := be.open(t)
	c := newClock(j)
	ctx := testCtx(t)
	mustListing(t, j, "alice", listing("u", 3))
	var b Batch
	for _, u := range []string{"u0000", "u0001", "u0002"} {
		b.Stored(stored("alice", u, true, "maildir"))
	}
	mustCommit(t, j, &b)
	first := c.advance(time.Minute)
	for _, u := range []string{"u0000", "u0001", "u0002"} {
		if err := j.MarkVerified(ctx, "alice", u, "maildir", time.Time{}); err != nil {
			t.Fatal(err)
		}
	}

	c.advance(time.Minute)
	b.Stored(stored("alice", "u0000", true, "maildir", "imap")) // imap added: not verified
	b.Stored(stored("alice", "u0001", false, "imap"))           // partial, not verified
	b.Stored(stored("alice", "u0002", true, "maildir"))
	b.ReadBack(func(m *StoredMessage, d *Delivery) bool { return m.UIDL == "u0002" }, time.Time{})
	mustCommit(t, j, &b)
	rows := messagesByUIDL(t, j, "alice")
	for _, u := range []string{"u0000", "u0001"} {
		if r := rows[u]; r.State != StateStored || !r.VerifiedAt.IsZero() {
			t.Errorf("%s, verified, then given an unverified copy: state %s, verified at %v; want stored, not verified", u, r.State, r.VerifiedAt)
		}
	}
	if r := rows["u0002"]; r.State != StateVerified || !r.VerifiedAt.Equal(first) {
		t.Errorf("u0002, stored again and read back: state %s, verified at %v; want verified at %v", r.State, r.VerifiedAt, first)
	}

	last := c.advance(time.Minute)
	for _, dest := range []string{"maildir", "imap"} {
		if err := j.MarkVerified(ctx, "alice", "u0000", dest, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	if r := messagesByUIDL(t, j, "alice")["u0000"]; r.State != StateVerified || !r.VerifiedAt.Equal(last) {
		t.Errorf("u0000 with both copies verified again: state %s, verified at %v; want verified at %v", r.State, r.VerifiedAt, last)
	}
}

func TestStatusCounts(t *testing.T) { forEachBackend(t, testStatusCounts) }

func testStatusCounts(t *testing.T, be backend) {
	j, _ := be.open(t)
	ctx := testCtx(t)
	mustListing(t, j, "carol", listing("u", 30))
	mustListing(t, j, "alice", listing("u", 10))
	if err := j.SetAccountError(ctx, "zed", "pop3: dial: connection refused"); err != nil {
		t.Fatal(err)
	}

	var b Batch
	for i := 0; i < 6; i++ {
		b.Stored(stored("alice", fmt.Sprintf("u%04d", i), true, "d"))
	}
	b.Verified("alice", "u0004", "d", time.Time{})
	b.Verified("alice", "u0005", "d", time.Time{})
	b.Failed("alice", "u0009", "bad")
	for i := 0; i < 25; i++ {
		b.Failed("carol", fmt.Sprintf("u%04d", i), fmt.Sprintf("err %d", i))
	}
	mustCommit(t, j, &b)
	if err := j.MarkDeleted(ctx, "alice", []string{"u0005"}); err != nil {
		t.Fatal(err)
	}

	st, err := j.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 3 || st[0].Account != "alice" || st[1].Account != "carol" || st[2].Account != "zed" {
		t.Fatalf("accounts = %+v", st)
	}
	a := st[0]
	if a.Listed != 3 || a.Stored != 4 || a.Verified != 1 || a.Deleted != 1 || a.Failed != 1 ||
		a.ServerCount != 10 || a.ServerBytes != 1045 || a.LastRun.IsZero() || a.LastError != "" {
		t.Errorf("alice = %+v", a)
	}
	if want := []MessageFailure{{UIDL: "u0009", Error: "bad", Attempts: 1}}; !reflect.DeepEqual(a.Failures, want) {
		t.Errorf("alice failures = %+v", a.Failures)
	}
	cs := st[1]
	if cs.Failed != 25 || cs.Listed != 5 || len(cs.Failures) != StatusFailureLimit {
		t.Errorf("carol: failed %d listed %d, %d failures listed (limit %d)", cs.Failed, cs.Listed, len(cs.Failures), StatusFailureLimit)
	}
	for i, f := range cs.Failures {
		if f.UIDL != fmt.Sprintf("u%04d", i) || f.Error != fmt.Sprintf("err %d", i) {
			t.Errorf("carol failure %d = %+v", i, f)
		}
	}
	if z := st[2]; z.LastError != "pop3: dial: connection refused" || z.Listed+z.Stored+z.Failed != 0 || z.Failures != nil {
		t.Errorf("zed = %+v", z)
	}
}

func TestStoredAndReadBackInOneBatch(t *testing.T) {
	forEachBackend(t, testStoredAndReadBackInOneBatch)
}

// testStoredAndReadBackInOneBatch: a writer that reads its copies back
// after their Sync records them verified in the batch that records them
// stored. A complete message all of whose deliveries are read back is
// 'verified' at once; one with a delivery not read back, in this batch
// or an earlier one, stays 'stored'; a higher state stays; ReadBack sees
// each unverified delivery once; a message never listed rolls back the
// whole batch.
func testStoredAndReadBackInOneBatch(t *testing.T, be backend) {
	j, _ := be.open(t)
	c := newClock(j)
	ctx := testCtx(t)
	mustListing(t, j, "alice", listing("u", 6))
	var b Batch
	b.Stored(stored("alice", "u0002", false, "imap")) // an earlier delivery, not verified
	b.Stored(stored("alice", "u0003", true, "maildir"))
	mustCommit(t, j, &b)
	if err := j.MarkVerified(ctx, "alice", "u0003", "maildir", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := j.MarkDeleted(ctx, "alice", []string{"u0003"}); err != nil {
		t.Fatal(err)
	}

	t1 := c.advance(time.Second)
	at := t1.Add(-time.Millisecond) // read back just before the commit
	b.Stored(stored("alice", "u0000", true, "maildir"))
	b.Stored(stored("alice", "u0001", true, "maildir", "imap"))
	b.Stored(stored("alice", "u0002", true, "maildir"))
	b.Stored(stored("alice", "u0003", true, "maildir"))
	b.Stored(stored("alice", "u0004", false, "maildir"))
	b.Stored(stored("alice", "u0005", true, "maildir", "eml"))
	var seen []string
	b.ReadBack(func(m *StoredMessage, d *Delivery) bool {
		seen = append(seen, m.UIDL+"/"+d.DestID)
		return d.DestID != "imap"
	}, at)
	want := []string{"u0000/maildir", "u0001/maildir", "u0001/imap", "u0002/maildir", "u0003/maildir", "u0004/maildir",
		"u0005/maildir", "u0005/eml"}
	if !reflect.DeepEqual(seen, want) {
		t.Errorf("ReadBack checked %q, want %q", seen, want)
	}
	b.ReadBack(func(m *StoredMessage, d *Delivery) bool {
		if d.DestID != "imap" {
			t.Errorf("ReadBack checked %s/%s again, already read back", m.UIDL, d.DestID)
		}
		return false
	}, at)
	mustCommit(t, j, &b)

	rows := messagesByUIDL(t, j, "alice")
	wantState := map[string]string{"u0000": StateVerified, "u0001": StateStored, "u0002": StateStored, "u0003": StateDeleted,
		"u0004": StateListed, "u0005": StateVerified}
	for uidl, st := range wantState {
		r := rows[uidl]
		if r.State != st {
			t.Errorf("%s: state %s, want %s (%+v)", uidl, r.State, st, r)
		}
		if (st == StateVerified) != r.VerifiedAt.Equal(at) {
			t.Errorf("%s: verified at %v, want %v only if verified now", uidl, r.VerifiedAt, at)
		}
		if uidl != "u0004" && uidl != "u0003" && (!r.StoredAt.Equal(t1) || r.SHA256 != sum("alice"+uidl)) {
			t.Errorf("%s: stored data %+v", uidl, r)
		}
	}
	d, err := j.Deliveries(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if got := d["u0005"]["eml"].VerifiedAt; !got.Equal(at) {
		t.Errorf("u0005 in eml: verified at %v, want %v", got, at)
	}
	for _, uidl := range []string{"u0000", "u0001", "u0002", "u0004", "u0005"} {
		if got := d[uidl]["maildir"].VerifiedAt; !got.Equal(at) {
			t.Errorf("%s in maildir: verified at %v, want %v", uidl, got, at)
		}
	}
	for _, uidl := range []string{"u0001", "u0002"} {
		if got := d[uidl]["imap"].VerifiedAt; !got.IsZero() {
			t.Errorf("%s in imap: verified at %v, want never", uidl, got)
		}
	}

	// Read back, but never listed: nothing of the batch is recorded.
	b.Stored(stored("alice", "u0004", true, "imap"))
	b.Stored(stored("alice", "nope", true, "maildir"))
	b.ReadBack(func(*StoredMessage, *Delivery) bool { return true }, time.Time{})
	if err := j.Commit(ctx, &b); !errors.Is(err, ErrNotListed) {
		t.Fatalf("Commit with a message never listed = %v, want ErrNotListed", err)
	}
	if r := messagesByUIDL(t, j, "alice")["u0004"]; r.State != StateListed {
		t.Errorf("a failed batch changed u0004: %+v", r)
	}
	if d, _ := j.Deliveries(ctx, "alice"); len(d["u0004"]) != 1 || len(d["nope"]) != 0 {
		t.Errorf("a failed batch recorded deliveries: %+v %+v", d["u0004"], d["nope"])
	}
}
