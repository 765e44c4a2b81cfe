package config

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"golang.org/x/oauth2"

	"github.com/popmigrate/popmigrate/internal/oauth2src"
	"github.com/popmigrate/popmigrate/internal/urlsafe"
)

// The built-in OAuth2 providers (OAuth2App.Provider).
const (
	// ProviderMicrosoft365 is the Microsoft identity platform's
	// client-credentials grant: app-only tokens for Exchange Online
	// (scope https://outlook.office365.com/.default), with a client
	// secret or a certificate.
	ProviderMicrosoft365 = "microsoft365"
	// ProviderGoogle is a Google service account with domain-wide
	// delegation: a token for each mailbox (the JWT's subject), scope
	// https://mail.google.com/.
	ProviderGoogle = "google"
)

// OAuth2App is a built-in, non-interactive source of OAuth2 access tokens:
// popmigrate asks the provider's token endpoint itself, as the
// application, for the account's mailbox (its user name). The zero value
// is none.
type OAuth2App struct {
	// Provider is ProviderMicrosoft365 or ProviderGoogle.
	Provider string
	// Tenant is the Microsoft Entra directory (its id or a domain) and
	// ClientID the application (client) id; Microsoft only.
	Tenant   string
	ClientID string
	// ClientSecret is a client secret of the Microsoft application; or
	// ClientCert is a PEM file with the certificate registered with the
	// application and its unencrypted RSA private key.
	ClientSecret Secret
	ClientCert   string
	// ServiceAccount is the JSON key file of the Google service account;
	// Google only.
	ServiceAccount string
	// Scope replaces the provider's scope; TokenURL its token endpoint
	// (for a national cloud, or a test). Neither has a flag or column.
	Scope, TokenURL string
}

// IsZero reports whether no provider is set.
func (o OAuth2App) IsZero() bool { return o == OAuth2App{} }

// or fills the empty fields of o from d, unless both name a provider
// and not the same one.
func (o OAuth2App) or(d OAuth2App) OAuth2App {
	if o.Provider != "" && d.Provider != "" && !strings.EqualFold(o.Provider, d.Provider) {
		return o
	}
	if o.Provider == "" {
		o.Provider = d.Provider
	}
	if o.Tenant == "" {
		o.Tenant = d.Tenant
	}
	if o.ClientID == "" {
		o.ClientID = d.ClientID
	}
	if o.ClientSecret.IsZero() && o.ClientCert == "" {
		o.ClientSecret, o.ClientCert = d.ClientSecret, d.ClientCert
	}
	if o.ServiceAccount == "" {
		o.ServiceAccount = d.ServiceAccount
	}
	if o.Scope == "" {
		o.Scope = d.Scope
	}
	if o.TokenURL == "" {
		o.TokenURL = d.TokenURL
	}
	return o
}

// String describes the source, without a secret.
func (o OAuth2App) String() string {
	switch o.Provider {
	case ProviderMicrosoft365:
		how := "client secret from " + o.ClientSecret.String()
		if o.ClientCert != "" {
			how = "certificate " + o.ClientCert
		}
		return fmt.Sprintf("Microsoft 365 app %s of tenant %s (%s)", o.ClientID, o.Tenant, how)
	case ProviderGoogle:
		return "Google service account " + o.ServiceAccount
	}
	return "no OAuth2 provider"
}

var tenantRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.-]*$`)

// check validates o (its provider already lower-cased); where names the
// account for errors.
func (o OAuth2App) check(where string) error {
	switch o.Provider {
	case ProviderMicrosoft365:
		switch {
		case o.Tenant == "":
			return fmt.Errorf("%s: oauth2_provider microsoft365 needs oauth2_tenant (the directory id or domain; flag --oauth2-tenant)", where)
		case !tenantRe.MatchString(o.Tenant) || len(o.Tenant) > 255:
			return fmt.Errorf("%s: oauth2_tenant %q: want a directory id or a domain name", where, o.Tenant)
		case o.ClientID == "":
			return fmt.Errorf("%s: oauth2_provider microsoft365 needs oauth2_client_id (the application id; flag --oauth2-client-id)", where)
		case strings.IndexFunc(o.ClientID, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0:
			return fmt.Errorf("%s: oauth2_client_id contains a space or a control character", where)
		case o.ClientSecret.IsZero() == (o.ClientCert == ""):
			return fmt.Errorf("%s: oauth2_provider microsoft365 needs one of oauth2_client_secret_env, oauth2_client_secret_file, oauth2_client_secret_command or oauth2_client_cert (flags --oauth2-client-secret-env ... --oauth2-client-cert)", where)
		case o.ServiceAccount != "":
			return fmt.Errorf("%s: oauth2_service_account goes with oauth2_provider google, not microsoft365", where)
		}
	case ProviderGoogle:
		switch {
		case o.ServiceAccount == "":
			return fmt.Errorf("%s: oauth2_provider google needs oauth2_service_account (the service account's JSON key file; flag --oauth2-service-account)", where)
		case o.Tenant != "" || o.ClientID != "" || !o.ClientSecret.IsZero() || o.ClientCert != "":
			return fmt.Errorf("%s: oauth2_tenant, oauth2_client_id, oauth2_client_secret_* and oauth2_client_cert go with oauth2_provider microsoft365; google takes oauth2_service_account", where)
		}
	case "":
		return fmt.Errorf("%s: oauth2_tenant, oauth2_client_* and oauth2_service_account need oauth2_provider (microsoft365 or google)", where)
	default:
		return fmt.Errorf("%s: oauth2_provider %q: want microsoft365 or google", where, o.Provider)
	}
	return nil
}

// source returns the token source of o for the mailbox user. It reads the
// client secret, certificate or key file at each call, so that a rotated
// one is picked up at the next token.
func (o OAuth2App) source(user string) TokenSource {
	return appTokens{app: o, user: user}
}

type appTokens struct {
	app  OAuth2App
	user string
}

func (t appTokens) String() string { return t.app.String() }

func (t appTokens) Token(ctx context.Context) (Token, error) {
	var p interface {
		Token(context.Context) (*oauth2.Token, error)
	}
	switch t.app.Provider {
	case ProviderMicrosoft365:
		m := &oauth2src.Microsoft{Tenant: t.app.Tenant, ClientID: t.app.ClientID, Scope: t.app.Scope, TokenURL: t.app.TokenURL}
		if t.app.ClientCert != "" {
			b, err := readSecretFile(t.app.ClientCert)
			if err != nil {
				return Token{}, err
			}
			m.CertPEM = b
		} else {
			s, err := t.app.ClientSecret.Resolve(ctx)
			if err != nil {
				return Token{}, fmt.Errorf("client secret (%s): %w", t.app.ClientSecret, err)
			}
			m.ClientSecret = s
		}
		p = m
	case ProviderGoogle:
		b, err := readSecretFile(t.app.ServiceAccount)
		if err != nil {
			return Token{}, err
		}
		p = &oauth2src.Google{KeyJSON: b, Subject: t.user, Scope: t.app.Scope}
	default:
		return Token{}, fmt.Errorf("oauth2: unknown provider %q", t.app.Provider)
	}
	tok, err := p.Token(ctx)
	if err != nil {
		return Token{}, err
	}
	if err := checkToken(tok.AccessToken, t); err != nil {
		return Token{}, err
	}
	return Token{Value: tok.AccessToken, Expiry: tok.Expiry}, nil
}

// tokenKey says what a token source gives, so that accounts of one file
// with the same source share one TokenCache.
type tokenKey struct {
	user   string // the mailbox, when the token depends on it
	secret Secret
	app    OAuth2App
}

// tokenShare holds the TokenCaches of the accounts of one load.
type tokenShare struct {
	mu     sync.Mutex
	caches map[tokenKey]*TokenCache
}

func newTokenShare() *tokenShare { return &tokenShare{caches: map[tokenKey]*TokenCache{}} }

// cache returns the cache of key, made by mk when there is none yet.
func (s *tokenShare) cache(key tokenKey, mk func() *TokenCache) *TokenCache {
	if s == nil {
		return mk()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.caches[key]
	if c == nil {
		c = mk()
		s.caches[key] = c
	}
	return c
}

// accountTokens are an account's token caches and what they were made
// for.
type accountTokens struct {
	srcKey, toKey tokenKey
	src, to       *TokenCache
}

// sourceKey is the tokenKey of the account's POP3 login; ok is false when
// it logs in with a password.
func (a *Account) sourceKey() (tokenKey, bool) {
	switch {
	case a.OAuth2App != nil:
		k := tokenKey{app: *a.OAuth2App}
		if a.OAuth2App.Provider == ProviderGoogle {
			k.user = a.User // the JWT's subject
		}
		return k, true
	case !a.OAuth2Token.IsZero():
		return tokenKey{secret: a.OAuth2Token}, true
	}
	return tokenKey{}, false
}

func (a *Account) newSourceCache(k tokenKey) *TokenCache {
	if !k.app.IsZero() {
		return NewTokenCache(k.app.source(a.User), "")
	}
	return NewTokenCache(k.secret.TokenSource(), "")
}

// setTokens makes the account's token caches, shared through share with
// the other accounts of the same load.
func (a *Account) setTokens(share *tokenShare) {
	k, ok := a.sourceKey()
	if !ok && a.ToOAuth2Token.IsZero() {
		return // a password account costs nothing more
	}
	t := &accountTokens{}
	if ok {
		t.srcKey = k
		t.src = share.cache(k, func() *TokenCache { return a.newSourceCache(k) })
	}
	if !a.ToOAuth2Token.IsZero() {
		t.toKey = tokenKey{secret: a.ToOAuth2Token}
		t.to = share.cache(t.toKey, func() *TokenCache { return NewTokenCache(a.ToOAuth2Token.TokenSource(), "") })
	}
	a.tokens = t
}

// OAuth2Source returns the source of the OAuth2 tokens the account logs
// in to its POP3 server with (its OAuth2App, else its OAuth2Token), or nil
// when it logs in with its password. The source is a TokenCache that every
// caller for this account shares, and so do the accounts of one file with
// the same source: a token is reused across sessions, commands and
// accounts until shortly before it expires or until a server rejects it
// (Invalidate). An Account that this package did not build, or whose
// token fields changed since, gets a new cache at each call.
func (a *Account) OAuth2Source() *TokenCache {
	k, ok := a.sourceKey()
	if !ok {
		return nil
	}
	if a.tokens != nil && a.tokens.src != nil && a.tokens.srcKey == k {
		return a.tokens.src
	}
	return a.newSourceCache(k)
}

// ToOAuth2Source is OAuth2Source for the account's IMAP destinations
// (ToOAuth2Token); nil when they log in with a password.
func (a *Account) ToOAuth2Source() *TokenCache {
	if a.ToOAuth2Token.IsZero() {
		return nil
	}
	k := tokenKey{secret: a.ToOAuth2Token}
	if a.tokens != nil && a.tokens.to != nil && a.tokens.toKey == k {
		return a.tokens.to
	}
	return NewTokenCache(a.ToOAuth2Token.TokenSource(), "")
}

// checkTokenFile is the check of a file of an OAuth2App at load time:
// nothing is read (secrets are read when needed), but a path with a
// control character is refused.
func checkTokenFile(where, col, path string) error {
	if strings.IndexFunc(path, urlsafe.IsControl) >= 0 {
		return fmt.Errorf("%s: %s contains a control character", where, col)
	}
	return nil
}
