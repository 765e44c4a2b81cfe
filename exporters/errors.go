package exporters

import (
	"errors"
	"fmt"
)

// The errors every destination reports the same way. A destination wraps
// them with its package prefix and what it was doing, e.g.
// "maildir: put KEY into DIR: exporters: exporter is read-only", so that
// errors.Is finds the shared value whatever the kind.
var (
	// ErrNotFound is returned by Opener.Open when ref names no stored
	// message.
	ErrNotFound = errors.New("exporters: message not found")
	// ErrReadOnly is wrapped by Put and Sync (and Resume) of a destination
	// opened for reading only.
	ErrReadOnly = errors.New("exporters: exporter is read-only")
	// ErrClosed is wrapped by every method but Close called after Close.
	ErrClosed = errors.New("exporters: exporter closed")
	// ErrInvalidKey is wrapped by Put and Finder.Has for a message key
	// that ValidKey refuses.
	ErrInvalidKey = errors.New("exporters: invalid message key")
	// ErrShortBody is wrapped by Put when a Body ends before its Size.
	ErrShortBody = errors.New("exporters: body shorter than its size")
	// ErrNoStream is wrapped by Streamer.Stream of a decorator whose
	// destination cannot take streams: the caller Puts the message.
	ErrNoStream = errors.New("exporters: destination cannot take streams")
)

// RejectedError reports a message that a destination refuses for what it
// is, its content or its size: an IMAP server's NO or BAD to an APPEND, a
// message with NUL bytes, which an APPEND cannot carry. Storing it again
// does not help, but the destination is fine: the run goes on with the
// next message, and quarantine.Wrap keeps a copy of the message aside.
// A failure of the destination itself (the network, the login, a full
// mailbox) is never a RejectedError.
type RejectedError struct {
	// Key is the message key.
	Key string
	// Reason says why, in the destination's words: the server's answer
	// ("NO [TOOBIG] Message too large"), or why the exporter did not
	// send the message.
	Reason string
	// Err is the destination's own error with the details (an
	// *imap.RejectedError), or nil. RejectedError wraps it.
	Err error
}

// Error returns Err's text when Err is set, else
// "exporters: message KEY rejected: REASON".
func (e *RejectedError) Error() string {
	if e.Err != nil {
		return e.Err.Error()
	}
	return fmt.Sprintf("exporters: message %s rejected: %s", e.Key, e.Reason)
}

// Unwrap returns Err.
func (e *RejectedError) Unwrap() error { return e.Err }

// QuarantinedError reports a rejected message (see RejectedError) that was
// kept, in canonical form, as an .eml file in a quarantine folder: nothing
// is lost, but the destination does not hold the message. It wraps the
// error of the refused Put, which wraps the *RejectedError.
type QuarantinedError struct {
	// Key is the message key.
	Key string
	// Path is the quarantined copy: the quarantine folder's <key>.eml.
	Path string
	// Reason is the RejectedError's Reason.
	Reason string
	// Err is the error of the refused Put.
	Err error
}

func (e *QuarantinedError) Error() string {
	return fmt.Sprintf("%v; kept in %s", e.Err, e.Path)
}

// Unwrap returns Err.
func (e *QuarantinedError) Unwrap() error { return e.Err }
