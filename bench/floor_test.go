//go:build linux

package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var flagFloor = flag.Bool("bench-floor", false, "run TestBenchServerFloor: what each step of an account costs Dovecot, done by hand with the fewest commands, beside popmigrate (make bench)")

// floorStepTimeout bounds one step of TestBenchServerFloor for one
// account.
const floorStepTimeout = time.Minute

// TestBenchServerFloor measures what the server's side of a migration
// costs at least, per account: the 50 mailboxes of 20 realistic messages
// of the comparison's many-mailbox rows, 8 at once: the POP3 side by the
// comparison's reference reader (every RETR pipelined, bytes discarded),
// the IMAP steps by raw IMAPS sessions that send the fewest commands
// there are, every command of a session in one write (LITERAL+ for the
// messages).
// It prints, for each step and for `popmigrate run` into IMAP with and
// without verify, the Dovecot CPU per account (reaped by its master) and
// the whole machine's busy CPU (from /proc/stat: the kernel's work for
// both, the loop device of scripts/bench-fs.sh among it, is there), so
// that what popmigrate costs the server can be read against what any
// client must cost it. It runs only with -bench-floor.
func TestBenchServerFloor(t *testing.T) {
	if !*flagFloor {
		t.Skip("the server floor benchmark runs with `make bench` (go test ./bench/ -args -bench-floor)")
	}
	if *flagReps < 1 || *flagReps > maxReps {
		t.Fatalf("bench: -bench-reps 1..%d", maxReps)
	}
	const users, perUser, atOnce = 50, 20, 8
	e := &env{work: t.TempDir()}
	if e.popmigrate = *flagBinary; e.popmigrate == "" {
		e.popmigrate = buildPopmigrate(t, e.work)
	}
	e.refread, e.timeCmd = buildRefread(t, e.work), gnuTime(t)
	us, boxes := makeCorpus(users, perUser)
	msgs := make([][][]byte, len(us))
	for i := range us {
		for _, m := range us[i].Messages {
			msgs[i] = append(msgs[i], bytes.ReplaceAll(m, []byte("\n"), []byte("\r\n")))
		}
	}
	e.serveCorpus(t, us, boxes, nil)
	csv := filepath.Join(e.work, "accounts.csv")
	var b strings.Builder
	b.WriteString("source,password_file\n")
	for _, x := range boxes {
		fmt.Fprintf(&b, "pop3s://%s@%s,%s\n", x.user, e.srv.POP3SAddr, e.pwFile(x.user))
	}
	if err := os.WriteFile(csv, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}

	// A step is run for every account with run, as one popmigrate
	// process for all with args, or once with whole; round names the round's folders (each step that writes one
	// makes its own, and FETCH reads the MULTIAPPEND's).
	type step struct {
		key, name string
		run       func(ctx context.Context, i int, round string) error
		args      func(round string) []string // of popmigrate
		whole     func()                      // or anything else for all accounts
	}
	imapScript := func(i int, cmds ...string) []string {
		return append([]string{fmt.Sprintf("LOGIN %s %s", boxes[i].user, boxes[i].password)}, cmds...)
	}
	multiappend := func(i int, folder string) string {
		var w strings.Builder
		fmt.Fprintf(&w, "APPEND %s", folder)
		for _, m := range msgs[i] {
			fmt.Fprintf(&w, " (\\Seen) {%d+}\r\n%s", len(m), m)
		}
		return w.String()
	}
	popmigrate := func(verify bool) func(round string) []string {
		return func(round string) []string {
			folder := round + "-run"
			if !verify {
				folder += "-nv"
			}
			dir := e.scratch(t, "floor-")
			args := []string{"run", "--ca-file", e.srv.CAFile, "--journal", filepath.Join(dir, "journal.db"), "--json", "--no-progress",
				"--jobs", fmt.Sprint(atOnce), "--per-host", fmt.Sprint(atOnce), "--accounts", csv,
				"--to", "imaps://{user}@" + e.srv.IMAPSAddr + "/" + folder, "--to-password-file", filepath.Join(e.pwDir, "{user}"), "--to-ca-file", e.srv.CAFile}
			if !verify {
				args = append(args, "--no-verify")
			}
			return args
		}
	}
	steps := []step{
		{key: "retr", name: "POP3S: the reference reader (login, LIST, every RETR, QUIT)", whole: func() {
			e.runRefread(t, &benchRow{boxes: boxes, addr: e.srv.POP3SAddr, at: atOnce})
		}},
		{key: "login", name: "IMAPS: login, LOGOUT", run: func(ctx context.Context, i int, _ string) error {
			return e.rawIMAP(ctx, imapScript(i))
		}},
		{key: "create", name: "IMAPS: login, CREATE, SELECT, LOGOUT", run: func(ctx context.Context, i int, round string) error {
			f := round + "-create"
			return e.rawIMAP(ctx, imapScript(i, "CREATE "+f, "SELECT "+f))
		}},
		{key: "append", name: "IMAPS: the same and one MULTIAPPEND of the 20", run: func(ctx context.Context, i int, round string) error {
			f := round + "-append"
			return e.rawIMAP(ctx, imapScript(i, "CREATE "+f, "SELECT "+f, multiappend(i, f)))
		}},
		{key: "fetch", name: "IMAPS: login, EXAMINE, UID FETCH 1:* BODY.PEEK[], LOGOUT", run: func(ctx context.Context, i int, round string) error {
			f := round + "-append"
			return e.rawIMAP(ctx, imapScript(i, "EXAMINE "+f, "UID FETCH 1:* BODY.PEEK[]"))
		}},
		{key: "run", name: "popmigrate run into IMAP", args: popmigrate(true)},
		{key: "run-nv", name: "popmigrate run into IMAP --no-verify", args: popmigrate(false)},
	}
	type cost struct{ wall, srv, busy time.Duration }
	results := make([][]cost, len(steps))
	for rep := range *flagReps {
		for k, s := range steps {
			round := fmt.Sprintf("floor%02d", rep)
			before, busy := e.serverCPU(t), machineBusy(t)
			start := time.Now()
			var c cost
			if s.whole != nil {
				s.whole()
			} else if s.args != nil {
				ctx, cancel := context.WithTimeout(context.Background(), childTimeout)
				out, err := exec.CommandContext(ctx, e.popmigrate, s.args(round)...).CombinedOutput()
				cancel()
				if err != nil {
					t.Fatalf("bench: %s: %v\n%s", s.name, err, tail(out))
				}
			} else if err := forAccounts(len(boxes), atOnce, func(i int) error {
				ctx, cancel := context.WithTimeout(context.Background(), floorStepTimeout)
				defer cancel()
				return s.run(ctx, i, round)
			}); err != nil {
				t.Fatalf("bench: %s: %v", s.name, err)
			}
			c.wall = time.Since(start)
			c.busy = machineBusy(t) - busy
			c.srv = e.settledServerCPU(t) - before
			results[k] = append(results[k], c)
			t.Logf("bench: floor: %s: round %d: %v, server CPU %v, machine busy %v", s.name, rep+1,
				c.wall.Round(time.Millisecond), c.srv.Round(time.Millisecond), c.busy.Round(10*time.Millisecond))
		}
	}
	med := func(k int, f func(cost) time.Duration) time.Duration {
		v := make([]time.Duration, 0, len(results[k]))
		for _, c := range results[k] {
			v = append(v, f(c))
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	perAccount := func(d time.Duration) string {
		return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)/float64(len(boxes)))
	}
	var out strings.Builder
	fmt.Fprintf(&out, "\n## What the server's side of %d accounts costs at least (%d messages each, %d at once)\n\n", len(boxes), perUser, atOnce)
	out.WriteString("| step | wall s | Dovecot CPU s | per account ms | machine busy CPU s |\n|---|---:|---:|---:|---:|\n")
	for k, s := range steps {
		srv := med(k, func(c cost) time.Duration { return c.srv })
		fmt.Fprintf(&out, "| %s | %.2f | %.2f | %s | %.2f |\n", s.name, med(k, func(c cost) time.Duration { return c.wall }).Seconds(),
			srv.Seconds(), perAccount(srv), med(k, func(c cost) time.Duration { return c.busy }).Seconds())
	}
	srv := func(key string) time.Duration {
		k := slices.IndexFunc(steps, func(s step) bool { return s.key == key })
		return med(k, func(c cost) time.Duration { return c.srv })
	}
	floor := srv("retr") + srv("append") + srv("fetch") - srv("login")
	fmt.Fprintf(&out, "\nThe least an account costs Dovecot for POP3 to IMAP with every byte read back (every RETR; login, CREATE, SELECT and one MULTIAPPEND; the FETCH without its login): %s ms; popmigrate run: %s ms (--no-verify %s ms). Medians of %d rounds. Machine busy: user + system + interrupts of all CPUs, whoever ran (the clients of the steps, this test process and the reference reader, included).\n",
		perAccount(floor), perAccount(srv("run")), perAccount(srv("run-nv")), *flagReps)
	t.Log(out.String())
}

