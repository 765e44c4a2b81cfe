package config

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// writeMode writes a file with exactly mode (whatever the umask).
func writeMode(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func skipOnWindows(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix file modes")
	}
}

func TestWarnsWhenPasswordFileIsReadableByOthers(t *testing.T) {
	skipOnWindows(t)
	dir := t.TempDir()
	t.Chdir(dir)
	open := writeMode(t, dir, "pw", "x\n", 0o644)
	group := writeMode(t, dir, "token", "x\n", 0o640)
	private := writeMode(t, dir, "private", "x\n", 0o600)
	imap := writeMode(t, dir, "imap pw", "x\n", 0o604)
	d := Defaults{Destinations: testDests, Password: Secret{File: open}, To: []string{"maildir:/srv/{user}"}}
	csv := "source,oauth2_token_file,password_file,to_password_file,to\n" +
		"pop3s://a@h,,,,\n" +
		"pop3s://b@h,,,,\n" +
		"pop3s://c@h," + group + ",,,\n" +
		"pop3s://d@h,," + private + ",,\n" +
		"pop3s://e@h,,," + imap + ",imaps://e@new/INBOX\n" +
		"pop3s://f@h,,./pw,,\n" // the same file as the default, by another name
	as, err := LoadCSV(strings.NewReader(csv), "a.csv", d)
	if err != nil {
		t.Fatal(err)
	}
	got := Warnings(as)
	want := []string{
		"password file " + open + " is readable by its group and others (mode 0644); run: chmod 600 " + open,
		"OAuth2 token file " + group + " is readable by its group (mode 0640); run: chmod 600 " + group,
		"IMAP password file " + imap + " is readable by others (mode 0604); run: chmod 600 '" + imap + "'",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Warnings =\n%s\nwant (each file once, in order)\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// A flag's file shared by every account of two loads: still once.
	as2, err := FromFlags("pop3s://z@h", "", d)
	if err != nil {
		t.Fatal(err)
	}
	if got := Warnings(append(as, as2)); len(got) != 3 {
		t.Errorf("with one more account: %d warnings, want 3:\n%s", len(got), strings.Join(got, "\n"))
	}
	// A missing file is Resolve's error to report, not a warning.
	if got := Warnings([]*Account{{Password: Secret{File: filepath.Join(dir, "missing")}}}); len(got) != 0 {
		t.Errorf("missing file: %q", got)
	}
}

func TestWarnsWhenCSVWithPasswordsIsReadableByOthers(t *testing.T) {
	skipOnWindows(t)
	dir := t.TempDir()
	load := func(name, content string, mode os.FileMode) []string {
		t.Helper()
		f, err := os.Open(writeMode(t, dir, name, content, mode))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		as, err := LoadCSV(f, name, defaults)
		if err != nil {
			t.Fatal(err)
		}
		return Warnings(as)
	}
	inline := "source,password\npop3s://a@h,s3cret\npop3s://b@h,s3cret\n"
	p := filepath.Join(dir, "inline.csv")
	got := load("inline.csv", inline, 0o644)
	want := "accounts file " + p + " holds passwords and is readable by its group and others (mode 0644); run: chmod 600 " + p
	if len(got) != 1 || got[0] != want {
		t.Errorf("Warnings = %q\nwant once %q", got, want)
	}
	if got := load("private.csv", inline, 0o600); len(got) != 0 {
		t.Errorf("0600 file: %q", got)
	}
	if got := load("to.csv", "source,password_env,to_password,to\npop3s://a@h,PW,s3cret,imaps://a@new/INBOX\n", 0o640); len(got) != 1 || !strings.Contains(got[0], "holds passwords and is readable by its group (mode 0640)") {
		t.Errorf("to_password column: %q", got)
	}
	// A password column without any value holds no password.
	if got := load("empty.csv", "source,password,password_env\npop3s://a@h,,PW\n", 0o644); len(got) != 0 {
		t.Errorf("empty password column: %q", got)
	}
	if got := load("env.csv", "source,password_env\npop3s://a@h,PW\n", 0o644); len(got) != 0 {
		t.Errorf("no password column: %q", got)
	}
}

func TestWarnsWhenYAMLWithInlinePasswordsIsReadableByOthers(t *testing.T) {
	skipOnWindows(t)
	dir := t.TempDir()
	for _, c := range []struct {
		yaml string
		mode os.FileMode
		warn bool
	}{
		{"accounts:\n  - source: pop3s://a@h\n    password: s3cret\n  - source: pop3s://b@h\n    password: s3cret\n", 0o644, true},
		{"defaults:\n  password: s3cret\naccounts:\n  - source: pop3s://a@h\n", 0o604, true},
		{"accounts:\n  - source: pop3s://a@h\n    password: s3cret\n", 0o600, false},
		{"accounts:\n  - source: pop3s://a@h\n    password_env: PW\n", 0o644, false},
	} {
		p := writeMode(t, dir, "c.yaml", c.yaml, c.mode)
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		as, err := LoadYAML(f, "c.yaml", defaults)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		got := Warnings(as)
		if !c.warn && len(got) != 0 || c.warn && (len(got) != 1 || !strings.HasPrefix(got[0], "config file "+p+" holds passwords and is readable by") || !strings.HasSuffix(got[0], "chmod 600 "+p)) {
			t.Errorf("%q mode %04o: Warnings = %q", c.yaml, c.mode, got)
		}
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/run/secrets/a": "/run/secrets/a",
		"my pw":          "'my pw'",
		"it's":           `'it'\''s'`,
		"-pw":            "./-pw",
		"$HOME/x":        "'$HOME/x'",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
