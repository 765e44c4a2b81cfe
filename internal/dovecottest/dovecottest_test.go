package dovecottest

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ioTimeout bounds every exchange of the raw clients below.
const ioTimeout = 10 * time.Second

// tricky messages in canonical form: dot lines, a "From " line, 8-bit text,
// a long line, an empty body.
var testMessages = [][]byte{
	[]byte("From: a@example.org\nTo: alice@example.org\nSubject: one\n\nHello.\n"),
	[]byte("Subject: dots\n\n.\n..\n.leading dot\nmiddle . dot\n.\n"),
	[]byte("Subject: from line\n\nFrom the start of a line\n>From quoted\n"),
	[]byte("Subject: =?UTF-8?Q?gr=C3=BC=C3=9Fe?=\nContent-Type: text/plain; charset=utf-8\n\nGrüße, ½ € — 8-bit body\n"),
	[]byte("Subject: long line\n\n" + strings.Repeat("0123456789", 200) + "\n"),
	[]byte("Subject: empty body\n\n"),
}

// pop3Client is a minimal raw POP3 client for proving the harness; it
// returns errors instead of failing so it can run in goroutines.
type pop3Client struct {
	conn     net.Conn
	r        *bufio.Reader
	greeting string
}

func dialPOP3(addr string, useTLS bool, cfg *tls.Config) (*pop3Client, error) {
	c, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		return nil, err
	}
	if err := c.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		c.Close()
		return nil, err
	}
	if useTLS {
		tc := tls.Client(c, withServerName(cfg, addr))
		if err := tc.Handshake(); err != nil {
			c.Close()
			return nil, fmt.Errorf("tls handshake: %w", err)
		}
		c = tc
	}
	p := &pop3Client{conn: c, r: bufio.NewReaderSize(c, 64<<10)}
	line, err := p.readLine()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if !strings.HasPrefix(line, "+OK") {
		c.Close()
		return nil, fmt.Errorf("greeting: %q", line)
	}
	p.greeting = line
	return p, nil
}

// withServerName returns a copy of cfg that verifies the host of addr, as
// a client given "host:port" would.
func withServerName(cfg *tls.Config, addr string) *tls.Config {
	cfg = cfg.Clone()
	cfg.ServerName, _, _ = net.SplitHostPort(addr)
	return cfg
}

func (p *pop3Client) close() { p.conn.Close() }

// readLine reads one CRLF-terminated line (at most 64 KiB) without its CRLF.
func (p *pop3Client) readLine() (string, error) {
	line, err := p.r.ReadSlice('\n')
	if err != nil {
		return "", err
	}
	if !bytes.HasSuffix(line, []byte("\r\n")) {
		return "", fmt.Errorf("line without CRLF: %q", line)
	}
	return string(line[:len(line)-2]), nil
}

// cmd sends line and returns the status line; -ERR becomes an error that
// holds the server's text.
func (p *pop3Client) cmd(line string) (string, error) {
	if err := p.conn.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		return "", err
	}
	if _, err := fmt.Fprintf(p.conn, "%s\r\n", line); err != nil {
		return "", err
	}
	resp, err := p.readLine()
	if err != nil {
		return "", fmt.Errorf("%s: %w", strings.Fields(line)[0], err)
	}
	if !strings.HasPrefix(resp, "+OK") {
		return resp, fmt.Errorf("%s: %s", strings.Fields(line)[0], resp)
	}
	return resp, nil
}

// multiline reads a multi-line response body and returns it dot-unstuffed
// with every CRLF turned into LF (the canonical form); it also returns the
// number of octets on the wire before unstuffing, CRLF included.
func (p *pop3Client) multiline() (body []byte, wireOctets int, err error) {
	for {
		line, err := p.r.ReadSlice('\n')
		if err != nil {
			return nil, 0, err
		}
		if !bytes.HasSuffix(line, []byte("\r\n")) {
			return nil, 0, fmt.Errorf("line without CRLF: %q", line)
		}
		if bytes.Equal(line, []byte(".\r\n")) {
			return body, wireOctets, nil
		}
		if line[0] == '.' {
			line = line[1:]
		}
		wireOctets += len(line)
		body = append(body, line[:len(line)-2]...)
		body = append(body, '\n')
		if len(body) > 16<<20 {
			return nil, 0, errors.New("multi-line response over 16 MiB")
		}
	}
}

