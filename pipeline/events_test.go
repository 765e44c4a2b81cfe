package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/popmigrate/popmigrate/pop3"
)

// Every failure a log or metric names gets a class a script can group by.
func TestErrorClass(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("retr 2: %w", pop3.ErrTimeout), "timeout"},
		{&pop3.RetrError{ID: 2, Started: true, Err: pop3.ErrOutOfSync}, "out-of-sync"},
		{&pop3.Error{Command: "PASS", Code: "AUTH"}, "auth"},
		{&pop3.Error{Command: "USER", Code: "IN-USE"}, "in-use"},
		{&pop3.Error{Command: "RETR", Code: "SYS/TEMP"}, "server-temporary"},
		{&pop3.Error{Command: "RETR", Text: "no such message"}, "server"},
		{&pop3.ProtocolError{Command: "LIST", Err: "garbage"}, "protocol"},
		{&destError{dest: "maildir:/x", err: errors.New("disk full")}, "destination"},
		{&journalError{err: errors.New("locked")}, "journal"},
		{fmt.Errorf("x: %w", errLeaseLost), "lease"},
		{pop3.ErrSTLSUnavailable, "tls"},
		{context.Canceled, "interrupted"},
		{fmt.Errorf("retr 3: %w", io.ErrUnexpectedEOF), "network"},
		{errors.New("something else"), "other"},
	} {
		if got := errorClass(tc.err); got != tc.want {
			t.Errorf("errorClass(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
