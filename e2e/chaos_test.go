package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/internal/dovecottest"
	"github.com/popmigrate/popmigrate/internal/pgtest"
)

// worker is one `popmigrate run` process of a migration shared through a
// PostgreSQL journal.
type worker struct {
	n              int
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	exited         chan struct{}
	state          *os.ProcessState
	killed         bool // by SIGKILL, from the test
	paused         bool // stopped by SIGSTOP, not woken yet (guarded by the test's mu)
}

func startWorker(t *testing.T, n int, args []string) *worker {
	t.Helper()
	w := &worker{n: n, exited: make(chan struct{})}
	w.cmd = exec.Command(popmigrateBin, args...)
	w.cmd.Stdout, w.cmd.Stderr = &w.stdout, &w.stderr
	if err := w.cmd.Start(); err != nil {
		t.Fatalf("worker %d: %v", n, err)
	}
	go func() {
		_ = w.cmd.Wait()
		w.state = w.cmd.ProcessState
		close(w.exited)
	}()
	t.Cleanup(func() {
		_ = w.cmd.Process.Signal(syscall.SIGCONT)
		_ = w.cmd.Process.Kill()
		<-w.exited
	})
	return w
}

func (w *worker) running() bool {
	select {
	case <-w.exited:
		return false
	default:
		return true
	}
}

