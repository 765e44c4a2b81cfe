package pop3

import (
	"errors"
	"io"
	"testing"
)

// Each test here pins one leniency marked "QUIRK:" in the code.

func TestQuirkLFLineEndings(t *testing.T) {
	c, _ := newScripted(t, nil,
		step{s: "+OK ready\n"},
		step{c: "CAPA\r\n", s: "+OK\nUIDL\nPIPELINING\n.\n"},
		step{c: "LIST\r\n", s: "+OK\n1 10\n2 20\n.\n"},
		step{c: "STAT\r\n", s: "+OK 2 30\n"},
	)
	ctx := ctxT(t)
	caps, err := c.Capabilities(ctx)
	if err != nil || !caps.Has("uidl") || !caps.Pipelining() {
		t.Fatalf("Capabilities = %v, %v", caps, err)
	}
	list, err := c.List(ctx)
	if err != nil || len(list) != 2 || list[1].Size != 20 {
		t.Fatalf("List = %v, %v", list, err)
	}
	if n, size, err := c.Stat(ctx); err != nil || n != 2 || size != 30 {
		t.Fatalf("Stat = %d %d %v", n, size, err)
	}
}

func TestQuirkLFTerminator(t *testing.T) {
	c, _ := newScripted(t, nil,
		step{s: greet},
		step{c: "RETR 1\r\n", s: "+OK\nline one\n..dot\n.\n"},
		step{c: "NOOP\r\n", s: "+OK\n"},
	)
	b, err := c.Retr(ctxT(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(b)
	if err != nil || string(data) != "line one\n.dot\n" {
		t.Fatalf("body = %q, %v", data, err)
	}
	if err := c.Noop(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

func TestQuirkLowercaseStatus(t *testing.T) {
	c, _ := newScripted(t, nil,
		step{s: "+ok hello\r\n"},
		step{c: "NOOP\r\n", s: "+ok\r\n"},
		step{c: "DELE 1\r\n", s: "-err [in-use] busy\r\n"},
	)
	if err := c.Noop(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	var pe *Error
	if err := c.Dele(ctxT(t), 1); !errors.As(err, &pe) || pe.Code != "IN-USE" || pe.Text != "busy" {
		t.Fatalf("err = %#v", err)
	}
}

func TestQuirkBareOK(t *testing.T) {
	c, _ := newScripted(t, nil,
		step{s: "+OK\r\n"},
		step{c: "NOOP\r\n", s: "+OK\r\n"},
		step{c: "RETR 1\r\n", s: "+OK\r\nx\r\n.\r\n"},
	)
	if c.Greeting() != "" {
		t.Errorf("Greeting = %q", c.Greeting())
	}
	if err := c.Noop(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	b, err := c.Retr(ctxT(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	if data, err := io.ReadAll(b); err != nil || string(data) != "x\r\n" {
		t.Fatalf("body = %q, %v", data, err)
	}
}

func TestQuirkBareContinuation(t *testing.T) {
	c, _ := newScripted(t, nil,
		step{s: greet},
		step{c: "AUTH PLAIN\r\n", s: "+\r\n"},
		step{c: b64("\x00bob\x00pw") + "\r\n", s: "+OK\r\n"},
	)
	err := c.AuthSASL(ctxT(t), "PLAIN", nil, func(ch []byte) ([]byte, error) {
		if len(ch) != 0 {
			t.Errorf("challenge = %q, want empty", ch)
		}
		return []byte("\x00bob\x00pw"), nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestQuirkListExtraFields(t *testing.T) {
	c, _ := newScripted(t, nil,
		step{s: greet},
		step{c: "LIST\r\n", s: "+OK\r\n1 120 (flagged)\r\n2\t  200\r\n.\r\n"},
		step{c: "LIST 1\r\n", s: "+OK 1 120 octets\r\n"},
	)
	list, err := c.List(ctxT(t))
	if err != nil || len(list) != 2 || list[0] != (MessageInfo{1, 120}) || list[1] != (MessageInfo{2, 200}) {
		t.Fatalf("List = %v, %v", list, err)
	}
	if one, err := c.ListOne(ctxT(t), 1); err != nil || one.Size != 120 {
		t.Fatalf("ListOne = %v, %v", one, err)
	}
}

func TestQuirkUIDLExtraFields(t *testing.T) {
	c, _ := newScripted(t, nil,
		step{s: greet},
		step{c: "UIDL\r\n", s: "+OK\r\n1  abc def\r\n2\txyz\r\n.\r\n"},
	)
	uids, err := c.UIDL(ctxT(t))
	if err != nil || len(uids) != 2 || uids[0] != (UIDInfo{ID: 1, UID: "abc"}) || uids[1] != (UIDInfo{ID: 2, UID: "xyz"}) {
		t.Fatalf("UIDL = %v, %v", uids, err)
	}
}

func TestQuirkGreetingWithoutTimestamp(t *testing.T) {
	c, _ := newScripted(t, nil,
		step{s: "+OK no stamp <here>\r\n"},
		step{c: "CAPA\r\n", s: "-ERR\r\n"},
		step{c: "USER bob\r\n", s: "+OK\r\n"},
		step{c: "PASS pw\r\n", s: "+OK\r\n"},
	)
	if err := c.Login(ctxT(t), &Auth{Username: "bob", Password: "pw", Mechanisms: []string{"APOP", "USER"}, AllowPlaintext: true}); err != nil {
		t.Fatal(err)
	}
}

func TestQuirkCAPABlankLine(t *testing.T) {
	c, _ := newScripted(t, nil,
		step{s: greet},
		step{c: "CAPA\r\n", s: "+OK\r\nTOP\r\n\r\nlogin-delay 900\r\nSASL plain xoauth2\r\n.\r\n"},
	)
	caps, err := c.Capabilities(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := caps.LoginDelay(); !ok || d.Seconds() != 900 {
		t.Errorf("LoginDelay = %v, %v", d, ok)
	}
	if s := caps.SASL(); len(s) != 2 || s[0] != "PLAIN" || s[1] != "XOAUTH2" {
		t.Errorf("SASL = %v", s)
	}
	if !caps.Has("top") || caps.Has("UIDL") {
		t.Errorf("caps = %v", caps)
	}
}
