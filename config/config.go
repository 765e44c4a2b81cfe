// Package config turns what a user says (flags, a YAML file, a CSV of
// accounts) into a validated list of accounts to migrate.
//
// Config never contacts a server and never reads a secret while loading:
// secrets are described (an environment variable, a file, a command) and
// resolved only when a session needs them, so a typo in one account's secret
// fails that account, not the whole run, and no secret is held longer than
// needed. A password is never taken from a command-line argument.
//
// Every error names where the bad value came from ("accounts.csv:12:
// column to: ...") and what to do about it.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/popmigrate/popmigrate/internal/urlsafe"
)

// Security is how an account's connection is protected.
type Security string

const (
	// SecurityTLS is implicit TLS from the first byte (pop3s://, port 995).
	SecurityTLS Security = "tls"
	// SecuritySTLS is a plain connection upgraded with STLS before any
	// credential is sent (pop3://, port 110). Refuses to go on without STLS.
	SecuritySTLS Security = "starttls"
	// SecurityPlain sends everything in the clear. Only with an explicit
	// --insecure-plaintext (or insecure_plaintext: true).
	SecurityPlain Security = "plain"
)

// Account is one POP3 mailbox to migrate and where its messages go.
type Account struct {
	// Name is the account id in the journal and the report. It defaults to
	// "user@host"; two accounts of a run never share a name.
	Name string
	// Origin says where the account was defined ("accounts.csv:12",
	// "flags"), for error messages.
	Origin string

	Host     string
	Port     int
	User     string
	Security Security

	// Password is the account's password (USER/PASS, APOP, SASL PLAIN).
	// Templates ({user}, {host}, {account}) in its file or command are
	// expanded, as in every secret of the account (see expand.go).
	Password Secret
	// OAuth2Token, when set, is used with XOAUTH2 or OAUTHBEARER instead
	// of the password. A Command source is the usual way (a token helper);
	// it may print a bare token or JSON with its expiry (see
	// Secret.TokenSource). OAuth2Source gives the tokens.
	OAuth2Token Secret
	// OAuth2App, when not nil, is a built-in source of OAuth2 tokens
	// (Microsoft 365 client credentials, a Google service account) used
	// instead of OAuth2Token; at most one of them is set.
	OAuth2App *OAuth2App
	// Auth lists the allowed mechanisms in preference order ("PLAIN",
	// "APOP", "USER", "XOAUTH2", "XOAUTH2-2STEP", "OAUTHBEARER"); empty
	// means the default (XOAUTH2-2STEP with OAuth2App microsoft365).
	Auth []string

	// Provider names the preset the account uses ("gmail"), or is "".
	// UntilEmpty and PerHost come from it: the server hides what a
	// session retrieved; the most sessions open at once to the server
	// (0: the run's --per-host).
	Provider   string
	UntilEmpty bool
	PerHost    int

	// CAFile is a PEM file of CA certificates to trust instead of the
	// system roots.
	CAFile string
	// InsecureSkipVerify turns off certificate verification.
	InsecureSkipVerify bool

	// To lists destination specs ("maildir:/srv/mail/alice") with the
	// templates already expanded.
	To []string
	// ToPassword and ToOAuth2Token authenticate to IMAP destinations;
	// ToOAuth2Source gives the tokens.
	ToPassword    Secret
	ToOAuth2Token Secret

	// tokens are the account's token caches (see OAuth2Source).
	tokens *accountTokens

	// places are where each of To writes (see Destinations.Describe).
	places []string

	// fileWarning, when set, is a warning about the file the account was
	// loaded from (a CSV or YAML file that holds passwords and that others
	// can read). Warnings reports it once for all accounts of that file.
	fileWarning string
}

// Addr returns "host:port" for dialing.
func (a *Account) Addr() string {
	return net.JoinHostPort(a.Host, strconv.Itoa(a.Port))
}

