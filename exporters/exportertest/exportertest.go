// Package exportertest is the conformance suite that every popmigrate
// exporter (Maildir, mbox, .eml, IMAP) runs, so that all destinations keep
// the same promises: every tricky message round-trips byte for byte, Put is
// idempotent per key, a new Exporter on the same destination finds what an
// earlier one stored, a cancelled or failed Put leaves nothing partial, a
// closed Exporter fails with exporters.ErrClosed, a read-only Exporter
// reads everything and changes nothing, a Resumable one resumes from its
// committed state with nothing lost and nothing twice, and a Lister lists
// each stored message once.
//
// An exporter's test calls Run with the one function that opens its
// destination:
//
//	func TestConformance(t *testing.T) {
//		exportertest.Run(t, func(t testing.TB, dir string, readOnly bool) (exporters.Exporter, error) {
//			return maildir.New(dir, &maildir.Options{ReadOnly: readOnly})
//		})
//	}
package exportertest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/internal/testmsg"
)

// Account is the account id of every message the suite writes.
const Account = "conformance@example.org"

// timeout bounds each subtest.
const timeout = 2 * time.Minute

// OpenFunc opens the destination of dir: for writing, or with readOnly for
// reading only, as verify opens it. dir is a folder of the destination's
// own (a destination that is not files, such as an IMAP folder, maps each
// dir to its own place), empty the first time; the suite opens the same
// dir again to reopen the destination, and for the read-only checks also
// passes a dir that does not exist, whose destination is missing. An
// error is returned as the constructor returns it (the Exporter is then
// ignored, so "return maildir.New(...)" is fine). OpenFunc must not call
// Resume: the suite does, as the pipeline does. The suite closes every
// Exporter it opens.
type OpenFunc func(t testing.TB, dir string, readOnly bool) (exporters.Exporter, error)

// Options tunes RunWithOptions. A nil *Options means the defaults.
type Options struct {
	// Count returns how many things the destination keeps for dir, all
	// of them: files (messages, temporary files, indexes), or messages in
	// a server's folder. When set, the suite checks that a failed or
	// cancelled Put, a repeated Put and a Put after Resume leave the
	// count unchanged. When nil, those checks go through Finder only.
	Count func(t testing.TB, dir string) int
	// Concurrent says that Put, Has, Open and Sync of one Exporter may be
	// called from several goroutines at once. The suite then also runs
	// Puts from several goroutines, some of the same key.
	Concurrent bool
	// Many is the number of messages of the "Many" subtest; 0 means 500.
	Many int
	// Refuses names the sample messages (testmsg names) that the
	// destination refuses by design, e.g. "nul-bytes" for IMAP, whose
	// APPEND cannot carry NUL bytes. RoundTrip checks that Put of each
	// fails with an *exporters.RejectedError, and round-trips the others.
	Refuses []string
	// Files says that the destination is files under dir and nothing
	// else: the suite then also reads it on a read-only bind mount of dir
	// (ReadOnlyMedia; skipped where the system allows no mount), where a
	// writer must fail to open it.
	Files bool
	// Snapshot, when set, describes what the destination of dir holds
	// outside the files under dir (an IMAP server's folders, messages,
	// flags and dates), with every place where a destination could be
	// created. The read-only subtests check that it does not change; the
	// files under dir are always compared.
	Snapshot func(t testing.TB, dir string) string
	// Where returns the text that every error about the destination of
	// dir must hold, so that a user can tell which destination failed:
	// its path or its ID. Nil means dir itself, which suits a destination
	// whose path is dir or inside it.
	Where func(dir string) string
}

// Run runs the conformance suite with the default Options.
func Run(t *testing.T, open OpenFunc) {
	t.Helper()
	RunWithOptions(t, open, nil)
}

