package pop3test

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"crypto/tls"
	"encoding/hex"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/internal/testpki"
)

// conn is a raw client connection for wire-level checks.
type conn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, addr string) *conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { _ = c.Close() })
	cn := &conn{t: t, c: c, br: bufio.NewReader(c)}
	cn.expect("+OK")
	return cn
}

// line reads one line, CRLF included.
func (c *conn) line() string {
	c.t.Helper()
	l, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (after %q)", err, l)
	}
	return l
}

// expect reads one line and checks its prefix.
func (c *conn) expect(prefix string) string {
	c.t.Helper()
	l := c.line()
	if !strings.HasPrefix(l, prefix) || !strings.HasSuffix(l, "\r\n") {
		c.t.Fatalf("got %q, want %q...CRLF", l, prefix)
	}
	return l
}

// send writes raw bytes.
func (c *conn) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatal(err)
	}
}

// cmd sends one command and checks the status line.
func (c *conn) cmd(line, prefix string) string {
	c.t.Helper()
	c.send(line + "\r\n")
	return c.expect(prefix)
}

// multi reads a multi-line body up to the terminator, raw (still stuffed).
func (c *conn) multi() string {
	c.t.Helper()
	var b strings.Builder
	for {
		l := c.line()
		if l == ".\r\n" {
			return b.String()
		}
		b.WriteString(l)
	}
}

func start(t *testing.T, boxes []Mailbox, opts *ServerOptions) (*Server, string) {
	t.Helper()
	s := NewServer(boxes, opts)
	addr, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, addr.String()
}

func loginRaw(t *testing.T, addr string) *conn {
	c := dial(t, addr)
	c.cmd("USER bob", "+OK")
	c.cmd("PASS pw", "+OK")
	return c
}

func TestServedForm(t *testing.T) {
	_, addr := start(t, []Mailbox{{User: "bob", Password: "pw", Messages: []Message{
		{UID: "u1", Data: []byte("A: 1\n\n.dot\nbare\rcr\r\nkeep crlf\r\n.\nno end")},
		{UID: "u2", Data: []byte("raw\nlf\n.x"), Raw: true},
	}}}, nil)
	c := loginRaw(t, addr)
	c.cmd("LIST", "+OK")
	// served form 1: "A: 1\r\n\r\n.dot\r\nbare\rcr\r\nkeep crlf\r\n.\r\nno end":
	// 39 stored octets plus 4 CRs for the 4 bare LFs.
	if got := c.multi(); got != "1 43\r\n2 9\r\n" {
		t.Errorf("LIST = %q", got)
	}
	c.cmd("STAT", "+OK 2 52")
	c.cmd("RETR 1", "+OK 43 octets")
	if got := c.multi(); got != "A: 1\r\n\r\n..dot\r\nbare\rcr\r\nkeep crlf\r\n..\r\nno end\r\n" {
		t.Errorf("RETR 1 = %q", got)
	}
	c.cmd("RETR 2", "+OK 9 octets")
	if got := c.multi(); got != "raw\nlf\n..x\r\n" {
		t.Errorf("RETR 2 = %q", got)
	}
	c.cmd("UIDL", "+OK")
	if got := c.multi(); got != "1 u1\r\n2 u2\r\n" {
		t.Errorf("UIDL = %q", got)
	}
	c.cmd("UIDL 2", "+OK 2 u2")
	c.cmd("LIST 1", "+OK 1 43")
	c.cmd("RETR 3", "-ERR")
	c.cmd("LIST x", "-ERR")
	c.cmd("TOP 1 0", "+OK")
	if got := c.multi(); got != "A: 1\r\n\r\n" {
		t.Errorf("TOP 1 0 = %q", got)
	}
	c.cmd("TOP 1 2", "+OK")
	if got := c.multi(); got != "A: 1\r\n\r\n..dot\r\nbare\rcr\r\n" {
		t.Errorf("TOP 1 2 = %q", got)
	}
	c.cmd("TOP 1", "-ERR")
	c.cmd("QUIT", "+OK")
}

