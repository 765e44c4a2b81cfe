package journal

import (
	"errors"
	"strings"
	"testing"
)

// The journal describes its migration: accounts, their sources and every
// destination they were run with, specs included.
func TestJournalDescribesItsAccounts(t *testing.T) {
	forEachBackend(t, testJournalDescribesItsAccounts)
}

func testJournalDescribesItsAccounts(t *testing.T, be backend) {
	j, _ := be.open(t)
	ctx := testCtx(t)
	if err := j.SaveDestinations(ctx, "bob", "pop3s://bob@h:995", []AccountDestination{{ID: "maildir:/m/bob", Spec: "maildir:/m/bob"}}); err != nil {
		t.Fatal(err)
	}
	imap := AccountDestination{ID: "imap://alice@h:993/INBOX", Spec: "imaps://alice@h/INBOX"}
	if err := j.SaveDestinations(ctx, "alice", "pop3s://alice@h:995", []AccountDestination{imap}); err != nil {
		t.Fatal(err)
	}
	// A later run with another destination adds it; the first stays.
	mbox := AccountDestination{ID: "mbox:/a/alice.mbox", Spec: "mbox:/a/alice.mbox"}
	if err := j.SaveDestinations(ctx, "alice", "", []AccountDestination{mbox}); err != nil {
		t.Fatal(err)
	}
	got, err := j.Accounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "alice" || got[0].Source != "pop3s://alice@h:995" || len(got[0].Destinations) != 2 ||
		got[0].Destinations[0] != imap || got[0].Destinations[1] != mbox || got[1].Name != "bob" || len(got[1].Destinations) != 1 {
		t.Fatalf("Accounts = %+v", got)
	}
	if err := j.SaveDestinations(ctx, "carol", "pop3s://carol:secret@h", nil); err == nil {
		t.Error("a source with a password was recorded")
	}
	if err := j.SaveDestinations(ctx, "carol", "", []AccountDestination{{ID: "x", Spec: "imaps://carol:secret@h/INBOX"}}); err == nil {
		t.Error("a spec with a password was recorded")
	}
	// SaveAccounts records all of its accounts or none: one bad account
	// refuses the batch.
	batch := []AccountInfo{
		{Name: "dan", Source: "pop3s://dan@h:995", Destinations: []AccountDestination{{ID: "maildir:/m/dan", Spec: "maildir:/m/dan"}}},
		{Name: "eve", Source: "pop3s://eve:secret@h:995"},
	}
	if err := j.SaveAccounts(ctx, batch); err == nil {
		t.Error("a batch with a password in a source was recorded")
	}
	if got, err = j.Accounts(ctx); err != nil || len(got) != 2 {
		t.Fatalf("Accounts after a refused batch = %+v, %v; want alice and bob only", got, err)
	}
	batch[1].Source = "pop3s://eve@h:995"
	if err := j.SaveAccounts(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if got, err = j.Accounts(ctx); err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[2].Name != "dan" || len(got[2].Destinations) != 1 || got[3].Name != "eve" || got[3].Source != "pop3s://eve@h:995" {
		t.Fatalf("Accounts after SaveAccounts = %+v", got)
	}
}

func TestJournalDescribesItselfReadOnly(t *testing.T) {
	j, path := openTest(t)
	ctx := testCtx(t)
	if err := j.SaveDestinations(ctx, "bob", "pop3s://bob@h:995", []AccountDestination{{ID: "eml:/e", Spec: "eml:/e"}}); err != nil {
		t.Fatal(err)
	}
	ro, err := OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if got, err := ro.Accounts(ctx); err != nil || len(got) != 1 || len(got[0].Destinations) != 1 {
		t.Fatalf("read-only Accounts = %+v, %v", got, err)
	}
	if err := ro.SaveDestinations(ctx, "x", "", nil); !errors.Is(err, ErrReadOnly) {
		t.Errorf("read-only SaveDestinations = %v, want ErrReadOnly", err)
	}
}

// A session's first listing records the account's destinations in its own
// transaction; a destination whose spec carries a password refuses the
// whole listing, which records nothing.
func TestListingRecordsDestinations(t *testing.T) {
	forEachBackend(t, testListingRecordsDestinations)
}

func testListingRecordsDestinations(t *testing.T, be backend) {
	j, _ := be.open(t)
	ctx := testCtx(t)
	md := AccountDestination{ID: "maildir:/m/carol", Spec: "maildir:/m/carol"}
	if err := j.RecordListingWith(ctx, "carol", "pop3s://carol@h:995", listing("u", 3), []AccountDestination{md}); err != nil {
		t.Fatal(err)
	}
	got, err := j.Accounts(ctx)
	if err != nil || len(got) != 1 || got[0].Source != "pop3s://carol@h:995" || len(got[0].Destinations) != 1 || got[0].Destinations[0] != md {
		t.Fatalf("Accounts = %+v, %v; want carol with her Maildir", got, err)
	}
	if st := statusOf(t, j, "carol"); st.ServerCount != 3 || st.Listed != 3 {
		t.Errorf("status = %+v, want 3 listed", st)
	}

	bad := AccountDestination{ID: "imap://dave@h:993/INBOX", Spec: "imaps://dave:secret@h/INBOX"}
	if err := j.RecordListingWith(ctx, "dave", "pop3s://dave@h:995", listing("u", 2), []AccountDestination{bad}); err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("a listing with a password in a destination = %v, want a refusal that does not repeat it", err)
	}
	if got, err := j.Accounts(ctx); err != nil || len(got) != 1 {
		t.Errorf("the refused listing recorded %+v, %v", got, err)
	}
}
