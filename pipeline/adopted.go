package pipeline

import (
	"context"
	"fmt"

	"github.com/popmigrate/popmigrate/journal"
)

// withoutAdopted returns the keys of a listing of account's mailbox
// without those the account adopted from another POP3 client's state
// (journal.Adopt): popmigrate never downloads them, so verify must not
// expect a copy of them in any destination. It returns a new slice.
func withoutAdopted(ctx context.Context, j *journal.Journal, account string, uidls []string) ([]string, error) {
	adopted, err := j.Adopted(ctx, account)
	if err != nil {
		return nil, fmt.Errorf("verify: account %q: %w", account, err)
	}
	out := make([]string, 0, len(uidls))
	for _, u := range uidls {
		if !adopted[u] {
			out = append(out, u)
		}
	}
	return out, nil
}
