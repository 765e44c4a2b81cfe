package mbox

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/exportertest"
)

func TestListConformance(t *testing.T) {
	exportertest.RunLister(t, func(t *testing.T, dir string) exporters.Exporter {
		e, err := New(filepath.Join(dir, "archive.mbox"), nil)
		if err != nil {
			t.Fatal(err)
		}
		return e
	})
}

func listRefs(t *testing.T, e *Exporter) []exporters.Listed {
	t.Helper()
	l, err := e.List(t.Context(), "ignored@example.org")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestListIsTheIndexInFileOrder: List gives the index entries in file
// order, and an entry another program appended (not in the index) is not
// listed.
func TestListIsTheIndexInFileOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.mbox")
	e := newExporter(t, path)
	a := exportertest.NewMessage("a", []byte("Subject: a\n\na\n"))
	b := exportertest.NewMessage("b", []byte("Subject: b\n\nno final LF"))
	refA, refB := mustPut(t, e, a), mustPut(t, e, b)
	mustSync(t, e)
	mustClose(t, e)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("From someone Mon Jan  2 15:04:05 2006\nSubject: by hand\n\nx\n\n"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	e = newExporter(t, path)
	want := []exporters.Listed{{Key: a.Key, Ref: refA}, {Key: b.Key, Ref: refB}}
	if got := listRefs(t, e); !slices.Equal(got, want) {
		t.Errorf("List = %v, want %v", got, want)
	}
}

// TestListDropsEntriesPastTheEnd: after the mbox lost its last entry
// (cut by hand, or a crash before the data reached the disk), New drops
// it from the index and List no longer gives it.
func TestListDropsEntriesPastTheEnd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.mbox")
	e := newExporter(t, path)
	a := exportertest.NewMessage("a", []byte("Subject: a\n\na\n"))
	refA := mustPut(t, e, a)
	mustPut(t, e, exportertest.NewMessage("b", []byte("Subject: b\n\nb\n")))
	mustSync(t, e)
	end := fileSize(t, path)
	mustClose(t, e)
	off, n, err := parseRef(refA)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, off+n); err != nil {
		t.Fatal(err)
	}
	if off+n >= end {
		t.Fatalf("entry a ends at %d, the file at %d: nothing was cut", off+n, end)
	}
	e = newExporter(t, path)
	if got, want := listRefs(t, e), []exporters.Listed{{Key: a.Key, Ref: refA}}; !slices.Equal(got, want) {
		t.Errorf("List = %v, want %v", got, want)
	}
}

func TestListAfterCloseAndCancel(t *testing.T) {
	e := newExporter(t, filepath.Join(t.TempDir(), "a.mbox"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := e.List(ctx, ""); !errors.Is(err, context.Canceled) {
		t.Errorf("List with a cancelled context: %v, want context.Canceled", err)
	}
	mustClose(t, e)
	if _, err := e.List(t.Context(), ""); !errors.Is(err, ErrClosed) {
		t.Errorf("List after Close: %v, want ErrClosed", err)
	}
}
