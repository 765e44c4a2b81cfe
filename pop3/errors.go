package pop3

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

var (
	// ErrLineTooLong is returned when a status or listing line exceeds
	// Options.MaxLineLength. The client is unusable afterwards.
	ErrLineTooLong = errors.New("pop3: line too long")
	// ErrMessageTooLarge is returned by a Body that grows past
	// Options.MaxMessageSize. The client is unusable afterwards.
	ErrMessageTooLarge = errors.New("pop3: message too large")
	// ErrListingTooLong is returned when a LIST or UIDL listing has more
	// than Options.MaxListing entries. The client is unusable afterwards.
	ErrListingTooLong = errors.New("pop3: listing too long")
	// ErrSTLSUnavailable is returned by Dial with SecuritySTLS when the
	// server does not offer STLS or refuses it. No credential has been sent.
	ErrSTLSUnavailable = errors.New("pop3: STLS required but not available")
	// ErrPlaintextAuth is returned by Login on an unencrypted connection
	// when Auth.AllowPlaintext is false. Nothing has been sent.
	ErrPlaintextAuth = errors.New("pop3: refusing to authenticate over an unencrypted connection")
	// ErrNoMechanism is returned by Login when no allowed mechanism is
	// offered by the server (or usable with the credentials given).
	ErrNoMechanism = errors.New("pop3: no usable authentication mechanism")
	// ErrClosed is returned (wrapped) by every call on a client that was
	// closed, quit, or broken by an earlier timeout, cancellation,
	// protocol error or I/O error.
	ErrClosed = errors.New("pop3: client closed")
	// ErrTimeout is returned (wrapped) when the server sent nothing for
	// Options.Timeout. The client is unusable afterwards.
	ErrTimeout = errors.New("pop3: timeout")
	// ErrBodyOpen is returned when a command is issued while the body of a
	// previous RETR or TOP has been neither read to EOF nor closed. It does
	// not break the client.
	ErrBodyOpen = errors.New("pop3: previous message body not read to EOF or closed")
	// ErrInvalidArgument is returned, before anything is sent, for an
	// argument containing CR, LF or NUL, or a message number below 1. It
	// does not break the client.
	ErrInvalidArgument = errors.New("pop3: invalid argument")
	// ErrOutOfSync is returned (wrapped) when a reply does not fit the
	// command it answers: in RetrAll, a LIST marker after a RETR body that
	// is not "+OK n size" for that message; in lockstep, bytes that arrived
	// before the next command was sent. Typical cause: a server that does
	// not dot-stuff a body line of ".", so the rest of the body is read as
	// the next replies. The message whose reply did not fit, and every
	// message read after it in the session, cannot be trusted to belong to
	// the message number it was read for. The client is unusable afterwards.
	ErrOutOfSync = errors.New("pop3: server replies out of sync with the commands sent")
)

// RetrError is returned by RetrAll when the session broke while it waited
// for or read the response to RETR ID: an I/O error, a timeout, a protocol
// error, replies out of sync (ErrOutOfSync) or the end of the context. The
// client is unusable afterwards.
type RetrError struct {
	// ID is the message whose response was being waited for or read.
	ID int
	// Started reports whether the status line of that response had arrived
	// in full (a malformed one included), so that the failure happened
	// inside the message's response (its body, or its marker) rather than
	// before it. False means nothing of the message's response was
	// accepted: the server stalled, dropped or failed before it.
	Started bool
	// Err is the cause; errors.Is and errors.As see through RetrError to
	// it (ErrTimeout, ErrOutOfSync, io.ErrUnexpectedEOF, context.Canceled,
	// *ProtocolError, ...).
	Err error
}

// Error formats e like "pop3: RETR 3: <cause>", without repeating the
// prefix when the cause already starts with it.
func (e *RetrError) Error() string {
	prefix := fmt.Sprintf("pop3: RETR %d: ", e.ID)
	if msg := fmt.Sprint(e.Err); strings.HasPrefix(msg, prefix) {
		return msg
	}
	return fmt.Sprintf("%s%v", prefix, e.Err)
}

// Unwrap returns the cause.
func (e *RetrError) Unwrap() error { return e.Err }

// Error is a "-ERR" response from the server. It does not make the client
// unusable: the session goes on.
type Error struct {
	// Command is the command verb ("RETR", "PASS"); never an argument.
	Command string
	// ID is the message number the command was about, or 0.
	ID int
	// Code is the RFC 2449 / RFC 3206 response code without brackets,
	// upper-cased: "IN-USE", "LOGIN-DELAY", "SYS/TEMP", "SYS/PERM",
	// "AUTH", or "" when the server sent none.
	Code string
	// Text is the human-readable text after the code.
	Text string
	// OAuth is the error the server sent as the challenge of a failed
	// XOAUTH2 or OAUTHBEARER exchange before this -ERR, decoded; nil when
	// there was none.
	OAuth *OAuthError
}

