package pipeline

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"time"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/location"
	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/pop3"
)

// RebuildOptions tune Rebuild. A nil *RebuildOptions means the zero value.
type RebuildOptions struct {
	// DryRun matches and reports, and writes nothing to the journal (no
	// listing, no lease, no message). The journal may be opened
	// read-only.
	DryRun bool
	// Confirm downloads (RETR) every message that would otherwise be
	// recorded on the strength of its header block and size alone, and
	// every message an earlier rebuild recorded so
	// (journal.MatchedByHeaders), and compares its sha256 with the
	// copies': a copy that differs is not recorded (or, recorded before,
	// is forgotten, so that the next run stores the message again). Every
	// message it leaves recorded is then matched byte for byte, and purge
	// may delete it once verified. Nothing is written to a destination.
	Confirm bool
}

// RebuildReport is the outcome of the rebuild of one account's journal.
type RebuildReport struct {
	Account string `json:"account"`
	Source  string `json:"source"`
	// Destinations are the ids of the account's destinations, in the
	// order given.
	Destinations []string `json:"destinations"`
	// ServerMessages is how many messages the server listed.
	ServerMessages int `json:"server_messages"`
	// Matched counts the messages of the listing of which the rebuild
	// recorded (with DryRun: would record) a copy in some destination,
	// by the weakest match of their copies: ByKey + ByContent +
	// ByHeaders. Complete counts those of them that every destination
	// now holds.
	Matched   int `json:"matched"`
	ByKey     int `json:"by_key"`
	ByContent int `json:"by_content"`
	ByHeaders int `json:"by_headers"`
	Complete  int `json:"complete"`
	// Retrieved counts the messages downloaded (RETR, nothing written
	// anywhere) to settle a match: Ambiguous of them because several
	// messages or copies shared one header block, the others because
	// the server has no TOP or Confirm asked for it.
	Retrieved int `json:"retrieved"`
	Ambiguous int `json:"ambiguous"`
	// Confirmed counts the messages an earlier rebuild recorded by their
	// header block that Confirm compared byte for byte now; Forgotten
	// counts their copies that differed, whose records were dropped.
	Confirmed int `json:"confirmed,omitempty"`
	Forgotten int `json:"forgotten,omitempty"`
	// AlreadyRecorded counts the messages the journal already recorded
	// in every destination; Adopted those the account adopted from
	// another POP3 client (never matched: popmigrate stores no copy of
	// them).
	AlreadyRecorded int `json:"already_recorded"`
	Adopted         int `json:"adopted,omitempty"`
	// Missing counts the messages some destination does not hold: the
	// next run downloads them and stores them there.
	Missing int `json:"missing"`
	// Dests is what each destination held and what of it matched.
	Dests []RebuildDest `json:"destination_counts"`
	// Error is why the rebuild of the account failed. Matches are
	// recorded only after the POP3 session ended, in batches: a failure
	// before then records none, a journal failure after may leave the
	// first batches recorded. Either way a rebuild run again completes
	// it, and records nothing twice.
	Error string `json:"error,omitempty"`
	// Warnings are things that deserve a look but recorded nothing wrong.
	Warnings []string `json:"warnings,omitempty"`
}

// RebuildDest is what one destination of an account held.
type RebuildDest struct {
	ID string `json:"id"`
	// Held counts the copies the destination holds for the account that
	// the journal did not record before; Matched those of them the
	// rebuild recorded; Unmatched those that match no message the server
	// lists (mail the server no longer has, a second copy, a message
	// put there by another program): they are left alone.
	Held      int `json:"held"`
	Matched   int `json:"matched"`
	Unmatched int `json:"unmatched"`
	// Missing counts the listed messages this destination does not hold.
	Missing int `json:"missing"`
}

