package mbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/exportertest"
)

func listRefs(t *testing.T, e *Exporter) []exporters.Listed {
	t.Helper()
	l, err := e.List(t.Context(), "ignored@example.org")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestListGivesForeignMailWithoutAKey: List gives the index entries and,
// in file order among them, each message another program put in the file
// after popmigrate's first entry (appended after a run, or between two
// runs' entries), without a key, at its offset and length; bytes that
// start no From_ line are listed too. Mail the file held before
// popmigrate's first entry is not listed, and a read-only Exporter lists
// the same.
func TestListGivesForeignMailWithoutAKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.mbox")
	const before = "From old@example.net Mon Jan  2 15:04:05 2006\nSubject: there before\n\nold\n\n"
	if err := os.WriteFile(path, []byte(before), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newExporter(t, path)
	a := exportertest.NewMessage("a", []byte("Subject: a\n\na\n"))
	b := exportertest.NewMessage("b", []byte("Subject: b\n\nno final LF"))
	refA, refB := mustPut(t, e, a), mustPut(t, e, b)
	mustSync(t, e)
	mustClose(t, e)
	const byHand = "From someone Mon Jan  2 15:04:05 2006\nSubject: by hand\n\nx\n>From quoted\n\n"
	const second = "From other Mon Jan  2 15:04:06 2006\nSubject: second\n\ny\n"
	start := fileSize(t, path)
	appendForeign(t, path, byHand+second)
	// A writer that never resumed appends after the foreign mail.
	e = newExporter(t, path)
	c := exportertest.NewMessage("c", []byte("Subject: c\n\nc\n"))
	refC := mustPut(t, e, c)
	mustSync(t, e)
	mustClose(t, e)
	garbage := fileSize(t, path)
	appendForeign(t, path, "no From_ line\n")

	ref := func(off int64, n int) string { return fmt.Sprintf("%d+%d", off, n) }
	want := []exporters.Listed{
		{Key: a.Key, Ref: refA}, {Key: b.Key, Ref: refB},
		{Ref: ref(start, len(byHand))},
		{Ref: ref(start+int64(len(byHand)), len(second))}, // not the LF Put wrote before c's From_ line
		{Key: c.Key, Ref: refC},
		{Ref: ref(garbage, len("no From_ line\n"))},
	}
	e = newExporter(t, path)
	if got := listRefs(t, e); !slices.Equal(got, want) {
		t.Errorf("List = %v\nwant %v", got, want)
	}
	for _, l := range want {
		if l.Key == "" {
			if _, err := e.Open(t.Context(), l.Ref); !errors.Is(err, exporters.ErrNotFound) && !errors.Is(err, ErrInvalidRef) {
				t.Errorf("Open(%s) of foreign mail: %v, want ErrNotFound or ErrInvalidRef", l.Ref, err)
			}
		}
	}
	mustClose(t, e)
	if got := listRefs(t, newReadOnly(t, path, "")); !slices.Equal(got, want) {
		t.Errorf("read-only List = %v\nwant %v", got, want)
	}
}

// TestListLeavesOutOurUncommittedTail: after a crash, the entries of a
// run that never reached the index are popmigrate's (the intent log says
// so) and not listed; another program's mail after them is.
func TestListLeavesOutOurUncommittedTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.mbox")
	e, _ := committedArchive(t, path, 2)
	want := listRefs(t, e)
	mustPut(t, e, tornMessages(t)[2])
	mustPut(t, e, bigMessage(t))
	crash(t, e, false) // the big message is torn
	if got := listRefs(t, newReadOnly(t, path, "")); !slices.Equal(got, want) {
		t.Errorf("read-only List after a crash = %v\nwant %v", got, want)
	}
	at := fileSize(t, path)
	appendForeign(t, path, foreignMail)
	want = append(want, exporters.Listed{Ref: fmt.Sprintf("%d+%d", at, len(foreignMail))})
	if got := listRefs(t, newReadOnly(t, path, "")); !slices.Equal(got, want) {
		t.Errorf("read-only List after another program appended = %v\nwant %v", got, want)
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
