package journal

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestRecordListingIsIdempotent(t *testing.T) { forEachBackend(t, testRecordListingIsIdempotent) }

func testRecordListingIsIdempotent(t *testing.T, be backend) {
	j, _ := be.open(t)
	c := newClock(j)
	first := c.now()
	msgs := listing("u", 5)
	mustListing(t, j, "alice", msgs)
	before := messagesByUIDL(t, j, "alice")

	second := c.advance(time.Hour)
	mustListing(t, j, "alice", msgs)
	after := messagesByUIDL(t, j, "alice")

	if len(after) != 5 {
		t.Fatalf("%d rows after listing twice, want 5", len(after))
	}
	for uidl, b := range before {
		a := after[uidl]
		if a.State != StateListed || a.Kind != KindUIDL || a.ListedSize != b.ListedSize || a.Attempts != 0 {
			t.Errorf("%s: %+v after relisting, was %+v", uidl, a, b)
		}
		if !a.FirstSeen.Equal(first) || !a.LastSeen.Equal(second) {
			t.Errorf("%s: first_seen %v last_seen %v, want %v and %v", uidl, a.FirstSeen, a.LastSeen, first, second)
		}
	}
	st := statusOf(t, j, "alice")
	if st.ServerCount != 5 || st.ServerBytes != 100+101+102+103+104 || st.Listed != 5 || !st.LastRun.Equal(second) ||
		st.Source != "pop3s://alice@pop.example:995" {
		t.Errorf("status = %+v", st)
	}
}

func TestRecordListingUpdatesSizeAndKeepsKind(t *testing.T) {
	forEachBackend(t, testRecordListingUpdatesSizeAndKeepsKind)
}

func testRecordListingUpdatesSizeAndKeepsKind(t *testing.T, be backend) {
	j, _ := be.open(t)
	mustListing(t, j, "alice", []Listed{{UIDL: "x", Kind: KindSynthetic, Size: 10}})
	mustListing(t, j, "alice", []Listed{{UIDL: "x", Kind: KindUIDL, Size: 12}, {UIDL: "y", Kind: KindDup, Size: 3}})
	rows := messagesByUIDL(t, j, "alice")
	if r := rows["x"]; r.ListedSize != 12 || r.Kind != KindSynthetic {
		t.Errorf("x = %+v, want size 12, kind synthetic", r)
	}
	if r := rows["y"]; r.Kind != KindDup || r.ListedSize != 3 {
		t.Errorf("y = %+v", r)
	}
	if st := statusOf(t, j, "alice"); st.ServerCount != 2 || st.ServerBytes != 15 {
		t.Errorf("server count/bytes %d/%d, want 2/15 (the last listing)", st.ServerCount, st.ServerBytes)
	}
}

func TestRecordListingNeverLowersState(t *testing.T) {
	forEachBackend(t, testRecordListingNeverLowersState)
}

func testRecordListingNeverLowersState(t *testing.T, be backend) {
	j, _ := be.open(t)
	ctx := testCtx(t)
	mustListing(t, j, "alice", listing("u", 5))
	var b Batch
	b.Stored(stored("alice", "u0001", true, "d"))
	b.Stored(stored("alice", "u0002", true, "d"))
	b.Verified("alice", "u0002", "d", time.Time{})
	b.Stored(stored("alice", "u0003", true, "d"))
	b.Failed("alice", "u0004", "RETR: -ERR gone")
	mustCommit(t, j, &b)
	if err := j.MarkDeleted(ctx, "alice", []string{"u0003"}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"u0000": StateListed, "u0001": StateStored, "u0002": StateVerified, "u0003": StateDeleted, "u0004": StateFailed,
	}
	check := func(when string) {
		t.Helper()
		for uidl, r := range messagesByUIDL(t, j, "alice") {
			if r.State != want[uidl] {
				t.Errorf("%s: %s state %s, want %s", when, uidl, r.State, want[uidl])
			}
		}
	}
	check("before relisting")
	mustListing(t, j, "alice", listing("u", 5))
	check("after relisting")
	if r := messagesByUIDL(t, j, "alice")["u0004"]; r.Error != "RETR: -ERR gone" || r.Attempts != 1 {
		t.Errorf("relisting touched the failure: %+v", r)
	}
}

func TestRecordListingRefusesBadInput(t *testing.T) {
	forEachBackend(t, testRecordListingRefusesBadInput)
}

