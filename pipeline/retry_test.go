package pipeline

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/pop3"
)

func TestBackoffBoundedWithJitter(t *testing.T) {
	const samples = 200
	cases := []struct {
		base, max time.Duration
	}{
		{100 * time.Millisecond, time.Second},
		{2 * time.Second, 60 * time.Second},
		{10 * time.Millisecond, 10 * time.Millisecond},
		{time.Second, 100 * time.Millisecond}, // base above the cap
		{time.Nanosecond, time.Hour},
	}
	for _, c := range cases {
		nominal := c.base
		for attempt := 1; attempt <= 12; attempt++ {
			want := min(nominal, c.max)
			lo, hi := time.Duration(math.MaxInt64), time.Duration(0)
			for range samples {
				d := backoff(c.base, c.max, attempt)
				if d < want/2 || d > want {
					t.Fatalf("backoff(%v, %v, %d) = %v, want within [%v, %v]", c.base, c.max, attempt, d, want/2, want)
				}
				lo, hi = min(lo, d), max(hi, d)
			}
			// Jitter: many accounts locked at once must not retry in step.
			if want >= time.Microsecond && lo == hi {
				t.Errorf("backoff(%v, %v, %d): %d samples all %v, want jitter", c.base, c.max, attempt, samples, lo)
			}
			nominal *= 2
		}
	}
}

// TestBackoffHugeMaxDoesNotOverflow pins a bug: with a cap near the largest
// Duration, doubling the delay overflowed, giving no delay at all or a
// panic in the jitter.
func TestBackoffHugeMaxDoesNotOverflow(t *testing.T) {
	base := time.Second
	huge := time.Duration(math.MaxInt64)
	prev := time.Duration(0)
	for attempt := 1; attempt <= 200; attempt++ {
		var d time.Duration
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Fatalf("backoff(%v, max, %d) panicked: %v", base, attempt, p)
				}
			}()
			d = backoff(base, huge, attempt)
		}()
		if d <= 0 || d < prev/2 {
			t.Fatalf("backoff(%v, max, %d) = %v after %v: not growing or not positive", base, attempt, d, prev)
		}
		prev = max(prev, d)
	}
}

func TestRetryable(t *testing.T) {
	perr := func(cmd, code string) error { return &pop3.Error{Command: cmd, Code: code, Text: "x"} }
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"IN-USE", perr("PASS", "IN-USE"), true},
		{"LOGIN-DELAY", perr("PASS", "LOGIN-DELAY"), true},
		{"SYS/TEMP", perr("RETR", "SYS/TEMP"), true},
		{"wrapped IN-USE", fmt.Errorf("login as a: %w", perr("PASS", "IN-USE")), true},
		{"AUTH", fmt.Errorf("login as a: %w", perr("PASS", "AUTH")), false},
		{"SYS/PERM", perr("PASS", "SYS/PERM"), false},
		{"-ERR without code", perr("PASS", ""), false},
		{"message over the cap", fmt.Errorf("retr 3: %w", errTooLarge), true},
		{"EOF", fmt.Errorf("pop3: RETR 3: %w", io.EOF), true},
		{"unexpected EOF", fmt.Errorf("pop3: RETR 3: %w", io.ErrUnexpectedEOF), true},
		{"connection reset", &net.OpError{Op: "read", Net: "tcp", Err: &os.SyscallError{Syscall: "read", Err: syscall.ECONNRESET}}, true},
		{"connection refused", fmt.Errorf("connect: %w", &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}), true},
		{"broken pipe", fmt.Errorf("x: %w", syscall.EPIPE), true},
		{"deadline", fmt.Errorf("pop3: RETR: %w", os.ErrDeadlineExceeded), true},
		{"dial timeout", &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{IsTimeout: true}}, true},
		{"journal failure", &journalError{io.ErrUnexpectedEOF}, false},
		{"destination failure", &destError{dest: "maildir:/x", err: syscall.EPIPE}, false},
		{"unknown CA", fmt.Errorf("connect: %w", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}), false},
		{"unknown CA bare", x509.UnknownAuthorityError{}, false},
		{"hostname", x509.HostnameError{Host: "mail.example.org"}, false},
		{"protocol error", &pop3.ProtocolError{Command: "LIST", Line: "garbage", Err: "bad"}, false},
		{"line too long", fmt.Errorf("x: %w", pop3.ErrLineTooLong), false},
		{"no STLS", pop3.ErrSTLSUnavailable, false},
		{"no mechanism", pop3.ErrNoMechanism, false},
		{"plaintext refused", pop3.ErrPlaintextAuth, false},
		{"cancelled", context.Canceled, false},
		{"plain error", errors.New("something else"), false},
	}
	for _, c := range cases {
		if got := retryable(c.err); got != c.want {
			t.Errorf("%s: retryable(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}
