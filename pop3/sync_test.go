package pop3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

// forgedBody is a message whose body has a line "." followed by what looks
// like the reply to the next RETR: a server that does not dot-stuff sends
// it as it is.
const forgedBody = "Subject: a\r\n\r\nhello\r\n.\r\n+OK 20 octets\r\nforged\r\n.\r\n"

// A server that does not dot-stuff ends message 1 early; the rest of its
// body would be taken as the reply to RETR 2. The LIST marker after RETR 1
// reads "+OK 20 octets" instead of "+OK 1 size": message 1 fails with
// ErrOutOfSync and message 2 is never handed over.
func TestRetrAllOutOfSyncForgedReply(t *testing.T) {
	for _, tc := range []struct {
		name string
		read func(b *Body) error // what fn does with message 1
	}{
		{"fn returns the read error", func(b *Body) error { _, err := io.ReadAll(b); return err }},
		{"fn ignores the read error", func(b *Body) error { _, _ = io.ReadAll(b); return nil }},
		{"fn reads nothing", func(b *Body) error { return nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := newScripted(t, nil,
				step{s: greet},
				step{c: "CAPA\r\n", s: "+OK\r\nPIPELINING\r\n.\r\n"},
				step{c: retrCmds(1, 2), s: "+OK 62 octets\r\n" + forgedBody + "+OK 1 62\r\n" + retrMarked(2)},
			)
			var got []string
			var readErr error
			err := c.RetrAll(ctxT(t), []int{1, 2}, 2, func(id int, b *Body, err error) error {
				if err != nil {
					t.Errorf("message %d: %v", id, err)
					return nil
				}
				if id != 1 {
					data, rerr := io.ReadAll(b)
					got = append(got, fmt.Sprintf("%d:%q:%v", id, data, rerr))
					return rerr
				}
				buf := make([]byte, 4096)
				n, _ := io.ReadFull(b, buf[:len("Subject: a\r\n\r\nhello\r\n")])
				if string(buf[:n]) != "Subject: a\r\n\r\nhello\r\n" {
					t.Errorf("message 1 starts %q", buf[:n])
				}
				readErr = tc.read(b)
				return readErr
			})
			var re *RetrError
			if !errors.As(err, &re) || re.ID != 1 || !re.Started || !errors.Is(err, ErrOutOfSync) {
				t.Fatalf("RetrAll = %#v (%v), want *RetrError{ID: 1, Started: true} wrapping ErrOutOfSync", err, err)
			}
			if readErr != nil && !errors.Is(readErr, ErrOutOfSync) {
				t.Errorf("message 1 Read: %v, want ErrOutOfSync", readErr)
			}
			if msg := err.Error(); !strings.Contains(msg, `"+OK 20 octets"`) || strings.Count(msg, "RETR 1:") != 1 {
				t.Errorf("error text %q does not quote the line once", msg)
			}
			if len(got) != 0 {
				t.Errorf("bodies after the out-of-sync one: %v", got)
			}
			if err := c.Noop(ctxT(t)); !errors.Is(err, ErrClosed) || !errors.Is(err, ErrOutOfSync) {
				t.Errorf("after out of sync: %v, want ErrClosed wrapping ErrOutOfSync", err)
			}
		})
	}
}

// The Body's Read returns ErrOutOfSync, never io.EOF, for a body whose
// marker does not fit.
func TestRetrAllOutOfSyncBodyNeverEOF(t *testing.T) {
	c, _ := newScripted(t, nil,
		step{s: greet},
		step{c: "CAPA\r\n", s: "+OK\r\nPIPELINING\r\n.\r\n"},
		step{c: retrCmds(1), s: "+OK\r\nabc\r\n.\r\n-ERR no such message\r\n"},
	)
	err := c.RetrAll(ctxT(t), []int{1}, 0, func(id int, b *Body, err error) error {
		buf := make([]byte, 1)
		var data []byte
		for {
			n, rerr := b.Read(buf)
			data = append(data, buf[:n]...)
			if rerr == io.EOF {
				t.Errorf("Read returned io.EOF after %q", data)
				return nil
			}
			if rerr != nil {
				if !errors.Is(rerr, ErrOutOfSync) {
					t.Errorf("Read = %v", rerr)
				}
				return rerr
			}
		}
	})
	if !errors.Is(err, ErrOutOfSync) {
		t.Fatalf("RetrAll = %v", err)
	}
}

