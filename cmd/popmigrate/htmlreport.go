package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/report"
)

type reportOptions struct {
	io       *iostreams
	Journal  string
	HTML     string
	JSON     bool
	Run      string
	Accounts []string
	Title    string
}

func newReportCmd(io *iostreams, runF func(context.Context, *reportOptions) error) *cobra.Command {
	opts := &reportOptions{io: io}
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Write the migration report for a customer, as one HTML file",
		Long: `Report reads the journal and writes the migration report an administrator
can hand to a customer: per mailbox the messages on the server, copied,
verified, removed from the server, failed (each with its error and what to do)
and suspect, the data stored and the time it took, with the totals and a chart
of the throughput over the period.

The HTML file (--html) is self-contained: its CSS and its chart are inline, it
loads nothing and runs no script, and it prints on A4 or Letter. --json prints
the same data as JSON on stdout. The file is written atomically, mode 0644: a
report holds no secret (sources are recorded without passwords).

Report contacts no server and never writes the journal: it opens it read-only,
so it works long after the run, also while another run writes the journal.
By default the report covers every account and the whole journal; --run limits
the chart and the data-stored columns to one run (where each mailbox stands is
always its whole record), --account to some accounts.

Exit codes: 0 written, 2 usage error (no such journal, run or file).`,
		Example: `  popmigrate report --journal /var/lib/popmigrate/acme.db --html acme-report.html
  popmigrate report --journal acme.db --run last --account alice@example.org --account bob@example.org \
      --title "ACME Corp: mail migration" --html acme.html
  popmigrate report --journal acme.db --json | jq '.accounts[] | select(.failed > 0) | .account'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return reportRun(cmd.Context(), opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Journal, "journal", defaultJournal, "the journal `FILE` of the runs, as given to run --journal")
	f.StringVar(&opts.HTML, "html", "", "write the HTML report to `FILE` (mode 0644)")
	f.BoolVar(&opts.JSON, "json", false, "print the report's data as JSON on stdout")
	f.StringVar(&opts.Run, "run", "", "limit the period to run `ID` (see the JSON's runs), or \"last\"; default the whole journal")
	f.StringArrayVar(&opts.Accounts, "account", nil, "report only account `NAME` (repeatable; default every account of the journal)")
	f.StringVar(&opts.Title, "title", "", "the report's title (default \""+report.DefaultTitle+"\")")
	return cmd
}

func reportRun(ctx context.Context, opts *reportOptions) error {
	if opts.HTML == "" && !opts.JSON {
		return usageError("give --html FILE, --json, or both")
	}
	j, err := journal.OpenReadOnly(ctx, opts.Journal)
	if errors.Is(err, fs.ErrNotExist) {
		return usageError("journal %s: %v (give the --journal of the runs to report)", opts.Journal, err)
	}
	if err != nil {
		return usageError("%w", err)
	}
	defer j.Close()
	ro := &report.Options{Title: opts.Title, Accounts: opts.Accounts}
	if opts.Run != "" {
		run, err := findRun(ctx, j, opts.Run)
		if err != nil {
			return err
		}
		ro.From, ro.To = runPeriod(run)
	}
	rep, err := report.Build(ctx, j, ro)
	if err != nil {
		return err
	}
	if opts.HTML != "" {
		if err := rep.WriteFile(opts.HTML); err != nil {
			return usageError("%w", err)
		}
		fmt.Fprintf(opts.io.Err, "popmigrate: wrote the report of %s to %s\n", plural(len(rep.Accounts), "account"), opts.HTML)
	}
	if opts.JSON {
		return writeJSON(opts.io.Out, rep)
	}
	return nil
}

// findRun returns the run of the journal that spec names: its ID, or
// "last" for the newest. An unknown one is a usage error.
func findRun(ctx context.Context, j *journal.Journal, spec string) (journal.Run, error) {
	runs, err := j.Runs(ctx)
	if err != nil {
		return journal.Run{}, err
	}
	if len(runs) == 0 {
		return journal.Run{}, usageError("--run %s: the journal %s has recorded no run", spec, j.Path())
	}
	if strings.EqualFold(spec, "last") {
		return runs[len(runs)-1], nil
	}
	id, err := strconv.ParseInt(spec, 10, 64)
	if err != nil {
		return journal.Run{}, usageError("--run %q: want a run ID or \"last\"", spec)
	}
	for _, r := range runs {
		if r.ID == id {
			return r, nil
		}
	}
	return journal.Run{}, usageError("--run %d: the journal %s has no such run (its runs are %d to %d)",
		id, j.Path(), runs[0].ID, runs[len(runs)-1].ID)
}

// runPeriod is the period of a run's report: from its start to its end, or
// open at the end while it has not finished.
func runPeriod(r journal.Run) (from, to time.Time) {
	if r.FinishedAt.IsZero() {
		return r.StartedAt, time.Time{}
	}
	return r.StartedAt, r.FinishedAt.Add(time.Nanosecond)
}

// writeRunHTMLReport writes the HTML report of the run runID of the
// accounts to opts.HTMLReport, when given, from the journal j: the period
// is the run's, up to its last store (it has not finished yet). It runs
// also when the run was interrupted, as the report of what it did. A
// failure to write it is printed and makes the run failed (exit 1); the
// report can be made again with popmigrate report.
func writeRunHTMLReport(ctx context.Context, opts *runOptions, j *journal.Journal, runID int64, accounts []*config.Account, o *outcome) {
	if opts.HTMLReport == "" {
		return
	}
	ctx = context.WithoutCancel(ctx) // reading the journal is quick, and an interrupted run deserves its report
	err := func() error {
		run, err := findRun(ctx, j, strconv.FormatInt(runID, 10))
		if err != nil {
			return err
		}
		ro := &report.Options{From: run.StartedAt}
		for _, a := range accounts {
			ro.Accounts = append(ro.Accounts, a.Name)
		}
		rep, err := report.Build(ctx, j, ro)
		if err != nil {
			return err
		}
		return rep.WriteFile(opts.HTMLReport)
	}()
	if err != nil {
		fmt.Fprintf(opts.io.Err, "popmigrate: --html-report: %v (make it again with: popmigrate report --journal %s --run %d --html FILE)\n",
			unwrapExit(err), j.Path(), runID)
		o.Failed = true
	}
}

// plural returns "1 account", "2 accounts".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
