package imap

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/exportertest"
	"github.com/popmigrate/popmigrate/exporters/location"
)

// refused are the samples an IMAP APPEND cannot carry.
var refused = []string{"nul-bytes"}

func testCtx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// fakeJournal keeps what the pipeline's journal keeps for one
// destination: the last state, saved by Resume's save.
type fakeJournal struct {
	mu    sync.Mutex
	state string
	saves []string
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

// suiteFolders maps each folder of the conformance suite to its own IMAP
// folder of srv.
type suiteFolders struct {
	srv   *memServer
	conns int
	mu    sync.Mutex
	m     map[string]string // suite folder -> IMAP folder
}

func (f *suiteFolders) folder(dir string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]string{}
	}
	name, ok := f.m[dir]
	if !ok {
		name = fmt.Sprintf("Conformance/%d", len(f.m)+1)
		f.m[dir] = name
	}
	return name
}

// open is how the conformance suite opens an IMAP folder.
func (f *suiteFolders) open(t testing.TB, dir string, readOnly bool) (exporters.Exporter, error) {
	o := f.srv.options(f.folder(dir))
	o.Conns = f.conns
	o.ReadOnly = readOnly
	e, err := New(testCtx(t), o)
	if err != nil {
		return nil, err
	}
	return e, nil
}

// options returns o with what the suite needs to know of srv: the count
// of a folder's messages, a snapshot of every folder, and the ID errors
// name.
func (f *suiteFolders) options(o exportertest.Options) *exportertest.Options {
	o.Refuses = refused
	o.Count = func(t testing.TB, dir string) int { return len(f.srv.messages(t, f.folder(dir))) }
	o.Snapshot = func(t testing.TB, _ string) string { return f.srv.snapshot(t) }
	o.Where = func(dir string) string {
		u := url.URL{Scheme: "imap", User: url.User(memUser), Host: f.srv.addr, Path: "/" + f.folder(dir)}
		return u.String()
	}
	return &o
}

func TestConformance(t *testing.T) {
	f := &suiteFolders{srv: startMem(t, memConfig{}), conns: 3}
	exportertest.RunWithOptions(t, f.open, f.options(exportertest.Options{Concurrent: true, Many: 300}))
}

// TestConformanceNoUIDPlus runs the suite against a server without
// UIDPLUS: every Ref is found by UID SEARCH after the APPEND.
func TestConformanceNoUIDPlus(t *testing.T) {
	f := &suiteFolders{srv: startMem(t, memConfig{noUIDPlus: true}), conns: 2}
	exportertest.RunWithOptions(t, f.open, f.options(exportertest.Options{Concurrent: true, Many: 150}))
}

// TestConformanceTLS runs the suite over implicit TLS with one
// connection, opening each folder as popmigrate does: through the kind's
// registry entry, from an imaps:// spec, with a password and a CA file.
func TestConformanceTLS(t *testing.T) {
	f := &suiteFolders{srv: startMem(t, memConfig{implicitTLS: true}), conns: 1}
	open := exportertest.Through(Factory(), func(dir string) string {
		u := url.URL{Scheme: "imaps", User: url.User(memUser), Host: f.srv.addr, Path: "/" + f.folder(dir)}
		return u.String()
	}, location.Env{
		Password: func(context.Context) (string, error) { return memPassword, nil },
		CAFile:   f.srv.pki.CAFile,
		Conns:    f.conns,
		Timeout:  10 * time.Second,
	})
	exportertest.RunWithOptions(t, open, f.options(exportertest.Options{Many: 50}))
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