// Rebuild rebuilds the journal of each account from what its destinations
// already hold, so that the next run downloads and stores only what is
// missing: after a lost journal, an IMAP folder (which cannot tell
// popmigrate's key) then receives nothing a second time. Per account it
// opens every destination read-only, opens ONE POP3 session (connect, log
// in, LIST + UIDL, keyed as run keys the messages), and matches:
//
//   - a copy whose name or index carries a listed message's key (Maildir,
//     mbox, eml: exporters.Lister) is that message's: popmigrate wrote it
//     from that message's RETR (journal.MatchedByKey);
//   - a copy of a destination that cannot tell keys (an IMAP folder:
//     exporters.Surveyor) is matched by the HeaderSum of its header block
//     against that of the message's TOP n 0 (pipelined), then read back
//     whole: it matches a message whose sha256 is known (from a copy
//     matched by key, or from the journal) only with that sha256
//     (journal.MatchedByContent); otherwise, when one listed message and
//     one copy share the header block and the copy's size fits the LIST
//     size (verify's rule: every LF of the copy may have been a CRLF), by
//     its header block and size (journal.MatchedByHeaders, or with
//     RebuildOptions.Confirm, after a RETR, by content);
//   - where several listed messages or several copies share a header
//     block, or the server has no TOP, the messages are downloaded (RETR,
//     pipelined) and matched by sha256; each copy matches one message at
//     most.
//
// Every match is recorded as a delivery with the copy's Ref and sha256,
// unverified: purge and --delete delete nothing before a verify reads the
// copies back, and never a message matched by header block alone until a
// rebuild with Confirm compared it. A copy that matches nothing is left
// alone and counted. Messages the journal already records in a
// destination, and adopted ones, are left as they are. The listing and
// the account's destinations are recorded as run records them; the
// writes of an account are fenced by its lease (taken as run takes it),
// in batches, and none is made with DryRun.
//
// Rebuild honours opts.Jobs, opts.PerHost, opts.Timeout, opts.Window,
// opts.MaxMessageSize, opts.Attempts (sessions on temporary errors),
// opts.WaitForLease, opts.Destinations, opts.Logger and opts.Debug; nil
// opts or ropts mean the defaults. The reports are sorted by account.
// Rebuild returns an error only for a journal failure or the end of ctx;
// an account that failed otherwise has its Error set.
func Rebuild(ctx context.Context, j *journal.Journal, accounts []*config.Account, opts *Options, ropts *RebuildOptions) ([]*RebuildReport, error) {
	if opts == nil {
		opts = &Options{}
	}
	var ro RebuildOptions
	if ropts != nil {
		ro = *ropts
	}
	o := opts.withDefaults()
	r := newRunner(o, j)
	return eachAccount(ctx, &o, accounts, func(ctx context.Context, a *config.Account) (*RebuildReport, error) {
		rep, err := r.rebuild(ctx, a, &ro)
		o.Logger.Info("rebuild", "account", a.Name, "matched", rep.Matched, "retrieved", rep.Retrieved,
			"missing", rep.Missing, "dry_run", ro.DryRun, "error", rep.Error)
		return rep, err
	}, func(r *RebuildReport) string { return r.Account })
}

// rebuild rebuilds one account, retrying its session on temporary errors.
// The error it returns is a journal failure; everything else is in the
// report.
func (r *runner) rebuild(ctx context.Context, a *config.Account, ro *RebuildOptions) (*RebuildReport, error) {
	rep := &RebuildReport{Account: a.Name, Source: a.SourceURL()}
	err := r.rebuildAccount(ctx, a, ro, rep)
	if err == nil {
		return rep, nil
	}
	rep.Error = explain(err)
	var jerr *journalError
	if errors.As(err, &jerr) {
		return rep, fmt.Errorf("pipeline: rebuild of account %q: %w", a.Name, err)
	}
	if ctx.Err() != nil {
		return rep, ctx.Err()
	}
	return rep, nil
}

