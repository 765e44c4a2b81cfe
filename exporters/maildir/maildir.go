// Package maildir writes messages into a Maildir folder
// (https://cr.yp.to/proto/maildir.html): one file per message, written in
// tmp/ and renamed into new/, where a mail reader (Dovecot, Courier, mutt,
// mbsync, ...) picks it up and may later move it to cur/ with flags.
//
// # File names
//
// The Maildir spec suggests unique names of the form "time.unique.host".
// popmigrate instead names each file after the message key alone:
//
//	new/<key>.popmigrate
//
// so that "is message KEY already here?" is one stat, and a run that is
// interrupted between writing a message and recording it in the journal
// never writes it twice on resume. A key is made of ASCII letters, digits,
// '-' and '_' (exporters.MessageKey gives 32 hex digits), so a name never
// holds '/', ':' (the separator of the info part, ":2,FLAGS") or a leading
// '.' (hidden, ignored by readers). Readers accept any such name. When a
// reader moves the file to cur/ it appends an info part, giving
// cur/<key>.popmigrate:2,FLAGS; the exporter still finds it there.
//
// Nothing the server sends decides a name: the UIDL is never used.
//
// # Durability
//
// Put writes tmp/<key>.<random>.tmp (created exclusively, mode 0600), checks
// its length and closes it, without fsync. Sync is the group commit: it makes
// every file written since the last Sync durable with one barrier (syncfs(2)
// on Linux, an fsync per file elsewhere), only then renames them into new/,
// and fsyncs new/ so that the renames survive a crash. A file is therefore
// complete and durable whenever it is visible in new/: Has never finds a torn
// message. Stream writes the same tmp file as the message arrives, and its
// Commit stages it as Put does.
//
// # Read-only mode
//
// With Options.ReadOnly, New opens an existing Maildir for reading only,
// for verification: it creates nothing, writes nothing (no probe, no
// clean-up of tmp/) and opens every file read-only, so that an archive on
// read-only media can be checked and checking never changes what it
// checks. Has, Open and List work as in write mode; Put and Sync fail with
// exporters.ErrReadOnly.
package maildir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/internal/durable"
)

// Suffix ends the name of every message file the exporter writes:
// new/<key>.popmigrate.
const Suffix = ".popmigrate"

// StaleTmpAge is the age after which New removes a leftover *.tmp file in
// tmp/ (the Maildir spec's 36 hours).
const StaleTmpAge = 36 * time.Hour

// MaxKeyLen is the longest message key Put accepts, so that a name with
// its info part fits the 255 bytes file systems allow.
const MaxKeyLen = exporters.MaxKeyLen

// readDirN is the number of directory entries read per call.
const readDirN = 1024

// ErrInvalidRef is returned by Open for a reference that is not
// "new/<name>" or "cur/<name>" of a message this exporter writes.
//
// The errors every destination shares are in package exporters: every
// method called after Close wraps exporters.ErrClosed; Put and Has wrap
// exporters.ErrInvalidKey for a message key that cannot be a file name
// (empty, too long, or with characters other than ASCII letters, digits,
// '-' and '_'); Put wraps exporters.ErrShortBody when the body ends
// before Size bytes; Put and Sync of an Exporter opened with
// Options.ReadOnly wrap exporters.ErrReadOnly.
var ErrInvalidRef = errors.New("maildir: invalid reference")

// Options tunes an Exporter. A nil *Options means the defaults.
type Options struct {
	// ID is the destination id recorded in the journal. Empty means
	// "maildir:" followed by the absolute path of the folder.
	ID string
	// ReadOnly opens an existing Maildir for reading only (see New): the
	// Exporter never creates, changes or removes anything under the
	// folder. The destination id is the same as in write mode.
	ReadOnly bool
}

