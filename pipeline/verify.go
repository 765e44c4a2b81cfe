package pipeline

import (
	"context"
	"fmt"
	"io"
	"sort"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/location"
	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/verify"
)

// VerifyOptions tune Verify. A nil *VerifyOptions means the defaults.
type VerifyOptions struct {
	// Options gives the concurrency (Jobs, PerHost) and the POP3 settings
	// (Timeout, MaxMessageSize, Debug) used with AgainstSource, and the
	// Logger. Its other fields are not used.
	Options
	// AgainstSource also connects to each account's server, as run does,
	// lists the mailbox (UIDL and LIST, disambiguated as run does; the
	// journal's listing is not updated) and compares it with the journal:
	// messages on the server that a destination lacks, and stored
	// messages the server no longer lists. It downloads and deletes
	// nothing.
	AgainstSource bool
}

// Verify verifies every account's destinations against the journal (see
// verify.Account), Jobs accounts at once, and returns one result per
// account, sorted by account name. File destinations are opened
// read-only (see openDestination): Verify never creates, locks, repairs or
// otherwise changes what it checks, so it works on read-only media and on
// an mbox file a run is appending to; a torn mbox tail is left for run to
// cut. IMAP destinations are opened as run opens them (reads there use
// BODY.PEEK and set no flag). The destinations are closed before Verify
// returns. Matching copies are recorded as verified in the journal.
//
// A destination that cannot be opened, or a file destination that does
// not exist, is an Unreadable finding of its account (the copies recorded
// there are not checked), and a server that cannot be listed with
// AgainstSource sets the account's Result.Error; the other accounts go
// on. Verify returns an error only when the journal fails or ctx ends.
func Verify(ctx context.Context, j *journal.Journal, accounts []*config.Account, opts *VerifyOptions) ([]*verify.Result, error) {
	if opts == nil {
		opts = &VerifyOptions{}
	}
	o := opts.Options.withDefaults()
	r := newRunner(o, j)
	out := make([]*verify.Result, len(accounts))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.Jobs)
	for i, a := range accounts {
		g.Go(func() error {
			res, err := r.verifyAccount(gctx, a, opts.AgainstSource)
			if err != nil {
				return err
			}
			o.Logger.Info(evVerify, "account", a.Name, "checked", res.Checked, "problems", res.Problems(), "error", res.Error)
			o.Metrics.Verified(res.Counts[verify.Match])
			out[i] = res
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Account < out[b].Account })
	return out, nil
}

// verifyAccount verifies one account. Its error is a journal failure or
// the end of ctx.
func (r *runner) verifyAccount(ctx context.Context, a *config.Account, againstSource bool) (*verify.Result, error) {
	ar := &accountRun{r: r, a: a, rep: &AccountReport{Account: a.Name, Source: a.SourceURL()}}
	var uidls []string
	var serverErr error
	if againstSource {
		uidls, serverErr = ar.serverUIDLs(ctx)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if serverErr != nil {
			r.opts.Logger.Warn("verify: listing the server failed", "account", a.Name, "error", serverErr)
		}
	}

	res, err := r.verifyWith(ctx, a, uidls, time.Time{}, nil)
	if err != nil {
		return nil, err
	}
	if serverErr != nil {
		res.Error = "list the server: " + explain(serverErr)
	}
	return res, nil
}

