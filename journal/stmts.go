package journal

import (
	"context"
	"database/sql"
)

// stmts are the write statements, prepared once on the write pool (which
// prepares each again on every connection it runs on: SQLite's one,
// PostgreSQL's few) and bound to each transaction with Tx.StmtContext.
type stmts struct {
	listUpsert      *sql.Stmt
	accountListing  *sql.Stmt
	accountError    *sql.Stmt
	storedComplete  *sql.Stmt
	storedPartial   *sql.Stmt
	deliveryUpsert  *sql.Stmt
	failed          *sql.Stmt
	verifyDelivery  *sql.Stmt
	promoteVerified *sql.Stmt
	markDeleted     *sql.Stmt
	destStateUpsert *sql.Stmt
	unverify        *sql.Stmt
	demoteVerified  *sql.Stmt
	dropDelivery    *sql.Stmt
	lost            *sql.Stmt
	rebuilt         *sql.Stmt
	// lockMessage is the dialect's lockMessageSQL; nil when it has none.
	lockMessage *sql.Stmt
}

// In every UPDATE below, the expressions of SET see the row as it was before
// the statement (standard SQL), so "state IN (...)" in one assignment tests
// the old state even when another assignment changes it.
//
// A store or a failure changes only 'listed' and 'failed' messages, but
// for one: a store of an unverified copy takes a 'verified' message back
// to 'stored'. Otherwise states go down only where verification finds a
// copy wrong (Mismatch, Lost).

// sqlListUpsert records one listed message: a new row starts 'listed'; an
// existing row keeps its state, kind and first_seen.
const sqlListUpsert = `INSERT INTO messages (account, uidl, uid_kind, listed_size, state, attempts, first_seen, last_seen)
VALUES (?, ?, ?, ?, 'listed', 0, ?, ?)
ON CONFLICT (account, uidl) DO UPDATE SET listed_size = excluded.listed_size, last_seen = excluded.last_seen`

const sqlAccountListing = `INSERT INTO accounts (account, source, last_run, server_count, server_bytes, updated_at)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (account) DO UPDATE SET source = excluded.source, last_run = excluded.last_run,
	server_count = excluded.server_count, server_bytes = excluded.server_bytes, updated_at = excluded.updated_at`

const sqlAccountError = `INSERT INTO accounts (account, last_error, updated_at) VALUES (?, ?, ?)
ON CONFLICT (account) DO UPDATE SET last_error = excluded.last_error, updated_at = excluded.updated_at`

// sqlStoredComplete: every configured destination holds the message. Its
// fourth parameter is 1 when a delivery of the store is not verified: a
// 'verified' message with a new, unverified copy goes back to 'stored'
// (the one way a state goes down besides Mismatch and Lost), so that
// what the journal calls verified has every copy verified.
const sqlStoredComplete = `UPDATE messages SET received_size = ?, sha256 = ?, suspect = COALESCE(?, suspect),
	state = CASE WHEN state IN ('listed', 'failed') THEN 'stored' WHEN state = 'verified' AND ? = 1 THEN 'stored' ELSE state END,
	error = CASE WHEN state IN ('listed', 'failed') THEN NULL ELSE error END,
	verified_at = CASE WHEN state = 'verified' AND ? = 1 THEN NULL ELSE verified_at END,
	stored_at = COALESCE(stored_at, ?)
WHERE account = ? AND uidl = ?`

// sqlStoredPartial: some destinations hold it; the state stays, but for a
// 'verified' message given an unverified copy (the fourth parameter is
// 1), which goes back to 'stored' as with sqlStoredComplete.
const sqlStoredPartial = `UPDATE messages SET received_size = ?, sha256 = ?, suspect = COALESCE(?, suspect),
	state = CASE WHEN state = 'verified' AND ? = 1 THEN 'stored' ELSE state END,
	verified_at = CASE WHEN state = 'verified' AND ? = 1 THEN NULL ELSE verified_at END
WHERE account = ? AND uidl = ?`

// sqlDeliveryUpsert: a destination that (again) holds the message replaces
// its previous delivery row, verification included: a new copy is not
// verified until it is.
const sqlDeliveryUpsert = `INSERT INTO deliveries (account, uidl, dest_id, ref, sha256, stored_at, verified_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (account, uidl, dest_id) DO UPDATE SET ref = excluded.ref, sha256 = excluded.sha256,
	stored_at = excluded.stored_at, verified_at = excluded.verified_at`

