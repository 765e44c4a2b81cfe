package mbox

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/exportertest"
	"github.com/popmigrate/popmigrate/internal/testmsg"
)

// withLF returns b with an LF appended unless it ends with one: the
// message as the mbox format alone carries it.
func withLF(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] == '\n' {
		return b
	}
	return append(append([]byte(nil), b...), '\n')
}

// FuzzRoundTrip writes a, b and a again (under another key) to an mbox and
// checks that Open returns each exactly, that the file holds exactly the
// From_ lines and line-by-line quoting of the reference, and that ReadFile
// (with the index) returns the three messages exactly and ReadAll (without
// it) returns them with a final LF. It then Syncs, reopens and Resumes
// from the committed state (which cuts nothing), and checks that Open
// returns each message exactly, that List gives the three entries and
// nothing else, and that an uncommitted Put cut off by a crash is cut
// back by Resume to exactly the committed file. Seeds are in
// testdata/fuzz/FuzzRoundTrip.
func FuzzRoundTrip(f *testing.F) {
	for _, name := range goldenSamples {
		f.Add(testmsg.Find(f, name).Data, []byte("From x\n"))
	}
	f.Add([]byte(""), []byte(""))
	f.Add([]byte("\n"), []byte("\n\n"))
	f.Add([]byte(">From"), []byte(">>From \nFrom"))
	f.Add([]byte("From a\n\nFrom b\n\n"), []byte("x\r\nFrom \r\n"))
	f.Add([]byte("Return-Path: <a b@c>\nReceived: x; Mon, 3 Mar 2025 10:00:00 EST\n\nFrom"), []byte("\x00From \xff"))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		path := filepath.Join(t.TempDir(), "fuzz.mbox")
		e, err := New(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		msgs := [][]byte{a, b, a}
		refs := make([]string, len(msgs))
		var want []byte // the file, built the obvious way
		for i, m := range msgs {
			refs[i] = mustPut(t, e, exportertest.NewMessage(fmt.Sprint("uidl-", i), m))
			line := fromLine(m[:min(len(m), MaxHeaderBytes)], exportertest.NewMessage("", nil).Received)
			if !fromLineRE.MatchString(line) {
				t.Fatalf("message %d: From_ line %q", i, line)
			}
			want = append(want, line+"\n"...)
			want = append(want, withLF(refQuote(m, false))...)
			want = append(want, '\n')
		}
		for i, m := range msgs {
			if got := mustOpen(t, e, refs[i]); !bytes.Equal(got, m) {
				t.Fatalf("Open %s (message %d) = %q, want %q", refs[i], i, got, m)
			}
		}
		mustSync(t, e)
		state := e.CommitState()
		mustClose(t, e)
		checkReopened(t, path, state, msgs, refs)

		file, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(file, want) {
			t.Fatalf("mbox file = %q, want %q", file, want)
		}
		got, err := ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(msgs) {
			t.Fatalf("ReadFile: %d messages, want %d", len(got), len(msgs))
		}
		for i, m := range msgs {
			if !bytes.Equal(got[i], m) {
				t.Fatalf("ReadFile message %d = %q, want %q", i, got[i], m)
			}
		}
		all, err := ReadAll(bytes.NewReader(file))
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != len(msgs) {
			t.Fatalf("ReadAll: %d messages, want %d", len(all), len(msgs))
		}
		for i, m := range msgs {
			if w := withLF(m); !bytes.Equal(all[i], w) {
				t.Fatalf("ReadAll message %d = %q, want %q", i, all[i], w)
			}
		}
	})
}

