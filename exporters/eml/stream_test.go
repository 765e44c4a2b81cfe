package eml

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/exportertest"
	"github.com/popmigrate/popmigrate/internal/testmsg"
)

// mustStream writes data into a Stream of m's key in chunks of n bytes
// and commits it.
func mustStream(t testing.TB, e *Exporter, m *exporters.Message, data []byte, n int) string {
	t.Helper()
	st, d, err := e.Stream(t.Context(), m.Account, m.Key)
	if err != nil || st == nil {
		t.Fatalf("Stream %s: stream %v, Ref %q, err %v; want a stream", m.UIDL, st, d.Ref, err)
	}
	for rest := data; len(rest) > 0; {
		k := min(n, len(rest))
		if w, err := st.Write(rest[:k]); err != nil || w != k {
			t.Fatalf("Write of %d bytes = %d, %v", k, w, err)
		}
		rest = rest[k:]
	}
	d, err = st.Commit(t.Context(), int64(len(data)))
	if err != nil {
		t.Fatalf("Commit of %s: %v", m.UIDL, err)
	}
	return d.Ref
}

// filler returns header lines of about n bytes in all.
func filler(n int) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "X-Filler-%d: %s\n", i, strings.Repeat("f", 70))
	}
	return b.String()
}

// A streamed message gets the name Put gives the same bytes whenever its
// header has a usable date, wherever the date field sits in the first
// MaxHeaderScan bytes and however the bytes arrive in writes.
func TestStreamNameAsPut(t *testing.T) {
	const date = "Date: Tue, 4 Feb 2020 05:06:07 +0100\n"
	const rcvd = "Received: from a by b; Wed, 5 Feb 2020 01:02:03 -0000\n"
	cases := map[string]string{
		"date":                  date + "Subject: s\n\nbody\n",
		"received":              rcvd + "Subject: s\n\nbody\n",
		"received and date":     date + rcvd + "\nbody\n",
		"date near the limit":   filler(MaxHeaderScan-200) + date + "\n" + strings.Repeat("body\n", 40000),
		"date across the limit": filler(MaxHeaderScan-len(date)/2) + date + "\nbody\n",
		"no header end":         date + "Subject: s",
		"large body":            date + "\n" + strings.Repeat("0123456789abcdef", 1<<16),
	}
	for _, s := range testmsg.Load(t) {
		cases["sample "+s.Name] = string(s.Data)
	}
	streamed, put := newExporter(t, t.TempDir()), newExporter(t, t.TempDir())
	n := 0
	for name, body := range cases {
		data := []byte(body)
		_, hdrDate := nameDateOf(data)
		// Put's fallback (msg.Received) is not a Stream's: the names
		// match when the header gives the date.
		if !hdrDate {
			continue
		}
		n++
		for i, chunk := range []int{1, 7, 4096, 64 << 10, len(data) + 1} {
			m := msg(fmt.Sprintf("name-%s-%d", name, i), body)
			if len(data) > 128<<10 && chunk == 1 {
				continue
			}
			want := mustPut(t, put, m)
			if got := mustStream(t, streamed, m, data, chunk); got != want {
				t.Errorf("%s in writes of %d bytes: Stream named it %q, Put %q", name, chunk, got, want)
			}
		}
	}
	if n < 6 {
		t.Fatalf("only %d messages had a header date", n)
	}
	// Past the limit the header is not read, by either.
	late := filler(MaxHeaderScan+10) + "Date: Tue, 4 Feb 2020 05:06:07 +0100\n\nbody\n"
	if _, ok := nameDateOf([]byte(late)); ok {
		t.Errorf("a Date field past MaxHeaderScan was read")
	}
}

// nameDateOf returns the date that names a file holding data, as Put
// reads it, and whether that date came from the header.
func nameDateOf(data []byte) (time.Time, bool) {
	m := exportertest.NewMessage("probe", data)
	d, err := messageDate(m)
	if err != nil {
		panic(err)
	}
	return d, !d.Equal(m.Received.UTC())
}

// A message whose header has no usable date is named after the time of
// Commit: the moment the pipeline would have called Put, whose
// msg.Received is the time of that call.
func TestStreamNoHeaderDate(t *testing.T) {
	e := newExporter(t, t.TempDir())
	for _, body := range []string{
		"Subject: no date\n\nbody\n",
		"Date: not a date at all\nSubject: s\n\nbody\n",
		"Date: Tue, 4 Feb 2200 05:06:07 +0100\n\nfar in the future\n",
		"",
	} {
		m := msg("nodate-"+body, body)
		st, _, err := e.Stream(t.Context(), m.Account, m.Key)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
		before := time.Now().UTC().Truncate(time.Second)
		d, err := st.Commit(t.Context(), int64(len(body)))
		after := time.Now().UTC()
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(d.Ref, AccountDir(m.Account)+"/")
		got, err := time.Parse(DateLayout, name[:dateLen])
		if err != nil || got.Before(before) || got.After(after) || name[dateLen:] != "-"+m.Key+Ext {
			t.Errorf("%q: named %q (date %v, %v), want a date between %v and %v, then -%s%s", body, d.Ref, got, err, before, after, m.Key, Ext)
		}
	}
}

