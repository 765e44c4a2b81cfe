package pgtest

import (
	"context"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// Every NewDB is a new, empty database of the shared server, with an
// English ICU collation where the server has ICU databases.
func TestSharedServerGivesEachTestItsDatabase(t *testing.T) {
	s := Shared(t)
	if s2 := Shared(t); s2 != s {
		t.Fatal("Shared started a second server")
	}
	a, b := s.NewDB(t), s.NewDB(t)
	if a == b {
		t.Fatalf("two NewDB calls returned %s", a)
	}
	ctx := context.Background()
	ca, cb := connect(t, a), connect(t, b)
	if _, err := ca.Exec(ctx, "CREATE TABLE t (x TEXT)"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := cb.QueryRow(ctx, "SELECT COUNT(*) FROM pg_tables WHERE tablename = 't'").Scan(&n); err != nil || n != 0 {
		t.Errorf("the second database sees the first's table: %d, %v", n, err)
	}
	if s.Version >= 150000 {
		var first string
		err := ca.QueryRow(ctx, "SELECT x FROM (VALUES ('B'), ('a')) v(x) ORDER BY x LIMIT 1").Scan(&first)
		if err != nil || first != "a" {
			t.Errorf("first by the default collation = %q, %v; want \"a\" (en-US, not bytewise)", first, err)
		}
	}
	if !strings.Contains(a, ":"+s.Password+"@") || !strings.HasPrefix(a, "postgres://"+SuperUser+":") {
		t.Errorf("URL %s lacks the login", a)
	}
}

// The server refuses a wrong password: the URLs' password is really checked.
func TestServerChecksThePassword(t *testing.T) {
	s := Shared(t)
	url := strings.Replace(s.NewDB(t), s.Password, "wrong", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if c, err := pgx.Connect(ctx, url); err == nil {
		c.Close(ctx)
		t.Fatal("login with a wrong password succeeded")
	}
}

// A server of one's own stops at Stop: its port closes, its folder goes,
// and as root it ran as an unprivileged user.
func TestStartAndStop(t *testing.T) {
	s := Start(t)
	c := connect(t, s.URL("postgres"))
	var pid int
	if err := c.QueryRow(context.Background(), "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" && f[1] == "0" {
				t.Errorf("the server runs as root: %s", line)
			}
		}
	}
	c.Close(context.Background())
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
		t.Errorf("folder %s after Stop: %v", s.Dir, err)
	}
	if conn, err := net.DialTimeout("tcp", net.JoinHostPort(s.Host, strconv.Itoa(s.Port)), time.Second); err == nil {
		conn.Close()
		t.Errorf("port %d still open after Stop", s.Port)
	}
}
