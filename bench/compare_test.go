//go:build linux

package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/internal/dovecottest"
)

var (
	flagScale = flag.Float64("bench-scale", 1, "TestBenchCompare: scale of the workloads' message and mailbox counts and of the 64 MiB message (0.05: a smoke run of about a minute)")
	flagRTT   = flag.Duration("bench-rtt", 20*time.Millisecond, "TestBenchCompare: round-trip time the delay proxy adds in the rows with latency")
	flagRows  = flag.String("bench-rows", "", "TestBenchCompare: run only the rows whose key matches this regular expression (keys: big small many8 many8-rtt many1-rtt imap-big imap-many8 rss-huge rss-crowd)")
)

// The workloads at scale 1.
const (
	bigMB         = 426      // one mailbox of realistic messages...
	bigMessages   = 2000     // ...this many
	smallMessages = 5000     // one mailbox of 4 KiB messages
	manyBoxes     = 50       // mailboxes of realistic messages...
	manyMessages  = 20       // ...this many each
	atOnce        = 8        // accounts at once in the "8 at once" rows
	hugeMessage   = 64 << 20 // the one message of the first memory row
	crowdBoxes    = 200      // small mailboxes all at once, second memory row...
	crowdMessages = 5        // ...this many messages each
	imapBatch     = 50       // messages per FETCH when checking an IMAP folder
	imapTimeout   = 5 * time.Minute
)

// contender is one column of the table: a tool run on a workload.
type contender int

const (
	cBase        contender = iota // mpop, or mpop then mbsync for IMAP
	cPop                          // popmigrate, verify on (the default)
	cPopNoVerify                  // popmigrate --no-verify
	cRef                          // the reference reader
	nContenders
)

var contenderNames = [nContenders]string{"mpop", "popmigrate", "popmigrate --no-verify", "reference reader"}

// targetKind says what a target bounds.
type targetKind int

const (
	tBase   targetKind = iota // wall time popmigrate / mpop (+ mbsync), ratio of pairs
	tRef                      // wall time popmigrate / reference reader
	tCPU                      // client CPU (per MB) popmigrate / reference reader
	tVerify                   // wall time verify on / --no-verify - 1
	tRSS                      // popmigrate's peak RSS in MiB
)

type target struct {
	kind  targetKind
	limit float64
}

// benchRow is one workload: its mailboxes, how they are read, which tools
// run and what popmigrate must reach.
type benchRow struct {
	key, name string
	boxes     []mailbox
	addr      string // POP3S address the tools read from (the server or the delay proxy)
	at        int    // accounts at once; 1 is one after another
	imap      bool   // into Dovecot IMAP rather than Maildir
	runs      []contender
	targets   []target
	samples   [nContenders][]sample
}

func (r *benchRow) size() (messages int, bytes int64) {
	for _, b := range r.boxes {
		messages += b.messages
		bytes += b.bytes
	}
	return messages, bytes
}

func (r *benchRow) has(c contender) bool { return len(r.samples[c]) > 0 }

// pairs returns the median over the repetitions of f(a's run)/f(b's run):
// each pair of runs comes from the same round, so the machine's drift
// cancels out.
func (r *benchRow) pairs(a, b contender, f func(sample) float64) (float64, bool) {
	if !r.has(a) || !r.has(b) {
		return 0, false
	}
	n := min(len(r.samples[a]), len(r.samples[b]))
	v := make([]float64, n)
	for i := range n {
		v[i] = f(r.samples[a][i]) / f(r.samples[b][i])
	}
	return medianFloat(v), true
}

func (r *benchRow) value(k targetKind) (float64, bool) {
	wall := func(s sample) float64 { return s.wall.Seconds() }
	cpu := func(s sample) float64 { return s.cpu.Seconds() }
	switch k {
	case tBase:
		return r.pairs(cPop, cBase, wall)
	case tRef:
		return r.pairs(cPop, cRef, wall)
	case tCPU:
		// The same bytes on both sides: the ratio of CPU is that of CPU per MB.
		return r.pairs(cPop, cRef, cpu)
	case tVerify:
		v, ok := r.pairs(cPop, cPopNoVerify, wall)
		return v - 1, ok
	case tRSS:
		if !r.has(cPop) {
			return 0, false
		}
		return median(r.samples[cPop], func(s sample) float64 { return float64(s.rss) / 1024 }), true
	}
	return 0, false
}

func medianFloat(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	switch n := len(v); {
	case n == 0:
		return math.NaN()
	case n%2 == 1:
		return v[n/2]
	default:
		return (v[n/2-1] + v[n/2]) / 2
	}
}