func (r *runner) rebuildAccount(ctx context.Context, a *config.Account, ro *RebuildOptions, rep *RebuildReport) error {
	if len(a.To) == 0 {
		return errors.New("no destination configured: give the destinations the account was run with (--to)")
	}
	ar := &accountRun{r: r, a: a, rep: &AccountReport{Account: a.Name, Source: a.SourceURL()}}
	if !ro.DryRun {
		lctx, lease, err := r.takeLease(ctx, a.Name, r.opts.WaitForLease)
		if err != nil {
			return err
		}
		defer r.releaseLease(ctx, lease, nil)
		ctx, ar.lease, ar.held = lctx, lease.l, lease
	}
	if err := ar.prepareSession(ctx); err != nil {
		return err
	}
	dests, err := r.rebuildDests(ctx, a, rep)
	defer func() {
		for _, d := range dests {
			if d.e != nil {
				d.e.Close()
			}
		}
	}()
	if err != nil {
		return err
	}
	o := &r.opts
	opened := slices.Clone(rep.Warnings)
	for attempt := 1; ; attempt++ {
		*rep = RebuildReport{Account: rep.Account, Source: rep.Source, Destinations: rep.Destinations, Warnings: slices.Clone(opened)}
		for _, d := range dests {
			rep.Dests = append(rep.Dests, RebuildDest{ID: d.id})
		}
		err := ar.rebuildSession(ctx, ro, dests, rep)
		if err == nil || ctx.Err() != nil || !retryable(err) || attempt >= o.Attempts {
			if err != nil && attempt > 1 {
				return fmt.Errorf("%w (after %d sessions)", err, attempt)
			}
			return err
		}
		for _, d := range dests {
			d.reset()
		}
		dly := backoff(o.Backoff, o.MaxBackoff, attempt)
		o.Logger.Info("retrying rebuild", "account", a.Name, "attempt", attempt+1, "error", err)
		if err := sleepCtx(ctx, dly); err != nil {
			return err
		}
	}
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// rebuildDest is one destination of an account during a rebuild.
type rebuildDest struct {
	id   string
	spec string
	e    exporters.Exporter // nil: the destination does not exist yet (it holds nothing)
	// stats caches the copies read back, by Ref.
	stats map[string]copyRead
	// claimed are the Refs matched in this rebuild.
	claimed map[string]bool
}

func (d *rebuildDest) reset() {
	d.claimed = map[string]bool{}
}

// copyRead is a copy read back whole.
type copyRead struct {
	sum string // canonical sha256
	n   int64  // bytes
	lfs int64  // LFs among them
	err error  // the copy could not be read
}

// fits reports whether the copy can be the canonical form of a message
// LIST counted as listed bytes (see verify's sizeFits).
//
// QUIRK: Dovecot's POP3 ends a message whose file lacks a final line end
// with one, and counts it in RETR but not in LIST: two bytes more than
// listed. A copy of what RETR delivered fits listed+2 as well.
func (c copyRead) fits(listed int64) bool {
	in := func(wire int64) bool { return c.n <= wire && wire <= c.n+c.lfs }
	return in(listed) || in(listed+2)
}

// rebuildDests opens a's destinations read-only, as verify does. One
// that does not exist holds nothing.
func (r *runner) rebuildDests(ctx context.Context, a *config.Account, rep *RebuildReport) ([]*rebuildDest, error) {
	var out []*rebuildDest
	if r.opts.Destinations == nil {
		return nil, location.ErrNoRegistry
	}
	for _, spec := range a.To {
		l, err := r.opts.Destinations.Parse(spec)
		if err != nil {
			return out, err
		}
		d := &rebuildDest{id: l.ID(), spec: spec, stats: map[string]copyRead{}, claimed: map[string]bool{}}
		out = append(out, d)
		rep.Destinations = append(rep.Destinations, d.id)
		e, err := openDestination(ctx, spec, a, &r.opts, true)
		switch {
		case err == nil:
			d.e = e
		case errors.Is(err, fs.ErrNotExist) || errors.Is(err, exporters.ErrNotFound):
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("destination %s does not exist: it holds nothing yet", d.id))
		default:
			return out, fmt.Errorf("destination %s: open to read what it holds: %w", d.id, err)
		}
		_, lists := e.(exporters.Lister)
		_, surveys := e.(exporters.Surveyor)
		_, opens := e.(exporters.Opener)
		if d.e != nil && (!opens || !lists && !surveys) {
			return out, fmt.Errorf("destination %s (%s) cannot list and read back what it holds, so nothing it holds can be matched", d.id, l.Kind())
		}
	}
	return out, nil
}

