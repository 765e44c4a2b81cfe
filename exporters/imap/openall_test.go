package imap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/exportertest"
)

// openAllResult is what OpenAll passed to fn for one index.
type openAllResult struct {
	data  []byte
	err   error // the error fn was given
	rerr  error // the error reading the copy gave
	calls int
}

// openAll calls e.OpenAll and collects what fn got, by index.
func openAll(ctx context.Context, e *Exporter, refs []string, hook func(i int)) ([]openAllResult, error) {
	out := make([]openAllResult, len(refs))
	var mu sync.Mutex
	err := e.OpenAll(ctx, refs, func(i int, r io.Reader, err error) error {
		var data []byte
		var rerr error
		if r != nil {
			data, rerr = io.ReadAll(r)
		}
		mu.Lock()
		out[i].calls++
		out[i].data, out[i].err, out[i].rerr = data, err, rerr
		mu.Unlock()
		if hook != nil {
			hook(i)
		}
		return nil
	})
	return out, err
}

// bigMsgN is message i with a body of about size bytes.
func bigMsgN(i, size int) *exporters.Message {
	body := bytes.Repeat(fmt.Appendf(nil, "line of message %d\n", i), size/20+1)
	return exportertest.NewMessage(fmt.Sprintf("b%d", i),
		append(fmt.Appendf(nil, "Message-ID: <b%d@example.org>\nSubject: %d\n\n", i, i), body...))
}

