package imap

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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

// TestWireForm checks what goes over the wire: every LF as CRLF (a CR
// before an LF in the canonical form included), nothing else changed.
func TestWireForm(t *testing.T) {
	srv := startMem(t, memConfig{})
	e := newExporter(t, srv.options("Wire"))
	cases := map[string]string{
		"lf":          "Subject: a\n\nline\n",
		"cr-lf":       "Subject: b\n\nx\r\ny\n",
		"bare-cr":     "Subject: c\n\nx\ry\r",
		"no-newline":  "Subject: d\n\nend",
		"blank-lines": "\n\n\n",
	}
	want := map[string]string{
		"lf":          "Subject: a\r\n\r\nline\r\n",
		"cr-lf":       "Subject: b\r\n\r\nx\r\r\ny\r\n",
		"bare-cr":     "Subject: c\r\n\r\nx\ry\r",
		"no-newline":  "Subject: d\r\n\r\nend",
		"blank-lines": "\r\n\r\n\r\n",
	}
	refs := map[string]string{}
	for name, body := range cases {
		refs[name] = mustPut(t, e, exportertest.NewMessage(name, []byte(body)))
	}
	stored := srv.messages(t, "Wire")
	for name, body := range cases {
		uid := refUID(t, refs[name])
		if got := string(stored[uid]); got != want[name] {
			t.Errorf("%s: stored %q, want %q", name, got, want[name])
		}
		if got := string(mustOpen(t, e, refs[name])); got != body {
			t.Errorf("%s: read back %q, want %q", name, got, body)
		}
	}
}

func refUID(t *testing.T, ref string) imap.UID {
	t.Helper()
	_, uid, err := parseRef(ref)
	if err != nil {
		t.Fatalf("ref %q: %v", ref, err)
	}
	return uid
}

// TestCrashBetweenAppendAndCommit puts 5 messages with the journal's save
// recording the state, never commits, and checks that a new Exporter
// resumed from the last saved state stores the same 5 again without
// appending any: the folder holds exactly 5.
func TestCrashBetweenAppendAndCommit(t *testing.T) {
	for _, noUIDPlus := range []bool{false, true} {
		t.Run(fmt.Sprintf("noUIDPlus=%v", noUIDPlus), func(t *testing.T) {
			srv := startMem(t, memConfig{noUIDPlus: noUIDPlus})
			testCrash(t, srv.options("Crash"), func() int { return len(srv.messages(t, "Crash")) })
		})
	}
}

// testCrash is the crash test against any server; count returns the
// number of messages in the folder.
func testCrash(t *testing.T, o *Options, count func() int) {
	c := testCtx(t)
	j := &fakeJournal{}
	e1, err := New(c, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := e1.Resume(c, "", j.save); err != nil {
		t.Fatal(err)
	}
	var refs []string
	for i := range 5 {
		refs = append(refs, mustPut(t, e1, msgN(i)))
	}
	if len(j.saves) != 1 {
		t.Errorf("%d journal writes for one batch, want 1: %q", len(j.saves), j.saves)
	}
	var st state
	if err := json.Unmarshal([]byte(j.last()), &st); err != nil || !st.Open || st.UIDValidity != e1.UIDValidity() {
		t.Fatalf("saved state %q (%v), want an open intent with UIDVALIDITY %d", j.last(), err, e1.UIDValidity())
	}
	if err := e1.Close(); err != nil { // crash: no Sync, no CommitState
		t.Fatal(err)
	}
	if n := count(); n != 5 {
		t.Fatalf("%d messages after the first run, want 5", n)
	}

	e2, err := New(c, o)
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	if err := e2.Resume(c, j.last(), j.save); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if got := mustPut(t, e2, msgN(i)); got != refs[i] {
			t.Errorf("message %d after resume: Ref %q, want %q", i, got, refs[i])
		}
	}
	if n := count(); n != 5 {
		t.Errorf("%d messages after resuming, want exactly 5", n)
	}
	if err := e2.Sync(c); err != nil {
		t.Fatal(err)
	}
	var done state
	if err := json.Unmarshal([]byte(e2.CommitState()), &done); err != nil || done.Open || len(done.Pending) != 0 {
		t.Errorf("CommitState after every found message was put = %q, want closed", e2.CommitState())
	}
	// A new message after the resume is appended as usual.
	ref := mustPut(t, e2, msgN(5))
	if n := count(); n != 6 {
		t.Errorf("%d messages after a new Put, want 6", n)
	}
	if got := mustOpen(t, e2, ref); !bytes.Equal(got, messageBytes(msgN(5))) {
		t.Errorf("new message read back differs: %q", got)
	}
}

func messageBytes(m *exporters.Message) []byte {
	b, _ := io.ReadAll(exporters.NewBodyReader(m.Body))
	return b
}

// TestSecondCrash checks that messages found on Resume but not yet put
// again survive a second crash: the committed state lists them as
// pending, and a third run still finds them.
func TestSecondCrash(t *testing.T) {
	srv := startMem(t, memConfig{})
	o := srv.options("Twice")
	c := testCtx(t)
	j := &fakeJournal{}
	e1 := newExporter(t, o)
	e1.Resume(c, "", j.save)
	refs := make([]string, 4)
	for i := range 4 {
		refs[i] = mustPut(t, e1, msgN(i))
	}
	e1.Close() // crash 1: 4 messages appended, none committed

	e2 := newExporter(t, o)
	if err := e2.Resume(c, j.last(), j.save); err != nil {
		t.Fatal(err)
	}
	// The resumed run puts message 0 and commits, then crashes before it
	// gets to messages 1-3.
	if got := mustPut(t, e2, msgN(0)); got != refs[0] {
		t.Fatalf("Ref %q, want %q", got, refs[0])
	}
	if err := e2.Sync(c); err != nil {
		t.Fatal(err)
	}
	j.save(c, e2.CommitState())
	var st state
	json.Unmarshal([]byte(j.last()), &st)
	if len(st.Pending) != 3 {
		t.Errorf("committed state %q, want 3 pending UIDs", j.last())
	}
	e2.Close()

	e3 := newExporter(t, o)
	if err := e3.Resume(c, j.last(), j.save); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 4; i++ {
		if got := mustPut(t, e3, msgN(i)); got != refs[i] {
			t.Errorf("message %d: Ref %q, want %q", i, got, refs[i])
		}
	}
	if n := len(srv.messages(t, "Twice")); n != 4 {
		t.Errorf("%d messages, want 4", n)
	}
}