// verifyWith verifies a's copies against the journal and, when uidls is
// not nil, against that listing of the server (see verify.Account), but
// for the UIDLs the account adopted from another POP3 client's state: no
// copy of them is expected (see withoutAdopted). Each
// destination is opened read-only for it (see openDestination), so what
// is read back is what a fresh reader finds, and closed after; one that
// cannot be opened is an Unreadable finding. A destination in open (by
// id) is read through as it is instead, and left open: the session's own
// IMAP destination (see reuseForVerify). A copy recorded as verified
// at or after readSince (when not zero) is counted as checked without
// being read again: this run's writer read it back (see readBack).
func (r *runner) verifyWith(ctx context.Context, a *config.Account, uidls []string, readSince time.Time, open map[string]exporters.Exporter) (*verify.Result, error) {
	account := a.Name
	dests := map[string]exporters.Exporter{}
	reused := map[string]bool{} // the caller's, which it closes
	var failed []verify.Finding
	defer func() {
		for id, e := range dests {
			if reused[id] {
				continue
			}
			if err := e.Close(); err != nil {
				r.opts.Logger.Warn("verify: closing destination", "account", account, "destination", id, "error", err)
			}
		}
	}()
	for _, spec := range a.To {
		if e := open[specID(spec, r.opts.Destinations)]; e != nil {
			id := e.Properties().ID
			dests[id], reused[id] = e, true
			continue
		}
		e, err := openDestination(ctx, spec, a, &r.opts, true)
		if err != nil {
			failed = append(failed, verify.Finding{Kind: verify.Unreadable, DestID: specID(spec, r.opts.Destinations),
				Detail: fmt.Sprintf("cannot open the destination: %v", err)})
			continue
		}
		dests[e.Properties().ID] = e
	}
	if uidls != nil {
		var err error
		if uidls, err = withoutAdopted(ctx, r.j, account, uidls); err != nil {
			return nil, err
		}
	}
	res, err := verify.AccountWith(ctx, r.j, account, dests, uidls, verify.Options{ReadSince: readSince, Suspects: true})
	if err != nil {
		return nil, err
	}
	if len(failed) > 0 {
		dels, err := r.j.Deliveries(ctx, account)
		if err != nil {
			return nil, fmt.Errorf("verify: account %q: %w", account, err)
		}
		for _, f := range failed {
			n := 0
			for _, byDest := range dels {
				if _, ok := byDest[f.DestID]; ok {
					n++
				}
			}
			f.Detail += fmt.Sprintf(" (%d recorded copies not checked)", n)
			res.Add(f)
		}
	}
	if r.opts.untilEmpty(a) {
		// The server hides what was retrieved: not listed is not gone.
		dropKind(res, verify.GoneFromServer)
	}
	return res, nil
}

// serverUIDLs lists the account's mailbox and returns its messages' keys
// as the journal has them: UIDLs with duplicates disambiguated, or
// synthetic keys for a server without UIDL.
func (ar *accountRun) serverUIDLs(ctx context.Context) ([]string, error) {
	if err := ar.prepareSession(ctx); err != nil {
		return nil, err
	}
	release, err := ar.r.hostSlot(ctx, ar.a)
	if err != nil {
		return nil, err
	}
	defer release()
	c, err := ar.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	listing, err := ar.list(ctx, c)
	if err != nil {
		return nil, err
	}
	if err := c.Quit(ctx); err != nil {
		// Nothing was changed on the server: a failed QUIT loses nothing.
		ar.r.opts.Logger.Warn("quit", "account", ar.a.Name, "error", err)
	}
	uidls := make([]string, len(listing))
	for i, m := range listing {
		uidls[i] = m.uidl
	}
	return uidls, nil
}

// specID returns the destination id the exporter for spec records in the
// journal, or spec itself when spec does not parse.
func specID(spec string, reg *location.Registry) string {
	if reg == nil {
		return spec
	}
	l, err := reg.Parse(spec)
	if err != nil {
		return spec
	}
	return l.ID()
}

// VerifyManifest opens the destination spec ("maildir:/srv/archive/alice")
// read-only, as Verify does (a file destination must exist and is never
// changed), and checks the manifest read from r against it (see
// verify.VerifyManifest): no journal, no POP3 server. a holds the
// credentials and CA file of an IMAP destination (ToPassword,
// ToOAuth2Token, CAFile, InsecureSkipVerify); nil means none. opts gives
// the IMAP options and Timeout; nil means the defaults. A destination
// that cannot be opened is an error.
func VerifyManifest(ctx context.Context, r io.Reader, spec string, a *config.Account, opts *VerifyOptions) (*verify.Result, error) {
	if opts == nil {
		opts = &VerifyOptions{}
	}
	if a == nil {
		a = &config.Account{}
	}
	o := opts.Options.withDefaults()
	e, err := openDestination(ctx, spec, a, &o, true)
	if err != nil {
		return nil, err
	}
	res, err := verify.VerifyManifest(ctx, r, e)
	if cerr := e.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// dropKind removes the findings of kind k from res, and their count.
func dropKind(res *verify.Result, k verify.Kind) {
	kept := res.Findings[:0]
	for _, f := range res.Findings {
		if f.Kind != k {
			kept = append(kept, f)
		}
	}
	res.Findings = kept
	delete(res.Counts, k)
}
