package journal

import (
	"context"
	"fmt"
)

// Adopted UIDLs are messages another POP3 client (getmail, mpop,
// fetchmail) fetched and left on the server before popmigrate took the
// mailbox over, as that client's state file lists them (see the package
// journal/adopt and popmigrate journal import). They live apart from the
// messages: no state of a message is theirs, because popmigrate never
// stored, verified or deleted them. A run does not download them, verify
// expects no copy of them, and purge never deletes them.

// sqlAdopt adopts one UIDL unless the account has a recorded copy of it
// in some destination, or has adopted it before (the first adoption
// stays, its tool, file and time included). The time is cast so that
// PostgreSQL knows the type of a parameter that no column gives it.
const sqlAdopt = `INSERT INTO adopted (account, uidl, tool, file, imported_at)
SELECT ?, ?, ?, ?, CAST(? AS BIGINT)
WHERE NOT EXISTS (SELECT 1 FROM deliveries WHERE account = ? AND uidl = ?)
ON CONFLICT (account, uidl) DO NOTHING`

// Adopt records uidls as messages of account that the POP3 client from
// ("getmail", "mpop", "fetchmail") fetched and left on the server, as its
// state file file says, and returns how many of them it added. It runs
// in one transaction: on error nothing is recorded.
//
// Adopt is idempotent: a UIDL adopted before is left as it was, so
// importing the same file twice adds nothing the second time. A UIDL of
// which the journal records a copy in some destination (popmigrate stored
// it, in every destination or in some) is not adopted: it stays
// popmigrate's, to be stored, verified and deleted like any other. A UIDL
// repeated in uidls counts once. An account the journal does not know yet
// is created, without a source, as a listing would create it.
//
// UIDLs are stored as they are, whatever their bytes, as the server's are
// (see RecordListing). An empty account, from, file or UIDL is refused.
// Adopt takes no account lease: a run of the account that planned before
// the adoption committed downloads what it planned.
func (j *Journal) Adopt(ctx context.Context, account, from, file string, uidls []string) (added int, err error) {
	switch {
	case account == "":
		return 0, fmt.Errorf("journal: adopt: empty account")
	case from == "" || file == "":
		return 0, fmt.Errorf("journal: adopt UIDLs of account %q: the tool and the state file must be named", account)
	}
	for i, u := range uidls {
		if u == "" {
			return 0, fmt.Errorf("journal: adopt UIDLs of account %q from %s: UIDL %d is empty", account, file, i+1)
		}
	}
	if err := j.writable("adopt UIDLs of account %q", account); err != nil {
		return 0, err
	}
	err = j.retry(ctx, func() error {
		var err error
		added, err = j.adopt(ctx, account, cleanText(from), cleanText(file), uidls)
		return err
	})
	return added, err
}

// adopt is one attempt of Adopt of the checked uidls.
func (j *Journal) adopt(ctx context.Context, account, from, file string, uidls []string) (int, error) {
	now := toNanos(j.now())
	tx, err := j.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("journal: adopt UIDLs of account %q: %w", account, err)
	}
	defer tx.Rollback() // no-op after Commit
	if _, err := tx.ExecContext(ctx, j.q(`INSERT INTO accounts (account, updated_at) VALUES (?, ?)
ON CONFLICT (account) DO NOTHING`), account, now); err != nil {
		return 0, fmt.Errorf("journal: adopt UIDLs of account %q: %w", account, err)
	}
	ins, err := tx.PrepareContext(ctx, j.q(sqlAdopt))
	if err != nil {
		return 0, fmt.Errorf("journal: adopt UIDLs of account %q: %w", account, err)
	}
	defer ins.Close()
	added := 0
	for _, u := range uidls {
		enc := j.d.encodeOpaque(u)
		res, err := ins.ExecContext(ctx, account, enc, from, file, now, account, enc)
		if err != nil {
			return 0, fmt.Errorf("journal: adopt UIDLs of account %q: uidl %q: %w", account, u, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return 0, fmt.Errorf("journal: adopt UIDLs of account %q: %w", account, err)
		}
		added += int(n)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("journal: adopt UIDLs of account %q: commit: %w", account, err)
	}
	return added, nil
}

// Adopted returns the UIDLs account adopted from another POP3 client's
// state (see Adopt), as a set. An account that adopted none, or that the
// journal does not know, has an empty set, not nil.
func (j *Journal) Adopted(ctx context.Context, account string) (map[string]bool, error) {
	rows, err := j.r.QueryContext(ctx, j.q(`SELECT uidl FROM adopted WHERE account = ?`), account)
	if err != nil {
		return nil, fmt.Errorf("journal: adopted UIDLs of account %q: %w", account, err)
	}
	defer rows.Close()
	out := make(map[string]bool)
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, fmt.Errorf("journal: adopted UIDLs of account %q: %w", account, err)
		}
		out[j.d.decodeOpaque(u)] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("journal: adopted UIDLs of account %q: %w", account, err)
	}
	return out, nil
}