// Exporter writes messages into one Maildir folder. Its methods are safe
// for use by several goroutines at once. Several Exporters (in one process
// or several) may share a folder: the file names make their writes
// idempotent per key.
type Exporter struct {
	dir      string // absolute path of the Maildir
	id       string
	readOnly bool
	root     *os.Root        // every file operation goes through it: no escape by symlink
	w        *durable.Writer // writes, fsyncs and opens through root

	// ops is held shared by every operation and exclusively by Close, so
	// Close waits for operations in flight before releasing root.
	ops sync.RWMutex

	scanMu sync.Mutex // serialises scans of cur/
	pubMu  sync.Mutex // serialises publish: one batch is renamed once

	mu     sync.Mutex // guards the fields below
	closed bool
	dirty  bool              // a file was renamed into new/ since the last Sync
	scans  uint64            // scans of cur/ started so far
	cur    map[string]string // base name -> name in cur/ (with info part); nil until the first scan
	// inNew holds the names ending in Suffix that new/ held when it was
	// read, once per Exporter (nil until then): with renamedAt, every
	// name there that this Exporter knows of. A name in neither is taken
	// as absent without a lookup (see locate).
	inNew     map[string]struct{}
	renamedAt map[string]uint64 // base names renamed into new/ by this Exporter -> scans at that time
	streams   durable.Temps     // Streams neither committed nor aborted; Close aborts them
	// staged holds the messages Put wrote to tmp/, keyed by their name in
	// new/, until the next Sync (or Close) publishes them.
	staged durable.Staged
}

var (
	_ exporters.Exporter = (*Exporter)(nil)
	_ exporters.Finder   = (*Exporter)(nil)
	_ exporters.Opener   = (*Exporter)(nil)
	_ exporters.Streamer = (*Exporter)(nil)
)

// New opens the Maildir at dir for writing, creating dir and its tmp/,
// new/ and cur/ folders (mode 0700) where they are missing; existing
// folders are kept as they are. It fails, naming the path, when dir or one
// of the three is not a folder, is a symbolic link that leads out of dir,
// or cannot be written. New removes *.tmp files in tmp/ older than
// StaleTmpAge, as the Maildir spec allows; that clean-up is best effort.
//
// With opts.ReadOnly, New instead opens an existing Maildir for reading
// only: dir, new/ and cur/ must exist and be folders (a missing one is an
// error naming its path and wrapping fs.ErrNotExist; tmp/ is not needed,
// as nothing reads it), nothing is created, probed or cleaned up, and
// every file is opened read-only. Put and Sync then fail with
// exporters.ErrReadOnly.
//
// The caller closes the Exporter.
func New(dir string, opts *Options) (*Exporter, error) {
	if dir == "" {
		return nil, errors.New("maildir: empty folder path")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("maildir: %s: %w", dir, err)
	}
	readOnly := opts != nil && opts.ReadOnly
	if !readOnly {
		if err := os.MkdirAll(abs, 0o700); err != nil {
			return nil, fmt.Errorf("maildir: create %s: %w", abs, err)
		}
	}
	root, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("maildir: open %s: %w", abs, err)
	}
	e := &Exporter{
		dir:       abs,
		id:        "maildir:" + abs,
		readOnly:  readOnly,
		root:      root,
		w:         &durable.Writer{Root: root},
		renamedAt: map[string]uint64{},
	}
	if opts != nil && opts.ID != "" {
		e.id = opts.ID
	}
	if readOnly {
		err = e.checkFolders()
	} else {
		err = e.init()
	}
	if err == nil {
		// The folders stay open: each message's operations are then one
		// system call each (see durable.Writer.OpenDirs).
		subs := []string{"new", "cur"}
		if !readOnly {
			subs = append(subs, "tmp")
		}
		if err = e.w.OpenDirs(subs...); err != nil {
			err = fmt.Errorf("maildir: %w", err)
		}
	}
	if err != nil {
		root.Close()
		return nil, err
	}
	return e, nil
}