// RunWithOptions runs the conformance suite against the destination that
// open opens. Two different dirs must give two different Properties().ID,
// and a read-only Exporter must have the Properties of a writer on the
// same dir.
//
// The exporter must implement exporters.Opener (every message is read back
// and compared byte for byte and by sha256). If it implements
// exporters.Finder, Has must find every message Put stored, with the same
// Ref, and must not find one whose Put failed. If it implements
// exporters.Streamer, the Stream subtests write every sample through a
// Stream and check that it is stored as a Put would store it, and that a
// stream aborted, of the wrong size, cancelled or open at Close leaves
// nothing. If it implements
// exporters.Resumable, the ResumeState subtest drives Resume and
// CommitState through runs that crash. A Resumable destination that is
// not a Finder (IMAP) relies on the pipeline's journal to know what it
// holds, so for it the suite plays that journal in every subtest: each
// Exporter it opens for writing is resumed with the state last committed
// (or saved) for its dir, the state is committed after the suite's Syncs,
// and, like the pipeline, the suite does not Put again a message whose
// delivery it committed. If it implements exporters.Lister, List must
// return each stored message once.
//
// A Put whose context is cancelled before Put returns must fail with an
// error wrapping the context's error, and a Put whose Body fails must fail
// with an error wrapping the Body's error. The errors of a short body, a
// closed Exporter and a read-only one must wrap exporters.ErrShortBody,
// ErrClosed and ErrReadOnly, start with the Kind and a colon, and name the
// destination (Options.Where).
func RunWithOptions(t *testing.T, open OpenFunc, opts *Options) {
	t.Helper()
	if opts == nil {
		opts = &Options{}
	}
	s := &suite{open: open, opts: opts, journals: map[string]*journal{}, attached: map[exporters.Exporter]*journal{}}
	s.probe(t)
	t.Run("Properties", s.testProperties)
	t.Run("RoundTrip", s.testRoundTrip)
	t.Run("Idempotent", s.testIdempotent)
	t.Run("Resume", s.testResume)
	t.Run("CancelBeforePut", s.testCancelBeforePut)
	t.Run("CancelMidCopy", s.testCancelMidCopy)
	t.Run("FailingBody", s.testFailingBody)
	t.Run("ShortBody", s.testShortBody)
	t.Run("SyncIdle", s.testSyncIdle)
	t.Run("Closed", s.testClosed)
	t.Run("ReadOnly", s.testReadOnly)
	t.Run("ReadOnlyMissing", s.testReadOnlyMissing)
	if opts.Files {
		t.Run("ReadOnlyMedia", s.testReadOnlyMedia)
	}
	if s.resumable {
		t.Run("ResumeState", s.testResumeState)
	}
	if s.lister {
		t.Run("ListEmpty", s.testListEmpty)
		t.Run("ListStored", s.testListStored)
		t.Run("ListCancelled", s.testListCancelled)
	}
	if s.streamer {
		t.Run("Stream", s.testStream)
		t.Run("StreamFailures", s.testStreamFailures)
	}
	t.Run("Many", s.testMany)
	if opts.Concurrent {
		t.Run("Concurrent", s.testConcurrent)
	}
}

type suite struct {
	open OpenFunc
	opts *Options

	// What the destination implements, from a first Exporter.
	finder, resumable, lister, streamer bool

	mu       sync.Mutex
	journals map[string]*journal             // by dir
	attached map[exporters.Exporter]*journal // the journal of each open Exporter
}

// journal is what the pipeline's journal keeps for one destination: the
// last state (recorded by Resume's save, or committed after a Sync) and
// the deliveries committed with each Sync.
type journal struct {
	mu        sync.Mutex
	state     string
	committed map[string]string // key -> Ref
	pending   map[string]string // Put since the last commit
}

func (j *journal) save(ctx context.Context, st string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.state = st
	return ctx.Err()
}

func (j *journal) last() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.state
}

