package config

import (
	"fmt"
	"strings"
)

// Templates in secrets: {user}, {host} and {account} in the file and the
// command of a password, a token or a client secret, and in the files of
// an OAuth2App, are replaced with the account's values when the account
// is built, as in destinations (ExpandTemplate), so that one
// password_command: pass show pop/{user} gives each account its own
// secret. Other text in braces is left as it is (a command may hold
// awk '{print $2}'), and so is a template after a backslash (\{user}).

// templateVars returns the values of the templates for a.
func templateVars(a *Account) map[string]string {
	return map[string]string{"user": a.User, "host": a.Host, "account": a.Name}
}

// nextTemplate finds the first known template in s at or after i:
// its start, its end (past the '}') and its name; start < 0 when none.
func nextTemplate(s string, i int, vars map[string]string) (start, end int, name string) {
	for {
		j := strings.IndexByte(s[i:], '{')
		if j < 0 {
			return -1, 0, ""
		}
		j += i
		if k := strings.IndexByte(s[j:], '}'); k > 0 {
			if _, ok := vars[s[j+1:j+k]]; ok {
				return j, j + k + 1, s[j+1 : j+k]
			}
		}
		i = j + 1
	}
}

// expandPath replaces the templates of the secret file path p. A value
// that would change the path's shape (a '/', a '\', a NUL, "." or "..")
// is refused, as ExpandTemplate refuses it.
func expandPath(p string, a *Account) (string, error) {
	vars := templateVars(a)
	var b strings.Builder
	i := 0
	for {
		start, end, name := nextTemplate(p, i, vars)
		if start < 0 {
			break
		}
		if start > 0 && p[start-1] == '\\' {
			b.WriteString(p[i:end])
			i = end
			continue
		}
		v := vars[name]
		if v == "" || v == "." || v == ".." || strings.ContainsAny(v, "/\\\x00") {
			return "", fmt.Errorf("file %q: {%s} = %q cannot be used in a path", p, name, v)
		}
		b.WriteString(p[i:start])
		b.WriteString(v)
		i = end
	}
	if i == 0 {
		return p, nil
	}
	b.WriteString(p[i:])
	return b.String(), nil
}

// expandCommand replaces the templates of the shell command cmd (run with
// /bin/sh -c). A value made only of letters, digits and _ . / + : @ % , = -
// (every ordinary user name, host name and account name) goes in as it
// is. Any other value is single-quoted for the shell, whether the
// template stands bare, inside '...' or inside "..." (the quotes are
// closed around it), so that a user name cannot inject shell syntax; where
// the shell would expand the value again, inside $(...), `...`, ${...}, or
// a here-document, such a value is refused instead. Templates in a
// comment are left alone. The error quotes the value (a user, host or
// account name), never the command.
func expandCommand(cmd string, a *Account) (string, error) {
	vars := templateVars(a)
	if start, _, _ := nextTemplate(cmd, 0, vars); start < 0 {
		return cmd, nil
	}
	const (
		bare = iota
		single
		double
	)
	state := bare
	complexCtx := false // after $( ` ${ or << outside single quotes
	var b strings.Builder
	for i := 0; i < len(cmd); {
		c := cmd[i]
		switch {
		case c == '{':
			end := strings.IndexByte(cmd[i:], '}')
			name := ""
			if end > 0 {
				name = cmd[i+1 : i+end]
			}
			v, ok := vars[name]
			if !ok {
				b.WriteByte(c)
				i++
				continue
			}
			switch {
			case shellSafe.MatchString(v):
				b.WriteString(v)
			case complexCtx:
				return "", fmt.Errorf("command: {%s} = %q holds characters the shell would interpret, and the command has $(...), `...`, ${...} or a here-document, where it cannot be quoted safely; put {%s} outside them", name, v, name)
			case state == single:
				b.WriteString("'" + singleQuote(v) + "'")
			case state == double:
				b.WriteString(`"` + singleQuote(v) + `"`)
			default:
				b.WriteString(singleQuote(v))
			}
			i += end + 1
			continue
		case state == single:
			if c == '\'' {
				state = bare
			}
		case c == '\\':
			// The escaped byte is copied with it: \{user} stays a
			// literal {user}.
			if i+1 < len(cmd) {
				b.WriteString(cmd[i : i+2])
				i += 2
				continue
			}
		case c == '`':
			complexCtx = true
		case c == '$' && i+1 < len(cmd) && (cmd[i+1] == '(' || cmd[i+1] == '{'):
			complexCtx = true
		case state == double:
			if c == '"' {
				state = bare
			}
		case c == '\'':
			state = single
		case c == '"':
			state = double
		case c == '<' && i+1 < len(cmd) && cmd[i+1] == '<':
			complexCtx = true
		case c == '#' && (i == 0 || strings.IndexByte(" \t\n;&|()<>", cmd[i-1]) >= 0):
			// A comment, to the end of the line: copied as it is, so
			// that a quote in it is not taken for one.
			end := strings.IndexByte(cmd[i:], '\n')
			if end < 0 {
				end = len(cmd) - i
			}
			b.WriteString(cmd[i : i+end])
			i += end
			continue
		}
		b.WriteByte(c)
		i++
	}
	return b.String(), nil
}

// singleQuote returns s in single quotes for a POSIX shell.
func singleQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// expandSecret expands the templates of s's file or command for a; what
// names the secret in errors ("password_command").
func expandSecret(s Secret, a *Account, what string) (Secret, error) {
	var err error
	switch {
	case s.File != "":
		s.File, err = expandPath(s.File, a)
	case s.Command != "":
		s.Command, err = expandCommand(s.Command, a)
	}
	if err != nil {
		return s, fmt.Errorf("%s: %w", what, err)
	}
	return s, nil
}

// expandSecrets expands the templates of every secret file and command
// of a, and of its OAuth2App's files.
func (a *Account) expandSecrets() error {
	var err error
	for _, s := range []struct {
		what string
		p    *Secret
	}{
		{"password", &a.Password},
		{"oauth2_token", &a.OAuth2Token},
		{"to_password", &a.ToPassword},
		{"to_oauth2_token", &a.ToOAuth2Token},
	} {
		if *s.p, err = expandSecret(*s.p, a, s.what); err != nil {
			return err
		}
	}
	app := a.OAuth2App // a copy made for this account by build
	if app == nil {
		return nil
	}
	if app.ClientSecret, err = expandSecret(app.ClientSecret, a, "oauth2_client_secret"); err != nil {
		return err
	}
	for _, f := range []struct {
		what string
		p    *string
	}{
		{"oauth2_client_cert", &app.ClientCert},
		{"oauth2_service_account", &app.ServiceAccount},
	} {
		if *f.p == "" {
			continue
		}
		if *f.p, err = expandPath(*f.p, a); err != nil {
			return fmt.Errorf("%s: %w", f.what, err)
		}
	}
	return nil
}
