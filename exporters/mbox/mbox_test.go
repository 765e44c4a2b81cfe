package mbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/exportertest"
	"github.com/popmigrate/popmigrate/exporters/location"
	"github.com/popmigrate/popmigrate/internal/testmsg"
)

// countFiles counts every non-folder entry under dir.
func countFiles(dir string) int {
	n := 0
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}

// open is how the conformance suite opens a destination: as popmigrate
// does, through the kind's registry entry.
var open = exportertest.Through(Factory(), func(dir string) string { return "mbox:" + filepath.Join(dir, "archive.mbox") }, location.Env{})

func TestConformance(t *testing.T) {
	exportertest.RunWithOptions(t, open, &exportertest.Options{
		Count:      func(_ testing.TB, dir string) int { return countFiles(dir) },
		Concurrent: true,
		Files:      true,
	})
}

func newExporter(t testing.TB, path string) *Exporter {
	t.Helper()
	e, err := New(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func mustPut(t testing.TB, e *Exporter, m *exporters.Message) string {
	t.Helper()
	d, err := e.Put(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	return d.Ref
}

func mustSync(t testing.TB, e *Exporter) {
	t.Helper()
	if err := e.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func mustClose(t testing.TB, e *Exporter) {
	t.Helper()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
}

func mustHas(t testing.TB, e *Exporter, key string) (string, bool) {
	t.Helper()
	d, ok, err := e.Has(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return d.Ref, ok
}

func mustOpen(t testing.TB, e *Exporter, ref string) []byte {
	t.Helper()
	rc, err := e.Open(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// tornMessages are the five messages of the torn-tail tests.
func tornMessages(t *testing.T) []*exporters.Message {
	msgs := make([]*exporters.Message, 5)
	for i := range msgs {
		body := fmt.Sprintf("Subject: torn %d\n\nFrom the body of %d\n>From quoted\n", i, i)
		if i == 1 {
			body = strings.TrimSuffix(body, "\n") // no final LF
		}
		msgs[i] = exportertest.NewMessage(fmt.Sprint("torn-", i), []byte(body))
	}
	return msgs
}

// crash ends e as a killed process would: the file descriptors close (the
// kernel releases the lock) and nothing buffered in memory is written. With
// flushed, the mbox buffer reached the file first but the index lines did
// not.
func crash(t *testing.T, e *Exporter, flushed bool) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if flushed {
		if err := e.flush(); err != nil {
			t.Fatal(err)
		}
	}
	e.closeFiles()
	e.closed = true
}

// bigMessage is a message large enough that Put writes part of it to the
// file (in more than one write) before it returns.
func bigMessage(t *testing.T) *exporters.Message {
	t.Helper()
	body := "Subject: big\n\n" + strings.Repeat("From a line of a large message, quoted\n", 3*flushAt/39)
	return exportertest.NewMessage("torn-big", []byte(body))
}

// Write 3, Sync, CommitState, write 2 more and a large one without Sync,
// stop (by Close or by a crash) with the large one torn, as a crash tears
// a write: Resume cuts the file back to the 3, Has forgets the others, and
// writing the 2 again gives exactly 5 messages.
func TestTornTail(t *testing.T) {
	for _, how := range []string{"close", "crash"} {
		t.Run(how, func(t *testing.T) {
			c := t.Context()
			path := filepath.Join(t.TempDir(), "torn.mbox")
			msgs := tornMessages(t)
			e := newExporter(t, path)
			refs := make([]string, len(msgs))
			for i := range 3 {
				refs[i] = mustPut(t, e, msgs[i])
			}
			mustSync(t, e)
			state := e.CommitState()
			if want := fmt.Sprint(fileSize(t, path)); state != want {
				t.Fatalf("CommitState = %q after Sync, want the file size %s", state, want)
			}
			for i := 3; i < 5; i++ {
				refs[i] = mustPut(t, e, msgs[i])
			}
			big := bigMessage(t)
			bigRef := mustPut(t, e, big)
			bigOff, bigLen, err := parseRef(bigRef)
			if err != nil {
				t.Fatal(err)
			}
			if how == "close" {
				// Close writes the rest; the file then loses the end of
				// that last write, at a block boundary, as a crash
				// during the write would leave it.
				mustClose(t, e)
				cut := (bigOff + bigLen - 1) / intentBlock * intentBlock
				if err := os.Truncate(path, cut); err != nil {
					t.Fatal(err)
				}
			} else {
				// The buffered end of the large message is lost.
				crash(t, e, false)
			}
			if size := fileSize(t, path); size <= bigOff || size >= bigOff+bigLen {
				t.Fatalf("the file is %d bytes: the large entry %s is not torn", size, bigRef)
			}

			e2 := newExporter(t, path)
			saved := false
			if err := e2.Resume(c, state, func(context.Context, string) error { saved = true; return nil }); err != nil {
				t.Fatal(err)
			}
			if saved {
				t.Error("Resume with a state called save")
			}
			if got := fmt.Sprint(fileSize(t, path)); got != state {
				t.Fatalf("file is %s bytes after Resume, want %s", got, state)
			}
			if n := fileSize(t, path+IntentSuffix); n != 0 {
				t.Errorf("the intent log holds %d bytes after Resume, want it emptied", n)
			}
			if _, ok := mustHas(t, e2, big.Key); ok {
				t.Error("Has finds the torn message after Resume")
			}
			for i, m := range msgs {
				ref, ok := mustHas(t, e2, m.Key)
				if i < 3 && (!ok || ref != refs[i]) {
					t.Errorf("Has message %d = %q, %v; want %q", i, ref, ok, refs[i])
				}
				if i >= 3 && ok {
					t.Errorf("Has message %d = %q after Resume, want not found", i, ref)
				}
			}
			if idx := string(readFile(t, path+IndexSuffix)); strings.Count(idx, "\n") != 3 {
				t.Errorf("index after Resume:\n%s\nwant 3 lines", idx)
			}
			for i := 3; i < 5; i++ {
				if ref := mustPut(t, e2, msgs[i]); ref != refs[i] {
					t.Errorf("Put of message %d again = %q, want %q", i, ref, refs[i])
				}
			}
			mustSync(t, e2)
			for i, m := range msgs {
				if got := mustOpen(t, e2, refs[i]); !bytes.Equal(got, messageData(t, m)) {
					t.Errorf("Open message %d = %q", i, got)
				}
			}
			mustClose(t, e2)
			got, err := ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 5 {
				t.Fatalf("ReadFile: %d messages, want 5", len(got))
			}
			for i, m := range msgs {
				if !bytes.Equal(got[i], messageData(t, m)) {
					t.Errorf("ReadFile message %d = %q", i, got[i])
				}
			}
			all, err := ReadAll(bytes.NewReader(readFile(t, path)))
			if err != nil || len(all) != 5 {
				t.Fatalf("ReadAll: %d messages, %v; want 5", len(all), err)
			}
		})
	}
}

func messageData(t testing.TB, m *exporters.Message) []byte {
	t.Helper()
	b, err := io.ReadAll(exporters.NewBodyReader(m.Body))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A file shorter than the committed state lost committed messages: Resume
// refuses, names the file, changes nothing, and the Exporter writes nothing.
func TestResumeRefusesShorterFile(t *testing.T) {
	c := t.Context()
	path := filepath.Join(t.TempDir(), "short.mbox")
	e := newExporter(t, path)
	for _, m := range tornMessages(t)[:3] {
		mustPut(t, e, m)
	}
	mustSync(t, e)
	state := e.CommitState()
	mustClose(t, e)
	size := fileSize(t, path)
	if err := os.Truncate(path, size-10); err != nil {
		t.Fatal(err)
	}

	// New drops the index entry that now lies past the end of the file.
	e2 := newExporter(t, path)
	idx := readFile(t, path+IndexSuffix)
	if n := strings.Count(string(idx), "\n"); n != 2 {
		t.Errorf("index after New lists %d entries, want 2:\n%s", n, idx)
	}
	err := e2.Resume(c, state, nil)
	if !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Resume on a truncated file: err = %v, want ErrTruncated naming %s", err, path)
	}
	if _, err := e2.Put(c, tornMessages(t)[3]); !errors.Is(err, ErrTruncated) {
		t.Errorf("Put after a refused Resume: err = %v, want ErrTruncated", err)
	}
	if err := e2.Sync(c); !errors.Is(err, ErrTruncated) {
		t.Errorf("Sync after a refused Resume: err = %v, want ErrTruncated", err)
	}
	mustClose(t, e2)
	if got := fileSize(t, path); got != size-10 {
		t.Errorf("file is %d bytes after the refused Resume, want %d", got, size-10)
	}
	if got := readFile(t, path+IndexSuffix); !bytes.Equal(got, idx) {
		t.Errorf("index changed after the refused Resume:\n%s\nwas\n%s", got, idx)
	}
}

// On a first run (state ""), Resume records the current size with save, so
// that a crash before the first commit is cut off by the next Resume.
func TestResumeFirstRunRecordsSize(t *testing.T) {
	c := t.Context()
	path := filepath.Join(t.TempDir(), "first.mbox")
	e := newExporter(t, path)
	mustPut(t, e, tornMessages(t)[0])
	mustSync(t, e)
	mustClose(t, e)
	size := fileSize(t, path)

	e2 := newExporter(t, path)
	var saved []string
	save := func(_ context.Context, s string) error { saved = append(saved, s); return nil }
	if err := e2.Resume(c, "", save); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprint(size); len(saved) != 1 || saved[0] != want {
		t.Fatalf("save called with %q, want once with %q", saved, want)
	}
	if got := e2.CommitState(); got != saved[0] {
		t.Errorf("CommitState = %q, want %q", got, saved[0])
	}
	m := tornMessages(t)[1]
	mustPut(t, e2, m)
	crash(t, e2, true)

	e3 := newExporter(t, path)
	if err := e3.Resume(c, saved[0], save); err != nil {
		t.Fatal(err)
	}
	if got := fileSize(t, path); got != size {
		t.Errorf("file is %d bytes after Resume, want %d", got, size)
	}
	if _, ok := mustHas(t, e3, m.Key); ok {
		t.Error("Has finds the message written before the crash")
	}

	// A failing save fails Resume.
	mustClose(t, e3)
	e4 := newExporter(t, path)
	boom := errors.New("journal down")
	if err := e4.Resume(c, "", func(context.Context, string) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("Resume with a failing save: err = %v, want it wrapped", err)
	}
	// Without save, a first run has nothing to record.
	if err := e4.Resume(c, "", nil); err != nil {
		t.Errorf("Resume(\"\", nil) = %v", err)
	}
}

func TestResumeErrors(t *testing.T) {
	c := t.Context()
	path := filepath.Join(t.TempDir(), "r.mbox")
	e := newExporter(t, path)
	for _, state := range []string{"abc", "-1", "01", "+3", "1e3", " 0"} {
		if err := e.Resume(c, state, nil); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("Resume(%q) = %v, want an error naming the file", state, err)
		}
	}
	if err := e.Resume(c, "0", nil); err != nil {
		t.Errorf("Resume(\"0\") on an empty file = %v", err)
	}
	// The conformance suite checks that Resume after a Put fails and
	// drops nothing.
}

// A second writer on the same file is refused while the first holds it,
// with an error naming the file.
func TestLockConflict(t *testing.T) {
	path := filepath.Join(t.TempDir(), "locked.mbox")
	e := newExporter(t, path)
	e2, err := New(path, nil)
	if err == nil {
		e2.Close()
		t.Fatal("a second New on a locked file succeeded")
	}
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), path) {
		t.Fatalf("second New: err = %v, want ErrLocked naming %s", err, path)
	}
	// A relative path to the same file is the same file.
	t.Chdir(filepath.Dir(path))
	if _, err := New("locked.mbox", nil); !errors.Is(err, ErrLocked) {
		t.Fatalf("New by a relative path: err = %v, want ErrLocked", err)
	}
	mustClose(t, e)
	e3, err := New(path, nil)
	if err != nil {
		t.Fatalf("New after the first writer closed: %v", err)
	}
	mustClose(t, e3)
}

func TestNewDefaultsAndModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	path := filepath.Join(dir, "mail.mbox")
	e := newExporter(t, path)
	if p := e.Properties(); p.Kind != "mbox" || p.ID != "mbox:"+path {
		t.Errorf("Properties() = %+v, want mbox, mbox:%s", p, path)
	}
	if e.Path() != path {
		t.Errorf("Path() = %q, want %q", e.Path(), path)
	}
	mustPut(t, e, tornMessages(t)[0])
	mustSync(t, e)
	for _, tc := range []struct {
		path string
		mode fs.FileMode
	}{{dir, 0o700}, {filepath.Dir(dir), 0o700}, {path, 0o600}, {path + IndexSuffix, 0o600}, {path + IntentSuffix, 0o600}} {
		fi, err := os.Stat(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != tc.mode {
			t.Errorf("%s: mode %o, want %o", tc.path, perm, tc.mode)
		}
	}
	e2, err := New(filepath.Join(t.TempDir(), "x"), &Options{ID: "mbox:custom"})
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	if id := e2.Properties().ID; id != "mbox:custom" {
		t.Errorf("ID = %q, want mbox:custom", id)
	}
	if _, err := New("", nil); err == nil {
		t.Error("New(\"\") succeeded")
	}
}

func TestNewRefusesOtherFiles(t *testing.T) {
	dir := t.TempDir()
	notMbox := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notMbox, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(notMbox, nil); !errors.Is(err, ErrNotMbox) || !strings.Contains(err.Error(), notMbox) {
		t.Errorf("New on a text file: err = %v, want ErrNotMbox naming it", err)
	}
	if got := readFile(t, notMbox); string(got) != "hello\n" {
		t.Errorf("New changed the text file: %q", got)
	}
	if _, err := os.Stat(notMbox + IndexSuffix); err == nil {
		t.Error("New created an index beside a file that is not an mbox")
	}
	if _, err := os.Stat(notMbox + IntentSuffix); err == nil {
		t.Error("New created an intent log beside a file that is not an mbox")
	}
	if _, err := New(dir, nil); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("New on a folder: err = %v, want an error naming it", err)
	}
}

// QUIRK test: an mbox written by another program may end without the blank
// line after its last message, or without a final LF; Put writes the
// missing LFs before its From_ line.
func TestQuirkExistingMboxWithoutBlankLine(t *testing.T) {
	old := "From bob@example.net Sun Mar  2 10:00:00 2025\nSubject: old\n\nold body"
	for _, tail := range []string{"", "\n", "\n\n"} {
		path := filepath.Join(t.TempDir(), "old.mbox")
		if err := os.WriteFile(path, []byte(old+tail), 0o600); err != nil {
			t.Fatal(err)
		}
		e := newExporter(t, path)
		m := tornMessages(t)[0]
		ref := mustPut(t, e, m)
		if want := fmt.Sprintf("%d+", len(old)+2); !strings.HasPrefix(ref, want) {
			t.Errorf("tail %q: Ref %q, want it to start %q", tail, ref, want)
		}
		if got := mustOpen(t, e, ref); !bytes.Equal(got, messageData(t, m)) {
			t.Errorf("tail %q: Open = %q", tail, got)
		}
		mustClose(t, e)
		msgs, err := ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		want := [][]byte{[]byte("Subject: old\n\nold body\n"), messageData(t, m)}
		if len(msgs) != 2 || !bytes.Equal(msgs[0], want[0]) || !bytes.Equal(msgs[1], want[1]) {
			t.Errorf("tail %q: ReadFile = %q, want %q", tail, msgs, want)
		}
	}
}

// New drops a torn last index line and index entries past the end of the
// file, and rewrites the index.
func TestNewRepairsIndex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "idx.mbox")
	msgs := tornMessages(t)
	e := newExporter(t, path)
	ref0 := mustPut(t, e, msgs[0])
	mustPut(t, e, msgs[1])
	mustSync(t, e)
	mustClose(t, e)
	idx := readFile(t, path+IndexSuffix)
	lines := strings.SplitAfter(string(idx), "\n")

	// A torn last line.
	torn := lines[0] + lines[1][:20]
	if err := os.WriteFile(path+IndexSuffix, []byte(torn), 0o600); err != nil {
		t.Fatal(err)
	}
	e = newExporter(t, path)
	if _, ok := mustHas(t, e, msgs[1].Key); ok {
		t.Error("Has finds the message of a torn index line")
	}
	mustClose(t, e)
	if got := string(readFile(t, path+IndexSuffix)); got != lines[0] {
		t.Errorf("index after New = %q, want %q", got, lines[0])
	}

	// Entries past the end of the file (the data never reached the disk).
	if err := os.WriteFile(path+IndexSuffix, idx, 0o600); err != nil {
		t.Fatal(err)
	}
	end0 := strings.Fields(lines[1])[1] // offset of the second entry
	var n int64
	fmt.Sscan(end0, &n)
	if err := os.Truncate(path, n); err != nil {
		t.Fatal(err)
	}
	e = newExporter(t, path)
	if ref, ok := mustHas(t, e, msgs[0].Key); !ok || ref != ref0 {
		t.Errorf("Has first message = %q, %v; want %q", ref, ok, ref0)
	}
	if _, ok := mustHas(t, e, msgs[1].Key); ok {
		t.Error("Has finds a message past the end of the file")
	}
	mustClose(t, e)
	if got := string(readFile(t, path+IndexSuffix)); got != lines[0] {
		t.Errorf("index after New = %q, want %q", got, lines[0])
	}
	if _, err := os.Stat(path + IndexSuffix + ".tmp"); err == nil {
		t.Error("the temporary index is left behind")
	}
}

