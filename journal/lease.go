package journal

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Account leases: one writer per journal and account.
//
// A process that works on an account (run, purge) first takes the account's
// lease: a row of the leases table naming the holder, with an expiry that
// the holder pushes forward by heartbeat (RenewLease) and by every fenced
// commit. A second process that wants the same account finds the lease held
// and is refused with a *LeaseHeldError naming the holder, or waits for it.
// A holder that crashed stops renewing: its lease expires after its TTL and
// another process takes it over, resuming the account from the journal. On
// the holder's own host a lease whose process is gone is taken over at once
// (see processGone), so a run killed with SIGKILL does not make the next one
// wait for the expiry.
//
// Every change of holder raises the lease's epoch. A Batch fenced with a
// Lease (Batch.Fence) commits only while that holder and epoch still own the
// account: a holder that was paused past its expiry (GC, SIGSTOP, a network
// partition) and woke up after another took the account over cannot record
// anything, and learns so (ErrLeaseLost) before it writes again.
//
// Reads (status, verify, manifest) take no lease.

// DefaultLeaseTTL is how long a lease lasts without a renewal. Holders
// renew it every third of that.
const DefaultLeaseTTL = 60 * time.Second

// ErrLeaseLost is returned by RenewLease and by Commit of a fenced Batch
// when the lease is no longer the caller's: it expired and another process
// took the account over, or it was released. Nothing was recorded.
var ErrLeaseLost = errors.New("journal: account lease lost: another popmigrate took the account over")

// Holder identifies a process that takes leases.
type Holder struct {
	// ID is unique per process (random); it is what the lease checks.
	ID string
	// PID and Host say where the holder runs, for people to read and for
	// the takeover of a lease whose process is gone.
	PID  int
	Host string
}

// NewHolder returns the identity of this process: a random ID, its pid and
// its host name. The ID ends with "@" and the process's pid space (see
// processSpace), so that the early takeover of a dead holder's lease on
// the same host only ever compares pids of one space.
func NewHolder() Holder {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux and friends
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	id := hex.EncodeToString(b[:])
	if sp := processSpace(); sp != "" {
		id += "@" + sp
	}
	return Holder{ID: id, PID: os.Getpid(), Host: host}
}

// space returns the pid space the holder's ID names ("" when it names
// none).
func (h Holder) space() string {
	if i := strings.LastIndexByte(h.ID, '@'); i >= 0 {
		return h.ID[i+1:]
	}
	return ""
}

// samePidSpace reports whether a pid of h and one of o name processes of
// one pid space: the same host name and the same space. Two containers
// that share a host name (a replacement pod, docker run --hostname twice)
// but not a pid namespace have different spaces, so neither takes the
// other's live lease for a dead pid of its own.
func (h Holder) samePidSpace(o Holder) bool {
	return h.Host == o.Host && h.space() == o.space()
}

func (h Holder) String() string { return fmt.Sprintf("pid %d on %s", h.PID, h.Host) }

// Lease is an account lease held by this process.
type Lease struct {
	Account    string
	Holder     Holder
	Epoch      int64
	TTL        time.Duration
	AcquiredAt time.Time
	// Prev is the lease as the journal held it before this process took
	// it: zero when there was none, a zero Prev.Holder.ID when its holder
	// released it (it finished with the account), else the holder whose
	// lease expired or whose process was gone.
	Prev LeaseInfo
}

// LeaseInfo is a lease as the journal records it.
type LeaseInfo struct {
	Account     string
	Holder      Holder // zero ID when released
	Epoch       int64
	AcquiredAt  time.Time
	HeartbeatAt time.Time
	ExpiresAt   time.Time // zero when released
}

// LeaseHeldError is returned by AcquireLease when another live process holds
// the account's lease.
type LeaseHeldError struct {
	Account string
	LeaseInfo
}

func (e *LeaseHeldError) Error() string {
	return fmt.Sprintf("journal: account %q is being worked on by another popmigrate (%s, since %s, last heartbeat %s); "+
		"wait for it to finish, or pass --wait to wait for it (a crashed process's lease expires at %s)",
		e.Account, e.Holder, e.AcquiredAt.Local().Format(time.DateTime), e.HeartbeatAt.Local().Format(time.TimeOnly),
		e.ExpiresAt.Local().Format(time.TimeOnly))
}

