//go:build linux

package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/internal/dovecottest"
	"github.com/popmigrate/popmigrate/pop3"
)

var (
	flagCompare = flag.Bool("bench-compare", false, "run TestBenchCompare: popmigrate vs mpop (and mpop + mbsync) against a private Dovecot (make bench)")
	flagReps    = flag.Int("bench-reps", 3, "TestBenchCompare, TestBenchScaleOut: pairs (runs of each tool, alternated) per cell; the median is reported")
	flagBinary  = flag.String("bench-popmigrate", "", "TestBenchCompare, TestBenchScaleOut: popmigrate binary to measure (default: build ./cmd/popmigrate of this tree)")
)

// Bounds of the benchmark.
const (
	childTimeout = 10 * time.Minute // one run of a tool (all its processes)
	warmTimeout  = 2 * time.Minute  // warming the server's indexes
	maxUsers     = 64
	maxMessages  = 100_000
	maxReps      = 15
)

// Message size classes: most mail is small, some carries an attachment.
var sizeClasses = []sizeClass{
	{size: 2 << 10, share: 0.6},
	{size: 20 << 10, share: 0.3, dotLine: true},
	{size: 200 << 10, share: 0.1, attach: true},
}

type sizeClass struct {
	size    int     // nominal size in bytes (±25 %)
	share   float64 // fraction of the messages
	attach  bool    // a multipart message with a base64 attachment
	dotLine bool    // a body line starting with "." (dot-stuffed on the wire)
	exact   bool    // exactly size bytes, not ±25 %
}

// mailbox is one account of the benchmark server and what it holds.
type mailbox struct {
	user, password string
	messages       int
	bytes          int64    // sum of the messages' canonical sizes
	sums           []string // sorted hex sha256 of the canonical messages
}

// serve starts the private Dovecot with the seeded corpus of users
// mailboxes of perUser messages, writes their password files and warms
// the server; it returns the corpus's bytes.
func (e *env) serve(t *testing.T, users, perUser int) int64 {
	t.Helper()
	us, boxes := makeCorpus(users, perUser)
	return e.serveCorpus(t, us, boxes, nil)
}

