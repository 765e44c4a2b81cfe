package mbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popmigrate/popmigrate/exporters/exportertest"
	"github.com/popmigrate/popmigrate/internal/testfs"
)

// foreignMail is a whole mbox message as a mail client or an MDA appends
// it.
const foreignMail = "From bob@example.net Tue Mar  4 09:00:00 2025\nSubject: delivered by another program\n\nDo not lose me.\n\n"

// appendForeign appends s to the file at path as another program would:
// its own descriptor, O_APPEND, no lock.
func appendForeign(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// committedArchive writes the first n torn messages, Syncs, and returns
// the state to commit; the Exporter is left open.
func committedArchive(t *testing.T, path string, n int) (*Exporter, string) {
	t.Helper()
	e := newExporter(t, path)
	for _, m := range tornMessages(t)[:n] {
		mustPut(t, e, m)
	}
	mustSync(t, e)
	return e, e.CommitState()
}

// checkForeign checks that err is Resume's refusal of n foreign bytes from
// offset from on, in the file at path committed at state.
func checkForeign(t *testing.T, err error, path, state string, n, from int64) {
	t.Helper()
	if !errors.Is(err, ErrForeignData) {
		t.Fatalf("Resume: err = %v, want ErrForeignData", err)
	}
	for _, want := range []string{
		path,
		"last commit at offset " + state,
		fmt.Sprintf("%d bytes from offset %d on", n, from),
		"never cuts mail it did not write",
		"move that mail out of " + path,
		"point --to at a new mbox file",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Resume: err = %v\nwant it to say %q", err, want)
		}
	}
}

// checkStopped checks that Put and Sync of e fail with ErrForeignData and
// write nothing.
func checkStopped(t *testing.T, e *Exporter) {
	t.Helper()
	c := t.Context()
	if _, err := e.Put(c, tornMessages(t)[4]); !errors.Is(err, ErrForeignData) {
		t.Errorf("Put after a refused Resume: err = %v, want ErrForeignData", err)
	}
	if err := e.Sync(c); !errors.Is(err, ErrForeignData) {
		t.Errorf("Sync after a refused Resume: err = %v, want ErrForeignData", err)
	}
}

// snapshot is the bytes of an mbox file, its index and its intent log.
type snapshot struct{ mbox, idx, intents []byte }

func snap(t *testing.T, path string) snapshot {
	t.Helper()
	return snapshot{readFile(t, path), readFile(t, path+IndexSuffix), readFile(t, path+IntentSuffix)}
}

func (s snapshot) check(t *testing.T, path, what string) {
	t.Helper()
	now := snap(t, path)
	if !bytes.Equal(now.mbox, s.mbox) {
		t.Errorf("%s: the mbox file changed:\n%q\nwas\n%q", what, now.mbox, s.mbox)
	}
	if !bytes.Equal(now.idx, s.idx) {
		t.Errorf("%s: the index changed:\n%s\nwas\n%s", what, now.idx, s.idx)
	}
	if !bytes.Equal(now.intents, s.intents) {
		t.Errorf("%s: the intent log changed", what)
	}
}

// Another program appended a message after the last commit: Resume cuts
// nothing, says so, and the Exporter writes nothing.
func TestResumeKeepsMailAppendedByAnotherProgram(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shared.mbox")
	e, state := committedArchive(t, path, 3)
	mustClose(t, e)
	appendForeign(t, path, foreignMail)
	before := snap(t, path)

	e2 := newExporter(t, path)
	err := e2.Resume(t.Context(), state, func(context.Context, string) error {
		t.Error("a refused Resume called save")
		return nil
	})
	checkForeign(t, err, path, state, int64(len(foreignMail)), fileSize(t, path)-int64(len(foreignMail)))
	checkStopped(t, e2)
	mustClose(t, e2)
	before.check(t, path, "after the refused Resume")
	msgs, err := ReadFile(path)
	if err != nil || len(msgs) != 4 || !strings.Contains(string(msgs[3]), "Do not lose me.") {
		t.Errorf("ReadFile = %d messages, %v; want the 3 and the other program's", len(msgs), err)
	}
}