// SourceURL returns the account's source as a URL without any secret,
// e.g. "pop3s://alice@mail.example.org:995". It is safe to log.
func (a *Account) SourceURL() string {
	scheme := "pop3s"
	if a.Security != SecurityTLS {
		scheme = "pop3"
	}
	u := url.URL{Scheme: scheme, User: url.User(a.User), Host: a.Addr()}
	return u.String()
}

// Source is a parsed --source URL.
type Source struct {
	Security Security
	User     string
	Host     string
	Port     int
}

// ParseSource parses "pop3s://USER@HOST[:PORT]" (implicit TLS, port 995) or
// "pop3://USER@HOST[:PORT]" (STLS, port 110). A password in the URL is
// refused: secrets never travel in arguments. The user may be percent-encoded
// ("alice%40example.org@host" for a user with an '@'). Errors quote raw with
// any password masked.
func ParseSource(raw string) (Source, error) {
	var s Source
	shown := urlsafe.RedactUserinfo(raw)
	if shown != raw {
		// Refused before parsing: a parse error would quote the password.
		return s, fmt.Errorf("source %q: a password in the URL is not accepted; use --password-env, --password-file or --password-command", shown)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return s, fmt.Errorf("source %q: %v (want pop3s://USER@HOST[:PORT])", raw, urlsafe.Err(err))
	}
	switch strings.ToLower(u.Scheme) {
	case "pop3s":
		s.Security, s.Port = SecurityTLS, 995
	case "pop3":
		s.Security, s.Port = SecuritySTLS, 110
	default:
		return s, fmt.Errorf("source %q: scheme must be pop3s:// (implicit TLS) or pop3:// (STLS)", raw)
	}
	if u.User == nil || u.User.Username() == "" {
		return s, fmt.Errorf("source %q: no user (want pop3s://USER@HOST[:PORT])", raw)
	}
	if _, has := u.User.Password(); has {
		return s, fmt.Errorf("source %q: a password in the URL is not accepted; use --password-env, --password-file or --password-command", urlsafe.RedactURL(u))
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return s, fmt.Errorf("source %q: unexpected path or query after the host", raw)
	}
	s.User = u.User.Username()
	s.Host = u.Hostname()
	if s.Host == "" {
		return s, fmt.Errorf("source %q: no host", raw)
	}
	if p := u.Port(); p != "" {
		n, err := urlsafe.Port(p)
		if err != nil {
			return s, fmt.Errorf("source %q: %v", raw, err)
		}
		s.Port = n
	}
	if strings.IndexFunc(s.User, urlsafe.IsControl) >= 0 {
		return s, fmt.Errorf("source %q: the user contains a control character (a line break, a tab, a NUL)", raw)
	}
	if err := urlsafe.CheckHost(s.Host); err != nil {
		return s, fmt.Errorf("source %q: %v", raw, err)
	}
	return s, nil
}

// ExpandTemplate replaces {user}, {host} and {account} in a destination
// spec with the account's values. A value that would change the path's
// shape (a '/' , a NUL, "." or "..") is refused rather than escaped, so two
// accounts can never silently share or escape a destination.
func ExpandTemplate(spec string, a *Account) (string, error) {
	vars := map[string]string{"user": a.User, "host": a.Host, "account": a.Name}
	shown := urlsafe.RedactUserinfo(spec)
	var b strings.Builder
	rest := spec
	for {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			b.WriteString(rest)
			break
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return "", fmt.Errorf("destination %q: unclosed '{'", shown)
		}
		name := rest[i+1 : i+j]
		v, ok := vars[name]
		if !ok {
			return "", fmt.Errorf("destination %q: unknown template {%s} (known: {user}, {host}, {account})", shown, name)
		}
		if v == "" || v == "." || v == ".." || strings.ContainsAny(v, "/\\\x00") {
			return "", fmt.Errorf("destination %q: {%s} = %q cannot be used in a path", shown, name, v)
		}
		b.WriteString(rest[:i])
		b.WriteString(v)
		rest = rest[i+j+1:]
	}
	return b.String(), nil
}

