package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/pipeline"
)

type journalRebuildOptions struct {
	io *iostreams
	accountFlags

	Journal  string
	DryRun   bool
	Confirm  bool
	Wait     bool
	LeaseTTL time.Duration
	Jobs     int
	PerHost  int
	Window   int
	Timeout  time.Duration
	Attempts int
	ToCAFile string
	JSON     bool
	Verbose  bool
	logFlags
}

func newJournalRebuildCmd(io *iostreams, runF func(context.Context, *journalRebuildOptions) error) *cobra.Command {
	opts := &journalRebuildOptions{io: io}
	cmd := &cobra.Command{
		Use:   "rebuild --to DEST... (--source URL | --accounts CSV | --config YAML)",
		Short: "Rebuild a lost journal from what the destinations already hold, so that run stores only what is missing",
		Long: `Rebuild records in the journal the messages each account's destinations already
hold, as a run would have recorded them, after the journal was lost or is
behind the destinations: the next popmigrate run then downloads and stores only
what is missing, and an IMAP folder receives nothing a second time.

Per account it reads every destination (never writing to it: files are opened
read-only, an IMAP folder with EXAMINE and BODY.PEEK), logs in to the POP3
server once, lists it (LIST and UIDL, keyed as run keys the messages), and
matches without downloading every message:

  Maildir, mbox, eml  a copy whose name or index carries a listed message's key
                      is that message (popmigrate wrote it from its RETR)
  IMAP folder         UID FETCH 1:* (RFC822.SIZE BODY.PEEK[HEADER]) in one
                      command; the sha256 of each copy's header block is
                      compared with that of the server's TOP n 0 (pipelined);
                      a copy that shares it is read back whole, and matches
                      a message whose bytes are known (from a copy matched by
                      key, or the journal) only with the same sha256, or
                      else, when one message and one copy share the header
                      block and the copy's size fits the LIST size, by its
                      header block and size
  ambiguous           several messages or copies with one header block, or a
                      server without TOP: those messages are downloaded
                      (RETR, pipelined, written nowhere) and matched by
                      sha256; each copy matches one message at most

Each match is recorded as a copy of the message in that destination, with the
copy's reference and sha256, not verified. Purge and run --delete delete no
message before a verify has read its copies back, and never a message matched
by header block and size alone: --confirm downloads those messages (now, or
the ones an earlier rebuild recorded so) and keeps only the copies equal byte
for byte. Copies that match nothing on the server are counted and left alone.
What the journal already records, and messages adopted from another client,
stay as they are.

Give the accounts and destinations of the run (the journal may also describe
them), and the --journal to rebuild: a missing one is created. Try --dry-run
first: it prints what would be recorded and writes nothing.

Exit codes: 0 every account rebuilt (or planned, with --dry-run), 1 some account
failed (see the report; run the same command again: what was recorded stays and
is not recorded twice), 2 usage or configuration error, 130 interrupted (the same).`,
		Example: `  # the journal of a migration into IMAP and Maildir was lost
  popmigrate journal rebuild --source pop3s://alice@mail.example.org --password-env POP_PASSWORD \
      --to imaps://alice@imap.example.org/INBOX --to-password-env IMAP_PASSWORD \
      --to maildir:/srv/mail/alice --journal alice.db --dry-run
  popmigrate journal rebuild ... --journal alice.db
  popmigrate run ... --journal alice.db          # stores only what is missing
  popmigrate journal rebuild ... --confirm       # before purge: compare byte for byte`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.PerHostGiven = cmd.Flags().Changed("per-host")
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return journalRebuildRun(cmd.Context(), opts)
		},
	}
	addAccountFlags(cmd, &opts.accountFlags)
	f := cmd.Flags()
	f.StringVar(&opts.Journal, "journal", defaultJournal, "journal to rebuild: a SQLite `FILE` (created if missing) or a postgres://USER@HOST/DB URL")
	f.BoolVar(&opts.DryRun, "dry-run", false, "print what would be recorded; write nothing")
	f.BoolVar(&opts.Confirm, "confirm", false, "download (RETR) every message matched by its header block and size only, and keep only the copies equal byte for byte")
	f.StringVar(&opts.ToCAFile, "to-ca-file", "", "trust the CA certificates in PEM `FILE` for IMAP destinations (default: --ca-file)")
	f.BoolVar(&opts.Wait, "wait", false, "wait for accounts another popmigrate is working on (with this journal) instead of failing them")
	f.DurationVar(&opts.LeaseTTL, "lease-ttl", journal.DefaultLeaseTTL, "how long an account's lease lasts without a heartbeat")
	f.IntVar(&opts.Jobs, "jobs", 8, "accounts rebuilt at once")
	f.IntVar(&opts.PerHost, "per-host", 4, "most sessions open at once to one POP3 host")
	f.IntVar(&opts.Window, "window", 32, "TOP and RETR commands in flight per session when the server pipelines")
	f.DurationVar(&opts.Timeout, "timeout", 60*time.Second, "POP3 and IMAP idle timeout per command")
	f.IntVar(&opts.Attempts, "attempts", 5, "sessions tried per account on temporary errors ([IN-USE], [SYS/TEMP], network)")
	f.BoolVar(&opts.JSON, "json", false, "print the reports as JSON on stdout")
	addLogFlags(f, &opts.logFlags)
	f.BoolVarP(&opts.Verbose, "verbose", "v", false, "log retries to stderr")
	return cmd
}

