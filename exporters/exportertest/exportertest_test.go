package exportertest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/popmigrate/popmigrate/exporters"
)

// memExporter keeps messages in memory, one store per folder, so that
// reopening a folder finds what an earlier Exporter stored. It checks that
// the suite is satisfiable by a destination that is not files (no
// CountFiles) and is concurrent-safe.
type memExporter struct {
	store  *memStore
	mu     sync.Mutex
	closed bool
}

type memStore struct {
	id   string
	mu   sync.Mutex
	msgs map[string][]byte // key -> body
}

var (
	_ exporters.Exporter = (*memExporter)(nil)
	_ exporters.Finder   = (*memExporter)(nil)
	_ exporters.Opener   = (*memExporter)(nil)
)

func (e *memExporter) check(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return fmt.Errorf("mem: closed")
	}
	return ctx.Err()
}

func (e *memExporter) Put(ctx context.Context, msg *exporters.Message) (exporters.Delivery, error) {
	if err := e.check(ctx); err != nil {
		return exporters.Delivery{}, fmt.Errorf("mem: put %s: %w", msg.Key, err)
	}
	var buf bytes.Buffer
	chunk := make([]byte, 4096)
	for off := int64(0); off < msg.Body.Size(); {
		if err := ctx.Err(); err != nil {
			return exporters.Delivery{}, fmt.Errorf("mem: put %s: %w", msg.Key, err)
		}
		n, err := msg.Body.ReadAt(chunk[:min(int64(len(chunk)), msg.Body.Size()-off)], off)
		buf.Write(chunk[:n])
		off += int64(n)
		if err == io.EOF && off < msg.Body.Size() {
			return exporters.Delivery{}, fmt.Errorf("mem: put %s: short body", msg.Key)
		}
		if err != nil && err != io.EOF {
			return exporters.Delivery{}, fmt.Errorf("mem: put %s: %w", msg.Key, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return exporters.Delivery{}, fmt.Errorf("mem: put %s: %w", msg.Key, err)
	}
	e.store.mu.Lock()
	defer e.store.mu.Unlock()
	if _, ok := e.store.msgs[msg.Key]; !ok {
		e.store.msgs[msg.Key] = buf.Bytes()
	}
	return exporters.Delivery{Ref: msg.Key}, nil
}

func (e *memExporter) Sync(ctx context.Context) error { return e.check(ctx) }

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
		return exporters.Delivery{}, false, err
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
		return nil, err
	}
	e.store.mu.Lock()
	defer e.store.mu.Unlock()
	data, ok := e.store.msgs[ref]
	if !ok {
		return nil, fmt.Errorf("mem: open %q: %w", ref, exporters.ErrNotFound)
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

func TestMemExporterConforms(t *testing.T) {
	var mu sync.Mutex
	stores := map[string]*memStore{}
	RunWithOptions(t, func(t *testing.T, dir string) exporters.Exporter {
		mu.Lock()
		defer mu.Unlock()
		s, ok := stores[dir]
		if !ok {
			s = &memStore{id: "mem:" + dir, msgs: map[string][]byte{}}
			stores[dir] = s
		}
		return &memExporter{store: s}
	}, &Options{Concurrent: true, Many: 100})
}
