// Package oauth2src asks the token endpoints of Microsoft and Google for
// app-only OAuth 2.0 access tokens to read and write mailboxes, with no
// user at a browser: the Microsoft identity platform's client-credentials
// grant (a client secret, or a certificate's signed client assertion) and a
// Google service account with domain-wide delegation (a signed JWT whose
// subject is the mailbox). The requests go through golang.org/x/oauth2.
//
// Each Token call asks the endpoint once; reuse until expiry is the
// caller's (config.TokenCache). Errors quote the endpoint's error code and
// description, never a secret, an assertion or a response body.
package oauth2src

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"golang.org/x/oauth2/google"
)

const (
	// MicrosoftScope is the scope of app-only access to Exchange Online's
	// POP, IMAP and SMTP.
	MicrosoftScope = "https://outlook.office365.com/.default"
	// GoogleScope is the scope of full access to Gmail, which POP and
	// IMAP need.
	GoogleScope = "https://mail.google.com/"
)

// Timeout bounds one request to a token endpoint.
const Timeout = 30 * time.Second

// assertionLifetime is how long a client assertion is valid: it is used
// at once, once.
const assertionLifetime = 5 * time.Minute

// Microsoft asks the Microsoft identity platform (v2.0 token endpoint) for
// an app-only token with the client-credentials grant. The token works for
// every mailbox the application's service principal was given access to;
// the mailbox is the SASL user name.
type Microsoft struct {
	// Tenant is the directory: its id or one of its domains.
	Tenant string
	// ClientID is the application (client) id.
	ClientID string
	// ClientSecret is a client secret of the application; or
	// CertPEM holds a certificate registered with the application and its
	// RSA private key (unencrypted PEM, in either order).
	ClientSecret string
	CertPEM      []byte
	// Scope is the scope asked for; "" means MicrosoftScope.
	Scope string
	// TokenURL is the token endpoint; "" means
	// https://login.microsoftonline.com/TENANT/oauth2/v2.0/token.
	TokenURL string
	// HTTPClient sends the request; nil means a client with Timeout.
	HTTPClient *http.Client
}

// MicrosoftTokenURL returns the Microsoft token endpoint of tenant.
func MicrosoftTokenURL(tenant string) string {
	return "https://login.microsoftonline.com/" + url.PathEscape(tenant) + "/oauth2/v2.0/token"
}

// Token asks the endpoint for a token.
func (m *Microsoft) Token(ctx context.Context) (*oauth2.Token, error) {
	cfg := &clientcredentials.Config{
		ClientID:  m.ClientID,
		TokenURL:  m.TokenURL,
		Scopes:    []string{m.Scope},
		AuthStyle: oauth2.AuthStyleInParams,
	}
	if cfg.TokenURL == "" {
		cfg.TokenURL = MicrosoftTokenURL(m.Tenant)
	}
	if m.Scope == "" {
		cfg.Scopes = []string{MicrosoftScope}
	}
	switch {
	case m.ClientSecret != "" && m.CertPEM != nil:
		return nil, errors.New("oauth2: give a client secret or a certificate, not both")
	case m.ClientSecret != "":
		cfg.ClientSecret = m.ClientSecret
	case m.CertPEM != nil:
		assertion, err := clientAssertion(m.CertPEM, m.ClientID, cfg.TokenURL, time.Now())
		if err != nil {
			return nil, err
		}
		cfg.EndpointParams = url.Values{
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
			"client_assertion":      {assertion},
		}
	default:
		return nil, errors.New("oauth2: no client secret or certificate")
	}
	ctx, cancel := withClient(ctx, m.HTTPClient)
	defer cancel()
	tok, err := cfg.Token(ctx)
	if err != nil {
		return nil, endpointError(ctx, "Microsoft identity platform", err)
	}
	return tok, nil
}

