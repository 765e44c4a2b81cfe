package imap

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"golang.org/x/sync/errgroup"

	"github.com/popmigrate/popmigrate/exporters"
)

var _ exporters.BatchOpener = (*Exporter)(nil)

// fetchBatch is the most messages one UID FETCH of OpenAll asks for. The
// answer is streamed (each literal passes through the caller's fn as it
// arrives), so memory does not grow with it; the bound keeps the work a
// broken connection throws away small, and gives every connection a share
// of a long list.
const fetchBatch = 200

// fetchShareMin is the fewest messages OpenAll gives a connection of its
// own: a shorter list is read on fewer of the Exporter's connections. A
// connection not yet open costs a login (TLS, authentication, EXAMINE:
// round trips, and the server's CPU, which on a small machine is what
// bounds a migration of many small mailboxes), and a FETCH of a few
// dozen messages is one round trip and a stream that does not repay it.
const fetchShareMin = 64

// OpenAll reads the messages at refs ("UIDVALIDITY/UID") back, in
// canonical form (CRLF->LF), with one UID FETCH set (UID BODY.PEEK[])
// (RFC 3501 section 6.4.8) per fetchBatch messages, in UID order, over up
// to Options.Conns of the Exporter's connections at once (fewer for a list
// of less than fetchShareMin messages a connection): fn is called
// from one goroutine per connection, with each literal as it streams in.
// BODY.PEEK sets no flag. See exporters.BatchOpener for the contract.
//
// A ref is checked as Open checks it: one that does not parse wraps
// ErrInvalidRef, one from another UIDVALIDITY of the folder wraps
// exporters.ErrNotFound, and so does a UID the server's answer to a
// complete FETCH leaves out. When a connection fails in the middle of a
// FETCH, the copy that was streaming gives the error to fn's reader, and
// the messages the answer had not reached yet are asked for again on
// another connection; when a FETCH fails before any message came, those
// messages get the error (as Open would give it). A ref listed twice is
// read with Open the second time.
func (e *Exporter) OpenAll(ctx context.Context, refs []string, fn func(i int, r io.Reader, err error) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("imap: %s: read back: %w", e.id, err)
	}
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed {
		return fmt.Errorf("imap: %s: read back: %w", e.id, exporters.ErrClosed)
	}
	var (
		items []batchItem
		again []int // indexes whose UID is listed before: read with Open
		seen  = make(map[imap.UID]bool, len(refs))
	)
	for i, ref := range refs {
		uv, uid, err := parseRef(ref)
		if err == nil && uv != e.uidValidity {
			err = fmt.Errorf("%w (the folder's UIDVALIDITY is now %d)", exporters.ErrNotFound, e.uidValidity)
		}
		switch {
		case err != nil:
			if err := fn(i, nil, e.openErr(ref, err)); err != nil {
				return err
			}
		case seen[uid]:
			again = append(again, i)
		default:
			seen[uid] = true
			items = append(items, batchItem{i: i, uid: uid, ref: ref})
		}
	}
	slices.SortFunc(items, byUID)
	// Every connection gets a share of a long list; a short one is read
	// on as few connections as shares of fetchShareMin make.
	size := min(fetchBatch, max(fetchShareMin, (len(items)+e.opts.Conns-1)/e.opts.Conns))
	var chunks [][]batchItem
	for len(items) > 0 {
		n := min(len(items), size)
		chunks = append(chunks, items[:n])
		items = items[n:]
	}
	work := make(chan []batchItem, len(chunks))
	for _, ch := range chunks {
		work <- ch
	}
	close(work)
	g, gctx := errgroup.WithContext(ctx)
	for range min(e.opts.Conns, len(chunks)) {
		g.Go(func() error {
			cr := newCanonicalReader(nil, nil)
			for ch := range work {
				if err := e.fetchChunk(gctx, ch, cr, fn); err != nil {
					return err
				}
			}
			return nil
		})
	}
	err := g.Wait()
	if err == nil {
		for _, i := range again {
			if err = e.openOne(ctx, i, refs[i], fn); err != nil {
				break
			}
		}
	}
	var ferr *fnError
	switch {
	case errors.As(err, &ferr):
		return ferr.err
	case ctx.Err() != nil:
		return fmt.Errorf("imap: %s: read back: %w", e.id, ctx.Err())
	case err != nil:
		return fmt.Errorf("imap: %s: read back: %w", e.id, err)
	}
	return nil
}

func byUID(a, b batchItem) int { return cmp.Compare(a.uid, b.uid) }

// batchItem is one message OpenAll reads: its index in refs, its UID.
type batchItem struct {
	i   int
	uid imap.UID
	ref string
}

// openErr is the error Open returns for ref.
func (e *Exporter) openErr(ref string, err error) error {
	return fmt.Errorf("imap: %s: open %q: %w", e.id, ref, err)
}

// openOne passes the copy at ref, read with Open, to fn as index i.
func (e *Exporter) openOne(ctx context.Context, i int, ref string, fn func(int, io.Reader, error) error) error {
	rc, err := e.Open(ctx, ref)
	if err != nil {
		if ctx.Err() != nil || errors.Is(err, exporters.ErrClosed) {
			return err
		}
		return wrapFn(fn(i, nil, err))
	}
	err = fn(i, rc, nil)
	rc.Close()
	return wrapFn(err)
}

// wrapFn marks an error of the caller's fn, so that OpenAll returns it as
// it is.
func wrapFn(err error) error {
	if err == nil {
		return nil
	}
	return &fnError{err}
}

