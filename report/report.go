// Package report builds the migration report an administrator hands to a
// customer: per account where its messages stand (copied, verified,
// deleted from the server, failed with a hint, suspect), the bytes and the
// time it took, and the throughput over the period, as one self-contained
// HTML file (WriteHTML, WriteFile) or as JSON (the Report value).
//
// A Report is built from the journal alone (Build), so it can be made long
// after the run, from a journal opened read-only.
package report

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/popmigrate/popmigrate/journal"
)

// MaxBuckets is the most bars the throughput chart has when Options.Bucket
// is zero: Build picks the smallest of its round bucket sizes (1s, 2s, 5s,
// ... 1h, ... 1 day, ...) that covers the period in at most MaxBuckets.
const MaxBuckets = 60

// FailureLimit is the most failed (and the most suspect) messages a report
// lists per account; Account.Failed and Account.Suspect count them all.
// It is the journal's journal.StatusFailureLimit.
const FailureLimit = journal.StatusFailureLimit

// DefaultTitle is the title of a report whose Options give none.
const DefaultTitle = "Mail migration report"

// Options say what a report covers. A nil *Options means the defaults:
// every account, the whole journal, a chart of at most MaxBuckets bars.
type Options struct {
	// Title heads the report; "" is DefaultTitle.
	Title string
	// Accounts, when not empty, are the only accounts the report shows
	// (the others of the journal are left out, totals included). A name
	// the journal does not know is shown as an account with nothing
	// recorded.
	Accounts []string
	// From and To bound the period whose stores the activity columns and
	// the chart show: [From, To). A zero From starts at the first store,
	// a zero To ends after the last one. Where each account stands
	// (copied, verified, failed, ...) is always its whole record.
	From, To time.Time
	// Bucket is the chart's bucket size; zero picks one (see MaxBuckets).
	Bucket time.Duration
	// Location is the time zone the HTML shows times in; nil is
	// time.Local. JSON times are UTC.
	Location *time.Location
	// Now returns the time the report says it was made; nil is time.Now.
	Now func() time.Time
}

// Report is what the journal says about a migration.
type Report struct {
	Title     string    `json:"title"`
	Generated time.Time `json:"generated"`
	// From and To are the period of the activity and the chart, [From,
	// To); both zero when nothing was stored in it.
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Runs are the runs recorded by the journal that overlap the period.
	Runs     []Run     `json:"runs"`
	Accounts []Account `json:"accounts"`
	Totals   Totals    `json:"totals"`
	// Bucket is the time each point of Throughput covers.
	Bucket time.Duration `json:"bucket_ns"`
	// Throughput has one point per bucket of the period, in time order,
	// with the buckets in which nothing was stored included.
	Throughput []Point `json:"throughput"`

	loc *time.Location // Options.Location, for the HTML
}

// Run is one run of popmigrate recorded in the journal.
type Run struct {
	ID         int64     `json:"id"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"` // zero if it did not finish (crashed or still running)
	ExitCode   int       `json:"exit_code"`   // meaningful only when FinishedAt is set
}

// Status of an account, as Account.Status says it.
const (
	StatusVerified   = "verified"   // every message copied and read back intact
	StatusCopied     = "copied"     // every message copied; not all verified
	StatusIncomplete = "incomplete" // some messages failed or are not copied yet
	StatusFailed     = "failed"     // the last session of the account failed (see Error)
	StatusEmpty      = "empty"      // the server listed no message and the journal holds none
	StatusUnknown    = "unknown"    // the journal knows nothing of the account
)

