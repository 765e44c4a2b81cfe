// Package exportertest is the conformance suite that every popmigrate
// exporter (Maildir, mbox, .eml, IMAP) runs, so that all destinations keep
// the same promises: every tricky message round-trips byte for byte, Put is
// idempotent per key, a new Exporter on the same destination finds what an
// earlier one stored, and a cancelled or failed Put leaves nothing partial.
//
// An exporter's test calls Run:
//
//	func TestConformance(t *testing.T) {
//		exportertest.Run(t, func(t *testing.T, dir string) exporters.Exporter {
//			e, err := maildir.New(dir, nil)
//			if err != nil {
//				t.Fatal(err)
//			}
//			return e
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

// Options tunes RunWithOptions. A nil *Options means the defaults.
type Options struct {
	// CountFiles returns how many files the exporter keeps under dir, all
	// of them (messages, temporary files, indexes). When set, the suite
	// checks that a failed or cancelled Put and a repeated Put leave the
	// count unchanged. When nil, those checks go through Finder only.
	CountFiles func(dir string) int
	// Concurrent says that Put, Has, Open and Sync of one Exporter may be
	// called from several goroutines at once. The suite then also runs
	// Puts from several goroutines, some of the same key.
	Concurrent bool
	// Many is the number of messages of the "Many" subtest; 0 means 500.
	Many int
	// Refuses names the sample messages (testmsg names) that the
	// destination refuses by design, e.g. "nul-bytes" for IMAP, whose
	// APPEND cannot carry NUL bytes. RoundTrip checks that Put of each
	// fails, and round-trips the others.
	Refuses []string
}

// Run runs the conformance suite with the default Options.
func Run(t *testing.T, open func(t *testing.T, dir string) exporters.Exporter) {
	t.Helper()
	RunWithOptions(t, open, nil)
}

// RunWithOptions runs the conformance suite against the exporter that open
// makes. open is called with an existing empty folder, and again with the
// same folder to reopen the destination (the suite Closes the first
// Exporter before): a destination that is not a folder (IMAP) maps each
// folder to its own mailbox. Two different folders must give two different
// Properties().ID. The suite closes every Exporter it opens.
//
// The exporter must implement exporters.Opener (every message is read back
// and compared byte for byte and by sha256). If it implements
// exporters.Finder, Has must find every message Put stored, with the same
// Ref, and must not find one whose Put failed.
//
// A Put whose context is cancelled before Put returns must fail with an
// error wrapping the context's error, and a Put whose Body fails must fail
// with an error wrapping the Body's error.
func RunWithOptions(t *testing.T, open func(t *testing.T, dir string) exporters.Exporter, opts *Options) {
	t.Helper()
	if opts == nil {
		opts = &Options{}
	}
	s := &suite{open: open, opts: opts}
	t.Run("Properties", s.testProperties)
	t.Run("RoundTrip", s.testRoundTrip)
	t.Run("Idempotent", s.testIdempotent)
	t.Run("Resume", s.testResume)
	t.Run("CancelBeforePut", s.testCancelBeforePut)
	t.Run("CancelMidCopy", s.testCancelMidCopy)
	t.Run("FailingBody", s.testFailingBody)
	t.Run("ShortBody", s.testShortBody)
	t.Run("SyncIdle", s.testSyncIdle)
	t.Run("CloseTwice", s.testCloseTwice)
	t.Run("Many", s.testMany)
	if opts.Concurrent {
		t.Run("Concurrent", s.testConcurrent)
	}
}

