// Package pipeline is popmigrate's engine: it runs one POP3 session per
// account, many accounts at once, and moves every message the journal does
// not yet hold into every destination, in the order the durability
// protocol demands:
//
//	RETR -> canonical form, sha256, size in one pass, 64 KiB at a time
//	     -> into the one destination's temporary file (exporters.Streamer:
//	        Maildir, eml), committed once the body ended whole; or into a spool,
//	        then Put to each destination
//	     -> every K messages or T: Sync each destination, then ONE journal
//	        transaction records the batch as stored.
//
// The journal therefore never claims a message that is not durable in its
// destinations, and a destination never holds a message twice: a crash
// between Put and the journal commit leaves a message the journal does not
// know, which the next run downloads again and Puts again, and Put is
// idempotent per message key.
//
// Parallelism is across accounts (a POP3 mailbox is locked per session);
// inside one session the download of the next messages (pipelined RETR)
// overlaps the writing of the current one.
package pipeline

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"sort"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/exporters/location"
	"github.com/popmigrate/popmigrate/internal/ratelimit"
	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/verify"
)

// DefaultBatchSize is the default of Options.BatchSize: how many small
// messages share one barrier and one journal transaction. At 256 rather
// than 64, 5000 messages of 4 KiB into Maildir took 0.78 x the time with
// verify and 0.83 x without (BenchmarkRunSmallMessages, runs alternated):
// the writer's syncfs, renames and commit are what bounds that workload.
// A crash costs at most the download of one batch, which the next run
// finds in the destination rather than writes again.
const DefaultBatchSize = 256

