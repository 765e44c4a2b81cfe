//go:build unix

package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/exporters/all"
	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/pipeline"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

// The crash helper is this test binary started again by TestCrash with
// crashHelperEnv set: TestMain then runs one pipeline.Run as the child
// process and exits, without running any test.
const (
	crashHelperEnv = "POPMIGRATE_CRASH_HELPER"
	crashConfigEnv = "POPMIGRATE_CRASH_CONFIG" // port|ca|password file|journal|maildir|user|point
	crashHelperOK  = "CRASH-HELPER-OK"
	// crashHelperPlan is printed when the child's plan is known.
	crashHelperPlan = "CRASH-HELPER-PLAN"
	// crashBatch is small so that the crash points fall in many commits.
	crashBatch = 3
)

func TestMain(m *testing.M) {
	if os.Getenv(crashHelperEnv) == "1" {
		os.Exit(crashHelper())
	}
	os.Exit(m.Run())
}

// crashConfig is what the child needs to run one account.
type crashConfig struct {
	port                           int
	caFile, pwFile, jpath, maildir string
	user                           string
	// point is "afterPut:N", "afterSync:N", "afterCommit:N" or "" (run
	// to the end).
	point string
	// extraTo are destination specs written after the Maildir (none:
	// the Maildir only).
	extraTo []string
}

// crashToSep separates the specs of crashConfig.extraTo in its encoding.
const crashToSep = "\x1f"

func (c crashConfig) encode() string {
	f := []string{strconv.Itoa(c.port), c.caFile, c.pwFile, c.jpath, c.maildir, c.user, c.point}
	if len(c.extraTo) > 0 {
		f = append(f, strings.Join(c.extraTo, crashToSep))
	}
	return strings.Join(f, "|")
}

func decodeCrashConfig(s string) (crashConfig, error) {
	f := strings.Split(s, "|")
	if len(f) != 7 && len(f) != 8 {
		return crashConfig{}, fmt.Errorf("crash config %q: %d fields, want 7 or 8", s, len(f))
	}
	port, err := strconv.Atoi(f[0])
	if err != nil {
		return crashConfig{}, fmt.Errorf("crash config: port: %w", err)
	}
	c := crashConfig{port: port, caFile: f[1], pwFile: f[2], jpath: f[3], maildir: f[4], user: f[5], point: f[6]}
	if len(f) == 8 {
		c.extraTo = strings.Split(f[7], crashToSep)
	}
	return c, nil
}