// rebuildMsg is one listed message during a rebuild.
type rebuildMsg struct {
	listedMsg
	// need[i]: destination i records no copy of the message yet.
	need []bool
	// headerSum is the HeaderSum of its TOP n 0 or RETR; "" when unknown.
	headerSum string
	// sum is the message's sha256 when known: from its RETR (retrieved),
	// from a copy matched by key, or from the journal. received is the
	// received size RETR counted, or else a copy's canonical size plus
	// its LFs (what RETR delivers on a CRLF wire).
	sum       string
	retrieved bool
	received  int64
	// wantRetr: the matching needs the message's bytes.
	wantRetr  bool
	ambiguous bool
	// found[i] is the copy of destination i matched in this rebuild.
	found []*foundCopy
	// recorded is the journal's row (nil: none); rebuiltBy the match an
	// earlier rebuild recorded for it.
	recorded  *journal.MessageRow
	rebuiltBy string
}

// foundCopy is a copy matched to a message.
type foundCopy struct {
	ref string
	cr  copyRead
	by  string // journal.MatchedBy*
}

// rebuildSession is one POP3 session of a rebuild: list, match, record.
func (ar *accountRun) rebuildSession(ctx context.Context, ro *RebuildOptions, dests []*rebuildDest, rep *RebuildReport) error {
	r := ar.r
	name := ar.a.Name
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
	listing, err := ar.list(ctx, c)
	if err != nil {
		return err
	}
	rep.ServerMessages = len(listing)
	if !ro.DryRun {
		if err := r.j.RecordListing(ctx, name, rep.Source, journalListing(listing)); err != nil {
			return &journalError{err}
		}
		ads := make([]journal.AccountDestination, len(dests))
		for i, d := range dests {
			ads[i] = journal.AccountDestination{ID: d.id, Spec: d.spec}
		}
		if err := r.j.SaveDestinations(ctx, name, rep.Source, ads); err != nil {
			return &journalError{err}
		}
	}
	have, err := r.j.Deliveries(ctx, name)
	if err != nil {
		return &journalError{err}
	}
	rows, err := r.j.Messages(ctx, name)
	if err != nil {
		return &journalError{err}
	}
	adopted, err := r.j.Adopted(ctx, name)
	if err != nil {
		return &journalError{err}
	}
	rebuilt, err := r.j.Rebuilt(ctx, name)
	if err != nil {
		return &journalError{err}
	}
	byUIDL := make(map[string]*journal.MessageRow, len(rows))
	for i := range rows {
		byUIDL[rows[i].UIDL] = &rows[i]
	}

	msgs := make([]*rebuildMsg, 0, len(listing))
	byKey := make(map[string]*rebuildMsg, len(listing))
	var confirm []*rebuildMsg // recorded by headers before: RETR with Confirm
	for _, l := range listing {
		if adopted[l.uidl] {
			rep.Adopted++
			continue
		}
		m := &rebuildMsg{listedMsg: l, need: make([]bool, len(dests)), found: make([]*foundCopy, len(dests)),
			recorded: byUIDL[l.uidl], rebuiltBy: rebuilt[l.uidl]}
		needs := false
		for i, d := range dests {
			if _, ok := have[l.uidl][d.id]; !ok {
				m.need[i], needs = true, true
			}
		}
		if row := m.recorded; row != nil && row.SHA256 != "" && m.rebuiltBy != journal.MatchedByHeaders {
			m.sum = row.SHA256 // stored by a run, or confirmed: its bytes are known
		}
		if ro.Confirm && m.rebuiltBy == journal.MatchedByHeaders {
			m.wantRetr = true
			confirm = append(confirm, m)
		}
		if !needs {
			rep.AlreadyRecorded++
		}
		msgs = append(msgs, m)
		byKey[exporters.MessageKey(name, l.uidl)] = m
	}
	recordedRefs := make([]map[string]bool, len(dests))
	for i, d := range dests {
		recordedRefs[i] = map[string]bool{}
		for _, byDest := range have {
			if dl, ok := byDest[d.id]; ok {
				recordedRefs[i][dl.Ref] = true
			}
		}
	}

	// Copies that carry a key are matched by it.
	surveyed := make([][]exporters.Surveyed, len(dests))
	for i, d := range dests {
		if d.e == nil {
			continue
		}
		if s, ok := d.e.(exporters.Surveyor); ok {
			all, err := s.Survey(ctx, name)
			if err != nil {
				return &destError{dest: d.id, err: err}
			}
			for _, s := range all {
				if !recordedRefs[i][s.Ref] {
					surveyed[i] = append(surveyed[i], s)
				}
			}
			rep.dest(d.id).Held = len(surveyed[i])
			continue
		}
		listed, err := d.e.(exporters.Lister).List(ctx, name)
		if err != nil {
			return &destError{dest: d.id, err: err}
		}
		rd := rep.dest(d.id)
		for _, l := range listed {
			if recordedRefs[i][l.Ref] {
				continue
			}
			rd.Held++
			m := byKey[l.Key]
			if l.Key == "" || m == nil || !m.need[i] || m.found[i] != nil {
				rd.Unmatched++
				continue
			}
			cr := d.read(ctx, l.Ref)
			if err := ctx.Err(); err != nil {
				return err
			}
			if cr.err != nil {
				rep.Warnings = append(rep.Warnings, fmt.Sprintf("%s: copy %s of uidl %q cannot be read (%v): not recorded; the next run finds or stores it", d.id, l.Ref, m.uidl, cr.err))
				rd.Unmatched++
				continue
			}
			m.found[i] = &foundCopy{ref: l.Ref, cr: cr, by: journal.MatchedByKey}
			if m.sum == "" {
				m.sum, m.received = cr.sum, cr.n+cr.lfs
			}
		}
	}

	// The header block of every message a surveyed destination lacks.
	var tops []*rebuildMsg
	for _, m := range msgs {
		for i := range dests {
			if m.need[i] && m.found[i] == nil && len(surveyed[i]) > 0 {
				tops = append(tops, m)
				break
			}
		}
	}
	if err := ar.topAll(ctx, c, tops); err != nil {
		return err
	}
	// Match, download what the matching needs the bytes of (ambiguous
	// header blocks, no TOP, Confirm), match again with them. Every
	// round downloads messages not downloaded before, so it ends.
	for {
		for i, d := range dests {
			if len(surveyed[i]) > 0 {
				if err := d.match(ctx, i, msgs, surveyed[i], ro.Confirm); err != nil {
					return err
				}
			}
		}
		n, err := ar.retrAll(ctx, c, msgs, rep)
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
	}
	if err := c.Quit(ctx); err != nil {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("quit (nothing was deleted): %v", err))
	}

	return ar.recordRebuild(ctx, ro, dests, msgs, confirm, have, surveyed, rep)
}

