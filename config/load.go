package config

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"

	"gopkg.in/yaml.v3"
)

// FromFlags returns the one account described by --source and the other
// flags.
func FromFlags(source, name string, d Defaults) (*Account, error) {
	in := accountInput{origin: "flags", source: source, name: name}
	return in.build(d)
}

// csvColumns are the columns an accounts CSV may have.
var csvColumns = map[string]bool{
	"name": true, "source": true, "host": true, "port": true, "user": true, "security": true,
	"password": true, "password_env": true, "password_file": true, "password_command": true,
	"oauth2_token_env": true, "oauth2_token_file": true, "oauth2_token_command": true,
	"auth": true, "ca_file": true, "insecure_skip_verify": true, "insecure_plaintext": true, "to": true,
	"to_password": true, "to_password_env": true, "to_password_file": true, "to_password_command": true,
	"to_oauth2_token_env": true, "to_oauth2_token_file": true, "to_oauth2_token_command": true,
}

// LoadCSV reads accounts from a CSV file with a header row. Columns
// (order free, unknown ones refused): source (pop3s://USER@HOST[:PORT]) or
// host, port, user, security (tls|starttls|plain); password_env,
// password_file, password_command or password; oauth2_token_env,
// oauth2_token_file or oauth2_token_command; auth; ca_file; name;
// insecure_skip_verify, insecure_plaintext (true/false); to (destinations,
// several separated by spaces). Empty cells take the defaults. Lines
// starting with '#' are comments. name is used in errors ("accounts.csv").
func LoadCSV(r io.Reader, name string, d Defaults) ([]*Account, error) {
	cr := csv.NewReader(r)
	cr.Comment = '#'
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if err == io.EOF {
		return nil, fmt.Errorf("%s: empty file: want a header row such as source,password_env,to", name)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	for i := range header {
		header[i] = strings.ToLower(strings.TrimSpace(header[i]))
		if !csvColumns[header[i]] {
			return nil, fmt.Errorf("%s:1: unknown column %q", name, header[i])
		}
	}
	var out []*Account
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if len(rec) != len(header) {
			return nil, fmt.Errorf("%s:%d: %d fields, the header has %d", name, line, len(rec), len(header))
		}
		in := accountInput{origin: fmt.Sprintf("%s:%d", name, line)}
		for i, col := range header {
			v := strings.TrimSpace(rec[i])
			if v == "" {
				continue
			}
			if err := in.set(col, v); err != nil {
				return nil, fmt.Errorf("%s: column %s: %w", in.origin, col, err)
			}
		}
		if err := in.checkSecrets(); err != nil {
			return nil, err
		}
		a, err := in.build(d)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no accounts after the header row", name)
	}
	return out, nil
}

