package exportertest

import (
	"context"
	"testing"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/location"
)

// Through returns an OpenFunc that opens each destination as popmigrate
// does: through the registry entry f of its kind (a registry holding f
// alone, since a kind's own tests cannot import exporters/all), with the
// spec spec(dir) and env, env.ReadOnly set as the suite asks. The suite
// then checks the factory's parser and opener along with the exporter.
func Through(f location.Factory, spec func(dir string) string, env location.Env) OpenFunc {
	r := location.NewRegistry(f)
	return func(t testing.TB, dir string, readOnly bool) (exporters.Exporter, error) {
		e := env
		e.ReadOnly = readOnly
		ex, err := r.Open(context.Background(), spec(dir), e)
		if err == nil && ex.Properties().Kind != f.Kind {
			t.Errorf("%s: opened a destination of kind %q", spec(dir), ex.Properties().Kind)
		}
		return ex, err
	}
}