type suite struct {
	open func(t *testing.T, dir string) exporters.Exporter
	opts *Options
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

// openExporter opens the destination in dir and closes it when the test
// ends, failing the test if Close fails.
func (s *suite) openExporter(t *testing.T, dir string) exporters.Exporter {
	t.Helper()
	e := s.open(t, dir)
	if e == nil {
		t.Fatal("open returned a nil Exporter")
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return e
}

func (s *suite) count(dir string) (int, bool) {
	if s.opts.CountFiles == nil {
		return 0, false
	}
	return s.opts.CountFiles(dir), true
}

// checkCount fails the test if the file count in dir is no longer want.
func (s *suite) checkCount(t *testing.T, dir string, want int, what string) {
	t.Helper()
	if got, ok := s.count(dir); ok && got != want {
		t.Errorf("%s: %d files under the destination, want %d", what, got, want)
	}
}

func put(t *testing.T, c context.Context, e exporters.Exporter, msg *exporters.Message) string {
	t.Helper()
	d, err := e.Put(c, msg)
	if err != nil {
		t.Fatalf("Put %s (uidl %q): %v", msg.Key, msg.UIDL, err)
	}
	if d.Ref == "" {
		t.Fatalf("Put %s (uidl %q): empty Ref", msg.Key, msg.UIDL)
	}
	return d.Ref
}

func syncNow(t *testing.T, c context.Context, e exporters.Exporter) {
	t.Helper()
	if err := e.Sync(c); err != nil {
		t.Fatalf("Sync: %v", err)
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
		if d, err := e.Put(c, NewMessage(sm.Name, sm.Data)); err == nil {
			t.Errorf("Put of %s succeeded (Ref %q), want it refused", sm.Name, d.Ref)
		}
	}
	msgs := make([]*exporters.Message, len(samples))
	refs := make([]string, len(samples))
	seen := map[string]string{}
	for i, sm := range samples {
		msgs[i] = NewMessage(sm.Name, sm.Data)
		refs[i] = put(t, c, e, msgs[i])
		if prev, dup := seen[refs[i]]; dup {
			t.Errorf("samples %q and %q share the Ref %q", prev, sm.Name, refs[i])
		}
		seen[refs[i]] = sm.Name
	}
	syncNow(t, c, e)
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
	ref := put(t, c, e, msg)
	n, _ := s.count(dir)
	for i, what := range []string{"second Put", "Put after Sync"} {
		if i == 1 {
			syncNow(t, c, e)
			n, _ = s.count(dir)
		}
		again := NewMessage("idempotent-1", data)
		if got := put(t, c, e, again); got != ref {
			t.Errorf("%s = %q, want the first Ref %q", what, got, ref)
		}
		s.checkCount(t, dir, n, what)
	}
	syncNow(t, c, e)
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
	refA := put(t, c, e1, NewMessage("resume-synced", dataA))
	syncNow(t, c, e1)
	refB := put(t, c, e1, NewMessage("resume-unsynced", dataB))
	if err := e1.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	n, _ := s.count(dir)

	e2 := s.openExporter(t, dir)
	checkStored(t, c, e2, NewMessage("resume-synced", dataA), dataA, refA)
	checkStored(t, c, e2, NewMessage("resume-unsynced", dataB), dataB, refB)
	if got := put(t, c, e2, NewMessage("resume-synced", dataA)); got != refA {
		t.Errorf("Put of a synced message after reopening = %q, want %q", got, refA)
	}
	if got := put(t, c, e2, NewMessage("resume-unsynced", dataB)); got != refB {
		t.Errorf("Put of an unsynced message after reopening = %q, want %q", got, refB)
	}
	s.checkCount(t, dir, n, "Put of stored messages after reopening")

	dataC := testmsg.Find(t, "plain-ascii").Data
	msgC := NewMessage("resume-new", dataC)
	refC := put(t, c, e2, msgC)
	syncNow(t, c, e2)
	checkStored(t, c, e2, msgC, dataC, refC)
}

func (s *suite) testCancelBeforePut(t *testing.T) {
	dir := t.TempDir()
	e := s.openExporter(t, dir)
	data := testmsg.Find(t, "plain-ascii").Data
	n, _ := s.count(dir)

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

	ref := put(t, c, e, NewMessage("cancel-before", data))
	syncNow(t, c, e)
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
	n, _ := s.count(dir)

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
	ref := put(t, c, e, again)
	syncNow(t, c, e)
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
	n, _ := s.count(dir)
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
	ref := put(t, c, e, msg)
	syncNow(t, c, e)
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
	n, _ := s.count(dir)
	msg := NewMessage("short", data)
	msg.Body = &shortBody{Reader: bytes.NewReader(data), size: int64(len(data)) + 100}
	if d, err := e.Put(c, msg); err == nil {
		t.Fatalf("Put of a body shorter than its Size succeeded (Ref %q)", d.Ref)
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
	put(t, c, e, NewMessage("sync-idle", []byte("Subject: x\n\nx\n")))
	for i := range 2 {
		if err := e.Sync(c); err != nil {
			t.Fatalf("Sync %d after a Put: %v", i+1, err)
		}
	}
}

func (s *suite) testCloseTwice(t *testing.T) {
	c := ctx(t)
	e := s.open(t, t.TempDir())
	put(t, c, e, NewMessage("close-twice", []byte("Subject: x\n\nx\n")))
	syncNow(t, c, e)
	if err := e.Close(); err != nil {
		t.Fatalf("first Close: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("second Close = %v, want nil", err)
	}
	if d, err := e.Put(c, NewMessage("after-close", []byte("x\n"))); err == nil {
		t.Errorf("Put after Close succeeded (Ref %q), want an error", d.Ref)
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
		refs[i] = put(t, c, e, msgs[i])
		if j, dup := seen[refs[i]]; dup {
			t.Fatalf("messages %d and %d share the Ref %q", j, i, refs[i])
		}
		seen[refs[i]] = i
	}
	syncNow(t, c, e)
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
	syncNow(t, c, e)
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
