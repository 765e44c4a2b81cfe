package config

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popmigrate/popmigrate/exporters/all"
)

// testDests are the destination kinds of this build.
var testDests = all.Registry()

var defaults = Defaults{Destinations: testDests, Password: Secret{Env: "POP_PW"}, To: []string{"maildir:/srv/mail/{user}"}}

func TestParseSource(t *testing.T) {
	cases := []struct {
		in      string
		want    Source
		wantErr string
	}{
		{in: "pop3s://alice@mail.example.org", want: Source{SecurityTLS, "alice", "mail.example.org", 995}},
		{in: "pop3://bob@mail.example.org", want: Source{SecuritySTLS, "bob", "mail.example.org", 110}},
		{in: "pop3s://a%40b.org@[::1]:10995", want: Source{SecurityTLS, "a@b.org", "::1", 10995}},
		{in: "POP3S://alice@h:1", want: Source{SecurityTLS, "alice", "h", 1}},
		{in: "imaps://alice@h", wantErr: "scheme must be"},
		{in: "pop3s://h", wantErr: "no user"},
		{in: "pop3s://alice:hunter2@h", wantErr: "password in the URL is not accepted"},
		{in: "pop3s://alice@h:0", wantErr: "bad port"},
		{in: "pop3s://alice@h:99999", wantErr: "bad port"},
		{in: "pop3s://alice@h/INBOX", wantErr: "unexpected path"},
		{in: "pop3s://alice@:995", wantErr: "no host"},
	}
	for _, c := range cases {
		got, err := ParseSource(c.in)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("ParseSource(%q) error = %v, want %q", c.in, err, c.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("ParseSource(%q) error leaks the password: %v", c.in, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseSource(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
}

func TestExpandTemplate(t *testing.T) {
	a := &Account{Name: "alice@h", User: "alice", Host: "h"}
	got, err := ExpandTemplate("maildir:/srv/{host}/{user}/{account}", a)
	if err != nil || got != "maildir:/srv/h/alice/alice@h" {
		t.Fatalf("got %q, %v", got, err)
	}
	for _, bad := range []struct{ user, spec, want string }{
		{"../etc", "maildir:/srv/{user}", "cannot be used in a path"},
		{"a/b", "maildir:/srv/{user}", "cannot be used in a path"},
		{"..", "maildir:/srv/{user}", "cannot be used in a path"},
		{"alice", "maildir:/srv/{nope}", "unknown template {nope}"},
		{"alice", "maildir:/srv/{user", "unclosed"},
	} {
		a := &Account{Name: "x", User: bad.user, Host: "h"}
		if _, err := ExpandTemplate(bad.spec, a); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("ExpandTemplate(%q, user %q) error = %v, want %q", bad.spec, bad.user, err, bad.want)
		}
	}
}

func TestFromFlags(t *testing.T) {
	a, err := FromFlags("pop3s://alice@mail.example.org:1995", "", defaults)
	if err != nil {
		t.Fatal(err)
	}
	if a.Name != "alice@mail.example.org" || a.Addr() != "mail.example.org:1995" || a.To[0] != "maildir:/srv/mail/alice" {
		t.Fatalf("unexpected account %+v", a)
	}
	if a.SourceURL() != "pop3s://alice@mail.example.org:1995" {
		t.Errorf("SourceURL = %q", a.SourceURL())
	}
	if _, err := FromFlags("pop3s://alice@h", "", Defaults{Destinations: testDests, To: defaults.To}); err == nil || !strings.Contains(err.Error(), "no password") {
		t.Errorf("no password: err = %v", err)
	}
	if _, err := FromFlags("pop3s://alice@h", "", Defaults{Destinations: testDests, Password: defaults.Password}); err == nil || !strings.Contains(err.Error(), "no destination") {
		t.Errorf("no destination: err = %v", err)
	}
	d := defaults
	d.InsecurePlaintext = true
	if _, err := FromFlags("pop3s://alice@h", "", d); err == nil || !strings.Contains(err.Error(), "makes no sense") {
		t.Errorf("plaintext with pop3s: err = %v", err)
	}
	a, err = FromFlags("pop3://alice@h", "", d)
	if err != nil || a.Security != SecurityPlain || a.SourceURL() != "pop3://alice@h:110" {
		t.Errorf("plaintext: %+v, %v", a, err)
	}
}

func TestLoadCSV(t *testing.T) {
	csv := `# accounts of the migration
source,password_env,to
pop3s://alice@mail.example.org,ALICE_PW,
pop3://bob@mail.example.org:1110,BOB_PW,maildir:/tmp/bob maildir:/tmp/bob-copy
`
	as, err := LoadCSV(strings.NewReader(csv), "accounts.csv", defaults)
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 2 {
		t.Fatalf("got %d accounts", len(as))
	}
	if as[0].To[0] != "maildir:/srv/mail/alice" || as[0].Password.Env != "ALICE_PW" || as[0].Origin != "accounts.csv:3" {
		t.Errorf("alice = %+v", as[0])
	}
	if len(as[1].To) != 2 || as[1].Security != SecuritySTLS || as[1].Port != 1110 {
		t.Errorf("bob = %+v", as[1])
	}
	hostCSV := "host,port,user,security,password_file,name\nmail.example.org,,carol,starttls,/run/carol,c1\n"
	as, err = LoadCSV(strings.NewReader(hostCSV), "a.csv", defaults)
	if err != nil || as[0].Name != "c1" || as[0].Port != 110 || as[0].Password.File != "/run/carol" {
		t.Fatalf("host columns: %+v, %v", as, err)
	}
}

func TestLoadCSVInvalidRows(t *testing.T) {
	cases := []struct{ name, csv, want string }{
		{"empty", "", "empty file"},
		{"header only", "source,password_env\n", "no accounts"},
		{"unknown column", "source,pasword_env\nx,y\n", `unknown column "pasword_env"`},
		{"short row", "source,password_env\npop3s://a@h\n", "a.csv:2"},
		{"bad url", "source,password_env\nhttp://a@h,PW\n", "a.csv:2: source"},
		{"two secrets", "source,password_env,password_file\npop3s://a@h,PW,/f\n", "only one of"},
		{"source and host", "source,host,password_env\npop3s://a@h,h,PW\n", "either source or host"},
		{"bad bool", "source,password_env,insecure_skip_verify\npop3s://a@h,PW,maybe\n", "not true or false"},
		{"bad security", "host,user,security,password_env\nh,a,ssl,PW\n", "want tls, starttls or plain"},
		{"plain without confirm", "host,user,security,password_env\nh,a,plain,PW\n", "insecure_plaintext"},
		{"bad auth", "source,password_env,auth\npop3s://a@h,PW,CRAM-MD5\n", "auth mechanism"},
		{"bad dest", "source,password_env,to\npop3s://a@h,PW,ftp:/x\n", "unknown kind"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := LoadCSV(strings.NewReader(c.csv), "a.csv", defaults)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error = %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestLoadYAML(t *testing.T) {
	y := `
defaults:
  to: ["maildir:/srv/mail/{user}"]
  password_command: pass show pop/{user}
  auth: [PLAIN, USER]
accounts:
  - source: pop3s://alice@mail.example.org
  - host: mail.example.org
    user: bob
    port: 1995
    password_env: BOB_PW
    to: [maildir:/srv/bob]
`
	as, err := LoadYAML(strings.NewReader(y), "c.yaml", Defaults{Destinations: testDests})
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 2 || as[0].Password.Command == "" || as[0].Auth[1] != "USER" || as[0].Origin != "c.yaml:7" {
		t.Fatalf("alice = %+v", as[0])
	}
	if as[1].Port != 1995 || as[1].Password.Env != "BOB_PW" || as[1].To[0] != "maildir:/srv/bob" {
		t.Fatalf("bob = %+v", as[1])
	}
	for _, bad := range []struct{ y, want string }{
		{"accounts:\n  - source: pop3s://a@h\n    pasword_env: X\n", `unknown field "pasword_env"; did you mean "password_env"?`},
		{"defaults:\n  source: pop3s://a@h\naccounts:\n  - user: a\n", "belong to each account"},
		{"accounts: []\n", "no accounts"},
		{"", "empty file"},
	} {
		if _, err := LoadYAML(strings.NewReader(bad.y), "c.yaml", defaults); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("LoadYAML(%q) error = %v, want %q", bad.y, err, bad.want)
		}
	}
}

func TestValidate(t *testing.T) {
	a1, _ := FromFlags("pop3s://alice@h", "", defaults)
	a2, _ := FromFlags("pop3s://alice@h", "", defaults)
	if err := Validate([]*Account{a1, a2}); err == nil || !strings.Contains(err.Error(), "already defined") {
		t.Errorf("duplicate names: %v", err)
	}
	b, _ := FromFlags("pop3s://bob@h", "", Defaults{Destinations: testDests, Password: defaults.Password, To: []string{"maildir:/srv/shared"}})
	c, _ := FromFlags("pop3s://carol@h", "", Defaults{Destinations: testDests, Password: defaults.Password, To: []string{"maildir:/srv/shared/"}})
	if err := Validate([]*Account{b, c}); err == nil || !strings.Contains(err.Error(), "also writes to") {
		t.Errorf("shared destination: %v", err)
	}
	if err := Validate(nil); err == nil {
		t.Error("no accounts accepted")
	}
}

func TestSecretResolve(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	os.WriteFile(file, []byte("s3cret\n"), 0o600)
	t.Setenv("POPMIGRATE_TEST_PW", "from-env")
	for _, c := range []struct {
		s    Secret
		want string
	}{
		{Secret{Env: "POPMIGRATE_TEST_PW"}, "from-env"},
		{Secret{File: file}, "s3cret"},
		{Secret{Command: "printf 'tok\\n'"}, "tok"},
		{Secret{Value: "v"}, "v"},
	} {
		got, err := c.s.Resolve(ctx)
		if err != nil || got != c.want {
			t.Errorf("Resolve(%s) = %q, %v; want %q", c.s, got, err, c.want)
		}
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	for _, c := range []struct {
		s    Secret
		want string
	}{
		{Secret{Env: "POPMIGRATE_TEST_UNSET_VAR"}, "is not set"},
		{Secret{File: empty}, "is empty"},
		{Secret{File: filepath.Join(dir, "missing")}, "no such file"},
		{Secret{Command: "echo leaked-secret; echo leaked-secret >&2; exit 3"}, "exit status 3"},
		{Secret{Value: "a\nb"}, "line break"},
	} {
		_, err := c.s.Resolve(ctx)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Resolve(%s) error = %v, want %q", c.s, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "leaked-secret") {
			t.Errorf("error leaks command output: %v", err)
		}
	}
}

func TestIMAPDestinationNeedsTargetSecret(t *testing.T) {
	csv := "source,password_env,to,to_password_env\npop3s://a@h,PW,imaps://{user}@new/INBOX,\n"
	if _, err := LoadCSV(strings.NewReader(csv), "a.csv", defaults); err == nil || !strings.Contains(err.Error(), "has no password") {
		t.Fatalf("missing target password: %v", err)
	}
	csv = "source,password_env,to,to_password_env\npop3s://a@h,PW,imaps://{user}@new/INBOX mbox:/arch/{user}.mbox,NEW_PW\n"
	as, err := LoadCSV(strings.NewReader(csv), "a.csv", defaults)
	if err != nil || as[0].ToPassword.Env != "NEW_PW" || as[0].To[0] != "imaps://a@new/INBOX" || len(as[0].To) != 2 {
		t.Fatalf("got %+v, %v", as, err)
	}
}

func TestValidateSharedEMLRootIsAllowed(t *testing.T) {
	d := Defaults{Destinations: testDests, Password: defaults.Password, To: []string{"eml:/archive"}}
	a, _ := FromFlags("pop3s://alice@h", "", d)
	b, _ := FromFlags("pop3s://bob@h", "", d)
	if err := Validate([]*Account{a, b}); err != nil {
		t.Fatalf("two accounts in one eml root: %v", err)
	}
}