// scaled returns n scaled by -bench-scale, at least least.
func scaled(n, least int) int {
	return max(least, int(math.Round(float64(n)**flagScale)))
}

// TestBenchCompare runs the workloads of the comparison table (see the
// package documentation) against one private Dovecot, each tool in turn
// within every round, and prints the table as markdown. It runs only with
// -bench-compare.
func TestBenchCompare(t *testing.T) {
	if !*flagCompare {
		t.Skip("the popmigrate vs mpop benchmark runs with `make bench` (go test ./bench/ -args -bench-compare)")
	}
	if *flagReps < 1 || *flagReps > maxReps || *flagScale <= 0 || *flagScale > 1 || *flagRTT < 0 || *flagRTT > time.Second {
		t.Fatalf("bench: flags out of range: -bench-reps 1..%d, -bench-scale (0,1], -bench-rtt 0..1s", maxReps)
	}
	rowFilter, err := regexp.Compile(*flagRows)
	if err != nil {
		t.Fatalf("bench: -bench-rows: %v", err)
	}
	mpopPath, err := exec.LookPath("mpop")
	if err != nil {
		t.Fatalf("bench: mpop is not installed (%v); install it with `sudo scripts/ensure-bench-tools.sh` (Debian package mpop)", err)
	}
	mbsyncPath, err := exec.LookPath("mbsync")
	if err != nil {
		t.Fatalf("bench: mbsync is not installed (%v); install it with `sudo scripts/ensure-bench-tools.sh` (Debian package isync)", err)
	}
	loadBefore := loadAverage()
	started := time.Now()
	commit := treeCommit() // of the tree built and measured
	e := &env{mpop: mpopPath, mbsync: mbsyncPath, timeCmd: gnuTime(t), work: t.TempDir()}
	disk := workDisk(e.work)
	t.Logf("bench: %s", disk)
	mbsyncVersion := firstLine(commandOutput(mbsyncPath, "--version"))
	e.mbsyncTLS = mbsyncTLSKeyword(mbsyncVersion)
	if e.popmigrate = *flagBinary; e.popmigrate == "" {
		e.popmigrate = buildPopmigrate(t, e.work)
	}
	e.refread = buildRefread(t, e.work)

	corpusStart := time.Now()
	c := makeCompareCorpus()
	t.Logf("bench: making the corpus took %v", time.Since(corpusStart).Round(time.Millisecond))
	total := e.serveCorpus(t, c.users, c.boxes, nil)
	c.users = nil // Dovecot has the messages; the sums are enough from here on
	proxy := startDelayProxy(t, e.srv.POP3SAddr, *flagRTT)
	direct := e.srv.POP3SAddr
	all := []contender{cBase, cPop, cPopNoVerify, cRef}
	viaIMAP := []contender{cBase, cPop, cPopNoVerify}
	rtt := fmt.Sprintf("%v RTT added", *flagRTT)
	sizeOf := func(bs []mailbox) string {
		var n int
		var b int64
		for _, x := range bs {
			n += x.messages
			b += x.bytes
		}
		if b < 10e6 {
			return fmt.Sprintf("%d msgs, %.1f MB", n, float64(b)/1e6)
		}
		return fmt.Sprintf("%d msgs, %.0f MB", n, float64(b)/1e6)
	}
	rows := []*benchRow{
		{key: "big", name: fmt.Sprintf("1 mailbox, realistic (%s)", sizeOf(c.big)), boxes: c.big, addr: direct, at: 1, runs: all,
			targets: []target{{tRef, 1.25}, {tBase, 0.7}, {tCPU, 1.5}, {tVerify, 0.15}, {tRSS, 64}}},
		{key: "small", name: fmt.Sprintf("1 mailbox, 4 KiB messages (%s)", sizeOf(c.small)), boxes: c.small, addr: direct, at: 1, runs: all,
			targets: []target{{tBase, 0.35}, {tRef, 2}, {tCPU, 1.5}, {tVerify, 0.15}, {tRSS, 64}}},
		{key: "many8", name: fmt.Sprintf("%d mailboxes, %d at once (%s)", len(c.many), atOnce, sizeOf(c.many)), boxes: c.many, addr: direct, at: atOnce, runs: all,
			targets: []target{{tBase, 0.8}, {tCPU, 1.5}, {tVerify, 0.15}}},
		{key: "many8-rtt", name: fmt.Sprintf("%d mailboxes, %d at once, %s", len(c.many), atOnce, rtt), boxes: c.many, addr: proxy.Addr(), at: atOnce, runs: all,
			targets: []target{{tBase, 0.8}, {tCPU, 1.5}, {tVerify, 0.15}}},
		{key: "many1-rtt", name: fmt.Sprintf("%d mailboxes, one at a time, %s", len(c.many), rtt), boxes: c.many, addr: proxy.Addr(), at: 1, runs: all,
			targets: []target{{tBase, 0.8}, {tCPU, 1.5}, {tVerify, 0.15}}},
		{key: "imap-big", name: fmt.Sprintf("IMAP: 1 mailbox, realistic (%s)", sizeOf(c.big)), boxes: c.big, addr: direct, at: 1, imap: true, runs: viaIMAP,
			targets: []target{{tBase, 0.5}, {tVerify, 0.35}, {tRSS, 64}}},
		{key: "imap-many8", name: fmt.Sprintf("IMAP: %d mailboxes, %d at once", len(c.many), atOnce), boxes: c.many, addr: direct, at: atOnce, imap: true, runs: viaIMAP,
			targets: []target{{tBase, 0.5}, {tVerify, 0.35}}},
		{key: "rss-huge", name: fmt.Sprintf("memory: 1 mailbox, one %.0f MiB message", float64(c.huge[0].bytes)/(1<<20)), boxes: c.huge, addr: direct, at: 1, runs: []contender{cPop},
			targets: []target{{tRSS, 64}}},
		{key: "rss-crowd", name: fmt.Sprintf("memory: %d mailboxes at once (%s)", len(c.crowd), sizeOf(c.crowd)), boxes: c.crowd, addr: direct, at: len(c.crowd), runs: []contender{cPop},
			targets: []target{{tRSS, 256}}},
	}
	rows = slices.DeleteFunc(rows, func(r *benchRow) bool { return !rowFilter.MatchString(r.key) })
	if len(rows) == 0 {
		t.Fatalf("bench: -bench-rows %q matches no row", *flagRows)
	}

	// Untimed: the first run of each tool pays for loading binaries and
	// filling caches.
	warmRow := &benchRow{key: "warm", boxes: c.many[:2], addr: direct, at: 2}
	for _, ct := range all {
		e.runContender(t, warmRow, ct)
	}
	warmRow.imap = true
	for _, ct := range viaIMAP {
		e.runContender(t, warmRow, ct)
	}

	for _, r := range rows {
		t.Logf("bench: %s", r.name)
		for rep := range *flagReps {
			for _, ct := range r.runs {
				before := e.serverCPU(t)
				s := e.runContender(t, r, ct)
				s.srv = e.settledServerCPU(t) - before
				t.Logf("bench: %s: %s: pair %d: %v, CPU %v, RSS %d KiB, server CPU %v", r.key, e.contenderName(r, ct), rep+1,
					s.wall.Round(time.Millisecond), s.cpu.Round(time.Millisecond), s.rss, s.srv.Round(time.Millisecond))
				r.samples[ct] = append(r.samples[ct], s)
			}
		}
	}
	held, heldMax := proxy.Held()

	var b strings.Builder
	fmt.Fprintf(&b, "\n## popmigrate vs mpop and mpop + mbsync\n\n")
	which := "popmigrate built from this tree"
	if *flagBinary != "" {
		which = "popmigrate " + *flagBinary
	}
	fmt.Fprintf(&b, "Commit %s; %s; %s; %s; %s; %d CPUs; load average before %s, after %s; %d pairs per cell (scale %g); "+
		"corpus %.0f MB; %s; total bench time %v.\n\n",
		commit, which, firstLine(commandOutput(mpopPath, "--version")), mbsyncVersion, dovecotVersion(),
		runtime.NumCPU(), loadBefore, loadAverage(), *flagReps, *flagScale, float64(total)/1e6, disk, time.Since(started).Round(time.Second))
	writeCompareTable(&b, rows)
	fmt.Fprintf(&b, "\nTimes are medians of wall seconds. Ratios are medians of the ratios of the runs of one round (the tools run "+
		"in turn, A B C D A B C D ...); below 1 popmigrate is faster. Verify: popmigrate (verify on) / --no-verify - 1. "+
		"CPU: user + system seconds of popmigrate / of the reference reader for the same bytes (= per MB). Peak RSS is "+
		"popmigrate's (verify on). mpop runs as one process per group of accounts (%d at once) or `mpop -a` (one at a "+
		"time); for IMAP its Maildir is then pushed with mbsync the same way, and the times are summed. The reference "+
		"reader pipelines every RETR and discards the bytes: what the server can serve. The delay proxy holds each chunk "+
		"%v each way (measured: mean %v, max %v).\n\n",
		atOnce, *flagRTT/2, held.Round(time.Microsecond), heldMax.Round(time.Microsecond))
	writeDetailTable(&b, e, rows)
	b.WriteString("\nMB = 10^6 bytes of messages in canonical form (LF line ends). Peak RSS of processes at once is the sum of " +
		"their peaks; of runs one after another (mpop then mbsync), the largest. Server CPU is that of the Dovecot processes " +
		"that served the run, as their master reaped them. Every run was checked before it counted: Maildirs and IMAP " +
		"folders byte for byte (multiset of sha256), the reference reader by its counts.\n")
	fmt.Print(b.String())
}

