// Package location is the registry of destination kinds: for each kind its
// schemes, its spec parser, its opener and its help text. The registry is
// built in one place (package exporters/all) from an explicit list, without
// init() side effects, as restic builds its backends in
// internal/backend/location and internal/backend/all. Adding a destination
// kind is one package with a Factory and one line in that list; config,
// pipeline and cmd know no kind by name.
package location

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/internal/urlsafe"
)

// Spec is a parsed destination spec: what one kind's parser makes of a
// string such as "maildir:/srv/mail/alice".
type Spec interface {
	// ID is the destination id recorded in the journal, stable across
	// runs for the same destination and free of secrets.
	ID() string
	// Place names where the destination writes, for refusing two
	// accounts that would write to one place: two specs with the same
	// non-empty Place are the same place. An empty Place is a
	// destination meant to be shared (an eml tree keeps one folder per
	// account).
	Place() string
	// Login reports whether opening it logs in to a server, so the
	// account needs credentials for it (Env.Password or Env.OAuth2Token).
	Login() bool
}

// Env is what an opener gets beside the spec: the settings of the run and
// the account's credentials for destinations that log in. Kinds ignore
// what they do not use.
type Env struct {
	// ReadOnly opens the destination for reading only (verify): nothing
	// is created, locked, repaired or written.
	ReadOnly bool
	// Password and OAuth2Token return the account's credentials for the
	// destination; nil when the account has none of that kind. They are
	// called only by kinds that log in, when they do.
	Password, OAuth2Token func(ctx context.Context) (string, error)
	// OAuth2Rejected, when not nil, tells the account's token source that
	// the server refused token, a token OAuth2Token returned, so that its
	// next call asks for a new one. Kinds that log in call OAuth2Token at
	// each login, and after a refusal OAuth2Rejected, then OAuth2Token
	// once more.
	OAuth2Rejected func(token string)
	// CAFile is a PEM file of CA certificates to trust instead of the
	// system roots; InsecureSkipVerify turns certificate checks off.
	CAFile             string
	InsecureSkipVerify bool
	// Timeout bounds each network operation; 0 means the kind's default.
	Timeout time.Duration
	// Flags are set on stored messages by kinds that keep flags; nil
	// means the kind's default, empty means none.
	Flags []string
	// DateFrom chooses the date a kind gives a message where it keeps one
	// ("received", "date" or "download"); "" means "received".
	DateFrom string
	// Conns is how many connections a networked kind opens; 0 means its
	// default.
	Conns int
}

// Factory is one destination kind.
type Factory struct {
	// Kind names the kind: Properties().Kind of what Open returns.
	Kind string
	// Schemes are the prefixes before the first ':' of the specs of this
	// kind ("maildir"; "imap" and "imaps").
	Schemes []string
	// Usage is the form of a spec ("maildir:DIR") and Help says in a few
	// words what it is, for --help.
	Usage, Help string
	// Parse parses a spec whose scheme is one of Schemes. Its errors
	// quote the spec without any password in it.
	Parse func(spec string) (Spec, error)
	// Open opens the destination a Parse of this factory returned, with
	// id as its Properties().ID.
	Open func(ctx context.Context, s Spec, id string, env Env) (exporters.Exporter, error)
	// Check, when set, checks that a run could write need to the
	// destination, creating and changing nothing (popmigrate check). It
	// returns what deserves a look, and an error when a run would fail.
	Check func(ctx context.Context, s Spec, env Env, need Need) (warnings []string, err error)
}

// Need is what a run will ask of a destination: the bytes of the messages
// it will store and the largest of them.
type Need struct {
	Bytes, Largest int64
}

// Registry is the list of destination kinds. Its methods are safe for
// concurrent use; it does not change after NewRegistry.
type Registry struct {
	factories []Factory
	byScheme  map[string]*Factory
}

// NewRegistry returns the registry of fs. Two factories claiming one
// scheme, or a factory without Parse or Open, are a programming error:
// NewRegistry panics.
func NewRegistry(fs ...Factory) *Registry {
	r := &Registry{factories: fs, byScheme: map[string]*Factory{}}
	for i := range r.factories {
		f := &r.factories[i]
		if f.Parse == nil || f.Open == nil || len(f.Schemes) == 0 {
			panic(fmt.Sprintf("location: factory %q needs schemes, Parse and Open", f.Kind))
		}
		for _, s := range f.Schemes {
			if _, dup := r.byScheme[s]; dup {
				panic(fmt.Sprintf("location: scheme %q registered twice", s))
			}
			r.byScheme[s] = f
		}
	}
	return r
}