// TestIdenticalMessagesNotMerged checks that two different keys with the
// same content are two messages, also when found on Resume: one found
// copy serves one Put.
func TestIdenticalMessagesNotMerged(t *testing.T) {
	srv := startMem(t, memConfig{})
	o := srv.options("Same")
	c := testCtx(t)
	body := []byte("Subject: same\n\nsame\n")
	j := &fakeJournal{}
	e1 := newExporter(t, o)
	e1.Resume(c, "", j.save)
	r1 := mustPut(t, e1, exportertest.NewMessage("a", body))
	e1.Close()

	e2 := newExporter(t, o)
	e2.Resume(c, j.last(), j.save)
	if got := mustPut(t, e2, exportertest.NewMessage("a", body)); got != r1 {
		t.Errorf("found copy: Ref %q, want %q", got, r1)
	}
	r2 := mustPut(t, e2, exportertest.NewMessage("b", body))
	if r2 == r1 {
		t.Errorf("a second key with the same content got the same Ref %q", r1)
	}
	if n := len(srv.messages(t, "Same")); n != 2 {
		t.Errorf("%d messages, want 2", n)
	}
}

// TestUIDValidityChanged deletes and re-creates the folder between runs:
// Resume must fail with ErrUIDValidity, naming the folder; so must Open
// of an old Ref (not found) and a new connection of a running Exporter.
func TestUIDValidityChanged(t *testing.T) {
	srv := startMem(t, memConfig{})
	o := srv.options("Recreated")
	c := testCtx(t)
	e1 := newExporter(t, o)
	ref := mustPut(t, e1, msgN(1))
	if err := e1.Sync(c); err != nil {
		t.Fatal(err)
	}
	committed := e1.CommitState()

	cl := srv.client(t)
	defer cl.Close()
	if err := cl.Delete("Recreated").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := cl.Create("Recreated", nil).Wait(); err != nil {
		t.Fatal(err)
	}

	e2 := newExporter(t, o)
	err := e2.Resume(c, committed, nil)
	if !errors.Is(err, ErrUIDValidity) || !strings.Contains(err.Error(), `"Recreated"`) {
		t.Errorf("Resume after the folder was re-created: %v, want ErrUIDValidity naming the folder", err)
	}
	if _, err := e2.Open(c, ref); !errors.Is(err, exporters.ErrNotFound) {
		t.Errorf("Open of a Ref from the old folder: %v, want ErrNotFound", err)
	}
	// e1's connection still has the old folder selected; its next
	// connection sees the new UIDVALIDITY.
	for range 2 {
		if cc, err := e1.acquire(c); err == nil {
			cc.kill(errConnBroken)
			e1.release(cc)
		}
	}
	if _, err := e1.Put(c, msgN(2)); !errors.Is(err, ErrUIDValidity) {
		t.Errorf("Put after the folder was re-created: %v, want ErrUIDValidity", err)
	}
}

// TestFolderCreation creates "A/B/C" on a server that wants the parents
// first, and reuses an existing folder.
func TestFolderCreation(t *testing.T) {
	srv := startMem(t, memConfig{strictParents: true})
	e := newExporter(t, srv.options("A/B/C"))
	if e.Folder() != "A/B/C" {
		t.Errorf("Folder() = %q", e.Folder())
	}
	ref := mustPut(t, e, msgN(1))
	e2 := newExporter(t, srv.options("A/B/C"))
	if e2.UIDValidity() != e.UIDValidity() {
		t.Errorf("reopened folder has UIDVALIDITY %d, want %d", e2.UIDValidity(), e.UIDValidity())
	}
	if got := mustOpen(t, e2, ref); !bytes.Equal(got, messageBytes(msgN(1))) {
		t.Errorf("read back %q", got)
	}
	cl := srv.client(t)
	defer cl.Close()
	l, err := cl.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range l {
		names = append(names, d.Mailbox)
	}
	if strings.Join(names, ",") != "A,A/B,A/B/C" {
		t.Errorf("folders %v, want A, A/B, A/B/C", names)
	}
}

func TestServerName(t *testing.T) {
	tests := []struct {
		folder  string
		delim   rune
		want    string
		parents []string
		err     bool
	}{
		{"INBOX", '.', "INBOX", nil, false},
		{"inbox/Imported", '.', "INBOX.Imported", []string{"INBOX"}, false},
		{"INBOX/Imported", '/', "INBOX/Imported", []string{"INBOX"}, false},
		{"a/b/c", '.', "a.b.c", []string{"a", "a.b"}, false},
		{"a.b/c", '.', "", nil, true}, // a level holds the delimiter
		{"a/b", 0, "", nil, true},     // flat server
		{"flat", 0, "flat", nil, false},
	}
	for _, tt := range tests {
		got, parents, err := serverName(tt.folder, tt.delim)
		if (err != nil) != tt.err || got != tt.want || fmt.Sprint(parents) != fmt.Sprint(tt.parents) {
			t.Errorf("serverName(%q, %q) = %q, %q, %v; want %q, %q, error %v",
				tt.folder, tt.delim, got, parents, err, tt.want, tt.parents, tt.err)
		}
	}
}

