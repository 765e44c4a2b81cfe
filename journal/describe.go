package journal

import (
	"context"
	"database/sql"
	"fmt"
)

// AccountDestination is a destination an account was run with.
type AccountDestination struct {
	// ID is the destination id deliveries name.
	ID string
	// Spec opens it ("maildir:/srv/mail/alice", "imaps://alice@h/INBOX"):
	// templates expanded, never a secret.
	Spec string
}

// AccountInfo is an account as the journal describes it.
type AccountInfo struct {
	Name string
	// Source is the POP3 server URL (no password); "" when the account
	// never reached a listing.
	Source       string
	Destinations []AccountDestination // ordered by id
}

// SaveDestinations records that account runs with dests, adding them to
// those recorded before (a destination left out of a later run still
// holds its copies). A spec that carries a password is refused.
func (j *Journal) SaveDestinations(ctx context.Context, account, source string, dests []AccountDestination) error {
	if account == "" {
		return fmt.Errorf("journal: save destinations: empty account")
	}
	if err := j.writable("save destinations"); err != nil {
		return err
	}
	if hasPassword(source) {
		return fmt.Errorf("journal: save destinations of account %q: source URL carries a password; refusing to record it", account)
	}
	for _, d := range dests {
		if d.ID == "" || d.Spec == "" || hasPassword(d.Spec) {
			return fmt.Errorf("journal: save destinations of account %q: destination %q: empty, or its spec carries a password", account, d.ID)
		}
	}
	tx, err := j.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("journal: save destinations of account %q: %w", account, err)
	}
	defer tx.Rollback() // no-op after Commit
	now := toNanos(j.now())
	if _, err := tx.ExecContext(ctx, j.q(`INSERT INTO accounts (account, source, updated_at) VALUES (?, ?, ?)
ON CONFLICT (account) DO UPDATE SET source = CASE WHEN excluded.source = '' THEN accounts.source ELSE excluded.source END`),
		account, source, now); err != nil {
		return fmt.Errorf("journal: save destinations of account %q: %w", account, err)
	}
	for _, d := range dests {
		if _, err := tx.ExecContext(ctx, j.q(`INSERT INTO account_destinations (account, dest_id, spec, updated_at) VALUES (?, ?, ?, ?)
ON CONFLICT (account, dest_id) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at`),
			account, d.ID, d.Spec, now); err != nil {
			return fmt.Errorf("journal: save destinations of account %q: %w", account, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("journal: save destinations of account %q: commit: %w", account, err)
	}
	return nil
}

// Accounts returns every account the journal knows, ordered by name, with
// its source and destinations.
func (j *Journal) Accounts(ctx context.Context) ([]AccountInfo, error) {
	rows, err := j.r.QueryContext(ctx, j.q(`SELECT a.account, a.source, d.dest_id, d.spec
FROM accounts a LEFT JOIN account_destinations d ON d.account = a.account
ORDER BY a.account, d.dest_id`))
	if err != nil {
		return nil, fmt.Errorf("journal: accounts: %w", err)
	}
	defer rows.Close()
	var out []AccountInfo
	for rows.Next() {
		var (
			name, source string
			id, spec     sql.NullString
		)
		if err := rows.Scan(&name, &source, &id, &spec); err != nil {
			return nil, fmt.Errorf("journal: accounts: %w", err)
		}
		if len(out) == 0 || out[len(out)-1].Name != name {
			out = append(out, AccountInfo{Name: name, Source: source})
		}
		if id.Valid {
			a := &out[len(out)-1]
			a.Destinations = append(a.Destinations, AccountDestination{ID: id.String, Spec: spec.String})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("journal: accounts: %w", err)
	}
	return out, nil
}
