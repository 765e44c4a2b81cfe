package maildir

import (
	"context"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/location"
)

// Factory is the maildir destination kind for the registry (package
// exporters/all): specs "maildir:DIR".
func Factory() location.Factory {
	return location.Factory{
		Kind:    "maildir",
		Schemes: []string{"maildir"},
		Usage:   "maildir:DIR",
		Help:    "a Maildir (cur/ new/ tmp/), created if missing",
		Parse: func(spec string) (location.Spec, error) {
			return location.ParseFile("maildir", spec)
		},
		Open: func(ctx context.Context, s location.Spec, id string, env location.Env) (exporters.Exporter, error) {
			return New(s.(location.FileSpec).Path, &Options{ID: id, ReadOnly: env.ReadOnly})
		},
		Check: func(_ context.Context, s location.Spec, _ location.Env, need location.Need) ([]string, error) {
			return location.CheckPath(s.(location.FileSpec).Path, false, need)
		},
	}
}
