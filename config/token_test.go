package config

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseToken(t *testing.T) {
	asked := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	src := Secret{Command: "helper"}
	for _, tc := range []struct {
		name, out string
		want      Token
	}{
		{"bare", "ya29.bare", Token{Value: "ya29.bare"}},
		{"expires_in", `{"access_token": "ya29.a", "expires_in": 3599, "token_type": "Bearer"}`, Token{Value: "ya29.a", Expiry: asked.Add(3599 * time.Second)}},
		{"expires_in string", `{"access_token":"ya29.a","expires_in":"60"}`, Token{Value: "ya29.a", Expiry: asked.Add(time.Minute)}},
		{"expiry", `{"access_token":"ya29.a","expiry":"2025-06-01T13:00:00.5+01:00"}`, Token{Value: "ya29.a", Expiry: time.Date(2025, 6, 1, 12, 0, 0, 5e8, time.UTC)}},
		{"both: the earlier", `{"access_token":"ya29.a","expires_in":7200,"expiry":"2025-06-01T12:30:00Z"}`, Token{Value: "ya29.a", Expiry: asked.Add(30 * time.Minute)}},
		// QUIRK: Go's oauth2.Token prints an unknown expiry as the zero time.
		{"zero expiry", `{"access_token":"ya29.a","expiry":"0001-01-01T00:00:00Z"}`, Token{Value: "ya29.a"}},
		{"null fields", `{"access_token":"ya29.a","expiry":null,"expires_in":null}`, Token{Value: "ya29.a"}},
		{"pretty JSON", "{\n  \"access_token\": \"ya29.a\",\n  \"expires_in\": 10\n}\n", Token{Value: "ya29.a", Expiry: asked.Add(10 * time.Second)}},
	} {
		got, err := parseToken(tc.out, src, asked)
		if err != nil || got.Value != tc.want.Value || !got.Expiry.Equal(tc.want.Expiry) {
			t.Errorf("%s: got %q %v, %v; want %q %v", tc.name, got.Value, got.Expiry, err, tc.want.Value, tc.want.Expiry)
		}
	}
	for _, tc := range []struct{ name, out, want string }{
		{"not JSON", `{"access_token": "` + plantedSecret, "not one JSON object"},
		{"two objects", `{"access_token":"a"}{"access_token":"b"}`, "not one JSON object"},
		{"no access_token", `{"token":"` + plantedSecret + `"}`, "without an access_token"},
		{"access_token not a string", `{"access_token":12}`, "without an access_token"},
		{"negative expires_in", `{"access_token":"a","expires_in":-5}`, "expires_in is not a number"},
		{"huge expires_in", `{"access_token":"a","expires_in":99999999999}`, "expires_in is not a number"},
		{"bad expiry", `{"access_token":"a","expiry":"tomorrow"}`, "expiry is not an RFC 3339 time"},
		{"bearer prefix", "Bearer " + plantedSecret, "contains a space"},
		{"line break", plantedSecret + "\nmore", "line break"},
		{"control", `{"access_token":"a\u0001b"}`, "control character"},
	} {
		_, err := parseToken(tc.out, src, asked)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), plantedSecret) || !strings.Contains(err.Error(), "command") {
			t.Errorf("%s: err = %v: shows the output, or does not name the source", tc.name, err)
		}
	}
}

// TestSecretTokenSourceReadsEachTime: a helper that prints JSON over
// several lines is accepted (Resolve would refuse it), and it is run at
// each Token call.
func TestSecretTokenSourceReadsEachTime(t *testing.T) {
	dir := t.TempDir()
	count := filepath.Join(dir, "n")
	cmd := fmt.Sprintf(`echo x >> %s; n=$(wc -l < %s); printf '{\n "access_token": "tok-%%s",\n "expires_in": 60\n}\n' $n`, count, count)
	src := Secret{Command: cmd}.TokenSource()
	for i := 1; i <= 2; i++ {
		before := time.Now()
		tok, err := src.Token(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if tok.Value != fmt.Sprintf("tok-%d", i) || tok.Expiry.Before(before.Add(59*time.Second)) || tok.Expiry.After(time.Now().Add(60*time.Second)) {
			t.Errorf("call %d: %q %v", i, tok.Value, tok.Expiry)
		}
	}
	if fmt.Sprint(src) != "command" {
		t.Errorf("source prints as %q", fmt.Sprint(src))
	}
}

func TestTokenNeverPrintsItsValue(t *testing.T) {
	tok := Token{Value: plantedSecret, Expiry: time.Unix(0, 0)}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
		if s := fmt.Sprintf(verb, tok); strings.Contains(s, plantedSecret) {
			t.Errorf("%s shows the token: %s", verb, s)
		}
	}
}