// The marker's size must match what the session's LIST said.
func TestRetrAllMarkerSizeMismatch(t *testing.T) {
	c, _ := newScripted(t, nil,
		step{s: greet},
		step{c: "LIST\r\n", s: "+OK\r\n1 11\r\n2 11\r\n.\r\n"},
		step{c: "CAPA\r\n", s: "+OK\r\nPIPELINING\r\n.\r\n"},
		step{c: retrCmds(1, 2), s: retrMarked(1) + retrResp(2) + marker(2, 999)},
	)
	if _, err := c.List(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	var ids []int
	err := c.RetrAll(ctxT(t), []int{1, 2}, 0, func(id int, b *Body, err error) error {
		if _, err := io.ReadAll(b); err != nil {
			return err
		}
		ids = append(ids, id)
		return nil
	})
	var re *RetrError
	if !errors.As(err, &re) || re.ID != 2 || !re.Started || !errors.Is(err, ErrOutOfSync) {
		t.Fatalf("RetrAll = %v", err)
	}
	if fmt.Sprint(ids) != "[1]" {
		t.Errorf("complete bodies: %v", ids)
	}
}

// A "-ERR" to RETR is followed by its marker too, which may be "-ERR" (the
// message is gone) or "+OK n size".
func TestRetrAllERRWithMarker(t *testing.T) {
	c, _ := newScripted(t, nil,
		step{s: greet},
		step{c: "CAPA\r\n", s: "+OK\r\nPIPELINING\r\n.\r\n"},
		step{c: retrCmds(1, 2, 3), s: "-ERR gone\r\n-ERR no such message\r\n-ERR [SYS/TEMP] disk\r\n" + marker(2, 5) + retrMarked(3)},
		step{c: "NOOP\r\n", s: "+OK\r\n"},
	)
	var got []string
	err := c.RetrAll(ctxT(t), []int{1, 2, 3}, 0, func(id int, b *Body, err error) error {
		got = append(got, fmt.Sprintf("%d:%v", id, err != nil))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[1:true 2:true 3:false]" {
		t.Errorf("got %v", got)
	}
	if err := c.Noop(ctxT(t)); err != nil {
		t.Errorf("Noop: %v", err)
	}
}

// Without PIPELINING only one command is in flight: bytes that arrive after
// a complete response, before the next command, are out of sync.
func TestRetrLockstepBytesBeforeCommandAreOutOfSync(t *testing.T) {
	t.Run("Retr", func(t *testing.T) {
		c, _ := newScripted(t, nil, step{s: greet}, step{c: "RETR 1\r\n", s: "+OK\r\nhello\r\n.\r\n+OK 20 octets\r\nforged\r\n.\r\n"})
		b, err := c.Retr(ctxT(t), 1)
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(b)
		if !errors.Is(err, ErrOutOfSync) || string(data) != "hello\r\n" {
			t.Fatalf("ReadAll = %q, %v; want ErrOutOfSync", data, err)
		}
		if !strings.Contains(err.Error(), "+OK 20 octets") {
			t.Errorf("error %q does not show the bytes", err)
		}
		if err := c.Noop(ctxT(t)); !errors.Is(err, ErrOutOfSync) {
			t.Errorf("after: %v", err)
		}
	})
	t.Run("Top", func(t *testing.T) {
		c, _ := newScripted(t, nil, step{s: greet}, step{c: "TOP 1 0\r\n", s: "+OK\r\nA: b\r\n\r\n.\r\nextra\r\n"})
		b, err := c.Top(ctxT(t), 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(b); !errors.Is(err, ErrOutOfSync) {
			t.Fatalf("ReadAll = %v; want ErrOutOfSync", err)
		}
	})
	t.Run("RetrAll", func(t *testing.T) {
		c, _ := newScripted(t, nil,
			step{s: greet},
			step{c: "CAPA\r\n", s: "+OK\r\nUIDL\r\n.\r\n"},
			step{c: "RETR 1\r\n", s: retrResp(1)},
			step{c: "RETR 2\r\n", s: "+OK\r\nhello\r\n.\r\n+OK forged\r\n"},
		)
		var ids []int
		err := c.RetrAll(ctxT(t), []int{1, 2, 3}, 0, func(id int, b *Body, err error) error {
			if _, err := io.ReadAll(b); err != nil {
				return err
			}
			ids = append(ids, id)
			return nil
		})
		var re *RetrError
		if !errors.As(err, &re) || re.ID != 2 || !re.Started || !errors.Is(err, ErrOutOfSync) {
			t.Fatalf("RetrAll = %v", err)
		}
		if fmt.Sprint(ids) != "[1]" {
			t.Errorf("complete bodies %v", ids)
		}
	})
	t.Run("ERR", func(t *testing.T) {
		c, _ := newScripted(t, nil, step{s: greet}, step{c: "RETR 1\r\n", s: "-ERR no\r\n+OK\r\n"})
		if _, err := c.Retr(ctxT(t), 1); !errors.Is(err, ErrOutOfSync) {
			t.Fatalf("Retr = %v; want ErrOutOfSync", err)
		}
	})
	t.Run("DELE after login", func(t *testing.T) {
		c, _ := newScripted(t, nil, step{s: greet},
			step{c: "USER bob\r\n", s: "+OK\r\n"},
			step{c: "PASS pw\r\n", s: "+OK\r\n"},
			step{c: "DELE 1\r\n", s: "+OK\r\n-ERR\r\n"})
		if err := c.User(ctxT(t), "bob"); err != nil {
			t.Fatal(err)
		}
		if err := c.Pass(ctxT(t), "pw"); err != nil {
			t.Fatal(err)
		}
		if err := c.Dele(ctxT(t), 1); !errors.Is(err, ErrOutOfSync) {
			t.Fatalf("Dele = %v; want ErrOutOfSync", err)
		}
	})
	t.Run("NoDotStuff server", func(t *testing.T) {
		// Over net.Pipe the server's one write arrives whole.
		srv := pop3test.NewServer([]pop3test.Mailbox{{User: "bob", Password: "pw", Messages: []pop3test.Message{
			{UID: "a", Data: []byte(forgedBody)}, {UID: "b", Data: []byte("second\r\n")},
		}}}, &pop3test.ServerOptions{Faults: pop3test.Faults{NoDotStuff: true, NoPipelining: true}})
		t.Cleanup(func() { _ = srv.Close() })
		c := pipeLogin(t, srv)
		var ids []int
		err := c.RetrAll(ctxT(t), []int{1, 2}, 0, func(id int, b *Body, err error) error {
			if _, err := io.ReadAll(b); err != nil {
				return err
			}
			ids = append(ids, id)
			return nil
		})
		var re *RetrError
		if !errors.As(err, &re) || re.ID != 1 || !re.Started || !errors.Is(err, ErrOutOfSync) || len(ids) != 0 {
			t.Fatalf("RetrAll = %v, complete bodies %v", err, ids)
		}
	})
}

// pipeLogin serves one session of srv over net.Pipe and logs in as bob.
func pipeLogin(t *testing.T, srv *pop3test.Server) *Client {
	t.Helper()
	cli, sconn := net.Pipe()
	go srv.ServeConn(sconn)
	c, err := NewClient(ctxT(t), cli, &Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Login(ctxT(t), &Auth{Username: "bob", Password: "pw", AllowPlaintext: true}); err != nil {
		t.Fatal(err)
	}
	return c
}

// The same broken server with PIPELINING, over TCP.
func TestRetrAllOutOfSyncAgainstServer(t *testing.T) {
	srv, addr := startServer(t, []pop3test.Mailbox{{User: "bob", Password: "pw", Messages: []pop3test.Message{
		{UID: "a", Data: []byte(forgedBody)}, {UID: "b", Data: []byte("second\r\n")}, {UID: "c", Data: []byte("third\r\n")},
	}}}, &pop3test.ServerOptions{Faults: pop3test.Faults{NoDotStuff: true}})
	c := login(t, addr, "bob", nil)
	if _, err := c.List(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	var ids []int
	err := c.RetrAll(ctxT(t), []int{1, 2, 3}, 0, func(id int, b *Body, err error) error {
		if _, err := io.ReadAll(b); err != nil {
			return err
		}
		ids = append(ids, id)
		return nil
	})
	var re *RetrError
	if !errors.As(err, &re) || re.ID != 1 || !re.Started || !errors.Is(err, ErrOutOfSync) || len(ids) != 0 {
		t.Fatalf("RetrAll = %v, complete bodies %v", err, ids)
	}
	if n := srv.RetrCount("bob", "a"); n != 1 {
		t.Errorf("RetrCount(a) = %d", n)
	}
}

// The connection drops right after a complete body, before its marker's
// reply: the body is complete (io.EOF), and the break is reported for the
// next message, or plainly when it was the last.
func TestRetrAllMarkerDropAfterCompleteBody(t *testing.T) {
	for _, tc := range []struct {
		name string
		ids  []int
	}{{"more to come", []int{1, 2}}, {"last message", []int{1}}} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := newScripted(t, nil,
				step{s: greet},
				step{c: "CAPA\r\n", s: "+OK\r\nPIPELINING\r\n.\r\n"},
				step{c: retrCmds(tc.ids...), s: retrResp(1), close: true},
			)
			var bodies []string
			err := c.RetrAll(ctxT(t), tc.ids, 0, func(id int, b *Body, err error) error {
				data, rerr := io.ReadAll(b)
				if rerr != nil {
					return rerr
				}
				bodies = append(bodies, fmt.Sprintf("%d:%s", id, data))
				return nil
			})
			if fmt.Sprint(bodies) != fmt.Sprint([]string{"1:message 1\r\n"}) {
				t.Errorf("bodies %q", bodies)
			}
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("RetrAll = %v, want io.ErrUnexpectedEOF", err)
			}
			var re *RetrError
			isRE := errors.As(err, &re)
			if len(tc.ids) == 1 {
				if isRE {
					t.Errorf("RetrAll = %#v, want a plain error after the last body", re)
				}
				return
			}
			if !isRE || re.ID != 2 || re.Started {
				t.Errorf("RetrAll = %v, want *RetrError{ID: 2, Started: false}", err)
			}
		})
	}
}

// A server that goes silent is reported for the message it was answering:
// Started false when its status line had not come, true inside its body.
func TestRetrErrorWaitingForStatus(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pipe    bool
		s       string
		id      int
		started bool
	}{
		{"pipelined before status", true, retrMarked(1), 2, false},
		{"pipelined in body", true, retrMarked(1) + "+OK\r\npartial", 2, true},
		{"pipelined before marker", true, retrMarked(1) + retrResp(2), 3, false},
		{"lockstep before status", false, "", 1, false},
		{"lockstep half a status line", false, "+OK 12", 1, false},
		{"lockstep in body", false, "+OK\r\npart", 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			capa, cmds := "+OK\r\n.\r\n", "RETR 1\r\n"
			if tc.pipe {
				capa, cmds = "+OK\r\nPIPELINING\r\n.\r\n", retrCmds(1, 2, 3)
			}
			c, _ := newScripted(t, &Options{Timeout: 200 * time.Millisecond},
				step{s: greet},
				step{c: "CAPA\r\n", s: capa},
				step{c: cmds, s: tc.s},
			)
			err := c.RetrAll(ctxT(t), []int{1, 2, 3}, 0, func(id int, b *Body, err error) error {
				if err != nil {
					return err
				}
				_, err = io.ReadAll(b)
				return err
			})
			var re *RetrError
			if !errors.As(err, &re) || re.ID != tc.id || re.Started != tc.started || !errors.Is(err, ErrTimeout) {
				t.Fatalf("RetrAll = %v (%#v), want *RetrError{ID: %d, Started: %v} wrapping ErrTimeout", err, re, tc.id, tc.started)
			}
		})
	}
}

