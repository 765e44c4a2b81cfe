package mbox

import (
	"context"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/location"
)

// Factory is the mbox destination kind for the registry (package
// exporters/all): specs "mbox:FILE".
func Factory() location.Factory {
	return location.Factory{
		Kind:    "mbox",
		Schemes: []string{"mbox"},
		Usage:   "mbox:FILE",
		Help:    "an mboxrd file, with an index FILE.pmidx",
		Parse: func(spec string) (location.Spec, error) {
			return location.ParseFile("mbox", spec)
		},
		Open: func(ctx context.Context, s location.Spec, id string, env location.Env) (exporters.Exporter, error) {
			return New(s.(location.FileSpec).Path, &Options{ID: id, ReadOnly: env.ReadOnly})
		},
		Check: func(_ context.Context, s location.Spec, _ location.Env, need location.Need) ([]string, error) {
			return location.CheckPath(s.(location.FileSpec).Path, true, need)
		},
	}
}
