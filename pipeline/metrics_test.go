package pipeline_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/internal/metrics"
	"github.com/popmigrate/popmigrate/pipeline"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

var _ pipeline.Metrics = (*metrics.Metrics)(nil)

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The metrics are scraped during a run, as Prometheus would: an account
// shows as running, and once the run ends the counts are the report's.
func TestMetricsScrapedDuringARun(t *testing.T) {
	msgs := smallMsgs("m", 6)
	e := newEnv(t, []pop3test.Mailbox{mailbox("alice", msgs)}, &pop3test.ServerOptions{
		UserFaults: map[string]pop3test.Faults{"alice": {Trickle: 2 * time.Millisecond, TrickleChunk: 16}},
	})
	m := metrics.New()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	o := testOptions()
	o.Metrics = m
	o.BatchSize = 2
	done := make(chan *pipeline.Report, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		rep, err := pipeline.Run(ctx, e.j, []*config.Account{e.account("alice")}, o)
		if err != nil {
			t.Error(err)
		}
		done <- rep
	}()
	sawRunning := false
	deadline := time.After(20 * time.Second)
	var rep *pipeline.Report
wait:
	for {
		select {
		case rep = <-done:
			break wait
		case <-deadline:
			t.Fatal("the run did not end within 20s")
		case <-time.After(20 * time.Millisecond):
			if strings.Contains(scrape(t, srv.URL), `popmigrate_accounts{state="running"} 1`) {
				sawRunning = true
			}
		}
	}
	if !sawRunning {
		t.Error("no scrape during the run saw the account running")
	}
	got := scrape(t, srv.URL)
	for _, want := range []string{
		`popmigrate_accounts{state="done"} 1`,
		`popmigrate_accounts{state="running"} 0`,
		"popmigrate_messages_stored_total 6",
		"popmigrate_sessions_total 1",
		"popmigrate_journal_commit_seconds_count",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("metrics lack %q:\n%s", want, grepMetrics(got))
		}
	}
	if rep == nil || rep.Totals.Stored != 6 {
		t.Errorf("report %+v", rep)
	}
}

func grepMetrics(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "popmigrate_") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
