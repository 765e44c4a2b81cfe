package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/pop3"
	"github.com/popmigrate/popmigrate/verify"
)

// finishInSession ends a download session that went well with the verify
// and, when asked, the deletion, before its QUIT: one login per account for
// download, read-back and delete (what a LOGIN-DELAY server needs, and one
// round trip less for every other). The listing the session began with is
// the one the server still has: a POP3 maildrop does not change within a
// session (RFC 1939 section 8). The results are kept for the Report; a
// failed deletion is reported in its PurgeReport and does not fail the
// session (nothing is downloaded again for it). The error is a journal
// failure, or the end of ctx.
func (ar *accountRun) finishInSession(ctx context.Context, c *pop3.Client, listing []listedMsg) error {
	r := ar.r
	name := ar.a.Name
	uidls := make([]string, len(listing))
	for i, m := range listing {
		uidls[i] = m.uidl
	}
	// Reading every copy back may take longer than the server's
	// autologout timer (RFC 1939 section 3: at least 10 minutes): keep
	// the session alive meanwhile.
	stop := keepAlive(ctx, c, keepAliveEvery)
	res, err := r.verifyWith(ctx, ar.a, uidls, ar.began, ar.openForVerify())
	lost := stop()
	if err != nil {
		c.Close()
		return err
	}
	if lost != nil {
		ar.rep.verify = res
		return fmt.Errorf("the session ended while the copies were read back (NOOP: %w); nothing was deleted", lost)
	}
	ar.rep.verify = res
	r.opts.Logger.Info(evVerify, "account", name, "checked", res.Checked, "problems", res.Problems(), "error", res.Error)
	r.opts.Metrics.Verified(res.Counts[verify.Match])
	if r.opts.PurgeInSession == nil || res.Error != "" || Mismatches(res) > 0 {
		if err := c.Quit(ctx); err != nil {
			r.opts.Logger.Warn("quit", "account", name, "error", err)
		}
		return nil
	}
	prep := &PurgeReport{Account: name, Source: ar.rep.Source, Skipped: map[string]int{}}
	ar.rep.purge = prep
	s := &purgeSession{ar: ar, ids: ar.ids, po: r.opts.PurgeInSession, rep: prep}
	entries, err := purgeEntriesOf(listing, ar.rep.NoUIDL)
	if err == nil {
		err = s.purgeWith(ctx, c, entries, ar.rep.NoUIDL)
	}
	r.opts.Logger.Info(evDelete, "account", name, "planned", len(prep.Planned), "deleted", prep.Deleted, "dry_run", s.po.DryRun, "error", err)
	r.opts.Metrics.Deleted(prep.Deleted)
	if err != nil {
		c.Close()
		prep.Error, prep.Deleted = explain(err), 0
		var jerr *journalError
		if errors.As(err, &jerr) {
			return err
		}
	}
	return nil
}

// purgeEntriesOf turns a session's listing back into purge's entries: the
// server's UIDL as it was sent (a repeated one counts twice, so purge
// skips it; a synthetic key is no UIDL).
func purgeEntriesOf(listing []listedMsg, noUIDL bool) ([]purgeEntry, error) {
	out := make([]purgeEntry, 0, len(listing))
	seen := make(map[int]bool, len(listing))
	for _, m := range listing {
		if seen[m.id] {
			return nil, fmt.Errorf("list: message number %d is listed twice", m.id)
		}
		seen[m.id] = true
		e := purgeEntry{id: m.id, size: m.size}
		switch m.kind {
		case "uidl":
			e.uidl = m.uidl
		case "dup":
			e.uidl, _, _ = strings.Cut(m.uidl, " ")
		}
		out = append(out, e)
	}
	return out, nil
}

// Mismatches counts the findings of a verification that contradict the
// journal. A message on the server that is not stored everywhere
// (not-stored) is not one: the run reports it failed. An account with any
// is never deleted from.
func Mismatches(r *verify.Result) int {
	n := 0
	for _, f := range r.Findings {
		if f.Problem() && f.Kind != verify.NotStored {
			n++
		}
	}
	return n
}

// keepAliveEvery is how often a session that waits for the destinations
// sends NOOP: well within RFC 1939's 10-minute autologout.
const keepAliveEvery = 4 * time.Minute

// keepAlive sends NOOP on c every interval until stop is called, which
// returns the first NOOP error. c must not be used by anyone else until
// stop returns.
func keepAlive(ctx context.Context, c *pop3.Client, every time.Duration) (stop func() error) {
	done := make(chan struct{})
	result := make(chan error, 1)
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				result <- nil
				return
			case <-t.C:
				if err := c.Noop(ctx); err != nil {
					<-done
					result <- err
					return
				}
			}
		}
	}()
	return func() error {
		close(done)
		return <-result
	}
}

// reuseForVerify are the kinds of destination whose copies the session's
// verify reads back through the writer's own, open destination rather
// than a fresh, read-only one: an IMAP folder, whose contents are the
// server's whatever connection asks (a fresh view would cost a login,
// which for a small mailbox is most of what its verify costs the
// server). A file destination is read through a fresh view, which keeps
// no state of the writer's.
var reuseForVerify = map[string]bool{"imap": true}

// openForVerify returns, by destination id, the writer's open destinations
// of the kinds in reuseForVerify, unwrapped (the quarantine decorator only
// changes Put), for the session's verify.
func (ar *accountRun) openForVerify() map[string]exporters.Exporter {
	var out map[string]exporters.Exporter
	for i, d := range ar.dests {
		for u := unwrap(d); u != nil; u = unwrap(u) {
			d = u
		}
		if d != nil && reuseForVerify[d.Properties().Kind] {
			if out == nil {
				out = map[string]exporters.Exporter{}
			}
			out[ar.ids[i]] = d
		}
	}
	return out
}