// A stream that breaks (the download ended early: the pipeline aborts it)
// or whose Commit fails leaves nothing: no message file, no temporary
// file, nothing Has finds, nothing after Sync or in the next Exporter.
func TestStreamBrokenLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	e := newExporter(t, dir)
	// The account folder exists, as after earlier messages.
	mustStore(t, e, msg("earlier", "Subject: earlier\n\nbody\n"))
	before := files(t, dir)
	data := []byte("Date: Tue, 4 Feb 2020 05:06:07 +0100\n\n" + strings.Repeat("a line of the body\n", 20000))
	tmpDir := filepath.Join(dir, AccountDir(exportertest.Account), TmpDir)
	for _, tc := range []struct {
		name string
		end  func(st exporters.Stream) error
	}{
		{"abort", func(st exporters.Stream) error { st.Abort(); return nil }},
		{"short", func(st exporters.Stream) error {
			_, err := st.Commit(t.Context(), int64(len(data)))
			return err
		}},
		{"cancelled", func(st exporters.Stream) error {
			c, cancel := context.WithCancel(t.Context())
			cancel()
			_, err := st.Commit(c, int64(len(data)/2))
			return err
		}},
	} {
		m := msg("broken-"+tc.name, string(data))
		st, _, err := e.Stream(t.Context(), m.Account, m.Key)
		if err != nil || st == nil {
			t.Fatalf("%s: Stream = %v, %v", tc.name, st, err)
		}
		if _, err := st.Write(data[:len(data)/2]); err != nil {
			t.Fatal(err)
		}
		if ents, _ := os.ReadDir(tmpDir); len(ents) != 1 {
			t.Errorf("%s: %d temporary files while streaming, want 1", tc.name, len(ents))
		}
		if err := tc.end(st); tc.name != "abort" && err == nil {
			t.Errorf("%s: Commit succeeded", tc.name)
		}
		st.Abort()
		if got := files(t, dir); !slices.Equal(got, before) {
			t.Errorf("%s: files %q, want %q", tc.name, got, before)
		}
		if ref, ok := mustHas(t, e, m.Key); ok {
			t.Errorf("%s: Has found %q", tc.name, ref)
		}
	}
	if err := e.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := files(t, dir); !slices.Equal(got, before) {
		t.Errorf("after Sync: files %q, want %q", got, before)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	again := newExporter(t, dir)
	for _, name := range []string{"abort", "short", "cancelled"} {
		if ref, ok := mustHas(t, again, msg("broken-"+name, "").Key); ok {
			t.Errorf("a new Exporter finds the broken %s at %q", name, ref)
		}
	}
}

// A key the account folder already holds, under whatever date (Put by
// this Exporter and not yet synced, or stored by an earlier run), gets its
// copy's Delivery from Stream, which writes nothing at all.
func TestStreamHeldKeyWritesNothing(t *testing.T) {
	dir := t.TempDir()
	old := msg("held-old", "Subject: no date, named after its Received\n\nbody\n")
	first := newExporter(t, dir)
	oldRef := mustStore(t, first, old)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	e := newExporter(t, dir)
	fresh := msg("held-fresh", "Date: Tue, 4 Feb 2020 05:06:07 +0100\n\nbody\n")
	freshRef := mustPut(t, e, fresh) // staged, not yet synced
	before := files(t, dir)
	for _, tc := range []struct {
		m    *exporters.Message
		want string
	}{{old, oldRef}, {fresh, freshRef}} {
		st, d, err := e.Stream(t.Context(), tc.m.Account, tc.m.Key)
		if err != nil || st != nil || d.Ref != tc.want {
			t.Errorf("Stream of held %s = stream %v, Ref %q, err %v; want no stream and %q", tc.m.UIDL, st, d.Ref, err, tc.want)
		}
		if got := files(t, dir); !slices.Equal(got, before) {
			t.Errorf("Stream of held %s: files %q, want %q", tc.m.UIDL, got, before)
		}
	}
}