// probe opens the destination once to learn its optional interfaces.
func (s *suite) probe(t *testing.T) {
	t.Helper()
	e := s.openRaw(t, t.TempDir(), false)
	_, s.finder = e.(exporters.Finder)
	_, s.resumable = e.(exporters.Resumable)
	_, s.lister = e.(exporters.Lister)
	_, s.streamer = e.(exporters.Streamer)
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// NewMessage returns the message with uidl in Account holding data, as
// the pipeline would hand it to an exporter.
func NewMessage(uidl string, data []byte) *exporters.Message {
	return &exporters.Message{
		Key:      exporters.MessageKey(Account, uidl),
		Account:  Account,
		UIDL:     uidl,
		Body:     bytes.NewReader(data),
		SHA256:   SHA256(data),
		Received: time.Date(2025, 3, 3, 10, 0, 0, 0, time.UTC),
	}
}

// SHA256 returns the lower-case hex sha256 of data.
func SHA256(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// ctx returns a context that ends with the test or after timeout.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	return c
}

// openRaw opens the destination in dir, failing the test on an error. The
// caller closes the Exporter.
func (s *suite) openRaw(t testing.TB, dir string, readOnly bool) exporters.Exporter {
	t.Helper()
	e, err := s.open(t, dir, readOnly)
	if err != nil {
		t.Fatalf("open %s (read-only %v): %v", dir, readOnly, err)
	}
	if e == nil {
		t.Fatal("open returned a nil Exporter")
	}
	return e
}

// openExporter opens the destination in dir for writing, resumes it from
// dir's journal if it is Resumable but not a Finder (see RunWithOptions),
// and closes it when the test ends, failing the test if Close fails.
func (s *suite) openExporter(t *testing.T, dir string) exporters.Exporter {
	t.Helper()
	e := s.openRaw(t, dir, false)
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if r, ok := e.(exporters.Resumable); ok && !s.finder {
		s.mu.Lock()
		j := s.journals[dir]
		if j == nil {
			j = &journal{committed: map[string]string{}, pending: map[string]string{}}
			s.journals[dir] = j
		}
		s.attached[e] = j
		s.mu.Unlock()
		if err := r.Resume(ctx(t), j.last(), j.save); err != nil {
			t.Fatalf("Resume(%q): %v", j.last(), err)
		}
	}
	return e
}

// openReadOnly opens the destination in dir for reading only and closes
// it when the test ends, failing the test if Close fails.
func (s *suite) openReadOnly(t *testing.T, dir string) exporters.Exporter {
	t.Helper()
	e := s.openRaw(t, dir, true)
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return e
}

// journalOf returns the journal of e, or nil.
func (s *suite) journalOf(e exporters.Exporter) *journal {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attached[e]
}

func (s *suite) count(t testing.TB, dir string) (int, bool) {
	if s.opts.Count == nil {
		return 0, false
	}
	return s.opts.Count(t, dir), true
}

// checkCount fails the test if the count of dir is no longer want.
func (s *suite) checkCount(t *testing.T, dir string, want int, what string) {
	t.Helper()
	if got, ok := s.count(t, dir); ok && got != want {
		t.Errorf("%s: the destination holds %d, want %d", what, got, want)
	}
}

// where returns what an error about the destination of dir must name.
func (s *suite) where(dir string) string {
	if s.opts.Where != nil {
		return s.opts.Where(dir)
	}
	return dir
}

// checkErr fails the test unless err wraps want, starts with kind and a
// colon, and names the destination of dir.
func (s *suite) checkErr(t *testing.T, what string, err, want error, kind, dir string) {
	t.Helper()
	switch {
	case !errors.Is(err, want):
		t.Errorf("%s: err = %v, want one wrapping %v", what, err, want)
	case !strings.HasPrefix(err.Error(), kind+": "):
		t.Errorf("%s: err = %q, want it to start with %q", what, err, kind+": ")
	case !strings.Contains(err.Error(), s.where(dir)):
		t.Errorf("%s: err = %q, want it to name %s", what, err, s.where(dir))
	}
}

// put stores msg and returns its Ref. A message whose delivery e's
// journal committed is not Put again (see RunWithOptions).
func (s *suite) put(t *testing.T, c context.Context, e exporters.Exporter, msg *exporters.Message) string {
	t.Helper()
	j := s.journalOf(e)
	if j != nil {
		j.mu.Lock()
		ref, ok := j.committed[msg.Key]
		j.mu.Unlock()
		if ok {
			return ref
		}
	}
	d, err := e.Put(c, msg)
	if err != nil {
		t.Fatalf("Put %s (uidl %q): %v", msg.Key, msg.UIDL, err)
	}
	if d.Ref == "" {
		t.Fatalf("Put %s (uidl %q): empty Ref", msg.Key, msg.UIDL)
	}
	if j != nil {
		j.mu.Lock()
		j.pending[msg.Key] = d.Ref
		j.mu.Unlock()
	}
	return d.Ref
}

// sync syncs e and, if e has a journal, commits to it the deliveries
// since the last commit and e's CommitState, as the pipeline does.
func (s *suite) sync(t *testing.T, c context.Context, e exporters.Exporter) {
	t.Helper()
	if err := e.Sync(c); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if j := s.journalOf(e); j != nil {
		st := e.(exporters.Resumable).CommitState()
		j.mu.Lock()
		maps.Copy(j.committed, j.pending)
		clear(j.pending)
		j.state = st
		j.mu.Unlock()
	}
}

// readBack returns the message at ref through the exporter's Opener.
func readBack(t *testing.T, c context.Context, e exporters.Exporter, ref string) []byte {
	t.Helper()
	o, ok := e.(exporters.Opener)
	if !ok {
		t.Fatalf("%T does not implement exporters.Opener: the suite reads every message back", e)
	}
	rc, err := o.Open(c, ref)
	if err != nil {
		t.Fatalf("Open %q: %v", ref, err)
	}
	data, err := io.ReadAll(rc)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("read %q: %v", ref, err)
	}
	return data
}

