package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/exporters/location"
	"github.com/popmigrate/popmigrate/journal"
)

type enrolOptions struct {
	io *iostreams
	// accountFlags holds the flags enrol registers: those that name
	// accounts and destinations. Secrets are never recorded, so it has
	// none of their flags.
	accountFlags

	Journal string
	DryRun  bool
	JSON    bool
}

func newJournalEnrolCmd(io *iostreams, runF func(context.Context, *enrolOptions) error) *cobra.Command {
	opts := &enrolOptions{io: io}
	cmd := &cobra.Command{
		Use:   "enrol",
		Short: "Record accounts and their destinations in the journal, without running them",
		Long: `Enrol records each account of --accounts FILE.csv, --config FILE.yaml or
--source in the journal with its POP3 source and its destinations (--to, or the
file's to column, templates {user} {host} {account} expanded), and contacts no
server. Workers then run them with popmigrate run --from-journal: on many
machines sharing one PostgreSQL journal, each with --shard INDEX/COUNT.

The journal records no secret: passwords and tokens, and the file's per-account
auth, ca_file and insecure_skip_verify, stay where they are. Give the workers
--password-file, --password-command or --oauth2-token-* with templates, e.g.
--password-file '/run/secrets/pop/{user}'.

Enrolling again is safe: an account already enrolled keeps its destinations and
gains those that are new (a destination is never removed: it holds copies); an
account whose source differs from the one recorded is refused, since its
messages would be mixed with another mailbox's. Accounts may be enrolled while
workers run; a worker takes up new accounts at its next start.

Destination paths must be absolute, so that every worker opens the same
destination: mount a shared file system at the same path on every machine.`,
		Example: `  popmigrate journal enrol --journal postgres://popmigrate@db.example/migration \
      --accounts users.csv --to 'imaps://{user}@imap.example.org/INBOX'

  # see what would be recorded
  popmigrate journal enrol --journal migration.db --accounts users.csv \
      --to 'maildir:/srv/mail/{user}' --dry-run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return enrolRun(cmd.Context(), opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Source, "source", "", "one account: pop3s://USER@HOST[:PORT] (implicit TLS) or pop3://USER@HOST[:PORT] (STLS)")
	f.StringVar(&opts.Name, "name", "", "with --source: the account name (default USER@HOST)")
	f.StringVar(&opts.Accounts, "accounts", "", "CSV `FILE` of accounts (see README for columns)")
	f.StringVar(&opts.Config, "config", "", "YAML `FILE` with defaults and accounts")
	f.StringArrayVar(&opts.To, "to", nil, "destination of accounts that give none, repeatable: maildir:DIR, mbox:FILE, eml:DIR, imaps://USER@HOST/FOLDER (templates {user} {host} {account})")
	f.StringVar(&opts.Provider, "provider", "", "the accounts' provider, for its server: "+strings.Join(config.ProviderNames(), ", "))
	f.BoolVar(&opts.InsecurePlaintext, "insecure-plaintext", false, "accept accounts with security plain (the workers need --insecure-plaintext too)")
	f.StringVar(&opts.Journal, "journal", defaultJournal, "journal: a SQLite `FILE` (created 0600), or a postgres://USER@HOST/DB URL the workers share")
	f.BoolVar(&opts.DryRun, "dry-run", false, "print what would be enrolled; write nothing")
	f.BoolVar(&opts.JSON, "json", false, "print what was enrolled as JSON on stdout")
	return cmd
}

// Enrolment states of an account.
const (
	enrolNew       = "new"       // not in the journal before
	enrolAdded     = "added"     // in the journal, gains destinations
	enrolUnchanged = "unchanged" // in the journal with these destinations
)

// enrolReport is what journal enrol did (--json).
type enrolReport struct {
	Journal  string          `json:"journal"`
	DryRun   bool            `json:"dry_run"`
	Accounts []enrolAccount  `json:"accounts"`
	Totals   map[string]int  `json:"totals"`
	dests    map[string]bool // destination ids seen, for the summary
}

// enrolAccount is one account enrolled.
type enrolAccount struct {
	Account      string             `json:"account"`
	Source       string             `json:"source"`
	State        string             `json:"state"`
	Destinations []enrolDestination `json:"destinations"`
}

// enrolDestination is one destination of an enrolled account; New says
// the journal did not record it before.
type enrolDestination struct {
	ID   string `json:"id"`
	Spec string `json:"spec"`
	New  bool   `json:"new"`
}

func enrolRun(ctx context.Context, opts *enrolOptions) error {
	if !accountsGiven(&opts.accountFlags) {
		return usageError("no accounts to enrol: give --accounts FILE.csv, --config FILE.yaml or --source URL, and --to DEST for those whose file gives no destination")
	}
	accounts, err := loadAccounts(&opts.accountFlags, accountNeeds{Destination: true, RecordOnly: true})
	if err != nil {
		return usageError("%w", err)
	}
	if err := checkAbsolute(accounts); err != nil {
		return usageError("%w", err)
	}
	var j *journal.Journal
	if opts.DryRun {
		// A dry run compares with the journal when there is one, and
		// creates none.
		if journalMissing(opts.Journal) == nil {
			if j, err = journal.OpenReadOnly(ctx, opts.Journal); err != nil {
				return usageError("%w", err)
			}
		}
	} else if j, err = journal.Open(ctx, opts.Journal); err != nil {
		if ctx.Err() != nil {
			return outcome{Interrupted: true}.err(outcomeText{Interrupted: "interrupted before anything was enrolled"})
		}
		return usageError("%w", err)
	}
	var known []journal.AccountInfo
	path := opts.Journal
	if j != nil {
		defer j.Close()
		path = j.Path()
		if known, err = j.Accounts(ctx); err != nil {
			return err
		}
	}
	rep, err := planEnrol(path, accounts, known)
	if err != nil {
		return usageError("%w", err)
	}
	rep.DryRun = opts.DryRun
	if !opts.DryRun {
		if err := saveEnrol(ctx, j, accounts); err != nil {
			if ctx.Err() != nil {
				return outcome{Interrupted: true}.err(outcomeText{Interrupted: "interrupted; some accounts may be enrolled: run the same command again, it changes nothing that is already recorded"})
			}
			return fmt.Errorf("%w; some accounts may be enrolled: run the same command again once the journal works, it changes nothing that is already recorded", err)
		}
	}
	printEnrolNotes(opts.io.Err, opts, accounts)
	if opts.JSON {
		return writeJSON(opts.io.Out, rep)
	}
	printEnrolReport(opts.io.Out, rep)
	return nil
}

// checkAbsolute refuses a file destination given with a relative path:
// each worker would resolve it in its own working directory.
func checkAbsolute(accounts []*config.Account) error {
	for _, a := range accounts {
		for _, spec := range a.To {
			l, err := destinations().Parse(spec)
			if err != nil {
				return fmt.Errorf("account %s: %w", a.Name, err)
			}
			if _, ok := l.Spec.(location.FileSpec); !ok {
				continue
			}
			_, p, _ := strings.Cut(spec, ":")
			if !strings.HasPrefix(p, "/") {
				return fmt.Errorf("account %s: destination %q has a relative path, which every worker would resolve in its own working directory; give an absolute one (%s)", a.Name, spec, l.ID())
			}
		}
	}
	return nil
}

// planEnrol compares accounts with what the journal at path already
// records (known) and returns the report of enrolling them. It fails,
// before anything is written, for an account whose source differs from
// the recorded one and for a destination another account of the journal
// writes to.
func planEnrol(path string, accounts []*config.Account, known []journal.AccountInfo) (*enrolReport, error) {
	byName := map[string]journal.AccountInfo{}
	places := map[string]string{} // place -> account of the journal
	for _, info := range known {
		byName[info.Name] = info
		for _, d := range info.Destinations {
			if _, place, _, err := destinations().Describe(d.Spec); err == nil && place != "" {
				places[place] = info.Name
			}
		}
	}
	rep := &enrolReport{Journal: path, Totals: map[string]int{enrolNew: 0, enrolAdded: 0, enrolUnchanged: 0}, dests: map[string]bool{}}
	for _, a := range accounts {
		info, found := byName[a.Name]
		if found && info.Source != "" && info.Source != a.SourceURL() {
			return nil, fmt.Errorf("%s: account %s is enrolled in %s with source %s, not %s: its messages would be mixed with another mailbox's; give it another name (column name), or keep the recorded source",
				a.Origin, a.Name, path, info.Source, a.SourceURL())
		}
		recorded := map[string]bool{}
		for _, d := range info.Destinations {
			recorded[d.ID] = true
		}
		ea := enrolAccount{Account: a.Name, Source: a.SourceURL(), State: enrolUnchanged}
		if !found {
			ea.State = enrolNew
		}
		for _, spec := range a.To {
			id, place, _, err := destinations().Describe(spec)
			if err != nil {
				return nil, fmt.Errorf("%s: account %s: %w", a.Origin, a.Name, err)
			}
			if other, ok := places[place]; ok && place != "" && other != a.Name {
				return nil, fmt.Errorf("%s: account %s writes to %s, which account %s of %s writes to; use a template such as maildir:/srv/mail/{user}",
					a.Origin, a.Name, spec, other, path)
			}
			isNew := !recorded[id]
			if isNew && found {
				ea.State = enrolAdded
			}
			ea.Destinations = append(ea.Destinations, enrolDestination{ID: id, Spec: spec, New: isNew})
			rep.dests[id] = true
		}
		rep.Totals[ea.State]++
		rep.Accounts = append(rep.Accounts, ea)
	}
	return rep, nil
}

// enrolChunk is how many accounts saveEnrol records per transaction.
const enrolChunk = 500

// saveEnrol records every account's source and destinations in j, in
// transactions of enrolChunk accounts (a few at once on PostgreSQL): an
// interrupted enrolment leaves every account either enrolled or as it
// was.
func saveEnrol(ctx context.Context, j *journal.Journal, accounts []*config.Account) error {
	infos := make([]journal.AccountInfo, len(accounts))
	for k, a := range accounts {
		dests := make([]journal.AccountDestination, len(a.To))
		for i, spec := range a.To {
			id, _, _, err := destinations().Describe(spec)
			if err != nil {
				return fmt.Errorf("account %s: %w", a.Name, err)
			}
			dests[i] = journal.AccountDestination{ID: id, Spec: spec}
		}
		infos[k] = journal.AccountInfo{Name: a.Name, Source: a.SourceURL(), Destinations: dests}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(1)
	if journal.IsPostgres(j.Path()) {
		g.SetLimit(4)
	}
	for chunk := range slices.Chunk(infos, enrolChunk) {
		g.Go(func() error { return j.SaveAccounts(gctx, chunk) })
	}
	return g.Wait()
}

// printEnrolNotes tells on w what the journal does not record of the
// accounts and the workers must therefore be given.
func printEnrolNotes(w io.Writer, opts *enrolOptions, accounts []*config.Account) {
	var secrets, settings, plain int
	for _, a := range accounts {
		if !a.Password.IsZero() || !a.OAuth2Token.IsZero() || a.OAuth2App != nil || !a.ToPassword.IsZero() || !a.ToOAuth2Token.IsZero() {
			secrets++
		}
		// A provider's own choice of mechanism is made again on the
		// workers (by the server's host).
		if (len(a.Auth) > 0 && a.Provider == "") || a.CAFile != "" || a.InsecureSkipVerify {
			settings++
		}
		if a.Security == config.SecurityPlain {
			plain++
		}
	}
	from := strings.Join(slices.DeleteFunc([]string{opts.Accounts, opts.Config}, func(s string) bool { return s == "" }), " and ")
	if secrets > 0 {
		fmt.Fprintf(w, "popmigrate: note: the journal records no secret: the passwords or tokens %s gives for %s stay there; "+
			"give the workers --password-file, --password-command or --oauth2-token-* with templates such as '/run/secrets/pop/{user}'\n", from, plural(secrets, "account"))
	}
	if settings > 0 {
		fmt.Fprintf(w, "popmigrate: note: %s set auth, ca_file or insecure_skip_verify in %s, which the journal does not record; give the workers --auth, --ca-file or --insecure-skip-verify\n",
			plural(settings, "account"), from)
	}
	if plain > 0 {
		fmt.Fprintf(w, "popmigrate: note: %s connect without TLS; the workers need --insecure-plaintext too, or they will require STLS\n", plural(plain, "account"))
	}
}

// printEnrolReport writes the human report of an enrolment: a summary
// line, then the accounts that gained destinations.
func printEnrolReport(w io.Writer, rep *enrolReport) {
	verb := "enrolled"
	if rep.DryRun {
		verb = "would enrol (dry run)"
	}
	t := rep.Totals
	fmt.Fprintf(w, "%s %s in %s: %d new, %d with new destinations, %d unchanged; %s\n",
		verb, plural(len(rep.Accounts), "account"), rep.Journal, t[enrolNew], t[enrolAdded], t[enrolUnchanged], plural(len(rep.dests), "destination"))
	for _, a := range rep.Accounts {
		if a.State != enrolAdded {
			continue
		}
		for _, d := range a.Destinations {
			if d.New {
				fmt.Fprintf(w, "+ %s: %s\n", a.Account, d.ID)
			}
		}
	}
}
