package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/internal/ratelimit"
	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/pipeline"
	"github.com/popmigrate/popmigrate/verify"
)

// defaultJournal is the journal file used when --journal is not given.
const defaultJournal = "popmigrate.db"

// accountFlags are the flags that say which accounts a command works on;
// run and check share them.
type accountFlags struct {
	Source   string
	Name     string
	Accounts string
	Config   string

	PasswordEnv, PasswordFile, PasswordCommand string
	TokenEnv, TokenFile, TokenCommand          string
	Auth                                       []string
	To                                         []string

	// The built-in OAuth2 token source (config.OAuth2App).
	OAuth2Provider, OAuth2Tenant, OAuth2ClientID           string
	OAuth2SecretEnv, OAuth2SecretFile, OAuth2SecretCommand string
	OAuth2ClientCert, OAuth2ServiceAccount                 string

	ToPasswordEnv, ToPasswordFile, ToPasswordCommand string
	ToTokenEnv, ToTokenFile, ToTokenCommand          string

	CAFile             string
	InsecureSkipVerify bool
	InsecurePlaintext  bool

	// Provider is --provider. PerHostGiven says --per-host was given:
	// it then overrides the providers' own limits.
	Provider     string
	PerHostGiven bool
}

type runOptions struct {
	io *iostreams
	accountFlags

	workFlags
	// LeaseTTL is --lease-ttl (pipeline.Options.LeaseTTL).
	LeaseTTL time.Duration

	Journal       string
	Jobs          int
	PerHost       int
	Window        int
	BatchSize     int
	BatchBytes    string
	BatchInterval time.Duration
	Timeout       time.Duration
	Attempts      int
	SpoolDir      string
	TraceDir      string

	IMAPFlags  string
	IMAPDate   string
	IMAPConns  int
	ToCAFile   string
	Quarantine string

	MessageAttempts int
	RetryFailed     bool
	Wait            bool

	MaxBandwidth, MaxBandwidthPerHost string
	UntilEmpty                        bool
	MaxWait                           time.Duration

	NoVerify      bool
	Delete        bool
	DeleteSuspect bool
	DryRun        bool
	KeepDays      int

	JSON          bool
	Report        string
	HTMLReport    string
	MetricsListen string
	NoProgress    bool
	Verbose       bool
	logFlags
}

