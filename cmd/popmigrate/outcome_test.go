package main

import (
	"errors"
	"testing"
)

func TestOutcomeCode(t *testing.T) {
	boom := errors.New("journal: disk full")
	text := outcomeText{Interrupted: "interrupted", Mismatch: "mismatch", Failed: "failed"}
	for _, c := range []struct {
		name string
		o    outcome
		code int
		msg  string
	}{
		{"whole", outcome{}, exitOK, ""},
		{"failed", outcome{Failed: true}, exitFailed, "failed"},
		{"mismatch", outcome{Mismatch: true}, exitMismatch, "mismatch"},
		{"a mismatch beats a failure", outcome{Mismatch: true, Failed: true}, exitMismatch, "mismatch"},
		{"the command's error", outcome{Err: boom}, exitFailed, boom.Error()},
		{"the command's error beats a mismatch", outcome{Err: boom, Mismatch: true, Failed: true}, exitFailed, boom.Error()},
		{"interrupted", outcome{Interrupted: true}, exitInterrupted, "interrupted"},
		{"an interruption beats everything", outcome{Interrupted: true, Err: boom, Mismatch: true, Failed: true}, exitInterrupted, "interrupted"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := c.o.code(); got != c.code {
				t.Errorf("code() = %d, want %d", got, c.code)
			}
			err := c.o.err(text)
			if c.code == exitOK {
				if err != nil {
					t.Errorf("err() = %v, want nil", err)
				}
				return
			}
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != c.code || ee.err == nil || ee.err.Error() != c.msg {
				t.Fatalf("err() = %#v, want an *exitError{%d, %q}", err, c.code, c.msg)
			}
			if c.msg == boom.Error() && !errors.Is(err, boom) {
				t.Errorf("err() does not wrap the command's error")
			}
		})
	}
}
