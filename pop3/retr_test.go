package pop3

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// The body reaches the caller byte-exact after unstuffing: CRLF kept, bare
// LF and bare CR passed through, NUL and 8-bit untouched, no line limit.
func TestRetrExactBytes(t *testing.T) {
	long := strings.Repeat("L", 100_000)
	wire := "Subject: x\r\n\r\n..leading dot\r\n..\r\n.\rnot end\r\nbare\nlf\nbare\rcr\r\nnul\x00\xe9\r\n" + long + "\r\n...\r\n.\r\n"
	want := "Subject: x\r\n\r\n.leading dot\r\n.\r\n\rnot end\r\nbare\nlf\nbare\rcr\r\nnul\x00\xe9\r\n" + long + "\r\n..\r\n"
	c, _ := newScripted(t, nil, step{s: greet}, step{c: "RETR 1\r\n", s: "+OK 120 octets\r\n" + wire})
	b, err := c.Retr(ctxT(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(b)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("body = %.200q\nwant   %.200q", got, want)
	}
	if b.WireBytes() != int64(len(want)) {
		t.Errorf("WireBytes = %d, want %d", b.WireBytes(), len(want))
	}
	if b.ID() != 1 {
		t.Errorf("ID = %d", b.ID())
	}
}

func TestRetrErr(t *testing.T) {
	c, _ := newScripted(t, nil, step{s: greet},
		step{c: "RETR 4\r\n", s: "-ERR [SYS/TEMP] disk error\r\n"},
		step{c: "NOOP\r\n", s: "+OK\r\n"})
	b, err := c.Retr(ctxT(t), 4)
	var pe *Error
	if b != nil || !errors.As(err, &pe) || pe.ID != 4 || !pe.Temporary() {
		t.Fatalf("Retr = %v, %v", b, err)
	}
	if err := c.Noop(ctxT(t)); err != nil {
		t.Fatalf("Noop after RETR -ERR: %v", err)
	}
}

func TestTop(t *testing.T) {
	c, _ := newScripted(t, nil, step{s: greet}, step{c: "TOP 2 0\r\n", s: "+OK\r\nSubject: a\r\n\r\n.\r\n"})
	b, err := c.Top(ctxT(t), 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(b)
	if err != nil || string(got) != "Subject: a\r\n\r\n" {
		t.Fatalf("Top = %q, %v", got, err)
	}
}

func TestMessageTooLarge(t *testing.T) {
	c, _ := newScripted(t, &Options{MaxMessageSize: 10},
		step{s: greet},
		step{c: "RETR 1\r\n", s: "+OK\r\n0123456\r\n.\r\n"},    // 9 bytes: fits
		step{c: "RETR 2\r\n", s: "+OK\r\n01234567\r\n.\r\n"},   // exactly 10
		step{c: "RETR 3\r\n", s: "+OK\r\n0123456789\r\n.\r\n"}, // 12
	)
	ctx := ctxT(t)
	for _, tc := range []struct {
		id   int
		want string
	}{{1, "0123456\r\n"}, {2, "01234567\r\n"}} {
		b, err := c.Retr(ctx, tc.id)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(b)
		if err != nil || string(got) != tc.want {
			t.Fatalf("RETR %d = %q, %v", tc.id, got, err)
		}
	}
	b, err := c.Retr(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(b)
	if !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("RETR 3 = %q, %v; want ErrMessageTooLarge", got, err)
	}
	if len(got) > 10 {
		t.Errorf("delivered %d bytes over a 10-byte cap", len(got))
	}
	if err := c.Noop(ctx); !errors.Is(err, ErrClosed) || !errors.Is(err, ErrMessageTooLarge) {
		t.Errorf("after too large: %v", err)
	}
}

func TestRetrUnexpectedEOF(t *testing.T) {
	c, _ := newScripted(t, nil, step{s: greet}, step{c: "RETR 1\r\n", s: "+OK\r\nhalf a mess", close: true})
	b, err := c.Retr(ctxT(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(b); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
	}
}

// retrResp is a RETR answer whose body names the message.
func retrResp(id int) string {
	return fmt.Sprintf("+OK\r\nmessage %d\r\n.\r\n", id)
}

// retrMarked is retrResp followed by the answer to the LIST marker that
// RetrAll sends after each pipelined RETR.
func retrMarked(id int) string {
	return retrResp(id) + marker(id, int64(len(fmt.Sprintf("message %d\r\n", id))))
}

// marker is the answer to "LIST id".
func marker(id int, size int64) string {
	return fmt.Sprintf("+OK %d %d\r\n", id, size)
}

// retrCmds is what RetrAll sends for ids when pipelining: RETR n and its
// LIST n marker.
func retrCmds(ids ...int) string {
	var b strings.Builder
	for _, id := range ids {
		fmt.Fprintf(&b, "RETR %d\r\nLIST %d\r\n", id, id)
	}
	return b.String()
}

// With PIPELINING, RetrAll sends a window of RETRs at once and refills it
// as answers arrive; a -ERR in the middle of the window is per message.
func TestRetrAllPipelinedTranscript(t *testing.T) {
	c, sc := newScripted(t, nil,
		step{s: greet},
		step{c: "CAPA\r\n", s: "+OK\r\nPIPELINING\r\nUIDL\r\n.\r\n"},
		step{c: retrCmds(1, 2, 3), s: retrMarked(1)},
		step{c: retrCmds(4), s: "-ERR [SYS/TEMP] disk error\r\n" + marker(2, 99)},
		step{c: retrCmds(5), s: retrMarked(3) + retrMarked(4) + retrMarked(5)},
	)
	var got []string
	err := c.RetrAll(ctxT(t), []int{1, 2, 3, 4, 5}, 3, func(id int, b *Body, err error) error {
		if err != nil {
			got = append(got, fmt.Sprintf("%d:%v", id, err))
			return nil
		}
		data, rerr := io.ReadAll(b)
		if rerr != nil {
			return rerr
		}
		got = append(got, fmt.Sprintf("%d:%s", id, strings.TrimSpace(string(data))))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"1:message 1", "2:pop3: RETR 2: -ERR [SYS/TEMP] disk error", "3:message 3", "4:message 4", "5:message 5"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
	if sent := sc.finish(); sent != "CAPA\r\n"+retrCmds(1, 2, 3, 4, 5) {
		t.Errorf("client sent %q", sent)
	}
}

// RetrAll refills its window half a window at a time, in one write: one
// RETR per answer would cost the server a wakeup and a TLS record per
// message (measured: about 1.5x Dovecot's CPU of a batched client).
func TestRetrAllRefillsInBatches(t *testing.T) {
	c, sc := newScripted(t, nil,
		step{s: greet},
		step{c: "CAPA\r\n", s: "+OK\r\nPIPELINING\r\n.\r\n"},
		step{c: retrCmds(1, 2, 3, 4), s: retrMarked(1) + retrMarked(2)},
		step{c: retrCmds(5, 6), s: retrMarked(3) + retrMarked(4) + retrMarked(5) + retrMarked(6)},
	)
	n := 0
	err := c.RetrAll(ctxT(t), []int{1, 2, 3, 4, 5, 6}, 4, func(id int, b *Body, err error) error {
		if err != nil {
			return err
		}
		n++
		_, err = io.Copy(io.Discard, b)
		return err
	})
	if err != nil || n != 6 {
		t.Fatalf("RetrAll: %d messages, %v", n, err)
	}
	if sent := sc.finish(); sent != "CAPA\r\n"+retrCmds(1, 2, 3, 4, 5, 6) {
		t.Errorf("client sent %q", sent)
	}
	sc.mu.Lock()
	writes := sc.writes
	sc.mu.Unlock()
	want := []string{"CAPA\r\n", retrCmds(1, 2, 3, 4), retrCmds(5, 6)}
	if fmt.Sprintf("%q", writes) != fmt.Sprintf("%q", want) {
		t.Errorf("client writes %q, want %q", writes, want)
	}
}

// Without PIPELINING, RetrAll waits for each answer before the next RETR.
func TestRetrAllSequentialTranscript(t *testing.T) {
	c, _ := newScripted(t, nil,
		step{s: greet},
		step{c: "CAPA\r\n", s: "+OK\r\nUIDL\r\n.\r\n"},
		step{c: "RETR 7\r\n", s: retrResp(7)},
		step{c: "RETR 8\r\n", s: retrResp(8)},
		step{c: "RETR 9\r\n", s: retrResp(9)},
		// The last body is confirmed by a marker, one command after it.
		step{c: "LIST 9\r\n", s: "+OK 9 120\r\n"},
	)
	n := 0
	err := c.RetrAll(ctxT(t), []int{7, 8, 9}, 50, func(id int, b *Body, err error) error {
		if err != nil {
			return err
		}
		n++
		return nil // the client drains the unread body
	})
	if err != nil || n != 3 {
		t.Fatalf("RetrAll = %v after %d messages", err, n)
	}
}

func TestRetrAllCallbackErrorStops(t *testing.T) {
	c, _ := newScripted(t, nil,
		step{s: greet},
		step{c: "CAPA\r\n", s: "+OK\r\nPIPELINING\r\n.\r\n"},
		step{c: retrCmds(1, 2), s: retrMarked(1) + retrMarked(2)},
	)
	stop := errors.New("disk full")
	calls := 0
	err := c.RetrAll(ctxT(t), []int{1, 2}, 2, func(id int, b *Body, err error) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("RetrAll = %v after %d calls", err, calls)
	}
	if err := c.Noop(ctxT(t)); !errors.Is(err, ErrClosed) {
		t.Errorf("after stopping with RETRs in flight: %v, want ErrClosed", err)
	}
}

// Stopping after the last body was read, with nothing in flight, leaves
// the client usable. (Without pipelining, the end of a body that is not
// the last already sent the next RETR: stopping there breaks the client.)
func TestRetrAllCallbackErrorCleanStop(t *testing.T) {
	c, _ := newScripted(t, nil,
		step{s: greet},
		step{c: "CAPA\r\n", s: "+OK\r\nUIDL\r\n.\r\n"},
		step{c: "RETR 1\r\n", s: retrResp(1)},
		step{c: "LIST 1\r\n", s: "+OK 1 120\r\n"},
		step{c: "NOOP\r\n", s: "+OK\r\n"},
	)
	stop := errors.New("stop")
	err := c.RetrAll(ctxT(t), []int{1}, 0, func(id int, b *Body, err error) error {
		_, _ = io.ReadAll(b)
		return stop
	})
	if !errors.Is(err, stop) {
		t.Fatal(err)
	}
	if err := c.Noop(ctxT(t)); err != nil {
		t.Fatalf("Noop after a clean stop: %v", err)
	}
}

func TestRetrAllNetworkError(t *testing.T) {
	c, _ := newScripted(t, nil,
		step{s: greet},
		step{c: "CAPA\r\n", s: "-ERR\r\n"},
		step{c: "RETR 1\r\n", s: retrResp(1)},
		step{c: "RETR 2\r\n", s: "+OK\r\ntrunc", close: true},
	)
	var ids []int
	err := c.RetrAll(ctxT(t), []int{1, 2, 3}, 0, func(id int, b *Body, err error) error {
		ids = append(ids, id)
		if err != nil {
			return err
		}
		_, err = io.ReadAll(b)
		return err
	})
	if !errors.Is(err, io.ErrUnexpectedEOF) || len(ids) != 2 {
		t.Fatalf("RetrAll = %v, ids %v", err, ids)
	}
}
