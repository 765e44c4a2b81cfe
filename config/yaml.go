package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxYAMLSize bounds a YAML config. The whole file is parsed into memory
// (a node tree several times its size); a long list of accounts belongs in
// a CSV (--accounts), which is read row by row.
const maxYAMLSize = 4 << 20

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
// Account fields are the CSV columns; auth and to are lists (or a single
// value). The file's defaults take precedence over d (the flags), and each
// account's own fields over both. Unknown and repeated fields are refused,
// and so are merge keys (<<: use defaults). Anchors and aliases work, but
// the values read through aliases are bounded, so a small file cannot
// expand into a huge one ("billion laughs"); so is the file's size.
//
// Every error names the file and line and says what to fix; none quotes a
// password field. The accounts are checked together with Validate. When r
// is a file (it has a Stat method) that holds passwords and that group or
// others can read, the accounts carry a warning for Warnings.
func LoadYAML(r io.Reader, name string, d Defaults) ([]*Account, error) {
	data, err := io.ReadAll(&limitedReader{r: r, n: maxYAMLSize})
	if errors.Is(err, errTooLarge) {
		return nil, fmt.Errorf("%s: larger than %d MiB: is it the config file? Put a long list of accounts in a CSV file (--accounts)", name, maxYAMLSize>>20)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	root, err := parseYAML(name, data)
	if err != nil {
		return nil, err
	}
	w := &yamlWalker{name: name, budget: 8*len(data) + 1<<20}
	defNode, accNode, err := w.top(root)
	if err != nil {
		return nil, err
	}
	var def accountInput
	if defNode != nil {
		def, err = w.account(defNode, fmt.Sprintf("%s:%d: defaults", name, defNode.Line))
		if err != nil {
			return nil, err
		}
		if err := def.checkSecrets(); err != nil {
			return nil, err
		}
		if def.source != "" || def.user != "" || def.name != "" {
			return nil, fmt.Errorf("%s: source, user and name belong to each account, not to the defaults", def.origin)
		}
	}
	d.Password = def.password.or(d.Password)
	switch {
	case !def.oauth2.IsZero() && !def.app.IsZero():
		return nil, fmt.Errorf("%s: give either oauth2_token_env/_file/_command or oauth2_provider, not both", def.origin)
	case !def.oauth2.IsZero():
		d.OAuth2Token, d.OAuth2App = def.oauth2, OAuth2App{}
	case !def.app.IsZero():
		d.OAuth2Token, d.OAuth2App = Secret{}, def.app.or(d.OAuth2App)
	}
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
	if def.provider != "" {
		d.Provider = def.provider
	}
	inline := def.hasInlineSecret()
	var out []*Account
	share := newTokenShare()
	if accNode != nil {
		// built maps an account item's node to its account: an item that
		// is an alias (*NAME) of an earlier item is that same account
		// again, a duplicate that Validate would refuse, and is refused
		// at once, before it is built (a file of many such aliases is
		// otherwise built account by account until the alias budget
		// runs out).
		built := map[*yaml.Node]*Account{}
		for _, item := range accNode.Content {
			if item.Kind == yaml.AliasNode {
				if prev := built[item.Alias]; prev != nil {
					return nil, fmt.Errorf("%s:%d: account %s is already defined at %s; give one of them a distinct name", name, item.Line, prev.Name, prev.Origin)
				}
			}
			in, err := w.account(item, fmt.Sprintf("%s:%d", name, item.Line))
			if err != nil {
				return nil, err
			}
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
			inline = inline || in.hasInlineSecret()
			a, err := in.build(d, share)
			if err != nil {
				return nil, err
			}
			built[item] = a
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no accounts: want an accounts: list, e.g.\n  accounts:\n    - source: pop3s://alice@mail.example.org", name)
	}
	if err := Validate(out); err != nil {
		return nil, err
	}
	if inline {
		setFileWarning(out, looseFileWarning(r, name, "config file", " holds passwords and"))
	}
	return out, nil
}

// parseYAML parses the one YAML document of data into a node tree. It
// never decodes into Go values (where yaml.v3 would quote offending values
// in its errors) and turns a parser panic into an error.
func parseYAML(name string, data []byte) (root *yaml.Node, err error) {
	defer func() {
		if recover() != nil {
			// yaml.v3 panics on a few malformed inputs instead of
			// failing; the panic value is not shown (it may quote the
			// input).
			root, err = nil, fmt.Errorf("%s: not valid YAML (the parser gave up on it); check its syntax, e.g. with yamllint", name)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty file: want an accounts: list", name)
		}
		return nil, yamlSyntaxError(name, err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		return nil, fmt.Errorf("%s:%d: a second YAML document (after ---); put every account in the one accounts: list", name, next.Line)
	case !errors.Is(err, io.EOF):
		return nil, yamlSyntaxError(name, err)
	}
	root = &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil, fmt.Errorf("%s: empty file: want an accounts: list", name)
		}
		root = root.Content[0]
	}
	return root, nil
}

var (
	yamlLineError     = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	yamlUnknownAnchor = regexp.MustCompile(`unknown anchor '.*' referenced`)
)

// yamlSyntaxError turns a yaml.v3 parse error into "FILE:LINE: ...". The
// parser's messages are fixed texts, but for an unknown anchor, whose name
// is dropped: a password that starts with '*' written without quotes is
// read as an alias, and its name is the rest of the password.
func yamlSyntaxError(name string, err error) error {
	msg := err.Error()
	if yamlUnknownAnchor.MatchString(msg) {
		return fmt.Errorf("%s: an alias (*NAME) refers to no anchor (&NAME) defined before it; a value that starts with * or & must be quoted", name)
	}
	if m := yamlLineError.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("%s:%s: %s (YAML syntax)", name, m[1], m[2])
	}
	return fmt.Errorf("%s: %s", name, strings.TrimPrefix(msg, "yaml: "))
}

