//go:build linux

package pipeline_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/exporters/all"
	"github.com/popmigrate/popmigrate/exporters/mbox"
	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/pipeline"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
	"github.com/popmigrate/popmigrate/verify"
)

// The soak test is not part of make test: make soak runs it with -soak.
var (
	soak         = flag.Bool("soak", false, "run TestSoak, the long randomised crash and fault test (make soak)")
	soakDuration = flag.Duration("soak-duration", 10*time.Minute, "how long TestSoak starts new rounds")
	soakSeed     = flag.Uint64("soak-seed", 0, "seed of TestSoak's random choices (0: one from the clock)")
)

const (
	// soakChildEnv makes TestSoak the child process of a soak round; its
	// value is the path of the child's config file (soakChildConfig).
	soakChildEnv = "POPMIGRATE_SOAK_CHILD"
	// soakUsers is how many accounts the server holds.
	soakUsers = 40
	// soakMaxRounds bounds the rounds whatever -soak-duration says.
	soakMaxRounds = 10000
	// soakPurgeEvery is how many rounds go between two purges.
	soakPurgeEvery = 5
	// soakBigMax bounds the messages of 5 to 20 MiB over a whole soak.
	soakBigMax = 10
	// soakBatch is the group commit size of the children: small, so that
	// a round has many commits to be killed around.
	soakBatch = 8
	// soakChildTimeout bounds one child process.
	soakChildTimeout = 3 * time.Minute
	// soakDrainTimeout bounds the wait for the server to notice that a
	// child's sessions ended.
	soakDrainTimeout = 10 * time.Second
	// soakHWMMarker starts the line where a child prints its VmHWM (KiB)
	// when it completes and before it kills itself.
	soakHWMMarker = "SOAK-VMHWM-KIB "
)

// TestSoak runs popmigrate against a misbehaving server for
// -soak-duration: a TLS pop3test server with 40 accounts (small and
// medium messages, the tricky samples, a few of 5 to 20 MiB, new ones
// between rounds) and random faults per account and round (connections
// dropped mid-message or after some RETRs, -ERR to some RETRs, [IN-USE]
// logins, delays, no pipelining, misreported sizes). Each round runs the
// pipeline as a child process into a Maildir, an mbox file and an eml tree
// per account, and kills it with SIGKILL in about a third of the rounds
// (from the parent at a random instant, or at a random afterPut, afterSync
// or afterCommit hook). After each round it checks that no destination
// holds a message twice or one the server never held, that the journal
// records only copies that are there with the right sha256 (verify finds
// nothing missing or different), that the mbox parses, and that an
// account the child reported whole holds every message its server ever
// held in every destination; an extra copy is accepted only from a killed
// run, until the account's next complete run. Every soakPurgeEvery rounds
// it purges, and checks that exactly the messages verified in every
// destination left the server, each of them on disk everywhere. A last
// fault-free run must make every account whole, and a last purge must
// empty the server.
//
// With soakChildEnv set, TestSoak is that child instead.
func TestSoak(t *testing.T) {
	if path := os.Getenv(soakChildEnv); path != "" {
		soakChild(t, path)
		return
	}
	if !*soak {
		t.Skip("soak: run with make soak")
	}
	s := newSoak(t)
	deadline := time.Now().Add(*soakDuration)
	for n := 1; n <= soakMaxRounds && time.Now().Before(deadline); n++ {
		s.round(n)
	}
	s.settle()
	s.logStats()
}

// soakChildConfig is what a soak child runs: the accounts, exactly as the
// parent verifies and purges them, and where things go.
type soakChildConfig struct {
	Journal  string        `json:"journal"`
	SpoolDir string        `json:"spool_dir"`
	Report   string        `json:"report"` // where the child writes its pipeline.Report
	Point    string        `json:"point"`  // "afterPut:N", "afterSync:N", "afterCommit:N" or "" (no kill)
	Accounts []soakAccount `json:"accounts"`
}

// soakAccount is an account as the child config carries it: a
// config.Secret marshals as its description only (it never prints its
// value), so the account travels as the flags that make it.
type soakAccount struct {
	Source, Name, PasswordFile, CAFile string
	To                                 []string
}

func toSoakAccounts(as []*config.Account) []soakAccount {
	out := make([]soakAccount, len(as))
	for i, a := range as {
		out[i] = soakAccount{Source: a.SourceURL(), Name: a.Name, PasswordFile: a.Password.File, CAFile: a.CAFile, To: a.To}
	}
	return out
}

func fromSoakAccounts(t *testing.T, as []soakAccount) []*config.Account {
	out := make([]*config.Account, len(as))
	for i, sa := range as {
		a, err := config.FromFlags(sa.Source, sa.Name, config.Defaults{To: sa.To, Password: config.Secret{File: sa.PasswordFile}, CAFile: sa.CAFile})
		if err != nil {
			t.Fatalf("soak child account %s: %v", sa.Name, err)
		}
		out[i] = a
	}
	return out
}

