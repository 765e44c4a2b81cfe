package verify_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/popmigrate/popmigrate/verify"
)

// damagedManifest returns the manifest of w with a line that is not JSON
// before its third line and the sha256 of its sixth line forged, so that
// findings about the manifest come between findings about copies.
func damagedManifest(t *testing.T, w *world) []byte {
	t.Helper()
	lines := strings.SplitAfter(string(w.manifest()), "\n")
	if len(lines) < 7 {
		t.Fatalf("manifest of %d lines", len(lines))
	}
	sum := sha256Hex(w.msgs[5].canon)
	if !strings.Contains(lines[5], sum) {
		t.Fatalf("line 6 %q does not hold the sha256 of %s", lines[5], w.msgs[5].uidl)
	}
	lines[5] = strings.Replace(lines[5], sum, sha256Hex([]byte("forged")), 1)
	lines = append(lines[:2], append([]string{"garbage\n"}, lines[2:]...)...)
	return []byte(strings.Join(lines, ""))
}

// TestManifestBatchOpenerSameFindings: a destination read through OpenAll
// (in any order, on several goroutines) gives VerifyManifest the findings,
// in the same order, that Open one copy at a time gives, findings about
// the manifest's own lines included.
func TestManifestBatchOpenerSameFindings(t *testing.T) {
	w := damaged(t, nil)
	m := damagedManifest(t, w)
	want := describe(w, verifyManifest(t, m, w.md))
	var sets atomic.Int32
	got := describe(w, verifyManifest(t, m, &batchDest{Exporter: w.md, sets: &sets}))
	if sets.Load() != 1 {
		t.Errorf("%d OpenAll calls, want 1", sets.Load())
	}
	if got != want {
		t.Errorf("findings through OpenAll:\n%s\nwant, as through Open:\n%s", got, want)
	}
	for _, s := range []string{"missing u5", "checksum u2", "unreadable u7", "checksum u6", "not a JSON object", "root"} {
		if !strings.Contains(got, s) {
			t.Errorf("no %q in the findings:\n%s", s, got)
		}
	}
}

// windowDest is a batchDest that records how many copies each OpenAll
// asks for.
type windowDest struct {
	*batchDest
	mu    sync.Mutex
	sizes []int
}

func (d *windowDest) OpenAll(ctx context.Context, refs []string, fn func(int, io.Reader, error) error) error {
	d.mu.Lock()
	d.sizes = append(d.sizes, len(refs))
	d.mu.Unlock()
	return d.batchDest.OpenAll(ctx, refs, fn)
}

// TestManifestBatchOpenerWindows: the copies of a large manifest are read
// in windows of at most 2048, with the findings of the per-copy path.
func TestManifestBatchOpenerWindows(t *testing.T) {
	if testing.Short() {
		t.Skip("stores 2100 messages")
	}
	w := newWorld(t, 2100)
	flipByte(t, w.mdPath("u2099"))
	m := w.manifest()
	want := describe(w, verifyManifest(t, m, w.md))
	d := &windowDest{batchDest: &batchDest{Exporter: w.md, sets: new(atomic.Int32)}}
	got := describe(w, verifyManifest(t, m, d))
	if len(d.sizes) != 2 || d.sizes[0] != 2048 || d.sizes[1] != 2100-2048 {
		t.Errorf("OpenAll asked for %v copies, want [2048 %d]", d.sizes, 2100-2048)
	}
	if got != want {
		t.Errorf("findings through OpenAll differ from those through Open:\n%s\nwant:\n%s", got, want)
	}
	if !strings.Contains(got, "checked 2100\n") || !strings.Contains(got, "checksum u2099") {
		t.Errorf("findings:\n%s", got[:min(len(got), 400)])
	}
}

// cancelDest cancels the verification's context on its first OpenAll.
type cancelDest struct {
	*batchDest
	cancel context.CancelFunc
}

func (d *cancelDest) OpenAll(ctx context.Context, refs []string, fn func(int, io.Reader, error) error) error {
	d.cancel()
	return d.batchDest.OpenAll(ctx, refs, fn)
}

// TestManifestBatchOpenerCancel: a context that ends during an OpenAll
// ends VerifyManifest with its error.
func TestManifestBatchOpenerCancel(t *testing.T) {
	w := newWorld(t, 5)
	m := w.manifest()
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	d := &cancelDest{batchDest: &batchDest{Exporter: w.md, sets: new(atomic.Int32)}, cancel: cancel}
	res, err := verify.VerifyManifest(ctx, bytes.NewReader(m), d)
	if !errors.Is(err, context.Canceled) || res != nil {
		t.Errorf("VerifyManifest = %v, %v; want context.Canceled", res, err)
	}
}
