package config

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// tokenEndpoint is an httptest token endpoint that hands out tok-N,
// living life, and records the forms posted.
type tokenEndpoint struct {
	srv   *httptest.Server
	mu    sync.Mutex
	forms []url.Values
}

func newTokenEndpoint(t *testing.T, life time.Duration) *tokenEndpoint {
	e := &tokenEndpoint{}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			t.Error(err)
		}
		e.mu.Lock()
		e.forms = append(e.forms, r.PostForm)
		n := len(e.forms)
		e.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"access_token": "tok-" + string(rune('0'+n)), "expires_in": int(life / time.Second), "token_type": "Bearer"})
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *tokenEndpoint) requests() []url.Values {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]url.Values(nil), e.forms...)
}

func TestOAuth2ProviderColumns(t *testing.T) {
	csv := "source,oauth2_provider,oauth2_tenant,oauth2_client_id,oauth2_client_secret_file,oauth2_client_cert,oauth2_service_account,auth,to\n" +
		"pop3s://alice@outlook.office365.com,Microsoft365,contoso.onmicrosoft.com,app-1,/s/{user},,,,maildir:/m/{user}\n" +
		"pop3s://bob@outlook.office365.com,microsoft365,contoso.onmicrosoft.com,app-1,,/s/app.pem,,XOAUTH2,maildir:/m/{user}\n" +
		"pop3s://carol@pop.gmail.com,google,,,,,/s/{host}.json,,maildir:/m/{user}\n"
	as, err := LoadCSV(strings.NewReader(csv), "a.csv", Defaults{Destinations: testDests})
	if err != nil {
		t.Fatal(err)
	}
	want := []OAuth2App{
		{Provider: ProviderMicrosoft365, Tenant: "contoso.onmicrosoft.com", ClientID: "app-1", ClientSecret: Secret{File: "/s/alice"}},
		{Provider: ProviderMicrosoft365, Tenant: "contoso.onmicrosoft.com", ClientID: "app-1", ClientCert: "/s/app.pem"},
		{Provider: ProviderGoogle, ServiceAccount: "/s/pop.gmail.com.json"},
	}
	wantAuth := [][]string{{"XOAUTH2-2STEP"}, {"XOAUTH2"}, nil}
	for i, a := range as {
		if a.OAuth2App == nil || *a.OAuth2App != want[i] || !a.OAuth2Token.IsZero() {
			t.Errorf("%s: OAuth2App %+v, want %+v", a.Name, a.OAuth2App, want[i])
		}
		if strings.Join(a.Auth, ",") != strings.Join(wantAuth[i], ",") {
			t.Errorf("%s: auth %q, want %q", a.Name, a.Auth, wantAuth[i])
		}
	}
	if got := as[1].OAuth2App.String(); got != "Microsoft 365 app app-1 of tenant contoso.onmicrosoft.com (certificate /s/app.pem)" {
		t.Errorf("String %q", got)
	}
}

func TestOAuth2ProviderDefaults(t *testing.T) {
	// The flags' provider is every account's; an account's own token
	// replaces it, and an account's own provider fields merge into it.
	d := Defaults{Destinations: testDests, To: []string{"maildir:/m/{user}"},
		OAuth2App: OAuth2App{Provider: "microsoft365", Tenant: "t1", ClientID: "app", ClientSecret: Secret{Env: "APP_SECRET"}}}
	yaml := "defaults:\n  oauth2_tenant: t2\naccounts:\n" +
		"  - source: pop3s://alice@h\n" +
		"  - source: pop3s://bob@h\n    oauth2_token_command: helper {user}\n" +
		"  - source: pop3s://carol@h\n    oauth2_client_id: other-app\n" +
		"  - source: pop3s://dave@h\n    oauth2_provider: google\n    oauth2_service_account: /k.json\n"
	as, err := LoadYAML(strings.NewReader(yaml), "c.yaml", d)
	if err != nil {
		t.Fatal(err)
	}
	secret := Secret{Env: "APP_SECRET"}
	for i, want := range []*OAuth2App{
		{Provider: "microsoft365", Tenant: "t2", ClientID: "app", ClientSecret: secret},
		nil,
		{Provider: "microsoft365", Tenant: "t2", ClientID: "other-app", ClientSecret: secret},
		{Provider: "google", ServiceAccount: "/k.json"},
	} {
		got := as[i].OAuth2App
		if (got == nil) != (want == nil) || got != nil && *got != *want {
			t.Errorf("%s: %+v, want %+v", as[i].Name, got, want)
		}
	}
	if as[1].OAuth2Token != (Secret{Command: "helper bob"}) {
		t.Errorf("bob's token: %s", as[1].OAuth2Token.Command)
	}
	// The defaults' app is copied, not shared: expanding one account's
	// templates does not change another's.
	if d.OAuth2App.Tenant != "t1" {
		t.Errorf("defaults changed: %+v", d.OAuth2App)
	}
}

