package config

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// TestYAMLInvalidInputGivesFileLineErrors: each bad file gets an error that
// names the file (and the line, when there is one) and what to do.
func TestYAMLInvalidInputGivesFileLineErrors(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"empty", "", "c.yaml: empty file: want an accounts: list"},
		{"only comments", "# nothing here\n", "c.yaml: empty file"},
		{"only a document start", "---\n", "c.yaml: empty file"},
		{"null", "~\n", "c.yaml: empty file"},
		{"a list at the top", "- source: pop3s://a@h\n", "c.yaml:1: want a mapping with an accounts: list"},
		{"a word at the top", "hello\n", "c.yaml:1: want a mapping"},
		{"no accounts key", "defaults:\n  to: [maildir:/x]\n", "c.yaml: no accounts: want an accounts: list"},
		{"empty accounts", "accounts:\n", "c.yaml: no accounts"},
		{"accounts not a list", "accounts:\n  source: pop3s://a@h\n", "c.yaml:2: accounts: want a list"},
		{"defaults not a mapping", "defaults: [a]\naccounts: []\n", "c.yaml:1: defaults: want a mapping"},
		{"account not a mapping", "accounts:\n  - pop3s://a@h\n", "c.yaml:2: an account is a mapping of fields"},
		{"empty account", "accounts:\n  -\n", "c.yaml:2: an empty account"},
		{"unknown top key", "acounts:\n  - source: pop3s://a@h\n", `c.yaml:1: this key is not a known key`},
		{"unknown top key beside a known one", "defaults: {}\nacounts: []\n", `c.yaml:2: unknown key "acounts"; did you mean "accounts"?`},
		{"unknown field", "accounts:\n  - source: pop3s://a@h\n    pasword_env: X\n", `c.yaml:3: unknown field "pasword_env"; did you mean "password_env"?`},
		{"capitalised field", "accounts:\n  - Source: pop3s://a@h\n    password_env: X\n", `c.yaml:2: unknown field "Source"; did you mean "source"?`},
		{"duplicate field", "accounts:\n  - source: pop3s://a@h\n    password_env: X\n    source: pop3s://b@h\n", "c.yaml:4: field source is given twice (lines 2 and 4); keep one"},
		{"duplicate top key", "accounts: []\naccounts: []\n", "c.yaml:2: key accounts is given twice (lines 1 and 2)"},
		{"merge key", "accounts:\n  - <<: {source: pop3s://a@h}\n", "c.yaml:2: merge keys (<<) are not supported; put shared values under defaults:"},
		{"second document", "accounts:\n  - source: pop3s://a@h\n---\naccounts: []\n", "c.yaml:3: a second YAML document (after ---)"},
		{"syntax error", "accounts:\n  - source: pop3s://a@h\n   password_env: X\n", "c.yaml:1: did not find expected '-' indicator (YAML syntax)"},
		{"unclosed flow", "accounts: [\n", "c.yaml:1: did not find expected node content (YAML syntax)"},
		{"tab indentation", "accounts:\n\t- source: x\n", "c.yaml:2: found character that cannot start any token (YAML syntax)"},
		{"list for a single value", "accounts:\n  - source: [pop3s://a@h]\n", "c.yaml:2: source: want a single value, not a list"},
		{"mapping in a list", "accounts:\n  - source: pop3s://a@h\n    password_env: X\n    to: [{a: b}]\n", "c.yaml:4: to, item 1: want a single value"},
		{"empty list item", "accounts:\n  - source: pop3s://a@h\n    password_env: X\n    to: [maildir:/x, '']\n", "c.yaml:4: to, item 2: empty"},
		{"bad port", "accounts:\n  - host: h\n    user: a\n    port: many\n    password_env: X\n", `c.yaml:2: bad port "many"`},
		{"bad bool", "accounts:\n  - source: pop3s://a@h\n    password_env: X\n    insecure_plaintext: maybe\n", `c.yaml:4: insecure_plaintext: "maybe" is not true or false`},
		{"defaults with a source", "defaults:\n  source: pop3s://a@h\naccounts:\n  - user: a\n", "c.yaml:2: defaults: source, user and name belong to each account"},
		{"duplicate account", "accounts:\n  - source: pop3s://a@h\n  - source: pop3s://a@h\n", "c.yaml:3: account a@h is already defined at c.yaml:2"},
		{"binary", "accounts:\n  - source: pop3s://a@h\n    password: !!binary aGVsbG8=\n", "c.yaml:3: password: !!binary values are not supported"},
		{"complex key", "accounts:\n  - ? [a]\n    : b\n", "c.yaml:2: a field name must be a plain word"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := LoadYAML(strings.NewReader(c.yaml), "c.yaml", defaults)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error = %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestYAMLRefusesDuplicateField(t *testing.T) {
	y := "defaults:\n  to: [\"maildir:/a/{user}\"]\n  to: [\"maildir:/b/{user}\"]\naccounts:\n  - source: pop3s://a@h\n"
	_, err := LoadYAML(strings.NewReader(y), "c.yaml", defaults)
	if err == nil || !strings.Contains(err.Error(), "c.yaml:3: field to is given twice (lines 2 and 3)") {
		t.Fatalf("error = %v", err)
	}
}

func TestYAMLAnchorsAndAliasesWork(t *testing.T) {
	y := `
defaults:
  to: &dests ["maildir:/srv/mail/{user}", "eml:/archive"]
  password_env: &pw POP_PW
accounts:
  - &alice
    source: pop3s://alice@h
  - source: pop3s://bob@h
    to: *dests
    password_env: *pw
  - source: &carol pop3s://carol@h
    name: *carol
`
	as, err := LoadYAML(strings.NewReader(y), "c.yaml", Defaults{Destinations: testDests})
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 3 || len(as[1].To) != 2 || as[1].To[0] != "maildir:/srv/mail/bob" || as[1].Password.Env != "POP_PW" || as[2].Name != "pop3s://carol@h" {
		t.Fatalf("got %+v", as)
	}
	// The same account twice through an alias is a duplicate.
	_, err = LoadYAML(strings.NewReader(y+"  - *alice\n"), "c.yaml", Defaults{Destinations: testDests})
	if err == nil || !strings.Contains(err.Error(), "c.yaml:13: account alice@h is already defined at c.yaml:6") {
		t.Fatalf("alias of an account: %v", err)
	}
}

// TestYAMLAliasBombIsBounded: a "billion laughs" file, and a small file
// that repeats a long value through many aliases, fail fast and small.
func TestYAMLAliasBombIsBounded(t *testing.T) {
	var laughs strings.Builder
	laughs.WriteString("defaults:\n  to: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n")
	laughs.WriteString("accounts:\n")
	prev := "a"
	for i := 0; i < 9; i++ {
		name := fmt.Sprintf("l%d", i)
		fmt.Fprintf(&laughs, "  - &%s [*%s,*%s,*%s,*%s,*%s,*%s,*%s,*%s,*%s]\n", name, prev, prev, prev, prev, prev, prev, prev, prev, prev)
		prev = name
	}
	var long strings.Builder
	long.WriteString("defaults:\n  ca_file: &c \"" + strings.Repeat("x", 100<<10) + "\"\n  password_env: PW\n  to: [\"eml:/x\"]\naccounts:\n")
	for i := 0; i < 2000; i++ {
		fmt.Fprintf(&long, "  - {source: \"pop3s://u%d@h\", ca_file: *c}\n", i)
	}
	var many strings.Builder
	many.WriteString("accounts:\n  - &a {source: pop3s://a@h, password_env: PW, to: &t [\"eml:/1\",\"eml:/2\",\"eml:/3\",\"eml:/4\",\"eml:/5\",\"eml:/6\",\"eml:/7\",\"eml:/8\"]}\n")
	for i := 0; i < 200000; i++ {
		many.WriteString("  - *a\n")
	}
	for _, c := range []struct{ name, yaml, want string }{
		{"billion laughs", laughs.String(), "c.yaml:4: an account is a mapping"},
		{"long value through aliases", long.String(), "too much is repeated through aliases"},
		// the second item, an alias of the first, is refused at once
		{"one account through many aliases", many.String(), "c.yaml:3: account a@h is already defined at c.yaml:2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err := LoadYAML(strings.NewReader(c.yaml), "c.yaml", Defaults{Destinations: testDests})
			runtime.ReadMemStats(&after)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error = %v, want %q", err, c.want)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64*(uint64(len(c.yaml))+1<<20) {
				t.Fatalf("%d bytes of YAML allocated %d MiB", len(c.yaml), alloc>>20)
			}
		})
	}
}

