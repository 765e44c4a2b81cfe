package pop3

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/internal/testpki"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

// Tests against the in-memory server on loopback.

var (
	pkiOnce sync.Once
	pki     *testpki.PKI
	pkiErr  error
	pkiDir  string
)

// testPKI returns a CA and server certificate shared by the package's tests.
func testPKI(t testing.TB) *testpki.PKI {
	t.Helper()
	pkiOnce.Do(func() {
		dir, err := osMkdirTemp()
		if err != nil {
			pkiErr = err
			return
		}
		pkiDir = dir
		pki, pkiErr = testpki.New(dir)
	})
	if pkiErr != nil {
		t.Fatal(pkiErr)
	}
	return pki
}

// sampleMessages returns n messages with distinct bodies, some tricky.
func sampleMessages(n int) []pop3test.Message {
	msgs := make([]pop3test.Message, n)
	for i := range msgs {
		msgs[i] = pop3test.Message{
			UID:  fmt.Sprintf("uid-%d", i+1),
			Data: []byte(fmt.Sprintf("Subject: message %d\n\n.dot line\nbody %d\n.\n", i+1, i+1)),
		}
	}
	return msgs
}

// served is the body RETR delivers for a sample message: CRLF line ends,
// unstuffed.
func served(m pop3test.Message) string {
	return strings.ReplaceAll(string(m.Data), "\n", "\r\n")
}

// startServer runs a pop3test server for the test.
func startServer(t testing.TB, boxes []pop3test.Mailbox, opts *pop3test.ServerOptions) (*pop3test.Server, string) {
	t.Helper()
	s := pop3test.NewServer(boxes, opts)
	addr, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, addr.String()
}

