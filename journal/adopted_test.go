package journal

import (
	"reflect"
	"strings"
	"testing"
)

func TestAdoptIsIdempotent(t *testing.T) { forEachBackend(t, testAdoptIsIdempotent) }

func testAdoptIsIdempotent(t *testing.T, be backend) {
	j, _ := be.open(t)
	ctx := testCtx(t)
	uidls := []string{"a1", "a2", "a3", "a2"} // a repeat counts once
	added, err := j.Adopt(ctx, "alice", "mpop", "/home/alice/.mpop_uidls/alice_at_pop", uidls)
	if err != nil || added != 3 {
		t.Fatalf("Adopt = %d, %v; want 3 added", added, err)
	}
	added, err = j.Adopt(ctx, "alice", "mpop", "/home/alice/.mpop_uidls/alice_at_pop", uidls)
	if err != nil || added != 0 {
		t.Fatalf("second Adopt = %d, %v; want 0 added", added, err)
	}
	// Another file naming some of them again adds only the new ones.
	added, err = j.Adopt(ctx, "alice", "getmail", "/home/alice/.getmail/oldmail-pop-995-alice", []string{"a3", "a4"})
	if err != nil || added != 1 {
		t.Fatalf("Adopt of an overlapping file = %d, %v; want 1 added", added, err)
	}
	got := mustAdopted(t, j, "alice")
	if want := map[string]bool{"a1": true, "a2": true, "a3": true, "a4": true}; !reflect.DeepEqual(got, want) {
		t.Errorf("Adopted = %v, want %v", got, want)
	}
	var tool, file string
	if err := j.r.QueryRowContext(ctx, j.q(`SELECT tool, file FROM adopted WHERE account = ? AND uidl = ?`), "alice", "a3").
		Scan(&tool, &file); err != nil || tool != "mpop" || !strings.HasSuffix(file, "alice_at_pop") {
		t.Errorf("a3 adopted from %q %q (%v); the first adoption must stay", tool, file, err)
	}
	if got := mustAdopted(t, j, "bob"); got == nil || len(got) != 0 {
		t.Errorf("Adopted of an unknown account = %#v, want an empty set", got)
	}
}

// TestAdoptLeavesWhatPopmigrateStored pins that a UIDL with a recorded
// copy in any destination stays popmigrate's: it is not adopted, so it is
// verified and deleted like any other.
func TestAdoptLeavesWhatPopmigrateStored(t *testing.T) {
	forEachBackend(t, testAdoptLeavesWhatPopmigrateStored)
}

func testAdoptLeavesWhatPopmigrateStored(t *testing.T, be backend) {
	j, _ := be.open(t)
	ctx := testCtx(t)
	mustListing(t, j, "alice", listing("u", 4))
	var b Batch
	b.Stored(stored("alice", "u0000", true, "maildir"))              // stored everywhere
	b.Stored(stored("alice", "u0001", false, "maildir"))             // stored in some destinations
	b.Failed("alice", "u0002", "pop3: retr 3: -ERR no such message") // listed, failed
	mustCommit(t, j, &b)

	added, err := j.Adopt(ctx, "alice", "fetchmail", "/home/alice/.fetchids", []string{"u0000", "u0001", "u0002", "u0003", "x9"})
	if err != nil || added != 3 {
		t.Fatalf("Adopt = %d, %v; want 3 (u0002, u0003 and x9)", added, err)
	}
	if got, want := mustAdopted(t, j, "alice"), map[string]bool{"u0002": true, "u0003": true, "x9": true}; !reflect.DeepEqual(got, want) {
		t.Errorf("Adopted = %v, want %v", got, want)
	}
	rows := messagesByUIDL(t, j, "alice")
	if rows["u0000"].State != StateStored || rows["u0001"].State != StateListed || rows["u0002"].State != StateFailed {
		t.Errorf("adopting changed the messages: %+v", rows)
	}
	// Status counts a listed or failed message that is adopted as
	// adopted only; the failure list leaves it out.
	st := statusOf(t, j, "alice")
	if st.Adopted != 3 || st.Stored != 1 || st.Listed != 1 || st.Failed != 0 || len(st.Failures) != 0 {
		t.Errorf("status %+v: want 3 adopted, 1 stored, 1 listed (u0001), none failed", st)
	}
}

