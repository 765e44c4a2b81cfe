package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/popmigrate/popmigrate/journal"
)

type statusOptions struct {
	io      *iostreams
	Journal string
	JSON    bool
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
is not adopted; VERIFIED is part of STORED. --json prints the same counts.`,
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
	return cmd
}

// statusJSON is one account in `status --json`. Listed, Stored, Deleted
// and Failed add up to the account's messages that are not adopted;
// Verified is part of Stored.
type statusJSON struct {
	Account     string                   `json:"account"`
	Source      string                   `json:"source"`          // the server, without password
	ServerCount int                      `json:"server_messages"` // listed by the server at the last run
	ServerBytes int64                    `json:"server_bytes"`
	Listed      int                      `json:"listed"`   // listed, not stored yet
	Stored      int                      `json:"stored"`   // stored in every destination, verified or not, not deleted
	Verified    int                      `json:"verified"` // of Stored, those a verification read back intact
	Deleted     int                      `json:"deleted"`  // deleted from the server
	Failed      int                      `json:"failed"`
	Suspect     int                      `json:"suspect"` // suspect, whatever their state
	Adopted     int                      `json:"adopted"` // adopted from another client's state, apart from the others
	LastError   string                   `json:"last_error,omitempty"`
	LastRun     *time.Time               `json:"last_run,omitempty"`
	Failures    []journal.MessageFailure `json:"failures,omitempty"`
	Suspects    []journal.MessageFailure `json:"suspects,omitempty"`
}

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
	out := make([]statusJSON, 0, len(st))
	for _, s := range st {
		sj := statusJSON{
			Account: s.Account, Source: s.Source, ServerCount: s.ServerCount, ServerBytes: s.ServerBytes,
			// The journal counts each state apart; a verified message
			// is stored all the same.
			Listed: s.Listed, Stored: s.Stored + s.Verified, Verified: s.Verified, Deleted: s.Deleted, Failed: s.Failed,
			LastError: s.LastError, Failures: s.Failures, Suspect: s.Suspect, Suspects: s.Suspects, Adopted: s.Adopted,
		}
		if !s.LastRun.IsZero() {
			t := s.LastRun
			sj.LastRun = &t
		}
		out = append(out, sj)
	}
	if opts.JSON {
		return writeJSON(opts.io.Out, out)
	}
	if len(out) == 0 {
		fmt.Fprintln(opts.io.Out, "the journal holds no accounts yet")
		return nil
	}
	tw := tabwriter.NewWriter(opts.io.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACCOUNT\tON SERVER\tLISTED\tSTORED\tVERIFIED\tDELETED\tFAILED\tSUSPECT\tADOPTED\tLAST RUN")
	for _, s := range out {
		last := "-"
		if s.LastRun != nil {
			last = s.LastRun.Local().Format("2006-01-02 15:04")
		}
		onServer := strconv.Itoa(s.ServerCount)
		if s.LastRun == nil {
			onServer = "unknown" // never listed: not zero, not known
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", s.Account, onServer, s.Listed, s.Stored, s.Verified, s.Deleted, s.Failed, s.Suspect, s.Adopted, last)
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
	}
	return nil
}
