package config

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecretTemplatesGiveEachAccountItsOwnSecret: one password_command
// (and password_file) for a whole CSV or YAML file gives each account its
// own secret; the README's example, with $USER, gave every account the
// same one.
func TestSecretTemplatesGiveEachAccountItsOwnSecret(t *testing.T) {
	dir := t.TempDir()
	for _, u := range []string{"alice", "bob"} {
		if err := os.WriteFile(filepath.Join(dir, "pw-"+u), []byte("file-"+u+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	csv := "source,to\npop3s://alice@mail.example.org,maildir:/m/{user}\npop3s://bob@mail.example.org,maildir:/m/{user}\n"
	yaml := "defaults:\n  password_command: echo pass show pop/{user} on {host} as {account}\n  to: maildir:/m/{user}\n" +
		"accounts:\n  - source: pop3s://alice@mail.example.org\n  - source: pop3s://bob@mail.example.org\n    name: Bob\n"
	ctx := context.Background()

	fromCSV, err := LoadCSV(strings.NewReader(csv), "a.csv", Defaults{Destinations: testDests, Password: Secret{Command: "echo pass show pop/{user}"}})
	if err != nil {
		t.Fatal(err)
	}
	fromYAML, err := LoadYAML(strings.NewReader(yaml), "c.yaml", Defaults{Destinations: testDests})
	if err != nil {
		t.Fatal(err)
	}
	fromFile, err := LoadCSV(strings.NewReader(csv), "a.csv", Defaults{Destinations: testDests, Password: Secret{File: filepath.Join(dir, "pw-{user}")}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		as   []*Account
		want []string
	}{
		{fromCSV, []string{"pass show pop/alice", "pass show pop/bob"}},
		{fromYAML, []string{"pass show pop/alice on mail.example.org as alice@mail.example.org", "pass show pop/bob on mail.example.org as Bob"}},
		{fromFile, []string{"file-alice", "file-bob"}},
	} {
		for i, a := range c.as {
			pw, err := a.Password.Resolve(ctx)
			if err != nil || pw != c.want[i] {
				t.Errorf("%s: password %q, %v; want %q", a.Name, pw, err, c.want[i])
			}
		}
	}
}

// TestSecretCommandTemplateIsQuoted: a user name with shell syntax in it
// reaches the command as one word, whatever quotes {user} stands in.
func TestSecretCommandTemplateIsQuoted(t *testing.T) {
	dir := t.TempDir()
	canary := filepath.Join(dir, "injected")
	for _, user := range []string{
		"a;touch " + canary,
		"$(touch " + canary + ")",
		"`touch " + canary + "`",
		"it's;touch " + canary,
		`x" ; touch ` + canary + ` ; "`,
		"a b  c",
		"*",
		"~root",
	} {
		a := &Account{User: user, Host: "h", Name: "n"}
		for _, tc := range []struct{ cmd, want string }{
			{"printf %s {user}", user},
			{"printf %s pop/{user}/x", "pop/" + user + "/x"},
			{"printf %s 'pop/{user}/x'", "pop/" + user + "/x"},
			{`printf %s "pop/{user}/x"`, "pop/" + user + "/x"},
			{`printf %s "it's {user}"`, "it's " + user},
			{"printf %s \\{user} {user}", "{user}" + user},
			{"# it's a comment\nprintf %s {user}", user},
			{"awk 'BEGIN{printf \"%s\", ARGV[1]}' {user}", user},
		} {
			cmd, err := expandCommand(tc.cmd, a)
			if err != nil {
				t.Errorf("user %q, %q: %v", user, tc.cmd, err)
				continue
			}
			out, err := exec.Command("/bin/sh", "-c", cmd).Output()
			if err != nil || string(out) != tc.want {
				t.Errorf("user %q, %q -> %q printed %q (%v), want %q", user, tc.cmd, cmd, out, err, tc.want)
			}
			if _, err := os.Stat(canary); err == nil {
				t.Fatalf("user %q, %q -> %q ran injected code", user, tc.cmd, cmd)
			}
		}
		// Where the shell would expand the value again, it is refused.
		for _, cmd := range []string{"echo $(printf %s {user})", "echo `echo {user}`", "echo ${X:-{user}}", "cat <<EOF\n{user}\nEOF"} {
			if _, err := expandCommand(cmd, a); err == nil || !strings.Contains(err.Error(), "cannot be quoted safely") {
				t.Errorf("user %q, %q: err = %v, want a refusal", user, cmd, err)
			}
		}
	}
	// Ordinary names go in as they are, even where quoting is impossible.
	a := &Account{User: "alice@example.org", Host: "mail.example.org", Name: "alice+1"}
	got, err := expandCommand("echo $(vault read -field=pw secret/{host}/{user}) {account} '{print $2}' {unknown}", a)
	if want := "echo $(vault read -field=pw secret/mail.example.org/alice@example.org) alice+1 '{print $2}' {unknown}"; err != nil || got != want {
		t.Errorf("got %q, %v\nwant %q", got, err, want)
	}
}

func TestSecretFileTemplate(t *testing.T) {
	a := &Account{User: "alice", Host: "h", Name: "alice@h"}
	for in, want := range map[string]string{
		"/run/secrets/{user}":         "/run/secrets/alice",
		"/run/{host}/{account}.token": "/run/h/alice@h.token",
		"/run/{nope}/x":               "/run/{nope}/x",
		`/run/\{user}`:                `/run/\{user}`,
		"/plain/path":                 "/plain/path",
		"/run/{user}{user}":           "/run/alicealice",
	} {
		if got, err := expandPath(in, a); err != nil || got != want {
			t.Errorf("expandPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, user := range []string{"../etc", "a/b", "..", "."} {
		_, err := expandPath("/run/secrets/{user}", &Account{User: user, Host: "h", Name: "n"})
		if err == nil || !strings.Contains(err.Error(), "cannot be used in a path") {
			t.Errorf("user %q: err = %v", user, err)
		}
	}
	// The error of a whole load names the account and the field.
	_, err := LoadCSV(strings.NewReader("source,password_file,to\npop3s://a%2Fb@h,/s/{user},maildir:/m/x\n"), "a.csv", Defaults{Destinations: testDests})
	if err == nil || !strings.Contains(err.Error(), "a.csv:2: account a/b@h: password: file") {
		t.Errorf("err = %v", err)
	}
}
