// Package eml writes messages as .eml files: one file per message, in one
// folder per account, under a root folder given as the destination
// "eml:ROOT". Any mail program opens an .eml file, and a listing of an
// account's folder sorts its mail by date.
//
// # Layout
//
//	ROOT/<account-dir>/<YYYYMMDDTHHMMSSZ>-<key>.eml
//	ROOT/<account-dir>/.tmp/            temporary files while a message is written
//
// <account-dir> is AccountDir(msg.Account): the account id with every byte
// outside [A-Za-z0-9._@+-] replaced by '_' and a leading '.' replaced too
// (so never "." or ".." and never hidden), cut to 100 bytes. When anything
// was replaced or cut, '~' and 12 hex digits of the sha256 of the raw
// account id are appended: two accounts never share a folder, since an
// account id kept as it is never holds '~'.
//
// The date is the message's date as every destination gives it
// (mailhdr's FromReceived policy: the newest usable Received date, else
// the Date header, else msg.Received), in UTC, from the header fields in
// the first MaxHeaderScan bytes; the IMAP INTERNALDATE and the mbox From_
// line of the same message carry the same date. Dates are read as RFC
// 5322 has them, with net/mail's leniencies and the obsolete forms of its
// section 4.3 (see package mailhdr), and never in the machine's time zone.
// <key> is the message key (exporters.MessageKey gives 32
// hex digits). Nothing the server sends decides a name: the UIDL is never
// used, and the Date header only ever gives digits.
//
// # Bytes stored
//
// An .eml file holds exactly msg.Body, popmigrate's canonical form: the
// message after dot-unstuffing, with every CRLF turned into LF. The files
// therefore have LF line endings, not the CRLF of RFC 5322 on the wire.
// This is on purpose: a message has the same bytes, and so the same
// sha256, in an .eml file, a Maildir and an mbox, and one checksum in the
// journal verifies every copy. Mail programs on Unix read LF files, as
// they read Maildir files. A CR that is not before an LF (and a CR LF
// that was CR CR LF on the wire) is kept as it is.
//
// # Finding a stored message
//
// Because the name starts with a date, "is message KEY already here?" is
// not a stat of a name known in advance: the Exporter keeps an index of
// each account folder, key -> file name, read with one directory listing
// the first time it touches that folder and kept up to date by its own
// Puts. Put looks in the index of the message's account folder; Has, which
// is given only a key, reads every account folder under ROOT the first
// time it misses, once per Exporter. An index does not see files that
// another process writes into a folder after it was read.
//
// # Durability
//
// Put writes <account-dir>/.tmp/<key>.<random>.tmp (created exclusively,
// mode 0600), checks its length, fsyncs and closes it, and renames it into
// the account folder. Sync fsyncs every account folder a message was
// renamed into since the last Sync, and ROOT when an account folder was
// created. A file is complete whenever it is visible under its final name:
// Has never finds a torn message. Temporary files older than StaleTmpAge,
// left by a crash, are removed when the Exporter first reads the account
// folder. Folders are created with mode 0700.
//
// Stream writes the same temporary file as the message arrives from the
// server, so that its bytes are written once, with no spool copy; it
// keeps the first MaxHeaderScan bytes, and its Commit names the file from
// them as Put would and stages it as Put does. A message whose header has
// no usable date is named after the time of Commit, where Put uses
// msg.Received (see Exporter.Stream).
//
// # Read-only mode
//
// With Options.ReadOnly, New opens an existing root folder for reading
// only, for verification: it creates nothing, writes nothing (no probe, no
// removal of temporary files) and opens every file read-only, so that an
// archive on read-only media can be checked and checking never changes
// what it checks. Has, Open and List work as in write mode; Put and Sync
// fail with exporters.ErrReadOnly.
package eml

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/internal/durable"
	"github.com/popmigrate/popmigrate/exporters/internal/mailhdr"
)

// Ext ends the name of every message file the exporter writes.
const Ext = ".eml"

// TmpDir is the folder, inside each account folder, that holds the
// temporary files of messages being written.
const TmpDir = ".tmp"

// StaleTmpAge is the age after which a leftover temporary file is removed.
const StaleTmpAge = 36 * time.Hour

// MaxKeyLen is the longest message key Put accepts.
const MaxKeyLen = exporters.MaxKeyLen