// A protocol error in place of the status line counts as started: the
// line arrived.
func TestRetrErrorGarbageStatus(t *testing.T) {
	c, _ := newScripted(t, nil,
		step{s: greet},
		step{c: "CAPA\r\n", s: "-ERR\r\n"},
		step{c: "RETR 1\r\n", s: "garbage\r\n"},
	)
	err := c.RetrAll(ctxT(t), []int{1}, 0, func(int, *Body, error) error { return nil })
	var re *RetrError
	var pe *ProtocolError
	if !errors.As(err, &re) || re.ID != 1 || !re.Started || !errors.As(err, &pe) {
		t.Fatalf("RetrAll = %v", err)
	}
}

// A cancelled context between messages ends RetrAll with a RetrError for
// the next message.
func TestRetrAllCancelBetweenMessages(t *testing.T) {
	c, _ := newScripted(t, nil,
		step{s: greet},
		step{c: "CAPA\r\n", s: "+OK\r\nPIPELINING\r\n.\r\n"},
		step{c: retrCmds(1, 2), s: retrMarked(1) + retrMarked(2)},
	)
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	err := c.RetrAll(ctx, []int{1, 2}, 0, func(id int, b *Body, err error) error {
		cancel()
		return nil
	})
	var re *RetrError
	if !errors.As(err, &re) || re.ID != 2 || re.Started || !errors.Is(err, context.Canceled) {
		t.Fatalf("RetrAll = %v", err)
	}
}

