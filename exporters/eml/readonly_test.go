package eml

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/exporters"
)

// oldTime is the modification time backdate gives every entry, so that any
// later change of a file or folder (even within the same clock tick as the
// set-up) shows in its mtime.
var oldTime = time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)

// backdate sets the access and modification times of every file and folder
// under root to oldTime.
func backdate(t *testing.T, root string) {
	t.Helper()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink != 0 {
			return err
		}
		return os.Chtimes(path, oldTime, oldTime)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// snapshot describes every entry under root, by path relative to root:
// type and permissions, size, modification time, and the sha256 of a
// regular file's bytes. Access times are left out: reading changes them.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		desc := fmt.Sprintf("%v %d %d", fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		rel, _ := filepath.Rel(root, path)
		out[filepath.ToSlash(rel)] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sameSnapshot fails the test for every entry that differs between before
// and after.
func sameSnapshot(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	var names []string
	for k := range before {
		names = append(names, k)
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	for _, k := range names {
		if b, a := before[k], after[k]; b != a {
			t.Errorf("%s changed %q: before %q, after %q", what, k, b, a)
		}
	}
}

// readOnlyMount bind-mounts dir read-only at a new folder and returns that
// folder; the mount is removed when the test ends. It skips the test when
// the sandbox does not allow the mount.
func readOnlyMount(t *testing.T, dir string) string {
	t.Helper()
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "--bind", dir, mnt).CombinedOutput(); err != nil {
		t.Skipf("read-only bind mount not available here: mount --bind: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
			exec.Command("umount", "-l", mnt).Run()
		}
	})
	if out, err := exec.Command("mount", "-o", "remount,ro,bind", mnt).CombinedOutput(); err != nil {
		t.Skipf("read-only bind mount not available here: mount -o remount,ro,bind: %v: %s", err, out)
	}
	probe := filepath.Join(mnt, ".probe")
	if err := os.WriteFile(probe, nil, 0o600); err == nil {
		os.Remove(probe)
		t.Skipf("the mount at %s is still writable", mnt)
	}
	return mnt
}

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
	backdate(t, a.dir)
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

// checkNoWrites checks that Put and Sync of the read-only e fail with
// ErrReadOnly, naming the folder, for an account it has a folder for and
// for a new one.
func checkNoWrites(t *testing.T, e *Exporter) {
	t.Helper()
	for _, acct := range []string{alice, "carol"} {
		_, err := e.Put(t.Context(), msgFor(acct, "new", "Subject: n\n\nn\n"))
		if !errors.Is(err, ErrReadOnly) || !strings.Contains(err.Error(), e.Dir()) {
			t.Errorf("Put for %s = %v, want ErrReadOnly naming %s", acct, err, e.Dir())
		}
	}
	if err := e.Sync(t.Context()); !errors.Is(err, ErrReadOnly) || !strings.Contains(err.Error(), e.Dir()) {
		t.Errorf("Sync = %v, want ErrReadOnly naming %s", err, e.Dir())
	}
}

// TestReadOnlyChangesNothing opens an archive read-only, reads all of it,
// tries to write and closes: not one name, size, time or byte under the
// root changes, the stale temporary file a writer removes included.
func TestReadOnlyChangesNothing(t *testing.T) {
	a := newArchive(t)
	before := snapshot(t, a.dir)

	e := newReadOnly(t, a.dir, "")
	a.checkReads(t, e)
	checkNoWrites(t, e)
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	sameSnapshot(t, a.dir, before, snapshot(t, a.dir))
	if _, err := os.Stat(a.stale); err != nil {
		t.Errorf("the stale temporary file: %v", err)
	}

	// The snapshot sees what a writer does: its probe on open, and the
	// clean-up of a folder's temporary files when Has first reads it.
	w := newExporter(t, a.dir)
	mustHas(t, w, exporters.MessageKey("nobody", "x"))
	w.Close()
	after := snapshot(t, a.dir)
	if _, ok := after[AccountDir(alice)+"/"+TmpDir+"/k.0123.tmp"]; ok || after["."] == before["."] {
		t.Errorf("a writer left the snapshot as it was (stale file kept %v; root %q): the check above proves nothing", ok, after["."])
	}
}

// TestReadOnlyProperties: a read-only Exporter has the writer's Kind and
// destination id, so verify finds the journal's deliveries under it.
func TestReadOnlyProperties(t *testing.T) {
	a := newArchive(t)
	for _, id := range []string{"", "eml:/srv/archive"} {
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

// TestReadOnlyMissing: a root that is not there is an error naming it and
// wrapping fs.ErrNotExist, and nothing is created; a root that is a file
// is an error too.
func TestReadOnlyMissing(t *testing.T) {
	parent := t.TempDir()
	missing := filepath.Join(parent, "no", "eml")
	if _, err := New(missing, &Options{ReadOnly: true}); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("New(%s) = %v, want an error wrapping fs.ErrNotExist naming it", missing, err)
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 0 {
		t.Errorf("a read-only open of a missing root created %v", ents)
	}
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

// TestReadOnlyMedia opens an eml tree on a read-only bind mount: a writer
// cannot open it there, the read-only Exporter reads all of it.
func TestReadOnlyMedia(t *testing.T) {
	a := newArchive(t)
	mnt := readOnlyMount(t, a.dir)
	if w, err := New(mnt, nil); err == nil {
		w.Close()
		t.Fatalf("a writer opened the read-only mount %s", mnt)
	}
	e := newReadOnly(t, mnt, "")
	a.checkReads(t, e)
	checkNoWrites(t, e)
	if err := e.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}