// Location is a parsed destination spec and the factory of its kind.
type Location struct {
	Spec
	factory *Factory
}

// Kind returns the kind of the destination.
func (l Location) Kind() string { return l.factory.Kind }

// Parse parses a destination spec (templates already expanded) with the
// factory its scheme names. An unknown or missing scheme is an error that
// lists the kinds this registry knows; no error repeats a password.
func (r *Registry) Parse(spec string) (Location, error) {
	shown := urlsafe.RedactUserinfo(spec)
	scheme, rest, ok := strings.Cut(spec, ":")
	if !ok || rest == "" {
		return Location{}, fmt.Errorf("destination %q: want one of %s", shown, r.usages())
	}
	f, ok := r.byScheme[scheme]
	if !ok {
		return Location{}, fmt.Errorf("destination %q: unknown kind %q (want one of %s)", shown, scheme, r.usages())
	}
	s, err := f.Parse(spec)
	if err != nil {
		return Location{}, err
	}
	return Location{Spec: s, factory: f}, nil
}

// Describe parses spec and returns what the rest of popmigrate needs to
// know of it without opening it: its id, where it writes (see Spec.Place)
// and whether it logs in.
func (r *Registry) Describe(spec string) (id, place string, login bool, err error) {
	l, err := r.Parse(spec)
	if err != nil {
		return "", "", false, err
	}
	return l.ID(), l.Place(), l.Login(), nil
}

// Open parses spec and opens it with env. The exporter's Properties().ID is
// the spec's ID.
func (r *Registry) Open(ctx context.Context, spec string, env Env) (exporters.Exporter, error) {
	l, err := r.Parse(spec)
	if err != nil {
		return nil, err
	}
	e, err := l.factory.Open(ctx, l.Spec, l.ID(), env)
	if err != nil {
		return nil, fmt.Errorf("destination %s: %w", l.ID(), err)
	}
	return e, nil
}

// Check parses spec and checks it with its kind's Check (see Factory);
// a kind without one is checked by parsing alone.
func (r *Registry) Check(ctx context.Context, spec string, env Env, need Need) ([]string, error) {
	l, err := r.Parse(spec)
	if err != nil {
		return nil, err
	}
	if l.factory.Check == nil {
		return nil, nil
	}
	return l.factory.Check(ctx, l.Spec, env, need)
}

// Kinds returns the kinds of the registry, in registration order.
func (r *Registry) Kinds() []string {
	out := make([]string, len(r.factories))
	for i, f := range r.factories {
		out[i] = f.Kind
	}
	return out
}

// Help returns one line per kind, "  USAGE  HELP", aligned, for --help.
func (r *Registry) Help() string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	for _, f := range r.factories {
		fmt.Fprintf(tw, "  %s\t%s\n", f.Usage, f.Help)
	}
	tw.Flush()
	return b.String()
}

func (r *Registry) usages() string {
	us := make([]string, len(r.factories))
	for i, f := range r.factories {
		us[i] = f.Usage
	}
	return strings.Join(us, ", ")
}

// FileSpec is the spec of a destination in the file system:
// "KIND:PATH", the path made absolute.
type FileSpec struct {
	Kind, Path string
	// Shared says that accounts may share the path (a tree with one folder
	// per account): its Place is empty.
	Shared bool
}

// ID returns "KIND:PATH".
func (s FileSpec) ID() string { return s.Kind + ":" + s.Path }

// Place returns the ID, or "" for a Shared spec.
func (s FileSpec) Place() string {
	if s.Shared {
		return ""
	}
	return s.ID()
}

// Login returns false: a file destination logs in nowhere.
func (FileSpec) Login() bool { return false }

// ParseFile parses "KIND:PATH" for a file destination kind: the path made
// absolute, a NUL refused.
func ParseFile(kind, spec string) (FileSpec, error) {
	_, p, _ := strings.Cut(spec, ":")
	if p == "" {
		return FileSpec{}, fmt.Errorf("destination %q: no path (want %s:PATH)", spec, kind)
	}
	if strings.ContainsRune(p, 0) {
		return FileSpec{}, fmt.Errorf("destination %q: the path contains a NUL", spec)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return FileSpec{}, fmt.Errorf("destination %q: %v", spec, err)
	}
	return FileSpec{Kind: kind, Path: abs}, nil
}

// ErrNoRegistry is returned by users of a nil *Registry.
var ErrNoRegistry = errors.New("location: no destination registry")