// TestRejected covers messages the server refuses and messages IMAP
// cannot carry, with and without a quarantine folder.
func TestRejected(t *testing.T) {
	srv := startMem(t, memConfig{reject: func(data []byte) *imap.Error {
		if bytes.Contains(data, []byte("REJECT-ME")) {
			return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeParse, Text: "Broken message"}
		}
		return nil
	}})
	qdir := filepath.Join(t.TempDir(), "quarantine")
	o := srv.options("Rejects")
	o.QuarantineDir = qdir
	e := newExporter(t, o)
	c := testCtx(t)

	bad := exportertest.NewMessage("bad", []byte("Subject: x\n\nREJECT-ME\n"))
	_, err := e.Put(c, bad)
	var qe *QuarantinedError
	if !errors.As(err, &qe) {
		t.Fatalf("Put of a message the server rejects: %v, want a *QuarantinedError", err)
	}
	if qe.ServerResponse != "NO [PARSE] Broken message" || qe.Path != filepath.Join(qdir, bad.Key+".eml") {
		t.Errorf("QuarantinedError = %+v", qe)
	}
	checkQuarantined(t, qe.Path, messageBytes(bad))
	if !IsRejected(err) {
		t.Errorf("IsRejected(%v) = false", err)
	}

	nul := exportertest.NewMessage("nul", []byte("Subject: x\n\na\x00b\n"))
	_, err = e.Put(c, nul)
	if !errors.As(err, &qe) || !strings.Contains(qe.ServerResponse, "NUL") {
		t.Fatalf("Put of a message with NUL: %v, want a *QuarantinedError about NUL", err)
	}
	checkQuarantined(t, qe.Path, messageBytes(nul))

	// The run goes on: a good message is stored, and the folder holds
	// only it.
	mustPut(t, e, msgN(1))
	if n := len(srv.messages(t, "Rejects")); n != 1 {
		t.Errorf("%d messages in the folder, want 1", n)
	}
	if err := e.Sync(c); err != nil {
		t.Errorf("Sync after rejected messages: %v", err)
	}

	// Without a quarantine folder: a *RejectedError, nothing written.
	o2 := srv.options("Rejects")
	e2 := newExporter(t, o2)
	_, err = e2.Put(c, exportertest.NewMessage("bad2", []byte("Subject: y\n\nREJECT-ME\n")))
	var re *RejectedError
	if !errors.As(err, &re) || re.ServerResponse != "NO [PARSE] Broken message" {
		t.Errorf("Put without quarantine: %v, want a *RejectedError", err)
	}
	if errors.As(err, &qe) {
		t.Errorf("Put without quarantine returned a *QuarantinedError")
	}
}

func checkQuarantined(t *testing.T, path string, want []byte) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", path, fi.Mode().Perm())
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s holds %q, want %q", path, got, want)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	for _, en := range entries {
		if strings.HasSuffix(en.Name(), ".tmp") {
			t.Errorf("temporary file %s left in the quarantine folder", en.Name())
		}
	}
}

// TestTooLarge covers a message above the server's APPENDLIMIT (refused
// before sending) and one the server refuses with NO [TOOBIG] after the
// continuation request of a synchronising literal.
func TestTooLarge(t *testing.T) {
	big := exportertest.NewMessage("big", bytes.Repeat([]byte("0123456789abcde\n"), 1024)) // 16 KiB, 17 KiB on the wire
	t.Run("APPENDLIMIT", func(t *testing.T) {
		srv := startMem(t, memConfig{appendLimit: 10000})
		e := newExporter(t, srv.options("Big"))
		_, err := e.Put(testCtx(t), big)
		var re *RejectedError
		if !errors.As(err, &re) || !strings.Contains(re.Reason, "APPENDLIMIT of 10000") {
			t.Fatalf("Put of a message above APPENDLIMIT: %v", err)
		}
		mustPut(t, e, msgN(1))
	})
	t.Run("server", func(t *testing.T) {
		srv := startMem(t, memConfig{reject: func(data []byte) *imap.Error {
			if len(data) > 10000 {
				return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTooBig, Text: "Too big"}
			}
			return nil
		}})
		e := newExporter(t, srv.options("Big"))
		_, err := e.Put(testCtx(t), big)
		var re *RejectedError
		if !errors.As(err, &re) || re.ServerResponse != "NO [TOOBIG] Too big" {
			t.Fatalf("Put of a message the server finds too big: %v", err)
		}
		mustPut(t, e, msgN(1))
		if n := len(srv.messages(t, "Big")); n != 1 {
			t.Errorf("%d messages, want 1", n)
		}
	})
}

// TestAccountErrorsNotQuarantined checks that a NO about the account
// (over quota) is an error of the destination, not a rejected message.
func TestAccountErrorsNotQuarantined(t *testing.T) {
	srv := startMem(t, memConfig{reject: func([]byte) *imap.Error {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeOverQuota, Text: "Quota exceeded"}
	}})
	o := srv.options("Quota")
	o.QuarantineDir = t.TempDir()
	e := newExporter(t, o)
	_, err := e.Put(testCtx(t), msgN(1))
	if err == nil || IsRejected(err) || !strings.Contains(err.Error(), "OVERQUOTA") {
		t.Errorf("Put over quota: %v, want a plain error naming OVERQUOTA", err)
	}
	if entries, _ := os.ReadDir(o.QuarantineDir); len(entries) != 0 {
		t.Errorf("quarantine holds %d files, want none", len(entries))
	}
}

