package imap

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	goimap "github.com/emersion/go-imap/v2"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/location"
	"github.com/popmigrate/popmigrate/internal/tlsconf"
	"github.com/popmigrate/popmigrate/internal/urlsafe"
)

// Spec is a parsed IMAP destination: imaps://USER@HOST[:993]/FOLDER
// (implicit TLS) or imap://USER@HOST[:143]/FOLDER (STARTTLS required). It
// carries no password: that comes from the account's destination secret.
type Spec struct {
	Security string // SecurityTLS or SecurityStartTLS
	Host     string
	Port     int
	User     string
	Folder   string // "INBOX" when the spec names none
}

// Addr returns "host:port".
func (s Spec) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// ID returns "imap://USER@HOST:PORT/FOLDER": the destination id in the
// journal, whatever the security.
func (s Spec) ID() string {
	u := url.URL{Scheme: "imap", User: url.User(s.User), Host: s.Addr(), Path: "/" + s.Folder}
	return u.String()
}

// Place names the folder of one user on one server.
func (s Spec) Place() string {
	return "imap:" + strings.ToLower(s.User+"@"+s.Addr()) + "/" + s.Folder
}

// Login returns true: an IMAP destination needs credentials.
func (Spec) Login() bool { return true }

// Factory is the IMAP destination kind for the registry (package
// exporters/all).
func Factory() location.Factory {
	return location.Factory{
		Kind:    "imap",
		Schemes: []string{"imaps", "imap"},
		Usage:   "imaps://USER@HOST/FOLDER",
		Help:    "an IMAP folder over TLS (imap:// for STARTTLS); password from --to-password-env/-file/-command",
		Parse:   func(spec string) (location.Spec, error) { return ParseSpec(spec) },
		Open:    open,
		Check:   check,
	}
}

// ParseSpec parses an IMAP destination spec. Its errors never repeat a
// password: a spec with one is refused before it is parsed.
func ParseSpec(spec string) (Spec, error) {
	s := Spec{}
	if shown := urlsafe.RedactUserinfo(spec); shown != spec {
		// Refused before parsing: a parse error would quote the password.
		return s, fmt.Errorf("destination %q: a password in the URL is not accepted; use --to-password-env, --to-password-file or --to-password-command", shown)
	}
	u, err := url.Parse(spec)
	if err != nil {
		return s, fmt.Errorf("destination %q: %v", spec, urlsafe.Err(err))
	}
	if u.Scheme == "imaps" {
		s.Security, s.Port = SecurityTLS, 993
	} else {
		s.Security, s.Port = SecurityStartTLS, 143
	}
	if u.User == nil || u.User.Username() == "" {
		return s, fmt.Errorf("destination %q: no user (want imaps://USER@HOST/FOLDER)", spec)
	}
	if _, has := u.User.Password(); has {
		return s, fmt.Errorf("destination %q: a password in the URL is not accepted; use --to-password-env, --to-password-file or --to-password-command", urlsafe.RedactURL(u))
	}
	s.User, s.Host = u.User.Username(), u.Hostname()
	if s.Host == "" {
		return s, fmt.Errorf("destination %q: no host", spec)
	}
	if err := urlsafe.CheckHost(s.Host); err != nil {
		return s, fmt.Errorf("destination %q: %v", spec, err)
	}
	if strings.IndexFunc(s.User, urlsafe.IsControl) >= 0 {
		return s, fmt.Errorf("destination %q: the user contains a control character (a line break, a tab, a NUL)", spec)
	}
	if p := u.Port(); p != "" {
		n, err := urlsafe.Port(p)
		if err != nil {
			return s, fmt.Errorf("destination %q: %v", spec, err)
		}
		s.Port = n
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return s, fmt.Errorf("destination %q: unexpected query or fragment", spec)
	}
	s.Folder = strings.TrimPrefix(u.Path, "/")
	if s.Folder == "" {
		s.Folder = "INBOX"
	}
	if strings.ContainsAny(s.Folder, "\r\n\x00") {
		return s, fmt.Errorf("destination %q: folder contains a line break or NUL", spec)
	}
	return s, nil
}