func newRunCmd(io *iostreams, runF func(context.Context, *runOptions) error) *cobra.Command {
	opts := &runOptions{io: io}
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Download every message of the accounts into their destinations",
		Long: `Run connects to each account's POP3 server, downloads every message the
journal does not already hold, writes it to every destination, and records it in
the journal only once it is durable there. Interrupt it at any moment and run the
same command again: it resumes with nothing lost and nothing duplicated.

Then it verifies, in the same POP3 session, before its QUIT: every stored copy
is read back and compared with the journal, and with the mailbox's listing
(--no-verify skips this). Nothing is deleted from the server unless --delete is
given, and then only the messages verified in every destination (see popmigrate
purge --help), in that same session too: one login per account.

Accounts come from --source (one account), --accounts FILE.csv or --config
FILE.yaml, or with --from-journal from the journal: the accounts enrolled there
(popmigrate journal enrol) with their sources and destinations, for workers
that share one migration. --account NAME and --shard INDEX/COUNT narrow them.
Passwords come from --password-env, --password-file or --password-command,
never from a plain argument; templates {user} {host} {account} in a file or
command give each account its own.

Destinations (--to, repeatable, templates {user} {host} {account}):
` + destinations().Help() + `
` + exitCodesHelp,
		Example: `  # one account, password from the environment
  export POP_PASSWORD=...
  popmigrate run --source pop3s://alice@mail.example.org --password-env POP_PASSWORD \
      --to maildir:/srv/mail/alice

  # many accounts from a CSV, 16 at once, JSON report
  popmigrate run --accounts users.csv --to 'maildir:/srv/mail/{user}' --jobs 16 --json > report.json

  # onto the new IMAP server, with an mbox archive beside, then clean the source
  popmigrate run --accounts users.csv --to 'imaps://{user}@imap.example.org/INBOX' \
      --to 'mbox:/archive/{user}.mbox' --to-password-env NEW_PASSWORD --delete --keep-days 7

  # worker 2 of 4 sharing a migration enrolled in PostgreSQL (popmigrate journal enrol)
  popmigrate run --from-journal --journal postgres://popmigrate@db.example/migration \
      --shard 2/4 --wait --password-file '/run/secrets/pop/{user}' --to-password-file '/run/secrets/imap/{user}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.PerHostGiven = cmd.Flags().Changed("per-host")
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runRun(cmd.Context(), opts)
		},
	}
	f := cmd.Flags()
	addAccountFlags(cmd, &opts.accountFlags)
	addWorkFlags(f, &opts.workFlags, "run")
	f.DurationVar(&opts.LeaseTTL, "lease-ttl", journal.DefaultLeaseTTL, "how long an account's lease outlives a worker that stopped renewing it (it is renewed every third of this); another worker takes the account over after that")
	f.StringVar(&opts.Journal, "journal", defaultJournal, "journal: a SQLite `FILE` (created 0600), or a postgres://USER@HOST/DB URL that many runs share")
	f.IntVar(&opts.Jobs, "jobs", 8, "accounts migrated at once")
	f.IntVar(&opts.PerHost, "per-host", 4, "most sessions open at once to one POP3 host")
	f.IntVar(&opts.Window, "window", 32, "RETR commands in flight when the server offers PIPELINING")
	f.IntVar(&opts.BatchSize, "batch-size", pipeline.DefaultBatchSize, "most messages per group commit (fsync + journal transaction)")
	f.StringVar(&opts.BatchBytes, "batch-bytes", "16MiB", "a group commit ends once its messages hold this much (e.g. 16MiB, 4MB)")
	f.DurationVar(&opts.BatchInterval, "batch-interval", time.Second, "longest wait before a group commit")
	f.DurationVar(&opts.Timeout, "timeout", 60*time.Second, "POP3 idle timeout per command")
	f.IntVar(&opts.Attempts, "attempts", 5, "sessions tried per account on temporary errors ([IN-USE], [SYS/TEMP], network)")
	f.IntVar(&opts.MessageAttempts, "message-attempts", 3, "attempts at one message, counted across sessions and runs, before it is reported failed; later runs try it once more each")
	f.BoolVar(&opts.RetryFailed, "retry-failed", false, "give messages that used up --message-attempts as many attempts again in this run")
	f.StringVar(&opts.MaxBandwidth, "max-bandwidth", "", "cap the bytes per second read from the POP3 servers, all sessions together (e.g. 20MiB/s; default no cap)")
	f.StringVar(&opts.MaxBandwidthPerHost, "max-bandwidth-per-host", "", "cap the bytes per second read from each POP3 host (e.g. 5MiB/s; default no cap)")
	f.DurationVar(&opts.MaxWait, "max-wait", 30*time.Minute, "most time one account waits between its sessions in all (backoff, the server's LOGIN-DELAY) before it fails")
	f.BoolVar(&opts.UntilEmpty, "until-empty", false, "repeat sessions until a listing brings nothing new: for servers that list a mailbox in slices and hide what a session retrieved (Gmail)")
	f.BoolVar(&opts.Wait, "wait", false, "run accounts another popmigrate is working on (with this journal) here too once it lets them go, even when it finished them (default: leave them to it)")
	f.StringVar(&opts.SpoolDir, "spool-dir", "", "where messages over 1 MiB are spooled (default the system temp dir)")
	f.StringVar(&opts.TraceDir, "trace-dir", "", "write a POP3 protocol transcript per account into `DIR` (passwords redacted)")
	f.StringVar(&opts.IMAPFlags, "imap-flags", `\Seen`, "flags of messages uploaded to IMAP, comma-separated, or \"none\"")
	f.StringVar(&opts.IMAPDate, "imap-date", "received", "IMAP INTERNALDATE from: received (newest Received:, then Date:), date (Date:), download (the time of download)")
	f.IntVar(&opts.IMAPConns, "imap-conns", 2, "most IMAP connections per account and destination (one for every 32 messages of a download)")
	f.StringVar(&opts.ToCAFile, "to-ca-file", "", "CA certificates (PEM `FILE`) for IMAP destinations (default: --ca-file)")
	f.StringVar(&opts.Quarantine, "quarantine", "", "keep messages an IMAP server refuses as .eml files under `DIR` (default: popmigrate-quarantine beside the journal file, or here for a PostgreSQL journal)")
	f.BoolVar(&opts.NoVerify, "no-verify", false, "skip the verify phase (reading back every stored copy and comparing with the server's listing)")
	f.BoolVar(&opts.Delete, "delete", false, "after a clean verification, delete from the server the messages verified in every destination")
	f.BoolVar(&opts.DeleteSuspect, "delete-suspect", false, "with --delete: delete suspect messages too (RETR delivered a size LIST does not explain: the stored copy may be incomplete)")
	f.BoolVar(&opts.DryRun, "dry-run", false, "with --delete: print what would be deleted, delete nothing")
	f.IntVar(&opts.KeepDays, "keep-days", 0, "with --delete: keep messages first seen less than `N` days ago")
	f.BoolVar(&opts.JSON, "json", false, "print the final report as JSON on stdout")
	f.StringVar(&opts.Report, "report", "", "also write the final JSON report to `FILE` (what --json prints)")
	f.StringVar(&opts.HTMLReport, "html-report", "", "also write the run's HTML report for the customer to `FILE` (mode 0644; see popmigrate report)")
	f.StringVar(&opts.MetricsListen, "metrics-listen", "", "serve Prometheus metrics on `ADDR` (e.g. 127.0.0.1:9464) at /metrics while the run lasts")
	addLogFlags(f, &opts.logFlags)
	f.BoolVar(&opts.NoProgress, "no-progress", false, "no progress bar, even on a terminal")
	f.BoolVarP(&opts.Verbose, "verbose", "v", false, "log retries and per-account progress to stderr")
	return cmd
}

// addAccountFlags registers the account flags on cmd.
func addAccountFlags(cmd *cobra.Command, opts *accountFlags) {
	f := cmd.Flags()
	f.StringVar(&opts.Source, "source", "", "the POP3 account: pop3s://USER@HOST[:PORT] (implicit TLS) or pop3://USER@HOST[:PORT] (STLS)")
	f.StringVar(&opts.Provider, "provider", "", "the accounts' provider, for its server and behaviour: "+strings.Join(config.ProviderNames(), ", ")+" (see README)")
	f.StringVar(&opts.Name, "name", "", "account name in the journal and report (default USER@HOST)")
	f.StringVar(&opts.Accounts, "accounts", "", "CSV `FILE` of accounts (see README for columns)")
	f.StringVar(&opts.Config, "config", "", "YAML `FILE` with defaults and accounts")
	f.StringVar(&opts.PasswordEnv, "password-env", "", "read the password from environment variable `VAR`")
	f.StringVar(&opts.PasswordFile, "password-file", "", "read the password from `FILE` (one trailing newline removed)")
	f.StringVar(&opts.PasswordCommand, "password-command", "", "run `CMD` with /bin/sh; its output is the password")
	f.StringVar(&opts.TokenEnv, "oauth2-token-env", "", "OAuth2 access token from environment variable `VAR` (XOAUTH2/OAUTHBEARER)")
	f.StringVar(&opts.TokenFile, "oauth2-token-file", "", "OAuth2 access token from `FILE`")
	f.StringVar(&opts.TokenCommand, "oauth2-token-command", "", "OAuth2 access token from the output of `CMD`")
	f.StringVar(&opts.OAuth2Provider, "oauth2-provider", "", "ask this provider for OAuth2 tokens as an app, for each mailbox: microsoft365 (client credentials) or google (service account)")
	f.StringVar(&opts.OAuth2Tenant, "oauth2-tenant", "", "microsoft365: the directory (tenant) id or domain")
	f.StringVar(&opts.OAuth2ClientID, "oauth2-client-id", "", "microsoft365: the application (client) id")
	f.StringVar(&opts.OAuth2SecretEnv, "oauth2-client-secret-env", "", "microsoft365: the client secret from environment variable `VAR`")
	f.StringVar(&opts.OAuth2SecretFile, "oauth2-client-secret-file", "", "microsoft365: the client secret from `FILE`")
	f.StringVar(&opts.OAuth2SecretCommand, "oauth2-client-secret-command", "", "microsoft365: the client secret from the output of `CMD`")
	f.StringVar(&opts.OAuth2ClientCert, "oauth2-client-cert", "", "microsoft365: instead of a secret, the app's certificate and RSA key (PEM `FILE`)")
	f.StringVar(&opts.OAuth2ServiceAccount, "oauth2-service-account", "", "google: the service account's JSON key `FILE` (domain-wide delegation)")
	f.StringSliceVar(&opts.Auth, "auth", nil, "allowed auth mechanisms in order: PLAIN,APOP,USER,XOAUTH2,XOAUTH2-2STEP,OAUTHBEARER (default: the strongest offered)")
	f.StringArrayVar(&opts.To, "to", nil, "destination, repeatable: maildir:DIR, mbox:FILE, eml:DIR, imaps://USER@HOST/FOLDER (templates {user} {host} {account})")
	f.StringVar(&opts.ToPasswordEnv, "to-password-env", "", "IMAP destination password from environment variable `VAR`")
	f.StringVar(&opts.ToPasswordFile, "to-password-file", "", "IMAP destination password from `FILE`")
	f.StringVar(&opts.ToPasswordCommand, "to-password-command", "", "IMAP destination password from the output of `CMD`")
	f.StringVar(&opts.ToTokenEnv, "to-oauth2-token-env", "", "IMAP destination OAuth2 token from environment variable `VAR`")
	f.StringVar(&opts.ToTokenFile, "to-oauth2-token-file", "", "IMAP destination OAuth2 token from `FILE`")
	f.StringVar(&opts.ToTokenCommand, "to-oauth2-token-command", "", "IMAP destination OAuth2 token from the output of `CMD`")
	f.StringVar(&opts.CAFile, "ca-file", "", "trust the CA certificates in PEM `FILE` instead of the system roots")
	f.BoolVar(&opts.InsecureSkipVerify, "insecure-skip-verify", false, "do not verify the server's TLS certificate (dangerous)")
	f.BoolVar(&opts.InsecurePlaintext, "insecure-plaintext", false, "allow pop3:// without TLS: the password crosses the network in the clear")
}

// loadAccounts builds the accounts of the run from the flags, the CSV and
// the YAML file; flags are the defaults of the files' accounts.
// accountNeeds says what a command needs of each account.
type accountNeeds struct {
	Destination bool // it reads or writes the destinations
	Password    bool // it logs in to the POP3 server
	// RecordOnly says it only records the accounts and their
	// destinations, opening none (journal enrol): a destination that
	// logs in needs no password or token then.
	RecordOnly bool
}

func loadAccounts(opts *accountFlags, needs accountNeeds) ([]*config.Account, error) {
	d, err := accountDefaults(opts, needs)
	if err != nil {
		return nil, err
	}
	var accounts []*config.Account
	if opts.Source != "" {
		a, err := config.FromFlags(opts.Source, opts.Name, d)
		if err != nil {
			return nil, err
		}
		accounts = append(accounts, a)
	} else if opts.Name != "" {
		return nil, errors.New("--name goes with --source")
	}
	load := func(path string, fn func(f *os.File, name string) ([]*config.Account, error)) error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		as, err := fn(f, filepath.Base(path))
		accounts = append(accounts, as...)
		return err
	}
	if opts.Accounts != "" {
		if err := load(opts.Accounts, func(f *os.File, name string) ([]*config.Account, error) {
			return config.LoadCSV(f, name, d)
		}); err != nil {
			return nil, err
		}
	}
	if opts.Config != "" {
		if err := load(opts.Config, func(f *os.File, name string) ([]*config.Account, error) {
			return config.LoadYAML(f, name, d)
		}); err != nil {
			return nil, err
		}
	}
	if err := config.Validate(accounts); err != nil {
		return nil, err
	}
	perHostGiven(opts, accounts)
	return accounts, nil
}

// perHostGiven lets an explicit --per-host override the limits of the
// accounts' providers.
func perHostGiven(opts *accountFlags, accounts []*config.Account) {
	if !opts.PerHostGiven {
		return
	}
	for _, a := range accounts {
		a.PerHost = 0
	}
}

// accountDefaults are the flags' defaults of every account: the
// destinations, the secrets (one source each), the TLS settings.
func accountDefaults(opts *accountFlags, needs accountNeeds) (config.Defaults, error) {
	app := config.OAuth2App{
		Provider: opts.OAuth2Provider, Tenant: opts.OAuth2Tenant, ClientID: opts.OAuth2ClientID,
		ClientSecret: config.Secret{Env: opts.OAuth2SecretEnv, File: opts.OAuth2SecretFile, Command: opts.OAuth2SecretCommand},
		ClientCert:   opts.OAuth2ClientCert, ServiceAccount: opts.OAuth2ServiceAccount,
	}
	d := config.Defaults{
		Destinations:        destinations(),
		DestinationOptional: !needs.Destination,
		PasswordOptional:    !needs.Password,
		To:                  opts.To,
		Password:            config.Secret{Env: opts.PasswordEnv, File: opts.PasswordFile, Command: opts.PasswordCommand},
		OAuth2Token:         config.Secret{Env: opts.TokenEnv, File: opts.TokenFile, Command: opts.TokenCommand},
		OAuth2App:           app,
		ToPassword:          config.Secret{Env: opts.ToPasswordEnv, File: opts.ToPasswordFile, Command: opts.ToPasswordCommand},
		ToOAuth2Token:       config.Secret{Env: opts.ToTokenEnv, File: opts.ToTokenFile, Command: opts.ToTokenCommand},
		CAFile:              opts.CAFile,
		InsecureSkipVerify:  opts.InsecureSkipVerify,
		InsecurePlaintext:   opts.InsecurePlaintext,
		Provider:            opts.Provider,
	}
	// Only the commands that open destinations need their secrets.
	d.DestinationPasswordOptional = needs.RecordOnly
	for _, m := range opts.Auth {
		d.Auth = append(d.Auth, strings.ToUpper(strings.TrimSpace(m)))
	}
	n := 0
	for _, s := range []string{opts.PasswordEnv, opts.PasswordFile, opts.PasswordCommand} {
		if s != "" {
			n++
		}
	}
	if n > 1 {
		return config.Defaults{}, errors.New("give only one of --password-env, --password-file, --password-command")
	}
	n = 0
	for _, s := range []string{opts.ToPasswordEnv, opts.ToPasswordFile, opts.ToPasswordCommand} {
		if s != "" {
			n++
		}
	}
	if n > 1 {
		return config.Defaults{}, errors.New("give only one of --to-password-env, --to-password-file, --to-password-command")
	}
	n = 0
	for _, s := range []string{opts.OAuth2SecretEnv, opts.OAuth2SecretFile, opts.OAuth2SecretCommand} {
		if s != "" {
			n++
		}
	}
	if n > 1 {
		return config.Defaults{}, errors.New("give only one of --oauth2-client-secret-env, --oauth2-client-secret-file, --oauth2-client-secret-command")
	}
	return d, nil
}

// describeRun describes a command for the journal's runs table: the verb,
// its settings (head), where the accounts and destinations came from. It
// holds no secret: sources are printed without passwords, and secrets
// never come from arguments.
func describeRun(head string, opts *accountFlags, accounts []*config.Account) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s accounts=%d", head, len(accounts))
	if opts.Source != "" && len(accounts) > 0 {
		fmt.Fprintf(&b, " source=%s", accounts[0].SourceURL())
	}
	if opts.Accounts != "" {
		fmt.Fprintf(&b, " accounts=%s", opts.Accounts)
	}
	if opts.Config != "" {
		fmt.Fprintf(&b, " config=%s", opts.Config)
	}
	for _, t := range opts.To {
		fmt.Fprintf(&b, " to=%s", t)
	}
	return b.String()
}

// runArgs describes the run for the journal's runs table.
func runArgs(opts *runOptions, accounts []*config.Account) string {
	head := fmt.Sprintf("run jobs=%d per-host=%d window=%d batch=%d", opts.Jobs, opts.PerHost, opts.Window, opts.BatchSize)
	return describeRun(opts.describe(head), &opts.accountFlags, accounts)
}

// minLeaseTTL is the shortest --lease-ttl: the heartbeat, every third of
// it, must reach the journal in time. Short leases are for tests and for
// quick takeover on a fast journal; a writer whose heartbeat falls behind
// stops writing rather than risk it (see pipeline's heldLease).
const minLeaseTTL = time.Second

// checkLeaseTTL refuses a --lease-ttl shorter than minLeaseTTL.
func checkLeaseTTL(d time.Duration) error {
	if d < minLeaseTTL {
		return usageError("--lease-ttl %v: want %v or more (the lease is renewed every third of it)", d, minLeaseTTL)
	}
	return nil
}

func runRun(ctx context.Context, opts *runOptions) error {
	sel, err := opts.workFlags.check(&opts.accountFlags, "run")
	if err != nil {
		return err
	}
	needs := accountNeeds{Destination: true, Password: true}
	var accounts []*config.Account
	if !opts.FromJournal {
		// Accounts from flags and files are checked before the journal
		// is touched: a usage error creates nothing.
		if accounts, err = opts.load(ctx, &opts.accountFlags, nil, sel, needs); err != nil {
			return &exitError{code: exitUsage, err: err}
		}
	}
	if err := checkLeaseTTL(opts.LeaseTTL); err != nil {
		return err
	}
	if opts.Delete && opts.NoVerify {
		return usageError("--delete needs the verify phase: drop --no-verify")
	}
	if (opts.DryRun || opts.KeepDays != 0 || opts.DeleteSuspect) && !opts.Delete {
		return usageError("--dry-run, --keep-days and --delete-suspect go with --delete")
	}
	if opts.MessageAttempts < 1 {
		return usageError("--message-attempts %d: want 1 or more", opts.MessageAttempts)
	}
	batchBytes, err := ratelimit.Parse(opts.BatchBytes)
	if err != nil || batchBytes <= 0 {
		return usageError("--batch-bytes %q: want a size such as 16MiB or 4MB", opts.BatchBytes)
	}
	maxBW, err := ratelimit.Parse(opts.MaxBandwidth)
	if err != nil {
		return usageError("--max-bandwidth: %v", err)
	}
	maxBWHost, err := ratelimit.Parse(opts.MaxBandwidthPerHost)
	if err != nil {
		return usageError("--max-bandwidth-per-host: %v", err)
	}
	if opts.KeepDays < 0 {
		return usageError("--keep-days %d: want 0 or more", opts.KeepDays)
	}
	if opts.TraceDir != "" {
		if err := os.MkdirAll(opts.TraceDir, 0o700); err != nil {
			return &exitError{code: exitUsage, err: err}
		}
	}
	if opts.FromJournal {
		if err := journalMissing(opts.Journal); err != nil {
			return err
		}
	}
	j, err := journal.Open(ctx, opts.Journal)
	if err != nil {
		if ctx.Err() != nil {
			return outcome{Interrupted: true}.err(outcomeText{Interrupted: "interrupted before anything was done"})
		}
		return &exitError{code: exitUsage, err: err}
	}
	defer j.Close()
	if opts.FromJournal {
		if accounts, err = opts.load(ctx, &opts.accountFlags, j, sel, needs); err != nil {
			if ctx.Err() != nil {
				return outcome{Interrupted: true}.err(outcomeText{Interrupted: "interrupted before anything was done"})
			}
			return &exitError{code: exitUsage, err: err}
		}
	}
	if len(accounts) == 0 {
		// Only a shard can be empty: the other cases are errors.
		fmt.Fprintf(opts.io.Err, "popmigrate: shard %s holds none of the accounts; nothing to do\n", sel.Shard)
	}
	printConfigWarnings(opts.io.Err, accounts)
	for _, a := range accounts {
		if a.InsecureSkipVerify {
			fmt.Fprintf(opts.io.Err, "popmigrate: WARNING: account %s: TLS certificate verification is OFF (--insecure-skip-verify); anyone on the path can read the password and the mail\n", a.Name)
		}
		if a.Security == config.SecurityPlain {
			fmt.Fprintf(opts.io.Err, "popmigrate: WARNING: account %s: connecting WITHOUT TLS (--insecure-plaintext); the password and the mail cross the network in the clear\n", a.Name)
		}
	}
	runID, err := j.StartRun(ctx, runArgs(opts, accounts))
	if err != nil {
		return err
	}

	logger, err := opts.logFlags.logger(opts.io.Err, slog.LevelWarn, opts.Verbose)
	if err != nil {
		return usageError("%v", err)
	}
	prog := newProgress(opts.io, !opts.NoProgress && opts.io.ErrIsTerminal, len(accounts), opts.Verbose || !opts.io.ErrIsTerminal)
	po := &pipeline.Options{
		Destinations: destinations(),
		Jobs:         opts.Jobs, PerHost: opts.PerHost, Window: opts.Window,
		BatchSize: opts.BatchSize, BatchBytes: batchBytes, BatchInterval: opts.BatchInterval,
		Timeout: opts.Timeout, Attempts: opts.Attempts, SpoolDir: opts.SpoolDir,
		MessageAttempts: opts.MessageAttempts, RetryFailed: opts.RetryFailed, WaitForLease: opts.Wait, LeaseTTL: opts.LeaseTTL,
		MaxBandwidth: maxBW, MaxBandwidthPerHost: maxBWHost, UntilEmpty: opts.UntilEmpty, MaxWait: opts.MaxWait,
		Progress: prog, Logger: logger,
	}
	if opts.MetricsListen != "" {
		m, stop, err := serveMetrics(opts.MetricsListen, opts.io.Err)
		if err != nil {
			return usageError("--metrics-listen: %v", err)
		}
		defer stop()
		po.Metrics = m
	}
	imapOpts, err := imapOptions(opts)
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	po.IMAP = imapOpts
	var (
		tracesMu sync.Mutex
		traces   []*os.File
	)
	if opts.TraceDir != "" {
		po.Debug = func(account string) *os.File {
			f, err := os.OpenFile(filepath.Join(opts.TraceDir, safeName(account)+".trace"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
			if err != nil {
				logger.Warn("trace file", "account", account, "error", err)
				return nil
			}
			tracesMu.Lock()
			traces = append(traces, f)
			tracesMu.Unlock()
			return f
		}
	}
	// The verify phase reads back every stored copy and compares the
	// counts with the server's listing, and only then may --delete touch
	// the source: both in each account's session, before its QUIT, so an
	// account costs one login (see pipeline.Options.VerifyInSession).
	po.VerifyInSession = !opts.NoVerify
	if opts.Delete {
		po.PurgeInSession = &pipeline.PurgeOptions{DryRun: opts.DryRun, KeepDays: opts.KeepDays, DeleteSuspect: opts.DeleteSuspect}
	}
	rep, runErr := pipeline.Run(ctx, j, accounts, po)
	prog.Finish()
	for _, f := range traces {
		f.Close()
	}

	o := runOutcome(rep, runErr, ctx.Err() != nil)
	if opts.Report != "" {
		if err := writeFileAtomic(opts.Report, func(w io.Writer) error { return writeJSON(w, rep) }); err != nil {
			fmt.Fprintf(opts.io.Err, "popmigrate: --report: %v\n", err)
			o.Failed = true
		}
	}
	writeRunHTMLReport(ctx, opts, j, runID, accounts, &o)
	if opts.JSON {
		if err := writeJSON(opts.io.Out, rep); err != nil {
			return err
		}
	} else {
		printRunReport(opts.io.Out, rep)
		if len(rep.Verify) > 0 {
			fmt.Fprintln(opts.io.Out)
			if err := verify.WriteReport(opts.io.Out, rep.Verify); err != nil {
				return err
			}
		}
		if opts.Delete {
			fmt.Fprintln(opts.io.Out)
			if rep.Purge != nil {
				printPurgeReport(opts.io.Out, rep.Purge, opts.DryRun)
			} else {
				fmt.Fprintln(opts.io.Out, "nothing deleted from the source: the run or its verification did not complete")
			}
		}
	}
	if err := j.FinishRun(context.WithoutCancel(ctx), runID, o.code(), mustJSON(rep)); err != nil && o.Err == nil {
		o.Err = err
	}
	return o.err(outcomeText{
		Interrupted: "interrupted; what was stored is recorded; run the same command again to resume",
		Mismatch:    "verification found stored copies that do not match the journal (see the report); nothing was deleted from them",
		Failed:      fmt.Sprintf("%d of %d accounts not whole (see the report)", rep.Totals.AccountsFailed, rep.Totals.Accounts),
	})
}

// runOutcome is the outcome of a run whose report is rep and whose last
// phase (run, verify or purge) ended with err. An account not whole, an
// account whose verification has a problem or an error, and an account
// purge failed make it failed; a verified copy that contradicts the journal
// makes it a mismatch; err is the run's own error.
func runOutcome(rep *pipeline.Report, err error, interrupted bool) outcome {
	o := outcome{Interrupted: interrupted, Err: err, Failed: rep.Totals.AccountsFailed > 0}
	for _, v := range rep.Verify {
		if pipeline.Mismatches(v) > 0 {
			o.Mismatch = true
		} else if v.Problems() > 0 || v.Error != "" {
			o.Failed = true
		}
	}
	for _, p := range rep.Purge {
		if p.Error != "" {
			o.Failed = true
		}
	}
	return o
}

// safeName turns an account name into a file name.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == 0 || r == ':' {
			return '_'
		}
		return r
	}, s)
}

// imapOptions turns the IMAP flags into pipeline options. The quarantine
// defaults to a folder beside the journal, so a message an IMAP server
// refuses is never lost.
func imapOptions(opts *runOptions) (pipeline.IMAPOptions, error) {
	o := pipeline.IMAPOptions{DateFrom: opts.IMAPDate, Conns: opts.IMAPConns, CAFile: opts.ToCAFile, QuarantineDir: opts.Quarantine}
	switch opts.IMAPDate {
	case "received", "date", "download":
	default:
		return o, fmt.Errorf("--imap-date %q: want received, date or download", opts.IMAPDate)
	}
	if opts.IMAPConns < 1 {
		return o, fmt.Errorf("--imap-conns %d: want 1 or more", opts.IMAPConns)
	}
	switch f := strings.TrimSpace(opts.IMAPFlags); strings.ToLower(f) {
	case "none", "":
		o.Flags = []string{}
	default:
		for _, fl := range strings.Split(f, ",") {
			fl = strings.TrimSpace(fl)
			if fl == "" || strings.ContainsAny(fl, " ()[]{\"\r\n") {
				return o, fmt.Errorf("--imap-flags: bad flag %q", fl)
			}
			o.Flags = append(o.Flags, fl)
		}
	}
	if o.QuarantineDir == "" {
		dir := filepath.Dir(opts.Journal)
		if journal.IsPostgres(opts.Journal) {
			dir = "." // a database has no folder to be beside
		}
		o.QuarantineDir = filepath.Join(dir, "popmigrate-quarantine")
	}
	return o, nil
}