// dest returns the report's counts of destination id.
func (rep *RebuildReport) dest(id string) *RebuildDest {
	for i := range rep.Dests {
		if rep.Dests[i].ID == id {
			return &rep.Dests[i]
		}
	}
	rep.Dests = append(rep.Dests, RebuildDest{ID: id})
	return &rep.Dests[len(rep.Dests)-1]
}

// read reads the copy at ref back whole, once per rebuild.
func (d *rebuildDest) read(ctx context.Context, ref string) copyRead {
	if cr, ok := d.stats[ref]; ok {
		return cr
	}
	var cr copyRead
	rc, err := d.e.(exporters.Opener).Open(ctx, ref)
	if err != nil {
		cr.err = err
	} else {
		h := sha256.New()
		lc := &lfCounter{w: h}
		cr.n, cr.err = copyBuffer(lc, rc)
		cr.lfs = lc.lfs
		if err := rc.Close(); cr.err == nil {
			cr.err = err
		}
		cr.sum = hexSum(h)
	}
	if ctx.Err() == nil {
		d.stats[ref] = cr
	}
	return cr
}

// lfCounter counts the LF bytes written through it.
type lfCounter struct {
	w   io.Writer
	lfs int64
}

func (c *lfCounter) Write(p []byte) (int, error) {
	for _, b := range p {
		if b == '\n' {
			c.lfs++
		}
	}
	return c.w.Write(p)
}

