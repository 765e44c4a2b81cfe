package config

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Token is an OAuth 2.0 access token.
type Token struct {
	// Value is the access token itself: a secret.
	Value string
	// Expiry is when the token stops working; zero when its source did
	// not say.
	Expiry time.Time
}

// String describes the token without its value.
func (t Token) String() string {
	if t.Expiry.IsZero() {
		return "OAuth2 token (no expiry given)"
	}
	return "OAuth2 token expiring " + t.Expiry.UTC().Format(time.RFC3339)
}

// Format prints the description (String) whatever the verb, so that no
// fmt verb reveals the token.
func (t Token) Format(f fmt.State, verb rune) { io.WriteString(f, t.String()) }

// TokenSource gives OAuth 2.0 access tokens. Token may block (it may run
// a helper command or ask a token endpoint) and gives up when ctx ends.
// Its errors never contain a secret.
type TokenSource interface {
	Token(ctx context.Context) (Token, error)
}

// TokenSource returns a source that reads s at each call. What s holds is
// either a bare token or a JSON object as oauth2l and gcloud print it:
//
//	{"access_token": "ya29...", "expires_in": 3599}
//	{"access_token": "ya29...", "expiry": "2025-06-01T12:00:00Z"}
//
// "expires_in" (seconds, a number or a string of digits) counts from the
// moment the source was asked; "expiry" is an RFC 3339 time; with both, the
// earlier wins. Other fields are ignored. A token without expiry is
// reused (by a TokenCache) until the server rejects it.
func (s Secret) TokenSource() TokenSource { return secretTokens{s} }

type secretTokens struct{ s Secret }

func (t secretTokens) String() string { return t.s.String() }

func (t secretTokens) Token(ctx context.Context) (Token, error) {
	asked := time.Now()
	v, err := t.s.read(ctx)
	if err != nil {
		return Token{}, err
	}
	return parseToken(v, t.s, asked)
}

// maxTokenLifetime bounds an expires_in: a longer one is a mistake.
const maxTokenLifetime = 366 * 24 * time.Hour

// parseToken reads what a token source s printed, asked at asked. Its
// errors describe s and never quote the output.
func parseToken(out string, s Secret, asked time.Time) (Token, error) {
	trimmed := strings.TrimSpace(out)
	if !strings.HasPrefix(trimmed, "{") {
		if strings.ContainsAny(out, "\r\n\x00") {
			return Token{}, fmt.Errorf("secret: %s contains a line break or NUL (only trailing line breaks are removed)", s)
		}
		if err := checkToken(out, s); err != nil {
			return Token{}, err
		}
		return Token{Value: out}, nil
	}
	var j struct {
		AccessToken json.RawMessage `json:"access_token"`
		ExpiresIn   json.RawMessage `json:"expires_in"`
		Expiry      json.RawMessage `json:"expiry"`
	}
	dec := json.NewDecoder(strings.NewReader(trimmed))
	if err := dec.Decode(&j); err != nil || dec.More() {
		return Token{}, fmt.Errorf("secret: %s printed something that starts with { but is not one JSON object (its content is not shown)", s)
	}
	var tok Token
	if err := json.Unmarshal(j.AccessToken, &tok.Value); err != nil || tok.Value == "" {
		return Token{}, fmt.Errorf("secret: %s printed JSON without an access_token string (want {\"access_token\": \"...\", \"expires_in\": 3599})", s)
	}
	if err := checkToken(tok.Value, s); err != nil {
		return Token{}, err
	}
	if len(j.ExpiresIn) > 0 && !bytes.Equal(j.ExpiresIn, []byte("null")) {
		raw := string(j.ExpiresIn)
		var str string
		if json.Unmarshal(j.ExpiresIn, &str) == nil {
			raw = str
		}
		n, err := strconv.ParseInt(strings.TrimSpace(raw), 10, 64)
		if err != nil || n <= 0 || time.Duration(n) > maxTokenLifetime/time.Second {
			return Token{}, fmt.Errorf("secret: %s printed JSON whose expires_in is not a number of seconds from 1 to %d", s, int64(maxTokenLifetime/time.Second))
		}
		tok.Expiry = asked.Add(time.Duration(n) * time.Second)
	}
	if len(j.Expiry) > 0 && !bytes.Equal(j.Expiry, []byte("null")) {
		var str string
		if err := json.Unmarshal(j.Expiry, &str); err != nil {
			return Token{}, fmt.Errorf("secret: %s printed JSON whose expiry is not an RFC 3339 time string", s)
		}
		t, err := time.Parse(time.RFC3339Nano, str)
		if err != nil {
			return Token{}, fmt.Errorf("secret: %s printed JSON whose expiry is not an RFC 3339 time (like 2025-06-01T12:00:00Z)", s)
		}
		// QUIRK: Go's oauth2.Token marshals an unknown expiry as the
		// zero time (0001-01-01T00:00:00Z); it means none.
		if !t.IsZero() && (tok.Expiry.IsZero() || t.Before(tok.Expiry)) {
			tok.Expiry = t
		}
	}
	return tok, nil
}