// corpus is the server's users and the mailboxes of each workload.
type corpus struct {
	users                         []dovecottest.User
	boxes                         []mailbox // all of them
	big, small, many, huge, crowd []mailbox
}

// makeCompareCorpus makes the seeded corpus of TestBenchCompare, scaled by
// -bench-scale.
func makeCompareCorpus() *corpus {
	c := &corpus{}
	add := func(name string, seed uint64, n int, gen func(rng *rand.Rand, user string, i int) []byte) mailbox {
		rng := rand.New(rand.NewPCG(2024, seed))
		u := dovecottest.User{Name: name, Password: fmt.Sprintf("pw-%s-%08x", name, rng.Uint32())}
		b := mailbox{user: name, password: u.Password, messages: n}
		for i := range n {
			msg := gen(rng, name, i+1)
			u.Messages = append(u.Messages, msg)
			sum := sha256.Sum256(msg)
			b.sums = append(b.sums, hex.EncodeToString(sum[:]))
			b.bytes += int64(len(msg))
		}
		slices.Sort(b.sums)
		c.users = append(c.users, u)
		c.boxes = append(c.boxes, b)
		return b
	}
	// The realistic mix scaled so that bigMessages of them make bigMB:
	// headers and line ends add to the nominal sizes, so the scale is
	// measured on a first draw and corrected once.
	var mean float64
	for _, cl := range sizeClasses {
		mean += cl.share * float64(cl.size)
	}
	bigScale := bigMB * 1e6 / bigMessages / mean
	bigGen := func(scale float64) func(rng *rand.Rand, user string, i int) []byte {
		return func(rng *rand.Rand, user string, i int) []byte {
			x := rng.Float64()
			class := sizeClasses[len(sizeClasses)-1]
			for _, cl := range sizeClasses {
				if x < cl.share {
					class = cl
					break
				}
				x -= cl.share
			}
			return makeMessageOf(rng, user, i, class, scale)
		}
	}
	var drawn int64
	probe := rand.New(rand.NewPCG(2024, 1))
	probe.Uint32() // the password's draw
	for i := range bigMessages {
		drawn += int64(len(bigGen(bigScale)(probe, "big", i+1)))
	}
	bigScale *= bigMB * 1e6 / float64(drawn)
	c.big = []mailbox{add("big", 1, scaled(bigMessages, 2), bigGen(bigScale))}
	c.small = []mailbox{add("small", 2, scaled(smallMessages, 2), func(rng *rand.Rand, user string, i int) []byte {
		return makeMessageOf(rng, user, i, sizeClass{size: 4 << 10, share: 1, exact: true}, 1)
	})}
	nMany, perMany := scaled(manyBoxes, atOnce), scaled(manyMessages, 2)
	for k := range nMany {
		c.many = append(c.many, add(fmt.Sprintf("box%02d", k+1), uint64(100+k), perMany, makeMessage))
	}
	c.huge = []mailbox{add("huge", 3, 1, func(rng *rand.Rand, user string, i int) []byte {
		return makeMessageOf(rng, user, i, sizeClass{size: max(1<<20, int(hugeMessage**flagScale)), share: 1, attach: true, exact: true}, 1)
	})}
	for k := range scaled(crowdBoxes, atOnce) {
		c.crowd = append(c.crowd, add(fmt.Sprintf("crowd%03d", k+1), uint64(1000+k), crowdMessages, func(rng *rand.Rand, user string, i int) []byte {
			return makeMessageOf(rng, user, i, sizeClasses[0], 1)
		}))
	}
	return c
}

