package eml

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/popmigrate/popmigrate/internal/testfs"

	"github.com/popmigrate/popmigrate/exporters"
)

// archive is an eml tree written by a writer Exporter and closed: two
// accounts, a stale temporary file that a writer would remove, a hidden
// file and another program's file.
type archive struct {
	dir    string
	msgs   []*exporters.Message
	refs   []string
	bodies []string
	stale  string // path of the stale temporary file
}

const alice, bob = "alice@example.org", "bob/../weird"

func newArchive(t *testing.T) *archive {
	t.Helper()
	a := &archive{dir: filepath.Join(t.TempDir(), "eml")}
	w, err := New(a.dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct{ account, uidl, body string }{
		{alice, "1", "Date: Mon, 3 Mar 2025 10:00:00 +0000\nSubject: 1\n\nFrom the body\n"},
		{alice, "2", "Subject: 2\n\n2\n"},
		{bob, "1", "Subject: b\n\nb\n"},
	} {
		msg := msgFor(m.account, m.uidl, m.body)
		a.msgs = append(a.msgs, msg)
		a.refs = append(a.refs, mustPut(t, w, msg))
		a.bodies = append(a.bodies, m.body)
	}
	if err := w.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	acct := filepath.Join(a.dir, AccountDir(alice))
	a.stale = filepath.Join(acct, TmpDir, "k.0123.tmp")
	for _, p := range []string{a.stale, filepath.Join(acct, ".hidden"), filepath.Join(acct, "notes.txt")} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	testfs.Backdate(t, a.dir)
	return a
}

func newReadOnly(t *testing.T, dir string, id string) *Exporter {
	t.Helper()
	e, err := New(dir, &Options{ID: id, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// checkReads checks that e reads the archive as a writer would: List of
// each account, Has (which reads every account folder) and Open of each
// message, an unknown key, a file that is gone.
func (a *archive) checkReads(t *testing.T, e *Exporter) {
	t.Helper()
	for _, acct := range []string{alice, bob} {
		var want []exporters.Listed
		for i, m := range a.msgs {
			if m.Account == acct {
				want = append(want, exporters.Listed{Key: m.Key, Ref: a.refs[i]})
			}
		}
		slices.SortFunc(want, func(x, y exporters.Listed) int { return strings.Compare(x.Ref, y.Ref) })
		if got := mustList(t, e, acct); !slices.Equal(got, want) {
			t.Errorf("List(%q) = %v, want %v", acct, got, want)
		}
	}
	if got := mustList(t, e, "nobody"); len(got) != 0 {
		t.Errorf("List of an account without a folder = %v", got)
	}
	if _, ok := mustHas(t, e, exporters.MessageKey("nobody", "x")); ok {
		t.Error("Has found a message never stored")
	}
	for i, m := range a.msgs {
		ref, ok := mustHas(t, e, m.Key)
		if !ok || ref != a.refs[i] {
			t.Errorf("Has(%s) = %q, %v; want %q", m.Key, ref, ok, a.refs[i])
		}
		if got := mustRead(t, e, a.refs[i]); got != a.bodies[i] {
			t.Errorf("Open(%s) = %q, want %q", a.refs[i], got, a.bodies[i])
		}
	}
	gone := AccountDir(alice) + "/" + receivedPrefix + "-" + exporters.MessageKey("nobody", "x") + Ext
	if _, err := e.Open(t.Context(), gone); !errors.Is(err, exporters.ErrNotFound) {
		t.Errorf("Open(%s) = %v, want ErrNotFound", gone, err)
	}
}

// checkNoWrites checks that Put of the read-only e fails with
// exporters.ErrReadOnly, naming the folder, for an account it has a folder
// for and for a new one, and that Sync fails too.
func checkNoWrites(t *testing.T, e *Exporter) {
	t.Helper()
	for _, acct := range []string{alice, "carol"} {
		_, err := e.Put(t.Context(), msgFor(acct, "new", "Subject: n\n\nn\n"))
		if !errors.Is(err, exporters.ErrReadOnly) || !strings.Contains(err.Error(), e.Dir()) {
			t.Errorf("Put for %s = %v, want exporters.ErrReadOnly naming %s", acct, err, e.Dir())
		}
	}
	if err := e.Sync(t.Context()); !errors.Is(err, exporters.ErrReadOnly) || !strings.Contains(err.Error(), e.Dir()) {
		t.Errorf("Sync = %v, want exporters.ErrReadOnly naming %s", err, e.Dir())
	}
}

// TestReadOnlyChangesNothing opens an archive with what only an .eml tree
// holds (two accounts, a stale temporary file, a hidden and a foreign
// file) read-only, reads all of it, tries to write for an account with a
// folder and one without, and closes: not one name, size, time or byte
// under the root changes, the stale temporary file a writer removes
// included.
func TestReadOnlyChangesNothing(t *testing.T) {
	a := newArchive(t)
	before := testfs.Snapshot(t, a.dir)

	e := newReadOnly(t, a.dir, "")
	a.checkReads(t, e)
	checkNoWrites(t, e)
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	testfs.Same(t, a.dir, before, testfs.Snapshot(t, a.dir))
	if _, err := os.Stat(a.stale); err != nil {
		t.Errorf("the stale temporary file: %v", err)
	}

	// The snapshot sees what a writer does: its probe on open, and the
	// clean-up of a folder's temporary files when Has first reads it.
	w := newExporter(t, a.dir)
	mustHas(t, w, exporters.MessageKey("nobody", "x"))
	w.Close()
	after := testfs.Snapshot(t, a.dir)
	if _, ok := after[AccountDir(alice)+"/"+TmpDir+"/k.0123.tmp"]; ok || after["."] == before["."] {
		t.Errorf("a writer left the snapshot as it was (stale file kept %v; root %q): the check above proves nothing", ok, after["."])
	}
}

// TestReadOnlyProperties: a read-only Exporter has the writer's Kind and
// destination id, the configured one too, so verify finds the journal's
// deliveries under it. (The conformance suite checks the default one.)
func TestReadOnlyProperties(t *testing.T) {
	a := newArchive(t)
	for _, id := range []string{"eml:/srv/archive"} {
		w, err := New(a.dir, &Options{ID: id})
		if err != nil {
			t.Fatal(err)
		}
		r := newReadOnly(t, a.dir, id)
		if got, want := r.Properties(), w.Properties(); got != want {
			t.Errorf("id %q: read-only Properties %+v, writer's %+v", id, got, want)
		}
		w.Close()
	}
	if got := newReadOnly(t, a.dir, "").Properties(); got.Kind != "eml" || got.ID != "eml:"+a.dir {
		t.Errorf("default Properties %+v", got)
	}
}

// TestReadOnlyMissing: a root that is a file is an error naming it. (The
// conformance suite opens a root that is not there.)
func TestReadOnlyMissing(t *testing.T) {
	parent := t.TempDir()
	file := filepath.Join(parent, "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if e, err := New(file, &Options{ReadOnly: true}); err == nil || !strings.Contains(err.Error(), file) {
		if e != nil {
			e.Close()
		}
		t.Errorf("New of a file = %v, want an error naming it", err)
	}
}