// Account is one mailbox in a report. The message counts are where the
// account's messages stand in the journal; Copied includes Verified, and
// Verified includes Deleted (only verified messages are deleted).
type Account struct {
	Name   string `json:"account"`
	Source string `json:"source"` // the POP3 server, as a URL without password
	Status string `json:"status"` // StatusVerified ... StatusUnknown
	// ServerMessages and ServerBytes are what the server listed at the
	// account's last listing.
	ServerMessages int   `json:"server_messages"`
	ServerBytes    int64 `json:"server_bytes"`
	Pending        int   `json:"pending"`  // listed, not copied yet (and not failed)
	Copied         int   `json:"copied"`   // stored in every destination
	Verified       int   `json:"verified"` // of Copied, read back intact
	Deleted        int   `json:"deleted"`  // of Verified, deleted from the server
	Failed         int   `json:"failed"`
	Suspect        int   `json:"suspect"` // RETR delivered a size LIST does not explain; kept on the server
	// Adopted counts the messages another POP3 client fetched before the
	// migration (popmigrate journal import): not copied by popmigrate,
	// never removed from the server, and not counted as pending.
	Adopted int `json:"adopted"`
	// Stored and StoredBytes are the messages that became stored in the
	// period, and their size as received; FirstStored and LastStored when
	// the first and the last of them were; Duration the time between.
	Stored      int           `json:"stored"`
	StoredBytes int64         `json:"stored_bytes"`
	FirstStored time.Time     `json:"first_stored"`
	LastStored  time.Time     `json:"last_stored"`
	Duration    time.Duration `json:"duration_ns"`
	LastRun     time.Time     `json:"last_run"` // the last listing of the mailbox
	// Error is why the account's last session failed, "" if it did not;
	// ErrorHint says what to do about it ("" when Error has its hint
	// already or none is known).
	Error     string `json:"error,omitempty"`
	ErrorHint string `json:"error_hint,omitempty"`
	// Failures are the first FailureLimit failed messages by UIDL, and
	// Suspects the first FailureLimit suspect ones.
	Failures []Problem `json:"failures,omitempty"`
	Suspects []Problem `json:"suspects,omitempty"`
}

// Problem is one failed or suspect message.
type Problem struct {
	UIDL     string `json:"uidl"`
	Attempts int    `json:"attempts"`
	Error    string `json:"error"` // for a suspect message, why it is suspect
	Hint     string `json:"hint,omitempty"`
}

// Totals add up the accounts of a report.
type Totals struct {
	Accounts         int   `json:"accounts"`
	AccountsComplete int   `json:"accounts_complete"` // StatusVerified, StatusCopied or StatusEmpty
	ServerMessages   int   `json:"server_messages"`
	ServerBytes      int64 `json:"server_bytes"`
	Pending          int   `json:"pending"`
	Copied           int   `json:"copied"`
	Verified         int   `json:"verified"`
	Deleted          int   `json:"deleted"`
	Failed           int   `json:"failed"`
	Suspect          int   `json:"suspect"`
	Adopted          int   `json:"adopted"`
	Stored           int   `json:"stored"`
	StoredBytes      int64 `json:"stored_bytes"`
	// FirstStored and LastStored span every account's stores in the
	// period; Duration is the time between.
	FirstStored time.Time     `json:"first_stored"`
	LastStored  time.Time     `json:"last_stored"`
	Duration    time.Duration `json:"duration_ns"`
	// PeakRate is the highest throughput of a bucket, in bytes per second.
	PeakRate float64 `json:"peak_bytes_per_second"`
}

// Point is what was stored in one bucket of the period.
type Point struct {
	Start    time.Time `json:"start"`
	Messages int       `json:"messages"`
	Bytes    int64     `json:"bytes"`
}

// Rate returns the bytes per second of p in a bucket of size bucket.
func (p Point) Rate(bucket time.Duration) float64 {
	if bucket <= 0 {
		return 0
	}
	return float64(p.Bytes) / bucket.Seconds()
}

// AverageRate returns the stored bytes per second between the first and
// the last store of the period; 0 when that is no time at all.
func (t Totals) AverageRate() float64 {
	if t.Duration <= 0 {
		return 0
	}
	return float64(t.StoredBytes) / t.Duration.Seconds()
}