// Destinations knows the destination kinds: the registry of package
// exporters/location implements it. config knows no kind's syntax; it asks
// Describe for each expanded destination spec of an account.
type Destinations interface {
	// Describe checks spec and returns its destination id, where it
	// writes (two accounts may not share a non-empty place) and whether
	// it logs in (the account then needs a destination password or
	// token).
	Describe(spec string) (id, place string, login bool, err error)
}

// Defaults are values that apply to every account that does not set its own:
// the run's flags, or the defaults section of a YAML file.
type Defaults struct {
	To                 []string
	Password           Secret
	OAuth2Token        Secret
	OAuth2App          OAuth2App
	ToPassword         Secret
	ToOAuth2Token      Secret
	Auth               []string
	CAFile             string
	InsecureSkipVerify bool
	InsecurePlaintext  bool
	// Provider is the preset of accounts that name none (--provider).
	Provider string
	// Destinations checks destination specs. Nil accepts any spec
	// unchecked, each its own place: callers that run anything give it.
	Destinations Destinations
	// DestinationOptional accepts accounts without a destination, for
	// commands that only talk to the server (check).
	DestinationOptional bool
	// PasswordOptional accepts accounts without a password, for commands
	// that never log in (verify without --against-source).
	PasswordOptional bool
	// DestinationPasswordOptional accepts destinations that log in (IMAP)
	// without a password or token, for commands that only record them
	// and open none (journal enrol).
	DestinationPasswordOptional bool
}

// accountInput is one account as written by the user, before defaults,
// validation and template expansion.
type accountInput struct {
	origin             string
	name               string
	source             string
	host, port, user   string
	security           string
	password           Secret
	oauth2             Secret
	app                OAuth2App
	toPassword         Secret
	toOAuth2           Secret
	auth               string
	caFile             string
	insecureSkipVerify *bool
	insecurePlaintext  *bool
	to                 []string
	provider           string
}

