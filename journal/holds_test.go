package journal

import "testing"

// TestJournalHolds: Holds is false for an account the journal knows
// nothing of, and true once a listing recorded a message of it or it
// adopted a UIDL, on both backends.
func TestJournalHolds(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		j, _ := be.open(t)
		ctx := testCtx(t)
		holds := func(account string) bool {
			t.Helper()
			h, err := j.Holds(ctx, account)
			if err != nil {
				t.Fatal(err)
			}
			return h
		}
		if holds("new") {
			t.Error("Holds of an unknown account is true")
		}
		if err := j.RecordListing(ctx, "listed", "pop3s://listed@pop.example", listing("u", 3)); err != nil {
			t.Fatal(err)
		}
		if _, err := j.Adopt(ctx, "adopted", "mpop", "/home/a/.mpop_uidls/a", []string{"x1", "x2"}); err != nil {
			t.Fatal(err)
		}
		if !holds("listed") || !holds("adopted") || holds("new") {
			t.Errorf("Holds: listed %v, adopted %v, new %v; want true, true, false", holds("listed"), holds("adopted"), holds("new"))
		}
	})
}
