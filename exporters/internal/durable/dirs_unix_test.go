//go:build unix

package durable

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// newDirsWriter is newWriter with tmp/ and new/ open (OpenDirs).
func newDirsWriter(t *testing.T) (*Writer, string) {
	t.Helper()
	w, dir := newWriter(t)
	if err := w.Root.Mkdir("new", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := w.OpenDirs("tmp", "new"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.CloseDirs)
	return w, dir
}

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
	w.CloseDirs() // from here on, through the root by name
	if err := w.Write(t.Context(), seq("b"), "new/msg2", bytes.NewReader([]byte("two"))); err != nil {
		t.Fatal(err)
	}
	if got := names(t, dir, "new"); len(got) != 1 || got[0] != "msg2" {
		t.Errorf("after CloseDirs new/ holds %q, want [msg2]", got)
	}
}

// The fast path never follows a symbolic link at the final name, and
// leaves the folder by no name.
func TestOpenDirsLinksAndEscapes(t *testing.T) {
	w, dir := newDirsWriter(t)
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"tmp/planted.tmp", "new/link"} {
		if err := os.Symlink(victim, filepath.Join(dir, l)); err != nil {
			t.Fatal(err)
		}
	}
	// A temporary name taken by a link is not written through: the next
	// name is tried.
	if err := w.Write(t.Context(), seq("planted", "b"), "new/link", bytes.NewReader([]byte("new"))); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(victim); string(got) != "secret" {
		t.Errorf("link target changed to %q", got)
	}
	if typ, err := w.LstatType("new/link"); err != nil || !typ.IsRegular() {
		t.Errorf("new/link after Write: %v, %v; want a regular file that replaced the link", typ, err)
	}
	if typ, err := w.LstatType("tmp/planted.tmp"); err != nil || typ != fs.ModeSymlink {
		t.Errorf("LstatType of a link = %v, %v; want the link itself", typ, err)
	}
	if err := w.Write(t.Context(), seq("c"), "new/../../escape", bytes.NewReader([]byte("x"))); err == nil {
		t.Error("Write renamed out of the root")
	}
	if _, err := os.Lstat(filepath.Join(filepath.Dir(dir), "escape")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a file appeared outside the root: %v", err)
	}
}

func TestOpenDirsOpenRegular(t *testing.T) {
	w, dir := newDirsWriter(t)
	if err := os.WriteFile(filepath.Join(dir, "new", "file"), []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("file", filepath.Join(dir, "new", "link")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "new", "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "new", "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	f, err := w.OpenRegular("new/file")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(f)
	f.Close()
	if err != nil || string(got) != "data" {
		t.Errorf("read %q, %v", got, err)
	}
	for _, name := range []string{"new/link", "new/fifo", "new/sub"} {
		if f, err := w.OpenRegular(name); err == nil {
			f.Close()
			t.Errorf("OpenRegular(%q) succeeded, want an error", name)
		} else if !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("OpenRegular(%q): err = %v", name, err)
		}
	}
	if _, err := w.OpenRegular("new/missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("OpenRegular of a missing file: err = %v, want ErrNotExist", err)
	}
	for name, want := range map[string]fs.FileMode{"new/file": 0, "new/link": fs.ModeSymlink, "new/fifo": fs.ModeNamedPipe, "new/sub": fs.ModeDir} {
		if typ, err := w.LstatType(name); err != nil || typ != want {
			t.Errorf("LstatType(%q) = %v, %v; want %v", name, typ, err, want)
		}
	}
	if _, err := w.LstatType("new/missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LstatType of a missing file: err = %v, want ErrNotExist", err)
	}
	if err := w.Remove("new/file"); err != nil {
		t.Errorf("Remove: %v", err)
	}
	if err := w.Remove("new/file"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Remove of a missing file: err = %v, want ErrNotExist", err)
	}
	if err := w.SyncDir("new"); err != nil {
		t.Errorf("SyncDir of an open folder: %v", err)
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
