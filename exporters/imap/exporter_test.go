package imap

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
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
