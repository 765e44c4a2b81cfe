package exportertest

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/internal/testmsg"
)

// stream starts a Stream of msg's key on e and fails the test if it
// cannot, or if e says it already holds the key.
func stream(t *testing.T, c context.Context, e exporters.Exporter, msg *exporters.Message) exporters.Stream {
	t.Helper()
	st, d, err := e.(exporters.Streamer).Stream(c, msg.Account, msg.Key)
	if err != nil || st == nil {
		t.Fatalf("Stream %s: stream %v, delivery %q, err %v; want a stream", msg.Key, st, d.Ref, err)
	}
	return st
}

// write writes data to st in chunks of n bytes.
func write(t *testing.T, st exporters.Stream, data []byte, n int) {
	t.Helper()
	for len(data) > 0 {
		k := min(n, len(data))
		if w, err := st.Write(data[:k]); err != nil || w != k {
			t.Fatalf("Stream.Write of %d bytes = %d, %v", k, w, err)
		}
		data = data[k:]
	}
}

// testStream checks a Streamer: every sample written through a Stream in
// small chunks and committed is stored as Put would store it (same Ref,
// found by Has, read back byte for byte after Sync, idempotent with a Put
// or a Stream of the same key), and an aborted, short, cancelled or
// unfinished stream leaves nothing.
func (s *suite) testStream(t *testing.T) {
	c := ctx(t)
	dir := t.TempDir()
	e := s.openExporter(t, dir)
	var (
		refs  []string
		msgs  []*exporters.Message
		datas [][]byte
	)
	for i, sm := range testmsg.Load(t) {
		msg := NewMessage("stream-"+sm.Name, sm.Data)
		st := stream(t, c, e, msg)
		write(t, st, sm.Data, 1+i%7*1000)
		if e, ok := st.(exporters.Ender); ok && i%2 == 1 {
			// Ended first, committed later, as the pipeline does.
			if err := e.End(c, int64(len(sm.Data))); err != nil {
				t.Fatalf("End of %s: %v", sm.Name, err)
			}
		}
		d, err := st.Commit(c, int64(len(sm.Data)))
		if err != nil {
			t.Fatalf("Commit of %s: %v", sm.Name, err)
		}
		st.Abort() // after Commit: nothing happens
		refs, msgs, datas = append(refs, d.Ref), append(msgs, msg), append(datas, sm.Data)
	}
	n, _ := s.count(t, dir)
	for i, msg := range msgs {
		// Put and Stream of a key the destination holds write nothing.
		if got := s.put(t, c, e, msg); got != refs[i] {
			t.Errorf("Put after a committed Stream of %s: Ref %q, want %q", msg.UIDL, got, refs[i])
		}
		st, d, err := e.(exporters.Streamer).Stream(c, msg.Account, msg.Key)
		if err != nil || st != nil || d.Ref != refs[i] {
			t.Errorf("Stream of the held %s = stream %v, Ref %q, err %v; want no stream and Ref %q", msg.UIDL, st, d.Ref, err, refs[i])
		}
	}
	s.checkCount(t, dir, n, "a Put and a Stream of held messages")
	s.sync(t, c, e)
	for i, msg := range msgs {
		checkStored(t, c, e, msg, datas[i], refs[i])
	}
}

// testStreamFailures checks that Abort, a Commit of the wrong size, a
// Commit whose context is cancelled, and a Close of the Exporter while a
// stream is open leave nothing of the message.
func (s *suite) testStreamFailures(t *testing.T) {
	c := ctx(t)
	dir := t.TempDir()
	e := s.openExporter(t, dir)
	data := testmsg.Find(t, "long-line").Data
	n, _ := s.count(t, dir)
	cancelled, cancel := context.WithCancel(c)
	cancel()
	end := func(st exporters.Stream, size int) error {
		return st.(exporters.Ender).End(c, int64(size))
	}
	for _, tc := range []struct {
		name  string
		end   func(st exporters.Stream) error
		want  error
		ender bool // only for an exporters.Ender
	}{
		{"abort", func(st exporters.Stream) error { st.Abort(); st.Abort(); return nil }, nil, false},
		{"end-abort", func(st exporters.Stream) error {
			if err := end(st, len(data)); err != nil {
				return err
			}
			st.Abort()
			return nil
		}, nil, true},
		{"end-short", func(st exporters.Stream) error { return end(st, len(data)+1) }, exporters.ErrShortBody, true},
		{"end-cancelled", func(st exporters.Stream) error {
			if err := end(st, len(data)); err != nil {
				return err
			}
			_, err := st.Commit(cancelled, int64(len(data)))
			return err
		}, context.Canceled, true},
		{"short", func(st exporters.Stream) error {
			_, err := st.Commit(c, int64(len(data))+1)
			return err
		}, exporters.ErrShortBody, false},
		{"long", func(st exporters.Stream) error {
			_, err := st.Commit(c, int64(len(data))-1)
			return err
		}, exporters.ErrShortBody, false},
		{"cancelled", func(st exporters.Stream) error {
			_, err := st.Commit(cancelled, int64(len(data)))
			return err
		}, context.Canceled, false},
	} {
		msg := NewMessage("stream-"+tc.name, data)
		st := stream(t, c, e, msg)
		if _, ok := st.(exporters.Ender); tc.ender && !ok {
			st.Abort()
			continue
		}
		write(t, st, data, 4096)
		err := tc.end(st)
		if tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want one wrapping %v", tc.name, err, tc.want)
		}
		if _, err := st.Commit(c, int64(len(data))); err == nil {
			t.Errorf("%s: a second Commit succeeded", tc.name)
		}
		checkAbsent(t, c, e, msg.Key)
		s.checkCount(t, dir, n, fmt.Sprintf("a stream that ended by %s", tc.name))
	}
	s.sync(t, c, e)
	s.checkCount(t, dir, n, "Sync after failed streams")

	// Close aborts a stream still open; its Commit then fails.
	msg := NewMessage("stream-open-at-close", data)
	st := stream(t, c, e, msg)
	write(t, st, data[:len(data)/2], 4096)
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := st.Commit(c, int64(len(data)/2)); !errors.Is(err, exporters.ErrClosed) {
		t.Errorf("Commit after Close: err = %v, want one wrapping exporters.ErrClosed", err)
	}
	st.Abort()
	s.checkCount(t, dir, n, "Close with a stream open")
	checkAbsent(t, c, s.openExporter(t, dir), msg.Key)
}