// soakChild is the child of a soak round: one pipeline.Run of every
// account, its report written as JSON to the Report file, then
// crashHelperOK on stdout. It prints crashHelperPlan when the first plan
// is known, and with a Point it kills itself with SIGKILL there, as the
// crash helper does; before it completes or kills itself it prints its
// VmHWM after soakHWMMarker. A Run that returns an error fails the child.
func soakChild(t *testing.T, cfgPath string) {
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var c soakChildConfig
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatalf("soak child config %s: %v", cfgPath, err)
	}
	o := &pipeline.Options{
		Destinations:   all.Registry(),
		Jobs:           8,
		PerHost:        8,
		Window:         16,
		BatchSize:      soakBatch,
		BatchInterval:  200 * time.Millisecond,
		SpoolThreshold: 1 << 20,
		SpoolDir:       c.SpoolDir,
		Attempts:       4,
		Backoff:        20 * time.Millisecond,
		MaxBackoff:     200 * time.Millisecond,
		Timeout:        15 * time.Second,
		Progress:       &planPrinter{},
	}
	if c.Point != "" {
		hook, nstr, _ := strings.Cut(c.Point, ":")
		at, err := strconv.Atoi(nstr)
		if err != nil {
			t.Fatalf("kill point %q: %v", c.Point, err)
		}
		kill := func(n int) {
			if n == at {
				fmt.Printf("%s%d\n", soakHWMMarker, vmHWM("self"))
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
				time.Sleep(10 * time.Second) // never reached: SIGKILL cannot be caught
			}
		}
		switch hook {
		case "afterPut":
			pipeline.SetTestHooks(o, kill, nil, nil)
		case "afterSync":
			pipeline.SetTestHooks(o, nil, kill, nil)
		case "afterCommit":
			pipeline.SetTestHooks(o, nil, nil, kill)
		default:
			t.Fatalf("kill point %q: unknown hook", c.Point)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), soakChildTimeout-30*time.Second)
	defer cancel()
	j, err := journal.Open(ctx, c.Journal)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := pipeline.Run(ctx, j, fromSoakAccounts(t, c.Accounts), o)
	if cerr := j.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close the journal: %w", cerr)
	}
	if err != nil {
		t.Fatalf("soak child: run: %v", err)
	}
	out, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.Report, out, 0o600); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("%s%d\n%s\n", soakHWMMarker, vmHWM("self"), crashHelperOK)
}

// soakMsg is one message a soak mailbox has held.
type soakMsg struct {
	sum  string // sha256 of the canonical form
	size int64  // octets as served: what LIST reports without SizeSkew
}

// soakBox is what the test knows of one account.
type soakBox struct {
	user  string
	dests fanDests
	ids   []string // destination ids: Maildir, mbox, eml
	// msgs holds every message the server ever held for the account, by
	// UIDL; onServer the UIDLs it holds now; deleted those purges removed.
	msgs     map[string]*soakMsg
	onServer map[string]bool
	deleted  map[string]bool
	// inUse is the LoginErrCount budget: at most this many [IN-USE]
	// answers over the server's life (pop3test counts them so).
	inUse int
	// dirty is set when a killed run may have left copies the journal
	// does not record (Maildir and eml files, an mbox tail); the next
	// run that ends with the account whole records or cuts them.
	dirty bool
	// benign is set when this round's faults cannot stop the account
	// from ending whole.
	benign bool
	// disk holds, per destination id, the sha256 counts of the copies on
	// disk at the last check; nil for a destination not created yet.
	disk map[string]map[string]int
}

// want returns how many times each sha256 is among the messages the server
// ever held: what every destination holds once the account is whole.
func (b *soakBox) want() map[string]int {
	out := make(map[string]int, len(b.msgs))
	for _, m := range b.msgs {
		out[m.sum]++
	}
	return out
}

// soakStats are the numbers printed at the end.
type soakStats struct {
	rounds, completed, parentKills, hookKills, purges int
	added, deleted, stored, notWhole                  int
	addedBytes, storedBytes                           int64
	maxRSS                                            int64 // KiB
	childTime                                         time.Duration
}

// soakRun is how one soak child ended.
type soakRun struct {
	childResult
	rep     *pipeline.Report // the child's report when it completed, else nil
	maxRSS  int64            // the child's peak resident set (VmHWM) in KiB; 0 if unknown
	elapsed time.Duration
}

// soakTest is one soak: the server, the journal, the accounts and the
// model of what each server ever held.
type soakTest struct {
	t        *testing.T
	e        *env
	seed     uint64
	rng      *rand.Rand
	start    time.Time
	boxes    []*soakBox
	byUser   map[string]*soakBox
	accounts []*config.Account
	serial   int
	bigs     int
	// lastElapsed is how long the last child that was not killed ran:
	// the range of the parent's random kill instants.
	lastElapsed time.Duration
	stats       soakStats
}