// serveCorpus is serve for a corpus made by the caller, with opts for
// Dovecot.
func (e *env) serveCorpus(t *testing.T, us []dovecottest.User, boxes []mailbox, opts *dovecottest.Options) int64 {
	t.Helper()
	var total int64
	for _, b := range boxes {
		total += b.bytes
	}
	t.Logf("bench: starting Dovecot with %d mailboxes (%.1f MB)", len(boxes), float64(total)/1e6)
	e.srv = dovecottest.Start(t, us, opts)
	e.boxes = boxes
	e.pwDir = filepath.Join(e.work, "passwords")
	if err := os.Mkdir(e.pwDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, b := range boxes {
		if err := os.WriteFile(e.pwFile(b.user), []byte(b.password), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e.warm(t)
	return total
}

// env is what the runs share.
type env struct {
	srv        *dovecottest.Server
	popmigrate string // built binary
	mpop       string
	timeCmd    string // GNU time
	refread    string // built reference reader (TestBenchCompare)
	mbsync     string // TestBenchCompare's IMAP rows
	mbsyncTLS  string // the mbsyncrc keyword for implicit TLS: SSLType before isync 1.5, TLSType since
	master     int    // pid of the Dovecot master, once found
	work       string // scratch folder
	pwDir      string
	boxes      []mailbox
	folders    int // IMAP folders made so far, for fresh names
}

func (e *env) pwFile(user string) string { return filepath.Join(e.pwDir, user) }

// sample is what one run of a tool cost.
type sample struct {
	wall time.Duration
	cpu  time.Duration // user + system of every process
	srv  time.Duration // user + system of the Dovecot processes that served the run
	rss  int64         // peak RSS in KiB: the largest, or the sum for processes at once
}

// median is the median of the samples' field f (the mean of the middle two
// for an even count).
func median(ss []sample, f func(sample) float64) float64 {
	v := make([]float64, len(ss))
	for i, s := range ss {
		v[i] = f(s)
	}
	slices.Sort(v)
	switch n := len(v); {
	case n == 0:
		return 0
	case n%2 == 1:
		return v[n/2]
	default:
		return (v[n/2-1] + v[n/2]) / 2
	}
}

// mpoprc returns an mpop configuration with one account per box, named
// after its user: implicit TLS trusting caFile, keep everything, fetch
// everything, no Received header, UIDLs under dir, Maildir dir/mail/USER.
func mpoprc(caFile, port, dir string, boxes []mailbox, pwFile func(string) string) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("defaults")
	p("host 127.0.0.1")
	p("port %s", port)
	p("tls on")
	p("tls_starttls off")
	p("tls_trust_file %s", caFile)
	p("keep on")
	p("only_new off")
	p("received_header off")
	p("timeout 60")
	p("uidls_file %s", filepath.Join(dir, "uidls", "%U"))
	for _, box := range boxes {
		p("")
		p("account %s", box.user)
		p("user %s", box.user)
		p("passwordeval cat %s", pwFile(box.user))
		p("delivery maildir %s", filepath.Join(dir, "mail", box.user))
	}
	return b.String()
}

// procOutput is what a child printed.
type procOutput struct{ stdout, stderr []byte }

// runProcs runs cmds one after another or all at once, each under GNU time,
// and returns the wall time from the first start to the last exit, the
// summed CPU time and the peak RSS (largest one after another, summed at
// once). Any failure calls t.Fatal with the command's output. dir holds
// GNU time's reports.
//
// The peak RSS comes from GNU time, not from the rusage of our own child:
// Go starts children with vfork semantics (CLONE_VM), and Linux records
// the peak RSS of the memory a process leaves at exec, so a direct child's
// ru_maxrss is at least this test process's peak (hundreds of MiB with the
// mail corpus). GNU time is small and forks, so its child starts from a
// floor of about 1 MiB.
func (e *env) runProcs(t *testing.T, dir string, cmds [][]string, parallel bool) (sample, []procOutput) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), childTimeout)
	defer cancel()
	outs := make([]procOutput, len(cmds))
	type running struct {
		cmd            *exec.Cmd
		report         string
		stdout, stderr bytes.Buffer
	}
	rs := make([]*running, len(cmds))
	var s sample
	wait := func(i int) {
		r := rs[i]
		err := r.cmd.Wait()
		outs[i] = procOutput{r.stdout.Bytes(), r.stderr.Bytes()}
		report, rerr := os.ReadFile(r.report)
		if err != nil {
			if ctx.Err() != nil {
				err = fmt.Errorf("%w (killed after %v)", err, childTimeout)
			}
			t.Fatalf("bench: %s: %v\nstderr:\n%s\nstdout:\n%s\ntime:\n%s", strings.Join(cmds[i], " "), err,
				tail(outs[i].stderr), tail(outs[i].stdout), report)
		}
		if rerr != nil {
			t.Fatalf("bench: %s: GNU time report: %v", strings.Join(cmds[i], " "), rerr)
		}
		var rss int64
		if _, err := fmt.Sscanf(lastLine(string(report)), "maxrss=%d", &rss); err != nil || rss <= 0 {
			t.Fatalf("bench: %s: GNU time report %q: want maxrss=KIB (%v)", strings.Join(cmds[i], " "), report, err)
		}
		// time's own rusage includes its waited-for child's CPU time.
		ps := r.cmd.ProcessState
		s.cpu += ps.UserTime() + ps.SystemTime()
		if parallel {
			s.rss += rss
		} else {
			s.rss = max(s.rss, rss)
		}
	}
	start := time.Now()
	for i, args := range cmds {
		report := filepath.Join(dir, fmt.Sprintf("time-%d.txt", i))
		targs := append([]string{"-f", "maxrss=%M", "-o", report, "--"}, args...)
		r := &running{cmd: exec.CommandContext(ctx, e.timeCmd, targs...), report: report}
		r.cmd.Stdout, r.cmd.Stderr = &r.stdout, &r.stderr
		// time and the tool form a process group of their own: a timeout
		// or a failed test kills both. If the test binary dies without
		// running its defers, Pdeathsig kills time; the tool then ends on
		// its own network timeout at the latest.
		r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		r.cmd.Cancel = func() error { return syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL) }
		if err := r.cmd.Start(); err != nil {
			t.Fatalf("bench: start %s: %v", args[0], err)
		}
		rs[i] = r
		if !parallel {
			wait(i)
		}
	}
	if parallel {
		for i := range rs {
			wait(i)
		}
	}
	s.wall = time.Since(start)
	return s, outs
}

