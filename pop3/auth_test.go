package pop3

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// Over an unencrypted connection Login sends nothing unless plaintext is
// explicitly allowed.
func TestLoginPlaintextRefused(t *testing.T) {
	for _, a := range []*Auth{
		{Username: "bob", Password: "pw"},
		{Username: "bob", Password: "pw", Mechanisms: []string{"APOP"}},
		{Username: "bob", OAuth2Token: "tok"},
	} {
		c, sc := newScripted(t, nil, step{s: "+OK ready <1.2@host>\r\n"})
		if err := c.Login(ctxT(t), a); !errors.Is(err, ErrPlaintextAuth) {
			t.Fatalf("Login(%v) = %v, want ErrPlaintextAuth", a.Mechanisms, err)
		}
		if got := sc.finish(); got != "" {
			t.Errorf("client sent %q before refusing", got)
		}
	}
}

func TestLoginUserPass(t *testing.T) {
	c, sc := newScripted(t, nil,
		step{s: greet},
		step{c: "CAPA\r\n", s: "+OK\r\nUSER\r\nUIDL\r\n.\r\n"},
		step{c: "USER bob\r\n", s: "+OK\r\n"},
		step{c: "PASS pw\r\n", s: "+OK maildrop locked and ready\r\n"},
		step{c: "CAPA\r\n", s: "+OK\r\nUIDL\r\nPIPELINING\r\n.\r\n"},
	)
	ctx := ctxT(t)
	if err := c.Login(ctx, &Auth{Username: "bob", Password: "pw", AllowPlaintext: true}); err != nil {
		t.Fatal(err)
	}
	if m := c.Mechanism(); m != "USER" {
		t.Errorf("Mechanism() = %q, want USER", m)
	}
	// Capabilities are asked again after login.
	caps, err := c.Capabilities(ctx)
	if err != nil || !caps.Pipelining() {
		t.Fatalf("caps after login = %v, %v", caps, err)
	}
	if err := c.Login(ctx, &Auth{Username: "bob", Password: "pw", AllowPlaintext: true}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("second Login = %v", err)
	}
	sc.waitDone(t)
}

func TestLoginWithoutCAPAUsesUSER(t *testing.T) {
	c, _ := newScripted(t, nil,
		step{s: greet},
		step{c: "CAPA\r\n", s: "-ERR unknown command\r\n"},
		step{c: "USER bob\r\n", s: "+OK\r\n"},
		step{c: "PASS pw\r\n", s: "+OK\r\n"},
	)
	if err := c.Login(ctxT(t), &Auth{Username: "bob", Password: "pw", AllowPlaintext: true}); err != nil {
		t.Fatal(err)
	}
}

func TestLoginErrorCodes(t *testing.T) {
	for _, tc := range []struct {
		resp, code string
		temp       bool
	}{
		{"-ERR [IN-USE] mailbox locked", "IN-USE", true},
		{"-ERR [LOGIN-DELAY] wait", "LOGIN-DELAY", true},
		{"-ERR [SYS/TEMP] backend down", "SYS/TEMP", true},
		{"-ERR [SYS/PERM] account disabled", "SYS/PERM", false},
		{"-ERR [AUTH] bad password", "AUTH", false},
		{"-ERR bad password", "", false},
	} {
		c, _ := newScripted(t, nil,
			step{s: greet},
			step{c: "CAPA\r\n", s: "+OK\r\nUSER\r\n.\r\n"},
			step{c: "USER bob\r\n", s: "+OK\r\n"},
			step{c: "PASS pw\r\n", s: tc.resp + "\r\n"},
		)
		err := c.Login(ctxT(t), &Auth{Username: "bob", Password: "pw", AllowPlaintext: true})
		var pe *Error
		if !errors.As(err, &pe) || pe.Code != tc.code || pe.Temporary() != tc.temp || pe.Command != "PASS" {
			t.Errorf("%s: err = %#v", tc.resp, err)
		}
		if strings.Contains(err.Error(), "pw") {
			t.Errorf("error mentions the password: %v", err)
		}
	}
}