// fakeTokens is a TokenSource that mints tok-1, tok-2... each living
// life (0: no expiry), and counts the calls.
type fakeTokens struct {
	mu    sync.Mutex
	n     int
	life  time.Duration
	now   func() time.Time
	err   error
	delay chan struct{} // when not nil, each call waits for it
}

func (f *fakeTokens) Token(ctx context.Context) (Token, error) {
	if f.delay != nil {
		select {
		case <-f.delay:
		case <-ctx.Done():
			return Token{}, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return Token{}, f.err
	}
	f.n++
	tok := Token{Value: fmt.Sprintf("tok-%d", f.n)}
	if f.life != 0 {
		tok.Expiry = f.now().Add(f.life)
	}
	return tok, nil
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestTokenCacheReusesUntilShortlyBeforeExpiry(t *testing.T) {
	clock := &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	src := &fakeTokens{life: time.Hour, now: clock.now}
	c := NewTokenCache(src, "test source")
	c.now = clock.now
	ctx := context.Background()
	get := func(want string, wantProven bool) {
		t.Helper()
		tok, proven, err := c.Get(ctx)
		if err != nil || tok.Value != want || proven != wantProven {
			t.Fatalf("Get = %q proven %v, %v; want %q proven %v", tok.Value, proven, err, want, wantProven)
		}
	}
	get("tok-1", false)
	get("tok-1", false)
	c.Accepted("tok-1")
	get("tok-1", true)
	clock.add(time.Hour - DefaultRefreshMargin - time.Second)
	get("tok-1", true)
	clock.add(time.Second)
	get("tok-2", false) // two minutes before expiry
	c.Accepted("tok-1") // not the cached one: ignored
	get("tok-2", false)
	c.Accepted("tok-2")
	c.Invalidate("tok-1") // already replaced: ignored
	get("tok-2", true)
	c.Invalidate("tok-2")
	get("tok-3", false)
	if c.Fetches() != 3 || c.String() != "test source" {
		t.Errorf("Fetches %d, String %q", c.Fetches(), c)
	}

	// A short-lived token is asked for again after three quarters of
	// its life.
	short := &fakeTokens{life: 8 * time.Second, now: clock.now}
	c = NewTokenCache(short, "")
	c.now = clock.now
	get("tok-1", false)
	clock.add(5999 * time.Millisecond)
	get("tok-1", false)
	clock.add(time.Millisecond)
	get("tok-2", false)
	if c.Fetches() != 2 {
		t.Errorf("Fetches %d", c.Fetches())
	}
}

func TestTokenCacheWithoutExpiryReusesUntilInvalidate(t *testing.T) {
	src := &fakeTokens{}
	c := NewTokenCache(src, "")
	for range 3 {
		if tok, _ := c.Token(context.Background()); tok.Value != "tok-1" {
			t.Fatalf("token %q", tok.Value)
		}
	}
	c.Invalidate("tok-1")
	if tok, proven, _ := c.Get(context.Background()); tok.Value != "tok-2" || proven {
		t.Fatalf("after Invalidate: %q proven %v", tok.Value, proven)
	}
	if c.String() != "token source" {
		t.Errorf("String %q", c)
	}
}

func TestTokenCacheRefusesAStaleToken(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	c := NewTokenCache(&fakeTokens{life: -time.Second, now: clock.now}, "command")
	c.now = clock.now
	_, err := c.Token(context.Background())
	if err == nil || !strings.Contains(err.Error(), "the token from command expired at 2001-09-09T01:46:39Z, before it was used") {
		t.Fatalf("err = %v", err)
	}
	boom := errors.New("helper failed")
	c = NewTokenCache(&fakeTokens{err: boom}, "")
	if _, err := c.Token(context.Background()); !errors.Is(err, boom) || c.Fetches() != 0 {
		t.Fatalf("err = %v, fetches %d", err, c.Fetches())
	}
}

// TestTokenCacheOneRequestAtATime: callers that ask at once share one
// request to the source, and a caller whose context ends stops waiting.
func TestTokenCacheOneRequestAtATime(t *testing.T) {
	src := &fakeTokens{delay: make(chan struct{})}
	c := NewTokenCache(src, "")
	var wg sync.WaitGroup
	var got atomic.Int32
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, _, err := c.Get(context.Background())
			if err != nil || tok.Value != "tok-1" {
				t.Errorf("Get = %q, %v", tok.Value, err)
			}
			got.Add(1)
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Token(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting caller: %v, want its context's error", err)
	}
	close(src.delay)
	wg.Wait()
	if src.n != 1 || got.Load() != 8 {
		t.Errorf("source asked %d times for %d callers; want once for 8", src.n, got.Load())
	}
}

// TestAccountTokenSourcesAreShared: accounts of one file with the same
// token source share its cache; one that depends on the user (a
// template, a Google subject) does not; copies of an Account changed
// since get their own.
func TestAccountTokenSourcesAreShared(t *testing.T) {
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokFile, []byte("shared-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	csv := "source,oauth2_token_file,oauth2_token_command,to_oauth2_token_command,to\n" +
		"pop3s://alice@h," + tokFile + ",,echo to-{user},imaps://alice@imap.example.org/INBOX\n" +
		"pop3s://bob@h," + tokFile + ",,echo to-{user},imaps://bob@imap.example.org/INBOX\n" +
		"pop3s://carol@h,,echo tok-{user},,maildir:/m/carol\n" +
		"pop3s://dave@h,,echo tok-{user},,maildir:/m/dave\n"
	as, err := LoadCSV(strings.NewReader(csv), "a.csv", Defaults{Destinations: testDests})
	if err != nil {
		t.Fatal(err)
	}
	alice, bob, carol, dave := as[0], as[1], as[2], as[3]
	if first, again := alice.OAuth2Source(), alice.OAuth2Source(); first != bob.OAuth2Source() || first != again {
		t.Error("alice and bob read the same token file but do not share its cache")
	}
	if carol.OAuth2Source() == dave.OAuth2Source() || alice.ToOAuth2Source() == bob.ToOAuth2Source() {
		t.Error("per-user commands share a cache")
	}
	if first, again := alice.ToOAuth2Source(), alice.ToOAuth2Source(); first != again || carol.ToOAuth2Source() != nil {
		t.Error("destination token source")
	}
	ctx := context.Background()
	for _, c := range []struct {
		a    *Account
		to   bool
		want string
	}{{alice, false, "shared-token"}, {carol, false, "tok-carol"}, {dave, false, "tok-dave"}, {bob, true, "to-bob"}} {
		src := c.a.OAuth2Source()
		if c.to {
			src = c.a.ToOAuth2Source()
		}
		if tok, err := src.Token(ctx); err != nil || tok.Value != c.want {
			t.Errorf("%s: %q, %v; want %q", c.a.Name, tok.Value, err, c.want)
		}
	}
	changed := *carol
	changed.OAuth2Token = Secret{Command: "echo other"}
	if s := changed.OAuth2Source(); s == carol.OAuth2Source() || s == changed.OAuth2Source() {
		t.Error("a changed copy shares the cache of the original, or gets one cache twice")
	}
	if tok, _ := changed.OAuth2Source().Token(ctx); tok.Value != "other" {
		t.Errorf("changed copy: %q", tok.Value)
	}
	pw, err := FromFlags("pop3s://eve@h", "", defaults)
	if err != nil {
		t.Fatal(err)
	}
	if pw.OAuth2Source() != nil || pw.ToOAuth2Source() != nil {
		t.Error("a password account has a token source")
	}
}
