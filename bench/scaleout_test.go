//go:build linux

package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/internal/pgtest"
)

var (
	flagScaleOut         = flag.Bool("bench-scaleout", false, "run TestBenchScaleOut: 1, 2 and 4 popmigrate workers sharing one journal, SQLite and PostgreSQL (make bench)")
	flagScaleOutUsers    = flag.Int("bench-scaleout-users", 32, "TestBenchScaleOut: mailboxes")
	flagScaleOutMessages = flag.Int("bench-scaleout-messages", 40, "TestBenchScaleOut: messages per mailbox")
	flagScaleOutJobs     = flag.Int("bench-scaleout-jobs", 4, "TestBenchScaleOut: --jobs of each worker")
)

// TestBenchScaleOut measures one migration shared by 1, 2 and 4 `popmigrate
// run` workers on this machine, all started with the same accounts file on
// one journal, a SQLite file or a private PostgreSQL, against one private
// Dovecot. Every run starts from empty Maildirs and an empty journal, every
// Maildir is checked byte for byte afterwards, and the configurations are
// run in turn, rotated each repetition, so that the machine's drift
// spreads over all. It prints per configuration the median wall time, the
// journal's group commits per second and the share of the workers' time
// spent in journal transactions (from their `batch` log events). It only
// runs with -bench-scaleout.
func TestBenchScaleOut(t *testing.T) {
	if !*flagScaleOut {
		t.Skip("the scale-out benchmark runs with `make bench` (go test ./bench/ -args -bench-scaleout)")
	}
	if *flagScaleOutUsers < 4 || *flagScaleOutUsers > maxUsers || *flagScaleOutMessages < 1 || *flagScaleOutMessages > maxMessages ||
		*flagScaleOutJobs < 1 || *flagReps < 1 || *flagReps > maxReps {
		t.Fatalf("bench: flags out of range: -bench-scaleout-users 4..%d, -bench-scaleout-messages 1..%d, -bench-scaleout-jobs >= 1, -bench-reps 1..%d",
			maxUsers, maxMessages, maxReps)
	}
	started := time.Now()
	e := &env{timeCmd: gnuTime(t), work: t.TempDir()}
	if e.popmigrate = *flagBinary; e.popmigrate == "" {
		e.popmigrate = buildPopmigrate(t, e.work)
	}
	total := e.serve(t, *flagScaleOutUsers, *flagScaleOutMessages)
	boxes := e.boxes
	pg := pgtest.Start(t)

	type config struct {
		backend string
		workers int
		samples []scaleSample
	}
	var configs []*config
	for _, be := range []string{"sqlite", "postgres"} {
		for _, n := range []int{1, 2, 4} {
			configs = append(configs, &config{backend: be, workers: n})
		}
	}
	journalFor := func(be, dir string) string {
		if be == "sqlite" {
			return filepath.Join(dir, "journal.db")
		}
		return pg.NewDB(t)
	}
	// Untimed: binaries and caches.
	e.runWorkers(t, journalFor("sqlite", e.scratch(t, "warm-")), 1)
	for r := range *flagReps {
		for k := range configs {
			c := configs[(k+r)%len(configs)]
			dir := e.scratch(t, "scaleout-")
			s := e.runWorkers(t, journalFor(c.backend, dir), c.workers)
			t.Logf("bench: %s, %d workers: run %d: %v, %d commits, %v in the journal", c.backend, c.workers, r+1,
				s.wall.Round(time.Millisecond), s.commits, s.journal.Round(time.Millisecond))
			c.samples = append(c.samples, s)
			os.RemoveAll(dir)
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "\n## popmigrate workers sharing one journal\n\n")
	fmt.Fprintf(&b, "%d mailboxes x %d messages (%.1f MB) on one private %s, POP3S into Maildir; every worker `popmigrate run "+
		"--accounts` with the same file and `--jobs %d`; median of %d runs, configurations rotated; every Maildir checked.\n\n",
		len(boxes), *flagScaleOutMessages, float64(total)/1e6, dovecotVersion(), *flagScaleOutJobs, *flagReps)
	b.WriteString("| journal | workers | wall s | vs 1 worker | group commits/s | journal share of worker time |\n|---|---|---|---|---|---|\n")
	var one float64
	for _, c := range configs {
		wall := medianOf(c.samples, func(s scaleSample) float64 { return s.wall.Seconds() })
		if c.workers == 1 {
			one = wall
		}
		cps := medianOf(c.samples, func(s scaleSample) float64 { return float64(s.commits) / s.wall.Seconds() })
		share := medianOf(c.samples, func(s scaleSample) float64 {
			return s.journal.Seconds() / (s.wall.Seconds() * float64(c.workers))
		})
		fmt.Fprintf(&b, "| %s | %d | %.2f | %.2f | %.0f | %.1f %% |\n", c.backend, c.workers, wall, wall/one, cps, share*100)
	}
	b.WriteString("\nThe journal share is the time the workers spent in journal transactions (their `batch` events' " +
		"`journal_ms`) over their wall time; PostgreSQL runs with fsync off here, as the tests run it.\n")
	fmt.Fprintf(&b, "\nbenchmark time: %v\n", time.Since(started).Round(time.Second))
	fmt.Print(b.String())
}

// scaleSample is what one shared run cost.
type scaleSample struct {
	wall    time.Duration
	commits int           // group commits of all workers
	journal time.Duration // time in journal transactions, all workers
}

func medianOf(ss []scaleSample, f func(scaleSample) float64) float64 {
	v := make([]float64, len(ss))
	for i, s := range ss {
		v[i] = f(s)
	}
	slices.Sort(v)
	if n := len(v); n%2 == 0 {
		return (v[n/2-1] + v[n/2]) / 2
	}
	return v[len(v)/2]
}

// runWorkers runs n workers at once on one journal for every mailbox,
// into fresh Maildirs, and checks that together they stored every message
// once and that each worker reports every account whole.
func (e *env) runWorkers(t *testing.T, journalPath string, n int) scaleSample {
	t.Helper()
	dir := e.scratch(t, "workers-")
	defer os.RemoveAll(dir)
	mail := filepath.Join(dir, "mail")
	var csv strings.Builder
	csv.WriteString("source,password_file\n")
	for _, b := range e.boxes {
		fmt.Fprintf(&csv, "pop3s://%s@%s,%s\n", b.user, e.srv.POP3SAddr, e.pwFile(b.user))
	}
	csvPath := filepath.Join(dir, "accounts.csv")
	if err := os.WriteFile(csvPath, []byte(csv.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{e.popmigrate, "run", "--accounts", csvPath, "--ca-file", e.srv.CAFile, "--journal", journalPath,
		"--to", "maildir:" + mail + "/{user}", "--jobs", fmt.Sprint(*flagScaleOutJobs), "--per-host", fmt.Sprint(*flagScaleOutJobs),
		"--json", "--no-progress", "--log-format", "json"}
	cmds := make([][]string, n)
	for i := range cmds {
		cmds[i] = args
	}
	s, outs := e.runProcs(t, dir, cmds, true)
	out := scaleSample{wall: s.wall}
	stored := 0
	for i, o := range outs {
		var rep struct {
			Totals struct {
				Accounts       int `json:"accounts"`
				AccountsFailed int `json:"accounts_failed"`
				Stored         int `json:"stored"`
			} `json:"totals"`
		}
		if err := json.Unmarshal(o.stdout, &rep); err != nil {
			t.Fatalf("bench: worker %d: JSON report: %v\n%s", i, err, tail(o.stdout))
		}
		if rep.Totals.Accounts != len(e.boxes) || rep.Totals.AccountsFailed != 0 {
			t.Fatalf("bench: worker %d: %d accounts, %d failed; want %d whole\n%s", i, rep.Totals.Accounts, rep.Totals.AccountsFailed, len(e.boxes), tail(o.stderr))
		}
		stored += rep.Totals.Stored
		sc := bufio.NewScanner(bytes.NewReader(o.stderr))
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var ev struct {
				Msg       string  `json:"msg"`
				JournalMS float64 `json:"journal_ms"`
			}
			if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Msg == "batch" {
				out.commits++
				out.journal += time.Duration(ev.JournalMS * float64(time.Millisecond))
			}
		}
	}
	want := 0
	for _, b := range e.boxes {
		want += b.messages
		if err := verifyMaildir(filepath.Join(mail, b.user), b); err != nil {
			t.Fatalf("bench: %d workers: %v", n, err)
		}
	}
	if stored != want {
		t.Fatalf("bench: %d workers stored %d messages in all, want %d: each once", n, stored, want)
	}
	return out
}
