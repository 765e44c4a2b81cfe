//go:build unix

package journal

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// withUmask runs f with the process umask set to mask. Tests using it must
// not run in parallel: the umask is process-wide.
func withUmask(t *testing.T, mask int, f func()) {
	t.Helper()
	old := syscall.Umask(mask)
	defer syscall.Umask(old)
	f()
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s: mode %#o, want %#o", filepath.Base(path), got, want)
	}
}

func TestJournalFilesAre0600WhateverTheUmask(t *testing.T) {
	for _, mask := range []int{0o000, 0o022, 0o277} {
		path := filepath.Join(t.TempDir(), "j.db")
		withUmask(t, mask, func() {
			j, err := Open(testCtx(t), path)
			if err != nil {
				t.Fatalf("umask %#o: Open: %v", mask, err)
			}
			defer j.Close()
			// A write makes SQLite create -wal and -shm.
			mustListing(t, j, "alice", listing("u", 2))
			checkMode(t, path, 0o600)
			checkMode(t, path+"-wal", 0o600)
			checkMode(t, path+"-shm", 0o600)
		})
	}
}

func TestOpenTightensWideMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	j, err := Open(testCtx(t), path)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	j, err = Open(testCtx(t), path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	checkMode(t, path, 0o600)
}
