package pop3

import (
	"errors"
	"fmt"
	"testing"
)

// With PIPELINING, ListUIDL sends LIST and UIDL in one write: one round
// trip for the session's set-up instead of two.
func TestListUIDLPipelinedIsOneWrite(t *testing.T) {
	c, _ := newScripted(t, nil,
		step{s: greet},
		step{c: "CAPA\r\n", s: "+OK\r\nPIPELINING\r\nUIDL\r\n.\r\n"},
		step{c: "LIST\r\nUIDL\r\n", s: "+OK 2 messages\r\n1 120\r\n2 300\r\n.\r\n+OK\r\n1 aaa\r\n2 bbb\r\n.\r\n"},
		step{c: "NOOP\r\n", s: "+OK\r\n"},
	)
	list, uids, err := c.ListUIDL(ctxT(t))
	if err != nil || fmt.Sprint(list) != "[{1 120} {2 300}]" || len(uids) != 2 || uids[1].UID != "bbb" {
		t.Fatalf("ListUIDL = %v, %v, %v", list, uids, err)
	}
	if err := c.Noop(ctxT(t)); err != nil {
		t.Fatalf("client after ListUIDL: %v", err)
	}
}

// Without PIPELINING the two commands go one after the other.
func TestListUIDLLockstep(t *testing.T) {
	c, _ := newScripted(t, nil,
		step{s: greet},
		step{c: "CAPA\r\n", s: "+OK\r\nUIDL\r\n.\r\n"},
		step{c: "LIST\r\n", s: "+OK\r\n1 120\r\n.\r\n"},
		step{c: "UIDL\r\n", s: "+OK\r\n1 aaa\r\n.\r\n"},
	)
	list, uids, err := c.ListUIDL(ctxT(t))
	if err != nil || len(list) != 1 || len(uids) != 1 {
		t.Fatalf("ListUIDL = %v, %v, %v", list, uids, err)
	}
}

// A server without UIDL: the listing comes back with UIDL's -ERR, and the
// session stays usable; a LIST -ERR still has its UIDL answer read.
func TestListUIDLErrors(t *testing.T) {
	c, _ := newScripted(t, nil,
		step{s: greet},
		step{c: "CAPA\r\n", s: "+OK\r\nPIPELINING\r\n.\r\n"},
		step{c: "LIST\r\nUIDL\r\n", s: "+OK\r\n1 120\r\n.\r\n-ERR no UIDL here\r\n"},
		step{c: "LIST\r\nUIDL\r\n", s: "-ERR [SYS/TEMP] try later\r\n+OK\r\n1 aaa\r\n.\r\n"},
		step{c: "NOOP\r\n", s: "+OK\r\n"},
	)
	list, uids, err := c.ListUIDL(ctxT(t))
	var pe *Error
	if len(list) != 1 || uids != nil || !errors.As(err, &pe) || pe.Command != "UIDL" {
		t.Fatalf("no UIDL: %v, %v, %v", list, uids, err)
	}
	list, _, err = c.ListUIDL(ctxT(t))
	if list != nil || !errors.As(err, &pe) || pe.Command != "LIST" || !pe.Temporary() {
		t.Fatalf("LIST -ERR: %v, %v", list, err)
	}
	if err := c.Noop(ctxT(t)); err != nil {
		t.Fatalf("client after a LIST -ERR: %v", err)
	}
}

// After a login the capabilities are asked again; when the server
// pipelined before the login, that CAPA goes out in the same write as
// LIST and UIDL, and its answer is what Capabilities then returns. A
// CAPA the server refuses after login leaves the listing whole.
func TestListUIDLAfterLoginCarriesCAPA(t *testing.T) {
	c, _ := newScripted(t, nil,
		step{s: greet},
		step{c: "CAPA\r\n", s: "+OK\r\nPIPELINING\r\nUSER\r\nUIDL\r\n.\r\n"},
		step{c: "USER bob\r\n", s: "+OK\r\n"},
		step{c: "PASS pw\r\n", s: "+OK\r\n"},
		step{c: "CAPA\r\nLIST\r\nUIDL\r\n", s: "+OK\r\nPIPELINING\r\nLOGIN-DELAY 900\r\n.\r\n+OK\r\n1 120\r\n.\r\n+OK\r\n1 aaa\r\n.\r\n"},
		step{c: "NOOP\r\n", s: "+OK\r\n"},
	)
	ctx := ctxT(t)
	if err := c.Login(ctx, &Auth{Username: "bob", Password: "pw", AllowPlaintext: true}); err != nil {
		t.Fatal(err)
	}
	list, uids, err := c.ListUIDL(ctx)
	if err != nil || len(list) != 1 || len(uids) != 1 || uids[0].UID != "aaa" {
		t.Fatalf("ListUIDL = %v, %v, %v", list, uids, err)
	}
	caps, err := c.Capabilities(ctx) // cached: nothing is sent
	if err != nil || len(caps["LOGIN-DELAY"]) != 1 || caps["LOGIN-DELAY"][0] != "900" {
		t.Fatalf("Capabilities after ListUIDL = %v, %v", caps, err)
	}
	if err := c.Noop(ctx); err != nil {
		t.Fatal(err)
	}

	c, _ = newScripted(t, nil,
		step{s: greet},
		step{c: "CAPA\r\n", s: "+OK\r\nPIPELINING\r\nUSER\r\nUIDL\r\n.\r\n"},
		step{c: "USER bob\r\n", s: "+OK\r\n"},
		step{c: "PASS pw\r\n", s: "+OK\r\n"},
		step{c: "CAPA\r\nLIST\r\nUIDL\r\n", s: "-ERR not now\r\n+OK\r\n1 120\r\n.\r\n+OK\r\n1 aaa\r\n.\r\n"},
	)
	if err := c.Login(ctx, &Auth{Username: "bob", Password: "pw", AllowPlaintext: true}); err != nil {
		t.Fatal(err)
	}
	if list, uids, err := c.ListUIDL(ctx); err != nil || len(list) != 1 || len(uids) != 1 {
		t.Fatalf("ListUIDL after a refused CAPA = %v, %v, %v", list, uids, err)
	}
}
