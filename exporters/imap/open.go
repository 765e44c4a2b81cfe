package imap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popmigrate/popmigrate/exporters"
)

// Open returns the message at ref ("UIDVALIDITY/UID") in canonical form
// (CRLF->LF), streamed from the server: the caller reads it and must
// Close it, which hands the connection back (the reader holds one of the
// Options.Conns connections until then). ctx governs the reading too.
// A message that is gone, or a ref from an earlier UIDVALIDITY of the
// folder, gives an error wrapping exporters.ErrNotFound.
func (e *Exporter) Open(ctx context.Context, ref string) (io.ReadCloser, error) {
	wrap := func(err error) error { return fmt.Errorf("imap: %s: open %q: %w", e.id, ref, err) }
	uidValidity, uid, err := parseRef(ref)
	if err != nil {
		return nil, wrap(err)
	}
	if err := ctx.Err(); err != nil {
		return nil, wrap(err)
	}
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed {
		return nil, wrap(exporters.ErrClosed)
	}
	if uidValidity != e.uidValidity {
		return nil, wrap(fmt.Errorf("%w (the folder's UIDVALIDITY is now %d)", exporters.ErrNotFound, e.uidValidity))
	}
	c, err := e.acquire(ctx)
	if err != nil {
		return nil, wrap(err)
	}
	o := c.begin(ctx)
	if err := e.fresh(c); err != nil {
		o.end()
		e.release(c)
		return nil, wrap(err)
	}
	cmd := c.client.Fetch(imap.UIDSetNum(uid), &imap.FetchOptions{
		UID:         true,
		BodySection: []*imap.FetchItemBodySection{{Peek: true}},
	})
	for m := cmd.Next(); m != nil; m = cmd.Next() {
		for item := m.Next(); item != nil; item = m.Next() {
			if it, ok := item.(imapclient.FetchItemDataBodySection); ok {
				r := &openReader{e: e, c: c, o: o, cmd: cmd, wrap: wrap}
				r.cr = newCanonicalReader(it.Literal, o.progress)
				return r, nil
			}
		}
	}
	err = cmd.Close()
	o.end()
	if err != nil {
		err = c.fail(err)
		e.release(c)
		return nil, wrap(fmt.Errorf("UID FETCH %d: %w", uid, err))
	}
	e.release(c)
	return nil, wrap(exporters.ErrNotFound)
}

func parseRef(ref string) (uint32, imap.UID, error) {
	a, b, ok := strings.Cut(ref, "/")
	uv, err1 := strconv.ParseUint(a, 10, 32)
	uid, err2 := strconv.ParseUint(b, 10, 32)
	if !ok || err1 != nil || err2 != nil || uv == 0 || uid == 0 {
		return 0, 0, fmt.Errorf("%w: want UIDVALIDITY/UID", ErrInvalidRef)
	}
	return uint32(uv), imap.UID(uid), nil
}

// openReader streams one message of Open.
type openReader struct {
	e    *Exporter
	c    *conn
	o    *op
	cmd  *imapclient.FetchCommand
	cr   *canonicalReader
	wrap func(error) error
	done bool  // the command is finished and the connection handed back
	err  error // sticky result once done
}

func (r *openReader) Read(p []byte) (int, error) {
	if r.done {
		return 0, r.err
	}
	n, err := r.cr.Read(p)
	if err == io.EOF {
		// The literal is over: finish the command, then report EOF.
		if ferr := r.finish(false); ferr != nil {
			r.err = r.wrap(ferr)
			return n, r.err
		}
		r.err = io.EOF
		return n, io.EOF
	}
	if err != nil {
		r.finish(true)
		r.err = r.wrap(r.c.fail(err))
		return n, r.err
	}
	return n, nil
}

// finish ends the FETCH and hands the connection back; abort closes the
// connection instead of reading the rest of the message.
func (r *openReader) finish(abort bool) error {
	if r.done {
		return nil
	}
	r.done = true
	if abort {
		r.c.kill(errConnBroken)
	}
	err := r.cmd.Close()
	r.o.end()
	if err != nil {
		err = r.c.fail(err)
	}
	r.e.release(r.c)
	if abort {
		return nil
	}
	return err
}

// Close ends the read; a message not read to its end closes the
// connection under it.
func (r *openReader) Close() error {
	if !r.done {
		r.finish(true)
		r.err = r.wrap(errors.New("reader closed"))
	}
	return nil
}
