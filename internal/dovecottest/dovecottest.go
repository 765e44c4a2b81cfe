// Package dovecottest starts a private, real Dovecot (POP3 and IMAP, plain
// with STLS/STARTTLS and implicit TLS) on 127.0.0.1 for popmigrate's
// integration tests.
//
// Each call to Start writes a fresh configuration, users and Maildirs under
// a new temporary folder and runs `dovecot -F -c FILE` with its own
// instance_name, base_dir and state_dir, so it never touches a system
// Dovecot and several servers can run at once. t.Cleanup stops it with
// `doveadm -c FILE stop`, waits until the master and every process of the
// instance are gone (killing them by pid if they linger) and removes the
// folder.
//
// Requirements: the Debian packages dovecot-core, dovecot-pop3d and
// dovecot-imapd (Dovecot 2.3). Install them with
//
//	sudo scripts/ensure-dovecot.sh
//
// then run the tests as usual, as root or as any user:
//
//	go test ./internal/dovecottest/
//
// As root, mail is owned by uid/gid 61110 and Dovecot drops privileges to
// its packaged users dovecot and dovenull. As another user, Dovecot runs
// entirely as that user (no chroot, mail owned by the user). A missing
// Dovecot fails the test with a message naming the script; it never skips.
//
// The plain ports (POP3Addr, IMAPAddr) are served through a small relay in
// the test process that connects to Dovecot from 127.0.0.2: Dovecot 2.3
// treats a connection whose remote address equals its local address as
// secure and would accept passwords there without TLS. Through the relay the
// plain ports behave like a remote provider's: passwords only after STLS or
// STARTTLS (unless Options.AllowPlaintextAuth). TLS runs end to end between
// the client and Dovecot; the relay only copies bytes. The relay needs
// 127.0.0.2 to be a local address (true on Linux).
//
// Servers are tuned for tests, not for realism where realism costs time:
// a failed login is answered within about 0.5 s instead of 2 s
// (auth_failure_delay = 0; Dovecot 2.3 still flushes failures on a 500 ms
// timer) and repeated failures add no authentication penalty; 256 sessions
// per user and IP are allowed. Options.ExtraConfig can restore any Dovecot
// default.
//
// UIDLs follow pop3_uidl_format = %08Xu%08Xv (Dovecot 2.3 prints the hex
// digits in lower case) and stay the same across sessions; reading a
// message changes nothing (pop3_no_flag_updates). Dovecot's default
// pop3_lock_session = no lets two sessions of one user run at once;
// with "pop3_lock_session = yes" in ExtraConfig a second session waits
// about 10 s for the lock, too slow to test [IN-USE] handling with.
//
// Costs: Start takes about 0.2 s; stopping takes about 1 s, because the
// Dovecot 2.3 master waits a second for its log process on shutdown. Tests
// that can share a server should (one server, one user per subtest).
//
// If the test binary dies without running its cleanups (a panic or
// -timeout), Linux sends the master SIGTERM and Dovecot stops; only the
// folder /tmp/pmdovecot-* stays behind.
package dovecottest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/internal/testpki"
)

// mailUID is the uid and gid that own the mail when the tests run as root:
// Dovecot refuses to serve mail as root.
const mailUID = 61110

// Bounds on waiting for Dovecot.
const (
	readyTimeout = 10 * time.Second // Start: every port answers its greeting
	stopTimeout  = 10 * time.Second // Cleanup: doveadm stop until the master exits
	killTimeout  = 5 * time.Second  // Cleanup: after SIGKILL, until processes are gone
)

// relaySource is the address the plain-port relay connects from, so that
// Dovecot sees a remote address different from its local one.
var relaySource = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}

// User is a mail account of the test server.
type User struct {
	// Name is the login name: letters, digits and . _ @ + - only.
	Name string
	// Password is the clear-text password (stored with the PLAIN scheme, so
	// APOP works too). It must not contain ':', CR, LF or NUL.
	Password string
	// Messages are the user's messages in canonical form (LF line endings,
	// ending with a newline), written as files into the Maildir's new/
	// before the server starts. Message n (1-based, as POP3 numbers them)
	// is Messages[n-1]. Dovecot serves them with CRLF.
	Messages [][]byte
}

