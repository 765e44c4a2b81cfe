package pipeline_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

// OAuth2 across a whole migration: a token endpoint (httptest) and token
// helpers hand out tokens that live about a second, a POP3 server that
// honours each for a little longer, and runs of several sessions that
// must log in again and again with a token still good, asking the source
// again before the token expires and after the server rejects one.

// serverTTL is how long the POP3 server accepts a token; the endpoint
// says tokenLife. The difference is slack for a slow machine: a client
// that reused a token past tokenLife would still be refused.
const (
	tokenLife = time.Second
	serverTTL = 1500 * time.Millisecond
)

// mintToken returns a token for who ("app" for an app-only token, else
// the mailbox) that carries the moment it was minted.
func mintToken(who string) string {
	return fmt.Sprintf("tok.%s.%d", who, time.Now().UnixNano())
}

// tokenAge returns who and the age of a token of mintToken.
func tokenAge(tok string) (who string, age time.Duration, ok bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || parts[0] != "tok" {
		return "", 0, false
	}
	n, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		return "", 0, false
	}
	return parts[1], time.Since(time.Unix(0, n)), true
}

// tokenServer is the POP3 side: it accepts a token of mintToken for the
// mailbox (or app-only) younger than serverTTL, and records each token it
// accepted.
type tokenServer struct {
	mu       sync.Mutex
	accepted map[string]int
	refused  int
	// refuse, when set, refuses what it returns true for.
	refuse func(tok string) bool
}

func (s *tokenServer) valid(user, tok string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	who, age, ok := tokenAge(tok)
	good := ok && (who == "app" || who == user) && age < serverTTL && (s.refuse == nil || !s.refuse(tok))
	if good {
		if s.accepted == nil {
			s.accepted = map[string]int{}
		}
		s.accepted[tok]++
	} else {
		s.refused++
	}
	return good
}

func (s *tokenServer) counts() (distinct, refused int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.accepted), s.refused
}

// providerEndpoint is the httptest token endpoint of both providers. It
// checks the exact form of each grant and answers with a token of
// tokenLife.
type providerEndpoint struct {
	t    *testing.T
	srv  *httptest.Server
	mu   sync.Mutex
	reqs int
}

func newProviderEndpoint(t *testing.T) *providerEndpoint {
	p := &providerEndpoint{t: t}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			t.Error(err)
		}
		f := r.PostForm
		var who string
		switch f.Get("grant_type") {
		case "client_credentials":
			if len(f) != 4 || f.Get("client_id") != "app-id" || f.Get("client_secret") != "app-secret" || f.Get("scope") != "https://outlook.office365.com/.default" {
				t.Errorf("client-credentials form %v", f)
			}
			who = "app"
		case "urn:ietf:params:oauth:grant-type:jwt-bearer":
			parts := strings.Split(f.Get("assertion"), ".")
			var claims struct{ Iss, Sub, Scope, Aud string }
			if len(parts) == 3 {
				b, _ := base64.RawURLEncoding.DecodeString(parts[1])
				json.Unmarshal(b, &claims)
			}
			if len(f) != 2 || claims.Iss != "sa@test.iam.gserviceaccount.com" || claims.Scope != "https://mail.google.com/" || claims.Aud != p.srv.URL {
				t.Errorf("JWT bearer form %v, claims %+v", f, claims)
			}
			who = claims.Sub
		default:
			t.Errorf("grant %q", f.Get("grant_type"))
		}
		p.mu.Lock()
		p.reqs++
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"access_token": mintToken(who), "token_type": "Bearer", "expires_in": int(tokenLife / time.Second)})
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *providerEndpoint) requests() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reqs
}

