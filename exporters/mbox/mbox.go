// Package mbox appends messages to an mbox file in the mboxrd format, crash
// safe: what the journal has committed is never lost, and what it has not
// is cut off on resume instead of being written twice.
//
// # Format
//
// Each message is one entry:
//
//	From SENDER DATE\n
//	the message, mboxrd-quoted\n
//	\n
//
// SENDER is the address of the message's Return-Path without its angle
// brackets, or MAILER-DAEMON when there is none or it is "<>". DATE is in
// asctime form ("Mon Jan  2 15:04:05 2006", UTC) and comes from the message
// itself: the newest Received field, else Date, else the time popmigrate
// downloaded it; never the time of the run.
//
// mboxrd quoting: every message line matching ^>*From  (any number of '>'
// then "From ") gets one more '>'; a reader removes one '>' from every line
// matching ^>+From . That makes every line starting "From " in the file a
// From_ line, and the quoting reversible for any message, which mboxo's
// (quote "From " only) is not. The message bytes are otherwise stored as
// they are. A message that does not end with LF (an empty one included)
// gets one, so that the blank line after it and the next From_ line start
// lines of their own; the index records that the LF was added, and Open
// removes it again. Every entry ends with a blank line (the LF after the
// message's last line), as mbox(5) asks.
//
// # Index
//
// Beside the mbox file, <path>.pmidx (IndexSuffix) lists one entry per
// message, in file order:
//
//	key offset length sha256 flags\n
//
// offset and length delimit the entry (From_ line to blank line); flags is
// "n" when Put added the final LF and "-" otherwise. The message key lives
// only here: the message bytes carry no popmigrate header. Has and Open use
// the index, kept in memory.
//
// # Durability
//
// The Exporter holds an exclusive flock on the mbox file from New to Close:
// one writer per file. Put appends through a buffer and, on any error or
// cancellation, cuts the file back to where the entry began, so that a
// failed Put leaves nothing. Sync writes the buffer, fsyncs the file, then
// appends the new index lines and fsyncs the index. CommitState is the
// synced end offset: the pipeline stores it in its journal with the batch.
// After a crash, the mbox may end with entries that were never committed,
// or with half an entry; Resume with the committed state cuts the file back
// to it and drops the index entries past it.
//
// Only bytes this process wrote are ever cut. Before each write to the mbox
// file (at most 256 KiB: one flush of Put's buffer), the Exporter appends
// its intent to the intent log <path>.pmintent (IntentSuffix), one line
//
//	offset length sha256,sha256,...\n
//
// with the sha256 of the bytes it is about to write, one per 4 KiB block
// of the file that the write touches. Resume cuts the tail past the
// committed offset only when every byte of it lies in such a block whose
// bytes hash to the recorded sha256; a write that a crash tore holds whole
// blocks (the kernel tears a write at a page boundary), and those are cut
// too. Any other byte of the tail (another program appended mail after
// the last commit, or the record of a write was lost) stops the
// destination: Resume cuts nothing and fails with an error wrapping
// ErrForeignData that names the file, the committed offset and the bytes
// it cannot account for, and every later Put and Sync fail. The Exporter
// also checks the size of the file before each write and each cut: mail
// another program appended while the Exporter held the file (a program
// that ignores flock) is never overwritten or cut either, and stops the
// destination the same way.
//
// Foreign data is never adopted, even when it forms whole mbox messages:
// another program's delivery may still be under way or torn, popmigrate's
// own uncommitted entries before it could then be neither cut (that would
// move the other program's mail) nor kept (their messages would be
// written again: duplicates), and the user needs to know that something
// else writes to the archive. Stopping loses nothing, and the error says
// what to do.
//
// The intent log is written with write(2) but not fsynced, which would
// cost a barrier per write: after a process crash both the intent and the
// bytes of the mbox are in the page cache, and after a power failure a
// tail whose intent was lost is treated as foreign, which is safe: nothing
// is cut. Resume empties the log when it cuts a tail, and Sync rewrites it
// (write to a temporary file, rename) without the intents of the bytes
// the previous Sync covered when it grows past 256 KiB: the caller
// records each CommitState before it calls Sync again, as the pipeline
// does, so no Resume can need them. A run that writes nothing changes
// none of the three files.
//
// The mbox must not be rewritten by other programs (a mail reader expunging
// a message moves every entry after it) between runs: the index would no
// longer match it. New checks that the last indexed entry is still in
// place, and Open that a From_ line starts and a blank line ends the entry
// it reads; a verifier compares the sha256 of what Open returns. New, Open
// and ReadFile refuse a symbolic link at the name of the mbox file, its
// index or its intent log (ErrSymlink), in read-only mode too.
//
// # Read-only mode
//
// With Options.ReadOnly, New opens an existing mbox file and its index for
// reading only, for verification: both files are opened O_RDONLY, nothing
// is created, locked, truncated or rewritten, so that an archive on
// read-only media can be checked, checking never changes what it checks,
// and a file can be checked while a run appends to it. Index entries past
// the end of the file, and a torn last index line, are ignored in memory
// only. Has, Open and List work as in write mode, on the entries the index
// held when New read it (List also reads the intent log, when there is
// one, to tell a running writer's uncommitted tail from foreign mail);
// Put, Sync and Resume fail with exporters.ErrReadOnly.
//
// A reader takes no lock at all: a shared flock would fail against the
// writer's exclusive one (and, taken first, would keep a run from
// starting). It needs none, because the writer only ever appends: it
// writes an entry's bytes to the file before it appends the entry's index
// line (Sync fsyncs in between), so every index line a reader sees
// describes bytes already in the file, and an entry once committed is
// never moved or rewritten. The only bytes a writer removes are those of a
// failed Put, which no index line describes, and an uncommitted tail,
// which Resume cuts back to the offset the journal committed; a reader
// that opened before such a cut may find an entry of that tail gone or
// damaged, which is what it is: never committed.
package mbox

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/popmigrate/popmigrate/exporters"
)

