package imap

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"

	"github.com/emersion/go-imap/v2"
)

// startTLS reads the greeting on raw, sends STARTTLS (RFC 3501 6.2.1) and
// returns the TLS connection once its handshake is done. popmigrate does
// this itself instead of go-imap's NewStartTLS so that the TLS connection
// is one it can wrap (borrowConn, for grouped APPENDs): NewStartTLS puts
// TLS under its own client, out of reach.
//
// It refuses what NewStartTLS refuses, and one thing more: a PREAUTH
// greeting (a session authenticated before TLS), a STARTTLS answered NO
// or BAD (ErrNoStartTLS: no password goes out in clear text), and bytes
// that arrive after the server's OK and before TLS, which a man in the
// middle would inject to be read as if they came over TLS (the response
// injection that the "NO STARTTLS" study, USENIX Security 2021, found in
// many mail clients). What the server said before TLS, its capabilities
// too, is forgotten (RFC 3501 6.2.1).
func startTLS(ctx context.Context, raw net.Conn, cfg *tls.Config, o *op) (*tls.Conn, error) {
	// One byte at a time would be the safe way to read no further than
	// the OK; a buffered reader is as safe when whatever it holds past
	// the OK is refused, and the server sends nothing more until TLS.
	r := bufio.NewReaderSize(raw, 4096)
	greeting, err := readResponse(r, o)
	if err != nil {
		return nil, fmt.Errorf("greeting: %w", err)
	}
	g := strings.TrimRight(string(greeting), "\r\n")
	switch {
	case hasPrefixFold(g, "* OK"):
	case hasPrefixFold(g, "* PREAUTH"):
		return nil, fmt.Errorf("%w: the server sent PREAUTH before TLS (%q)", ErrNoStartTLS, firstBytes([]byte(g), 80))
	default:
		return nil, fmt.Errorf("greeting: the server sent %q", firstBytes([]byte(g), 80))
	}
	const tag = "PM0"
	if _, err := raw.Write([]byte(tag + " STARTTLS\r\n")); err != nil {
		return nil, fmt.Errorf("STARTTLS: %w", err)
	}
	st, _, err := readTagged(r, tag, o)
	if err != nil {
		return nil, fmt.Errorf("STARTTLS: %w", err)
	}
	if st.typ != imap.StatusResponseTypeOK {
		return nil, fmt.Errorf("%w: the server answered %s", ErrNoStartTLS,
			describe(&imap.Error{Type: st.typ, Code: st.code, Text: st.text}))
	}
	if n := r.Buffered(); n > 0 {
		b, _ := r.Peek(n)
		return nil, fmt.Errorf("STARTTLS: %d bytes came after the server's OK and before TLS (%q): refused, since they were not encrypted", n, firstBytes(b, 40))
	}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("TLS handshake after STARTTLS: %w", err)
	}
	return tc, nil
}

// afterStartTLS is what go-imap's client reads first on a connection
// that startTLS set up: the greeting it waits for came before TLS, and
// what the server said there (its capabilities too) is not trusted
// after it, so the client asks for CAPABILITY again.
const afterStartTLS = "* OK TLS is up\r\n"

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}