func TestNewRejectsCorruptIndex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.mbox")
	e := newExporter(t, path)
	mustPut(t, e, tornMessages(t)[0])
	mustSync(t, e)
	mustClose(t, e)
	good := string(readFile(t, path+IndexSuffix))
	f := strings.Fields(good)
	for name, idx := range map[string]string{
		"garbage line":   "garbage\n" + good,
		"bad sha256":     strings.Replace(good, f[3], "xyz", 1),
		"unknown flag":   strings.Replace(good, " -\n", " q\n", 1),
		"duplicate key":  good + good,
		"bad key":        strings.Replace(good, f[0], "../x", 1),
		"leading zero":   strings.Replace(good, " "+f[1]+" ", " 0"+f[1]+" ", 1),
		"wrong length":   strings.Replace(good, " "+f[1]+" "+f[2]+" ", " "+f[1]+" 50 ", 1),
		"too long line":  strings.Repeat("a", 1000) + "\n",
		"overlap":        good + strings.Replace(good, f[0], "other", 1),
		"too short line": strings.Replace(good, " "+f[2]+" ", " 3 ", 1),
	} {
		if err := os.WriteFile(path+IndexSuffix, []byte(idx), 0o600); err != nil {
			t.Fatal(err)
		}
		e, err := New(path, nil)
		if err == nil {
			e.Close()
			t.Errorf("%s: New succeeded", name)
			continue
		}
		if !errors.Is(err, ErrCorruptIndex) || !strings.Contains(err.Error(), path+IndexSuffix) {
			t.Errorf("%s: err = %v, want ErrCorruptIndex naming the index", name, err)
		}
	}
}

