package mbox

import (
	"context"
	"fmt"

	"github.com/popmigrate/popmigrate/exporters"
)

var _ exporters.Lister = (*Exporter)(nil)

// List returns every entry of the index, in file order: the messages Put
// wrote, those of earlier Exporters on the same file included, with their
// keys and Refs. account is not used: an mbox file holds one account.
// Entries another program appended are not in the index and are not
// listed; neither are entries New or Resume dropped (past the end of the
// file, or past the committed state).
func (e *Exporter) List(ctx context.Context, account string) ([]exporters.Listed, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("mbox: list %s: %w", e.path, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, fmt.Errorf("mbox: list %s: %w", e.path, ErrClosed)
	}
	out := make([]exporters.Listed, len(e.entries))
	for i, en := range e.entries {
		out[i] = exporters.Listed{Key: en.key, Ref: en.ref()}
	}
	return out, nil
}
