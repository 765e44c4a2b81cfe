package quarantine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/exportertest"
)

// fake is a destination that refuses every message holding "REJECT" (an
// *exporters.RejectedError, wrapped as a destination wraps its errors),
// fails on one holding "BROKEN" (a failure of the destination) and stores
// the others. With "KEPT" it returns an *exporters.QuarantinedError, as a
// destination that keeps its own quarantine does.
type fake struct {
	mu     sync.Mutex
	stored map[string][]byte
	closed int
}

func newFake() *fake { return &fake{stored: map[string][]byte{}} }

func (f *fake) Put(ctx context.Context, msg *exporters.Message) (exporters.Delivery, error) {
	data, err := io.ReadAll(exporters.NewBodyReader(msg.Body))
	if err != nil {
		return exporters.Delivery{}, err
	}
	switch {
	case bytes.Contains(data, []byte("REJECT")):
		return exporters.Delivery{}, fmt.Errorf("fake: put %s: %w", msg.Key,
			&exporters.RejectedError{Key: msg.Key, Reason: "the fake refuses REJECT"})
	case bytes.Contains(data, []byte("BROKEN")):
		return exporters.Delivery{}, fmt.Errorf("fake: put %s: the destination is broken", msg.Key)
	case bytes.Contains(data, []byte("KEPT")):
		rej := &exporters.RejectedError{Key: msg.Key, Reason: "kept by the fake"}
		return exporters.Delivery{}, &exporters.QuarantinedError{Key: msg.Key, Path: "/elsewhere/" + msg.Key + ".eml", Reason: rej.Reason, Err: rej}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stored[msg.Key] = data
	return exporters.Delivery{Ref: msg.Key}, nil
}

func (f *fake) Sync(context.Context) error { return nil }

func (f *fake) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed++
	return nil
}

func (f *fake) Properties() exporters.Properties {
	return exporters.Properties{Kind: "fake", ID: "fake:1"}
}

func (f *fake) Has(context.Context, string) (exporters.Delivery, bool, error) {
	return exporters.Delivery{Ref: "has"}, true, nil
}

func (f *fake) Open(context.Context, string) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader("opened")), nil
}

func (f *fake) Resume(context.Context, string, func(context.Context, string) error) error {
	return errors.New("resumed")
}

func (f *fake) CommitState() string { return "state" }

func (f *fake) List(context.Context, string) ([]exporters.Listed, error) {
	return []exporters.Listed{{Key: "listed"}}, nil
}

func msgOf(uidl, body string) *exporters.Message {
	return exportertest.NewMessage(uidl, []byte(body))
}

// kept returns the *exporters.QuarantinedError err wraps, failing the test
// when there is none.
func kept(t *testing.T, err error) *exporters.QuarantinedError {
	t.Helper()
	var q *exporters.QuarantinedError
	if !errors.As(err, &q) {
		t.Fatalf("err = %v, want one wrapping an *exporters.QuarantinedError", err)
	}
	return q
}

// checkFile checks that path holds want with mode 0600, in a folder of
// mode 0700 with no temporary file left.
func checkFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s holds %q, want %q", path, got, want)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: %v, mode %v; want 0600", path, err, fi.Mode().Perm())
	}
	dir := filepath.Dir(path)
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("%s: %v, mode %v; want 0700", dir, err, fi.Mode().Perm())
	}
	ents, _ := os.ReadDir(dir)
	for _, en := range ents {
		if strings.HasSuffix(en.Name(), ".tmp") {
			t.Errorf("temporary file %s left in the quarantine folder", en.Name())
		}
	}
}