// checkFolders checks, for read-only mode, that new/ and cur/ exist and
// are folders. It changes nothing.
func (e *Exporter) checkFolders() error {
	for _, sub := range []string{"new", "cur"} {
		// Stat follows a symbolic link only within the folder.
		fi, err := e.root.Stat(sub)
		if err != nil {
			return fmt.Errorf("maildir: %s: %w", e.path(sub), err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("maildir: %s is not a folder", e.path(sub))
		}
	}
	return nil
}

// init creates the three sub-folders, checks that they can be written and
// removes stale tmp files.
func (e *Exporter) init() error {
	for _, sub := range []string{"tmp", "new", "cur"} {
		err := e.root.Mkdir(sub, 0o700)
		if err == nil {
			continue
		}
		if !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("maildir: create %s: %w", e.path(sub), err)
		}
		// Stat follows a symbolic link only within the folder.
		fi, err := e.root.Stat(sub)
		if err != nil {
			return fmt.Errorf("maildir: %s: %w", e.path(sub), err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("maildir: %s is not a folder", e.path(sub))
		}
	}
	if err := e.probe(); err != nil {
		return err
	}
	return e.cleanTmp(time.Now())
}

// probe does what Put does with an empty file: create it in tmp/ and
// rename it into new/ (under a hidden name, which readers ignore), then
// removes it. It fails early on a read-only folder, wrong permissions, or
// tmp/ and new/ on different file systems.
func (e *Exporter) probe() error {
	r := durable.RandomHex()
	tmp := "tmp/" + r + ".probe.tmp"
	f, err := e.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("maildir: %s is not writable: %w", e.path("tmp"), err)
	}
	if err := f.Close(); err != nil {
		e.root.Remove(tmp)
		return fmt.Errorf("maildir: %s: %w", e.path(tmp), err)
	}
	dst := "new/.popmigrate-probe-" + r
	if err := e.root.Rename(tmp, dst); err != nil {
		e.root.Remove(tmp)
		return fmt.Errorf("maildir: %s is not writable from tmp/: %w", e.path("new"), err)
	}
	if err := e.root.Remove(dst); err != nil {
		return fmt.Errorf("maildir: remove %s: %w", e.path(dst), err)
	}
	return nil
}

// cleanTmp removes *.tmp regular files in tmp/ last modified before
// now-StaleTmpAge. Failing to remove one file is not an error: another
// process may have removed or renamed it.
func (e *Exporter) cleanTmp(now time.Time) error {
	if err := e.w.RemoveStale("tmp", now.Add(-StaleTmpAge)); err != nil {
		return fmt.Errorf("maildir: %w", err)
	}
	return nil
}

// Dir returns the absolute path of the Maildir.
func (e *Exporter) Dir() string { return e.dir }

// Properties returns Kind "maildir" and the destination id.
func (e *Exporter) Properties() exporters.Properties {
	return exporters.Properties{Kind: "maildir", ID: e.id}
}

// Put writes msg to new/<key>.popmigrate and returns Ref "new/<key>.popmigrate".
// If the Maildir already holds the key, in new/ or in cur/ (moved there by a
// reader, with any info part), Put returns its Ref and writes nothing.
//
// The file is complete, fsynced and closed when it appears in new/; call
// Sync to make the rename durable. Put checks ctx between chunks of the
// copy and before the rename; on any error, cancellation included, it
// removes its tmp file and nothing appears in new/. Puts of the same key
// from several goroutines at once leave one copy. A read-only Exporter
// fails with exporters.ErrReadOnly and writes nothing.
func (e *Exporter) Put(ctx context.Context, msg *exporters.Message) (exporters.Delivery, error) {
	if msg == nil || msg.Body == nil {
		return exporters.Delivery{}, errors.New("maildir: put: nil message or body")
	}
	if e.readOnly {
		return exporters.Delivery{}, fmt.Errorf("maildir: put %s into %s: %w", msg.Key, e.dir, exporters.ErrReadOnly)
	}
	name, err := fileName(msg.Key)
	if err != nil {
		return exporters.Delivery{}, fmt.Errorf("maildir: put into %s: %w", e.dir, err)
	}
	wrap := func(err error) error {
		return fmt.Errorf("maildir: put %s into %s: %w", msg.Key, e.dir, err)
	}
	if err := ctx.Err(); err != nil {
		return exporters.Delivery{}, wrap(err)
	}
	if err := e.begin(); err != nil {
		return exporters.Delivery{}, wrap(err)
	}
	defer e.ops.RUnlock()

	ref, err := e.held(name)
	if err != nil || ref != "" {
		if err != nil {
			err = wrap(err)
		}
		return exporters.Delivery{Ref: ref}, err
	}
	if err := e.write(ctx, name, msg); err != nil {
		return exporters.Delivery{}, wrap(err)
	}
	return exporters.Delivery{Ref: "new/" + name}, nil
}

