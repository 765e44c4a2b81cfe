package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/exporters/location"
	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/pop3"
)

// Reasons a listed message is not deleted, the keys of PurgeReport.Skipped.
const (
	// SkipNotVerified: the journal does not hold the message as verified,
	// or some copy of it was never read back (a copy made after the last
	// verification, a message that arrived after the last run).
	SkipNotVerified = "not verified"
	// SkipNotEverywhere: some destination configured now holds no recorded
	// copy of the message.
	SkipNotEverywhere = "not in every destination"
	// SkipDuplicateUIDL: the UIDL is listed more than once in this session,
	// or was at some earlier listing, so a UIDL does not tell which message
	// was verified.
	SkipDuplicateUIDL = "duplicate uidl"
	// SkipNoUIDL: the server has no UIDL; a key made from the headers and
	// size is not strong enough to delete by.
	SkipNoUIDL = "no uidl"
	// SkipSizeChanged: the size listed now differs from the size the
	// journal recorded.
	SkipSizeChanged = "size changed"
	// SkipTooRecent: first seen less than PurgeOptions.KeepDays days ago.
	SkipTooRecent = "too recent"
	// SkipNotOnServer: a message the journal holds as verified is no longer
	// listed by the server (deleted by someone else, or by an earlier purge
	// whose QUIT was never confirmed). It is counted, there is nothing to
	// delete.
	SkipNotOnServer = "not on server"
	// SkipAlreadyDeleted: the journal records the message as deleted (an
	// earlier QUIT answered +OK) but the server still lists it; see the
	// report's warning. It is not deleted again.
	SkipAlreadyDeleted = "already deleted"
	// SkipSuspect: the journal marks the message suspect (RETR delivered
	// a size LIST does not explain, so the copy may be incomplete); only
	// PurgeOptions.DeleteSuspect deletes it.
	SkipSuspect = "suspect"
	// SkipAdopted: the account adopted the message from another POP3
	// client's state (popmigrate journal import): that client fetched it,
	// popmigrate never stored a copy of it, so none was verified.
	SkipAdopted = "adopted from another client"
	// SkipUnconfirmed: popmigrate journal rebuild recorded the message's
	// copies by their header block and size (journal.MatchedByHeaders),
	// without comparing them byte for byte with the message on the
	// server. A verify proves only that the copies are still what the
	// rebuild read; "journal rebuild --confirm" compares them with RETR.
	SkipUnconfirmed = "rebuilt, not confirmed byte for byte"
)

// SkipReasons lists every key of PurgeReport.Skipped, in the order reports
// print them.
var SkipReasons = []string{
	SkipNotVerified, SkipNotEverywhere, SkipDuplicateUIDL, SkipNoUIDL,
	SkipSizeChanged, SkipTooRecent, SkipNotOnServer, SkipAlreadyDeleted, SkipSuspect, SkipAdopted, SkipUnconfirmed,
}

// PurgeOptions tune Purge. A nil *PurgeOptions means the zero value:
// delete, no age limit, the system clock.
type PurgeOptions struct {
	// DryRun plans and reports what would be deleted and sends no DELE:
	// the session ends with a QUIT that commits nothing, and the journal
	// is not written.
	DryRun bool
	// KeepDays keeps the messages the journal first saw less than
	// KeepDays days (of 24 hours) before Now. 0 means no age limit; a
	// negative value is refused.
	KeepDays int
	// Now is the clock KeepDays is measured with. Nil means time.Now.
	Now func() time.Time
	// DeleteSuspect deletes suspect messages too (see SkipSuspect), once
	// they pass every other check: the user accepts that their stored
	// copies may be incomplete.
	DeleteSuspect bool
}

// PurgeReport is the outcome of the purge of one account.
type PurgeReport struct {
	Account string `json:"account"`
	Source  string `json:"source"`
	// ServerMessages is how many messages the server listed in the purge
	// session (0 if the listing failed).
	ServerMessages int `json:"server_messages"`
	// Planned are the messages that passed every check, in listing order:
	// those DELE was sent for, or with DryRun those it would be sent for.
	Planned []PurgeItem `json:"planned"`
	// Deleted is how many messages the server confirmed deleting (its
	// QUIT answered +OK) and the journal now records as deleted. It is 0
	// with DryRun and whenever Error is set.
	Deleted int `json:"deleted"`
	// Skipped counts the listed messages that were not planned, by reason
	// (the Skip constants), plus the verified messages the server no
	// longer lists (SkipNotOnServer).
	Skipped map[string]int `json:"skipped,omitempty"`
	// Error is why the purge of the account failed. When it is set the
	// journal records nothing as deleted.
	Error string `json:"error,omitempty"`
	// Warnings are things that deserve a look but deleted nothing wrong.
	Warnings []string `json:"warnings,omitempty"`
}

