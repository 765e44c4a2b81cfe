package pipeline

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/pop3"
)

// Events. The pipeline logs one event per phase of an account, at level
// Info, with the account's name in "account" and what else the phase
// knows: "connect" (addr), "login" (user), "listing" (messages, bytes,
// planned), "batch" (a group commit: stored, failed, bytes), "verify"
// (checked, problems), "delete" (deleted, planned), "done" (stored,
// failed, whole, sessions). A message that fails is the Warn event
// "message failed" (uidl, id, class, error), an account that fails
// "account failed" (class, error). A JSON log handler (cmd's --log-format
// json) makes each event one line a script can parse.
const (
	evConnect       = "connect"
	evLogin         = "login"
	evListing       = "listing"
	evBatch         = "batch"
	evVerify        = "verify"
	evDelete        = "delete"
	evDone          = "done"
	evMessageFailed = "message failed"
	evAccountFailed = "account failed"
)

// errorClass names the kind of an error for logs and metrics: "timeout",
// "out-of-sync", "protocol", "too-large", "auth", "in-use", "login-delay",
// "server-temporary", "server" (another -ERR), "tls", "network",
// "destination", "lease", "journal", "interrupted" or "other".
func errorClass(err error) string {
	var (
		perr  *pop3.Error
		proto *pop3.ProtocolError
		derr  *destError
		jerr  *journalError
		cerr  *tls.CertificateVerificationError
		uerr  x509.UnknownAuthorityError
		herr  x509.HostnameError
		nerr  net.Error
	)
	switch {
	case err == nil:
		return ""
	case errors.Is(err, pop3.ErrTimeout):
		return "timeout"
	case errors.Is(err, pop3.ErrOutOfSync):
		return "out-of-sync"
	case errors.Is(err, pop3.ErrMessageTooLarge), errors.Is(err, errTooLarge):
		return "too-large"
	case errors.Is(err, errLeaseLost), errors.Is(err, journal.ErrLeaseLost):
		return "lease"
	case errors.As(err, &derr):
		return "destination"
	case errors.As(err, &jerr):
		return "journal"
	case errors.As(err, &perr):
		switch strings.ToUpper(perr.Code) {
		case "AUTH":
			return "auth"
		case "IN-USE":
			return "in-use"
		case "LOGIN-DELAY":
			return "login-delay"
		}
		if perr.Temporary() {
			return "server-temporary"
		}
		if perr.Command == "PASS" || perr.Command == "AUTH" || perr.Command == "APOP" {
			return "auth"
		}
		return "server"
	case errors.As(err, &proto):
		return "protocol"
	case errors.As(err, &cerr), errors.As(err, &uerr), errors.As(err, &herr), errors.Is(err, pop3.ErrSTLSUnavailable):
		return "tls"
	case errors.Is(err, pop3.ErrPlaintextAuth), errors.Is(err, pop3.ErrNoMechanism):
		return "auth"
	case errors.As(err, &nerr), errors.Is(err, pop3.ErrClosed), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EPIPE):
		return "network"
	case strings.Contains(err.Error(), "context canceled"):
		return "interrupted"
	}
	return "other"
}
