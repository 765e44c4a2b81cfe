package imap

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popmigrate/popmigrate/exporters/exportertest"
)

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
	if qe.Reason != "NO [PARSE] Broken message" || qe.Path != filepath.Join(qdir, bad.Key+".eml") {
		t.Errorf("QuarantinedError = %+v", qe)
	}
	checkQuarantined(t, qe.Path, messageBytes(bad))
	if !IsRejected(err) {
		t.Errorf("IsRejected(%v) = false", err)
	}

	nul := exportertest.NewMessage("nul", []byte("Subject: x\n\na\x00b\n"))
	_, err = e.Put(c, nul)
	if !errors.As(err, &qe) || !strings.Contains(qe.Reason, "NUL") {
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
