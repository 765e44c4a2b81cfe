package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Secret says where a password or token comes from. At most one field is
// set. Value is only filled from a CSV or YAML file that holds the secret
// itself (discouraged, but common in migration spreadsheets); a secret is
// never taken from a command-line argument.
//
// A Secret prints as its description (String) with every fmt verb,
// including %#v and %+v, and marshals (JSON, YAML, slog) as that
// description too, so an Account can be logged without its secrets.
type Secret struct {
	Env     string // name of an environment variable
	File    string // path of a file; one trailing newline is removed
	Command string // a shell command whose standard output is the secret
	Value   string // the secret itself (CSV/YAML only)
}

// IsZero reports whether no source is set.
func (s Secret) IsZero() bool { return s == Secret{} }

func (s Secret) or(d Secret) Secret {
	if s.IsZero() {
		return d
	}
	return s
}

func (s Secret) count() int {
	n := 0
	for _, v := range []string{s.Env, s.File, s.Command, s.Value} {
		if v != "" {
			n++
		}
	}
	return n
}

// String describes the source without revealing the secret. A command is
// described as "command" only: its text may embed a token.
func (s Secret) String() string {
	switch {
	case s.Env != "":
		return "environment variable " + s.Env
	case s.File != "":
		return "file " + s.File
	case s.Command != "":
		return "command"
	case s.Value != "":
		return "inline value"
	}
	return "none"
}

// Format prints the description (String) whatever the verb, so that
// fmt.Printf("%#v", account) cannot reveal a secret.
func (s Secret) Format(f fmt.State, verb rune) { io.WriteString(f, s.String()) }

// MarshalText returns the description (String), never the secret.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// CommandTimeout bounds a secret command.
const CommandTimeout = 30 * time.Second

// commandTimeout is CommandTimeout, and commandWaitDelay how long the
// output of a command that ended may stay open; tests shorten them.
var (
	commandTimeout   = CommandTimeout
	commandWaitDelay = 2 * time.Second
)

// maxSecretSize bounds what Resolve reads from a file or a command: a
// password or an access token is far shorter, and a wrong path (a log
// file, /dev/zero) must not fill the memory.
const maxSecretSize = 64 << 10

// hiddenOutput ends every error about a failed secret command.
const hiddenOutput = "run it by hand to see why (its output is not shown, since it may contain the secret)"

// Resolve reads the secret. An empty secret is an error: an unset variable
// or an empty file is a mistake, not a blank password. The error never
// contains the secret, the text of the command, or anything the command
// printed (on stdout or stderr): a helper that fails may well print the
// secret, and errors end up in the report, the journal and logs. A command
// runs with /bin/sh -c, stdin and stderr on /dev/null, for at most
// CommandTimeout; its standard output, less trailing line breaks, is the
// secret.
func (s Secret) Resolve(ctx context.Context) (string, error) {
	v, err := s.read(ctx)
	if err != nil {
		return "", err
	}
	if strings.ContainsAny(v, "\r\n\x00") {
		return "", fmt.Errorf("secret: %s contains a line break or NUL (only trailing line breaks are removed)", s)
	}
	return v, nil
}

// read returns what the source holds, less the trailing line break of a
// file and the trailing line breaks of a command's output; an empty
// secret is an error. Its errors are Resolve's.
func (s Secret) read(ctx context.Context) (string, error) {
	var v string
	switch {
	case s.Env != "":
		val, ok := os.LookupEnv(s.Env)
		if !ok {
			return "", fmt.Errorf("secret: environment variable %s is not set", s.Env)
		}
		v = val
	case s.File != "":
		b, err := readSecretFile(s.File)
		if err != nil {
			return "", err
		}
		v = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	case s.Command != "":
		out, err := runSecretCommand(ctx, s.Command)
		if err != nil {
			return "", err
		}
		v = strings.TrimRight(out, "\r\n")
		if v == "" {
			return "", errors.New("secret: the command printed nothing on its standard output")
		}
	case s.Value != "":
		v = s.Value
	default:
		return "", errors.New("secret: no source given")
	}
	if v == "" {
		return "", fmt.Errorf("secret: %s is empty", s)
	}
	return v, nil
}

// readSecretFile reads at most maxSecretSize bytes of path. Its errors
// name the file, never its content.
func readSecretFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("secret: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretSize+1))
	if err != nil {
		return nil, fmt.Errorf("secret: %w", err)
	}
	if len(b) > maxSecretSize {
		return nil, fmt.Errorf("secret: file %s is larger than %d KiB: is it the right file?", path, maxSecretSize>>10)
	}
	return b, nil
}

// errOutputTooLong stops a secret command that prints too much.
var errOutputTooLong = errors.New("output too long")

// cappedBuffer keeps at most max bytes and fails the write past them.
type cappedBuffer struct {
	buf  bytes.Buffer
	max  int
	over bool
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	if c.buf.Len()+len(p) > c.max {
		c.over = true
		return 0, errOutputTooLong
	}
	return c.buf.Write(p)
}

// runSecretCommand runs command and returns its standard output. Its errors
// say how the command ended (exit status, signal, timeout) and nothing of
// what it printed.
func runSecretCommand(ctx context.Context, command string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, "/bin/sh", "-c", command)
	stdout := &cappedBuffer{max: maxSecretSize}
	// Stdin and Stderr stay nil (/dev/null): what a helper says about its
	// failure may contain the secret, so it is not kept at all.
	cmd.Stdout = stdout
	// A child of the helper that keeps stdout open (a daemon it starts)
	// must not hold the run once the helper has ended or been killed.
	cmd.WaitDelay = commandWaitDelay
	err := cmd.Run()
	if errors.Is(err, exec.ErrWaitDelay) {
		// The helper itself exited 0: what it printed is complete.
		err = nil
	}
	switch {
	case err == nil && stdout.over:
		return "", fmt.Errorf("secret: command printed more than %d KiB; a password or token is shorter: is it the right command?", maxSecretSize>>10)
	case err == nil:
		return stdout.buf.String(), nil
	case ctx.Err() != nil:
		return "", fmt.Errorf("secret: command stopped: %w", context.Cause(ctx))
	case errors.Is(cctx.Err(), context.DeadlineExceeded):
		return "", fmt.Errorf("secret: command timed out after %v; %s", commandTimeout, hiddenOutput)
	case stdout.over:
		return "", fmt.Errorf("secret: command printed more than %d KiB; a password or token is shorter: is it the right command?", maxSecretSize>>10)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if code := ee.ExitCode(); code >= 0 {
			hint := ""
			switch code {
			case 126:
				hint = ": not executable"
			case 127:
				hint = ": command not found"
			}
			return "", fmt.Errorf("secret: command failed (exit status %d%s); %s", code, hint, hiddenOutput)
		}
		// ProcessState.String is "signal: killed" and the like.
		sig := strings.TrimPrefix(ee.ProcessState.String(), "signal: ")
		return "", fmt.Errorf("secret: command was killed by a signal (%s); %s", sig, hiddenOutput)
	}
	// The shell could not start (or its output could not be read): the
	// error names /bin/sh, not the command.
	return "", fmt.Errorf("secret: command failed: %v", err)
}
