package imap

import (
	"errors"
	"fmt"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/quarantine"
)

// QuarantineSuffix ends the name of every file in the quarantine folder:
// <key>.eml.
const QuarantineSuffix = quarantine.Suffix

// RejectedError is the detail of a message that cannot be stored in the
// folder: the server answered its APPEND with NO or BAD because of its
// content or size, or popmigrate did not send it because IMAP cannot carry
// it (NUL bytes, or larger than the server's APPENDLIMIT). Sending it
// again does not help; the rest of the run can go on.
//
// Put returns it wrapped in an *exporters.RejectedError (whose Reason is
// ServerResponse, or Reason when the message was not sent), so that
// quarantine.Wrap and the pipeline treat it as every destination's
// refusal; errors.As finds both.
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

// shared returns e as every destination reports a refused message.
func (e *RejectedError) shared() *exporters.RejectedError {
	why := e.ServerResponse
	if why == "" {
		why = e.Reason
	}
	return &exporters.RejectedError{Key: e.Key, Reason: why, Err: e}
}

// QuarantinedError reports a rejected message that was kept in the
// quarantine folder (Options.QuarantineDir): nothing is lost, but the
// folder does not hold the message. Its Reason is the server's answer, or
// why popmigrate did not send the message; it wraps the
// *exporters.RejectedError, which wraps the *RejectedError.
type QuarantinedError = exporters.QuarantinedError

// IsRejected reports whether err says a message was rejected (and maybe
// quarantined): a per-message failure, not a failure of the destination.
// It is errors.As with an *exporters.RejectedError.
func IsRejected(err error) bool {
	var r *exporters.RejectedError
	return errors.As(err, &r)
}