// verifyMaildir checks that the Maildir at dir holds exactly b's messages:
// the multiset of the sha256 sums of the files in new/ and cur/ equals
// b.sums, and tmp/ is empty.
func verifyMaildir(dir string, b mailbox) error {
	var got []string
	for _, sub := range []string{"new", "cur"} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			return fmt.Errorf("account %s: %w", b.user, err)
		}
		for _, de := range entries {
			if !de.Type().IsRegular() {
				return fmt.Errorf("account %s: %s/%s is not a regular file", b.user, sub, de.Name())
			}
			data, err := os.ReadFile(filepath.Join(dir, sub, de.Name()))
			if err != nil {
				return fmt.Errorf("account %s: %w", b.user, err)
			}
			sum := sha256.Sum256(data)
			got = append(got, hex.EncodeToString(sum[:]))
		}
	}
	if tmp, err := os.ReadDir(filepath.Join(dir, "tmp")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("account %s: %w", b.user, err)
	} else if len(tmp) > 0 {
		return fmt.Errorf("account %s: %d files left in %s/tmp", b.user, len(tmp), dir)
	}
	slices.Sort(got)
	if slices.Equal(got, b.sums) {
		return nil
	}
	missing, extra := diffSorted(b.sums, got)
	return fmt.Errorf("account %s: Maildir %s holds %d messages, want %d: %d missing or changed, %d unexpected or duplicated",
		b.user, dir, len(got), len(b.sums), missing, extra)
}

// diffSorted counts the elements of the sorted multiset want missing from
// got, and those of got not in want.
func diffSorted(want, got []string) (missing, extra int) {
	i, j := 0, 0
	for i < len(want) && j < len(got) {
		switch {
		case want[i] == got[j]:
			i++
			j++
		case want[i] < got[j]:
			missing++
			i++
		default:
			extra++
			j++
		}
	}
	return missing + len(want) - i, extra + len(got) - j
}

// warm has Dovecot build its indexes and cache the message sizes of every
// mailbox (one LIST and UIDL each), so no measured run pays for that, and
// checks that the server lists every message.
func (e *env) warm(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), warmTimeout)
	defer cancel()
	for _, b := range e.boxes {
		c, err := pop3.Dial(ctx, e.srv.POP3SAddr, &pop3.Options{Security: pop3.SecurityTLS, TLSConfig: e.srv.PKI.ClientConfig()})
		if err != nil {
			t.Fatalf("bench: warm %s: %v", b.user, err)
		}
		err = c.User(ctx, b.user)
		if err == nil {
			err = c.Pass(ctx, b.password)
		}
		var list []pop3.MessageInfo
		if err == nil {
			list, err = c.List(ctx)
		}
		if err == nil {
			_, err = c.UIDL(ctx)
		}
		if err == nil {
			err = c.Quit(ctx)
		}
		c.Close()
		if err != nil {
			t.Fatalf("bench: warm %s: %v", b.user, err)
		}
		if len(list) != b.messages {
			t.Fatalf("bench: warm %s: the server lists %d messages, want %d", b.user, len(list), b.messages)
		}
	}
}