// newSoak starts the server with soakUsers accounts and their first
// messages.
func newSoak(t *testing.T) *soakTest {
	seed := *soakSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("soak: seed %d (replay with -soak-seed %d), duration %v", seed, seed, *soakDuration)
	boxes := make([]pop3test.Mailbox, soakUsers)
	for i := range boxes {
		boxes[i] = mailbox(fmt.Sprintf("soak%02d", i), nil)
	}
	s := &soakTest{
		t:      t,
		e:      newEnv(t, boxes, nil),
		seed:   seed,
		rng:    rand.New(rand.NewPCG(seed, 0x50a4)),
		start:  time.Now(),
		byUser: map[string]*soakBox{},
	}
	if err := os.MkdirAll(filepath.Join(s.e.dir, "spool"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(s.e.dir, "scratch"), 0o700); err != nil {
		t.Fatal(err)
	}
	for i, mb := range boxes {
		a, d := s.e.fanAccount(mb.User)
		b := &soakBox{user: a.Name, dests: d, ids: d.ids(t),
			msgs: map[string]*soakMsg{}, onServer: map[string]bool{}, deleted: map[string]bool{}}
		s.boxes = append(s.boxes, b)
		s.byUser[b.user] = b
		s.accounts = append(s.accounts, a)
		for range 3 + s.rng.IntN(16) {
			s.add(b, s.newMessage(b, false))
		}
		if i%8 == 0 {
			for _, m := range trickyMsgs(t, b.user+".t-") {
				s.add(b, m)
			}
		}
	}
	for range 4 {
		b := s.boxes[s.rng.IntN(len(s.boxes))]
		s.add(b, s.newMessage(b, true))
	}
	return s
}

// add puts m in b's mailbox on the server and in the model.
func (s *soakTest) add(b *soakBox, m srcMsg) {
	s.e.srv.AddMessage(b.user, pop3test.Message{UID: m.uid, Data: m.wire, Raw: true})
	b.msgs[m.uid] = &soakMsg{sum: m.sum(), size: int64(len(m.wire))}
	b.onServer[m.uid] = true
	s.stats.added++
	s.stats.addedBytes += int64(len(m.wire))
}

// newMessage returns a new message for b with a UIDL never used before
// (one in eight shaped like a path, which no destination may follow): a
// text of up to 1 MiB with dot lines, From lines and some 8-bit bytes, or,
// when big, one of 5 to 20 MiB.
func (s *soakTest) newMessage(b *soakBox, big bool) srcMsg {
	s.serial++
	uid := fmt.Sprintf("%s.%d", b.user, s.serial)
	if s.rng.IntN(8) == 0 {
		uid = fmt.Sprintf("../%s/%d:*", b.user, s.serial)
	}
	date := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(s.rng.Int64N(5 * 365 * 24 * int64(time.Hour))))
	head := fmt.Sprintf("Date: %s\nFrom: soak@example.org\nTo: %s@example.org\nMessage-ID: <%d.%s@soak.example.org>\n",
		date.Format(time.RFC1123Z), b.user, s.serial, b.user)
	if big {
		s.bigs++
		return newMsg(uid, append([]byte(head), bigMessage(5<<20+s.rng.IntN(15<<20))...))
	}
	var size int
	switch r := s.rng.IntN(20); {
	case r < 13:
		size = 100 + s.rng.IntN(4<<10)
	case r < 19:
		size = 4<<10 + s.rng.IntN(60<<10)
	default:
		size = 64<<10 + s.rng.IntN(1<<20)
	}
	body := append([]byte(head), "Subject: soak message "+uid+"\n\n"...)
	for len(body) < size {
		switch s.rng.IntN(16) {
		case 0:
			body = append(body, ".\n"...)
		case 1:
			body = append(body, "..two dots\n"...)
		case 2:
			body = append(body, "From the soak test: a line mboxrd must quote\n"...)
		case 3:
			body = append(body, ">From a line quoted already\n"...)
		case 4:
			body = append(body, '\n')
		default:
			for range 1 + s.rng.IntN(120) {
				c := byte(' ' + s.rng.IntN(95))
				if s.rng.IntN(200) == 0 {
					c = 0x80 + byte(s.rng.IntN(0x80))
				}
				body = append(body, c)
			}
			body = append(body, '\n')
		}
	}
	return newMsg(uid, body)
}

// addMessages adds up to 11 messages to random accounts, and now and then
// a big one, and returns how many.
func (s *soakTest) addMessages() int {
	n := s.rng.IntN(12)
	for range n {
		b := s.boxes[s.rng.IntN(len(s.boxes))]
		s.add(b, s.newMessage(b, false))
	}
	if s.bigs < soakBigMax && s.rng.IntN(8) == 0 {
		b := s.boxes[s.rng.IntN(len(s.boxes))]
		s.add(b, s.newMessage(b, true))
		n++
	}
	return n
}