// A Put of the key that lands while a Stream of it is open wins: Commit
// removes the stream's file and returns the Put's Ref, and one copy stays.
func TestStreamLosesToPut(t *testing.T) {
	dir := t.TempDir()
	e := newExporter(t, dir)
	body := "Subject: raced\n\nbody\n"
	m := msg("raced", body)
	st, _, err := e.Stream(t.Context(), m.Account, m.Key)
	if err != nil || st == nil {
		t.Fatal(st, err)
	}
	if _, err := io.WriteString(st, body); err != nil {
		t.Fatal(err)
	}
	ref := mustPut(t, e, m) // named after msg.Received
	d, err := st.Commit(t.Context(), int64(len(body)))
	if err != nil || d.Ref != ref {
		t.Errorf("Commit after a Put of the key = %q, %v; want %q", d.Ref, err, ref)
	}
	if err := e.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := files(t, dir); !slices.Equal(got, []string{ref}) {
		t.Errorf("files %q, want only %q", got, ref)
	}
	if got := mustRead(t, e, ref); got != body {
		t.Errorf("read %q", got)
	}
}

// However large the message, a Stream keeps at most MaxHeaderScan bytes
// of it in memory.
func TestStreamHeadBounded(t *testing.T) {
	e := newExporter(t, t.TempDir())
	m := msg("bounded", "")
	st, _, err := e.Stream(t.Context(), m.Account, m.Key)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Abort()
	chunk := bytes.Repeat([]byte("x"), 48<<10)
	for range 64 {
		if _, err := st.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	head := st.(*stream).Kept()
	if len(head) != MaxHeaderScan || cap(head) != MaxHeaderScan {
		t.Errorf("after 3 MiB the stream holds %d bytes (cap %d), want %d", len(head), cap(head), MaxHeaderScan)
	}
}

// A read-only Exporter and an invalid key refuse a stream, writing
// nothing.
func TestStreamRefused(t *testing.T) {
	dir := t.TempDir()
	mustStore(t, newExporter(t, dir), msg("ro", "Subject: s\n\nb\n"))
	before := files(t, dir)
	ro, err := New(dir, &Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if st, _, err := ro.Stream(t.Context(), exportertest.Account, msg("ro2", "").Key); st != nil || !errors.Is(err, exporters.ErrReadOnly) {
		t.Errorf("read-only Stream = %v, %v; want exporters.ErrReadOnly", st, err)
	}
	w := newExporter(t, dir)
	if st, _, err := w.Stream(t.Context(), exportertest.Account, "../x"); st != nil || !errors.Is(err, exporters.ErrInvalidKey) {
		t.Errorf("Stream of an invalid key = %v, %v; want exporters.ErrInvalidKey", st, err)
	}
	if got := files(t, dir); !slices.Equal(got, before) {
		t.Errorf("files %q, want %q", got, before)
	}
}

// BenchmarkPutVsStream moves the same 100 bodies of 1 MiB into an eml
// folder per op, then Syncs: "put" fills a spool buffer from 64 KiB
// chunks, as the pipeline's spool does, and Puts from it; "stream" writes
// the same chunks into a Stream and commits it.
func BenchmarkPutVsStream(b *testing.B) {
	const (
		msgs  = 100
		size  = 1 << 20
		chunk = 64 << 10
	)
	data := append([]byte("Date: Mon, 3 Mar 2025 10:00:00 +0000\nSubject: bench\n\n"),
		bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n"), size/64)...)
	data = data[:size]
	run := func(b *testing.B, one func(e *Exporter, m *exporters.Message, spool []byte) []byte) {
		b.SetBytes(msgs * size)
		b.ReportAllocs()
		spool := make([]byte, 0, size)
		op := 0
		for b.Loop() {
			b.StopTimer()
			dir := filepath.Join(b.TempDir(), fmt.Sprint(op))
			e, err := New(dir, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			for i := range msgs {
				m := &exporters.Message{Key: fmt.Sprintf("%032x", i), Account: "bench@example.org", Received: time.Now()}
				spool = one(e, m, spool)
			}
			if err := e.Sync(b.Context()); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := e.Close(); err != nil {
				b.Fatal(err)
			}
			os.RemoveAll(dir)
			op++
			b.StartTimer()
		}
	}
	b.Run("put", func(b *testing.B) {
		run(b, func(e *Exporter, m *exporters.Message, spool []byte) []byte {
			spool = spool[:0]
			for off := 0; off < len(data); off += chunk {
				spool = append(spool, data[off:min(off+chunk, len(data))]...)
			}
			m.Body = bytes.NewReader(spool)
			if _, err := e.Put(b.Context(), m); err != nil {
				b.Fatal(err)
			}
			return spool
		})
	})
	b.Run("stream", func(b *testing.B) {
		run(b, func(e *Exporter, m *exporters.Message, spool []byte) []byte {
			st, _, err := e.Stream(b.Context(), m.Account, m.Key)
			if err != nil {
				b.Fatal(err)
			}
			for off := 0; off < len(data); off += chunk {
				if _, err := st.Write(data[off:min(off+chunk, len(data))]); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := st.Commit(b.Context(), int64(len(data))); err != nil {
				b.Fatal(err)
			}
			return spool
		})
	})
}
