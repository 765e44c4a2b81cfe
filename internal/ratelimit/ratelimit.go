// Package ratelimit paces the bytes read from network connections to a
// rate, overall and per host, with golang.org/x/time/rate token buckets:
// --max-bandwidth and --max-bandwidth-per-host.
package ratelimit

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"unicode"

	"golang.org/x/time/rate"
)

// burst is the most bytes one Read may take before waiting: small enough
// that the rate holds over a fraction of a second, large enough that a
// read costs one wait, not many.
const burst = 64 << 10

// Set is the limits of a run: one bucket for all connections and one per
// host. The zero rates mean no limit. A Set is safe for concurrent use.
type Set struct {
	all     *rate.Limiter // nil: no overall limit
	perHost rate.Limit    // 0: no limit per host

	mu    sync.Mutex
	hosts map[string]*rate.Limiter
}

// NewSet returns the limits total and perHost, in bytes per second; 0
// means no limit. It returns nil when both are 0: a nil *Set limits
// nothing.
func NewSet(total, perHost int64) *Set {
	if total <= 0 && perHost <= 0 {
		return nil
	}
	s := &Set{hosts: map[string]*rate.Limiter{}}
	if total > 0 {
		s.all = rate.NewLimiter(rate.Limit(total), max(burst, int(min(total, 1<<30))/10))
	}
	if perHost > 0 {
		s.perHost = rate.Limit(perHost)
	}
	return s
}

// host returns host's bucket, or nil without a per-host limit.
func (s *Set) host(host string) *rate.Limiter {
	if s.perHost == 0 {
		return nil
	}
	host = strings.ToLower(host)
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.hosts[host]
	if l == nil {
		l = rate.NewLimiter(s.perHost, max(burst, int(min(int64(s.perHost), 1<<30))/10))
		s.hosts[host] = l
	}
	return l
}

// Dialer is what a POP3 client dials with (pop3.Dialer).
type Dialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// Dialer returns d (a net.Dialer when nil) with the reads of every
// connection it makes to host paced by s. A nil s returns d as it is.
func (s *Set) Dialer(host string, d Dialer) Dialer {
	if d == nil {
		d = &net.Dialer{}
	}
	if s == nil {
		return d
	}
	return &dialer{d: d, buckets: nonNil(s.all, s.host(host))}
}

func nonNil(ls ...*rate.Limiter) []*rate.Limiter {
	var out []*rate.Limiter
	for _, l := range ls {
		if l != nil {
			out = append(out, l)
		}
	}
	return out
}

type dialer struct {
	d       Dialer
	buckets []*rate.Limiter
}

func (d *dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := d.d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &conn{Conn: c, buckets: d.buckets}, nil
}

// conn paces Read: at most burst bytes a call, then a wait for as many
// tokens in every bucket. Waits are bounded by the connection's life, not
// by a context: a Close of the connection ends them (the next Read fails).
type conn struct {
	net.Conn
	buckets []*rate.Limiter
}

func (c *conn) Read(p []byte) (int, error) {
	if len(p) > burst {
		p = p[:burst]
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		for _, b := range c.buckets {
			// WaitN fails only for n above the burst, which the cut
			// above rules out, or a done context, which Background
			// never is.
			_ = b.WaitN(context.Background(), min(n, b.Burst()))
		}
	}
	return n, err
}

// Parse parses a rate such as "20MiB/s", "500KB/s", "1.5M", "800k" or
// "1000000" (bytes per second; "/s" is optional; K, M, G are 1000s, KiB,
// MiB, GiB 1024s; a lone k, m or g means 1000s too). "0" or "" means no
// limit.
func Parse(s string) (int64, error) {
	v := strings.TrimSpace(s)
	if v == "" || v == "0" {
		return 0, nil
	}
	v = strings.TrimSuffix(strings.TrimSuffix(v, "/s"), "ps")
	i := strings.IndexFunc(v, func(r rune) bool { return !unicode.IsDigit(r) && r != '.' })
	num, unit := v, ""
	if i >= 0 {
		num, unit = v[:i], strings.TrimSpace(v[i:])
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("rate %q: want a number of bytes per second such as 20MiB/s or 500KB/s", s)
	}
	mult := map[string]float64{
		"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9,
		"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30,
	}[strings.ToLower(unit)]
	if mult == 0 {
		return 0, fmt.Errorf("rate %q: unknown unit %q (want B, KB, MB, GB, KiB, MiB or GiB, per second)", s, unit)
	}
	r := int64(f * mult)
	if r <= 0 && f > 0 {
		r = 1
	}
	return r, nil
}
