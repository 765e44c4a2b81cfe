package pop3

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/emersion/go-sasl"

	"github.com/popmigrate/popmigrate/internal/saslx"
	"github.com/popmigrate/popmigrate/pop3/internal/wire"
)

// Auth describes credentials and the mechanisms policy allows.
type Auth struct {
	// Username is the mailbox name.
	Username string
	// Password is used by PLAIN, APOP and USER.
	Password string
	// OAuth2Token is an OAuth 2.0 access token for OAUTHBEARER (RFC 7628)
	// or XOAUTH2.
	OAuth2Token string
	// Mechanisms lists the allowed mechanisms in order of preference, from
	// "PLAIN" (SASL PLAIN), "XOAUTH2", "XOAUTH2-2STEP", "OAUTHBEARER",
	// "APOP" and "USER" (USER/PASS). nil means PLAIN, APOP, USER; or
	// OAUTHBEARER, XOAUTH2 when OAuth2Token is set. XOAUTH2-2STEP is
	// XOAUTH2 in the form Microsoft documents for POP (MechXOAuth2TwoStep).
	Mechanisms []string
	// AllowPlaintext permits authenticating over an unencrypted connection.
	AllowPlaintext bool
}

// Login authenticates with the first allowed mechanism that the server
// offers and the credentials allow: a SASL mechanism when the CAPA "SASL"
// line lists it, APOP when the greeting carries a timestamp, USER when CAPA
// lists USER or the server has no CAPA at all. It tries only that one
// mechanism: a rejection is returned as *Error (Code "AUTH", "IN-USE",
// "LOGIN-DELAY", "SYS/TEMP"...) rather than tried again another way, so a
// wrong password costs one failed login.
//
// Over an unencrypted connection Login sends nothing and returns
// ErrPlaintextAuth unless a.AllowPlaintext is set (APOP included: the
// session that follows would be readable). It returns ErrNoMechanism when
// nothing allowed is usable. After a successful login the cached
// capabilities are discarded, since servers may announce others in the
// TRANSACTION state. With Options.ListAtLogin the listing goes out with
// the login (see there); with Options.RetrAtLogin too, a refused login
// leaves the client unusable.
func (c *Client) Login(ctx context.Context, a *Auth) error {
	if a == nil {
		return fmt.Errorf("pop3: login: %w: nil Auth", ErrInvalidArgument)
	}
	if err := c.usable("login"); err != nil {
		return err
	}
	if c.authed {
		return fmt.Errorf("pop3: login: %w: already authenticated", ErrInvalidArgument)
	}
	if !c.isTLS && !a.AllowPlaintext {
		return fmt.Errorf("%w (user %q)", ErrPlaintextAuth, a.Username)
	}
	mechs := a.Mechanisms
	if mechs == nil {
		if a.OAuth2Token != "" {
			mechs = []string{"OAUTHBEARER", "XOAUTH2"}
		} else {
			mechs = []string{"PLAIN", "APOP", "USER"}
		}
	}
	for _, m := range mechs {
		switch strings.ToUpper(m) {
		case "PLAIN", "XOAUTH2", MechXOAuth2TwoStep, "OAUTHBEARER", "APOP", "USER":
		default:
			return fmt.Errorf("pop3: login: %w: unknown mechanism %q", ErrInvalidArgument, m)
		}
	}
	caps, err := c.Capabilities(ctx)
	if err != nil {
		return err
	}
	offered := caps.SASL()
	for _, m := range mechs {
		m = strings.ToUpper(m)
		var login func() error
		switch {
		case m == "PLAIN" && a.Password != "" && slices.Contains(offered, m):
			login = func() error {
				pc := sasl.NewPlainClient("", a.Username, a.Password)
				if c.opts.ListAtLogin && caps.Pipelining() {
					if _, ir, err := pc.Start(); err == nil {
						if ok, err := c.authPlainPipelined(ctx, ir); ok {
							return err
						}
					}
				}
				return c.Auth(ctx, pc)
			}
		case m == "OAUTHBEARER" && a.OAuth2Token != "" && slices.Contains(offered, m):
			login = func() error { return c.Auth(ctx, newOAuthBearerClient(a.Username, a.OAuth2Token)) }
		case m == "XOAUTH2" && a.OAuth2Token != "" && slices.Contains(offered, m):
			login = func() error { return c.Auth(ctx, saslx.NewXOAuth2Client(a.Username, a.OAuth2Token)) }
		case m == MechXOAuth2TwoStep && a.OAuth2Token != "" && slices.Contains(offered, saslx.XOAuth2):
			login = func() error { return c.authTwoStep(ctx, saslx.NewXOAuth2Client(a.Username, a.OAuth2Token)) }
		case m == "APOP" && a.Password != "" && c.stamp != "":
			login = func() error { return c.APOP(ctx, a.Username, a.Password) }
		case m == "USER" && a.Password != "" && (caps.Has("USER") || !c.capaOK):
			login = func() error {
				if caps.Pipelining() {
					return c.userPassPipelined(ctx, a.Username, a.Password)
				}
				if err := c.User(ctx, a.Username); err != nil {
					return err
				}
				return c.Pass(ctx, a.Password)
			}
		default:
			continue
		}
		err := login()
		if err == nil {
			c.mech = m
		}
		return err
	}
	offer := "SASL " + strings.Join(offered, " ")
	if c.stamp != "" {
		offer += ", APOP"
	}
	if caps.Has("USER") || !c.capaOK {
		offer += ", USER"
	}
	return fmt.Errorf("%w (user %q; allowed %s; server offers %s)", ErrNoMechanism, a.Username, strings.Join(mechs, " "), offer)
}