// yamlWalker reads the node tree of a config file.
type yamlWalker struct {
	name string
	// budget is what is left of the bytes of values that may be read,
	// aliases included (an alias reads its anchor's value again).
	budget int
}

var yamlTopKeys = []string{"defaults", "accounts"}

// top returns the defaults mapping and the accounts sequence of root;
// either may be nil.
func (w *yamlWalker) top(root *yaml.Node) (defaults, accounts *yaml.Node, err error) {
	root = deref(root)
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil, nil, fmt.Errorf("%s: empty file: want an accounts: list", w.name)
	}
	if root.Kind != yaml.MappingNode {
		return nil, nil, fmt.Errorf("%s:%d: want a mapping with an accounts: list (and optional defaults:) at the top, not a list or a single value", w.name, root.Line)
	}
	err = w.pairs(root, yamlTopKeys, "key", func(key string, _ int, v *yaml.Node) error {
		if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
			return nil
		}
		switch key {
		case "defaults":
			if v.Kind != yaml.MappingNode {
				return fmt.Errorf("%s:%d: defaults: want a mapping of account fields", w.name, v.Line)
			}
			defaults = v
		case "accounts":
			if v.Kind != yaml.SequenceNode {
				return fmt.Errorf("%s:%d: accounts: want a list, one item (- source: ...) per account", w.name, v.Line)
			}
			accounts = v
		}
		return nil
	})
	return defaults, accounts, err
}

// account reads the fields of one account (or of the defaults) from n.
func (w *yamlWalker) account(n *yaml.Node, origin string) (accountInput, error) {
	in := accountInput{origin: origin}
	n = deref(n)
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return in, fmt.Errorf("%s: an empty account; give its source and the rest", origin)
	}
	if n.Kind != yaml.MappingNode {
		return in, fmt.Errorf("%s: an account is a mapping of fields (source: ..., password_env: ...), not a list or a single value", origin)
	}
	err := w.pairs(n, columnNames, "field", func(key string, line int, v *yaml.Node) error {
		where := fmt.Sprintf("%s:%d: %s", w.name, line, key)
		switch key {
		case "to", "auth":
			items, err := w.list(v, where)
			if err != nil {
				return err
			}
			if key == "to" {
				in.to = items
			} else {
				in.auth = strings.Join(items, ",")
			}
			return nil
		}
		s, err := w.scalar(v, where)
		if err != nil || s == "" {
			return err
		}
		if err := in.set(key, s); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		return nil
	})
	return in, err
}