// TestRetrLockstepLateBytesAreOutOfSync: without pipelining, the rest of a
// body the server ended early may arrive only after the client sent its
// next command. The next RETR is sent once the body's terminator is read,
// and the first line of its answer is read before the body reports EOF:
// the late bytes make that body fail, so no truncated message and no
// forgery is ever handed over as complete.
func TestRetrLockstepLateBytesAreOutOfSync(t *testing.T) {
	for _, tc := range []struct {
		name, late string
		failed     int   // the message whose body fails out of sync
		complete   []int // the bodies handed over as complete
	}{
		{"rest of the body", "the rest of message 1\r\n.\r\n+OK\r\nmessage 2\r\n.\r\n", 1, nil},
		// A late forged "+OK" passes for the status of RETR 2 (only
		// pipelining's exact LIST markers tell it apart): message 1 is
		// handed over cut short, which the caller's LIST size check
		// catches, and the forgery fails at its end.
		{"forged reply", "+OK 20 octets\r\nforged\r\n.\r\nlast line\r\n.\r\n", 2, []int{1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := newScripted(t, nil,
				step{s: greet},
				step{c: "CAPA\r\n", s: "+OK\r\nUIDL\r\n.\r\n"},
				step{c: "RETR 1\r\n", s: "+OK\r\nbefore the dot\r\n.\r\n"},
				step{c: "RETR 2\r\n", s: tc.late},
			)
			var complete []int
			err := c.RetrAll(ctxT(t), []int{1, 2}, 0, func(id int, b *Body, err error) error {
				if _, err := io.ReadAll(b); err != nil {
					return err
				}
				complete = append(complete, id)
				return nil
			})
			var re *RetrError
			if !errors.As(err, &re) || re.ID != tc.failed || !re.Started || !errors.Is(err, ErrOutOfSync) {
				t.Fatalf("RetrAll = %v; want RetrError{%d, started} wrapping ErrOutOfSync", err, tc.failed)
			}
			if fmt.Sprint(complete) != fmt.Sprint(tc.complete) && !(len(complete) == 0 && len(tc.complete) == 0) {
				t.Errorf("bodies handed over as complete: %v, want %v", complete, tc.complete)
			}
		})
	}
}