func TestWrapKeepsRejectedMessages(t *testing.T) {
	c := t.Context()
	dir := filepath.Join(t.TempDir(), "q", "uarantine")
	inner := newFake()
	e := Wrap(inner, dir)

	good := msgOf("good", "Subject: good\n\nfine\n")
	if d, err := e.Put(c, good); err != nil || d.Ref != good.Key {
		t.Fatalf("Put of a message the destination takes = %+v, %v", d, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the quarantine folder exists before anything was refused: %v", err)
	}

	bad := msgOf("bad", "Subject: bad\n\nREJECT me\n")
	d, err := e.Put(c, bad)
	if d.Ref != "" {
		t.Errorf("Put of a refused message returned Ref %q", d.Ref)
	}
	q := kept(t, err)
	if q.Key != bad.Key || q.Path != filepath.Join(dir, bad.Key+Suffix) || q.Reason != "the fake refuses REJECT" {
		t.Errorf("QuarantinedError = %+v", q)
	}
	var rej *exporters.RejectedError
	if !errors.As(err, &rej) || rej.Key != bad.Key {
		t.Errorf("err = %v, want it to wrap the *exporters.RejectedError", err)
	}
	if !strings.Contains(err.Error(), "fake: put "+bad.Key) || !strings.HasSuffix(err.Error(), "; kept in "+q.Path) {
		t.Errorf("err = %q, want the destination's error and where the message is kept", err)
	}
	checkFile(t, q.Path, []byte("Subject: bad\n\nREJECT me\n"))

	// The same message again (another run, another destination) replaces
	// the file: one copy.
	if _, err := e.Put(c, msgOf("bad", "Subject: bad\n\nREJECT me\n")); kept(t, err).Path != q.Path {
		t.Errorf("second quarantine of the same key went elsewhere")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("the quarantine folder holds %d files, want 1", len(ents))
	}

	// A failure of the destination is the destination's.
	_, err = e.Put(c, msgOf("broken", "Subject: x\n\nBROKEN\n"))
	if err == nil || errors.As(err, &rej) || errors.As(err, new(*exporters.QuarantinedError)) {
		t.Errorf("Put when the destination fails = %v, want its plain error", err)
	}
	// A destination that keeps its own copy is not quarantined twice.
	_, err = e.Put(c, msgOf("kept", "Subject: x\n\nKEPT\n"))
	if q := kept(t, err); q.Path != "/elsewhere/"+exporters.MessageKey(exportertest.Account, "kept")+".eml" {
		t.Errorf("an already quarantined message: %+v", q)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("the quarantine folder holds %d files, want 1", len(ents))
	}
	if len(inner.stored) != 1 {
		t.Errorf("the destination holds %d messages, want 1", len(inner.stored))
	}

	if err := e.Sync(c); err != nil {
		t.Errorf("Sync: %v", err)
	}
	if e.Properties() != inner.Properties() {
		t.Errorf("Properties = %+v, want the destination's", e.Properties())
	}
	for i := range 2 {
		if err := e.Close(); err != nil {
			t.Errorf("Close %d: %v", i+1, err)
		}
	}
	if inner.closed == 0 {
		t.Error("Close did not close the destination")
	}
	if _, err := e.Put(c, msgOf("late", "REJECT\n")); errors.As(err, new(*exporters.QuarantinedError)) || !errors.As(err, &rej) {
		t.Errorf("Put of a refused message after Close = %v, want the rejection, not kept", err)
	}
}

// When the message cannot be kept, Put fails with the rejection and why,
// and no QuarantinedError: the caller must not think it safe.
func TestWrapKeepFailures(t *testing.T) {
	c := t.Context()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, dir string
		msg       *exporters.Message
		want      string
	}{
		{"folder under a file", filepath.Join(file, "q"), msgOf("a", "REJECT\n"), "quarantine failed"},
		{"no folder", "", msgOf("a", "REJECT\n"), "quarantine failed"},
		{"invalid key", t.TempDir(), &exporters.Message{Key: "../../etc/passwd", Body: strings.NewReader("REJECT\n")}, "not quarantined: invalid message key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := Wrap(newFake(), tc.dir)
			defer e.Close()
			_, err := e.Put(c, tc.msg)
			var rej *exporters.RejectedError
			if !errors.As(err, &rej) || errors.As(err, new(*exporters.QuarantinedError)) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want the rejection, %q and no QuarantinedError", err, tc.want)
			}
		})
	}
	t.Run("failing body", func(t *testing.T) {
		dir := t.TempDir()
		f := &Folder{dir: dir}
		defer f.Close()
		m := msgOf("short", "REJECT\n")
		m.Body = shortBody{strings.NewReader("REJECT\n")}
		err := f.Keep(c, m, &exporters.RejectedError{Key: m.Key, Reason: "x"})
		if !errors.Is(err, exporters.ErrShortBody) || errors.As(err, new(*exporters.QuarantinedError)) {
			t.Errorf("Keep of a short body = %v, want ErrShortBody and no QuarantinedError", err)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("the quarantine folder holds %d files after a failed Keep", len(ents))
		}
	})
}

