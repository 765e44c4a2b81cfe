package pop3

import (
	"errors"
	"fmt"
	"testing"
)

// capaPipe is a CAPA answer before login offering USER, UIDL and
// PIPELINING.
const capaPipe = "+OK\r\nUSER\r\nUIDL\r\nPIPELINING\r\nSASL PLAIN\r\n.\r\n"

// With ListAtLogin, CAPA, LIST and UIDL go out in the write of USER and
// PASS, and ListUIDL and Capabilities answer from what came back.
func TestListAtLoginUserPass(t *testing.T) {
	c, sc := newScripted(t, &Options{ListAtLogin: true},
		step{s: greet},
		step{c: "CAPA\r\n", s: capaPipe},
		step{c: "USER bob\r\nPASS pw\r\nCAPA\r\nLIST\r\nUIDL\r\n", s: "+OK\r\n+OK ready\r\n+OK\r\nPIPELINING\r\nLOGIN-DELAY 900\r\n.\r\n" +
			"+OK\r\n1 120\r\n2 300\r\n.\r\n+OK\r\n1 aaa\r\n2 bbb\r\n.\r\n"},
		step{c: "NOOP\r\n", s: "+OK\r\n"},
	)
	ctx := ctxT(t)
	if err := c.Login(ctx, &Auth{Username: "bob", Password: "pw", Mechanisms: []string{"USER"}, AllowPlaintext: true}); err != nil {
		t.Fatal(err)
	}
	list, uids, err := c.ListUIDL(ctx)
	if err != nil || fmt.Sprint(list) != "[{1 120} {2 300}]" || len(uids) != 2 || uids[1].UID != "bbb" {
		t.Fatalf("ListUIDL = %v, %v, %v", list, uids, err)
	}
	caps, err := c.Capabilities(ctx)
	if err != nil || len(caps["LOGIN-DELAY"]) != 1 {
		t.Fatalf("Capabilities = %v, %v", caps, err)
	}
	if err := c.Noop(ctx); err != nil {
		t.Fatal(err)
	}
	sc.waitDone(t)
	sc.mu.Lock()
	n := len(sc.writes)
	sc.mu.Unlock()
	if n != 3 {
		t.Errorf("%d client writes, want 3 (CAPA; the login and listing; NOOP)", n)
	}
}

// A second ListUIDL, or one after another command, asks the server again.
func TestListAtLoginAnsweredOnce(t *testing.T) {
	c, _ := newScripted(t, &Options{ListAtLogin: true},
		step{s: greet},
		step{c: "CAPA\r\n", s: capaPipe},
		step{c: "USER bob\r\nPASS pw\r\nCAPA\r\nLIST\r\nUIDL\r\n", s: "+OK\r\n+OK\r\n+OK\r\nPIPELINING\r\n.\r\n+OK\r\n1 120\r\n.\r\n-ERR no UIDL\r\n"},
		step{c: "LIST\r\nUIDL\r\n", s: "+OK\r\n.\r\n+OK\r\n.\r\n"},
	)
	ctx := ctxT(t)
	if err := c.Login(ctx, &Auth{Username: "bob", Password: "pw", Mechanisms: []string{"USER"}, AllowPlaintext: true}); err != nil {
		t.Fatal(err)
	}
	list, uids, err := c.ListUIDL(ctx)
	var pe *Error
	if len(list) != 1 || uids != nil || !errors.As(err, &pe) || pe.Command != "UIDL" {
		t.Fatalf("first ListUIDL = %v, %v, %v; want the listing and UIDL's -ERR", list, uids, err)
	}
	list, uids, err = c.ListUIDL(ctx)
	if err != nil || len(list) != 0 || len(uids) != 0 {
		t.Fatalf("second ListUIDL = %v, %v, %v", list, uids, err)
	}
}

// A refused login returns the login's error, with the same command and
// code as without ListAtLogin; the answers to CAPA, LIST and UIDL after
// it are read (Dovecot's pop3-login answers "-ERR Unknown command."), so
// the session stays in step for QUIT.
func TestListAtLoginRefused(t *testing.T) {
	for _, c := range []struct {
		name, answers, cmd, code string
		temporary                bool
	}{
		{"wrong password", "+OK\r\n-ERR [AUTH] Authentication failed.\r\n", "PASS", "AUTH", false},
		{"in use", "+OK\r\n-ERR [IN-USE] locked\r\n", "PASS", "IN-USE", true},
		{"sys/temp", "+OK\r\n-ERR [SYS/TEMP] try later\r\n", "PASS", "SYS/TEMP", true},
		{"login delay", "+OK\r\n-ERR [LOGIN-DELAY] wait\r\n", "PASS", "LOGIN-DELAY", true},
		{"no code", "+OK\r\n-ERR invalid password\r\n", "PASS", "", false},
		{"user refused", "-ERR [AUTH] no such user\r\n-ERR no USER\r\n", "USER", "AUTH", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cl, sc := newScripted(t, &Options{ListAtLogin: true},
				step{s: greet},
				step{c: "CAPA\r\n", s: capaPipe},
				step{c: "USER bob\r\nPASS pw\r\nCAPA\r\nLIST\r\nUIDL\r\n", s: c.answers + capaPipe + "-ERR Unknown command.\r\n-ERR Unknown command.\r\n"},
				step{c: "QUIT\r\n", s: "+OK bye\r\n"},
			)
			err := cl.Login(ctxT(t), &Auth{Username: "bob", Password: "pw", Mechanisms: []string{"USER"}, AllowPlaintext: true})
			var pe *Error
			if !errors.As(err, &pe) || pe.Command != c.cmd || pe.Code != c.code || pe.Temporary() != c.temporary {
				t.Fatalf("Login = %v; want %s's -ERR [%s]", err, c.cmd, c.code)
			}
			if err := cl.Quit(ctxT(t)); err != nil {
				t.Errorf("QUIT after the refused login: %v", err)
			}
			sc.waitDone(t)
		})
	}
}

