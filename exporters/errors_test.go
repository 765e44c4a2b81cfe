package exporters

import (
	"errors"
	"fmt"
	"testing"
)

// detail stands for a destination's own error about a refused message.
type detail struct{ text string }

func (d *detail) Error() string { return d.text }

func TestRejectedAndQuarantinedErrors(t *testing.T) {
	bare := &RejectedError{Key: "k1", Reason: "too large"}
	if got, want := bare.Error(), "exporters: message k1 rejected: too large"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	d := &detail{"imap: message k2 rejected by the server: NO [TOOBIG] Too big"}
	rej := &RejectedError{Key: "k2", Reason: "NO [TOOBIG] Too big", Err: d}
	if rej.Error() != d.text {
		t.Errorf("Error() = %q, want the detail's %q", rej.Error(), d.text)
	}
	put := fmt.Errorf("put: %w", rej)
	q := &QuarantinedError{Key: "k2", Path: "/q/k2.eml", Reason: rej.Reason, Err: put}
	if got, want := q.Error(), "put: "+d.text+"; kept in /q/k2.eml"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	var wrapped error = fmt.Errorf("destination x: %w", q)
	var gotQ *QuarantinedError
	var gotR *RejectedError
	var gotD *detail
	if !errors.As(wrapped, &gotQ) || !errors.As(wrapped, &gotR) || !errors.As(wrapped, &gotD) || gotR != rej || gotD != d {
		t.Errorf("errors.As does not find the QuarantinedError, the RejectedError and its detail in %v", wrapped)
	}
}