// match matches the surveyed copies of destination i with the messages
// that lack one there, by header block; a message whose bytes the
// matching needs gets wantRetr. Messages whose sha256 is known match only
// a copy with that sha256; the others, one message and one fitting copy
// per header block, by header block and size (unless confirm). It reads
// every copy that shares a header block with such a message back whole.
func (d *rebuildDest) match(ctx context.Context, i int, msgs []*rebuildMsg, copies []exporters.Surveyed, confirm bool) error {
	byHeader := map[string][]*rebuildMsg{}
	for _, m := range msgs {
		if m.need[i] && m.headerSum != "" && (m.found[i] == nil || m.found[i].by == journal.MatchedByHeaders) {
			byHeader[m.headerSum] = append(byHeader[m.headerSum], m)
		}
	}
	copiesBy := map[string][]string{}
	for _, s := range copies {
		if len(byHeader[s.HeaderSHA256]) > 0 {
			copiesBy[s.HeaderSHA256] = append(copiesBy[s.HeaderSHA256], s.Ref)
		}
	}
	for h, ms := range byHeader {
		refs := copiesBy[h]
		if len(refs) == 0 {
			continue
		}
		slices.Sort(refs)
		// The copies are read back whole: the sha256 recorded is the
		// copy's, and the size rule needs its exact size.
		var readable []string
		for _, ref := range refs {
			if d.read(ctx, ref).err == nil {
				readable = append(readable, ref)
			}
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		// A tentative match by header block is decided again with the
		// bytes in hand.
		for _, m := range ms {
			if f := m.found[i]; f != nil {
				delete(d.claimed, f.ref)
				m.found[i] = nil
			}
		}
		// Messages whose bytes are known first, in listing order.
		for _, m := range ms {
			if m.sum == "" {
				continue
			}
			for _, ref := range readable {
				if cr := d.stats[ref]; !d.claimed[ref] && cr.sum == m.sum {
					d.claimed[ref] = true
					m.found[i] = &foundCopy{ref: ref, cr: cr, by: journal.MatchedByContent}
					break
				}
			}
		}
		var unknown []*rebuildMsg
		for _, m := range ms {
			if m.sum == "" {
				unknown = append(unknown, m)
			}
		}
		if len(unknown) == 0 {
			continue
		}
		var free []string
		for _, ref := range readable {
			if !d.claimed[ref] {
				free = append(free, ref)
			}
		}
		if len(free) == 0 {
			continue // nothing left here for them: missing
		}
		if len(ms) == 1 && len(unknown) == 1 {
			m := unknown[0]
			var fit []string
			for _, ref := range free {
				if d.stats[ref].fits(m.size) {
					fit = append(fit, ref)
				}
			}
			switch {
			case len(fit) == 0:
				continue // not this message: missing here
			case len(fit) == 1 && !confirm:
				d.claimed[fit[0]] = true
				m.found[i] = &foundCopy{ref: fit[0], cr: d.stats[fit[0]], by: journal.MatchedByHeaders}
				continue
			case len(fit) > 1:
				m.ambiguous = true
			}
			m.wantRetr = true
			continue
		}
		for _, m := range unknown {
			m.wantRetr, m.ambiguous = true, true
		}
	}
	return nil
}

// topAll reads the header block of msgs with TOP n 0, pipelined. A
// message the server answers -ERR (no TOP) is downloaded whole instead.
func (ar *accountRun) topAll(ctx context.Context, c *pop3.Client, msgs []*rebuildMsg) error {
	if len(msgs) == 0 {
		return nil
	}
	ids := make([]int, len(msgs))
	byID := make(map[int]*rebuildMsg, len(msgs))
	for i, m := range msgs {
		ids[i] = m.id
		byID[m.id] = m
	}
	err := c.TopAll(ctx, ids, 0, ar.r.opts.Window, func(id int, b *pop3.Body, err error) error {
		m := byID[id]
		if err != nil {
			m.wantRetr = true // a per-message -ERR: no TOP
			return nil
		}
		sum, err := exporters.HeaderSum(b)
		if err != nil {
			return fmt.Errorf("top %d 0 (uidl %q): %w", id, m.uidl, err)
		}
		m.headerSum = sum
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading the header blocks (TOP n 0): %w", err)
	}
	return nil
}

// retrAll downloads the messages that want their bytes, pipelined, and
// returns how many: each gets its sha256, received size and header sum.
// Nothing is written anywhere.
func (ar *accountRun) retrAll(ctx context.Context, c *pop3.Client, msgs []*rebuildMsg, rep *RebuildReport) (int, error) {
	var ids []int
	byID := map[int]*rebuildMsg{}
	for _, m := range msgs {
		if m.wantRetr && !m.retrieved {
			ids = append(ids, m.id)
			byID[m.id] = m
		}
	}
	if len(ids) == 0 {
		return 0, nil
	}
	err := c.RetrAll(ctx, ids, ar.r.opts.Window, func(id int, b *pop3.Body, err error) error {
		m := byID[id]
		m.wantRetr = false
		if err != nil {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("uidl %q: RETR %d: %v: not matched; the next run downloads it", m.uidl, id, err))
			m.retrieved = true
			return nil
		}
		h := sha256.New()
		cw := exporters.NewCanonicalWriter(h)
		tee := io.TeeReader(b, cw)
		hs, err := exporters.HeaderSum(tee)
		if err == nil {
			_, err = copyBuffer(io.Discard, tee)
		}
		if err == nil {
			err = cw.Close()
		}
		if err != nil {
			return fmt.Errorf("retr %d (uidl %q): %w", id, m.uidl, err)
		}
		if m.sum != "" && m.sum != hexSum(h) {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("uidl %q: the server's message (sha256 %s) differs from the copy matched by its key (sha256 %s)", m.uidl, hexSum(h)[:12], m.sum[:12]))
		}
		m.sum, m.received, m.headerSum, m.retrieved = hexSum(h), b.WireBytes(), hs, true
		rep.Retrieved++
		if m.ambiguous {
			rep.Ambiguous++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("downloading messages to compare them: %w", err)
	}
	return len(ids), nil
}

// rebuildBatch is how many messages a rebuild records per transaction.
const rebuildBatch = 256

// recordRebuild counts the matches and records them, in batches fenced by
// the account's lease (nothing with DryRun).
func (ar *accountRun) recordRebuild(ctx context.Context, ro *RebuildOptions, dests []*rebuildDest, msgs []*rebuildMsg,
	confirm []*rebuildMsg, have map[string]map[string]journal.Delivery, surveyed [][]exporters.Surveyed, rep *RebuildReport) error {
	r := ar.r
	name := ar.a.Name
	var b journal.Batch
	b.Fence(ar.lease)
	flush := func(force bool) error {
		if ro.DryRun || b.Len() == 0 || (!force && b.Len() < rebuildBatch) {
			return nil
		}
		if err := r.j.Commit(ctx, &b); err != nil {
			if errors.Is(err, journal.ErrLeaseLost) {
				return leaseErr(err)
			}
			return &journalError{err}
		}
		b.Reset()
		return nil
	}
	strength := map[string]int{journal.MatchedByHeaders: 0, journal.MatchedByContent: 1, journal.MatchedByKey: 2}
	for _, m := range msgs {
		missing := false
		var ds []journal.Delivery
		var first copyRead
		by := journal.MatchedByKey
		for i, d := range dests {
			if !m.need[i] {
				continue
			}
			f := m.found[i]
			// A copy matched by its header block while the message's
			// bytes are known is one that did not match them.
			if f != nil && f.by == journal.MatchedByHeaders && m.sum != "" {
				f = nil
			}
			if f == nil {
				missing = true
				rep.dest(d.id).Missing++
				continue
			}
			rep.dest(d.id).Matched++
			if f.by == journal.MatchedByContent && m.sum != f.cr.sum {
				continue // cannot happen: matched by sha256
			}
			if len(ds) == 0 {
				first = f.cr
			}
			ds = append(ds, journal.Delivery{DestID: d.id, Ref: f.ref, SHA256: f.cr.sum})
			if strength[f.by] < strength[by] {
				by = f.by
			}
		}
		if missing {
			rep.Missing++
		}
		if len(ds) == 0 {
			continue
		}
		// Copies matched by header block on different destinations
		// that differ from each other cannot all be the message.
		sum := m.sum
		if sum == "" {
			sum = ds[0].SHA256
			for _, dl := range ds[1:] {
				if dl.SHA256 != sum {
					sum = ""
				}
			}
			if sum == "" {
				rep.Warnings = append(rep.Warnings, fmt.Sprintf("uidl %q: copies with its header block differ from each other; none is recorded (journal rebuild --confirm compares them with the server's)", m.uidl))
				if !missing {
					rep.Missing++
				}
				continue
			}
		}
		received := m.received
		if received == 0 {
			received = first.n + first.lfs // what RETR delivers on a CRLF wire
		}
		if m.rebuiltBy != "" && strength[m.rebuiltBy] < strength[by] && !m.retrieved {
			by = m.rebuiltBy // an earlier, weaker match of another copy stands
		}
		complete := !missing
		rep.Matched++
		switch by {
		case journal.MatchedByKey:
			rep.ByKey++
		case journal.MatchedByContent:
			rep.ByContent++
		default:
			rep.ByHeaders++
		}
		if complete {
			rep.Complete++
		}
		b.Stored(journal.StoredMessage{Account: name, UIDL: m.uidl, ReceivedSize: received, SHA256: sum, Deliveries: ds, Complete: complete})
		b.Rebuilt(name, m.uidl, by)
		if err := flush(false); err != nil {
			return err
		}
	}
	// Confirm: the messages an earlier rebuild recorded by their header
	// block, now compared with the server's bytes.
	for _, m := range confirm {
		if !m.retrieved || m.sum == "" {
			continue
		}
		for id, dl := range have[m.uidl] {
			if dl.SHA256 != m.sum {
				rep.Forgotten++
				rep.Warnings = append(rep.Warnings, fmt.Sprintf("uidl %q: the copy %s in %s (sha256 %s) is not the server's message (sha256 %s): its record is dropped and the next run stores the message there; the copy is left alone",
					m.uidl, dl.Ref, id, dl.SHA256[:12], m.sum[:12]))
				b.Lost(name, m.uidl, id, "journal rebuild --confirm: the copy recorded here by its header block differs from the server's message")
			}
		}
		rep.Confirmed++
		b.Rebuilt(name, m.uidl, journal.MatchedByContent)
		if err := flush(false); err != nil {
			return err
		}
	}
	for i, d := range dests {
		if len(surveyed[i]) == 0 {
			continue
		}
		rd := rep.dest(d.id)
		rd.Unmatched = rd.Held - rd.Matched
	}
	slices.SortFunc(rep.Dests, func(a, b RebuildDest) int {
		return cmp.Compare(slices.Index(rep.Destinations, a.ID), slices.Index(rep.Destinations, b.ID))
	})
	return flush(true)
}