// Commands sent in one write are all answered, in order.
func TestPipelinedInput(t *testing.T) {
	_, addr := start(t, []Mailbox{{User: "bob", Password: "pw", Messages: []Message{{Data: []byte("x\n")}, {Data: []byte("y\n")}}}}, nil)
	c := dial(t, addr)
	c.send("USER bob\r\nPASS pw\r\nRETR 1\r\nRETR 2\r\nNOOP\r\nQUIT\r\n")
	c.expect("+OK")
	c.expect("+OK 2 messages")
	c.expect("+OK")
	if got := c.multi(); got != "x\r\n" {
		t.Errorf("RETR 1 = %q", got)
	}
	c.expect("+OK")
	if got := c.multi(); got != "y\r\n" {
		t.Errorf("RETR 2 = %q", got)
	}
	c.expect("+OK")
	c.expect("+OK")
}

func TestStatesAndCommit(t *testing.T) {
	s, addr := start(t, []Mailbox{{User: "bob", Password: "pw", Messages: []Message{
		{UID: "a", Data: []byte("1\n")}, {UID: "b", Data: []byte("2\n")}, {UID: "c", Data: []byte("3\n")},
	}}}, nil)
	c := dial(t, addr)
	c.cmd("STAT", "-ERR")
	c.cmd("PASS pw", "-ERR")
	c.cmd("USER bob", "+OK")
	c.cmd("PASS wrong", "-ERR [AUTH]")
	c.cmd("USER bob", "+OK")
	c.cmd("PASS pw", "+OK 3 messages")
	c.cmd("DELE 1", "+OK")
	c.cmd("DELE 1", "-ERR")
	c.cmd("RETR 1", "-ERR")
	c.cmd("STAT", "+OK 2 6")
	c.cmd("RSET", "+OK")
	c.cmd("STAT", "+OK 3 9")
	c.cmd("DELE 2", "+OK")
	c.cmd("FROB", "-ERR")
	c.cmd("QUIT", "+OK 1 messages deleted")
	if got := uids(s.Mailbox("bob")); got != "a c" {
		t.Errorf("mailbox = %s", got)
	}
	if st := s.Stats(); st.DelesCommitted != 1 || st.Logins != 1 || st.FailedLogins != 1 {
		t.Errorf("stats = %+v", st)
	}
	// A dropped connection commits nothing and releases the lock.
	c2 := loginRaw(t, addr)
	c2.cmd("DELE 1", "+OK")
	_ = c2.c.Close()
	waitIdle(t, s)
	c3 := loginRaw(t, addr)
	c3.cmd("STAT", "+OK 2")
	if got := uids(s.Mailbox("bob")); got != "a c" {
		t.Errorf("mailbox after drop = %s", got)
	}
}

func uids(msgs []Message) string {
	var u []string
	for _, m := range msgs {
		u = append(u, m.UID)
	}
	return strings.Join(u, " ")
}

func waitIdle(t *testing.T, s *Server) { t.Helper(); waitSessions(t, s, 0) }