// checkStored checks that e holds msg's exact bytes at ref, and that Has
// (if e is a Finder) finds it there.
func checkStored(t *testing.T, c context.Context, e exporters.Exporter, msg *exporters.Message, want []byte, ref string) {
	t.Helper()
	if f, ok := e.(exporters.Finder); ok {
		d, found, err := f.Has(c, msg.Key)
		switch {
		case err != nil:
			t.Errorf("Has %s (uidl %q): %v", msg.Key, msg.UIDL, err)
		case !found:
			t.Errorf("Has %s (uidl %q) = not found, want %q", msg.Key, msg.UIDL, ref)
		case d.Ref != ref:
			t.Errorf("Has %s (uidl %q) = %q, want %q", msg.Key, msg.UIDL, d.Ref, ref)
		}
	}
	got := readBack(t, c, e, ref)
	if !bytes.Equal(got, want) {
		t.Errorf("message %q (uidl %q) read back differs: %s", ref, msg.UIDL, diff(got, want))
	}
	if sum := SHA256(got); sum != msg.SHA256 {
		t.Errorf("message %q (uidl %q): sha256 %s, want %s", ref, msg.UIDL, sum, msg.SHA256)
	}
}

// checkAbsent fails the test if e (a Finder) holds key.
func checkAbsent(t *testing.T, c context.Context, e exporters.Exporter, key string) {
	t.Helper()
	f, ok := e.(exporters.Finder)
	if !ok {
		return
	}
	d, found, err := f.Has(c, key)
	if err != nil {
		t.Errorf("Has %s: %v", key, err)
	} else if found {
		t.Errorf("Has %s = %q after a failed Put, want not found", key, d.Ref)
	}
}

// diff describes where got and want first differ.
func diff(got, want []byte) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	return fmt.Sprintf("%d bytes, want %d; first difference at offset %d", len(got), len(want), i)
}