func TestOpenRefs(t *testing.T) {
	c := t.Context()
	path := filepath.Join(t.TempDir(), "refs.mbox")
	e := newExporter(t, path)
	ref := mustPut(t, e, tornMessages(t)[0])
	for _, bad := range []string{"", "abc", "0", "0+", "+50", "01+50", "-1+50", "0+-5", "0+1", "0+50x", "new/x", "9223372036854775807+50"} {
		if _, err := e.Open(c, bad); !errors.Is(err, ErrInvalidRef) {
			t.Errorf("Open(%q): err = %v, want ErrInvalidRef", bad, err)
		}
	}
	off, n, _ := strings.Cut(ref, "+")
	for _, missing := range []string{off + "+999", "1+" + n, "100000+50"} {
		if _, err := e.Open(c, missing); !errors.Is(err, exporters.ErrNotFound) {
			t.Errorf("Open(%q): err = %v, want ErrNotFound", missing, err)
		}
	}
	// Open before Sync reads what Put buffered.
	if got := mustOpen(t, e, ref); !bytes.Equal(got, messageData(t, tornMessages(t)[0])) {
		t.Errorf("Open before Sync = %q", got)
	}
	// A reader opened before Close reads on after it.
	rc, err := e.Open(c, ref)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	mustClose(t, e)
	if got, err := io.ReadAll(rc); err != nil || !bytes.Equal(got, messageData(t, tornMessages(t)[0])) {
		t.Errorf("read after Close = %q, %v", got, err)
	}
	if _, err := e.Open(c, ref); !errors.Is(err, exporters.ErrClosed) {
		t.Errorf("Open after Close: err = %v, want exporters.ErrClosed", err)
	}
	if _, _, err := e.Has(c, "x"); !errors.Is(err, exporters.ErrClosed) {
		t.Errorf("Has after Close: err = %v, want exporters.ErrClosed", err)
	}
}