func TestFlagsAndDates(t *testing.T) {
	srv := startMem(t, memConfig{})
	received := time.Date(2025, 3, 3, 10, 0, 0, 0, time.UTC)
	body := "Received: from a by b; Tue, 4 Feb 2025 10:00:00 +0100\n" +
		"Received: from c by a;\n\tTue, 4 Feb 2025 09:59:58 +0100 (CET)\n" +
		"Date: Mon, 3 Feb 2025 08:00:00 -0500\n\nhi\n"
	tests := []struct {
		name     string
		flags    []imap.Flag
		dateFrom string
		body     string
		wantFlag []imap.Flag
		wantDate time.Time
	}{
		{"defaults", nil, "", body, []imap.Flag{imap.FlagSeen}, time.Date(2025, 2, 4, 9, 0, 0, 0, time.UTC)},
		{"no-flags", []imap.Flag{}, DateFromDate, body, nil, time.Date(2025, 2, 3, 13, 0, 0, 0, time.UTC)},
		{"two-flags", []imap.Flag{imap.FlagSeen, "$Imported"}, DateFromDownload, body, []imap.Flag{imap.FlagSeen, "$Imported"}, received},
		{"no-received", nil, DateFromReceived, "Date: Mon, 3 Feb 2025 08:00:00 -0500\n\nhi\n", []imap.Flag{imap.FlagSeen}, time.Date(2025, 2, 3, 13, 0, 0, 0, time.UTC)},
		{"no-dates", nil, DateFromReceived, "Subject: x\n\nhi\n", []imap.Flag{imap.FlagSeen}, received},
		{"future-date", nil, DateFromDate, "Date: Mon, 3 Feb 2099 08:00:00 -0500\n\nhi\n", []imap.Flag{imap.FlagSeen}, received},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			folder := "Flags-" + tt.name
			o := srv.options(folder)
			o.Flags, o.DateFrom = tt.flags, tt.dateFrom
			e := newExporter(t, o)
			msg := exportertest.NewMessage(tt.name, []byte(tt.body))
			msg.Received = received
			ref := mustPut(t, e, msg)
			cl := srv.client(t)
			defer cl.Close()
			cl.Select(folder, nil).Wait()
			got, err := cl.Fetch(imap.UIDSetNum(refUID(t, ref)), &imap.FetchOptions{Flags: true, InternalDate: true}).Collect()
			if err != nil || len(got) != 1 {
				t.Fatalf("fetch: %v, %d messages", err, len(got))
			}
			// Flags are a case-insensitive set (imapmemserver lower-cases
			// keywords and keeps no order).
			if flagSet(got[0].Flags) != flagSet(tt.wantFlag) {
				t.Errorf("flags %v, want %v", got[0].Flags, tt.wantFlag)
			}
			if !got[0].InternalDate.Equal(tt.wantDate) {
				t.Errorf("INTERNALDATE %v, want %v", got[0].InternalDate, tt.wantDate)
			}
		})
	}
}

func flagSet(flags []imap.Flag) string {
	var s []string
	for _, f := range flags {
		s = append(s, strings.ToLower(string(f)))
	}
	slices.Sort(s)
	return strings.Join(s, " ")
}

func TestInternalDateParsing(t *testing.T) {
	dl := time.Date(2025, 3, 3, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name, header string
		want         time.Time
	}{
		{"DateTrailingComment", "Date: Mon, 3 Feb 2025 08:00:00 +0000 (Coordinated Universal Time)\n",
			time.Date(2025, 2, 3, 8, 0, 0, 0, time.UTC)},
		{"DateZoneNameAfterOffset", "Date: Mon, 3 Feb 2025 08:00:00 +0100 CET\n",
			time.Date(2025, 2, 3, 7, 0, 0, 0, time.UTC)},
		{"ReceivedWithoutSemicolon", "Received: from a by b\nDate: Mon, 3 Feb 2025 08:00:00 +0000\n",
			time.Date(2025, 2, 3, 8, 0, 0, 0, time.UTC)},
		{"ReceivedNewestWins", "Received: x; Mon, 3 Feb 2025 08:00:00 +0000\nReceived: y; Mon, 3 Feb 2025 09:00:00 +0000\n",
			time.Date(2025, 2, 3, 9, 0, 0, 0, time.UTC)},
		{"GarbageDate", "Date: yesterday\n", dl},
		{"AncientDate", "Date: Mon, 3 Feb 1975 08:00:00 +0000\n", dl},
		{"CRLFHeader", "Date: Mon, 3 Feb 2025 08:00:00 +0000\r\n", time.Date(2025, 2, 3, 8, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := internalDate(DateFromReceived, []byte(tt.header), dl); !got.Equal(tt.want) {
				t.Errorf("%v, want %v", got, tt.want)
			}
		})
	}
}

// TestQuirkNoUIDNextInSelect checks the fallback to STATUS for a server
// that leaves UIDNEXT out of its SELECT answer.
func TestQuirkNoUIDNextInSelect(t *testing.T) {
	srv := startMem(t, memConfig{noUIDNext: true})
	e := newExporter(t, srv.options("NoUIDNext"))
	mustPut(t, e, msgN(1))
	mustPut(t, e, msgN(2))
	e2 := newExporter(t, srv.options("NoUIDNext"))
	j := &fakeJournal{}
	e2.Resume(testCtx(t), "", j.save)
	mustPut(t, e2, msgN(3))
	var st state
	json.Unmarshal([]byte(j.last()), &st)
	if st.UIDNext != 3 {
		t.Errorf("intent %s, want uidnext 3 (from STATUS)", j.last())
	}
}

func TestMessageID(t *testing.T) {
	tests := map[string]string{
		"Message-ID: <a@b>\n":                            "<a@b>",
		"message-id:\n <folded@b>\n":                     "<folded@b>",
		"Subject: x\n":                                   "",
		"Message-ID: <\xe9@b>\n":                         "",
		"Message-ID: " + strings.Repeat("x", 600) + "\n": "",
	}
	for header, want := range tests {
		if got := messageID([]byte(header)); got != want {
			t.Errorf("messageID(%q) = %q, want %q", header, got, want)
		}
	}
}

