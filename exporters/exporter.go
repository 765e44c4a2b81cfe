// Package exporters defines how popmigrate hands a downloaded message to a
// destination (Maildir, mbox, .eml, IMAP) and what every destination must
// promise so that an interrupted run resumes with nothing lost and nothing
// duplicated.
//
// The contract is the durability protocol of popmigrate:
//
//  1. Put writes a message. It may return before the write is durable.
//  2. Sync makes every Put that returned nil durable (fsync of files and
//     directories, or the server's tagged OK). The pipeline records a
//     delivery in its journal only after Sync has returned nil, so the
//     journal never claims a message that is not on disk.
//  3. A destination can tell whether it already holds a message (Finder), so
//     a crash between Put and the journal commit never duplicates a message
//     on resume.
//
// Exporters take a spooled body of known length and checksum, never the live
// POP3 stream: a retry can rewind it, and an IMAP APPEND needs the size first.
// The body is in the canonical form: the message after dot-unstuffing, with
// every CRLF turned into LF (see Canonicalize). The one exception is a
// Streamer, a file destination that takes a message while it arrives: it
// only ever writes into a temporary file of its own, which the writer that
// fed it either commits (once the size and checksum are known) or aborts.
//
// Exporters never import the pop3 or journal packages: each sub-package is
// usable on its own.
package exporters

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"time"
)

// Body is a spooled message body in canonical form. It can be read any
// number of times, from any offset, by several readers at once.
// *bytes.Reader satisfies it.
type Body interface {
	io.ReaderAt
	// Size returns the number of bytes in the body.
	Size() int64
}

// Fenced is implemented by a Body whose bytes may be written only while a
// condition holds: the pipeline's bodies may be written only while the
// account's lease is this process's, and every ReadAt checks it. A
// destination whose write takes effect some time after it read the last
// bytes (an IMAP APPEND ends with the command's CRLF, a grouped one after
// the other messages) calls Check right before the step that makes it
// take effect, and abandons the write when Check fails.
type Fenced interface {
	Check(ctx context.Context) error
}

// CheckFence returns b's Check when b is Fenced, and nil otherwise.
func CheckFence(ctx context.Context, b Body) error {
	if f, ok := b.(Fenced); ok {
		return f.Check(ctx)
	}
	return nil
}

// NewBodyReader returns a fresh reader over the whole of b.
func NewBodyReader(b Body) io.Reader {
	return io.NewSectionReader(b, 0, b.Size())
}

// Message is one message ready to be written to a destination.
type Message struct {
	// Key identifies the message across runs: MessageKey(Account, UIDL).
	// Destinations derive every name they create from Key, never from UIDL.
	Key string
	// Account is the account id the message was downloaded from.
	Account string
	// UIDL is the server's unique id for the message. It is untrusted input:
	// it may contain '/', "..", ':' or '*'. Use it only as data.
	UIDL string
	// Body is the message in canonical form.
	Body Body
	// SHA256 is the sha256 of Body, lower-case hex.
	SHA256 string
	// Received is when popmigrate downloaded the message.
	Received time.Time
}

// Delivery describes where a destination stored a message.
type Delivery struct {
	// Ref is the destination's reference to the stored message: a file
	// name relative to the destination root, an mbox offset, an IMAP
	// "UIDVALIDITY/UID". Opener.Open accepts it.
	Ref string
}

// Properties describes a destination.
type Properties struct {
	// Kind is the destination type: "maildir", "mbox", "eml", "imap".
	Kind string
	// ID is the destination id recorded in the journal, stable across runs
	// for the same destination (e.g. "maildir:/srv/mail/alice").
	ID string
}

// Exporter is a destination that messages are written to.
//
// An Exporter is used by one goroutine at a time unless its documentation
// says otherwise.
type Exporter interface {
	// Put writes msg to the destination and returns where it was stored.
	// The write is complete but not necessarily durable when Put returns:
	// call Sync before recording the delivery anywhere. Put is idempotent
	// for a given msg.Key: writing the same key twice leaves one copy.
	// On error nothing partial is left visible in the destination.
	Put(ctx context.Context, msg *Message) (Delivery, error)
	// Sync makes every Put that returned nil so far durable. When Sync
	// returns nil those messages survive a crash or power loss.
	Sync(ctx context.Context) error
	// Close releases the destination. It does not Sync. Calling Close more
	// than once is safe and returns nil after the first call.
	Close() error
	// Properties describes the destination.
	Properties() Properties
}

// Finder is implemented by destinations that can tell whether they already
// hold a message, so that a crash between Put and the journal commit does
// not duplicate the message on resume.
type Finder interface {
	// Has reports whether the destination holds a complete copy of the
	// message with key, and where. A message found by Has was fully written
	// (it may not be durable yet if the crash happened before Sync).
	Has(ctx context.Context, key string) (Delivery, bool, error)
}

// Opener is implemented by destinations that can read a stored message back,
// for verification.
type Opener interface {
	// Open returns the stored message with reference ref in canonical form.
	// The caller closes the reader.
	Open(ctx context.Context, ref string) (io.ReadCloser, error)
}

