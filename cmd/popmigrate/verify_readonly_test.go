package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/popmigrate/popmigrate/internal/testfs"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/eml"
	"github.com/popmigrate/popmigrate/exporters/mbox"
)

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
	testfs.Backdate(t, f.out)
	before := testfs.Snapshot(t, f.out)

	runMain(t, f.verifyArgs()...).wantCode(t, exitOK)
	for _, dest := range f.destSpecs() {
		runMain(t, "verify", "--manifest", manifest, "--to", dest).wantCode(t, exitOK)
	}
	testfs.Unchanged(t, f.out, before)

	// One flipped byte per destination: message 1 in the Maildir, 2 in
	// the mbox, 3 in an .eml file.
	changeFile(t, f.maildirFile(1), flipBody(1))
	changeFile(t, f.mbox, flipBody(2))
	changeFile(t, f.emlFile(t, 3), flipBody(3))
	testfs.Backdate(t, f.out)
	before = testfs.Snapshot(t, f.out)
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
	testfs.Unchanged(t, f.out, before)
}

// TestVerifyCLIReadOnlyMedia: an archive on a read-only mount verifies,
// against the journal and against a manifest. The test is skipped where
// the mount is not allowed.
func TestVerifyCLIReadOnlyMedia(t *testing.T) {
	f := newVerifyFixture(t, 3)
	manifest := f.writeManifest(t)
	testfs.ReadOnlyMount(t, f.out, f.out)
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