// crashHelper is the child: it migrates one account and kills itself with
// SIGKILL at the configured point. It returns 0 only when the run
// completed and the account is whole.
func crashHelper() int {
	c, err := decodeCrashConfig(os.Getenv(crashConfigEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	o := &pipeline.Options{
		Destinations:  all.Registry(),
		Window:        8,
		BatchSize:     crashBatch,
		BatchInterval: time.Second,
		Attempts:      3,
		Backoff:       10 * time.Millisecond,
		MaxBackoff:    20 * time.Millisecond,
		Timeout:       10 * time.Second,
	}
	o.Progress = &planPrinter{}
	if c.point != "" {
		name, nstr, _ := strings.Cut(c.point, ":")
		at, err := strconv.Atoi(nstr)
		if err != nil {
			fmt.Fprintf(os.Stderr, "crash point %q: %v\n", c.point, err)
			return 2
		}
		kill := func(n int) {
			if n != at {
				return
			}
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			time.Sleep(10 * time.Second) // never reached: SIGKILL cannot be caught
			os.Exit(4)
		}
		switch name {
		case "afterPut":
			pipeline.SetTestHooks(o, kill, nil, nil)
		case "afterSync":
			pipeline.SetTestHooks(o, nil, kill, nil)
		case "afterCommit":
			pipeline.SetTestHooks(o, nil, nil, kill)
		default:
			fmt.Fprintf(os.Stderr, "crash point %q: unknown hook\n", c.point)
			return 2
		}
	}
	a, err := config.FromFlags(fmt.Sprintf("pop3s://%s@127.0.0.1:%d", c.user, c.port), c.user, config.Defaults{
		To:       append([]string{"maildir:" + c.maildir}, c.extraTo...),
		Password: config.Secret{File: c.pwFile},
		CAFile:   c.caFile,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	j, err := journal.Open(ctx, c.jpath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	defer j.Close()
	rep, err := pipeline.Run(ctx, j, []*config.Account{a}, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "run:", err)
		return 3
	}
	if ar := rep.Accounts[0]; !ar.Whole {
		fmt.Fprintf(os.Stderr, "account not whole: error %q failures %v\n", ar.Error, ar.Failures)
		return 3
	}
	fmt.Println(crashHelperOK)
	return 0
}

// planPrinter prints crashHelperPlan once, when the first plan is known.
type planPrinter struct{ once sync.Once }

func (p *planPrinter) AccountStart(string, int, int64) {
	p.once.Do(func() { fmt.Println(crashHelperPlan) })
}
func (p *planPrinter) MessageDone(string, int64)                   {}
func (p *planPrinter) AccountDone(string, *pipeline.AccountReport) {}

// childResult is how a child process ended.
type childResult struct {
	ok     bool // exited 0 after printing crashHelperOK
	killed bool // died of SIGKILL
	output string
}

// parentKill says when the parent kills a child with SIGKILL: after a
// delay counted from its start, or from the moment it prints
// crashHelperPlan (its download begins). A zero delay never kills.
type parentKill struct {
	after    time.Duration
	fromPlan bool
}

// watchWriter collects a child's output and calls onMarker once, when
// marker first appears.
type watchWriter struct {
	mu       sync.Mutex
	buf      bytes.Buffer
	marker   string
	onMarker func()
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if w.onMarker != nil && bytes.Contains(w.buf.Bytes(), []byte(w.marker)) {
		w.onMarker()
		w.onMarker = nil
	}
	return len(p), nil
}

func (w *watchWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// runChild runs the crash helper for c, killing it as k says unless it
// has ended by then. The child is bounded to 30s.
func runChild(t *testing.T, c crashConfig, k parentKill) childResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// TestMain dispatches on the environment; -test.run=^$ makes sure a
	// child that somehow is not dispatched runs no test and, not printing
	// crashHelperOK, does not pass for a completed run.
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	// A binary built with -race sleeps 1s at exit by default: not here.
	gorace := strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")
	cmd.Env = append(os.Environ(), crashHelperEnv+"=1", crashConfigEnv+"="+c.encode(), "GORACE="+gorace)
	out := &watchWriter{marker: crashHelperPlan}
	cmd.Stdout, cmd.Stderr = out, out
	var timer *time.Timer
	var timerMu sync.Mutex
	arm := func() {
		timerMu.Lock()
		defer timerMu.Unlock()
		timer = time.AfterFunc(k.after, func() { cmd.Process.Kill() })
	}
	if k.after > 0 && k.fromPlan {
		out.onMarker = arm
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if k.after > 0 && !k.fromPlan {
		arm()
	}
	err := cmd.Wait()
	timerMu.Lock()
	if timer != nil {
		timer.Stop()
	}
	timerMu.Unlock()
	res := childResult{output: out.String()}
	var xerr *exec.ExitError
	switch {
	case err == nil:
		res.ok = strings.Contains(res.output, crashHelperOK)
	case errors.As(err, &xerr):
		if ws, ok := xerr.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			res.killed = true
		}
	}
	if ctx.Err() != nil {
		t.Fatalf("child %s ran over 30s: %s", c.point, res.output)
	}
	return res
}

// TestCrash is the durability promise: interrupting a run at any instant
// and running again ends with every message stored exactly once. Each
// scenario kills a child process running the pipeline at one point of the
// protocol (after a Put, after a batch's Sync but before its journal
// commit, after a commit) or at a random instant, runs it again until it
// completes, and checks the Maildir and the journal. The POP3 server runs
// in this process and outlives the children.
func TestCrash(t *testing.T) {
	msgs := trickyMsgs(t, "t-")
	msgs = append(msgs, smallMsgs("s-", 30-len(msgs))...)
	if len(msgs) != 30 {
		t.Fatalf("%d messages, want 30", len(msgs))
	}
	puts, commits := len(msgs), (len(msgs)+crashBatch-1)/crashBatch

	type scenario struct {
		name   string
		point  string
		random int // number of random-delay kills
	}
	var scenarios []scenario
	for n := 1; n <= puts; n++ {
		scenarios = append(scenarios, scenario{name: fmt.Sprintf("afterPut:%d", n), point: fmt.Sprintf("afterPut:%d", n)})
	}
	for n := 1; n <= commits; n++ {
		scenarios = append(scenarios, scenario{name: fmt.Sprintf("afterSync:%d", n), point: fmt.Sprintf("afterSync:%d", n)})
		scenarios = append(scenarios, scenario{name: fmt.Sprintf("afterCommit:%d", n), point: fmt.Sprintf("afterCommit:%d", n)})
	}
	for i := 1; i <= 12; i++ {
		scenarios = append(scenarios, scenario{name: fmt.Sprintf("random%d", i), random: 1 + i%3})
	}

	boxes := make([]pop3test.Mailbox, len(scenarios))
	so := &pop3test.ServerOptions{UserFaults: map[string]pop3test.Faults{}}
	for i, sc := range scenarios {
		user := fmt.Sprintf("c%d", i)
		boxes[i] = mailbox(user, msgs)
		if sc.random > 0 {
			// A small delay before every response line stretches a run
			// to a few hundred milliseconds whatever the machine's
			// speed, so that the random kills land inside runs.
			so.UserFaults[user] = pop3test.Faults{Delay: 2 * time.Millisecond}
		}
	}
	e := newEnv(t, boxes, so)
	seed := uint64(time.Now().UnixNano())
	var randomKills, randomDone, randomMid atomic.Int32
	t.Cleanup(func() {
		// Runs after every parallel scenario: the random delays must
		// land inside runs, or those scenarios test nothing.
		t.Logf("random kills: %d children killed (%d with part of the mailbox in the Maildir), %d finished first (seed %d)",
			randomKills.Load(), randomMid.Load(), randomDone.Load(), seed)
		if randomKills.Load() < randomDone.Load() || randomMid.Load() == 0 {
			t.Errorf("the random kills missed the downloads: the delays do not fit the runs")
		}
	})

	for i, sc := range scenarios {
		user := fmt.Sprintf("c%d", i)
		rng := rand.New(rand.NewPCG(seed, uint64(i)))
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			pwFile := filepath.Join(dir, "password")
			if err := os.WriteFile(pwFile, []byte(passwordOf(user)), 0o600); err != nil {
				t.Fatal(err)
			}
			c := crashConfig{
				port: e.port, caFile: e.pki.CAFile, pwFile: pwFile,
				jpath: filepath.Join(dir, "journal.db"), maildir: filepath.Join(dir, "maildir"), user: user,
			}
			if sc.point != "" {
				crash := c
				crash.point = sc.point
				if res := runChild(t, crash, parentKill{}); !res.killed {
					t.Fatalf("child did not die at %s (ok %v): %s", sc.point, res.ok, res.output)
				}
			}
			for r := range sc.random {
				// Kill at a random instant of the child's life. Half of
				// the kills count from its start (start-up, TLS, login,
				// listing), half from its plan (download, Put, Sync,
				// commit).
				k := parentKill{after: time.Duration(5+rng.IntN(300)) * time.Millisecond}
				if (i+r)%2 == 0 {
					k = parentKill{after: time.Duration(1+rng.IntN(150)) * time.Millisecond, fromPlan: true}
				}
				res := runChild(t, c, k)
				switch {
				case res.killed:
					randomKills.Add(1)
					// Written messages, committed or not, show the kill
					// landed inside the download.
					if files, _ := maildirFilesIfAny(c.maildir); files > 0 && files < len(msgs) {
						randomMid.Add(1)
					}
				case res.ok:
					randomDone.Add(1)
				default:
					t.Fatalf("random kill %d: child failed: %s", r+1, res.output)
				}
			}
			var res childResult
			for attempt := 1; attempt <= 3 && !res.ok; attempt++ {
				res = runChild(t, c, parentKill{})
			}
			if !res.ok {
				t.Fatalf("the run after the crash did not complete: %s", res.output)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			j, err := journal.Open(ctx, c.jpath)
			if err != nil {
				t.Fatal(err)
			}
			defer j.Close()
			checkMaildir(t, c.maildir, user, msgs, true)
			checkJournal(t, j, c.maildir, user, msgs)
		})
	}
}

// maildirFilesIfAny counts the messages written into the Maildir at dir:
// committed ones in new/ and ones written to tmp/ but not yet published by
// a group commit. It returns 0 when the Maildir does not exist yet.
func maildirFilesIfAny(dir string) (int, error) {
	n := 0
	for _, sub := range []string{"new", "tmp"} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			return n, err
		}
		for _, de := range entries {
			if !strings.HasPrefix(de.Name(), ".") {
				n++
			}
		}
	}
	return n, nil
}
