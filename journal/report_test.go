package journal

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// reportJournal returns a SQLite journal in which alice had messages
// stored at t0, t0+10s (twice) and t0+70s, bob one at t0+65s, and carol
// none (one failed), with the received sizes below. It uses no helper of
// the other tests, so that it reads as the fixture it is.
func reportJournal(t *testing.T) (*Journal, time.Time) {
	t.Helper()
	ctx := t.Context()
	j, err := Open(ctx, filepath.Join(t.TempDir(), "journal.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	now := t0
	j.now = func() time.Time { return now }
	for account, n := range map[string]int{"alice": 4, "bob": 1, "carol": 1} {
		var msgs []Listed
		for i := range n {
			msgs = append(msgs, Listed{UIDL: fmt.Sprintf("%s%d", account[:1], i), Kind: KindUIDL, Size: 1000})
		}
		if err := j.RecordListing(ctx, account, "pop3s://"+account+"@pop.example", msgs); err != nil {
			t.Fatal(err)
		}
	}
	commit := func(b *Batch) {
		t.Helper()
		if err := j.Commit(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	store := func(account, uidl string, size int64) {
		t.Helper()
		var b Batch
		b.Stored(StoredMessage{Account: account, UIDL: uidl, ReceivedSize: size,
			SHA256: strings.Repeat("0", 64), Complete: true,
			Deliveries: []Delivery{{DestID: "maildir", Ref: uidl}}})
		commit(&b)
	}
	store("alice", "a0", 100)
	now = now.Add(10 * time.Second)
	store("alice", "a1", 101)
	store("alice", "a2", 102)
	now = now.Add(55 * time.Second)
	store("bob", "b0", 500)
	now = now.Add(5 * time.Second)
	store("alice", "a3", 103)
	// Stored again later (a new copy after a lost one): stored_at keeps
	// the first store.
	now = now.Add(time.Hour)
	store("alice", "a0", 100)

	var b Batch
	b.Failed("carol", "c0", "retr 1: -ERR no such message")
	commit(&b)
	return j, t0
}

func TestReportThroughputBuckets(t *testing.T) {
	ctx := t.Context()
	j, t0 := reportJournal(t)
	got, err := j.Throughput(ctx, time.Minute, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	want := []Point{
		{Account: "alice", Start: t0, Messages: 3, Bytes: 303},
		{Account: "alice", Start: t0.Add(time.Minute), Messages: 1, Bytes: 103},
		{Account: "bob", Start: t0.Add(time.Minute), Messages: 1, Bytes: 500},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Throughput(1m) =\n%+v\nwant\n%+v", got, want)
	}

	// Buckets are aligned to the epoch, not to the first store: with 7s
	// buckets, t0 (a multiple of 60s since the epoch) starts a bucket
	// only if it is a multiple of 7s too.
	got, err = j.Throughput(ctx, 7*time.Second, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var bytes int64
	for _, p := range got {
		if p.Start.UnixNano()%int64(7*time.Second) != 0 {
			t.Errorf("bucket %v does not start at a multiple of 7s", p.Start)
		}
		if p.Start.Location() != time.UTC {
			t.Errorf("bucket %v is not UTC", p.Start)
		}
		bytes += p.Bytes
	}
	if bytes != 906 {
		t.Errorf("7s buckets sum to %d bytes, want 906", bytes)
	}
}

// The period is [from, to): a store at to is outside it.
func TestReportThroughputPeriod(t *testing.T) {
	ctx := t.Context()
	j, t0 := reportJournal(t)
	got, err := j.Throughput(ctx, time.Minute, t0.Add(10*time.Second), t0.Add(70*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	want := []Point{
		{Account: "alice", Start: t0, Messages: 2, Bytes: 203},
		{Account: "bob", Start: t0.Add(time.Minute), Messages: 1, Bytes: 500},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Throughput in [t0+10s, t0+70s) =\n%+v\nwant\n%+v", got, want)
	}
	if _, err := j.Throughput(ctx, 0, time.Time{}, time.Time{}); err == nil {
		t.Error("Throughput with a zero bucket: no error")
	}
}

func TestReportStoreActivity(t *testing.T) {
	ctx := t.Context()
	j, t0 := reportJournal(t)
	got, err := j.StoreActivity(ctx, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	want := []StoreActivity{
		{Account: "alice", Messages: 4, Bytes: 406, FirstStored: t0, LastStored: t0.Add(70 * time.Second)},
		{Account: "bob", Messages: 1, Bytes: 500, FirstStored: t0.Add(65 * time.Second), LastStored: t0.Add(65 * time.Second)},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("StoreActivity =\n%+v\nwant\n%+v", got, want)
	}

	got, err = j.StoreActivity(ctx, t0.Add(time.Second), t0.Add(66*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	want = []StoreActivity{
		{Account: "alice", Messages: 2, Bytes: 203, FirstStored: t0.Add(10 * time.Second), LastStored: t0.Add(10 * time.Second)},
		{Account: "bob", Messages: 1, Bytes: 500, FirstStored: t0.Add(65 * time.Second), LastStored: t0.Add(65 * time.Second)},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("StoreActivity in [t0+1s, t0+66s) =\n%+v\nwant\n%+v", got, want)
	}
}

// The report's queries work on a journal opened read-only, and write
// nothing.
func TestReportQueriesReadOnly(t *testing.T) {
	ctx := t.Context()
	j, _ := reportJournal(t)
	path := j.Path()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	ro, err := OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	pts, err := ro.Throughput(ctx, time.Minute, time.Time{}, time.Time{})
	if err != nil || len(pts) != 3 {
		t.Errorf("read-only Throughput: %d points, %v; want 3", len(pts), err)
	}
	act, err := ro.StoreActivity(ctx, time.Time{}, time.Time{})
	if err != nil || len(act) != 2 {
		t.Errorf("read-only StoreActivity: %d accounts, %v; want 2", len(act), err)
	}
	if _, err := ro.StartRun(ctx, "x"); !errors.Is(err, ErrReadOnly) {
		t.Errorf("StartRun on the read-only journal: %v, want ErrReadOnly", err)
	}
}
