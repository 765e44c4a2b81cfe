package durable

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/exporters"
)

func newWriter(t *testing.T) (*Writer, string) {
	t.Helper()
	dir := t.TempDir()
	r, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if err := r.Mkdir("tmp", 0o700); err != nil {
		t.Fatal(err)
	}
	return &Writer{Root: r}, dir
}

// newDirsWriter is newWriter with a new/ folder too, and tmp/ and new/
// open (OpenDirs): operations on files directly in them take the open
// folders' way.
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

// writers are the two ways a Writer reaches a file, for the tests that
// must hold for both: through the root by name (files at the top), and
// through an open folder (files in new/). up leads out of the root from
// in.
var writers = []struct {
	name   string
	new    func(*testing.T) (*Writer, string)
	in, up string
}{
	{"root", newWriter, "", "../"},
	{"open folders", newDirsWriter, "new/", "new/../../"},
}

// names returns the entries of dir/sub, sorted.
func names(t *testing.T, dir, sub string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, sub))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	slices.Sort(out)
	return out
}

// seq returns a tmpName function giving tmp/a.tmp, tmp/b.tmp, ...
func seq(names ...string) func() string {
	i := 0
	return func() string {
		n := "tmp/" + names[i%len(names)] + TmpSuffix
		i++
		return n
	}
}

func TestWrite(t *testing.T) {
	w, dir := newWriter(t)
	data := bytes.Repeat([]byte("line\r\n"), 3*chunkSize/6+7) // several chunks, bytes kept as they are
	if err := w.Write(t.Context(), seq("a"), "msg", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "msg"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("file holds %d bytes, want the %d written", len(got), len(data))
	}
	fi, err := os.Stat(filepath.Join(dir, "msg"))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("mode %o, want 600", perm)
	}
	if left := names(t, dir, "tmp"); len(left) != 0 {
		t.Errorf("tmp holds %q after Write", left)
	}
	// An empty body gives an empty file; a second Write replaces the first.
	if err := w.Write(t.Context(), seq("b"), "msg", bytes.NewReader(nil)); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "msg")); len(got) != 0 {
		t.Errorf("after an empty Write the file holds %d bytes", len(got))
	}
}

// A taken tmp name is never opened: Write tries a fresh one, up to three
// in all, and leaves the taken file alone.
func TestWriteTakenTmpName(t *testing.T) {
	w, dir := newWriter(t)
	for _, n := range []string{"a", "b"} {
		if err := os.WriteFile(filepath.Join(dir, "tmp", n+TmpSuffix), []byte("other"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Write(t.Context(), seq("a", "b", "c"), "msg", bytes.NewReader([]byte("x"))); err != nil {
		t.Fatalf("Write with two taken names: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "msg")); string(got) != "x" {
		t.Errorf("msg = %q", got)
	}
	err := w.Write(t.Context(), seq("a", "b", "a", "c"), "msg2", bytes.NewReader([]byte("y")))
	if !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), filepath.Join(dir, "tmp", "a"+TmpSuffix)) {
		t.Errorf("Write with three taken names: err = %v, want ErrExist naming the tmp path", err)
	}
	for _, n := range []string{"a", "b"} {
		if got, _ := os.ReadFile(filepath.Join(dir, "tmp", n+TmpSuffix)); string(got) != "other" {
			t.Errorf("taken tmp file %s changed to %q", n, got)
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, "msg2")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("msg2 exists after a failed Write: %v", err)
	}
}

// errBody fails every read.
type errBody struct{ err error }

func (b errBody) Size() int64                       { return 5 }
func (b errBody) ReadAt([]byte, int64) (int, error) { return 0, b.err }

// shortBody claims 10 bytes and holds 3.
type shortBody struct{}

func (shortBody) Size() int64                           { return 10 }
func (shortBody) ReadAt(p []byte, _ int64) (int, error) { return copy(p, "abc"), io.EOF }

// cancelBody cancels a context at its first read.
type cancelBody struct {
	*bytes.Reader
	once   sync.Once
	cancel context.CancelFunc
}

func (b *cancelBody) ReadAt(p []byte, off int64) (int, error) {
	n, err := b.Reader.ReadAt(p, off)
	b.once.Do(b.cancel)
	return n, err
}

// Every failure leaves neither a tmp file nor the final name, and wraps its
// cause.
func TestWriteFailures(t *testing.T) {
	errRead := errors.New("read failed")
	errMine := errors.New("mine: short")
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	for _, tc := range []struct {
		name  string
		ctx   func() context.Context
		body  func(cancel context.CancelFunc) exporters.Body
		short error
		want  error
	}{
		{"cancelled before", func() context.Context { return cancelled }, nil, nil, context.Canceled},
		{"body error", nil, func(context.CancelFunc) exporters.Body {
			return errBody{errRead}
		}, nil, errRead},
		{"short body", nil, func(context.CancelFunc) exporters.Body {
			return shortBody{}
		}, nil, exporters.ErrShortBody},
		{"short body, own sentinel", nil, func(context.CancelFunc) exporters.Body {
			return shortBody{}
		}, errMine, errMine},
		{"cancelled mid-copy", nil, func(c context.CancelFunc) exporters.Body {
			return &cancelBody{Reader: bytes.NewReader(bytes.Repeat([]byte("x"), 3*chunkSize)), cancel: c}
		}, nil, context.Canceled},
		{"cancelled on the last chunk", nil, func(c context.CancelFunc) exporters.Body {
			return &cancelBody{Reader: bytes.NewReader([]byte("one chunk")), cancel: c}
		}, nil, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, dir := newWriter(t)
			w.ErrShortBody = tc.short
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if tc.ctx != nil {
				ctx = tc.ctx()
			}
			var body exporters.Body = bytes.NewReader([]byte("hello"))
			if tc.body != nil {
				body = tc.body(cancel)
			}
			err := w.Write(ctx, seq("t"), "msg", body)
			if !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want one wrapping %v", err, tc.want)
			}
			if left := names(t, dir, "tmp"); len(left) != 0 {
				t.Errorf("tmp holds %q after a failed Write", left)
			}
			if _, err := os.Lstat(filepath.Join(dir, "msg")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("msg exists after a failed Write: %v", err)
			}
		})
	}
}

