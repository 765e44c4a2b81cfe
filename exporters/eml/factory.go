package eml

import (
	"context"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/location"
)

// Factory is the eml destination kind for the registry (package
// exporters/all): specs "eml:DIR".
func Factory() location.Factory {
	return location.Factory{
		Kind:    "eml",
		Schemes: []string{"eml"},
		Usage:   "eml:DIR",
		Help:    "one .eml file per message under DIR/ACCOUNT/",
		Parse: func(spec string) (location.Spec, error) {
			s, err := location.ParseFile("eml", spec)
			// One folder per account under the root: accounts share
			// the root by design.
			s.Shared = true
			return s, err
		},
		Open: func(ctx context.Context, s location.Spec, id string, env location.Env) (exporters.Exporter, error) {
			return New(s.(location.FileSpec).Path, &Options{ID: id, ReadOnly: env.ReadOnly})
		},
		Check: func(_ context.Context, s location.Spec, _ location.Env, need location.Need) ([]string, error) {
			return location.CheckPath(s.(location.FileSpec).Path, false, need)
		},
	}
}
