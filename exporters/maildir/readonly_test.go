package maildir

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/popmigrate/popmigrate/internal/testfs"

	"github.com/popmigrate/popmigrate/exporters"
)

// archive is a Maildir written by a writer Exporter and closed: a message
// in new/, one a reader moved to cur/ with flags, a stale tmp file that a
// writer would remove, and a file another program delivered.
type archive struct {
	dir        string
	keys, refs []string // of the messages, in the same order
	bodies     []string
	stale      string // path of the stale tmp file
}

func newArchive(t *testing.T) *archive {
	t.Helper()
	a := &archive{dir: filepath.Join(t.TempDir(), "Maildir")}
	w, err := New(a.dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, uidl := range []string{"new-one", "moved-one"} {
		body := "Subject: " + uidl + "\n\nFrom the body of " + uidl + "\n"
		m := msg(uidl, body)
		a.keys = append(a.keys, m.Key)
		a.refs = append(a.refs, mustStore(t, w, m))
		a.bodies = append(a.bodies, body)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	moved := "cur/" + a.keys[1] + Suffix + ":2,S"
	if err := os.Rename(filepath.Join(a.dir, a.refs[1]), filepath.Join(a.dir, moved)); err != nil {
		t.Fatal(err)
	}
	a.refs[1] = moved
	a.stale = filepath.Join(a.dir, "tmp", "left-by-a-crash.tmp")
	if err := os.WriteFile(a.stale, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(a.dir, "new", "1700000000.M1P2.host"), []byte("Subject: other\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	testfs.Backdate(t, a.dir)
	return a
}

func newReadOnly(t *testing.T, dir string, opts *Options) *Exporter {
	t.Helper()
	o := Options{ReadOnly: true}
	if opts != nil {
		o.ID = opts.ID
	}
	e, err := New(dir, &o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// checkReads checks that e reads the archive as a writer would: List,
// Has and Open of each message (Open also by the Ref Put returned before
// the message moved to cur/), an unknown key, a ref that is gone.
func (a *archive) checkReads(t *testing.T, e *Exporter) {
	t.Helper()
	want := slices.Sorted(slices.Values(a.refs))
	if got := mustList(t, e); !slices.Equal(got, want) {
		t.Errorf("List = %v, want %v", got, want)
	}
	for i, key := range a.keys {
		ref, ok := mustHas(t, e, key)
		if !ok || ref != a.refs[i] {
			t.Errorf("Has(%s) = %q, %v; want %q", key, ref, ok, a.refs[i])
		}
		if got := mustRead(t, e, a.refs[i]); got != a.bodies[i] {
			t.Errorf("Open(%s) = %q, want %q", a.refs[i], got, a.bodies[i])
		}
	}
	if got := mustRead(t, e, "new/"+a.keys[1]+Suffix); got != a.bodies[1] {
		t.Errorf("Open of the Ref before the move = %q, want %q", got, a.bodies[1])
	}
	if _, ok := mustHas(t, e, msg("absent", "x").Key); ok {
		t.Error("Has found a message never stored")
	}
	gone := "new/" + msg("absent", "x").Key + Suffix
	if _, err := e.Open(t.Context(), gone); !errors.Is(err, exporters.ErrNotFound) {
		t.Errorf("Open(%s) = %v, want ErrNotFound", gone, err)
	}
}

// TestReadOnlyChangesNothing opens an archive with what only a Maildir
// holds read-only, reads all of it and closes: not one name, size, time or
// byte under the folder changes, the stale tmp file a writer removes
// included. (The conformance suite checks that writes fail.)
func TestReadOnlyChangesNothing(t *testing.T) {
	a := newArchive(t)
	before := testfs.Snapshot(t, a.dir)

	e := newReadOnly(t, a.dir, nil)
	a.checkReads(t, e)
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	testfs.Same(t, a.dir, before, testfs.Snapshot(t, a.dir))
	if _, err := os.Stat(a.stale); err != nil {
		t.Errorf("the stale tmp file: %v", err)
	}

	// The snapshot sees what a writer does on open: its probe and its
	// clean-up of tmp/.
	w := newExporter(t, a.dir)
	w.Close()
	after := testfs.Snapshot(t, a.dir)
	if _, ok := after["tmp/left-by-a-crash.tmp"]; ok || after["new"] == before["new"] {
		t.Errorf("a writer's open left the snapshot as it was (tmp/ file kept %v; new/ %q): the check above proves nothing", ok, after["new"])
	}
}

// TestReadOnlyProperties: a read-only Exporter has the writer's Kind and
// destination id, the configured one too, so verify finds the journal's
// deliveries under it. (The conformance suite checks the default one.)
func TestReadOnlyProperties(t *testing.T) {
	a := newArchive(t)
	for _, id := range []string{"maildir:/srv/archive/alice"} {
		w, err := New(a.dir, &Options{ID: id})
		if err != nil {
			t.Fatal(err)
		}
		r := newReadOnly(t, a.dir, &Options{ID: id})
		if got, want := r.Properties(), w.Properties(); got != want {
			t.Errorf("id %q: read-only Properties %+v, writer's %+v", id, got, want)
		}
		w.Close()
	}
	if got := newReadOnly(t, a.dir, nil).Properties(); got.Kind != "maildir" || got.ID != "maildir:"+a.dir {
		t.Errorf("default Properties %+v", got)
	}
}

// TestReadOnlyMissing: a Maildir without cur/ is an error naming cur/
// and wrapping fs.ErrNotExist, and the read-only open creates nothing; a
// file at cur is not a folder. (The conformance suite opens a missing
// folder.)
func TestReadOnlyMissing(t *testing.T) {
	parent := t.TempDir()
	half := filepath.Join(parent, "half")
	for _, sub := range []string{"tmp", "new"} {
		if err := os.MkdirAll(filepath.Join(half, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	testfs.Backdate(t, half)
	before := testfs.Snapshot(t, half)
	cur := filepath.Join(half, "cur")
	if _, err := New(half, &Options{ReadOnly: true}); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), cur) {
		t.Errorf("New of a Maildir without cur/ = %v, want an error wrapping fs.ErrNotExist naming %s", err, cur)
	}
	testfs.Same(t, half, before, testfs.Snapshot(t, half))

	if err := os.WriteFile(cur, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(half, &Options{ReadOnly: true}); err == nil || !strings.Contains(err.Error(), cur+" is not a folder") {
		t.Errorf("New with a file at cur = %v, want an error saying it is not a folder", err)
	}
}

// TestReadOnlySeesLaterWrites: a read-only Exporter open while a writer
// stores more messages finds them, as a second writer would.
func TestReadOnlySeesLaterWrites(t *testing.T) {
	a := newArchive(t)
	r := newReadOnly(t, a.dir, nil)
	w := newExporter(t, a.dir)
	m := msg("later", "Subject: later\n\nlater\n")
	if _, ok := mustHas(t, r, m.Key); ok {
		t.Fatal("Has found the message before it was stored")
	}
	ref := mustStore(t, w, m)
	if got, ok := mustHas(t, r, m.Key); !ok || got != ref {
		t.Errorf("Has after the writer's Sync = %q, %v; want %q", got, ok, ref)
	}
	if got := mustRead(t, r, ref); got != "Subject: later\n\nlater\n" {
		t.Errorf("Open = %q", got)
	}
}