// PurgeItem is one message to delete.
type PurgeItem struct {
	UIDL string `json:"uidl"`
	// ID is the message number in the purge session.
	ID int `json:"id"`
	// Size is the size the server listed in the purge session.
	Size int64 `json:"size"`
}

// Purge deletes from every account's server the messages the journal holds
// as verified in every destination of the account, following step 4 of
// the durability protocol. Per account it opens ONE POP3 session (connect,
// log in, UIDL + LIST), picks the messages that are, all at once:
//
//   - in state 'verified', every delivery of them verified (VerifiedAt set),
//     and with a delivery to every destination in a.To (by the destination
//     ids the pipeline records);
//   - keyed by a real UIDL (kind 'uidl', never 'dup' or 'synthetic') that is
//     listed exactly once in this session and never was listed twice;
//   - listed with the size the journal recorded;
//   - first seen at least KeepDays days ago;
//   - not marked suspect, unless DeleteSuspect;
//   - not recorded by journal rebuild on the strength of its header block
//     alone (journal.MatchedByHeaders): its copies were never compared
//     byte for byte with it;
//
// then sends DELE for each by its number in this session, and QUIT. Only
// when QUIT answers +OK (RFC 1939 UPDATE state) does the journal mark them
// deleted. A -ERR to a DELE is answered with RSET and QUIT, and a dropped
// or cancelled session is closed without QUIT: either way nothing is
// deleted and nothing is marked, and the report says why. Every listed
// message not deleted is counted in the report by reason.
//
// An account without destinations is refused: "verified in every
// destination" would hold for every message. Sessions that fail before any
// DELE with a retryable error are retried like Run's (opts.Attempts,
// opts.Backoff); once a DELE has been sent the account is never retried.
// Purge honours opts.Jobs, opts.PerHost, opts.Timeout, opts.Logger and
// opts.Debug; nil opts or popts mean the defaults.
//
// The reports are sorted by account. Purge returns an error only when the
// purge as a whole could not go on: invalid popts, a journal failure (the
// others accounts are then cancelled, so their sessions end without QUIT
// and delete nothing), or ctx cancelled.
func Purge(ctx context.Context, j *journal.Journal, accounts []*config.Account, opts *Options, popts *PurgeOptions) ([]*PurgeReport, error) {
	if opts == nil {
		opts = &Options{}
	}
	var po PurgeOptions
	if popts != nil {
		po = *popts
	}
	if po.KeepDays < 0 {
		return nil, fmt.Errorf("pipeline: purge: KeepDays %d is negative", po.KeepDays)
	}
	if po.Now == nil {
		po.Now = time.Now
	}
	o := opts.withDefaults()
	r := newRunner(o, j)
	return eachAccount(ctx, &o, accounts, func(ctx context.Context, a *config.Account) (*PurgeReport, error) {
		rep, err := r.purge(ctx, a, &po)
		o.Logger.Info(evDelete, "account", a.Name, "planned", len(rep.Planned), "deleted", rep.Deleted, "dry_run", po.DryRun, "error", rep.Error)
		o.Metrics.Deleted(rep.Deleted)
		return rep, err
	}, func(r *PurgeReport) string { return r.Account })
}

// purge purges one account. The error it returns is a journal failure;
// everything else is in the report.
func (r *runner) purge(ctx context.Context, a *config.Account, po *PurgeOptions) (*PurgeReport, error) {
	rep := &PurgeReport{Account: a.Name, Source: a.SourceURL(), Skipped: map[string]int{}}
	err := r.purgeAccount(ctx, a, po, rep)
	if err == nil {
		return rep, nil
	}
	rep.Error = explain(err)
	rep.Deleted = 0
	var jerr *journalError
	if errors.As(err, &jerr) {
		return rep, fmt.Errorf("pipeline: purge of account %q: %w", a.Name, err)
	}
	return rep, nil
}