func TestOAuth2ProviderErrors(t *testing.T) {
	for _, tc := range []struct{ row, want string }{
		{"oauth2_provider=yahoo", `oauth2_provider "yahoo": want microsoft365 or google`},
		{"oauth2_provider=microsoft365", "needs oauth2_tenant"},
		{"oauth2_provider=microsoft365 oauth2_tenant=t", "needs oauth2_client_id"},
		{"oauth2_provider=microsoft365 oauth2_tenant=a/b oauth2_client_id=c", `oauth2_tenant "a/b": want a directory id or a domain`},
		{"oauth2_provider=microsoft365 oauth2_tenant=t oauth2_client_id=c", "needs one of oauth2_client_secret_env"},
		{"oauth2_provider=microsoft365 oauth2_tenant=t oauth2_client_id=c oauth2_client_secret_env=S oauth2_client_cert=/c.pem", "needs one of oauth2_client_secret_env"},
		{"oauth2_provider=microsoft365 oauth2_tenant=t oauth2_client_id=c oauth2_client_secret_env=S oauth2_service_account=/k", "oauth2_service_account goes with oauth2_provider google"},
		{"oauth2_provider=google", "needs oauth2_service_account"},
		{"oauth2_provider=google oauth2_service_account=/k oauth2_tenant=t", "go with oauth2_provider microsoft365"},
		{"oauth2_tenant=t", "need oauth2_provider"},
		{"oauth2_provider=google oauth2_service_account=/k oauth2_token_env=T", "either oauth2_token_env/_file/_command or oauth2_provider"},
		{"oauth2_client_secret_env=A oauth2_client_secret_file=B", "give only one of oauth2_client_secret_env"},
		{"oauth2_provider=google oauth2_service_account=/k auth=XOAUTH3", `auth mechanism "XOAUTH3"`},
	} {
		header, row := "source,to", "pop3s://alice@h,maildir:/m/a"
		for _, kv := range strings.Fields(tc.row) {
			k, v, _ := strings.Cut(kv, "=")
			header += "," + k
			row += "," + v
		}
		_, err := LoadCSV(strings.NewReader(header+"\n"+row+"\n"), "a.csv", Defaults{Destinations: testDests})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "a.csv:2: ") {
			t.Errorf("%s: err = %v, want %q", tc.row, err, tc.want)
		}
	}
	_, err := FromFlags("pop3s://alice@h", "", Defaults{Destinations: testDests, To: []string{"maildir:/m"},
		OAuth2Token: Secret{Env: "T"}, OAuth2App: OAuth2App{Provider: "google", ServiceAccount: "/k"}})
	if err == nil || !strings.Contains(err.Error(), "either --oauth2-token-env/-file/-command or --oauth2-provider") {
		t.Errorf("flags with both: %v", err)
	}
}

// TestOAuth2ProviderTokens asks an httptest endpoint for the tokens of
// accounts with a Microsoft app (one token for all of them: the cache is
// shared) and a Google service account (one per mailbox), through
// Account.OAuth2Source.
func TestOAuth2ProviderTokens(t *testing.T) {
	ms := newTokenEndpoint(t, time.Hour)
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "app-secret")
	if err := os.WriteFile(secretFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := Defaults{Destinations: testDests, To: []string{"maildir:/m/{user}"},
		OAuth2App: OAuth2App{Provider: ProviderMicrosoft365, Tenant: "t", ClientID: "app", ClientSecret: Secret{File: secretFile}, TokenURL: ms.srv.URL}}
	as, err := LoadCSV(strings.NewReader("source\npop3s://alice@h\npop3s://bob@h\n"), "a.csv", d)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, a := range as {
		tok, err := a.OAuth2Source().Token(ctx)
		if err != nil || tok.Value != "tok-1" || time.Until(tok.Expiry) < 59*time.Minute {
			t.Fatalf("%s: %q %v, %v", a.Name, tok.Value, tok.Expiry, err)
		}
	}
	reqs := ms.requests()
	if len(reqs) != 1 || reqs[0].Get("client_secret") != "s3cret" || reqs[0].Get("client_id") != "app" || reqs[0].Get("scope") != "https://outlook.office365.com/.default" {
		t.Fatalf("requests %v", reqs)
	}

	g := newTokenEndpoint(t, time.Hour)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p8, _ := x509.MarshalPKCS8PrivateKey(key)
	keyJSON, _ := json.Marshal(map[string]string{
		"type": "service_account", "client_email": "sa@p.iam.gserviceaccount.com", "private_key_id": "k1",
		"private_key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8})), "token_uri": g.srv.URL,
	})
	keyFile := filepath.Join(dir, "sa.json")
	if err := os.WriteFile(keyFile, keyJSON, 0o644); err != nil {
		t.Fatal(err)
	}
	d.OAuth2App = OAuth2App{Provider: ProviderGoogle, ServiceAccount: keyFile}
	as, err = LoadCSV(strings.NewReader("source\npop3s://alice@h\npop3s://bob@h\n"), "a.csv", d)
	if err != nil {
		t.Fatal(err)
	}
	if as[0].OAuth2Source() == as[1].OAuth2Source() {
		t.Error("two Google mailboxes share a token")
	}
	for i, a := range as {
		tok, err := a.OAuth2Source().Token(ctx)
		if err != nil || tok.Value != "tok-"+string(rune('1'+i)) {
			t.Fatalf("%s: %q, %v", a.Name, tok.Value, err)
		}
	}
	if n := len(g.requests()); n != 2 {
		t.Errorf("%d requests, want one per mailbox", n)
	}
	// The key file is readable by others: warned about.
	ws := Warnings(as)
	if len(ws) != 1 || !strings.Contains(ws[0], "Google service account key file "+keyFile+" is readable by its group and others") {
		t.Errorf("warnings %q", ws)
	}

	// A secret that cannot be read fails the token, naming it.
	d.OAuth2App = OAuth2App{Provider: ProviderMicrosoft365, Tenant: "t", ClientID: "app", ClientSecret: Secret{Env: "POPMIGRATE_TEST_UNSET"}, TokenURL: ms.srv.URL}
	a, err := FromFlags("pop3s://alice@h", "", d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.OAuth2Source().Token(ctx); err == nil || !strings.Contains(err.Error(), "client secret (environment variable POPMIGRATE_TEST_UNSET)") {
		t.Errorf("err = %v", err)
	}
}