// held returns the Ref of the message file with base name name when the
// Maildir holds it, or "" when a new file may be written for it. The
// caller holds ops shared.
func (e *Exporter) held(name string) (string, error) {
	ref, dirAtNew, err := e.locate(name, true)
	if err != nil {
		return "", err
	}
	if ref != "" {
		// A file this Exporter did not write may come from a run that
		// crashed after its rename and before the folder was fsynced:
		// the next Sync must fsync new/ before the journal records
		// this delivery. (A file this Exporter wrote is already covered.)
		e.mu.Lock()
		if _, mine := e.renamedAt[name]; !mine && strings.HasPrefix(ref, "new/") {
			e.dirty = true
		}
		e.mu.Unlock()
		return ref, nil
	}
	// Sync's rename replaces a file or a link at the final name but fails
	// on a folder: find that now, so it fails this message, not the batch.
	if dirAtNew {
		return "", fmt.Errorf("a folder sits at %s", e.w.Path("new/"+name))
	}
	return "", nil
}

// Stream starts writing the message with key into a fresh tmp file,
// tmp/<key>.<random>.tmp, as Put would, and returns the Stream that takes
// its bytes. If the Maildir already holds the key, in new/ or in cur/,
// Stream writes nothing and returns a nil Stream and the copy's Ref.
// Commit checks the length, closes the file and stages it for the next
// Sync, exactly as Put does once it has copied a body; Abort, or Close of
// the Exporter, removes it. A read-only Exporter fails with
// exporters.ErrReadOnly and writes nothing. account is not used, as Put
// does not use msg.Account: a Maildir names its files after the key alone.
func (e *Exporter) Stream(ctx context.Context, _, key string) (exporters.Stream, exporters.Delivery, error) {
	if e.readOnly {
		return nil, exporters.Delivery{}, fmt.Errorf("maildir: stream %s into %s: %w", key, e.dir, exporters.ErrReadOnly)
	}
	name, err := fileName(key)
	if err != nil {
		return nil, exporters.Delivery{}, fmt.Errorf("maildir: stream into %s: %w", e.dir, err)
	}
	wrap := func(err error) error {
		return fmt.Errorf("maildir: stream %s into %s: %w", key, e.dir, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, exporters.Delivery{}, wrap(err)
	}
	if err := e.begin(); err != nil {
		return nil, exporters.Delivery{}, wrap(err)
	}
	defer e.ops.RUnlock()
	ref, err := e.held(name)
	if err != nil || ref != "" {
		if err != nil {
			err = wrap(err)
		}
		return nil, exporters.Delivery{Ref: ref}, err
	}
	t, err := e.w.CreateTemp(&e.streams, func() string { return "tmp/" + key + "." + durable.RandomHex() + durable.TmpSuffix }, 0,
		fmt.Sprintf("maildir: stream %s into %s", key, e.dir))
	if err != nil {
		return nil, exporters.Delivery{}, wrap(err)
	}
	return &stream{Temp: t, e: e, key: key, name: name}, exporters.Delivery{}, nil
}

// stream is a message being written into tmp/ by Stream.
type stream struct {
	*durable.Temp
	e         *Exporter
	key, name string
}

var _ exporters.Ender = (*stream)(nil)

// End closes the file now, for a Commit later (exporters.Ender).
func (s *stream) End(ctx context.Context, size int64) error {
	return s.Temp.End(ctx, size, s.wrap)
}

func (s *stream) wrap(err error) error {
	return fmt.Errorf("maildir: put %s into %s: %w", s.key, s.e.dir, err)
}

func (s *stream) Commit(ctx context.Context, size int64) (exporters.Delivery, error) {
	e, wrap := s.e, s.wrap
	if err := e.begin(); err != nil {
		s.Abort() // Close has aborted it already
		return exporters.Delivery{}, wrap(err)
	}
	defer e.ops.RUnlock()
	if _, err := s.Finish(ctx, size, wrap); err != nil {
		return exporters.Delivery{}, err
	}
	if !e.staged.Add("new/"+s.name, s.Name()) {
		e.w.Remove(s.Name()) // another Put of the key got there first
	}
	return exporters.Delivery{Ref: "new/" + s.name}, nil
}

// write copies msg into a fresh tmp file, not yet durable, and records it
// for the next Sync to publish. Of several Puts of the same key at once,
// one file is kept.
func (e *Exporter) write(ctx context.Context, name string, msg *exporters.Message) error {
	tmpName := func() string { return "tmp/" + msg.Key + "." + durable.RandomHex() + durable.TmpSuffix }
	tmp, err := e.w.Stage(ctx, tmpName, msg.Body)
	if err != nil {
		return err
	}
	if !e.staged.Add("new/"+name, tmp) {
		e.w.Remove(tmp)
	}
	return nil
}

// Sync makes every Put that returned nil durable. It is the group-commit
// barrier: the files written since the last Sync are made durable
// together (one syncfs(2) on Linux instead of one fsync per message), only
// then renamed from tmp/ into new/, and new/ is fsynced. A file in new/ is
// therefore always complete and durable, whatever the moment of a crash;
// a crash before Sync leaves only files in tmp/, which the next run
// writes again and New removes once they are StaleTmpAge old. Messages
// that a reader moved to cur/ are the reader's to make durable. A
// read-only Exporter fails with exporters.ErrReadOnly.
func (e *Exporter) Sync(ctx context.Context) error {
	if e.readOnly {
		return fmt.Errorf("maildir: sync %s: %w", e.dir, exporters.ErrReadOnly)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("maildir: sync %s: %w", e.dir, err)
	}
	if err := e.begin(); err != nil {
		return fmt.Errorf("maildir: sync %s: %w", e.dir, err)
	}
	defer e.ops.RUnlock()
	if err := e.publish(); err != nil {
		return fmt.Errorf("maildir: sync %s: %w", e.dir, err)
	}
	return nil
}

// publish makes the pending files durable, renames them into new/ and
// fsyncs new/. A Put that finishes meanwhile waits for the next publish.
func (e *Exporter) publish() error {
	e.pubMu.Lock()
	defer e.pubMu.Unlock()
	e.mu.Lock()
	dirty := e.dirty || e.staged.Len() > 0
	e.dirty = false
	e.mu.Unlock()
	if !dirty {
		return nil
	}
	fail := func(err error) error {
		e.mu.Lock()
		e.dirty = true
		e.mu.Unlock()
		return err
	}
	err := e.staged.Publish(e.w, func(dst string) {
		e.mu.Lock()
		e.renamedAt[strings.TrimPrefix(dst, "new/")] = e.scans
		e.mu.Unlock()
	})
	if err != nil {
		return fail(err)
	}
	if err := e.w.SyncDir("new"); err != nil {
		return fail(err)
	}
	return nil
}

// Close releases the Maildir. It waits for operations in flight, does not
// Sync, and returns nil when called again.
func (e *Exporter) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	e.ops.Lock()
	defer e.ops.Unlock()
	// Streams still open are aborted: their messages were never
	// committed, and nothing of them may stay.
	e.streams.AbortAll()
	// Messages Put since the last Sync are published now, durably: a
	// file is never left half-way between tmp/ and new/. A read-only
	// Exporter has none, and writes nothing.
	var perr error
	if !e.readOnly {
		perr = e.publish()
	}
	e.w.CloseDirs()
	if err := e.root.Close(); err != nil {
		return fmt.Errorf("maildir: close %s: %w", e.dir, err)
	}
	if perr != nil {
		return fmt.Errorf("maildir: close %s: %w", e.dir, perr)
	}
	return nil
}

