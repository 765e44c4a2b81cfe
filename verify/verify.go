package verify

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/journal"
)

// verifiedBatch is how many verified copies one journal transaction
// records.
const verifiedBatch = 256

// readBackWindow is how many copies Account hands a BatchOpener at most
// in one OpenAll.
const readBackWindow = 2048

// Account verifies the copies of account's messages in dests, a map from
// destination id to an open destination, which must implement
// exporters.Opener. Account does not close them.
//
// Every delivery the journal records for a destination in dests is read
// back through Opener.Open, or many at once through
// exporters.BatchOpener.OpenAll when the destination offers it (the same
// bytes, in fewer round trips), and hashed byte for byte; the copy matches when its sha256 is
// both the delivery's and the message's, and its length fits the
// received size (see the Size kind). Deliveries to destinations not in
// dests are not checked. A destination that implements exporters.Lister
// is listed, and each copy the journal does not record there is an Extra.
//
// With serverUIDLs, the journal's UIDLs of the messages the server lists
// now (disambiguated as the pipeline does), Account also adds a
// NotStored finding per listed message and destination without a
// delivery, and a GoneFromServer note per message with deliveries that
// the server no longer lists (unless the journal says popmigrate deleted
// it). A nil serverUIDLs skips the comparison with the server.
//
// Each matching copy is recorded as verified in the journal (in
// transactions of 256 copies, as the copies are read); a copy that does
// not match is never recorded as verified, and a verification recorded
// by an earlier run is left as it was.
//
// Account returns an error when the journal cannot be read or written,
// when a destination is not an Opener, or when ctx ends; what it found of
// a destination is otherwise in the Result, as findings.
func Account(ctx context.Context, j *journal.Journal, account string, dests map[string]exporters.Exporter, serverUIDLs []string) (*Result, error) {
	return AccountWith(ctx, j, account, dests, serverUIDLs, Options{})
}

// Options tune AccountWith.
type Options struct {
	// ReadSince, when not zero, is when the caller began reading copies
	// back itself: a delivery the journal records as verified at or
	// after ReadSince is counted as checked and matching without being
	// read again. The pipeline's writer reads each file copy back after
	// its Sync and records it verified in the batch that records it
	// stored (see journal.Batch.ReadBack); the verify of the same
	// session then reads only the others. A delivery verified earlier
	// than ReadSince, or never, is read back as always.
	ReadSince time.Time
	// Suspects adds, after the other findings, a Suspect note for every
	// message the journal marks suspect and has not deleted.
	Suspects bool
}