// serverCPU returns the user + system time of the Dovecot master's reaped
// children so far (cutime + cstime in /proc/PID/stat): every pop3 and
// pop3-login process exits after its connection, so the difference over a
// run is what serving it cost.
func (e *env) serverCPU(t *testing.T) time.Duration {
	t.Helper()
	if e.master == 0 {
		e.master = findMaster(t, filepath.Join(e.srv.Dir, "dovecot.conf"))
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", e.master))
	if err != nil {
		t.Fatalf("bench: Dovecot master: %v", err)
	}
	f, err := statFields(stat)
	if err != nil || len(f) < 15 {
		t.Fatalf("bench: Dovecot master: /proc/%d/stat: %q (%v)", e.master, stat, err)
	}
	// Fields after "pid (comm)": state is f[0], so utime (14) is f[11],
	// cutime (16) f[13], cstime (17) f[14]; in clock ticks of 1/100 s.
	var ticks int64
	for _, i := range []int{13, 14} {
		var v int64
		if _, err := fmt.Sscan(f[i], &v); err != nil {
			t.Fatalf("bench: Dovecot master: /proc/%d/stat field %d %q: %v", e.master, i+3, f[i], err)
		}
		ticks += v
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// settledServerCPU is serverCPU once the sessions of the run have been
// reaped: the value stays the same for 100 ms (waiting at most 3 s).
func (e *env) settledServerCPU(t *testing.T) time.Duration {
	t.Helper()
	last := e.serverCPU(t)
	stable := 0
	for deadline := time.Now().Add(3 * time.Second); stable < 2 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		v := e.serverCPU(t)
		if v == last {
			stable++
		} else {
			stable, last = 0, v
		}
	}
	return last
}

// findMaster returns the pid of the Dovecot master this process started
// with the configuration conf.
func findMaster(t *testing.T, conf string) int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatalf("bench: %v", err)
	}
	for _, de := range entries {
		var pid int
		if _, err := fmt.Sscan(de.Name(), &pid); err != nil || pid <= 0 {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !bytes.Contains(cmdline, []byte(conf)) {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		if f, err := statFields(stat); err == nil && len(f) > 1 && f[1] == fmt.Sprint(os.Getpid()) {
			return pid
		}
	}
	t.Fatalf("bench: no Dovecot master with %s among the children of pid %d", conf, os.Getpid())
	return 0
}

// statFields returns the fields of /proc/PID/stat after "pid (comm)",
// whose comm may hold spaces and parentheses.
func statFields(stat []byte) ([]string, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return nil, errors.New("no ')' in stat")
	}
	return strings.Fields(string(stat[i+1:])), nil
}

// scratch makes a fresh folder for one run.
func (e *env) scratch(t *testing.T, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp(e.work, prefix)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// buildPopmigrate builds cmd/popmigrate from this tree into dir.
func buildPopmigrate(t *testing.T, dir string) string {
	t.Helper()
	// go test puts its own GOROOT/bin first in PATH.
	gocmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("bench: the go command is needed to build popmigrate (or give -bench-popmigrate BINARY): %v", err)
	}
	bin := filepath.Join(dir, "popmigrate")
	ctx, cancel := context.WithTimeout(context.Background(), childTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, gocmd, "build", "-o", bin, "github.com/popmigrate/popmigrate/cmd/popmigrate").CombinedOutput()
	if err != nil {
		t.Fatalf("bench: go build popmigrate: %v\n%s", err, out)
	}
	return bin
}

// makeCorpus returns the server's users and, per user, what it holds:
// perUser messages each, sizes drawn from sizeClasses, deterministic.
func makeCorpus(users, perUser int) ([]dovecottest.User, []mailbox) {
	rng := rand.New(rand.NewPCG(2024, 11))
	us := make([]dovecottest.User, users)
	boxes := make([]mailbox, users)
	for u := range users {
		name := fmt.Sprintf("user%d", u+1)
		pw := fmt.Sprintf("pw-%d-%08x", u+1, rng.Uint32())
		us[u] = dovecottest.User{Name: name, Password: pw}
		boxes[u] = mailbox{user: name, password: pw, messages: perUser}
		for i := range perUser {
			msg := makeMessage(rng, name, i+1)
			us[u].Messages = append(us[u].Messages, msg)
			sum := sha256.Sum256(msg)
			boxes[u].sums = append(boxes[u].sums, hex.EncodeToString(sum[:]))
			boxes[u].bytes += int64(len(msg))
		}
		slices.Sort(boxes[u].sums)
	}
	return us, boxes
}

var words = strings.Fields(`the a of to and in is for on that with as this be are from at by it or
	invoice meeting report quarterly shipment schedule please find attached regards thanks project
	update review budget migration mailbox server customer account delivery weekend draft contract`)

// makeMessage returns message n of user in canonical form (LF line ends,
// a final newline), of a size class drawn from sizeClasses: headers, a
// text body of filler lines, and for the largest class a base64 attachment
// of random bytes.
func makeMessage(rng *rand.Rand, user string, n int) []byte {
	x := rng.Float64()
	class := sizeClasses[len(sizeClasses)-1]
	for _, c := range sizeClasses {
		if x < c.share {
			class = c
			break
		}
		x -= c.share
	}
	return makeMessageOf(rng, user, n, class, 1)
}

// makeMessageOf is makeMessage for a given class, its nominal size
// multiplied by scale.
func makeMessageOf(rng *rand.Rand, user string, n int, class sizeClass, scale float64) []byte {
	class.size = int(float64(class.size) * scale)
	target := class.size * (75 + rng.IntN(51)) / 100
	if class.exact {
		target = class.size
	}
	date := time.Date(2023, 1, 1, 8, 0, 0, 0, time.UTC).Add(time.Duration(n) * 37 * time.Minute)
	var b bytes.Buffer
	fmt.Fprintf(&b, "Return-Path: <sender%d@example.net>\n", n%17)
	fmt.Fprintf(&b, "Received: from mx%d.example.net (mx%d.example.net [192.0.2.%d])\n\tby pop.example.org with ESMTPS id %08x\n\tfor <%s@example.org>; %s\n",
		n%3, n%3, 1+n%200, rng.Uint32(), user, date.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Date: %s\n", date.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "From: \"Sender %d\" <sender%d@example.net>\n", n%17, n%17)
	fmt.Fprintf(&b, "To: <%s@example.org>\n", user)
	fmt.Fprintf(&b, "Subject: %s %s number %d\n", words[rng.IntN(len(words))], words[rng.IntN(len(words))], n)
	fmt.Fprintf(&b, "Message-ID: <%d.%s.%08x@example.net>\n", n, user, rng.Uint32())
	b.WriteString("MIME-Version: 1.0\n")
	text := func(limit int) {
		line := 0
		for b.Len() < limit {
			w := 0
			if class.dotLine && line == 3 {
				b.WriteString(". a line that starts with a dot")
				w = 31
			}
			for w < 72 {
				word := words[rng.IntN(len(words))]
				if w > 0 {
					b.WriteByte(' ')
					w++
				}
				b.WriteString(word)
				w += len(word)
			}
			b.WriteByte('\n')
			line++
		}
	}
	if !class.attach {
		b.WriteString("Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 7bit\n\n")
		text(target)
		return b.Bytes()
	}
	boundary := fmt.Sprintf("=_bench_%08x", rng.Uint32())
	fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"%s\"\n\n", boundary)
	fmt.Fprintf(&b, "--%s\nContent-Type: text/plain; charset=utf-8\n\n", boundary)
	text(b.Len() + 1500)
	fmt.Fprintf(&b, "\n--%s\nContent-Type: application/pdf; name=\"report-%d.pdf\"\nContent-Transfer-Encoding: base64\n"+
		"Content-Disposition: attachment; filename=\"report-%d.pdf\"\n\n", boundary, n, n)
	raw := make([]byte, max(0, target-b.Len())*3/4)
	if class.exact {
		// base64 lines of 76 characters and their line ends
		raw = raw[:len(raw)*76/77]
	}
	for i := 0; i < len(raw); i += 8 {
		v := rng.Uint64()
		for k := i; k < min(i+8, len(raw)); k++ {
			raw[k] = byte(v)
			v >>= 8
		}
	}
	enc := base64.StdEncoding.EncodeToString(raw)
	for len(enc) > 76 {
		b.WriteString(enc[:76])
		b.WriteByte('\n')
		enc = enc[76:]
	}
	b.WriteString(enc)
	fmt.Fprintf(&b, "\n\n--%s--\n", boundary)
	return b.Bytes()
}

