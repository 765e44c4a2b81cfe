package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/pipeline"
	"github.com/popmigrate/popmigrate/verify"
)

type verifyOptions struct {
	io *iostreams
	accountFlags

	Journal       string
	AgainstSource bool
	Manifest      string
	Jobs          int
	PerHost       int
	Timeout       time.Duration
	JSON          bool
	Verbose       bool
	UntilEmpty    bool
	logFlags
}

func newVerifyCmd(io *iostreams, runF func(context.Context, *verifyOptions) error) *cobra.Command {
	opts := &verifyOptions{io: io}
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Read every stored message back and compare it with the journal or a manifest",
		Long: `Verify reads back every copy the journal records in each account's
destinations (--to, as given to run), computes its sha256 and compares it, and
its size, with what was recorded. Destinations are also searched for messages
the journal does not know. Each copy that matches is recorded as verified in the
journal (purge deletes only verified messages); one that does not loses any
earlier verification, so purge will not delete its source.

Verify opens every destination read-only: it creates, locks and changes
nothing in an archive (an IMAP folder that does not exist is reported, not
created), so it works on read-only media and beside a run writing the same
mbox.
With --against-source it also lists each server's mailbox (downloading and
deleting nothing) to find messages not stored, and stored messages the server
no longer has. Without it, no password is needed and no server is contacted.

With --manifest FILE (written by popmigrate manifest) and one --to, verify
checks the manifest itself (every line is covered by its summary's root) and
the copies it lists in that destination, without journal or server.

One line per finding, as rclone check prints them:
  - ACCOUNT UIDL DEST missing        the destination lacks a recorded copy
  - ACCOUNT UIDL DEST not stored     on the server, no copy in DEST
  + ACCOUNT UIDL DEST extra          DEST holds a copy nobody recorded there
  * ACCOUNT UIDL DEST checksum differs (want .. got ..), or size differs
  * ACCOUNT UIDL ? gone from the server (a note, not a problem)
  ! ACCOUNT UIDL DEST unreadable: ERROR, or a damaged manifest
then the counts.

Exit codes: 0 everything matches, 1 some account could not be verified
completely (see its error), 2 usage or configuration error, 3 some finding
is a problem, 130 interrupted.`,
		Example: `  popmigrate verify --journal popmigrate.db --accounts users.csv --to 'maildir:/srv/mail/{user}'
  popmigrate verify --source pop3s://alice@mail.example.org --password-env POP_PASSWORD \
      --to maildir:/srv/mail/alice --against-source --json
  popmigrate verify --manifest alice.manifest.jsonl --to mbox:/archive/alice.mbox`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.PerHostGiven = cmd.Flags().Changed("per-host")
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return verifyRun(cmd.Context(), opts)
		},
	}
	addAccountFlags(cmd, &opts.accountFlags)
	f := cmd.Flags()
	f.StringVar(&opts.Journal, "journal", defaultJournal, "journal of the run: a SQLite `FILE` or a postgres://USER@HOST/DB URL")
	f.BoolVar(&opts.AgainstSource, "against-source", false, "also list each POP3 mailbox and compare it with the journal (needs the passwords)")
	f.StringVar(&opts.Manifest, "manifest", "", "verify the manifest `FILE` and the destination given with --to, without journal")
	f.IntVar(&opts.Jobs, "jobs", 8, "accounts verified at once")
	f.IntVar(&opts.PerHost, "per-host", 4, "most sessions open at once to one POP3 host (--against-source)")
	f.DurationVar(&opts.Timeout, "timeout", 60*time.Second, "POP3 idle timeout per command (--against-source)")
	f.BoolVar(&opts.JSON, "json", false, "print the results as one JSON document on stdout")
	addLogFlags(f, &opts.logFlags)
	f.BoolVar(&opts.UntilEmpty, "until-empty", false, "the server hides what was retrieved (Gmail): with --against-source, a stored message it no longer lists is not called gone")
	f.BoolVarP(&opts.Verbose, "verbose", "v", false, "log warnings and progress to stderr")
	return cmd
}

// verifyJSON is the output of `verify --json`.
type verifyJSON struct {
	Problems int              `json:"problems"`
	Notes    int              `json:"notes"`
	Accounts []*verify.Result `json:"accounts"`
}

