package main

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/eml"
	"github.com/popmigrate/popmigrate/exporters/mbox"
)

// oldTime is the modification time backdateTree gives every entry, so that
// any later change (even within the same clock tick) shows in its mtime.
var oldTime = time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)

// backdateTree sets the times of every file and folder under root to
// oldTime.
func backdateTree(t *testing.T, root string) {
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

// treeSnapshot describes every entry under root by relative path: type
// and permissions, size, modification time and, for a regular file, the
// sha256 of its bytes. Access times are left out: reading changes them.
func treeSnapshot(t *testing.T, root string) map[string]string {
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

// sameTree fails the test for every entry under root that differs from
// before.
func sameTree(t *testing.T, root string, before map[string]string) {
	t.Helper()
	after := treeSnapshot(t, root)
	for k, b := range before {
		if a := after[k]; a != b {
			t.Errorf("%s: %q changed: before %q, after %q", root, k, b, a)
		}
	}
	for k, a := range after {
		if _, ok := before[k]; !ok {
			t.Errorf("%s: %q appeared: %q", root, k, a)
		}
	}
}

// mountReadOnly bind-mounts dir read-only over itself until the test ends.
// It skips the test when the sandbox does not allow it.
func mountReadOnly(t *testing.T, dir string) {
	t.Helper()
	if out, err := exec.Command("mount", "--bind", dir, dir).CombinedOutput(); err != nil {
		t.Skipf("read-only bind mount not available here: mount --bind: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
			exec.Command("umount", "-l", dir).Run()
		}
	})
	if out, err := exec.Command("mount", "-o", "remount,ro,bind", dir).CombinedOutput(); err != nil {
		t.Skipf("read-only bind mount not available here: mount -o remount,ro,bind: %v: %s", err, out)
	}
}

// writeManifest writes alice's manifest with `popmigrate manifest` beside
// the archive (not in it) and returns its path.
func (f *verifyFixture) writeManifest(t *testing.T) string {
	t.Helper()
	out := filepath.Join(f.dir, "alice.manifest.jsonl")
	runMain(t, "manifest", "--journal", f.journal, "--account", f.account("alice"), "--out", out).wantCode(t, exitOK)
	return out
}

// emlFile returns the path of the .eml file of alice's message i.
func (f *verifyFixture) emlFile(t *testing.T, i int) string {
	t.Helper()
	name := filepath.Join(f.eml, eml.AccountDir(f.account("alice")), "*-"+exporters.MessageKey(f.account("alice"), uid(i))+eml.Ext)
	files, err := filepath.Glob(name)
	if err != nil || len(files) != 1 {
		t.Fatalf("eml file of message %d: %v %v", i, files, err)
	}
	return files[0]
}

// destSpecs returns alice's three destinations as --to takes them.
func (f *verifyFixture) destSpecs() []string {
	return []string{f.maildirID(), f.mboxID(), f.emlID()}
}

// TestVerifyCLILeavesArchiveUnchanged: verify and verify --manifest read
// the whole archive and leave it byte for byte as it was, with its times,
// the temporary files a writer would clean up, and the mbox index. A
// flipped byte in each destination is still found (exit 3), and the
// damaged archive is left as it is too.
func TestVerifyCLILeavesArchiveUnchanged(t *testing.T) {
	f := newVerifyFixture(t, 3)
	manifest := f.writeManifest(t)
	for _, p := range []string{
		filepath.Join(f.maildir, "tmp", "left-by-a-crash.tmp"),
		filepath.Join(f.eml, eml.AccountDir(f.account("alice")), eml.TmpDir, "left-by-a-crash.tmp"),
	} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	backdateTree(t, f.out)
	before := treeSnapshot(t, f.out)

	runMain(t, f.verifyArgs()...).wantCode(t, exitOK)
	for _, dest := range f.destSpecs() {
		runMain(t, "verify", "--manifest", manifest, "--to", dest).wantCode(t, exitOK)
	}
	sameTree(t, f.out, before)

	// One flipped byte per destination: message 1 in the Maildir, 2 in
	// the mbox, 3 in an .eml file.
	changeFile(t, f.maildirFile(1), flipBody(1))
	changeFile(t, f.mbox, flipBody(2))
	changeFile(t, f.emlFile(t, 3), flipBody(3))
	backdateTree(t, f.out)
	before = treeSnapshot(t, f.out)
	account := regexp.QuoteMeta(f.account("alice"))
	r := runMain(t, f.verifyArgs()...)
	r.wantCode(t, exitMismatch)
	for i, dest := range f.destSpecs() {
		re := fmt.Sprintf(`(?m)^\* %s %s %s checksum differs`, account, uid(i+1), regexp.QuoteMeta(dest))
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Errorf("verify: no line matching %s in:\n%s", re, r)
		}
	}
	if !strings.Contains(r.stdout, "\n3 problems, 0 notes\n") {
		t.Errorf("verify: want exactly 3 problems:\n%s", r)
	}
	for i, dest := range f.destSpecs() {
		r := runMain(t, "verify", "--manifest", manifest, "--to", dest)
		r.wantCode(t, exitMismatch)
		re := fmt.Sprintf(`(?m)^\* %s %s \S+ checksum differs`, account, uid(i+1))
		if !regexp.MustCompile(re).MatchString(r.stdout) || !strings.Contains(r.stdout, "\n1 problems, 0 notes\n") {
			t.Errorf("verify --manifest --to %s: want one line matching %s:\n%s", dest, re, r)
		}
	}
	sameTree(t, f.out, before)
}

// TestVerifyCLIReadOnlyMedia: an archive on a read-only mount verifies,
// against the journal and against a manifest. The test is skipped where
// the mount is not allowed.
func TestVerifyCLIReadOnlyMedia(t *testing.T) {
	f := newVerifyFixture(t, 3)
	manifest := f.writeManifest(t)
	mountReadOnly(t, f.out)
	if err := os.WriteFile(filepath.Join(f.out, "probe"), nil, 0o600); err == nil {
		t.Fatalf("%s is still writable after the read-only mount", f.out)
	}
	r := runMain(t, f.verifyArgs()...)
	r.wantCode(t, exitOK)
	if want := f.account("alice") + ": 9 copies checked: 9 match\n0 problems, 0 notes\n"; r.stdout != want {
		t.Errorf("verify: stdout %q, want %q", r.stdout, want)
	}
	for _, dest := range f.destSpecs() {
		runMain(t, "verify", "--manifest", manifest, "--to", dest).wantCode(t, exitOK)
	}
	st := journalStatus(t, f.journal)[f.account("alice")]
	if st.Verified != 3 {
		t.Errorf("journal status %+v: want the 3 messages verified", st)
	}
}

// TestVerifyCLIMboxWhileLocked: an mbox that a writer holds (a run
// appending to it) verifies instead of being reported unreadable.
func TestVerifyCLIMboxWhileLocked(t *testing.T) {
	f := newVerifyFixture(t, 3)
	manifest := f.writeManifest(t)
	w, err := mbox.New(f.mbox, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w2, err := mbox.New(f.mbox, nil); !errors.Is(err, mbox.ErrLocked) {
		if err == nil {
			w2.Close()
		}
		t.Fatalf("second writer: %v; want ErrLocked (the lock must be held for this test)", err)
	}
	r := runMain(t, f.verifyArgs()...)
	r.wantCode(t, exitOK)
	if strings.Contains(r.stdout, "unreadable") {
		t.Errorf("verify reports the locked mbox unreadable:\n%s", r)
	}
	runMain(t, "verify", "--manifest", manifest, "--to", f.mboxID()).wantCode(t, exitOK)
}
