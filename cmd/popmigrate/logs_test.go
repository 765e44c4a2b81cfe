package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

// --log-format json: every stderr line is a JSON object, with one event
// per phase of each account; --report FILE holds what --json prints.
func TestJSONLogsAndReportFile(t *testing.T) {
	f := newFixture(t, []string{"alice", "bob"}, []int{3, 2}, pop3test.ServerOptions{Implicit: true})
	report := filepath.Join(f.dir, "report.json")
	r := runMain(t, f.runArgs("--accounts", f.csv(t, "alice", "bob"), "--log-format", "json", "--report", report, "--json", "--no-progress")...)
	r.wantCode(t, exitOK)
	events := map[string]map[string]int{} // account -> event -> count
	for _, line := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		if line == "" || strings.HasPrefix(line, "popmigrate: ") {
			continue // the plain progress lines of a non-terminal
		}
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("stderr line is not JSON: %q (%v)", line, err)
		}
		msg, _ := ev["msg"].(string)
		acct, _ := ev["account"].(string)
		if acct == "" {
			continue
		}
		if events[acct] == nil {
			events[acct] = map[string]int{}
		}
		events[acct][msg]++
	}
	for _, u := range []string{"alice", "bob"} {
		got := events[f.account(u)]
		for _, want := range []string{"connect", "login", "listing", "batch", "verify", "done"} {
			if got[want] == 0 {
				t.Errorf("%s: no %q event in %v", u, want, got)
			}
		}
	}
	saved, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	if string(saved) != r.stdout {
		t.Errorf("--report file differs from --json's stdout:\n%s\n---\n%s", saved, r.stdout)
	}
	if bad := runMain(t, f.runArgs("--source", f.source("alice"), "--password-file", f.pwFiles["alice"], "--log-format", "xml")...); bad.code != exitUsage {
		t.Errorf("--log-format xml: %s", bad)
	}
}

// --metrics-listen serves while the run lasts and says where; a bad
// address is a usage error. (pipeline's TestMetricsScrapedDuringARun
// scrapes the metrics during a run.)
func TestMetricsListenFlag(t *testing.T) {
	f := newFixture(t, []string{"alice"}, []int{2}, pop3test.ServerOptions{Implicit: true})
	r := runMain(t, f.runArgs("--source", f.source("alice"), "--password-file", f.pwFiles["alice"], "--metrics-listen", "127.0.0.1:0")...)
	r.wantCode(t, exitOK)
	if !strings.Contains(r.stderr, "popmigrate: metrics on http://127.0.0.1:") {
		t.Errorf("no metrics address on stderr:\n%s", r.stderr)
	}
	r = runMain(t, f.runArgs("--source", f.source("alice"), "--password-file", f.pwFiles["alice"], "--metrics-listen", "nohost:99999")...)
	r.wantCode(t, exitUsage)
}

// The connect event says whether the TLS session was resumed: the
// accounts after the first of a host resume the session of an earlier one
// (one handshake round trip and the server's signature less), as a
// retried session does. (Dovecot's login processes, one per connection by
// default, share no ticket key, so against Dovecot nothing resumes.)
func TestTLSSessionsResumeAcrossAccounts(t *testing.T) {
	users := []string{"rita", "sam", "tom"}
	f := newFixture(t, users, []int{2, 2, 2}, pop3test.ServerOptions{Implicit: true})
	r := runMain(t, f.runArgs("--accounts", f.csv(t, users...), "--jobs", "1", "--log-format", "json", "--json", "--no-progress")...)
	r.wantCode(t, exitOK)
	resumed := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		var ev struct {
			Msg     string `json:"msg"`
			Account string `json:"account"`
			TLS     bool   `json:"tls"`
			Resumed *bool  `json:"tls_resumed"`
		}
		if json.Unmarshal([]byte(line), &ev) != nil || ev.Msg != "connect" {
			continue
		}
		if !ev.TLS || ev.Resumed == nil {
			t.Errorf("connect event %s: want tls true and tls_resumed", line)
			continue
		}
		resumed[ev.Account] = *ev.Resumed
	}
	if len(resumed) != len(users) {
		t.Fatalf("connect events for %v, want one per account of %v", resumed, users)
	}
	for _, u := range users[1:] {
		if !resumed[f.account(u)] {
			t.Errorf("account %s: TLS session not resumed (%v)", f.account(u), resumed)
		}
	}
}