func testRecordListingRefusesBadInput(t *testing.T, be backend) {
	j, _ := be.open(t)
	ctx := testCtx(t)
	const secret = "hunter2"
	for _, tc := range []struct {
		name, account, source string
		msgs                  []Listed
		want                  string
	}{
		{"empty account", "", "", listing("u", 1), "empty account"},
		{"password in source", "alice", "pop3s://alice:" + secret + "@pop.example:995", listing("u", 1), "password"},
		{"unparsable source with user info", "alice", "pop3s://alice:" + secret + "%zz@pop.example", listing("u", 1), "password"},
		{"empty uidl", "alice", "", []Listed{{UIDL: "", Kind: KindUIDL, Size: 1}}, "empty uidl"},
		{"unknown kind", "alice", "", []Listed{{UIDL: "a", Kind: "guess", Size: 1}}, `unknown kind "guess"`},
		{"negative size", "alice", "", []Listed{{UIDL: "a", Kind: KindUIDL, Size: -1}}, "negative size"},
		{"duplicate uidl", "alice", "", []Listed{{UIDL: "a", Kind: KindUIDL, Size: 1}, {UIDL: "a", Kind: KindUIDL, Size: 2}}, `uidl "a" listed twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := j.RecordListing(ctx, tc.account, tc.source, tc.msgs)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.HasPrefix(err.Error(), "journal: ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error repeats the password: %q", err)
			}
		})
	}
	st, err := j.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 0 {
		t.Errorf("refused listings recorded something: %+v", st)
	}
}

func TestUIDLIsStoredAsData(t *testing.T) { forEachBackend(t, testUIDLIsStoredAsData) }

func testUIDLIsStoredAsData(t *testing.T, be backend) {
	j, _ := be.open(t)
	ctx := testCtx(t)
	// Also bytes PostgreSQL's text cannot hold (NUL, invalid UTF-8), and
	// what its escape looks like.
	weird := []string{"../../etc/passwd", "a/b:c*d", "x'); DROP TABLE messages; --", "nul\x00byte", "ünï©ødé", "%3F?#",
		"latin1 \xe9t\xe9", "\xff", "\x01", "\x01" + "6869", "?", "'?'"}
	var msgs []Listed
	for _, u := range weird {
		msgs = append(msgs, Listed{UIDL: u, Kind: KindUIDL, Size: 1})
	}
	mustListing(t, j, "alice", msgs)
	var b Batch
	for _, u := range weird {
		b.Stored(stored("alice", u, true, "d"))
	}
	mustCommit(t, j, &b)
	rows := messagesByUIDL(t, j, "alice")
	d, err := j.Deliveries(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range weird {
		if rows[u].State != StateStored {
			t.Errorf("uidl %q: row %+v", u, rows[u])
		}
		if d[u]["d"].Ref != "d:"+u {
			t.Errorf("uidl %q: delivery %+v", u, d[u])
		}
	}
	if len(rows) != len(weird) {
		t.Errorf("%d rows, want %d", len(rows), len(weird))
	}
}

func TestSetAccountError(t *testing.T) { forEachBackend(t, testSetAccountError) }

func testSetAccountError(t *testing.T, be backend) {
	j, _ := be.open(t)
	ctx := testCtx(t)
	// An account whose session failed before any listing.
	if err := j.SetAccountError(ctx, "bob", "pop3: auth: -ERR [AUTH] invalid credentials"); err != nil {
		t.Fatal(err)
	}
	st := statusOf(t, j, "bob")
	if st.LastError != "pop3: auth: -ERR [AUTH] invalid credentials" || st.Source != "" || !st.LastRun.IsZero() {
		t.Errorf("status = %+v", st)
	}
	// A later listing keeps the error; clearing it is explicit.
	mustListing(t, j, "bob", listing("u", 1))
	if st := statusOf(t, j, "bob"); st.LastError == "" || st.ServerCount != 1 {
		t.Errorf("after listing: %+v", st)
	}
	if err := j.SetAccountError(ctx, "bob", ""); err != nil {
		t.Fatal(err)
	}
	if st := statusOf(t, j, "bob"); st.LastError != "" {
		t.Errorf("error not cleared: %q", st.LastError)
	}
	// A flood is clipped and made valid UTF-8.
	long := "x" + strings.Repeat("é", maxErrorText) // 2 bytes each after "x": the cut lands mid-rune
	if err := j.SetAccountError(ctx, "bob", long); err != nil {
		t.Fatal(err)
	}
	got := statusOf(t, j, "bob").LastError
	if len(got) > maxErrorText+3 || !strings.HasPrefix(got, long[:maxErrorText-1]) || !utf8.ValidString(got) {
		t.Errorf("error text of %d bytes stored as %d bytes (valid UTF-8: %v)", len(long), len(got), utf8.ValidString(got))
	}
}

// Messages, failures and accounts come in byte order on both backends,
// whatever the database's locale would sort by (the test PostgreSQL
// databases sort text the English way by default).
func TestOrderIsByteOrder(t *testing.T) { forEachBackend(t, testOrderIsByteOrder) }

func testOrderIsByteOrder(t *testing.T, be backend) {
	j, _ := be.open(t)
	ctx := testCtx(t)
	uidls := []string{"b", "B", "a", "_", "é", "Z", "a-1", "a1", "A"}
	want := []string{"A", "B", "Z", "_", "a", "a-1", "a1", "b", "é"}
	for _, account := range []string{"bob", "Alice", "_x"} {
		var msgs []Listed
		for _, u := range uidls {
			msgs = append(msgs, Listed{UIDL: u, Kind: KindUIDL, Size: 1})
		}
		mustListing(t, j, account, msgs)
	}
	var b Batch
	for _, u := range uidls {
		b.Failed("bob", u, "x")
	}
	mustCommit(t, j, &b)

	rows, err := j.Messages(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows {
		got = append(got, r.UIDL)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("Messages order %q, want %q", got, want)
	}
	st, err := j.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var accounts, failures []string
	for _, a := range st {
		accounts = append(accounts, a.Account)
		if a.Account == "bob" {
			for _, f := range a.Failures {
				failures = append(failures, f.UIDL)
			}
		}
	}
	if strings.Join(accounts, " ") != "Alice _x bob" {
		t.Errorf("Status order %q, want [Alice _x bob]", accounts)
	}
	if strings.Join(failures, " ") != strings.Join(want, " ") {
		t.Errorf("failures order %q, want %q", failures, want)
	}
}
