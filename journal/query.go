package journal

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// StatusFailureLimit is the most failed messages Status lists per account.
// AccountStatus.Failed counts them all.
const StatusFailureLimit = 20

// Deliveries returns every recorded delivery of account's messages, as
// uidl -> DestID -> Delivery. An unknown account has none: the map is empty,
// not nil.
func (j *Journal) Deliveries(ctx context.Context, account string) (map[string]map[string]Delivery, error) {
	rows, err := j.r.QueryContext(ctx, j.q(`SELECT uidl, dest_id, ref, sha256, stored_at, verified_at
FROM deliveries WHERE account = ?`), account)
	if err != nil {
		return nil, fmt.Errorf("journal: deliveries of account %q: %w", account, err)
	}
	defer rows.Close()
	out := make(map[string]map[string]Delivery)
	for rows.Next() {
		var (
			uidl     string
			d        Delivery
			stored   int64
			verified sql.NullInt64
		)
		if err := rows.Scan(&uidl, &d.DestID, &d.Ref, &d.SHA256, &stored, &verified); err != nil {
			return nil, fmt.Errorf("journal: deliveries of account %q: %w", account, err)
		}
		d.StoredAt = fromNanos(sql.NullInt64{Int64: stored, Valid: true})
		d.VerifiedAt = fromNanos(verified)
		uidl = j.d.decodeOpaque(uidl)
		d.Ref = j.d.decodeOpaque(d.Ref)
		if out[uidl] == nil {
			out[uidl] = make(map[string]Delivery)
		}
		out[uidl][d.DestID] = d
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("journal: deliveries of account %q: %w", account, err)
	}
	return out, nil
}

// MessageRow is one message as the journal holds it.
type MessageRow struct {
	Account, UIDL string
	Kind          string // KindUIDL, KindDup or KindSynthetic
	ListedSize    int64  // as the last listing reported it
	ReceivedSize  int64  // as received; 0 until a store is recorded
	SHA256        string // canonical sha256; "" until a store is recorded
	State         string // StateListed ... StateFailed
	Error         string // the last failure's text, "" if none (cleared when stored)
	Attempts      int    // failures recorded
	Suspect       string // why the message is suspect; "" if it is not
	FirstSeen     time.Time
	LastSeen      time.Time
	StoredAt      time.Time
	VerifiedAt    time.Time
	DeletedAt     time.Time
}

// Holds reports whether the journal holds anything of account's
// messages: a message row (listed, stored, failed...; every delivery
// belongs to one) or an adopted UIDL. It reads no row, so that asking it
// of an account of a million messages costs what asking it of an empty
// one does.
func (j *Journal) Holds(ctx context.Context, account string) (bool, error) {
	var msgs, adopted bool
	err := j.r.QueryRowContext(ctx, j.q(`SELECT EXISTS (SELECT 1 FROM messages WHERE account = ?),
	EXISTS (SELECT 1 FROM adopted WHERE account = ?)`), account, account).Scan(&msgs, &adopted)
	if err != nil {
		return false, fmt.Errorf("journal: messages of account %q: %w", account, err)
	}
	return msgs || adopted, nil
}

// Messages returns every message row of account, ordered by UIDL (byte
// order; on PostgreSQL a UIDL that is not valid UTF-8 or has a NUL byte
// comes first, see encodeOpaque). An unknown account has none.
func (j *Journal) Messages(ctx context.Context, account string) ([]MessageRow, error) {
	rows, err := j.r.QueryContext(ctx, j.q(`SELECT uidl, uid_kind, listed_size, received_size, sha256, state, error,
	attempts, first_seen, last_seen, stored_at, verified_at, deleted_at, suspect
FROM messages WHERE account = ? ORDER BY uidl`), account)
	if err != nil {
		return nil, fmt.Errorf("journal: messages of account %q: %w", account, err)
	}
	defer rows.Close()
	var out []MessageRow
	for rows.Next() {
		var (
			m                               = MessageRow{Account: account}
			received                        sql.NullInt64
			sum, errText, suspect           sql.NullString
			first, last                     int64
			storedAt, verifiedAt, deletedAt sql.NullInt64
		)
		if err := rows.Scan(&m.UIDL, &m.Kind, &m.ListedSize, &received, &sum, &m.State, &errText,
			&m.Attempts, &first, &last, &storedAt, &verifiedAt, &deletedAt, &suspect); err != nil {
			return nil, fmt.Errorf("journal: messages of account %q: %w", account, err)
		}
		m.UIDL = j.d.decodeOpaque(m.UIDL)
		m.ReceivedSize = received.Int64
		m.SHA256 = sum.String
		m.Error = errText.String
		m.Suspect = suspect.String
		m.FirstSeen = fromNanos(sql.NullInt64{Int64: first, Valid: true})
		m.LastSeen = fromNanos(sql.NullInt64{Int64: last, Valid: true})
		m.StoredAt = fromNanos(storedAt)
		m.VerifiedAt = fromNanos(verifiedAt)
		m.DeletedAt = fromNanos(deletedAt)
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("journal: messages of account %q: %w", account, err)
	}
	return out, nil
}

// MessageFailure is one failed or suspect message in a status.
type MessageFailure struct {
	UIDL     string
	Error    string // the failure, or for a suspect message why it is suspect
	Attempts int
}

