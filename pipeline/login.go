package pipeline

import (
	"context"
	"errors"
	"fmt"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/pop3"
)

// login logs c in with the account's credentials. An account with an
// OAuth2 token source asks it for a token at each login: the source's
// cache gives the same token until shortly before it expires, then a new
// one, so that a run of hours survives many expiries. When the server
// rejects a token that had worked before (it was revoked, or expired
// early), the token is invalidated and the login tried once more on the
// same connection (the session is still in the AUTHORIZATION state) with
// a fresh one. A rejected fresh token (one no server had accepted yet) is
// not asked for again: the error names the token source and carries the
// server's decoded OAuth2 error, and, being an [AUTH] failure, ends the
// account.
func (ar *accountRun) login(ctx context.Context, c *pop3.Client) error {
	src := ar.tokens
	if src == nil {
		return c.Login(ctx, ar.auth)
	}
	tok, proven, err := src.Get(ctx)
	if err != nil {
		return fmt.Errorf("oauth2 token (%s): %w", src, err)
	}
	ar.auth.OAuth2Token = tok.Value
	err = c.Login(ctx, ar.auth)
	if err == nil {
		src.Accepted(tok.Value)
	}
	if !tokenRejected(err) {
		return err
	}
	if !proven {
		return &tokenRejectedError{fmt.Errorf("the server rejected a fresh OAuth2 token from %s: %w", src, err)}
	}
	src.Invalidate(tok.Value)
	next, _, terr := src.Get(ctx)
	if terr != nil {
		return fmt.Errorf("the server rejected the OAuth2 token from %s, and asking it again failed: %w (the server said: %v)", src, terr, err)
	}
	if next.Value == tok.Value {
		return &tokenRejectedError{fmt.Errorf("the server rejected the OAuth2 token from %s, which gives the same token when asked again: %w", src, err)}
	}
	ar.auth.OAuth2Token = next.Value
	if err := c.Login(ctx, ar.auth); err != nil {
		if tokenRejected(err) {
			return &tokenRejectedError{fmt.Errorf("the server rejected the OAuth2 token from %s, and the fresh one it gave next too: %w", src, err)}
		}
		return err
	}
	src.Accepted(next.Value)
	return nil
}

// tokenRejectedError is a login that failed because the server rejected
// the OAuth2 tokens of the account's source; it wraps the server's
// *pop3.Error.
type tokenRejectedError struct{ err error }

func (e *tokenRejectedError) Error() string { return e.err.Error() }
func (e *tokenRejectedError) Unwrap() error { return e.err }

// tokenRejected reports whether err is the server's refusal of the
// credentials of an AUTH exchange: a -ERR with the [AUTH] code or none,
// rather than a temporary condition ([IN-USE], [SYS/TEMP]...) or a broken
// connection.
func tokenRejected(err error) bool {
	var pe *pop3.Error
	return errors.As(err, &pe) && pe.Command == "AUTH" && (pe.Code == "AUTH" || pe.Code == "")
}

// destinationTokens returns the functions of location.Env for an IMAP
// destination's OAuth2 token source: the token to log in with (the
// cache's, asked at each login) and the report of a token the server
// rejected, after which the next login asks the source again.
func destinationTokens(src *config.TokenCache) (token func(context.Context) (string, error), rejected func(string)) {
	token = func(ctx context.Context) (string, error) {
		tok, err := src.Token(ctx)
		if err != nil {
			return "", fmt.Errorf("oauth2 token (%s): %w", src, err)
		}
		return tok.Value, nil
	}
	return token, src.Invalidate
}