// MaxKeyLen is the longest message key Put accepts.
const MaxKeyLen = exporters.MaxKeyLen

const (
	chunkSize = 64 << 10 // bytes read from a body per ReadAt
	flushAt   = 64 << 10 // Put writes its buffer to the file beyond this
	readSize  = 32 << 10 // buffer of a reader returned by Open
)

// The errors of this package. The errors every destination shares are in
// package exporters: every method called after Close wraps
// exporters.ErrClosed; Put and Has wrap exporters.ErrInvalidKey for a
// message key that is empty, longer than MaxKeyLen, or holds characters
// other than ASCII letters, digits, '-' and '_'; Put wraps
// exporters.ErrShortBody when the body ends before Size bytes; Put, Sync
// and Resume of an Exporter opened with Options.ReadOnly wrap
// exporters.ErrReadOnly.
var (
	// ErrInvalidRef is returned by Open for a reference that is not
	// "<offset>+<length>".
	ErrInvalidRef = errors.New("mbox: invalid reference")
	// ErrChecksum is returned by Put when the body's sha256 is not
	// Message.SHA256.
	ErrChecksum = errors.New("mbox: body does not match its sha256")
	// ErrLocked is returned by New when another Exporter, in this process
	// or another, holds the mbox file.
	ErrLocked = errors.New("mbox: file is locked by another writer")
	// ErrNotMbox is returned by New for an existing file that does not
	// start with a From_ line.
	ErrNotMbox = errors.New("mbox: not an mbox file")
	// ErrTruncated is returned by Resume when the file is shorter than the
	// state committed in the journal: something cut or replaced the
	// archive, and messages the journal records as stored are gone. The
	// Exporter then refuses to write.
	ErrTruncated = errors.New("mbox: file is shorter than the committed state")
	// ErrForeignData is returned by Resume when the file holds bytes past
	// the committed state that this Exporter has no record of writing
	// (another program appended mail after popmigrate's last commit), and
	// by Put and Sync when the file grew by bytes it did not write while
	// it held the file. Nothing is cut, and the Exporter then refuses to
	// write.
	ErrForeignData = errors.New("mbox: the file holds mail popmigrate did not write")
	// ErrCorrupt is returned when an entry of the file is not what the
	// index or the format says it must be.
	ErrCorrupt = errors.New("mbox: corrupt entry")
	// ErrCorruptIndex is returned when the index cannot be read, or does
	// not match the mbox file.
	ErrCorruptIndex = errors.New("mbox: corrupt index")
)

// Options tunes an Exporter. A nil *Options means the defaults.
type Options struct {
	// ID is the destination id recorded in the journal. Empty means
	// "mbox:" followed by the absolute path of the file.
	ID string
	// ReadOnly opens an existing mbox file and its index for reading
	// only, without a lock (see New and the package documentation). The
	// destination id is the same as in write mode.
	ReadOnly bool
}