// faults picks b's faults for one round and sets b.benign.
func (s *soakTest) faults(b *soakBox) pop3test.Faults {
	var f pop3test.Faults
	r := s.rng
	b.benign = true
	if r.IntN(5) == 0 {
		f.DropAfterBytes = int64(4<<10 + r.IntN(3<<20))
		b.benign = false
	}
	if r.IntN(7) == 0 {
		f.DropAfterRetrs = 1 + r.IntN(8)
		b.benign = false
	}
	if r.IntN(7) == 0 && len(b.onServer) > 0 {
		f.RetrErr = map[int]string{}
		for range 1 + r.IntN(2) {
			f.RetrErr[1+r.IntN(len(b.onServer))] = "[SYS/TEMP] disk error"
		}
		b.benign = false
	}
	switch r.IntN(30) {
	case 0: // locked for the whole round
		f.LoginErr = "[IN-USE] mailbox locked by another session"
		b.benign = false
	case 1, 2, 3, 4: // locked for a few attempts
		b.inUse += 1 + r.IntN(3)
		f.LoginErr, f.LoginErrCount = "[IN-USE] mailbox locked by another session", b.inUse
		b.benign = false
	}
	if r.IntN(3) == 0 {
		f.Delay = time.Duration(1+r.IntN(3)) * time.Millisecond
	}
	if r.IntN(4) == 0 {
		f.NoPipelining = true
	}
	if r.IntN(10) == 0 {
		f.SizeSkew = int64(1 + r.IntN(64))
	}
	return f
}

// kill picks how the next child ends: in about a third of the rounds it
// is killed with SIGKILL, half of those by the parent at a random instant
// (counted from its start or from its first plan), half by itself at a
// random afterPut, afterSync or afterCommit hook within the work left.
func (s *soakTest) kill() (parentKill, string) {
	r := s.rng
	if r.IntN(3) != 0 {
		return parentKill{}, ""
	}
	var missing, batches int
	ctx := context.Background()
	for _, b := range s.boxes {
		dels, err := s.e.j.Deliveries(ctx, b.user)
		if err != nil {
			s.t.Fatal(err)
		}
		n := 0
		for uid := range b.onServer {
			if len(dels[uid]) < len(b.ids) {
				n++
			}
		}
		missing += n
		batches += (n + soakBatch - 1) / soakBatch
	}
	if r.IntN(2) == 0 || missing == 0 {
		est := max(s.lastElapsed, 200*time.Millisecond)
		return parentKill{after: time.Millisecond + time.Duration(r.Int64N(int64(est))), fromPlan: r.IntN(2) == 0}, ""
	}
	switch r.IntN(3) {
	case 0:
		return parentKill{}, fmt.Sprintf("afterPut:%d", 1+r.IntN(3*missing))
	case 1:
		return parentKill{}, fmt.Sprintf("afterSync:%d", 1+r.IntN(batches))
	}
	return parentKill{}, fmt.Sprintf("afterCommit:%d", 1+r.IntN(batches))
}

// round runs soak round n: new messages, new faults, a child that may be
// killed, the checks, and every soakPurgeEvery rounds a purge.
func (s *soakTest) round(n int) {
	added := 0
	if n > 1 {
		added = s.addMessages()
	}
	for _, b := range s.boxes {
		s.e.srv.SetFaults(b.user, s.faults(b))
	}
	k, point := s.kill()
	run := s.runChild(point, k)
	label := fmt.Sprintf("round %d", n)
	s.check(label, run, false)
	s.stats.rounds++
	if n%soakPurgeEvery == 0 {
		s.purge(label, 0.15, false)
	}
	end := "completed"
	switch {
	case run.killed && point != "":
		end = "killed at " + point
	case run.killed && k.fromPlan:
		end = fmt.Sprintf("killed by the parent %v after its first plan", k.after.Round(time.Millisecond))
	case run.killed:
		end = fmt.Sprintf("killed by the parent %v after its start", k.after.Round(time.Millisecond))
	case point != "":
		end = "completed before " + point
	}
	whole := 0
	if run.rep != nil {
		whole = len(s.boxes) - run.rep.Totals.AccountsFailed
	}
	s.t.Logf("round %d: %d messages added; child %s in %v (%d/%d accounts whole, peak RSS %.1f MiB)",
		n, added, end, run.elapsed.Round(time.Millisecond), whole, len(s.boxes), float64(run.maxRSS)/1024)
}

// settle ends the soak: a run without faults or kills must make every
// account whole (checked against the server too), and a purge must then
// delete every message from the server.
func (s *soakTest) settle() {
	for _, b := range s.boxes {
		s.e.srv.SetFaults(b.user, pop3test.Faults{})
		b.benign = true
	}
	run := s.runChild("", parentKill{})
	if !run.ok {
		s.t.Fatalf("final run: the child did not complete: %s", run.output)
	}
	s.check("final run", run, true)
	// The final purge keeps exactly the suspect messages (stored under a
	// LIST size skewed past what line ends explain); one that accepts
	// them deletes the rest.
	s.purge("final purge", 0, false)
	for _, b := range s.boxes {
		suspect := map[string]bool{}
		rows, err := s.e.j.Messages(context.Background(), b.user)
		if err != nil {
			s.t.Fatal(err)
		}
		for _, r := range rows {
			if r.Suspect != "" && b.onServer[r.UIDL] {
				suspect[r.UIDL] = true
			}
		}
		if !maps.Equal(b.onServer, suspect) {
			s.t.Errorf("after the final purge the server holds %v of %s, want only the suspect %v", sortedKeys(b.onServer), b.user, sortedKeys(suspect))
		}
	}
	s.purge("final purge of suspect messages", 0, true)
	for _, b := range s.boxes {
		if len(b.onServer) > 0 {
			s.t.Errorf("after the final purge the server still holds %d messages of %s: %v", len(b.onServer), b.user, sortedKeys(b.onServer))
		}
	}
}