// popmigrate's own uncommitted tail followed by another program's mail:
// the tail cannot be cut without the mail after it, so nothing is cut.
func TestResumeKeepsMailAppendedAfterOurUncommittedTail(t *testing.T) {
	for _, how := range []string{"close", "crash"} {
		t.Run(how, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "shared.mbox")
			e, state := committedArchive(t, path, 3)
			mustPut(t, e, tornMessages(t)[3])
			mustPut(t, e, bigMessage(t))
			if how == "close" {
				mustClose(t, e)
			} else {
				crash(t, e, true)
			}
			ours := fileSize(t, path)
			appendForeign(t, path, foreignMail)
			before := snap(t, path)

			e2 := newExporter(t, path)
			checkForeign(t, e2.Resume(t.Context(), state, nil), path, state, int64(len(foreignMail)), ours)
			checkStopped(t, e2)
			mustClose(t, e2)
			before.check(t, path, "after the refused Resume")
		})
	}
}

// A crash between the intent of a write and the write leaves an intent
// for bytes that never reached the file; mail another program appended
// there is shorter than that write, and must not pass for the rest of it.
func TestResumeKeepsMailAppendedWhereAnInterruptedWriteWasMeantToGo(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shared.mbox")
	e, state := committedArchive(t, path, 3)
	e.mu.Lock()
	meant := bytes.Repeat([]byte("From the write that never happened\n"), 500)
	if err := e.recordIntent(newIntent(e.flushed, meant)); err != nil {
		t.Fatal(err)
	}
	e.mu.Unlock()
	crash(t, e, false)
	ours := fileSize(t, path)
	appendForeign(t, path, foreignMail)
	before := snap(t, path)

	e2 := newExporter(t, path)
	checkForeign(t, e2.Resume(t.Context(), state, nil), path, state, int64(len(foreignMail)), ours)
	mustClose(t, e2)
	before.check(t, path, "after the refused Resume")
}

// A crash tears a write at a block boundary (TestTornTail); a tail that
// ends inside a block of popmigrate's last write cannot be told from a
// torn write followed by another program's mail, so it is kept too.
func TestResumeKeepsATailThatEndsInsideABlock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "torn.mbox")
	e, state := committedArchive(t, path, 3)
	ref := mustPut(t, e, bigMessage(t))
	mustClose(t, e)
	off, n, err := parseRef(ref)
	if err != nil {
		t.Fatal(err)
	}
	end := (off+n-1)/intentBlock*intentBlock + 100
	if end >= off+n {
		t.Fatalf("the large entry ends at %d, within 100 bytes of a block boundary", off+n)
	}
	if err := os.Truncate(path, end); err != nil {
		t.Fatal(err)
	}

	e2 := newExporter(t, path)
	before := snap(t, path)
	checkForeign(t, e2.Resume(t.Context(), state, nil), path, state, 100, end-100)
	mustClose(t, e2)
	before.check(t, path, "after the refused Resume")
}

// A Put that failed after part of it reached the file was cut back inside
// a write that also held the entry before it; a crash after more Puts
// leaves a tail that Resume still accounts for, and cuts.
func TestResumeCutsTailAfterAFailedPut(t *testing.T) {
	c := t.Context()
	path := filepath.Join(t.TempDir(), "cut.mbox")
	e, state := committedArchive(t, path, 1)
	committed := readFile(t, path)
	mustPut(t, e, tornMessages(t)[1])
	big := bytes.Repeat([]byte("From a line that is quoted\n"), 12000)
	m := exportertest.NewMessage("big", big)
	m.Body = &failAt{data: big, at: int64(len(big)) - 10}
	if _, err := e.Put(c, m); !errors.Is(err, errFail) {
		t.Fatalf("Put of a failing body: err = %v, want errFail", err)
	}
	if e.flushed <= int64(len(committed)) {
		t.Fatal("the entry before the failed Put did not reach the file: the test does not test the cut")
	}
	mustPut(t, e, tornMessages(t)[2])
	crash(t, e, true)

	e2 := newExporter(t, path)
	if err := e2.Resume(c, state, nil); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if got := readFile(t, path); !bytes.Equal(got, committed) {
		t.Errorf("the file after Resume is %d bytes, want the %d committed", len(got), len(committed))
	}
}