// Exporter appends messages to one mbox file. Its methods are safe for use
// by several goroutines at once; Puts are written one after the other.
type Exporter struct {
	path       string // absolute path of the mbox file
	idxPath    string
	intentPath string
	id         string
	fi         os.FileInfo // of f, to check that Open reads the same file
	readOnly   bool

	mu         sync.Mutex // guards everything below
	closed     bool
	broken     error    // when set, Put, Sync and Resume fail with it
	f          *os.File // the mbox file, flocked
	idx        *os.File
	idxSize    int64  // bytes of the index file
	idxPending []byte // index lines of Puts not yet in the index file
	buf        []byte // mbox bytes not yet written, starting at offset flushed
	flushed    int64  // bytes of the mbox file
	end        int64  // flushed + len(buf): where the next entry starts
	synced     int64  // end at the last Sync, Resume or New
	pad        int    // LFs to write before the next From_ line
	dirty      bool   // written since the last Sync
	dirDirty   bool   // a file was created or renamed in the folder since the last Sync
	wrote      bool   // a Put wrote an entry since New
	tornFlush  bool   // a write of buf failed: the file may hold bytes past flushed
	attempted  int64  // end of the furthest write tried since flushed was last set by a cut: the file holds no byte of ours past it
	intentF    *os.File
	intentSize int64    // bytes of the intent log
	intents    []intent // the intent log's lines, in order
	intentTorn bool     // a write of the log failed: its last line may lack its LF
	intentLine []byte   // buffer of recordIntent
	entries    []entry
	byKey      map[string]int // key -> index in entries
	byOff      map[int64]int  // offset -> index in entries
	chunk      []byte
}

var (
	_ exporters.Exporter  = (*Exporter)(nil)
	_ exporters.Finder    = (*Exporter)(nil)
	_ exporters.Opener    = (*Exporter)(nil)
	_ exporters.Resumable = (*Exporter)(nil)
)

