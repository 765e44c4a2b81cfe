package mbox

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

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
// it) returns them with a final LF.
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
		mustClose(t, e)

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