func (p *pop3Client) login(user, pass string) error {
	if _, err := p.cmd("USER " + user); err != nil {
		return err
	}
	_, err := p.cmd("PASS " + pass)
	return err
}

// uidl returns the UIDL listing as message number -> UIDL.
func (p *pop3Client) uidl() (map[int]string, error) {
	if _, err := p.cmd("UIDL"); err != nil {
		return nil, err
	}
	body, _, err := p.multiline()
	if err != nil {
		return nil, err
	}
	out := make(map[int]string)
	for _, line := range strings.Split(strings.TrimSuffix(string(body), "\n"), "\n") {
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		n, err := strconv.Atoi(f[0])
		if len(f) != 2 || err != nil {
			return nil, fmt.Errorf("bad UIDL line %q", line)
		}
		out[n] = f[1]
	}
	return out, nil
}

// retr returns message n in canonical form and its octet count on the wire.
func (p *pop3Client) retr(n int) ([]byte, int, error) {
	if _, err := p.cmd(fmt.Sprintf("RETR %d", n)); err != nil {
		return nil, 0, err
	}
	return p.multiline()
}

func mustPOP3S(t *testing.T, s *Server, user, pass string) *pop3Client {
	t.Helper()
	c, err := dialPOP3(s.POP3SAddr, true, s.PKI.ClientConfig())
	if err != nil {
		t.Fatalf("dial %s: %v", s.POP3SAddr, err)
	}
	t.Cleanup(c.close)
	if err := c.login(user, pass); err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	return c
}

// crlfSize is the size Dovecot reports for a canonical message: every LF
// counts as CRLF.
func crlfSize(msg []byte) int { return len(msg) + bytes.Count(msg, []byte("\n")) }

// uidlRE matches pop3_uidl_format %08Xu%08Xv: the UID then UIDVALIDITY,
// eight hex digits each (Dovecot 2.3 prints them in lower case).
var uidlRE = regexp.MustCompile(`^[0-9a-fA-F]{16}$`)

// parallelUsers are the users of the parallel-login test.
const parallelUsers = 16

// TestDefaultServer runs the checks that need a server with default
// options against one shared server (a server starts in ~0.2 s but stops
// in ~1 s), in parallel, each check with its own user.
func TestDefaultServer(t *testing.T) {
	t.Parallel()
	users := []User{
		{Name: "alice", Password: "alice-secret", Messages: testMessages},
		{Name: "bob", Password: "pw", Messages: testMessages[:3]},
		{Name: "carol", Password: "pw", Messages: testMessages[:1]},
		{Name: "erin", Password: "pw", Messages: testMessages[:2]},
		{Name: "gina", Password: "right"},
	}
	for i := range parallelUsers {
		users = append(users, User{
			Name:     fmt.Sprintf("user%02d", i),
			Password: fmt.Sprintf("pw%02d", i),
			Messages: [][]byte{[]byte(fmt.Sprintf("Subject: %d\n\nbody %d\n", i, i))},
		})
	}
	s := Start(t, users, nil)
	for _, tc := range []struct {
		name string
		run  func(*testing.T, *Server, []User)
	}{
		{"POP3SRetrMatchesCanonicalMessages", testPOP3SRetrMatchesCanonicalMessages},
		{"UIDLStableAcrossSessionsAndAddMessage", testUIDLStableAcrossSessionsAndAddMessage},
		{"PlainPortRequiresSTLS", testPlainPortRequiresSTLS},
		{"IMAPSLoginSelectInbox", testIMAPSLoginSelectInbox},
		{"ParallelPOP3SLogins", testParallelPOP3SLogins},
		{"WrongPasswordRefusedPromptly", testWrongPasswordRefusedPromptly},
		{"NoAPOPTimestampByDefault", testNoAPOPTimestampByDefault},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, s, users)
		})
	}
}

