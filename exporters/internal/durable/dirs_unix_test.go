//go:build unix

package durable

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// What holds for both ways to a file (links, escapes, OpenRegular,
// LstatType, Remove) is tested over writers in durable_test.go; these
// tests are the open folders' own.

// The open folders are used, not looked up again by name: a folder moved
// after OpenDirs still receives the files.
func TestOpenDirsAreUsed(t *testing.T) {
	w, dir := newDirsWriter(t)
	if err := os.Rename(filepath.Join(dir, "new"), filepath.Join(dir, "moved")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "new"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(t.Context(), seq("a"), "new/msg", bytes.NewReader([]byte("body"))); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "moved", "msg")); err != nil || string(got) != "body" {
		t.Errorf("moved/msg = %q, %v; want the body written through the open folder", got, err)
	}
	if left := names(t, dir, "new"); len(left) != 0 {
		t.Errorf("the new folder of that name holds %q", left)
	}
	if err := w.SyncDir("new"); err != nil {
		t.Errorf("SyncDir of an open folder: %v", err)
	}
	w.CloseDirs() // from here on, through the root by name
	if err := w.Write(t.Context(), seq("b"), "new/msg2", bytes.NewReader([]byte("two"))); err != nil {
		t.Fatal(err)
	}
	if got := names(t, dir, "new"); len(got) != 1 || got[0] != "msg2" {
		t.Errorf("after CloseDirs new/ holds %q, want [msg2]", got)
	}
}

// A temporary name taken by a link is not written through: O_EXCL
// refuses it and the next name is tried.
func TestOpenDirsTmpNameTakenByLink(t *testing.T) {
	w, dir := newDirsWriter(t)
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, "tmp", "planted.tmp")); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(t.Context(), seq("planted", "b"), "new/msg", bytes.NewReader([]byte("new"))); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(victim); string(got) != "secret" {
		t.Errorf("link target changed to %q", got)
	}
	if typ, err := w.LstatType("tmp/planted.tmp"); err != nil || typ != fs.ModeSymlink {
		t.Errorf("LstatType of the planted link = %v, %v; want the link itself", typ, err)
	}
}

// A FIFO is no regular file, and opening it does not block.
func TestOpenRegularRefusesFIFO(t *testing.T) {
	for _, c := range writers {
		t.Run(c.name, func(t *testing.T) {
			w, dir := c.new(t)
			if err := syscall.Mkfifo(filepath.Join(dir, c.in+"fifo"), 0o600); err != nil {
				t.Fatal(err)
			}
			if f, err := w.OpenRegular(c.in + "fifo"); err == nil {
				f.Close()
				t.Error("OpenRegular of a FIFO succeeded, want an error")
			} else if !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("OpenRegular of a FIFO: err = %v", err)
			}
			if typ, err := w.LstatType(c.in + "fifo"); err != nil || typ != fs.ModeNamedPipe {
				t.Errorf("LstatType of a FIFO = %v, %v", typ, err)
			}
		})
	}
}

func TestOpenDirsRefusesWhatIsNoFolder(t *testing.T) {
	w, dir := newWriter(t)
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"missing", "file"} {
		err := w.OpenDirs("tmp", d)
		if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, d)) {
			t.Errorf("OpenDirs(tmp, %s): err = %v, want an error naming it", d, err)
		}
		if w.dirs != nil {
			t.Errorf("OpenDirs(tmp, %s) failed but kept folders open", d)
		}
	}
}
