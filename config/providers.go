package config

import (
	"fmt"
	"sort"
	"strings"
)

// A Provider is what popmigrate knows of a large mail provider's POP3
// service: where it listens and how it behaves. An account that names one
// (provider: gmail) gets its server and its settings without writing them.
// The account's own host, port and auth still win, so a provider's
// behaviour can also be chosen for a server that only emulates it.
type Provider struct {
	Name string
	// Host and Port are the provider's POP3S server (implicit TLS).
	Host string
	Port int
	// UntilEmpty: the server lists a mailbox in slices and hides what a
	// session retrieved (see pipeline.Options.UntilEmpty).
	UntilEmpty bool
	// PerHost is the most sessions open at once to the server, unless
	// --per-host says otherwise.
	PerHost int
	// OAuth2Auth is the mechanism for OAuth2 logins when the account does
	// not choose one.
	OAuth2Auth []string
	// NoPasswords: the provider refuses passwords over POP3; Why says so
	// in the error.
	NoPasswords bool
	Why         string
}

// providers are the presets. Their figures are sources' documented
// defaults, not measured limits: a tenant may allow more (or less).
var providers = []Provider{
	// Gmail: POP must be on in the mailbox's settings. A session lists
	// about 250 of the oldest messages not yet downloaded and hides them
	// afterwards; POP downloads are capped at about 1250 MB a day per
	// mailbox ("Gmail bandwidth limits"), so a large mailbox takes days
	// and --until-empty runs stop at the quota with the rest resumable.
	{Name: "gmail", Host: "pop.gmail.com", Port: 995, UntilEmpty: true, PerHost: 8},
	// Microsoft 365 (Exchange Online): basic authentication for POP was
	// turned off in 2022, so only OAuth2 logs in, with XOAUTH2 in its
	// two-step form as Microsoft documents it.
	{
		Name: "microsoft365", Host: "outlook.office365.com", Port: 995, PerHost: 8,
		OAuth2Auth: []string{"XOAUTH2-2STEP"}, NoPasswords: true,
		Why: "Microsoft 365 no longer accepts passwords over POP3 (basic authentication is off); give oauth2_provider microsoft365 (--oauth2-provider) or an OAuth2 token (oauth2_token_command)",
	},
}

// ProviderNames lists the known providers, sorted.
func ProviderNames() []string {
	names := make([]string, 0, len(providers))
	for _, p := range providers {
		names = append(names, p.Name)
	}
	sort.Strings(names)
	return names
}

// LookupProvider returns the provider called name (any case).
func LookupProvider(name string) (Provider, error) {
	for _, p := range providers {
		if strings.EqualFold(p.Name, strings.TrimSpace(name)) {
			return p, nil
		}
	}
	return Provider{}, fmt.Errorf("unknown provider %q; known: %s", name, strings.Join(ProviderNames(), ", "))
}

// providerOfHost returns the provider whose server host is, or nil. The
// result is shared: it must not be changed.
func providerOfHost(host string) *Provider {
	for i := range providers {
		if strings.EqualFold(providers[i].Host, host) {
			return &providers[i]
		}
	}
	return nil
}