// shortBody claims 100 bytes more than it holds.
type shortBody struct{ *strings.Reader }

func (b shortBody) Size() int64 { return b.Reader.Size() + 100 }

// TestOpen: Open creates the folder at once (0700) and removes temporary
// files a crash left more than a day ago, keeping younger ones.
func TestOpen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "q")
	f, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("Open: %v, mode %v; want a 0700 folder", err, fi.Mode().Perm())
	}
	if f.Dir() != dir {
		t.Errorf("Dir = %q, want %q", f.Dir(), dir)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	old, young := filepath.Join(dir, ".k.1.tmp"), filepath.Join(dir, ".k.2.tmp")
	for _, p := range []string{old, young} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	long := time.Now().Add(-StaleTmpAge - time.Hour)
	if err := os.Chtimes(old, long, long); err != nil {
		t.Fatal(err)
	}
	f, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := os.Stat(old); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a stale temporary file survived Open: %v", err)
	}
	if _, err := os.Stat(young); err != nil {
		t.Errorf("a young temporary file: %v", err)
	}
	if _, err := Open(filepath.Join(young, "q")); err == nil {
		t.Error("Open of a folder under a file succeeded")
	}
}

// TestWrapConcurrent keeps refused messages from several goroutines at
// once (run with -race).
func TestWrapConcurrent(t *testing.T) {
	dir := t.TempDir()
	e := Wrap(newFake(), dir)
	defer e.Close()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 10 {
				m := msgOf(fmt.Sprintf("%d-%d", w, i%5), fmt.Sprintf("Subject: %d\n\nREJECT %d\n", i%5, w))
				if _, err := e.Put(t.Context(), m); !errors.As(err, new(*exporters.QuarantinedError)) {
					t.Errorf("Put: %v", err)
				}
			}
		})
	}
	wg.Wait()
	if ents, _ := os.ReadDir(dir); len(ents) != 20 {
		t.Errorf("the quarantine folder holds %d files, want 20", len(ents))
	}
}

// TestWrapForwardsOptionalInterfaces wraps destinations with every set of
// the optional interfaces: the wrapper has exactly the inner one's, each
// answered by the inner destination, and Unwrap returns it.
func TestWrapForwardsOptionalInterfaces(t *testing.T) {
	full := newFake()
	for mask := range 16 {
		inner := only(full, mask)
		e := Wrap(inner, t.TempDir())
		if u, ok := e.(interface{ Unwrap() exporters.Exporter }); !ok || u.Unwrap() != inner {
			t.Errorf("mask %04b: Unwrap does not return the wrapped destination", mask)
		}
		c := t.Context()
		for bit, check := range []func() (bool, bool){
			func() (bool, bool) {
				f, ok := e.(exporters.Finder)
				_, want := inner.(exporters.Finder)
				if ok {
					d, _, _ := f.Has(c, "k")
					ok = d.Ref == "has"
				}
				return ok, want
			},
			func() (bool, bool) {
				o, ok := e.(exporters.Opener)
				_, want := inner.(exporters.Opener)
				if ok {
					rc, _ := o.Open(c, "r")
					b, _ := io.ReadAll(rc)
					ok = string(b) == "opened"
				}
				return ok, want
			},
			func() (bool, bool) {
				r, ok := e.(exporters.Resumable)
				_, want := inner.(exporters.Resumable)
				if ok {
					ok = r.CommitState() == "state" && r.Resume(c, "", nil).Error() == "resumed"
				}
				return ok, want
			},
			func() (bool, bool) {
				l, ok := e.(exporters.Lister)
				_, want := inner.(exporters.Lister)
				if ok {
					got, _ := l.List(c, "a")
					ok = len(got) == 1 && got[0].Key == "listed"
				}
				return ok, want
			},
		} {
			if got, want := check(); got != want {
				t.Errorf("mask %04b: optional interface %d forwarded %v, want %v", mask, bit, got, want)
			}
		}
		e.Close()
	}
}