func (e *env) contenderName(r *benchRow, c contender) string {
	if c == cBase && r.imap {
		return "mpop + mbsync"
	}
	return contenderNames[c]
}

// runContender runs tool c on row r into a fresh destination, checks the
// result (t.Fatal if it is not exactly the row's messages) and returns
// what it cost.
func (e *env) runContender(t *testing.T, r *benchRow, c contender) sample {
	t.Helper()
	switch c {
	case cBase:
		return e.runMpop(t, r)
	case cPop:
		return e.runPopmigrate(t, r, true)
	case cPopNoVerify:
		return e.runPopmigrate(t, r, false)
	case cRef:
		return e.runRefread(t, r)
	}
	t.Fatalf("bench: no contender %d", c)
	return sample{}
}

// newFolder returns a fresh IMAP folder name.
func (e *env) newFolder() string {
	e.folders++
	return fmt.Sprintf("bench%04d", e.folders)
}

// runPopmigrate runs `popmigrate run` for r's boxes (--source for one,
// --accounts CSV for several, --jobs and --per-host r.at) into fresh
// Maildirs or a fresh IMAP folder with a fresh journal, and checks its
// JSON report and every destination.
func (e *env) runPopmigrate(t *testing.T, r *benchRow, verify bool) sample {
	t.Helper()
	dir := e.scratch(t, "popmigrate-")
	defer os.RemoveAll(dir)
	mail := filepath.Join(dir, "mail")
	args := []string{e.popmigrate, "run", "--ca-file", e.srv.CAFile, "--journal", filepath.Join(dir, "journal.db"),
		"--json", "--no-progress", "--jobs", fmt.Sprint(r.at), "--per-host", fmt.Sprint(r.at)}
	if !verify {
		args = append(args, "--no-verify")
	}
	var folder string
	if r.imap {
		folder = e.newFolder()
		args = append(args, "--to", "imaps://{user}@"+e.srv.IMAPSAddr+"/"+folder,
			"--to-password-file", filepath.Join(e.pwDir, "{user}"), "--to-ca-file", e.srv.CAFile)
	} else {
		args = append(args, "--to", "maildir:"+filepath.Join(mail, "{user}"))
	}
	if len(r.boxes) == 1 {
		b := r.boxes[0]
		args = append(args, "--source", "pop3s://"+b.user+"@"+r.addr, "--password-file", e.pwFile(b.user))
	} else {
		var csv strings.Builder
		csv.WriteString("source,password_file\n")
		for _, b := range r.boxes {
			fmt.Fprintf(&csv, "pop3s://%s@%s,%s\n", b.user, r.addr, e.pwFile(b.user))
		}
		csvPath := filepath.Join(dir, "accounts.csv")
		if err := os.WriteFile(csvPath, []byte(csv.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--accounts", csvPath)
	}
	s, outs := e.runProcs(t, dir, [][]string{args}, false)

	var rep struct {
		Totals struct {
			Accounts       int `json:"accounts"`
			AccountsFailed int `json:"accounts_failed"`
			Stored         int `json:"stored"`
			Failed         int `json:"failed"`
		} `json:"totals"`
	}
	if err := json.Unmarshal(outs[0].stdout, &rep); err != nil {
		t.Fatalf("bench: popmigrate: JSON report: %v\n%s", err, tail(outs[0].stdout))
	}
	want, _ := r.size()
	if tt := rep.Totals; tt.Accounts != len(r.boxes) || tt.AccountsFailed != 0 || tt.Stored != want || tt.Failed != 0 {
		t.Fatalf("bench: popmigrate report: %d accounts (%d failed), stored %d, failed %d; want %d accounts, %d stored\n%s",
			tt.Accounts, tt.AccountsFailed, tt.Stored, tt.Failed, len(r.boxes), want, tail(outs[0].stdout))
	}
	if r.imap {
		e.checkIMAP(t, "popmigrate", r.boxes, folder, false)
		return s
	}
	for _, b := range r.boxes {
		if err := verifyMaildir(filepath.Join(mail, b.user), b); err != nil {
			t.Fatalf("bench: popmigrate: %v", err)
		}
	}
	return s
}

// groups splits boxes round-robin into at most n groups, one per process.
func groups(boxes []mailbox, n int) [][]mailbox {
	n = min(n, len(boxes))
	gs := make([][]mailbox, n)
	for i, b := range boxes {
		gs[i%n] = append(gs[i%n], b)
	}
	return gs
}

// runMpop runs mpop for r's boxes with fresh Maildirs and UIDL files: one
// `mpop -a` for one at a time, else r.at processes at once, each for its
// group of accounts. For IMAP it then pushes each Maildir to a fresh
// folder with mbsync, grouped the same way, and sums both steps.
func (e *env) runMpop(t *testing.T, r *benchRow) sample {
	t.Helper()
	dir := e.scratch(t, "mpop-")
	defer os.RemoveAll(dir)
	_, port, err := net.SplitHostPort(r.addr)
	if err != nil {
		t.Fatal(err)
	}
	rc := filepath.Join(dir, "mpoprc")
	if err := os.WriteFile(rc, []byte(mpoprc(e.srv.CAFile, port, dir, r.boxes, e.pwFile)), 0o600); err != nil {
		t.Fatal(err)
	}
	// mpop makes the UIDL folder itself, but processes at once race.
	if err := os.Mkdir(filepath.Join(dir, "uidls"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, b := range r.boxes {
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(dir, "mail", b.user, sub), 0o700); err != nil {
				t.Fatal(err)
			}
		}
	}
	gs := groups(r.boxes, r.at)
	var cmds [][]string
	if r.at == 1 {
		cmds = [][]string{{e.mpop, "-C", rc, "--quiet", "-a"}}
	} else {
		for _, g := range gs {
			cmd := []string{e.mpop, "-C", rc, "--quiet"}
			for _, b := range g {
				cmd = append(cmd, b.user)
			}
			cmds = append(cmds, cmd)
		}
	}
	s, _ := e.runProcs(t, dir, cmds, len(cmds) > 1)
	for _, b := range r.boxes {
		if err := verifyMaildir(filepath.Join(dir, "mail", b.user), b); err != nil {
			t.Fatalf("bench: mpop: %v", err)
		}
	}
	if !r.imap {
		return s
	}

	folder := e.newFolder()
	_, imapPort, err := net.SplitHostPort(e.srv.IMAPSAddr)
	if err != nil {
		t.Fatal(err)
	}
	if r.at == 1 {
		gs = [][]mailbox{r.boxes}
	}
	cmds = nil
	for i, g := range gs {
		state := filepath.Join(dir, fmt.Sprintf("mbsync-state-%d", i))
		for _, b := range g {
			if err := os.MkdirAll(filepath.Join(state, b.user), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		conf := mbsyncrc(mbsyncConf{tls: e.mbsyncTLS, port: imapPort, certFile: e.srv.PKI.CertFile, folder: folder,
			state: state, mail: filepath.Join(dir, "mail")}, g, e.pwFile)
		path := filepath.Join(dir, fmt.Sprintf("mbsyncrc-%d", i))
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, []string{e.mbsync, "-c", path, "-q", "-a"})
	}
	s2, _ := e.runProcs(t, dir, cmds, len(cmds) > 1)
	e.checkIMAP(t, "mpop + mbsync", r.boxes, folder, true)
	s.wall += s2.wall
	s.cpu += s2.cpu
	s.rss = max(s.rss, s2.rss)
	return s
}

type mbsyncConf struct {
	tls, port, certFile, folder, state, mail string
}

// mbsyncrc returns an mbsync configuration with one channel per box,
// named after its user, pushing the Maildir mail/USER (as the store's
// INBOX) to the IMAP folder of that user, created if missing; nothing is
// expunged or removed on either side. It trusts the server's own
// certificate (certFile): isync 1.4 matches the host only against the
// certificate's DNS names, not its IP addresses, and accepts a
// certificate listed in CertificateFile whatever the host.
func mbsyncrc(c mbsyncConf, boxes []mailbox, pwFile func(string) string) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	for _, box := range boxes {
		u := box.user
		p("IMAPAccount far-%s", u)
		p("Host 127.0.0.1")
		p("Port %s", c.port)
		p("User %s", u)
		p("PassCmd \"cat %s\"", pwFile(u))
		p("%s IMAPS", c.tls)
		p("CertificateFile %s", c.certFile)
		p("")
		p("IMAPStore far-%s", u)
		p("Account far-%s", u)
		p("")
		p("MaildirStore near-%s", u)
		p("Inbox %s", filepath.Join(c.mail, u))
		p("")
		p("Channel %s", u)
		p("Far :far-%s:%s", u, c.folder)
		p("Near :near-%s:INBOX", u)
		p("Create Far")
		p("Sync Push")
		p("Expunge None")
		p("Remove None")
		// A folder per channel: the state files of channels with the same
		// box names would otherwise be one, and the second channel would
		// take its far folder for one that was there and is gone.
		p("SyncState %s/", filepath.Join(c.state, u))
		p("")
	}
	return b.String()
}

// mbsyncTLSKeyword is the mbsyncrc keyword for the TLS mode: isync 1.5
// renamed SSLType to TLSType.
func mbsyncTLSKeyword(version string) string {
	var major, minor int
	if _, err := fmt.Sscanf(strings.TrimPrefix(version, "isync "), "%d.%d", &major, &minor); err == nil &&
		(major > 1 || major == 1 && minor >= 5) {
		return "TLSType"
	}
	return "SSLType"
}

// runRefread runs the reference reader on r's boxes, r.at at once, and
// checks its counts.
func (e *env) runRefread(t *testing.T, r *benchRow) sample {
	t.Helper()
	dir := e.scratch(t, "refread-")
	defer os.RemoveAll(dir)
	var list strings.Builder
	for _, b := range r.boxes {
		fmt.Fprintf(&list, "%s,%s\n", b.user, e.pwFile(b.user))
	}
	accounts := filepath.Join(dir, "accounts")
	if err := os.WriteFile(accounts, []byte(list.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	s, outs := e.runProcs(t, dir, [][]string{{e.refread, "-addr", r.addr, "-ca-file", e.srv.CAFile,
		"-accounts", accounts, "-concurrency", fmt.Sprint(r.at)}}, false)
	var accts, msgs int
	var bytes, lines int64
	if _, err := fmt.Sscanf(string(outs[0].stdout), "accounts=%d messages=%d bytes=%d lines=%d", &accts, &msgs, &bytes, &lines); err != nil {
		t.Fatalf("bench: reference reader: output %q: %v", outs[0].stdout, err)
	}
	wantMsgs, wantBytes := r.size()
	if accts != len(r.boxes) || msgs != wantMsgs || bytes-lines != wantBytes {
		t.Fatalf("bench: reference reader: %d accounts, %d messages, %d bytes in canonical form; want %d, %d, %d",
			accts, msgs, bytes-lines, len(r.boxes), wantMsgs, wantBytes)
	}
	return s
}

// checkIMAP checks that folder of every box's IMAP account holds exactly
// the box's messages (the multiset of the sha256 sums of the bodies in
// canonical form), then deletes the folder, so Dovecot's disk does not fill.
// With tuid, the X-TUID header mbsync adds to every message it uploads
// (to find it again) is removed first.
func (e *env) checkIMAP(t *testing.T, tool string, boxes []mailbox, folder string, tuid bool) {
	t.Helper()
	for _, b := range boxes {
		if err := e.checkIMAPBox(b, folder, tuid); err != nil {
			t.Fatalf("bench: %s: IMAP folder %s of %s: %v", tool, folder, b.user, err)
		}
	}
}

func (e *env) checkIMAPBox(b mailbox, folder string, tuid bool) error {
	c, err := imapclient.DialTLS(e.srv.IMAPSAddr, &imapclient.Options{TLSConfig: e.srv.PKI.ClientConfig()})
	if err != nil {
		return err
	}
	defer c.Close()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-done:
		case <-time.After(imapTimeout):
			c.Close()
		}
	}()
	if err := c.Login(b.user, b.password).Wait(); err != nil {
		return fmt.Errorf("login: %w", err)
	}
	sel, err := c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return fmt.Errorf("EXAMINE: %w", err)
	}
	var got []string
	section := &imap.FetchItemBodySection{Peek: true}
	for first := uint32(1); first <= sel.NumMessages; first += imapBatch {
		var set imap.SeqSet
		set.AddRange(first, min(first+imapBatch-1, sel.NumMessages))
		bufs, err := c.Fetch(set, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{section}}).Collect()
		if err != nil {
			return fmt.Errorf("FETCH: %w", err)
		}
		for _, m := range bufs {
			body := exporters.Canonicalize(m.FindBodySection(section))
			if tuid {
				body = stripTUID(body)
			}
			sum := sha256.Sum256(body)
			got = append(got, hex.EncodeToString(sum[:]))
		}
	}
	if err := c.Unselect().Wait(); err != nil {
		return fmt.Errorf("UNSELECT: %w", err)
	}
	if err := c.Delete(folder).Wait(); err != nil {
		return fmt.Errorf("DELETE: %w", err)
	}
	c.Logout().Wait()
	slices.Sort(got)
	if !slices.Equal(got, b.sums) {
		missing, extra := diffSorted(b.sums, got)
		return fmt.Errorf("holds %d messages, want %d: %d missing or changed, %d unexpected or duplicated",
			len(got), len(b.sums), missing, extra)
	}
	return nil
}

