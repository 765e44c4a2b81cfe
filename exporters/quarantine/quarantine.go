// Package quarantine keeps aside the messages a destination refuses for
// what they are (an *exporters.RejectedError: an IMAP server's NO to an
// APPEND, NUL bytes), so that a run goes on and loses nothing: each one is
// written, in canonical form, to <key>.eml in a quarantine folder, and the
// Put returns an *exporters.QuarantinedError saying where.
//
// Wrap adds the quarantine to any destination; a Folder is the quarantine
// folder itself, for a destination that keeps its own (imap.Options
// QuarantineDir).
package quarantine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/internal/durable"
)

// Suffix ends the name of every file a Folder keeps: <key>.eml.
const Suffix = ".eml"

// StaleTmpAge is the age after which a temporary file left in the folder
// by a crash is removed when the folder is opened.
const StaleTmpAge = 24 * time.Hour

// Folder is a quarantine folder. Its methods are safe for use by several
// goroutines at once.
type Folder struct {
	dir string

	mu     sync.Mutex
	w      *durable.Writer // nil until the folder is opened
	closed bool
}

// Open creates dir (mode 0700, with its parents) when missing and opens it
// now, so that a folder that cannot be created fails here rather than at
// the first refused message. It removes temporary files a crash left there
// more than StaleTmpAge ago. The caller closes the Folder.
func Open(dir string) (*Folder, error) {
	f := &Folder{dir: dir}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.openLocked(); err != nil {
		return nil, err
	}
	return f, nil
}

// Dir returns the folder's path.
func (f *Folder) Dir() string { return f.dir }

// openLocked opens the folder unless it is open. The caller holds mu.
func (f *Folder) openLocked() error {
	if f.closed {
		return fmt.Errorf("quarantine: %s: %w", f.dir, os.ErrClosed)
	}
	if f.w != nil {
		return nil
	}
	if f.dir == "" {
		return errors.New("quarantine: no folder")
	}
	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		return fmt.Errorf("quarantine: create folder: %w", err)
	}
	root, err := os.OpenRoot(f.dir)
	if err != nil {
		return fmt.Errorf("quarantine: open folder: %w", err)
	}
	f.w = &durable.Writer{Root: root}
	// Temporary files of a crash a day ago are garbage; best effort.
	f.w.RemoveStale(".", time.Now().Add(-StaleTmpAge))
	return nil
}

// Keep writes msg to <key>.eml in the folder durably (temporary file, mode
// 0600, fsync, rename, fsync of the folder), opening the folder first if
// needed, and returns an error wrapping an *exporters.QuarantinedError
// that wraps rejected, the error of the refused Put (it should wrap an
// *exporters.RejectedError). A file of the same name is replaced: it holds
// the same message, from an earlier run or another destination.
//
// When the message cannot be kept (an invalid key, a folder that cannot
// be created, a failing write), Keep returns an error that wraps rejected
// and says why, and no QuarantinedError.
func (f *Folder) Keep(ctx context.Context, msg *exporters.Message, rejected error) error {
	if !exporters.ValidKey(msg.Key) {
		return fmt.Errorf("%w; not quarantined: invalid message key %q", rejected, msg.Key)
	}
	f.mu.Lock()
	err := f.openLocked()
	w := f.w
	f.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%w; quarantine failed: %w", rejected, err)
	}
	name := msg.Key + Suffix
	tmp := func() string {
		var b [8]byte
		rand.Read(b[:])
		return "." + msg.Key + "." + hex.EncodeToString(b[:]) + durable.TmpSuffix
	}
	if err := w.Write(ctx, tmp, name, msg.Body); err != nil {
		return fmt.Errorf("%w; quarantine failed: %w", rejected, err)
	}
	if err := w.SyncDir("."); err != nil {
		return fmt.Errorf("%w; quarantine failed: %w", rejected, err)
	}
	reason := rejected.Error()
	var rej *exporters.RejectedError
	if errors.As(rejected, &rej) {
		reason = rej.Reason
	}
	return &exporters.QuarantinedError{Key: msg.Key, Path: w.Path(name), Reason: reason, Err: rejected}
}

// Close closes the folder. Calling Close more than once is safe and
// returns nil after the first call; a Folder never opened has nothing to
// close. Keep fails after Close.
func (f *Folder) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	if f.w == nil {
		return nil
	}
	if err := f.w.Root.Close(); err != nil {
		return fmt.Errorf("quarantine: close %s: %w", f.dir, err)
	}
	return nil
}