// Has reports whether the Maildir holds the message with key, in new/ or
// in cur/, and returns its Ref ("new/<key>.popmigrate" or
// "cur/<key>.popmigrate:2,FLAGS"). A file found is complete: Put makes it
// visible only by renaming a finished file.
//
// Has stats new/ and looks cur/ up in an index read once per Exporter and
// kept up to date; it reads cur/ again only when the index is stale (a file
// it lists is gone, or a file this Exporter wrote left new/).
func (e *Exporter) Has(ctx context.Context, key string) (exporters.Delivery, bool, error) {
	name, err := fileName(key)
	if err != nil {
		return exporters.Delivery{}, false, fmt.Errorf("maildir: has in %s: %w", e.dir, err)
	}
	if err := ctx.Err(); err != nil {
		return exporters.Delivery{}, false, fmt.Errorf("maildir: has %s in %s: %w", key, e.dir, err)
	}
	if err := e.begin(); err != nil {
		return exporters.Delivery{}, false, fmt.Errorf("maildir: has %s in %s: %w", key, e.dir, err)
	}
	defer e.ops.RUnlock()
	ref, _, err := e.locate(name, false)
	if err != nil {
		return exporters.Delivery{}, false, fmt.Errorf("maildir: has %s in %s: %w", key, e.dir, err)
	}
	if ref == "" {
		return exporters.Delivery{}, false, nil
	}
	return exporters.Delivery{Ref: ref}, true, nil
}