// stripTUID removes the first X-TUID header line from the header of msg
// (canonical form), as mbsync adds one.
func stripTUID(msg []byte) []byte {
	end := bytes.Index(msg, []byte("\n\n"))
	if end < 0 {
		end = len(msg)
	}
	var i int
	switch {
	case bytes.HasPrefix(msg, []byte("X-TUID: ")):
		i = 0
	default:
		k := bytes.Index(msg[:end], []byte("\nX-TUID: "))
		if k < 0 {
			return msg
		}
		i = k + 1
	}
	j := bytes.IndexByte(msg[i:], '\n')
	if j < 0 {
		return msg
	}
	return append(msg[:i:i], msg[i+j+1:]...)
}

// buildRefread builds the reference reader (bench/refread) into dir.
func buildRefread(t *testing.T, dir string) string {
	t.Helper()
	gocmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("bench: the go command is needed to build the reference reader: %v", err)
	}
	bin := filepath.Join(dir, "refread")
	ctx, cancel := context.WithTimeout(context.Background(), childTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, gocmd, "build", "-o", bin, "github.com/popmigrate/popmigrate/bench/refread").CombinedOutput()
	if err != nil {
		t.Fatalf("bench: go build bench/refread: %v\n%s", err, out)
	}
	return bin
}

// treeCommit is the short commit of this tree, with "+dirty" if tracked
// files differ from it.
func treeCommit() string {
	commit := strings.TrimSpace(commandOutput("git", "rev-parse", "--short", "HEAD"))
	if strings.Contains(commit, "unknown") {
		return "unknown"
	}
	if strings.TrimSpace(commandOutput("git", "status", "--porcelain", "--untracked-files=no")) != "" {
		commit += "+dirty"
	}
	return commit
}