// forAccounts runs f for accounts 0..n-1, at most atOnce at a time, and
// returns the first error.
func forAccounts(n, atOnce int, f func(i int) error) error {
	var wg sync.WaitGroup
	sem := make(chan struct{}, atOnce)
	errs := make([]error, n)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = f(i)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// dialTLS opens a TLS connection to addr, bounded by ctx.
func (e *env) dialTLS(ctx context.Context, addr string) (*tls.Conn, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{}, Config: e.srv.PKI.ClientConfig()}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	return c.(*tls.Conn), nil
}

// rawIMAP sends cmds (LOGIN first) in one write over IMAPS, tagged c0,
// c1..., reads their answers, skipping literals, and then logs out: a
// LOGOUT sent with them cut off the answers before it in about one
// session in 50 against Dovecot 2.3, as QUIT behind RETRs does (see
// bench/refread). A tagged NO or BAD is an error.
func (e *env) rawIMAP(ctx context.Context, cmds []string) error {
	c, err := e.dialTLS(ctx, e.srv.IMAPSAddr)
	if err != nil {
		return err
	}
	defer c.Close()
	r := bufio.NewReaderSize(c, 64<<10)
	if _, err := r.ReadString('\n'); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	var w strings.Builder
	for k, cmd := range cmds {
		fmt.Fprintf(&w, "c%d %s\r\n", k, cmd)
	}
	// upTo reads the answers up to the tagged one of tag.
	upTo := func(tag string) error {
		for last := ""; ; {
			line, err := r.ReadString('\n')
			if err != nil {
				return fmt.Errorf("after %q: %w", last, err)
			}
			last = line
			if n := literalSize(line); n > 0 {
				if _, err := r.Discard(n); err != nil {
					return err
				}
				continue
			}
			t, rest, _ := strings.Cut(line, " ")
			if len(t) < 2 || t[0] != 'c' || strings.Trim(t[1:], "0123456789") != "" {
				continue // untagged, or the rest of a line after a literal
			}
			if !strings.HasPrefix(rest, "OK") {
				return fmt.Errorf("%s %s", t, strings.TrimSpace(rest))
			}
			if t == tag {
				return nil
			}
		}
	}
	if _, err := io.WriteString(c, w.String()); err != nil {
		return err
	}
	if err := upTo(fmt.Sprintf("c%d", len(cmds)-1)); err != nil {
		return err
	}
	logout := fmt.Sprintf("c%d", len(cmds))
	if _, err := io.WriteString(c, logout+" LOGOUT\r\n"); err != nil {
		return err
	}
	return upTo(logout)
}

// literalSize returns n when line ends with an IMAP literal's {n}, or 0.
func literalSize(line string) int {
	line = strings.TrimRight(line, "\r\n")
	if !strings.HasSuffix(line, "}") {
		return 0
	}
	open := strings.LastIndexByte(line, '{')
	if open < 0 {
		return 0
	}
	n, err := strconv.Atoi(line[open+1 : len(line)-1])
	if err != nil {
		return 0
	}
	return n
}

// machineBusy returns the CPU time all CPUs have spent busy (not idle or
// waiting for I/O) since boot, from /proc/stat.
func machineBusy(t *testing.T) time.Duration {
	t.Helper()
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		t.Fatalf("bench: %v", err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		t.Fatalf("bench: /proc/stat: %q", line)
	}
	var busy int64
	for k, x := range f[1:8] {
		v, err := strconv.ParseInt(x, 10, 64)
		if err != nil {
			t.Fatalf("bench: /proc/stat: %q: %v", line, err)
		}
		if k != 3 && k != 4 { // idle, iowait
			busy += v
		}
	}
	return time.Duration(busy) * 10 * time.Millisecond
}