// open connects to the destination with the account's credentials: an
// OAuth2 token when the account has one, else its password; TLS (or
// STARTTLS, required) verified against env's CA file, else the system
// roots.
func open(ctx context.Context, ls location.Spec, id string, env location.Env) (exporters.Exporter, error) {
	s := ls.(Spec)
	o := &Options{
		ReadOnly: env.ReadOnly,
		ID:       id,
		Addr:     s.Addr(),
		Security: s.Security,
		Username: s.User,
		Folder:   s.Folder,
		DateFrom: env.DateFrom,
		Conns:    env.Conns,
		Timeout:  env.Timeout,
	}
	if env.Flags != nil {
		o.Flags = make([]goimap.Flag, 0, len(env.Flags))
		for _, f := range env.Flags {
			o.Flags = append(o.Flags, goimap.Flag(f))
		}
	}
	switch {
	case env.OAuth2Token != nil:
		// Asked at each login, so that a token that expires or is
		// refused is replaced (see Options.OAuth2TokenFunc).
		token, refused := env.OAuth2Token, env.OAuth2Rejected
		o.OAuth2TokenFunc = func(ctx context.Context, rejected string) (string, error) {
			if rejected != "" && refused != nil {
				refused(rejected)
			}
			return token(ctx)
		}
	case env.Password != nil:
		pw, err := env.Password(ctx)
		if err != nil {
			return nil, err
		}
		o.Password = pw
	default:
		return nil, errors.New("no password or token for the IMAP destination")
	}
	cfg, err := tlsconf.Client(tlsconf.Options{ServerName: s.Host, CAFile: env.CAFile, InsecureSkipVerify: env.InsecureSkipVerify})
	if err != nil {
		return nil, err
	}
	o.TLSConfig = cfg
	return New(ctx, o)
}

var (
	_ exporters.Concurrent = (*Exporter)(nil)
	_ exporters.Grouping   = (*Exporter)(nil)
)

// PutConcurrency returns how many Puts the Exporter serves at once: one
// APPEND per connection, or, when it groups APPENDs, a full group's
// worth for each connection.
func (e *Exporter) PutConcurrency() int {
	if e.grouping {
		return cap(e.slots) * groupMax
	}
	return cap(e.slots)
}

// GroupsPuts reports whether the Exporter gathers the Puts in flight into
// grouped APPENDs (MULTIAPPEND, see multiappend.go).
func (e *Exporter) GroupsPuts() bool { return e.grouping }

// check logs in to the destination and looks at its folder, read-only: a
// missing folder is one the run creates; a message larger than the
// server's APPENDLIMIT (RFC 7889) could not be stored there.
func check(ctx context.Context, ls location.Spec, env location.Env, need location.Need) ([]string, error) {
	env.ReadOnly = true
	env.Conns = 1
	var warnings []string
	e, err := open(ctx, ls, ls.ID(), env)
	switch {
	case errors.Is(err, exporters.ErrNotFound):
		// Logged in; only the folder is missing. The run creates it,
		// and can: a read-only open does not try.
		return []string{fmt.Sprintf("folder %q does not exist yet: the run creates it", ls.(Spec).Folder)}, nil
	case err != nil:
		return nil, err
	}
	defer e.Close()
	x := e.(*Exporter)
	c, err := x.acquire(ctx)
	if err != nil {
		return nil, err
	}
	limit := c.appendLimit
	x.release(c)
	if limit > 0 && need.Largest > 0 && need.Largest > limit {
		return warnings, fmt.Errorf("the largest message is %d bytes, more than the server's APPENDLIMIT of %d: it would be refused (and quarantined)", need.Largest, limit)
	}
	return warnings, nil
}
