package ratelimit

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"", 0}, {"0", 0}, {"1000", 1000}, {"20MiB/s", 20 << 20}, {"500KB/s", 500000},
		{"1.5M", 1500000}, {"800k", 800000}, {"2GiB", 2 << 30}, {"10 MB/s", 10e6}, {"64KiB/s", 64 << 10},
	} {
		got, err := Parse(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"fast", "-1MB", "10 furlongs", "MB"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

// server serves an endless stream of bytes to every connection on
// 127.0.0.1 and returns its address.
func server(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		buf := make([]byte, 256<<10)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				for {
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// readFor reads n bytes from a connection dialed through d and returns the
// time it took.
func readFor(t *testing.T, d Dialer, addr string, n int64) time.Duration {
	t.Helper()
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := io.CopyN(io.Discard, c, n); err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}

// within checks that n bytes in d is the rate want, ±10 % (the bucket's
// burst counted in).
func within(t *testing.T, what string, n int64, d time.Duration, want int64) {
	t.Helper()
	got := float64(n) / d.Seconds()
	if got > 1.1*float64(want) || got < 0.9*float64(want) {
		t.Errorf("%s: %.0f B/s over %v, want %d B/s ±10%%", what, got, d.Round(time.Millisecond), want)
	}
}

// The limit holds within 10 % over a few seconds: overall, per host, and
// for two connections that share a host's limit.
func TestRateHolds(t *testing.T) {
	addr := server(t)
	const rate = 2 << 20
	const n = 5 << 20 // about 2.5 s at the rate

	t.Run("overall", func(t *testing.T) {
		s := NewSet(rate, 0)
		within(t, "one connection", n, readFor(t, s.Dialer("127.0.0.1", nil), addr, n), rate)
	})
	t.Run("two connections share a host's limit", func(t *testing.T) {
		s := NewSet(0, rate)
		var wg sync.WaitGroup
		start := time.Now()
		for range 2 {
			wg.Add(1)
			go func() { defer wg.Done(); readFor(t, s.Dialer("LocalHost", nil), addr, n/2) }()
		}
		wg.Wait()
		within(t, "two connections", n, time.Since(start), rate)
	})
	t.Run("hosts have a limit each", func(t *testing.T) {
		s := NewSet(0, rate)
		var wg sync.WaitGroup
		start := time.Now()
		for _, h := range []string{"a", "b"} {
			wg.Add(1)
			go func() { defer wg.Done(); readFor(t, s.Dialer(h, nil), addr, n) }()
		}
		wg.Wait()
		within(t, "two hosts", 2*n, time.Since(start), 2*rate)
	})
}

// No limit is no wrapper at all.
func TestNoLimit(t *testing.T) {
	if NewSet(0, 0) != nil {
		t.Fatal("a set without limits")
	}
	var s *Set
	d := &net.Dialer{}
	if s.Dialer("h", d) != d {
		t.Error("a nil set wraps the dialer")
	}
}
