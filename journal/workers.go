package journal

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"time"
)

// WorkerStatus is what one popmigrate process (a worker of a migration
// shared through the journal) did, as the journal's leases tell it: the
// accounts it holds now and those it last finished, and what was stored
// in them while it held them. A worker is named by its pid and host;
// an account that several workers held in turn counts for the last.
type WorkerStatus struct {
	Holder Holder // PID and Host; ID is set while it holds a live lease
	// Running is how many accounts it holds a live lease on now, and
	// RunningSince when it took the oldest of them. Finished counts the
	// accounts whose lease it last released.
	Running      int
	RunningSince time.Time
	Finished     int
	// Messages and Bytes were stored in its accounts while it held them,
	// between First and Last (the first and the last such store).
	Messages    int
	Bytes       int64
	First, Last time.Time
	// Live is true while it holds a live lease (its heartbeat is recent).
	Live bool
}

// Rate returns the worker's bytes per second over its stores (0 when it
// stored less than two messages).
func (w WorkerStatus) Rate() float64 {
	d := w.Last.Sub(w.First).Seconds()
	if w.Messages < 2 || d <= 0 {
		return 0
	}
	return float64(w.Bytes) / d
}

// Workers returns every worker the leases name, live ones first, then by
// host and pid, as one consistent snapshot. Stored messages are counted
// for the lease their account has now: from its acquisition to now for a
// live lease, to its release (or expiry) for another.
func (j *Journal) Workers(ctx context.Context) ([]WorkerStatus, error) {
	tx, err := j.r.BeginTx(ctx, j.d.snapshot())
	if err != nil {
		return nil, fmt.Errorf("journal: workers: %w", err)
	}
	defer tx.Rollback() // read only
	now := j.now()
	type key struct {
		host string
		pid  int
	}
	by := map[key]*WorkerStatus{}
	get := func(host string, pid int) *WorkerStatus {
		k := key{host, pid}
		w := by[k]
		if w == nil {
			w = &WorkerStatus{Holder: Holder{PID: pid, Host: host}}
			by[k] = w
		}
		return w
	}
	rows, err := tx.QueryContext(ctx, j.q(`SELECT holder, pid, host, acquired_at, expires_at FROM leases`))
	if err != nil {
		return nil, fmt.Errorf("journal: workers: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			holder, host      string
			pid               int
			acquired, expires sql.NullInt64
		)
		if err := rows.Scan(&holder, &pid, &host, &acquired, &expires); err != nil {
			return nil, fmt.Errorf("journal: workers: %w", err)
		}
		w := get(host, pid)
		exp := fromNanos(expires)
		if holder != "" && now.Before(exp) {
			w.Live, w.Holder.ID = true, holder
			w.Running++
			if at := fromNanos(acquired); w.RunningSince.IsZero() || at.Before(w.RunningSince) {
				w.RunningSince = at
			}
		} else if holder == "" {
			w.Finished++
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("journal: workers: %w", err)
	}
	rows.Close()

	// The messages stored while the account's current (or last) lease
	// was held. A released lease's heartbeat_at is its release.
	rows, err = tx.QueryContext(ctx, j.q(`SELECT l.pid, l.host, COUNT(*), COALESCE(SUM(m.received_size), 0), MIN(m.stored_at), MAX(m.stored_at)
FROM leases l JOIN messages m ON m.account = l.account
WHERE m.stored_at IS NOT NULL AND m.stored_at >= l.acquired_at
	AND (l.holder <> '' OR m.stored_at <= l.heartbeat_at)
GROUP BY l.pid, l.host`))
	if err != nil {
		return nil, fmt.Errorf("journal: workers: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			pid         int
			host        string
			n           int
			bytes       int64
			first, last sql.NullInt64
		)
		if err := rows.Scan(&pid, &host, &n, &bytes, &first, &last); err != nil {
			return nil, fmt.Errorf("journal: workers: %w", err)
		}
		w := get(host, pid)
		w.Messages, w.Bytes, w.First, w.Last = n, bytes, fromNanos(first), fromNanos(last)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("journal: workers: %w", err)
	}
	out := make([]WorkerStatus, 0, len(by))
	for _, w := range by {
		out = append(out, *w)
	}
	sort.Slice(out, func(a, b int) bool {
		if out[a].Live != out[b].Live {
			return out[a].Live
		}
		if out[a].Holder.Host != out[b].Holder.Host {
			return out[a].Holder.Host < out[b].Holder.Host
		}
		return out[a].Holder.PID < out[b].Holder.PID
	})
	return out, nil
}

// RecentRate returns the bytes and messages per second stored over the
// window before now, all workers together: the pace an ETA assumes.
func (j *Journal) RecentRate(ctx context.Context, window time.Duration) (bytesPerSec, msgsPerSec float64, err error) {
	if window <= 0 {
		return 0, 0, fmt.Errorf("journal: recent rate: window %v", window)
	}
	var (
		n     int
		bytes int64
	)
	from := j.now().Add(-window)
	err = j.r.QueryRowContext(ctx, j.q(`SELECT COUNT(*), COALESCE(SUM(received_size), 0) FROM messages WHERE stored_at >= ?`), toNanos(from)).Scan(&n, &bytes)
	if err != nil {
		return 0, 0, fmt.Errorf("journal: recent rate: %w", err)
	}
	return float64(bytes) / window.Seconds(), float64(n) / window.Seconds(), nil
}

// Remaining returns what a migration has left, as far as the journal
// knows: the messages listed and not stored yet (failed ones included)
// with their listed bytes, and how many accounts were never listed (their
// size is unknown).
func (j *Journal) Remaining(ctx context.Context) (msgs int, bytes int64, unlisted int, err error) {
	err = j.r.QueryRowContext(ctx, j.q(`SELECT COUNT(*), COALESCE(SUM(listed_size), 0) FROM messages WHERE state IN ('listed', 'failed')`)).Scan(&msgs, &bytes)
	if err == nil {
		err = j.r.QueryRowContext(ctx, j.q(`SELECT COUNT(*) FROM accounts WHERE last_run IS NULL`)).Scan(&unlisted)
	}
	if err != nil {
		return 0, 0, 0, fmt.Errorf("journal: remaining: %w", err)
	}
	return msgs, bytes, unlisted, nil
}