// Options tune a run. The zero value of every field means its default.
type Options struct {
	// Jobs is how many accounts work at once; an account that waits
	// (between sessions, for its host, for another process's lease) holds
	// none (see scheduler). Default 8.
	Jobs int
	// PerHost is the most sessions open at once to one POP3 host. Default 4.
	PerHost int
	// Window is how many RETR commands are kept in flight when the server
	// offers PIPELINING. Default 32.
	Window int
	// BatchSize is how many messages one group commit holds at most.
	// Default DefaultBatchSize.
	BatchSize int
	// BatchBytes ends a group commit once its messages hold this many
	// bytes, so that large messages are made durable and recorded soon
	// rather than after BatchSize of them. Default 16 MiB.
	BatchBytes int64
	// BatchInterval is the longest a stored message waits for its group
	// commit. Default 1s.
	BatchInterval time.Duration
	// SpoolThreshold is the largest message held in memory; larger ones
	// are spooled to a temporary file. Default 1 MiB: into IMAP, a few
	// messages of several MiB held at once (one per APPEND in flight,
	// two queued) took the client's peak RSS from 44 to 66 MiB with
	// 4 MiB, for one mailbox of 424 MB (make bench, row imap-big).
	SpoolThreshold int64
	// SpoolDir is where large messages are spooled. Default os.TempDir().
	SpoolDir string
	// Attempts is how many times a session is tried for retryable errors
	// ([IN-USE], [LOGIN-DELAY], [SYS/TEMP], network faults). Default 5.
	Attempts int
	// Backoff is the first retry delay; it doubles, with jitter, up to
	// MaxBackoff. Defaults 2s and 60s. After a [LOGIN-DELAY] refusal the
	// delay is at least what the server's CAPA LOGIN-DELAY asks.
	Backoff, MaxBackoff time.Duration
	// MaxWait bounds the time one account spends waiting between its
	// sessions in all (backoff, LOGIN-DELAY); past it the account fails.
	// Default 30 minutes.
	MaxWait time.Duration
	// Timeout is the POP3 idle timeout: the longest the server may send
	// nothing while an answer is due (each read; a slow server whose
	// bytes keep coming is not timed out). Default 60s.
	Timeout time.Duration
	// MessageAttempts bounds the attempts at one message, counted in the
	// journal across sessions and runs: a RETR answered -ERR, a reply out
	// of sync with the commands, a destination that refused it, and a
	// session that timed out or dropped while the message's answer was
	// due when it was the first message asked for in the session. A
	// message that failed or broke a session is fetched after the rest of
	// the plan; once it has failed MessageAttempts times in all it is
	// reported failed, and each later run tries it once more, last (a
	// server's trouble may have passed). Default 3.
	MessageAttempts int
	// RetryFailed gives messages that used up MessageAttempts as many
	// attempts again in this run.
	RetryFailed bool
	// Holder is this process's identity for account leases. The zero
	// value means journal.NewHolder().
	Holder journal.Holder
	// LeaseTTL is how long an account lease lasts without renewal; it is
	// renewed every third of that. Default journal.DefaultLeaseTTL.
	LeaseTTL time.Duration
	// VerifyInSession makes Run verify each account in its last download
	// session, before QUIT, against that session's listing: no second
	// login (what a LOGIN-DELAY server needs). PurgeInSession, when not
	// nil, then deletes there what Purge would, when the verification
	// found no mismatch. The results are Report.Verify and Report.Purge.
	VerifyInSession bool
	PurgeInSession  *PurgeOptions
	// UntilEmpty is for servers that list a mailbox in slices and hide
	// what a session retrieved from later sessions (Gmail's POP3 lists
	// about 250 of the oldest messages not yet downloaded): after a
	// session that stored something, another one follows, until a
	// listing brings nothing new. Every message is committed before each
	// QUIT. Verify then does not call a stored message that the server no
	// longer lists gone from the server: it is hidden, not gone. An
	// account whose provider behaves so (config.Account.UntilEmpty) is
	// treated so whatever this says.
	UntilEmpty bool
	// WaitForLease is for an account whose lease another process holds.
	// Run always leaves such an account to it while it lives (see
	// scheduler) and reports it done by that process when it finished it
	// whole; with WaitForLease, Run runs it once it is free whatever the
	// other did. Purge waits for it with WaitForLease, and without fails
	// it at once.
	WaitForLease bool
	// MaxMessageSize caps one message. Default 2 GiB.
	MaxMessageSize int64
	// MaxBandwidth and MaxBandwidthPerHost cap the bytes per second read
	// from the POP3 servers, over all sessions and per host. 0 means no
	// cap.
	MaxBandwidth, MaxBandwidthPerHost int64
	// Progress receives progress events. Nil means none.
	Progress Progress
	// Metrics receives counts for monitoring (--metrics-listen). Nil
	// means none.
	Metrics Metrics
	// Logger receives warnings and per-account lines. Nil discards.
	Logger *slog.Logger
	// Debug, when set, receives POP3 protocol transcripts (secrets
	// redacted).
	Debug func(account string) *os.File

	// Destinations is the registry of destination kinds (exporters/all
	// has every kind of this build). It is required to open destinations.
	Destinations *location.Registry
	// IMAP tunes IMAP destinations.
	IMAP IMAPOptions

	hooks hooks
}

// IMAPOptions tune IMAP destinations.
type IMAPOptions struct {
	// Flags are set on uploaded messages. Nil means \Seen; an empty
	// non-nil slice means none.
	Flags []string
	// DateFrom chooses the INTERNALDATE: "received" (the newest
	// Received: header, then Date:, then the download time; the
	// default), "date" (Date:, then the download time) or "download".
	DateFrom string
	// Conns is the number of connections per destination. Default 2.
	Conns int
	// CAFile is the CA file for IMAP servers; default the account's.
	CAFile string
	// QuarantineDir keeps messages the server refuses, as .eml files.
	// Empty means no quarantine: such a message is only reported failed.
	QuarantineDir string
}

// hooks let tests stop the process at exact points of the protocol.
type hooks struct {
	afterPut    func(n int) // after the n-th Put of the process
	afterSync   func(n int) // after the n-th batch's Sync, before its journal commit
	afterCommit func(n int) // after the n-th journal commit
}

