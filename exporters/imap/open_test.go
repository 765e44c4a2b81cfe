package imap

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/exportertest"
)

func TestOpenErrors(t *testing.T) {
	srv := startMem(t, memConfig{})
	e := newExporter(t, srv.options("Open"))
	c := testCtx(t)
	ref := mustPut(t, e, msgN(1))
	uv := e.UIDValidity()
	for _, bad := range []string{"", "x", "1", "1/", "/1", "0/1", "1/0", "a/b", "1/2/3", "-1/2"} {
		if _, err := e.Open(c, bad); !errors.Is(err, ErrInvalidRef) {
			t.Errorf("Open(%q) = %v, want ErrInvalidRef", bad, err)
		}
	}
	if _, err := e.Open(c, fmt.Sprintf("%d/999", uv)); !errors.Is(err, exporters.ErrNotFound) {
		t.Errorf("Open of a missing UID: %v, want ErrNotFound", err)
	}
	if _, err := e.Open(c, fmt.Sprintf("%d/1", uv+1)); !errors.Is(err, exporters.ErrNotFound) {
		t.Errorf("Open with another UIDVALIDITY: %v, want ErrNotFound", err)
	}
	// A reader closed early hands back a working Exporter.
	big := exportertest.NewMessage("big", bytes.Repeat([]byte("x\n"), 100000))
	bigRef := mustPut(t, e, big)
	rc, err := e.Open(c, bigRef)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if _, err := io.ReadFull(rc, buf); err != nil || string(buf) != "x\nx\nx\nx\nx\n" {
		t.Fatalf("read %q, %v", buf, err)
	}
	rc.Close()
	if _, err := rc.Read(buf); err == nil {
		t.Error("Read after Close succeeded")
	}
	if got := mustOpen(t, e, ref); !bytes.Equal(got, messageBytes(msgN(1))) {
		t.Errorf("read back %q", got)
	}
}