func writeCompareTable(b *strings.Builder, rows []*benchRow) {
	b.WriteString("| workload | mpop (+ mbsync) s | popmigrate s | --no-verify s | reference s | popmigrate / mpop | " +
		"popmigrate / reference | verify | CPU/MB vs reference | peak RSS MiB | targets (verify on) |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	wall := func(r *benchRow, c contender) string {
		if !r.has(c) {
			return "—"
		}
		return fmt.Sprintf("%.2f", median(r.samples[c], func(s sample) float64 { return s.wall.Seconds() }))
	}
	val := func(r *benchRow, k targetKind) string {
		v, ok := r.value(k)
		switch {
		case !ok:
			return "—"
		case k == tVerify:
			return fmt.Sprintf("%+.0f %%", v*100)
		case k == tRSS:
			return fmt.Sprintf("%.1f", v)
		}
		return fmt.Sprintf("%.2f", v)
	}
	for _, r := range rows {
		var ts []string
		for _, tg := range r.targets {
			ts = append(ts, targetString(r, tg))
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.name,
			wall(r, cBase), wall(r, cPop), wall(r, cPopNoVerify), wall(r, cRef),
			val(r, tBase), val(r, tRef), val(r, tVerify), val(r, tCPU), val(r, tRSS), strings.Join(ts, "; "))
	}
}