func testPOP3SRetrMatchesCanonicalMessages(t *testing.T, s *Server, _ []User) {
	c := mustPOP3S(t, s, "alice", "alice-secret")

	stat, err := c.cmd("STAT")
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, m := range testMessages {
		total += crlfSize(m)
	}
	if want := fmt.Sprintf("+OK %d %d", len(testMessages), total); stat != want {
		t.Errorf("STAT = %q, want %q", stat, want)
	}

	uidls, err := c.uidl()
	if err != nil {
		t.Fatal(err)
	}
	if len(uidls) != len(testMessages) {
		t.Fatalf("UIDL lists %d messages, want %d: %v", len(uidls), len(testMessages), uidls)
	}
	seen := map[string]bool{}
	for n := 1; n <= len(testMessages); n++ {
		u := uidls[n]
		if !uidlRE.MatchString(u) || !strings.EqualFold(u[:8], fmt.Sprintf("%08x", n)) {
			t.Errorf("UIDL of message %d = %q, want UID %08x then UIDVALIDITY (pop3_uidl_format %%08Xu%%08Xv)", n, u, n)
		}
		if seen[u] {
			t.Errorf("UIDL %q repeated", u)
		}
		seen[u] = true
	}

	for i, want := range testMessages {
		got, octets, err := c.retr(i + 1)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("RETR %d = %q, want %q", i+1, got, want)
		}
		if octets != crlfSize(want) {
			t.Errorf("RETR %d: %d octets on the wire, want %d", i+1, octets, crlfSize(want))
		}
	}
	if _, err := c.cmd("QUIT"); err != nil {
		t.Fatal(err)
	}
	// pop3_no_flag_updates: reading leaves the files in new/.
	entries, err := os.ReadDir(s.MaildirPath("alice") + "/new")
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(testMessages) {
		t.Errorf("new/ holds %d files after RETR, want %d", len(entries), len(testMessages))
	}
}

func testUIDLStableAcrossSessionsAndAddMessage(t *testing.T, s *Server, _ []User) {

	c1 := mustPOP3S(t, s, "bob", "pw")
	first, err := c1.uidl()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c1.cmd("QUIT"); err != nil {
		t.Fatal(err)
	}

	added := []byte("Subject: added later\n\nnew\n")
	s.AddMessage(t, "bob", added)

	c2 := mustPOP3S(t, s, "bob", "pw")
	second, err := c2.uidl()
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 3 || len(second) != 4 {
		t.Fatalf("UIDL counts = %d then %d, want 3 then 4 (%v, %v)", len(first), len(second), first, second)
	}
	for n, u := range first {
		if second[n] != u {
			t.Errorf("message %d: UIDL %q in the first session, %q in the second", n, u, second[n])
		}
	}
	got, _, err := c2.retr(4)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, added) {
		t.Errorf("RETR 4 = %q, want the added message %q", got, added)
	}
}

func testPlainPortRequiresSTLS(t *testing.T, s *Server, _ []User) {

	c, err := dialPOP3(s.POP3Addr, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	if _, err := c.cmd("CAPA"); err != nil {
		t.Fatal(err)
	}
	capa, _, err := c.multiline()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(capa), "STLS\n") {
		t.Errorf("CAPA on the plain port lacks STLS:\n%s", capa)
	}
	resp, err := c.cmd("USER carol")
	if err == nil || !strings.HasPrefix(resp, "-ERR") {
		t.Fatalf("USER before STLS = %q, %v; want -ERR (disable_plaintext_auth)", resp, err)
	}
	if _, err := c.cmd("STLS"); err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(c.conn, withServerName(s.PKI.ClientConfig(), s.POP3Addr))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("STLS handshake: %v", err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
	if err := c.login("carol", "pw"); err != nil {
		t.Fatalf("login after STLS: %v", err)
	}
	if stat, err := c.cmd("STAT"); err != nil || stat != fmt.Sprintf("+OK 1 %d", crlfSize(testMessages[0])) {
		t.Errorf("STAT after STLS = %q, %v", stat, err)
	}
	if _, err := c.cmd("QUIT"); err != nil {
		t.Fatal(err)
	}

	// IMAP's plain port refuses LOGIN until STARTTLS, too.
	ic, err := net.DialTimeout("tcp", s.IMAPAddr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer ic.Close()
	ic.SetDeadline(time.Now().Add(ioTimeout))
	greeting, err := bufio.NewReader(ic).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(greeting, "STARTTLS") || !strings.Contains(greeting, "LOGINDISABLED") {
		t.Errorf("IMAP plain greeting = %q, want STARTTLS and LOGINDISABLED", greeting)
	}
}

func testIMAPSLoginSelectInbox(t *testing.T, s *Server, _ []User) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", s.IMAPSAddr, s.PKI.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(ioTimeout))
	r := bufio.NewReader(conn)
	readUntilTagged := func(tag string) []string {
		t.Helper()
		var lines []string
		for range 100 {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("read: %v (so far %q)", err, lines)
			}
			lines = append(lines, strings.TrimRight(line, "\r\n"))
			if strings.HasPrefix(line, tag+" ") {
				if !strings.HasPrefix(line, tag+" OK") {
					t.Fatalf("%s: %q", tag, lines)
				}
				return lines
			}
		}
		t.Fatalf("%s: no tagged response in 100 lines: %q", tag, lines)
		return nil
	}
	greeting, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(greeting, "* OK") {
		t.Fatalf("greeting = %q, %v", greeting, err)
	}
	fmt.Fprintf(conn, "a1 LOGIN erin pw\r\n")
	readUntilTagged("a1")
	fmt.Fprintf(conn, "a2 SELECT INBOX\r\n")
	lines := readUntilTagged("a2")
	if !containsLine(lines, "* 2 EXISTS") {
		t.Errorf("SELECT INBOX = %q, want * 2 EXISTS", lines)
	}
	fmt.Fprintf(conn, "a3 LOGOUT\r\n")
	readUntilTagged("a3")
}

