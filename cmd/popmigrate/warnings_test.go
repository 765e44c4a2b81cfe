package main

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestConfigWarningsArePrintedOnceOnStderr: a password file and an
// accounts CSV holding passwords that others can read are each warned
// about once on stderr, however many accounts use them, and the warning
// says how to fix it.
func TestConfigWarningsArePrintedOnceOnStderr(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix file modes")
	}
	dir := t.TempDir()
	pw := writeFile(t, dir, "pw", "secret\n")
	csv := writeFile(t, dir, "users.csv", "source,password\n"+
		"pop3s://alice@127.0.0.1:1,alice-secret\n"+
		"pop3s://bob@127.0.0.1:1,\n"+
		"pop3s://carol@127.0.0.1:1,\n")
	for _, p := range []string{pw, csv} {
		if err := os.Chmod(p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	wantOnce := []string{
		"popmigrate: WARNING: password file " + pw + " is readable by its group and others (mode 0644); run: chmod 600 " + pw + "\n",
		"popmigrate: WARNING: accounts file " + csv + " holds passwords and is readable by its group and others (mode 0644); run: chmod 600 " + csv + "\n",
	}
	for _, args := range [][]string{
		{"check", "--accounts", csv, "--password-file", pw, "--timeout", "5s"},
		{"purge", "--accounts", csv, "--password-file", pw, "--to", "maildir:" + filepath.Join(dir, "{user}"), "--journal", filepath.Join(dir, "missing.db")},
	} {
		r := runMain(t, args...)
		for _, w := range wantOnce {
			if n := strings.Count(r.stderr, w); n != 1 {
				t.Errorf("popmigrate %s: warning %q printed %d times:\n%s", args[0], w, n, r)
			}
		}
		if strings.Contains(r.stderr+r.stdout, "alice-secret") {
			t.Errorf("popmigrate %s shows the password:\n%s", args[0], r)
		}
	}
	// Private files: no warning.
	for _, p := range []string{pw, csv} {
		if err := os.Chmod(p, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r := runMain(t, "check", "--accounts", csv, "--password-file", pw, "--timeout", "5s")
	if strings.Contains(r.stderr, "WARNING") {
		t.Errorf("warnings for 0600 files:\n%s", r)
	}
}