// MaxHeaderScan is how many bytes at the start of a message Put reads,
// and a Stream keeps, to find its date. Received and Date fields that
// start later are not seen and the file is named after msg.Received (the
// time of Commit for a Stream).
const MaxHeaderScan = 64 << 10

// DateLayout is the layout (in the sense of time.Format) of the date that
// starts every file name, always in UTC.
const DateLayout = "20060102T150405Z"

const (
	maxAccountName = 100  // bytes of an account folder name before its hash
	accountHashLen = 12   // hex digits of the hash appended to a changed name
	readDirN       = 1024 // directory entries read per call
	dateLen        = len(DateLayout)
)

// ErrInvalidRef is returned by Open for a reference that is not
// "<account-dir>/<file name>" as this exporter makes them.
//
// The errors every destination shares are in package exporters: every
// method called after Close wraps exporters.ErrClosed; Put and Has wrap
// exporters.ErrInvalidKey for a message key that cannot be part of a file
// name (empty, longer than MaxKeyLen, or with characters other than ASCII
// letters, digits, '-' and '_'); Put wraps exporters.ErrShortBody when the
// body ends before Size bytes; Put and Sync of an Exporter opened with
// Options.ReadOnly wrap exporters.ErrReadOnly.
var ErrInvalidRef = errors.New("eml: invalid reference")

// Options tunes an Exporter. A nil *Options means the defaults.
type Options struct {
	// ID is the destination id recorded in the journal. Empty means
	// "eml:" followed by the absolute path of the root folder.
	ID string
	// ReadOnly opens an existing root folder for reading only (see New):
	// the Exporter never creates, changes or removes anything under it.
	// The destination id is the same as in write mode.
	ReadOnly bool
}

// Exporter writes .eml files under one root folder. Its methods are safe
// for use by several goroutines at once.
type Exporter struct {
	dir      string // absolute path of the root folder
	id       string
	readOnly bool
	root     *os.Root        // every file operation goes through it: no escape by symlink
	w        *durable.Writer // writes, fsyncs and opens through root

	// ops is held shared by every operation and exclusively by Close, so
	// Close waits for operations in flight before releasing root.
	ops sync.RWMutex

	loadMu sync.Mutex // serialises the reading of account folders

	mu        sync.Mutex // guards the fields below
	closed    bool
	accounts  map[string]map[string]string // account folder -> key -> file name; set once the folder was read
	allLoaded bool                         // every account folder under root was read
	dirty     map[string]bool              // account folders renamed into since the last Sync
	rootDirty bool                         // an account folder was created since the last Sync
	inflight  map[string]chan struct{}     // "<account-dir>/<key>" of each Put writing now; closed when it ends
	streams   durable.Temps                // Streams neither committed nor aborted; Close aborts them
	// staged holds the messages Put wrote to their account's TmpDir, keyed
	// by ref, until the next Sync (or Close) publishes them.
	staged durable.Staged
	pubMu  sync.Mutex // serialises publish: one batch is renamed once
	reads  int        // account folders listed so far (for tests)
}

var (
	_ exporters.Exporter = (*Exporter)(nil)
	_ exporters.Finder   = (*Exporter)(nil)
	_ exporters.Opener   = (*Exporter)(nil)
	_ exporters.Streamer = (*Exporter)(nil)
)

// New opens the root folder for writing .eml files, creating it (mode
// 0700) where it is missing; an existing folder keeps its mode. It fails,
// naming the path, when root is not a folder or cannot be written. Account
// folders are created by the first Put for each account.
//
// With opts.ReadOnly, New instead opens an existing root folder for
// reading only: a missing root is an error naming its path and wrapping
// fs.ErrNotExist, nothing is created, probed or removed (stale temporary
// files included), and every file is opened read-only. Put and Sync then
// fail with exporters.ErrReadOnly.
//
// The caller closes the Exporter.
func New(root string, opts *Options) (*Exporter, error) {
	if root == "" {
		return nil, errors.New("eml: empty folder path")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("eml: %s: %w", root, err)
	}
	readOnly := opts != nil && opts.ReadOnly
	if !readOnly {
		if err := os.MkdirAll(abs, 0o700); err != nil {
			return nil, fmt.Errorf("eml: create %s: %w", abs, err)
		}
	}
	r, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("eml: open %s: %w", abs, err)
	}
	e := &Exporter{
		dir:      abs,
		id:       "eml:" + abs,
		readOnly: readOnly,
		root:     r,
		w:        &durable.Writer{Root: r},
		accounts: map[string]map[string]string{},
		dirty:    map[string]bool{},
		inflight: map[string]chan struct{}{},
	}
	if opts != nil && opts.ID != "" {
		e.id = opts.ID
	}
	if readOnly {
		return e, nil
	}
	if err := e.probe(); err != nil {
		r.Close()
		return nil, err
	}
	return e, nil
}