func (o *Options) withDefaults() Options {
	c := *o
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.Jobs, 8)
	def(&c.PerHost, 4)
	def(&c.Window, 32)
	def(&c.BatchSize, DefaultBatchSize)
	if c.BatchBytes <= 0 {
		c.BatchBytes = 16 << 20
	}
	def(&c.Attempts, 5)
	def(&c.MessageAttempts, 3)
	if c.Holder.ID == "" {
		c.Holder = journal.NewHolder()
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = journal.DefaultLeaseTTL
	}
	if c.BatchInterval <= 0 {
		c.BatchInterval = time.Second
	}
	if c.SpoolThreshold <= 0 {
		c.SpoolThreshold = 1 << 20
	}
	if c.SpoolDir == "" {
		c.SpoolDir = os.TempDir()
	}
	if c.Backoff <= 0 {
		c.Backoff = 2 * time.Second
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 60 * time.Second
	}
	if c.MaxWait <= 0 {
		c.MaxWait = 30 * time.Minute
	}
	if c.Timeout <= 0 {
		c.Timeout = 60 * time.Second
	}
	if c.MaxMessageSize <= 0 {
		c.MaxMessageSize = 2 << 30
	}
	if c.Progress == nil {
		c.Progress = nopProgress{}
	}
	if c.Metrics == nil {
		c.Metrics = nopMetrics{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Progress receives events as a run goes on. Its methods are called from
// many goroutines at once.
type Progress interface {
	// AccountStart is called when an account's plan is known: how many
	// messages and bytes will be downloaded.
	AccountStart(account string, messages int, bytes int64)
	// MessageDone is called when a message has been downloaded and written.
	MessageDone(account string, bytes int64)
	// AccountDone is called once per account at the end.
	AccountDone(account string, r *AccountReport)
}

// Metrics receives counts as a run goes on, for monitoring. Its methods
// are called from many goroutines at once and must not block.
type Metrics interface {
	// AccountState says an account is "running", "done" (whole) or
	// "failed".
	AccountState(account, state string)
	// Stored counts messages a group commit recorded as stored, and
	// their bytes.
	Stored(messages int, bytes int64)
	// Verified counts copies read back intact.
	Verified(copies int)
	// Deleted counts messages a server deleted.
	Deleted(messages int)
	// Failed counts one failed attempt at a message, by error class.
	Failed(class string)
	// Session counts a POP3 session opened; Retry one retried.
	Session()
	Retry()
	// JournalCommit observes the latency of a group commit.
	JournalCommit(d time.Duration)
}

type nopMetrics struct{}

func (nopMetrics) AccountState(string, string) {}
func (nopMetrics) Stored(int, int64)           {}
func (nopMetrics) Verified(int)                {}
func (nopMetrics) Deleted(int)                 {}
func (nopMetrics) Failed(string)               {}
func (nopMetrics) Session()                    {}
func (nopMetrics) Retry()                      {}
func (nopMetrics) JournalCommit(time.Duration) {}

type nopProgress struct{}

func (nopProgress) AccountStart(string, int, int64)    {}
func (nopProgress) MessageDone(string, int64)          {}
func (nopProgress) AccountDone(string, *AccountReport) {}

// Report is the outcome of a run.
type Report struct {
	Started  time.Time        `json:"started"`
	Finished time.Time        `json:"finished"`
	Duration float64          `json:"duration_seconds"`
	Accounts []*AccountReport `json:"accounts"`
	Totals   Totals           `json:"totals"`
	// Verify holds the verify phase's results, when it ran.
	Verify []*verify.Result `json:"verify,omitempty"`
	// Purge holds what --delete did, when asked.
	Purge []*PurgeReport `json:"purge,omitempty"`
}

// Totals sums the account reports.
type Totals struct {
	Accounts             int   `json:"accounts"`
	AccountsFailed       int   `json:"accounts_failed"`
	ServerMessages       int   `json:"server_messages"`
	ServerBytes          int64 `json:"server_bytes"`
	Stored               int   `json:"stored"`
	StoredBytes          int64 `json:"stored_bytes"`
	SkippedAlreadyStored int   `json:"skipped_already_stored"`
	Adopted              int   `json:"adopted"`
	Failed               int   `json:"failed"`
}

// AccountReport is the outcome of one account.
type AccountReport struct {
	Account string `json:"account"`
	Source  string `json:"source"`
	// Destinations lists the destination ids.
	Destinations []string `json:"destinations"`
	// ServerMessages and ServerBytes are the server's listing (LIST sizes,
	// as the server counts them) at the last session; ServerListed says
	// whether any session got that far (when not, they are unknown, not
	// zero).
	ServerMessages int   `json:"server_messages"`
	ServerBytes    int64 `json:"server_bytes"`
	ServerListed   bool  `json:"server_listed"`
	// Stored is how many messages this run stored in every destination.
	Stored      int   `json:"stored"`
	StoredBytes int64 `json:"stored_bytes"`
	// SkippedAlreadyStored is how many listed messages earlier runs had
	// already stored everywhere.
	SkippedAlreadyStored int `json:"skipped_already_stored"`
	// Adopted is how many listed messages the account adopted from
	// another POP3 client's state (popmigrate journal import, see
	// journal.Adopt): that client fetched them, so they were not
	// downloaded, are not verified and are never deleted from the
	// server. They are not failures.
	Adopted int `json:"adopted"`
	// Failed is how many listed messages are not stored everywhere at
	// the end of this run; Failures says why.
	Failed   int              `json:"failed"`
	Failures []MessageFailure `json:"failures,omitempty"`
	// SizeMismatches lists messages whose RETR size differed from LIST.
	// They are stored as received. Those whose difference the line ends
	// cannot explain (see SizeMismatch.Suspect) are marked suspect in the
	// journal: kept on the server, never deleted without
	// PurgeOptions.DeleteSuspect.
	SizeMismatches []SizeMismatch `json:"size_mismatches,omitempty"`
	// Suspect counts the SizeMismatches that are suspect.
	Suspect int `json:"suspect,omitempty"`
	// Quarantined lists messages a destination refused (an IMAP server's
	// NO or BAD, NUL bytes) and kept as .eml files instead: not lost, but
	// not stored there either; they also count as failed.
	Quarantined []Quarantined `json:"quarantined,omitempty"`
	// NoUIDL says the server has no UIDL: keys were made from the headers
	// (TOP n 0) and size, which is weaker than a real UIDL.
	NoUIDL bool `json:"no_uidl,omitempty"`
	// OverlongUIDLs counts messages whose UIDL was longer than the line
	// bound: each was keyed by its headers and size, as without UIDL.
	OverlongUIDLs int `json:"overlong_uidls,omitempty"`
	// DuplicateUIDLs counts listing entries whose UIDL repeated an earlier
	// one; they were kept apart, never merged.
	DuplicateUIDLs int `json:"duplicate_uidls,omitempty"`
	// Sessions is how many POP3 sessions were opened (1 + retries).
	Sessions int `json:"sessions"`
	// Error is why the account could not be completed, if it could not.
	Error string `json:"error,omitempty"`
	// DoneBy names the other popmigrate (on the same journal) that
	// finished the account while this run waited for its lease: this run
	// did nothing to it, and Whole and Error are how that one left it.
	DoneBy string `json:"done_by,omitempty"`
	// Whole is true when every message on the server is stored in every
	// destination, or is adopted.
	Whole bool `json:"whole"`

	failures map[string]MessageFailure
	// verify and purge are what VerifyInSession and PurgeInSession did,
	// for the Report.
	verify *verify.Result
	purge  *PurgeReport
}

// MessageFailure is one message that could not be stored.
type MessageFailure struct {
	UIDL string `json:"uidl"`
	// ID is the message's number in the session that last listed it.
	ID    int    `json:"id"`
	Error string `json:"error"`
}

// Quarantined is a message a destination refused and kept aside.
type Quarantined struct {
	UIDL        string `json:"uidl"`
	Destination string `json:"destination"`
	Path        string `json:"path"`
	Reason      string `json:"reason"`
}

// SizeMismatch is a message whose RETR size differed from its LIST size.
type SizeMismatch struct {
	UIDL string `json:"uidl"`
	ID   int    `json:"id"`
	// Listed is LIST's size; Received the octets RETR delivered (after
	// dot-unstuffing, line ends as sent).
	Listed   int64 `json:"listed"`
	Received int64 `json:"received"`
	// Suspect is set when Listed is outside what the line ends explain
	// (from the canonical LF size to the received size, give or take
	// sizeSlack octets): RETR may have delivered part of the message, so
	// it is never deleted from the source without an explicit flag.
	Suspect bool `json:"suspect"`
}

// Run migrates every account and returns the report. It returns an error
// only when the run as a whole could not go on (the journal failed, or ctx
// was cancelled); an account that fails is reported in its AccountReport
// and the others go on.
func Run(ctx context.Context, j *journal.Journal, accounts []*config.Account, opts *Options) (*Report, error) {
	if opts == nil {
		opts = &Options{}
	}
	o := opts.withDefaults()
	r := newRunner(o, j)
	r.spool = newSpooler(o.SpoolDir, o.SpoolThreshold)
	// The leases as the run begins: an account that another process
	// takes and finishes after this point was done during this run (see
	// doneByOther).
	leases, err := j.Leases(ctx)
	if err != nil {
		return nil, err
	}
	for _, l := range leases {
		r.startEpochs[l.Account] = l.Epoch
	}
	rep := &Report{Started: time.Now()}
	rep.Accounts = make([]*AccountReport, len(accounts))
	for i, a := range accounts {
		r.sched.add(i, a.Host, a.PerHost)
	}
	g, gctx := errgroup.WithContext(ctx)
	for {
		i, t, err := r.sched.next(gctx)
		if err != nil || i < 0 {
			break
		}
		g.Go(func() error {
			a := accounts[i]
			ar, again, err := r.account(gctx, a, t)
			if !again.IsZero() {
				o.Metrics.AccountState(a.Name, "waiting")
				t.retryAt(i, again)
				return nil
			}
			t.done()
			rep.Accounts[i] = ar
			o.Progress.AccountDone(a.Name, ar)
			return err
		})
	}
	err = g.Wait()
	if err == nil {
		err = ctx.Err()
	}
	rep.Finished = time.Now()
	rep.Duration = rep.Finished.Sub(rep.Started).Seconds()
	// An account not started when the run ended (ctx, a journal error)
	// has no report.
	rep.Accounts = slices.DeleteFunc(rep.Accounts, func(a *AccountReport) bool { return a == nil })
	sort.Slice(rep.Accounts, func(a, b int) bool { return rep.Accounts[a].Account < rep.Accounts[b].Account })
	for _, a := range rep.Accounts {
		if a.verify != nil {
			rep.Verify = append(rep.Verify, a.verify)
		}
		if a.purge != nil {
			rep.Purge = append(rep.Purge, a.purge)
		}
		t := &rep.Totals
		t.Accounts++
		if !a.Whole {
			t.AccountsFailed++
		}
		t.ServerMessages += a.ServerMessages
		t.ServerBytes += a.ServerBytes
		t.Stored += a.Stored
		t.StoredBytes += a.StoredBytes
		t.SkippedAlreadyStored += a.SkippedAlreadyStored
		t.Adopted += a.Adopted
		t.Failed += a.Failed
	}
	return rep, err
}

// newRunner returns the runner of Run, Purge, Verify, Rebuild and Check
// (j is nil for Check): their options with the defaults filled in, one
// scheduler for their sessions, the bandwidth caps. Run adds its spooler.
func newRunner(o Options, j *journal.Journal) *runner {
	return &runner{
		opts:        o,
		j:           j,
		sched:       newScheduler(o.Jobs, o.PerHost),
		limits:      ratelimit.NewSet(o.MaxBandwidth, o.MaxBandwidthPerHost),
		seen:        map[string]journal.LeaseInfo{},
		lost:        map[string]int{},
		polls:       map[string]int{},
		startEpochs: map[string]int64{},
	}
}

// eachAccount calls fn for every account, o.Jobs at once, and returns the
// reports fn returned, those it returned nil left out, sorted by
// account(report), with the first error fn returned, or else ctx's. An
// error ends the context the other calls get.
func eachAccount[R any](ctx context.Context, o *Options, accounts []*config.Account, fn func(ctx context.Context, a *config.Account) (*R, error), account func(*R) string) ([]*R, error) {
	out := make([]*R, len(accounts))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.Jobs)
	for i, a := range accounts {
		g.Go(func() error {
			rep, err := fn(gctx, a)
			out[i] = rep
			return err
		})
	}
	err := g.Wait()
	if err == nil {
		err = ctx.Err()
	}
	out = slices.DeleteFunc(out, func(r *R) bool { return r == nil })
	sort.Slice(out, func(a, b int) bool { return account(out[a]) < account(out[b]) })
	return out, err
}

// journalError marks a journal failure: the run cannot go on safely.
type journalError struct{ err error }

func (e *journalError) Error() string { return "journal: " + e.err.Error() }
func (e *journalError) Unwrap() error { return e.err }

type runner struct {
	opts  Options
	j     *journal.Journal
	spool *spooler

	mu     sync.Mutex
	sched  *scheduler
	limits *ratelimit.Set // nil: no bandwidth cap
	// seen holds, per account, the lease another process held when this
	// run first found the account taken (see account); startEpochs the
	// lease epochs as the run began.
	seen        map[string]journal.LeaseInfo
	startEpochs map[string]int64
	// lost counts, per account, the leases this run lost to another
	// process (see maxLeaseLosses).
	lost map[string]int
	// polls counts, per account, how often this run found it held by
	// another process (see heldPoll).
	polls map[string]int

	putCount, syncCount, commitCount counter
}

type counter struct {
	mu sync.Mutex
	n  int
}

func (c *counter) next() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	return c.n
}