func containsLine(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}

func testParallelPOP3SLogins(t *testing.T, s *Server, all []User) {
	const users = parallelUsers
	const sameUser = 16 // above Dovecot's default of 10 per user and IP
	var us []User
	for _, u := range all {
		if strings.HasPrefix(u.Name, "user") {
			us = append(us, u)
		}
	}
	if len(us) != users {
		t.Fatalf("%d parallel users, want %d", len(us), users)
	}

	// Every session logs in, then waits for all others to be logged in, so
	// they are truly concurrent.
	var loggedIn, wg sync.WaitGroup
	errs := make(chan error, users+sameUser)
	session := func(u User, idx int) {
		defer wg.Done()
		c, err := dialPOP3(s.POP3SAddr, true, s.PKI.ClientConfig())
		if err != nil {
			loggedIn.Done()
			errs <- fmt.Errorf("%s #%d: %w", u.Name, idx, err)
			return
		}
		defer c.close()
		err = c.login(u.Name, u.Password)
		loggedIn.Done()
		if err != nil {
			errs <- fmt.Errorf("%s #%d: %w", u.Name, idx, err)
			return
		}
		loggedIn.Wait()
		got, _, err := c.retr(1)
		if err != nil {
			errs <- fmt.Errorf("%s #%d: %w", u.Name, idx, err)
			return
		}
		if !bytes.Equal(got, u.Messages[0]) {
			errs <- fmt.Errorf("%s #%d: RETR 1 = %q, want %q", u.Name, idx, got, u.Messages[0])
			return
		}
		if _, err := c.cmd("QUIT"); err != nil {
			errs <- fmt.Errorf("%s #%d: %w", u.Name, idx, err)
		}
	}
	loggedIn.Add(users + sameUser)
	wg.Add(users + sameUser)
	for i, u := range us {
		go session(u, i)
	}
	for i := range sameUser {
		go session(us[0], i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// apopStampRE matches the APOP timestamp of a greeting (RFC 1939 section 7).
var apopStampRE = regexp.MustCompile(`<[^<>]+@[^<>]+>`)

func TestAPOP(t *testing.T) {
	t.Parallel()
	s := Start(t, []User{{Name: "frank", Password: "tanstaaf", Messages: testMessages[:1]}}, &Options{APOP: true})
	apop := func(addr string, useTLS bool, pass string) (string, error) {
		c, err := dialPOP3(addr, useTLS, s.PKI.ClientConfig())
		if err != nil {
			return "", err
		}
		defer c.close()
		stamp := apopStampRE.FindString(c.greeting)
		if stamp == "" {
			return "", fmt.Errorf("greeting %q has no APOP timestamp", c.greeting)
		}
		sum := md5.Sum([]byte(stamp + pass))
		if _, err := c.cmd("APOP frank " + hex.EncodeToString(sum[:])); err != nil {
			return "", err
		}
		return c.cmd("STAT")
	}
	if stat, err := apop(s.POP3SAddr, true, "tanstaaf"); err != nil || !strings.HasPrefix(stat, "+OK 1 ") {
		t.Errorf("APOP over POP3S: STAT = %q, %v", stat, err)
	}
	// APOP sends no password, so Dovecot takes it before STLS.
	if stat, err := apop(s.POP3Addr, false, "tanstaaf"); err != nil || !strings.HasPrefix(stat, "+OK 1 ") {
		t.Errorf("APOP on the plain port: STAT = %q, %v", stat, err)
	}
	if _, err := apop(s.POP3SAddr, true, "wrong"); err == nil {
		t.Error("APOP with a wrong password succeeded")
	}
}

func testNoAPOPTimestampByDefault(t *testing.T, s *Server, _ []User) {
	c, err := dialPOP3(s.POP3SAddr, true, s.PKI.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	if apopStampRE.MatchString(c.greeting) {
		t.Errorf("greeting without Options.APOP = %q, want no timestamp", c.greeting)
	}
}

// penaltyBound tells Dovecot's authentication penalty (2 s for a second
// failure) from a busy machine's slowness: a login that takes longer had
// the penalty. Dovecot 2.3 also flushes failures on a 500 ms timer, and a
// loaded 2-core machine has been seen to take 1.01 s without a penalty.
const penaltyBound = 1800 * time.Millisecond

func testWrongPasswordRefusedPromptly(t *testing.T, s *Server, _ []User) {
	// Two attempts: with the authentication penalty on, the second would
	// wait 2 s before Dovecot even checked the password.
	for i := range 2 {
		c, err := dialPOP3(s.POP3SAddr, true, s.PKI.ClientConfig())
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		err = c.login("gina", "wrong")
		elapsed := time.Since(start)
		c.close()
		if err == nil || !strings.Contains(err.Error(), "-ERR") {
			t.Fatalf("attempt %d: login with a wrong password: %v, want -ERR", i, err)
		}
		if elapsed > penaltyBound {
			t.Errorf("attempt %d: refusal took %v, want under %v (auth_failure_delay = 0, no penalty)", i, elapsed, penaltyBound)
		}
	}
	start := time.Now()
	mustPOP3S(t, s, "gina", "right")
	if elapsed := time.Since(start); elapsed > penaltyBound {
		t.Errorf("right password after failures took %v, want no penalty (under %v)", elapsed, penaltyBound)
	}
}

// TestOptions checks AllowPlaintextAuth and ExtraConfig on one server.
func TestOptions(t *testing.T) {
	t.Parallel()
	s := Start(t, []User{{Name: "dave", Password: "pw"}}, &Options{
		AllowPlaintextAuth: true,
		ExtraConfig:        "login_greeting = popmigrate test server",
	})
	t.Run("AllowPlaintextAuth", func(t *testing.T) {
		c, err := dialPOP3(s.POP3Addr, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.close()
		if err := c.login("dave", "pw"); err != nil {
			t.Fatalf("USER/PASS without TLS: %v", err)
		}
		if stat, err := c.cmd("STAT"); err != nil || stat != "+OK 0 0" {
			t.Errorf("STAT = %q, %v; want +OK 0 0", stat, err)
		}
	})
	t.Run("ExtraConfig", func(t *testing.T) {
		c, err := dialPOP3(s.POP3SAddr, true, s.PKI.ClientConfig())
		if err != nil {
			t.Fatal(err)
		}
		defer c.close()
		if c.greeting != "+OK popmigrate test server" {
			t.Errorf("greeting = %q, want the login_greeting from ExtraConfig", c.greeting)
		}
	})
}

func TestCleanupLeavesNoProcess(t *testing.T) {
	t.Parallel()
	var s *Server
	var during []int
	t.Run("server", func(t *testing.T) {
		s = Start(t, []User{{Name: "ivan", Password: "pw", Messages: testMessages[:1]}}, nil)
		// A live session: Cleanup must end its pop3 process too.
		mustPOP3S(t, s, "ivan", "pw")
		during = s.processes()
	})
	if s == nil {
		t.Fatal("Start did not return")
	}
	if len(during) < 2 || !containsPid(during, s.cmd.Process.Pid) {
		t.Fatalf("while running, processes() = %v; want the master %d and its children", during, s.cmd.Process.Pid)
	}
	if left := s.processes(); len(left) != 0 {
		t.Errorf("after Cleanup, processes of %s still running: %v", s.instance, left)
	}
	select {
	case <-s.exited:
	default:
		t.Errorf("after Cleanup, master %d has not exited", s.cmd.Process.Pid)
	}
	if _, err := os.Stat(s.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Cleanup, %s still exists (%v)", s.Dir, err)
	}
}

func containsPid(pids []int, pid int) bool {
	for _, p := range pids {
		if p == pid {
			return true
		}
	}
	return false
}

func TestStartRetriesWhenPortTaken(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port
	calls := 0
	pick := func(n int) ([]int, error) {
		calls++
		ports, err := freePorts(n)
		if err == nil && calls == 1 {
			ports[1] = busyPort // POP3S collides on the first try
		}
		return ports, err
	}
	s := start(t, []User{{Name: "jill", Password: "pw"}}, nil, pick)
	if calls != 2 {
		t.Errorf("picked ports %d times, want 2 (one retry)", calls)
	}
	if s.POP3SAddr == busy.Addr().String() {
		t.Errorf("POP3SAddr = busy port %s", s.POP3SAddr)
	}
	mustPOP3S(t, s, "jill", "pw")
}

func TestValidateUsers(t *testing.T) {
	for _, tc := range []struct {
		name  string
		users []User
		ok    bool
	}{
		{"valid", []User{{Name: "a.b_c-d+e@example.org", Password: "p w!"}}, true},
		{"none", nil, true},
		{"empty name", []User{{Name: "", Password: "pw"}}, false},
		{"slash", []User{{Name: "a/b", Password: "pw"}}, false},
		{"dotdot", []User{{Name: "..", Password: "pw"}}, false},
		{"colon", []User{{Name: "a:b", Password: "pw"}}, false},
		{"too long", []User{{Name: strings.Repeat("a", 65), Password: "pw"}}, false},
		{"duplicate", []User{{Name: "a", Password: "pw"}, {Name: "a", Password: "pw"}}, false},
		{"empty password", []User{{Name: "a"}}, false},
		{"colon password", []User{{Name: "a", Password: "p:w"}}, false},
		{"newline password", []User{{Name: "a", Password: "p\nw"}}, false},
	} {
		err := validateUsers(tc.users)
		if (err == nil) != tc.ok {
			t.Errorf("%s: validateUsers = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

// fakeTB records what Start reports, so its failure path can be tested.
// Fatalf ends the calling goroutine, like testing.T's.
type fakeTB struct {
	testing.TB // unused methods panic
	mu         sync.Mutex
	fatal      string
	logs       []string
	errors     []string
	cleanups   []func()
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatal = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}

func (f *fakeTB) Logf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logs = append(f.logs, fmt.Sprintf(format, args...))
}

func (f *fakeTB) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}

func (f *fakeTB) Failed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fatal != "" || len(f.errors) > 0
}

// runCleanups runs the registered cleanups, last first, like testing does.
func (f *fakeTB) runCleanups() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

func TestStartFailsWithDovecotError(t *testing.T) {
	t.Parallel()
	ftb := &fakeTB{}
	done := make(chan struct{})
	var s *Server
	go func() {
		defer close(done)
		s = Start(ftb, []User{{Name: "kim", Password: "pw"}}, &Options{ExtraConfig: "no_such_dovecot_setting = 1"})
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Start did not return within 30s")
	}
	if s != nil {
		t.Fatal("Start returned a server despite a bad config")
	}
	m := regexp.MustCompile(`start (\S+) in (\S+): dovecot exited during startup`).FindStringSubmatch(ftb.fatal)
	if m == nil {
		t.Fatalf("fatal message = %q, want it to name the instance and folder and say dovecot exited during startup", ftb.fatal)
	}
	failed := &Server{instance: m[1], Dir: m[2], confPath: m[2] + "/dovecot.conf"}

	ftb.runCleanups()
	log := strings.Join(ftb.logs, "\n")
	if !strings.Contains(log, "no_such_dovecot_setting") {
		t.Errorf("cleanup did not log Dovecot's complaint about the bad setting; logs:\n%s", log)
	}
	if len(ftb.errors) > 0 {
		t.Errorf("cleanup reported errors: %q", ftb.errors)
	}
	if pids := failed.processes(); len(pids) > 0 {
		t.Errorf("processes of %s left after a failed start: %v", failed.instance, pids)
	}
	if _, err := os.Stat(failed.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still exists after cleanup (%v)", failed.Dir, err)
	}
}
