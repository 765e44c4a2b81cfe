// Package pgtest starts a private, real PostgreSQL server on 127.0.0.1 for
// popmigrate's tests, and gives each test a database of its own.
//
// A server is a fresh cluster: initdb in a new folder under the temporary
// directory (/tmp/pmpg-*), then postgres listening on 127.0.0.1 at a free
// high port and on a Unix socket in that folder, never touching a system
// PostgreSQL. Clients log in over TCP as the superuser "popmigrate" with a
// random password (scram-sha-256), which Server.URL puts in the URLs it
// returns.
//
// PostgreSQL refuses to run as root. Run as root, pgtest runs initdb and
// the server as the "postgres" user that Debian's postgresql package
// creates, and gives it the folder; run as another user, everything runs as
// that user.
//
// Requirements: PostgreSQL 10 or newer; on Debian the postgresql package,
// whose binaries are in /usr/lib/postgresql/VERSION/bin (the newest version
// there is taken; otherwise initdb on PATH). Install it with
//
//	sudo scripts/ensure-postgres.sh
//
// A missing PostgreSQL, or a server that does not start, fails the test
// with what to do and the server's log; pgtest never skips.
//
// Two ways to get a server:
//   - Start starts a server for one test and stops it in t.Cleanup.
//   - Shared starts one server for the whole test binary on first use; the
//     package's TestMain must run its tests through Main, which stops it.
//     Starting takes about a second (initdb), a database about 0.1 s, so
//     test suites share one server and give every test its own database
//     (Server.NewDB).
//
// The server is tuned for tests: fsync and full_page_writes are off, so a
// crash of the machine may lose its data (nothing survives a test run
// anyway); synchronous_commit is left to the client, as in production.
// Databases are created with an ICU en-US default collation (PostgreSQL 15
// and newer), as a production database in an English locale has, so that a
// test notices SQL that sorts by the database's locale instead of bytewise.
//
// If the test binary dies without stopping the server (a panic or
// -timeout), Linux sends the server SIGINT (fast shutdown) and it stops;
// only the folder /tmp/pmpg-* stays behind.
package pgtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Bounds on waiting for PostgreSQL.
const (
	initTimeout  = 60 * time.Second // initdb
	readyTimeout = 30 * time.Second // Start: until the server accepts a login
	stopTimeout  = 30 * time.Second // pg_ctl stop, then until the process is gone
	killTimeout  = 5 * time.Second  // after SIGKILL
	adminTimeout = 30 * time.Second // one CREATE DATABASE
)

// SuperUser is the role tests log in as.
const SuperUser = "popmigrate"

// Server is a running private PostgreSQL. Its exported fields are set when
// it starts and must not be changed.
type Server struct {
	// Dir is the server's folder: data/, the socket, postgres.log.
	Dir string
	// Host and Port are where it listens: "127.0.0.1" and a high port.
	Host string
	Port int
	// User and Password are the superuser's login.
	User, Password string
	// Version is the server's version number (server_version_num, e.g.
	// 150018).
	Version int

	bin     string      // folder of initdb, postgres, pg_ctl
	runAs   *credential // nil: as the current user
	logPath string

	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for

	mu    sync.Mutex // guards admin
	admin *pgx.Conn  // to the "postgres" database, for CREATE DATABASE
	seq   atomic.Int64

	stopOnce sync.Once
	stopErr  error
}

var (
	sharedOnce sync.Once
	shared     *Server
	sharedErr  error
	mainActive atomic.Bool
)

// Main runs m's tests and then stops the server Shared started, if any. A
// package whose tests call Shared runs them through it:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
// A server that does not stop cleanly turns a passing run into exit code 1.
func Main(m *testing.M) int {
	mainActive.Store(true)
	code := m.Run()
	if shared != nil {
		if err := shared.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// Shared returns the test binary's server, starting it on the first call.
// It fails the test when the server cannot start (then for every later
// caller too), or when the tests do not run through Main, which stops it.
// Like t.Fatal, it must be called from the goroutine running the test.
func Shared(t testing.TB) *Server {
	t.Helper()
	if !mainActive.Load() {
		t.Fatal("pgtest: Shared needs the package's TestMain to run the tests through pgtest.Main, which stops the server")
	}
	sharedOnce.Do(func() { shared, sharedErr = start() })
	if sharedErr != nil {
		t.Fatalf("pgtest: %v", sharedErr)
	}
	return shared
}

// Start starts a server for t and stops it in t.Cleanup. It fails the test
// when the server cannot start. Like t.Fatal, it must be called from the
// goroutine running the test.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := start()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return s
}

// NewDB creates a new, empty database with a name unique in the server,
// taken from t's name, and returns its URL (see URL). It fails the test if
// it cannot; on a failure of the test it logs the end of the server's log.
// The database is not dropped: it goes with the server.
func (s *Server) NewDB(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("pm%04d_%s", s.seq.Add(1), dbNameChars.ReplaceAllString(strings.ToLower(t.Name()), "_"))
	if len(name) > 63 { // NAMEDATALEN - 1
		name = name[:63]
	}
	if err := s.createDB(name); err != nil {
		t.Fatalf("pgtest: %v\nserver log:\n%s", err, tail(s.Log(), 8<<10))
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pgtest: end of the server log (%s):\n%s", s.logPath, tail(s.Log(), 4<<10))
		}
	})
	return s.URL(name)
}

