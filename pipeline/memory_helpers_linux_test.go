package pipeline_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/exporters"
)

// The IMAP destination of the large-message memory test is go-imap's
// in-memory server, which keeps every appended message in its heap (and
// reads each literal into a growing bytes.Buffer first). Run in the test's
// process, that copy is counted against the client: the 64 MiB run then
// shows some 225 MiB of peak heap growth and 278 MiB allocated, all of it
// the server's. So the server
// runs in a child process: this test binary again, running only
// TestIMAPMemServerChild with imapChildEnv set. The parent's heap then
// holds the POP3 server, the pipeline and the IMAP client, and nothing of
// the server's copy.
const (
	// imapChildEnv carries "CERTFILE|KEYFILE|USER|PASSWORD" to the child.
	imapChildEnv = "POPMIGRATE_IMAP_MEMSERVER_CHILD"
	// imapChildAddr prefixes the child's line with its listening address.
	imapChildAddr = "IMAP-CHILD-ADDR"
	// imapChildAppend prefixes the child's line after each APPEND: the
	// literal's size and the sha256 of its canonical (CRLF -> LF) form.
	imapChildAppend = "IMAP-CHILD-APPEND"
)

// imapChild is a running child process serving IMAP over implicit TLS.
type imapChild struct {
	addr    string
	appends chan string // the fields after imapChildAppend, one per APPEND
}

// startIMAPChild starts the child with the certificate of e's PKI (so the
// account's CA file trusts it) and one user; it is stopped at the end of
// the test.
func startIMAPChild(t testing.TB, e *env, user, password string) *imapChild {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestIMAPMemServerChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), imapChildEnv+"="+strings.Join([]string{e.pki.CertFile, e.pki.KeyFile, user, password}, "|"))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	addr := make(chan string, 1)
	c := &imapChild{appends: make(chan string, 16)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if a, ok := strings.CutPrefix(line, imapChildAddr+" "); ok {
				addr <- a
			} else if a, ok := strings.CutPrefix(line, imapChildAppend+" "); ok {
				c.appends <- a
			}
		}
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		stdin.Close() // the child stops at EOF
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("IMAP server process: %v\n%s", err, stderr.String())
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Errorf("IMAP server process did not stop\n%s", stderr.String())
		}
	})
	select {
	case c.addr = <-addr:
	case err := <-exited:
		t.Fatalf("IMAP server process exited before listening: %v\n%s", err, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("IMAP server process did not start")
	}
	return c
}

// startIMAPTarget starts an IMAP child for a's user, with password, and
// makes its INBOX a's only destination (the password in a file of e.dir).
func startIMAPTarget(t testing.TB, e *env, a *config.Account, password string) *imapChild {
	t.Helper()
	srv := startIMAPChild(t, e, a.User, password)
	pwFile := filepath.Join(e.dir, "imap-secret")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a.To = []string{"imaps://" + a.User + "@" + srv.addr + "/INBOX"}
	a.ToPassword = config.Secret{File: pwFile}
	return srv
}

// discardAppends takes up to n of the child's APPEND reports, until the
// test ends, so that the child never blocks on a full pipe.
func (c *imapChild) discardAppends(t testing.TB, n int) {
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		for range n {
			select {
			case <-c.appends:
			case <-done:
				return
			}
		}
	}()
}

// nextAppend returns the size and canonical sha256 of the next message the
// child stored.
func (c *imapChild) nextAppend(t *testing.T) (int64, string) {
	t.Helper()
	select {
	case s := <-c.appends:
		size, sum, _ := strings.Cut(s, " ")
		n, err := strconv.ParseInt(size, 10, 64)
		if err != nil {
			t.Fatalf("IMAP server process: bad APPEND line %q", s)
		}
		return n, sum
	case <-time.After(10 * time.Second):
		t.Fatal("IMAP server process reported no APPEND")
		return 0, ""
	}
}

// TestIMAPMemServerChild is the child process of startIMAPChild; run
// directly it only skips.
func TestIMAPMemServerChild(t *testing.T) {
	cfg := os.Getenv(imapChildEnv)
	if cfg == "" {
		t.Skip("the IMAP server process of TestRunLargeMessageMemoryFlat/imap")
	}
	f := strings.Split(cfg, "|")
	if len(f) != 4 {
		t.Fatalf("%s=%q: want 4 fields", imapChildEnv, cfg)
	}
	cert, err := tls.LoadX509KeyPair(f[0], f[1])
	if err != nil {
		t.Fatal(err)
	}
	user := imapmemserver.NewUser(f[2], f[3])
	if err := user.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &childSession{user: user}, nil, nil
		},
		Caps:   imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}},
		Logger: log.New(io.Discard, "", 0),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}))
	fmt.Printf("%s %s\n", imapChildAddr, ln.Addr())
	io.Copy(io.Discard, os.Stdin) // until the parent closes its end
	srv.Close()
}

// childSession is imapmemserver's session with a login for one user and
// an APPEND that reports what it stored.
type childSession struct {
	*imapmemserver.UserSession // nil before the login
	user                       *imapmemserver.User
}

func (s *childSession) Login(username, password string) error {
	if err := s.user.Login(username, password); err != nil {
		return err
	}
	s.UserSession = imapmemserver.NewUserSession(s.user)
	return nil
}

func (s *childSession) Close() error {
	if s.UserSession == nil {
		return nil
	}
	return s.UserSession.Close()
}

func (s *childSession) Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	h := sha256.New()
	cw := exporters.NewCanonicalWriter(h)
	cr := &countReader{r: io.TeeReader(r, cw), size: r.Size()}
	ad, err := s.UserSession.Append(mailbox, cr, options)
	cw.Close()
	if err == nil {
		fmt.Printf("%s %d %s\n", imapChildAppend, cr.n, hex.EncodeToString(h.Sum(nil)))
	}
	return ad, err
}

// countReader is an imap.LiteralReader that counts what is read.
type countReader struct {
	r    io.Reader
	size int64
	n    int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countReader) Size() int64 { return c.size }

// samplePeaks samples, every period until the returned function is called,
// the Go heap in use and this process's open descriptors; that function
// returns their peaks.
func samplePeaks(period time.Duration) func() (heap, fds uint64) {
	var peakHeap, peakFDs uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(period)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peakHeap = max(peakHeap, ms.HeapInuse)
			if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
				peakFDs = max(peakFDs, uint64(len(ents)))
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	return func() (uint64, uint64) {
		close(stop)
		<-done
		return peakHeap, peakFDs
	}
}
