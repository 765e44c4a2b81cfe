package imap

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
)

// tokenFunc is an Options.OAuth2TokenFunc that gives tokens[0], then,
// asked again, the next token; it records what it was told was rejected.
type tokenFunc struct {
	mu       sync.Mutex
	tokens   []string
	rejected []string
}

func (f *tokenFunc) get(ctx context.Context, rejected string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rejected = append(f.rejected, rejected)
	tok := f.tokens[0]
	if len(f.tokens) > 1 {
		f.tokens = f.tokens[1:]
	}
	return tok, nil
}

// TestOAuth2TokenFuncRefreshesARejectedToken: a token the server refuses
// is reported to OAuth2TokenFunc, and the login is tried again on the same
// connection with the token it gives next; a second refusal is ErrAuth;
// the same token again is not tried twice.
func TestOAuth2TokenFuncRefreshesARejectedToken(t *testing.T) {
	for _, mech := range []string{"XOAUTH2", "OAUTHBEARER"} {
		t.Run(mech, func(t *testing.T) {
			srv := startMem(t, memConfig{mechs: []string{mech}})
			o := srv.options("Tokens")
			f := &tokenFunc{tokens: []string{"ya29.expired", memToken}}
			o.Password, o.OAuth2TokenFunc = "", f.get
			e, err := New(testCtx(t), o)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			mustPut(t, e, msgN(1))
			e.Close()
			if strings.Join(f.rejected, ",") != ",ya29.expired" || srv.logins.Load() != 1 {
				t.Errorf("rejected %q, %d logins; want \"\", then the expired token, and one login", f.rejected, srv.logins.Load())
			}

			for _, tokens := range [][]string{{"bad-1", "bad-2"}, {"bad-1"}} {
				f := &tokenFunc{tokens: tokens}
				o.OAuth2TokenFunc = f.get
				_, err := New(testCtx(t), o)
				if !errors.Is(err, ErrAuth) && !strings.Contains(err.Error(), mech) {
					t.Errorf("%v: err = %v, want an authentication failure", tokens, err)
				}
				if len(f.rejected) != 2 || f.rejected[1] != "bad-1" {
					t.Errorf("%v: rejected %q", tokens, f.rejected)
				}
			}
		})
	}
}