// Build reads a report from j, which may be opened read-only, as o says.
// It contacts no server and writes nothing. The journal is read by several
// queries: while another process writes the journal, their results may be
// a few commits apart.
func Build(ctx context.Context, j *journal.Journal, o *Options) (*Report, error) {
	if o == nil {
		o = &Options{}
	}
	if !o.From.IsZero() && !o.To.IsZero() && !o.From.Before(o.To) {
		return nil, fmt.Errorf("report: period from %v to %v is empty", o.From, o.To)
	}
	if o.Bucket < 0 {
		return nil, fmt.Errorf("report: bucket %v: want a positive duration", o.Bucket)
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	r := &Report{Title: o.Title, Generated: now().UTC(), loc: o.Location}
	if r.Title == "" {
		r.Title = DefaultTitle
	}
	if r.loc == nil {
		r.loc = time.Local
	}

	want := func(string) bool { return true }
	if len(o.Accounts) > 0 {
		set := make(map[string]bool, len(o.Accounts))
		for _, a := range o.Accounts {
			set[a] = true
		}
		want = func(a string) bool { return set[a] }
	}

	st, err := j.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	idx := map[string]int{}
	for _, s := range st {
		if !want(s.Account) {
			continue
		}
		idx[s.Account] = len(r.Accounts)
		r.Accounts = append(r.Accounts, fromStatus(s))
	}
	for _, name := range o.Accounts {
		if _, ok := idx[name]; !ok {
			idx[name] = len(r.Accounts)
			r.Accounts = append(r.Accounts, Account{Name: name, Status: StatusUnknown})
		}
	}
	slices.SortStableFunc(r.Accounts, func(a, b Account) int { return strings.Compare(a.Name, b.Name) })
	for i, a := range r.Accounts {
		idx[a.Name] = i
	}

	act, err := j.StoreActivity(ctx, o.From, o.To)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	for _, a := range act {
		i, ok := idx[a.Account]
		if !ok {
			continue
		}
		acc := &r.Accounts[i]
		acc.Stored, acc.StoredBytes = a.Messages, a.Bytes
		acc.FirstStored, acc.LastStored = a.FirstStored, a.LastStored
		acc.Duration = a.LastStored.Sub(a.FirstStored)
	}
	r.Totals = totals(r.Accounts)

	// The period: as asked, or from the first to just after the last
	// store.
	r.From, r.To = o.From.UTC(), o.To.UTC()
	if r.From.IsZero() {
		r.From = r.Totals.FirstStored
	}
	if r.To.IsZero() && !r.Totals.LastStored.IsZero() {
		r.To = r.Totals.LastStored.Add(time.Nanosecond)
	}
	if r.From.IsZero() || r.To.IsZero() {
		// Nothing stored and no bounds to draw between.
		r.From, r.To = time.Time{}, time.Time{}
	}

	runs, err := j.Runs(ctx)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	for _, run := range runs {
		if r.overlaps(run) {
			r.Runs = append(r.Runs, Run{ID: run.ID, StartedAt: run.StartedAt, FinishedAt: run.FinishedAt, ExitCode: run.ExitCode})
		}
	}

	if !r.From.IsZero() {
		r.Bucket = o.Bucket
		if r.Bucket == 0 {
			r.Bucket = chooseBucket(r.From, r.To)
		}
		pts, err := j.Throughput(ctx, r.Bucket, r.From, r.To)
		if err != nil {
			return nil, fmt.Errorf("report: %w", err)
		}
		r.Throughput = fillBuckets(r.From, r.To, r.Bucket, pts, want)
		for _, p := range r.Throughput {
			r.Totals.PeakRate = max(r.Totals.PeakRate, p.Rate(r.Bucket))
		}
	}
	return r, nil
}

// fromStatus is an account as the journal's status has it.
func fromStatus(s journal.AccountStatus) Account {
	a := Account{
		Name: s.Account, Source: s.Source,
		ServerMessages: s.ServerCount, ServerBytes: s.ServerBytes,
		// The journal counts each state apart; a deleted message was
		// verified, a verified one copied.
		Pending:  s.Listed,
		Copied:   s.Stored + s.Verified + s.Deleted,
		Verified: s.Verified + s.Deleted,
		Deleted:  s.Deleted,
		Failed:   s.Failed,
		Suspect:  s.Suspect,
		Adopted:  s.Adopted,
		LastRun:  s.LastRun,
		Error:    s.LastError,
	}
	if a.Error != "" && !hasHint(a.Error) {
		a.ErrorHint = Hint(a.Error)
	}
	for _, f := range s.Failures {
		a.Failures = append(a.Failures, Problem{UIDL: f.UIDL, Attempts: f.Attempts, Error: f.Error, Hint: Hint(f.Error)})
	}
	for _, f := range s.Suspects {
		a.Suspects = append(a.Suspects, Problem{UIDL: f.UIDL, Attempts: f.Attempts, Error: f.Error, Hint: suspectHint})
	}
	switch {
	case a.Error != "":
		a.Status = StatusFailed
	case a.Failed > 0 || a.Pending > 0:
		a.Status = StatusIncomplete
	case a.Copied == 0 && a.ServerMessages == 0:
		a.Status = StatusEmpty
	case a.Verified == a.Copied && a.ServerMessages <= a.Copied+a.Adopted:
		a.Status = StatusVerified
	default:
		a.Status = StatusCopied
	}
	return a
}

func totals(accounts []Account) Totals {
	var t Totals
	for _, a := range accounts {
		t.Accounts++
		switch a.Status {
		case StatusVerified, StatusCopied, StatusEmpty:
			t.AccountsComplete++
		}
		t.ServerMessages += a.ServerMessages
		t.ServerBytes += a.ServerBytes
		t.Pending += a.Pending
		t.Copied += a.Copied
		t.Verified += a.Verified
		t.Deleted += a.Deleted
		t.Failed += a.Failed
		t.Suspect += a.Suspect
		t.Adopted += a.Adopted
		t.Stored += a.Stored
		t.StoredBytes += a.StoredBytes
		if a.Stored == 0 {
			continue
		}
		if t.FirstStored.IsZero() || a.FirstStored.Before(t.FirstStored) {
			t.FirstStored = a.FirstStored
		}
		if a.LastStored.After(t.LastStored) {
			t.LastStored = a.LastStored
		}
	}
	t.Duration = t.LastStored.Sub(t.FirstStored)
	return t
}

// overlaps reports whether run took place (in part) in the report's
// period; with no period, every run does. A run that did not finish is
// taken to last until the report was made.
func (r *Report) overlaps(run journal.Run) bool {
	if r.From.IsZero() {
		return true
	}
	end := run.FinishedAt
	if end.IsZero() {
		end = r.Generated
	}
	return run.StartedAt.Before(r.To) && !end.Before(r.From)
}

// bucketSizes are the round bucket sizes Build picks from, smallest first.
var bucketSizes = []time.Duration{
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour,
	24 * time.Hour, 2 * 24 * time.Hour, 7 * 24 * time.Hour, 14 * 24 * time.Hour, 28 * 24 * time.Hour,
}

// chooseBucket returns the smallest of bucketSizes that covers [from, to)
// in at most MaxBuckets buckets, or the largest.
func chooseBucket(from, to time.Time) time.Duration {
	for _, b := range bucketSizes {
		if bucketCount(from, to, b) <= MaxBuckets {
			return b
		}
	}
	return bucketSizes[len(bucketSizes)-1]
}

// bucketIndex is the number of the bucket of size b that holds t; buckets
// are aligned to the Unix epoch, as journal.Throughput's.
func bucketIndex(t time.Time, b time.Duration) int64 {
	n := t.UnixNano()
	i := n / int64(b)
	if n < 0 && n%int64(b) != 0 {
		i--
	}
	return i
}

// bucketCount is how many buckets of size b [from, to) touches.
func bucketCount(from, to time.Time, b time.Duration) int64 {
	return bucketIndex(to.Add(-time.Nanosecond), b) - bucketIndex(from, b) + 1
}

// fillBuckets sums pts of the wanted accounts per bucket and returns one
// point for every bucket of [from, to), the empty ones included.
func fillBuckets(from, to time.Time, b time.Duration, pts []journal.Point, want func(string) bool) []Point {
	first := bucketIndex(from, b)
	out := make([]Point, bucketCount(from, to, b))
	for i := range out {
		out[i].Start = time.Unix(0, (first+int64(i))*int64(b)).UTC()
	}
	for _, p := range pts {
		if !want(p.Account) {
			continue
		}
		i := bucketIndex(p.Start, b) - first
		if i < 0 || i >= int64(len(out)) { // cannot happen: the query was bounded by the period
			continue
		}
		out[i].Messages += p.Messages
		out[i].Bytes += p.Bytes
	}
	return out
}