func (in *accountInput) set(col, v string) error {
	switch col {
	case "name":
		in.name = v
	case "source":
		in.source = v
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

func (in *accountInput) checkSecrets() error {
	if in.password.count() > 1 {
		return fmt.Errorf("%s: give only one of password, password_env, password_file, password_command", in.origin)
	}
	if in.oauth2.count() > 1 {
		return fmt.Errorf("%s: give only one of oauth2_token_env, oauth2_token_file, oauth2_token_command", in.origin)
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
	return false, fmt.Errorf("%q is not true or false", v)
}

// yamlAccount is one account in a YAML config.
type yamlAccount struct {
	Name               string   `yaml:"name"`
	Source             string   `yaml:"source"`
	Host               string   `yaml:"host"`
	Port               int      `yaml:"port"`
	User               string   `yaml:"user"`
	Security           string   `yaml:"security"`
	Password           string   `yaml:"password"`
	PasswordEnv        string   `yaml:"password_env"`
	PasswordFile       string   `yaml:"password_file"`
	PasswordCommand    string   `yaml:"password_command"`
	OAuth2TokenEnv     string   `yaml:"oauth2_token_env"`
	OAuth2TokenFile    string   `yaml:"oauth2_token_file"`
	OAuth2TokenCommand string   `yaml:"oauth2_token_command"`
	ToPassword         string   `yaml:"to_password"`
	ToPasswordEnv      string   `yaml:"to_password_env"`
	ToPasswordFile     string   `yaml:"to_password_file"`
	ToPasswordCommand  string   `yaml:"to_password_command"`
	ToOAuth2TokenEnv   string   `yaml:"to_oauth2_token_env"`
	ToOAuth2TokenFile  string   `yaml:"to_oauth2_token_file"`
	ToOAuth2TokenCmd   string   `yaml:"to_oauth2_token_command"`
	Auth               []string `yaml:"auth"`
	CAFile             string   `yaml:"ca_file"`
	InsecureSkipVerify *bool    `yaml:"insecure_skip_verify"`
	InsecurePlaintext  *bool    `yaml:"insecure_plaintext"`
	To                 []string `yaml:"to"`
}

type yamlFile struct {
	Defaults yamlAccount `yaml:"defaults"`
	Accounts []yamlNode  `yaml:"accounts"`
}

type yamlNode struct {
	yamlAccount `yaml:",inline"`
	line        int
}

func (n *yamlNode) UnmarshalYAML(v *yaml.Node) error {
	n.line = v.Line
	// The decoder's KnownFields does not reach into a custom unmarshaler,
	// so a misspelt key is caught here.
	if v.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(v.Content); i += 2 {
			k := v.Content[i]
			if !csvColumns[k.Value] {
				return fmt.Errorf("line %d: field %s not found in account", k.Line, k.Value)
			}
		}
	}
	return v.Decode(&n.yamlAccount)
}

func (y *yamlAccount) input(origin string) accountInput {
	in := accountInput{
		origin: origin, name: y.Name, source: y.Source, host: y.Host, user: y.User,
		security: y.Security, caFile: y.CAFile, to: y.To,
		insecureSkipVerify: y.InsecureSkipVerify, insecurePlaintext: y.InsecurePlaintext,
		password:   Secret{Env: y.PasswordEnv, File: y.PasswordFile, Command: y.PasswordCommand, Value: y.Password},
		oauth2:     Secret{Env: y.OAuth2TokenEnv, File: y.OAuth2TokenFile, Command: y.OAuth2TokenCommand},
		toPassword: Secret{Env: y.ToPasswordEnv, File: y.ToPasswordFile, Command: y.ToPasswordCommand, Value: y.ToPassword},
		toOAuth2:   Secret{Env: y.ToOAuth2TokenEnv, File: y.ToOAuth2TokenFile, Command: y.ToOAuth2TokenCmd},
		auth:       strings.Join(y.Auth, ","),
	}
	if y.Port != 0 {
		in.port = fmt.Sprint(y.Port)
	}
	return in
}

// LoadYAML reads a config file:
//
//	defaults:            # optional, any account field
//	  to: ["maildir:/srv/mail/{user}"]
//	  ca_file: /etc/popmigrate/ca.pem
//	accounts:
//	  - source: pop3s://alice@mail.example.org
//	    password_file: /run/secrets/alice
//	  - host: mail.example.org
//	    user: bob
//	    password_env: BOB_PASSWORD
//
// Account fields are the CSV columns; auth and to are lists. The file's
// defaults take precedence over d (the flags), and each account's own
// fields over both. Unknown fields are refused.
func LoadYAML(r io.Reader, name string, d Defaults) ([]*Account, error) {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	var f yamlFile
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty file: want an accounts: list", name)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	def := f.Defaults.input(name + ": defaults")
	if err := def.checkSecrets(); err != nil {
		return nil, err
	}
	if def.source != "" || def.user != "" || def.name != "" {
		return nil, fmt.Errorf("%s: defaults: source, user and name belong to each account", name)
	}
	d.Password = def.password.or(d.Password)
	d.OAuth2Token = def.oauth2.or(d.OAuth2Token)
	d.ToPassword = def.toPassword.or(d.ToPassword)
	d.ToOAuth2Token = def.toOAuth2.or(d.ToOAuth2Token)
	if def.auth != "" {
		d.Auth = splitList(strings.ToUpper(def.auth))
	}
	if def.caFile != "" {
		d.CAFile = def.caFile
	}
	if def.insecureSkipVerify != nil {
		d.InsecureSkipVerify = *def.insecureSkipVerify
	}
	if def.insecurePlaintext != nil {
		d.InsecurePlaintext = *def.insecurePlaintext
	}
	if len(def.to) > 0 {
		d.To = def.to
	}
	var out []*Account
	for _, n := range f.Accounts {
		in := n.yamlAccount.input(fmt.Sprintf("%s:%d", name, n.line))
		if in.source == "" {
			if in.host == "" {
				in.host = def.host
			}
			if in.port == "" {
				in.port = def.port
			}
			if in.security == "" {
				in.security = def.security
			}
		}
		if err := in.checkSecrets(); err != nil {
			return nil, err
		}
		a, err := in.build(d)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no accounts: want an accounts: list", name)
	}
	return out, nil
}
