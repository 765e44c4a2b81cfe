package journal

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestBatchMismatchUndoesVerification(t *testing.T) {
	forEachBackend(t, testBatchMismatchUndoesVerification)
}

func testBatchMismatchUndoesVerification(t *testing.T, be backend) {
	ctx := context.Background()
	j, err := Open(ctx, be.newPath(t))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if err := j.RecordListing(ctx, "a", "pop3s://a@h:995", []Listed{{UIDL: "u1", Kind: KindUIDL, Size: 10}, {UIDL: "u2", Kind: KindUIDL, Size: 10}}); err != nil {
		t.Fatal(err)
	}
	sum := strings.Repeat("ab", 32)
	var b Batch
	for _, u := range []string{"u1", "u2"} {
		b.Stored(StoredMessage{Account: "a", UIDL: u, ReceivedSize: 10, SHA256: sum, Complete: true,
			Deliveries: []Delivery{{DestID: "d1", Ref: "r-" + u}, {DestID: "d2", Ref: "r-" + u}}})
		b.Verified("a", u, "d1", time.Time{})
		b.Verified("a", u, "d2", time.Time{})
	}
	if err := j.Commit(ctx, &b); err != nil {
		t.Fatal(err)
	}
	if err := j.MarkDeleted(ctx, "a", []string{"u2"}); err != nil {
		t.Fatal(err)
	}
	b.Reset()
	b.Mismatch("a", "u1", "d2", "verify: checksum in d2")
	b.Mismatch("a", "u2", "d1", "verify: missing in d1")
	if err := j.Commit(ctx, &b); err != nil {
		t.Fatal(err)
	}
	rows, err := j.Messages(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]MessageRow{}
	for _, r := range rows {
		states[r.UIDL] = r
	}
	if r := states["u1"]; r.State != StateStored || !r.VerifiedAt.IsZero() || r.Error != "verify: checksum in d2" {
		t.Errorf("u1 = %+v, want stored, no verified_at, the verify error", r)
	}
	if r := states["u2"]; r.State != StateDeleted {
		t.Errorf("u2 = %+v: a deleted message stays deleted", r)
	}
	dels, err := j.Deliveries(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if !dels["u1"]["d2"].VerifiedAt.IsZero() || dels["u1"]["d1"].VerifiedAt.IsZero() {
		t.Errorf("u1 deliveries %+v: only d2's mark must be cleared", dels["u1"])
	}
	b.Reset()
	b.Mismatch("a", "", "d1", "x")
	if err := j.Commit(ctx, &b); err == nil {
		t.Error("a mismatch without uidl was accepted")
	}
}

func TestBatchLostForgetsTheCopy(t *testing.T) { forEachBackend(t, testBatchLostForgetsTheCopy) }

func testBatchLostForgetsTheCopy(t *testing.T, be backend) {
	ctx := context.Background()
	j, err := Open(ctx, be.newPath(t))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if err := j.RecordListing(ctx, "a", "pop3s://a@h:995", []Listed{{UIDL: "u1", Kind: KindUIDL, Size: 10}}); err != nil {
		t.Fatal(err)
	}
	var b Batch
	b.Stored(StoredMessage{Account: "a", UIDL: "u1", ReceivedSize: 10, SHA256: strings.Repeat("cd", 32), Complete: true,
		Deliveries: []Delivery{{DestID: "d1", Ref: "r1"}, {DestID: "d2", Ref: "r2"}}})
	b.Verified("a", "u1", "d1", time.Time{})
	b.Verified("a", "u1", "d2", time.Time{})
	b.Lost("a", "u1", "d2", "verify: missing in d2")
	if err := j.Commit(ctx, &b); err != nil {
		t.Fatal(err)
	}
	dels, err := j.Deliveries(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := dels["u1"]["d2"]; ok || len(dels["u1"]) != 1 {
		t.Errorf("deliveries %+v: the lost copy must be forgotten, the other kept", dels["u1"])
	}
	rows, err := j.Messages(ctx, "a")
	if err != nil || len(rows) != 1 || rows[0].State != StateFailed || rows[0].Error != "verify: missing in d2" {
		t.Fatalf("rows %+v, %v: want failed with the verify error", rows, err)
	}
}
