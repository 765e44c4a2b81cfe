package journal

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"time"
)

// This file holds the read-only queries behind popmigrate's HTML report
// (package report). They read only what the journal already records, so a
// report can be made long after the run, and their SQL is portable: plain
// SELECTs with GROUP BY, and time buckets by integer division of the
// nanosecond timestamps, which SQLite and PostgreSQL compute alike.

// Point is what became stored for one account in one time bucket: the
// messages whose stored_at falls in [Start, Start+bucket).
type Point struct {
	Account  string
	Start    time.Time // UTC; a whole number of buckets after the Unix epoch
	Messages int
	Bytes    int64 // the sum of their received sizes
}

// Throughput returns, per account and time bucket, the messages that became
// stored in every destination (messages.stored_at) at a time in [from, to),
// and their received bytes, ordered by Start and then by account. Buckets
// start at whole multiples of bucket since the Unix epoch; only buckets in
// which something was stored appear. A zero from or to leaves that side of
// the period open. bucket must be positive.
//
// A message's stored_at is set once, when it is first stored everywhere, so
// a message stored again by a later run counts in the bucket of its first
// store.
func (j *Journal) Throughput(ctx context.Context, bucket time.Duration, from, to time.Time) ([]Point, error) {
	if bucket <= 0 {
		return nil, fmt.Errorf("journal: throughput: bucket %v: want a positive duration", bucket)
	}
	lo, hi := reportPeriod(from, to)
	// The bucket number is computed in a subquery and grouped by its
	// name: PostgreSQL would not match "stored_at / $1" in the select list
	// with "stored_at / $4" in a GROUP BY.
	rows, err := j.r.QueryContext(ctx, j.q(`SELECT account, b, COUNT(*), CAST(SUM(size) AS BIGINT) FROM (
	SELECT account, stored_at / ? AS b, COALESCE(received_size, 0) AS size
	FROM messages WHERE stored_at >= ? AND stored_at < ?
) s GROUP BY account, b ORDER BY b, account`), int64(bucket), lo, hi)
	if err != nil {
		return nil, fmt.Errorf("journal: throughput: %w", err)
	}
	defer rows.Close()
	var out []Point
	for rows.Next() {
		var (
			p Point
			b int64
		)
		if err := rows.Scan(&p.Account, &b, &p.Messages, &p.Bytes); err != nil {
			return nil, fmt.Errorf("journal: throughput: %w", err)
		}
		p.Start = fromNanos(sql.NullInt64{Int64: b * int64(bucket), Valid: true})
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("journal: throughput: %w", err)
	}
	return out, nil
}

// StoreActivity is what became stored for one account in a period.
type StoreActivity struct {
	Account string
	// Messages became stored in every destination in the period, with
	// Bytes their received sizes.
	Messages int
	Bytes    int64
	// FirstStored and LastStored are the stored_at of the first and the
	// last of them.
	FirstStored, LastStored time.Time
}

// StoreActivity returns, per account that had a message stored in every
// destination at a time in [from, to), how many, their received bytes and
// when the first and the last of them were stored, ordered by account. An
// account with nothing stored in the period is left out. A zero from or to
// leaves that side of the period open.
func (j *Journal) StoreActivity(ctx context.Context, from, to time.Time) ([]StoreActivity, error) {
	lo, hi := reportPeriod(from, to)
	rows, err := j.r.QueryContext(ctx, j.q(`SELECT account, COUNT(*), CAST(SUM(COALESCE(received_size, 0)) AS BIGINT),
	MIN(stored_at), MAX(stored_at)
FROM messages WHERE stored_at >= ? AND stored_at < ? GROUP BY account ORDER BY account`), lo, hi)
	if err != nil {
		return nil, fmt.Errorf("journal: store activity: %w", err)
	}
	defer rows.Close()
	var out []StoreActivity
	for rows.Next() {
		var (
			a           StoreActivity
			first, last int64
		)
		if err := rows.Scan(&a.Account, &a.Messages, &a.Bytes, &first, &last); err != nil {
			return nil, fmt.Errorf("journal: store activity: %w", err)
		}
		a.FirstStored = fromNanos(sql.NullInt64{Int64: first, Valid: true})
		a.LastStored = fromNanos(sql.NullInt64{Int64: last, Valid: true})
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("journal: store activity: %w", err)
	}
	return out, nil
}

// reportPeriod returns the stored bounds of [from, to): unix nanoseconds, with
// a zero time as the open end.
func reportPeriod(from, to time.Time) (lo, hi int64) {
	lo, hi = math.MinInt64, math.MaxInt64
	if !from.IsZero() {
		lo = from.UnixNano()
	}
	if !to.IsZero() {
		hi = to.UnixNano()
	}
	return lo, hi
}
