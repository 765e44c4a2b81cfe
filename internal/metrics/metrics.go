// Package metrics exports a run's progress as Prometheus metrics
// (github.com/prometheus/client_golang): what --metrics-listen serves. It
// implements pipeline.Metrics.
//
// Labels are few on purpose: accounts are counted by state, never
// labelled by name, so that a migration of 100 000 mailboxes is 100 000
// increments, not 100 000 series.
package metrics

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds a run's metrics in its own registry. Its methods are safe
// for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	accounts      *prometheus.GaugeVec
	stored, bytes prometheus.Counter
	verified      prometheus.Counter
	deleted       prometheus.Counter
	failed        *prometheus.CounterVec
	sessions      prometheus.Counter
	retries       prometheus.Counter
	commit        prometheus.Histogram
	mu            sync.Mutex
	state         map[string]string // account -> state
}

// New returns the metrics of a run, registered with a registry of their
// own (plus the Go and process collectors).
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		accounts: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "popmigrate_accounts", Help: "Accounts by state: running, waiting (between sessions or for another worker), done (whole) or failed.",
		}, []string{"state"}),
		stored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "popmigrate_messages_stored_total", Help: "Messages stored in every destination and committed to the journal.",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "popmigrate_bytes_stored_total", Help: "Bytes of the messages stored (canonical form).",
		}),
		verified: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "popmigrate_copies_verified_total", Help: "Stored copies read back and found to match the journal.",
		}),
		deleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "popmigrate_messages_deleted_total", Help: "Messages deleted from the POP3 servers (their QUIT answered +OK).",
		}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "popmigrate_messages_failed_total", Help: "Failed attempts at a message, by class (timeout, out-of-sync, server, destination, ...).",
		}, []string{"class"}),
		sessions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "popmigrate_sessions_total", Help: "POP3 sessions opened.",
		}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "popmigrate_retries_total", Help: "Sessions retried after a temporary error.",
		}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "popmigrate_journal_commit_seconds", Help: "Latency of the journal's group commits.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		state: map[string]string{},
	}
	m.reg.MustRegister(m.accounts, m.stored, m.bytes, m.verified, m.deleted, m.failed, m.sessions, m.retries, m.commit,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// AccountState moves account to state ("running", "waiting", "done" or
// "failed").
func (m *Metrics) AccountState(account, state string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.state[account]; ok {
		m.accounts.WithLabelValues(old).Dec()
	}
	m.state[account] = state
	m.accounts.WithLabelValues(state).Inc()
}

// Stored counts messages stored (committed) and their bytes.
func (m *Metrics) Stored(messages int, bytes int64) {
	m.stored.Add(float64(messages))
	m.bytes.Add(float64(bytes))
}

// Verified counts copies read back intact.
func (m *Metrics) Verified(copies int) { m.verified.Add(float64(copies)) }

// Deleted counts messages deleted from a server.
func (m *Metrics) Deleted(messages int) { m.deleted.Add(float64(messages)) }

// Failed counts one failed attempt at a message, by class.
func (m *Metrics) Failed(class string) { m.failed.WithLabelValues(class).Inc() }

// Session counts a POP3 session opened.
func (m *Metrics) Session() { m.sessions.Inc() }

// Retry counts a session retried.
func (m *Metrics) Retry() { m.retries.Inc() }

// JournalCommit observes a group commit's latency.
func (m *Metrics) JournalCommit(d time.Duration) { m.commit.Observe(d.Seconds()) }