// Open fails with ErrCorrupt, rather than return other bytes, when the file
// no longer holds the entry the index lists.
func TestOpenCorruptEntry(t *testing.T) {
	c := t.Context()
	path := filepath.Join(t.TempDir(), "corrupt.mbox")
	e := newExporter(t, path)
	m := exportertest.NewMessage("c", []byte("Subject: c\n\nFrom me\n"))
	ref := mustPut(t, e, m)
	mustSync(t, e)
	data := readFile(t, path)
	for name, edit := range map[string]func([]byte) []byte{
		"no From_ line": func(b []byte) []byte { b[0] = 'X'; return b },
		"unquoted From line": func(b []byte) []byte {
			return bytes.Replace(b, []byte(">From me"), []byte("From mee"), 1)
		},
		"no blank line at the end": func(b []byte) []byte { b[len(b)-1] = 'x'; return b },
	} {
		if err := os.WriteFile(path, edit(bytes.Clone(data)), 0o600); err != nil {
			t.Fatal(err)
		}
		rc, err := e.Open(c, ref)
		if err == nil {
			_, err = io.ReadAll(rc)
			rc.Close()
		}
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: err = %v, want ErrCorrupt naming the file", name, err)
		}
	}
}

// A Put whose body fails after Put wrote part of the entry to the file
// (past the buffer) cuts the file back, keeps the entries buffered before
// it, and records nothing.
func TestFailedPutCutsFile(t *testing.T) {
	c := t.Context()
	path := filepath.Join(t.TempDir(), "cut.mbox")
	e := newExporter(t, path)
	small := tornMessages(t)[0]
	ref := mustPut(t, e, small)
	big := bytes.Repeat([]byte("From a line that is quoted\n"), 12000) // ~320 KiB
	m := exportertest.NewMessage("big", big)
	m.Body = &failAt{data: big, at: int64(len(big)) - 10}
	_, err := e.Put(c, m)
	if !errors.Is(err, errFail) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Put of a failing body: err = %v, want errFail naming the file", err)
	}
	if e.flushed == 0 {
		t.Fatal("the failed Put did not reach the file: the test does not test the cut")
	}
	if _, ok := mustHas(t, e, m.Key); ok {
		t.Error("Has finds the failed message")
	}
	m.SHA256 = strings.Repeat("0", 64)
	m.Body = bytes.NewReader(big)
	if _, err := e.Put(c, m); !errors.Is(err, ErrChecksum) {
		t.Fatalf("Put with a wrong sha256: err = %v, want ErrChecksum", err)
	}
	mustSync(t, e)
	mustClose(t, e)
	msgs, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || !bytes.Equal(msgs[0], messageData(t, small)) {
		t.Fatalf("ReadFile = %d messages, want only the one before the failed Put (%s)", len(msgs), ref)
	}
	if _, n, _ := strings.Cut(ref, "+"); fmt.Sprint(fileSize(t, path)) != n {
		t.Errorf("file is %d bytes, want %s", fileSize(t, path), n)
	}
}