func (s *suite) testProperties(t *testing.T) {
	dir1, dir2 := t.TempDir(), t.TempDir()
	e1 := s.openExporter(t, dir1)
	p := e1.Properties()
	if p.Kind == "" || p.ID == "" {
		t.Fatalf("Properties() = %+v, want a Kind and an ID", p)
	}
	if err := e1.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if again := s.openExporter(t, dir1).Properties(); again != p {
		t.Errorf("Properties() after reopening = %+v, want %+v", again, p)
	}
	if other := s.openExporter(t, dir2).Properties(); other.ID == p.ID {
		t.Errorf("two destinations share the ID %q", p.ID)
	}
}

// testRoundTrip stores every sample message, then reads each back from the
// same Exporter and from a new one.
func (s *suite) testRoundTrip(t *testing.T) {
	c := ctx(t)
	dir := t.TempDir()
	e := s.openExporter(t, dir)
	var samples []testmsg.Sample
	for _, sm := range testmsg.Load(t) {
		if !slices.Contains(s.opts.Refuses, sm.Name) {
			samples = append(samples, sm)
			continue
		}
		d, err := e.Put(c, NewMessage(sm.Name, sm.Data))
		var rej *exporters.RejectedError
		switch {
		case err == nil:
			t.Errorf("Put of %s succeeded (Ref %q), want it refused", sm.Name, d.Ref)
		case !errors.As(err, &rej):
			t.Errorf("Put of %s: err = %v, want an *exporters.RejectedError", sm.Name, err)
		}
	}
	msgs := make([]*exporters.Message, len(samples))
	refs := make([]string, len(samples))
	seen := map[string]string{}
	for i, sm := range samples {
		msgs[i] = NewMessage(sm.Name, sm.Data)
		refs[i] = s.put(t, c, e, msgs[i])
		if prev, dup := seen[refs[i]]; dup {
			t.Errorf("samples %q and %q share the Ref %q", prev, sm.Name, refs[i])
		}
		seen[refs[i]] = sm.Name
	}
	s.sync(t, c, e)
	for i, sm := range samples {
		t.Run(sm.Name, func(t *testing.T) {
			checkStored(t, c, e, msgs[i], sm.Data, refs[i])
		})
	}
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	e2 := s.openExporter(t, dir)
	for i, sm := range samples {
		if got := readBack(t, c, e2, refs[i]); !bytes.Equal(got, sm.Data) {
			t.Errorf("%s: read back by a new Exporter differs: %s", sm.Name, diff(got, sm.Data))
		}
	}
}

// testIdempotent puts one message twice, before and after Sync.
func (s *suite) testIdempotent(t *testing.T) {
	c := ctx(t)
	dir := t.TempDir()
	e := s.openExporter(t, dir)
	data := testmsg.Find(t, "dot-lines").Data
	msg := NewMessage("idempotent-1", data)
	ref := s.put(t, c, e, msg)
	n, _ := s.count(t, dir)
	for i, what := range []string{"second Put", "Put after Sync"} {
		if i == 1 {
			s.sync(t, c, e)
			n, _ = s.count(t, dir)
		}
		again := NewMessage("idempotent-1", data)
		if got := s.put(t, c, e, again); got != ref {
			t.Errorf("%s = %q, want the first Ref %q", what, got, ref)
		}
		s.checkCount(t, dir, n, what)
	}
	s.sync(t, c, e)
	checkStored(t, c, e, msg, data, ref)
}

