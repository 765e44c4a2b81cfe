package mbox

import (
	"context"
	"errors"
	"fmt"
	"strconv"
)

// Resume repairs the file from state, the CommitState last recorded in the
// journal, and must be called before any Put (it fails after one).
//
// With state "", the journal knows nothing of this file yet: Resume fsyncs
// it and records its current size with save (unless save is nil), so that
// a crash before the first commit is repaired by the next Resume.
//
// When the file is longer than the committed offset, what lies past it is
// a torn or uncommitted tail of popmigrate's, or mail another program
// appended. Resume checks every byte of it against the intent log: when
// this Exporter's intents account for all of it (see the package
// documentation), Resume cuts the file to the offset, fsyncs it, and drops
// the index entries past it (rewriting the index). When any byte is not
// accounted for, Resume cuts nothing, changes nothing, and fails with an
// error wrapping ErrForeignData that names the file, the committed offset
// and the bytes it cannot account for, and says what to do; every later
// Put and Sync fail.
//
// When the file is shorter, messages the journal records as stored are
// gone: Resume fails with an error wrapping ErrTruncated, changes nothing,
// and every later Put and Sync fail. A read-only Exporter repairs nothing:
// Resume fails with exporters.ErrReadOnly.
//
// After it cut a tail, Resume empties the intent log: no byte before the
// committed offset is ever cut.
func (e *Exporter) Resume(ctx context.Context, state string, save func(ctx context.Context, state string) error) error {
	wrap := func(err error) error { return fmt.Errorf("mbox: resume %s: %w", e.path, err) }
	if err := ctx.Err(); err != nil {
		return wrap(err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.usable(); err != nil {
		return wrap(err)
	}
	if e.wrote {
		return wrap(errors.New("called after Put"))
	}
	fi, err := e.f.Stat()
	if err != nil {
		return wrap(err)
	}
	size := fi.Size()
	if size != e.flushed {
		return wrap(fmt.Errorf("the file changed size from %d to %d bytes since it was opened", e.flushed, size))
	}
	if state == "" {
		if save == nil {
			return nil
		}
		if err := e.f.Sync(); err != nil {
			return wrap(fmt.Errorf("fsync: %w", err))
		}
		if err := save(ctx, strconv.FormatInt(size, 10)); err != nil {
			return wrap(fmt.Errorf("record the initial state: %w", err))
		}
		e.synced = size
		return nil
	}
	committed, err := parseUint(state)
	if err != nil {
		return wrap(fmt.Errorf("invalid state: %v", err))
	}
	switch {
	case size < committed:
		e.broken = fmt.Errorf("%w: %s is %d bytes but the journal committed %d: the file was truncated or replaced; refusing to write to it", ErrTruncated, e.path, size, committed)
		return fmt.Errorf("mbox: resume: %w", e.broken)
	case size == committed:
		// Nothing to repair, and nothing is written: a run that stores
		// nothing leaves the folder as it was. The intents in the log
		// stay, harmless: they account only for bytes that hash to what
		// popmigrate meant to write, and Sync keeps the log small.
		e.synced = size
		return nil
	}
	spans, err := explained(ctx, e.f, e.intents, committed, size, false)
	if err != nil {
		return wrap(err)
	}
	if bad := unexplained(spans, committed, size); len(bad) > 0 {
		var n int64
		for _, s := range bad {
			n += s.to - s.from
		}
		e.broken = fmt.Errorf("%w: another program appended mail to %s after popmigrate's last commit at offset %d: %d bytes from offset %d on are not popmigrate's (or a power failure lost popmigrate's record of writing them); popmigrate never cuts mail it did not write: move that mail out of %s (for example with your mail client) or point --to at a new mbox file, then run again",
			ErrForeignData, e.path, committed, n, bad[0].from, e.path)
		return fmt.Errorf("mbox: resume: %w", e.broken)
	}
	if err := e.f.Truncate(committed); err != nil {
		return wrap(fmt.Errorf("cut the uncommitted tail (%d bytes from offset %d): %w", size-committed, committed, err))
	}
	e.flushed, e.end, e.synced, e.attempted = committed, committed, committed, committed
	keep := len(e.entries)
	for keep > 0 && e.entries[keep-1].off+e.entries[keep-1].n > committed {
		keep--
	}
	dropped := keep < len(e.entries)
	e.setEntries(e.entries[:keep])
	if err := e.f.Sync(); err != nil {
		return wrap(fmt.Errorf("fsync: %w", err))
	}
	if err := e.computePad(); err != nil {
		return err
	}
	if dropped {
		if err := e.rewriteIndex(); err != nil {
			return err
		}
	}
	return e.resetIntents()
}