func TestAdoptCreatesTheAccount(t *testing.T) { forEachBackend(t, testAdoptCreatesTheAccount) }

func testAdoptCreatesTheAccount(t *testing.T, be backend) {
	j, _ := be.open(t)
	ctx := testCtx(t)
	if _, err := j.Adopt(ctx, "carol@pop.example", "getmail", "oldmail-pop.example-995-carol", []string{"c1", "c2"}); err != nil {
		t.Fatal(err)
	}
	st := statusOf(t, j, "carol@pop.example")
	if st.Adopted != 2 || st.Source != "" || !st.LastRun.IsZero() || st.Listed != 0 {
		t.Errorf("status %+v: want 2 adopted, never listed", st)
	}
	// A later listing of the adopted messages leaves them adopted, not
	// waiting to be stored.
	mustListing(t, j, "carol@pop.example", []Listed{{UIDL: "c1", Kind: KindUIDL, Size: 10}, {UIDL: "c3", Kind: KindUIDL, Size: 30}})
	st = statusOf(t, j, "carol@pop.example")
	if st.Adopted != 2 || st.Listed != 1 || st.ServerCount != 2 {
		t.Errorf("status after a listing %+v: want 2 adopted, 1 listed (c3), 2 on the server", st)
	}
}

// TestAdoptedUIDLsAreData pins that UIDLs from a state file are stored as
// they are, whatever their bytes, and match the server's UIDLs stored by
// a listing.
func TestAdoptedUIDLsAreData(t *testing.T) { forEachBackend(t, testAdoptedUIDLsAreData) }

func testAdoptedUIDLsAreData(t *testing.T, be backend) {
	j, _ := be.open(t)
	ctx := testCtx(t)
	odd := []string{"with space", "quote'\"", "nul\x00byte", "bad\xffutf8", escapedOpaque + "x", "../../etc", "ünï"}
	added, err := j.Adopt(ctx, "alice", "mpop", "/tmp/uidls \xff", odd)
	if err != nil || added != len(odd) {
		t.Fatalf("Adopt = %d, %v", added, err)
	}
	got := mustAdopted(t, j, "alice")
	for _, u := range odd {
		if !got[u] {
			t.Errorf("UIDL %q did not round-trip; got %v", u, got)
		}
	}
	// A copy recorded under an odd UIDL keeps it from being adopted.
	msgs := []Listed{{UIDL: "bad\xfe", Kind: KindUIDL, Size: 1}}
	mustListing(t, j, "alice", msgs)
	var b Batch
	b.Stored(stored("alice", "bad\xfe", true, "maildir"))
	mustCommit(t, j, &b)
	if added, err := j.Adopt(ctx, "alice", "mpop", "f", []string{"bad\xfe"}); err != nil || added != 0 {
		t.Errorf("Adopt of a stored odd UIDL = %d, %v; want 0", added, err)
	}
}

func TestAdoptRefusesBadInput(t *testing.T) {
	j, _ := openTest(t)
	ctx := testCtx(t)
	for name, call := range map[string]func() (int, error){
		"empty account": func() (int, error) { return j.Adopt(ctx, "", "mpop", "f", []string{"u"}) },
		"empty tool":    func() (int, error) { return j.Adopt(ctx, "alice", "", "f", []string{"u"}) },
		"empty file":    func() (int, error) { return j.Adopt(ctx, "alice", "mpop", "", []string{"u"}) },
		"empty UIDL":    func() (int, error) { return j.Adopt(ctx, "alice", "mpop", "f", []string{"u", ""}) },
	} {
		if n, err := call(); err == nil || n != 0 {
			t.Errorf("%s: Adopt = %d, %v; want an error", name, n, err)
		}
	}
	if got := mustAdopted(t, j, "alice"); len(got) != 0 {
		t.Errorf("a refused Adopt recorded %v", got)
	}
	if st, err := j.Status(ctx); err != nil || len(st) != 0 {
		t.Errorf("a refused Adopt created an account: %+v, %v", st, err)
	}
}

func mustAdopted(t testing.TB, j *Journal, account string) map[string]bool {
	t.Helper()
	got, err := j.Adopted(testCtx(t), account)
	if err != nil {
		t.Fatalf("Adopted(%s): %v", account, err)
	}
	return got
}