// targetString says whether row r met target tg, with the value.
func targetString(r *benchRow, tg target) string {
	v, ok := r.value(tg.kind)
	var what string
	switch tg.kind {
	case tBase:
		what = fmt.Sprintf("≤ %.2g x mpop", tg.limit)
		if r.imap {
			what += " + mbsync"
		}
	case tRef:
		what = fmt.Sprintf("≤ %.3g x reference", tg.limit)
	case tCPU:
		what = fmt.Sprintf("CPU/MB ≤ %.2g x reference", tg.limit)
	case tVerify:
		what = fmt.Sprintf("verify ≤ %.0f %%", tg.limit*100)
	case tRSS:
		what = fmt.Sprintf("RSS ≤ %.0f MiB", tg.limit)
	}
	switch {
	case !ok:
		return what + " not measured"
	case v <= tg.limit:
		return what + " met"
	}
	return what + " **missed**"
}

func writeDetailTable(b *strings.Builder, e *env, rows []*benchRow) {
	b.WriteString("| workload | tool | wall s | MB/s | CPU s | CPU ms/MB | server CPU s | peak RSS MiB | runs (wall s) |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---|\n")
	for _, r := range rows {
		_, size := r.size()
		mb := float64(size) / 1e6
		for _, c := range r.runs {
			ss := r.samples[c]
			wall := median(ss, func(s sample) float64 { return s.wall.Seconds() })
			cpu := median(ss, func(s sample) float64 { return s.cpu.Seconds() })
			var runs []string
			for _, s := range ss {
				runs = append(runs, fmt.Sprintf("%.2f", s.wall.Seconds()))
			}
			fmt.Fprintf(b, "| %s | %s | %.2f | %.1f | %.2f | %.1f | %.2f | %.1f | %s |\n", r.name, e.contenderName(r, c),
				wall, mb/wall, cpu, cpu*1000/mb, median(ss, func(s sample) float64 { return s.srv.Seconds() }),
				median(ss, func(s sample) float64 { return float64(s.rss) / 1024 }), strings.Join(runs, " "))
		}
	}
}