// Another program that ignores the lock appends while the Exporter holds
// the file: the next write would overwrite its mail, so the Exporter
// stops instead, and Close writes nothing either.
func TestSyncRefusesToOverwriteMailAppendedWhileWriting(t *testing.T) {
	c := t.Context()
	path := filepath.Join(t.TempDir(), "shared.mbox")
	e, _ := committedArchive(t, path, 2)
	appendForeign(t, path, foreignMail)
	mustPut(t, e, tornMessages(t)[2]) // buffered: nothing written yet
	before := snap(t, path)
	err := e.Sync(c)
	if !errors.Is(err, ErrForeignData) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), fmt.Sprintf("%d bytes", len(foreignMail))) {
		t.Fatalf("Sync after another program appended: err = %v, want ErrForeignData naming the file and the bytes", err)
	}
	if _, err := e.Put(c, tornMessages(t)[3]); !errors.Is(err, ErrForeignData) {
		t.Errorf("Put after that: err = %v, want ErrForeignData", err)
	}
	mustClose(t, e)
	before.check(t, path, "after the refused Sync and Close")

	// A Put whose write would cut the other program's mail on failure
	// refuses to cut it.
	path = filepath.Join(t.TempDir(), "shared.mbox")
	e, _ = committedArchive(t, path, 1)
	big := bytes.Repeat([]byte("a line\n"), 5*flushAt/7)
	m := exportertest.NewMessage("big", big)
	body := &appendingBody{failAt: failAt{data: big, at: int64(len(big)) - 10}, at: int64(2 * flushAt), do: func() { appendForeign(t, path, foreignMail) }}
	m.Body = body
	if _, err := e.Put(c, m); !errors.Is(err, ErrForeignData) {
		t.Fatalf("Put that failed after another program appended: err = %v, want ErrForeignData", err)
	}
	if !body.done {
		t.Fatal("the other program did not append: the test does not test the cut")
	}
	mustClose(t, e)
	if got := readFile(t, path); !bytes.HasSuffix(got, []byte(foreignMail)) {
		t.Errorf("the other program's mail is gone: the file ends %q", got[max(0, len(got)-80):])
	}
}

// appendingBody is a failAt that calls do (once) when it is read at or
// past at.
type appendingBody struct {
	failAt
	at   int64
	do   func()
	done bool
}

func (b *appendingBody) ReadAt(p []byte, off int64) (int, error) {
	if off >= b.at && !b.done {
		b.done = true
		b.do()
	}
	return b.failAt.ReadAt(p, off)
}

// The intent log stays small over many Syncs, and keeps what a Resume from
// the state before the last Sync needs: a crash after a Sync but before
// the journal recorded it is still cut back.
func TestSyncCompactsTheIntentLog(t *testing.T) {
	c := t.Context()
	path := filepath.Join(t.TempDir(), "long.mbox")
	e := newExporter(t, path)
	body := bytes.Repeat([]byte("a line of a long run\n"), 8*flushAt/21) // 512 KiB
	var prev, state string
	var most, shrunk int64
	for i := range 40 {
		mustPut(t, e, exportertest.NewMessage(fmt.Sprint("m", i), body))
		mustSync(t, e)
		prev, state = state, e.CommitState()
		n := fileSize(t, path+IntentSuffix)
		if n > compactAt+64<<10 {
			t.Fatalf("after %d Syncs the intent log is %d bytes", i+1, n)
		}
		if n < most {
			shrunk++
		}
		most = max(most, n)
	}
	if shrunk == 0 {
		t.Fatalf("the intent log never shrank (%d bytes at most): the test does not test compaction", most)
	}
	if _, err := os.Stat(path + IntentSuffix + ".tmp"); err == nil {
		t.Error("the temporary intent log is left behind")
	}
	mustPut(t, e, exportertest.NewMessage("last", body))
	crash(t, e, true)

	e2 := newExporter(t, path)
	if err := e2.Resume(c, prev, nil); err != nil {
		t.Fatalf("Resume from the state before the last Sync: %v", err)
	}
	if got := fmt.Sprint(fileSize(t, path)); got != prev {
		t.Errorf("the file is %s bytes after Resume, want %s", got, prev)
	}
	mustClose(t, e2)
	if state == prev {
		t.Fatal("the last Sync did not move the state")
	}
}

