package pop3test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// silent checks that nothing arrives on c for d.
func (c *conn) silent(d time.Duration) {
	c.t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(d))
	b, err := c.br.ReadByte()
	if err == nil {
		c.t.Fatalf("got %q, want silence", b)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		c.t.Fatalf("read: %v, want silence", err)
	}
	_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
}

// body reads n bytes.
func (c *conn) bytes(n int) string {
	c.t.Helper()
	buf := make([]byte, n)
	if _, err := io.ReadFull(c.br, buf); err != nil {
		c.t.Fatalf("read %d bytes: %v", n, err)
	}
	return string(buf)
}

func TestStallInRetr(t *testing.T) {
	msgs := []Message{{UID: "a", Data: []byte("first\n")}, {UID: "b", Data: []byte("0123456789\n")}}
	t.Run("mid-body", func(t *testing.T) {
		s, addr := start(t, []Mailbox{{User: "bob", Password: "pw", Messages: msgs}},
			&ServerOptions{Faults: Faults{StallInRetr: map[int]int64{2: 4}}})
		c := loginRaw(t, addr)
		c.cmd("RETR 1", "+OK")
		c.multi()
		c.send("RETR 2\r\nLIST 2\r\nNOOP\r\n") // commands after the stall are read and ignored
		c.expect("+OK 12 octets")
		if got := c.bytes(4); got != "0123" {
			t.Errorf("body before the stall = %q", got)
		}
		c.silent(200 * time.Millisecond)
		_ = c.c.Close()
		waitIdle(t, s)
		if n := s.RetrCount("bob", "b"); n != 1 {
			t.Errorf("RetrCount = %d", n)
		}
	})
	t.Run("before +OK", func(t *testing.T) {
		s, addr := start(t, []Mailbox{{User: "bob", Password: "pw", Messages: msgs}},
			&ServerOptions{Faults: Faults{StallInRetr: map[int]int64{1: -1}}})
		c := loginRaw(t, addr)
		c.send("RETR 1\r\n")
		c.silent(200 * time.Millisecond)
		// A second session is refused while the stalled one holds the lock.
		c2 := dial(t, addr)
		c2.cmd("USER bob", "+OK")
		c2.cmd("PASS pw", "-ERR [IN-USE]")
		_ = c.c.Close()
		waitSessions(t, s, 1)
		c2.cmd("USER bob", "+OK")
		c2.cmd("PASS pw", "+OK")
	})
	t.Run("whole response", func(t *testing.T) {
		_, addr := start(t, []Mailbox{{User: "bob", Password: "pw", Messages: msgs}},
			&ServerOptions{Faults: Faults{StallInRetr: map[int]int64{1: 1000}}})
		c := loginRaw(t, addr)
		c.cmd("RETR 1", "+OK")
		if got := c.multi(); got != "first\r\n" {
			t.Errorf("RETR = %q", got)
		}
		c.send("NOOP\r\n")
		c.silent(100 * time.Millisecond)
	})
	t.Run("server close ends it", func(t *testing.T) {
		s := NewServer([]Mailbox{{User: "bob", Password: "pw", Messages: msgs}}, &ServerOptions{Faults: Faults{StallInRetr: map[int]int64{1: 2}}})
		addr, err := s.Listen("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		c := loginRaw(t, addr.String())
		c.cmd("RETR 1", "+OK")
		c.bytes(2)
		done := make(chan struct{})
		go func() { _ = s.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("Close blocked by a stalled session")
		}
	})
}

func TestDropInRetr(t *testing.T) {
	msgs := []Message{{UID: "a", Data: []byte("first\n")}, {UID: "b", Data: []byte("0123456789\n")}}
	s, addr := start(t, []Mailbox{{User: "bob", Password: "pw", Messages: msgs}},
		&ServerOptions{Faults: Faults{DropInRetr: map[int]int64{1: -1, 2: 3}}})
	for i := 0; i < 2; i++ { // every session
		c := loginRaw(t, addr)
		c.send("RETR 2\r\n")
		c.expect("+OK")
		if rest, _ := io.ReadAll(c.br); string(rest) != "012" {
			t.Errorf("session %d: body before the drop = %q", i, rest)
		}
		waitIdle(t, s)
		c = loginRaw(t, addr)
		c.send("DELE 2\r\nRETR 1\r\n")
		c.expect("+OK")
		if rest, _ := io.ReadAll(c.br); len(rest) != 0 {
			t.Errorf("session %d: RETR 1 answered %q", i, rest)
		}
		waitIdle(t, s)
	}
	if n := s.RetrCount("bob", "a"); n != 2 {
		t.Errorf("RetrCount(a) = %d, want 2", n)
	}
	if n := s.RetrCount("bob", "b"); n != 2 {
		t.Errorf("RetrCount(b) = %d, want 2", n)
	}
	if n, m := s.DeleCount("bob", "b"), s.DeleCount("bob", "a"); n != 2 || m != 0 {
		t.Errorf("DeleCount = %d, %d; want 2, 0", n, m)
	}
	if got := len(s.Mailbox("bob")); got != 2 {
		t.Errorf("%d messages left: a drop must commit nothing", got)
	}
}

func TestNoDotStuff(t *testing.T) {
	data := "A: b\n\n.\n+OK 20 octets\n..two\n"
	_, addr := start(t, []Mailbox{{User: "bob", Password: "pw", Messages: []Message{{Data: []byte(data)}}}},
		&ServerOptions{Faults: Faults{NoDotStuff: true}})
	c := loginRaw(t, addr)
	c.cmd("RETR 1", "+OK")
	if got := c.multi(); got != "A: b\r\n\r\n" {
		t.Errorf("up to the first lone dot: %q", got)
	}
	if got := c.multi(); got != "+OK 20 octets\r\n..two\r\n" {
		t.Errorf("rest: %q", got)
	}
	c.cmd("TOP 1 5", "+OK")
	if got := c.multi(); got != "A: b\r\n\r\n" {
		t.Errorf("TOP: %q", got)
	}
}

func TestNoLock(t *testing.T) {
	s, addr := start(t, []Mailbox{{User: "bob", Password: "pw", Messages: []Message{{UID: "a", Data: []byte("x\n")}, {UID: "b", Data: []byte("y\n")}}}},
		&ServerOptions{UserFaults: map[string]Faults{"bob": {NoLock: true}}})
	c1 := loginRaw(t, addr)
	c2 := loginRaw(t, addr)
	c1.cmd("DELE 1", "+OK")
	c2.cmd("DELE 1", "+OK")
	c2.cmd("DELE 2", "+OK")
	c1.cmd("QUIT", "+OK")
	c2.cmd("STAT", "+OK 0 0")
	c2.cmd("QUIT", "+OK")
	waitIdle(t, s)
	if st := s.Stats(); st.DelesCommitted != 2 || st.MaxConcurrent != 2 {
		t.Errorf("stats = %+v", st)
	}
	if n := s.DeleCount("bob", "a"); n != 2 {
		t.Errorf("DeleCount(a) = %d", n)
	}
	// With locking back on, the lock works again.
	s.SetFaults("bob", Faults{})
	c3 := loginRaw(t, addr)
	c4 := dial(t, addr)
	c4.cmd("USER bob", "+OK")
	c4.cmd("PASS pw", "-ERR [IN-USE]")
	c3.cmd("QUIT", "+OK")
}

func TestTrickle(t *testing.T) {
	data := "0123456789abcdefghij\n" // 22 bytes served, 25 with ".\r\n"
	s := NewServer([]Mailbox{{User: "bob", Password: "pw", Messages: []Message{{Data: []byte(data)}}}},
		&ServerOptions{Faults: Faults{Trickle: 10 * time.Millisecond, TrickleChunk: 5}})
	t.Cleanup(func() { _ = s.Close() })
	cli, srv := net.Pipe()
	go s.ServeConn(srv)
	t.Cleanup(func() { _ = cli.Close() })
	c := &conn{t: t, c: cli}
	c.br = bufio.NewReader(cli)
	_ = cli.SetDeadline(time.Now().Add(10 * time.Second))
	c.expect("+OK")
	c.cmd("USER bob", "+OK")
	c.cmd("PASS pw", "+OK")
	start := time.Now()
	c.send("RETR 1\r\n")
	// net.Pipe hands over one write per read: each chunk is one write.
	var sizes []int
	buf := make([]byte, 100)
	got := ""
	for len(got) < len("+OK 22 octets\r\n")+25 {
		n, err := cli.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, n)
		got += string(buf[:n])
	}
	if want := "+OK 22 octets\r\n0123456789abcdefghij\r\n.\r\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	for _, n := range sizes[1:] {
		if n > 5 {
			t.Errorf("chunk of %d bytes in %v", n, sizes)
		}
	}
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Errorf("5 chunks took only %v", d)
	}
}