// Mechanism returns the mechanism Login logged in with ("PLAIN", "APOP",
// "USER", "XOAUTH2", "XOAUTH2-2STEP", "OAUTHBEARER"), or "" before a
// successful Login (and after Auth, APOP or User/Pass called directly).
func (c *Client) Mechanism() string { return c.mech }

// MechXOAuth2TwoStep names, in Auth.Mechanisms, XOAUTH2 sent without an
// initial response: "AUTH XOAUTH2", the server's empty challenge "+",
// then the base64 initial response on a line of its own, as Microsoft
// documents XOAUTH2 for POP
// (https://learn.microsoft.com/en-us/exchange/client-developer/legacy-protocols/how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth).
// Plain XOAUTH2 sends the initial response on the AUTH line and falls
// back to this form only when the line would pass 255 octets (RFC 5034
// section 4). The server's CAPA offers it as XOAUTH2.
const MechXOAuth2TwoStep = "XOAUTH2-2STEP"

// authTwoStep runs the SASL client a like Auth, but always sends its
// initial response in answer to the server's first challenge.
func (c *Client) authTwoStep(ctx context.Context, a sasl.Client) error {
	mech, ir, err := a.Start()
	if err != nil {
		return fmt.Errorf("pop3: AUTH: %w", err)
	}
	if ir == nil {
		ir = []byte{}
	}
	return c.authSASL(ctx, mech, ir, a.Next, true)
}

// newOAuthBearerClient returns go-sasl's OAUTHBEARER client (RFC 7628)
// for user's access token, with two differences, both allowed by the
// RFCs and both kept from the bytes this client sent before it used
// go-sasl:
//
//   - user is sent as the GS2 authzid escaped as RFC 5801 section 4
//     wants a saslname ("=" as "=3D", "," as "=2C"); go-sasl sends it
//     as it is.
//   - an error challenge (RFC 7628 section 3.2.2) is answered with the
//     single %x01 of section 3.2.3, after which the server fails the
//     exchange with its -ERR (a *Error, [AUTH] code included); go-sasl's
//     Next returns the JSON error instead, which would cancel with "*",
//     the other answer section 3.2.3 allows.
//
// No host or port is sent: RFC 7628 section 3.1 requires them only for
// token types that sign the request (OAuth 1.0a), not for bearer tokens.
// An empty user sends no authzid ("n,,").
func newOAuthBearerClient(user, token string) sasl.Client {
	user = strings.NewReplacer("=", "=3D", ",", "=2C").Replace(user)
	return oauthBearerClient{sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{Username: user, Token: token})}
}

// oauthBearerClient is go-sasl's OAUTHBEARER client with the answer to an
// error challenge of newOAuthBearerClient.
type oauthBearerClient struct {
	sasl.Client
}

// Next answers the server's error challenge with %x01 (RFC 7628 section
// 3.2.3).
func (oauthBearerClient) Next(challenge []byte) ([]byte, error) {
	return []byte{1}, nil
}

