package main

import (
	"context"
	"errors"
	"fmt"

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
		a := *opts
		a.To = to
		d, err := accountDefaults(&a, needs)
		if err != nil {
			return nil, err
		}
		acct, err := config.FromFlags(info.Source, info.Name, d)
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

// journalAccounts opens the journal read-only for accountsFromJournal.
func journalAccounts(ctx context.Context, path string, opts *accountFlags, needs accountNeeds) ([]*config.Account, error) {
	j, err := journal.OpenReadOnly(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("no accounts: %w (give the --journal of an earlier run, or --source/--accounts/--config and --to)", err)
	}
	defer j.Close()
	return accountsFromJournal(ctx, j, opts, needs)
}