// Wrap returns e with a quarantine in dir: a Put that fails with an error
// wrapping an *exporters.RejectedError keeps the message as dir/<key>.eml
// (see Folder.Keep) and fails with an error wrapping an
// *exporters.QuarantinedError instead. Every other call, and every other
// error of Put, is e's; an error that already wraps a QuarantinedError (a
// destination that keeps its own quarantine) is returned as it is, so no
// message is kept twice.
//
// dir is created (mode 0700) the first time a message is kept, so that a
// run in which nothing is refused leaves no folder behind; a folder that
// cannot be created makes that Put fail with the rejection and the reason.
// Close closes e, then the folder.
//
// The Exporter returned implements exactly the optional interfaces of e
// among exporters.Finder, exporters.Opener, exporters.Resumable and
// exporters.Lister, each answered by e, so that a caller's type assertion
// sees through the wrapper. It always implements exporters.Streamer:
// e's streams when e takes them, exporters.ErrNoStream when it does not.
// For any other optional interface, it has Unwrap() exporters.Exporter,
// which returns e.
func Wrap(e exporters.Exporter, dir string) exporters.Exporter {
	w := &wrapper{e: e, f: &Folder{dir: dir}}
	fi, isF := e.(exporters.Finder)
	op, isO := e.(exporters.Opener)
	re, isR := e.(exporters.Resumable)
	li, isL := e.(exporters.Lister)
	const (
		f = 1 << iota
		o
		r
		l
	)
	has := 0
	for _, x := range []struct {
		ok  bool
		bit int
	}{{isF, f}, {isO, o}, {isR, r}, {isL, l}} {
		if x.ok {
			has |= x.bit
		}
	}
	// One struct type per set of optional interfaces: each embeds the
	// wrapper and those interfaces of e, so it has exactly their methods.
	type (
		F = exporters.Finder
		O = exporters.Opener
		R = exporters.Resumable
		L = exporters.Lister
	)
	switch has {
	case f:
		return &struct {
			*wrapper
			F
		}{w, fi}
	case o:
		return &struct {
			*wrapper
			O
		}{w, op}
	case r:
		return &struct {
			*wrapper
			R
		}{w, re}
	case l:
		return &struct {
			*wrapper
			L
		}{w, li}
	case f | o:
		return &struct {
			*wrapper
			F
			O
		}{w, fi, op}
	case f | r:
		return &struct {
			*wrapper
			F
			R
		}{w, fi, re}
	case f | l:
		return &struct {
			*wrapper
			F
			L
		}{w, fi, li}
	case o | r:
		return &struct {
			*wrapper
			O
			R
		}{w, op, re}
	case o | l:
		return &struct {
			*wrapper
			O
			L
		}{w, op, li}
	case r | l:
		return &struct {
			*wrapper
			R
			L
		}{w, re, li}
	case f | o | r:
		return &struct {
			*wrapper
			F
			O
			R
		}{w, fi, op, re}
	case f | o | l:
		return &struct {
			*wrapper
			F
			O
			L
		}{w, fi, op, li}
	case f | r | l:
		return &struct {
			*wrapper
			F
			R
			L
		}{w, fi, re, li}
	case o | r | l:
		return &struct {
			*wrapper
			O
			R
			L
		}{w, op, re, li}
	case f | o | r | l:
		return &struct {
			*wrapper
			F
			O
			R
			L
		}{w, fi, op, re, li}
	}
	return w
}

// wrapper is the Exporter part of what Wrap returns.
type wrapper struct {
	e exporters.Exporter
	f *Folder
}

var (
	_ exporters.Exporter = (*wrapper)(nil)
	_ exporters.Streamer = (*wrapper)(nil)
)

// Put is e's Put; a rejected message is kept in the folder.
func (w *wrapper) Put(ctx context.Context, msg *exporters.Message) (exporters.Delivery, error) {
	d, err := w.e.Put(ctx, msg)
	if err == nil {
		return d, nil
	}
	var q *exporters.QuarantinedError
	var rej *exporters.RejectedError
	if msg == nil || msg.Body == nil || errors.As(err, &q) || !errors.As(err, &rej) {
		return d, err
	}
	return exporters.Delivery{}, w.f.Keep(ctx, msg, err)
}

// Stream is e's Stream when e is an exporters.Streamer, and otherwise
// fails with exporters.ErrNoStream. A Streamer never rejects a message
// (see exporters.Streamer), so nothing streamed needs the quarantine.
func (w *wrapper) Stream(ctx context.Context, account, key string) (exporters.Stream, exporters.Delivery, error) {
	s, ok := w.e.(exporters.Streamer)
	if !ok {
		return nil, exporters.Delivery{}, fmt.Errorf("quarantine: stream %s: %w", key, exporters.ErrNoStream)
	}
	return s.Stream(ctx, account, key)
}

// Sync is e's Sync.
func (w *wrapper) Sync(ctx context.Context) error { return w.e.Sync(ctx) }

// Properties are e's: the quarantine does not change the destination.
func (w *wrapper) Properties() exporters.Properties { return w.e.Properties() }

// Close closes e, then the folder, and returns the first error.
func (w *wrapper) Close() error {
	err := w.e.Close()
	if ferr := w.f.Close(); err == nil {
		err = ferr
	}
	return err
}

// Unwrap returns the wrapped Exporter.
func (w *wrapper) Unwrap() exporters.Exporter { return w.e }