// The rename replaces a symbolic link at the final name; it never writes
// through it.
func TestWriteReplacesSymlink(t *testing.T) {
	for _, c := range writers {
		t.Run(c.name, func(t *testing.T) {
			w, dir := c.new(t)
			msg := c.in + "msg"
			target := filepath.Join(t.TempDir(), "victim")
			if err := os.WriteFile(target, []byte("secret"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, filepath.Join(dir, msg)); err != nil {
				t.Fatal(err)
			}
			if err := w.Write(t.Context(), seq("a"), msg, bytes.NewReader([]byte("new"))); err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(target); string(got) != "secret" {
				t.Errorf("link target changed to %q", got)
			}
			if fi, err := os.Lstat(filepath.Join(dir, msg)); err != nil || !fi.Mode().IsRegular() {
				t.Errorf("%s after Write: %v, %v; want a regular file", msg, fi, err)
			}
		})
	}
}

// Names that lead out of the root are refused.
func TestWriteStaysInRoot(t *testing.T) {
	for _, c := range writers {
		t.Run(c.name, func(t *testing.T) {
			w, dir := c.new(t)
			if err := w.Write(t.Context(), seq("a"), c.up+"escape", bytes.NewReader([]byte("x"))); err == nil {
				t.Error("Write renamed out of the root")
			}
			if _, err := os.Lstat(filepath.Join(filepath.Dir(dir), "escape")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a file appeared outside the root: %v", err)
			}
			if left := names(t, dir, "tmp"); len(left) != 0 {
				t.Errorf("tmp holds %q after a failed Write", left)
			}
		})
	}
}

func TestSyncDir(t *testing.T) {
	w, dir := newWriter(t)
	for _, d := range []string{".", "tmp"} {
		if err := w.SyncDir(d); err != nil {
			t.Errorf("SyncDir(%q): %v", d, err)
		}
	}
	err := w.SyncDir("missing")
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), filepath.Join(dir, "missing")) {
		t.Errorf("SyncDir of a missing folder: err = %v, want ErrNotExist naming it", err)
	}
}