// putMany stores n messages and returns their refs and bodies.
func putMany(t *testing.T, e *Exporter, n, size int) ([]string, [][]byte) {
	t.Helper()
	var refs []string
	var bodies [][]byte
	for i := range n {
		m := bigMsgN(i, size)
		refs = append(refs, mustPut(t, e, m))
		bodies = append(bodies, messageBytes(m))
	}
	if err := e.Sync(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	return refs, bodies
}

// TestOpenAll reads a set back with a UID missing in the middle, a ref
// of another UIDVALIDITY, one that does not parse and one listed twice:
// every index is passed once, with what Open gives for it.
func TestOpenAll(t *testing.T) {
	srv := startMem(t, memConfig{})
	o := srv.options("All")
	o.Conns = 3
	e := newExporter(t, o)
	refs, bodies := putMany(t, e, 450, 3000) // more than fetchBatch per connection
	uv := e.UIDValidity()
	missing := fmt.Sprintf("%d/%d", uv, refUID(t, refs[len(refs)-1])+100)
	list := append([]string(nil), refs[:200]...)
	list = append(list, missing, fmt.Sprintf("%d/%d", uv+1, refUID(t, refs[0])), "not-a-ref", refs[7])
	list = append(list, refs[200:]...)
	got, err := openAll(testCtx(t), e, list, nil)
	if err != nil {
		t.Fatalf("OpenAll: %v", err)
	}
	want := map[string][]byte{}
	for i, r := range refs {
		want[r] = bodies[i]
	}
	for i, ref := range list {
		g := got[i]
		if g.calls != 1 {
			t.Errorf("%s: fn called %d times, want once", ref, g.calls)
			continue
		}
		switch {
		case want[ref] != nil:
			if g.err != nil || g.rerr != nil || !bytes.Equal(g.data, want[ref]) {
				t.Errorf("%s: got %d bytes, %v, %v; want the message as stored", ref, len(g.data), g.err, g.rerr)
			}
		case ref == "not-a-ref":
			if !errors.Is(g.err, ErrInvalidRef) {
				t.Errorf("%s: %v, want ErrInvalidRef", ref, g.err)
			}
		default:
			_, openErr := e.Open(testCtx(t), ref)
			if !errors.Is(g.err, exporters.ErrNotFound) || openErr == nil || g.err.Error() != openErr.Error() {
				t.Errorf("%s: %v, want ErrNotFound as Open says it: %v", ref, g.err, openErr)
			}
		}
	}
	// An expunged message in the middle of a set is missing too.
	cl := srv.client(t)
	defer cl.Close()
	if _, err := cl.Select("All", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	gone := refUID(t, refs[100])
	if err := cl.Store(imap.UIDSetNum(gone), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := cl.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	got, err = openAll(testCtx(t), e, refs[90:110], nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, g := range got {
		ref := refs[90+k]
		if ref == refs[100] {
			if !errors.Is(g.err, exporters.ErrNotFound) {
				t.Errorf("expunged %s: %v, want ErrNotFound", ref, g.err)
			}
		} else if !bytes.Equal(g.data, bodies[90+k]) {
			t.Errorf("%s: read back %d bytes, %v", ref, len(g.data), g.err)
		}
	}
}

// TestOpenAllUIDValidity: after the folder is deleted and created again,
// every old ref is missing, as Open says.
func TestOpenAllUIDValidity(t *testing.T) {
	srv := startMem(t, memConfig{})
	o := srv.options("Again")
	e1 := newExporter(t, o)
	refs, _ := putMany(t, e1, 5, 100)
	e1.Close()
	cl := srv.client(t)
	defer cl.Close()
	if err := cl.Delete("Again").Wait(); err != nil {
		t.Fatal(err)
	}
	e2 := newExporter(t, o)
	putMany(t, e2, 5, 100) // the same UIDs again, in another UIDVALIDITY
	if e2.UIDValidity() == e1.UIDValidity() {
		t.Fatal("the re-created folder kept its UIDVALIDITY")
	}
	got, err := openAll(testCtx(t), e2, refs, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, g := range got {
		if !errors.Is(g.err, exporters.ErrNotFound) || !strings.Contains(g.err.Error(), "UIDVALIDITY is now") {
			t.Errorf("%s: %v, want ErrNotFound naming the new UIDVALIDITY", refs[i], g.err)
		}
	}
}

// TestOpenAllCancel: a context cancelled in the middle of a set ends
// OpenAll with its error, and the Exporter still reads afterwards.
func TestOpenAllCancel(t *testing.T) {
	srv := startMem(t, memConfig{})
	e := newExporter(t, srv.options("Cancel"))
	refs, bodies := putMany(t, e, 300, 2000)
	ctx, cancel := context.WithCancel(testCtx(t))
	var mu sync.Mutex
	n := 0
	got, err := openAll(ctx, e, refs, func(int) {
		mu.Lock()
		defer mu.Unlock()
		if n++; n == 20 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("OpenAll: %v, want context.Canceled", err)
	}
	called := 0
	for _, g := range got {
		called += g.calls
	}
	if called >= len(refs) {
		t.Errorf("fn called for all %d refs after the cancel", called)
	}
	if data := mustOpen(t, e, refs[299]); !bytes.Equal(data, bodies[299]) {
		t.Errorf("Open after the cancel read %d bytes", len(data))
	}
}

// TestOpenAllConnectionDropped: a connection cut in the middle of a FETCH
// answer fails the copy that was streaming (at most one), and the rest
// are read on a new connection.
func TestOpenAllConnectionDropped(t *testing.T) {
	srv := startMem(t, memConfig{})
	var f faults
	o := srv.options("Drop")
	o.Dial, o.Conns = f.dial, 1
	e := newExporter(t, o)
	refs, bodies := putMany(t, e, 150, 4000)
	dials := f.dials.Load()
	f.cutFetch.Store(200_000) // about 50 messages in
	got, err := openAll(testCtx(t), e, refs, nil)
	if err != nil {
		t.Fatalf("OpenAll: %v", err)
	}
	if f.dials.Load() == dials {
		t.Fatal("the connection was not cut (no new connection)")
	}
	failed := 0
	for i, g := range got {
		switch {
		case g.calls != 1:
			t.Errorf("%s: fn called %d times", refs[i], g.calls)
		case g.err != nil:
			t.Errorf("%s: %v, want a reader", refs[i], g.err)
		case g.rerr != nil:
			failed++
			if !strings.Contains(g.rerr.Error(), refs[i]) {
				t.Errorf("%s: read error %v does not name the ref", refs[i], g.rerr)
			}
		case !bytes.Equal(g.data, bodies[i]):
			t.Errorf("%s: read back %d bytes, want %d", refs[i], len(g.data), len(bodies[i]))
		}
	}
	if failed > 1 {
		t.Errorf("%d copies failed, want at most the one that was streaming", failed)
	}
}

// TestOpenAllFnError: an error of fn ends OpenAll, which returns it.
func TestOpenAllFnError(t *testing.T) {
	srv := startMem(t, memConfig{})
	e := newExporter(t, srv.options("FnErr"))
	refs, bodies := putMany(t, e, 50, 1000)
	stop := errors.New("stop")
	err := e.OpenAll(testCtx(t), refs, func(i int, r io.Reader, err error) error { return stop })
	if err != stop {
		t.Fatalf("OpenAll: %v, want fn's error as it is", err)
	}
	if data := mustOpen(t, e, refs[49]); !bytes.Equal(data, bodies[49]) {
		t.Errorf("Open after fn's error read %d bytes", len(data))
	}
}

// TestOpenAllShortListFewConnections: a list of fetchShareMin messages or
// fewer is read on the connection the Exporter has, not on new ones (each
// a login); a long list still gets every connection.
func TestOpenAllShortListFewConnections(t *testing.T) {
	srv := startMem(t, memConfig{})
	refs, bodies := putMany(t, newExporter(t, srv.options("Few")), 3*fetchShareMin+10, 2000)
	var f faults
	o := srv.options("Few")
	o.Dial, o.Conns, o.ReadOnly = f.dial, 3, true
	e := newExporter(t, o)
	check := func(list []string, hook func(int)) {
		t.Helper()
		got, err := openAll(testCtx(t), e, list, hook)
		if err != nil {
			t.Fatalf("OpenAll: %v", err)
		}
		for k, g := range got {
			if g.calls != 1 || g.err != nil || g.rerr != nil || !bytes.Equal(g.data, bodies[k]) {
				t.Fatalf("%s: %d calls, %d bytes, %v, %v; want the message as stored", list[k], g.calls, len(g.data), g.err, g.rerr)
			}
		}
	}
	dials := f.dials.Load()
	check(refs[:fetchShareMin], nil) // one share: one connection
	if n := f.dials.Load() - dials; n != 0 {
		t.Errorf("a list of %d messages opened %d new connections, want none (the Exporter's own)", fetchShareMin, n)
	}
	// Three shares and more: every connection. Each share's first message
	// waits (5 s at most) until every share is being read, so that no
	// share is read on a connection another one has finished with.
	share := (len(refs) + o.Conns - 1) / o.Conns
	var started atomic.Int32
	all := make(chan struct{})
	check(refs, func(i int) {
		if i%share != 0 {
			return
		}
		if started.Add(1) == int32(o.Conns) {
			close(all)
		}
		select {
		case <-all:
		case <-time.After(5 * time.Second):
		}
	})
	if n := f.dials.Load(); n != int32(o.Conns) {
		t.Errorf("after a list of %d messages the Exporter dialled %d connections in all, want %d", len(refs), n, o.Conns)
	}
}