// probe creates and removes a hidden file in the root folder, so that a
// read-only folder or wrong permissions fail New rather than the first Put.
func (e *Exporter) probe() error {
	name := ".popmigrate-probe-" + durable.RandomHex() + durable.TmpSuffix
	f, err := e.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("eml: %s is not writable: %w", e.dir, err)
	}
	cerr := f.Close()
	if err := e.root.Remove(name); err != nil {
		return fmt.Errorf("eml: remove %s: %w", e.w.Path(name), err)
	}
	if cerr != nil {
		return fmt.Errorf("eml: %s: %w", e.w.Path(name), cerr)
	}
	return nil
}

// Dir returns the absolute path of the root folder.
func (e *Exporter) Dir() string { return e.dir }

// Properties returns Kind "eml" and the destination id.
func (e *Exporter) Properties() exporters.Properties {
	return exporters.Properties{Kind: "eml", ID: e.id}
}

// Put writes msg to <account-dir>/<date>-<key>.eml and returns that
// reference. If the account folder already holds the key, under whatever
// date, Put returns its reference and writes nothing.
//
// The file is complete, fsynced and closed when it appears under its final
// name; call Sync to make the rename durable. Put checks ctx between chunks
// of the copy and before the rename; on any error, cancellation included,
// it removes its temporary file and no message file appears. Puts of the
// same key from several goroutines at once leave one copy. A read-only
// Exporter fails with exporters.ErrReadOnly and writes nothing.
func (e *Exporter) Put(ctx context.Context, msg *exporters.Message) (exporters.Delivery, error) {
	if msg == nil || msg.Body == nil {
		return exporters.Delivery{}, fmt.Errorf("eml: put into %s: nil message or body", e.dir)
	}
	if e.readOnly {
		return exporters.Delivery{}, fmt.Errorf("eml: put %s (account %q) into %s: %w", msg.Key, msg.Account, e.dir, exporters.ErrReadOnly)
	}
	if err := checkKey(msg.Key); err != nil {
		return exporters.Delivery{}, fmt.Errorf("eml: put into %s: %w", e.dir, err)
	}
	acct := AccountDir(msg.Account)
	wrap := func(err error) error {
		return fmt.Errorf("eml: put %s (account %q) into %s: %w", msg.Key, msg.Account, e.dir, err)
	}
	if err := ctx.Err(); err != nil {
		return exporters.Delivery{}, wrap(err)
	}
	if err := e.begin(); err != nil {
		return exporters.Delivery{}, wrap(err)
	}
	defer e.ops.RUnlock()

	date, err := messageDate(msg)
	if err != nil {
		return exporters.Delivery{}, wrap(err)
	}
	release, err := e.claim(ctx, acct+"/"+msg.Key)
	if err != nil {
		return exporters.Delivery{}, wrap(err)
	}
	defer release()

	if err := e.loadAccount(acct, true); err != nil {
		return exporters.Delivery{}, wrap(err)
	}
	ref, err := e.lookup(acct, msg.Key)
	if err != nil {
		return exporters.Delivery{}, wrap(err)
	}
	if ref != "" {
		return exporters.Delivery{Ref: ref}, nil
	}
	name := fileName(date, msg.Key)
	if err := e.checkFinal(acct, name); err != nil {
		return exporters.Delivery{}, wrap(err)
	}
	// The file is written now and made durable, then renamed to its
	// final name, by the next Sync: see publish.
	tmp, err := e.w.Stage(ctx, e.tmpName(acct, msg.Key), msg.Body)
	if err != nil {
		return exporters.Delivery{}, wrap(err)
	}
	return exporters.Delivery{Ref: e.place(acct, msg.Key, name, tmp)}, nil
}

