package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/journal/adopt"
)

// newJournalCmd is the parent of the commands that work on the journal
// itself.
func newJournalCmd(io *iostreams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "journal",
		Short: "Work on the journal itself: adopt another POP3 client's state",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError("unknown command %q for %s (see %s --help)", args[0], cmd.CommandPath(), cmd.CommandPath())
			}
			return cmd.Help()
		},
	}
	cmd.AddCommand(newJournalImportCmd(io, nil))
	cmd.AddCommand(newJournalRebuildCmd(io, nil))
	return cmd
}

type journalImportOptions struct {
	io      *iostreams
	From    string
	File    string
	Account string
	Mailbox string
	Journal string
	JSON    bool
}

func newJournalImportCmd(io *iostreams, runF func(context.Context, *journalImportOptions) error) *cobra.Command {
	opts := &journalImportOptions{io: io}
	cmd := &cobra.Command{
		Use:   "import --from getmail|mpop|fetchmail FILE --account NAME",
		Short: "Adopt the messages another POP3 client fetched, so that run does not download them again",
		Long: `Import reads the state file another POP3 client keeps of the messages it
fetched and left on the server, and records their UIDLs in the journal as
adopted, for one account: popmigrate run then never downloads them (the other
client has them), verify expects no copy of them, and popmigrate never deletes
them from the server (run --delete and purge leave them: popmigrate never read
a copy of them back). Run it once before the first run that takes the mailbox
over from the other client; messages that arrive later are downloaded as usual.

  --from mpop       mpop's uidls_file (default ~/.mpop_uidls/USER_at_HOST)
  --from getmail    getmail's oldmail-SERVER-PORT-USER in its getmail directory
                    (default ~/.getmail), the state of a POP3 retriever
  --from fetchmail  fetchmail's idfile (default ~/.fetchids)

An mpop or fetchmail file may hold several mailboxes: the one of the account's
user and host is imported. They come from the source the journal recorded for
--account, or else from the account name USER@HOST (run's default name);
--mailbox USER@HOST names the mailbox as the other client did, when its host
or user is spelled otherwise (an alias, another case). A getmail file's name
must be that of the account's mailbox (or no oldmail- name at all).

Importing the same file again adds nothing. A UIDL of which the journal records
a copy in a destination stays popmigrate's and is not adopted. The other client
must not fetch from the mailbox any more: what it fetches later is not known.

Exit codes: 0 imported, 1 the journal could not be written, 2 usage error (a
file that does not parse, a mailbox not found, no such journal); nothing is
recorded unless the exit code is 0.`,
		Example: `  # before the first run: what mpop already fetched
  popmigrate journal import --from mpop ~/.mpop_uidls/alice_at_mail.example.org \
      --account alice@mail.example.org --journal alice.db
  popmigrate run --source pop3s://alice@mail.example.org --password-env POP_PASSWORD \
      --to maildir:/srv/mail/alice --journal alice.db

  popmigrate journal import --from getmail ~/.getmail/oldmail-mail.example.org-995-alice \
      --account alice@mail.example.org --journal alice.db
  popmigrate journal import --from fetchmail ~/.fetchids --account alice \
      --mailbox alice@pop.example.org --journal migration.db`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError("give the state FILE to import, one (see %s --help)", cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.File = args[0]
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return journalImportRun(cmd.Context(), opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.From, "from", "", "the POP3 client (`TOOL`) that wrote FILE: getmail, mpop or fetchmail")
	f.StringVar(&opts.Account, "account", "", "the account `NAME`, as run names it (--name; by default USER@HOST)")
	f.StringVar(&opts.Mailbox, "mailbox", "", "the mailbox in FILE as the other client names it, `USER@HOST` (default: the account's)")
	f.StringVar(&opts.Journal, "journal", defaultJournal, "journal: a SQLite `FILE` (created if missing) or a postgres://USER@HOST/DB URL")
	f.BoolVar(&opts.JSON, "json", false, "print what was imported as JSON on stdout")
	return cmd
}

// journalImportJSON is what journal import --json prints.
type journalImportJSON struct {
	Account string `json:"account"`
	From    string `json:"from"`
	File    string `json:"file"`    // absolute
	Mailbox string `json:"mailbox"` // USER@HOST, as the file names it; "" for getmail
	UIDLs   int    `json:"uidls"`   // the mailbox's UIDLs in the file
	Adopted int    `json:"adopted"` // of those, adopted now
	// Skipped were adopted by an earlier import, or are stored by
	// popmigrate.
	Skipped int `json:"skipped"`
}

func journalImportRun(ctx context.Context, opts *journalImportOptions) error {
	if !slices.Contains(adopt.Tools, opts.From) {
		return usageError("give --from %s: the client that wrote %s", strings.Join(adopt.Tools, ", "), opts.File)
	}
	if opts.Account == "" {
		return usageError("give --account NAME: the account as popmigrate run names it (USER@HOST unless --name)")
	}
	file, err := filepath.Abs(opts.File)
	if err != nil {
		return usageError("%s state file %s: %v", opts.From, opts.File, err)
	}
	st, err := parseStateFile(opts.From, file)
	if err != nil {
		return usageError("%w", err)
	}

	// The journal is opened before the mailbox is chosen only when it
	// exists already (it may know the account's source): a mailbox not
	// found creates no journal.
	var j *journal.Journal
	defer func() {
		if j != nil {
			j.Close()
		}
	}()
	if journal.IsPostgres(opts.Journal) || fileExists(opts.Journal) {
		if j, err = journal.Open(ctx, opts.Journal); err != nil {
			return usageError("%w", err)
		}
	}
	user, host, err := mailboxOf(ctx, j, opts)
	if err != nil {
		return err
	}
	m, err := st.Select(user, host)
	if err != nil {
		hint := ""
		if opts.From != adopt.Getmail {
			hint = " (give --mailbox USER@HOST to name it)"
		}
		return usageError("account %s: %w%s", opts.Account, err, hint)
	}
	if j == nil {
		if j, err = journal.Open(ctx, opts.Journal); err != nil {
			return usageError("%w", err)
		}
	}
	added, err := j.Adopt(ctx, opts.Account, opts.From, file, m.UIDLs)
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		return &exitError{code: exitFailed, err: fmt.Errorf("%w (nothing was imported; run the same command again)", err)}
	}
	out := journalImportJSON{Account: opts.Account, From: opts.From, File: file, UIDLs: len(m.UIDLs), Adopted: added, Skipped: len(m.UIDLs) - added}
	if m.User != "" || m.Host != "" {
		out.Mailbox = m.String()
	}
	if opts.JSON {
		return writeJSON(opts.io.Out, out)
	}
	w := opts.io.Out
	from := opts.From
	if out.Mailbox != "" {
		from += " mailbox " + out.Mailbox
	}
	fmt.Fprintf(w, "account %s: adopted %d UIDLs from %s in %s", opts.Account, added, from, file)
	if out.Skipped > 0 {
		fmt.Fprintf(w, " (%d more were adopted before or are stored by popmigrate)", out.Skipped)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "popmigrate run will not download these messages, and popmigrate never deletes them from the server.")
	return nil
}

// parseStateFile reads the state file of tool at file.
func parseStateFile(tool, file string) (*adopt.State, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("%s state file: %w", tool, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s state file %s: not a regular file", tool, file)
	}
	return adopt.Parse(tool, file, f)
}

// mailboxOf returns the user and host of the mailbox to import: those of
// --mailbox, else those of the account's source as j (nil: no journal
// yet) recorded it, else those of the account name USER@HOST.
func mailboxOf(ctx context.Context, j *journal.Journal, opts *journalImportOptions) (user, host string, err error) {
	if opts.Mailbox != "" {
		user, host, ok := splitUserHost(opts.Mailbox)
		if !ok {
			return "", "", usageError("--mailbox %q: want USER@HOST, as %s names the mailbox", opts.Mailbox, opts.From)
		}
		return user, host, nil
	}
	if j != nil {
		infos, err := j.Accounts(ctx)
		if err != nil {
			return "", "", err
		}
		for _, info := range infos {
			if info.Name != opts.Account || info.Source == "" {
				continue
			}
			src, err := config.ParseSource(info.Source)
			if err != nil {
				break // not one of ours: try the name
			}
			return src.User, src.Host, nil
		}
	}
	if user, host, ok := splitUserHost(opts.Account); ok {
		return user, host, nil
	}
	return "", "", usageError("account %s: its user and host are unknown: the name is not USER@HOST and the journal %s records no source for it; "+
		"give --mailbox USER@HOST as %s names the mailbox", opts.Account, opts.Journal, opts.From)
}

// splitUserHost splits "USER@HOST" at its last '@'; both must be there.
func splitUserHost(s string) (user, host string, ok bool) {
	i := strings.LastIndexByte(s, '@')
	if i <= 0 || i == len(s)-1 {
		return "", "", false
	}
	return s[:i], s[i+1:], true
}

// fileExists reports whether path names an existing file or folder.
func fileExists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, fs.ErrNotExist)
}