// OAuthError is the JSON error challenge of a failed XOAUTH2 or
// OAUTHBEARER exchange (RFC 7628 section 3.2.2; Google and Microsoft send
// the same for XOAUTH2), such as {"status":"401","schemes":"bearer",
// "scope":"https://mail.google.com/"}. Its fields are the server's words,
// stripped of control characters and shortened; none is a secret.
type OAuthError struct {
	// Status is the error: an HTTP status ("401", "400") or an RFC 6749
	// error code ("invalid_token").
	Status string
	// Schemes lists the authentication schemes the server accepts
	// ("bearer").
	Schemes string
	// Scope is the scope a token needs ("https://mail.google.com/").
	Scope string
}

// String formats o like "status 401, schemes bearer, scope
// https://mail.google.com/", leaving out empty fields.
func (o *OAuthError) String() string {
	var parts []string
	for _, f := range [...]struct{ k, v string }{{"status", o.Status}, {"schemes", o.Schemes}, {"scope", o.Scope}} {
		if f.v != "" {
			parts = append(parts, f.k+" "+f.v)
		}
	}
	return strings.Join(parts, ", ")
}

// maxOAuthField bounds each field of an OAuthError.
const maxOAuthField = 200

// parseOAuthError decodes an XOAUTH2 or OAUTHBEARER error challenge; nil
// when it is not a JSON object or names none of the three fields.
// QUIRK: servers send "status" as a string ("401") or as a number (401);
// both are accepted.
func parseOAuthError(challenge []byte) *OAuthError {
	if len(challenge) == 0 {
		return nil
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(challenge, &raw); err != nil {
		return nil
	}
	field := func(k string) string {
		v, ok := raw[k]
		if !ok {
			return ""
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			var n json.Number
			if err := json.Unmarshal(v, &n); err != nil {
				return ""
			}
			s = n.String()
		}
		s = strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return -1
			}
			return r
		}, s)
		return truncate(strings.TrimSpace(s), maxOAuthField)
	}
	o := &OAuthError{Status: field("status"), Schemes: field("schemes"), Scope: field("scope")}
	if *o == (OAuthError{}) {
		return nil
	}
	return o
}

// Error formats e like "pop3: RETR 3: -ERR [SYS/TEMP] try later", or
// "pop3: AUTH: -ERR [AUTH] invalid token (the server's OAuth2 error:
// status 401, schemes bearer, scope https://mail.google.com/)".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("pop3: ")
	b.WriteString(e.Command)
	if e.ID > 0 {
		fmt.Fprintf(&b, " %d", e.ID)
	}
	b.WriteString(": -ERR")
	if e.Code != "" {
		b.WriteString(" [")
		b.WriteString(e.Code)
		b.WriteString("]")
	}
	if e.Text != "" {
		b.WriteString(" ")
		b.WriteString(truncate(e.Text, 200))
	}
	if e.OAuth != nil {
		b.WriteString(" (the server's OAuth2 error: ")
		b.WriteString(e.OAuth.String())
		b.WriteString(")")
	}
	return b.String()
}

// Temporary reports whether the condition is expected to clear by itself
// so that the same operation may succeed later: the response codes IN-USE,
// LOGIN-DELAY (RFC 2449) and SYS/TEMP (RFC 3206).
func (e *Error) Temporary() bool {
	switch {
	case e.Code == "IN-USE", e.Code == "LOGIN-DELAY":
		return true
	case e.Code == "SYS/TEMP", strings.HasPrefix(e.Code, "SYS/TEMP/"):
		return true
	}
	return false
}

// ProtocolError reports a line from the server that violates the protocol.
// The client is unusable afterwards.
type ProtocolError struct {
	// Command is the verb whose response was malformed ("" for the greeting).
	Command string
	// Line is the offending line as received (possibly long; Error
	// truncates it).
	Line string
	// Err describes what is wrong.
	Err string
}

// Error formats e with the line truncated and quoted.
func (e *ProtocolError) Error() string {
	cmd := e.Command
	if cmd == "" {
		cmd = "greeting"
	}
	return fmt.Sprintf("pop3: %s: protocol error: %s: %q", cmd, e.Err, truncate(e.Line, 80))
}

// truncate shortens s to at most n bytes, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// timeoutError is an idle timeout: the server sent nothing for d.
type timeoutError struct {
	d time.Duration
}

func (e *timeoutError) Error() string {
	return fmt.Sprintf("timeout: no data from server for %v", e.d)
}

func (e *timeoutError) Unwrap() []error { return []error{ErrTimeout, os.ErrDeadlineExceeded} }

// Timeout reports true, like a net.Error.
func (e *timeoutError) Timeout() bool { return true }

// brokenError is returned by every call after the client became unusable.
type brokenError struct {
	verb  string
	cause error
}

func (e *brokenError) Error() string {
	return fmt.Sprintf("pop3: %s: client unusable after earlier error: %v", e.verb, e.cause)
}

func (e *brokenError) Unwrap() []error { return []error{ErrClosed, e.cause} }