// Open returns the message stored at ref, which must be "new/<name>" or
// "cur/<name>" as returned by Put or Has; anything else (another folder,
// "..", a name this exporter does not write) fails with ErrInvalidRef. If
// the file has moved since (new/ to cur/, or its flags changed), Open finds
// it by its key. It returns an error wrapping exporters.ErrNotFound when the
// message is gone. The caller closes the reader.
func (e *Exporter) Open(ctx context.Context, ref string) (io.ReadCloser, error) {
	name, err := parseRef(ref)
	if err != nil {
		return nil, fmt.Errorf("maildir: open %q in %s: %w", ref, e.dir, err)
	}
	wrap := func(err error) error {
		return fmt.Errorf("maildir: open %s in %s: %w", ref, e.dir, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, wrap(err)
	}
	if err := e.begin(); err != nil {
		return nil, wrap(err)
	}
	defer e.ops.RUnlock()

	if tmp, staged := e.staged.Lookup("new/" + name); staged && ref == "new/"+name {
		// Put but not yet published by Sync.
		f, err := e.w.OpenRegular(tmp)
		if err != nil {
			return nil, wrap(err)
		}
		return f, nil
	}
	f, err := e.w.OpenRegular(ref)
	if err == nil {
		return f, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, wrap(err)
	}
	moved, _, err := e.locate(name, false)
	if err != nil {
		return nil, wrap(err)
	}
	if moved == "" {
		return nil, wrap(exporters.ErrNotFound)
	}
	f, err = e.w.OpenRegular(moved)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, wrap(exporters.ErrNotFound)
	}
	if err != nil {
		return nil, wrap(err)
	}
	return f, nil
}

// begin starts an operation: it holds ops shared and fails if the Exporter
// is closed. The caller calls e.ops.RUnlock when begin returns nil.
func (e *Exporter) begin() error {
	e.ops.RLock()
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed {
		e.ops.RUnlock()
		return exporters.ErrClosed
	}
	return nil
}

// locate returns the Ref of the message file with base name name, or "" if
// the Maildir does not hold it, and then also whether a folder sits at
// new/name (which Put's rename would fail on). The caller holds ops
// shared.
//
// With indexNew (Put and Stream), a name that new/ did not hold when it
// was first read, and that this Exporter has not renamed there since, is
// taken as absent from new/ without a lookup: one fstatat(2) less per new
// message. Another writer sharing the folder may have put it there since;
// the message is then written again under the same name, and the rename
// replaces that file with the same message, as when two Puts of one key
// race. Without indexNew (Has, Open), new/ is looked up each time, so that
// a reader sees what writers stored after it opened the folder.
func (e *Exporter) locate(name string, indexNew bool) (ref string, dirAtNew bool, err error) {
	if _, staged := e.staged.Lookup("new/" + name); staged {
		return "new/" + name, false, nil
	}
	maybeInNew, listed := true, false
	if indexNew {
		e.mu.Lock()
		newRead := e.inNew != nil
		e.mu.Unlock()
		if !newRead {
			if err := e.scanNew(); err != nil {
				return "", false, err
			}
		}
		e.mu.Lock()
		_, listed = e.inNew[name]
		_, mine := e.renamedAt[name]
		e.mu.Unlock()
		maybeInNew = listed || mine
	}
	if maybeInNew {
		typ, err := e.w.LstatType("new/" + name)
		switch {
		case err == nil && typ.IsRegular():
			return "new/" + name, false, nil
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			return "", false, err
		}
		dirAtNew = err == nil && typ.IsDir()
		// Anything else at new/name (a symbolic link, a folder) is
		// not a message: Put's rename replaces a link, and fails on a
		// folder.
		if listed && err != nil {
			// Gone since new/ was read: a reader has most likely
			// moved it to cur/, perhaps after cur/ was read.
			e.mu.Lock()
			delete(e.inNew, name)
			e.mu.Unlock()
		} else {
			listed = false
		}
	}

	e.mu.Lock()
	loaded := e.cur != nil
	full, indexed := e.cur[name]
	at, renamed := e.renamedAt[name]
	// Renamed into new/ after the last scan of cur/ started, or seen in
	// new/ and gone from there: cur/ may hold it under a name its index
	// lacks.
	stale := renamed && at == e.scans || listed
	e.mu.Unlock()

	if !loaded {
		if err := e.scanCur(); err != nil {
			return "", false, err
		}
		e.mu.Lock()
		full, indexed = e.cur[name]
		e.mu.Unlock()
		stale = false // the scan started after any rename of ours
	}
	if indexed {
		typ, err := e.w.LstatType("cur/" + full)
		if err == nil && typ.IsRegular() {
			return "cur/" + full, false, nil
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", false, err
		}
		stale = true // gone, or renamed with other flags
	}
	if !stale {
		return "", dirAtNew, nil
	}
	if err := e.scanCur(); err != nil {
		return "", false, err
	}
	e.mu.Lock()
	full, indexed = e.cur[name]
	e.mu.Unlock()
	if !indexed {
		return "", dirAtNew, nil
	}
	return "cur/" + full, false, nil
}