// purgeAccount runs purge sessions for a until one ends, retrying those
// that failed with a retryable error before any DELE was sent.
func (r *runner) purgeAccount(ctx context.Context, a *config.Account, po *PurgeOptions, rep *PurgeReport) error {
	ids, err := destinationIDs(a, r.opts.Destinations)
	if err != nil {
		return err
	}
	ctx, lease, err := r.takeLease(ctx, a.Name, r.opts.WaitForLease)
	if err != nil {
		return err
	}
	defer r.releaseLease(ctx, lease, nil)
	ar := &accountRun{r: r, a: a, rep: &AccountReport{Account: a.Name, Source: a.SourceURL()}, lease: lease.l}
	if err := ar.prepareSession(ctx); err != nil {
		return err
	}
	o := &r.opts
	for attempt := 1; ; attempt++ {
		*rep = PurgeReport{Account: rep.Account, Source: rep.Source, Skipped: map[string]int{}}
		s := &purgeSession{ar: ar, ids: ids, po: po, rep: rep}
		err := s.run(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || s.deleSent || !retryable(err) || attempt >= o.Attempts {
			if attempt > 1 {
				return fmt.Errorf("%w (after %d sessions)", err, attempt)
			}
			return err
		}
		d := backoff(o.Backoff, o.MaxBackoff, attempt)
		o.Logger.Info("retrying purge", "account", a.Name, "attempt", attempt+1, "in", d.Round(time.Millisecond), "error", err)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// destinationIDs returns the journal ids of a's destinations: the ids the
// exporters report in Properties().ID when the pipeline opens them
// ("maildir:" + absolute path, and so on), computed without opening
// anything. It refuses an account without destinations.
func destinationIDs(a *config.Account, reg *location.Registry) ([]string, error) {
	if len(a.To) == 0 {
		return nil, errors.New("no destination configured: purge deletes only what every destination of the account holds verified, so give the account's destinations (--to)")
	}
	if reg == nil {
		return nil, location.ErrNoRegistry
	}
	ids := make([]string, 0, len(a.To))
	for _, spec := range a.To {
		l, err := reg.Parse(spec)
		if err != nil {
			return nil, err
		}
		ids = append(ids, l.ID())
	}
	return ids, nil
}

// purgeSession is one POP3 session of a purge.
type purgeSession struct {
	ar  *accountRun
	ids []string // the account's destination ids
	po  *PurgeOptions
	rep *PurgeReport
	// deleSent is set once a DELE has been sent: from then on the session
	// is not retried.
	deleSent bool
	// adopted are the account's adopted UIDLs (see SkipAdopted).
	adopted map[string]bool
	// rebuilt says how journal rebuild matched the messages it recorded
	// (see SkipUnconfirmed).
	rebuilt map[string]string
}

// purgeEntry is one message of the purge session's listing.
type purgeEntry struct {
	id   int
	uidl string // "" when the server has no UIDL
	size int64
}

func (s *purgeSession) run(ctx context.Context) error {
	ar := s.ar
	r := ar.r
	release, err := r.hostSlot(ctx, ar.a)
	if err != nil {
		return err
	}
	defer release()
	c, err := ar.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	listing, noUIDL, err := purgeListing(ctx, c)
	if err != nil {
		return err
	}
	return s.purgeWith(ctx, c, listing, noUIDL)
}

// purgeWith plans the deletions from this session's listing and the
// journal, sends them and QUIT (or only QUIT when nothing is planned, or
// with DryRun).
func (s *purgeSession) purgeWith(ctx context.Context, c *pop3.Client, listing []purgeEntry, noUIDL bool) error {
	ar := s.ar
	r := ar.r
	// The journal is read after the listing, inside the session that holds
	// the mailbox lock: what is planned is what both say now.
	rows, err := r.j.Messages(ctx, ar.a.Name)
	if err != nil {
		return &journalError{err}
	}
	dels, err := r.j.Deliveries(ctx, ar.a.Name)
	if err != nil {
		return &journalError{err}
	}
	if s.adopted, err = r.j.Adopted(ctx, ar.a.Name); err != nil {
		return &journalError{err}
	}
	if s.rebuilt, err = r.j.Rebuilt(ctx, ar.a.Name); err != nil {
		return &journalError{err}
	}
	s.plan(listing, noUIDL, rows, dels)
	if s.po.DryRun || len(s.rep.Planned) == 0 {
		// No DELE was sent: this QUIT commits nothing.
		if err := c.Quit(ctx); err != nil {
			s.rep.Warnings = append(s.rep.Warnings, fmt.Sprintf("quit (nothing was marked for deletion): %v", err))
		}
		return nil
	}
	return s.delete(ctx, c)
}

// purgeListing returns the session's LIST, with each message's UIDL, and
// whether the server has no UIDL (a -ERR to UIDL that is not temporary).
func purgeListing(ctx context.Context, c *pop3.Client) ([]purgeEntry, bool, error) {
	sizes, uids, noUIDL, err := listUIDL(ctx, c)
	if err != nil {
		return nil, false, err
	}
	return purgeEntries(sizes, uids, noUIDL)
}

// purgeEntries pairs a session's LIST and UIDL listings by number.
func purgeEntries(sizes []pop3.MessageInfo, uids []pop3.UIDInfo, noUIDL bool) ([]purgeEntry, bool, error) {
	byID := make(map[int]string, len(uids))
	for _, u := range uids {
		byID[u.ID] = u.UID
	}
	out := make([]purgeEntry, 0, len(sizes))
	seen := make(map[int]bool, len(sizes))
	for _, m := range sizes {
		// DELE goes by number: a number listed twice would make it
		// ambiguous which message a DELE removes.
		if seen[m.ID] {
			return nil, false, fmt.Errorf("list: message number %d is listed twice", m.ID)
		}
		seen[m.ID] = true
		e := purgeEntry{id: m.ID, size: m.Size}
		if !noUIDL {
			u, ok := byID[m.ID]
			if !ok {
				return nil, false, fmt.Errorf("uidl: message %d is in LIST but not in UIDL", m.ID)
			}
			e.uidl = u
		}
		out = append(out, e)
	}
	return out, noUIDL, nil
}

// plan fills the report's Planned, Skipped, ServerMessages and Warnings
// from this session's listing and the journal.
func (s *purgeSession) plan(listing []purgeEntry, noUIDL bool, rows []journal.MessageRow, dels map[string]map[string]journal.Delivery) {
	rep := s.rep
	rep.ServerMessages = len(listing)
	byUIDL := make(map[string]*journal.MessageRow, len(rows))
	// everDuplicated holds the UIDLs some earlier listing repeated: the
	// journal keys the repeats "UIDL dupN". Even when only one is listed
	// now, the UIDL does not tell which of them was verified.
	everDuplicated := map[string]bool{}
	for i := range rows {
		m := &rows[i]
		byUIDL[m.UIDL] = m
		if m.Kind == journal.KindDup {
			base, _, _ := strings.Cut(m.UIDL, " ")
			everDuplicated[base] = true
		}
	}
	count := make(map[string]int, len(listing))
	for _, e := range listing {
		count[e.uidl]++
	}
	var cutoff time.Time
	if s.po.KeepDays > 0 {
		cutoff = s.po.Now().Add(-time.Duration(s.po.KeepDays) * 24 * time.Hour)
	}
	stillListed := 0
	for _, e := range listing {
		reason := s.check(e, noUIDL, count[e.uidl], byUIDL[e.uidl], everDuplicated[e.uidl], dels[e.uidl], cutoff)
		if reason == SkipNotVerified && s.adopted[e.uidl] {
			reason = SkipAdopted // why it was never verified
		}
		if reason == "" && s.rebuilt[e.uidl] == journal.MatchedByHeaders {
			reason = SkipUnconfirmed
		}
		if reason == "" {
			rep.Planned = append(rep.Planned, PurgeItem{UIDL: e.uidl, ID: e.id, Size: e.size})
			continue
		}
		rep.Skipped[reason]++
		if reason == SkipAlreadyDeleted {
			stillListed++
		}
	}
	if !noUIDL {
		for i := range rows {
			m := &rows[i]
			if m.Kind == journal.KindUIDL && m.State == journal.StateVerified && count[m.UIDL] == 0 {
				rep.Skipped[SkipNotOnServer]++
			}
		}
	}
	if stillListed > 0 {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf(
			"server still lists %d messages it acknowledged deleting (its QUIT answered +OK): it may not really delete; check the server", stillListed))
	}
}

// check returns why e must not be deleted, or "" when it may be.
func (s *purgeSession) check(e purgeEntry, noUIDL bool, listed int, m *journal.MessageRow, everDup bool,
	dels map[string]journal.Delivery, cutoff time.Time) string {
	switch {
	case noUIDL:
		return SkipNoUIDL
	case listed > 1:
		return SkipDuplicateUIDL
	case m == nil:
		return SkipNotVerified // never stored: it arrived after the last run
	case m.State == journal.StateDeleted:
		return SkipAlreadyDeleted
	case m.Kind == journal.KindSynthetic:
		return SkipNoUIDL
	case m.Kind != journal.KindUIDL, everDup:
		return SkipDuplicateUIDL
	case m.State != journal.StateVerified:
		return SkipNotVerified
	case m.Suspect != "" && !s.po.DeleteSuspect:
		return SkipSuspect
	}
	for _, id := range s.ids {
		if _, ok := dels[id]; !ok {
			return SkipNotEverywhere
		}
	}
	for _, d := range dels {
		if d.VerifiedAt.IsZero() {
			return SkipNotVerified
		}
	}
	if e.size != m.ListedSize {
		return SkipSizeChanged
	}
	if !cutoff.IsZero() && m.FirstSeen.After(cutoff) {
		return SkipTooRecent
	}
	return ""
}

// delete sends DELE for every planned message and QUIT, and marks them
// deleted in the journal only when QUIT answered +OK.
func (s *purgeSession) delete(ctx context.Context, c *pop3.Client) error {
	planned := s.rep.Planned
	// The last word before the first DELE: is the account still ours?
	// A process paused past its lease's expiry must not delete what
	// another one now works on.
	if l := s.ar.lease; l != nil {
		if err := s.ar.r.j.RenewLease(ctx, l); err != nil {
			c.Close()
			if errors.Is(err, journal.ErrLeaseLost) {
				return fmt.Errorf("%w; nothing was deleted", leaseErr(err))
			}
			return &journalError{err}
		}
	}
	for _, it := range planned {
		if err := ctx.Err(); err != nil {
			c.Close()
			return fmt.Errorf("purge interrupted before QUIT; the session was closed without it, so nothing was deleted: %w", err)
		}
		s.deleSent = true
		err := c.Dele(ctx, it.ID)
		if err == nil {
			continue
		}
		var perr *pop3.Error
		if !errors.As(err, &perr) {
			c.Close()
			return fmt.Errorf("dele %d (uidl %q): %w; the session ended without QUIT, so nothing was deleted", it.ID, it.UIDL, err)
		}
		// The session is still usable: unmark everything, then leave.
		if rerr := c.Rset(ctx); rerr != nil {
			c.Close()
			return fmt.Errorf("dele %d (uidl %q): %w; RSET failed too (%v), so the session was closed without QUIT and nothing was deleted",
				it.ID, it.UIDL, err, rerr)
		}
		if qerr := c.Quit(ctx); qerr != nil {
			s.rep.Warnings = append(s.rep.Warnings, fmt.Sprintf("quit after RSET: %v", qerr))
		}
		return fmt.Errorf("dele %d (uidl %q): %w; every deletion mark was reset, nothing was deleted", it.ID, it.UIDL, err)
	}
	if err := ctx.Err(); err != nil {
		c.Close()
		return fmt.Errorf("purge interrupted before QUIT; the session was closed without it, so nothing was deleted: %w", err)
	}
	// From here on the answer to QUIT decides what the journal records:
	// wait for it even if ctx is cancelled meanwhile (the client's timeout
	// still bounds the wait), so that an interrupt cannot leave deletions
	// the server made unrecorded.
	if err := c.Quit(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("quit after %d DELE: %w; the server did not confirm the deletions, so the journal records none of them "+
			"(a later purge counts those the server did delete as %q)", len(planned), err, SkipNotOnServer)
	}
	uidls := make([]string, len(planned))
	for i, it := range planned {
		uidls[i] = it.UIDL
	}
	if err := s.ar.r.j.MarkDeleted(context.WithoutCancel(ctx), s.ar.a.Name, uidls); err != nil {
		return &journalError{fmt.Errorf("the server deleted %d messages (QUIT answered +OK) but recording it failed: %w", len(planned), err)}
	}
	s.rep.Deleted = len(planned)
	return nil
}
