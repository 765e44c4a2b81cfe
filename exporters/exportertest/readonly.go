package exportertest

import (
	"context"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/internal/testfs"
	"github.com/popmigrate/popmigrate/internal/testmsg"
)

// archive is what a writer stored in a destination and closed: the
// sample messages the destination does not refuse.
type archive struct {
	dir   string
	msgs  []*exporters.Message
	data  [][]byte
	refs  []string
	props exporters.Properties
	state string // the writer's CommitState, if it is Resumable
}

// newArchive stores the samples in the destination of dir with a writer
// and closes it.
func (s *suite) newArchive(t *testing.T, dir string) *archive {
	t.Helper()
	c := ctx(t)
	a := &archive{dir: dir}
	w := s.openExporter(t, dir)
	for _, sm := range testmsg.Load(t) {
		if slices.Contains(s.opts.Refuses, sm.Name) {
			continue
		}
		m := NewMessage("ro-"+sm.Name, sm.Data)
		a.msgs = append(a.msgs, m)
		a.data = append(a.data, sm.Data)
		a.refs = append(a.refs, s.put(t, c, w, m))
	}
	s.sync(t, c, w)
	a.props = w.Properties()
	if r, ok := w.(exporters.Resumable); ok {
		a.state = r.CommitState()
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return a
}

// snapshot describes the destination of dir: its files and, with
// Options.Snapshot, what it holds elsewhere.
type snapshot struct {
	files map[string]string
	other string
}

func (s *suite) snapshot(t *testing.T, dir string) snapshot {
	t.Helper()
	var sn snapshot
	if _, err := os.Lstat(dir); err == nil {
		sn.files = testfs.Snapshot(t, dir)
	}
	if s.opts.Snapshot != nil {
		sn.other = s.opts.Snapshot(t, dir)
	}
	return sn
}

// same fails the test where after differs from before.
func (sn snapshot) same(t *testing.T, what string, after snapshot) {
	t.Helper()
	testfs.Same(t, what, sn.files, after.files)
	if sn.other != after.other {
		t.Errorf("%s changed the destination:\nbefore:\n%s\nafter:\n%s", what, sn.other, after.other)
	}
}

// checkReads checks that the read-only e reads the archive as a writer
// would: Has (if a Finder) and Open of every message, List (if a Lister)
// of each once, and no message for a key never stored.
func (a *archive) checkReads(t *testing.T, e exporters.Exporter) {
	t.Helper()
	c := ctx(t)
	for i, m := range a.msgs {
		checkStored(t, c, e, m, a.data[i], a.refs[i])
	}
	checkAbsent(t, c, e, NewMessage("ro-never-stored", nil).Key)
	if l, ok := e.(exporters.Lister); ok {
		got, err := l.List(c, Account)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		seen := map[string]int{}
		for _, x := range got {
			seen[x.Key+" "+x.Ref]++
		}
		for i, m := range a.msgs {
			if n := seen[m.Key+" "+a.refs[i]]; n != 1 {
				t.Errorf("List gives %s at %q %d times, want once", m.UIDL, a.refs[i], n)
			}
		}
		if len(got) != len(a.msgs) {
			t.Errorf("List gives %d messages, want the %d stored", len(got), len(a.msgs))
		}
	}
}

// checkNoWrites checks that Put, Sync and Resume (if Resumable, with "" and
// with the writer's state) of the read-only e fail with
// exporters.ErrReadOnly and that Resume saves nothing.
func (s *suite) checkNoWrites(t *testing.T, e exporters.Exporter, a *archive, dir string) {
	t.Helper()
	c := ctx(t)
	kind := e.Properties().Kind
	d, err := e.Put(c, NewMessage("ro-new", []byte("Subject: n\n\nn\n")))
	if err == nil {
		t.Errorf("read-only Put succeeded (Ref %q)", d.Ref)
	} else {
		s.checkErr(t, "read-only Put", err, exporters.ErrReadOnly, kind, dir)
	}
	s.checkErr(t, "read-only Sync", e.Sync(c), exporters.ErrReadOnly, kind, dir)
	if r, ok := e.(exporters.Resumable); ok {
		for _, st := range []string{"", a.state} {
			saved := false
			err := r.Resume(c, st, func(context.Context, string) error { saved = true; return nil })
			s.checkErr(t, "read-only Resume("+st+")", err, exporters.ErrReadOnly, kind, dir)
			if saved {
				t.Errorf("read-only Resume(%q) saved a state", st)
			}
		}
	}
}

// testReadOnly opens a destination a writer filled read-only, reads all of
// it, tries to write and closes it twice: the read-only Exporter has the
// writer's Properties, reads what the writer stored, refuses every write,
// and not one name, size, time or byte of the destination changes.
func (s *suite) testReadOnly(t *testing.T) {
	dir := t.TempDir()
	a := s.newArchive(t, dir)
	testfs.Backdate(t, dir)
	before := s.snapshot(t, dir)

	e := s.openRaw(t, dir, true)
	if p := e.Properties(); p != a.props {
		t.Errorf("read-only Properties %+v, the writer's %+v", p, a.props)
	}
	a.checkReads(t, e)
	s.checkNoWrites(t, e, a, dir)
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	before.same(t, "a read-only Exporter", s.snapshot(t, dir))

	// The snapshot sees a writer's Put.
	c := ctx(t)
	w := s.openExporter(t, dir)
	s.put(t, c, w, NewMessage("ro-later", []byte("Subject: later\n\nlater\n")))
	s.sync(t, c, w)
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	after := s.snapshot(t, dir)
	if maps.Equal(before.files, after.files) && before.other == after.other {
		t.Error("a writer's Put and Sync left the snapshot as it was: the check above proves nothing")
	}
}

// testReadOnlyMissing opens a destination that is not there read-only: it
// fails with an error wrapping fs.ErrNotExist or exporters.ErrNotFound
// that names it, and creates nothing.
func (s *suite) testReadOnlyMissing(t *testing.T) {
	parent := t.TempDir()
	missing := filepath.Join(parent, "no", "destination")
	before := s.snapshot(t, missing)
	e, err := s.open(t, missing, true)
	if err == nil {
		e.Close()
		t.Fatalf("read-only open of a missing destination succeeded")
	}
	if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, exporters.ErrNotFound) {
		t.Errorf("read-only open of a missing destination: err = %v, want one wrapping fs.ErrNotExist or exporters.ErrNotFound", err)
	}
	if where := s.where(missing); !strings.Contains(err.Error(), where) {
		t.Errorf("read-only open of a missing destination: err = %q, want it to name %s", err, where)
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 0 {
		t.Errorf("a read-only open of a missing destination created %v", ents)
	}
	before.same(t, "a read-only open of a missing destination", s.snapshot(t, missing))
}

// testReadOnlyMedia opens a destination on a read-only bind mount: a
// writer cannot open it there, the read-only Exporter reads all of it and
// refuses writes.
func (s *suite) testReadOnlyMedia(t *testing.T) {
	dir := t.TempDir()
	a := s.newArchive(t, dir)
	mnt := testfs.ReadOnlyMount(t, dir, "")
	if w, err := s.open(t, mnt, false); err == nil {
		w.Close()
		t.Fatalf("a writer opened the read-only mount %s", mnt)
	}
	e := s.openReadOnly(t, mnt)
	a.checkReads(t, e)
	s.checkNoWrites(t, e, a, mnt)
	if err := e.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}
