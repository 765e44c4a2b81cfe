// Package urlsafe holds the few URL helpers that config (POP3 sources)
// and the IMAP destination parser share: masking a password, quoting a
// parse error without the URL, and refusing a host that is not a host.
package urlsafe

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Port parses the port of a URL, 1 to 65535.
func Port(p string) (int, error) {
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("bad port %q", p)
	}
	return n, nil
}

// IsControl reports whether r is an ASCII control character.
func IsControl(r rune) bool { return r < ' ' || r == 0x7f }

// RedactURL returns u with its password, if any, left out.
func RedactURL(u *url.URL) string {
	c := *u
	c.User = url.User(u.User.Username())
	return c.String()
}

// RedactUserinfo masks what may be a password in a URL-like string: in
// "scheme://user:secret@host/path" (or "scheme:user:secret@host") the text
// between the user's ':' and the last '@' of the authority becomes "xxxxx".
// Anything else is returned unchanged, so RedactUserinfo(s) != s says s
// holds a password.
func RedactUserinfo(raw string) string {
	start := 0
	if i := strings.Index(raw, "://"); i >= 0 {
		start = i + len("://")
	} else if i := strings.IndexByte(raw, ':'); i >= 0 {
		start = i + 1
	}
	rest := raw[start:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	at := strings.LastIndexByte(rest[:end], '@')
	if at < 0 {
		return raw
	}
	colon := strings.IndexByte(rest[:at], ':')
	if colon < 0 {
		return raw
	}
	return raw[:start+colon+1] + "xxxxx" + raw[start+at:]
}

// Err is the reason of a url.Parse error without the URL, which the
// caller quotes itself.
func Err(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// CheckHost refuses a host that is not a host name (letters, digits, '.',
// '-', '_', or non-ASCII for an international name) nor an IP address
// (an IPv6 one possibly with a %zone): spaces, control characters and URL
// punctuation would break the dial, the logs or the account's SourceURL.
func CheckHost(h string) error {
	if h == "" {
		return errors.New("no host")
	}
	bad := fmt.Errorf("host %q is not a host name or IP address", h)
	if strings.Contains(h, ":") {
		addr, _, _ := strings.Cut(h, "%")
		if net.ParseIP(addr) == nil || strings.IndexFunc(h, IsControl) >= 0 || strings.ContainsAny(h, " /@?#[]\\") {
			return bad
		}
		return nil
	}
	for _, r := range h {
		switch {
		case r >= 0x80, 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9', r == '.', r == '-', r == '_':
		default:
			return bad
		}
	}
	return nil
}