// serviceAccountFile writes a Google service account key whose token_uri
// is the endpoint.
func serviceAccountFile(t *testing.T, dir, tokenURL string) string {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	j, _ := json.Marshal(map[string]string{
		"type": "service_account", "client_email": "sa@test.iam.gserviceaccount.com", "private_key_id": "k1",
		"private_key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8})), "token_uri": tokenURL,
	})
	path := filepath.Join(dir, "sa.json")
	if err := os.WriteFile(path, j, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// oauthEnv starts the server of alice with msgs, taking OAuth2 tokens
// through ts, with faults f before and after login.
func oauthEnv(t *testing.T, msgs []srcMsg, ts *tokenServer, f pop3test.Faults) *env {
	f.SASLOAuth = true
	return newEnv(t, []pop3test.Mailbox{mailbox("alice", msgs)}, &pop3test.ServerOptions{Faults: f, TokenValid: ts.valid})
}

// oauthAccount is alice's account on e with d's token source.
func oauthAccount(t *testing.T, e *env, d config.Defaults) *config.Account {
	t.Helper()
	d.To = []string{"maildir:" + e.maildir("alice")}
	d.CAFile = e.pki.CAFile
	a, err := config.FromFlags(fmt.Sprintf("pop3s://alice@127.0.0.1:%d", e.port), "alice", d)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestOAuth2TokensLastAWholeRun: a run of several seconds, one session
// per three messages, logs in again and again across many expiries of
// one-second tokens, asking the source before each token expires, and
// stores every message once. The Microsoft app logs in with XOAUTH2 in
// its two-step form (the server refuses an initial response), the
// Google service account with OAUTHBEARER as the mailbox, and a token
// helper prints JSON with expires_in.
func TestOAuth2TokensLastAWholeRun(t *testing.T) {
	if testing.Short() {
		t.Skip("a run of several seconds")
	}
	msgs := smallMsgs("m", 18)
	for _, tc := range []string{"microsoft365", "google", "helper"} {
		t.Run(tc, func(t *testing.T) {
			t.Parallel()
			ts := &tokenServer{}
			// Each response line waits 10 ms: a session takes about
			// half a second, the run about four.
			faults := pop3test.Faults{DropAfterRetrs: 3, Delay: 10 * time.Millisecond}
			if tc == "microsoft365" {
				faults.SASLTwoStep = true
			}
			e := oauthEnv(t, msgs, ts, faults)
			p := newProviderEndpoint(t)
			var d config.Defaults
			asked := func() int { return p.requests() }
			switch tc {
			case "microsoft365":
				secret := filepath.Join(e.dir, "app-secret")
				if err := os.WriteFile(secret, []byte("app-secret\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				d.OAuth2App = config.OAuth2App{Provider: "microsoft365", Tenant: "contoso.onmicrosoft.com", ClientID: "app-id",
					ClientSecret: config.Secret{File: secret}, TokenURL: p.srv.URL}
			case "google":
				d.OAuth2App = config.OAuth2App{Provider: "google", ServiceAccount: serviceAccountFile(t, e.dir, p.srv.URL)}
			case "helper":
				count := filepath.Join(e.dir, "asked")
				d.OAuth2Token = config.Secret{Command: fmt.Sprintf(`echo >> %s; printf '{"access_token": "tok.{user}.%%s", "expires_in": 1}' "$(date +%%s%%N)"`, count)}
				asked = func() int {
					b, _ := os.ReadFile(count)
					return len(b)
				}
			}
			a := oauthAccount(t, e, d)
			start := time.Now()
			rep := e.run([]*config.Account{a}, testOptions())
			took := time.Since(start)
			ar := accountReport(t, rep, "alice")
			wantCounts(t, ar, len(msgs), len(msgs), 0, 0, true)
			checkMaildir(t, e.maildir("alice"), "alice", msgs, false)
			if s := e.srv.Stats(); s.Retrs != len(msgs) {
				t.Errorf("%d RETR responses for %d messages", s.Retrs, len(msgs))
			}
			distinct, refused := ts.counts()
			n := asked()
			t.Logf("%v: %d sessions, %d logins, %d tokens asked for, %d distinct tokens accepted, %d refused", took.Round(time.Millisecond), ar.Sessions, e.srv.Stats().Logins, n, distinct, refused)
			logins := e.srv.Stats().Logins
			if ar.Sessions != 7 || logins != 7 {
				t.Errorf("%d sessions, %d logins; want 7 and 7", ar.Sessions, logins)
			}
			// The run outlives several tokens: the source was asked
			// again, before each expired (the server refused none),
			// and at most once per login.
			if took < 2*tokenLife || n < 3 || n > logins || distinct != n {
				t.Errorf("%d tokens asked for and %d used by %d logins in %v; want at least 3, each used, over 2 s or more", n, distinct, logins, took)
			}
			if refused != 0 {
				t.Errorf("the server refused %d tokens: a token was reused too long", refused)
			}
			if took > 30*time.Second {
				t.Errorf("the run took %v", took)
			}
		})
	}
}

// TestOAuth2RejectedTokenIsReplaced: a token without an expiry is reused
// across sessions until the server rejects it (revoked); the login is
// then tried again at once with a fresh one, and the run goes on.
func TestOAuth2RejectedTokenIsReplaced(t *testing.T) {
	msgs := smallMsgs("m", 8) // sessions of 3, 3 and 2
	ts := &tokenServer{}
	e := oauthEnv(t, msgs, ts, pop3test.Faults{DropAfterRetrs: 3})
	count := filepath.Join(e.dir, "asked")
	// A bare token without expiry: reused until rejected.
	helper := fmt.Sprintf(`echo >> %s; echo "tok.{user}.$(date +%%s%%N)"`, count)
	var first string
	ts.refuse = func(tok string) bool {
		// The first token works for two logins, then is revoked.
		if first == "" {
			first = tok
		}
		return tok == first && ts.accepted[tok] >= 2
	}
	// The server's TTL does not apply to this test's tokens.
	a := oauthAccount(t, e, config.Defaults{OAuth2Token: config.Secret{Command: helper}})
	rep := e.run([]*config.Account{a}, testOptions())
	ar := accountReport(t, rep, "alice")
	wantCounts(t, ar, len(msgs), len(msgs), 0, 0, true)
	checkMaildir(t, e.maildir("alice"), "alice", msgs, false)
	b, _ := os.ReadFile(count)
	distinct, refused := ts.counts()
	if len(b) != 2 || distinct != 2 || refused != 1 || ar.Sessions != 3 {
		t.Errorf("helper ran %d times, %d tokens accepted, %d refused, %d sessions; want 2, 2, 1, 3", len(b), distinct, refused, ar.Sessions)
	}
}

// TestOAuth2FreshTokenRejectedFailsTheAccount: a token the source has
// just given that the server rejects fails the account at once, with
// a message that names the source and gives the server's decoded error;
// it is not asked for again, and no other session is tried.
func TestOAuth2FreshTokenRejectedFailsTheAccount(t *testing.T) {
	msgs := smallMsgs("m", 3)
	ts := &tokenServer{refuse: func(string) bool { return true }}
	e := oauthEnv(t, msgs, ts, pop3test.Faults{})
	count := filepath.Join(e.dir, "asked")
	a := oauthAccount(t, e, config.Defaults{OAuth2Token: config.Secret{Command: fmt.Sprintf(`echo >> %s; echo "tok.{user}.$(date +%%s%%N)"`, count)}})
	rep := e.run([]*config.Account{a}, testOptions())
	ar := accountReport(t, rep, "alice")
	const want = "login as alice: the server rejected a fresh OAuth2 token from command: pop3: AUTH: -ERR [AUTH] invalid token (the server's OAuth2 error: status 401, schemes bearer, scope https://mail.google.com/) (check that the token source gives a token for this mailbox"
	if !strings.Contains(ar.Error, want) {
		t.Errorf("account error\n %s\nwant it to contain\n %s", ar.Error, want)
	}
	b, _ := os.ReadFile(count)
	if len(b) != 1 || ar.Sessions != 1 || ar.Stored != 0 {
		t.Errorf("helper ran %d times, %d sessions, %d stored; want 1, 1, 0", len(b), ar.Sessions, ar.Stored)
	}
	if s := e.srv.Stats(); s.FailedLogins != 1 {
		t.Errorf("%d failed logins, want 1", s.FailedLogins)
	}
}