// untilEmpty reports whether a's server hides what a session retrieved
// (see Options.UntilEmpty).
func (o *Options) untilEmpty(a *config.Account) bool {
	return o.UntilEmpty || a.UntilEmpty
}

// hostSlot blocks until a session to a's host may open, and returns the
// function that frees the slot. The host's limit is the PerHost of its
// provider (a.PerHost) when the account has one, else opts.PerHost; the
// first account to open a session to a host sets it. Run's sessions take
// their slots through the scheduler's tickets instead; this is for verify,
// purge and check.
func (r *runner) hostSlot(ctx context.Context, a *config.Account) (func(), error) {
	return r.sched.hostSlot(ctx, a.Host, a.PerHost)
}

func (a *AccountReport) fail(uidl string, id int, err error) {
	if a.failures == nil {
		a.failures = map[string]MessageFailure{}
	}
	a.failures[uidl] = MessageFailure{UIDL: uidl, ID: id, Error: err.Error()}
}

func (a *AccountReport) succeed(uidl string) {
	delete(a.failures, uidl)
}

// finish fills the exported failure fields from the working set.
func (a *AccountReport) finish() {
	a.Failures = a.Failures[:0]
	for _, f := range a.failures {
		a.Failures = append(a.Failures, f)
	}
	sort.Slice(a.Failures, func(i, j int) bool { return a.Failures[i].UIDL < a.Failures[j].UIDL })
	a.Failed = len(a.Failures)
	a.Whole = a.Error == "" && a.Failed == 0
}
