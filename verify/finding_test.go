package verify

import (
	"bytes"
	"strings"
	"testing"
)

func TestProblem(t *testing.T) {
	for _, k := range Kinds {
		want := k != Match && k != GoneFromServer && k != Suspect // the notes
		if got := (Finding{Kind: k}).Problem(); got != want {
			t.Errorf("%s: Problem() = %v, want %v", k, got, want)
		}
	}
}

func TestFindingString(t *testing.T) {
	sum1, sum2 := strings.Repeat("a", 64), strings.Repeat("b", 64)
	cases := []struct {
		f    Finding
		want string
	}{
		{Finding{Kind: Missing, Account: "alice", UIDL: "u1", DestID: "maildir:/m", Ref: "new/k.popmigrate", Detail: "gone"},
			"- alice u1 maildir:/m missing at new/k.popmigrate: gone"},
		{Finding{Kind: Extra, Account: "alice", DestID: "maildir:/m", Ref: "cur/k.popmigrate:2,S"},
			"+ alice ? maildir:/m extra at cur/k.popmigrate:2,S"},
		{Finding{Kind: Checksum, Account: "alice", UIDL: "u1", DestID: "mbox:/a", Ref: "0+100", Want: sum1, Got: sum2},
			"* alice u1 mbox:/a checksum differs (want " + sum1 + " got " + sum2 + ")"},
		{Finding{Kind: Size, Account: "alice", UIDL: "u1", DestID: "eml:/e", Ref: "alice/x.eml", Want: "100", Got: "40"},
			"* alice u1 eml:/e size differs (received 100 bytes, holds 40) at alice/x.eml"},
		{Finding{Kind: Unreadable, Account: "alice", UIDL: "u1", DestID: "maildir:/m", Detail: "permission denied"},
			"! alice u1 maildir:/m unreadable: permission denied"},
		{Finding{Kind: NotStored, Account: "alice", UIDL: "u7", DestID: "maildir:/m", Detail: "journal state failed"},
			"- alice u7 maildir:/m not stored: journal state failed"},
		{Finding{Kind: GoneFromServer, Account: "alice", UIDL: "u7"},
			"* alice u7 ? gone from the server (note)"},
		{Finding{Kind: Manifest, Account: "alice", Want: "3", Got: "2", Detail: "count"},
			"! alice ? ? manifest (want 3 got 2): count"},
		// UIDLs come from the server: spaces, quotes, escapes and line
		// breaks are quoted so a line stays one line.
		{Finding{Kind: Missing, Account: "alice", UIDL: "u1 dup2", DestID: "maildir:/my mail"},
			`- alice "u1 dup2" "maildir:/my mail" missing`},
		{Finding{Kind: Missing, Account: "alice", UIDL: "\x1b[2Jx\ny\"", DestID: "d", Detail: "bad\nthing\x1b"},
			`- alice "\x1b[2Jx\ny\"" d missing: bad\nthing\x1b`},
	}
	for _, tc := range cases {
		if got := tc.f.String(); got != tc.want {
			t.Errorf("String() =\n%s\nwant\n%s", got, tc.want)
		}
	}
}

func TestResultAdd(t *testing.T) {
	r := NewResult("alice")
	r.Add(Finding{Kind: Match, UIDL: "u1"})
	r.Add(Finding{Kind: Missing, UIDL: "u2"})
	r.Add(Finding{Kind: GoneFromServer, UIDL: "u3", Hint: "mine"})
	if len(r.Findings) != 2 || r.Counts[Match] != 1 || r.Counts[Missing] != 1 || r.Counts[GoneFromServer] != 1 {
		t.Fatalf("result %+v: matches are counted, not listed", r)
	}
	if f := r.Findings[0]; f.Account != "alice" || f.Hint != defaultHint(Missing) || f.Hint == "" {
		t.Errorf("finding %+v: want the result's account and the default hint", f)
	}
	if r.Findings[1].Hint != "mine" {
		t.Errorf("a finding's own hint was replaced: %q", r.Findings[1].Hint)
	}
	if r.Problems() != 1 || r.OK() {
		t.Errorf("Problems() = %d, OK() = %v; want 1, false", r.Problems(), r.OK())
	}
	ok := NewResult("bob")
	ok.Add(Finding{Kind: GoneFromServer})
	if !ok.OK() {
		t.Error("a result with a note only is not OK")
	}
	ok.Error = "server unreachable"
	if ok.OK() {
		t.Error("a result with an Error is OK")
	}
}

// TestSizeFits pins the bounds of the size check: a canonical copy of n
// bytes with l LFs can come from a message received as n to n+l bytes.
func TestSizeFits(t *testing.T) {
	canon := []byte("a\nbb\n\nc") // 7 bytes, 3 LFs
	st := copyStats{n: int64(len(canon)), lfs: int64(bytes.Count(canon, []byte("\n")))}
	for wire, want := range map[int64]bool{6: false, 7: true, 9: true, 10: true, 11: false} {
		if got := sizeFits(st, wire); got != want {
			t.Errorf("sizeFits(7 bytes, 3 LFs, received %d) = %v, want %v", wire, got, want)
		}
	}
}

func TestWriteReport(t *testing.T) {
	a := NewResult("alice")
	a.Checked = 3
	a.Add(Finding{Kind: Match})
	a.Add(Finding{Kind: Match})
	a.Add(Finding{Kind: Missing, UIDL: "u2", DestID: "maildir:/m"})
	a.Add(Finding{Kind: GoneFromServer, UIDL: "u9"})
	b := NewResult("bob")
	b.Error = "connect: refused"
	var out bytes.Buffer
	if err := WriteReport(&out, []*Result{a, b}); err != nil {
		t.Fatal(err)
	}
	want := `- alice u2 maildir:/m missing
* alice u9 ? gone from the server (note)
! bob not verified completely: connect: refused
alice: 3 copies checked: 2 match, 1 missing, 1 gone-from-server
bob: 0 copies checked
2 accounts: 3 copies checked: 2 match, 1 missing, 1 gone-from-server
1 problems, 1 notes
`
	if out.String() != want {
		t.Errorf("report:\n%s\nwant:\n%s", out.String(), want)
	}
}