// Intents that fail to parse, and a torn last line, account for nothing;
// the lines after a bad one still count.
func TestReadIntentsIsLenient(t *testing.T) {
	a, b := newIntent(10, []byte("hello")), newIntent(5000, bytes.Repeat([]byte("x"), 9000))
	good := string(a.appendLine(nil)) + string(b.appendLine(nil))
	lines := "garbage\n\n" + strings.Repeat("9", maxIntentLine+10) + "\n" + good + "1 2 " + strings.Repeat("a", 64)
	got := readIntents(strings.NewReader(lines))
	if len(got) != 2 || got[0].off != 10 || got[1].off != 5000 || got[1].n != 9000 || len(got[1].sums) != 3 {
		t.Errorf("readIntents = %+v, want the two good lines", got)
	}
	for _, bad := range []string{
		"10 5 " + strings.Repeat("A", 64),           // upper case
		"10 0 ",                                     // empty write
		"010 5 " + strings.Repeat("a", 64),          // leading zero
		"10 5000 " + strings.Repeat("a", 64),        // too few digests
		"10 5 " + strings.Repeat("a", 64) + " junk", // extra field
	} {
		if _, err := parseIntentLine(bad); err == nil {
			t.Errorf("parseIntentLine(%q) succeeded", bad)
		}
	}
}

// explained accounts for the pieces whose bytes match, and for a piece the
// end cuts short only when told to.
func TestExplained(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 1000) // 16000 bytes
	in := newIntent(1000, data[1000:12000])
	f := bytes.NewReader(data)
	spans, err := explained(t.Context(), f, []intent{in}, 1000, 12000, false)
	if err != nil || len(spans) != 1 || spans[0] != (span{1000, 12000}) {
		t.Errorf("explained = %v, %v; want all of it", spans, err)
	}
	spans, _ = explained(t.Context(), f, []intent{in}, 1000, 9000, false)
	if want := []span{{1000, 8192}}; len(spans) != 1 || spans[0] != want[0] {
		t.Errorf("explained up to 9000 = %v, want %v", spans, want)
	}
	spans, _ = explained(t.Context(), f, []intent{in}, 1000, 9000, true)
	if want := (span{1000, 9000}); len(spans) != 1 || spans[0] != want {
		t.Errorf("explained up to 9000 with partialEnd = %v, want %v", spans, want)
	}
	changed := bytes.Clone(data)
	changed[5000] = 'X'
	spans, _ = explained(t.Context(), bytes.NewReader(changed), []intent{in}, 1000, 12000, false)
	if got := unexplained(spans, 1000, 12000); len(got) != 1 || got[0] != (span{4096, 8192}) {
		t.Errorf("unexplained with a changed byte = %v, want its block", got)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := explained(ctx, f, []intent{in}, 0, 16000, false); !errors.Is(err, context.Canceled) {
		t.Errorf("explained with a cancelled context: %v", err)
	}
}

// A Resume with nothing to cut, and a run that then writes nothing,
// change no file of the folder: not a byte, not a time.
func TestResumeWithNothingToCutChangesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "quiet", "a.mbox")
	e, state := committedArchive(t, path, 3)
	mustClose(t, e)
	dir := filepath.Dir(path)
	testfs.Backdate(t, dir)
	before := testfs.Snapshot(t, dir)
	e = newExporter(t, path)
	if err := e.Resume(t.Context(), state, nil); err != nil {
		t.Fatal(err)
	}
	mustSync(t, e)
	mustClose(t, e)
	testfs.Same(t, dir, before, testfs.Snapshot(t, dir))
}