// loggedIn records a successful authentication.
func (c *Client) loggedIn() {
	c.authed = true
	c.pipelinedBefore = c.capsKnown && c.caps.Pipelining()
	c.caps, c.capsKnown = nil, false
}

// User issues USER name. The name may contain spaces (USER takes the rest
// of the line) but not CR, LF or NUL. Login checks the plaintext policy;
// User does not.
func (c *Client) User(ctx context.Context, name string) error {
	if err := checkArg("USER", "name", name, true); err != nil {
		return err
	}
	line := "USER " + name
	_, err := c.simple(ctx, "USER", 0, line, line)
	return err
}

// Pass issues PASS pw. The password never appears in the transcript or in
// errors. Login checks the plaintext policy; Pass does not.
func (c *Client) Pass(ctx context.Context, pw string) error {
	if err := checkArg("PASS", "password", pw, true); err != nil {
		return err
	}
	if _, err := c.simple(ctx, "PASS", 0, "PASS "+pw, "PASS ********"); err != nil {
		return err
	}
	c.loggedIn()
	return nil
}

// userPassPipelined sends USER and PASS in one write, for a server whose
// CAPA offers PIPELINING (RFC 2449 section 6.6): one round trip less per
// login. Both answers are read, so the session stays in step; a refused
// USER is the error returned (its PASS, refused too, told the server
// nothing it may not know: the connection is the same TLS one). With
// Options.ListAtLogin, CAPA, LIST and UIDL go out in the same write (see
// pipelinedLogin).
func (c *Client) userPassPipelined(ctx context.Context, name, pw string) error {
	if err := checkArg("USER", "name", name, true); err != nil {
		return err
	}
	if err := checkArg("PASS", "password", pw, true); err != nil {
		return err
	}
	lines := []loginLine{{"USER " + name, "USER " + name}, {"PASS " + pw, "PASS ********"}}
	return c.pipelinedLogin(ctx, "USER", lines, func() error {
		_, userErr := c.status("USER", 0)
		if userErr != nil && !isERR(userErr) {
			return userErr
		}
		_, passErr := c.status("PASS", 0)
		if userErr != nil {
			if passErr != nil && !isERR(passErr) {
				return passErr
			}
			return userErr
		}
		return passErr
	})
}

// APOP issues APOP name digest (RFC 1939 section 7), the digest being the
// MD5 of the greeting's timestamp and secret. It fails without sending
// anything when the greeting had no timestamp.
func (c *Client) APOP(ctx context.Context, name, secret string) error {
	if err := checkArg("APOP", "name", name, false); err != nil {
		return err
	}
	if c.stamp == "" {
		return fmt.Errorf("pop3: APOP: %w: the greeting has no timestamp", ErrNoMechanism)
	}
	sum := md5.Sum([]byte(c.stamp + secret))
	line := "APOP " + name + " " + hex.EncodeToString(sum[:])
	if _, err := c.simple(ctx, "APOP", 0, line, "APOP "+name+" ********"); err != nil {
		return err
	}
	c.loggedIn()
	return nil
}

// maxAuthLine is the longest AUTH command with an initial response
// (RFC 5034 section 4); a longer one is sent after an empty challenge.
const maxAuthLine = 255

// maxAuthRounds bounds the challenges of one AUTH exchange.
const maxAuthRounds = 16

// Auth authenticates with the SASL client a (RFC 5034), as go-smtp's
// Client.Auth and go-imap's Client.Authenticate do: it sends AUTH with the
// mechanism and initial response of a.Start, hands each "+ base64"
// challenge, decoded, to a.Next and sends back its answer, and returns
// when the server ends the exchange: nil on +OK, a *Error on -ERR. An
// error from a.Start is returned before anything is sent; an error from
// a.Next cancels the exchange with "*" and is returned. The wire rules
// (the "=" empty initial response, the 255-octet limit, redaction in the
// Debug transcript) are AuthSASL's. Auth blocks until the exchange ends;
// the plaintext policy is Login's job, not Auth's.
func (c *Client) Auth(ctx context.Context, a sasl.Client) error {
	if a == nil {
		return fmt.Errorf("pop3: AUTH: %w: nil sasl.Client", ErrInvalidArgument)
	}
	mech, ir, err := a.Start()
	if err != nil {
		return fmt.Errorf("pop3: AUTH: %w", err)
	}
	return c.AuthSASL(ctx, mech, ir, a.Next)
}

