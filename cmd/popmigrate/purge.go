package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/internal/units"
	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/pipeline"
)

type purgeOptions struct {
	io *iostreams
	accountFlags
	workFlags

	Journal       string
	DryRun        bool
	KeepDays      int
	DeleteSuspect bool
	Wait          bool
	LeaseTTL      time.Duration
	Jobs          int
	PerHost       int
	Timeout       time.Duration
	Attempts      int
	JSON          bool
	Verbose       bool
	logFlags
}

func newPurgeCmd(io *iostreams, runF func(context.Context, *purgeOptions) error) *cobra.Command {
	opts := &purgeOptions{io: io}
	cmd := &cobra.Command{
		Use:   "purge",
		Short: "Delete from the POP3 servers the messages verified in every destination",
		Long: `Purge deletes from each account's POP3 server the messages that an earlier
run stored and a verification read back intact in every destination the account
has now (--to). In one session per account it lists the mailbox again and
deletes (DELE) a message only if the journal holds it as verified in every
destination, its UIDL is listed exactly once (never a repeated UIDL, never a
server without UIDL), its size is the one recorded, and it was first seen at
least --keep-days days ago, and it is not suspect (RETR delivered a size that
LIST does not explain; --delete-suspect deletes those too). The journal records a message as deleted only after
the server confirms the deletions (QUIT answers +OK); a session that breaks
before that deletes nothing.

Give the same accounts and destinations as the run, and its --journal; or,
for a migration enrolled in the journal (popmigrate journal enrol),
--from-journal, which takes both from the journal, narrowed by --account and
--shard as run's are. Try --dry-run first: it prints the plan and changes
nothing.

Exit codes: 0 every account purged (or planned, with --dry-run), 1 some
account failed (nothing of it was marked deleted), 2 usage or configuration
error, 130 interrupted.`,
		Example: `  popmigrate purge --source pop3s://alice@mail.example.org --password-env POP_PASSWORD \
      --to maildir:/srv/mail/alice --journal popmigrate.db --dry-run
  popmigrate purge --accounts users.csv --to 'maildir:/srv/mail/{user}' --keep-days 30 --json
  # worker 2 of 4 of a migration enrolled in PostgreSQL
  popmigrate purge --from-journal --journal postgres://popmigrate@db.example/migration \
      --shard 2/4 --password-file '/run/secrets/pop/{user}' --to-password-file '/run/secrets/imap/{user}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.PerHostGiven = cmd.Flags().Changed("per-host")
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return purgeRun(cmd.Context(), opts)
		},
	}
	addAccountFlags(cmd, &opts.accountFlags)
	f := cmd.Flags()
	addWorkFlags(f, &opts.workFlags, "purge")
	f.StringVar(&opts.Journal, "journal", defaultJournal, "journal of the run: a SQLite `FILE` or a postgres://USER@HOST/DB URL")
	f.BoolVar(&opts.DryRun, "dry-run", false, "print what would be deleted; delete nothing, write nothing")
	f.IntVar(&opts.KeepDays, "keep-days", 0, "delete only messages first seen at least `N` days ago (0: no age limit)")
	f.BoolVar(&opts.DeleteSuspect, "delete-suspect", false, "delete suspect messages too (RETR delivered a size LIST does not explain: the stored copy may be incomplete)")
	f.BoolVar(&opts.Wait, "wait", false, "wait for accounts another popmigrate is working on (with this journal) instead of failing them")
	f.DurationVar(&opts.LeaseTTL, "lease-ttl", journal.DefaultLeaseTTL, "how long an account's lease outlives a purge that stopped renewing it (it is renewed every third of this)")
	f.IntVar(&opts.Jobs, "jobs", 8, "accounts purged at once")
	f.IntVar(&opts.PerHost, "per-host", 4, "most sessions open at once to one POP3 host")
	f.DurationVar(&opts.Timeout, "timeout", 60*time.Second, "POP3 idle timeout per command")
	f.IntVar(&opts.Attempts, "attempts", 5, "sessions tried per account on temporary errors before any DELE ([IN-USE], [SYS/TEMP], network)")
	f.BoolVar(&opts.JSON, "json", false, "print the reports as JSON on stdout")
	addLogFlags(f, &opts.logFlags)
	f.BoolVarP(&opts.Verbose, "verbose", "v", false, "log retries to stderr")
	return cmd
}

// purgeJSON is the output of `purge --json`.
type purgeJSON struct {
	DryRun   bool                    `json:"dry_run"`
	Accounts []*pipeline.PurgeReport `json:"accounts"`
}

func purgeRun(ctx context.Context, opts *purgeOptions) error {
	if opts.KeepDays < 0 {
		return usageError("--keep-days %d: want 0 or more", opts.KeepDays)
	}
	if err := checkLeaseTTL(opts.LeaseTTL); err != nil {
		return err
	}
	sel, err := opts.workFlags.check(&opts.accountFlags, "purge")
	if err != nil {
		return err
	}
	needs := accountNeeds{Destination: true, Password: true}
	warn := func(accounts []*config.Account) {
		printConfigWarnings(opts.io.Err, accounts)
		for _, a := range accounts {
			if a.InsecureSkipVerify {
				fmt.Fprintf(opts.io.Err, "popmigrate: WARNING: account %s: TLS certificate verification is OFF (--insecure-skip-verify); anyone on the path can read the password\n", a.Name)
			}
			if a.Security == config.SecurityPlain {
				fmt.Fprintf(opts.io.Err, "popmigrate: WARNING: account %s: connecting WITHOUT TLS (--insecure-plaintext)\n", a.Name)
			}
		}
	}
	var accounts []*config.Account
	if !opts.FromJournal {
		// Accounts from flags and files are checked before the journal
		// is touched.
		if accounts, err = opts.workFlags.load(ctx, &opts.accountFlags, nil, sel, needs); err != nil {
			return usageError("%w", err)
		}
		warn(accounts)
	}
	// Purge works from what a run recorded: a missing journal is a wrong
	// --journal, not an empty migration.
	if _, err := os.Stat(opts.Journal); err != nil && !journal.IsPostgres(opts.Journal) {
		return usageError("journal %s: %v (give --journal FILE of the run that stored the messages)", opts.Journal, err)
	}
	j, err := journal.Open(ctx, opts.Journal)
	if err != nil {
		return usageError("%w", err)
	}
	defer j.Close()
	if opts.FromJournal {
		if accounts, err = opts.workFlags.load(ctx, &opts.accountFlags, j, sel, needs); err != nil {
			if ctx.Err() != nil {
				return outcome{Interrupted: true}.err(outcomeText{Interrupted: "interrupted before anything was done"})
			}
			return usageError("%w", err)
		}
		if len(accounts) == 0 {
			// Only a shard can be empty: the other cases are errors.
			fmt.Fprintf(opts.io.Err, "popmigrate: shard %s holds none of the accounts; nothing to do\n", sel.Shard)
		}
		warn(accounts)
	}
	var runID int64
	if !opts.DryRun {
		if runID, err = j.StartRun(ctx, describeRun(opts.workFlags.describe(fmt.Sprintf("purge keep-days=%d", opts.KeepDays)), &opts.accountFlags, accounts)); err != nil {
			return err
		}
	}

	logger, err := opts.logFlags.logger(opts.io.Err, slog.LevelWarn, opts.Verbose)
	if err != nil {
		return usageError("%v", err)
	}
	po := &pipeline.Options{
		Destinations: destinations(),
		Jobs:         opts.Jobs, PerHost: opts.PerHost, Timeout: opts.Timeout, Attempts: opts.Attempts, WaitForLease: opts.Wait,
		LeaseTTL: opts.LeaseTTL, Logger: logger,
	}
	reps, purgeErr := pipeline.Purge(ctx, j, accounts, po, &pipeline.PurgeOptions{DryRun: opts.DryRun, KeepDays: opts.KeepDays, DeleteSuspect: opts.DeleteSuspect})

	o := purgeOutcome(reps)
	o.Interrupted = ctx.Err() != nil
	o.Err = purgeErr
	if opts.JSON {
		if err := writeJSON(opts.io.Out, purgeJSON{DryRun: opts.DryRun, Accounts: reps}); err != nil {
			return err
		}
	} else {
		printPurgeReport(opts.io.Out, reps, opts.DryRun)
	}
	if !opts.DryRun {
		if err := j.FinishRun(context.WithoutCancel(ctx), runID, o.code(), mustJSON(reps)); err != nil && o.Err == nil {
			o.Err = err
		}
	}
	return o.err(outcomeText{
		Interrupted: "interrupted; deletions the servers confirmed are recorded, the rest were not made; run the same command again",
		Failed:      fmt.Sprintf("%d of %d accounts failed (see the report); nothing of them was recorded as deleted", purgeFailed(reps), len(reps)),
	})
}

// purgeOutcome is the outcome of purge's reports: failed when some account
// failed.
func purgeOutcome(reps []*pipeline.PurgeReport) outcome {
	return outcome{Failed: purgeFailed(reps) > 0}
}

// purgeFailed counts the accounts purge failed.
func purgeFailed(reps []*pipeline.PurgeReport) int {
	return countFailed(reps, func(r *pipeline.PurgeReport) string { return r.Error })
}

// countFailed counts the reports whose error (errOf) is not empty.
func countFailed[R any](reps []R, errOf func(R) string) int {
	n := 0
	for _, r := range reps {
		if errOf(r) != "" {
			n++
		}
	}
	return n
}

// printPurgeReport writes the human report: per account one line, then
// its planned messages (dry run only), skips, errors and warnings. UIDLs
// come from the servers and are printed quoted.
func printPurgeReport(w io.Writer, reps []*pipeline.PurgeReport, dryRun bool) {
	planned, deleted := 0, 0
	for _, r := range reps {
		planned += len(r.Planned)
		deleted += r.Deleted
		if dryRun {
			fmt.Fprintf(w, "%s: would delete %d of %d (dry run)\n", r.Account, len(r.Planned), r.ServerMessages)
			for _, it := range r.Planned {
				fmt.Fprintf(w, "    - message %d: uidl %q, %s\n", it.ID, it.UIDL, units.Bytes(it.Size))
			}
		} else {
			fmt.Fprintf(w, "%s: deleted %d of %d\n", r.Account, r.Deleted, r.ServerMessages)
		}
		for _, reason := range pipeline.SkipReasons {
			if n := r.Skipped[reason]; n > 0 {
				fmt.Fprintf(w, "    skipped %d: %s\n", n, reason)
			}
		}
		if r.Error != "" {
			fmt.Fprintf(w, "! %s: %s\n", r.Account, r.Error)
		}
		for _, warn := range r.Warnings {
			fmt.Fprintf(w, "* %s: %s\n", r.Account, warn)
		}
	}
	if dryRun {
		fmt.Fprintf(w, "\ndry run: would delete %d messages from %d accounts; nothing was deleted\n", planned, len(reps))
		return
	}
	fmt.Fprintf(w, "\ndeleted %d messages from %d accounts\n", deleted, len(reps))
}
