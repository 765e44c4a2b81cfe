package bench

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Bounds of the delay proxy.
const (
	proxyChunk    = 32 << 10 // largest chunk read at once
	proxyQueue    = 64       // chunks in flight per direction: 2 MiB, room for 2 GB/s at 1 ms
	proxyDialWait = 5 * time.Second
	proxyStopWait = 5 * time.Second
)

// delayProxy accepts TCP connections on 127.0.0.1 and relays each to target,
// holding every chunk it reads for half the round-trip time before writing
// it on, in each direction. A reader goroutine stamps chunks as they arrive
// and a writer goroutine sends each one when it is due, so the bytes keep
// their order and many chunks are in flight at once: the link gains
// latency, not a lower bandwidth (up to proxyQueue chunks per direction).
// TLS runs end to end through it; it only copies bytes.
type delayProxy struct {
	ln     net.Listener
	target string
	oneWay time.Duration

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup

	// Achieved hold times of the chunks, for the report: Go timers are not
	// exact, so the added latency is measured, not assumed.
	heldSum, heldN, heldMax atomic.Int64
}

// startDelayProxy starts a proxy to target that adds rtt of round-trip time
// and closes it in t.Cleanup.
func startDelayProxy(t testing.TB, target string, rtt time.Duration) *delayProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("bench: delay proxy: %v", err)
	}
	p := &delayProxy{ln: ln, target: target, oneWay: rtt / 2, conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		if err := p.close(); err != nil {
			t.Errorf("bench: %v", err)
		}
	})
	return p
}

// Addr is the proxy's "127.0.0.1:port".
func (p *delayProxy) Addr() string { return p.ln.Addr().String() }

// Held returns the mean and the largest time a chunk was held (per
// direction, so about half the added round trip), over all chunks so far.
func (p *delayProxy) Held() (mean, max time.Duration) {
	n := p.heldN.Load()
	if n == 0 {
		return 0, 0
	}
	return time.Duration(p.heldSum.Load() / n), time.Duration(p.heldMax.Load())
}

func (p *delayProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		if !p.track(c) {
			c.Close()
			return
		}
		p.wg.Add(1)
		go p.handle(c)
	}
}

// track registers c to be closed by close; it reports false once the proxy
// is closed.
func (p *delayProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *delayProxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *delayProxy) handle(client net.Conn) {
	defer p.wg.Done()
	defer p.untrack(client)
	upstream, err := net.DialTimeout("tcp", p.target, proxyDialWait)
	if err != nil {
		return
	}
	if !p.track(upstream) {
		upstream.Close()
		return
	}
	defer p.untrack(upstream)
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.relay(upstream, client)
	}()
	p.relay(client, upstream)
	<-done
}

type chunk struct {
	buf  *[]byte
	n    int
	read time.Time
}

var chunkPool = sync.Pool{New: func() any { b := make([]byte, proxyChunk); return &b }}

// relay copies src to dst, each chunk oneWay after it was read, until src
// ends; then it half-closes dst so that a last reply still reaches the
// other side. A write error closes both, which ends the other direction.
func (p *delayProxy) relay(dst, src net.Conn) {
	queue := make(chan chunk, proxyQueue)
	go func() {
		defer close(queue)
		for {
			buf := chunkPool.Get().(*[]byte)
			n, err := src.Read(*buf)
			if n > 0 {
				queue <- chunk{buf: buf, n: n, read: time.Now()}
			} else {
				chunkPool.Put(buf)
			}
			if err != nil {
				return
			}
		}
	}()
	failed := false
	for c := range queue {
		if !failed {
			if wait := time.Until(c.read.Add(p.oneWay)); wait > 0 {
				time.Sleep(wait)
			}
			p.record(time.Since(c.read))
			if _, err := dst.Write((*c.buf)[:c.n]); err != nil {
				failed = true
				dst.Close()
				src.Close() // the reader stops; the queue drains below
			}
		}
		chunkPool.Put(c.buf)
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}

func (p *delayProxy) record(held time.Duration) {
	p.heldSum.Add(int64(held))
	p.heldN.Add(1)
	for {
		m := p.heldMax.Load()
		if int64(held) <= m || p.heldMax.CompareAndSwap(m, int64(held)) {
			return
		}
	}
}

// close stops accepting, closes every relayed connection and waits (at most
// proxyStopWait) for the goroutines.
func (p *delayProxy) close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	err := p.ln.Close()
	done := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(proxyStopWait):
		return fmt.Errorf("delay proxy %s: connections still open after %v", p.Addr(), proxyStopWait)
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("delay proxy %s: %w", p.Addr(), err)
	}
	return nil
}

// startEcho serves an echo on 127.0.0.1 until the test ends.
func startEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// TestDelayProxy checks the proxy the benchmark's scenario C relies on: a
// round trip through it takes at least the added RTT, bytes arrive intact
// and in order, and a bulk transfer is not slowed to one chunk per round
// trip.
func TestDelayProxy(t *testing.T) {
	const rtt = 50 * time.Millisecond
	p := startDelayProxy(t, startEcho(t), rtt)
	c, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}

	// One small round trip: at least rtt.
	start := time.Now()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(start); elapsed < rtt {
		t.Errorf("round trip took %v, want at least %v", elapsed, rtt)
	}
	if string(got) != "ping" {
		t.Errorf("echo = %q, want %q", got, "ping")
	}

	// Bulk: 8 MiB of numbered bytes, written while reading. At least 256
	// chunks per direction: one chunk per round trip would take >= 12.8 s.
	const size = 8 << 20
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7 / 3)
	}
	start = time.Now()
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		werr <- err
	}()
	back := make([]byte, size)
	if _, err := io.ReadFull(c, back); err != nil {
		t.Fatalf("read back: %v", err)
	}
	elapsed := time.Since(start)
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}
	for i := range data {
		if back[i] != data[i] {
			t.Fatalf("byte %d = %#x, want %#x: order or content changed", i, back[i], data[i])
		}
	}
	if elapsed < rtt {
		t.Errorf("bulk transfer took %v, less than the round trip %v", elapsed, rtt)
	}
	if limit := 6 * time.Second; elapsed > limit {
		t.Errorf("bulk transfer of %d bytes took %v (> %v): the proxy serialises chunks", size, elapsed, limit)
	}
	mean, max := p.Held()
	if mean < rtt/2 || max < rtt/2 {
		t.Errorf("chunks held mean %v max %v, want at least %v", mean, max, rtt/2)
	}
	t.Logf("8 MiB echoed in %v through %v RTT; chunks held mean %v, max %v", elapsed, rtt, mean, max)
}