// testResume stores a message with Sync and one without, closes the
// Exporter, and checks that a new one finds both and does not write them
// again.
func (s *suite) testResume(t *testing.T) {
	c := ctx(t)
	dir := t.TempDir()
	dataA := testmsg.Find(t, "from-lines").Data
	dataB := testmsg.Find(t, "trace-headers").Data
	e1 := s.openExporter(t, dir)
	refA := s.put(t, c, e1, NewMessage("resume-synced", dataA))
	s.sync(t, c, e1)
	refB := s.put(t, c, e1, NewMessage("resume-unsynced", dataB))
	if err := e1.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	n, _ := s.count(t, dir)

	e2 := s.openExporter(t, dir)
	checkStored(t, c, e2, NewMessage("resume-synced", dataA), dataA, refA)
	checkStored(t, c, e2, NewMessage("resume-unsynced", dataB), dataB, refB)
	if got := s.put(t, c, e2, NewMessage("resume-synced", dataA)); got != refA {
		t.Errorf("Put of a synced message after reopening = %q, want %q", got, refA)
	}
	if got := s.put(t, c, e2, NewMessage("resume-unsynced", dataB)); got != refB {
		t.Errorf("Put of an unsynced message after reopening = %q, want %q", got, refB)
	}
	s.checkCount(t, dir, n, "Put of stored messages after reopening")

	dataC := testmsg.Find(t, "plain-ascii").Data
	msgC := NewMessage("resume-new", dataC)
	refC := s.put(t, c, e2, msgC)
	s.sync(t, c, e2)
	checkStored(t, c, e2, msgC, dataC, refC)
}

func (s *suite) testCancelBeforePut(t *testing.T) {
	dir := t.TempDir()
	e := s.openExporter(t, dir)
	data := testmsg.Find(t, "plain-ascii").Data
	n, _ := s.count(t, dir)

	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	msg := NewMessage("cancel-before", data)
	_, err := e.Put(cancelled, msg)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with a cancelled context: err = %v, want one wrapping context.Canceled", err)
	}
	c := ctx(t)
	checkAbsent(t, c, e, msg.Key)
	s.checkCount(t, dir, n, "Put with a cancelled context")

	ref := s.put(t, c, e, NewMessage("cancel-before", data))
	s.sync(t, c, e)
	checkStored(t, c, e, msg, data, ref)
}

// cancelBody is a Body that cancels a context once its first ReadAt has
// returned data: the Put reading it is cancelled mid-copy.
type cancelBody struct {
	*bytes.Reader
	once   sync.Once
	cancel context.CancelFunc
}

func (b *cancelBody) ReadAt(p []byte, off int64) (int, error) {
	n, err := b.Reader.ReadAt(p, off)
	b.once.Do(b.cancel)
	return n, err
}

func (s *suite) testCancelMidCopy(t *testing.T) {
	dir := t.TempDir()
	e := s.openExporter(t, dir)
	data := testmsg.Find(t, "base64-attachment").Data
	n, _ := s.count(t, dir)

	mid, cancel := context.WithCancel(t.Context())
	defer cancel()
	msg := NewMessage("cancel-mid", data)
	msg.Body = &cancelBody{Reader: bytes.NewReader(data), cancel: cancel}
	_, err := e.Put(mid, msg)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Put cancelled mid-copy: err = %v, want one wrapping context.Canceled", err)
	}
	c := ctx(t)
	checkAbsent(t, c, e, msg.Key)
	s.checkCount(t, dir, n, "Put cancelled mid-copy")

	again := NewMessage("cancel-mid", data)
	ref := s.put(t, c, e, again)
	s.sync(t, c, e)
	checkStored(t, c, e, again, data, ref)
}

var errInjected = errors.New("exportertest: injected read error")

// failingBody is a Body whose bytes from failAt on cannot be read.
type failingBody struct {
	data   []byte
	failAt int64
}

func (b *failingBody) Size() int64 { return int64(len(b.data)) }

func (b *failingBody) ReadAt(p []byte, off int64) (int, error) {
	if off >= b.failAt {
		return 0, errInjected
	}
	n := copy(p, b.data[off:b.failAt])
	if n < len(p) {
		return n, errInjected
	}
	return n, nil
}

