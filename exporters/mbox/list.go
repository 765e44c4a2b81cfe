package mbox

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/popmigrate/popmigrate/exporters"
)

var _ exporters.Lister = (*Exporter)(nil)

// List returns, in file order, every entry of the index (the messages Put
// wrote, those of earlier Exporters on the same file included, with their
// keys and Refs) and every message another program put in the file after
// popmigrate's first entry, between entries or past the last: those have
// no Key, and a Ref "<offset>+<length>" that spans the message from its
// From_ line to the next From_ line (or to the next entry, or the end of
// the file); bytes there that start no From_ line and are not blank
// lines are listed the same way. Open does not accept these Refs
// (exporters.ErrNotFound, or ErrInvalidRef for one shorter than any entry
// Put writes): popmigrate reads back only what it wrote. Mail
// the file held before popmigrate's first entry is not listed: like a
// Maildir's other files, it is not popmigrate's, and no Resume ever needs
// to cut past it.
//
// The bytes of popmigrate's own uncommitted writes past the last entry
// (a run that crashed, or a writer still appending while a read-only
// Exporter lists) are told apart with the intent log and not listed,
// and neither are entries New or Resume dropped (past the end of the
// file, or past the committed state). List reads the file as New found
// it (a read-only Exporter) or as it is now (a writer's, up to what Put
// wrote to it), and never changes it. account is not used: an mbox file
// holds one account.
func (e *Exporter) List(ctx context.Context, account string) ([]exporters.Listed, error) {
	wrap := func(err error) error { return fmt.Errorf("mbox: list %s: %w", e.path, err) }
	if err := ctx.Err(); err != nil {
		return nil, wrap(err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, wrap(exporters.ErrClosed)
	}
	out := make([]exporters.Listed, 0, len(e.entries))
	var err error
	for i, en := range e.entries {
		if i > 0 {
			prev := e.entries[i-1]
			if out, err = e.listForeign(ctx, out, prev.off+prev.n, en.off); err != nil {
				return nil, wrap(err)
			}
		}
		out = append(out, exporters.Listed{Key: en.key, Ref: en.ref()})
	}
	if n := len(e.entries); n > 0 {
		last := e.entries[n-1]
		if out, err = e.listForeign(ctx, out, last.off+last.n, e.flushed); err != nil {
			return nil, wrap(err)
		}
	}
	return out, nil
}

// listForeign appends to out the messages in [from, to) of the file,
// which no index entry covers, that the intent log does not account for.
// It reads no byte past flushed (what a writer wrote, or the size a
// reader saw). The caller holds mu.
func (e *Exporter) listForeign(ctx context.Context, out []exporters.Listed, from, to int64) ([]exporters.Listed, error) {
	to = min(to, e.flushed)
	if from >= to {
		return out, nil
	}
	spans, err := explained(ctx, e.f, e.intents, from, to, true)
	if err != nil {
		return nil, err
	}
	for _, u := range unexplained(spans, from, to) {
		if out, err = scanForeign(ctx, out, e.f, u); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// scanForeign appends to out the messages of the span u of f, which starts
// a line: one per From_ line, up to the next one or the end of u, and the
// bytes before the first From_ line unless they are all LFs. A read past
// the end of f (the file was cut since) ends the span.
func scanForeign(ctx context.Context, out []exporters.Listed, f io.ReaderAt, u span) ([]exporters.Listed, error) {
	add := func(from, to int64) {
		if from < to {
			out = append(out, exporters.Listed{Ref: strconv.FormatInt(from, 10) + "+" + strconv.FormatInt(to-from, 10)})
		}
	}
	br := bufio.NewReaderSize(io.NewSectionReader(f, u.from, u.to-u.from), readSize)
	start := int64(-1) // offset of the From_ line of the message being read
	blank := true      // every byte before the first From_ line is an LF
	off, lineStart := u.from, true
	for {
		frag, err := br.ReadSlice('\n')
		if len(frag) > 0 {
			switch {
			case lineStart && bytes.HasPrefix(frag, []byte(fromPrefix)):
				if start >= 0 {
					add(start, off)
				} else if !blank {
					add(u.from, off)
				}
				start = off
			case start < 0 && blank:
				blank = len(bytes.Trim(frag, "\n")) == 0
			}
			off += int64(len(frag))
			lineStart = frag[len(frag)-1] == '\n'
		}
		if err == io.EOF {
			break
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("read at offset %d: %w", off, err)
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	if start >= 0 {
		add(start, off)
	} else if !blank {
		add(u.from, off)
	}
	return out, nil
}