func TestYAMLTooLargeIsAnError(t *testing.T) {
	y := "accounts:\n" + strings.Repeat("# padding padding padding padding padding\n", maxYAMLSize/40)
	_, err := LoadYAML(strings.NewReader(y), "c.yaml", defaults)
	if err == nil || !strings.Contains(err.Error(), "c.yaml: larger than 4 MiB") {
		t.Fatalf("error = %v", err)
	}
}

// TestYAMLErrorsNeverShowAPassword: whatever is wrong with a password
// field, or with a file that is a password, the error does not quote it.
func TestYAMLErrorsNeverShowAPassword(t *testing.T) {
	s := plantedSecret
	for _, y := range []string{
		s + "\n",
		s + ": x\n",
		"'" + s + "'\n",
		"[" + s + "]\n",
		"accounts:\n  - source: pop3s://a@h\n    password: *" + s + "\n",
		"accounts:\n  - source: pop3s://a@h\n    password: [" + s + "]\n",
		"accounts:\n  - source: pop3s://a@h\n    password: {" + s + ": 1}\n",
		"accounts:\n  - source: pop3s://a@h\n    password: !!binary " + s + "\n",
		"accounts:\n  - source: pop3s://a@h\n    password: !!int " + s + "\n    to: [ftp:/x]\n",
		"accounts:\n  - source: pop3s://a@h\n    password: \"" + s + "\n",
		"accounts:\n  - source: pop3s://a@h\n    password: \"" + s[:4] + "\\n" + s[4:] + "\"\n",
		"accounts:\n  - source: pop3s://a@h\n    password: " + s + "\n    password_env: PW\n",
		"accounts:\n  - source: pop3s://a@h\n    password: " + s + "\n    password: " + s + "\n",
		"accounts:\n  - source: pop3s://a@h\n    password: " + s + "\n  - source: pop3s://a@h\n    password: " + s + "\n",
		"defaults:\n  password: " + s + "\naccounts:\n  - host: h\n    user: a\n    security: ssl\n",
		"accounts:\n  - source: pop3s://a@h\n    to_password: " + s + "\n    to: [imaps://a@h/INBOX, imaps://a@h/INBOX]\n",
		"accounts:\n  - source: pop3s://a@h\n    password: " + s + "\n---\n" + s + "\n",
	} {
		_, err := LoadYAML(strings.NewReader(y), "c.yaml", Defaults{Destinations: testDests})
		if err == nil {
			t.Errorf("LoadYAML(%q) accepted", y)
			continue
		}
		if strings.Contains(err.Error(), s) || strings.Contains(err.Error(), "pl4nted") || strings.Contains(err.Error(), s[4:]) {
			t.Errorf("LoadYAML(%q) error shows the password: %v", y, err)
		}
	}
}

func TestYAMLValues(t *testing.T) {
	y := `
accounts:
  - source: pop3s://a@h
    password: "  spaces kept  "
    port: ~
    to: maildir:/one
    auth: PLAIN
    insecure_skip_verify: yes
  - host: h
    user: b
    port: "1995"
    security: starttls
    password_env: ""
    password_file: /run/b
    to: [maildir:/b]
`
	as, err := LoadYAML(strings.NewReader(y), "c.yaml", Defaults{Destinations: testDests})
	if err != nil {
		t.Fatal(err)
	}
	a, b := as[0], as[1]
	if a.Password.Value != "  spaces kept  " || len(a.To) != 1 || a.To[0] != "maildir:/one" || a.Auth[0] != "PLAIN" || !a.InsecureSkipVerify {
		t.Errorf("a = %+v (password %q)", a, a.Password.Value)
	}
	if b.Port != 1995 || b.Security != SecuritySTLS || b.Password.File != "/run/b" {
		t.Errorf("b = %+v", b)
	}
}
