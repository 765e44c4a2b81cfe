package journal

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Delivery is one destination's copy of a message.
type Delivery struct {
	// DestID identifies the destination (stable across runs).
	DestID string
	// Ref is where the destination put it: a file name, an mbox offset, an
	// IMAP UIDVALIDITY/UID. Opaque to the journal.
	Ref string
	// SHA256 is the canonical sha256 (lower-case hex) of what was written.
	// In a StoredMessage, "" means the message's SHA256.
	SHA256 string
	// StoredAt is when the copy was made durable. In a StoredMessage, zero
	// means the commit time.
	StoredAt time.Time
	// VerifiedAt is when the copy was last read back and matched; zero if
	// never. In a StoredMessage it is zero (a new copy is unverified)
	// unless the writer read the copy back after its Sync (see
	// Batch.ReadBack).
	VerifiedAt time.Time
}

// StoredMessage is a message that one or more destinations now hold durably
// (their Sync returned nil).
type StoredMessage struct {
	Account, UIDL string
	// ReceivedSize is the size as received: wire bytes after dot-unstuffing,
	// with CRLF. Compared with the listed size in reports.
	ReceivedSize int64
	// SHA256 is the canonical sha256 (lower-case hex, CRLF -> LF).
	SHA256 string
	// Deliveries are the destinations that now hold it. Each is recorded,
	// replacing an earlier delivery of the message to the same DestID.
	Deliveries []Delivery
	// Complete is true when every configured destination holds the message:
	// its state becomes 'stored' (from 'listed' or 'failed'; a higher state
	// stays) and its error is cleared. When false, the deliveries are
	// recorded and the state stays what it was.
	Complete bool
	// Suspect, when not empty, says why the message is suspect (its RETR
	// size far from its LIST size): it is recorded in the message's
	// suspect column, which keeps it from being deleted from the source
	// without an explicit flag. An empty Suspect leaves an earlier mark
	// as it was: a message once suspect stays so.
	Suspect string
}

type opKind uint8

const (
	opStored opKind = iota + 1
	opFailed
	opVerified
	opMismatch
	opLost
	opDestState
	opRebuilt
)

type batchOp struct {
	kind    opKind
	stored  StoredMessage // opStored
	account string        // opFailed, opVerified, opDestState, opRebuilt
	uidl    string        // opFailed, opVerified, opRebuilt
	text    string        // opFailed: the error; opDestState: the state; opRebuilt: how it matched
	destID  string        // opVerified, opDestState
	at      time.Time     // opVerified
}

// A Batch is a group commit: the writes added to it are recorded by Commit
// in one transaction, in the order they were added. A write is a stored
// message, a failure, a verification or a destination's state. The zero
// value is an empty batch ready to use. A Batch is not safe for concurrent
// use; use one per goroutine.
type Batch struct {
	ops   []batchOp
	lease *Lease
}

// Fence makes Commit record the batch only while l is still held: inside
// the batch's transaction the lease is renewed, and when it is no longer
// l's (another process took the account over) Commit fails with an error
// wrapping ErrLeaseLost and records nothing. A nil l removes the fence.
// Reset keeps the fence.
func (b *Batch) Fence(l *Lease) { b.lease = l }

// Stored adds a stored message to the batch. m (including its Deliveries) is
// copied: the caller may reuse it.
func (b *Batch) Stored(m StoredMessage) {
	m.Deliveries = append([]Delivery(nil), m.Deliveries...)
	b.ops = append(b.ops, batchOp{kind: opStored, stored: m})
}

// ReadBack calls check, in the order they were added, for each delivery
// of each stored message in the batch that has no VerifiedAt yet, and sets
// the VerifiedAt of those for which it returns true to at (zero: now). A
// writer that has read a copy back after its destination's Sync, and
// found it matching, records the copy as verified in the same transaction
// that records it stored: a complete message whose every delivery is then
// verified becomes 'verified' at once (when no earlier delivery of it is
// unverified). check must not keep m or d.
func (b *Batch) ReadBack(check func(m *StoredMessage, d *Delivery) bool, at time.Time) {
	if at.IsZero() {
		at = time.Now()
	}
	for i := range b.ops {
		op := &b.ops[i]
		if op.kind != opStored {
			continue
		}
		for k := range op.stored.Deliveries {
			d := &op.stored.Deliveries[k]
			if d.VerifiedAt.IsZero() && check(&op.stored, d) {
				d.VerifiedAt = at
			}
		}
	}
}

