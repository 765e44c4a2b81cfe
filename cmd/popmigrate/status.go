package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/popmigrate/popmigrate/internal/units"
	"github.com/popmigrate/popmigrate/journal"
)

type statusOptions struct {
	io      *iostreams
	Journal string
	JSON    bool
	Workers bool
}

func newStatusCmd(io *iostreams, runF func(context.Context, *statusOptions) error) *cobra.Command {
	opts := &statusOptions{io: io}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show what the journal holds, per account",
		Long: `Status reads the journal and prints, per account, how many messages the
server listed at the last run and where the journal's messages stand, with the
last error. It contacts no server and never writes the journal: it opens it
read-only, and refuses one an older popmigrate wrote until a run, verify or
purge has upgraded it.

  ON SERVER  messages the server listed at the last run
  LISTED     listed, not stored yet
  STORED     stored in every destination, verified or not (still on the server)
  VERIFIED   of those stored, the ones a verification read back intact
  DELETED    deleted from the server by purge (or run --delete)
  FAILED     failed (see the errors below the table)
  SUSPECT    RETR delivered a size LIST does not explain; kept on the server
  ADOPTED    fetched by another POP3 client before (popmigrate journal import):
             never downloaded, verified or deleted by popmigrate

LISTED, STORED, DELETED and FAILED add up to every message of the account that
is not adopted; VERIFIED is part of STORED. Below the table, a line per account
names its errors, its suspect messages, and the messages journal rebuild
matched by headers only, which purge keeps until journal rebuild --confirm.
--json prints the same counts.`,
		Example: `  popmigrate status --journal /var/lib/popmigrate/run.db
  popmigrate status --json | jq '.[] | select(.failed > 0)'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return statusRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Journal, "journal", defaultJournal, "journal: a SQLite `FILE` or a postgres://USER@HOST/DB URL")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print JSON on stdout")
	cmd.Flags().BoolVar(&opts.Workers, "workers", false, "show the migration as a whole instead: accounts by state, what is left, the pace and an ETA, and each worker sharing the journal")
	return cmd
}

// statusJSON is one account in `status --json`. Listed, Stored, Deleted
// and Failed add up to the account's messages that are not adopted;
// Verified is part of Stored.
type statusJSON struct {
	Account     string `json:"account"`
	Source      string `json:"source"`          // the server, without password
	ServerCount int    `json:"server_messages"` // listed by the server at the last run
	ServerBytes int64  `json:"server_bytes"`
	Listed      int    `json:"listed"`   // listed, not stored yet
	Stored      int    `json:"stored"`   // stored in every destination, verified or not, not deleted
	Verified    int    `json:"verified"` // of Stored, those a verification read back intact
	Deleted     int    `json:"deleted"`  // deleted from the server
	Failed      int    `json:"failed"`
	Suspect     int    `json:"suspect"` // suspect, whatever their state
	Adopted     int    `json:"adopted"` // adopted from another client's state, apart from the others
	// Unconfirmed counts the messages journal rebuild matched by headers
	// only: purge keeps them until journal rebuild --confirm.
	Unconfirmed int                      `json:"unconfirmed"`
	LastError   string                   `json:"last_error,omitempty"`
	LastRun     *time.Time               `json:"last_run,omitempty"`
	Failures    []journal.MessageFailure `json:"failures,omitempty"`
	Suspects    []journal.MessageFailure `json:"suspects,omitempty"`
	// State is "running" (a worker holds the account's live lease: Worker
	// and Since say which and since when), "done" (listed, everything
	// stored, no failure), "failed" (an error or failed messages) or
	// "waiting" (not listed yet, or messages left to store).
	State  string     `json:"state"`
	Worker string     `json:"worker,omitempty"`
	Since  *time.Time `json:"since,omitempty"`
}

// accountState is the State of statusJSON for s, given its live lease
// (nil when none).
func accountState(s journal.AccountStatus, live *journal.LeaseInfo) string {
	switch {
	case live != nil:
		return "running"
	case s.LastError != "" || s.Failed > 0:
		return "failed"
	case !s.LastRun.IsZero() && s.Listed == 0:
		return "done"
	}
	return "waiting"
}

// workersJSON is `status --workers --json`: the migration as a whole and
// each worker that shares it.
type workersJSON struct {
	Accounts map[string]int `json:"accounts"` // by state
	// Remaining is what the journal knows is left: messages listed and
	// not stored, their bytes, and accounts never listed (size unknown).
	RemainingMessages int     `json:"remaining_messages"`
	RemainingBytes    int64   `json:"remaining_bytes"`
	Unlisted          int     `json:"unlisted_accounts"`
	RecentBytesPerSec float64 `json:"recent_bytes_per_second"` // all workers, over the last 5 minutes
	// ETASeconds is RemainingBytes at the recent rate; absent when nothing
	// was stored lately.
	ETASeconds *float64     `json:"eta_seconds,omitempty"`
	Workers    []workerJSON `json:"workers"`
}

type workerJSON struct {
	Worker       string     `json:"worker"` // "pid N on HOST"
	Live         bool       `json:"live"`
	Running      int        `json:"running"`
	RunningSince *time.Time `json:"running_since,omitempty"`
	Finished     int        `json:"finished"`
	Messages     int        `json:"messages"` // stored in its accounts while it held them
	Bytes        int64      `json:"bytes"`
	BytesPerSec  float64    `json:"bytes_per_second"`
}

// rateWindow is the window of the recent rate an ETA assumes.
const rateWindow = 5 * time.Minute

func statusRun(ctx context.Context, opts *statusOptions) error {
	if _, err := os.Stat(opts.Journal); err != nil && !journal.IsPostgres(opts.Journal) {
		return usageError("journal %s: %v (give --journal FILE of an earlier run)", opts.Journal, err)
	}
	j, err := journal.OpenReadOnly(ctx, opts.Journal)
	if err != nil {
		return usageError("%w", err)
	}
	defer j.Close()
	st, err := j.Status(ctx)
	if err != nil {
		return err
	}
	leases, err := j.Leases(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	live := map[string]*journal.LeaseInfo{}
	for i, l := range leases {
		if l.Holder.ID != "" && now.Before(l.ExpiresAt) {
			live[l.Account] = &leases[i]
		}
	}
	out := make([]statusJSON, 0, len(st))
	for _, s := range st {
		sj := statusJSON{
			Account: s.Account, Source: s.Source, ServerCount: s.ServerCount, ServerBytes: s.ServerBytes,
			// The journal counts each state apart; a verified message
			// is stored all the same.
			Listed: s.Listed, Stored: s.Stored + s.Verified, Verified: s.Verified, Deleted: s.Deleted, Failed: s.Failed,
			LastError: s.LastError, Failures: s.Failures, Suspect: s.Suspect, Suspects: s.Suspects, Adopted: s.Adopted,
			Unconfirmed: s.Unconfirmed, State: accountState(s, live[s.Account]),
		}
		if !s.LastRun.IsZero() {
			t := s.LastRun
			sj.LastRun = &t
		}
		if l := live[s.Account]; l != nil {
			since := l.AcquiredAt
			sj.Worker, sj.Since = l.Holder.String(), &since
		}
		out = append(out, sj)
	}
	if opts.Workers {
		w, err := migrationView(ctx, j, out)
		if err != nil {
			return err
		}
		if opts.JSON {
			return writeJSON(opts.io.Out, w)
		}
		printWorkers(opts.io.Out, w)
		return nil
	}
	if opts.JSON {
		return writeJSON(opts.io.Out, out)
	}
	if len(out) == 0 {
		fmt.Fprintln(opts.io.Out, "the journal holds no accounts yet")
		return nil
	}
	tw := tabwriter.NewWriter(opts.io.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACCOUNT\tON SERVER\tLISTED\tSTORED\tVERIFIED\tDELETED\tFAILED\tSUSPECT\tADOPTED\tLAST RUN\tSTATE")
	for _, s := range out {
		last := "-"
		if s.LastRun != nil {
			last = s.LastRun.Local().Format("2006-01-02 15:04")
		}
		onServer := strconv.Itoa(s.ServerCount)
		if s.LastRun == nil {
			onServer = "unknown" // never listed: not zero, not known
		}
		state := s.State
		if s.Worker != "" {
			state += " (" + s.Worker + ", since " + s.Since.Local().Format("15:04") + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", s.Account, onServer, s.Listed, s.Stored, s.Verified, s.Deleted, s.Failed, s.Suspect, s.Adopted, last, state)
	}
	tw.Flush()
	for _, s := range out {
		if s.LastError != "" {
			fmt.Fprintf(opts.io.Out, "! %s: %s\n", s.Account, s.LastError)
		}
		for _, f := range s.Failures {
			fmt.Fprintf(opts.io.Out, "! %s: message %q (%d attempts): %s\n", s.Account, f.UIDL, f.Attempts, f.Error)
		}
		for _, f := range s.Suspects {
			fmt.Fprintf(opts.io.Out, "! %s: message %q is SUSPECT, kept on the server: %s\n", s.Account, f.UIDL, f.Error)
		}
		if s.Unconfirmed > 0 {
			fmt.Fprintf(opts.io.Out, "! %s: %s matched by headers only by journal rebuild, kept on the server until popmigrate journal rebuild --confirm compares them byte for byte\n",
				s.Account, plural(s.Unconfirmed, "message"))
		}
	}
	return nil
}

// migrationView builds `status --workers`: the accounts by state (from
// accounts), what is left, the recent rate and an ETA, and the workers.
func migrationView(ctx context.Context, j *journal.Journal, accounts []statusJSON) (*workersJSON, error) {
	v := &workersJSON{Accounts: map[string]int{"done": 0, "running": 0, "waiting": 0, "failed": 0}, Workers: []workerJSON{}}
	for _, a := range accounts {
		v.Accounts[a.State]++
	}
	var err error
	if v.RemainingMessages, v.RemainingBytes, v.Unlisted, err = j.Remaining(ctx); err != nil {
		return nil, err
	}
	if v.RecentBytesPerSec, _, err = j.RecentRate(ctx, rateWindow); err != nil {
		return nil, err
	}
	if v.RecentBytesPerSec > 0 {
		eta := float64(v.RemainingBytes) / v.RecentBytesPerSec
		v.ETASeconds = &eta
	}
	ws, err := j.Workers(ctx)
	if err != nil {
		return nil, err
	}
	for _, w := range ws {
		wj := workerJSON{Worker: w.Holder.String(), Live: w.Live, Running: w.Running, Finished: w.Finished,
			Messages: w.Messages, Bytes: w.Bytes, BytesPerSec: w.Rate()}
		if !w.RunningSince.IsZero() {
			t := w.RunningSince
			wj.RunningSince = &t
		}
		v.Workers = append(v.Workers, wj)
	}
	return v, nil
}

// printWorkers writes the text of `status --workers`.
func printWorkers(w io.Writer, v *workersJSON) {
	a := v.Accounts
	fmt.Fprintf(w, "accounts: %d done, %d running, %d waiting, %d failed\n", a["done"], a["running"], a["waiting"], a["failed"])
	left := fmt.Sprintf("left: %d messages (%s) listed and not stored", v.RemainingMessages, units.Bytes(v.RemainingBytes))
	if v.Unlisted > 0 {
		left += fmt.Sprintf(", and %d accounts not listed yet", v.Unlisted)
	}
	fmt.Fprintln(w, left)
	switch {
	case v.ETASeconds != nil:
		fmt.Fprintf(w, "pace: %s/s over the last %v, all workers; ETA %v for what is listed\n",
			units.Bytes(int64(v.RecentBytesPerSec)), rateWindow, (time.Duration(*v.ETASeconds) * time.Second).Round(time.Second))
	default:
		fmt.Fprintf(w, "pace: nothing stored in the last %v; no ETA\n", rateWindow)
	}
	if len(v.Workers) == 0 {
		fmt.Fprintln(w, "no worker has taken an account yet")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKER\tLIVE\tRUNNING\tSINCE\tFINISHED\tSTORED\tRATE")
	for _, x := range v.Workers {
		since := "-"
		if x.RunningSince != nil {
			since = x.RunningSince.Local().Format("15:04:05")
		}
		live := "no"
		if x.Live {
			live = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%d (%s)\t%s/s\n", x.Worker, live, x.Running, since, x.Finished, x.Messages, units.Bytes(x.Bytes), units.Bytes(int64(x.BytesPerSec)))
	}
	tw.Flush()
}
