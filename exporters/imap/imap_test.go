package imap

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/exportertest"
)

// refused are the samples an IMAP APPEND cannot carry.
var refused = []string{"nul-bytes"}

func testCtx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// fakeJournal keeps what the pipeline's journal keeps for one
// destination: the last state (saved by Resume's save, or committed after
// a Sync) and the deliveries committed with each Sync.
type fakeJournal struct {
	mu        sync.Mutex
	state     string
	saves     []string
	committed map[string]string // key -> Ref
}

func (j *fakeJournal) save(ctx context.Context, st string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.state = st
	j.saves = append(j.saves, st)
	return ctx.Err()
}

func (j *fakeJournal) last() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.state
}

// journaled drives an Exporter the way the pipeline does: Resume with the
// journal's state when opened; after each Sync, the deliveries since the
// previous Sync and CommitState are committed; a key committed by an
// earlier run is not Put again (the pipeline's plan leaves it out). It is
// how IMAP, which has no Finder, meets the suite's promise that a new
// Exporter finds what an earlier one stored.
type journaled struct {
	*Exporter
	j       *fakeJournal
	known   map[string]string // committed when opened
	mu      sync.Mutex
	pending map[string]string
}

func (w *journaled) Put(ctx context.Context, msg *exporters.Message) (exporters.Delivery, error) {
	if ref, ok := w.known[msg.Key]; ok {
		return exporters.Delivery{Ref: ref}, nil
	}
	d, err := w.Exporter.Put(ctx, msg)
	if err == nil {
		w.mu.Lock()
		w.pending[msg.Key] = d.Ref
		w.mu.Unlock()
	}
	return d, err
}

func (w *journaled) Sync(ctx context.Context) error {
	if err := w.Exporter.Sync(ctx); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.j.mu.Lock()
	defer w.j.mu.Unlock()
	maps.Copy(w.j.committed, w.pending)
	clear(w.pending)
	w.j.state = w.Exporter.CommitState()
	return nil
}

// conformance returns the suite's open function for srv: each suite
// folder maps to its own IMAP folder and journal.
func conformance(srv *memServer, conns int) func(t *testing.T, dir string) exporters.Exporter {
	var mu sync.Mutex
	journals := map[string]*fakeJournal{}
	folders := map[string]string{}
	return func(t *testing.T, dir string) exporters.Exporter {
		mu.Lock()
		j := journals[dir]
		if j == nil {
			j = &fakeJournal{committed: map[string]string{}}
			journals[dir] = j
			folders[dir] = fmt.Sprintf("Conformance/%d", len(folders)+1)
		}
		folder := folders[dir]
		mu.Unlock()
		o := srv.options(folder)
		o.Conns = conns
		e, err := New(testCtx(t), o)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Resume(testCtx(t), j.last(), j.save); err != nil {
			e.Close()
			t.Fatal(err)
		}
		j.mu.Lock()
		known := maps.Clone(j.committed)
		j.mu.Unlock()
		return &journaled{Exporter: e, j: j, known: known, pending: map[string]string{}}
	}
}

func TestConformance(t *testing.T) {
	srv := startMem(t, memConfig{})
	exportertest.RunWithOptions(t, conformance(srv, 3), &exportertest.Options{
		Concurrent: true, Refuses: refused, Many: 300,
	})
}

// TestConformanceNoUIDPlus runs the suite against a server without
// UIDPLUS: every Ref is found by UID SEARCH after the APPEND.
func TestConformanceNoUIDPlus(t *testing.T) {
	srv := startMem(t, memConfig{noUIDPlus: true})
	exportertest.RunWithOptions(t, conformance(srv, 2), &exportertest.Options{
		Concurrent: true, Refuses: refused, Many: 150,
	})
}

// TestConformanceTLS runs the suite over implicit TLS with one
// connection.
func TestConformanceTLS(t *testing.T) {
	srv := startMem(t, memConfig{implicitTLS: true})
	exportertest.RunWithOptions(t, conformance(srv, 1), &exportertest.Options{
		Refuses: refused, Many: 50,
	})
}

func newExporter(t *testing.T, o *Options) *Exporter {
	t.Helper()
	e, err := New(testCtx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return e
}

func mustPut(t *testing.T, e exporters.Exporter, msg *exporters.Message) string {
	t.Helper()
	d, err := e.Put(testCtx(t), msg)
	if err != nil {
		t.Fatalf("Put %s: %v", msg.UIDL, err)
	}
	return d.Ref
}

func mustOpen(t *testing.T, e *Exporter, ref string) []byte {
	t.Helper()
	rc, err := e.Open(testCtx(t), ref)
	if err != nil {
		t.Fatalf("Open %s: %v", ref, err)
	}
	data, err := io.ReadAll(rc)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("read %s: %v", ref, err)
	}
	return data
}

func msgN(i int) *exporters.Message {
	return exportertest.NewMessage(fmt.Sprintf("m%d", i),
		fmt.Appendf(nil, "Message-ID: <m%d@example.org>\nSubject: %d\n\nbody %d\n", i, i, i))
}

func refUID(t *testing.T, ref string) imap.UID {
	t.Helper()
	_, uid, err := parseRef(ref)
	if err != nil {
		t.Fatalf("ref %q: %v", ref, err)
	}
	return uid
}

func messageBytes(m *exporters.Message) []byte {
	b, _ := io.ReadAll(exporters.NewBodyReader(m.Body))
	return b
}

func flagSet(flags []imap.Flag) string {
	var s []string
	for _, f := range flags {
		s = append(s, strings.ToLower(string(f)))
	}
	slices.Sort(s)
	return strings.Join(s, " ")
}