func TestLoginSASLPlain(t *testing.T) {
	var dbg bytes.Buffer
	c, _ := newScripted(t, &Options{Debug: &dbg},
		step{s: "+OK hi <1.2@h>\r\n"},
		step{c: "CAPA\r\n", s: "+OK\r\nUSER\r\nSASL PLAIN LOGIN\r\n.\r\n"},
		step{c: "AUTH PLAIN " + b64("\x00bob\x00pw") + "\r\n", s: "+OK\r\n"},
	)
	if err := c.Login(ctxT(t), &Auth{Username: "bob", Password: "pw", AllowPlaintext: true}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(dbg.String(), b64("\x00bob\x00pw")) || !strings.Contains(dbg.String(), "C: AUTH PLAIN ********\n") {
		t.Errorf("transcript not redacted:\n%s", dbg.String())
	}
}

func TestLoginMechanismChoice(t *testing.T) {
	for _, tc := range []struct {
		name     string
		greeting string
		capa     string
		auth     Auth
		sent     string // first command after CAPA
	}{
		{"policy order USER first", greet, "USER\r\nSASL PLAIN\r\n", Auth{Mechanisms: []string{"USER", "PLAIN"}}, "USER bob\r\n"},
		{"PLAIN not offered", greet, "USER\r\nSASL CRAM-MD5\r\n", Auth{}, "USER bob\r\n"},
		{"APOP before USER", "+OK <9.9@h>\r\n", "USER\r\n", Auth{}, "APOP bob "},
		{"lowercase policy", greet, "SASL plain\r\n", Auth{Mechanisms: []string{"plain"}}, "AUTH PLAIN "},
		{"oauth prefers OAUTHBEARER", greet, "SASL XOAUTH2 OAUTHBEARER\r\n", Auth{OAuth2Token: "t"}, "AUTH OAUTHBEARER "},
		{"oauth falls back to XOAUTH2", greet, "SASL XOAUTH2 PLAIN\r\n", Auth{OAuth2Token: "t"}, "AUTH XOAUTH2 "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, sc := newScripted(t, nil,
				step{s: tc.greeting},
				step{c: "CAPA\r\n", s: "+OK\r\n" + tc.capa + ".\r\n"},
				step{c: tc.sent, close: true},
			)
			a := tc.auth
			a.Username, a.AllowPlaintext = "bob", true
			if a.OAuth2Token == "" {
				a.Password = "pw"
			}
			_ = c.Login(ctxT(t), &a)
			sc.waitDone(t)
		})
	}
}

func TestLoginNoMechanism(t *testing.T) {
	c, sc := newScripted(t, nil,
		step{s: greet},
		step{c: "CAPA\r\n", s: "+OK\r\nSASL CRAM-MD5\r\n.\r\n"},
	)
	err := c.Login(ctxT(t), &Auth{Username: "bob", Password: "pw", AllowPlaintext: true})
	if !errors.Is(err, ErrNoMechanism) {
		t.Fatalf("err = %v, want ErrNoMechanism", err)
	}
	if got := sc.finish(); got != "CAPA\r\n" {
		t.Errorf("client sent %q", got)
	}
	c2, _ := newScripted(t, nil, step{s: greet})
	if err := c2.Login(ctxT(t), &Auth{Username: "bob", Password: "pw", Mechanisms: []string{"KERBEROS"}, AllowPlaintext: true}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("unknown mechanism: %v", err)
	}
}