// A server that ends the session after refusing the login (or after
// the bad commands that follow) still gives the login's error.
func TestListAtLoginRefusedThenClosed(t *testing.T) {
	c, _ := newScripted(t, &Options{ListAtLogin: true},
		step{s: greet},
		step{c: "CAPA\r\n", s: capaPipe},
		step{c: "USER bob\r\nPASS pw\r\nCAPA\r\nLIST\r\nUIDL\r\n", s: "+OK\r\n-ERR [AUTH] Authentication failed.\r\n", close: true},
	)
	err := c.Login(ctxT(t), &Auth{Username: "bob", Password: "pw", Mechanisms: []string{"USER"}, AllowPlaintext: true})
	var pe *Error
	if !errors.As(err, &pe) || pe.Command != "PASS" || pe.Code != "AUTH" {
		t.Fatalf("Login = %v; want PASS's -ERR [AUTH]", err)
	}
}

// A session that breaks while the listing after a good login arrives:
// Login succeeds, and ListUIDL reports the break.
func TestListAtLoginListingBroken(t *testing.T) {
	c, _ := newScripted(t, &Options{ListAtLogin: true},
		step{s: greet},
		step{c: "CAPA\r\n", s: capaPipe},
		step{c: "USER bob\r\nPASS pw\r\nCAPA\r\nLIST\r\nUIDL\r\n", s: "+OK\r\n+OK\r\n+OK\r\n.\r\n+OK\r\n1 12", close: true},
	)
	ctx := ctxT(t)
	if err := c.Login(ctx, &Auth{Username: "bob", Password: "pw", Mechanisms: []string{"USER"}, AllowPlaintext: true}); err != nil {
		t.Fatalf("Login = %v", err)
	}
	list, uids, err := c.ListUIDL(ctx)
	if err == nil || isERR(err) || list != nil || uids != nil {
		t.Fatalf("ListUIDL = %v, %v, %v; want the broken session's error", list, uids, err)
	}
}

// AUTH PLAIN with its initial response is pipelined the same way; a
// refusal is AUTH's -ERR as without.
func TestListAtLoginAuthPlain(t *testing.T) {
	auth := "AUTH PLAIN " + b64("\x00bob\x00pw") + "\r\n"
	c, _ := newScripted(t, &Options{ListAtLogin: true},
		step{s: greet},
		step{c: "CAPA\r\n", s: capaPipe},
		step{c: auth + "CAPA\r\nLIST\r\nUIDL\r\n", s: "+OK\r\n+OK\r\n.\r\n+OK\r\n1 120\r\n.\r\n+OK\r\n1 aaa\r\n.\r\n"},
	)
	ctx := ctxT(t)
	if err := c.Login(ctx, &Auth{Username: "bob", Password: "pw", AllowPlaintext: true}); err != nil {
		t.Fatal(err)
	}
	if m := c.Mechanism(); m != "PLAIN" {
		t.Errorf("Mechanism() = %q", m)
	}
	if list, uids, err := c.ListUIDL(ctx); err != nil || len(list) != 1 || len(uids) != 1 {
		t.Fatalf("ListUIDL = %v, %v, %v", list, uids, err)
	}

	c, sc := newScripted(t, &Options{ListAtLogin: true},
		step{s: greet},
		step{c: "CAPA\r\n", s: capaPipe},
		step{c: auth + "CAPA\r\nLIST\r\nUIDL\r\n", s: "-ERR [AUTH] Authentication failed.\r\n" + capaPipe + "-ERR Unknown command.\r\n-ERR Unknown command.\r\n"},
		step{c: "QUIT\r\n", s: "+OK\r\n"},
	)
	err := c.Login(ctx, &Auth{Username: "bob", Password: "pw", AllowPlaintext: true})
	var pe *Error
	if !errors.As(err, &pe) || pe.Command != "AUTH" || pe.Code != "AUTH" {
		t.Fatalf("Login = %v; want AUTH's -ERR [AUTH]", err)
	}
	if err := c.Quit(ctx); err != nil {
		t.Errorf("QUIT: %v", err)
	}
	sc.waitDone(t)
}

// A challenge after AUTH PLAIN's initial response would take the
// pipelined CAPA for the answer: the session is given up.
func TestListAtLoginAuthPlainChallenge(t *testing.T) {
	auth := "AUTH PLAIN " + b64("\x00bob\x00pw") + "\r\n"
	c, _ := newScripted(t, &Options{ListAtLogin: true},
		step{s: greet},
		step{c: "CAPA\r\n", s: capaPipe},
		step{c: auth + "CAPA\r\nLIST\r\nUIDL\r\n", s: "+ \r\n"},
	)
	err := c.Login(ctxT(t), &Auth{Username: "bob", Password: "pw", AllowPlaintext: true})
	var pre *ProtocolError
	if !errors.As(err, &pre) {
		t.Fatalf("Login = %v; want a ProtocolError", err)
	}
}
