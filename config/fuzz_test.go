package config

import (
	"bytes"
	"encoding/csv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/popmigrate/popmigrate/internal/urlsafe"
)

// The fuzz targets feed arbitrary bytes to the loaders. Their seeds (in
// testdata/fuzz/FuzzLoadCSV and FuzzLoadYAML: a BOM, broken quotes,
// duplicate columns and keys, a long field, NUL bytes, anchors and an alias
// bomb...) hold plantedSecret in password fields; run them with
//
//	go test -run '^$' -fuzz '^FuzzLoadCSV$' -fuzztime 30s -fuzzminimizetime 2s ./config/
//
// (the engine otherwise spends up to a minute shrinking each new input
// grown from the long seeds). Each input must not panic, and must load
// into accounts a run would accept, or fail with an error that names the
// file and never shows plantedSecret when every occurrence of it in the
// input is in a password field.

var fuzzDefaults = Defaults{Destinations: testDests, Password: Secret{Env: "POP_PW"}, To: []string{"eml:/archive"}}

func FuzzLoadCSV(f *testing.F) {
	f.Add([]byte("source,password,to\npop3s://alice@h," + plantedSecret + ",maildir:/m/{user}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		as, err := LoadCSV(bytes.NewReader(data), "f.csv", fuzzDefaults)
		if err != nil {
			if as != nil {
				t.Errorf("accounts with an error: %v", err)
			}
			checkFuzzError(t, err, "f.csv", csvSecretOnlyInPasswords(data))
			return
		}
		checkFuzzAccounts(t, as, "f.csv:")
	})
}

func FuzzLoadYAML(f *testing.F) {
	f.Add([]byte("accounts:\n  - source: pop3s://alice@h\n    password: " + plantedSecret + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		as, err := LoadYAML(bytes.NewReader(data), "f.yaml", fuzzDefaults)
		if err != nil {
			if as != nil {
				t.Errorf("accounts with an error: %v", err)
			}
			checkFuzzError(t, err, "f.yaml", yamlSecretOnlyInPasswords(data))
			return
		}
		checkFuzzAccounts(t, as, "f.yaml:")
	})
}

// checkFuzzError checks that err names the file and, when the input holds
// plantedSecret in password fields only, does not show it.
func checkFuzzError(t *testing.T, err error, name string, secretOnlyInPasswords bool) {
	t.Helper()
	msg := err.Error()
	if !strings.HasPrefix(msg, name) {
		t.Errorf("error does not start with the file name: %v", err)
	}
	if secretOnlyInPasswords && strings.Contains(msg, plantedSecret) {
		t.Errorf("error shows a password: %v", err)
	}
}

// csvSecretOnlyInPasswords reports whether every occurrence of
// plantedSecret in data lies in a password or to_password cell (as a
// lenient CSV reader sees the file).
func csvSecretOnlyInPasswords(data []byte) bool {
	total := bytes.Count(data, []byte(plantedSecret))
	if total == 0 {
		return false
	}
	r := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(data, utf8BOM)))
	r.Comment, r.FieldsPerRecord, r.TrimLeadingSpace, r.LazyQuotes = '#', -1, true, true
	header, err := r.Read()
	if err != nil {
		return false
	}
	inPasswords := 0
	for {
		rec, err := r.Read()
		if err != nil {
			break
		}
		for i, v := range rec {
			if i < len(header) && inlineSecretColumns[strings.ToLower(strings.TrimSpace(header[i]))] {
				inPasswords += strings.Count(v, plantedSecret)
			}
		}
	}
	return inPasswords == total
}

// yamlSecretOnlyInPasswords reports whether every occurrence of
// plantedSecret in data lies in the value of a password or to_password
// key, and no alias repeats it elsewhere. A file that does not parse
// counts as holding it in passwords only: the parser's messages never
// quote the input (LoadYAML drops the one that does, an unknown anchor).
func yamlSecretOnlyInPasswords(data []byte) bool {
	total := bytes.Count(data, []byte(plantedSecret))
	if total == 0 {
		return false
	}
	var doc yaml.Node
	ok := func() (ok bool) {
		defer func() {
			if recover() != nil {
				ok = false
			}
		}()
		return yaml.Unmarshal(data, &doc) == nil
	}()
	if !ok {
		return true
	}
	inPasswords, elsewhere := 0, false
	var walk func(n *yaml.Node, password bool, depth int)
	walk = func(n *yaml.Node, password bool, depth int) {
		if n == nil || depth > 8 || elsewhere {
			return
		}
		if n.Kind == yaml.AliasNode {
			if !password {
				// Anything an alias repeats outside a password
				// field may legitimately be quoted.
				if yamlMentions(n.Alias, plantedSecret, 0) {
					elsewhere = true
				}
			}
			return
		}
		switch n.Kind {
		case yaml.ScalarNode:
			c := strings.Count(n.Value, plantedSecret)
			if password {
				inPasswords += c
			} else if c > 0 {
				elsewhere = true
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				walk(k, false, depth+1)
				walk(n.Content[i+1], k.Kind == yaml.ScalarNode && inlineSecretColumns[k.Value], depth+1)
			}
		default:
			for _, c := range n.Content {
				walk(c, password, depth+1)
			}
		}
	}
	walk(&doc, false, 0)
	return !elsewhere && inPasswords == total
}

