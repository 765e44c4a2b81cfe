package verify_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/maildir"
	"github.com/popmigrate/popmigrate/exporters/mbox"
	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/verify"
)

// problems returns the findings of res that are problems.
func problems(res *verify.Result) []verify.Finding {
	var out []verify.Finding
	for _, f := range res.Findings {
		if f.Problem() {
			out = append(out, f)
		}
	}
	return out
}

func TestAccountAllMatch(t *testing.T) {
	w := newWorld(t, 4)
	w.open()
	res := w.verifyAll(nil)
	if res.Account != acct || res.Checked != 12 || res.Counts[verify.Match] != 12 || len(res.Findings) != 0 || !res.OK() {
		t.Fatalf("result %+v, want 12 copies checked, 12 matches, no findings", res)
	}
	for uidl, byDest := range w.verifiedAt() {
		for id, at := range byDest {
			if at.IsZero() {
				t.Errorf("delivery of %s to %s: not marked verified", uidl, id)
			}
		}
	}
	msgs, err := w.j.Messages(ctxT(t), acct)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if m.State != journal.StateVerified {
			t.Errorf("message %s: state %s, want verified", m.UIDL, m.State)
		}
	}
}

// TestAccountDetects damages one copy (or adds one) per case and checks
// that verify reports exactly that, with the right kind, and records every
// other copy, and only those, as verified.
func TestAccountDetects(t *testing.T) {
	cases := []struct {
		name string
		// damage changes the world and returns the uidl and destination
		// of the finding ("" uidl: unknown).
		damage func(t *testing.T, w *world) (uidl, dest string)
		kind   verify.Kind
		detail string // a piece of the finding's Detail
	}{
		{"maildir flipped byte", func(t *testing.T, w *world) (string, string) {
			flipByte(t, w.mdPath("u2"))
			return "u2", w.mdID()
		}, verify.Checksum, ""},
		{"maildir truncated", func(t *testing.T, w *world) (string, string) {
			fi, err := os.Stat(w.mdPath("u3"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(w.mdPath("u3"), fi.Size()/2); err != nil {
				t.Fatal(err)
			}
			return "u3", w.mdID()
		}, verify.Size, "cut short or grew"},
		{"maildir missing file", func(t *testing.T, w *world) (string, string) {
			if err := os.Remove(w.mdPath("u1")); err != nil {
				t.Fatal(err)
			}
			return "u1", w.mdID()
		}, verify.Missing, ""},
		{"maildir unreadable", func(t *testing.T, w *world) (string, string) {
			if err := os.Remove(w.mdPath("u1")); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(w.mdPath("u1"), 0o700); err != nil {
				t.Fatal(err)
			}
			return "u1", w.mdID()
		}, verify.Unreadable, "not a regular file"},
		{"maildir extra unknown file", func(t *testing.T, w *world) (string, string) {
			name := exporters.MessageKey("someone@else", "x") + maildir.Suffix
			if err := os.WriteFile(filepath.Join(w.md.Dir(), "new", name), []byte("Subject: x\n\nx\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			return "", w.mdID()
		}, verify.Extra, "no message known"},
		{"maildir extra from an interrupted run", func(t *testing.T, w *world) (string, string) {
			m := newTmsg("u9", 9)
			w.recordListing(journal.Listed{UIDL: m.uidl, Kind: journal.KindUIDL, Size: int64(len(m.wire))})
			if _, err := w.md.Put(ctxT(t), m.message()); err != nil {
				t.Fatal(err)
			}
			return "u9", w.mdID()
		}, verify.Extra, "interrupted"},
		{"maildir second copy in cur", func(t *testing.T, w *world) (string, string) {
			b, err := os.ReadFile(w.mdPath("u2"))
			if err != nil {
				t.Fatal(err)
			}
			dup := filepath.Join(w.md.Dir(), "cur", exporters.MessageKey(acct, "u2")+maildir.Suffix+":2,S")
			if err := os.WriteFile(dup, b, 0o600); err != nil {
				t.Fatal(err)
			}
			return "u2", w.mdID()
		}, verify.Extra, "second copy"},
		{"mbox last entry removed", func(t *testing.T, w *world) (string, string) {
			last := w.msgs[len(w.msgs)-1].uidl
			off, _, _ := strings.Cut(w.refs[last][w.mbID()], "+")
			n, err := strconv.ParseInt(off, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			w.closeDests()
			if err := os.Truncate(w.mb.Path(), n); err != nil {
				t.Fatal(err)
			}
			return last, w.mbID()
		}, verify.Missing, ""},
		{"mbox entry modified", func(t *testing.T, w *world) (string, string) {
			w.closeDests()
			b, err := os.ReadFile(w.mb.Path())
			if err != nil {
				t.Fatal(err)
			}
			// The second "Body of" in the file is u2's.
			i := strings.Index(string(b), "Body of message 2.")
			if i < 0 {
				t.Fatal("no u2 body in the mbox")
			}
			b[i+len("Body of message ")] = '7'
			if err := os.WriteFile(w.mb.Path(), b, 0o600); err != nil {
				t.Fatal(err)
			}
			return "u2", w.mbID()
		}, verify.Checksum, ""},
		{"eml file deleted", func(t *testing.T, w *world) (string, string) {
			if err := os.Remove(w.emPath("u4")); err != nil {
				t.Fatal(err)
			}
			return "u4", w.emID()
		}, verify.Missing, ""},
		{"eml flipped byte", func(t *testing.T, w *world) (string, string) {
			flipByte(t, w.emPath("u1"))
			return "u1", w.emID()
		}, verify.Checksum, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, 4)
			uidl, dest := tc.damage(t, w)
			w.open()
			res := w.verifyAll(nil)
			ps := problems(res)
			if len(ps) != 1 || res.Problems() != 1 || res.OK() {
				t.Fatalf("want one problem, got %d: %+v", res.Problems(), res.Findings)
			}
			f := ps[0]
			if f.Kind != tc.kind || f.UIDL != uidl || f.DestID != dest || f.Account != acct || f.Ref == "" || f.Hint == "" {
				t.Errorf("finding %+v; want kind %s, uidl %q, destination %s, a ref and a hint", f, tc.kind, uidl, dest)
			}
			if !strings.Contains(f.Detail, tc.detail) {
				t.Errorf("finding detail %q does not say %q", f.Detail, tc.detail)
			}
			if f.Kind == verify.Checksum && (len(f.Want) != 64 || len(f.Got) != 64 || f.Want == f.Got) {
				t.Errorf("checksum finding want %q got %q: want two different sha256", f.Want, f.Got)
			}
			if f.Kind == verify.Size && (f.Want == "" || f.Got == "" || f.Want == f.Got) {
				t.Errorf("size finding want %q got %q", f.Want, f.Got)
			}
			if res.Checked != 12 {
				t.Errorf("checked %d copies, want 12", res.Checked)
			}
			bad := 0
			if tc.kind != verify.Extra {
				bad = 1
			}
			if res.Counts[verify.Match] != 12-bad {
				t.Errorf("%d matches, want %d", res.Counts[verify.Match], 12-bad)
			}
			for u, byDest := range w.verifiedAt() {
				for id, at := range byDest {
					isBad := tc.kind != verify.Extra && u == uidl && id == dest
					if at.IsZero() != isBad {
						t.Errorf("delivery of %s to %s: verified_at %v; want it set only on matching copies", u, id, at)
					}
				}
			}
		})
	}
}

func TestAccountComparesWithServer(t *testing.T) {
	w := newWorld(t, 4)
	// u5 is on the server and failed in the journal; u6 was never seen;
	// u1 is gone from the server; u2 was deleted by popmigrate.
	w.recordListing(journal.Listed{UIDL: "u5", Kind: journal.KindUIDL, Size: 10})
	var b journal.Batch
	b.Failed(acct, "u5", "retr 5: -ERR [SYS/TEMP] try later")
	if err := w.j.Commit(ctxT(t), &b); err != nil {
		t.Fatal(err)
	}
	if err := w.j.MarkDeleted(ctxT(t), acct, []string{"u2"}); err != nil {
		t.Fatal(err)
	}
	res := w.verifyAll([]string{"u3", "u4", "u5", "u6", "u6"})
	var gone []string
	notStored := map[string]int{}
	for _, f := range res.Findings {
		switch f.Kind {
		case verify.GoneFromServer:
			gone = append(gone, f.UIDL)
			if f.Problem() {
				t.Errorf("gone-from-server is a problem: %+v", f)
			}
		case verify.NotStored:
			notStored[f.UIDL]++
			if f.UIDL == "u5" && !strings.Contains(f.Detail, "SYS/TEMP") {
				t.Errorf("not-stored u5: detail %q does not carry the journal's error", f.Detail)
			}
			if f.DestID == "" {
				t.Errorf("not-stored without a destination: %+v", f)
			}
		default:
			t.Errorf("unexpected finding %+v", f)
		}
	}
	if len(gone) != 1 || gone[0] != "u1" {
		t.Errorf("gone from the server: %v, want [u1]", gone)
	}
	if notStored["u5"] != 3 || notStored["u6"] != 3 || len(notStored) != 2 {
		t.Errorf("not stored: %v, want u5 and u6 in each of 3 destinations", notStored)
	}
	if res.Problems() != 6 || res.Counts[verify.GoneFromServer] != 1 || res.Counts[verify.Match] != 12 {
		t.Errorf("counts %v, problems %d", res.Counts, res.Problems())
	}
}

func TestAccountEmptyAndUnknown(t *testing.T) {
	w := newWorld(t, 0)
	res := w.verifyAll(nil)
	if res.Checked != 0 || len(res.Findings) != 0 || !res.OK() {
		t.Errorf("empty account: %+v", res)
	}
	res, err := verify.Account(ctxT(t), w.j, "nobody", w.dests, []string{})
	if err != nil || res.Checked != 0 || len(res.Findings) != 0 {
		t.Errorf("unknown account: %+v, %v", res, err)
	}
}

// onlyExporter hides every optional interface of a destination.
type onlyExporter struct{ exporters.Exporter }

// slowOpener cancels the context on its first Open.
type slowOpener struct {
	exporters.Exporter
	cancel context.CancelFunc
}

func (s slowOpener) Open(ctx context.Context, ref string) (io.ReadCloser, error) {
	s.cancel()
	return s.Exporter.(exporters.Opener).Open(ctx, ref)
}

func TestAccountErrors(t *testing.T) {
	w := newWorld(t, 2)
	dests := map[string]exporters.Exporter{w.mdID(): onlyExporter{w.md}}
	if _, err := verify.Account(ctxT(t), w.j, acct, dests, nil); err == nil || !strings.Contains(err.Error(), "cannot read messages back") {
		t.Errorf("a destination without Opener: %v", err)
	}
	ctx, cancel := context.WithCancel(ctxT(t))
	dests = map[string]exporters.Exporter{w.mdID(): slowOpener{w.md, cancel}}
	if _, err := verify.Account(ctx, w.j, acct, dests, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled while reading: %v, want context.Canceled", err)
	}
	for uidl, byDest := range w.verifiedAt() {
		for id, at := range byDest {
			if !at.IsZero() {
				t.Errorf("a cancelled verify recorded %s in %s as verified", uidl, id)
			}
		}
	}
}

// TestAccountReportsMailAnotherProgramAppendedToMbox: a read-only verify
// of an mbox file that another program appended a message to reports
// that message as extra, at its offset and length, and changes nothing.
func TestAccountReportsMailAnotherProgramAppendedToMbox(t *testing.T) {
	w := newWorld(t, 3)
	id, path := w.mbID(), w.mb.Path()
	w.closeDests()
	const foreign = "From bob@example.net Tue Mar  4 09:00:00 2025\nSubject: delivered by another program\n\nnot popmigrate's\n\n"
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(foreign); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	mb, err := mbox.New(path, &mbox.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	res, err := verify.Account(ctxT(t), w.j, acct, map[string]exporters.Exporter{id: mb}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ps := problems(res)
	if res.Counts[verify.Match] != 3 || len(ps) != 1 {
		t.Fatalf("counts %v, problems %+v; want 3 matches and the foreign message", res.Counts, ps)
	}
	want := fmt.Sprintf("%d+%d", fi.Size(), len(foreign))
	if f := ps[0]; f.Kind != verify.Extra || f.DestID != id || f.UIDL != "" || f.Ref != want || f.Hint == "" {
		t.Errorf("finding %+v; want an extra in %s at %s, with no UIDL and a hint", f, id, want)
	}
	if after, err := os.ReadFile(path); err != nil || !bytes.Equal(after, before) {
		t.Errorf("verify changed the mbox file (%v)", err)
	}
}