// fileName returns the name of the file of the message with key, dated
// date: "<date>-<key>.eml".
func fileName(date time.Time, key string) string {
	return date.Format(DateLayout) + "-" + key + Ext
}

// tmpName returns a function that gives a fresh temporary file name for
// key in the account folder acct: <acct>/.tmp/<key>.<random>.tmp.
func (e *Exporter) tmpName(acct, key string) func() string {
	return func() string {
		return acct + "/" + TmpDir + "/" + key + "." + durable.RandomHex() + durable.TmpSuffix
	}
}

// checkFinal fails when a folder sits at the final name of a message file:
// Sync's rename replaces a file or a link there but fails on a folder, and
// finding it now fails this message, not the batch.
func (e *Exporter) checkFinal(acct, name string) error {
	if fi, err := e.root.Lstat(acct + "/" + name); err == nil && fi.IsDir() {
		return fmt.Errorf("a folder sits at %s", e.w.Path(acct+"/"+name))
	}
	return nil
}

// place stages tmp, a complete temporary file of the message with key in
// the account folder acct, for the next Sync to publish as name, records
// it in the index and returns its reference. The caller holds the claim of
// key and found no copy of it. When the reference is already staged
// (claim makes this unlikely), tmp is removed: one copy is kept.
func (e *Exporter) place(acct, key, name, tmp string) string {
	ref := acct + "/" + name
	if !e.staged.Add(ref, tmp) {
		e.root.Remove(tmp)
		return ref
	}
	e.mu.Lock()
	e.accounts[acct][key] = name
	e.dirty[acct] = true
	e.mu.Unlock()
	return ref
}

// claim waits until no other Put of this Exporter is writing id, then
// marks id as being written. The caller calls release when done.
func (e *Exporter) claim(ctx context.Context, id string) (release func(), err error) {
	for {
		e.mu.Lock()
		busy, ok := e.inflight[id]
		if !ok {
			done := make(chan struct{})
			e.inflight[id] = done
			e.mu.Unlock()
			return func() {
				e.mu.Lock()
				delete(e.inflight, id)
				e.mu.Unlock()
				close(done)
			}, nil
		}
		e.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-busy:
		}
	}
}

// lookup returns the reference of the file holding key in the account
// folder acct, which must be loaded, or "" if there is none. The caller
// holds ops shared.
func (e *Exporter) lookup(acct, key string) (string, error) {
	e.mu.Lock()
	name, ok := e.accounts[acct][key]
	e.mu.Unlock()
	if !ok {
		return "", nil
	}
	ref := acct + "/" + name
	if _, staged := e.staged.Lookup(ref); staged {
		return ref, nil
	}
	fi, err := e.root.Lstat(ref)
	switch {
	case err == nil && fi.Mode().IsRegular():
		return ref, nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return "", err
	}
	// Gone since the folder was read, or not a file any more: not held.
	// Put writes the message again; Has reports it missing.
	return "", nil
}

// loadAccount reads the account folder acct into the index, once per
// Exporter, and removes stale temporary files in it (not when read-only).
// With create, it first creates the folder and its TmpDir where they are
// missing; without, a missing folder is left unread. The caller holds ops
// shared.
func (e *Exporter) loadAccount(acct string, create bool) error {
	e.mu.Lock()
	_, loaded := e.accounts[acct]
	e.mu.Unlock()
	if loaded {
		return nil
	}
	e.loadMu.Lock()
	defer e.loadMu.Unlock()
	e.mu.Lock()
	_, loaded = e.accounts[acct]
	e.mu.Unlock()
	if loaded {
		return nil
	}
	if create {
		created, err := e.mkdir(acct)
		if err != nil {
			return err
		}
		if created {
			e.mu.Lock()
			e.rootDirty = true
			e.mu.Unlock()
		}
		if _, err := e.mkdir(acct + "/" + TmpDir); err != nil {
			return err
		}
	}
	index, err := e.readAccount(acct)
	if err != nil {
		if !create && errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	if !e.readOnly {
		err = e.w.RemoveStale(acct+"/"+TmpDir, time.Now().Add(-StaleTmpAge))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	e.mu.Lock()
	e.accounts[acct] = index
	e.mu.Unlock()
	return nil
}

// mkdir creates the folder name (mode 0700) and reports whether it did;
// an existing folder, or a symbolic link to one inside the root, is kept.
func (e *Exporter) mkdir(name string) (bool, error) {
	err := e.root.Mkdir(name, 0o700)
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return false, fmt.Errorf("create %s: %w", e.w.Path(name), err)
	}
	fi, err := e.root.Stat(name)
	if err != nil {
		return false, fmt.Errorf("%s: %w", e.w.Path(name), err)
	}
	if !fi.IsDir() {
		return false, fmt.Errorf("%s is not a folder", e.w.Path(name))
	}
	return false, nil
}

// readAccount lists the account folder acct and returns its message files
// by key. Other entries (TmpDir, hidden files, files another program put
// there) are ignored. If two files hold one key, the one that sorts first
// wins. An error for a missing folder wraps fs.ErrNotExist.
func (e *Exporter) readAccount(acct string) (map[string]string, error) {
	d, err := e.root.Open(acct)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", e.w.Path(acct), err)
	}
	defer d.Close()
	e.mu.Lock()
	e.reads++
	e.mu.Unlock()
	index := map[string]string{}
	for {
		ents, err := d.ReadDir(readDirN)
		for _, ent := range ents {
			name := ent.Name()
			key, ok := parseName(name)
			if !ok || !ent.Type().IsRegular() {
				continue
			}
			if prev, dup := index[key]; !dup || name < prev {
				index[key] = name
			}
		}
		if err == io.EOF {
			return index, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", e.w.Path(acct), err)
		}
	}
}

