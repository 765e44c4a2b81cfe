package pipeline

import (
	"crypto/tls"
	"crypto/x509"
	"errors"

	"github.com/popmigrate/popmigrate/pop3"
)

// explain returns err's text followed by what the user can do about it,
// for the account failures people meet most.
func explain(err error) string {
	if h := hint(err); h != "" {
		return err.Error() + " (" + h + ")"
	}
	return err.Error()
}

func hint(err error) string {
	var (
		uerr x509.UnknownAuthorityError
		herr x509.HostnameError
		cerr *tls.CertificateVerificationError
		perr *pop3.Error
		terr *tokenRejectedError
	)
	switch {
	case errors.As(err, &terr):
		return "check that the token source gives a token for this mailbox with the scope the server asks for: for Microsoft 365, an app whose service principal was granted the mailbox; for Google, domain-wide delegation of https://mail.google.com/"
	case errors.As(err, &uerr):
		return "the server's certificate is not signed by a trusted CA: give its CA with --ca-file"
	case errors.As(err, &herr):
		return "the certificate does not name this host: connect by the name in the certificate"
	case errors.As(err, &cerr):
		return "the server's certificate could not be verified: check --ca-file and the server's certificate"
	case errors.Is(err, pop3.ErrSTLSUnavailable):
		return "the server does not offer STLS on this port: use pop3s:// (port 995), or --insecure-plaintext on a trusted network only"
	case errors.Is(err, pop3.ErrPlaintextAuth):
		return "refusing to send a password without TLS: use pop3s:// or pop3:// with STLS"
	case errors.Is(err, pop3.ErrNoMechanism):
		return "no allowed login mechanism is offered by the server: check --auth"
	case errors.As(err, &perr):
		switch perr.Code {
		case "AUTH":
			return "the server refused the credentials: check the user name and password"
		case "IN-USE":
			return "another client holds the mailbox: stop it, or run again later"
		case "LOGIN-DELAY":
			return "the server limits how often one may log in: run again later"
		case "SYS/TEMP":
			return "a temporary server problem: run again later"
		}
		if perr.Command == "PASS" || perr.Command == "AUTH" || perr.Command == "APOP" {
			return "login refused: check the user name and password"
		}
	}
	return ""
}
