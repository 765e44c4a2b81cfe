// Package tlsconf builds the TLS client configuration popmigrate uses for
// its servers, POP3 sources and IMAP destinations alike: one place for the
// CA file, the minimum version and the verification switch.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// MinVersion is the oldest TLS version Client allows.
const MinVersion = tls.VersionTLS12

// Options describes the TLS configuration of one server.
type Options struct {
	// ServerName is the host name the server's certificate must name,
	// also sent as SNI. Empty leaves it to the client that dials: pop3
	// and exporters/imap fill it from the address.
	ServerName string
	// CAFile, when set, is a PEM file of CA certificates trusted instead
	// of the system roots. Empty means the system roots.
	CAFile string
	// InsecureSkipVerify turns certificate verification off. It is only
	// ever set by an explicit --insecure-skip-verify.
	InsecureSkipVerify bool
}

// sessions is the TLS session cache every config Client returns shares:
// a reconnect (a retried session, the next account on the same POP3 host,
// each IMAP connection of a destination) resumes a session instead of a
// full handshake, one round trip and the server's signature less.
// Sharing it across accounts with different trust is safe: crypto/tls
// verifies a cached session's chains again, against the resuming
// config's RootCAs and ServerName, and drops the session when they fail
// (a session never resumes into InsecureSkipVerify's absence either).
var sessions = tls.NewLRUClientSessionCache(4096)

// Client returns a new client tls.Config for o: ServerName, MinVersion
// TLS 1.2, InsecureSkipVerify, RootCAs from o.CAFile when set (nil, the
// system roots, otherwise), and the process's shared session cache. It
// fails, naming the file, when the CA file is missing, unreadable or
// holds no PEM certificate; see LoadCAFile.
func Client(o Options) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: o.ServerName, MinVersion: MinVersion, InsecureSkipVerify: o.InsecureSkipVerify,
		ClientSessionCache: sessions}
	if o.CAFile != "" {
		pool, err := LoadCAFile(o.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// LoadCAFile reads a PEM file of CA certificates into a new pool. Its
// errors start with "ca file PATH: " and say what is wrong: the file is
// missing (the error wraps fs.ErrNotExist), unreadable (fs.ErrPermission,
// or a directory), or holds no PEM certificate (empty, a key, DER, ...).
// Blocks that are not certificates are skipped as long as one
// certificate is found.
func LoadCAFile(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		// The path is named once, in front; the *fs.PathError would name
		// it again.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("ca file %s: %w", path, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca file %s: no PEM certificate in it", path)
	}
	return pool, nil
}