func (s *suite) testFailingBody(t *testing.T) {
	c := ctx(t)
	dir := t.TempDir()
	e := s.openExporter(t, dir)
	data := testmsg.Find(t, "long-line").Data
	n, _ := s.count(t, dir)
	for _, failAt := range []int64{0, int64(len(data) / 2), int64(len(data) - 1)} {
		msg := NewMessage(fmt.Sprintf("failing-%d", failAt), data)
		msg.Body = &failingBody{data: data, failAt: failAt}
		_, err := e.Put(c, msg)
		if !errors.Is(err, errInjected) {
			t.Errorf("Put of a body failing at %d: err = %v, want one wrapping the body's error", failAt, err)
		}
		checkAbsent(t, c, e, msg.Key)
		s.checkCount(t, dir, n, fmt.Sprintf("Put of a body failing at %d", failAt))
	}
	msg := NewMessage("failing-0", data)
	ref := s.put(t, c, e, msg)
	s.sync(t, c, e)
	checkStored(t, c, e, msg, data, ref)
}

// shortBody is a Body whose Size claims more bytes than it holds.
type shortBody struct {
	*bytes.Reader
	size int64
}

func (b *shortBody) Size() int64 { return b.size }

func (s *suite) testShortBody(t *testing.T) {
	c := ctx(t)
	dir := t.TempDir()
	e := s.openExporter(t, dir)
	data := testmsg.Find(t, "plain-ascii").Data
	n, _ := s.count(t, dir)
	msg := NewMessage("short", data)
	msg.Body = &shortBody{Reader: bytes.NewReader(data), size: int64(len(data)) + 100}
	d, err := e.Put(c, msg)
	if err == nil {
		t.Fatalf("Put of a body shorter than its Size succeeded (Ref %q)", d.Ref)
	}
	s.checkErr(t, "Put of a body shorter than its Size", err, exporters.ErrShortBody, e.Properties().Kind, dir)
	if !strings.Contains(err.Error(), msg.Key) {
		t.Errorf("Put of a body shorter than its Size: err = %q, want it to name the message %s", err, msg.Key)
	}
	checkAbsent(t, c, e, msg.Key)
	s.checkCount(t, dir, n, "Put of a short body")
}

func (s *suite) testSyncIdle(t *testing.T) {
	c := ctx(t)
	e := s.openExporter(t, t.TempDir())
	for i := range 2 {
		if err := e.Sync(c); err != nil {
			t.Fatalf("Sync %d with nothing to sync: %v", i+1, err)
		}
	}
	s.put(t, c, e, NewMessage("sync-idle", []byte("Subject: x\n\nx\n")))
	for i := range 2 {
		if err := e.Sync(c); err != nil {
			t.Fatalf("Sync %d after a Put: %v", i+1, err)
		}
	}
}