// checkToken refuses a token that XOAUTH2 and OAUTHBEARER could not carry
// ("Bearer " and the token, ended by ^A): one with a space or a control
// character.
func checkToken(v string, s fmt.Stringer) error {
	if strings.IndexFunc(v, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		return fmt.Errorf("secret: the OAuth2 token from %s contains a space or a control character (print the bare token, or JSON with access_token)", s)
	}
	return nil
}

// DefaultRefreshMargin is how long before its expiry a TokenCache asks for
// a new token; a token that lives less than four times as long is asked
// for again after three quarters of its life.
const DefaultRefreshMargin = 2 * time.Minute

// TokenCache is a TokenSource that reuses the token of another until
// shortly before it expires (see DefaultRefreshMargin) or until it is
// invalidated, as oauth2.ReuseTokenSource does; a token without an expiry
// is reused until Invalidate. A source that gives a token that has already
// expired is an error. It also remembers whether a server has accepted the
// token (Accepted): a server's rejection of a token that never worked
// means the source gives bad tokens, not that this one has aged. Its
// methods are safe for concurrent use: callers that ask at once wait for
// one request to the source.
type TokenCache struct {
	src  TokenSource
	desc string
	sem  chan struct{} // held while asking src
	now  func() time.Time

	mu      sync.Mutex
	tok     Token
	valid   bool
	proven  bool      // a server accepted tok
	refresh time.Time // ask again from then on; zero: not before Invalidate
	fetches int
}

// NewTokenCache returns a cache in front of src. desc describes src in
// errors and String ("command", "Microsoft 365 app ..."); "" uses src's
// String method when it has one.
func NewTokenCache(src TokenSource, desc string) *TokenCache {
	if desc == "" {
		desc = "token source"
		if s, ok := src.(fmt.Stringer); ok {
			desc = s.String()
		}
	}
	return &TokenCache{src: src, desc: desc, sem: make(chan struct{}, 1), now: time.Now}
}

// String describes the source, never a token.
func (c *TokenCache) String() string { return c.desc }

// Token returns the cached token, or asks the source for a new one.
func (c *TokenCache) Token(ctx context.Context) (Token, error) {
	t, _, err := c.Get(ctx)
	return t, err
}

// Get is Token, and reports whether the token is proven: a server
// accepted it (Accepted) since the source gave it. When a server rejects
// a proven token, it has been revoked or has expired early: Invalidate it
// and ask again. A rejected token that was not proven is not worth asking
// again for: the source gives no better.
func (c *TokenCache) Get(ctx context.Context) (tok Token, proven bool, err error) {
	if t, p, ok := c.cached(); ok {
		return t, p, nil
	}
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return Token{}, false, context.Cause(ctx)
	}
	defer func() { <-c.sem }()
	// Another caller may have asked while this one waited.
	if t, p, ok := c.cached(); ok {
		return t, p, nil
	}
	asked := c.now()
	t, err := c.src.Token(ctx)
	if err != nil {
		return Token{}, false, err
	}
	if t.Value == "" {
		return Token{}, false, errors.New("the token source gave an empty token")
	}
	if !t.Expiry.IsZero() && !t.Expiry.After(c.now()) {
		return Token{}, false, fmt.Errorf("the token from %s expired at %s, before it was used: the source gives a stale token", c.desc, t.Expiry.UTC().Format(time.RFC3339))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fetches++
	c.tok, c.valid, c.proven, c.refresh = t, true, false, time.Time{}
	if !t.Expiry.IsZero() {
		margin := min(DefaultRefreshMargin, t.Expiry.Sub(asked)/4)
		c.refresh = t.Expiry.Add(-margin)
	}
	return t, false, nil
}

// cached returns the cached token while it is good to use, and whether it
// is proven.
func (c *TokenCache) cached() (Token, bool, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.valid || (!c.refresh.IsZero() && !c.now().Before(c.refresh)) {
		return Token{}, false, false
	}
	return c.tok, c.proven, true
}

// Accepted records that a server accepted value, when it is the cached
// token.
func (c *TokenCache) Accepted(value string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.valid && c.tok.Value == value {
		c.proven = true
	}
}

// Invalidate forgets the cached token when it is value (a token the
// server rejected), so that the next Get asks the source again. A token
// that has already been replaced is left alone.
func (c *TokenCache) Invalidate(value string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.valid && c.tok.Value == value {
		c.valid = false
	}
}

// Fetches returns how many tokens the source has given the cache.
func (c *TokenCache) Fetches() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fetches
}