// Failed adds a failure of message uidl of account: its error text becomes
// errText, its attempts go up by one and its state becomes 'failed' unless it
// is already stored, verified or deleted.
func (b *Batch) Failed(account, uidl string, errText string) {
	b.ops = append(b.ops, batchOp{kind: opFailed, account: account, uidl: uidl, text: errText})
}

// Verified adds the verification of the copy of uidl held by destID, at time
// at (zero: the commit time). When every delivery of a stored message is
// verified, the message becomes 'verified'.
func (b *Batch) Verified(account, uidl, destID string, at time.Time) {
	b.ops = append(b.ops, batchOp{kind: opVerified, account: account, uidl: uidl, destID: destID, at: at})
}

// DestState adds a write of destination destID's state for account (see
// Journal.DestState), replacing the state last recorded. A destination
// records the state that describes what it synced together with the
// deliveries it covers: mbox its committed end offset, in the batch that
// records the messages below that offset. An empty state is recorded as
// such. The checks of SaveDestState apply; a batch holding only state
// writes commits like any other.
func (b *Batch) DestState(account, destID, state string) {
	b.ops = append(b.ops, batchOp{kind: opDestState, account: account, destID: destID, text: state})
}

// Mismatch adds a verification that failed for the copy of uidl held by
// destID (missing, different checksum or size, unreadable): the copy's
// verification mark is cleared, the message goes back from 'verified' to
// 'stored' and errText becomes its error. A message never becomes
// deletable from the source on the strength of an earlier verification of
// a copy that no longer matches.
func (b *Batch) Mismatch(account, uidl, destID, errText string) {
	b.ops = append(b.ops, batchOp{kind: opMismatch, account: account, uidl: uidl, destID: destID, text: errText})
}

// Lost adds a copy that verification found missing from destID: its
// delivery row is removed, so the next run delivers the message there again
// if the server still has it, and the message becomes 'failed' with errText
// (a deleted message stays deleted: its copy is gone for good, and the
// error says so).
func (b *Batch) Lost(account, uidl, destID, errText string) {
	b.ops = append(b.ops, batchOp{kind: opLost, account: account, uidl: uidl, destID: destID, text: errText})
}

// Len returns the number of writes in the batch, state writes included.
func (b *Batch) Len() int { return len(b.ops) }

// Reset empties the batch, keeping its storage for reuse.
func (b *Batch) Reset() {
	clear(b.ops) // drop references to delivery slices
	b.ops = b.ops[:0]
}

// Commit records every write of b in one transaction, with prepared
// statements. It either records all of them or, on error, none: a write that
// names a message never listed fails the whole batch with ErrNotListed, a
// verification of a destination without a delivery with ErrNotDelivered, and
// a malformed write (empty ids, a sha256 that is not 64 lower-case hex
// digits, a negative size, a state SaveDestState would refuse) is refused
// before anything is written. Commit does not modify b: after an error the
// caller may retry it, after success it should Reset it. An empty batch
// commits nothing and returns nil.
//
// When Commit returns nil the writes are durable (see sqliteDSN and
// postgres.go). On SQLite, Commit blocks while another goroutine's write is
// in progress, for as long as ctx allows; on PostgreSQL a few commits run
// at once, and one that the server aborted to break a deadlock is run
// again whole.
func (j *Journal) Commit(ctx context.Context, b *Batch) error {
	if b == nil || len(b.ops) == 0 {
		return nil
	}
	if err := j.writable("commit batch of %d", len(b.ops)); err != nil {
		return err
	}
	for i := range b.ops {
		if err := checkOp(&b.ops[i]); err != nil {
			return fmt.Errorf("journal: commit batch of %d: %w", len(b.ops), err)
		}
	}
	return j.retry(ctx, func() error { return j.commit(ctx, b) })
}