// AcquireLease takes the lease of account for h, for ttl (0 means
// DefaultLeaseTTL), in one transaction. It succeeds when the account has
// no lease, when its lease was released or has expired, when h already
// holds it (the lease is renewed, same epoch), or when its holder runs on
// this host and its process is gone. Otherwise it fails with a
// *LeaseHeldError and changes nothing. A change of holder raises the epoch.
//
// Of several processes that ask at once for a lease they may take, exactly
// one gets it; the others are refused with a *LeaseHeldError naming it.
func (j *Journal) AcquireLease(ctx context.Context, account string, h Holder, ttl time.Duration) (*Lease, error) {
	if account == "" || h.ID == "" {
		return nil, fmt.Errorf("journal: acquire lease: empty account or holder (account %q)", account)
	}
	if ttl <= 0 {
		ttl = DefaultLeaseTTL
	}
	if err := j.writable("acquire lease"); err != nil {
		return nil, err
	}
	var l *Lease
	err := j.retry(ctx, func() error {
		var err error
		l, err = j.acquireLease(ctx, account, h, ttl)
		return err
	})
	if errors.Is(err, errRaced) {
		return nil, fmt.Errorf("journal: acquire lease of account %q: other processes changed the lease %d times while this one tried to take it; try again",
			account, maxTxAttempts)
	}
	return l, err
}

// sqlTakeLease writes a lease with a compare-and-set: an existing row is
// replaced only while it is still the one the caller read (holder, epoch,
// heartbeat and expiry unchanged), so that of two processes deciding on
// the same row at once only one takes it. A row that did not exist when
// read is compared with an epoch no row has (0), so a row another process
// inserted meanwhile is not replaced either. The arguments: the new row,
// then the row as read.
const sqlTakeLease = `INSERT INTO leases (account, holder, pid, host, epoch, acquired_at, heartbeat_at, expires_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (account) DO UPDATE SET holder = excluded.holder, pid = excluded.pid, host = excluded.host, epoch = excluded.epoch,
	acquired_at = excluded.acquired_at, heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at
WHERE leases.holder = ? AND leases.epoch = ? AND leases.heartbeat_at = ? AND leases.expires_at = ?`

// acquireLease is one attempt of AcquireLease. It returns errRaced when
// another process changed the lease between its read and its write.
func (j *Journal) acquireLease(ctx context.Context, account string, h Holder, ttl time.Duration) (*Lease, error) {
	tx, err := j.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("journal: acquire lease of account %q: %w", account, err)
	}
	defer tx.Rollback() // no-op after Commit
	now := j.now()
	cur, raw, found, err := readLease(ctx, tx, j.q, account)
	if err != nil {
		return nil, fmt.Errorf("journal: acquire lease of account %q: %w", account, err)
	}
	epoch := int64(1)
	acquired := now
	if found {
		switch {
		case cur.Holder.ID == h.ID:
			epoch, acquired = cur.Epoch, cur.AcquiredAt
		case cur.Holder.ID == "" || !now.Before(cur.ExpiresAt) ||
			(cur.Holder.samePidSpace(h) && cur.Holder.PID != h.PID && processGone(cur.Holder.PID)):
			epoch = cur.Epoch + 1
		default:
			return nil, &LeaseHeldError{Account: account, LeaseInfo: cur}
		}
	}
	// Compared with the row as read; when none was, with the zero row,
	// which matches none.
	res, err := tx.ExecContext(ctx, j.q(sqlTakeLease),
		account, h.ID, h.PID, h.Host, epoch, toNanos(acquired), toNanos(now), toNanos(now.Add(ttl)),
		cur.Holder.ID, cur.Epoch, raw.heartbeat, raw.expires)
	if err != nil {
		return nil, fmt.Errorf("journal: acquire lease of account %q: %w", account, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return nil, fmt.Errorf("journal: acquire lease of account %q: %w", account, err)
	} else if n != 1 {
		return nil, errRaced
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("journal: acquire lease of account %q: commit: %w", account, err)
	}
	return &Lease{Account: account, Holder: h, Epoch: epoch, TTL: ttl, AcquiredAt: acquired, Prev: cur}, nil
}

// RenewLease pushes l's expiry to now plus its TTL. It fails with an error
// wrapping ErrLeaseLost when l is no longer held (another process took the
// account over, or l was released).
func (j *Journal) RenewLease(ctx context.Context, l *Lease) error {
	if err := j.writable("renew lease"); err != nil {
		return err
	}
	res, err := j.w.ExecContext(ctx, j.q(sqlRenewLease), renewArgs(l, j.now())...)
	if err := leaseChanged(res, err); err != nil {
		return fmt.Errorf("journal: renew lease of account %q (epoch %d): %w", l.Account, l.Epoch, err)
	}
	return nil
}

// ReleaseLease gives l up: the account may be taken at once by another
// process. Releasing a lease that is no longer held is not an error.
func (j *Journal) ReleaseLease(ctx context.Context, l *Lease) error {
	if err := j.writable("release lease"); err != nil {
		return err
	}
	_, err := j.w.ExecContext(ctx, j.q(sqlReleaseLease), toNanos(j.now()), l.Account, l.Holder.ID, l.Epoch)
	if err != nil {
		return fmt.Errorf("journal: release lease of account %q: %w", l.Account, err)
	}
	return nil
}

