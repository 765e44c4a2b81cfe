package pipeline

import (
	"errors"

	"github.com/popmigrate/popmigrate/exporters/imap"
)

// quarantined returns the path where a destination kept a message it
// refused, if err says so.
func quarantined(err error) (string, bool) {
	var q *imap.QuarantinedError
	if errors.As(err, &q) {
		return q.Path, true
	}
	return "", false
}