// runChild runs one soak child over every account and waits for it and
// for the server to see its sessions end. The parent kills it as k says;
// point makes it kill itself at a hook.
func (s *soakTest) runChild(point string, k parentKill) soakRun {
	t := s.t
	t.Helper()
	dir := s.e.dir
	c := soakChildConfig{
		Journal:  s.e.jpath,
		SpoolDir: filepath.Join(dir, "spool"),
		Report:   filepath.Join(dir, "report.json"),
		Point:    point,
		Accounts: toSoakAccounts(s.accounts),
	}
	cfgPath := filepath.Join(dir, "child.json")
	raw, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(c.Report); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), soakChildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestSoak$")
	gorace := strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")
	cmd.Env = append(os.Environ(), soakChildEnv+"="+cfgPath, "GORACE="+gorace)
	out := &watchWriter{marker: crashHelperPlan}
	cmd.Stdout, cmd.Stderr = out, out
	var (
		timerMu sync.Mutex
		timer   *time.Timer
		// killHWM is the child's VmHWM read just before the parent
		// killed it. (ru_maxrss is no use here: Linux counts in it the
		// parent's resident set at the fork.)
		killHWM atomic.Int64
	)
	arm := func() {
		timerMu.Lock()
		defer timerMu.Unlock()
		timer = time.AfterFunc(k.after, func() {
			killHWM.Store(vmHWM(strconv.Itoa(cmd.Process.Pid)))
			cmd.Process.Kill()
		})
	}
	if k.after > 0 && k.fromPlan {
		out.onMarker = arm
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if k.after > 0 && !k.fromPlan {
		arm()
	}
	err = cmd.Wait()
	r := soakRun{elapsed: time.Since(start)}
	timerMu.Lock()
	if timer != nil {
		timer.Stop()
	}
	timerMu.Unlock()
	r.output = out.String()
	if ctx.Err() != nil {
		t.Fatalf("the soak child ran over %v: %s", soakChildTimeout, r.output)
	}
	r.maxRSS = killHWM.Load()
	for _, line := range strings.Split(r.output, "\n") {
		if v, ok := strings.CutPrefix(line, soakHWMMarker); ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				r.maxRSS = max(r.maxRSS, n)
			}
		}
	}
	var xerr *exec.ExitError
	switch {
	case err == nil:
		r.ok = strings.Contains(r.output, crashHelperOK)
	case errors.As(err, &xerr):
		if ws, ok := xerr.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			r.killed = true
		}
	}
	if r.ok {
		raw, err := os.ReadFile(c.Report)
		if err != nil {
			t.Fatalf("the soak child completed without its report: %v", err)
		}
		r.rep = &pipeline.Report{}
		if err := json.Unmarshal(raw, r.rep); err != nil {
			t.Fatalf("the soak child's report: %v", err)
		}
	}

	st := &s.stats
	st.childTime += r.elapsed
	st.maxRSS = max(st.maxRSS, r.maxRSS)
	switch {
	case r.killed && point != "":
		st.hookKills++
	case r.killed:
		st.parentKills++
	case r.ok:
		st.completed++
		st.stored += r.rep.Totals.Stored
		st.storedBytes += r.rep.Totals.StoredBytes
		s.lastElapsed = r.elapsed
	}
	s.drain()
	return r
}

