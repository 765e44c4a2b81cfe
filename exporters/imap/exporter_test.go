package imap

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popmigrate/popmigrate/exporters"
)

func TestOptionsErrors(t *testing.T) {
	base := Options{Addr: "127.0.0.1:1", Username: "u", Password: "p"}
	tests := []func(o *Options){
		func(o *Options) { o.Addr = "" },
		func(o *Options) { o.Addr = "no-port" },
		func(o *Options) { o.Security = "ssl" },
		func(o *Options) { o.Username = "" },
		func(o *Options) { o.Password = "" },
		func(o *Options) { o.Folder = "a//b" },
		func(o *Options) { o.Folder = "a*" },
		func(o *Options) { o.Flags = []imap.Flag{"two words"} },
		func(o *Options) { o.Flags = []imap.Flag{`\`} },
		func(o *Options) { o.DateFrom = "sent" },
		func(o *Options) { o.Conns = -1 },
		func(o *Options) { o.Timeout = -time.Second },
	}
	dials := 0
	for i, mod := range tests {
		o := base
		o.Dial = func(context.Context, string, string) (net.Conn, error) { dials++; return nil, errors.New("no") }
		mod(&o)
		if _, err := New(testCtx(t), &o); err == nil || !strings.HasPrefix(err.Error(), "imap: ") {
			t.Errorf("case %d: New = %v, want an error with the package prefix", i, err)
		}
	}
	if dials != 0 {
		t.Errorf("%d dials for invalid options, want none", dials)
	}
	if _, err := New(testCtx(t), nil); err == nil {
		t.Error("New(nil) succeeded")
	}
}

func TestDefaultID(t *testing.T) {
	srv := startMem(t, memConfig{})
	o := srv.options("INBOX/Imported")
	o.Username = memUser
	e := newExporter(t, o)
	want := "imap://" + memUser + "@" + srv.addr + "/INBOX/Imported"
	if p := e.Properties(); p.ID != want || p.Kind != "imap" {
		t.Errorf("Properties() = %+v, want ID %q", p, want)
	}
	if strings.Contains(e.Properties().ID, memPassword) {
		t.Error("the ID holds the password")
	}
	o.ID = "imap:custom"
	if e2 := newExporter(t, o); e2.Properties().ID != "imap:custom" {
		t.Errorf("ID = %q, want the configured one", e2.Properties().ID)
	}
}

func TestClosed(t *testing.T) {
	srv := startMem(t, memConfig{})
	e, err := New(testCtx(t), srv.options("Closed"))
	if err != nil {
		t.Fatal(err)
	}
	ref := mustPut(t, e, msgN(1))
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	c := testCtx(t)
	if _, err := e.Put(c, msgN(2)); !errors.Is(err, exporters.ErrClosed) {
		t.Errorf("Put after Close: %v", err)
	}
	if err := e.Sync(c); !errors.Is(err, exporters.ErrClosed) {
		t.Errorf("Sync after Close: %v", err)
	}
	if _, err := e.Open(c, ref); !errors.Is(err, exporters.ErrClosed) {
		t.Errorf("Open after Close: %v", err)
	}
	if err := e.Resume(c, "", nil); !errors.Is(err, exporters.ErrClosed) {
		t.Errorf("Resume after Close: %v", err)
	}
}

// Read-only (verify) never creates a folder, refuses writes, and reads
// what a writer stored.
func TestReadOnly(t *testing.T) {
	srv := startMem(t, memConfig{})
	o := srv.options("Missing/Folder")
	o.ReadOnly = true
	if e, err := New(testCtx(t), o); !errors.Is(err, exporters.ErrNotFound) {
		if e != nil {
			e.Close()
		}
		t.Fatalf("read-only New of a missing folder: %v, want ErrNotFound", err)
	}
	cl := srv.client(t)
	l, err := cl.List("", "*", nil).Collect()
	cl.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range l {
		if strings.HasPrefix(d.Mailbox, "Missing") {
			t.Errorf("read-only New created %q", d.Mailbox)
		}
	}

	w := newExporter(t, srv.options("Archive"))
	ref := mustPut(t, w, msgN(1))
	if err := w.Sync(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	o = srv.options("Archive")
	o.ReadOnly = true
	r := newExporter(t, o)
	if got := mustOpen(t, r, ref); !bytes.Equal(got, messageBytes(msgN(1))) {
		t.Errorf("read-only Open read %q", got)
	}
	if _, err := r.Put(testCtx(t), msgN(2)); !errors.Is(err, exporters.ErrReadOnly) {
		t.Errorf("read-only Put: %v, want exporters.ErrReadOnly", err)
	}
	if err := r.Sync(testCtx(t)); !errors.Is(err, exporters.ErrReadOnly) {
		t.Errorf("read-only Sync: %v, want exporters.ErrReadOnly", err)
	}
	if err := r.Resume(testCtx(t), "", nil); !errors.Is(err, exporters.ErrReadOnly) {
		t.Errorf("read-only Resume: %v, want exporters.ErrReadOnly", err)
	}
	if r.Properties() != w.Properties() {
		t.Errorf("read-only Properties %+v, writer's %+v", r.Properties(), w.Properties())
	}
}