// fetchChunk reads the messages of ch, all of them passed to fn unless
// ctx ends, fn fails or the Exporter is closed (the error returned). It
// asks again for what a broken FETCH left, as long as each FETCH brings
// at least one message.
func (e *Exporter) fetchChunk(ctx context.Context, ch []batchItem, cr *canonicalReader, fn func(int, io.Reader, error) error) error {
	pending := make(map[imap.UID]batchItem, len(ch))
	for _, it := range ch {
		pending[it.uid] = it
	}
	for len(pending) > 0 {
		got, err := e.fetchSet(ctx, pending, cr, fn)
		var ferr *fnError
		switch {
		case errors.As(err, &ferr):
			return err
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, exporters.ErrClosed):
			return err
		case err == nil:
			// The server answered the whole set: what it left out is
			// not in the folder.
			return e.failRest(pending, exporters.ErrNotFound, fn)
		case got == 0:
			return e.failRest(pending, err, fn)
		}
		// A message or more came before the failure: ask for the rest
		// on another connection.
	}
	return nil
}

// failRest passes err, as Open would wrap it, to fn for every message of
// pending.
func (e *Exporter) failRest(pending map[imap.UID]batchItem, err error, fn func(int, io.Reader, error) error) error {
	for _, it := range sortedItems(pending) {
		if ferr := fn(it.i, nil, e.openErr(it.ref, err)); ferr != nil {
			return &fnError{ferr}
		}
	}
	return nil
}

func sortedItems(m map[imap.UID]batchItem) []batchItem {
	out := make([]batchItem, 0, len(m))
	for _, it := range m {
		out = append(out, it)
	}
	slices.SortFunc(out, byUID)
	return out
}

// fnError carries an error of the caller's fn through fetchSet.
type fnError struct{ err error }

func (e *fnError) Error() string { return e.err.Error() }

// fetchSet sends one UID FETCH for the UIDs of pending on a connection of
// the pool and passes each message of the answer to fn, deleting it from
// pending first. It returns how many messages it passed and the failure
// of the connection or the command (a *fnError for one of fn).
//
// go-imap's client gives a FETCH command only the answers that name their
// UID before their literal (as Dovecot's do, and as Open needs too); an
// answer that does not reaches no command, and its message counts as
// missing.
func (e *Exporter) fetchSet(ctx context.Context, pending map[imap.UID]batchItem, cr *canonicalReader, fn func(int, io.Reader, error) error) (int, error) {
	c, err := e.acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer e.release(c)
	var set imap.UIDSet
	for _, it := range sortedItems(pending) {
		set.AddNum(it.uid)
	}
	o := c.begin(ctx)
	defer o.end()
	if err := e.fresh(c); err != nil {
		return 0, err
	}
	cmd := c.client.Fetch(set, &imap.FetchOptions{
		UID:         true,
		BodySection: []*imap.FetchItemBodySection{{Peek: true}},
	})
	got := 0
	for m := cmd.Next(); m != nil; m = cmd.Next() {
		var uid imap.UID
		for item := m.Next(); item != nil; item = m.Next() {
			switch it := item.(type) {
			case imapclient.FetchItemDataUID:
				uid = it.UID
			case imapclient.FetchItemDataBodySection:
				bi, ok := pending[uid]
				if !ok || it.Literal == nil {
					continue
				}
				delete(pending, uid)
				got++
				lit := &onceReader{r: it.Literal}
				cr.reset(lit, o.progress)
				ferr := fn(bi.i, &batchReader{cr: cr, c: c, ref: bi.ref, e: e}, nil)
				if lit.err == nil {
					// Read what fn left: go-imap's decoder waits for
					// the end of the literal (or its failure).
					io.Copy(io.Discard, lit)
				}
				if lit.err != io.EOF {
					// go-imap reads a literal again when the message is
					// discarded, even one that failed, while its decoder
					// goes on: the command is dropped with its
					// connection and never read on. Its decoder stops
					// too: a literal fails only once every byte that
					// came is read, and nothing more comes.
					err := c.fail(lit.err)
					c.kill(errConnBroken)
					if ferr != nil {
						return got, &fnError{ferr}
					}
					return got, fmt.Errorf("UID FETCH %s: %w", set, err)
				}
				if ferr != nil {
					// The rest of the answer is read and dropped, which
					// leaves the connection in use.
					cmd.Close()
					return got, &fnError{ferr}
				}
			}
		}
		o.progress()
	}
	if err := cmd.Close(); err != nil {
		return got, fmt.Errorf("UID FETCH %s: %w", set, c.fail(err))
	}
	return got, nil
}

// onceReader reads r until its first error, which it then returns
// without reading r again.
type onceReader struct {
	r   io.Reader
	err error
}

func (o *onceReader) Read(p []byte) (int, error) {
	if o.err != nil {
		return 0, o.err
	}
	n, err := o.r.Read(p)
	o.err = err
	return n, err
}

// batchReader is the reader fn gets for one message of a FETCH answer:
// the canonical bytes of its literal, and a failure of the connection as
// Open's reader reports it.
type batchReader struct {
	cr  *canonicalReader
	c   *conn
	e   *Exporter
	ref string
}

func (r *batchReader) Read(p []byte) (int, error) {
	n, err := r.cr.Read(p)
	if err != nil && err != io.EOF {
		err = r.e.openErr(r.ref, r.c.fail(err))
	}
	return n, err
}
