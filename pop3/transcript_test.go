package pop3

import (
	"bytes"
	"context"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// step is one exchange of a scripted server: wait until the client has
// sent exactly c (following what earlier steps consumed), then send s.
// close makes the server close the connection after this step.
type step struct {
	c, s  string
	close bool
}

// script is a scripted fake POP3 server on one end of a connection. It
// records every byte the client sends.
type script struct {
	t      *testing.T
	conn   net.Conn
	mu     sync.Mutex
	cond   *sync.Cond
	got    []byte
	eof    bool
	done   chan struct{}
	failed bool
	// writes holds what each client Write carried: net.Pipe delivers one
	// Write per Read and never merges two.
	writes []string
}

// scriptWait bounds every wait of a script.
const scriptWait = 5 * time.Second

// newScript serves steps on the server end of a net.Pipe and returns the
// client end.
func newScript(t *testing.T, steps ...step) (*script, net.Conn) {
	t.Helper()
	cli, srv := net.Pipe()
	return startScript(t, srv, steps), cli
}

// startScript runs steps over srv.
func startScript(t *testing.T, srv net.Conn, steps []step) *script {
	sc := &script{t: t, conn: srv, done: make(chan struct{})}
	sc.cond = sync.NewCond(&sc.mu)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := srv.Read(buf)
			sc.mu.Lock()
			sc.got = append(sc.got, buf[:n]...)
			if n > 0 {
				sc.writes = append(sc.writes, string(buf[:n]))
			}
			if err != nil {
				sc.eof = true
			}
			sc.cond.Broadcast()
			sc.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() {
		defer close(sc.done)
		pos := 0
		for i, st := range steps {
			if st.c != "" {
				want := pos + len(st.c)
				if !sc.waitFor(want) {
					sc.fail("step %d: client sent %.200q, want %.200q after %.200q", i, sc.snapshot()[pos:], st.c, sc.snapshot()[:pos])
					return
				}
				if got := sc.snapshot()[pos:want]; string(got) != st.c {
					sc.fail("step %d: client sent %.200q, want %.200q", i, got, st.c)
					return
				}
				pos = want
			}
			if st.s != "" {
				_ = srv.SetWriteDeadline(time.Now().Add(scriptWait))
				if _, err := srv.Write([]byte(st.s)); err != nil {
					sc.fail("step %d: write %.200q: %v", i, st.s, err)
					return
				}
			}
			if st.close {
				_ = srv.Close()
			}
		}
	}()
	t.Cleanup(func() { sc.finish() })
	return sc
}

// waitFor waits until n bytes have arrived; false on EOF or timeout.
func (sc *script) waitFor(n int) bool {
	timer := time.AfterFunc(scriptWait, func() {
		sc.mu.Lock()
		sc.eof = true
		sc.cond.Broadcast()
		sc.mu.Unlock()
	})
	defer timer.Stop()
	sc.mu.Lock()
	defer sc.mu.Unlock()
	for len(sc.got) < n && !sc.eof {
		sc.cond.Wait()
	}
	return len(sc.got) >= n
}

func (sc *script) fail(format string, args ...any) {
	sc.mu.Lock()
	sc.failed = true
	sc.mu.Unlock()
	sc.t.Errorf("script: "+format, args...)
}

// snapshot returns what the client has sent so far.
func (sc *script) snapshot() []byte {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return bytes.Clone(sc.got)
}

// finish waits for the script to end, closes the server end and returns
// everything the client sent.
func (sc *script) finish() string {
	select {
	case <-sc.done:
	case <-time.After(2 * scriptWait):
		sc.t.Errorf("script did not finish")
	}
	_ = sc.conn.Close()
	return string(sc.snapshot())
}

// waitDone waits for the steps to run out (without closing).
func (sc *script) waitDone(t *testing.T) {
	t.Helper()
	select {
	case <-sc.done:
	case <-time.After(2 * scriptWait):
		t.Fatalf("script did not finish")
	}
}

// pipeDialer hands out one prepared connection, as Options.Dialer.
type pipeDialer struct{ conn net.Conn }

func (d pipeDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return d.conn, nil
}

// ctxT returns a context that ends with the test, bounded in time.
func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newScripted connects a client to a script; the greeting is the first
// server step.
func newScripted(t *testing.T, opts *Options, steps ...step) (*Client, *script) {
	t.Helper()
	sc, conn := newScript(t, steps...)
	c, err := NewClient(ctxT(t), conn, opts)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, sc
}

const greet = "+OK POP3 ready\r\n"

// osMkdirTemp makes a directory for files shared by the package's tests;
// TestMain removes it.
func osMkdirTemp() (string, error) { return os.MkdirTemp("", "pop3-test-") }

func TestMain(m *testing.M) {
	code := m.Run()
	if pkiDir != "" {
		_ = os.RemoveAll(pkiDir)
	}
	os.Exit(code)
}