// drain waits until the server has no session open: a killed child's
// sessions end when the server notices the closed connections, and until
// then their mailboxes are locked.
func (s *soakTest) drain() {
	deadline := time.Now().Add(soakDrainTimeout)
	for s.e.srv.Stats().Concurrent > 0 {
		if time.Now().After(deadline) {
			s.t.Fatalf("the server still has %d sessions open %v after the child ended", s.e.srv.Stats().Concurrent, soakDrainTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// check verifies every account after a child ended (see TestSoak), and
// ends the test at the first round with a violation. againstSource also
// compares the journal with the server's listing.
func (s *soakTest) check(label string, run soakRun, againstSource bool) {
	t := s.t
	t.Helper()
	whole := map[string]bool{}
	switch {
	case run.killed:
		for _, b := range s.boxes {
			b.dirty = true
		}
	case run.ok:
		if len(run.rep.Accounts) != len(s.boxes) {
			t.Fatalf("%s: the child reported %d accounts, want %d", label, len(run.rep.Accounts), len(s.boxes))
		}
		for _, a := range run.rep.Accounts {
			b := s.byUser[a.Account]
			if b == nil {
				t.Fatalf("%s: the child reported an unknown account %q", label, a.Account)
			}
			whole[b.user] = a.Whole
			if a.Whole {
				b.dirty = false
				continue
			}
			s.stats.notWhole++
			if b.benign {
				t.Errorf("%s: account %s had no fault that could stop it, but it is not whole: error %q, failures %v",
					label, b.user, a.Error, a.Failures)
			}
		}
	default:
		t.Fatalf("%s: the child neither completed nor was killed: %s", label, run.output)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := pipeline.Verify(ctx, s.e.j, s.accounts, &pipeline.VerifyOptions{
		Options:       pipeline.Options{Jobs: 8, PerHost: 8, Timeout: 15 * time.Second, Destinations: all.Registry()},
		AgainstSource: againstSource,
	})
	if err != nil {
		t.Fatalf("%s: verify: %v", label, err)
	}
	if len(res) != len(s.boxes) {
		t.Fatalf("%s: verify returned %d results, want %d", label, len(res), len(s.boxes))
	}
	for _, r := range res {
		b := s.byUser[r.Account]
		if b == nil {
			t.Fatalf("%s: verify returned a result for an unknown account %q", label, r.Account)
		}
		s.checkBox(label+": account "+b.user, b, whole[b.user], r)
	}
	if t.Failed() {
		t.Fatalf("%s: invariants violated (seed %d, replay with -soak-seed %d)", label, s.seed, s.seed)
	}
}

// checkBox checks one account: the journal against the model, the copies
// on disk against the model, and the verify result res.
func (s *soakTest) checkBox(where string, b *soakBox, whole bool, res *verify.Result) {
	t := s.t
	t.Helper()
	ctx := context.Background()
	rows, err := s.e.j.Messages(ctx, b.user)
	if err != nil {
		t.Fatal(err)
	}
	dels, err := s.e.j.Deliveries(ctx, b.user)
	if err != nil {
		t.Fatal(err)
	}

	// The journal knows only messages the server held, with their sha256,
	// and marks deleted exactly those purges deleted.
	for _, r := range rows {
		m := b.msgs[r.UIDL]
		switch {
		case m == nil:
			t.Errorf("%s: the journal has message %q, which the server never held", where, r.UIDL)
		case r.SHA256 != "" && r.SHA256 != m.sum:
			t.Errorf("%s: the journal records message %q with sha256 %s; its canonical sha256 is %s", where, r.UIDL, r.SHA256, m.sum)
		case (r.State == journal.StateDeleted) != b.deleted[r.UIDL]:
			t.Errorf("%s: message %q is %q in the journal; deleted by a purge: %v", where, r.UIDL, r.State, b.deleted[r.UIDL])
		}
	}
	copies := map[string]int{}
	for uid, byDest := range dels {
		m := b.msgs[uid]
		for id, d := range byDest {
			copies[id]++
			if !slices.Contains(b.ids, id) {
				t.Errorf("%s: the journal records message %q in %s, which is not a destination of the account", where, uid, id)
			}
			if m != nil && d.SHA256 != m.sum {
				t.Errorf("%s: the journal records the copy of %q in %s with sha256 %s; the message's is %s", where, uid, id, d.SHA256, m.sum)
			}
		}
	}
	if whole {
		for _, uid := range sortedKeys(b.onServer) {
			if n := len(dels[uid]); n != len(b.ids) {
				t.Errorf("%s: the child reported the account whole, but message %q has %d of %d deliveries", where, uid, n, len(b.ids))
			}
		}
	}

	// On disk: no message twice, none the server never held; all of
	// them once the account is whole.
	want := b.want()
	b.disk = map[string]map[string]int{}
	for i, id := range b.ids {
		got := s.diskCopies(where, b, i)
		if got == nil && copies[id] > 0 {
			t.Errorf("%s: %s does not exist, but the journal records %d copies there", where, id, copies[id])
		}
		b.disk[id] = got
		for _, sum := range slices.Sorted(maps.Keys(got)) {
			if got[sum] > want[sum] {
				t.Errorf("%s: %s holds %d copies of the message with sha256 %s, which the server held %d times", where, id, got[sum], sum, want[sum])
			}
		}
		if whole {
			checkCounts(t, where+": "+id, got, want)
		}
	}

	// verify read every recorded copy back and found it; the only
	// findings allowed are a killed run's copies (extra), a destination
	// the account's runs have not created yet, and the note on messages
	// stored under a LIST size skewed past what line ends explain
	// (suspect: purge must keep them, see deletable).
	if res.Error != "" {
		t.Errorf("%s: verify could not complete: %s", where, res.Error)
	}
	for _, f := range res.Findings {
		switch {
		case f.Kind == verify.Extra && b.dirty:
		case f.Kind == verify.Unreadable && b.disk[f.DestID] == nil && copies[f.DestID] == 0:
		// A destination a killed child was making (an mbox without its
		// index yet), which holds nothing and has no recorded copy.
		case f.Kind == verify.Unreadable && b.dirty && len(b.disk[f.DestID]) == 0 && copies[f.DestID] == 0:
		case f.Kind == verify.Suspect:
		default:
			t.Errorf("%s: verify: %s (%s)", where, f.String(), f.Detail)
		}
	}
	total := 0
	for _, n := range copies {
		total += n
	}
	if res.Counts[verify.Match] != total {
		t.Errorf("%s: verify matched %d copies; the journal records %d", where, res.Counts[verify.Match], total)
	}
}

// maildirMade reports whether the Maildir at path has its new, cur and
// tmp folders.
func maildirMade(path string) bool {
	for _, sub := range []string{"new", "cur", "tmp"} {
		if _, err := os.Stat(filepath.Join(path, sub)); err != nil {
			return false
		}
	}
	return true
}

// diskCopies returns the sha256 counts of the messages destination i of b
// holds (0 Maildir, 1 mbox, 2 eml), or nil when it does not exist yet. The
// mbox must parse; after a killed run only its committed part (the length
// the journal records) counts, as the next run cuts the rest, and
// otherwise the file must end there.
func (s *soakTest) diskCopies(where string, b *soakBox, i int) map[string]int {
	t := s.t
	t.Helper()
	var path string
	switch i {
	case 0:
		path = b.dests.maildir
	case 1:
		path = b.dests.mbox
	default:
		path = b.dests.emlDir()
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	switch i {
	case 0:
		if b.dirty && !maildirMade(path) {
			// A child killed while it made the Maildir: it holds
			// nothing yet, and the next run finishes it.
			return got
		}
		files, _ := maildirFiles(t, path)
		for _, f := range files {
			got[sha256Hex(f.data)]++
		}
	case 1:
		state, err := s.e.j.DestState(context.Background(), b.user, b.ids[1])
		if err != nil {
			t.Fatal(err)
		}
		var committed int64
		if state != "" {
			if committed, err = strconv.ParseInt(state, 10, 64); err != nil {
				t.Fatalf("%s: mbox state %q: %v", where, state, err)
			}
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case committed > int64(len(raw)):
			t.Errorf("%s: the journal's committed end of %s is %d, past its %d bytes", where, path, committed, len(raw))
		case b.dirty:
			got = sumCounts(s.mboxCommitted(b, raw[:committed]))
		case committed != int64(len(raw)):
			t.Errorf("%s: %s is %d bytes, the journal's committed end %d, with no killed run since the last complete one", where, path, len(raw), committed)
		default:
			got = sumCounts(mboxMessages(t, path))
		}
	default:
		files, _ := emlFiles(t, path)
		for _, f := range files {
			got[sha256Hex(f.data)]++
		}
	}
	return got
}

// mboxCommitted returns the messages of part, the committed part of b's
// mbox, read as mboxMessages reads a file (with the index, which tells the
// LF Put added), from a copy of part and of the index in the scratch
// folder.
func (s *soakTest) mboxCommitted(b *soakBox, part []byte) [][]byte {
	t := s.t
	t.Helper()
	cp := filepath.Join(s.e.dir, "scratch", b.user+".committed.mbox")
	if err := os.WriteFile(cp, part, 0o600); err != nil {
		t.Fatal(err)
	}
	idx, err := os.ReadFile(b.dests.mbox + mbox.IndexSuffix)
	switch {
	case err == nil:
		err = os.WriteFile(cp+mbox.IndexSuffix, idx, 0o600)
	case errors.Is(err, fs.ErrNotExist):
		err = os.Remove(cp + mbox.IndexSuffix)
		if errors.Is(err, fs.ErrNotExist) {
			err = nil
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return mboxMessages(t, cp)
}

// deletable returns the UIDLs of b that a purge may delete now: on the
// server, keyed by their real UIDL, listed at the size the journal
// recorded, verified in the journal with a verified copy in every
// destination, and not suspect (a size skew past what line ends explain)
// unless deleteSuspect.
func (s *soakTest) deletable(b *soakBox, deleteSuspect bool) map[string]bool {
	ctx := context.Background()
	rows, err := s.e.j.Messages(ctx, b.user)
	if err != nil {
		s.t.Fatal(err)
	}
	dels, err := s.e.j.Deliveries(ctx, b.user)
	if err != nil {
		s.t.Fatal(err)
	}
	out := map[string]bool{}
	for _, r := range rows {
		m := b.msgs[r.UIDL]
		if m == nil || !b.onServer[r.UIDL] || r.State != journal.StateVerified || r.Kind != journal.KindUIDL || r.ListedSize != m.size ||
			(r.Suspect != "" && !deleteSuspect) {
			continue
		}
		ok := true
		for _, id := range b.ids {
			if d, has := dels[r.UIDL][id]; !has || d.VerifiedAt.IsZero() {
				ok = false
			}
		}
		if ok {
			out[r.UIDL] = true
		}
	}
	return out
}

// purge runs pipeline.Purge over every account, without faults except
// DropBeforeQuitOK for a share drop of them, and checks that exactly the
// deletable messages left the server (none of an account whose QUIT was
// dropped), that each of them is on disk in every destination, and that
// the journal marks exactly those deleted. It must follow a check, which
// verified and recorded the copies on disk.
func (s *soakTest) purge(label string, drop float64, deleteSuspect bool) {
	t := s.t
	t.Helper()
	dropped := map[string]bool{}
	want := map[string]map[string]bool{}
	for _, b := range s.boxes {
		var f pop3test.Faults
		if s.rng.Float64() < drop {
			f.DropBeforeQuitOK = true
			dropped[b.user] = true
		}
		s.e.srv.SetFaults(b.user, f)
		want[b.user] = s.deletable(b, deleteSuspect)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o := testOptions()
	o.Jobs, o.PerHost = 8, 8
	reps, err := pipeline.Purge(ctx, s.e.j, s.accounts, o, &pipeline.PurgeOptions{DeleteSuspect: deleteSuspect})
	if err != nil {
		t.Fatalf("%s: purge: %v", label, err)
	}
	if len(reps) != len(s.boxes) {
		t.Fatalf("%s: purge returned %d reports, want %d", label, len(reps), len(s.boxes))
	}
	s.stats.purges++
	for _, rep := range reps {
		b := s.byUser[rep.Account]
		if b == nil {
			t.Fatalf("%s: purge reported an unknown account %q", label, rep.Account)
		}
		where := label + ": purge of " + b.user
		exp := want[b.user]
		now := map[string]bool{}
		for _, m := range s.e.srv.Mailbox(b.user) {
			now[m.UID] = true
			if !b.onServer[m.UID] {
				t.Errorf("%s: the server holds %q, which it did not hold before", where, m.UID)
			}
		}
		gone := map[string]bool{}
		for uid := range b.onServer {
			if !now[uid] {
				gone[uid] = true
			}
		}
		planned := map[string]bool{}
		for _, it := range rep.Planned {
			planned[it.UIDL] = true
		}
		if dropped[b.user] && len(exp) > 0 {
			if rep.Error == "" || rep.Deleted != 0 || len(gone) != 0 {
				t.Errorf("%s: the server dropped the QUIT, so nothing may be deleted: error %q, deleted %d, gone from the server %v",
					where, rep.Error, rep.Deleted, sortedKeys(gone))
			}
		} else {
			if rep.Error != "" {
				t.Errorf("%s: %s", where, rep.Error)
			}
			if rep.Deleted != len(exp) || !maps.Equal(gone, exp) || !maps.Equal(planned, exp) {
				t.Errorf("%s: deleted %d, planned %v, gone from the server %v; want the verified %v (skipped %v)",
					where, rep.Deleted, sortedKeys(planned), sortedKeys(gone), sortedKeys(exp), rep.Skipped)
			}
		}
		for _, uid := range sortedKeys(gone) {
			for _, id := range b.ids {
				if b.disk[id][b.msgs[uid].sum] == 0 {
					t.Errorf("%s: message %q left the server, but %s does not hold it", where, uid, id)
				}
			}
			b.deleted[uid] = true
			delete(b.onServer, uid)
		}
		s.stats.deleted += len(gone)
		for uid, st := range journalStates(t, s.e.j, b.user) {
			if (st == journal.StateDeleted) != b.deleted[uid] {
				t.Errorf("%s: message %q is %q in the journal; deleted by a purge: %v", where, uid, st, b.deleted[uid])
			}
		}
	}
	if t.Failed() {
		t.Fatalf("%s: purge invariants violated (seed %d, replay with -soak-seed %d)", label, s.seed, s.seed)
	}
}

// logStats prints what the soak did.
func (s *soakTest) logStats() {
	st, srv := s.stats, s.e.srv.Stats()
	const mib = 1 << 20
	s.t.Logf("soak: %d rounds + the final run in %v (seed %d)", st.rounds, time.Since(s.start).Round(time.Second), s.seed)
	s.t.Logf("soak: children: %d completed, %d killed by the parent, %d killed at a hook; %v in children; peak RSS of a child %.1f MiB",
		st.completed, st.parentKills, st.hookKills, st.childTime.Round(time.Millisecond), float64(st.maxRSS)/1024)
	s.t.Logf("soak: messages: %d added (%.1f MiB, %d of 5-20 MiB); %d stored by completed runs (%.1f MiB); %d account runs not whole",
		st.added, float64(st.addedBytes)/mib, s.bigs, st.stored, float64(st.storedBytes)/mib, st.notWhole)
	s.t.Logf("soak: server: %d sessions, %d logins, %d refused logins, %d RETR; %d purges deleted %d messages",
		srv.Sessions, srv.Logins, srv.FailedLogins, srv.Retrs, st.purges, st.deleted)
}

// vmHWM returns the peak resident set size (VmHWM, KiB) of process pid
// ("self" for this one), or 0 when /proc does not tell.
func vmHWM(pid string) int64 {
	raw, err := os.ReadFile(filepath.Join("/proc", pid, "status"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

// sortedKeys returns the keys of m in order.
func sortedKeys(m map[string]bool) []string {
	return slices.Sorted(maps.Keys(m))
}