// commit is one attempt of Commit of the checked batch b.
func (j *Journal) commit(ctx context.Context, b *Batch) error {
	tx, err := j.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("journal: commit batch of %d: %w", len(b.ops), err)
	}
	defer tx.Rollback() // no-op after Commit
	now := j.now()
	if l := b.lease; l != nil {
		res, err := tx.ExecContext(ctx, j.q(sqlRenewLease), renewArgs(l, now)...)
		if err := leaseChanged(res, err); err != nil {
			return fmt.Errorf("journal: commit batch of %d for account %q (lease epoch %d): %w; nothing of the batch was recorded",
				len(b.ops), l.Account, l.Epoch, err)
		}
	}
	w := txStmts{
		d:               j.d,
		storedComplete:  tx.StmtContext(ctx, j.st.storedComplete),
		storedPartial:   tx.StmtContext(ctx, j.st.storedPartial),
		deliveryUpsert:  tx.StmtContext(ctx, j.st.deliveryUpsert),
		failed:          tx.StmtContext(ctx, j.st.failed),
		verifyDelivery:  tx.StmtContext(ctx, j.st.verifyDelivery),
		promoteVerified: tx.StmtContext(ctx, j.st.promoteVerified),
		destStateUpsert: tx.StmtContext(ctx, j.st.destStateUpsert),
		unverify:        tx.StmtContext(ctx, j.st.unverify),
		demoteVerified:  tx.StmtContext(ctx, j.st.demoteVerified),
		dropDelivery:    tx.StmtContext(ctx, j.st.dropDelivery),
		lost:            tx.StmtContext(ctx, j.st.lost),
		rebuilt:         tx.StmtContext(ctx, j.st.rebuilt),
	}
	if j.st.lockMessage != nil {
		w.lockMessage = tx.StmtContext(ctx, j.st.lockMessage)
	}
	for i := range b.ops {
		if err := w.apply(ctx, &b.ops[i], now); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("journal: commit batch of %d: %w", len(b.ops), err)
	}
	return nil
}

// MarkVerified records that destID's copy of uidl was read back and matched
// at time at (zero: now). It is a one-write batch; see Batch.Verified.
func (j *Journal) MarkVerified(ctx context.Context, account, uidl, destID string, at time.Time) error {
	var b Batch
	b.Verified(account, uidl, destID, at)
	return j.Commit(ctx, &b)
}

// MarkDeleted records that the server deleted uidls of account (the QUIT
// after their DELE answered +OK): their state becomes 'deleted', whatever it
// was, since the deletion has happened. It is one transaction: a uidl the
// journal never listed fails it with ErrNotListed and nothing is recorded.
func (j *Journal) MarkDeleted(ctx context.Context, account string, uidls []string) error {
	if len(uidls) == 0 {
		return nil
	}
	if err := j.writable("mark deleted in account %q", account); err != nil {
		return err
	}
	return j.retry(ctx, func() error { return j.markDeleted(ctx, account, uidls) })
}