// OpenRegular opens a regular file and refuses a link and a folder (a
// FIFO too: dirs_unix_test.go); LstatType tells them apart without
// following the link; Remove removes a file once.
func TestOpenRegular(t *testing.T) {
	for _, c := range writers {
		t.Run(c.name, func(t *testing.T) {
			w, dir := c.new(t)
			if err := os.WriteFile(filepath.Join(dir, c.in+"file"), []byte("data"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("file", filepath.Join(dir, c.in+"link")); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(filepath.Join(dir, c.in+"sub"), 0o700); err != nil {
				t.Fatal(err)
			}
			f, err := w.OpenRegular(c.in + "file")
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(f)
			f.Close()
			if err != nil || string(got) != "data" {
				t.Errorf("read %q, %v", got, err)
			}
			for _, name := range []string{c.in + "link", c.in + "sub", "tmp"} {
				if f, err := w.OpenRegular(name); err == nil {
					f.Close()
					t.Errorf("OpenRegular(%q) succeeded, want an error", name)
				} else if !strings.Contains(err.Error(), "not a regular file") {
					t.Errorf("OpenRegular(%q): err = %v", name, err)
				}
			}
			if _, err := w.OpenRegular(c.in + "missing"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("OpenRegular of a missing file: err = %v, want ErrNotExist", err)
			}
			for name, want := range map[string]fs.FileMode{"file": 0, "link": fs.ModeSymlink, "sub": fs.ModeDir} {
				if typ, err := w.LstatType(c.in + name); err != nil || typ != want {
					t.Errorf("LstatType(%q) = %v, %v; want %v", c.in+name, typ, err, want)
				}
			}
			if _, err := w.LstatType(c.in + "missing"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("LstatType of a missing file: err = %v, want ErrNotExist", err)
			}
			if err := w.Remove(c.in + "file"); err != nil {
				t.Errorf("Remove: %v", err)
			}
			if err := w.Remove(c.in + "file"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Remove of a missing file: err = %v, want ErrNotExist", err)
			}
		})
	}
}

func TestRemoveStale(t *testing.T) {
	w, dir := newWriter(t)
	now := time.Now()
	cutoff := now.Add(-time.Hour)
	mk := func(name string, mtime time.Time) {
		t.Helper()
		p := filepath.Join(dir, "tmp", name)
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	mk("old.tmp", cutoff.Add(-time.Minute))   // removed
	mk("new.tmp", cutoff.Add(time.Minute))    // kept
	mk("old.other", cutoff.Add(-time.Minute)) // not ours: kept
	if err := os.Mkdir(filepath.Join(dir, "tmp", "dir.tmp"), 0o700); err != nil {
		t.Fatal(err)
	}
	old := cutoff.Add(-time.Minute)
	if err := os.Chtimes(filepath.Join(dir, "tmp", "dir.tmp"), old, old); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("old.other", filepath.Join(dir, "tmp", "link.tmp")); err != nil {
		t.Fatal(err)
	}
	if err := w.RemoveStale("tmp", cutoff); err != nil {
		t.Fatal(err)
	}
	if got, want := names(t, dir, "tmp"), []string{"dir.tmp", "link.tmp", "new.tmp", "old.other"}; !slices.Equal(got, want) {
		t.Errorf("tmp after RemoveStale = %q, want %q", got, want)
	}
	if err := w.RemoveStale("missing", cutoff); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("RemoveStale of a missing folder: err = %v, want ErrNotExist", err)
	}
}

func TestRandomHex(t *testing.T) {
	a, b := RandomHex(), RandomHex()
	if len(a) != 16 || strings.Trim(a, "0123456789abcdef") != "" || a == b {
		t.Errorf("RandomHex() = %q, %q", a, b)
	}
}

// Stage leaves a complete file under its temporary name; Barrier makes it
// durable; a failed Stage leaves nothing.
func TestStageAndBarrier(t *testing.T) {
	w, dir := newWriter(t)
	data := bytes.Repeat([]byte("staged\n"), 3*chunkSize/7)
	tmp, err := w.Stage(t.Context(), func() string { return "tmp/s.tmp" }, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, tmp)); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("staged file: %d bytes, %v; want %d", len(got), err, len(data))
	}
	if err := w.Barrier([]string{tmp}); err != nil {
		t.Fatalf("Barrier: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := w.Stage(ctx, func() string { return "tmp/c.tmp" }, bytes.NewReader(data)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Stage with a cancelled context: %v", err)
	}
	if got := names(t, dir, "tmp"); len(got) != 1 || got[0] != "s.tmp" {
		t.Errorf("tmp/ holds %v, want only s.tmp", got)
	}
}

// Staged publishes after one barrier, refuses a second file for the same
// final name, and keeps what it could not rename waiting.
func TestStaged(t *testing.T) {
	w, dir := newWriter(t)
	if err := w.Root.Mkdir("out", 0o700); err != nil {
		t.Fatal(err)
	}
	var s Staged
	stage := func(name string) string {
		tmp, err := w.Stage(t.Context(), func() string { return "tmp/" + name + ".tmp" }, bytes.NewReader([]byte(name)))
		if err != nil {
			t.Fatal(err)
		}
		return tmp
	}
	if !s.Add("out/a", stage("a")) || s.Add("out/a", "tmp/other.tmp") {
		t.Fatal("Add: want the first file kept and a second one for out/a refused")
	}
	if tmp, ok := s.Lookup("out/a"); !ok || tmp != "tmp/a.tmp" || s.Len() != 1 {
		t.Fatalf("Lookup = %q, %v; Len %d", tmp, ok, s.Len())
	}
	if err := w.Root.Mkdir("out/blocked", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := w.Root.WriteFile("out/blocked/x", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s.Add("out/blocked", stage("b"))
	var renamed []string
	err := s.Publish(w, func(dst string) { renamed = append(renamed, dst) })
	if err == nil {
		t.Fatal("Publish over a non-empty folder succeeded")
	}
	if _, ok := s.Lookup("out/blocked"); !ok {
		t.Error("a file that could not be renamed no longer waits")
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "out", "a")); len(renamed) == 1 && string(got) != "a" {
		t.Errorf("out/a holds %q", got)
	}
	if err := w.Root.RemoveAll("out/blocked"); err != nil {
		t.Fatal(err)
	}
	if err := s.Publish(w, nil); err != nil || s.Len() != 0 {
		t.Fatalf("second Publish: %v, %d left", err, s.Len())
	}
	if got, err := os.ReadFile(filepath.Join(dir, "out", "a")); err != nil || string(got) != "a" {
		t.Errorf("out/a: %q, %v", got, err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "out", "blocked")); err != nil || string(got) != "b" {
		t.Errorf("out/blocked: %q, %v", got, err)
	}
}
