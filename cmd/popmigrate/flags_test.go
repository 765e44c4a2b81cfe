package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// parseFlags parses args with the command newCmd makes and returns the
// options its run function would get, without running anything.
func parseFlags[O any](t *testing.T, newCmd func(*iostreams, func(context.Context, *O) error) *cobra.Command, args ...string) *O {
	t.Helper()
	var got *O
	ios := &iostreams{Out: &bytes.Buffer{}, Err: &bytes.Buffer{}}
	cmd := newCmd(ios, func(_ context.Context, o *O) error {
		got = o
		return nil
	})
	cmd.SetArgs(args)
	cmd.SetOut(ios.Out)
	cmd.SetErr(ios.Err)
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("%s %v: %v", cmd.Name(), args, err)
	}
	if got == nil {
		t.Fatalf("%s %v: the run function was not called", cmd.Name(), args)
	}
	return got
}

// parseRun parses args as `popmigrate run ARGS`.
func parseRun(t *testing.T, args ...string) *runOptions {
	t.Helper()
	return parseFlags(t, newRunCmd, args...)
}

func TestRunFlagDefaults(t *testing.T) {
	o := parseRun(t)
	checks := []struct {
		name      string
		got, want any
	}{
		{"Source", o.Source, ""},
		{"Accounts", o.Accounts, ""},
		{"Config", o.Config, ""},
		{"To", len(o.To), 0},
		{"Auth", len(o.Auth), 0},
		{"CAFile", o.CAFile, ""},
		{"InsecureSkipVerify", o.InsecureSkipVerify, false},
		{"InsecurePlaintext", o.InsecurePlaintext, false},
		{"Journal", o.Journal, "popmigrate.db"},
		{"Jobs", o.Jobs, 8},
		{"PerHost", o.PerHost, 4},
		{"Window", o.Window, 32},
		{"BatchSize", o.BatchSize, 256},
		{"BatchInterval", o.BatchInterval, time.Second},
		{"Timeout", o.Timeout, 60 * time.Second},
		{"Attempts", o.Attempts, 5},
		{"TraceDir", o.TraceDir, ""},
		{"JSON", o.JSON, false},
		{"NoProgress", o.NoProgress, false},
		{"Verbose", o.Verbose, false},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("default %s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
}

func TestRunFlagsParsed(t *testing.T) {
	o := parseRun(t,
		"--source", "pop3s://alice@mail.example.org",
		"--name", "alice",
		"--password-file", "/run/secrets/alice",
		"--to", "maildir:/srv/a,b", // a comma is part of the path, not a separator
		"--to", "maildir:/srv/mail/{user}",
		"--auth", "PLAIN,USER",
		"--auth", "apop",
		"--ca-file", "/etc/ca.pem",
		"--insecure-skip-verify",
		"--journal", "/var/lib/pm.db",
		"--jobs", "3", "--per-host", "2", "--window", "7",
		"--batch-size", "9", "--batch-interval", "250ms",
		"--timeout", "5s", "--attempts", "2",
		"--spool-dir", "/var/tmp", "--trace-dir", "/tmp/tr",
		"--json", "--no-progress", "-v",
	)
	checks := []struct {
		name      string
		got, want any
	}{
		{"Source", o.Source, "pop3s://alice@mail.example.org"},
		{"Name", o.Name, "alice"},
		{"PasswordFile", o.PasswordFile, "/run/secrets/alice"},
		{"To", o.To, []string{"maildir:/srv/a,b", "maildir:/srv/mail/{user}"}},
		{"Auth", o.Auth, []string{"PLAIN", "USER", "apop"}},
		{"CAFile", o.CAFile, "/etc/ca.pem"},
		{"InsecureSkipVerify", o.InsecureSkipVerify, true},
		{"InsecurePlaintext", o.InsecurePlaintext, false},
		{"Journal", o.Journal, "/var/lib/pm.db"},
		{"Jobs", o.Jobs, 3},
		{"PerHost", o.PerHost, 2},
		{"Window", o.Window, 7},
		{"BatchSize", o.BatchSize, 9},
		{"BatchInterval", o.BatchInterval, 250 * time.Millisecond},
		{"Timeout", o.Timeout, 5 * time.Second},
		{"Attempts", o.Attempts, 2},
		{"SpoolDir", o.SpoolDir, "/var/tmp"},
		{"TraceDir", o.TraceDir, "/tmp/tr"},
		{"JSON", o.JSON, true},
		{"NoProgress", o.NoProgress, true},
		{"Verbose", o.Verbose, true},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
}

// TestLoadAccountsFromFlags checks the step between parsing and running:
// flags become accounts, --auth is normalised, templates are expanded.
func TestLoadAccountsFromFlags(t *testing.T) {
	o := parseRun(t,
		"--source", "pop3://bob@mail.example.org:1110",
		"--password-env", "BOB_PW",
		"--auth", " plain , user",
		"--to", "maildir:/srv/mail/{user}",
		"--to", "maildir:/backup/{host}/{user}",
	)
	accounts, err := loadAccounts(&o.accountFlags, accountNeeds{Destination: true, Password: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(accounts) != 1 {
		t.Fatalf("%d accounts, want 1", len(accounts))
	}
	a := accounts[0]
	if a.Name != "bob@mail.example.org" || a.User != "bob" || a.Port != 1110 || a.Security != "starttls" {
		t.Errorf("account = %+v", a)
	}
	if want := []string{"PLAIN", "USER"}; !reflect.DeepEqual(a.Auth, want) {
		t.Errorf("Auth = %q, want %q", a.Auth, want)
	}
	if want := []string{"maildir:/srv/mail/bob", "maildir:/backup/mail.example.org/bob"}; !reflect.DeepEqual(a.To, want) {
		t.Errorf("To = %q, want %q", a.To, want)
	}
	if a.Password.Env != "BOB_PW" {
		t.Errorf("Password = %v, want environment variable BOB_PW", a.Password)
	}
	if got := runArgs(o, accounts); strings.Contains(got, "BOB_PW") || !strings.Contains(got, "source=pop3://bob@mail.example.org:1110") {
		t.Errorf("runArgs = %q", got)
	}
}

func TestStatusFlags(t *testing.T) {
	parse := func(args ...string) *statusOptions {
		var got *statusOptions
		cmd := newStatusCmd(&iostreams{Out: &bytes.Buffer{}, Err: &bytes.Buffer{}}, func(_ context.Context, o *statusOptions) error {
			got = o
			return nil
		})
		cmd.SetArgs(args)
		if err := cmd.Execute(); err != nil {
			t.Fatalf("status %v: %v", args, err)
		}
		return got
	}
	if o := parse(); o.Journal != "popmigrate.db" || o.JSON {
		t.Errorf("defaults: %+v", o)
	}
	if o := parse("--journal", "/x/j.db", "--json"); o.Journal != "/x/j.db" || !o.JSON {
		t.Errorf("parsed: %+v", o)
	}
}

// TestUsageErrors runs popmigrate with bad arguments: each must exit 2 with
// a message naming the problem, before any journal is created.
func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	csvBadRow := writeFile(t, dir, "bad.csv", "source,password_env,to\n"+
		"pop3s://alice@mail.example.org,PW,maildir:"+dir+"/alice\n"+
		"# a comment line\n"+
		"ftp://bob@mail.example.org,PW,maildir:"+dir+"/bob\n")
	csvShort := writeFile(t, dir, "short.csv", "source,password_env,to\n"+
		"pop3s://alice@mail.example.org,PW\n")
	csvGood := writeFile(t, dir, "good.csv", "source,password_env,to\npop3s://alice@mail.example.org,PW,maildir:"+dir+"/alice\n")
	csvUnknownColumn := writeFile(t, dir, "col.csv", "source,pasword_env\npop3s://a@b,PW\n")
	yamlUnknown := writeFile(t, dir, "c.yaml", "accounts:\n  - source: pop3s://a@b\n    pasword_env: PW\n")
	journalPath := filepath.Join(dir, "journal.db")
	to := "maildir:" + filepath.Join(dir, "out")
	tests := []struct {
		name string
		args []string
		want []string // substrings of stderr
	}{
		{"no accounts", []string{"run", "--to", to}, []string{"no accounts", "--source"}},
		{"password env and file", []string{"run", "--source", "pop3s://a@b", "--password-env", "PW", "--password-file", "/pw", "--to", to},
			[]string{"only one of --password-env, --password-file"}},
		{"password in URL", []string{"run", "--source", "pop3s://alice:hunter2@mail.example.org", "--password-env", "PW", "--to", to},
			[]string{"password in the URL is not accepted", "--password-env"}},
		{"unknown destination kind", []string{"run", "--source", "pop3s://a@b", "--password-env", "PW", "--to", "s3:bucket/x"},
			[]string{`unknown kind "s3"`, "maildir"}},
		{"destination without kind", []string{"run", "--source", "pop3s://a@b", "--password-env", "PW", "--to", "/srv/mail"},
			[]string{`"/srv/mail"`, "maildir:DIR"}},
		{"bad scheme", []string{"run", "--source", "imap://a@b", "--password-env", "PW", "--to", to},
			[]string{"scheme must be pop3s://"}},
		{"no password", []string{"run", "--source", "pop3s://a@b", "--to", to}, []string{"no password"}},
		{"no destination", []string{"run", "--source", "pop3s://a@b", "--password-env", "PW"}, []string{"no destination"}},
		{"bad auth mechanism", []string{"run", "--source", "pop3s://a@b", "--password-env", "PW", "--auth", "CRAM-MD5", "--to", to},
			[]string{`"CRAM-MD5"`}},
		{"plaintext with pop3s", []string{"run", "--source", "pop3s://a@b", "--password-env", "PW", "--insecure-plaintext", "--to", to},
			[]string{"pop3s://"}},
		{"bad CSV row", []string{"run", "--accounts", csvBadRow}, []string{"bad.csv:4:", "scheme"}},
		{"short CSV row", []string{"run", "--accounts", csvShort}, []string{"short.csv:2:", "2 fields, the header has 3"}},
		{"unknown CSV column", []string{"run", "--accounts", csvUnknownColumn}, []string{"col.csv:1:", `unknown column "pasword_env"`}},
		{"unknown YAML field", []string{"run", "--config", yamlUnknown}, []string{"c.yaml", "pasword_env"}},
		{"missing CSV file", []string{"run", "--accounts", filepath.Join(dir, "nope.csv")}, []string{"nope.csv"}},
		{"name without source", []string{"run", "--name", "x", "--accounts", csvGood}, []string{"--name goes with --source"}},
		{"same destination twice", []string{"run", "--accounts", writeFile(t, dir, "dup.csv",
			"source,password_env,to\npop3s://a@h1,PW,"+to+"\npop3s://b@h2,PW,"+to+"\n")},
			[]string{"dup.csv:3", "also writes to"}},
		{"unknown flag", []string{"run", "--frobnicate"}, []string{"unknown flag: --frobnicate", "--help"}},
		{"positional argument", []string{"run", "extra"}, []string{"extra"}},
		{"unknown command", []string{"migrate"}, []string{`unknown command "migrate"`}},
		{"bad flag value", []string{"run", "--jobs", "many"}, []string{"--jobs", "many"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runMain(t, append(tc.args, "--journal", journalPath)...)
			r.wantCode(t, exitUsage)
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
				}
			}
			if !strings.HasPrefix(r.stderr, "popmigrate: ") {
				t.Errorf("stderr does not start with the program name:\n%s", r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("stdout is not empty on a usage error:\n%s", r.stdout)
			}
			if _, err := os.Stat(journalPath); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a usage error created the journal (stat: %v)", err)
			}
		})
	}
}

// TestNoPasswordFlag pins that a password cannot be given as an argument:
// there is no --password flag, and the refusal does not echo the value.
func TestNoPasswordFlag(t *testing.T) {
	const secret = "s3cret-on-the-command-line"
	for _, args := range [][]string{
		{"run", "--source", "pop3s://a@b", "--password", secret, "--to", "maildir:/tmp/x"},
		{"run", "--source", "pop3s://a@b", "--password=" + secret, "--to", "maildir:/tmp/x"},
		{"run", "--source", "pop3s://a@b", "-p", secret, "--to", "maildir:/tmp/x"},
	} {
		r := runMain(t, args...)
		r.wantCode(t, exitUsage)
		if !strings.Contains(r.stderr, "unknown") {
			t.Errorf("%v: stderr does not say the flag is unknown:\n%s", args, r.stderr)
		}
		if strings.Contains(r.stderr+r.stdout, secret) {
			t.Errorf("%v: the output repeats the password:\n%s", args, r)
		}
	}
	if f := newRunCmd(&iostreams{}, nil).Flags().Lookup("password"); f != nil {
		t.Errorf("run has a --password flag")
	}
}

func TestHelpListsExitCodes(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"run", "--help"}} {
		r := runMain(t, args...)
		r.wantCode(t, exitOK)
		for _, w := range []string{"Exit codes:", "130"} {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("%v: help lacks %q:\n%s", args, w, r.stdout)
			}
		}
	}
}