// markDeleted is one attempt of MarkDeleted.
func (j *Journal) markDeleted(ctx context.Context, account string, uidls []string) error {
	tx, err := j.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("journal: mark deleted in account %q: %w", account, err)
	}
	defer tx.Rollback() // no-op after Commit
	now := toNanos(j.now())
	st := tx.StmtContext(ctx, j.st.markDeleted)
	for _, uidl := range uidls {
		res, err := st.ExecContext(ctx, now, account, j.d.encodeOpaque(uidl))
		if err := changedOne(res, err); err != nil {
			return opError("mark deleted", account, uidl, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("journal: mark deleted in account %q: commit: %w", account, err)
	}
	return nil
}

// txStmts are the prepared statements bound to one transaction, and the
// dialect that encodes the UIDLs they bind.
type txStmts struct {
	d                                                                                                       dialect
	storedComplete, storedPartial, deliveryUpsert, failed, verifyDelivery, promoteVerified, destStateUpsert *sql.Stmt
	unverify, demoteVerified, dropDelivery, lost, rebuilt                                                   *sql.Stmt
	lockMessage                                                                                             *sql.Stmt // nil: the dialect needs none
}

func (w *txStmts) apply(ctx context.Context, op *batchOp, now time.Time) error {
	uidl := w.d.encodeOpaque(op.uidl) // opFailed, opVerified, opMismatch, opLost
	switch op.kind {
	case opStored:
		m := &op.stored
		uidl := w.d.encodeOpaque(m.UIDL)
		var res sql.Result
		var err error
		var suspect any // NULL: keep the earlier mark
		if m.Suspect != "" {
			suspect = clipText(m.Suspect)
		}
		verifiedAt, readBack := readBackAt(m)
		unverified := 0 // 1: a copy of this store is not verified (see sqlStoredComplete)
		for _, d := range m.Deliveries {
			if d.VerifiedAt.IsZero() {
				unverified = 1
			}
		}
		if m.Complete {
			res, err = w.storedComplete.ExecContext(ctx, m.ReceivedSize, m.SHA256, suspect, unverified, unverified, toNanos(now), m.Account, uidl)
		} else {
			res, err = w.storedPartial.ExecContext(ctx, m.ReceivedSize, m.SHA256, suspect, unverified, unverified, m.Account, uidl)
		}
		if err := changedOne(res, err); err != nil {
			return opError("stored", m.Account, m.UIDL, err)
		}
		for _, d := range m.Deliveries {
			sum := d.SHA256
			if sum == "" {
				sum = m.SHA256
			}
			at := d.StoredAt
			if at.IsZero() {
				at = now
			}
			if _, err := w.deliveryUpsert.ExecContext(ctx, m.Account, uidl, d.DestID, w.d.encodeOpaque(d.Ref), sum,
				toNanos(at), toNanos(d.VerifiedAt)); err != nil {
				return opError("stored", m.Account, m.UIDL, fmt.Errorf("delivery to %q: %w", d.DestID, err))
			}
		}
		if readBack {
			// Every delivery in the batch was read back: the
			// promotion opVerified makes, which reads the message's
			// other deliveries. Where writers run at once, the
			// statement above has locked the message's row, as
			// opVerified's lockMessage does.
			if _, err := w.promoteVerified.ExecContext(ctx, toNanos(verifiedAt), m.Account, uidl); err != nil {
				return opError("stored", m.Account, m.UIDL, err)
			}
		}
	case opFailed:
		res, err := w.failed.ExecContext(ctx, clipText(op.text), op.account, uidl)
		if err := changedOne(res, err); err != nil {
			return opError("failed", op.account, op.uidl, err)
		}
	case opVerified:
		at := op.at
		if at.IsZero() {
			at = now
		}
		// The promotion below reads the message's other deliveries:
		// where writers run at once, lock the message first, so that
		// every transaction that changed one of them has committed.
		if w.lockMessage != nil {
			if _, err := w.lockMessage.ExecContext(ctx, op.account, uidl); err != nil {
				return opError("verified", op.account, op.uidl, err)
			}
		}
		res, err := w.verifyDelivery.ExecContext(ctx, toNanos(at), op.account, uidl, op.destID)
		if err := changedOne(res, err); err != nil {
			if errors.Is(err, ErrNotListed) {
				err = fmt.Errorf("%w %q", ErrNotDelivered, op.destID)
			}
			return opError("verified", op.account, op.uidl, err)
		}
		if _, err := w.promoteVerified.ExecContext(ctx, toNanos(at), op.account, uidl); err != nil {
			return opError("verified", op.account, op.uidl, err)
		}
	case opMismatch:
		if _, err := w.unverify.ExecContext(ctx, op.account, uidl, op.destID); err != nil {
			return opError("mismatch", op.account, op.uidl, err)
		}
		if _, err := w.demoteVerified.ExecContext(ctx, clipText(op.text), op.account, uidl); err != nil {
			return opError("mismatch", op.account, op.uidl, err)
		}
	case opLost:
		if _, err := w.dropDelivery.ExecContext(ctx, op.account, uidl, op.destID); err != nil {
			return opError("lost", op.account, op.uidl, err)
		}
		if _, err := w.lost.ExecContext(ctx, clipText(op.text), op.account, uidl); err != nil {
			return opError("lost", op.account, op.uidl, err)
		}
	case opRebuilt:
		res, err := w.rebuilt.ExecContext(ctx, op.account, uidl, op.text, toNanos(now), op.account, uidl)
		if err := changedOne(res, err); err != nil {
			return opError("rebuilt", op.account, op.uidl, err)
		}
	case opDestState:
		if _, err := w.destStateUpsert.ExecContext(ctx, op.account, op.destID, op.text, toNanos(now)); err != nil {
			return fmt.Errorf("journal: destination state: account %q, destination %q: %w; nothing of the write was recorded",
				op.account, op.destID, err)
		}
	}
	return nil
}

// readBackAt reports whether m is complete and every delivery it records
// was read back (has a VerifiedAt), and then the latest of those times:
// the time the message becomes verified at.
func readBackAt(m *StoredMessage) (time.Time, bool) {
	if !m.Complete || len(m.Deliveries) == 0 {
		return time.Time{}, false
	}
	var last time.Time
	for _, d := range m.Deliveries {
		if d.VerifiedAt.IsZero() {
			return time.Time{}, false
		}
		if d.VerifiedAt.After(last) {
			last = d.VerifiedAt
		}
	}
	return last, true
}

// changedOne turns the result of an UPDATE of one row by key into an error:
// the statement's own, or ErrNotListed when no row matched.
func changedOne(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotListed
	}
	return nil
}

