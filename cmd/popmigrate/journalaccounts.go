package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/journal"
)

// accountsGiven reports whether the flags name accounts (--source,
// --accounts or --config); without them a command that reads the journal
// takes the accounts the journal describes.
func accountsGiven(opts *accountFlags) bool {
	return opts.Source != "" || opts.Accounts != "" || opts.Config != ""
}

// accountsFromJournal returns the accounts the journal describes: each
// with its source and every destination it was run with (--to narrows
// them to the destinations given); the flags' secrets and TLS settings are
// their defaults. An account the journal knows no source or destination
// of (it never got that far) is left out.
func accountsFromJournal(ctx context.Context, j *journal.Journal, opts *accountFlags, needs accountNeeds) ([]*config.Account, error) {
	infos, err := j.Accounts(ctx)
	if err != nil {
		return nil, err
	}
	narrow := map[string]bool{}
	for _, spec := range opts.To {
		id, _, _, err := destinations().Describe(spec)
		if err != nil {
			return nil, err
		}
		narrow[id] = true
	}
	var out []*config.Account
	for _, info := range infos {
		if info.Source == "" {
			continue
		}
		var to []string
		for _, d := range info.Destinations {
			if len(narrow) == 0 || narrow[d.ID] {
				to = append(to, d.Spec)
			}
		}
		if len(to) == 0 {
			continue
		}
		acct, err := journalAccount(j, info, to, opts, needs)
		if err != nil {
			return nil, err
		}
		out = append(out, acct)
	}
	if len(out) == 0 {
		return nil, errors.New("no accounts: the journal describes none with destinations (run popmigrate run with this --journal first, or give --source/--accounts/--config and --to)")
	}
	perHostGiven(opts, out)
	return out, config.Validate(out)
}

// journalAccount builds the account info of j describes, with the
// destination specs to and the flags' secrets, TLS settings and provider
// as its defaults.
func journalAccount(j *journal.Journal, info journal.AccountInfo, to []string, opts *accountFlags, needs accountNeeds) (*config.Account, error) {
	a := *opts
	a.To = to
	d, err := accountDefaults(&a, needs)
	if err != nil {
		return nil, err
	}
	return config.FromSource("journal "+j.Path(), info.Source, info.Name, d)
}

// journalAccounts opens the journal read-only for accountsFromJournal.
func journalAccounts(ctx context.Context, path string, opts *accountFlags, needs accountNeeds) ([]*config.Account, error) {
	j, err := journal.OpenReadOnly(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("no accounts: %w (give the --journal of an earlier run, or --source/--accounts/--config and --to)", err)
	}
	defer j.Close()
	return accountsFromJournal(ctx, j, opts, needs)
}

// journalMissing returns a usage error when path names a SQLite journal
// that does not exist: run --from-journal must not create an empty one.
func journalMissing(path string) error {
	if journal.IsPostgres(path) {
		return nil
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return usageError("--from-journal: the journal %s does not exist; enrol the accounts first: popmigrate journal enrol --journal %s --accounts FILE --to DEST", path, path)
	}
	return nil
}

// maxProblems is how many accounts an error about the journal's
// accounts names before it counts the rest.
const maxProblems = 5

