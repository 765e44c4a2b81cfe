// Package testfs helps tests prove that something left a folder tree
// alone: a snapshot of every entry (type, permissions, size, mtime,
// content hash), backdating so that a change within the same clock tick
// still shows, and read-only bind mounts for tests of read-only media.
package testfs

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// OldTime is the modification time Backdate gives every entry.
var OldTime = time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)

// Backdate sets the access and modification times of every file and
// folder under root to OldTime, so that any later change shows in a
// Snapshot even within the same clock tick.
func Backdate(t testing.TB, root string) {
	t.Helper()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink != 0 {
			return err
		}
		return os.Chtimes(path, OldTime, OldTime)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Snapshot describes every entry under root, by path relative to root:
// type and permissions, size, modification time, and the sha256 of a
// regular file's bytes. Access times are left out: reading changes them.
func Snapshot(t testing.TB, root string) map[string]string {
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

// Same fails the test for every entry that differs between before and
// after, naming what was compared.
func Same(t testing.TB, what string, before, after map[string]string) {
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

// Unchanged fails the test for every entry under root that differs from
// the snapshot before.
func Unchanged(t testing.TB, root string, before map[string]string) {
	t.Helper()
	Same(t, root, before, Snapshot(t, root))
}

// ReadOnlyMount bind-mounts dir read-only at mnt (a new folder when mnt is
// "", or dir itself) until the test ends, and returns the mount point. It
// skips the test, saying why, when the system does not allow the mount:
// that is the only thing it skips, and only tests of real read-only media
// use it.
func ReadOnlyMount(t testing.TB, dir, mnt string) string {
	t.Helper()
	if mnt == "" {
		mnt = t.TempDir()
	}
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