// AccountWith is Account with options.
func AccountWith(ctx context.Context, j *journal.Journal, account string, dests map[string]exporters.Exporter, serverUIDLs []string, opts Options) (*Result, error) {
	ids := make([]string, 0, len(dests))
	openers := make(map[string]exporters.Opener, len(dests))
	batchers := map[string]exporters.BatchOpener{}
	for id, d := range dests {
		o, ok := d.(exporters.Opener)
		if !ok {
			return nil, fmt.Errorf("verify: account %q: destination %s (%T) cannot read messages back", account, id, d)
		}
		ids = append(ids, id)
		openers[id] = o
		if b, ok := d.(exporters.BatchOpener); ok {
			batchers[id] = b
		}
	}
	sort.Strings(ids)
	msgs, err := j.Messages(ctx, account)
	if err != nil {
		return nil, fmt.Errorf("verify: account %q: %w", account, err)
	}
	dels, err := j.Deliveries(ctx, account)
	if err != nil {
		return nil, fmt.Errorf("verify: account %q: %w", account, err)
	}
	sort.Slice(msgs, func(a, b int) bool { return msgs[a].UIDL < msgs[b].UIDL })

	res := NewResult(account)
	c := newChecker(res)
	var batch journal.Batch
	flush := func() error {
		if err := j.Commit(ctx, &batch); err != nil {
			return fmt.Errorf("verify: account %q: record verified copies: %w", account, err)
		}
		batch.Reset()
		return nil
	}
	// The copies are taken in windows of readBackWindow: those in a
	// destination that reads many at once (a BatchOpener) are read
	// first, together; then every copy of the window is judged in order
	// (the others read as they come), so the findings and the journal's
	// records come in the same order whichever way a copy was read.
	window := make([]expected, 0, readBackWindow)
	judgeWindow := func() error {
		results := make([]*readResult, len(window))
		for id, b := range batchers {
			var refs []string
			var at []int
			for k, x := range window {
				if x.destID == id {
					refs, at = append(refs, x.ref), append(at, k)
				}
			}
			if len(refs) == 0 {
				continue
			}
			rr, err := readBatch(ctx, b, refs)
			if err != nil {
				return fmt.Errorf("verify: account %q: %w", account, err)
			}
			for n, k := range at {
				results[k] = &rr[n]
			}
		}
		for k, x := range window {
			var ok bool
			var err error
			if r := results[k]; r != nil {
				ok, err = c.judge(ctx, x, r.st, r.err)
			} else {
				ok, err = c.check(ctx, openers[x.destID], x)
			}
			if err != nil {
				return fmt.Errorf("verify: account %q: %w", account, err)
			}
			id := x.destID
			if !ok {
				// A copy that no longer matches loses any earlier
				// verification: purge must not trust it.
				if last := res.Findings; len(last) > 0 {
					f := last[len(last)-1]
					text := "verify: " + string(f.Kind) + " in " + id + ": " + f.Detail
					if f.Kind == Missing {
						// Forget the copy: the next run delivers
						// it again while the server has it.
						batch.Lost(account, x.uidl, id, text)
					} else {
						batch.Mismatch(account, x.uidl, id, text)
					}
				} else {
					batch.Mismatch(account, x.uidl, id, "verify: copy in "+id+" does not match")
				}
			} else {
				batch.Verified(account, x.uidl, id, time.Time{})
			}
			if batch.Len() >= verifiedBatch {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		window = window[:0]
		return nil
	}
	for _, m := range msgs {
		for _, id := range ids {
			d, ok := dels[m.UIDL][id]
			if !ok {
				continue
			}
			if !opts.ReadSince.IsZero() && !d.VerifiedAt.Before(opts.ReadSince) {
				res.Checked++
				res.Add(Finding{Kind: Match, UIDL: m.UIDL, DestID: id, Ref: d.Ref})
				continue
			}
			window = append(window, expected{
				uidl: m.UIDL, destID: id, ref: d.Ref,
				sum: d.SHA256, msgSum: m.SHA256, wire: m.ReceivedSize,
			})
			if len(window) == cap(window) {
				if err := judgeWindow(); err != nil {
					return nil, err
				}
			}
		}
	}
	if err := judgeWindow(); err != nil {
		return nil, err
	}
	if err := flush(); err != nil {
		return nil, err
	}

	// Extras: what each listable destination holds that the journal
	// does not record there.
	byKey := make(map[string]*journal.MessageRow, len(msgs))
	for i := range msgs {
		byKey[exporters.MessageKey(account, msgs[i].UIDL)] = &msgs[i]
	}
	for _, id := range ids {
		l, ok := dests[id].(exporters.Lister)
		if !ok {
			continue
		}
		expect := map[string]want{}
		for uidl, byDest := range dels {
			if d, ok := byDest[id]; ok {
				expect[exporters.MessageKey(account, uidl)] = want{uidl: uidl, ref: d.Ref}
			}
		}
		known := func(key string) (string, string) {
			m, ok := byKey[key]
			if !ok {
				return "", "no message known for this account has this key"
			}
			detail := fmt.Sprintf("the journal lists this message (state %s) but records no copy of it here: a run was interrupted between writing and recording it, and the next run records it", m.State)
			return m.UIDL, detail
		}
		if err := c.extras(ctx, l, account, id, expect, known); err != nil {
			return nil, fmt.Errorf("verify: account %q: %w", account, err)
		}
	}

	if serverUIDLs != nil {
		compareServer(res, msgs, dels, ids, serverUIDLs)
	}
	if opts.Suspects {
		for _, m := range msgs {
			if m.Suspect != "" && m.State != journal.StateDeleted {
				res.Add(Finding{Kind: Suspect, UIDL: m.UIDL, Detail: m.Suspect})
			}
		}
	}
	return res, nil
}

// compareServer adds the findings of the comparison of the journal with
// the server's listing.
func compareServer(res *Result, msgs []journal.MessageRow, dels map[string]map[string]journal.Delivery, ids []string, serverUIDLs []string) {
	listed := make(map[string]bool, len(serverUIDLs))
	for _, u := range serverUIDLs {
		listed[u] = true
	}
	byUIDL := make(map[string]*journal.MessageRow, len(msgs))
	for i := range msgs {
		m := &msgs[i]
		byUIDL[m.UIDL] = m
		if !listed[m.UIDL] && len(dels[m.UIDL]) > 0 && m.State != journal.StateDeleted {
			res.Add(Finding{Kind: GoneFromServer, UIDL: m.UIDL,
				Detail: fmt.Sprintf("stored %d times; the server no longer lists it", len(dels[m.UIDL]))})
		}
	}
	uidls := append([]string(nil), serverUIDLs...)
	sort.Strings(uidls)
	for i, u := range uidls {
		if i > 0 && uidls[i-1] == u {
			continue
		}
		for _, id := range ids {
			if _, ok := dels[u][id]; ok {
				continue
			}
			detail := "the journal has never seen it: run popmigrate run"
			if m := byUIDL[u]; m != nil {
				detail = "journal state " + m.State
				if m.Error != "" {
					detail += ": " + m.Error
				}
			}
			res.Add(Finding{Kind: NotStored, UIDL: u, DestID: id, Detail: detail})
		}
	}
}