// RFC 1939 section 7 example.
func TestAPOPDigest(t *testing.T) {
	var dbg bytes.Buffer
	c, _ := newScripted(t, &Options{Debug: &dbg},
		step{s: "+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n"},
		step{c: "CAPA\r\n", s: "-ERR\r\n"},
		step{c: "APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n", s: "+OK maildrop has 1 message (369 octets)\r\n"},
	)
	if err := c.Login(ctxT(t), &Auth{Username: "mrose", Password: "tanstaaf", Mechanisms: []string{"APOP"}, AllowPlaintext: true}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(dbg.String(), "c4c9334b") || !strings.Contains(dbg.String(), "C: APOP mrose ********") {
		t.Errorf("transcript not redacted:\n%s", dbg.String())
	}
}

func TestAPOPWithoutTimestamp(t *testing.T) {
	c, sc := newScripted(t, nil, step{s: greet})
	if err := c.APOP(ctxT(t), "bob", "pw"); !errors.Is(err, ErrNoMechanism) {
		t.Fatalf("err = %v", err)
	}
	if got := sc.finish(); got != "" {
		t.Errorf("client sent %q", got)
	}
}

func TestXOAUTH2Failure(t *testing.T) {
	var dbg bytes.Buffer
	ir := "user=bob\x01auth=Bearer tok\x01\x01"
	c, _ := newScripted(t, &Options{Debug: &dbg},
		step{s: greet},
		step{c: "CAPA\r\n", s: "+OK\r\nSASL XOAUTH2\r\n.\r\n"},
		step{c: "AUTH XOAUTH2 " + b64(ir) + "\r\n", s: "+ " + b64(`{"status":"401"}`) + "\r\n"},
		step{c: "\r\n", s: "-ERR [AUTH] invalid token\r\n"},
	)
	err := c.Login(ctxT(t), &Auth{Username: "bob", OAuth2Token: "tok", AllowPlaintext: true})
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != "AUTH" || pe.Command != "AUTH" {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(dbg.String(), b64(ir)) {
		t.Errorf("token in transcript:\n%s", dbg.String())
	}
	if !strings.Contains(dbg.String(), "C: ********\n") {
		t.Errorf("continuation not redacted:\n%s", dbg.String())
	}
}

func TestOAUTHBEARER(t *testing.T) {
	ir := "n,a=a=3Db=2Cc,\x01auth=Bearer tok\x01\x01"
	c, _ := newScripted(t, nil,
		step{s: greet},
		step{c: "CAPA\r\n", s: "+OK\r\nSASL OAUTHBEARER\r\n.\r\n"},
		step{c: "AUTH OAUTHBEARER " + b64(ir) + "\r\n", s: "+ " + b64(`{"status":"invalid_token"}`) + "\r\n"},
		step{c: b64("\x01") + "\r\n", s: "-ERR [AUTH] nope\r\n"},
	)
	err := c.Login(ctxT(t), &Auth{Username: "a=b,c", OAuth2Token: "tok", AllowPlaintext: true})
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != "AUTH" {
		t.Fatalf("err = %v", err)
	}
}

// An initial response that would make the AUTH line exceed 255 octets is
// sent after an empty challenge instead (RFC 5034 section 4).
func TestAuthLongInitialResponse(t *testing.T) {
	token := strings.Repeat("T", 400)
	ir := "user=bob\x01auth=Bearer " + token + "\x01\x01"
	c, _ := newScripted(t, nil,
		step{s: greet},
		step{c: "CAPA\r\n", s: "+OK\r\nSASL XOAUTH2\r\n.\r\n"},
		step{c: "AUTH XOAUTH2\r\n", s: "+ \r\n"},
		step{c: b64(ir) + "\r\n", s: "+OK\r\n"},
	)
	if err := c.Login(ctxT(t), &Auth{Username: "bob", OAuth2Token: token, AllowPlaintext: true}); err != nil {
		t.Fatal(err)
	}
}

func TestAuthSASLChallenges(t *testing.T) {
	c, _ := newScripted(t, nil,
		step{s: greet},
		step{c: "AUTH X-TEST =\r\n", s: "+ " + b64("one") + "\r\n"},
		step{c: b64("ONE") + "\r\n", s: "+ " + b64("two") + "\r\n"},
		step{c: "\r\n", s: "+OK\r\n"},
	)
	var seen []string
	err := c.AuthSASL(ctxT(t), "X-TEST", []byte{}, func(ch []byte) ([]byte, error) {
		seen = append(seen, string(ch))
		if string(ch) == "one" {
			return []byte("ONE"), nil
		}
		return nil, nil
	})
	if err != nil || strings.Join(seen, ",") != "one,two" {
		t.Fatalf("AuthSASL = %v, challenges %v", err, seen)
	}
}

func TestAuthSASLCancel(t *testing.T) {
	c, _ := newScripted(t, nil,
		step{s: greet},
		step{c: "AUTH X-TEST\r\n", s: "+ " + b64("?") + "\r\n"},
		step{c: "*\r\n", s: "-ERR cancelled\r\n"},
		step{c: "NOOP\r\n", s: "+OK\r\n"},
	)
	boom := errors.New("no answer")
	err := c.AuthSASL(ctxT(t), "X-TEST", nil, func([]byte) ([]byte, error) { return nil, boom })
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	if err := c.Noop(ctxT(t)); err != nil {
		t.Fatalf("client unusable after cancelled AUTH: %v", err)
	}
}

// A server that offers PIPELINING before login gets USER and PASS in one
// write: one round trip less. A refused USER is the error, and its PASS's
// answer is read too, so the session stays in step.
func TestLoginUserPassPipelined(t *testing.T) {
	c, sc := newScripted(t, nil,
		step{s: greet},
		step{c: "CAPA\r\n", s: "+OK\r\nUSER\r\nPIPELINING\r\n.\r\n"},
		step{c: "USER bob\r\nPASS pw\r\n", s: "+OK\r\n+OK maildrop locked and ready\r\n"},
	)
	if err := c.Login(ctxT(t), &Auth{Username: "bob", Password: "pw", AllowPlaintext: true}); err != nil {
		t.Fatal(err)
	}
	if m := c.Mechanism(); m != "USER" {
		t.Errorf("Mechanism() = %q, want USER", m)
	}
	sc.waitDone(t)
	sc.mu.Lock()
	writes := sc.writes
	sc.mu.Unlock()
	if len(writes) < 2 || writes[1] != "USER bob\r\nPASS pw\r\n" {
		t.Errorf("client writes %q; want USER and PASS in one", writes)
	}

	c, sc = newScripted(t, nil,
		step{s: greet},
		step{c: "CAPA\r\n", s: "+OK\r\nUSER\r\nPIPELINING\r\n.\r\n"},
		step{c: "USER bob\r\nPASS pw\r\n", s: "-ERR [AUTH] no such user\r\n-ERR no USER\r\n"},
		step{c: "QUIT\r\n", s: "+OK bye\r\n"},
	)
	err := c.Login(ctxT(t), &Auth{Username: "bob", Password: "pw", AllowPlaintext: true})
	var perr *Error
	if !errors.As(err, &perr) || perr.Command != "USER" || perr.Code != "AUTH" {
		t.Fatalf("refused USER: %v; want USER's [AUTH] error", err)
	}
	if err := c.Quit(ctxT(t)); err != nil {
		t.Errorf("the session is out of step after the refused USER: %v", err)
	}
	sc.waitDone(t)
}
