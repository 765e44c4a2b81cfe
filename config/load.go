package config

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/popmigrate/popmigrate/internal/urlsafe"
)

// FromFlags returns the one account described by --source and the other
// flags.
func FromFlags(source, name string, d Defaults) (*Account, error) {
	return FromSource("flags", source, name, d)
}

// FromSource returns the account named name (default USER@HOST) whose
// source is the URL source, with d's secrets, destinations and settings.
// origin says where source and name were found ("flags", "journal
// migration.db"), for the account's Origin and its errors.
func FromSource(origin, source, name string, d Defaults) (*Account, error) {
	in := accountInput{origin: origin, source: source, name: name}
	return in.build(d, nil)
}

// columnNames are the fields of an account in a CSV (columns) or a YAML
// file (keys), in the order help texts list them.
var columnNames = []string{
	"name", "source", "provider", "host", "port", "user", "security",
	"password", "password_env", "password_file", "password_command",
	"oauth2_token_env", "oauth2_token_file", "oauth2_token_command",
	"oauth2_provider", "oauth2_tenant", "oauth2_client_id",
	"oauth2_client_secret_env", "oauth2_client_secret_file", "oauth2_client_secret_command",
	"oauth2_client_cert", "oauth2_service_account",
	"auth", "ca_file", "insecure_skip_verify", "insecure_plaintext", "to",
	"to_password", "to_password_env", "to_password_file", "to_password_command",
	"to_oauth2_token_env", "to_oauth2_token_file", "to_oauth2_token_command",
}

// csvColumns are the columns an accounts CSV may have.
var csvColumns = func() map[string]bool {
	m := make(map[string]bool, len(columnNames))
	for _, c := range columnNames {
		m[c] = true
	}
	return m
}()

// inlineSecretColumns hold a secret itself rather than where to find it.
var inlineSecretColumns = map[string]bool{"password": true, "to_password": true}

