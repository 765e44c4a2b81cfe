package journal

import (
	"errors"
	"reflect"
	"testing"
)

// TestRebuilt: a Rebuilt write is recorded with the batch's Stored write,
// a later one replaces it, and one of a message never listed, or with an
// unknown match, records nothing of the batch.
func TestRebuilt(t *testing.T) { forEachBackend(t, testRebuilt) }

func testRebuilt(t *testing.T, be backend) {
	j, _ := be.open(t)
	ctx := testCtx(t)
	mustListing(t, j, "alice", listing("u", 3))
	var b Batch
	b.Stored(stored("alice", "u0000", true, "maildir"))
	b.Rebuilt("alice", "u0000", MatchedByKey)
	b.Stored(stored("alice", "u0001", true, "imap"))
	b.Rebuilt("alice", "u0001", MatchedByHeaders)
	mustCommit(t, j, &b)
	got, err := j.Rebuilt(ctx, "alice")
	if want := map[string]string{"u0000": MatchedByKey, "u0001": MatchedByHeaders}; err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Rebuilt = %v, %v; want %v", got, err, want)
	}

	b.Reset()
	b.Rebuilt("alice", "u0001", MatchedByContent) // confirmed later
	mustCommit(t, j, &b)
	if got, _ := j.Rebuilt(ctx, "alice"); got["u0001"] != MatchedByContent {
		t.Errorf("after confirmation u0001 is matched by %q, want %q", got["u0001"], MatchedByContent)
	}

	b.Reset()
	b.Rebuilt("alice", "u0002", MatchedByHeaders)
	b.Rebuilt("alice", "never-listed", MatchedByHeaders)
	if err := j.Commit(ctx, &b); !errors.Is(err, ErrNotListed) {
		t.Errorf("Commit with a message never listed = %v, want ErrNotListed", err)
	}
	b.Reset()
	b.Rebuilt("alice", "u0002", "guess")
	if err := j.Commit(ctx, &b); err == nil {
		t.Error("Commit with an unknown match succeeded")
	}
	if got, _ := j.Rebuilt(ctx, "alice"); len(got) != 2 {
		t.Errorf("failed batches recorded something: %v", got)
	}
	if got, err := j.Rebuilt(ctx, "bob"); err != nil || got == nil || len(got) != 0 {
		t.Errorf("Rebuilt of an unknown account = %#v, %v; want an empty map", got, err)
	}
}
