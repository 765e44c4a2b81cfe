package journal

import (
	"context"
	"fmt"
)

// How journal rebuild matched a message with the copies the destinations
// held, as stored in rebuilt.matched_by, strongest first.
const (
	// MatchedByKey: every copy carries the message's key in its name or
	// index (Maildir, mbox, eml): popmigrate wrote it from this
	// message's RETR, and its sha256 is the message's.
	MatchedByKey = "key"
	// MatchedByContent: every copy's sha256 is the message's as RETR
	// delivered it, or that of a copy matched by key.
	MatchedByContent = "content"
	// MatchedByHeaders: some copy has the message's header block and a
	// size that fits its LIST size, but was not compared byte for byte.
	// Purge does not delete such a message from the source.
	MatchedByHeaders = "headers"
)

// sqlRebuilt records how rebuild matched a listed message (nothing for
// one never listed); a later rebuild's word replaces an earlier one. The
// time is cast so that PostgreSQL knows the type of a parameter that no
// column gives it.
const sqlRebuilt = `INSERT INTO rebuilt (account, uidl, matched_by, rebuilt_at)
SELECT ?, ?, ?, CAST(? AS BIGINT)
WHERE EXISTS (SELECT 1 FROM messages WHERE account = ? AND uidl = ?)
ON CONFLICT (account, uidl) DO UPDATE SET matched_by = excluded.matched_by, rebuilt_at = excluded.rebuilt_at`

// Rebuilt adds to the batch how popmigrate journal rebuild matched message
// uidl of account with the copies it records (a Stored write earlier in
// the same batch, or in an earlier one): MatchedByKey, MatchedByContent or
// MatchedByHeaders. It replaces what an earlier rebuild recorded of the
// message. The message must be listed; another matchedBy is refused
// before anything is written.
func (b *Batch) Rebuilt(account, uidl, matchedBy string) {
	b.ops = append(b.ops, batchOp{kind: opRebuilt, account: account, uidl: uidl, text: matchedBy})
}

// checkRebuilt refuses a malformed Rebuilt write.
func checkRebuilt(op *batchOp) error {
	if op.account == "" || op.uidl == "" {
		return fmt.Errorf("rebuilt: empty account or uidl (account %q, uidl %q)", op.account, op.uidl)
	}
	switch op.text {
	case MatchedByKey, MatchedByContent, MatchedByHeaders:
		return nil
	}
	return fmt.Errorf("rebuilt: account %q, uidl %q: unknown match %q (want %q, %q or %q)",
		op.account, op.uidl, op.text, MatchedByKey, MatchedByContent, MatchedByHeaders)
}

// Rebuilt returns how journal rebuild matched the messages of account it
// recorded, uidl -> MatchedByKey, MatchedByContent or MatchedByHeaders. An
// account rebuild never recorded, or that the journal does not know, has
// an empty map, not nil.
func (j *Journal) Rebuilt(ctx context.Context, account string) (map[string]string, error) {
	rows, err := j.r.QueryContext(ctx, j.q(`SELECT uidl, matched_by FROM rebuilt WHERE account = ?`), account)
	if err != nil {
		return nil, fmt.Errorf("journal: rebuilt messages of account %q: %w", account, err)
	}
	defer rows.Close()
	out := make(map[string]string)
	for rows.Next() {
		var u, by string
		if err := rows.Scan(&u, &by); err != nil {
			return nil, fmt.Errorf("journal: rebuilt messages of account %q: %w", account, err)
		}
		out[j.d.decodeOpaque(u)] = by
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("journal: rebuilt messages of account %q: %w", account, err)
	}
	return out, nil
}