// runAccountsFromJournal returns the accounts run --from-journal works
// on: those the journal describes (enrolled by journal enrol, or by an
// earlier run), or the ones sel names, in sel's shard. Source and
// destinations come from the journal; secrets, TLS settings and provider
// from the flags, whose templates ({user}, {host}, {account}) are
// expanded per account.
//
// Unlike accountsFromJournal it leaves out nothing silently. It fails,
// naming the accounts and what to do, when the journal holds no account,
// when sel names an account the journal does not hold, and when a
// selected account has no source or no destination in the journal, or a
// destination whose recorded spec no longer opens the destination
// recorded (a relative path recorded from another working directory).
// A shard that selects none of the accounts is not an error: it returns
// none.
func runAccountsFromJournal(ctx context.Context, j *journal.Journal, opts *accountFlags, sel selection, needs accountNeeds) ([]*config.Account, error) {
	infos, err := j.Accounts(ctx)
	if err != nil {
		return nil, err
	}
	if len(infos) == 0 {
		return nil, fmt.Errorf("the journal %s holds no accounts: enrol them first (popmigrate journal enrol --journal %s --accounts FILE --to DEST), or give --accounts, --config or --source instead of --from-journal",
			j.Path(), j.Path())
	}
	names := make([]string, len(infos))
	for i, info := range infos {
		names[i] = info.Name
	}
	keep, err := sel.pick(names, "the journal "+j.Path()+" (popmigrate status --journal ... lists its accounts)")
	if err != nil {
		return nil, err
	}
	var (
		out      []*config.Account
		problems []string
	)
	for i, info := range infos {
		if !keep[i] {
			continue
		}
		if p := journalAccountProblem(info); p != "" {
			problems = append(problems, p)
			continue
		}
		specs := make([]string, len(info.Destinations))
		for k, d := range info.Destinations {
			specs[k] = d.Spec
		}
		acct, err := journalAccount(j, info, specs, opts, needs)
		if err != nil {
			return nil, err
		}
		out = append(out, acct)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("the journal %s cannot run %s:\n  %s\nenrol them (popmigrate journal enrol --journal %s --accounts FILE --to DEST), or leave them out by naming the others with --account",
			j.Path(), plural(len(problems), "account"), listProblems(problems), j.Path())
	}
	if len(out) == 0 {
		return nil, nil
	}
	perHostGiven(opts, out)
	return out, config.Validate(out)
}

// journalAccountProblem says why the journal cannot run info, or is "".
func journalAccountProblem(info journal.AccountInfo) string {
	if info.Source == "" {
		return fmt.Sprintf("account %s: the journal has no POP3 source for it (it was never listed or enrolled)", info.Name)
	}
	if len(info.Destinations) == 0 {
		return fmt.Sprintf("account %s: the journal knows no destination for it (it was never run or enrolled with one)", info.Name)
	}
	for _, d := range info.Destinations {
		id, _, _, err := destinations().Describe(d.Spec)
		if err != nil {
			return fmt.Sprintf("account %s: destination %s as the journal records it: %v", info.Name, d.ID, err)
		}
		if id != d.ID {
			return fmt.Sprintf("account %s: destination %s is recorded as %q, which here opens %s (a relative path recorded in another working directory?)", info.Name, d.ID, d.Spec, id)
		}
	}
	return ""
}

// listProblems joins the first maxProblems problems, one a line, and
// counts the rest.
func listProblems(problems []string) string {
	s := problems
	if len(s) > maxProblems {
		s = s[:maxProblems]
	}
	out := strings.Join(s, "\n  ")
	if n := len(problems) - len(s); n > 0 {
		out += fmt.Sprintf("\n  and %d more", n)
	}
	return out
}

// selection narrows the accounts of a run: to those named (--account),
// and to one shard of the names (--shard).
type selection struct {
	// Names, when not empty, are the only accounts to run.
	Names []string
	// Shard is the shard to run; its zero value (Count 0) means all.
	Shard shard
}

// pick returns which of names the selection keeps. It fails when a name
// of s.Names is not among names; where says where they were looked for.
func (s selection) pick(names []string, where string) ([]bool, error) {
	keep := make([]bool, len(names))
	want := map[string]bool{}
	for _, n := range s.Names {
		want[n] = true
	}
	found := map[string]bool{}
	for i, n := range names {
		if len(want) > 0 && !want[n] {
			continue
		}
		found[n] = true
		keep[i] = s.Shard.has(n)
	}
	if len(found) < len(want) {
		var missing []string
		for n := range want {
			if !found[n] {
				missing = append(missing, n)
			}
		}
		sort.Strings(missing)
		return nil, fmt.Errorf("--account %s: no such account in %s", strings.Join(missing, ", "), where)
	}
	return keep, nil
}

// apply narrows accounts (loaded from flags or files) to the selection.
func (s selection) apply(accounts []*config.Account, where string) ([]*config.Account, error) {
	names := make([]string, len(accounts))
	for i, a := range accounts {
		names[i] = a.Name
	}
	keep, err := s.pick(names, where)
	if err != nil {
		return nil, err
	}
	var out []*config.Account
	for i, a := range accounts {
		if keep[i] {
			out = append(out, a)
		}
	}
	return out, nil
}
