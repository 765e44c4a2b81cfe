package imap

import (
	"context"
	"fmt"
	"io"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popmigrate/popmigrate/exporters"
)

var _ exporters.Surveyor = (*Exporter)(nil)

// Survey returns every message of the folder with the HeaderSum of its
// header block and its RFC822.SIZE, in one command: UID FETCH 1:* (UID
// RFC822.SIZE BODY.PEEK[HEADER]) (RFC 3501 section 6.4.5), its answers
// streamed (a header block is read up to exporters.MaxHeaderBlock, the
// rest of it skipped). BODY.PEEK sets no flag. account is not used: a
// folder holds one account. A message the server answers without its
// UID or header is left out; a failed command is an error naming the
// folder.
func (e *Exporter) Survey(ctx context.Context, account string) ([]exporters.Surveyed, error) {
	wrap := func(err error) error { return fmt.Errorf("imap: %s: survey folder %q: %w", e.id, e.mailbox, err) }
	if err := ctx.Err(); err != nil {
		return nil, wrap(err)
	}
	c, err := e.acquire(ctx)
	if err != nil {
		return nil, wrap(err)
	}
	defer e.release(c)
	o := c.begin(ctx)
	defer o.end()
	if err := e.fresh(c); err != nil {
		return nil, wrap(err)
	}
	var all imap.UIDSet
	all.AddRange(1, 0) // 1:*
	header := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, Peek: true}
	cmd := c.client.Fetch(all, &imap.FetchOptions{UID: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{header}})
	var out []exporters.Surveyed
	var readErr error
	for m := cmd.Next(); m != nil; m = cmd.Next() {
		var uid imap.UID
		s := exporters.Surveyed{Size: -1}
		for item := m.Next(); item != nil; item = m.Next() {
			switch it := item.(type) {
			case imapclient.FetchItemDataUID:
				uid = it.UID
			case imapclient.FetchItemDataRFC822Size:
				s.Size = it.Size
			case imapclient.FetchItemDataBodySection:
				r := progressReader{it.Literal, o}
				sum, err := exporters.HeaderSum(r)
				if err == nil {
					_, err = io.Copy(io.Discard, r)
				}
				if err != nil && readErr == nil {
					readErr = err
				}
				s.HeaderSHA256 = sum
			}
		}
		o.progress()
		if uid != 0 && s.HeaderSHA256 != "" {
			s.Ref = e.ref(uid)
			out = append(out, s)
		}
	}
	err = cmd.Close()
	if err == nil {
		err = readErr
	}
	if err != nil {
		return nil, wrap(fmt.Errorf("UID FETCH 1:* (RFC822.SIZE BODY.PEEK[HEADER]): %w", c.fail(err)))
	}
	return out, nil
}