// loadAll reads every account folder under the root that is not in the
// index yet, once per Exporter. The caller holds ops shared.
func (e *Exporter) loadAll() error {
	e.mu.Lock()
	done := e.allLoaded
	e.mu.Unlock()
	if done {
		return nil
	}
	d, err := e.root.Open(".")
	if err != nil {
		return fmt.Errorf("read %s: %w", e.dir, err)
	}
	defer d.Close()
	for {
		ents, err := d.ReadDir(readDirN)
		for _, ent := range ents {
			if !ValidAccountDir(ent.Name()) || !(ent.IsDir() || ent.Type()&fs.ModeSymlink != 0) {
				continue
			}
			if err := e.loadAccount(ent.Name(), false); err != nil {
				return err
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", e.dir, err)
		}
	}
	e.mu.Lock()
	e.allLoaded = true
	e.mu.Unlock()
	return nil
}

// Sync makes every Put that returned nil durable: the group-commit
// barrier. The files written since the last Sync are made durable together
// (one syncfs(2) on Linux instead of one fsync per message), only then
// renamed to their final names, and the account folders (and the root, if
// an account folder was created) are fsynced. A crash before Sync leaves
// only temporary files, which the next run writes again. On error the
// folders not synced are tried again by the next Sync. A read-only
// Exporter fails with exporters.ErrReadOnly.
func (e *Exporter) Sync(ctx context.Context) error {
	if e.readOnly {
		return fmt.Errorf("eml: sync %s: %w", e.dir, exporters.ErrReadOnly)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("eml: sync %s: %w", e.dir, err)
	}
	if err := e.begin(); err != nil {
		return fmt.Errorf("eml: sync %s: %w", e.dir, err)
	}
	defer e.ops.RUnlock()
	return e.publish(ctx)
}

// publish makes the messages Put since the last publish durable with one
// barrier, renames them to their final names (replacing whatever sits
// there, a symbolic link included: it never writes through one), and
// fsyncs every account folder renamed into, and the root if an account
// folder was created. A file under its final name is therefore always
// complete and durable.
func (e *Exporter) publish(ctx context.Context) error {
	e.pubMu.Lock()
	defer e.pubMu.Unlock()
	if err := e.staged.Publish(e.w, nil); err != nil {
		return fmt.Errorf("eml: sync %s: %w", e.dir, err)
	}
	e.mu.Lock()
	dirs := make([]string, 0, len(e.dirty))
	for d := range e.dirty {
		dirs = append(dirs, d)
	}
	clear(e.dirty)
	rootDirty := e.rootDirty
	e.rootDirty = false
	e.mu.Unlock()
	slices.Sort(dirs)
	if rootDirty {
		dirs = append(dirs, ".")
	}
	for i, d := range dirs {
		err := ctx.Err()
		if err == nil {
			err = e.w.SyncDir(d)
		}
		if err != nil {
			e.mu.Lock()
			for _, left := range dirs[i:] {
				if left == "." {
					e.rootDirty = true
				} else {
					e.dirty[left] = true
				}
			}
			e.mu.Unlock()
			return fmt.Errorf("eml: sync %s: %w", e.dir, err)
		}
	}
	return nil
}

// Close releases the root folder. It waits for operations in flight, does
// not Sync, and returns nil when called again.
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
	// file is never left between its temporary and its final name.
	var perr error
	if !e.readOnly {
		perr = e.publish(context.Background())
	}
	if err := e.root.Close(); err != nil {
		return fmt.Errorf("eml: close %s: %w", e.dir, err)
	}
	if perr != nil {
		return fmt.Errorf("eml: close %s: %w", e.dir, perr)
	}
	return nil
}