// TestStartTLSRequired checks that with Security "starttls" a server that
// does not offer STARTTLS gets no LOGIN, and that one that does works.
func TestStartTLSRequired(t *testing.T) {
	srv := startMem(t, memConfig{}) // no STARTTLS, but LOGIN in clear text would be accepted
	o := srv.options("X")
	o.Security = SecurityStartTLS
	o.TLSConfig = srv.pki.ClientConfig()
	_, err := New(testCtx(t), o)
	if !errors.Is(err, ErrNoStartTLS) {
		t.Errorf("New against a server without STARTTLS: %v, want ErrNoStartTLS", err)
	}
	if n := srv.logins.Load(); n != 0 {
		t.Errorf("%d logins reached the server, want none", n)
	}

	tlsSrv := startMem(t, memConfig{startTLS: true})
	e := newExporter(t, tlsSrv.options("X"))
	mustPut(t, e, msgN(1))
	if n := tlsSrv.logins.Load(); n != 1 {
		t.Errorf("%d logins, want 1", n)
	}
}

// TestTLSVerified checks that a server certificate from an unknown CA is
// refused.
func TestTLSVerified(t *testing.T) {
	srv := startMem(t, memConfig{implicitTLS: true})
	o := srv.options("X")
	o.TLSConfig = nil // system roots: the test CA is unknown
	if _, err := New(testCtx(t), o); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("New with an untrusted certificate: %v, want a certificate error", err)
	}
	if n := srv.logins.Load(); n != 0 {
		t.Errorf("%d logins, want none", n)
	}
}

func TestAuth(t *testing.T) {
	tests := []struct {
		name     string
		mechs    []string
		password string
		token    string
		wantErr  error
	}{
		{"plain", []string{"PLAIN"}, memPassword, "", nil},
		{"plain-wrong", []string{"PLAIN"}, "wrong", "", ErrAuth},
		{"xoauth2", []string{"PLAIN", "XOAUTH2"}, "", memToken, nil},
		{"xoauth2-wrong", []string{"XOAUTH2"}, "", "bad-token", ErrAuth},
		{"oauthbearer", []string{"OAUTHBEARER"}, "", memToken, nil},
		{"oauthbearer-wrong", []string{"OAUTHBEARER"}, "", "bad-token", errors.New("OAUTHBEARER")},
		{"token-unsupported", []string{"PLAIN"}, "", memToken, ErrAuthUnsupported},
		{"login", nil, memPassword, "", nil},
		{"login-wrong", nil, "wrong", "", ErrAuth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startMem(t, memConfig{mechs: tt.mechs})
			o := srv.options("Auth")
			o.Password, o.OAuth2Token = tt.password, tt.token
			e, err := New(testCtx(t), o)
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("New: %v", err)
			case tt.wantErr == nil:
				mustPut(t, e, msgN(1))
				e.Close()
			case err == nil:
				e.Close()
				t.Fatalf("New succeeded, want %v", tt.wantErr)
			case !errors.Is(err, tt.wantErr) && !strings.Contains(err.Error(), tt.wantErr.Error()):
				t.Errorf("New: %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				for _, secret := range []string{tt.password, tt.token} {
					if secret != "" && strings.Contains(err.Error(), secret) {
						t.Errorf("error %q holds the secret", err)
					}
				}
			}
		})
	}
}