const sqlFailed = `UPDATE messages SET error = ?, attempts = attempts + 1,
	state = CASE WHEN state IN ('listed', 'failed') THEN 'failed' ELSE state END
WHERE account = ? AND uidl = ?`

const sqlVerifyDelivery = `UPDATE deliveries SET verified_at = ? WHERE account = ? AND uidl = ? AND dest_id = ?`

// sqlPromoteVerified moves a stored message to 'verified' once every one of
// its deliveries is verified.
const sqlPromoteVerified = `UPDATE messages SET state = 'verified', verified_at = ?
WHERE account = ? AND uidl = ? AND state = 'stored'
	AND NOT EXISTS (SELECT 1 FROM deliveries d
		WHERE d.account = messages.account AND d.uidl = messages.uidl AND d.verified_at IS NULL)`

// sqlUnverify and sqlDemoteVerified undo a verification whose copy no
// longer matches (see Batch.Mismatch).
const sqlUnverify = `UPDATE deliveries SET verified_at = NULL WHERE account = ? AND uidl = ? AND dest_id = ?`

const sqlDemoteVerified = `UPDATE messages SET error = ?, verified_at = NULL,
	state = CASE WHEN state = 'verified' THEN 'stored' ELSE state END
WHERE account = ? AND uidl = ?`

// sqlDropDelivery and sqlLost record a copy found missing (see Batch.Lost).
const sqlDropDelivery = `DELETE FROM deliveries WHERE account = ? AND uidl = ? AND dest_id = ?`

const sqlLost = `UPDATE messages SET error = ?, verified_at = NULL,
	state = CASE WHEN state = 'deleted' THEN state ELSE 'failed' END
WHERE account = ? AND uidl = ?`

const sqlMarkDeleted = `UPDATE messages SET state = 'deleted', deleted_at = COALESCE(deleted_at, ?)
WHERE account = ? AND uidl = ?`

// sqlDestStateUpsert records a destination's state, replacing the previous
// one.
const sqlDestStateUpsert = `INSERT INTO dest_states (account, dest_id, state, updated_at) VALUES (?, ?, ?, ?)
ON CONFLICT (account, dest_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at`

// stmtEntry is one statement of stmts and its portable SQL.
type stmtEntry struct {
	p     **sql.Stmt
	query string
}

// all returns every statement of s, lockMessage with the query lockSQL
// (the dialect's lockMessageSQL; "" when it has none).
func (s *stmts) all(lockSQL string) []stmtEntry {
	return []stmtEntry{
		{&s.listUpsert, sqlListUpsert},
		{&s.accountListing, sqlAccountListing},
		{&s.accountError, sqlAccountError},
		{&s.storedComplete, sqlStoredComplete},
		{&s.storedPartial, sqlStoredPartial},
		{&s.deliveryUpsert, sqlDeliveryUpsert},
		{&s.failed, sqlFailed},
		{&s.verifyDelivery, sqlVerifyDelivery},
		{&s.promoteVerified, sqlPromoteVerified},
		{&s.markDeleted, sqlMarkDeleted},
		{&s.destStateUpsert, sqlDestStateUpsert},
		{&s.unverify, sqlUnverify},
		{&s.demoteVerified, sqlDemoteVerified},
		{&s.dropDelivery, sqlDropDelivery},
		{&s.rebuilt, sqlRebuilt},
		{&s.lost, sqlLost},
		{&s.lockMessage, lockSQL},
	}
}

// prepare prepares every statement on the write pool; a statement without
// a query (lockMessage on SQLite) stays nil.
func (s *stmts) prepare(ctx context.Context, j *Journal) error {
	for _, e := range s.all(j.d.lockMessageSQL()) {
		if e.query == "" {
			continue
		}
		st, err := j.w.PrepareContext(ctx, j.q(e.query))
		if err != nil {
			s.close()
			return err
		}
		*e.p = st
	}
	return nil
}

func (s *stmts) close() error {
	var first error
	for _, e := range s.all("") {
		if *e.p == nil {
			continue
		}
		if err := (*e.p).Close(); err != nil && first == nil {
			first = err
		}
		*e.p = nil
	}
	return first
}