// opError names the message a write failed on. ErrNotListed and
// ErrNotDelivered already carry the package prefix and go first.
func opError(op, account, uidl string, err error) error {
	if errors.Is(err, ErrNotListed) || errors.Is(err, ErrNotDelivered) {
		return fmt.Errorf("%w (%s: account %q, uidl %q); nothing of the write was recorded", err, op, account, uidl)
	}
	return fmt.Errorf("journal: %s: account %q, uidl %q: %w; nothing of the write was recorded", op, account, uidl, err)
}

// checkOp refuses a malformed write before the transaction starts.
func checkOp(op *batchOp) error {
	switch op.kind {
	case opStored:
		m := &op.stored
		if m.Account == "" || m.UIDL == "" {
			return fmt.Errorf("stored: empty account or uidl (account %q, uidl %q)", m.Account, m.UIDL)
		}
		if !isSHA256Hex(m.SHA256) {
			return fmt.Errorf("stored: account %q, uidl %q: sha256 %q is not 64 lower-case hex digits", m.Account, m.UIDL, m.SHA256)
		}
		if m.ReceivedSize < 0 {
			return fmt.Errorf("stored: account %q, uidl %q: negative size %d", m.Account, m.UIDL, m.ReceivedSize)
		}
		seen := make(map[string]struct{}, len(m.Deliveries))
		for _, d := range m.Deliveries {
			if d.DestID == "" {
				return fmt.Errorf("stored: account %q, uidl %q: delivery with empty destination id", m.Account, m.UIDL)
			}
			if _, dup := seen[d.DestID]; dup {
				return fmt.Errorf("stored: account %q, uidl %q: two deliveries to %q", m.Account, m.UIDL, d.DestID)
			}
			seen[d.DestID] = struct{}{}
			if d.SHA256 != "" && !isSHA256Hex(d.SHA256) {
				return fmt.Errorf("stored: account %q, uidl %q: delivery to %q: sha256 %q is not 64 lower-case hex digits",
					m.Account, m.UIDL, d.DestID, d.SHA256)
			}
		}
		if m.Complete && len(m.Deliveries) == 0 {
			return fmt.Errorf("stored: account %q, uidl %q: complete without any delivery", m.Account, m.UIDL)
		}
	case opFailed:
		if op.account == "" || op.uidl == "" {
			return fmt.Errorf("failed: empty account or uidl (account %q, uidl %q)", op.account, op.uidl)
		}
	case opVerified, opMismatch, opLost:
		if op.account == "" || op.uidl == "" || op.destID == "" {
			return fmt.Errorf("verified: empty account, uidl or destination (account %q, uidl %q, destination %q)",
				op.account, op.uidl, op.destID)
		}
	case opRebuilt:
		return checkRebuilt(op)
	case opDestState:
		if err := checkDestState(op.account, op.destID, op.text); err != nil {
			return fmt.Errorf("destination state: %w", err)
		}
	}
	return nil
}

func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
