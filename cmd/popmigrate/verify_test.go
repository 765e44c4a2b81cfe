package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/maildir"
	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

// verifyFixture is a fixture whose user alice has n messages that a run
// (through Main) stored in a Maildir, an mbox file and an eml tree.
type verifyFixture struct {
	*fixture
	maildir, mbox, eml string // destination paths of alice
	dests              []string
}

func newVerifyFixture(t *testing.T, n int) *verifyFixture {
	t.Helper()
	f := newFixture(t, []string{"alice"}, []int{n}, pop3test.ServerOptions{Implicit: true})
	vf := &verifyFixture{
		fixture: f,
		maildir: filepath.Join(f.out, "alice"),
		mbox:    filepath.Join(f.out, "alice.mbox"),
		eml:     filepath.Join(f.out, "eml"),
	}
	vf.dests = []string{"--to", "mbox:" + filepath.Join(f.out, "{user}.mbox"), "--to", "eml:" + vf.eml}
	args := append(f.runArgs("--source", f.source("alice"), "--password-file", f.pwFiles["alice"]), vf.dests...)
	runMain(t, args...).wantCode(t, exitOK)
	return vf
}

// verifyArgs are the arguments of a verify of alice, without password.
func (f *verifyFixture) verifyArgs(extra ...string) []string {
	args := append([]string{"verify", "--source", f.source("alice"), "--journal", f.journal,
		"--to", "maildir:" + filepath.Join(f.out, "{user}")}, f.dests...)
	return append(args, extra...)
}

// uid returns the UIDL of alice's message i (1-based).
func uid(i int) string { return "alice-uid-" + strconv.Itoa(1000 + i)[1:] }

func (f *verifyFixture) maildirFile(i int) string {
	return filepath.Join(f.maildir, "new", exporters.MessageKey(f.account("alice"), uid(i))+maildir.Suffix)
}

// changeFile applies change to the bytes of the file at path, in place.
func changeFile(t *testing.T, path string, change func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, change(b), 0o600); err != nil {
		t.Fatal(err)
	}
}

// flipBody changes the first letter of the "Body of message i." line.
func flipBody(i int) func([]byte) []byte {
	return func(b []byte) []byte {
		j := bytes.Index(b, []byte("Body of message "+strconv.Itoa(i)+"."))
		if j < 0 {
			panic("no body of message " + strconv.Itoa(i))
		}
		b[j] = 'b'
		return b
	}
}

func TestVerifyCLIClean(t *testing.T) {
	f := newVerifyFixture(t, 3)
	r := runMain(t, f.verifyArgs()...)
	r.wantCode(t, exitOK)
	want := f.account("alice") + ": 9 copies checked: 9 match\n0 problems, 0 notes\n"
	if r.stdout != want {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}
	st := journalStatus(t, f.journal)[f.account("alice")]
	if st.Verified != 3 || st.Stored != 0 {
		t.Errorf("journal status %+v: want the 3 messages verified", st)
	}
	runs := journalRuns(t, f.journal)
	if last := runs[len(runs)-1]; !strings.HasPrefix(last.Args, "verify ") || last.ExitCode != 0 || last.FinishedAt.IsZero() {
		t.Errorf("last run recorded %+v, want the verify with exit 0", last)
	}
}