// clientAssertion returns the signed JWT with which an application proves
// it holds the private key of its certificate (RFC 7523 section 2.2, in
// the form Microsoft documents as "certificate credentials": RS256, the
// certificate's SHA-1 thumbprint in the x5t header, aud the token
// endpoint, iss and sub the client id, a unique jti).
//
// golang.org/x/oauth2 has no client-assertion helper, and its jws package
// (deprecated) has no x5t header field, so the token is put together here
// from crypto's RSA signature; the certificate and key pair is parsed and
// checked by crypto/tls.
func clientAssertion(certPEM []byte, clientID, aud string, now time.Time) (string, error) {
	pair, err := tls.X509KeyPair(certPEM, certPEM)
	if err != nil {
		return "", fmt.Errorf("oauth2: client certificate: %v (want one PEM file with the CERTIFICATE and its unencrypted PRIVATE KEY)", err)
	}
	key, ok := pair.PrivateKey.(*rsa.PrivateKey)
	if !ok {
		return "", fmt.Errorf("oauth2: client certificate: the key is a %T; Microsoft takes RSA keys", pair.PrivateKey)
	}
	thumb := sha1.Sum(pair.Certificate[0])
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", err
	}
	header, err := json.Marshal(map[string]string{
		"alg": "RS256",
		"typ": "JWT",
		"x5t": base64.RawURLEncoding.EncodeToString(thumb[:]),
	})
	if err != nil {
		return "", err
	}
	claims, err := json.Marshal(map[string]any{
		"aud": aud,
		"iss": clientID,
		"sub": clientID,
		"jti": hex.EncodeToString(jti[:]),
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(assertionLifetime).Unix(),
	})
	if err != nil {
		return "", err
	}
	signed := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(claims)
	sum := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		return "", fmt.Errorf("oauth2: signing the client assertion: %v", err)
	}
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// Google asks Google's token endpoint for a token of a service account
// with domain-wide delegation, acting as one user (RFC 7523 JWT bearer
// grant, through golang.org/x/oauth2/google).
type Google struct {
	// KeyJSON is the service account's JSON key file. Its token_uri is
	// the token endpoint.
	KeyJSON []byte
	// Subject is the user the token acts as: the mailbox.
	Subject string
	// Scope is the scope asked for; "" means GoogleScope. The domain's
	// admin must have granted it to the service account's client id.
	Scope string
	// HTTPClient sends the request; nil means a client with Timeout.
	HTTPClient *http.Client
}

// Token asks the endpoint for a token.
func (g *Google) Token(ctx context.Context) (*oauth2.Token, error) {
	scope := g.Scope
	if scope == "" {
		scope = GoogleScope
	}
	cfg, err := google.JWTConfigFromJSON(g.KeyJSON, scope)
	if err != nil {
		// The key file's errors are json's (no content quoted) or
		// name its type.
		return nil, fmt.Errorf("oauth2: service account key: %v", err)
	}
	if cfg.Email == "" || len(cfg.PrivateKey) == 0 {
		return nil, errors.New("oauth2: service account key: no client_email or private_key")
	}
	cfg.Subject = g.Subject
	ctx, cancel := withClient(ctx, g.HTTPClient)
	defer cancel()
	tok, err := cfg.TokenSource(ctx).Token()
	if err != nil {
		return nil, endpointError(ctx, "Google", err)
	}
	return tok, nil
}

// withClient bounds ctx by Timeout and hands x/oauth2 the HTTP client to
// use (its jwt requests do not follow ctx: the client's timeout bounds
// them).
func withClient(ctx context.Context, hc *http.Client) (context.Context, context.CancelFunc) {
	if hc == nil {
		hc = &http.Client{Timeout: Timeout}
	}
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	return context.WithValue(ctx, oauth2.HTTPClient, hc), cancel
}

// EndpointError is a failed request to a token endpoint.
type EndpointError struct {
	// Endpoint names the provider ("Google").
	Endpoint string
	// Status is the HTTP status; 0 when no answer came.
	Status int
	// Code and Description are the OAuth 2.0 error of the answer
	// (RFC 6749 section 5.2), or the transport failure in Description.
	Code, Description string
}

func (e *EndpointError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "oauth2: %s token endpoint", e.Endpoint)
	if e.Status != 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.Status)
	}
	if e.Code != "" {
		b.WriteString(": " + e.Code)
	}
	if e.Description != "" {
		b.WriteString(": " + e.Description)
	}
	return b.String()
}

// Temporary reports whether asking again later may work: no answer, a
// server error or throttling.
func (e *EndpointError) Temporary() bool {
	return e.Status == 0 || e.Status == http.StatusTooManyRequests || e.Status >= 500
}

// Timeout is part of net.Error, which an EndpointError is so that callers
// retry a temporary one as they retry a network failure.
func (e *EndpointError) Timeout() bool { return false }

// endpointError turns an error of x/oauth2 into an *EndpointError: the
// answer's OAuth 2.0 error code and description, shortened, without the
// body; a context error stays one.
func endpointError(ctx context.Context, endpoint string, err error) error {
	if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return context.Cause(ctx)
	}
	e := &EndpointError{Endpoint: endpoint}
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		e.Description = clean(err.Error())
		return e
	}
	if re.Response != nil {
		e.Status = re.Response.StatusCode
	}
	e.Code, e.Description = re.ErrorCode, re.ErrorDescription
	if e.Code == "" {
		// x/oauth2's jwt requests do not parse the error body.
		var j struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		if json.Unmarshal(re.Body, &j) == nil {
			e.Code, e.Description = j.Error, j.Description
		}
	}
	e.Code, e.Description = clean(e.Code), clean(e.Description)
	return e
}

// clean strips control characters and shortens s for an error message.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