// AuthSASL runs AUTH mech (RFC 5034). ir is the initial response: nil for
// none, empty for an empty one (sent as "="). When the command with the
// initial response would exceed 255 octets it is sent in answer to the
// server's first, empty, challenge instead. Each further "+ base64"
// challenge is decoded and passed to next, whose answer is sent back; a
// nil next or an error from it cancels the exchange with "*" and that
// error is returned. A "-ERR" is returned as *Error. Payloads are redacted
// in the transcript. The plaintext policy is Login's job, not AuthSASL's.
//
// When the mechanism is XOAUTH2 or OAUTHBEARER and the server failed the
// exchange after a JSON error challenge (RFC 7628 section 3.2.2), the
// *Error carries that challenge, decoded, in its OAuth field.
func (c *Client) AuthSASL(ctx context.Context, mech string, ir []byte, next func(challenge []byte) ([]byte, error)) error {
	return c.authSASL(ctx, mech, ir, next, false)
}

// authSASL is AuthSASL; with deferIR the initial response ir (not nil)
// always waits for the server's first challenge.
func (c *Client) authSASL(ctx context.Context, mech string, ir []byte, next func(challenge []byte) ([]byte, error), deferIR bool) error {
	const verb = "AUTH"
	if mech == "" || strings.IndexFunc(mech, func(r rune) bool {
		return !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	}) >= 0 {
		return fmt.Errorf("pop3: %s: %w: mechanism name %q", verb, ErrInvalidArgument, mech)
	}
	mech = strings.ToUpper(mech)
	release, err := c.begin(ctx, verb)
	if err != nil {
		return err
	}
	defer release()
	line, logLine := "AUTH "+mech, "AUTH "+mech
	deferredIR := deferIR && ir != nil
	if ir != nil && !deferredIR {
		enc := "="
		if len(ir) > 0 {
			enc = base64.StdEncoding.EncodeToString(ir)
		}
		if len(line)+1+len(enc) <= maxAuthLine {
			line += " " + enc
			logLine += " ********"
		} else {
			deferredIR = true
		}
	}
	if err := c.send(verb, line, logLine); err != nil {
		return err
	}
	var lastChallenge []byte // the last challenge handed to next
	for round := 0; ; round++ {
		raw, err := c.readLine(verb)
		if err != nil {
			return err
		}
		if st, ok := wire.ParseStatus(raw); ok {
			if !st.OK {
				e := &Error{Command: verb, Code: st.Code, Text: st.Text}
				if mech == saslx.XOAuth2 || mech == "OAUTHBEARER" {
					e.OAuth = parseOAuthError(lastChallenge)
				}
				return e
			}
			c.loggedIn()
			return nil
		}
		chal, ok := wire.ParseContinuation(raw)
		if !ok {
			return c.fatal(&ProtocolError{Command: verb, Line: string(raw), Err: "expected +OK, -ERR or a continuation"})
		}
		if round >= maxAuthRounds {
			return c.fatal(&ProtocolError{Command: verb, Line: string(raw), Err: "too many challenges"})
		}
		var resp []byte
		switch {
		case deferredIR:
			deferredIR = false
			resp = ir
		default:
			dec, derr := base64.StdEncoding.DecodeString(chal)
			if derr != nil {
				return c.cancelAuth(fmt.Errorf("pop3: %s %s: challenge is not base64: %w", verb, mech, derr))
			}
			if next == nil {
				return c.cancelAuth(fmt.Errorf("pop3: %s %s: unexpected challenge", verb, mech))
			}
			lastChallenge = dec
			r, nerr := next(dec)
			if nerr != nil {
				return c.cancelAuth(fmt.Errorf("pop3: %s %s: %w", verb, mech, nerr))
			}
			resp = r
		}
		if err := c.send(verb, base64.StdEncoding.EncodeToString(resp), "********"); err != nil {
			return err
		}
	}
}

// cancelAuth sends "*" to abort an AUTH exchange, reads the server's
// answer and returns cause.
func (c *Client) cancelAuth(cause error) error {
	if err := c.send("AUTH", "*", "*"); err != nil {
		return err
	}
	if _, err := c.status("AUTH", 0); err != nil {
		var pe *Error
		if !errors.As(err, &pe) {
			return err
		}
	}
	return cause
}
