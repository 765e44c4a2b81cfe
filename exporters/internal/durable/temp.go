package durable

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"

	"github.com/popmigrate/popmigrate/exporters"
)

// Temp is the temporary file of a message a file destination takes while
// it downloads (an exporters.Stream): Write appends to it, Finish ends it
// complete or removes it, Abort removes it. Write, Finish and Abort may
// race with Abort from the destination's Close, and nothing is left of a
// Temp that was not finished whole.
type Temp struct {
	w    *Writer
	set  *Temps
	name string // relative to the root
	what string // "maildir: stream KEY into DIR", the prefix of Write's errors

	mu    sync.Mutex
	f     *os.File // nil once finished, ended or aborted
	ended bool     // End closed the file, for Finish to hand over or Abort to remove
	n     int64    // bytes written
	err   error    // the first write error
	keep  int      // how many leading bytes head keeps
	hp    *[]byte  // head's buffer, from chunkPool; nil once given back
	head  []byte
}

// Temps is the set of a destination's Temps neither finished nor aborted,
// which its Close aborts. The zero value is empty.
type Temps struct {
	mu   sync.Mutex
	open map[*Temp]bool
}

// AbortAll aborts every Temp of the set.
func (ts *Temps) AbortAll() {
	ts.mu.Lock()
	open := slices.Collect(maps.Keys(ts.open))
	ts.mu.Unlock()
	for _, t := range open {
		t.Abort()
	}
}

func (ts *Temps) add(t *Temp) {
	ts.mu.Lock()
	if ts.open == nil {
		ts.open = map[*Temp]bool{}
	}
	ts.open[t] = true
	ts.mu.Unlock()
}

func (ts *Temps) remove(t *Temp) {
	ts.mu.Lock()
	delete(ts.open, t)
	ts.mu.Unlock()
}

// CreateTemp creates a new temporary file as Create does and returns it as
// a Temp of set. The Temp keeps the first keep bytes written (at most
// 64 KiB; 0 for none), for Finish to return: what a destination that names
// a file after its header needs. what prefixes Write's errors.
func (w *Writer) CreateTemp(set *Temps, tmpName func() string, keep int, what string) (*Temp, error) {
	name, f, err := w.Create(tmpName)
	if err != nil {
		return nil, err
	}
	t := &Temp{w: w, set: set, name: name, what: what, f: f, keep: min(keep, chunkSize)}
	if t.keep > 0 {
		t.hp = chunkPool.Get().(*[]byte)
		t.head = (*t.hp)[:0]
	}
	set.add(t)
	return t, nil
}

// Kept returns the leading bytes kept so far (see CreateTemp), valid
// until the next Write, Release or Abort.
func (t *Temp) Kept() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.head
}

// Name is the file's name, relative to the root.
func (t *Temp) Name() string { return t.name }

// Write appends p to the file. After a write error it returns that error
// (prefixed with what), and after Finish or Abort an error wrapping
// exporters.ErrClosed.
func (t *Temp) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.err != nil:
		return 0, t.err
	case t.f == nil:
		return 0, fmt.Errorf("%s: %w", t.what, exporters.ErrClosed)
	}
	n, err := t.f.Write(p)
	t.n += int64(n)
	if k := min(n, t.keep-len(t.head)); k > 0 {
		t.head = append(t.head, p[:k]...)
	}
	if err != nil {
		t.err = fmt.Errorf("%s: write %s: %w", t.what, t.w.Path(t.name), err)
		return n, t.err
	}
	return n, nil
}

// Finish ends the file, which must hold exactly size bytes, and closes
// it, for the caller to stage; it returns the leading bytes kept, valid
// until Release. It fails, having removed the file, on a write error (as
// Write returned it), a short or long file, the end of ctx or a failed
// close (those wrapped with wrap), and when the Temp was already ended.
//
// After End, Finish only hands the file over: it checks ctx (removing the
// file when it is done) and returns the kept bytes.
func (t *Temp) Finish(ctx context.Context, size int64, wrap func(error) error) ([]byte, error) {
	t.mu.Lock()
	ended, head := t.ended, t.head
	t.ended = false
	t.mu.Unlock()
	if ended {
		t.set.remove(t)
		if err := ctx.Err(); err != nil {
			t.w.Remove(t.name)
			return nil, wrap(err)
		}
		return head, nil
	}
	head, err := t.end(ctx, size, wrap)
	t.set.remove(t)
	return head, err
}

// End ends the file as Finish does (its length checked, closed, removed
// on error), before the caller is ready to take it over: a Temp waiting
// for its Finish then holds no descriptor. Finish afterwards hands the
// file over; Abort, or AbortAll of its set, removes it.
func (t *Temp) End(ctx context.Context, size int64, wrap func(error) error) error {
	if _, err := t.end(ctx, size, wrap); err != nil {
		if !errors.Is(err, errAlreadyEnded) {
			t.set.remove(t)
		}
		return err
	}
	t.mu.Lock()
	t.ended = true
	t.mu.Unlock()
	return nil
}

var errAlreadyEnded = errors.New("stream already ended")

// end is the work of Finish and End: it closes the open file, which must
// hold exactly size bytes, and removes it on any error.
func (t *Temp) end(ctx context.Context, size int64, wrap func(error) error) ([]byte, error) {
	t.mu.Lock()
	f, n, werr, head := t.f, t.n, t.err, t.head
	t.f = nil
	t.mu.Unlock()
	if f == nil {
		return nil, wrap(errAlreadyEnded)
	}
	err := werr
	switch {
	case err != nil:
	case n != size:
		err = fmt.Errorf("write %s: %w: %d of %d bytes", t.w.Path(t.name), exporters.ErrShortBody, n, size)
	default:
		err = ctx.Err()
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close %s: %w", t.w.Path(t.name), cerr)
	}
	if err != nil {
		t.w.Remove(t.name)
		if err == werr {
			return nil, err
		}
		return nil, wrap(err)
	}
	return head, nil
}

// Release gives back the buffer of the kept bytes; Finish's result must
// not be used afterwards. It may be called more than once.
func (t *Temp) Release() {
	t.mu.Lock()
	hp := t.hp
	t.hp, t.head = nil, nil
	t.mu.Unlock()
	if hp != nil {
		chunkPool.Put(hp)
	}
}

// Abort closes and removes the file unless it was finished (an ended
// file is removed), and releases the kept bytes. It may be called more
// than once, and after Finish.
func (t *Temp) Abort() {
	t.mu.Lock()
	f, ended := t.f, t.ended
	t.f, t.ended = nil, false
	t.mu.Unlock()
	if f == nil && !ended {
		return
	}
	t.Release()
	if f != nil {
		f.Close()
	}
	t.set.remove(t)
	// The root stays open while a Close of the destination aborts its
	// Temps, and a Temp that Close aborted is not aborted again here.
	t.w.Remove(t.name)
}