// TestGmailSlice: a session lists the oldest messages not yet hidden, at
// most GmailSlice of them; what a session retrieved and QUIT hides from the
// next, a session without QUIT hides nothing.
func TestGmailSlice(t *testing.T) {
	var msgs []Message
	for i := range 5 {
		msgs = append(msgs, Message{UID: fmt.Sprintf("g%d", i+1), Data: []byte("x\n")})
	}
	s, addr := start(t, []Mailbox{{User: "bob", Password: "pw", Messages: msgs}},
		&ServerOptions{UserFaults: map[string]Faults{"bob": {GmailSlice: 2}}})
	c := loginRaw(t, addr)
	c.cmd("STAT", "+OK 2 ")
	c.cmd("UIDL 1", "+OK 1 g1")
	c.cmd("RETR 1", "+OK")
	c.multi()
	c.cmd("RETR 2", "+OK")
	c.multi()
	c.c.Close() // no QUIT: nothing hidden
	waitIdle(t, s)
	c = loginRaw(t, addr)
	c.cmd("UIDL 1", "+OK 1 g1")
	c.cmd("RETR 1", "+OK")
	c.multi()
	c.cmd("QUIT", "+OK")
	waitIdle(t, s)
	c = loginRaw(t, addr)
	c.cmd("UIDL 1", "+OK 1 g2")
	c.cmd("UIDL 2", "+OK 2 g3")
	c.cmd("QUIT", "+OK")
	if n := len(s.Mailbox("bob")); n != 5 {
		t.Errorf("the mailbox holds %d messages, want 5: hiding deletes nothing", n)
	}
}
