package pipeline

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/pop3"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// keepAlive sends NOOPs while a session waits, and stops when told, with
// the session still usable.
func TestKeepAliveSendsNOOPUntilStopped(t *testing.T) {
	log := &syncBuf{}
	srv := pop3test.NewServer([]pop3test.Mailbox{{User: "bob", Password: "pw"}}, &pop3test.ServerOptions{Log: log})
	addr, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pop3.Dial(ctx, addr.String(), &pop3.Options{Security: pop3.SecurityPlain})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(ctx, &pop3.Auth{Username: "bob", Password: "pw", AllowPlaintext: true}); err != nil {
		t.Fatal(err)
	}
	stop := keepAlive(ctx, c, 10*time.Millisecond)
	// At one per 10 ms, three NOOPs come well within the bound, however
	// busy the machine.
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(log.String(), "C: NOOP") < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(log.String(), "C: NOOP"); n < 3 {
		t.Errorf("%d NOOPs in 5 s at one per 10 ms", n)
	}
	if err := c.Quit(ctx); err != nil {
		t.Errorf("session after keepAlive: %v", err)
	}
}