// waitSessions waits until n sessions are open.
func waitSessions(t *testing.T, s *Server, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().Concurrent != n {
		if time.Now().After(deadline) {
			t.Fatal("sessions still open")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLock(t *testing.T) {
	s, addr := start(t, []Mailbox{{User: "bob", Password: "pw"}}, nil)
	c1 := loginRaw(t, addr)
	c2 := dial(t, addr)
	c2.cmd("USER bob", "+OK")
	c2.cmd("PASS pw", "-ERR [IN-USE]")
	c1.cmd("QUIT", "+OK")
	waitSessions(t, s, 1)
	c2.cmd("USER bob", "+OK")
	c2.cmd("PASS pw", "+OK")
	if st := s.Stats(); st.MaxConcurrent != 2 || st.Sessions != 2 {
		t.Errorf("stats = %+v", st)
	}
}

func TestFaults(t *testing.T) {
	msgs := []Message{{Data: bytes.Repeat([]byte("0123456789\n"), 10)}, {Data: []byte("small\n")}, {Data: []byte("third\n")}}
	t.Run("DropAfterBytes", func(t *testing.T) {
		_, addr := start(t, []Mailbox{{User: "bob", Password: "pw", Messages: msgs}}, &ServerOptions{Faults: Faults{DropAfterBytes: 50}})
		c := loginRaw(t, addr)
		c.cmd("RETR 1", "+OK")
		rest, _ := io.ReadAll(c.br)
		if len(rest) != 50 {
			t.Errorf("got %d body bytes before the drop, want 50", len(rest))
		}
	})
	t.Run("DropAfterRetrs", func(t *testing.T) {
		_, addr := start(t, []Mailbox{{User: "bob", Password: "pw", Messages: msgs}}, &ServerOptions{Faults: Faults{DropAfterRetrs: 1}})
		c := loginRaw(t, addr)
		c.cmd("RETR 2", "+OK")
		if got := c.multi(); got != "small\r\n" {
			t.Errorf("RETR = %q", got)
		}
		if rest, _ := io.ReadAll(c.br); len(rest) != 0 {
			t.Errorf("after the drop: %q", rest)
		}
	})
	t.Run("RetrErrSkewNoUIDLNoTop", func(t *testing.T) {
		_, addr := start(t, []Mailbox{{User: "bob", Password: "pw", Messages: msgs}},
			&ServerOptions{Faults: Faults{RetrErr: map[int]string{2: "[SYS/TEMP] disk"}, SizeSkew: 5, NoUIDL: true, NoTop: true}})
		c := loginRaw(t, addr)
		c.cmd("RETR 2", "-ERR [SYS/TEMP] disk")
		c.cmd("LIST 2", "+OK 2 12")
		c.cmd("UIDL", "-ERR")
		c.cmd("TOP 1 0", "-ERR")
		c.cmd("RETR 3", "+OK")
		c.multi()
	})
	t.Run("CAPA", func(t *testing.T) {
		_, addr := start(t, []Mailbox{{User: "bob", Password: "pw"}}, &ServerOptions{Faults: Faults{NoPipelining: true, NoUIDL: true, SASLPlain: true, SASLOAuth: true}})
		c := dial(t, addr)
		c.cmd("CAPA", "+OK")
		if got := c.multi(); got != "TOP\r\nUSER\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nSASL PLAIN XOAUTH2 OAUTHBEARER\r\nIMPLEMENTATION popmigrate-pop3test\r\n" {
			t.Errorf("CAPA = %q", got)
		}
		_, addr2 := start(t, nil, &ServerOptions{Faults: Faults{NoCAPA: true}})
		dial(t, addr2).cmd("CAPA", "-ERR")
	})
	t.Run("NoUser", func(t *testing.T) {
		_, addr := start(t, []Mailbox{{User: "bob", Password: "pw"}}, &ServerOptions{Faults: Faults{NoUser: true}})
		dial(t, addr).cmd("USER bob", "-ERR")
	})
	t.Run("LoginErrCount", func(t *testing.T) {
		s, addr := start(t, []Mailbox{{User: "bob", Password: "pw"}}, nil)
		s.SetFaults("bob", Faults{LoginErr: "[IN-USE] locked elsewhere", LoginErrCount: 2})
		c := dial(t, addr)
		for i := 0; i < 2; i++ {
			c.cmd("USER bob", "+OK")
			c.cmd("PASS pw", "-ERR [IN-USE] locked elsewhere")
		}
		c.cmd("USER bob", "+OK")
		c.cmd("PASS pw", "+OK")
	})
	t.Run("DropBeforeQuitOK", func(t *testing.T) {
		s, addr := start(t, []Mailbox{{User: "bob", Password: "pw", Messages: msgs}}, &ServerOptions{UserFaults: map[string]Faults{"bob": {DropBeforeQuitOK: true}}})
		c := loginRaw(t, addr)
		c.cmd("DELE 1", "+OK")
		c.send("QUIT\r\n")
		if rest, _ := io.ReadAll(c.br); len(rest) != 0 {
			t.Errorf("QUIT answered %q", rest)
		}
		waitIdle(t, s)
		if n := len(s.Mailbox("bob")); n != 3 {
			t.Errorf("%d messages left", n)
		}
	})
	t.Run("FakeDele", func(t *testing.T) {
		s, addr := start(t, []Mailbox{{User: "bob", Password: "pw", Messages: msgs}}, &ServerOptions{Faults: Faults{FakeDele: true}})
		c := loginRaw(t, addr)
		c.cmd("DELE 1", "+OK")
		c.cmd("QUIT", "+OK")
		if n := len(s.Mailbox("bob")); n != 3 {
			t.Errorf("%d messages left", n)
		}
	})
	t.Run("DelayAndClose", func(t *testing.T) {
		s := NewServer([]Mailbox{{User: "bob", Password: "pw"}}, &ServerOptions{Faults: Faults{Delay: time.Hour}})
		addr, err := s.Listen("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.Dial("tcp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		waitFor := time.Now().Add(5 * time.Second)
		for s.Stats().Concurrent == 0 && time.Now().Before(waitFor) {
			time.Sleep(time.Millisecond)
		}
		done := make(chan struct{})
		go func() { _ = s.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("Close blocked by a delayed response")
		}
	})
}

func TestAPOPAndSASL(t *testing.T) {
	_, addr := start(t, []Mailbox{{User: "bob", Password: "pw", Token: "tok"}}, &ServerOptions{Faults: Faults{APOP: true, SASLPlain: true, SASLOAuth: true}})
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	rc := &conn{t: t, c: raw, br: bufio.NewReader(raw)}
	greeting := rc.expect("+OK")
	i, j := strings.IndexByte(greeting, '<'), strings.IndexByte(greeting, '>')
	if i < 0 || j < i {
		t.Fatalf("greeting without timestamp: %q", greeting)
	}
	sum := md5.Sum([]byte(greeting[i:j+1] + "pw"))
	rc.cmd("APOP bob "+hex.EncodeToString(sum[:]), "+OK")
	rc.cmd("QUIT", "+OK")

	c2 := dial(t, addr)
	c2.cmd("AUTH PLAIN", "+ ")
	c2.cmd("*", "-ERR")
	c2.cmd("AUTH PLAIN AGJvYgB3cm9uZw==", "-ERR [AUTH]") // \0bob\0wrong
	c2.cmd("AUTH CRAM-MD5", "-ERR")
	c2.cmd("AUTH PLAIN AGJvYgBwdw==", "+OK") // \0bob\0pw
}

func TestSTLSAndImplicit(t *testing.T) {
	p, err := testpki.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := p.ClientConfig()
	cfg.ServerName = "127.0.0.1"
	boxes := []Mailbox{{User: "bob", Password: "pw"}}

	_, addr := start(t, boxes, &ServerOptions{TLSConfig: p.ServerConfig})
	c := dial(t, addr)
	c.cmd("CAPA", "+OK")
	if got := c.multi(); !strings.Contains(got, "STLS\r\n") {
		t.Fatalf("CAPA without STLS: %q", got)
	}
	c.cmd("STLS", "+OK")
	tc := tls.Client(c.c, cfg)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	sc := &conn{t: t, c: tc, br: bufio.NewReader(tc)}
	sc.cmd("CAPA", "+OK")
	if got := sc.multi(); strings.Contains(got, "STLS") {
		t.Errorf("STLS offered over TLS: %q", got)
	}
	sc.cmd("STLS", "-ERR")
	sc.cmd("USER bob", "+OK")
	sc.cmd("PASS pw", "+OK")

	_, addr2 := start(t, boxes, &ServerOptions{TLSConfig: p.ServerConfig, Implicit: true})
	raw, err := tls.Dial("tcp", addr2, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
	ic := &conn{t: t, c: raw, br: bufio.NewReader(raw)}
	ic.expect("+OK")
	ic.cmd("STLS", "-ERR")
	ic.cmd("USER bob", "+OK")
	ic.cmd("PASS pw", "+OK")
}

func TestMailboxAPI(t *testing.T) {
	s, addr := start(t, nil, nil)
	if s.Mailbox("nobody") != nil {
		t.Error("unknown mailbox not nil")
	}
	s.AddMessage("bob", Message{Data: []byte("hi\n")})
	if m := s.Mailbox("bob"); len(m) != 1 || m[0].UID == "" {
		t.Fatalf("Mailbox = %+v", m)
	}
	// No password was set: nobody can log in.
	c := dial(t, addr)
	c.cmd("USER bob", "+OK")
	c.cmd("PASS ", "-ERR [AUTH]")
}

// ServeConn works over any net.Conn, for example a pipe.
func TestServeConn(t *testing.T) {
	s := NewServer([]Mailbox{{User: "bob", Password: "pw", Messages: []Message{{Data: []byte("x\n")}}}}, nil)
	defer s.Close()
	cli, srv := net.Pipe()
	done := make(chan struct{})
	go func() { s.ServeConn(srv); close(done) }()
	_ = cli.SetDeadline(time.Now().Add(10 * time.Second))
	c := &conn{t: t, c: cli, br: bufio.NewReader(cli)}
	c.expect("+OK")
	c.cmd("USER bob", "+OK")
	c.cmd("PASS pw", "+OK 1 messages")
	c.cmd("QUIT", "+OK")
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("ServeConn did not return after QUIT")
	}
}
