package verify_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/eml"
	"github.com/popmigrate/popmigrate/exporters/maildir"
	"github.com/popmigrate/popmigrate/exporters/mbox"
	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/verify"
)

// acct is the account of every test message.
const acct = "alice@example.org"

// tmsg is a test message: its journal UIDL, its canonical form (what the
// destinations hold) and its wire form (CRLF, what the server sent).
type tmsg struct {
	uidl  string
	canon []byte
	wire  []byte
}

func newTmsg(uidl string, i int) tmsg {
	canon := fmt.Appendf(nil, "From: sender%d@example.org\nSubject: message %d\nDate: Mon, 3 Mar 2025 10:0%d:00 +0000\n\nBody of message %d.\n.a dot line\nFrom the end\n", i, i, i%10, i)
	return tmsg{uidl: uidl, canon: canon, wire: bytes.ReplaceAll(canon, []byte("\n"), []byte("\r\n"))}
}

func (m tmsg) key() string { return exporters.MessageKey(acct, m.uidl) }

func (m tmsg) message() *exporters.Message {
	return &exporters.Message{
		Key: m.key(), Account: acct, UIDL: m.uidl,
		Body: bytes.NewReader(m.canon), SHA256: sha256Hex(m.canon),
		Received: time.Date(2025, 3, 3, 10, 0, 0, 0, time.UTC),
	}
}

// world is a journal and three destinations (Maildir, mbox, eml) in a
// temporary folder, holding msgs as a run would have stored them.
type world struct {
	t     *testing.T
	dir   string
	j     *journal.Journal
	msgs  []tmsg
	dests map[string]exporters.Exporter
	md    *maildir.Exporter
	mb    *mbox.Exporter
	em    *eml.Exporter
	refs  map[string]map[string]string // uidl -> dest id -> ref
}

func ctxT(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// newWorld stores n messages (UIDLs u1..uN) in every destination and
// records them in the journal.
func newWorld(t *testing.T, n int) *world {
	t.Helper()
	dir := t.TempDir()
	j, err := journal.Open(ctxT(t), filepath.Join(dir, "journal.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	w := &world{t: t, dir: dir, j: j, refs: map[string]map[string]string{}}
	w.open()
	for i := 1; i <= n; i++ {
		w.msgs = append(w.msgs, newTmsg(fmt.Sprintf("u%d", i), i))
	}
	w.store(w.msgs...)
	return w
}

// open (re)opens the three destinations, as a later verify would.
func (w *world) open() {
	w.t.Helper()
	w.closeDests()
	var err error
	if w.md, err = maildir.New(filepath.Join(w.dir, "maildir"), nil); err != nil {
		w.t.Fatal(err)
	}
	if w.mb, err = mbox.New(filepath.Join(w.dir, "archive.mbox"), nil); err != nil {
		w.t.Fatal(err)
	}
	if w.em, err = eml.New(filepath.Join(w.dir, "eml"), nil); err != nil {
		w.t.Fatal(err)
	}
	w.dests = map[string]exporters.Exporter{}
	for _, d := range []exporters.Exporter{w.md, w.mb, w.em} {
		w.dests[d.Properties().ID] = d
	}
	w.t.Cleanup(w.closeDests)
}

func (w *world) closeDests() {
	for _, d := range w.dests {
		d.Close()
	}
	w.dests = nil
}

// store Puts msgs into every destination, Syncs, and records them in the
// journal as stored everywhere.
func (w *world) store(msgs ...tmsg) {
	w.t.Helper()
	c := ctxT(w.t)
	var listed []journal.Listed
	for _, m := range msgs {
		listed = append(listed, journal.Listed{UIDL: m.uidl, Kind: journal.KindUIDL, Size: int64(len(m.wire))})
	}
	w.recordListing(listed...)
	var b journal.Batch
	for _, m := range msgs {
		sm := journal.StoredMessage{Account: acct, UIDL: m.uidl, ReceivedSize: int64(len(m.wire)), SHA256: sha256Hex(m.canon), Complete: true}
		for id, d := range w.dests {
			del, err := d.Put(c, m.message())
			if err != nil {
				w.t.Fatal(err)
			}
			sm.Deliveries = append(sm.Deliveries, journal.Delivery{DestID: id, Ref: del.Ref})
			if w.refs[m.uidl] == nil {
				w.refs[m.uidl] = map[string]string{}
			}
			w.refs[m.uidl][id] = del.Ref
		}
		b.Stored(sm)
	}
	for _, d := range w.dests {
		if err := d.Sync(c); err != nil {
			w.t.Fatal(err)
		}
		if rs, ok := d.(exporters.Resumable); ok {
			b.DestState(acct, d.Properties().ID, rs.CommitState())
		}
	}
	if err := w.j.Commit(c, &b); err != nil {
		w.t.Fatal(err)
	}
}

// recordListing records a listing of every message of the world plus
// extra (the journal's listing replaces nothing: it only adds).
func (w *world) recordListing(extra ...journal.Listed) {
	w.t.Helper()
	var all []journal.Listed
	seen := map[string]bool{}
	for _, l := range extra {
		all = append(all, l)
		seen[l.UIDL] = true
	}
	for _, m := range w.msgs {
		if !seen[m.uidl] {
			all = append(all, journal.Listed{UIDL: m.uidl, Kind: journal.KindUIDL, Size: int64(len(m.wire))})
		}
	}
	if err := w.j.RecordListing(ctxT(w.t), acct, "pop3s://alice@127.0.0.1:995", all); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) mdID() string { return w.md.Properties().ID }
func (w *world) mbID() string { return w.mb.Properties().ID }
func (w *world) emID() string { return w.em.Properties().ID }

// mdPath returns the path of the Maildir file of uidl.
func (w *world) mdPath(uidl string) string {
	return filepath.Join(w.md.Dir(), w.refs[uidl][w.mdID()])
}

// emPath returns the path of the .eml file of uidl.
func (w *world) emPath(uidl string) string {
	return filepath.Join(w.em.Dir(), w.refs[uidl][w.emID()])
}

// verifyAll runs verify.Account over every destination.
func (w *world) verifyAll(serverUIDLs []string) *verify.Result {
	w.t.Helper()
	res, err := verify.Account(ctxT(w.t), w.j, acct, w.dests, serverUIDLs)
	if err != nil {
		w.t.Fatalf("Account: %v", err)
	}
	return res
}

// verifiedAt returns the verified_at of every delivery, by uidl and
// destination id.
func (w *world) verifiedAt() map[string]map[string]time.Time {
	w.t.Helper()
	dels, err := w.j.Deliveries(ctxT(w.t), acct)
	if err != nil {
		w.t.Fatal(err)
	}
	out := map[string]map[string]time.Time{}
	for uidl, byDest := range dels {
		out[uidl] = map[string]time.Time{}
		for id, d := range byDest {
			out[uidl][id] = d.VerifiedAt
		}
	}
	return out
}

// flipByte changes one byte of the file at path in place (a letter of
// "Body", so that the line ends stay as they are).
func flipByte(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte("Body of"))
	if i < 0 {
		t.Fatalf("%s: no \"Body of\" in it", path)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{'b'}, int64(i)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
