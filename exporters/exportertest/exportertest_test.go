package exportertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/popmigrate/popmigrate/exporters"
)

// memExporter keeps messages in memory, one store per folder, so that
// reopening a folder finds what an earlier Exporter stored. It checks that
// the suite is satisfiable by a destination that is not files (Count and
// Snapshot instead of files) and is concurrent-safe, read-only, Resumable
// (as mbox: Resume drops what was put after the committed state) and a
// Lister.
type memExporter struct {
	store    *memStore
	readOnly bool
	mu       sync.Mutex
	closed   bool
	started  bool // a Put has begun: Resume comes too late
}

type memStore struct {
	id   string
	mu   sync.Mutex
	keys []string          // in the order of their Put
	msgs map[string][]byte // key -> body
}

var (
	_ exporters.Exporter  = (*memExporter)(nil)
	_ exporters.Finder    = (*memExporter)(nil)
	_ exporters.Opener    = (*memExporter)(nil)
	_ exporters.Lister    = (*memExporter)(nil)
	_ exporters.Resumable = (*memExporter)(nil)
)

// check fails when the Exporter is closed, or ctx is done.
func (e *memExporter) check(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return exporters.ErrClosed
	}
	return ctx.Err()
}

// writable is check, and fails for a read-only Exporter too.
func (e *memExporter) writable(ctx context.Context) error {
	if err := e.check(ctx); err != nil {
		return err
	}
	if e.readOnly {
		return exporters.ErrReadOnly
	}
	return nil
}

func (e *memExporter) Put(ctx context.Context, msg *exporters.Message) (exporters.Delivery, error) {
	fail := func(err error) (exporters.Delivery, error) {
		return exporters.Delivery{}, fmt.Errorf("mem: %s: put %s: %w", e.store.id, msg.Key, err)
	}
	if err := e.writable(ctx); err != nil {
		return fail(err)
	}
	e.mu.Lock()
	e.started = true
	e.mu.Unlock()
	var buf bytes.Buffer
	chunk := make([]byte, 4096)
	for off := int64(0); off < msg.Body.Size(); {
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		n, err := msg.Body.ReadAt(chunk[:min(int64(len(chunk)), msg.Body.Size()-off)], off)
		buf.Write(chunk[:n])
		off += int64(n)
		if err == io.EOF && off < msg.Body.Size() {
			return fail(exporters.ErrShortBody)
		}
		if err != nil && err != io.EOF {
			return fail(err)
		}
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	e.store.mu.Lock()
	defer e.store.mu.Unlock()
	if _, ok := e.store.msgs[msg.Key]; !ok {
		e.store.msgs[msg.Key] = buf.Bytes()
		e.store.keys = append(e.store.keys, msg.Key)
	}
	return exporters.Delivery{Ref: msg.Key}, nil
}

func (e *memExporter) Sync(ctx context.Context) error {
	if err := e.writable(ctx); err != nil {
		return fmt.Errorf("mem: %s: sync: %w", e.store.id, err)
	}
	return nil
}

func (e *memExporter) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	return nil
}

func (e *memExporter) Properties() exporters.Properties {
	return exporters.Properties{Kind: "mem", ID: e.store.id}
}

func (e *memExporter) Has(ctx context.Context, key string) (exporters.Delivery, bool, error) {
	if err := e.check(ctx); err != nil {
		return exporters.Delivery{}, false, fmt.Errorf("mem: %s: has %s: %w", e.store.id, key, err)
	}
	e.store.mu.Lock()
	defer e.store.mu.Unlock()
	_, ok := e.store.msgs[key]
	if !ok {
		return exporters.Delivery{}, false, nil
	}
	return exporters.Delivery{Ref: key}, true, nil
}

func (e *memExporter) Open(ctx context.Context, ref string) (io.ReadCloser, error) {
	if err := e.check(ctx); err != nil {
		return nil, fmt.Errorf("mem: %s: open %q: %w", e.store.id, ref, err)
	}
	e.store.mu.Lock()
	defer e.store.mu.Unlock()
	data, ok := e.store.msgs[ref]
	if !ok {
		return nil, fmt.Errorf("mem: %s: open %q: %w", e.store.id, ref, exporters.ErrNotFound)
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

func (e *memExporter) List(ctx context.Context, _ string) ([]exporters.Listed, error) {
	if err := e.check(ctx); err != nil {
		return nil, fmt.Errorf("mem: %s: list: %w", e.store.id, err)
	}
	e.store.mu.Lock()
	defer e.store.mu.Unlock()
	var out []exporters.Listed
	for _, k := range e.store.keys {
		out = append(out, exporters.Listed{Key: k, Ref: k})
	}
	return out, nil
}

// CommitState is the number of messages stored.
func (e *memExporter) CommitState() string {
	e.store.mu.Lock()
	defer e.store.mu.Unlock()
	return strconv.Itoa(len(e.store.keys))
}

// Resume drops the messages put after the state's count; with "" it saves
// the current count.
func (e *memExporter) Resume(ctx context.Context, state string, save func(context.Context, string) error) error {
	wrap := func(err error) error { return fmt.Errorf("mem: %s: resume: %w", e.store.id, err) }
	if err := e.writable(ctx); err != nil {
		return wrap(err)
	}
	e.mu.Lock()
	started := e.started
	e.mu.Unlock()
	if started {
		return wrap(errors.New("called after Put"))
	}
	if state == "" {
		return save(ctx, e.CommitState())
	}
	n, err := strconv.Atoi(state)
	e.store.mu.Lock()
	defer e.store.mu.Unlock()
	if err != nil || n < 0 || n > len(e.store.keys) {
		return wrap(fmt.Errorf("invalid state %q", state))
	}
	for _, k := range e.store.keys[n:] {
		delete(e.store.msgs, k)
	}
	e.store.keys = e.store.keys[:n]
	return nil
}

// memStores are the stores of a test, one per folder.
type memStores struct {
	mu     sync.Mutex
	stores map[string]*memStore
}

func (m *memStores) open(_ testing.TB, dir string, readOnly bool) (exporters.Exporter, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.stores[dir]
	if !ok {
		if readOnly {
			return nil, fmt.Errorf("mem: mem:%s: %w", dir, exporters.ErrNotFound)
		}
		s = &memStore{id: "mem:" + dir, msgs: map[string][]byte{}}
		m.stores[dir] = s
	}
	return &memExporter{store: s, readOnly: readOnly}, nil
}

// count is the number of messages in the store of dir.
func (m *memStores) count(_ testing.TB, dir string) int {
	m.mu.Lock()
	s := m.stores[dir]
	m.mu.Unlock()
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

// snapshot describes every store.
func (m *memStores) snapshot(testing.TB, string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b strings.Builder
	for _, dir := range slices.Sorted(maps.Keys(m.stores)) {
		s := m.stores[dir]
		s.mu.Lock()
		fmt.Fprintf(&b, "%s:", dir)
		for _, k := range s.keys {
			fmt.Fprintf(&b, " %s=%d", k, len(s.msgs[k]))
		}
		b.WriteByte('\n')
		s.mu.Unlock()
	}
	return b.String()
}

func TestMemExporterConforms(t *testing.T) {
	m := &memStores{stores: map[string]*memStore{}}
	RunWithOptions(t, m.open, &Options{
		Count: m.count, Snapshot: m.snapshot, Concurrent: true, Many: 100,
	})
}