func commandOutput(name string, args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		return name + " (version unknown)"
	}
	return string(out)
}

func dovecotVersion() string {
	path := "dovecot"
	if _, err := exec.LookPath(path); err != nil {
		path = "/usr/sbin/dovecot"
	}
	return "Dovecot " + firstLine(commandOutput(path, "--version"))
}

// gnuTime returns the path of GNU time, which measures the children's
// peak RSS (see runProcs), or fails the test.
func gnuTime(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("time") // the program, not the shell keyword
	if err == nil && !strings.Contains(commandOutput(path, "--version"), "GNU") {
		err = errors.New(path + " is not GNU time")
	}
	if err != nil {
		t.Fatalf("bench: GNU time is needed to measure peak RSS (%v); install it with `sudo scripts/ensure-bench-tools.sh` (Debian package time)", err)
	}
	return path
}

// loadAverage returns the 1-minute load average, or "?" if unknown: other
// work on the machine skews the figures.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(data)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}

// workDisk describes the file system dir is on and what creating a 4 KiB
// file costs there (the mean of 500 created, written and closed one after
// another, then removed): every Maildir run creates a file per message, so
// this cost is part of every tool's figures. On ext4 without a journal,
// where each new inode skips those deleted in the last minute after reading
// their blocks, it is tens of times a journaled file system's; `make bench`
// therefore measures on a journaled ext4 of its own (scripts/bench-fs.sh).
func workDisk(dir string) string {
	var st syscall.Statfs_t
	kind := "unknown file system"
	if syscall.Statfs(dir, &st) == nil {
		switch st.Type {
		case 0xEF53:
			kind = "ext4"
		case 0x01021994:
			kind = "tmpfs"
		case 0x58465342:
			kind = "xfs"
		case 0x9123683E:
			kind = "btrfs"
		case 0x794c7630:
			kind = "overlayfs"
		default:
			kind = fmt.Sprintf("file system 0x%x", st.Type)
		}
	}
	probe, err := os.MkdirTemp(dir, "fsprobe-")
	if err != nil {
		return fmt.Sprintf("work directory %s on %s", dir, kind)
	}
	defer os.RemoveAll(probe)
	const n = 500
	data := make([]byte, 4<<10)
	start := time.Now()
	for i := range n {
		if err := os.WriteFile(filepath.Join(probe, fmt.Sprint(i)), data, 0o600); err != nil {
			return fmt.Sprintf("work directory %s on %s (probe: %v)", dir, kind, err)
		}
	}
	per := time.Since(start) / n
	return fmt.Sprintf("work directory %s on %s, creating a 4 KiB file there takes %v", dir, kind, per.Round(time.Microsecond))
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return strings.TrimSpace(s)
}

// tail returns at most the last 4 KiB of b, for failure messages.
func tail(b []byte) string {
	const n = 4 << 10
	if len(b) > n {
		return "[...]" + string(b[len(b)-n:])
	}
	return string(b)
}