// journalRebuildJSON is the output of `journal rebuild --json`.
type journalRebuildJSON struct {
	DryRun   bool                      `json:"dry_run"`
	Confirm  bool                      `json:"confirm"`
	Accounts []*pipeline.RebuildReport `json:"accounts"`
}

func journalRebuildRun(ctx context.Context, opts *journalRebuildOptions) error {
	if err := checkLeaseTTL(opts.LeaseTTL); err != nil {
		return err
	}
	if opts.Window < 1 {
		return usageError("--window %d: want 1 or more", opts.Window)
	}
	needs := accountNeeds{Destination: true, Password: true}
	exists := journal.IsPostgres(opts.Journal) || fileExists(opts.Journal)
	var accounts []*config.Account
	var err error
	if accountsGiven(&opts.accountFlags) || !exists {
		accounts, err = loadAccounts(&opts.accountFlags, needs)
		if err == nil && len(accounts) == 0 {
			err = errors.New("no accounts: give --source, --accounts or --config, and the destinations with --to")
		}
	} else {
		accounts, err = journalAccounts(ctx, opts.Journal, &opts.accountFlags, needs)
	}
	if err != nil {
		return usageError("%w", err)
	}
	printConfigWarnings(opts.io.Err, accounts)
	for _, a := range accounts {
		if a.InsecureSkipVerify {
			fmt.Fprintf(opts.io.Err, "popmigrate: WARNING: account %s: TLS certificate verification is OFF (--insecure-skip-verify); anyone on the path can read the password\n", a.Name)
		}
		if a.Security == config.SecurityPlain {
			fmt.Fprintf(opts.io.Err, "popmigrate: WARNING: account %s: connecting WITHOUT TLS (--insecure-plaintext)\n", a.Name)
		}
	}

	j, cleanup, err := openRebuildJournal(ctx, opts.Journal, exists, opts.DryRun)
	if err != nil {
		return usageError("%w", err)
	}
	defer cleanup()
	var runID int64
	if !opts.DryRun {
		head := "journal rebuild"
		if opts.Confirm {
			head += " confirm"
		}
		if runID, err = j.StartRun(ctx, describeRun(head, &opts.accountFlags, accounts)); err != nil {
			return err
		}
	}
	logger, err := opts.logFlags.logger(opts.io.Err, slog.LevelWarn, opts.Verbose)
	if err != nil {
		return usageError("%v", err)
	}
	po := &pipeline.Options{
		Destinations: destinations(),
		Jobs:         opts.Jobs, PerHost: opts.PerHost, Window: opts.Window, Timeout: opts.Timeout, Attempts: opts.Attempts,
		WaitForLease: opts.Wait, LeaseTTL: opts.LeaseTTL, Logger: logger,
		IMAP: pipeline.IMAPOptions{CAFile: opts.ToCAFile},
	}
	reps, rebuildErr := pipeline.Rebuild(ctx, j, accounts, po, &pipeline.RebuildOptions{DryRun: opts.DryRun, Confirm: opts.Confirm})

	o := outcome{Failed: rebuildFailed(reps) > 0, Interrupted: ctx.Err() != nil, Err: rebuildErr}
	if opts.JSON {
		if err := writeJSON(opts.io.Out, journalRebuildJSON{DryRun: opts.DryRun, Confirm: opts.Confirm, Accounts: reps}); err != nil {
			return err
		}
	} else {
		printRebuildReport(opts.io.Out, reps, opts.DryRun)
	}
	if !opts.DryRun {
		if err := j.FinishRun(context.WithoutCancel(ctx), runID, o.code(), mustJSON(reps)); err != nil && o.Err == nil {
			o.Err = err
		}
	}
	return o.err(outcomeText{
		Interrupted: "interrupted; what was recorded stays, run the same command again",
		Failed:      fmt.Sprintf("%d of %d accounts failed (see the report); run the same command again: what was recorded stays and is not recorded twice", rebuildFailed(reps), len(reps)),
	})
}

