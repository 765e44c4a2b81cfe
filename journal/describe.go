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
	return j.SaveAccounts(ctx, []AccountInfo{{Name: account, Source: source, Destinations: dests}})
}

// SaveAccounts records each account's source and destinations as
// SaveDestinations does, all in one transaction: either every account is
// recorded or none is. An account with an empty Source keeps the source
// recorded before. Enrolling many accounts goes faster in transactions
// of a few hundred than one at a time.
func (j *Journal) SaveAccounts(ctx context.Context, accounts []AccountInfo) error {
	if err := j.writable("save destinations"); err != nil {
		return err
	}
	for _, a := range accounts {
		if err := checkAccountInfo(a); err != nil {
			return err
		}
	}
	if len(accounts) == 0 {
		return nil
	}
	what := fmt.Sprintf("account %q", accounts[0].Name)
	if len(accounts) > 1 {
		what = fmt.Sprintf("accounts %q ... %q", accounts[0].Name, accounts[len(accounts)-1].Name)
	}
	tx, err := j.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("journal: save destinations of %s: %w", what, err)
	}
	defer tx.Rollback() // no-op after Commit
	now := toNanos(j.now())
	for _, a := range accounts {
		if err := j.saveAccount(ctx, tx, a, now); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("journal: save destinations of %s: commit: %w", what, err)
	}
	return nil
}

// checkAccountInfo refuses an account SaveAccounts must not record: no
// name, or a password in its source or a destination's spec.
func checkAccountInfo(a AccountInfo) error {
	if a.Name == "" {
		return fmt.Errorf("journal: save destinations: empty account")
	}
	if hasPassword(a.Source) {
		return fmt.Errorf("journal: save destinations of account %q: source URL carries a password; refusing to record it", a.Name)
	}
	for _, d := range a.Destinations {
		if d.ID == "" || d.Spec == "" || hasPassword(d.Spec) {
			return fmt.Errorf("journal: save destinations of account %q: destination %q: empty, or its spec carries a password", a.Name, d.ID)
		}
	}
	return nil
}

// saveAccount records a (checked by checkAccountInfo) within tx.
func (j *Journal) saveAccount(ctx context.Context, tx *sql.Tx, a AccountInfo, now any) error {
	if _, err := tx.ExecContext(ctx, j.q(`INSERT INTO accounts (account, source, updated_at) VALUES (?, ?, ?)
ON CONFLICT (account) DO UPDATE SET source = CASE WHEN excluded.source = '' THEN accounts.source ELSE excluded.source END`),
		a.Name, a.Source, now); err != nil {
		return fmt.Errorf("journal: save destinations of account %q: %w", a.Name, err)
	}
	for _, d := range a.Destinations {
		if _, err := tx.ExecContext(ctx, j.q(`INSERT INTO account_destinations (account, dest_id, spec, updated_at) VALUES (?, ?, ?, ?)
ON CONFLICT (account, dest_id) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at`),
			a.Name, d.ID, d.Spec, now); err != nil {
			return fmt.Errorf("journal: save destinations of account %q: %w", a.Name, err)
		}
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