// login dials addr and logs in as user (password "pw").
func login(t testing.TB, addr, user string, opts *Options) *Client {
	t.Helper()
	ctx := context.Background()
	if opts == nil {
		opts = &Options{Security: SecurityPlain}
	}
	c, err := Dial(ctx, addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Login(ctx, &Auth{Username: user, Password: "pw", AllowPlaintext: opts.Security == SecurityPlain}); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDialImplicitTLS(t *testing.T) {
	p := testPKI(t)
	_, addr := startServer(t, []pop3test.Mailbox{{User: "bob", Password: "pw", Messages: sampleMessages(2)}},
		&pop3test.ServerOptions{TLSConfig: p.ServerConfig, Implicit: true})
	c := login(t, addr, "bob", &Options{Security: SecurityTLS, TLSConfig: p.ClientConfig()})
	if !c.IsTLS() {
		t.Error("IsTLS() = false")
	}
	if st, ok := c.TLSConnectionState(); !ok || st.Version < tls.VersionTLS12 {
		t.Errorf("TLS state = %v, %v", st.Version, ok)
	}
	if n, _, err := c.Stat(ctxT(t)); err != nil || n != 2 {
		t.Fatalf("Stat = %d, %v", n, err)
	}
}

func TestDialTLSUntrusted(t *testing.T) {
	p := testPKI(t)
	s, addr := startServer(t, nil, &pop3test.ServerOptions{TLSConfig: p.ServerConfig, Implicit: true})
	_, err := Dial(ctxT(t), addr, &Options{Security: SecurityTLS})
	var ce *tls.CertificateVerificationError
	if !errors.As(err, &ce) {
		t.Fatalf("Dial without the CA = %v, want a certificate error", err)
	}
	if s.Stats().Logins != 0 {
		t.Error("logged in over an untrusted connection")
	}
}

func TestDialSTLS(t *testing.T) {
	p := testPKI(t)
	var log bytes.Buffer
	_, addr := startServer(t, []pop3test.Mailbox{{User: "bob", Password: "pw"}},
		&pop3test.ServerOptions{TLSConfig: p.ServerConfig, Log: &syncWriter{w: &log}})
	var dbg bytes.Buffer
	c := login(t, addr, "bob", &Options{Security: SecuritySTLS, TLSConfig: p.ClientConfig(), Debug: &dbg})
	if !c.IsTLS() {
		t.Fatal("IsTLS() = false after STLS")
	}
	if !strings.HasPrefix(dbg.String(), "S: +OK") || !strings.Contains(dbg.String(), "S: STLS\nS: IMPLEMENTATION popmigrate-pop3test\nS: .\nC: STLS\nS: +OK begin TLS negotiation\nC: CAPA\n") {
		t.Errorf("transcript:\n%s\nwant CAPA, STLS, CAPA", dbg.String())
	}
	// PASS comes only after the handshake: after the second CAPA.
	tr := dbg.String()
	if strings.Index(tr, "C: PASS") < strings.LastIndex(tr, "C: CAPA") {
		t.Errorf("PASS before the post-TLS CAPA:\n%s", tr)
	}
}

// syncWriter serialises writes from the server's goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprint(s.w)
}

// A plain port that does not offer STLS must not get anything
// credential-like from a client that requires TLS (no STARTTLS stripping).
func TestDialSTLSNotOffered(t *testing.T) {
	sc, conn := newScript(t, step{s: greet}, step{c: "CAPA\r\n", s: "+OK\r\nUSER\r\nSASL PLAIN\r\n.\r\n"})
	_, err := Dial(ctxT(t), "mail.example:110", &Options{Security: SecuritySTLS, Dialer: pipeDialer{conn}})
	if !errors.Is(err, ErrSTLSUnavailable) {
		t.Fatalf("err = %v, want ErrSTLSUnavailable", err)
	}
	if got := sc.finish(); got != "CAPA\r\n" {
		t.Errorf("client sent %q", got)
	}
}

func TestDialSTLSNotOfferedServer(t *testing.T) {
	p := testPKI(t)
	log := &syncWriter{w: &bytes.Buffer{}}
	s, addr := startServer(t, []pop3test.Mailbox{{User: "bob", Password: "pw"}},
		&pop3test.ServerOptions{TLSConfig: p.ServerConfig, Faults: pop3test.Faults{NoSTLS: true, SASLPlain: true}, Log: log})
	_, err := Dial(ctxT(t), addr, &Options{Security: SecuritySTLS, TLSConfig: p.ClientConfig()})
	if !errors.Is(err, ErrSTLSUnavailable) {
		t.Fatalf("err = %v", err)
	}
	waitFor(t, func() bool { return s.Stats().Concurrent == 0 })
	for _, bad := range []string{"C: USER", "C: PASS", "C: AUTH", "C: APOP"} {
		if strings.Contains(log.String(), bad) {
			t.Errorf("server saw %q:\n%s", bad, log.String())
		}
	}
}

func TestDialSTLSRefused(t *testing.T) {
	sc, conn := newScript(t, step{s: greet},
		step{c: "CAPA\r\n", s: "+OK\r\nSTLS\r\nUSER\r\n.\r\n"},
		step{c: "STLS\r\n", s: "-ERR [SYS/TEMP] TLS not available now\r\n"})
	_, err := Dial(ctxT(t), "mail.example:110", &Options{Security: SecuritySTLS, Dialer: pipeDialer{conn}})
	var pe *Error
	if !errors.Is(err, ErrSTLSUnavailable) || !errors.As(err, &pe) || pe.Code != "SYS/TEMP" {
		t.Fatalf("err = %v", err)
	}
	if got := sc.finish(); got != "CAPA\r\nSTLS\r\n" {
		t.Errorf("client sent %q", got)
	}
}

// Plaintext bytes after STLS's +OK would be read as if they came over TLS
// (command injection): refuse.
func TestSTLSInjection(t *testing.T) {
	_, conn := newScript(t, step{s: greet},
		step{c: "CAPA\r\n", s: "+OK\r\nSTLS\r\n.\r\n"},
		step{c: "STLS\r\n", s: "+OK go ahead\r\n+OK injected\r\n"})
	_, err := Dial(ctxT(t), "mail.example:110", &Options{Security: SecuritySTLS, Dialer: pipeDialer{conn}})
	var pe *ProtocolError
	if !errors.As(err, &pe) || pe.Command != "STLS" {
		t.Fatalf("err = %v, want *ProtocolError", err)
	}
}

func TestQuirkSTLSWithoutCAPA(t *testing.T) {
	p := testPKI(t)
	_, addr := startServer(t, []pop3test.Mailbox{{User: "bob", Password: "pw"}},
		&pop3test.ServerOptions{TLSConfig: p.ServerConfig, Faults: pop3test.Faults{NoCAPA: true}})
	c := login(t, addr, "bob", &Options{Security: SecuritySTLS, TLSConfig: p.ClientConfig()})
	if !c.IsTLS() {
		t.Fatal("not TLS")
	}
}

func TestStartTLSAlreadyTLS(t *testing.T) {
	p := testPKI(t)
	_, addr := startServer(t, nil, &pop3test.ServerOptions{TLSConfig: p.ServerConfig, Implicit: true})
	c, err := Dial(ctxT(t), addr, &Options{Security: SecurityTLS, TLSConfig: p.ClientConfig()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.StartTLS(ctxT(t), p.ClientConfig()); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("StartTLS on TLS = %v", err)
	}
}

func TestLoginMechanismsAgainstServer(t *testing.T) {
	p := testPKI(t)
	boxes := []pop3test.Mailbox{{User: "bob", Password: "pw", Token: "tok"}}
	for _, tc := range []struct {
		name   string
		faults pop3test.Faults
		auth   Auth
		code   string // expected -ERR code, "" for success
	}{
		{"USER", pop3test.Faults{}, Auth{Password: "pw"}, ""},
		{"USER wrong", pop3test.Faults{}, Auth{Password: "bad"}, "AUTH"},
		{"PLAIN", pop3test.Faults{SASLPlain: true}, Auth{Password: "pw", Mechanisms: []string{"PLAIN"}}, ""},
		{"PLAIN wrong", pop3test.Faults{SASLPlain: true}, Auth{Password: "x", Mechanisms: []string{"PLAIN"}}, "AUTH"},
		{"APOP", pop3test.Faults{APOP: true}, Auth{Password: "pw", Mechanisms: []string{"APOP"}}, ""},
		{"APOP wrong", pop3test.Faults{APOP: true}, Auth{Password: "x", Mechanisms: []string{"APOP"}}, "AUTH"},
		{"OAUTHBEARER", pop3test.Faults{SASLOAuth: true}, Auth{OAuth2Token: "tok"}, ""},
		{"XOAUTH2", pop3test.Faults{SASLOAuth: true}, Auth{OAuth2Token: "tok", Mechanisms: []string{"XOAUTH2"}}, ""},
		{"OAUTHBEARER bad", pop3test.Faults{SASLOAuth: true}, Auth{OAuth2Token: "bad"}, "AUTH"},
		{"XOAUTH2 bad", pop3test.Faults{SASLOAuth: true}, Auth{OAuth2Token: "bad", Mechanisms: []string{"XOAUTH2"}}, "AUTH"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, addr := startServer(t, boxes, &pop3test.ServerOptions{TLSConfig: p.ServerConfig, Implicit: true, Faults: tc.faults})
			c, err := Dial(ctxT(t), addr, &Options{Security: SecurityTLS, TLSConfig: p.ClientConfig()})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			a := tc.auth
			a.Username = "bob"
			err = c.Login(ctxT(t), &a)
			if tc.code == "" {
				if err != nil || s.Stats().Logins != 1 {
					t.Fatalf("Login = %v, logins %d", err, s.Stats().Logins)
				}
				if n, _, err := c.Stat(ctxT(t)); err != nil || n != 0 {
					t.Fatalf("Stat after login = %d, %v", n, err)
				}
				return
			}
			var pe *Error
			if !errors.As(err, &pe) || pe.Code != tc.code {
				t.Fatalf("Login = %v, want -ERR [%s]", err, tc.code)
			}
			if err := c.Noop(ctxT(t)); err == nil {
				t.Error("NOOP accepted before login")
			}
		})
	}
}

func TestInUse(t *testing.T) {
	_, addr := startServer(t, []pop3test.Mailbox{{User: "bob", Password: "pw"}}, nil)
	first := login(t, addr, "bob", nil)
	c, err := Dial(ctxT(t), addr, &Options{Security: SecurityPlain})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Login(ctxT(t), &Auth{Username: "bob", Password: "pw", AllowPlaintext: true})
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != "IN-USE" || !pe.Temporary() {
		t.Fatalf("second login = %v, want IN-USE", err)
	}
	if err := first.Quit(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

func TestLoginErrFault(t *testing.T) {
	s, addr := startServer(t, []pop3test.Mailbox{{User: "bob", Password: "pw"}},
		&pop3test.ServerOptions{UserFaults: map[string]pop3test.Faults{"bob": {LoginErr: "[SYS/TEMP] backend down", LoginErrCount: 1}}})
	c, err := Dial(ctxT(t), addr, &Options{Security: SecurityPlain})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Login(ctxT(t), &Auth{Username: "bob", Password: "pw", AllowPlaintext: true})
	var pe *Error
	if !errors.As(err, &pe) || !pe.Temporary() {
		t.Fatalf("first login = %v", err)
	}
	login(t, addr, "bob", nil)
	if st := s.Stats(); st.Logins != 1 || st.FailedLogins != 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestRetrAllAgainstServer(t *testing.T) {
	msgs := sampleMessages(20)
	ids := make([]int, len(msgs))
	for i := range ids {
		ids[i] = i + 1
	}
	for _, tc := range []struct {
		name   string
		faults pop3test.Faults
		window int
	}{
		{"pipelined", pop3test.Faults{RetrErr: map[int]string{5: "[SYS/TEMP] disk error"}}, 4},
		{"pipelined default window", pop3test.Faults{RetrErr: map[int]string{20: "gone"}}, 0},
		{"sequential", pop3test.Faults{NoPipelining: true, RetrErr: map[int]string{5: "[SYS/TEMP] disk error"}}, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, addr := startServer(t, []pop3test.Mailbox{{User: "bob", Password: "pw", Messages: msgs}},
				&pop3test.ServerOptions{Faults: tc.faults})
			c := login(t, addr, "bob", nil)
			var got []int
			err := c.RetrAll(ctxT(t), ids, tc.window, func(id int, b *Body, err error) error {
				got = append(got, id)
				if text, bad := tc.faults.RetrErr[id]; bad {
					var pe *Error
					if !errors.As(err, &pe) || pe.ID != id || !strings.Contains(text, pe.Text) {
						t.Errorf("message %d: err = %v", id, err)
					}
					return nil
				}
				if err != nil {
					return err
				}
				if id%3 == 0 {
					// Read a little; RetrAll drains the rest.
					_, err := io.ReadFull(b, make([]byte, 5))
					return err
				}
				data, err := io.ReadAll(b)
				if err != nil {
					return err
				}
				if want := served(msgs[id-1]); string(data) != want {
					t.Errorf("message %d = %q, want %q", id, data, want)
				}
				if b.WireBytes() != int64(len(data)) {
					t.Errorf("WireBytes = %d", b.WireBytes())
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(ids) {
				t.Errorf("callbacks for %v", got)
			}
			if st := s.Stats(); st.Retrs != len(ids)-1 {
				t.Errorf("server sent %d RETRs", st.Retrs)
			}
			if err := c.Noop(ctxT(t)); err != nil {
				t.Fatalf("client unusable after RetrAll: %v", err)
			}
		})
	}
}

func TestRetrAllDroppedConnection(t *testing.T) {
	_, addr := startServer(t, []pop3test.Mailbox{{User: "bob", Password: "pw", Messages: sampleMessages(10)}},
		&pop3test.ServerOptions{Faults: pop3test.Faults{DropAfterRetrs: 3}})
	c := login(t, addr, "bob", nil)
	n := 0
	err := c.RetrAll(ctxT(t), []int{1, 2, 3, 4, 5, 6}, 0, func(id int, b *Body, err error) error {
		if err != nil {
			return err
		}
		n++
		return nil
	})
	if !errors.Is(err, io.ErrUnexpectedEOF) || n != 3 {
		t.Fatalf("RetrAll = %v after %d messages", err, n)
	}
}

func TestDeleQuitAgainstServer(t *testing.T) {
	msgs := sampleMessages(3)
	for _, tc := range []struct {
		name    string
		faults  pop3test.Faults
		end     func(*Client) error
		wantErr bool
		left    int
	}{
		{"quit commits", pop3test.Faults{}, func(c *Client) error { return c.Quit(context.Background()) }, false, 1},
		{"close commits nothing", pop3test.Faults{}, func(c *Client) error { return c.Close() }, false, 3},
		{"drop before +OK", pop3test.Faults{DropBeforeQuitOK: true}, func(c *Client) error { return c.Quit(context.Background()) }, true, 3},
		{"fake dele", pop3test.Faults{FakeDele: true}, func(c *Client) error { return c.Quit(context.Background()) }, false, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, addr := startServer(t, []pop3test.Mailbox{{User: "bob", Password: "pw", Messages: msgs}},
				&pop3test.ServerOptions{Faults: tc.faults})
			c := login(t, addr, "bob", nil)
			for _, id := range []int{1, 3} {
				if err := c.Dele(ctxT(t), id); err != nil {
					t.Fatal(err)
				}
			}
			if err := tc.end(c); (err != nil) != tc.wantErr {
				t.Fatalf("end = %v", err)
			}
			waitFor(t, func() bool { return s.Stats().Concurrent == 0 })
			if left := s.Mailbox("bob"); len(left) != tc.left {
				t.Fatalf("%d messages left, want %d", len(left), tc.left)
			}
		})
	}
}

func TestTopAgainstServer(t *testing.T) {
	_, addr := startServer(t, []pop3test.Mailbox{{User: "bob", Password: "pw", Messages: []pop3test.Message{
		{Data: []byte("From: a\nSubject: b\n\nline 1\nline 2\n")},
	}}}, nil)
	c := login(t, addr, "bob", nil)
	b, err := c.Top(ctxT(t), 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(b)
	if err != nil || string(data) != "From: a\r\nSubject: b\r\n\r\nline 1\r\n" {
		t.Fatalf("Top = %q, %v", data, err)
	}
}

// waitFor polls cond for up to five seconds.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A 64 MiB message streams through the client in constant memory.
func TestLargeMessageStreamed(t *testing.T) {
	const size = 64 << 20
	data := make([]byte, 0, size)
	line := []byte(strings.Repeat("0123456789abcdef", 63) + "\r\n") // 1010 bytes
	for len(data)+len(line) <= size {
		data = append(data, line...)
	}
	s, addr := startServer(t, []pop3test.Mailbox{{User: "bob", Password: "pw", Messages: []pop3test.Message{{Data: data}}}}, nil)
	_ = s
	c := login(t, addr, "bob", nil)
	list, err := c.List(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b, err := c.Retr(ctxT(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	var peak uint64
	cw := &sampler{every: 8 << 20, fn: func() {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		peak = max(peak, m.HeapInuse)
	}}
	n, err := io.Copy(cw, b)
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if n != int64(len(data)) || b.WireBytes() != list[0].Size {
		t.Fatalf("read %d bytes, WireBytes %d, LIST %d, want %d", n, b.WireBytes(), list[0].Size, len(data))
	}
	t.Logf("alloc %d KiB, heap before %d KiB peak %d KiB", (after.TotalAlloc-before.TotalAlloc)>>10, before.HeapInuse>>10, peak>>10)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Errorf("allocated %d MiB while streaming 64 MiB", alloc>>20)
	}
	if peak > before.HeapInuse+16<<20 {
		t.Errorf("heap in use grew from %d MiB to %d MiB", before.HeapInuse>>20, peak>>20)
	}
}

// sampler is an io.Writer that calls fn every so many bytes.
type sampler struct {
	every, n int
	fn       func()
}

func (s *sampler) Write(p []byte) (int, error) {
	s.n += len(p)
	if s.n >= s.every {
		s.n = 0
		s.fn()
	}
	return len(p), nil
}