// BatchOpener is implemented by destinations that read many stored
// messages back in fewer round trips than one Open each: an IMAP folder
// answers one UID FETCH for a whole set of messages. What it reads is what
// Open would return, byte for byte; verification uses it when a
// destination offers it.
type BatchOpener interface {
	// OpenAll reads back the stored messages at refs, in canonical form,
	// and calls fn once for every index i of refs: with a reader of the
	// copy at refs[i] and a nil error, the reader valid only until fn
	// returns (fn need not read it to the end); or with a nil reader and
	// the error Open would have returned for refs[i] (one wrapping
	// ErrNotFound for a copy that is gone). A read that fails in the middle of a copy fails that
	// copy's reader, and the copies not yet passed to fn are read again.
	//
	// fn may be called from several goroutines at once, in any order,
	// never twice for one index. An error from fn stops OpenAll, which
	// returns it. OpenAll returns once every fn call it made has returned:
	// nil when every index was passed to fn; otherwise ctx's error when
	// ctx ended, or an error wrapping ErrClosed when the destination was
	// closed, and the indexes not passed to fn were not read.
	OpenAll(ctx context.Context, refs []string, fn func(i int, r io.Reader, err error) error) error
}

// Streamer is implemented by file destinations (Maildir, eml) that can take a
// message while it downloads, so that its bytes pass once from the POP3
// stream into the destination's temporary file, without a spool copy and a
// second read. The pipeline streams a message only into the one destination
// that lacks it; a message for several destinations is spooled and Put.
//
// What a Stream writes is invisible until Sync, as for Put: Commit stages
// the file like Put, and an aborted or uncommitted stream leaves nothing
// in the destination (at most a temporary file that the destination's
// usual clean-up of stale temporary files removes after a crash).
//
// A Streamer takes every message as it is: its Commit never fails with a
// *RejectedError, so a quarantine has nothing to keep and a decorator can
// pass streams through (or refuse them with ErrNoStream).
type Streamer interface {
	// Stream starts writing the message with key, downloaded from
	// account (Message.Key and Message.Account of a Put), into a new
	// temporary file. When the destination already holds key, Stream
	// writes nothing and returns a nil Stream with the copy's Delivery, as
	// Put would return it. The caller ends a non-nil Stream with Commit or
	// Abort.
	Stream(ctx context.Context, account, key string) (Stream, Delivery, error)
}

// Stream is one message being written by a Streamer. Its methods are used
// by one goroutine at a time.
type Stream interface {
	// Write appends canonical bytes of the message.
	io.Writer
	// Commit ends the message, which must hold exactly size bytes, and
	// makes it what a Put of the same message would have made it: staged
	// for the next Sync, idempotent per key. On error nothing of the
	// message is left, as if Abort had been called.
	Commit(ctx context.Context, size int64) (Delivery, error)
	// Abort discards what was written. It may be called after Commit (it
	// then does nothing) and more than once.
	Abort()
}

// Ender is implemented by a Stream that can end its file before Commit.
// End checks that the message holds exactly size bytes and closes its
// file at once, so that a message waiting for its Commit holds no open
// descriptor; Commit then stages it (its size is not checked again), and
// Abort instead removes it. On error nothing of the message is left, as
// if Abort had been called, and Commit fails.
type Ender interface {
	End(ctx context.Context, size int64) error
}

// MessageKey returns the stable key of the message with uidl in account:
// the first 32 hex digits of sha256(account NUL uidl). It is safe to use as
// a file name on every platform.
func MessageKey(account, uidl string) string {
	h := sha256.New()
	io.WriteString(h, account)
	h.Write([]byte{0})
	io.WriteString(h, uidl)
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// Resumable is implemented by destinations whose crash safety needs state
// kept in the journal, beside the deliveries: mbox keeps the committed end
// offset (anything past it after a crash is a torn or uncommitted tail),
// IMAP keeps its APPEND intent (folder, UIDVALIDITY, UIDNEXT) so that a
// message appended before a crash is found instead of appended again.
//
// The pipeline calls Resume once, before any Put, and CommitState after
// every successful Sync; the state it returns is written in the same
// journal transaction that records the batch. State strings are opaque to
// the pipeline and the journal.
type Resumable interface {
	// Resume hands the destination the state last committed for it ("" on
	// the first run) and save, which records a new state in the journal
	// durably and at once, outside the group commit (IMAP records its
	// intent with it before the first APPEND of a batch). The destination
	// repairs itself from state: mbox cuts what it wrote past the
	// committed offset, and refuses to go on (cutting nothing) when bytes
	// there were written by another program.
	Resume(ctx context.Context, state string, save func(ctx context.Context, state string) error) error
	// CommitState returns the state that describes everything synced so
	// far. It is called right after Sync returned nil.
	CommitState() string
}

// MaxKeyLen is the longest message key a destination accepts.
const MaxKeyLen = 128

// ValidKey reports whether key can be used in a file name on every
// platform: 1 to MaxKeyLen ASCII letters, digits, '-' or '_'. Every key
// MessageKey makes is valid; destinations refuse any other.
func ValidKey(key string) bool {
	if key == "" || len(key) > MaxKeyLen {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