var dbNameChars = regexp.MustCompile(`[^a-z0-9_]+`)

// URL returns the URL of database db on the server, with the superuser's
// name and password and sslmode=disable (the server has no TLS).
func (s *Server) URL(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(s.User, s.Password),
		Host:     net.JoinHostPort(s.Host, strconv.Itoa(s.Port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Log returns what the server has logged so far.
func (s *Server) Log() string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", s.logPath, err)
	}
	return string(b)
}

// createDB creates database name.
func (s *Server) createDB(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	stmt := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize() + " TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C'"
	if s.Version >= 150000 {
		stmt += " LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"
	}
	if _, err := s.admin.Exec(ctx, stmt); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// start starts a server (see the package documentation).
func start() (*Server, error) {
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, Host: "127.0.0.1", User: SuperUser}
	if os.Geteuid() == 0 {
		if !canRunAs {
			return nil, errors.New("the tests run as root, and PostgreSQL refuses to; on this system pgtest cannot run it as another user: run the tests as an unprivileged user")
		}
		if s.runAs, err = postgresUser(); err != nil {
			return nil, err
		}
	}
	if s.Dir, err = makeDir(s.runAs); err != nil {
		return nil, err
	}
	s.logPath = filepath.Join(s.Dir, "postgres.log")
	fail := func(err error) (*Server, error) {
		s.kill()
		if rerr := os.RemoveAll(s.Dir); rerr != nil {
			err = fmt.Errorf("%w (and removing %s: %v)", err, s.Dir, rerr)
		}
		return nil, err
	}
	if err := s.initdb(); err != nil {
		return fail(err)
	}
	for attempt := 1; ; attempt++ {
		err := s.launch()
		if err == nil {
			break
		}
		if attempt < 3 && errors.Is(err, errBind) {
			continue // another program took the port: pick another
		}
		return fail(fmt.Errorf("%w\nserver log (%s):\n%s", err, s.logPath, tail(s.Log(), 16<<10)))
	}
	return s, nil
}

// findBin returns the folder of PostgreSQL's server programs: the newest
// /usr/lib/postgresql/VERSION/bin (Debian), or the folder of initdb on PATH.
func findBin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	type cand struct {
		dir string
		ver float64
	}
	var cands []cand
	for _, d := range dirs {
		v, err := strconv.ParseFloat(filepath.Base(filepath.Dir(d)), 64)
		if err != nil {
			continue
		}
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "postgres")) && isExec(filepath.Join(d, "pg_ctl")) {
			cands = append(cands, cand{d, v})
		}
	}
	if len(cands) > 0 {
		sort.Slice(cands, func(a, b int) bool { return cands[a].ver > cands[b].ver })
		return cands[0].dir, nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("PostgreSQL is not installed (no initdb in /usr/lib/postgresql/*/bin or on PATH); " +
		"install it with `sudo scripts/ensure-postgres.sh` (Debian package postgresql)")
}