// Has reports whether any account folder holds the message with key, and
// returns its reference. A file found is complete: Put makes it visible
// only by renaming a finished file.
//
// Has looks the key up in the index; the first time it misses, it reads
// every account folder under the root that this Exporter has not read yet
// (so its first miss costs one listing per account folder), and never
// again.
func (e *Exporter) Has(ctx context.Context, key string) (exporters.Delivery, bool, error) {
	if err := checkKey(key); err != nil {
		return exporters.Delivery{}, false, fmt.Errorf("eml: has in %s: %w", e.dir, err)
	}
	wrap := func(err error) error {
		return fmt.Errorf("eml: has %s in %s: %w", key, e.dir, err)
	}
	if err := ctx.Err(); err != nil {
		return exporters.Delivery{}, false, wrap(err)
	}
	if err := e.begin(); err != nil {
		return exporters.Delivery{}, false, wrap(err)
	}
	defer e.ops.RUnlock()
	for pass := 0; pass < 2; pass++ {
		e.mu.Lock()
		var accts []string
		for acct, index := range e.accounts {
			if _, ok := index[key]; ok {
				accts = append(accts, acct)
			}
		}
		all := e.allLoaded
		e.mu.Unlock()
		slices.Sort(accts)
		for _, acct := range accts {
			ref, err := e.lookup(acct, key)
			if err != nil {
				return exporters.Delivery{}, false, wrap(err)
			}
			if ref != "" {
				return exporters.Delivery{Ref: ref}, true, nil
			}
		}
		if all {
			break
		}
		if err := e.loadAll(); err != nil {
			return exporters.Delivery{}, false, wrap(err)
		}
	}
	return exporters.Delivery{}, false, nil
}