// testClosed closes an Exporter twice (the second Close returns nil) and
// checks that every method then fails with exporters.ErrClosed.
func (s *suite) testClosed(t *testing.T) {
	c := ctx(t)
	dir := t.TempDir()
	e := s.openExporter(t, dir)
	ref := s.put(t, c, e, NewMessage("close-twice", []byte("Subject: x\n\nx\n")))
	s.sync(t, c, e)
	if err := e.Close(); err != nil {
		t.Fatalf("first Close: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("second Close = %v, want nil", err)
	}
	kind := e.Properties().Kind
	d, err := e.Put(c, NewMessage("after-close", []byte("x\n")))
	if err == nil {
		t.Errorf("Put after Close succeeded (Ref %q), want an error", d.Ref)
	} else {
		s.checkErr(t, "Put after Close", err, exporters.ErrClosed, kind, dir)
	}
	s.checkErr(t, "Sync after Close", e.Sync(c), exporters.ErrClosed, kind, dir)
	if f, ok := e.(exporters.Finder); ok {
		_, _, err := f.Has(c, NewMessage("close-twice", nil).Key)
		s.checkErr(t, "Has after Close", err, exporters.ErrClosed, kind, dir)
	}
	if o, ok := e.(exporters.Opener); ok {
		rc, err := o.Open(c, ref)
		if err == nil {
			rc.Close()
		}
		s.checkErr(t, "Open after Close", err, exporters.ErrClosed, kind, dir)
	}
	if l, ok := e.(exporters.Lister); ok {
		_, err := l.List(c, Account)
		s.checkErr(t, "List after Close", err, exporters.ErrClosed, kind, dir)
	}
	if r, ok := e.(exporters.Resumable); ok {
		saved := false
		err := r.Resume(c, "", func(context.Context, string) error { saved = true; return nil })
		s.checkErr(t, "Resume after Close", err, exporters.ErrClosed, kind, dir)
		if saved {
			t.Error("Resume after Close saved a state")
		}
	}
}

// manyMessage returns the i-th message of the Many and Concurrent
// subtests: small, all different, some with tricky lines.
func manyMessage(prefix string, i int) *exporters.Message {
	var b strings.Builder
	fmt.Fprintf(&b, "Subject: %s %d\nMessage-ID: <%s-%d@example.org>\n\n", prefix, i, prefix, i)
	for j := range i % 13 {
		fmt.Fprintf(&b, "line %d of message %d\n", j, i)
		if j%5 == 0 {
			b.WriteString(".\nFrom here\n")
		}
	}
	return NewMessage(fmt.Sprintf("%s-%d", prefix, i), []byte(b.String()))
}

func messageBytes(t *testing.T, msg *exporters.Message) []byte {
	t.Helper()
	data, err := io.ReadAll(exporters.NewBodyReader(msg.Body))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func (s *suite) testMany(t *testing.T) {
	c := ctx(t)
	n := s.opts.Many
	if n <= 0 {
		n = 500
	}
	e := s.openExporter(t, t.TempDir())
	msgs := make([]*exporters.Message, n)
	refs := make([]string, n)
	seen := map[string]int{}
	for i := range n {
		msgs[i] = manyMessage("many", i)
		refs[i] = s.put(t, c, e, msgs[i])
		if j, dup := seen[refs[i]]; dup {
			t.Fatalf("messages %d and %d share the Ref %q", j, i, refs[i])
		}
		seen[refs[i]] = i
	}
	s.sync(t, c, e)
	for i := range n {
		checkStored(t, c, e, msgs[i], messageBytes(t, msgs[i]), refs[i])
		if t.Failed() {
			t.Fatalf("stopping at message %d of %d", i, n)
		}
	}
}

// testConcurrent puts messages from several goroutines at once; every
// goroutine also puts the same shared messages.
func (s *suite) testConcurrent(t *testing.T) {
	const workers, own, shared = 4, 40, 10
	c := ctx(t)
	e := s.openExporter(t, t.TempDir())
	sharedRefs := make([][]string, workers)
	ownRefs := make([][]string, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range own + shared {
				var msg *exporters.Message
				if i < shared {
					msg = manyMessage("shared", i)
				} else {
					msg = manyMessage(fmt.Sprintf("worker%d", w), i)
				}
				d, err := e.Put(c, msg)
				if err != nil {
					t.Errorf("worker %d: Put %q: %v", w, msg.UIDL, err)
					return
				}
				if i < shared {
					sharedRefs[w] = append(sharedRefs[w], d.Ref)
				} else {
					ownRefs[w] = append(ownRefs[w], d.Ref)
				}
				if i%16 == 15 {
					if err := e.Sync(c); err != nil {
						t.Errorf("worker %d: Sync: %v", w, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	s.sync(t, c, e)
	for w := range workers {
		for i, ref := range sharedRefs[w] {
			if ref != sharedRefs[0][i] {
				t.Errorf("shared message %d: worker %d got Ref %q, worker 0 got %q", i, w, ref, sharedRefs[0][i])
			}
		}
		for i, ref := range ownRefs[w] {
			msg := manyMessage(fmt.Sprintf("worker%d", w), shared+i)
			checkStored(t, c, e, msg, messageBytes(t, msg), ref)
		}
	}
	for i, ref := range sharedRefs[0] {
		msg := manyMessage("shared", i)
		checkStored(t, c, e, msg, messageBytes(t, msg), ref)
	}
}