var errFail = errors.New("injected read error")

// failAt is a Body whose bytes from at on cannot be read.
type failAt struct {
	data []byte
	at   int64
}

func (b *failAt) Size() int64 { return int64(len(b.data)) }

func (b *failAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= b.at {
		return 0, errFail
	}
	n := copy(p, b.data[off:b.at])
	if n < len(p) {
		return n, errFail
	}
	return n, nil
}

// Every sample, the 1 MiB attachment and the 200 KiB line included, comes
// back exactly from ReadFile, and Entries gives each the offset and length
// of its Ref.
func TestReadFileAllSamples(t *testing.T) {
	path := filepath.Join(t.TempDir(), "samples.mbox")
	e := newExporter(t, path)
	samples := testmsg.Load(t)
	refs := make([]string, len(samples))
	for i, sm := range samples {
		refs[i] = mustPut(t, e, exportertest.NewMessage(sm.Name, sm.Data))
	}
	mustSync(t, e)
	mustClose(t, e)
	msgs, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != len(samples) {
		t.Fatalf("ReadFile: %d messages, want %d", len(msgs), len(samples))
	}
	for i, sm := range samples {
		if !bytes.Equal(msgs[i], sm.Data) {
			t.Errorf("%s: ReadFile differs (%d bytes, want %d)", sm.Name, len(msgs[i]), len(sm.Data))
		}
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	i := 0
	for en, err := range Entries(f) {
		if err != nil {
			t.Fatal(err)
		}
		if i >= len(refs) {
			t.Fatalf("Entries: more than %d entries", len(refs))
		}
		if got := fmt.Sprintf("%d+%d", en.Offset, en.Length); got != refs[i] {
			t.Errorf("entry %d (%s) at %s, want %s", i, samples[i].Name, got, refs[i])
		}
		if !fromLineRE.MatchString("From " + en.From) {
			t.Errorf("entry %d: From %q", i, en.From)
		}
		i++
	}
	if i != len(refs) {
		t.Errorf("Entries: %d entries, want %d", i, len(refs))
	}
}

func TestReadAllForeign(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
		err      error
	}{
		{"empty", "", nil, nil},
		{"one message without the blank line", "From a d\nx\n", []string{"x\n"}, nil},
		{"no blank line between", "From a d\nx\nFrom b d\ny\n\n", []string{"x\n", "y\n"}, nil},
		{"two blank lines keep one", "From a d\nx\n\n\nFrom b d\n", []string{"x\n\n", ""}, nil},
		{"empty message", "From a d\n\nFrom b d\n\n", []string{"", ""}, nil},
		{"last line without LF", "From a d\nx", []string{"x"}, nil},
		{"quoted lines", "From a d\n>From x\n>>From y\n>Fromage\n\n", []string{"From x\n>From y\n>Fromage\n"}, nil},
		{"data before the first From_ line", "\nFrom a d\n", nil, ErrNotMbox},
		{"not an mbox", "hello\n", nil, ErrNotMbox},
		{"From_ line without LF", "From a d\nx\n\nFrom b", nil, ErrCorrupt},
		{"From_ line too long", "From " + strings.Repeat("a", maxFromLine) + "\n", nil, ErrCorrupt},
	} {
		got, err := ReadAll(strings.NewReader(tc.in))
		if !errors.Is(err, tc.err) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.err)
			continue
		}
		if len(got) != len(tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
			continue
		}
		for i := range got {
			if string(got[i]) != tc.want[i] {
				t.Errorf("%s: message %d = %q, want %q", tc.name, i, got[i], tc.want[i])
			}
		}
	}
}

// ReadFile checks that the index matches the file.
func TestReadFileIndexMismatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.mbox")
	e := newExporter(t, path)
	mustPut(t, e, tornMessages(t)[0])
	mustPut(t, e, tornMessages(t)[1])
	mustClose(t, e)
	idx := readFile(t, path+IndexSuffix)
	lines := strings.SplitAfter(string(idx), "\n")
	f := strings.Fields(lines[1])
	bad := lines[0] + strings.Replace(lines[1], " "+f[1]+" ", " 7 ", 1)
	if err := os.WriteFile(path+IndexSuffix, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(path); !errors.Is(err, ErrCorruptIndex) {
		t.Errorf("ReadFile with an entry off its offset: err = %v, want ErrCorruptIndex", err)
	}
	// Without an index, ReadFile is ReadAll.
	os.Remove(path + IndexSuffix)
	msgs, err := ReadFile(path)
	if err != nil || len(msgs) != 2 || !bytes.Equal(msgs[1], withLF(messageData(t, tornMessages(t)[1]))) {
		t.Errorf("ReadFile without an index = %q, %v", msgs, err)
	}
}