// yamlMentions reports whether s occurs in a scalar under n.
func yamlMentions(n *yaml.Node, s string, depth int) bool {
	if n == nil || depth > 8 {
		return false
	}
	if n.Kind == yaml.AliasNode {
		return yamlMentions(n.Alias, s, depth+1)
	}
	if strings.Contains(n.Value, s) {
		return true
	}
	for _, c := range n.Content {
		if yamlMentions(c, s, depth+1) {
			return true
		}
	}
	return false
}

// checkFuzzAccounts checks what a run checks of loaded accounts, and more.
func checkFuzzAccounts(t *testing.T, as []*Account, originPrefix string) {
	t.Helper()
	if len(as) == 0 {
		t.Fatal("no accounts and no error")
	}
	if err := Validate(as); err != nil {
		t.Fatalf("loaded accounts fail Validate: %v", err)
	}
	for _, a := range as {
		if !strings.HasPrefix(a.Origin, originPrefix) {
			t.Errorf("origin %q", a.Origin)
		}
		if a.Name == "" || strings.IndexFunc(a.Name, urlsafe.IsControl) >= 0 {
			t.Errorf("%s: name %q", a.Origin, a.Name)
		}
		if a.User == "" || strings.ContainsAny(a.User, "\r\n\x00") {
			t.Errorf("%s: user %q", a.Origin, a.User)
		}
		if err := urlsafe.CheckHost(a.Host); err != nil {
			t.Errorf("%s: %v", a.Origin, err)
		}
		if a.Port < 1 || a.Port > 65535 {
			t.Errorf("%s: port %d", a.Origin, a.Port)
		}
		switch a.Security {
		case SecurityTLS, SecuritySTLS, SecurityPlain:
		default:
			t.Errorf("%s: security %q", a.Origin, a.Security)
		}
		if a.Password.IsZero() && a.OAuth2Token.IsZero() && a.OAuth2App == nil {
			t.Errorf("%s: no password", a.Origin)
		}
		if a.OAuth2App != nil {
			if err := a.OAuth2App.check(a.Origin); err != nil || !a.OAuth2Token.IsZero() {
				t.Errorf("%s: OAuth2 provider: %v (token %s)", a.Origin, err, a.OAuth2Token)
			}
		}
		for _, s := range []Secret{a.Password, a.OAuth2Token, a.ToPassword, a.ToOAuth2Token} {
			if s.count() > 1 || strings.ContainsAny(s.Value, "\r\n\x00") {
				t.Errorf("%s: secret %s is not one clean source", a.Origin, s)
			}
		}
		for _, m := range a.Auth {
			switch m {
			case "PLAIN", "APOP", "USER", "XOAUTH2", "XOAUTH2-2STEP", "OAUTHBEARER":
			default:
				t.Errorf("%s: auth %q", a.Origin, m)
			}
		}
		if len(a.To) == 0 {
			t.Errorf("%s: no destination", a.Origin)
		}
		for _, spec := range a.To {
			_, _, login, err := testDests.Describe(spec)
			if err != nil {
				t.Errorf("%s: destination: %v", a.Origin, err)
				continue
			}
			if login && a.ToPassword.IsZero() && a.ToOAuth2Token.IsZero() {
				t.Errorf("%s: IMAP destination without a password", a.Origin)
			}
		}
		// The source a run logs and journals reads back as the account.
		s, err := ParseSource(a.SourceURL())
		if err != nil {
			t.Errorf("%s: SourceURL %q does not parse: %v", a.Origin, a.SourceURL(), err)
		} else if s.User != a.User || s.Host != a.Host || s.Port != a.Port {
			t.Errorf("%s: SourceURL %q reads back as %+v", a.Origin, a.SourceURL(), s)
		}
	}
}