// scanCur reads cur/ and replaces the index with the message files this
// exporter writes (<key>.popmigrate with any info part).
func (e *Exporter) scanCur() error {
	e.scanMu.Lock()
	defer e.scanMu.Unlock()
	e.mu.Lock()
	e.scans++
	e.mu.Unlock()

	index := map[string]string{}
	err := e.readNames("cur", func(full string) {
		base, _ := splitInfo(full)
		if isMessageName(base) {
			index[base] = full
		}
	})
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.cur = index
	e.mu.Unlock()
	return nil
}

// scanNew reads new/ into inNew: the names of message files this exporter
// writes, whatever sits there under that name (a folder too, which locate
// then finds). Concurrent first calls read it once each; the last wins,
// and either is a correct reading.
func (e *Exporter) scanNew() error {
	index := map[string]struct{}{}
	err := e.readNames("new", func(name string) {
		if isMessageName(name) {
			index[name] = struct{}{}
		}
	})
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.inNew = index
	e.mu.Unlock()
	return nil
}

// readNames calls add with the name of each entry of the folder sub.
func (e *Exporter) readNames(sub string, add func(name string)) error {
	d, err := e.root.Open(sub)
	if err != nil {
		return fmt.Errorf("read %s: %w", e.path(sub), err)
	}
	defer d.Close()
	for {
		names, err := d.Readdirnames(readDirN)
		for _, name := range names {
			add(name)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", e.path(sub), err)
		}
	}
}

// isMessageName reports whether base (a file name without its info part)
// is one this exporter writes: <key>.popmigrate with a valid key.
func isMessageName(base string) bool {
	if !strings.HasSuffix(base, Suffix) {
		return false
	}
	_, err := fileName(strings.TrimSuffix(base, Suffix))
	return err == nil
}

// splitInfo splits a Maildir file name into its base name and its info
// part (":2,FLAGS"), which may be empty.
//
// QUIRK: some Maildir tools write the info part after ';' or '!' instead
// of ':' on file systems that do not allow ':' in names (mbsync's
// InfoDelimiter, for example). Message names never hold either character,
// so any of the three ends the base name.
//
// QUIRK: a reader may move a file to cur/ without adding an info part; the
// whole name is then the base name.
func splitInfo(name string) (base, info string) {
	if i := strings.IndexAny(name, ":;!"); i >= 0 {
		return name[:i], name[i:]
	}
	return name, ""
}

// fileName returns the base name of the message file for key, or
// exporters.ErrInvalidKey.
func fileName(key string) (string, error) {
	if !exporters.ValidKey(key) {
		return "", fmt.Errorf("%w: %q", exporters.ErrInvalidKey, key)
	}
	return key + Suffix, nil
}

// parseRef checks that ref is "new/<key>.popmigrate" or
// "cur/<key>.popmigrate" with an optional info part, and returns the base
// name "<key>.popmigrate".
func parseRef(ref string) (string, error) {
	sub, name, ok := strings.Cut(ref, "/")
	if !ok || (sub != "new" && sub != "cur") {
		return "", ErrInvalidRef
	}
	base, info := splitInfo(name)
	if sub == "new" && info != "" {
		return "", ErrInvalidRef
	}
	key, ok := strings.CutSuffix(base, Suffix)
	if !ok {
		return "", ErrInvalidRef
	}
	if _, err := fileName(key); err != nil {
		return "", ErrInvalidRef
	}
	if strings.ContainsAny(info, "/\x00") || len(name) > 255 {
		return "", ErrInvalidRef
	}
	return base, nil
}

// path returns the absolute path of rel, for error messages.
func (e *Exporter) path(rel string) string {
	return filepath.Join(e.dir, filepath.FromSlash(rel))
}
