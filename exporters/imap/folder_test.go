package imap

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// TestFolderCreation creates "A/B/C" on a server that wants the parents
// first, and reuses an existing folder.
func TestFolderCreation(t *testing.T) {
	srv := startMem(t, memConfig{strictParents: true})
	e := newExporter(t, srv.options("A/B/C"))
	if e.Folder() != "A/B/C" {
		t.Errorf("Folder() = %q", e.Folder())
	}
	ref := mustPut(t, e, msgN(1))
	e2 := newExporter(t, srv.options("A/B/C"))
	if e2.UIDValidity() != e.UIDValidity() {
		t.Errorf("reopened folder has UIDVALIDITY %d, want %d", e2.UIDValidity(), e.UIDValidity())
	}
	if got := mustOpen(t, e2, ref); !bytes.Equal(got, messageBytes(msgN(1))) {
		t.Errorf("read back %q", got)
	}
	cl := srv.client(t)
	defer cl.Close()
	l, err := cl.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range l {
		names = append(names, d.Mailbox)
	}
	if strings.Join(names, ",") != "A,A/B,A/B/C" {
		t.Errorf("folders %v, want A, A/B, A/B/C", names)
	}
}

// TestFolderSetUpCommands: a folder of one level needs no hierarchy
// delimiter (no LIST "" ""), and a folder created is subscribed to; one
// of two levels asks for the delimiter.
func TestFolderSetUpCommands(t *testing.T) {
	srv := startMem(t, memConfig{})
	for _, c := range []struct {
		folder    string
		wantDelim bool
	}{{"Archive", false}, {"Archive/2024", true}} {
		f := &faults{}
		o := srv.options(c.folder)
		o.Dial = f.dial
		e := newExporter(t, o)
		mustPut(t, e, msgN(1))
		sent := f.written()
		if got := strings.Contains(sent, `LIST "" ""`); got != c.wantDelim {
			t.Errorf("%s: LIST for the delimiter sent: %v, want %v\n%s", c.folder, got, c.wantDelim, sent)
		}
		if !strings.Contains(sent, "SUBSCRIBE ") {
			t.Errorf("%s: no SUBSCRIBE for the folder created\n%s", c.folder, sent)
		}
	}
	cl := srv.client(t)
	defer cl.Close()
	l, err := cl.List("", "*", &imap.ListOptions{SelectSubscribed: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range l {
		names = append(names, d.Mailbox)
	}
	slices.Sort(names)
	if want := []string{"Archive", "Archive/2024"}; !slices.Equal(names, want) {
		t.Errorf("subscribed folders %q, want %q", names, want)
	}
}

func TestServerName(t *testing.T) {
	tests := []struct {
		folder  string
		delim   rune
		want    string
		parents []string
		err     bool
	}{
		{"INBOX", '.', "INBOX", nil, false},
		{"inbox/Imported", '.', "INBOX.Imported", []string{"INBOX"}, false},
		{"INBOX/Imported", '/', "INBOX/Imported", []string{"INBOX"}, false},
		{"a/b/c", '.', "a.b.c", []string{"a", "a.b"}, false},
		{"a.b/c", '.', "", nil, true}, // a level holds the delimiter
		{"a/b", 0, "", nil, true},     // flat server
		{"flat", 0, "flat", nil, false},
	}
	for _, tt := range tests {
		got, parents, err := serverName(tt.folder, tt.delim)
		if (err != nil) != tt.err || got != tt.want || fmt.Sprint(parents) != fmt.Sprint(tt.parents) {
			t.Errorf("serverName(%q, %q) = %q, %q, %v; want %q, %q, error %v",
				tt.folder, tt.delim, got, parents, err, tt.want, tt.parents, tt.err)
		}
	}
}