// checkReopened reopens the mbox at path, committed at state and holding
// msgs at refs, and checks what FuzzRoundTrip promises of it.
func checkReopened(t *testing.T, path, state string, msgs [][]byte, refs []string) {
	t.Helper()
	c := t.Context()
	file := readFile(t, path)
	e := newExporter(t, path)
	if err := e.Resume(c, state, nil); err != nil {
		t.Fatalf("Resume from the committed state: %v", err)
	}
	var want []exporters.Listed
	for i, m := range msgs {
		if got := mustOpen(t, e, refs[i]); !bytes.Equal(got, m) {
			t.Fatalf("Open %s (message %d) after reopening = %q, want %q", refs[i], i, got, m)
		}
		want = append(want, exporters.Listed{Key: exportertest.NewMessage(fmt.Sprint("uidl-", i), nil).Key, Ref: refs[i]})
	}
	if got := listRefs(t, e); !slices.Equal(got, want) {
		t.Fatalf("List after reopening = %v, want %v", got, want)
	}
	mustPut(t, e, exportertest.NewMessage("uncommitted", append(bytes.Clone(msgs[1]), msgs[0]...)))
	crash(t, e, true)
	e = newExporter(t, path)
	if err := e.Resume(c, state, nil); err != nil {
		t.Fatalf("Resume after a crash: %v", err)
	}
	mustClose(t, e)
	if got := readFile(t, path); !bytes.Equal(got, file) {
		t.Fatalf("after Resume the file is %q, want the committed %q", got, file)
	}
}

// FuzzResumeCutsOnlyOurBytes commits msg, writes an uncommitted tail (msg
// under another key, and a larger message made of it) and crashes, tears
// the tail at tear bytes past the committed offset as a crash might, and
// appends foreign bytes as another program would. Resume then either
// refuses, with ErrForeignData, and changes no byte of the file, or cuts
// it back to the committed offset, and then every byte it cut is one
// popmigrate meant to write there. With no foreign bytes and a tear at a
// 4 KiB block boundary of the file (or none), Resume cuts. Seeds are in
// testdata/fuzz/FuzzResumeCutsOnlyOurBytes.
func FuzzResumeCutsOnlyOurBytes(f *testing.F) {
	f.Add([]byte("Subject: a\n\nFrom me\n"), []byte(""), uint16(0xffff))
	f.Add([]byte("Subject: a\n\nFrom me\n"), []byte(foreignMail), uint16(0xffff))
	f.Add([]byte("x"), []byte("\n"), uint16(0))
	f.Add([]byte(">From x\n.\n"), []byte("From "), uint16(4000))
	f.Fuzz(func(t *testing.T, msg, foreign []byte, tear uint16) {
		c := t.Context()
		path := filepath.Join(t.TempDir(), "fuzz.mbox")
		e := newExporter(t, path)
		mustPut(t, e, exportertest.NewMessage("committed", msg))
		mustSync(t, e)
		state := e.CommitState()
		committed := e.synced
		mustPut(t, e, exportertest.NewMessage("tail", msg))
		big := bytes.Repeat(append(bytes.Clone(msg), '\n'), 12000/(len(msg)+1)+1)
		mustPut(t, e, exportertest.NewMessage("tail-big", big))
		crash(t, e, true)
		meant := readFile(t, path)[committed:] // the uncommitted tail
		kept := min(int64(tear), int64(len(meant)))
		if err := os.Truncate(path, committed+kept); err != nil {
			t.Fatal(err)
		}
		if len(foreign) > 0 {
			appendForeign(t, path, string(foreign))
		}
		before := readFile(t, path)

		e = newExporter(t, path)
		err := e.Resume(c, state, nil)
		mustClose(t, e)
		after := readFile(t, path)
		switch {
		case err == nil:
			if int64(len(after)) != committed || !bytes.Equal(after, before[:committed]) {
				t.Fatalf("Resume succeeded and left %d bytes, want the %d committed", len(after), committed)
			}
			if cut := before[committed:]; !bytes.HasPrefix(meant, cut) {
				t.Fatalf("Resume cut %q, which is not what popmigrate wrote there (%q)", cut, meant[:min(len(meant), len(cut))])
			}
		case errors.Is(err, ErrForeignData):
			if !bytes.Equal(after, before) {
				t.Fatal("a refused Resume changed the file")
			}
			if len(foreign) == 0 && (kept == int64(len(meant)) || (committed+kept)%intentBlock == 0) {
				t.Fatalf("Resume refused popmigrate's own tail torn at %d (block boundary or end): %v", committed+kept, err)
			}
		default:
			t.Fatalf("Resume: %v", err)
		}
	})
}