// build validates in, applies d and expands the templates of destinations
// and secrets. Accounts built with one share hold one TokenCache per
// token source.
func (in *accountInput) build(d Defaults, share *tokenShare) (*Account, error) {
	a := &Account{Origin: in.origin, Name: in.name}
	var prov *Provider
	if name := firstNonEmpty(in.provider, d.Provider); name != "" {
		p, err := LookupProvider(name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", in.origin, err)
		}
		prov = &p
	}
	host := in.host
	if prov != nil && in.source == "" && host == "" {
		host = prov.Host
	}
	if in.source != "" {
		if host != "" || in.port != "" || in.user != "" {
			return nil, fmt.Errorf("%s: give either source or host/port/user, not both", in.origin)
		}
		s, err := ParseSource(in.source)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", in.origin, err)
		}
		a.Security, a.User, a.Host, a.Port = s.Security, s.User, s.Host, s.Port
	} else {
		if host == "" || in.user == "" {
			return nil, fmt.Errorf("%s: no source: give source (pop3s://USER@HOST), host and user, or provider and user", in.origin)
		}
		a.Host, a.User = host, in.user
		// QUIRK: an IPv6 address may be written with the brackets of a URL.
		if strings.HasPrefix(a.Host, "[") && strings.HasSuffix(a.Host, "]") {
			a.Host = a.Host[1 : len(a.Host)-1]
		}
		if err := urlsafe.CheckHost(a.Host); err != nil {
			return nil, fmt.Errorf("%s: %v", in.origin, err)
		}
		a.Security = SecurityTLS
		if in.security != "" {
			switch Security(strings.ToLower(in.security)) {
			case SecurityTLS, SecuritySTLS, SecurityPlain:
				a.Security = Security(strings.ToLower(in.security))
			default:
				return nil, fmt.Errorf("%s: security %q: want tls, starttls or plain", in.origin, in.security)
			}
		}
		a.Port = 995
		if a.Security != SecurityTLS {
			a.Port = 110
		}
		if in.port != "" {
			n, err := strconv.Atoi(in.port)
			if err != nil || n < 1 || n > 65535 {
				return nil, fmt.Errorf("%s: bad port %q", in.origin, in.port)
			}
			a.Port = n
		}
	}
	if strings.IndexFunc(a.User, urlsafe.IsControl) >= 0 {
		return nil, fmt.Errorf("%s: user %q contains a control character (a line break, a tab, a NUL)", in.origin, a.User)
	}
	if strings.IndexFunc(a.Name, urlsafe.IsControl) >= 0 {
		return nil, fmt.Errorf("%s: name %q contains a control character (a line break, a tab, a NUL)", in.origin, a.Name)
	}
	plaintext := d.InsecurePlaintext
	if in.insecurePlaintext != nil {
		plaintext = *in.insecurePlaintext
	}
	if plaintext {
		if a.Security == SecurityTLS {
			return nil, fmt.Errorf("%s: insecure plaintext makes no sense with pop3s:// (implicit TLS); use pop3:// to connect without TLS", in.origin)
		}
		a.Security = SecurityPlain
	} else if a.Security == SecurityPlain {
		return nil, fmt.Errorf("%s: security plain sends the password in the clear; also set insecure_plaintext (or --insecure-plaintext) to confirm", in.origin)
	}
	if prov == nil {
		// A server of a known provider behaves as that provider's, named
		// or not (an account rebuilt from the journal names none).
		prov = providerOfHost(a.Host)
	}
	if prov != nil {
		a.Provider, a.UntilEmpty, a.PerHost = prov.Name, prov.UntilEmpty, prov.PerHost
	}
	a.Password = in.password.or(d.Password)
	// The account's own OAuth2 choice (a token or a provider) replaces
	// the default one as a whole; provider fields merge field by field.
	switch {
	case !in.oauth2.IsZero() && !in.app.IsZero():
		return nil, fmt.Errorf("%s: give either oauth2_token_env/_file/_command or oauth2_provider, not both", in.origin)
	case !in.oauth2.IsZero():
		a.OAuth2Token = in.oauth2
	case !in.app.IsZero():
		app := in.app.or(d.OAuth2App)
		a.OAuth2App = &app
	default:
		a.OAuth2Token = d.OAuth2Token
		if !d.OAuth2App.IsZero() {
			app := d.OAuth2App
			a.OAuth2App = &app
		}
		if !a.OAuth2Token.IsZero() && a.OAuth2App != nil {
			return nil, fmt.Errorf("%s: give either --oauth2-token-env/-file/-command or --oauth2-provider, not both", in.origin)
		}
	}
	if app := a.OAuth2App; app != nil {
		app.Provider = strings.ToLower(app.Provider)
		if err := app.check(in.origin); err != nil {
			return nil, err
		}
		if err := checkTokenFile(in.origin, "oauth2_client_cert", app.ClientCert); err != nil {
			return nil, err
		}
		if err := checkTokenFile(in.origin, "oauth2_service_account", app.ServiceAccount); err != nil {
			return nil, err
		}
	}
	oauth2 := !a.OAuth2Token.IsZero() || a.OAuth2App != nil
	if prov != nil && prov.NoPasswords && !oauth2 && !d.PasswordOptional {
		return nil, fmt.Errorf("%s: account %s: %s", in.origin, a.User, prov.Why)
	}
	if a.Password.IsZero() && !oauth2 && !d.PasswordOptional {
		return nil, fmt.Errorf("%s: account %s: no password: give password_env, password_file or password_command (flags: --password-env, --password-file, --password-command), or an OAuth2 token or provider (oauth2_token_command, oauth2_provider)", in.origin, a.User)
	}
	if in.auth != "" {
		a.Auth = splitList(strings.ToUpper(in.auth))
	} else {
		a.Auth = d.Auth
	}
	for _, m := range a.Auth {
		switch m {
		case "PLAIN", "APOP", "USER", "XOAUTH2", "XOAUTH2-2STEP", "OAUTHBEARER":
		default:
			return nil, fmt.Errorf("%s: auth mechanism %q: want PLAIN, APOP, USER, XOAUTH2, XOAUTH2-2STEP or OAUTHBEARER", in.origin, m)
		}
	}
	if len(a.Auth) == 0 && a.OAuth2App != nil && a.OAuth2App.Provider == ProviderMicrosoft365 {
		// Microsoft documents XOAUTH2 for POP in its two-step form.
		a.Auth = []string{"XOAUTH2-2STEP"}
	}
	if len(a.Auth) == 0 && oauth2 && prov != nil && len(prov.OAuth2Auth) > 0 {
		a.Auth = slices.Clone(prov.OAuth2Auth)
	}
	a.CAFile = in.caFile
	if a.CAFile == "" {
		a.CAFile = d.CAFile
	}
	a.InsecureSkipVerify = d.InsecureSkipVerify
	if in.insecureSkipVerify != nil {
		a.InsecureSkipVerify = *in.insecureSkipVerify
	}
	if a.Name == "" {
		a.Name = a.User + "@" + a.Host
	}
	to := in.to
	if len(to) == 0 {
		to = d.To
	}
	if len(to) == 0 && !d.DestinationOptional {
		return nil, fmt.Errorf("%s: account %s: no destination: give to (e.g. maildir:/srv/mail/{user}) or --to", in.origin, a.Name)
	}
	a.ToPassword = in.toPassword.or(d.ToPassword)
	a.ToOAuth2Token = in.toOAuth2.or(d.ToOAuth2Token)
	if err := a.expandSecrets(); err != nil {
		return nil, fmt.Errorf("%s: account %s: %w", in.origin, a.Name, err)
	}
	a.setTokens(share)
	for _, spec := range to {
		exp, err := ExpandTemplate(spec, a)
		if err != nil {
			return nil, fmt.Errorf("%s: account %s: %w", in.origin, a.Name, err)
		}
		place := exp
		if d.Destinations != nil {
			_, p, login, err := d.Destinations.Describe(exp)
			if err != nil {
				return nil, fmt.Errorf("%s: account %s: %w", in.origin, a.Name, err)
			}
			if login && a.ToPassword.IsZero() && a.ToOAuth2Token.IsZero() && !d.DestinationPasswordOptional {
				return nil, fmt.Errorf("%s: account %s: destination %s has no password: give to_password_env, to_password_file or to_password_command (flags: --to-password-env, --to-password-file, --to-password-command)", in.origin, a.Name, exp)
			}
			place = p
		}
		a.To = append(a.To, exp)
		a.places = append(a.places, place)
	}
	return a, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func splitList(s string) []string {
	f := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == ';' })
	if len(f) == 0 {
		return nil
	}
	return f
}

// Validate checks a whole run's accounts: at least one account, unique
// names, and no two accounts writing to the same place (their messages
// would mix, and each account's resume logic assumes it owns its
// destination), as the Destinations of their Defaults described it.
func Validate(accounts []*Account) error {
	if len(accounts) == 0 {
		return errors.New("no accounts: give --source, --accounts FILE.csv or --config FILE.yaml")
	}
	names := map[string]string{}
	dests := map[string]string{}
	for _, a := range accounts {
		if prev, dup := names[a.Name]; dup {
			return fmt.Errorf("%s: account %s is already defined at %s; give one of them a distinct name", a.Origin, a.Name, prev)
		}
		names[a.Name] = a.Origin
		for i, spec := range a.To {
			place := spec
			if len(a.places) == len(a.To) {
				place = a.places[i]
			}
			if place == "" {
				// A destination shared by design (an eml tree keeps
				// one folder per account).
				continue
			}
			if other, dup := dests[place]; dup {
				return fmt.Errorf("%s: account %s writes to %s, which account %s also writes to; use a template such as maildir:/srv/mail/{user}", a.Origin, a.Name, spec, other)
			}
			dests[place] = a.Name
		}
	}
	return nil
}