func isExec(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// postgresUser returns the credential of the "postgres" user, as whom the
// server runs when the tests run as root.
func postgresUser() (*credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("the tests run as root and PostgreSQL refuses to: it runs as the user postgres, "+
			"which does not exist (%v); run `sudo scripts/ensure-postgres.sh` (the postgresql package creates it)", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil || uid == 0 {
		return nil, fmt.Errorf("user postgres has uid %q, gid %q: want an unprivileged numeric uid", u.Uid, u.Gid)
	}
	return &credential{uid: uint32(uid), gid: uint32(gid)}, nil
}

// credential is a user and group to run the server's programs as.
type credential struct{ uid, gid uint32 }

// makeDir creates the server's folder, owned by the user the server runs
// as. Its parent must let that user in, and the socket path in it must stay
// short (108 bytes): a long TMPDIR, or one closed to others, falls back to
// /tmp.
func makeDir(runAs *credential) (string, error) {
	parent := os.TempDir()
	if fi, err := os.Stat(parent); len(parent) > 48 || err != nil || (runAs != nil && fi.Mode().Perm()&0o001 == 0) {
		parent = "/tmp"
	}
	dir, err := os.MkdirTemp(parent, "pmpg-")
	if err != nil {
		return "", fmt.Errorf("make folder: %w", err)
	}
	if runAs != nil {
		if err := os.Chown(dir, int(runAs.uid), int(runAs.gid)); err != nil {
			os.RemoveAll(dir)
			return "", fmt.Errorf("give %s to the postgres user: %w", dir, err)
		}
	}
	return dir, nil
}

// command returns a command running program of the server's bin folder as
// the server's user, without the PG* variables of the tests' environment
// (PGDATA, PGPORT ... would change what initdb and pg_ctl do).
func (s *Server) command(ctx context.Context, program string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, program), args...)
	cmd.Dir = s.Dir
	env := []string{"LC_ALL=C", "TZ=UTC"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") && !strings.HasPrefix(kv, "LC_") && !strings.HasPrefix(kv, "LANG") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	cmd.SysProcAttr = procAttr(s.runAs, program == "postgres")
	return cmd
}

// initdb makes the cluster in Dir/data with the superuser SuperUser and a
// random password.
func (s *Server) initdb() error {
	var pw [16]byte
	_, _ = rand.Read(pw[:]) // crypto/rand.Read never fails on Linux and friends
	s.Password = hex.EncodeToString(pw[:])
	pwFile := filepath.Join(s.Dir, "pwfile")
	if err := os.WriteFile(pwFile, []byte(s.Password+"\n"), 0o600); err != nil {
		return fmt.Errorf("write password file: %w", err)
	}
	defer os.Remove(pwFile)
	if s.runAs != nil {
		if err := os.Chown(pwFile, int(s.runAs.uid), int(s.runAs.gid)); err != nil {
			return fmt.Errorf("write password file: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), initTimeout)
	defer cancel()
	cmd := s.command(ctx, "initdb", "-D", filepath.Join(s.Dir, "data"), "-U", s.User, "--pwfile", pwFile,
		"--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("initdb (%s): %w\n%s", cmd.Path, err, tail(string(out), 8<<10))
	}
	return nil
}

// errBind is wrapped by launch's error when the server could not bind its
// port.
var errBind = errors.New("port in use")

// launch starts postgres on a free port and waits until the superuser can
// log in.
func (s *Server) launch() error {
	port, err := freePort()
	if err != nil {
		return err
	}
	s.Port = port
	logFile, err := os.OpenFile(s.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	defer logFile.Close() // the child has its own copy
	if s.runAs != nil {
		if err := logFile.Chown(int(s.runAs.uid), int(s.runAs.gid)); err != nil {
			return fmt.Errorf("open log: %w", err)
		}
	}
	cmd := s.command(context.Background(), "postgres", "-D", filepath.Join(s.Dir, "data"),
		"-p", strconv.Itoa(port), "-k", s.Dir,
		"-c", "listen_addresses="+s.Host,
		"-c", "fsync=off", "-c", "full_page_writes=off",
		"-c", "max_connections=300",
		"-c", "log_min_messages=warning", "-c", "log_connections=off")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	s.cmd = cmd
	s.exited = make(chan struct{})
	go func() {
		_ = cmd.Wait() // the exit is reported through the log and exited
		close(s.exited)
	}()

	deadline := time.Now().Add(readyTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, s.URL("postgres"))
		if err == nil {
			err = conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&s.Version)
			cancel()
			if err != nil {
				conn.Close(context.Background())
				return fmt.Errorf("query server version: %w", err)
			}
			s.admin = conn
			return nil
		}
		cancel()
		select {
		case <-s.exited:
			if strings.Contains(s.Log(), "could not bind") || strings.Contains(s.Log(), "Address already in use") {
				return fmt.Errorf("postgres on port %d: %w", port, errBind)
			}
			return fmt.Errorf("postgres exited before it accepted a login (%s)", cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres on 127.0.0.1:%d accepted no login within %s: %w", port, readyTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freePort returns a TCP port on 127.0.0.1 that nothing listened on a
// moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	return port, nil
}

// Stop stops the server (pg_ctl stop -m fast: sessions are disconnected),
// waits for it to exit, killing it if it lingers, and removes its folder.
// Calling it again returns the first call's result.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() { s.stopErr = s.stop() })
	return s.stopErr
}

func (s *Server) stop() error {
	var errs []error
	s.mu.Lock()
	if s.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.admin.Close(ctx) // the server goes away anyway
		cancel()
		s.admin = nil
	}
	s.mu.Unlock()
	if s.cmd != nil {
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		cmd := s.command(ctx, "pg_ctl", "-D", filepath.Join(s.Dir, "data"), "-m", "fast", "-w",
			"-t", strconv.Itoa(int(stopTimeout/time.Second)), "stop")
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("pg_ctl stop: %w\n%s\nserver log:\n%s", err, bytes.TrimSpace(out), tail(s.Log(), 8<<10)))
		}
		select {
		case <-s.exited:
		case <-time.After(stopTimeout):
			errs = append(errs, fmt.Errorf("postgres (pid %d) still running %s after pg_ctl stop; killed it", s.cmd.Process.Pid, stopTimeout))
			s.kill()
		}
	}
	if err := os.RemoveAll(s.Dir); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", s.Dir, err))
	}
	return errors.Join(errs...)
}

// kill sends SIGKILL to the server, if it runs, and waits for it to go.
// The postmaster's children exit on their own once it is gone.
func (s *Server) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Kill() // it may have exited meanwhile
	select {
	case <-s.exited:
	case <-time.After(killTimeout):
	}
}

// tail returns the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "[...]\n" + s[len(s)-n:]
}