// suggest returns the known name that an unknown name is probably a typo
// of ("pasword_env", "Password-Env"), or "".
func suggest(unknown string, known []string) string {
	norm := strings.NewReplacer("-", "_", " ", "_").Replace(strings.ToLower(strings.TrimSpace(unknown)))
	best, bestDist := "", 3
	for _, k := range known {
		if norm == k {
			return k
		}
		if d := editDistance(norm, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b, for short names.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// showableName reports whether an unknown column or key may be quoted in
// an error. A name is only quoted when it sits beside known names (so the
// line really is a header, not a password file given as --accounts) and
// looks like a name: short, one line, no control characters.
func showableName(s string, besideKnown bool) bool {
	return besideKnown && len(s) <= 64 && strings.IndexFunc(s, urlsafe.IsControl) < 0
}

// unknownName describes an unknown column or key for an error: quoted
// with a suggestion when it is safe to show, otherwise by position only.
// where places it ("column 3 (C)"), or is "" when the error's line is
// enough; known lists the valid names.
func unknownName(what, name, where string, besideKnown bool, known []string) string {
	if !showableName(name, besideKnown) {
		subject := "this " + what
		if where != "" {
			subject = where
		}
		return fmt.Sprintf("%s is not a known %s (its text is not shown, since this may not be a %s at all); known: %s", subject, what, what, strings.Join(known, ", "))
	}
	msg := fmt.Sprintf("unknown %s %q", what, name)
	if where != "" {
		msg += " (" + where + ")"
	}
	if s := suggest(name, known); s != "" {
		return msg + fmt.Sprintf("; did you mean %q?", s)
	}
	return msg + "; known: " + strings.Join(known, ", ")
}

func (in *accountInput) set(col, v string) error {
	switch col {
	case "name":
		in.name = v
	case "source":
		in.source = v
	case "provider":
		in.provider = v
	case "host":
		in.host = v
	case "port":
		in.port = v
	case "user":
		in.user = v
	case "security":
		in.security = v
	case "password":
		in.password.Value = v
	case "password_env":
		in.password.Env = v
	case "password_file":
		in.password.File = v
	case "password_command":
		in.password.Command = v
	case "oauth2_token_env":
		in.oauth2.Env = v
	case "oauth2_token_file":
		in.oauth2.File = v
	case "oauth2_token_command":
		in.oauth2.Command = v
	case "oauth2_provider":
		in.app.Provider = v
	case "oauth2_tenant":
		in.app.Tenant = v
	case "oauth2_client_id":
		in.app.ClientID = v
	case "oauth2_client_secret_env":
		in.app.ClientSecret.Env = v
	case "oauth2_client_secret_file":
		in.app.ClientSecret.File = v
	case "oauth2_client_secret_command":
		in.app.ClientSecret.Command = v
	case "oauth2_client_cert":
		in.app.ClientCert = v
	case "oauth2_service_account":
		in.app.ServiceAccount = v
	case "to_password":
		in.toPassword.Value = v
	case "to_password_env":
		in.toPassword.Env = v
	case "to_password_file":
		in.toPassword.File = v
	case "to_password_command":
		in.toPassword.Command = v
	case "to_oauth2_token_env":
		in.toOAuth2.Env = v
	case "to_oauth2_token_file":
		in.toOAuth2.File = v
	case "to_oauth2_token_command":
		in.toOAuth2.Command = v
	case "auth":
		in.auth = v
	case "ca_file":
		in.caFile = v
	case "insecure_skip_verify", "insecure_plaintext":
		b, err := parseBool(v)
		if err != nil {
			return err
		}
		if col == "insecure_skip_verify" {
			in.insecureSkipVerify = &b
		} else {
			in.insecurePlaintext = &b
		}
	case "to":
		in.to = strings.Fields(v)
	default:
		return fmt.Errorf("unknown column")
	}
	return nil
}

// hasInlineSecret reports whether the account's own fields hold a secret
// itself (a password or to_password column or key).
func (in *accountInput) hasInlineSecret() bool {
	return in.password.Value != "" || in.toPassword.Value != ""
}

func (in *accountInput) checkSecrets() error {
	for _, s := range []struct {
		col string
		v   string
	}{{"password", in.password.Value}, {"to_password", in.toPassword.Value}} {
		if strings.ContainsAny(s.v, "\r\n\x00") {
			return fmt.Errorf("%s: %s contains a line break or NUL (its value is not shown)", in.origin, s.col)
		}
	}
	if in.password.count() > 1 {
		return fmt.Errorf("%s: give only one of password, password_env, password_file, password_command", in.origin)
	}
	if in.oauth2.count() > 1 {
		return fmt.Errorf("%s: give only one of oauth2_token_env, oauth2_token_file, oauth2_token_command", in.origin)
	}
	if in.app.ClientSecret.count() > 1 {
		return fmt.Errorf("%s: give only one of oauth2_client_secret_env, oauth2_client_secret_file, oauth2_client_secret_command", in.origin)
	}
	if in.toPassword.count() > 1 {
		return fmt.Errorf("%s: give only one of to_password, to_password_env, to_password_file, to_password_command", in.origin)
	}
	if in.toOAuth2.count() > 1 {
		return fmt.Errorf("%s: give only one of to_oauth2_token_env, to_oauth2_token_file, to_oauth2_token_command", in.origin)
	}
	return nil
}

func parseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "true", "yes", "1":
		return true, nil
	case "false", "no", "0":
		return false, nil
	}
	if len(v) > 64 {
		v = v[:64] + "..."
	}
	return false, fmt.Errorf("%q is not true or false", v)
}

// errTooLarge is returned by a limitedReader past its limit.
var errTooLarge = errors.New("file too large")

// limitedReader reads at most n bytes from r, then fails with errTooLarge
// (io.LimitReader would end with a silent EOF: a cut file must not look
// whole).
type limitedReader struct {
	r io.Reader
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		// One byte more tells a file of exactly the limit from a longer one.
		var b [1]byte
		if _, err := io.ReadFull(l.r, b[:]); err != nil {
			return 0, err
		}
		return 0, errTooLarge
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}