// only returns f with the optional interfaces of mask (1 Finder, 2
// Opener, 4 Resumable, 8 Lister) and no other: its Exporter part is an
// interface value of f, which hides f's other methods.
func only(f *fake, mask int) exporters.Exporter {
	type (
		E = exporters.Exporter
		F = exporters.Finder
		O = exporters.Opener
		R = exporters.Resumable
		L = exporters.Lister
	)
	switch mask {
	case 0:
		return struct {
			E
		}{struct{ E }{f}}
	case 1:
		return struct {
			E
			F
		}{struct{ E }{f}, f}
	case 2:
		return struct {
			E
			O
		}{struct{ E }{f}, f}
	case 3:
		return struct {
			E
			F
			O
		}{struct{ E }{f}, f, f}
	case 4:
		return struct {
			E
			R
		}{struct{ E }{f}, f}
	case 5:
		return struct {
			E
			F
			R
		}{struct{ E }{f}, f, f}
	case 6:
		return struct {
			E
			O
			R
		}{struct{ E }{f}, f, f}
	case 7:
		return struct {
			E
			F
			O
			R
		}{struct{ E }{f}, f, f, f}
	case 8:
		return struct {
			E
			L
		}{struct{ E }{f}, f}
	case 9:
		return struct {
			E
			F
			L
		}{struct{ E }{f}, f, f}
	case 10:
		return struct {
			E
			O
			L
		}{struct{ E }{f}, f, f}
	case 11:
		return struct {
			E
			F
			O
			L
		}{struct{ E }{f}, f, f, f}
	case 12:
		return struct {
			E
			R
			L
		}{struct{ E }{f}, f, f}
	case 13:
		return struct {
			E
			F
			R
			L
		}{struct{ E }{f}, f, f, f}
	case 14:
		return struct {
			E
			O
			R
			L
		}{struct{ E }{f}, f, f, f}
	case 15:
		return struct {
			E
			F
			O
			R
			L
		}{struct{ E }{f}, f, f, f, f}
	}
	panic("mask out of range")
}

// streamer is a destination that takes streams (the fake's Put, and a
// Stream that records what it was asked).
type streamer struct {
	*fake
	asked []string
}

func (s *streamer) Stream(_ context.Context, account, key string) (exporters.Stream, exporters.Delivery, error) {
	s.asked = append(s.asked, account+"/"+key)
	return nil, exporters.Delivery{Ref: "held-" + key}, nil
}

// The wrapper passes streams through to a destination that takes them,
// and refuses them with exporters.ErrNoStream for one that does not, so
// that the caller Puts (and the quarantine sees every Put).
func TestWrapStream(t *testing.T) {
	inner := &streamer{fake: newFake()}
	e := Wrap(inner, t.TempDir())
	defer e.Close()
	st, d, err := e.(exporters.Streamer).Stream(t.Context(), "a1", "k1")
	if st != nil || d.Ref != "held-k1" || err != nil || !slices.Equal(inner.asked, []string{"a1/k1"}) {
		t.Errorf("Stream through the wrapper = %v, %q, %v (asked %v); want the destination's answer", st, d.Ref, err, inner.asked)
	}
	plain := Wrap(newFake(), t.TempDir())
	defer plain.Close()
	if st, _, err := plain.(exporters.Streamer).Stream(t.Context(), "a2", "k2"); st != nil || !errors.Is(err, exporters.ErrNoStream) {
		t.Errorf("Stream of a destination without streams = %v, %v; want exporters.ErrNoStream", st, err)
	}
}
