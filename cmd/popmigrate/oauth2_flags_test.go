package main

import (
	"strings"
	"testing"

	"github.com/popmigrate/popmigrate/config"
)

// TestOAuth2ProviderFlags: the --oauth2-* flags make every account's
// built-in token source, and Microsoft's logins use the two-step XOAUTH2.
func TestOAuth2ProviderFlags(t *testing.T) {
	o := parseRun(t, "--source", "pop3s://alice@outlook.office365.com", "--to", "maildir:/srv/mail/{user}",
		"--oauth2-provider", "microsoft365", "--oauth2-tenant", "contoso.onmicrosoft.com",
		"--oauth2-client-id", "app-id", "--oauth2-client-secret-file", "/run/secrets/{host}")
	as, err := loadAccounts(&o.accountFlags, accountNeeds{Destination: true, Password: true})
	if err != nil {
		t.Fatal(err)
	}
	want := config.OAuth2App{Provider: "microsoft365", Tenant: "contoso.onmicrosoft.com", ClientID: "app-id",
		ClientSecret: config.Secret{File: "/run/secrets/outlook.office365.com"}}
	if a := as[0]; a.OAuth2App == nil || *a.OAuth2App != want || strings.Join(a.Auth, ",") != "XOAUTH2-2STEP" {
		t.Errorf("account: app %+v, auth %q; want %+v, XOAUTH2-2STEP", a.OAuth2App, a.Auth, want)
	}

	o = parseRun(t, "--source", "pop3s://alice@pop.gmail.com", "--to", "maildir:/m", "--oauth2-provider", "google",
		"--oauth2-service-account", "/etc/sa.json", "--auth", "oauthbearer")
	as, err = loadAccounts(&o.accountFlags, accountNeeds{Destination: true, Password: true})
	if err != nil {
		t.Fatal(err)
	}
	if a := as[0]; a.OAuth2App == nil || a.OAuth2App.ServiceAccount != "/etc/sa.json" || strings.Join(a.Auth, ",") != "OAUTHBEARER" {
		t.Errorf("account: app %+v, auth %q", a.OAuth2App, a.Auth)
	}

	o = parseRun(t, "--source", "pop3s://alice@h", "--to", "maildir:/m", "--oauth2-provider", "microsoft365",
		"--oauth2-tenant", "t", "--oauth2-client-id", "c", "--oauth2-client-secret-env", "A", "--oauth2-client-secret-file", "/b")
	if _, err := loadAccounts(&o.accountFlags, accountNeeds{Destination: true, Password: true}); err == nil || !strings.Contains(err.Error(), "give only one of --oauth2-client-secret-env") {
		t.Errorf("two client secrets: %v", err)
	}
}