// New opens the mbox file at path for appending, creating it (mode 0600)
// and its parent folders (mode 0700) when missing, and takes an exclusive
// flock on it; it fails with an error wrapping ErrLocked, naming the file,
// when another writer holds it. An existing file must be a regular file
// starting with a From_ line (or be empty). New reads the index
// <path>.pmidx (creating it, 0600), drops the entries that lie past the end
// of the file (written to the index but never to the disk) and a torn last
// line, and rewrites the index when it dropped anything. It opens the
// intent log <path>.pmintent (creating it, 0600) and reads it, for Resume.
// A symbolic link at the name of any of the three fails New with an error
// wrapping ErrSymlink that names it ("mbox: PATH is a symbolic link;
// refusing to follow it"): New never follows one, nor creates or changes
// the file it points to.
//
// Call Resume before the first Put or Has when the journal holds a state
// for this destination.
//
// With opts.ReadOnly, New instead opens the existing mbox file and index
// read-only and takes no lock, so it succeeds while a writer holds the
// file. A missing file or index is an error naming its path and wrapping
// fs.ErrNotExist; a missing intent log is none. The checks are those of
// write mode (a regular file starting with a From_ line, a well-formed
// index whose last entry is in place, no symbolic link), but index entries
// past the end of the file and a torn last line are dropped in memory
// only: nothing on disk changes. Put, Sync and Resume then fail with
// exporters.ErrReadOnly.
//
// The caller closes the Exporter.
func New(path string, opts *Options) (*Exporter, error) {
	if path == "" {
		return nil, errors.New("mbox: empty file path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("mbox: %s: %w", path, err)
	}
	if opts != nil && opts.ReadOnly {
		return openReadOnly(abs, opts)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("mbox: create folder of %s: %w", abs, err)
	}
	f, created, err := openRegular(abs)
	if err != nil {
		return nil, wrapOpen(abs, err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("mbox: %s: %w", abs, err)
	}
	e := &Exporter{
		path:       abs,
		idxPath:    abs + IndexSuffix,
		intentPath: abs + IntentSuffix,
		id:         "mbox:" + abs,
		f:          f,
		dirty:      true, // the first Sync fsyncs whatever was there
		dirDirty:   created,
		byKey:      map[string]int{},
		byOff:      map[int64]int{},
		chunk:      make([]byte, chunkSize),
	}
	if opts != nil && opts.ID != "" {
		e.id = opts.ID
	}
	if err := e.init(); err != nil {
		e.closeFiles()
		return nil, err
	}
	return e, nil
}

// openReadOnly is New with Options.ReadOnly, for the absolute path abs.
func openReadOnly(abs string, opts *Options) (*Exporter, error) {
	f, err := openRegularReadOnly(abs)
	if err != nil {
		return nil, wrapOpen(abs, err)
	}
	e := &Exporter{
		path:       abs,
		idxPath:    abs + IndexSuffix,
		intentPath: abs + IntentSuffix,
		id:         "mbox:" + abs,
		readOnly:   true,
		f:          f,
		byKey:      map[string]int{},
		byOff:      map[int64]int{},
	}
	if opts.ID != "" {
		e.id = opts.ID
	}
	if err := e.init(); err != nil {
		e.closeFiles()
		return nil, err
	}
	return e, nil
}

// init checks the mbox file and loads the index. In read-only mode it
// opens the index read-only and changes nothing on disk.
func (e *Exporter) init() error {
	fi, err := e.f.Stat()
	if err != nil {
		return fmt.Errorf("mbox: stat %s: %w", e.path, err)
	}
	e.fi = fi
	size := fi.Size()
	if size > 0 {
		var b [len(fromPrefix)]byte
		if _, err := e.f.ReadAt(b[:], 0); err != nil && err != io.EOF {
			return fmt.Errorf("mbox: read %s: %w", e.path, err)
		}
		if string(b[:]) != fromPrefix {
			return fmt.Errorf("%w: %s does not start with %q", ErrNotMbox, e.path, fromPrefix)
		}
	}
	e.flushed, e.end, e.synced, e.attempted = size, size, size, size
	if err := e.computePad(); err != nil {
		return err
	}
	// A reader reads the intent log after the size of the mbox and before
	// the index: every byte of the file a writer had written by then has
	// its intent in the log, unless a Sync took it out, which it does only
	// after the entries of those bytes are in the index (see loadIntents).
	if err := e.loadIntents(); err != nil {
		return err
	}

	var idx *os.File
	created := false
	if e.readOnly {
		idx, err = openRegularReadOnly(e.idxPath)
	} else {
		idx, created, err = openRegular(e.idxPath)
	}
	if err != nil {
		return wrapOpen("index "+e.idxPath, err)
	}
	e.idx = idx
	e.dirDirty = e.dirDirty || created
	ifi, err := idx.Stat()
	if err != nil {
		return fmt.Errorf("mbox: stat %s: %w", e.idxPath, err)
	}
	e.idxSize = ifi.Size()
	ents, torn, err := readIndex(io.NewSectionReader(idx, 0, e.idxSize))
	if err != nil {
		return fmt.Errorf("mbox: index %s: %w", e.idxPath, err)
	}
	keep := len(ents)
	for keep > 0 && ents[keep-1].off+ents[keep-1].n > size {
		keep--
	}
	e.setEntries(ents[:keep])
	if keep > 0 {
		if err := e.checkEntry(ents[keep-1]); err != nil {
			return fmt.Errorf("%w: %s does not match %s: %v", ErrCorruptIndex, e.idxPath, e.path, err)
		}
	}
	if (torn || keep < len(ents)) && !e.readOnly {
		return e.rewriteIndex()
	}
	return nil
}

// computePad sets pad from the last bytes of the file: an entry must start
// a line, after a blank line.
//
// QUIRK: an mbox written by another program may end without the blank line
// after its last message, or even without a final LF. Put then writes the
// missing LFs before its first From_ line, so that the last message of the
// file keeps its bytes and the new From_ line starts a line.
func (e *Exporter) computePad() error {
	e.pad = 0
	if e.flushed == 0 {
		return nil
	}
	n := min(e.flushed, 2)
	b := make([]byte, n)
	if _, err := e.f.ReadAt(b, e.flushed-n); err != nil {
		return fmt.Errorf("mbox: read %s: %w", e.path, err)
	}
	switch {
	case n == 2 && b[0] == '\n' && b[1] == '\n':
	case b[n-1] == '\n':
		e.pad = 1
	default:
		e.pad = 2
	}
	return nil
}

// checkEntry checks that en delimits an entry in the file: a From_ line at
// its start, a blank line at its end.
func (e *Exporter) checkEntry(en entry) error {
	var start [len(fromPrefix)]byte
	var tail [2]byte
	if _, err := e.f.ReadAt(start[:], en.off); err != nil {
		return fmt.Errorf("entry %s (key %s): %w", en.ref(), en.key, err)
	}
	if _, err := e.f.ReadAt(tail[:], en.off+en.n-2); err != nil {
		return fmt.Errorf("entry %s (key %s): %w", en.ref(), en.key, err)
	}
	if string(start[:]) != fromPrefix || tail != [2]byte{'\n', '\n'} {
		return fmt.Errorf("entry %s (key %s) is not a From_ line to a blank line", en.ref(), en.key)
	}
	return nil
}

func (e *Exporter) setEntries(ents []entry) {
	clear(e.byKey)
	clear(e.byOff)
	e.entries = ents
	for i, en := range ents {
		e.byKey[en.key] = i
		e.byOff[en.off] = i
	}
}

// rewriteIndex replaces the index file with the entries in memory: it
// writes <index>.tmp, fsyncs it, renames it over the index and fsyncs the
// folder. The caller holds mu (or owns e alone) and has no pending lines.
func (e *Exporter) rewriteIndex() error {
	tmp := e.idxPath + ".tmp"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("mbox: remove %s: %w", tmp, err)
	}
	f, err := openFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("mbox: create %s: %w", tmp, err)
	}
	bw := bufio.NewWriter(f)
	var line []byte
	for _, en := range e.entries {
		line = en.appendLine(line[:0])
		bw.Write(line)
	}
	err = bw.Flush()
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, e.idxPath)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("mbox: rewrite index %s: %w", e.idxPath, err)
	}
	if err := syncDir(filepath.Dir(e.path)); err != nil {
		return fmt.Errorf("mbox: rewrite index %s: fsync folder: %w", e.idxPath, err)
	}
	idx, _, err := openRegular(e.idxPath)
	if err != nil {
		return wrapOpen("index "+e.idxPath, err)
	}
	if e.idx != nil {
		e.idx.Close()
	}
	e.idx = idx
	fi, err := idx.Stat()
	if err != nil {
		return fmt.Errorf("mbox: stat %s: %w", e.idxPath, err)
	}
	e.idxSize = fi.Size()
	return nil
}

