package config

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/internal/urlsafe"
)

func TestSecretCommandFailureNeverShowsItsOutput(t *testing.T) {
	s := Secret{Command: "echo " + plantedSecret + "; echo " + plantedSecret + " >&2; exit 3"}
	_, err := s.Resolve(context.Background())
	if err == nil {
		t.Fatal("a failing command resolved")
	}
	want := "secret: command failed (exit status 3); run it by hand to see why (its output is not shown, since it may contain the secret)"
	if err.Error() != want {
		t.Errorf("error = %q\nwant    %q", err, want)
	}
	if strings.Contains(err.Error(), plantedSecret) {
		t.Errorf("error shows the command's output: %v", err)
	}
}

func TestSecretCommandErrorsSayHowItEnded(t *testing.T) {
	defer func(d time.Duration) { commandTimeout = d }(commandTimeout)
	commandTimeout = 200 * time.Millisecond
	for _, c := range []struct {
		cmd, want string
	}{
		{"echo " + plantedSecret + " >&2; kill -9 $$", "secret: command was killed by a signal (killed); run it by hand"},
		{"echo " + plantedSecret + " >&2; exec sleep 5", "secret: command timed out after 200ms; run it by hand"},
		{"popmigrate-no-such-helper " + plantedSecret, "secret: command failed (exit status 127: command not found)"},
		{"echo " + plantedSecret + " >&2", "secret: the command printed nothing on its standard output"},
		{"printf '" + plantedSecret + "\\n" + plantedSecret + "\\n'", "secret: command contains a line break or NUL"},
		{"head -c 70000 /dev/zero", "secret: command printed more than 64 KiB"},
		{"yes " + plantedSecret, "secret: command printed more than 64 KiB"},
	} {
		start := time.Now()
		_, err := Secret{Command: c.cmd}.Resolve(context.Background())
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error = %v, want %q", c.cmd, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), plantedSecret) {
			t.Errorf("%s: error shows the output: %v", c.cmd, err)
		}
		if d := time.Since(start); d > 4*time.Second {
			t.Errorf("%s: took %v", c.cmd, d)
		}
	}
}

// TestSecretCommandLeavingADaemonSucceeds: a helper that exits 0 but
// leaves a child holding its stdout (an agent it starts) gives its output
// after a short wait, and does not hang.
func TestSecretCommandLeavingADaemonSucceeds(t *testing.T) {
	defer func(d time.Duration) { commandWaitDelay = d }(commandWaitDelay)
	commandWaitDelay = 100 * time.Millisecond
	start := time.Now()
	got, err := Secret{Command: "printf tok; sleep 5 &"}.Resolve(context.Background())
	if err != nil || got != "tok" {
		t.Fatalf("got %q, %v", got, err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestSecretCommandCancelledIsContextCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(100 * time.Millisecond); cancel() }()
	_, err := Secret{Command: "exec sleep 5"}.Resolve(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error = %v, want context.Canceled", err)
	}
}

// TestSecretNeverPrintsItsValue: however a Secret (or an Account holding
// one) is printed, marshalled or logged, the value and the command's text
// do not show.
func TestSecretNeverPrintsItsValue(t *testing.T) {
	a := &Account{Name: "a", Password: Secret{Value: plantedSecret}, ToPassword: Secret{Command: "echo " + plantedSecret}}
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "account", a, "secret", a.Password)
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "account", a, "secret", a.ToPassword)
	j, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	outs := []string{logs.String(), string(j)}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
		outs = append(outs, fmt.Sprintf(verb, a.Password), fmt.Sprintf(verb, a.ToPassword), fmt.Sprintf(verb, *a), fmt.Sprintf(verb, &a.Password))
	}
	for _, out := range outs {
		if strings.Contains(out, plantedSecret) {
			t.Errorf("shows the secret: %s", out)
		}
	}
	if got := fmt.Sprint(a.Password); got != "inline value" {
		t.Errorf("Sprint = %q", got)
	}
}

func TestSecretFileErrors(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte(plantedSecret), 10000), 0o600); err != nil {
		t.Fatal(err)
	}
	two := filepath.Join(dir, "two")
	if err := os.WriteFile(two, []byte(plantedSecret+"\n"+plantedSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		s    Secret
		want string
	}{
		{Secret{File: big}, "is larger than 64 KiB"},
		{Secret{File: two}, "contains a line break or NUL"},
		{Secret{File: dir}, "is a directory"},
	} {
		_, err := c.s.Resolve(context.Background())
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), plantedSecret) {
			t.Errorf("Resolve(%s) error = %v, want %q and no content", c.s, err, c.want)
		}
	}
}

// TestURLPasswordIsMaskedInEveryError: a password written into a source or
// destination URL is refused, and no error quotes it, even when the URL
// is broken in other ways too.
func TestURLPasswordIsMaskedInEveryError(t *testing.T) {
	pw := "hun%zzter2"
	a := &Account{Name: "a", User: "a", Host: "h"}
	for _, f := range []func() error{
		func() error { _, err := ParseSource("pop3s://alice:" + pw + "@h"); return err },
		func() error { _, err := ParseSource("pop3s://alice:" + pw + "@h:bad/x"); return err },
		func() error { _, err := ParseSource("imap://alice:" + pw + "@h"); return err },
		func() error { _, err := ParseSource("pop3s:alice:" + pw + "@h"); return err },
		func() error { _, err := testDests.Parse("imaps://alice:" + pw + "@h/INBOX"); return err },
		func() error { _, err := testDests.Parse("imap://alice:" + pw + "@h:x/INBOX"); return err },
		func() error { _, err := testDests.Parse("ftp://alice:" + pw + "@h/INBOX"); return err },
		func() error { _, err := ExpandTemplate("imaps://{user}:"+pw+"@h/{nope}", a); return err },
		func() error { _, err := ExpandTemplate("imaps://{user}:"+pw+"@h/{user", a); return err },
		func() error {
			_, err := LoadCSV(strings.NewReader("source,password_env\npop3s://a:"+pw+"@h,PW\n"), "a.csv", defaults)
			return err
		},
		func() error {
			_, err := LoadCSV(strings.NewReader("source,password_env,to\npop3s://a@h,PW,imaps://a:"+pw+"@h/INBOX\n"), "a.csv", defaults)
			return err
		},
	} {
		err := f()
		if err == nil {
			t.Error("accepted")
			continue
		}
		if strings.Contains(err.Error(), "zzter") || strings.Contains(err.Error(), "%zz") {
			t.Errorf("error shows the password: %v", err)
		}
	}
	if got := urlsafe.RedactUserinfo("imaps://a:b:c@d@h:1/x@y"); got != "imaps://a:xxxxx@h:1/x@y" {
		t.Errorf("RedactUserinfo = %q", got)
	}
	for _, s := range []string{"maildir:/srv/a:b@c", "pop3s://alice@h", "eml:/x", "imaps://a@h/F:o@o"} {
		if got := urlsafe.RedactUserinfo(s); got != s {
			t.Errorf("urlsafe.RedactUserinfo(%q) = %q, want it unchanged", s, got)
		}
	}
}
