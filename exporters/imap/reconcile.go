package imap

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// uncertain is an APPEND that was sent completely but whose answer never
// came: the server may or may not hold the message.
type uncertain struct {
	key   string
	sha   string
	msgID string
	lo    imap.UID // the folder's UIDNEXT (lower bound) before the APPEND
}

// claimFound returns the Ref of a message with sha256 sum that the folder
// holds and no Put has returned yet, and marks it returned.
func (e *Exporter) claimFound(sum string) (string, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	uids := e.found[sum]
	if len(uids) == 0 {
		return "", false
	}
	uid := uids[0]
	if len(uids) == 1 {
		delete(e.found, sum)
	} else {
		e.found[sum] = uids[1:]
	}
	e.claimed = append(e.claimed, uid)
	return e.ref(uid), true
}

// addFound records that the folder holds a message with sha256 sum at uid
// that no Put has returned.
func (e *Exporter) addFoundLocked(sum string, uid imap.UID) {
	e.owned[uid] = true
	uids := append(e.found[sum], uid)
	slices.Sort(uids)
	e.found[sum] = uids
}

func (e *Exporter) addUncertain(u *uncertain) {
	e.mu.Lock()
	e.uncertain = append(e.uncertain, u)
	e.mu.Unlock()
}

// resolveUncertain looks up, on c, every APPEND whose answer was lost:
// the messages the folder holds become found (a later Put of the same
// message returns them), the others are forgotten. A caller waits while
// another one looks: until the lookup ends, a message it is about to
// send may be one the folder holds, not found yet.
func (e *Exporter) resolveUncertain(ctx context.Context, c *conn) error {
	e.resolving.Lock()
	defer e.resolving.Unlock()
	e.mu.Lock()
	list := e.uncertain
	e.uncertain = nil
	e.mu.Unlock()
	if len(list) > 0 {
		if err := e.settle(ctx, c); err != nil {
			e.mu.Lock()
			e.uncertain = append(e.uncertain, list...)
			e.mu.Unlock()
			return fmt.Errorf("look for message %s after a lost APPEND answer: %w", list[0].key, err)
		}
	}
	for i, u := range list {
		uid, err := e.find(ctx, c, u.sha, u.msgID, u.lo)
		if err != nil {
			e.mu.Lock()
			e.uncertain = append(e.uncertain, list[i:]...)
			e.mu.Unlock()
			return fmt.Errorf("look for message %s after a lost APPEND answer: %w", u.key, err)
		}
		if uid != 0 {
			e.mu.Lock()
			e.addFoundLocked(u.sha, uid)
			e.mu.Unlock()
		}
	}
	return nil
}

// settleQuiet and settleMax bound settle.
var (
	settleQuiet = time.Second
	settleMax   = 30 * time.Second
)

// settle waits, on c, until the folder's UIDNEXT stays the same for
// settleQuiet (at most settleMax): a server whose answer to an APPEND
// was lost (or whose client was killed, for Resume) may still be storing
// its messages when another session looks for them (measured: Dovecot,
// a group of 32 cut off right after its CRLF, made 0 to 31 of them
// visible to a search in the next moments), and a message looked for
// too early is sent again.
// UIDNEXT only grows, whatever else changes the folder. Past settleMax
// the lookup goes on with what it finds: a server still storing after
// that is one this cannot tell from a server that never will.
func (e *Exporter) settle(ctx context.Context, c *conn) error {
	deadline := time.Now().Add(settleMax)
	last, err := e.uidNextNow(ctx, c)
	if err != nil {
		return err
	}
	t := time.NewTimer(settleQuiet)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		next, err := e.uidNextNow(ctx, c)
		if err != nil {
			return err
		}
		if next == last || time.Now().After(deadline) {
			return nil
		}
		last = next
		t.Reset(settleQuiet)
	}
}

// find looks, on c, for a message with sha256 sum at or above UID lo that
// no Put has returned, narrowing the search by msgID when not empty. It
// returns 0 when there is none, and claims (owns) the UID it returns.
func (e *Exporter) find(ctx context.Context, c *conn, sum, msgID string, lo imap.UID) (imap.UID, error) {
	o := c.begin(ctx)
	defer o.end()
	if err := e.fresh(c); err != nil {
		return 0, err
	}
	var above imap.UIDSet
	above.AddRange(lo, 0) // lo:*
	criteria := &imap.SearchCriteria{UID: []imap.UIDSet{above}}
	if msgID != "" {
		criteria.Header = []imap.SearchCriteriaHeaderField{{Key: "Message-ID", Value: msgID}}
	}
	data, err := c.client.UIDSearch(criteria, nil).Wait()
	if err != nil {
		return 0, fmt.Errorf("UID SEARCH: %w", c.fail(err))
	}
	var candidates []imap.UID
	e.mu.Lock()
	for _, uid := range data.AllUIDs() {
		// "lo:*" holds the last message even when its UID is below lo.
		if uid >= lo && !e.owned[uid] {
			candidates = append(candidates, uid)
		}
	}
	e.mu.Unlock()
	if len(candidates) == 0 {
		return 0, nil
	}
	sums, err := fetchSums(c, o, imap.UIDSetNum(candidates...))
	if err != nil {
		return 0, err
	}
	slices.Sort(candidates)
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, uid := range candidates {
		if sums[uid] == sum && !e.owned[uid] {
			e.owned[uid] = true
			return uid, nil
		}
	}
	return 0, nil
}

// fetchSums reads the messages of uids on c and returns the sha256 of each
// one's canonical form, streaming (no message is held in memory).
func fetchSums(c *conn, o *op, uids imap.UIDSet) (map[imap.UID]string, error) {
	cmd := c.client.Fetch(uids, &imap.FetchOptions{
		UID:         true,
		BodySection: []*imap.FetchItemBodySection{{Peek: true}},
	})
	sums := make(map[imap.UID]string)
	var readErr error
	for m := cmd.Next(); m != nil; m = cmd.Next() {
		var uid imap.UID
		var sum string
		for item := m.Next(); item != nil; item = m.Next() {
			switch it := item.(type) {
			case imapclient.FetchItemDataUID:
				uid = it.UID
			case imapclient.FetchItemDataBodySection:
				s, err := hashCanonical(progressReader{it.Literal, o})
				if err != nil && readErr == nil {
					readErr = err
				}
				sum = s
			}
		}
		o.progress()
		if uid != 0 && sum != "" {
			sums[uid] = sum
		}
	}
	err := cmd.Close()
	if err == nil {
		err = readErr
	}
	if err != nil {
		return nil, fmt.Errorf("UID FETCH: %w", c.fail(err))
	}
	return sums, nil
}

// progressReader tells the watchdog about every read.
type progressReader struct {
	r io.Reader
	o *op
}

func (p progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.o.progress()
	return n, err
}