// Path returns the absolute path of the mbox file.
func (e *Exporter) Path() string { return e.path }

// Properties returns Kind "mbox" and the destination id.
func (e *Exporter) Properties() exporters.Properties {
	return exporters.Properties{Kind: "mbox", ID: e.id}
}

// usable returns why the Exporter cannot write, or nil. The caller holds mu.
func (e *Exporter) usable() error {
	if e.closed {
		return exporters.ErrClosed
	}
	if e.readOnly {
		return exporters.ErrReadOnly
	}
	return e.broken
}

// Put appends msg to the mbox and returns Ref "<offset>+<length>" of its
// entry. If the index already holds msg.Key, Put returns that entry's Ref
// and writes nothing.
//
// Put checks ctx before writing and between chunks of the body; on any
// error (cancellation, a failing or short body, a sha256 that is not
// msg.SHA256 when that is set) it cuts the file back to where the entry
// began and records nothing: Has does not find the key. The entry may sit
// in a buffer when Put returns: call Sync to make it durable. A read-only
// Exporter fails with exporters.ErrReadOnly and writes nothing.
//
// An mbox takes messages through Put only, from the spool, and is not an
// exporters.Streamer. A Streamer writes a message into a temporary file
// of its own while it downloads and publishes it whole at Commit; an mbox
// entry is appended in place to the one file, and each write is preceded
// by its intent (offset, length, and the sha256 of every 4 KiB block of
// exactly the bytes about to be written), so that Resume cuts only what
// this process wrote. The entry also begins with a From_ line dated from
// the message's header, needed before its first byte. A stream would hold
// the end of the file for a whole download, while the previous message is
// committed into the same file, and a download that broke would leave a
// torn entry to cut back between group commits. The spool costs one more
// copy of the bytes and keeps every append whole and its intent exact.
func (e *Exporter) Put(ctx context.Context, msg *exporters.Message) (exporters.Delivery, error) {
	if msg == nil || msg.Body == nil {
		return exporters.Delivery{}, fmt.Errorf("mbox: put into %s: nil message or body", e.path)
	}
	if err := checkKey(msg.Key); err != nil {
		return exporters.Delivery{}, fmt.Errorf("mbox: put into %s: %w", e.path, err)
	}
	wrap := func(err error) error {
		return fmt.Errorf("mbox: put %s into %s: %w", msg.Key, e.path, err)
	}
	if err := ctx.Err(); err != nil {
		return exporters.Delivery{}, wrap(err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.usable(); err != nil {
		return exporters.Delivery{}, wrap(err)
	}
	if i, ok := e.byKey[msg.Key]; ok {
		return exporters.Delivery{Ref: e.entries[i].ref()}, nil
	}
	start := e.end
	en, err := e.write(ctx, msg)
	if err != nil {
		if rerr := e.rollback(start); rerr != nil {
			return exporters.Delivery{}, wrap(errors.Join(err, rerr))
		}
		return exporters.Delivery{}, wrap(err)
	}
	e.entries = append(e.entries, en)
	e.byKey[en.key] = len(e.entries) - 1
	e.byOff[en.off] = len(e.entries) - 1
	e.idxPending = en.appendLine(e.idxPending)
	e.pad = 0
	e.dirty = true
	e.wrote = true
	return exporters.Delivery{Ref: en.ref()}, nil
}

// write appends the entry of msg to buf, writing buf to the file whenever
// it grows past flushAt, and sets end. On error the caller rolls back.
func (e *Exporter) write(ctx context.Context, msg *exporters.Message) (entry, error) {
	size := msg.Body.Size()
	if size < 0 {
		return entry{}, fmt.Errorf("negative body size %d", size)
	}
	head, err := readHead(msg.Body, e.chunk)
	if err != nil {
		return entry{}, err
	}
	off := e.end + int64(e.pad)
	for range e.pad {
		e.buf = append(e.buf, '\n')
	}
	e.buf = append(e.buf, fromLine(head, msg.Received)...)
	e.buf = append(e.buf, '\n')

	h := sha256.New()
	var q quoter
	var last byte
	var read int64
	for read < size {
		if err := ctx.Err(); err != nil {
			return entry{}, err
		}
		want := min(int64(len(e.chunk)), size-read)
		n, rerr := msg.Body.ReadAt(e.chunk[:want], read)
		if n > 0 {
			p := e.chunk[:n]
			h.Write(p)
			last = p[n-1]
			read += int64(n)
			e.buf, _ = q.transform(e.buf, p) // quoting never fails
			if len(e.buf) >= flushAt {
				if err := e.flush(); err != nil {
					return entry{}, err
				}
			}
		}
		switch {
		case rerr == io.EOF && read < size:
			return entry{}, fmt.Errorf("%w: %d of %d bytes", exporters.ErrShortBody, read, size)
		case rerr != nil && rerr != io.EOF:
			return entry{}, fmt.Errorf("read body at offset %d: %w", read, rerr)
		case n == 0 && rerr == nil:
			return entry{}, fmt.Errorf("read body at offset %d: no progress", read)
		}
	}
	e.buf = q.flush(e.buf)
	addedLF := size == 0 || last != '\n'
	if addedLF {
		e.buf = append(e.buf, '\n')
	}
	e.buf = append(e.buf, '\n')
	sum := hex.EncodeToString(h.Sum(nil))
	if msg.SHA256 != "" && !strings.EqualFold(msg.SHA256, sum) {
		return entry{}, fmt.Errorf("%w: sha256 %s, the message says %s", ErrChecksum, sum, msg.SHA256)
	}
	if err := ctx.Err(); err != nil {
		return entry{}, err
	}
	e.end = e.flushed + int64(len(e.buf))
	return entry{key: msg.Key, off: off, n: e.end - off, sum: sum, addedLF: addedLF}, nil
}

// flush writes buf to the file at offset flushed, in writes of at most
// maxWrite bytes, each after its intent (see recordIntent). It first
// checks that no other program appended to the file. The caller holds mu.
func (e *Exporter) flush() error {
	if len(e.buf) == 0 {
		return nil
	}
	if err := e.checkSize(); err != nil {
		return err
	}
	done := 0
	defer func() { // keep what is not written at the start of buf
		if done > 0 {
			e.buf = e.buf[:copy(e.buf, e.buf[done:])]
		}
	}()
	for done < len(e.buf) {
		b := e.buf[done:min(len(e.buf), done+maxWrite)]
		if err := e.recordIntent(newIntent(e.flushed, b)); err != nil {
			return err
		}
		e.attempted = max(e.attempted, e.flushed+int64(len(b)))
		n, err := e.f.WriteAt(b, e.flushed)
		if err != nil {
			e.tornFlush = true
			return fmt.Errorf("write %s at offset %d: %w", e.path, e.flushed+int64(n), err)
		}
		e.flushed += int64(n)
		done += n
		e.tornFlush = false // the write covered whatever a failed one left
	}
	return nil
}

// rollback forgets every byte from offset start on, in buf and in the
// file. If the file cannot be cut back, the Exporter is broken: the file
// may end with part of an entry, which Resume removes in a later run.
func (e *Exporter) rollback(start int64) error {
	if e.flushed <= start && !e.tornFlush {
		e.buf = e.buf[:start-e.flushed]
		e.end = start
		return nil
	}
	cut := min(start, e.flushed)
	if err := e.cutOwn(cut); err != nil {
		if e.broken == nil {
			e.broken = fmt.Errorf("cannot cut %s back to %d bytes after a failed put: %w", e.path, cut, err)
		}
		return e.broken
	}
	e.tornFlush = false
	if e.flushed > start {
		e.flushed = start
		e.buf = e.buf[:0]
	} else {
		e.buf = e.buf[:start-e.flushed]
	}
	e.end = start
	return nil
}

// Sync writes every entry Put has buffered, fsyncs the mbox file, appends
// their lines to the index and fsyncs it (and the folder, after New created
// a file): every Put that returned nil is then durable and CommitState
// covers it. A read-only Exporter fails with exporters.ErrReadOnly.
//
// The caller records each CommitState in the journal before it calls Sync
// again (the pipeline does): once the intent log has grown past 256 KiB,
// Sync drops the intents of what the previous Sync covered. Should the
// caller not, a later Resume from an older state stops with
// ErrForeignData rather than cut: nothing is lost.
func (e *Exporter) Sync(ctx context.Context) error {
	wrap := func(err error) error { return fmt.Errorf("mbox: sync %s: %w", e.path, err) }
	if err := ctx.Err(); err != nil {
		return wrap(err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.usable(); err != nil {
		return wrap(err)
	}
	if !e.dirty {
		return nil
	}
	if err := e.flush(); err != nil {
		return wrap(err)
	}
	if err := e.f.Sync(); err != nil {
		return wrap(fmt.Errorf("fsync %s: %w", e.path, err))
	}
	if err := e.writeIndex(); err != nil {
		return wrap(err)
	}
	if err := e.idx.Sync(); err != nil {
		return wrap(fmt.Errorf("fsync %s: %w", e.idxPath, err))
	}
	if e.dirDirty {
		if err := syncDir(filepath.Dir(e.path)); err != nil {
			return wrap(fmt.Errorf("fsync folder: %w", err))
		}
		e.dirDirty = false
	}
	prev := e.synced
	e.synced = e.end
	e.dirty = false
	if err := e.compactIntents(prev); err != nil {
		return wrap(err)
	}
	return nil
}

// writeIndex appends the pending index lines to the index file.
func (e *Exporter) writeIndex() error {
	if len(e.idxPending) == 0 {
		return nil
	}
	n, err := e.idx.WriteAt(e.idxPending, e.idxSize)
	if err != nil {
		return fmt.Errorf("write %s at offset %d: %w", e.idxPath, e.idxSize+int64(n), err)
	}
	e.idxSize += int64(n)
	e.idxPending = e.idxPending[:0]
	return nil
}

// CommitState returns the end offset of the mbox file at the last Sync, in
// decimal: everything before it is durable. Resume takes it back.
func (e *Exporter) CommitState() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return strconv.FormatInt(e.synced, 10)
}

// Close writes what Put has buffered and the pending index lines, without
// fsync, and releases the file and its lock. It does not Sync. Calling
// Close again returns nil. A read-only Exporter writes nothing.
func (e *Exporter) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	var errs []error
	if e.broken == nil && !e.readOnly {
		if err := e.flush(); err != nil {
			errs = append(errs, err)
		} else if err := e.writeIndex(); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, e.closeFiles())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("mbox: close %s: %w", e.path, err)
	}
	return nil
}

// closeFiles closes the files e holds open.
func (e *Exporter) closeFiles() error {
	var errs []error
	for _, f := range []*os.File{e.intentF, e.idx, e.f} {
		if f != nil {
			if err := f.Close(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Has reports whether the index holds the message with key, and returns
// the Ref of its entry. An entry found is complete: Put records it only
// after writing all of it.
func (e *Exporter) Has(ctx context.Context, key string) (exporters.Delivery, bool, error) {
	if err := checkKey(key); err != nil {
		return exporters.Delivery{}, false, fmt.Errorf("mbox: has in %s: %w", e.path, err)
	}
	if err := ctx.Err(); err != nil {
		return exporters.Delivery{}, false, fmt.Errorf("mbox: has %s in %s: %w", key, e.path, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return exporters.Delivery{}, false, fmt.Errorf("mbox: has %s in %s: %w", key, e.path, exporters.ErrClosed)
	}
	i, ok := e.byKey[key]
	if !ok {
		return exporters.Delivery{}, false, nil
	}
	return exporters.Delivery{Ref: e.entries[i].ref()}, true, nil
}

// Open returns the message of the entry at ref ("<offset>+<length>", as Put
// and Has return it), exactly the bytes Put was given: the From_ line and
// the blank line removed, the quoting undone, an LF that Put added
// removed. It fails with an error wrapping exporters.ErrNotFound when the
// index has no entry at ref, and wrapping ErrCorrupt when the file does
// not hold an entry there. The reader reads the file through its own
// descriptor, also after Close; the caller closes it.
func (e *Exporter) Open(ctx context.Context, ref string) (io.ReadCloser, error) {
	off, n, err := parseRef(ref)
	if err != nil {
		return nil, fmt.Errorf("mbox: open %q in %s: %w", ref, e.path, err)
	}
	wrap := func(err error) error { return fmt.Errorf("mbox: open %s in %s: %w", ref, e.path, err) }
	if err := ctx.Err(); err != nil {
		return nil, wrap(err)
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, wrap(exporters.ErrClosed)
	}
	i, ok := e.byOff[off]
	if !ok || e.entries[i].n != n {
		e.mu.Unlock()
		return nil, wrap(exporters.ErrNotFound)
	}
	en := e.entries[i]
	if off+n > e.flushed {
		if err := e.flush(); err != nil {
			e.mu.Unlock()
			return nil, wrap(err)
		}
	}
	e.mu.Unlock()

	f, err := openFile(e.path, os.O_RDONLY, 0)
	if err != nil {
		return nil, wrap(err)
	}
	fi, err := f.Stat()
	if err == nil && !os.SameFile(fi, e.fi) {
		err = errors.New("the file was replaced since New opened it")
	}
	if err != nil {
		f.Close()
		return nil, wrap(err)
	}
	rc, err := openEntry(f, en)
	if err != nil {
		f.Close()
		return nil, wrap(err)
	}
	return rc, nil
}

// entryReader returns the message of one entry; Close closes the file.
type entryReader struct {
	*unquoteReader
	f    *os.File
	what string // ref and file, for errors
}

func (r *entryReader) Read(p []byte) (int, error) {
	n, err := r.unquoteReader.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("mbox: read %s: %w", r.what, err)
	}
	return n, err
}

func (r *entryReader) Close() error { return r.f.Close() }

// openEntry checks the framing of en in f and returns a reader of its
// message.
func openEntry(f *os.File, en entry) (io.ReadCloser, error) {
	head := make([]byte, min(en.n, maxFromLine+1))
	if _, err := f.ReadAt(head, en.off); err != nil {
		return nil, fmt.Errorf("%w: reading the From_ line: %v", ErrCorrupt, err)
	}
	nl := strings.IndexByte(string(head), '\n')
	if nl < 0 || !strings.HasPrefix(string(head), fromPrefix) {
		return nil, fmt.Errorf("%w: no From_ line at offset %d", ErrCorrupt, en.off)
	}
	var tail [2]byte
	if _, err := f.ReadAt(tail[:], en.off+en.n-2); err != nil {
		return nil, fmt.Errorf("%w: reading the end of the entry: %v", ErrCorrupt, err)
	}
	bodyOff := en.off + int64(nl) + 1
	bodyLen := en.off + en.n - 1 - bodyOff // without the blank line
	if en.addedLF {
		bodyLen--
	}
	if tail != [2]byte{'\n', '\n'} || bodyLen < 0 {
		return nil, fmt.Errorf("%w: the entry at offset %d does not end with a blank line", ErrCorrupt, en.off)
	}
	return &entryReader{
		unquoteReader: newUnquoteReader(io.NewSectionReader(f, bodyOff, bodyLen), readSize),
		f:             f,
		what:          en.ref() + " in " + f.Name(),
	}, nil
}

// parseRef parses "<offset>+<length>".
func parseRef(ref string) (off, n int64, err error) {
	a, b, ok := strings.Cut(ref, "+")
	if !ok {
		return 0, 0, ErrInvalidRef
	}
	off, err1 := parseUint(a)
	n, err2 := parseUint(b)
	if err1 != nil || err2 != nil || n < int64(minEntryLen) || off > maxInt64-n {
		return 0, 0, ErrInvalidRef
	}
	return off, n, nil
}

// checkKey returns an error wrapping exporters.ErrInvalidKey unless key is 1 to
// MaxKeyLen ASCII letters, digits, '-' and '_'.
func checkKey(key string) error {
	if !exporters.ValidKey(key) {
		return fmt.Errorf("%w: %q", exporters.ErrInvalidKey, key)
	}
	return nil
}
