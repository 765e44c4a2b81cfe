package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Secret says where a password or token comes from. At most one field is
// set. Value is only filled from a CSV or YAML file that holds the secret
// itself (discouraged, but common in migration spreadsheets); a secret is
// never taken from a command-line argument.
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

// String describes the source without revealing the secret.
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

// CommandTimeout bounds a secret command.
const CommandTimeout = 30 * time.Second

// Resolve reads the secret. An empty secret is an error: an unset variable
// or an empty file is a mistake, not a blank password. The error never
// contains the secret or the command's output.
func (s Secret) Resolve(ctx context.Context) (string, error) {
	var v string
	switch {
	case s.Env != "":
		val, ok := os.LookupEnv(s.Env)
		if !ok {
			return "", fmt.Errorf("secret: environment variable %s is not set", s.Env)
		}
		v = val
	case s.File != "":
		b, err := os.ReadFile(s.File)
		if err != nil {
			return "", fmt.Errorf("secret: %w", err)
		}
		v = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	case s.Command != "":
		ctx, cancel := context.WithTimeout(ctx, CommandTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "/bin/sh", "-c", s.Command)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			msg := strings.TrimSpace(stderr.String())
			if len(msg) > 200 {
				msg = msg[:200] + "..."
			}
			if msg != "" {
				return "", fmt.Errorf("secret: command failed: %v: %s", err, msg)
			}
			return "", fmt.Errorf("secret: command failed: %v", err)
		}
		v = strings.TrimRight(stdout.String(), "\r\n")
	case s.Value != "":
		v = s.Value
	default:
		return "", errors.New("secret: no source given")
	}
	if v == "" {
		return "", fmt.Errorf("secret: %s is empty", s)
	}
	if strings.ContainsAny(v, "\r\n\x00") {
		return "", fmt.Errorf("secret: %s contains a line break or NUL", s)
	}
	return v, nil
}