// TestVerifyCLIDetects damages alice's archive, one way per case, and
// checks the report line, the exit code 3, and that the journal records
// every other copy, and only those, as verified.
func TestVerifyCLIDetects(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, f *verifyFixture)
		line   string // a regexp matching the finding's line; DEST stands for the destination id
		dest   func(f *verifyFixture) string
		uidl   string // the copy not verified; "" for none
	}{
		{"maildir flipped byte", func(t *testing.T, f *verifyFixture) {
			changeFile(t, f.maildirFile(2), flipBody(2))
		}, `\* ACCOUNT alice-uid-002 DEST checksum differs \(want [0-9a-f]{64} got [0-9a-f]{64}\)`, (*verifyFixture).maildirID, uid(2)},
		{"maildir truncated", func(t *testing.T, f *verifyFixture) {
			changeFile(t, f.maildirFile(1), func(b []byte) []byte { return b[:len(b)/2] })
		}, `\* ACCOUNT alice-uid-001 DEST size differs \(received \d+ bytes, holds \d+\) at new/\S+`, (*verifyFixture).maildirID, uid(1)},
		{"maildir file missing", func(t *testing.T, f *verifyFixture) {
			if err := os.Remove(f.maildirFile(3)); err != nil {
				t.Fatal(err)
			}
		}, `- ACCOUNT alice-uid-003 DEST missing at new/\S+$`, (*verifyFixture).maildirID, uid(3)},
		{"maildir extra file", func(t *testing.T, f *verifyFixture) {
			name := exporters.MessageKey("someone", "else") + maildir.Suffix
			if err := os.WriteFile(filepath.Join(f.maildir, "cur", name+":2,S"), []byte("Subject: x\n\nx\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, `\+ ACCOUNT \? DEST extra at cur/\S+:2,S: `, (*verifyFixture).maildirID, ""},
		{"mbox last entry removed", func(t *testing.T, f *verifyFixture) {
			changeFile(t, f.mbox, func(b []byte) []byte {
				return b[:bytes.LastIndex(b, []byte("\nFrom "))+1]
			})
		}, `- ACCOUNT alice-uid-003 DEST missing at \d+\+\d+$`, (*verifyFixture).mboxID, uid(3)},
		{"mbox entry modified", func(t *testing.T, f *verifyFixture) {
			changeFile(t, f.mbox, flipBody(1))
		}, `\* ACCOUNT alice-uid-001 DEST checksum differs`, (*verifyFixture).mboxID, uid(1)},
		{"eml file deleted", func(t *testing.T, f *verifyFixture) {
			files, err := filepath.Glob(filepath.Join(f.eml, "*", "*-"+exporters.MessageKey(f.account("alice"), uid(2))+".eml"))
			if err != nil || len(files) != 1 {
				t.Fatalf("eml file of message 2: %v %v", files, err)
			}
			if err := os.Remove(files[0]); err != nil {
				t.Fatal(err)
			}
		}, `- ACCOUNT alice-uid-002 DEST missing at \S+\.eml$`, (*verifyFixture).emlID, uid(2)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newVerifyFixture(t, 3)
			tc.damage(t, f)
			r := runMain(t, f.verifyArgs()...)
			r.wantCode(t, exitMismatch)
			re := strings.NewReplacer("ACCOUNT", regexp.QuoteMeta(f.account("alice")), "DEST", regexp.QuoteMeta(tc.dest(f))).Replace(tc.line)
			if !regexp.MustCompile(`(?m)^` + re).MatchString(r.stdout) {
				t.Errorf("no line matching %s in:\n%s", re, r)
			}
			if !strings.Contains(r.stdout, "\n1 problems, 0 notes\n") || !strings.Contains(r.stderr, "verification found 1 problems") {
				t.Errorf("want exactly one problem reported:\n%s", r)
			}
			checkVerifiedAt(t, f.journal, f.account("alice"), tc.uidl, tc.dest(f))
		})
	}
}

func (f *verifyFixture) maildirID() string { return "maildir:" + f.maildir }
func (f *verifyFixture) mboxID() string    { return "mbox:" + f.mbox }
func (f *verifyFixture) emlID() string     { return "eml:" + f.eml }

// checkVerifiedAt checks that every delivery of account is verified except
// the one of uidl to dest.
func checkVerifiedAt(t *testing.T, path, account, uidl, dest string) {
	t.Helper()
	ctx := context.Background()
	j, err := journal.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	dels, err := j.Deliveries(ctx, account)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for u, byDest := range dels {
		for id, d := range byDest {
			n++
			if bad := u == uidl && id == dest; d.VerifiedAt.IsZero() != bad {
				t.Errorf("delivery of %s to %s: verified_at %v; want it set only on matching copies", u, id, d.VerifiedAt)
			}
		}
	}
	// A copy found missing is forgotten (the next run delivers it again);
	// any other problem copy stays recorded, unverified.
	want := 9
	if _, still := dels[uidl][dest]; uidl != "" && !still {
		want = 8
	}
	if n != want {
		t.Errorf("%d deliveries in the journal, want %d", n, want)
	}
}

func journalRuns(t *testing.T, path string) []journal.Run {
	t.Helper()
	ctx := context.Background()
	j, err := journal.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	runs, err := j.Runs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return runs
}

func TestVerifyCLIJSONAndAgainstSource(t *testing.T) {
	f := newVerifyFixture(t, 2)
	f.srv.AddMessage("alice", pop3test.Message{UID: "late-1", Data: []byte("Subject: late\r\n\r\nlate\r\n"), Raw: true})
	r := runMain(t, f.verifyArgs("--against-source", "--password-file", f.pwFiles["alice"], "--ca-file", f.caFile, "--json")...)
	r.wantCode(t, exitMismatch)
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	dec.DisallowUnknownFields()
	var doc struct {
		Problems int `json:"problems"`
		Notes    int `json:"notes"`
		Accounts []struct {
			Account  string         `json:"account"`
			Checked  int            `json:"checked"`
			Counts   map[string]int `json:"counts"`
			Error    string         `json:"error"`
			Findings []struct {
				Kind, Account, UIDL, Dest, Ref, Want, Got, Detail, Hint string
			} `json:"findings"`
		} `json:"accounts"`
	}
	if err := dec.Decode(&doc); err != nil || dec.More() {
		t.Fatalf("stdout is not one JSON document (%v):\n%s", err, r.stdout)
	}
	if doc.Problems != 3 || len(doc.Accounts) != 1 {
		t.Fatalf("document %+v, want 3 problems in 1 account", doc)
	}
	a := doc.Accounts[0]
	if a.Account != f.account("alice") || a.Checked != 6 || a.Counts["match"] != 6 || a.Counts["not-stored"] != 3 || len(a.Findings) != 3 {
		t.Errorf("account %+v, want 6 matches and late-1 not stored in 3 destinations", a)
	}
	for _, fd := range a.Findings {
		if fd.Kind != "not-stored" || fd.UIDL != "late-1" || fd.Dest == "" || fd.Hint == "" {
			t.Errorf("finding %+v", fd)
		}
	}

	// Against a server that refuses the password: exit 1, not 0.
	wrong := writeFile(t, f.dir, "wrong", "nope\n")
	f.srv.AddMessage("alice", pop3test.Message{UID: "x", Data: []byte("x\r\n"), Raw: true})
	r = runMain(t, f.verifyArgs("--against-source", "--password-file", wrong, "--ca-file", f.caFile)...)
	r.wantCode(t, exitFailed)
	if !strings.Contains(r.stdout, "! "+f.account("alice")+" not verified completely: list the server: login") {
		t.Errorf("no account error line:\n%s", r)
	}
}

func TestVerifyCLIUsage(t *testing.T) {
	dir := t.TempDir()
	journalPath := writeFile(t, dir, "j.db", "")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"verify", "--source", "pop3s://a@h", "--to", "maildir:" + dir, "--journal", filepath.Join(dir, "none.db")}, "journal"},
		{[]string{"verify", "--manifest", "m.jsonl"}, "exactly one --to"},
		{[]string{"verify", "--manifest", "m.jsonl", "--to", "maildir:/a", "--source", "pop3s://a@h"}, "without accounts"},
		{[]string{"verify", "--manifest", "m.jsonl", "--to", "maildir:/a/{user}"}, "template"},
		{[]string{"verify", "--manifest", filepath.Join(dir, "none.jsonl"), "--to", "maildir:" + dir}, "manifest"},
		{[]string{"verify", "--manifest", journalPath, "--to", "maildir:" + filepath.Join(dir, "nothing-here")}, "no such file"},
		{[]string{"verify", "--journal", journalPath}, "no accounts"},
		{[]string{"manifest", "--journal", journalPath, "--out", "x"}, "--account"},
		{[]string{"manifest", "--journal", journalPath, "--account", "a"}, "--out"},
		{[]string{"manifest", "--journal", filepath.Join(dir, "none.db"), "--account", "a", "--out", "x"}, "journal"},
	}
	for _, tc := range cases {
		r := runMain(t, tc.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("popmigrate %s: want exit 2 and %q, got %s", strings.Join(tc.args, " "), tc.want, r)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "nothing-here")); !os.IsNotExist(err) {
		t.Errorf("verify --manifest created the destination it was to check: %v", err)
	}
}

func TestVerifyFlags(t *testing.T) {
	got := parseFlags(t, newVerifyCmd, "--journal", "/x/j.db", "--against-source", "--json", "--manifest", "m", "--to", "maildir:/a", "--jobs", "3")
	if got.Journal != "/x/j.db" || !got.AgainstSource || !got.JSON || got.Manifest != "m" || len(got.To) != 1 || got.Jobs != 3 {
		t.Errorf("parsed %+v", got)
	}
}