// Open returns the message stored at ref, which must be
// "<account-dir>/<date>-<key>.eml" as returned by Put or Has; anything else
// (another folder, "..", a temporary file, a name this exporter does not
// write) fails with ErrInvalidRef. It returns an error wrapping
// exporters.ErrNotFound when the file is gone. Open never reads through a
// symbolic link at the file's name. The caller closes the reader.
func (e *Exporter) Open(ctx context.Context, ref string) (io.ReadCloser, error) {
	if !validRef(ref) {
		return nil, fmt.Errorf("eml: open %q in %s: %w", ref, e.dir, ErrInvalidRef)
	}
	wrap := func(err error) error {
		return fmt.Errorf("eml: open %s in %s: %w", ref, e.dir, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, wrap(err)
	}
	if err := e.begin(); err != nil {
		return nil, wrap(err)
	}
	defer e.ops.RUnlock()
	tmp, staged := e.staged.Lookup(ref)
	name := ref
	if staged {
		name = tmp // Put but not yet published by Sync
	}
	f, err := e.w.OpenRegular(name)
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

// AccountDir returns the name of the folder, under the root, that holds
// the messages of account: account itself when it is made of ASCII
// letters, digits and ".", "_", "@", "+", "-" only, does not start with
// '.', and is 1 to 100 bytes long. Otherwise every other byte (and a
// leading '.') becomes '_', the result is cut to 100 bytes ("_" for an
// empty account), and '~' and the first 12 hex digits of sha256(account)
// are appended, so that two accounts never map to one folder.
func AccountDir(account string) string {
	b := make([]byte, 0, min(len(account), maxAccountName)+1+accountHashLen)
	changed := false
	for i := 0; i < len(account); i++ {
		c := account[i]
		if !accountByte(c) || (i == 0 && c == '.') {
			c = '_'
			changed = true
		}
		b = append(b, c)
	}
	if len(b) == 0 {
		b = append(b, '_')
		changed = true
	}
	if len(b) > maxAccountName {
		b = b[:maxAccountName]
		changed = true
	}
	if !changed {
		return string(b)
	}
	sum := sha256.Sum256([]byte(account))
	return string(b) + "~" + hex.EncodeToString(sum[:])[:accountHashLen]
}

// ValidAccountDir reports whether name is a folder name that AccountDir
// returns for some account.
func ValidAccountDir(name string) bool {
	base, hash, hashed := strings.Cut(name, "~")
	if hashed {
		if len(hash) != accountHashLen {
			return false
		}
		for i := 0; i < len(hash); i++ {
			if c := hash[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return false
			}
		}
	}
	if base == "" || len(base) > maxAccountName || base[0] == '.' {
		return false
	}
	for i := 0; i < len(base); i++ {
		if !accountByte(base[i]) {
			return false
		}
	}
	return true
}

// accountByte reports whether c may stay as it is in an account folder
// name.
func accountByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '.' || c == '_' || c == '@' || c == '+' || c == '-'
}

// checkKey returns nil if key can be part of a file name, or an error
// wrapping exporters.ErrInvalidKey.
func checkKey(key string) error {
	if !validKey(key) {
		return fmt.Errorf("%w: %q", exporters.ErrInvalidKey, key)
	}
	return nil
}

func validKey(key string) bool { return exporters.ValidKey(key) }

// parseName returns the key of a message file name
// "<YYYYMMDDTHHMMSSZ>-<key>.eml" and whether name is one. The date must be
// exactly what DateLayout formats: a real date and time, digits only.
func parseName(name string) (string, bool) {
	rest, ok := strings.CutSuffix(name, Ext)
	if !ok || len(rest) < dateLen+2 || rest[dateLen] != '-' {
		return "", false
	}
	date := rest[:dateLen]
	for i := 0; i < dateLen; i++ {
		c := date[i]
		switch i {
		case 8:
			ok = c == 'T'
		case dateLen - 1:
			ok = c == 'Z'
		default:
			ok = '0' <= c && c <= '9'
		}
		if !ok {
			return "", false
		}
	}
	t, err := time.Parse(DateLayout, date)
	if err != nil || t.Format(DateLayout) != date {
		return "", false
	}
	key := rest[dateLen+1:]
	if !validKey(key) {
		return "", false
	}
	return key, true
}

// validRef reports whether ref is "<account-dir>/<message file name>".
func validRef(ref string) bool {
	acct, name, ok := strings.Cut(ref, "/")
	if !ok || !ValidAccountDir(acct) {
		return false
	}
	_, ok = parseName(name)
	return ok
}

var headerPool = sync.Pool{New: func() any { b := make([]byte, MaxHeaderScan); return &b }}

// messageDate returns the date that names msg's file: mailhdr's
// FromReceived date of its header, with msg.Received as the fallback. A
// date whose year in UTC does not fit four digits gives the zero time. An
// error reading the body is returned.
func messageDate(msg *exporters.Message) (time.Time, error) {
	bp := headerPool.Get().(*[]byte)
	defer headerPool.Put(bp)
	buf := (*bp)[:min(int64(MaxHeaderScan), max(msg.Body.Size(), 0))]
	n, err := msg.Body.ReadAt(buf, 0)
	if err != nil && err != io.EOF {
		return time.Time{}, fmt.Errorf("read header: %w", err)
	}
	return nameDate(buf[:n], msg.Received), nil
}

// nameDate returns the date that names the file of a message that
// starts with head (its first MaxHeaderScan bytes, or all of it when
// shorter) and was downloaded at received: mailhdr's FromReceived date,
// with received as the fallback, in UTC. A date whose year in UTC does not
// fit four digits gives the zero time.
func nameDate(head []byte, received time.Time) time.Time {
	if t := mailhdr.Read(head).Date(mailhdr.FromReceived, received); fitsName(t) {
		return t.UTC()
	}
	if t := received.UTC(); fitsName(t) {
		return t
	}
	return time.Time{}
}

// fitsName reports whether t, in UTC, formats with DateLayout in exactly
// its length (years 0 to 9999).
func fitsName(t time.Time) bool {
	y := t.UTC().Year()
	return 0 <= y && y <= 9999
}
