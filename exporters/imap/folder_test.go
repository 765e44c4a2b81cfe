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
// delimiter (no LIST "" ""), one of two levels asks for it, a folder
// created is subscribed to, and INBOX is neither looked for nor created
// where it exists; where it does not (go-imap's memory server starts
// without), it is created.
func TestFolderSetUpCommands(t *testing.T) {
	bare := startMem(t, memConfig{})
	e := newExporter(t, bare.options("INBOX"))
	ref := mustPut(t, e, msgN(7))
	if got := mustOpen(t, e, ref); !bytes.Equal(got, messageBytes(msgN(7))) {
		t.Errorf("INBOX created on the way: read back %q", got)
	}

	srv := startMem(t, memConfig{})
	cl := srv.client(t)
	defer cl.Close()
	if err := cl.Create("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		folder           string
		delim, list, sub bool // LIST "" "", any LIST, SUBSCRIBE sent
	}{
		{"Archive", false, true, true},
		{"Archive/2024", true, true, true},
		{"inbox", false, false, false},
	} {
		f := &faults{}
		o := srv.options(c.folder)
		o.Dial = f.dial
		e := newExporter(t, o)
		mustPut(t, e, msgN(1))
		sent := f.written()
		for _, w := range []struct {
			cmd  string
			want bool
		}{{`LIST "" ""`, c.delim}, {" LIST ", c.list}, {" SUBSCRIBE ", c.sub}} {
			if got := strings.Contains(sent, w.cmd); got != w.want {
				t.Errorf("%s: %s sent: %v, want %v\n%s", c.folder, w.cmd, got, w.want, sent)
			}
		}
	}
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
