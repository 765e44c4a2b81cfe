package config

import (
	"reflect"
	"strings"
	"testing"
)

// TestProviderFillsServerAndBehaviour: an account that names a provider
// gets its server and behaviour; its own host still wins; a provider's
// host is recognised without the name; unknown names list the known ones.
func TestProviderFillsServerAndBehaviour(t *testing.T) {
	as, err := LoadCSV(strings.NewReader("provider,user\ngmail,alice@example.org\nGMAIL,bob@example.org\n"), "a.csv", defaults)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		if a.Host != "pop.gmail.com" || a.Port != 995 || a.Security != SecurityTLS || a.Provider != "gmail" || !a.UntilEmpty || a.PerHost != 8 {
			t.Errorf("%s: %s:%d %s provider %q until-empty %v per-host %d; want pop.gmail.com:995 tls gmail true 8", a.Name, a.Host, a.Port, a.Security, a.Provider, a.UntilEmpty, a.PerHost)
		}
	}
	// The account's own host wins: Gmail's behaviour on an emulating server.
	as, err = LoadCSV(strings.NewReader("provider,host,port,user\ngmail,127.0.0.1,1995,alice\n"), "a.csv", defaults)
	if err != nil {
		t.Fatal(err)
	}
	if a := as[0]; a.Addr() != "127.0.0.1:1995" || !a.UntilEmpty {
		t.Errorf("%s until-empty %v; want 127.0.0.1:1995 true", a.Addr(), a.UntilEmpty)
	}
	// The flags' --provider is every account's default.
	d := defaults
	d.Provider = "gmail"
	a, err := FromFlags("pop3s://alice@127.0.0.1:1995", "", d)
	if err != nil || !a.UntilEmpty || a.Provider != "gmail" {
		t.Fatalf("FromFlags with --provider gmail: %+v, %v", a, err)
	}
	// pop.gmail.com is Gmail without saying so (accounts rebuilt from a
	// journal name no provider).
	a, err = FromFlags("pop3s://alice@POP.gmail.com", "", defaults)
	if err != nil || !a.UntilEmpty || a.Provider != "gmail" {
		t.Fatalf("pop.gmail.com: %+v, %v", a, err)
	}
	if a, err := FromFlags("pop3s://alice@mail.example.org", "", defaults); err != nil || a.UntilEmpty || a.Provider != "" || a.PerHost != 0 {
		t.Fatalf("plain server: %+v, %v", a, err)
	}
	_, err = LoadCSV(strings.NewReader("provider,user\ngmial,alice\n"), "a.csv", defaults)
	if err == nil || !strings.Contains(err.Error(), "a.csv:2") || !strings.Contains(err.Error(), `unknown provider "gmial"`) || !strings.Contains(err.Error(), "gmail, microsoft365") {
		t.Errorf("unknown provider: %v", err)
	}
	// Neither a source nor a provider: the error says what to give.
	_, err = LoadCSV(strings.NewReader("user,password_env\nalice,PW\n"), "a.csv", defaults)
	if err == nil || !strings.Contains(err.Error(), "provider and user") {
		t.Errorf("no server: %v", err)
	}
}

// TestMicrosoft365NeedsOAuth2: Microsoft 365 refuses passwords over POP3,
// so an account with only a password is refused with what to give; with a
// token it logs in with XOAUTH2 in its two-step form unless auth says
// otherwise.
func TestMicrosoft365NeedsOAuth2(t *testing.T) {
	_, err := LoadCSV(strings.NewReader("provider,user\nmicrosoft365,alice@contoso.com\n"), "a.csv", defaults)
	if err == nil || !strings.Contains(err.Error(), "a.csv:2") || !strings.Contains(err.Error(), "alice@contoso.com") || !strings.Contains(err.Error(), "oauth2_provider microsoft365") {
		t.Fatalf("password only: %v", err)
	}
	as, err := LoadCSV(strings.NewReader("provider,user,oauth2_token_command\nmicrosoft365,alice@contoso.com,get-token {user}\n"), "a.csv", defaults)
	if err != nil {
		t.Fatal(err)
	}
	if a := as[0]; a.Host != "outlook.office365.com" || !reflect.DeepEqual(a.Auth, []string{"XOAUTH2-2STEP"}) || a.UntilEmpty {
		t.Errorf("%s auth %v until-empty %v; want outlook.office365.com [XOAUTH2-2STEP] false", a.Host, a.Auth, a.UntilEmpty)
	}
	as, err = LoadCSV(strings.NewReader("provider,user,oauth2_token_command,auth\nmicrosoft365,alice@contoso.com,get-token,OAUTHBEARER\n"), "a.csv", defaults)
	if err != nil || !reflect.DeepEqual(as[0].Auth, []string{"OAUTHBEARER"}) {
		t.Errorf("explicit auth: %v, %v", as, err)
	}
	// A command that never logs in (verify from the journal) needs no
	// secret at all.
	d := defaults
	d.Password, d.PasswordOptional = Secret{}, true
	if _, err := LoadCSV(strings.NewReader("provider,user\nmicrosoft365,alice@contoso.com\n"), "a.csv", d); err != nil {
		t.Errorf("without a login: %v", err)
	}
}

// TestYAMLDefaultsProvider: a provider under defaults: applies to every
// account.
func TestYAMLDefaultsProvider(t *testing.T) {
	y := "defaults:\n  provider: gmail\naccounts:\n  - user: alice@example.org\n  - user: bob@example.org\n"
	as, err := LoadYAML(strings.NewReader(y), "m.yaml", defaults)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		if a.Host != "pop.gmail.com" || !a.UntilEmpty {
			t.Errorf("%s: %s until-empty %v", a.Name, a.Host, a.UntilEmpty)
		}
	}
}
