//go:build unix

package maildir

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// A FIFO planted at a message's final name is not a message: Has does not
// count it, Open fails at once instead of blocking, and Put replaces it.
func TestFIFOAtFinalName(t *testing.T) {
	dir := t.TempDir()
	e := newExporter(t, dir)
	m := msg("fifo", "body\n")
	name := m.Key + Suffix
	if err := syscall.Mkfifo(filepath.Join(dir, "new", name), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok := mustHas(t, e, m.Key); ok {
		t.Error("Has counts a FIFO as a message")
	}
	done := make(chan error, 1)
	go func() {
		rc, err := e.Open(t.Context(), "new/"+name)
		if err == nil {
			rc.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Error("Open of a FIFO succeeded")
		}
	case <-time.After(5 * time.Second):
		// Unblock the goroutine before failing.
		if f, err := os.OpenFile(filepath.Join(dir, "new", name), os.O_WRONLY, 0); err == nil {
			f.Close()
		}
		t.Fatal("Open blocked on a FIFO")
	}
	ref := mustStore(t, e, m)
	if fi, err := os.Lstat(filepath.Join(dir, ref)); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("%s after Put: %v, %v; want a regular file", ref, fi, err)
	}
	if got := mustRead(t, e, ref); got != "body\n" {
		t.Errorf("Open = %q", got)
	}
}