// TestChaosWorkersShareOneMigration runs one migration of 40 accounts of a
// real Dovecot (half into Maildir, half into IMAP folders of the same
// Dovecot) with four `popmigrate run` workers sharing a real PostgreSQL
// journal, while the test kills workers with SIGKILL (starting another in
// each one's place) and pauses others with SIGSTOP until their leases
// have expired, then wakes them with SIGCONT: such a worker finds its
// accounts taken over and must stop before it writes again. A bounded
// number of such blows at random moments (the seed is logged; set
// POPMIGRATE_CHAOS_SEED to replay one), then one clean run: every message
// is stored exactly once in its destination, every account is whole,
// status agrees with the destinations, verify finds nothing wrong, and the
// workers' commits show no account written by two workers at once.
func TestChaosWorkersShareOneMigration(t *testing.T) {
	t.Parallel()
	const (
		accounts   = 40
		perAccount = 10
		size       = 2500
		workers    = 4
		maxBlows   = 6
		restarts   = 3
		leaseTTL   = time.Second
	)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("POPMIGRATE_CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("POPMIGRATE_CHAOS_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("chaos seed %d (POPMIGRATE_CHAOS_SEED=%d replays it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	var users []dovecottest.User
	msgs := map[string][][]byte{}
	for i := range accounts {
		name := fmt.Sprintf("chaos%02d", i+1)
		msgs[name] = generated(name, perAccount, size)
		users = append(users, dovecottest.User{Name: name, Password: "pw-" + name + "-Cq7", Messages: msgs[name]})
	}
	srv := dovecottest.Start(t, users, nil)
	pg := pgtest.Start(t)
	jurl := pg.NewDB(t)

	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "pw"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		writeFile(t, filepath.Join(dir, "pw"), u.Name, u.Password+"\n")
	}
	toIMAP := func(i int) bool { return i%2 == 1 }
	mdOf := func(user string) string { return filepath.Join(dir, "md", user) }
	lines := []string{"name,source,to"}
	for i, u := range users {
		to := "maildir:" + mdOf(u.Name)
		if toIMAP(i) {
			to = "imaps://" + u.Name + "@" + srv.IMAPSAddr + "/Migrated"
		}
		lines = append(lines, strings.Join([]string{u.Name, "pop3s://" + u.Name + "@" + srv.POP3SAddr, to}, ","))
	}
	csv := writeFile(t, dir, "accounts.csv", strings.Join(lines, "\n")+"\n")
	base := []string{"run", "--accounts", csv, "--ca-file", srv.CAFile, "--journal", jurl,
		"--password-file", filepath.Join(dir, "pw", "{user}"), "--to-password-file", filepath.Join(dir, "pw", "{user}"),
		"--lease-ttl", leaseTTL.String(), "--batch-size", "3", "--batch-interval", "100ms", "--json"}
	// Slowed down, so that the blows land while accounts are under way.
	chaosArgs := append(append([]string(nil), base...), "--jobs", "3", "--max-bandwidth", "40KB/s", "--log-format", "json")

	var (
		mu  sync.Mutex
		all []*worker
	)
	live := func() []*worker {
		mu.Lock()
		defer mu.Unlock()
		var out []*worker
		for _, w := range all {
			if w.running() && !w.paused {
				out = append(out, w)
			}
		}
		return out
	}
	for n := range workers {
		all = append(all, startWorker(t, n+1, chaosArgs))
	}
	var paused sync.WaitGroup
	blows, kills, stops := 0, 0, 0
	deadline := time.Now().Add(60 * time.Second)
	for blows < maxBlows && time.Now().Before(deadline) {
		time.Sleep(time.Duration(300+rng.IntN(700)) * time.Millisecond)
		ws := live()
		if len(ws) == 0 {
			break
		}
		w := ws[rng.IntN(len(ws))]
		blows++
		if rng.IntN(2) == 0 && kills < restarts {
			kills++
			w.killed = true
			_ = w.cmd.Process.Kill()
			<-w.exited
			mu.Lock()
			all = append(all, startWorker(t, len(all)+1, chaosArgs))
			mu.Unlock()
			t.Logf("blow %d: SIGKILL worker %d, started worker %d", blows, w.n, len(all))
			continue
		}
		stops++
		pause := leaseTTL + time.Duration(500+rng.IntN(1000))*time.Millisecond
		mu.Lock()
		w.paused = true
		mu.Unlock()
		_ = w.cmd.Process.Signal(syscall.SIGSTOP)
		t.Logf("blow %d: SIGSTOP worker %d for %v", blows, w.n, pause)
		paused.Add(1)
		go func() {
			defer paused.Done()
			time.Sleep(pause)
			_ = w.cmd.Process.Signal(syscall.SIGCONT)
			mu.Lock()
			w.paused = false
			mu.Unlock()
		}()
	}
	paused.Wait()
	for _, w := range live() { // none is paused now
		select {
		case <-w.exited:
		case <-time.After(time.Until(deadline) + 30*time.Second):
			t.Fatalf("worker %d still runs 90 s after the start:\n%s", w.n, w.stderr.String())
		}
	}
	t.Logf("%d blows: %d SIGKILL, %d SIGSTOP", blows, kills, stops)
	mu.Lock()
	for _, w := range all {
		out := w.stdout.String() + w.stderr.String()
		if strings.Contains(out, "panic:") || strings.Contains(out, "DATA RACE") {
			t.Errorf("worker %d:\n%s", w.n, out)
		}
		if code := w.state.ExitCode(); !w.killed && code != 0 && code != 1 {
			t.Errorf("worker %d exited %d (%v); want 0 or 1:\n%s", w.n, code, w.state, w.stderr.String())
		}
		if strings.Contains(w.stderr.String(), "lease lost") {
			t.Logf("worker %d (exit %d) lost a lease", w.n, w.state.ExitCode())
		}
	}
	checkTenures(t, all)
	mu.Unlock()

	// One clean run finishes what the chaos left.
	r := popmigrate(t, nil, base...)
	r.wantCode(t, 0)
	rep := decodeReport(t, r)
	for i, u := range users {
		a := accountReport(t, rep, u.Name)
		if !a.Whole {
			t.Errorf("%s after the clean run: %+v", u.Name, a)
		}
		want := make([][]byte, perAccount)
		for k, m := range msgs[u.Name] {
			want[k] = viaDovecot(m)
		}
		if !toIMAP(i) {
			checkExactlyOnce(t, mdOf(u.Name), jurl, u.Name, want)
			continue
		}
		got := map[string]int{}
		for _, m := range readIMAPFolder(t, srv, u.Name, u.Password, "Migrated") {
			got[sum(m.body)]++
		}
		for k, m := range want {
			if n := got[sum(m)]; n != 1 {
				t.Errorf("%s: message %d is in the IMAP folder %d times; want once", u.Name, k+1, n)
			}
			delete(got, sum(m))
		}
		for h, n := range got {
			t.Errorf("%s: %d unexpected messages in the IMAP folder (sha256 %s)", u.Name, n, h[:12])
		}
	}
	// status agrees with the destinations: every account done, every
	// message stored and verified, nothing listed or failed.
	st := statusJSON(t, jurl)
	for _, u := range users {
		if s := st[u.Name]; s.State != "done" || s.ServerCount != perAccount || s.Stored != perAccount || s.Verified != perAccount ||
			s.Listed != 0 || s.Failed != 0 {
			t.Errorf("status of %s: %+v; want done, %d stored and verified", u.Name, s, perAccount)
		}
	}
	v := popmigrate(t, nil, "verify", "--journal", jurl, "--ca-file", srv.CAFile, "--to-password-file", filepath.Join(dir, "pw", "{user}"))
	v.wantCode(t, 0)
}

// checkTenures asserts from the workers' logs that no account was written
// by two workers at once: each group commit names the lease epoch it was
// fenced by, and per account, in the order the commits happened, the
// epochs never go back and each belongs to one worker. A worker that kept
// committing after another took its account over would show its older
// epoch after the newer one.
func checkTenures(t *testing.T, workers []*worker) {
	t.Helper()
	type commit struct {
		at     time.Time
		epoch  int64
		worker int
	}
	byAccount := map[string][]commit{}
	for _, w := range workers {
		for _, line := range strings.Split(w.stderr.String(), "\n") {
			var ev struct {
				Time    time.Time `json:"time"`
				Msg     string    `json:"msg"`
				Account string    `json:"account"`
				Epoch   int64     `json:"epoch"`
			}
			if !strings.HasPrefix(line, "{") || json.Unmarshal([]byte(line), &ev) != nil || ev.Msg != "batch" {
				continue
			}
			byAccount[ev.Account] = append(byAccount[ev.Account], commit{ev.Time, ev.Epoch, w.n})
		}
	}
	if len(byAccount) == 0 {
		t.Fatal("no group commit in the workers' logs")
	}
	tenures := 0
	for account, cs := range byAccount {
		sort.SliceStable(cs, func(i, j int) bool { return cs[i].at.Before(cs[j].at) })
		owner := map[int64]int{}
		for i, c := range cs {
			if c.epoch < 1 {
				t.Errorf("%s: a commit without a lease epoch (worker %d)", account, c.worker)
			}
			if w, ok := owner[c.epoch]; ok && w != c.worker {
				t.Errorf("%s: epoch %d committed by workers %d and %d", account, c.epoch, w, c.worker)
			}
			if _, ok := owner[c.epoch]; !ok {
				tenures++
			}
			owner[c.epoch] = c.worker
			if i > 0 && c.epoch < cs[i-1].epoch {
				t.Errorf("%s: worker %d committed under epoch %d at %s, after worker %d under epoch %d at %s",
					account, c.worker, c.epoch, c.at.Format(time.StampMicro), cs[i-1].worker, cs[i-1].epoch, cs[i-1].at.Format(time.StampMicro))
			}
		}
	}
	t.Logf("%d accounts committed to in %d tenures", len(byAccount), tenures)
}