// Options adjusts the server. A nil *Options means the defaults.
type Options struct {
	// AllowPlaintextAuth lets clients send passwords on the plain ports
	// before STLS/STARTTLS (disable_plaintext_auth = no). By default they
	// must start TLS first, like a real provider.
	AllowPlaintextAuth bool
	// APOP enables the POP3 APOP command (auth_mechanisms gains apop): the
	// greeting then carries a <timestamp> and APOP name digest works with
	// the users' PLAIN passwords. APOP is not a plaintext mechanism, so
	// Dovecot accepts it on the plain port before STLS.
	APOP bool
	// ExtraConfig is appended to the generated dovecot.conf; later settings
	// override earlier ones (e.g. "auth_failure_delay = 2 secs").
	ExtraConfig string
}

// Server is a running private Dovecot. Its exported fields are set by Start
// and must not be changed.
type Server struct {
	// Dir is the server's private folder (config, logs, TLS files, mail).
	Dir string
	// POP3Addr (STLS) and POP3SAddr (implicit TLS) are "127.0.0.1:port".
	POP3Addr, POP3SAddr string
	// IMAPAddr (STARTTLS) and IMAPSAddr (implicit TLS) are "127.0.0.1:port".
	IMAPAddr, IMAPSAddr string
	// CAFile is the PEM file of the CA that signed the server certificate;
	// clients trust it with --ca-file.
	CAFile string
	// PKI is the CA and server certificate; PKI.ClientConfig() is a Go TLS
	// config that trusts the server.
	PKI *testpki.PKI

	instance string // Dovecot instance_name
	confPath string
	logPath  string
	outPath  string // the master's stdout and stderr
	dovecot  string // path of the dovecot binary
	doveadm  string // path of the doveadm binary
	ident    identity
	opts     Options

	mu    sync.Mutex      // guards seq and users
	seq   int             // last message file sequence number
	users map[string]bool // known user names

	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
	relays []*relay
}

// identity says as whom Dovecot runs and who owns the mail.
type identity struct {
	root          bool
	uid, gid      int
	internalUser  string // default_internal_user
	internalGroup string // default_internal_group
	loginUser     string // default_login_user
}

var userNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$`)

// Start starts a private Dovecot serving users and returns when all four
// ports answer their greeting (at most 10 s). It stops the server in
// t.Cleanup: doveadm stop, then it waits for every process of the instance
// to exit, killing stragglers by pid.
//
// If dovecot or doveadm is not installed, or anything else fails, Start
// calls t.Fatal; it never skips. Like t.Fatal, it must be called from the
// goroutine running the test. If Dovecot cannot bind a port it picked (a
// tiny race with other programs), Start retries once with new ports.
func Start(t testing.TB, users []User, opts *Options) *Server {
	t.Helper()
	return start(t, users, opts, freePorts)
}

// start is Start with the port picker injected, so tests can force a port
// collision.
func start(t testing.TB, users []User, opts *Options, pick func(n int) ([]int, error)) *Server {
	t.Helper()
	s := &Server{users: make(map[string]bool), exited: make(chan struct{})}
	if opts != nil {
		s.opts = *opts
	}
	var err error
	if s.dovecot, s.doveadm, err = findTools(); err != nil {
		t.Fatalf("dovecottest: %v; install it with `sudo scripts/ensure-dovecot.sh` "+
			"(Debian packages dovecot-core dovecot-pop3d dovecot-imapd)", err)
	}
	if s.ident, err = currentIdentity(); err != nil {
		t.Fatalf("dovecottest: %v", err)
	}
	if err := validateUsers(users); err != nil {
		t.Fatalf("dovecottest: %v", err)
	}

	if s.Dir, err = makeDir(); err != nil {
		t.Fatalf("dovecottest: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(s.Dir); err != nil {
			t.Errorf("dovecottest: remove %s: %v", s.Dir, err)
		}
	})
	s.instance = "popmigrate-" + filepath.Base(s.Dir)[len("pmdovecot-"):]
	s.confPath = filepath.Join(s.Dir, "dovecot.conf")
	s.logPath = filepath.Join(s.Dir, "dovecot.log")
	s.outPath = filepath.Join(s.Dir, "dovecot.out")

	if err := s.prepare(users); err != nil {
		t.Fatalf("dovecottest: %v", err)
	}
	// From here on, whatever has started is stopped in Cleanup (before the
	// folder is removed: cleanups run last-registered first).
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dovecottest: log of %s:\n%s", s.instance, tail(s.Log(), 32<<10))
		}
		s.shutdown(t)
	})
	// The relays' listeners are ours from here on: no port race for them.
	for range 2 {
		r, err := newRelay()
		if err != nil {
			t.Fatalf("dovecottest: %v", err)
		}
		s.relays = append(s.relays, r)
	}
	s.POP3Addr, s.IMAPAddr = s.relays[0].addr(), s.relays[1].addr()

	for attempt := 1; ; attempt++ {
		err := s.launch(pick)
		if err == nil {
			return s
		}
		if attempt < 2 && errors.Is(err, errBind) {
			t.Logf("dovecottest: %v; retrying with new ports", err)
			s.exited = make(chan struct{})
			continue
		}
		t.Fatalf("dovecottest: start %s in %s: %v (its log follows)", s.instance, s.Dir, err)
	}
}

// MaildirPath returns the user's Maildir (the folder holding cur/, new/ and
// tmp/). Files in it belong to the mail uid; write with AddMessage.
func (s *Server) MaildirPath(user string) string {
	return filepath.Join(s.Dir, "mail", user, "Maildir")
}

// AddMessage drops msg (canonical form: LF line endings, ending with a
// newline) into the user's new/ as the next message, the way a delivery
// agent would (write in tmp/, then rename). Sessions that start afterwards
// see it as the last message; a POP3 session already open does not. It
// calls t.Fatal on failure and is safe for concurrent use.
func (s *Server) AddMessage(t testing.TB, user string, msg []byte) {
	t.Helper()
	s.mu.Lock()
	known := s.users[user]
	s.mu.Unlock()
	if !known {
		t.Fatalf("dovecottest: add message: unknown user %q", user)
	}
	if err := s.addMessage(user, msg); err != nil {
		t.Fatalf("dovecottest: %v", err)
	}
}

// Log returns the Dovecot log so far (and anything the master printed on
// its stderr), for failure messages. Lines reach the log asynchronously.
func (s *Server) Log() string {
	data, err := os.ReadFile(s.logPath)
	var b strings.Builder
	b.Write(data)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(&b, "[dovecottest: read log: %v]\n", err)
	}
	if out, _ := os.ReadFile(s.outPath); len(out) > 0 {
		b.WriteString("[dovecot stdout and stderr]\n")
		b.Write(out)
	}
	return b.String()
}

// findTools finds dovecot and doveadm in PATH or in the sbin folders, which
// an unprivileged user's PATH often lacks.
func findTools() (dovecot, doveadm string, err error) {
	find := func(name string) (string, error) {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
		for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/bin", "/usr/local/bin"} {
			p := filepath.Join(dir, name)
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				return p, nil
			}
		}
		return "", fmt.Errorf("%s is not installed (not in PATH, /usr/sbin or /usr/local/sbin)", name)
	}
	if dovecot, err = find("dovecot"); err != nil {
		return "", "", err
	}
	if doveadm, err = find("doveadm"); err != nil {
		return "", "", err
	}
	return dovecot, doveadm, nil
}

// currentIdentity decides as whom Dovecot runs: as root it drops to the
// packaged users dovecot and dovenull and serves mail as mailUID; otherwise
// everything runs as the current user.
func currentIdentity() (identity, error) {
	if os.Geteuid() == 0 {
		for _, name := range []string{"dovecot", "dovenull"} {
			if _, err := user.Lookup(name); err != nil {
				return identity{}, fmt.Errorf("system user %q is missing (%v); "+
					"run `sudo scripts/ensure-dovecot.sh` (the dovecot-core package creates it)", name, err)
			}
		}
		return identity{root: true, uid: mailUID, gid: mailUID,
			internalUser: "dovecot", internalGroup: "dovecot", loginUser: "dovenull"}, nil
	}
	uid, gid := os.Getuid(), os.Getgid()
	u, err := user.LookupId(strconv.Itoa(uid))
	if err != nil {
		return identity{}, fmt.Errorf("uid %d has no user name (%v); Dovecot needs one to run unprivileged", uid, err)
	}
	g, err := user.LookupGroupId(strconv.Itoa(gid))
	if err != nil {
		return identity{}, fmt.Errorf("gid %d has no group name (%v); Dovecot needs one to run unprivileged", gid, err)
	}
	return identity{uid: uid, gid: gid, internalUser: u.Username, internalGroup: g.Name, loginUser: u.Username}, nil
}

func validateUsers(users []User) error {
	seen := make(map[string]bool, len(users))
	for i, u := range users {
		if !userNameRE.MatchString(u.Name) {
			return fmt.Errorf("user %d: invalid name %q (letters, digits and . _ @ + - only, at most 64)", i, u.Name)
		}
		if seen[u.Name] {
			return fmt.Errorf("user %d: duplicate name %q", i, u.Name)
		}
		seen[u.Name] = true
		if u.Password == "" || strings.ContainsAny(u.Password, ":\r\n\x00") {
			return fmt.Errorf("user %q: password must be non-empty without ':', CR, LF or NUL", u.Name)
		}
	}
	return nil
}

// makeDir creates the server's folder. Unix socket paths under base_dir
// must stay short (108 bytes), so a long TMPDIR falls back to /tmp.
func makeDir() (string, error) {
	parent := os.TempDir()
	if len(parent) > 48 {
		parent = "/tmp"
	}
	dir, err := os.MkdirTemp(parent, "pmdovecot-")
	if err != nil {
		return "", fmt.Errorf("make folder: %w", err)
	}
	if strings.ContainsAny(dir, " \t\"'#<>\\{}$%") {
		os.RemoveAll(dir)
		return "", fmt.Errorf("folder %q has characters dovecot.conf cannot hold; set TMPDIR to a plain path", dir)
	}
	// Dovecot's unprivileged processes must traverse it (not list it).
	if err := os.Chmod(dir, 0o711); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("make folder: %w", err)
	}
	return dir, nil
}

// prepare writes the TLS files, the passwd-file and the users' Maildirs.
func (s *Server) prepare(users []User) error {
	tlsDir := filepath.Join(s.Dir, "tls")
	if err := os.Mkdir(tlsDir, 0o700); err != nil {
		return fmt.Errorf("make tls folder: %w", err)
	}
	pki, err := testpki.New(tlsDir)
	if err != nil {
		return fmt.Errorf("make certificates: %w", err)
	}
	s.PKI, s.CAFile = pki, pki.CAFile

	for _, sub := range []string{"run", "state", "mail"} {
		if err := os.Mkdir(filepath.Join(s.Dir, sub), 0o755); err != nil {
			return fmt.Errorf("make %s folder: %w", sub, err)
		}
	}

	var passwd strings.Builder
	for _, u := range users {
		home := filepath.Join(s.Dir, "mail", u.Name)
		// name:{PLAIN}password:uid:gid:gecos:home:shell
		fmt.Fprintf(&passwd, "%s:{PLAIN}%s:%d:%d::%s::\n", u.Name, u.Password, s.ident.uid, s.ident.gid, home)
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(home, "Maildir", sub), 0o700); err != nil {
				return fmt.Errorf("user %q: make maildir: %w", u.Name, err)
			}
		}
		s.users[u.Name] = true
		for i, m := range u.Messages {
			if err := s.addMessage(u.Name, m); err != nil {
				return fmt.Errorf("user %q: message %d: %w", u.Name, i+1, err)
			}
		}
		if err := s.chownTree(home); err != nil {
			return fmt.Errorf("user %q: %w", u.Name, err)
		}
	}
	// The auth process (user dovecot when root) reads it: test passwords only.
	if err := os.WriteFile(filepath.Join(s.Dir, "passwd"), []byte(passwd.String()), 0o644); err != nil {
		return fmt.Errorf("write passwd: %w", err)
	}
	return nil
}

// chownTree gives the tree at dir to the mail uid/gid (root only).
func (s *Server) chownTree(dir string) error {
	if !s.ident.root {
		return nil
	}
	return filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(path, s.ident.uid, s.ident.gid); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
		return nil
	})
}

// addMessage writes msg into tmp/ and renames it into new/. File names
// carry an increasing sequence number as their time part; Dovecot gives new
// messages UIDs in file-name time order, so messages keep the order in
// which they were added.
func (s *Server) addMessage(user string, msg []byte) error {
	s.mu.Lock()
	s.seq++
	seq := s.seq
	s.mu.Unlock()
	name := fmt.Sprintf("%d.M%06dP%d.popmigrate-test", 1_700_000_000+seq, seq, os.Getpid())
	md := s.MaildirPath(user)
	tmp := filepath.Join(md, "tmp", name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("add message for %q: %w", user, err)
	}
	_, werr := f.Write(msg)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("add message for %q: write %s: %w", user, tmp, err)
	}
	if s.ident.root {
		if err := os.Chown(tmp, s.ident.uid, s.ident.gid); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("add message for %q: %w", user, err)
		}
	}
	if err := os.Rename(tmp, filepath.Join(md, "new", name)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("add message for %q: %w", user, err)
	}
	return nil
}

// errBind marks a start that failed because a picked port was taken.
var errBind = errors.New("dovecot could not bind a port")

// launch picks ports, writes the config, starts the master and waits until
// every port greets. On failure the master has exited or is left for
// shutdown.
func (s *Server) launch(pick func(n int) ([]int, error)) error {
	ports, err := pick(4)
	if err != nil {
		return fmt.Errorf("pick ports: %w", err)
	}
	pop3, pop3s, imap, imaps := ports[0], ports[1], ports[2], ports[3]
	s.POP3SAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(pop3s))
	s.IMAPSAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(imaps))
	s.relays[0].setTarget(net.JoinHostPort("127.0.0.1", strconv.Itoa(pop3)))
	s.relays[1].setTarget(net.JoinHostPort("127.0.0.1", strconv.Itoa(imap)))
	if err := os.WriteFile(s.confPath, []byte(s.config(pop3, pop3s, imap, imaps)), 0o644); err != nil {
		return fmt.Errorf("write config: %w", err)
	}

	// The master's output goes to a file, not a pipe: children inherit it,
	// and a pipe would make cmd.Wait wait for every child too.
	out, err := os.OpenFile(s.outPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open %s: %w", s.outPath, err)
	}
	cmd := exec.Command(s.dovecot, "-F", "-c", s.confPath)
	cmd.Dir = s.Dir
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = procAttr()
	err = cmd.Start()
	out.Close()
	if err != nil {
		return fmt.Errorf("run %s: %w", s.dovecot, err)
	}
	s.cmd = cmd
	exited := s.exited
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()

	deadline := time.Now().Add(readyTimeout)
	probes := []struct {
		addr, greeting string
		tls            bool
	}{
		{s.POP3Addr, "+OK", false},
		{s.POP3SAddr, "+OK", true},
		{s.IMAPAddr, "* OK", false},
		{s.IMAPSAddr, "* OK", true},
	}
	for _, p := range probes {
		var last error
		for {
			select {
			case <-exited:
				err := fmt.Errorf("dovecot exited during startup (%v)", waitErr)
				if strings.Contains(s.Log(), "Address already in use") {
					err = fmt.Errorf("%w: %v", errBind, err)
				}
				return err
			default:
			}
			if last = probe(p.addr, p.greeting, p.tls, s.PKI.ClientConfig(), deadline); last == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s not ready after %v: %v", p.addr, readyTimeout, last)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// probe connects to addr, optionally starts TLS, and reads one line that
// must start with greeting.
func probe(addr, greeting string, useTLS bool, cfg *tls.Config, deadline time.Time) error {
	d := net.Dialer{Timeout: time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	end := time.Now().Add(2 * time.Second)
	if end.After(deadline) {
		end = deadline
	}
	if err := c.SetDeadline(end); err != nil {
		return err
	}
	var conn net.Conn = c
	if useTLS {
		cfg = cfg.Clone()
		cfg.ServerName = "127.0.0.1"
		tc := tls.Client(c, cfg)
		if err := tc.Handshake(); err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		conn = tc
	}
	line, err := bufio.NewReaderSize(conn, 4096).ReadSlice('\n')
	if err != nil {
		return fmt.Errorf("read greeting: %w", err)
	}
	if !bytes.HasPrefix(line, []byte(greeting)) {
		return fmt.Errorf("unexpected greeting %q", line)
	}
	return nil
}

// config returns dovecot.conf.
func (s *Server) config(pop3, pop3s, imap, imaps int) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("# popmigrate test server %s (generated by internal/dovecottest)", s.instance)
	p("instance_name = %s", s.instance)
	p("base_dir = %s", filepath.Join(s.Dir, "run"))
	p("state_dir = %s", filepath.Join(s.Dir, "state"))
	p("log_path = %s", s.logPath)
	p("protocols = pop3 imap")
	p("listen = 127.0.0.1")
	p("default_internal_user = %s", s.ident.internalUser)
	p("default_internal_group = %s", s.ident.internalGroup)
	p("default_login_user = %s", s.ident.loginUser)
	p("first_valid_uid = %d", s.ident.uid)
	p("last_valid_uid = %d", s.ident.uid)
	p("first_valid_gid = %d", s.ident.gid)
	p("last_valid_gid = %d", s.ident.gid)
	p("")
	p("ssl = yes")
	p("ssl_cert = <%s", s.PKI.CertFile)
	p("ssl_key = <%s", s.PKI.KeyFile)
	p("ssl_min_protocol = TLSv1.2")
	if _, err := os.Stat("/usr/share/dovecot/dh.pem"); err == nil {
		// Only DHE cipher suites use it; ECDHE works without.
		p("ssl_dh = </usr/share/dovecot/dh.pem")
	}
	p("disable_plaintext_auth = %s", yesNo(!s.opts.AllowPlaintextAuth))
	if s.opts.APOP {
		p("auth_mechanisms = plain login apop")
	} else {
		p("auth_mechanisms = plain login")
	}
	p("auth_verbose = yes")
	p("auth_failure_delay = 0")
	p("")
	p("mail_location = maildir:~/Maildir")
	p("pop3_uidl_format = %%08Xu%%08Xv")
	p("pop3_no_flag_updates = yes")
	p("default_process_limit = 256")
	p("default_client_limit = 2048")
	p("protocol pop3 {\n  mail_max_userip_connections = 256\n}")
	p("protocol imap {\n  mail_max_userip_connections = 256\n}")
	p("")
	p("passdb {\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%%u %s\n}", filepath.Join(s.Dir, "passwd"))
	p("userdb {\n  driver = passwd-file\n  args = username_format=%%u %s\n}", filepath.Join(s.Dir, "passwd"))
	p("")
	chroot := ""
	if !s.ident.root {
		// chroot needs root.
		chroot = "  chroot =\n"
	}
	// No authentication penalty: a test of a wrong password must not slow
	// down the logins of the tests after it.
	p("service anvil {\n%s  unix_listener anvil-auth-penalty {\n    mode = 0\n  }\n}", chroot)
	p("service pop3-login {\n%s  inet_listener pop3 {\n    port = %d\n  }\n  inet_listener pop3s {\n    port = %d\n    ssl = yes\n  }\n}", chroot, pop3, pop3s)
	p("service imap-login {\n%s  inet_listener imap {\n    port = %d\n  }\n  inet_listener imaps {\n    port = %d\n    ssl = yes\n  }\n}", chroot, imap, imaps)
	if s.opts.ExtraConfig != "" {
		p("")
		p("# Options.ExtraConfig")
		p("%s", s.opts.ExtraConfig)
	}
	return b.String()
}

func yesNo(v bool) string {
	if v {
		return "yes"
	}
	return "no"
}

// freePorts returns n distinct ports that were free on 127.0.0.1 a moment
// ago (listen on port 0, then close).
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// shutdown stops the relays and Dovecot and waits until no process of the
// instance is left. Problems are reported with t.Errorf.
func (s *Server) shutdown(t testing.TB) {
	for _, r := range s.relays {
		r.close()
	}
	if s.cmd == nil {
		return
	}
	select {
	case <-s.exited:
	default:
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		out, err := exec.CommandContext(ctx, s.doveadm, "-c", s.confPath, "stop").CombinedOutput()
		cancel()
		select {
		case <-s.exited:
		case <-time.After(stopTimeout):
			t.Logf("dovecottest: %s did not stop within %v (doveadm stop: %v %s); killing pid %d",
				s.instance, stopTimeout, err, bytes.TrimSpace(out), s.cmd.Process.Pid)
			s.cmd.Process.Kill()
			select {
			case <-s.exited:
			case <-time.After(killTimeout):
				t.Errorf("dovecottest: master pid %d of %s did not exit after SIGKILL", s.cmd.Process.Pid, s.instance)
			}
		}
	}
	// Children notice the master is gone and exit; give them a moment,
	// then kill what is left.
	deadline := time.Now().Add(stopTimeout)
	for {
		pids := s.processes()
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Logf("dovecottest: killing leftover processes %v of %s", pids, s.instance)
			for _, pid := range pids {
				if p, err := os.FindProcess(pid); err == nil {
					p.Kill()
				}
			}
			time.Sleep(100 * time.Millisecond)
			if pids := s.processes(); len(pids) > 0 {
				t.Errorf("dovecottest: processes %v of %s still running after SIGKILL", pids, s.instance)
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// processes returns the pids of live (not zombie) processes of this
// instance: the master (its command line names our config) and its
// children (Dovecot titles them "dovecot-INSTANCE/service"). It reads
// /proc and finds nothing where there is none.
func (s *Server) processes() []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	title := []byte("dovecot-" + s.instance + "/")
	conf := []byte(s.confPath)
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !(bytes.HasPrefix(cmdline, title) || bytes.Contains(cmdline, conf)) {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) STATE ...: comm may hold spaces and parentheses.
		if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) && (stat[i+2] == 'Z' || stat[i+2] == 'X') {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// tail returns at most the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "[...]\n" + s[len(s)-n:]
}

// relay accepts connections on 127.0.0.1 and copies bytes to and from
// Dovecot's plain listener, connecting from relaySource (see the package
// documentation for why).
type relay struct {
	ln net.Listener

	mu     sync.Mutex
	target string
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func newRelay() (*relay, error) {
	// Fail early and clearly if the source address is not local.
	probeLn, err := net.ListenTCP("tcp", relaySource)
	if err != nil {
		return nil, fmt.Errorf("plain-port relay needs %v as a local address: %w", relaySource.IP, err)
	}
	probeLn.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("plain-port relay: %w", err)
	}
	r := &relay{ln: ln, conns: make(map[net.Conn]struct{})}
	r.wg.Add(1)
	go r.serve()
	return r, nil
}

func (r *relay) addr() string { return r.ln.Addr().String() }

func (r *relay) setTarget(target string) {
	r.mu.Lock()
	r.target = target
	r.mu.Unlock()
}

func (r *relay) serve() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return // closed
		}
		if !r.track(c) {
			c.Close()
			return
		}
		r.wg.Add(1)
		go r.handle(c)
	}
}

// track registers c for close; it reports false if the relay is closed.
func (r *relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *relay) untrack(c net.Conn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
	c.Close()
}

func (r *relay) handle(client net.Conn) {
	defer r.wg.Done()
	defer r.untrack(client)
	r.mu.Lock()
	target := r.target
	r.mu.Unlock()
	d := net.Dialer{LocalAddr: relaySource, Timeout: 5 * time.Second}
	upstream, err := d.Dial("tcp", target)
	if err != nil {
		return
	}
	if !r.track(upstream) {
		upstream.Close()
		return
	}
	defer r.untrack(upstream)
	// Each direction copies until EOF, then half-closes its destination, so
	// a final reply after QUIT still reaches the client.
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(upstream, client)
		closeWrite(upstream)
	}()
	io.Copy(client, upstream)
	closeWrite(client)
	<-done
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
	} else {
		c.Close()
	}
}

// close stops accepting, closes every relayed connection and waits (bounded)
// for the copying goroutines.
func (r *relay) close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.ln.Close()
	done := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
}
