package verify_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/verify"
)

// batchDest is a destination that reads copies back through OpenAll:
// from the end of refs to the start, on two goroutines, as a server
// answering a set may.
type batchDest struct {
	exporters.Exporter
	sets  *atomic.Int32 // OpenAll calls
	cut   int           // > 0: OpenAll fails with errCut after this many copies
	calls atomic.Int32
}

var errCut = errors.New("connection lost")

func (b *batchDest) Open(ctx context.Context, ref string) (io.ReadCloser, error) {
	return b.Exporter.(exporters.Opener).Open(ctx, ref)
}

func (b *batchDest) List(ctx context.Context, account string) ([]exporters.Listed, error) {
	return b.Exporter.(exporters.Lister).List(ctx, account)
}

func (b *batchDest) OpenAll(ctx context.Context, refs []string, fn func(int, io.Reader, error) error) error {
	b.sets.Add(1)
	done := make(chan error, 2)
	for half := range 2 {
		go func() {
			for i := len(refs) - 1 - half; i >= 0; i -= 2 {
				if b.cut > 0 && int(b.calls.Add(1)) > b.cut {
					done <- errCut
					return
				}
				rc, err := b.Open(ctx, refs[i])
				if err != nil {
					err = fn(i, nil, err)
				} else {
					err = fn(i, rc, nil)
					rc.Close()
				}
				if err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	return errors.Join(<-done, <-done)
}

// damaged returns a world of 9 messages whose Maildir copies of u2 is
// changed, of u5 is gone and of u7 is unreadable; with batch its Maildir
// is read through OpenAll.
func damaged(t *testing.T, batch *batchDest) *world {
	w := newWorld(t, 9)
	flipByte(t, w.mdPath("u2"))
	if err := os.Remove(w.mdPath("u5")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(w.mdPath("u7")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(w.mdPath("u7"), 0o700); err != nil {
		t.Fatal(err)
	}
	if batch != nil {
		batch.Exporter = w.md
		w.dests[w.mdID()] = batch
	}
	return w
}

// describe renders res without the world's temporary folder.
func describe(w *world, res *verify.Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "checked %d\n", res.Checked)
	for _, f := range res.Findings {
		fmt.Fprintf(&b, "%s %s %s %s %s %s\n", f.Kind, f.UIDL, f.DestID, f.Want, f.Got, f.Detail)
	}
	return strings.ReplaceAll(b.String(), w.dir, "DIR")
}

// TestAccountBatchOpenerSameFindings: a destination read through OpenAll
// (in any order, on several goroutines) gives the findings, in the same
// order, and the journal records that Open one copy at a time gives.
func TestAccountBatchOpenerSameFindings(t *testing.T) {
	w1 := damaged(t, nil)
	want := describe(w1, w1.verifyAll(nil))
	var sets atomic.Int32
	w2 := damaged(t, &batchDest{sets: &sets})
	got := describe(w2, w2.verifyAll(nil))
	if sets.Load() == 0 {
		t.Fatal("OpenAll was not used")
	}
	if got != want {
		t.Errorf("findings through OpenAll:\n%s\nwant, as through Open:\n%s", got, want)
	}
	if !strings.Contains(got, "missing u5") || !strings.Contains(got, "checksum u2") {
		t.Errorf("the damage was not found:\n%s", got)
	}
	// The records too: a second verify sees the same journal.
	want = describe(w1, w1.verifyAll(nil))
	got = describe(w2, w2.verifyAll(nil))
	if got != want {
		t.Errorf("second verify through OpenAll:\n%s\nwant:\n%s", got, want)
	}
}

// TestAccountBatchOpenerFails: the copies an OpenAll that fails did not
// reach are unreadable, never matched and never missing.
func TestAccountBatchOpenerFails(t *testing.T) {
	var sets atomic.Int32
	w := newWorld(t, 9)
	w.dests[w.mdID()] = &batchDest{Exporter: w.md, sets: &sets, cut: 4}
	res := w.verifyAll(nil)
	var unreadable []string
	for _, f := range res.Findings {
		if f.DestID != w.mdID() {
			continue
		}
		switch f.Kind {
		case verify.Unreadable:
			if !strings.Contains(f.Detail, errCut.Error()) {
				t.Errorf("%s: %q does not give the failure", f.UIDL, f.Detail)
			}
			unreadable = append(unreadable, f.UIDL)
		case verify.Match:
		default:
			t.Errorf("%s: %s, want match or unreadable", f.UIDL, f.Kind)
		}
	}
	if len(unreadable) != 9-4 {
		t.Errorf("unreadable %v, want the 5 copies OpenAll did not reach", unreadable)
	}
}