const sqlReleaseLease = `UPDATE leases SET holder = '', expires_at = 0, heartbeat_at = ?
WHERE account = ? AND holder = ? AND epoch = ?`

// FinishAccount records errText as the error of l's account, as
// SetAccountError does (the error is recorded whether or not l is still
// held, as there), and gives l up, as ReleaseLease does, in one
// transaction: one write to disk at the end of an account instead of two.
func (j *Journal) FinishAccount(ctx context.Context, l *Lease, errText string) error {
	if err := j.writable("finish account"); err != nil {
		return err
	}
	var text any // NULL clears
	if errText != "" {
		text = clipText(errText)
	}
	err := j.retry(ctx, func() error {
		tx, err := j.w.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback() // no-op after Commit
		now := toNanos(j.now())
		if _, err := tx.StmtContext(ctx, j.st.accountError).ExecContext(ctx, l.Account, text, now); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, j.q(sqlReleaseLease), now, l.Account, l.Holder.ID, l.Epoch); err != nil {
			return err
		}
		return tx.Commit()
	})
	if err != nil {
		return fmt.Errorf("journal: finish account %q (record its error, release its lease): %w", l.Account, err)
	}
	return nil
}

// Leases returns every lease row, released ones included, ordered by
// account.
func (j *Journal) Leases(ctx context.Context) ([]LeaseInfo, error) {
	rows, err := j.r.QueryContext(ctx, j.q(`SELECT account, holder, pid, host, epoch, acquired_at, heartbeat_at, expires_at
FROM leases ORDER BY account`))
	if err != nil {
		return nil, fmt.Errorf("journal: leases: %w", err)
	}
	defer rows.Close()
	var out []LeaseInfo
	for rows.Next() {
		l, err := scanLease(rows)
		if err != nil {
			return nil, fmt.Errorf("journal: leases: %w", err)
		}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("journal: leases: %w", err)
	}
	return out, nil
}

// sqlRenewLease renews a lease that is still the caller's. A fenced Commit
// runs it inside its transaction: the fence and the heartbeat in one.
const sqlRenewLease = `UPDATE leases SET heartbeat_at = ?, expires_at = ?
WHERE account = ? AND holder = ? AND epoch = ?`

func renewArgs(l *Lease, now time.Time) []any {
	ttl := l.TTL
	if ttl <= 0 {
		ttl = DefaultLeaseTTL
	}
	return []any{toNanos(now), toNanos(now.Add(ttl)), l.Account, l.Holder.ID, l.Epoch}
}

// leaseChanged is changedOne for leases: no row means the lease was lost.
func leaseChanged(res sql.Result, err error) error {
	if err := changedOne(res, err); err != nil {
		if errors.Is(err, ErrNotListed) {
			return ErrLeaseLost
		}
		return err
	}
	return nil
}

type rowScanner interface{ Scan(dest ...any) error }

// rawLease is a lease row's heartbeat_at and expires_at as stored, for
// AcquireLease's compare-and-set.
type rawLease struct{ heartbeat, expires int64 }

func scanLease(r rowScanner) (LeaseInfo, error) {
	l, _, err := scanLeaseRaw(r)
	return l, err
}

func scanLeaseRaw(r rowScanner) (LeaseInfo, rawLease, error) {
	var (
		l                       LeaseInfo
		acquired, beat, expires int64
		holder, host            string
		pid                     int
	)
	if err := r.Scan(&l.Account, &holder, &pid, &host, &l.Epoch, &acquired, &beat, &expires); err != nil {
		return LeaseInfo{}, rawLease{}, err
	}
	l.Holder = Holder{ID: holder, PID: pid, Host: host}
	l.AcquiredAt = fromNanos(sql.NullInt64{Int64: acquired, Valid: true})
	l.HeartbeatAt = fromNanos(sql.NullInt64{Int64: beat, Valid: true})
	l.ExpiresAt = fromNanos(sql.NullInt64{Int64: expires, Valid: expires != 0})
	return l, rawLease{beat, expires}, nil
}

func readLease(ctx context.Context, tx *sql.Tx, q func(string) string, account string) (LeaseInfo, rawLease, bool, error) {
	l, raw, err := scanLeaseRaw(tx.QueryRowContext(ctx, q(`SELECT account, holder, pid, host, epoch, acquired_at, heartbeat_at, expires_at
FROM leases WHERE account = ?`), account))
	if errors.Is(err, sql.ErrNoRows) {
		return LeaseInfo{}, rawLease{}, false, nil
	}
	return l, raw, err == nil, err
}
