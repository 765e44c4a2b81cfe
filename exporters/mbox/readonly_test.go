package mbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/internal/testfs"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/exportertest"
	"github.com/popmigrate/popmigrate/internal/testmsg"
)

func newReadOnly(t testing.TB, path, id string) *Exporter {
	t.Helper()
	e, err := New(path, &Options{ID: id, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// archive is an mbox file and its index, written by a writer Exporter and
// closed, holding the sample messages.
type archive struct {
	path string
	msgs []*exporters.Message
	data [][]byte // of msgs
	refs []string // of msgs
}

func newArchive(t *testing.T) *archive {
	t.Helper()
	a := &archive{path: filepath.Join(t.TempDir(), "archive", "alice.mbox")}
	w := newExporter(t, a.path)
	for _, s := range testmsg.Load(t) {
		m := exportertest.NewMessage(s.Name, s.Data)
		a.msgs = append(a.msgs, m)
		a.data = append(a.data, s.Data)
		a.refs = append(a.refs, mustPut(t, w, m))
	}
	mustSync(t, w)
	mustClose(t, w)
	testfs.Backdate(t, filepath.Dir(a.path))
	return a
}

// checkReads checks that e reads the first n messages of the archive as a
// writer would, and no other: List in file order, Has and Open of each, an
// unknown key and ref.
func (a *archive) checkReads(t *testing.T, e *Exporter, n int) {
	t.Helper()
	var want []exporters.Listed
	for i := range n {
		want = append(want, exporters.Listed{Key: a.msgs[i].Key, Ref: a.refs[i]})
	}
	l, err := e.List(t.Context(), "ignored")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(l, want) {
		t.Errorf("List = %v, want %v", l, want)
	}
	for i, m := range a.msgs {
		ref, ok := mustHas(t, e, m.Key)
		if i >= n {
			if ok {
				t.Errorf("Has(%s) found %s, an entry past what the index commits", m.Key, ref)
			}
			if _, err := e.Open(t.Context(), a.refs[i]); !errors.Is(err, exporters.ErrNotFound) {
				t.Errorf("Open(%s) past the committed entries = %v, want ErrNotFound", a.refs[i], err)
			}
			continue
		}
		if !ok || ref != a.refs[i] {
			t.Errorf("Has(%s) = %q, %v; want %q", m.Key, ref, ok, a.refs[i])
		}
		if got := mustOpen(t, e, a.refs[i]); !bytes.Equal(got, a.data[i]) {
			t.Errorf("Open(%s) (%s) returned %d bytes that differ from the %d stored", a.refs[i], m.UIDL, len(got), len(a.data[i]))
		}
	}
	if _, ok := mustHas(t, e, exporters.MessageKey("nobody", "x")); ok {
		t.Error("Has found a message never stored")
	}
	if _, err := e.Open(t.Context(), "1+99999"); !errors.Is(err, exporters.ErrNotFound) {
		t.Errorf("Open of a ref with no entry = %v, want ErrNotFound", err)
	}
}

// checkNoWrites checks that Put, Sync and Resume of the read-only e fail
// with exporters.ErrReadOnly, naming the file.
func checkNoWrites(t *testing.T, e *Exporter) {
	t.Helper()
	_, err := e.Put(t.Context(), exportertest.NewMessage("new", []byte("Subject: n\n\nn\n")))
	if !errors.Is(err, exporters.ErrReadOnly) || !strings.Contains(err.Error(), e.Path()) {
		t.Errorf("Put = %v, want exporters.ErrReadOnly naming %s", err, e.Path())
	}
	if err := e.Sync(t.Context()); !errors.Is(err, exporters.ErrReadOnly) || !strings.Contains(err.Error(), e.Path()) {
		t.Errorf("Sync = %v, want exporters.ErrReadOnly naming %s", err, e.Path())
	}
	for _, state := range []string{"", "0", "10"} {
		saved := false
		save := func(_ context.Context, _ string) error { saved = true; return nil }
		if err := e.Resume(t.Context(), state, save); !errors.Is(err, exporters.ErrReadOnly) || saved {
			t.Errorf("Resume(%q) = %v (saved %v), want exporters.ErrReadOnly and nothing saved", state, err, saved)
		}
	}
}

// TestReadOnlyChangesNothing opens an archive read-only, reads all of it
// (List in file order), tries to write and resume from states a writer
// would repair from, and closes: not one name, size, time or byte in the
// folder changes, the index's bytes included, and CommitState is the
// file's size.
func TestReadOnlyChangesNothing(t *testing.T) {
	a := newArchive(t)
	dir := filepath.Dir(a.path)
	before := testfs.Snapshot(t, dir)
	index := readFile(t, a.path+IndexSuffix)

	e := newReadOnly(t, a.path, "")
	a.checkReads(t, e, len(a.msgs))
	checkNoWrites(t, e)
	if got, want := e.CommitState(), fmt.Sprint(fileSize(t, a.path)); got != want {
		t.Errorf("CommitState = %s, want the file's size %s", got, want)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	testfs.Same(t, dir, before, testfs.Snapshot(t, dir))
	if got := readFile(t, a.path+IndexSuffix); !bytes.Equal(got, index) {
		t.Errorf("the index changed:\n%s\nwas:\n%s", got, index)
	}
}

// TestReadOnlyIgnoresEntriesPastTheEnd: an mbox that lost its last entries
// (cut by hand, or a crash before the data reached the disk) and whose
// index ends with a torn line reads as the entries still in the file. A
// writer would rewrite the index; the read-only Exporter drops them in
// memory only.
func TestReadOnlyIgnoresEntriesPastTheEnd(t *testing.T) {
	a := newArchive(t)
	keep := 2
	off, n, err := parseRef(a.refs[keep-1])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(a.path, off+n+5); err != nil { // and half a From_ line
		t.Fatal(err)
	}
	idx, err := os.OpenFile(a.path+IndexSuffix, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := idx.WriteString(exporters.MessageKey("torn", "line") + " 123"); err != nil {
		t.Fatal(err)
	}
	if err := idx.Close(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(a.path)
	testfs.Backdate(t, dir)
	before := testfs.Snapshot(t, dir)
	index := readFile(t, a.path+IndexSuffix)

	e := newReadOnly(t, a.path, "")
	a.checkReads(t, e, keep)
	mustClose(t, e)
	testfs.Same(t, dir, before, testfs.Snapshot(t, dir))
	if got := readFile(t, a.path+IndexSuffix); !bytes.Equal(got, index) {
		t.Errorf("the index changed:\n%s\nwas:\n%s", got, index)
	}

	// A writer repairs the index on open: the check above would see it.
	w := newExporter(t, a.path)
	mustClose(t, w)
	if got := readFile(t, a.path+IndexSuffix); bytes.Equal(got, index) {
		t.Error("a writer left the index as it was: the check above proves nothing")
	}
}

// TestReadOnlyMissing: a missing index is an error naming it and wrapping
// fs.ErrNotExist, and nothing is created; a file that is not an mbox is
// refused as a writer refuses it. (The conformance suite opens a missing
// mbox file, in a missing folder.)
func TestReadOnlyMissing(t *testing.T) {
	parent := t.TempDir()
	noIndex := filepath.Join(parent, "no-index.mbox")
	if err := os.WriteFile(noIndex, []byte("From x Mon Jan  2 15:04:05 2006\n\nx\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(noIndex, &Options{ReadOnly: true}); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), noIndex+IndexSuffix) {
		t.Errorf("New without an index = %v, want an error wrapping fs.ErrNotExist naming %s", err, noIndex+IndexSuffix)
	}
	if _, err := os.Lstat(noIndex + IndexSuffix); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a read-only open created the index: %v", err)
	}

	notMbox := filepath.Join(parent, "notes.txt")
	if err := os.WriteFile(notMbox, []byte("not mail\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(notMbox, &Options{ReadOnly: true}); !errors.Is(err, ErrNotMbox) {
		t.Errorf("New of a text file = %v, want ErrNotMbox", err)
	}
	if _, err := New(parent, &Options{ReadOnly: true}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("New of a folder = %v, want an error saying it is not a regular file", err)
	}
}

// TestReadOnlyProperties: a read-only Exporter has the writer's Kind and
// destination id, the configured one too, so verify finds the journal's
// deliveries under it. (The conformance suite checks the default one.)
func TestReadOnlyProperties(t *testing.T) {
	a := newArchive(t)
	for _, id := range []string{"mbox:/srv/archive/alice.mbox"} {
		w, err := New(a.path, &Options{ID: id})
		if err != nil {
			t.Fatal(err)
		}
		r := newReadOnly(t, a.path, id)
		if got, want := r.Properties(), w.Properties(); got != want {
			t.Errorf("id %q: read-only Properties %+v, writer's %+v", id, got, want)
		}
		mustClose(t, w)
	}
	if got := newReadOnly(t, a.path, "").Properties(); got.Kind != "mbox" || got.ID != "mbox:"+a.path {
		t.Errorf("default Properties %+v", got)
	}
}

// TestReadOnlyWhileWriterAppends opens the file read-only, again and
// again, while a writer holds its lock and appends (some messages large
// enough to reach the file before their Sync): every open succeeds, lists
// a prefix of what was written, in order, and reads each listed message
// back exactly. A reader opened before takes no lock (a writer still
// starts) and keeps reading what it saw.
func TestReadOnlyWhileWriterAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "alice.mbox")
	const first, total = 3, 48
	msgs := make([]*exporters.Message, total)
	data := make([][]byte, total)
	for i := range msgs {
		body := fmt.Sprintf("Subject: %d\n\nFrom the body of %d\n>From quoted\n", i, i)
		if i%8 == 5 {
			body += strings.Repeat("a long line of a large message\n", (flushAt/31)+100)
		}
		data[i] = []byte(body)
		msgs[i] = exportertest.NewMessage(fmt.Sprint("m", i), data[i])
	}
	// wantAt returns the message with key, or -1.
	wantAt := func(key string) int {
		return slices.IndexFunc(msgs, func(m *exporters.Message) bool { return m.Key == key })
	}

	early := func() *Exporter {
		w := newExporter(t, path)
		for _, m := range msgs[:first] {
			mustPut(t, w, m)
		}
		mustSync(t, w)
		mustClose(t, w)
		return newReadOnly(t, path, "")
	}()

	w := newExporter(t, path) // the reader above holds no lock
	if w2, err := New(path, nil); !errors.Is(err, ErrLocked) {
		if err == nil {
			w2.Close()
		}
		t.Fatalf("a second writer: %v, want ErrLocked (the lock must be held for this test)", err)
	}
	done := make(chan error, 1)
	go func() {
		for i, m := range msgs[first:] {
			if _, err := w.Put(t.Context(), m); err != nil {
				done <- err
				return
			}
			if i%3 == 2 {
				if err := w.Sync(t.Context()); err != nil {
					done <- err
					return
				}
			}
		}
		done <- w.Sync(t.Context())
	}()

	check := func(e *Exporter) int {
		t.Helper()
		l, err := e.List(t.Context(), "")
		if err != nil {
			t.Fatal(err)
		}
		for i, x := range l {
			if j := wantAt(x.Key); j != i {
				t.Fatalf("List[%d] is %s, message %d; want message %d (in file order)", i, x.Key, j, i)
			}
			if ref, ok := mustHas(t, e, x.Key); !ok || ref != x.Ref {
				t.Fatalf("Has(%s) = %q, %v; want %q", x.Key, ref, ok, x.Ref)
			}
			if got := mustOpen(t, e, x.Ref); !bytes.Equal(got, data[i]) {
				t.Fatalf("Open(%s) of message %d: %d bytes that differ from the %d written", x.Ref, i, len(got), len(data[i]))
			}
		}
		return len(l)
	}
	deadline := time.Now().Add(20 * time.Second)
	var werr error
	opens, last := 0, 0
	for running := true; running; opens++ {
		select {
		case werr = <-done:
			running = false
		default:
		}
		if opens >= 1000 || time.Now().After(deadline) {
			t.Fatalf("the writer is still appending after %d read-only opens", opens)
		}
		e, err := New(path, &Options{ReadOnly: true})
		if err != nil {
			t.Fatalf("read-only open %d while the writer appends: %v", opens, err)
		}
		n := check(e)
		if n < last || n < first {
			t.Fatalf("open %d lists %d messages; an earlier one listed %d", opens, n, last)
		}
		last = n
		checkNoWrites(t, e)
		mustClose(t, e)
	}
	if werr != nil {
		t.Fatalf("writer: %v", werr)
	}
	if last != total {
		t.Errorf("the open after the writer's last Sync lists %d messages, want %d", last, total)
	}
	if n := check(early); n != first {
		t.Errorf("the reader opened before the appends lists %d messages, want %d", n, first)
	}
	t.Logf("%d read-only opens while the writer appended", opens)
}
