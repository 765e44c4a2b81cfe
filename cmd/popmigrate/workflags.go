package main

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/journal"
)

// workFlags choose the accounts a command that logs in to the POP3
// servers (run, purge) works on: the journal's enrolled accounts
// (--from-journal) or those of the flags and files, narrowed by --account
// and --shard, so that workers sharing a migration can purge it as they
// ran it.
type workFlags struct {
	// FromJournal takes the accounts from the journal (--from-journal);
	// Only (--account) and Shard (--shard) narrow them, or the accounts
	// of the files.
	FromJournal bool
	Only        []string
	Shard       string
}

// addWorkFlags adds --from-journal, --account and --shard to f; verb
// ("run", "purge") is what the help texts say is done to the accounts.
func addWorkFlags(f *pflag.FlagSet, w *workFlags, verb string) {
	f.BoolVar(&w.FromJournal, "from-journal", false, verb+" the accounts enrolled in the journal (popmigrate journal enrol, or earlier runs), with their sources and destinations, instead of --source/--accounts/--config")
	f.StringArrayVar(&w.Only, "account", nil, verb+" only the account `NAME` (repeatable): of the journal's with --from-journal, else of --accounts/--config")
	f.StringVar(&w.Shard, "shard", "", verb+" only shard `INDEX/COUNT` of the accounts (0 <= INDEX < COUNT), by a stable hash of the account name: COUNT workers given 0/COUNT ... COUNT-1/COUNT share a migration without meeting")
}

// check refuses, with --from-journal, the flags of af that name accounts
// or destinations (the journal names them), and a malformed --shard; it
// returns the selection --account and --shard make.
func (w *workFlags) check(af *accountFlags, verb string) (selection, error) {
	if w.FromJournal {
		switch {
		case af.Source != "" || af.Name != "":
			return selection{}, usageError("--from-journal %ss the accounts of the journal; --source and --name describe another: give one or the other (narrow the journal's accounts with --account NAME)", verb)
		case af.Accounts != "" || af.Config != "":
			return selection{}, usageError("--from-journal %ss the accounts of the journal; --accounts and --config name them from a file: give one or the other (enrol the file's accounts with popmigrate journal enrol, and narrow the journal's with --account NAME)", verb)
		case len(af.To) > 0:
			return selection{}, usageError("--from-journal %ss each account with the destinations the journal records; --to would change them: enrol the destinations with popmigrate journal enrol --to DEST, or %s without --from-journal", verb, verb)
		}
	}
	sh, err := parseShard(w.Shard)
	if err != nil {
		return selection{}, usageError("%v", err)
	}
	return selection{Names: w.Only, Shard: sh}, nil
}

// describe appends the choice of accounts to head, for the journal's
// runs table.
func (w *workFlags) describe(head string) string {
	if w.FromJournal {
		head += " from-journal"
	}
	if w.Shard != "" {
		head += " shard=" + w.Shard
	}
	if len(w.Only) > 0 {
		head += fmt.Sprintf(" only=%d", len(w.Only))
	}
	return head
}

// load returns the accounts: from the journal j with --from-journal, else
// from the flags and files of af; narrowed by sel (--account, --shard).
func (w *workFlags) load(ctx context.Context, af *accountFlags, j *journal.Journal, sel selection, needs accountNeeds) ([]*config.Account, error) {
	if w.FromJournal {
		return runAccountsFromJournal(ctx, j, af, sel, needs)
	}
	accounts, err := loadAccounts(af, needs)
	if err != nil {
		return nil, err
	}
	return sel.apply(accounts, "the accounts given (--source, --accounts, --config)")
}