// openRebuildJournal opens the journal to rebuild. With dryRun nothing is
// written to it: an existing one is opened read-only, a missing one is
// replaced by an empty one in a temporary folder that cleanup removes.
func openRebuildJournal(ctx context.Context, path string, exists, dryRun bool) (j *journal.Journal, cleanup func(), err error) {
	switch {
	case !dryRun:
		j, err = journal.Open(ctx, path)
	case exists:
		j, err = journal.OpenReadOnly(ctx, path)
		var se *journal.SchemaError
		if errors.As(err, &se) && se.Version > 0 && se.Version < se.Known {
			err = fmt.Errorf("%w (or run journal rebuild without --dry-run, which upgrades it)", err)
		}
	default:
		dir, derr := os.MkdirTemp("", "popmigrate-rebuild-")
		if derr != nil {
			return nil, nil, fmt.Errorf("dry run: a temporary journal: %w", derr)
		}
		if j, err = journal.Open(ctx, filepath.Join(dir, "dry-run.db")); err != nil {
			os.RemoveAll(dir)
			return nil, nil, err
		}
		return j, func() { j.Close(); os.RemoveAll(dir) }, nil
	}
	if err != nil {
		return nil, nil, err
	}
	return j, func() { j.Close() }, nil
}

// rebuildFailed counts the accounts rebuild failed.
func rebuildFailed(reps []*pipeline.RebuildReport) int {
	return countFailed(reps, func(r *pipeline.RebuildReport) string { return r.Error })
}

// printRebuildReport writes the human report: per account its counts, one
// line per destination, errors (!) and warnings (*), then the totals and
// what they mean for purge.
func printRebuildReport(w io.Writer, reps []*pipeline.RebuildReport, dryRun bool) {
	verb := "recorded"
	if dryRun {
		verb = "would record"
	}
	var matched, headers, missing int
	for _, r := range reps {
		matched += r.Matched
		headers += r.ByHeaders
		missing += r.Missing
		fmt.Fprintf(w, "%s: %d on the server: %s %d (%d by key, %d by content, %d by header block and size; %d in every destination), %d missing",
			r.Account, r.ServerMessages, verb, r.Matched, r.ByKey, r.ByContent, r.ByHeaders, r.Complete, r.Missing)
		if r.Retrieved > 0 {
			fmt.Fprintf(w, ", %d downloaded to compare (%d ambiguous)", r.Retrieved, r.Ambiguous)
		}
		if r.AlreadyRecorded > 0 {
			fmt.Fprintf(w, ", %d already recorded", r.AlreadyRecorded)
		}
		if r.Adopted > 0 {
			fmt.Fprintf(w, ", %d adopted", r.Adopted)
		}
		fmt.Fprintln(w)
		if r.Confirmed > 0 || r.Forgotten > 0 {
			fmt.Fprintf(w, "    confirmed %d recorded before by header block; forgot %d copies that differ\n", r.Confirmed, r.Forgotten)
		}
		for _, d := range r.Dests {
			fmt.Fprintf(w, "    %s: held %d, matched %d, matching nothing on the server %d (left alone), missing %d\n",
				d.ID, d.Held, d.Matched, d.Unmatched, d.Missing)
		}
		if r.Error != "" {
			fmt.Fprintf(w, "! %s: %s\n", r.Account, r.Error)
		}
		for _, warn := range r.Warnings {
			fmt.Fprintf(w, "* %s: %s\n", r.Account, warn)
		}
	}
	fmt.Fprintln(w)
	if dryRun {
		fmt.Fprintf(w, "dry run: would record %d messages of %d accounts; nothing was written\n", matched, len(reps))
	} else {
		fmt.Fprintf(w, "recorded %d messages of %d accounts; popmigrate run stores the %d missing\n", matched, len(reps), missing)
	}
	if headers > 0 {
		fmt.Fprintf(w, "%d messages were matched by header block and size, not byte for byte: purge and --delete keep them on the server until journal rebuild --confirm compares them\n", headers)
	}
}
