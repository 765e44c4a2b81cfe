package journal

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"testing"
	"time"
)

// testCtx returns a context that ends with the test or after 30s.
func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// openTest opens a fresh SQLite journal in a temporary directory and closes
// it at the end of the test (see backend.open).
func openTest(t testing.TB) (*Journal, string) {
	t.Helper()
	return sqliteBackend.open(t)
}

// open opens a fresh journal on be and closes it at the end of the test.
// It returns the journal and its path.
func (be backend) open(t testing.TB) (*Journal, string) {
	t.Helper()
	path := be.newPath(t)
	j, err := Open(testCtx(t), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := j.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return j, path
}

// clock is a settable clock for Journal.now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(j *Journal) *clock {
	c := &clock{t: time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)}
	j.now = c.now
	return c
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func listing(prefix string, n int) []Listed {
	msgs := make([]Listed, n)
	for i := range msgs {
		msgs[i] = Listed{UIDL: fmt.Sprintf("%s%04d", prefix, i), Kind: KindUIDL, Size: int64(100 + i)}
	}
	return msgs
}

func stored(account, uidl string, complete bool, dests ...string) StoredMessage {
	m := StoredMessage{Account: account, UIDL: uidl, ReceivedSize: 42, SHA256: sum(account + uidl), Complete: complete}
	for _, d := range dests {
		m.Deliveries = append(m.Deliveries, Delivery{DestID: d, Ref: d + ":" + uidl})
	}
	return m
}

func mustListing(t testing.TB, j *Journal, account string, msgs []Listed) {
	t.Helper()
	if err := j.RecordListing(testCtx(t), account, "pop3s://"+account+"@pop.example:995", msgs); err != nil {
		t.Fatalf("RecordListing(%s): %v", account, err)
	}
}

func mustCommit(t testing.TB, j *Journal, b *Batch) {
	t.Helper()
	if err := j.Commit(testCtx(t), b); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	b.Reset()
}

func messagesByUIDL(t testing.TB, j *Journal, account string) map[string]MessageRow {
	t.Helper()
	rows, err := j.Messages(testCtx(t), account)
	if err != nil {
		t.Fatalf("Messages(%s): %v", account, err)
	}
	out := make(map[string]MessageRow, len(rows))
	for _, r := range rows {
		out[r.UIDL] = r
	}
	return out
}

func statusOf(t testing.TB, j *Journal, account string) AccountStatus {
	t.Helper()
	st, err := j.Status(testCtx(t))
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	for _, a := range st {
		if a.Account == account {
			return a
		}
	}
	t.Fatalf("Status: no account %q in %+v", account, st)
	return AccountStatus{}
}