func TestOptionsErrors(t *testing.T) {
	base := Options{Addr: "127.0.0.1:1", Username: "u", Password: "p"}
	tests := []func(o *Options){
		func(o *Options) { o.Addr = "" },
		func(o *Options) { o.Addr = "no-port" },
		func(o *Options) { o.Security = "ssl" },
		func(o *Options) { o.Username = "" },
		func(o *Options) { o.Password = "" },
		func(o *Options) { o.Folder = "a//b" },
		func(o *Options) { o.Folder = "a*" },
		func(o *Options) { o.Flags = []imap.Flag{"two words"} },
		func(o *Options) { o.Flags = []imap.Flag{`\`} },
		func(o *Options) { o.DateFrom = "sent" },
		func(o *Options) { o.Conns = -1 },
		func(o *Options) { o.Timeout = -time.Second },
	}
	dials := 0
	for i, mod := range tests {
		o := base
		o.Dial = func(context.Context, string, string) (net.Conn, error) { dials++; return nil, errors.New("no") }
		mod(&o)
		if _, err := New(testCtx(t), &o); err == nil || !strings.HasPrefix(err.Error(), "imap: ") {
			t.Errorf("case %d: New = %v, want an error with the package prefix", i, err)
		}
	}
	if dials != 0 {
		t.Errorf("%d dials for invalid options, want none", dials)
	}
	if _, err := New(testCtx(t), nil); err == nil {
		t.Error("New(nil) succeeded")
	}
}

func TestDefaultID(t *testing.T) {
	srv := startMem(t, memConfig{})
	o := srv.options("INBOX/Imported")
	o.Username = memUser
	e := newExporter(t, o)
	want := "imap://" + memUser + "@" + srv.addr + "/INBOX/Imported"
	if p := e.Properties(); p.ID != want || p.Kind != "imap" {
		t.Errorf("Properties() = %+v, want ID %q", p, want)
	}
	if strings.Contains(e.Properties().ID, memPassword) {
		t.Error("the ID holds the password")
	}
	o.ID = "imap:custom"
	if e2 := newExporter(t, o); e2.Properties().ID != "imap:custom" {
		t.Errorf("ID = %q, want the configured one", e2.Properties().ID)
	}
}

// TestLostAppendAnswer drops the connection right after the server
// stored a message, before its tagged OK reaches the client: Put must
// reconnect, find the stored message and not append it again.
func TestLostAppendAnswer(t *testing.T) {
	for _, noUIDPlus := range []bool{false, true} {
		t.Run(fmt.Sprintf("noUIDPlus=%v", noUIDPlus), func(t *testing.T) {
			srv := startMem(t, memConfig{noUIDPlus: noUIDPlus})
			f := &faults{}
			o := srv.options("Lost")
			o.Dial = f.dial
			e := newExporter(t, o)
			j := &fakeJournal{}
			e.Resume(testCtx(t), "", j.save)
			f.dropAppendOK.Store(1)
			ref := mustPut(t, e, msgN(1))
			if f.dropAppendOK.Load() > 0 {
				t.Fatal("the fault was not triggered")
			}
			stored := srv.messages(t, "Lost")
			if len(stored) != 1 {
				t.Fatalf("%d messages, want 1", len(stored))
			}
			if got := mustOpen(t, e, ref); !bytes.Equal(got, messageBytes(msgN(1))) {
				t.Errorf("read back %q", got)
			}
			if n := f.dials.Load(); n != 2 {
				t.Errorf("%d dials, want 2 (one reconnection)", n)
			}
			if err := e.Sync(testCtx(t)); err != nil {
				t.Fatal(err)
			}
			if st := e.CommitState(); strings.Contains(st, `"open":true`) {
				t.Errorf("CommitState = %s, want closed once the lost answer was resolved", st)
			}
		})
	}
}

// TestConnectionCutMidLiteral cuts the connection while the literal is
// being sent: the server cannot hold the message, and Put sends it again
// on a new connection.
func TestConnectionCutMidLiteral(t *testing.T) {
	srv := startMem(t, memConfig{})
	f := &faults{}
	o := srv.options("Cut")
	o.Dial = f.dial
	o.Conns = 1
	e := newExporter(t, o)
	mustPut(t, e, msgN(0)) // the first connection is up and idle
	// Replace it with one that is cut in the middle of the next literal.
	c, _ := e.acquire(testCtx(t))
	c.kill(errConnBroken)
	e.release(c)
	f.cutAt.Store(3000)
	big := exportertest.NewMessage("big", bytes.Repeat([]byte("abcdefghijklmno\n"), 1000))
	ref := mustPut(t, e, big)
	if got := mustOpen(t, e, ref); !bytes.Equal(got, messageBytes(big)) {
		t.Errorf("read back differs: %d bytes", len(got))
	}
	if n := len(srv.messages(t, "Cut")); n != 2 {
		t.Errorf("%d messages, want 2", n)
	}
}

// TestTimeout stalls the server's answers after an APPEND: the watchdog
// closes the connection after Options.Timeout, Put reconnects once, finds
// the stored message and does not append it again. When every
// connection stalls, Put fails with ErrTimeout.
func TestTimeout(t *testing.T) {
	srv := startMem(t, memConfig{})
	f := &faults{}
	o := srv.options("Stall")
	o.Dial = f.dial
	o.Timeout = 300 * time.Millisecond
	e := newExporter(t, o)

	f.stall.Store(1)
	start := time.Now()
	ref := mustPut(t, e, msgN(1))
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Put took %v", d)
	}
	if n := len(srv.messages(t, "Stall")); n != 1 {
		t.Errorf("%d messages after a stalled answer, want 1", n)
	}
	if got := mustOpen(t, e, ref); !bytes.Equal(got, messageBytes(msgN(1))) {
		t.Errorf("read back %q", got)
	}

	f.stallOn = []string{" APPEND ", " SEARCH "} // the lookup after reconnecting stalls too
	f.stall.Store(2)
	start = time.Now()
	_, err := e.Put(testCtx(t), msgN(2))
	if !errors.Is(err, ErrTimeout) {
		t.Errorf("Put with every answer stalled: %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("failing Put took %v", d)
	}
	// The stalled APPEND reached the server: the next Put of the message
	// finds the copy instead of adding one.
	mustPut(t, e, msgN(2))
	if n := len(srv.messages(t, "Stall")); n != 2 {
		t.Errorf("%d messages, want 2", n)
	}
}

// TestCancelWhileWaiting cancels a Put whose APPEND answer never comes: Put
// returns the context's error at once, and a later Put of the same message
// does not duplicate it.
func TestCancelWhileWaiting(t *testing.T) {
	srv := startMem(t, memConfig{})
	f := &faults{}
	o := srv.options("Cancel")
	o.Dial = f.dial
	e := newExporter(t, o)
	j := &fakeJournal{}
	e.Resume(testCtx(t), "", j.save)

	f.stall.Store(1)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	_, err := e.Put(ctx, msgN(1))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Put with a stalled answer and a short context: %v", err)
	}
	// Until the lost APPEND is resolved the state stays open.
	if st := e.CommitState(); !strings.Contains(st, `"open":true`) {
		t.Errorf("CommitState = %s with an unresolved APPEND, want open", st)
	}
	mustPut(t, e, msgN(1))
	if n := len(srv.messages(t, "Cancel")); n != 1 {
		t.Errorf("%d messages, want 1", n)
	}
}

// TestOneIntentPerBatch checks that the journal is written once before
// the first APPEND of each batch, not per message, and that CommitState
// closes the intent.
func TestOneIntentPerBatch(t *testing.T) {
	srv := startMem(t, memConfig{})
	e := newExporter(t, srv.options("Batch"))
	c := testCtx(t)
	j := &fakeJournal{}
	if err := e.Resume(c, "", j.save); err != nil {
		t.Fatal(err)
	}
	if len(j.saves) != 0 {
		t.Fatalf("Resume saved %q", j.saves)
	}
	for batch := range 3 {
		for i := range 4 {
			mustPut(t, e, msgN(batch*4+i))
		}
		if len(j.saves) != batch+1 {
			t.Fatalf("batch %d: %d journal writes, want %d", batch, len(j.saves), batch+1)
		}
		var intent state
		json.Unmarshal([]byte(j.saves[batch]), &intent)
		if !intent.Open || intent.UIDNext != uint32(batch*4+1) {
			t.Errorf("batch %d: intent %s, want open from UID %d", batch, j.saves[batch], batch*4+1)
		}
		if err := e.Sync(c); err != nil {
			t.Fatal(err)
		}
		var committed state
		json.Unmarshal([]byte(e.CommitState()), &committed)
		if committed.Open || committed.UIDNext != uint32(batch*4+5) || committed.UIDValidity != e.UIDValidity() {
			t.Errorf("batch %d: CommitState %s", batch, e.CommitState())
		}
	}
	// A batch of messages already in the key map appends nothing and
	// saves nothing.
	mustPut(t, e, msgN(0))
	if len(j.saves) != 3 {
		t.Errorf("a Put that appends nothing saved an intent: %q", j.saves)
	}
}

func TestSaveFailureStopsAppend(t *testing.T) {
	srv := startMem(t, memConfig{})
	e := newExporter(t, srv.options("SaveFail"))
	boom := errors.New("journal is read-only")
	e.Resume(testCtx(t), "", func(context.Context, string) error { return boom })
	if _, err := e.Put(testCtx(t), msgN(1)); !errors.Is(err, boom) {
		t.Errorf("Put when the intent cannot be saved: %v, want %v", err, boom)
	}
	if n := len(srv.messages(t, "SaveFail")); n != 0 {
		t.Errorf("%d messages appended without a saved intent", n)
	}
}

func TestResumeErrors(t *testing.T) {
	srv := startMem(t, memConfig{})
	e := newExporter(t, srv.options("Resume"))
	c := testCtx(t)
	for _, st := range []string{"{", `{"uidnext":3}`, "[]"} {
		if err := e.Resume(c, st, nil); !errors.Is(err, ErrInvalidState) {
			t.Errorf("Resume(%q) = %v, want ErrInvalidState", st, err)
		}
	}
	mustPut(t, e, msgN(1))
	if err := e.Resume(c, "", nil); err == nil {
		t.Error("Resume after Put succeeded")
	}
}

// TestIdempotentPerKey puts one key from several goroutines and again
// after Sync: one message, one Ref.
func TestIdempotentPerKey(t *testing.T) {
	srv := startMem(t, memConfig{})
	o := srv.options("Idem")
	o.Conns = 4
	e := newExporter(t, o)
	refs := make([]string, 8)
	var wg sync.WaitGroup
	for i := range refs {
		wg.Go(func() {
			d, err := e.Put(testCtx(t), msgN(7))
			if err != nil {
				t.Error(err)
			}
			refs[i] = d.Ref
		})
	}
	wg.Wait()
	if err := e.Sync(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	refs = append(refs, mustPut(t, e, msgN(7)))
	for _, r := range refs {
		if r != refs[0] {
			t.Fatalf("Refs %q, want all the same", refs)
		}
	}
	if n := len(srv.messages(t, "Idem")); n != 1 {
		t.Errorf("%d messages, want 1", n)
	}
}

// TestSyncWaitsForPuts checks that Sync waits for a Put in flight and
// that Puts started during Sync wait for it.
func TestSyncWaitsForPuts(t *testing.T) {
	srv := startMem(t, memConfig{})
	f := &faults{}
	o := srv.options("SyncWait")
	o.Dial = f.dial
	o.Timeout = 300 * time.Millisecond
	e := newExporter(t, o)
	f.stall.Store(1)
	done := make(chan error, 1)
	go func() {
		_, err := e.Put(testCtx(t), msgN(1))
		done <- err
	}()
	// Wait until the Put is in flight.
	deadline := time.Now().Add(5 * time.Second)
	for {
		e.mu.Lock()
		n := e.inflight
		e.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the Put never started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := e.Sync(testCtx(t)); err != nil {
		t.Fatalf("Sync: %v (the Put in flight recovers by reconnecting)", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Put: %v", err)
		}
	default:
		t.Fatal("Sync returned before the Put in flight")
	}
	// A short context ends a Sync waiting for a stalled Put.
	f.stallOn = []string{" APPEND ", " SEARCH "}
	f.stall.Store(2)
	go func() {
		_, err := e.Put(testCtx(t), msgN(2))
		done <- err
	}()
	for {
		e.mu.Lock()
		n := e.inflight
		e.mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := e.Sync(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Sync with a short context: %v", err)
	}
	// A Sync that waits for the failing Put returns its error.
	if err := e.Sync(testCtx(t)); !errors.Is(err, ErrTimeout) {
		t.Errorf("Sync waiting for a failing Put: %v, want ErrTimeout", err)
	}
	if err := <-done; !errors.Is(err, ErrTimeout) {
		t.Errorf("Put with stalled answers: %v, want ErrTimeout", err)
	}
	if err := e.Sync(testCtx(t)); err != nil {
		t.Errorf("Sync with nothing in flight: %v", err)
	}
}

// cancelAfter is a Body that cancels a context on its n-th ReadAt: with
// n past the first pass over the body, the APPEND's literal is cut.
type cancelAfter struct {
	*bytes.Reader
	n      atomic.Int32
	cancel context.CancelFunc
}

func (b *cancelAfter) ReadAt(p []byte, off int64) (int, error) {
	if b.n.Add(-1) == 0 {
		b.cancel()
	}
	return b.Reader.ReadAt(p, off)
}

// TestCancelMidLiteral cancels a Put while its literal is on the wire:
// the connection is dropped before the literal completes, so the server
// holds nothing, and the message can be put again.
func TestCancelMidLiteral(t *testing.T) {
	srv := startMem(t, memConfig{})
	f := &faults{}
	o := srv.options("CancelLit")
	o.Dial = f.dial
	e := newExporter(t, o)
	data := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstu\n"), 8192) // 256 KiB: 4 chunks per pass
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	msg := exportertest.NewMessage("big", data)
	body := &cancelAfter{Reader: bytes.NewReader(data), cancel: cancel}
	body.n.Store(6) // the second chunk of the second pass
	msg.Body = body
	if _, err := e.Put(ctx, msg); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put cancelled mid-literal: %v, want context.Canceled", err)
	}
	if n := len(srv.messages(t, "CancelLit")); n != 0 {
		t.Fatalf("%d messages after a cancelled literal, want 0", n)
	}
	again := exportertest.NewMessage("big", data)
	ref := mustPut(t, e, again)
	if got := mustOpen(t, e, ref); !bytes.Equal(got, data) {
		t.Errorf("read back differs: %d bytes", len(got))
	}
	if n := len(srv.messages(t, "CancelLit")); n != 1 {
		t.Errorf("%d messages, want 1", n)
	}
	if n := f.dials.Load(); n != 2 {
		t.Errorf("%d dials, want 2: the cut literal must cost its connection", n)
	}
}

func TestOpenErrors(t *testing.T) {
	srv := startMem(t, memConfig{})
	e := newExporter(t, srv.options("Open"))
	c := testCtx(t)
	ref := mustPut(t, e, msgN(1))
	uv := e.UIDValidity()
	for _, bad := range []string{"", "x", "1", "1/", "/1", "0/1", "1/0", "a/b", "1/2/3", "-1/2"} {
		if _, err := e.Open(c, bad); !errors.Is(err, ErrInvalidRef) {
			t.Errorf("Open(%q) = %v, want ErrInvalidRef", bad, err)
		}
	}
	if _, err := e.Open(c, fmt.Sprintf("%d/999", uv)); !errors.Is(err, exporters.ErrNotFound) {
		t.Errorf("Open of a missing UID: %v, want ErrNotFound", err)
	}
	if _, err := e.Open(c, fmt.Sprintf("%d/1", uv+1)); !errors.Is(err, exporters.ErrNotFound) {
		t.Errorf("Open with another UIDVALIDITY: %v, want ErrNotFound", err)
	}
	// A reader closed early hands back a working Exporter.
	big := exportertest.NewMessage("big", bytes.Repeat([]byte("x\n"), 100000))
	bigRef := mustPut(t, e, big)
	rc, err := e.Open(c, bigRef)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if _, err := io.ReadFull(rc, buf); err != nil || string(buf) != "x\nx\nx\nx\nx\n" {
		t.Fatalf("read %q, %v", buf, err)
	}
	rc.Close()
	if _, err := rc.Read(buf); err == nil {
		t.Error("Read after Close succeeded")
	}
	if got := mustOpen(t, e, ref); !bytes.Equal(got, messageBytes(msgN(1))) {
		t.Errorf("read back %q", got)
	}
}

func TestClosed(t *testing.T) {
	srv := startMem(t, memConfig{})
	e, err := New(testCtx(t), srv.options("Closed"))
	if err != nil {
		t.Fatal(err)
	}
	ref := mustPut(t, e, msgN(1))
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	c := testCtx(t)
	if _, err := e.Put(c, msgN(2)); !errors.Is(err, ErrClosed) {
		t.Errorf("Put after Close: %v", err)
	}
	if err := e.Sync(c); !errors.Is(err, ErrClosed) {
		t.Errorf("Sync after Close: %v", err)
	}
	if _, err := e.Open(c, ref); !errors.Is(err, ErrClosed) {
		t.Errorf("Open after Close: %v", err)
	}
	if err := e.Resume(c, "", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Resume after Close: %v", err)
	}
}

// TestPutErrorsNameMessage checks error identity and that a failed Put
// leaves nothing in the folder.
func TestPutErrorsNameMessage(t *testing.T) {
	srv := startMem(t, memConfig{})
	e := newExporter(t, srv.options("Names"))
	msg := msgN(1)
	msg.Body = &shortBody{bytes.NewReader(messageBytes(msg))}
	_, err := e.Put(testCtx(t), msg)
	if !errors.Is(err, ErrShortBody) || !strings.Contains(err.Error(), msg.Key) || !strings.Contains(err.Error(), e.Properties().ID) {
		t.Errorf("Put of a short body: %v, want ErrShortBody naming the message and destination", err)
	}
	if n := len(srv.messages(t, "Names")); n != 0 {
		t.Errorf("%d messages after a failed Put", n)
	}
}

type shortBody struct{ *bytes.Reader }

func (b *shortBody) Size() int64 { return b.Reader.Size() + 10 }

// Read-only (verify) never creates a folder, refuses writes, and reads
// what a writer stored.
func TestReadOnly(t *testing.T) {
	srv := startMem(t, memConfig{})
	o := srv.options("Missing/Folder")
	o.ReadOnly = true
	if e, err := New(testCtx(t), o); !errors.Is(err, exporters.ErrNotFound) {
		if e != nil {
			e.Close()
		}
		t.Fatalf("read-only New of a missing folder: %v, want ErrNotFound", err)
	}
	cl := srv.client(t)
	l, err := cl.List("", "*", nil).Collect()
	cl.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range l {
		if strings.HasPrefix(d.Mailbox, "Missing") {
			t.Errorf("read-only New created %q", d.Mailbox)
		}
	}

	w := newExporter(t, srv.options("Archive"))
	ref := mustPut(t, w, msgN(1))
	if err := w.Sync(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	o = srv.options("Archive")
	o.ReadOnly = true
	r := newExporter(t, o)
	if got := mustOpen(t, r, ref); !bytes.Equal(got, messageBytes(msgN(1))) {
		t.Errorf("read-only Open read %q", got)
	}
	if _, err := r.Put(testCtx(t), msgN(2)); !errors.Is(err, ErrReadOnly) {
		t.Errorf("read-only Put: %v, want ErrReadOnly", err)
	}
	if err := r.Sync(testCtx(t)); !errors.Is(err, ErrReadOnly) {
		t.Errorf("read-only Sync: %v, want ErrReadOnly", err)
	}
	if err := r.Resume(testCtx(t), "", nil); !errors.Is(err, ErrReadOnly) {
		t.Errorf("read-only Resume: %v, want ErrReadOnly", err)
	}
	if r.Properties() != w.Properties() {
		t.Errorf("read-only Properties %+v, writer's %+v", r.Properties(), w.Properties())
	}
}
