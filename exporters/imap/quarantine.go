package imap

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/internal/durable"
)

// QuarantineSuffix ends the name of every file in the quarantine folder:
// <key>.eml.
const QuarantineSuffix = ".eml"

// RejectedError reports a message that cannot be stored in the folder: the
// server answered its APPEND with NO or BAD because of its content or size,
// or popmigrate did not send it because IMAP cannot carry it (NUL bytes,
// or larger than the server's APPENDLIMIT). Sending it again does not
// help; the rest of the run can go on.
type RejectedError struct {
	// Key is the message key.
	Key string
	// ServerResponse is the server's answer, e.g. "NO [TOOBIG] Message
	// too large"; empty when popmigrate did not send the message.
	ServerResponse string
	// Reason says why popmigrate did not send the message; empty when the
	// server rejected it.
	Reason string
}

func (e *RejectedError) Error() string {
	if e.ServerResponse != "" {
		return fmt.Sprintf("imap: message %s rejected by the server: %s", e.Key, e.ServerResponse)
	}
	return fmt.Sprintf("imap: message %s cannot be uploaded: %s", e.Key, e.Reason)
}

// QuarantinedError reports a rejected message (see RejectedError) that was
// kept, in canonical form, in the quarantine folder: nothing is lost, but
// the folder does not hold the message. It wraps the *RejectedError.
type QuarantinedError struct {
	// Key is the message key.
	Key string
	// Path is the quarantined copy: Options.QuarantineDir/<key>.eml.
	Path string
	// ServerResponse is the server's answer, or why popmigrate did not
	// send the message.
	ServerResponse string
	// Err is the *RejectedError.
	Err error
}

func (e *QuarantinedError) Error() string {
	return fmt.Sprintf("%v; kept in %s", e.Err, e.Path)
}

func (e *QuarantinedError) Unwrap() error { return e.Err }

// IsRejected reports whether err says a message was rejected (and maybe
// quarantined): a per-message failure, not a failure of the destination.
func IsRejected(err error) bool {
	var r *RejectedError
	return errors.As(err, &r)
}

// quarantine is the folder where rejected messages are kept.
type quarantine struct {
	w *durable.Writer
}

// openQuarantine creates dir (0700) when missing and opens it.
func openQuarantine(dir string) (*quarantine, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create quarantine folder: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open quarantine folder: %w", err)
	}
	q := &quarantine{w: &durable.Writer{Root: root}}
	// Temporary files of a crash a day ago are garbage; best effort.
	q.w.RemoveStale(".", time.Now().Add(-24*time.Hour))
	return q, nil
}

// keep writes msg to <key>.eml durably (temporary file, fsync, rename,
// fsync of the folder; mode 0600) and returns the *QuarantinedError that
// Put returns. A file of the same name is replaced: it holds the same
// message from an earlier run.
func (q *quarantine) keep(ctx context.Context, msg *exporters.Message, rej *RejectedError) error {
	if !validKey(msg.Key) {
		return fmt.Errorf("%w; not quarantined: invalid message key %q", rej, msg.Key)
	}
	name := msg.Key + QuarantineSuffix
	tmp := func() string {
		var b [8]byte
		rand.Read(b[:])
		return "." + msg.Key + "." + hex.EncodeToString(b[:]) + durable.TmpSuffix
	}
	if err := q.w.Write(ctx, tmp, name, msg.Body); err != nil {
		return fmt.Errorf("%w; quarantine failed: %w", rej, err)
	}
	if err := q.w.SyncDir("."); err != nil {
		return fmt.Errorf("%w; quarantine failed: %w", rej, err)
	}
	resp := rej.ServerResponse
	if resp == "" {
		resp = rej.Reason
	}
	return &QuarantinedError{Key: msg.Key, Path: q.w.Path(name), ServerResponse: resp, Err: rej}
}

func (q *quarantine) close() error { return q.w.Root.Close() }

// validKey reports whether key can name a file: ASCII letters, digits, '-'
// and '_', at most 128 bytes (exporters.MessageKey gives 32 hex digits).
// Nothing the server sends decides a path.
func validKey(key string) bool { return exporters.ValidKey(key) }