func TestExitCode(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name   string
		ctx    context.Context
		err    error
		code   int
		stderr string
	}{
		{"nil", context.Background(), nil, exitOK, ""},
		{"usage", context.Background(), usageError("bad %s", "thing"), exitUsage, "popmigrate: bad thing\n"},
		{"silent exit error", context.Background(), &exitError{code: exitFailed}, exitFailed, ""},
		{"mismatch", context.Background(), &exitError{code: exitMismatch, err: errors.New("sha256 differs")}, exitMismatch, "popmigrate: sha256 differs\n"},
		{"interrupted", canceled, context.Canceled, exitInterrupted, "interrupted"},
		{"canceled error, live context", context.Background(), context.Canceled, exitInterrupted, "interrupted"},
		{"cobra error", context.Background(), errors.New(`unknown command "x"`), exitUsage, `unknown command "x"`},
	}
	for _, tc := range tests {
		var b bytes.Buffer
		if got := exitCode(tc.ctx, tc.err, &b); got != tc.code {
			t.Errorf("%s: exit %d, want %d", tc.name, got, tc.code)
		}
		if !strings.Contains(b.String(), tc.stderr) || (tc.stderr == "" && b.Len() > 0) {
			t.Errorf("%s: stderr %q, want %q", tc.name, b.String(), tc.stderr)
		}
	}
}

// TestProviderFlag: --provider gives every account its provider's
// behaviour and limit; an explicit --per-host overrides the limit.
func TestProviderFlag(t *testing.T) {
	for _, c := range []struct {
		args    []string
		perHost int
	}{
		{nil, 8},
		{[]string{"--per-host", "2"}, 0},
	} {
		args := append([]string{"--provider", "gmail", "--source", "pop3s://alice@127.0.0.1:1995", "--password-env", "PW", "--to", "maildir:/srv/{user}"}, c.args...)
		o := parseRun(t, args...)
		accounts, err := loadAccounts(&o.accountFlags, accountNeeds{Destination: true, Password: true})
		if err != nil {
			t.Fatal(err)
		}
		if a := accounts[0]; a.Provider != "gmail" || !a.UntilEmpty || a.PerHost != c.perHost {
			t.Errorf("%v: provider %q until-empty %v per-host %d; want gmail true %d", args, a.Provider, a.UntilEmpty, a.PerHost, c.perHost)
		}
	}
}
