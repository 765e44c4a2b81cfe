package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/pop3/pop3test"
	"github.com/popmigrate/popmigrate/report"
)

// readReport returns the HTML report at path, failing the test unless it
// is one with rows accounts and mode 0644.
func readReport(t *testing.T, path string, rows int) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("no report: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("%s: mode %v, want 0644", path, fi.Mode().Perm())
	}
	page := string(b)
	if !strings.HasPrefix(page, "<!DOCTYPE html>") || !strings.Contains(page, `<svg id="throughput"`) {
		t.Errorf("%s is not the HTML report:\n%.300s", path, page)
	}
	if n := strings.Count(page, `<tr class="account"`); n != rows {
		t.Errorf("%s: %d account rows, want %d", path, n, rows)
	}
	return page
}

func reportFixture(t *testing.T) *fixture {
	return newFixture(t, []string{"alice", "bob"}, []int{3, 4}, pop3test.ServerOptions{Implicit: true,
		UserFaults: map[string]pop3test.Faults{"bob": {RetrErr: map[int]string{2: "[SYS/PERM] message unreadable"}}}})
}

// run --html-report writes the report of the run at its end; popmigrate
// report makes it again later from the journal, read-only.
func TestHTMLReportAfterRunAndLater(t *testing.T) {
	f := reportFixture(t)
	out := filepath.Join(f.dir, "run-report.html")
	runMain(t, f.runArgs("--accounts", f.csv(t, "alice", "bob"), "--html-report", out)...).wantCode(t, exitFailed)
	page := readReport(t, out, 2)
	for _, want := range []string{f.account("alice"), f.account("bob"), "[SYS/PERM] message unreadable", "lasting problem", "1 run"} {
		if !strings.Contains(page, want) {
			t.Errorf("the run's report lacks %q", want)
		}
	}
	if strings.Contains(page, "pw-") {
		t.Error("the report holds a password")
	}

	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(f.journal, old, old); err != nil {
		t.Fatal(err)
	}
	before := journalFileOf(t, f.journal)
	later := filepath.Join(f.dir, "later.html")
	r := runMain(t, "report", "--journal", f.journal, "--html", later, "--json", "--title", "ACME <Corp>")
	r.wantCode(t, exitOK)
	if after := journalFileOf(t, f.journal); after != before {
		t.Errorf("report changed the journal file: before %+v, after %+v", before, after)
	}
	if p := readReport(t, later, 2); !strings.Contains(p, "<h1>ACME &lt;Corp&gt;</h1>") {
		t.Error("the report lacks its escaped title")
	}
	if !strings.Contains(r.stderr, "wrote the report of 2 accounts to "+later) {
		t.Errorf("stderr: %s", r.stderr)
	}
	var rep report.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("report --json: %v\n%s", err, r.stdout)
	}
	if rep.Totals.Accounts != 2 || rep.Totals.Copied != 6 || rep.Totals.Failed != 1 || rep.Totals.ServerMessages != 7 ||
		len(rep.Runs) != 1 || len(rep.Throughput) == 0 {
		t.Errorf("report --json: totals %+v, %d runs, %d points", rep.Totals, len(rep.Runs), len(rep.Throughput))
	}
	for _, a := range rep.Accounts {
		if a.Name == f.account("bob") && (len(a.Failures) != 1 || a.Failures[0].Hint == "" || a.Status != report.StatusIncomplete) {
			t.Errorf("bob: %+v", a)
		}
	}

	// One account of the last run.
	one := filepath.Join(f.dir, "alice.html")
	runMain(t, "report", "--journal", f.journal, "--run", "last", "--account", f.account("alice"), "--html", one).wantCode(t, exitOK)
	if p := readReport(t, one, 1); strings.Contains(p, f.account("bob")) {
		t.Error("the report of alice names bob")
	}
}

func TestReportUsageErrors(t *testing.T) {
	f := reportFixture(t)
	runMain(t, f.runArgs("--source", f.source("alice"), "--password-file", f.pwFiles["alice"])...).wantCode(t, exitOK)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"report", "--journal", f.journal}, "give --html FILE, --json, or both"},
		{[]string{"report", "--journal", filepath.Join(f.dir, "missing.db"), "--json"}, "missing.db"},
		{[]string{"report", "--journal", f.journal, "--json", "--run", "99"}, "no such run"},
		{[]string{"report", "--journal", f.journal, "--json", "--run", "first"}, `want a run ID or "last"`},
		{[]string{"report", "--journal", f.journal, "--html", filepath.Join(f.dir, "no", "such", "dir.html")}, "no such file or directory"},
	} {
		r := runMain(t, c.args...)
		r.wantCode(t, exitUsage)
		if !strings.Contains(r.stderr, c.want) {
			t.Errorf("%s: stderr lacks %q:\n%s", strings.Join(c.args, " "), c.want, r.stderr)
		}
	}
}

// A report that cannot be written fails the run (exit 1) and says how to
// make it again.
func TestHTMLReportWriteFailure(t *testing.T) {
	f := reportFixture(t)
	r := runMain(t, f.runArgs("--source", f.source("alice"), "--password-file", f.pwFiles["alice"],
		"--html-report", filepath.Join(f.dir, "no", "such", "report.html"))...)
	r.wantCode(t, exitFailed)
	if !strings.Contains(r.stderr, "--html-report") || !strings.Contains(r.stderr, "popmigrate report --journal "+f.journal+" --run 1 --html FILE") {
		t.Errorf("stderr: %s", r.stderr)
	}
	f.checkMaildir(t, "alice")
}
