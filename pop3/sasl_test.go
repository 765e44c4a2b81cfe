package pop3

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
)

// scriptedSASL is a sasl.Client that starts with mech and ir and answers
// each challenge with the next of answers (or fails with err when they
// run out).
type scriptedSASL struct {
	mech     string
	ir       []byte
	startErr error
	answers  [][]byte
	err      error
	seen     []string
}

func (s *scriptedSASL) Start() (string, []byte, error) {
	return s.mech, s.ir, s.startErr
}

func (s *scriptedSASL) Next(challenge []byte) ([]byte, error) {
	s.seen = append(s.seen, string(challenge))
	if len(s.answers) == 0 {
		return nil, s.err
	}
	a := s.answers[0]
	s.answers = s.answers[1:]
	return a, nil
}

// TestAuthClient runs a sasl.Client through Auth: an empty initial
// response goes out as "=", each challenge is decoded for Next and its
// answer encoded back, payloads stay out of the transcript, and the
// client counts as logged in afterwards.
func TestAuthClient(t *testing.T) {
	var dbg bytes.Buffer
	c, sc := newScripted(t, &Options{Debug: &dbg},
		step{s: greet},
		step{c: "AUTH X-TEST =\r\n", s: "+ " + b64("one") + "\r\n"},
		step{c: b64("secret-answer") + "\r\n", s: "+ " + b64("two") + "\r\n"},
		step{c: "\r\n", s: "+OK welcome\r\n"},
	)
	a := &scriptedSASL{mech: "X-TEST", ir: []byte{}, answers: [][]byte{[]byte("secret-answer"), nil}}
	if err := c.Auth(ctxT(t), a); err != nil {
		t.Fatal(err)
	}
	if strings.Join(a.seen, ",") != "one,two" {
		t.Errorf("challenges %q, want one, two", a.seen)
	}
	sc.waitDone(t)
	if strings.Contains(dbg.String(), b64("secret-answer")) || !strings.Contains(dbg.String(), "C: AUTH X-TEST ********\n") {
		t.Errorf("transcript not redacted:\n%s", dbg.String())
	}
	if err := c.Login(ctxT(t), &Auth{Username: "bob", Password: "pw", AllowPlaintext: true}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("Login after Auth = %v, want already authenticated", err)
	}
}

// TestAuthNoInitialResponse sends the bare AUTH command when Start gives
// a nil initial response.
func TestAuthNoInitialResponse(t *testing.T) {
	c, _ := newScripted(t, nil,
		step{s: greet},
		step{c: "AUTH X-TEST\r\n", s: "+ \r\n"},
		step{c: b64("hello") + "\r\n", s: "+OK\r\n"},
	)
	a := &scriptedSASL{mech: "X-TEST", answers: [][]byte{[]byte("hello")}}
	if err := c.Auth(ctxT(t), a); err != nil {
		t.Fatal(err)
	}
	if len(a.seen) != 1 || a.seen[0] != "" {
		t.Errorf("challenges %q, want one empty", a.seen)
	}
}

// TestAuthStartError sends nothing when the mechanism cannot start.
func TestAuthStartError(t *testing.T) {
	c, sc := newScripted(t, nil, step{s: greet})
	boom := errors.New("no credentials")
	if err := c.Auth(ctxT(t), &scriptedSASL{mech: "X-TEST", startErr: boom}); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the Start error", err)
	}
	if err := c.Auth(ctxT(t), nil); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("Auth(nil) = %v, want ErrInvalidArgument", err)
	}
	if err := c.Auth(ctxT(t), &scriptedSASL{mech: "BAD MECH"}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("mechanism with a space: %v, want ErrInvalidArgument", err)
	}
	if got := sc.finish(); got != "" {
		t.Errorf("client sent %q", got)
	}
}

// TestAuthNextErrorCancels cancels the exchange with "*" when Next fails,
// returns Next's error, and leaves the client usable.
func TestAuthNextErrorCancels(t *testing.T) {
	c, _ := newScripted(t, nil,
		step{s: greet},
		step{c: "AUTH X-TEST " + b64("hi") + "\r\n", s: "+ " + b64("riddle") + "\r\n"},
		step{c: "*\r\n", s: "-ERR AUTH cancelled\r\n"},
		step{c: "NOOP\r\n", s: "+OK\r\n"},
	)
	boom := errors.New("cannot answer")
	err := c.Auth(ctxT(t), &scriptedSASL{mech: "X-TEST", ir: []byte("hi"), err: boom})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want Next's error", err)
	}
	if err := c.Noop(ctxT(t)); err != nil {
		t.Fatalf("client unusable after a cancelled AUTH: %v", err)
	}
}

// TestAuthRejected returns the final -ERR as *Error.
func TestAuthRejected(t *testing.T) {
	c, _ := newScripted(t, nil,
		step{s: greet},
		step{c: "AUTH PLAIN " + b64("\x00bob\x00pw") + "\r\n", s: "-ERR [SYS/TEMP] try later\r\n"},
	)
	err := c.Auth(ctxT(t), sasl.NewPlainClient("", "bob", "pw"))
	var pe *Error
	if !errors.As(err, &pe) || pe.Command != "AUTH" || pe.Code != "SYS/TEMP" || !pe.Temporary() {
		t.Fatalf("err = %#v, want a temporary *Error", err)
	}
}

// TestLoginPlainUnexpectedChallenge cancels a PLAIN exchange whose
// server sends a challenge after the initial response.
func TestLoginPlainUnexpectedChallenge(t *testing.T) {
	c, _ := newScripted(t, nil,
		step{s: greet},
		step{c: "CAPA\r\n", s: "+OK\r\nSASL PLAIN\r\n.\r\n"},
		step{c: "AUTH PLAIN " + b64("\x00bob\x00pw") + "\r\n", s: "+ " + b64("more?") + "\r\n"},
		step{c: "*\r\n", s: "-ERR cancelled\r\n"},
	)
	err := c.Login(ctxT(t), &Auth{Username: "bob", Password: "pw", AllowPlaintext: true})
	if !errors.Is(err, sasl.ErrUnexpectedServerChallenge) {
		t.Fatalf("err = %v, want sasl.ErrUnexpectedServerChallenge", err)
	}
	if strings.Contains(err.Error(), "pw") {
		t.Errorf("error mentions the password: %v", err)
	}
}

// TestLoginOAUTHBEARERSuccess pins the initial response of a plain user
// name: no host or port key (RFC 7628 section 3.1 needs them only for
// signed token types).
func TestLoginOAUTHBEARERSuccess(t *testing.T) {
	c, _ := newScripted(t, nil,
		step{s: greet},
		step{c: "CAPA\r\n", s: "+OK\r\nSASL OAUTHBEARER\r\n.\r\n"},
		step{c: "AUTH OAUTHBEARER " + b64("n,a=bob@example.com,\x01auth=Bearer tok\x01\x01") + "\r\n", s: "+OK\r\n"},
	)
	if err := c.Login(ctxT(t), &Auth{Username: "bob@example.com", OAuth2Token: "tok", AllowPlaintext: true}); err != nil {
		t.Fatal(err)
	}
}
