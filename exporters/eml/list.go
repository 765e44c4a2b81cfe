package eml

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/popmigrate/popmigrate/exporters"
)

var _ exporters.Lister = (*Exporter)(nil)

// List returns every message file in the folder of account
// (AccountDir(account)) as it is now, read afresh rather than from the
// Exporter's index: regular files named <date>-<key>.eml. Other entries
// (TmpDir, hidden files, files another program put there) are not listed.
// Two files holding one key are both listed. An account without a folder
// has no messages. List checks ctx between directory reads.
func (e *Exporter) List(ctx context.Context, account string) ([]exporters.Listed, error) {
	acct := AccountDir(account)
	wrap := func(err error) error {
		return fmt.Errorf("eml: list account %q in %s: %w", account, e.dir, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, wrap(err)
	}
	if err := e.begin(); err != nil {
		return nil, wrap(err)
	}
	defer e.ops.RUnlock()
	d, err := e.root.Open(acct)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, wrap(err)
	}
	defer d.Close()
	var out []exporters.Listed
	for {
		if err := ctx.Err(); err != nil {
			return nil, wrap(err)
		}
		ents, rerr := d.ReadDir(readDirN)
		for _, ent := range ents {
			key, ok := parseName(ent.Name())
			if !ok || !ent.Type().IsRegular() {
				continue
			}
			out = append(out, exporters.Listed{Key: key, Ref: acct + "/" + ent.Name()})
		}
		if rerr == io.EOF {
			return out, nil
		}
		if rerr != nil {
			return nil, wrap(fmt.Errorf("read %s: %w", e.w.Path(acct), rerr))
		}
	}
}
