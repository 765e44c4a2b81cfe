package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/internal/units"
	"github.com/popmigrate/popmigrate/pipeline"
)

type checkOptions struct {
	io *iostreams
	accountFlags
	Jobs    int
	PerHost int
	Timeout time.Duration
	JSON    bool
}

func newCheckCmd(io *iostreams, runF func(context.Context, *checkOptions) error) *cobra.Command {
	opts := &checkOptions{io: io}
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Preflight: connect, TLS, capabilities, login, mailbox size and destinations of every account",
		Long: `Check connects to every account's server as run would (TLS, STLS,
certificate checks, authentication), shows the certificate (and warns when it
expires within 14 days), the capabilities before and after login (STLS, SASL,
PIPELINING, UIDL, TOP, LOGIN-DELAY, EXPIRE), the mailbox size and its largest
message, and logs out. With --to it also checks every destination: a Maildir,
mbox or eml destination must be writable with room for the mailbox; an IMAP
destination must accept the login, and its APPENDLIMIT the largest message.
It downloads nothing, deletes nothing, creates nothing and writes no journal.
Run it before a large migration to find wrong passwords, missing STLS,
untrusted certificates, servers without UIDL or PIPELINING, and full disks.

Exit codes: 0 every account ready, 1 some account failed, 2 usage error.`,
		Example: `  popmigrate check --accounts users.csv --password-env POP_PASSWORD
  popmigrate check --source pop3s://alice@mail.example.org --password-file ~/.pop-password --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.PerHostGiven = cmd.Flags().Changed("per-host")
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return checkRun(cmd.Context(), opts)
		},
	}
	addAccountFlags(cmd, &opts.accountFlags)
	f := cmd.Flags()
	f.IntVar(&opts.Jobs, "jobs", 8, "accounts checked at once")
	f.IntVar(&opts.PerHost, "per-host", 4, "most sessions open at once to one POP3 host")
	f.DurationVar(&opts.Timeout, "timeout", 30*time.Second, "idle timeout per POP3 command")
	f.BoolVar(&opts.JSON, "json", false, "print the results as JSON on stdout")
	return cmd
}

func checkRun(ctx context.Context, opts *checkOptions) error {
	accounts, err := loadAccounts(&opts.accountFlags, accountNeeds{Password: true})
	if err != nil {
		return &exitError{code: exitUsage, err: err}
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
	res := pipeline.Check(ctx, accounts, &pipeline.Options{Jobs: opts.Jobs, PerHost: opts.PerHost, Timeout: opts.Timeout, Destinations: destinations()})
	if err := ctx.Err(); err != nil {
		return outcome{Interrupted: true}.err(outcomeText{Interrupted: err.Error()})
	}
	failed := 0
	for _, r := range res {
		if !r.OK() {
			failed++
		}
	}
	if opts.JSON {
		if err := writeJSON(opts.io.Out, res); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(opts.io.Out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ACCOUNT\tSTATUS\tTLS\tAUTH\tMESSAGES\tSIZE\tUIDL\tPIPELINING")
		for _, r := range res {
			status := "ok"
			if !r.OK() {
				status = "FAILED"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", r.Account, status, r.TLS, orDash(r.Auth), r.Messages, units.Bytes(r.Bytes), yesNo(r.UIDL), yesNo(r.Pipelining))
		}
		tw.Flush()
		for _, r := range res {
			if r.Error != "" {
				fmt.Fprintf(opts.io.Out, "! %s: %s\n", r.Account, r.Error)
			}
			if c := r.Certificate; c != nil {
				fmt.Fprintf(opts.io.Out, "  %s: certificate %s, issued by %s, valid until %s\n", r.Account, c.Subject, c.Issuer, c.NotAfter.Format(time.DateOnly))
			}
			if len(r.CapabilitiesBeforeLogin) > 0 || len(r.Capabilities) > 0 {
				fmt.Fprintf(opts.io.Out, "  %s: CAPA before login %s; after login %s\n", r.Account,
					strings.Join(r.CapabilitiesBeforeLogin, " "), strings.Join(r.Capabilities, " "))
			}
			for _, w := range r.Warnings {
				fmt.Fprintf(opts.io.Out, "* %s: %s\n", r.Account, w)
			}
			for _, d := range r.Destinations {
				switch {
				case d.Error != "":
					fmt.Fprintf(opts.io.Out, "! %s: destination %s: %s\n", r.Account, d.Destination, d.Error)
				default:
					fmt.Fprintf(opts.io.Out, "  %s: destination %s: ok\n", r.Account, d.Destination)
				}
				for _, w := range d.Warnings {
					fmt.Fprintf(opts.io.Out, "* %s: destination %s: %s\n", r.Account, d.Destination, w)
				}
			}
		}
	}
	return outcome{Failed: failed > 0}.err(outcomeText{Failed: fmt.Sprintf("%d of %d accounts failed the check", failed, len(res))})
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}

// orDash is s, or "-" when it is empty (a column of a failed check).
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