// AccountStatus summarises one account.
type AccountStatus struct {
	Account string
	Source  string // the server URL (no password); "" if never listed
	// ServerCount and ServerBytes are what the last listing reported.
	ServerCount int
	ServerBytes int64
	// Messages per state. An adopted UIDL (see Adopt) that a listing
	// recorded, or that failed before it was adopted, counts as adopted
	// only, not as listed or failed.
	Listed, Stored, Verified, Deleted, Failed int
	// Adopted counts the UIDLs the account adopted from another POP3
	// client's state (see Adopt): never downloaded, verified or deleted
	// by popmigrate, whether the server still lists them or not.
	Adopted   int
	LastError string    // the account's last error; "" if none
	LastRun   time.Time // the last listing; zero if never listed
	// Failures are the first StatusFailureLimit failed messages by UIDL.
	Failures []MessageFailure
	// Suspect counts the messages marked suspect, whatever their state;
	// Suspects are the first StatusFailureLimit of them by UIDL, with the
	// reason in Error.
	Suspect  int
	Suspects []MessageFailure
	// Unconfirmed counts the messages journal rebuild matched by their
	// header block only (MatchedByHeaders) and has not compared byte for
	// byte since: purge keeps them on the server until journal rebuild
	// --confirm has.
	Unconfirmed int
}

// Status returns every account the journal knows, ordered by account, as one
// consistent snapshot.
func (j *Journal) Status(ctx context.Context) ([]AccountStatus, error) {
	tx, err := j.r.BeginTx(ctx, j.d.snapshot())
	if err != nil {
		return nil, fmt.Errorf("journal: status: %w", err)
	}
	defer tx.Rollback() // read only: nothing to keep
	out, err := status(ctx, tx, j.d)
	if err != nil {
		return nil, fmt.Errorf("journal: status: %w", err)
	}
	return out, nil
}

func status(ctx context.Context, tx *sql.Tx, d dialect) ([]AccountStatus, error) {
	q := d.rebind
	var out []AccountStatus
	idx := make(map[string]int)

	rows, err := tx.QueryContext(ctx, q(`SELECT account, source, server_count, server_bytes, last_error, last_run
FROM accounts ORDER BY account`))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			a       AccountStatus
			lastErr sql.NullString
			lastRun sql.NullInt64
		)
		if err := rows.Scan(&a.Account, &a.Source, &a.ServerCount, &a.ServerBytes, &lastErr, &lastRun); err != nil {
			return nil, err
		}
		a.LastError = lastErr.String
		a.LastRun = fromNanos(lastRun)
		idx[a.Account] = len(out)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close()

	rows, err = tx.QueryContext(ctx, q(`SELECT account, state, COUNT(*) FROM messages
WHERE NOT (`+adoptedMessage+`) GROUP BY account, state`))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			account, state string
			n              int
		)
		if err := rows.Scan(&account, &state, &n); err != nil {
			return nil, err
		}
		i, ok := idx[account]
		if !ok { // cannot happen: messages.account references accounts
			return nil, fmt.Errorf("messages of unknown account %q", account)
		}
		a := &out[i]
		switch state {
		case StateListed:
			a.Listed = n
		case StateStored:
			a.Stored = n
		case StateVerified:
			a.Verified = n
		case StateDeleted:
			a.Deleted = n
		case StateFailed:
			a.Failed = n
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close()

	rows, err = tx.QueryContext(ctx, q(`SELECT account, COUNT(*) FROM adopted GROUP BY account`))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			account string
			n       int
		)
		if err := rows.Scan(&account, &n); err != nil {
			return nil, err
		}
		if i, ok := idx[account]; ok { // always: adopted.account references accounts
			out[i].Adopted = n
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close()

	rows, err = tx.QueryContext(ctx, q(`SELECT account, COUNT(*) FROM rebuilt WHERE matched_by = '`+MatchedByHeaders+`' GROUP BY account`))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			account string
			n       int
		)
		if err := rows.Scan(&account, &n); err != nil {
			return nil, err
		}
		if i, ok := idx[account]; ok {
			out[i].Unconfirmed = n
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close()

	err = firstPerAccount(ctx, tx, d, "error", "state = 'failed' AND NOT ("+adoptedMessage+")", func(account string, f MessageFailure, _ int) {
		if i, ok := idx[account]; ok {
			out[i].Failures = append(out[i].Failures, f)
		}
	})
	if err != nil {
		return nil, err
	}
	err = firstPerAccount(ctx, tx, d, "suspect", "suspect IS NOT NULL", func(account string, f MessageFailure, total int) {
		if i, ok := idx[account]; ok {
			out[i].Suspect = total
			out[i].Suspects = append(out[i].Suspects, f)
		}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// adoptedMessage is an SQL condition on a row of messages: it is listed or
// failed, and its UIDL is adopted. Status counts such a message as
// adopted only (a stored one stays popmigrate's, adopted or not).
const adoptedMessage = `state IN ('listed', 'failed') AND EXISTS (SELECT 1 FROM adopted a
	WHERE a.account = messages.account AND a.uidl = messages.uidl)`

// firstPerAccount calls fn with the first StatusFailureLimit messages by
// UIDL of each account that match where (a constant SQL condition), with
// the text of column text (NULL as ""), and how many match in the account.
func firstPerAccount(ctx context.Context, tx *sql.Tx, d dialect, text, where string,
	fn func(account string, f MessageFailure, total int)) error {
	rows, err := tx.QueryContext(ctx, d.rebind(`SELECT account, uidl, `+text+`, attempts, total FROM (
	SELECT account, uidl, `+text+`, attempts, ROW_NUMBER() OVER (PARTITION BY account ORDER BY uidl) AS n,
		COUNT(*) OVER (PARTITION BY account) AS total
	FROM messages WHERE `+where+`
) f WHERE n <= ? ORDER BY account, uidl`), StatusFailureLimit)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			account string
			f       MessageFailure
			val     sql.NullString
			total   int
		)
		if err := rows.Scan(&account, &f.UIDL, &val, &f.Attempts, &total); err != nil {
			return err
		}
		f.UIDL = d.decodeOpaque(f.UIDL)
		f.Error = val.String
		fn(account, f, total)
	}
	return rows.Err()
}