// pairs calls f for each key (with its line) and dereferenced value of the
// mapping m, after checking that the key is one of known and is not
// repeated.
func (w *yamlWalker) pairs(m *yaml.Node, known []string, what string, f func(key string, line int, v *yaml.Node) error) error {
	isKnown := func(k string) bool {
		for _, c := range known {
			if k == c {
				return true
			}
		}
		return false
	}
	besideKnown := false
	for i := 0; i+1 < len(m.Content); i += 2 {
		if k := deref(m.Content[i]); k.Kind == yaml.ScalarNode && isKnown(k.Value) {
			besideKnown = true
		}
	}
	seen := make(map[string]int)
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := deref(m.Content[i]), deref(m.Content[i+1])
		if err := w.spend(k); err != nil {
			return err
		}
		if k.Kind != yaml.ScalarNode {
			return fmt.Errorf("%s:%d: a %s name must be a plain word, not a list or a mapping", w.name, k.Line, what)
		}
		key := k.Value
		if key == "<<" {
			//lint:ignore ST1005 the message ends with the YAML key to write, defaults:
			return fmt.Errorf("%s:%d: merge keys (<<) are not supported; put shared values under defaults:", w.name, k.Line)
		}
		if !isKnown(key) {
			return fmt.Errorf("%s:%d: %s", w.name, k.Line, unknownName(what, key, "", besideKnown, known))
		}
		if line, dup := seen[key]; dup {
			return fmt.Errorf("%s:%d: %s %s is given twice (lines %d and %d); keep one", w.name, k.Line, what, key, line, k.Line)
		}
		seen[key] = k.Line
		if err := f(key, k.Line, v); err != nil {
			return err
		}
	}
	return nil
}

// scalar returns the text of a single value; "" for null. Its errors do
// not quote the value (it may be a password).
func (w *yamlWalker) scalar(v *yaml.Node, where string) (string, error) {
	if err := w.spend(v); err != nil {
		return "", err
	}
	switch {
	case v.Kind != yaml.ScalarNode:
		return "", fmt.Errorf("%s: want a single value, not a list or a mapping", where)
	case v.Tag == "!!null":
		return "", nil
	case v.Tag == "!!binary":
		return "", fmt.Errorf("%s: !!binary values are not supported; write the value as text", where)
	}
	return v.Value, nil
}

// list returns the items of a list of single values, or the one value of
// a single value.
func (w *yamlWalker) list(v *yaml.Node, where string) ([]string, error) {
	if v.Kind != yaml.SequenceNode {
		s, err := w.scalar(v, where)
		if err != nil || s == "" {
			return nil, err
		}
		return []string{s}, nil
	}
	if err := w.spend(v); err != nil {
		return nil, err
	}
	var out []string
	for i, item := range v.Content {
		s, err := w.scalar(deref(item), fmt.Sprintf("%s, item %d", where, i+1))
		if err != nil {
			return nil, err
		}
		if s == "" {
			return nil, fmt.Errorf("%s, item %d: empty; remove it", where, i+1)
		}
		out = append(out, s)
	}
	return out, nil
}

// spend takes the cost of reading n from the budget.
func (w *yamlWalker) spend(n *yaml.Node) error {
	w.budget -= 16 + len(n.Value)
	if w.budget < 0 {
		//lint:ignore ST1005 the message ends with the YAML key to write, defaults:
		return fmt.Errorf("%s:%d: too much is repeated through aliases (*NAME); write the values out, or put shared values under defaults:", w.name, n.Line)
	}
	return nil
}

// deref returns the node an alias stands for, or n itself.
func deref(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}
