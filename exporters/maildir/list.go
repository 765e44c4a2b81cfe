package maildir

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/popmigrate/popmigrate/exporters"
)

var _ exporters.Lister = (*Exporter)(nil)

// List returns every message file the Exporter writes that the Maildir
// holds now: new/<key>.popmigrate and cur/<key>.popmigrate with any info
// part, as regular files. account is not used: a Maildir holds one
// account. Other entries (hidden names, files another program delivered,
// links, folders) are not listed: they are not popmigrate's. A key found
// in both new/ and cur/ is listed twice. List checks ctx between
// directory reads.
func (e *Exporter) List(ctx context.Context, account string) ([]exporters.Listed, error) {
	wrap := func(err error) error { return fmt.Errorf("maildir: list %s: %w", e.dir, err) }
	if err := ctx.Err(); err != nil {
		return nil, wrap(err)
	}
	if err := e.begin(); err != nil {
		return nil, wrap(err)
	}
	defer e.ops.RUnlock()
	var out []exporters.Listed
	for _, sub := range []string{"new", "cur"} {
		d, err := e.w.OpenDir(sub)
		if err != nil {
			return nil, wrap(err)
		}
		for {
			if err := ctx.Err(); err != nil {
				d.Close()
				return nil, wrap(err)
			}
			ents, rerr := d.ReadDir(readDirN)
			for _, ent := range ents {
				ref := sub + "/" + ent.Name()
				base, err := parseRef(ref)
				if err != nil || !ent.Type().IsRegular() {
					continue
				}
				out = append(out, exporters.Listed{Key: strings.TrimSuffix(base, Suffix), Ref: ref})
			}
			if rerr == io.EOF {
				break
			}
			if rerr != nil {
				d.Close()
				return nil, wrap(fmt.Errorf("read %s: %w", e.path(sub), rerr))
			}
		}
		if err := d.Close(); err != nil {
			return nil, wrap(err)
		}
	}
	return out, nil
}