func verifyRun(ctx context.Context, opts *verifyOptions) error {
	if opts.Manifest != "" {
		return verifyManifestRun(ctx, opts)
	}
	// Without --against-source verify never logs in: no password needed.
	needs := accountNeeds{Destination: true, Password: opts.AgainstSource}
	var accounts []*config.Account
	if accountsGiven(&opts.accountFlags) {
		var err error
		if accounts, err = loadAccounts(&opts.accountFlags, needs); err != nil {
			return usageError("%w", err)
		}
	} else {
		// The journal describes the migration: nothing else is needed.
		var err error
		if accounts, err = journalAccounts(ctx, opts.Journal, &opts.accountFlags, needs); err != nil {
			return usageError("%w", err)
		}
	}
	printConfigWarnings(opts.io.Err, accounts)
	if opts.AgainstSource {
		for _, a := range accounts {
			if a.InsecureSkipVerify {
				fmt.Fprintf(opts.io.Err, "popmigrate: WARNING: account %s: TLS certificate verification is OFF (--insecure-skip-verify); anyone on the path can read the password\n", a.Name)
			}
			if a.Security == config.SecurityPlain {
				fmt.Fprintf(opts.io.Err, "popmigrate: WARNING: account %s: connecting WITHOUT TLS (--insecure-plaintext)\n", a.Name)
			}
		}
	}
	// Verify works from what a run recorded: a missing journal is a wrong
	// --journal, not an empty migration.
	if _, err := os.Stat(opts.Journal); err != nil && !journal.IsPostgres(opts.Journal) {
		return usageError("journal %s: %v (give --journal FILE of the run that stored the messages)", opts.Journal, err)
	}
	j, err := journal.Open(ctx, opts.Journal)
	if err != nil {
		return usageError("%w", err)
	}
	defer j.Close()
	runID, err := j.StartRun(ctx, describeRun(fmt.Sprintf("verify against-source=%v", opts.AgainstSource), &opts.accountFlags, accounts))
	if err != nil {
		return err
	}
	logger, err := opts.logFlags.logger(opts.io.Err, slog.LevelError, opts.Verbose)
	if err != nil {
		return usageError("%v", err)
	}
	vo := &pipeline.VerifyOptions{
		Options: pipeline.Options{
			Destinations: destinations(),
			UntilEmpty:   opts.UntilEmpty,
			Jobs:         opts.Jobs, PerHost: opts.PerHost, Timeout: opts.Timeout,
			Logger: logger,
		},
		AgainstSource: opts.AgainstSource,
	}
	results, verr := pipeline.Verify(ctx, j, accounts, vo)
	var o outcome
	switch {
	case verr == nil:
		o = verifyOutcome(results)
		if err := printVerify(opts, results); err != nil {
			return err
		}
	case ctx.Err() != nil:
		o.Interrupted = true
	default:
		o.Err = verr
	}
	if err := j.FinishRun(context.WithoutCancel(ctx), runID, o.code(), mustJSON(summarize(results))); err != nil && verr == nil {
		o.Err = err
	}
	t := verifyText(results)
	t.Interrupted = "interrupted; the copies checked so far that matched are recorded as verified"
	return o.err(t)
}

// verifyManifestRun is `verify --manifest FILE --to DEST`.
func verifyManifestRun(ctx context.Context, opts *verifyOptions) error {
	switch {
	case len(opts.To) != 1:
		return usageError("--manifest needs exactly one --to: the destination to check (e.g. --to maildir:/archive/alice)")
	case opts.Source != "" || opts.Accounts != "" || opts.Config != "":
		return usageError("--manifest verifies without accounts: give no --source, --accounts or --config")
	case opts.AgainstSource:
		return usageError("--manifest verifies without a server: --against-source does not apply")
	case strings.Contains(opts.To[0], "{"):
		return usageError("--to %s: a template needs an account; give the destination's path", opts.To[0])
	}
	f, err := os.Open(opts.Manifest)
	if err != nil {
		return usageError("manifest: %v", err)
	}
	defer f.Close()
	// The account only carries what an IMAP destination needs to log in.
	a := &config.Account{
		ToPassword:         config.Secret{Env: opts.ToPasswordEnv, File: opts.ToPasswordFile, Command: opts.ToPasswordCommand},
		ToOAuth2Token:      config.Secret{Env: opts.ToTokenEnv, File: opts.ToTokenFile, Command: opts.ToTokenCommand},
		CAFile:             opts.CAFile,
		InsecureSkipVerify: opts.InsecureSkipVerify,
	}
	printConfigWarnings(opts.io.Err, []*config.Account{a})
	vo := &pipeline.VerifyOptions{Options: pipeline.Options{Timeout: opts.Timeout, Destinations: destinations()}}
	res, err := pipeline.VerifyManifest(ctx, f, opts.To[0], a, vo)
	if err != nil {
		if ctx.Err() != nil {
			return outcome{Interrupted: true}.err(outcomeText{Interrupted: "interrupted"})
		}
		return usageError("%w", err)
	}
	results := []*verify.Result{res}
	if err := printVerify(opts, results); err != nil {
		return err
	}
	return verifyOutcome(results).err(verifyText(results))
}

// verifyOutcome is the outcome of verify's results: a mismatch for any
// finding that is a problem, failed for an account not verified completely.
func verifyOutcome(results []*verify.Result) outcome {
	var o outcome
	for _, r := range results {
		if r.Problems() > 0 {
			o.Mismatch = true
		}
		if r.Error != "" {
			o.Failed = true
		}
	}
	return o
}

// verifyText is what verify says on stderr about results that are not
// whole.
func verifyText(results []*verify.Result) outcomeText {
	return outcomeText{
		Mismatch: fmt.Sprintf("verification found %d problems (see the report)", summarize(results).Problems),
		Failed:   "some accounts could not be verified completely (see the report)",
	}
}

func summarize(results []*verify.Result) verifyJSON {
	s := verifyJSON{Accounts: results}
	if s.Accounts == nil {
		s.Accounts = []*verify.Result{}
	}
	for _, r := range results {
		s.Problems += r.Problems()
		s.Notes += r.Counts[verify.GoneFromServer] + r.Counts[verify.Suspect]
	}
	return s
}

func printVerify(opts *verifyOptions, results []*verify.Result) error {
	if opts.JSON {
		return writeJSON(opts.io.Out, summarize(results))
	}
	return verify.WriteReport(opts.io.Out, results)
}
