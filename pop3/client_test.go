package pop3

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

func TestGreeting(t *testing.T) {
	c, _ := newScripted(t, nil, step{s: "+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n"})
	if got := c.Greeting(); got != "POP3 server ready <1896.697170952@dbc.mtview.ca.us>" {
		t.Errorf("Greeting() = %q", got)
	}
	if c.stamp != "<1896.697170952@dbc.mtview.ca.us>" {
		t.Errorf("APOP timestamp = %q", c.stamp)
	}
	if c.IsTLS() {
		t.Error("IsTLS() = true on a pipe")
	}
}

func TestGreetingErr(t *testing.T) {
	_, conn := newScript(t, step{s: "-ERR [SYS/TEMP] too many connections\r\n"})
	_, err := NewClient(ctxT(t), conn, nil)
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != "SYS/TEMP" || !pe.Temporary() || pe.Command != "greeting" {
		t.Fatalf("err = %#v, want *Error SYS/TEMP", err)
	}
	if got := err.Error(); got != "pop3: greeting: -ERR [SYS/TEMP] too many connections" {
		t.Errorf("Error() = %q", got)
	}
}

func TestErrorTemporary(t *testing.T) {
	for code, want := range map[string]bool{
		"IN-USE": true, "LOGIN-DELAY": true, "SYS/TEMP": true, "SYS/TEMP/DISK": true,
		"SYS/PERM": false, "AUTH": false, "": false, "SYSTEMP": false,
	} {
		if got := (&Error{Command: "PASS", Code: code}).Temporary(); got != want {
			t.Errorf("Temporary(%q) = %v, want %v", code, got, want)
		}
	}
	e := &Error{Command: "RETR", ID: 3, Code: "SYS/TEMP", Text: "try later"}
	if got := e.Error(); got != "pop3: RETR 3: -ERR [SYS/TEMP] try later" {
		t.Errorf("Error() = %q", got)
	}
}

func TestStatListUIDL(t *testing.T) {
	c, sc := newScripted(t, nil,
		step{s: greet},
		step{c: "STAT\r\n", s: "+OK 2 320\r\n"},
		step{c: "LIST\r\n", s: "+OK 2 messages (320 octets)\r\n1 120\r\n2 200\r\n.\r\n"},
		step{c: "LIST 2\r\n", s: "+OK 2 200\r\n"},
		step{c: "UIDL\r\n", s: "+OK\r\n1 whqtswO00WBw418f9t5JxYwZ\r\n2 QhdPYR:00WBw1Ph7x7\r\n.\r\n"},
		step{c: "UIDL 1\r\n", s: "+OK 1 whqtswO00WBw418f9t5JxYwZ\r\n"},
		step{c: "LIST 9\r\n", s: "-ERR no such message, only 2 messages in maildrop\r\n"},
		step{c: "NOOP\r\n", s: "+OK\r\n"},
	)
	ctx := ctxT(t)
	n, size, err := c.Stat(ctx)
	if err != nil || n != 2 || size != 320 {
		t.Fatalf("Stat = %d, %d, %v", n, size, err)
	}
	list, err := c.List(ctx)
	if err != nil || len(list) != 2 || list[0] != (MessageInfo{1, 120}) || list[1] != (MessageInfo{2, 200}) {
		t.Fatalf("List = %v, %v", list, err)
	}
	one, err := c.ListOne(ctx, 2)
	if err != nil || one != (MessageInfo{2, 200}) {
		t.Fatalf("ListOne = %v, %v", one, err)
	}
	uids, err := c.UIDL(ctx)
	if err != nil || len(uids) != 2 || uids[1] != (UIDInfo{ID: 2, UID: "QhdPYR:00WBw1Ph7x7"}) {
		t.Fatalf("UIDL = %v, %v", uids, err)
	}
	u, err := c.UIDLOne(ctx, 1)
	if err != nil || u != (UIDInfo{ID: 1, UID: "whqtswO00WBw418f9t5JxYwZ"}) {
		t.Fatalf("UIDLOne = %v, %v", u, err)
	}
	_, err = c.ListOne(ctx, 9)
	var pe *Error
	if !errors.As(err, &pe) || pe.Command != "LIST" || pe.ID != 9 {
		t.Fatalf("ListOne(9) err = %v", err)
	}
	if err := c.Noop(ctx); err != nil {
		t.Fatalf("Noop after -ERR: %v", err)
	}
	sc.waitDone(t)
}

func TestUIDLUnsupported(t *testing.T) {
	c, _ := newScripted(t, nil,
		step{s: greet},
		step{c: "UIDL\r\n", s: "-ERR unknown command\r\n"},
		step{c: "NOOP\r\n", s: "+OK\r\n"},
	)
	_, err := c.UIDL(ctxT(t))
	var pe *Error
	if !errors.As(err, &pe) || pe.Command != "UIDL" {
		t.Fatalf("UIDL err = %v, want *Error", err)
	}
	if err := c.Noop(ctxT(t)); err != nil {
		t.Fatalf("client unusable after UIDL -ERR: %v", err)
	}
}

func TestDuplicateUIDLsKept(t *testing.T) {
	c, _ := newScripted(t, nil,
		step{s: greet},
		step{c: "UIDL\r\n", s: "+OK\r\n1 same\r\n2 same\r\n3 other\r\n.\r\n"},
	)
	uids, err := c.UIDL(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	want := []UIDInfo{{ID: 1, UID: "same"}, {ID: 2, UID: "same"}, {ID: 3, UID: "other"}}
	if len(uids) != 3 || uids[0] != want[0] || uids[1] != want[1] || uids[2] != want[2] {
		t.Fatalf("UIDL = %v, want %v", uids, want)
	}
}

func TestDeleRsetQuit(t *testing.T) {
	c, sc := newScripted(t, nil,
		step{s: greet},
		step{c: "DELE 1\r\n", s: "+OK message 1 deleted\r\n"},
		step{c: "RSET\r\n", s: "+OK\r\n"},
		step{c: "DELE 2\r\n", s: "+OK\r\n"},
		step{c: "QUIT\r\n", s: "+OK bye\r\n"},
	)
	ctx := ctxT(t)
	for _, f := range []func() error{
		func() error { return c.Dele(ctx, 1) },
		func() error { return c.Rset(ctx) },
		func() error { return c.Dele(ctx, 2) },
		func() error { return c.Quit(ctx) },
	} {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Noop(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Noop after Quit: %v, want ErrClosed", err)
	}
	if got := sc.finish(); got != "DELE 1\r\nRSET\r\nDELE 2\r\nQUIT\r\n" {
		t.Errorf("client sent %q", got)
	}
}

// A connection that drops before QUIT's +OK must not look committed.
func TestQuitWithoutOK(t *testing.T) {
	c, _ := newScripted(t, nil, step{s: greet}, step{c: "QUIT\r\n", close: true})
	err := c.Quit(ctxT(t))
	if err == nil {
		t.Fatal("Quit returned nil without +OK")
	}
	var pe *Error
	if errors.As(err, &pe) {
		t.Errorf("Quit err = %v, want a connection error", err)
	}
}

func TestQuitErr(t *testing.T) {
	c, _ := newScripted(t, nil, step{s: greet}, step{c: "QUIT\r\n", s: "-ERR [SYS/TEMP] some deleted messages not removed\r\n"})
	var pe *Error
	if err := c.Quit(ctxT(t)); !errors.As(err, &pe) || pe.Command != "QUIT" {
		t.Fatalf("Quit err = %v, want *Error", err)
	}
}

func TestCloseSendsNothing(t *testing.T) {
	c, sc := newScripted(t, nil, step{s: greet})
	sc.waitDone(t)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if got := sc.finish(); got != "" {
		t.Errorf("Close sent %q", got)
	}
	if err := c.Noop(ctxT(t)); !errors.Is(err, ErrClosed) {
		t.Errorf("Noop after Close: %v", err)
	}
}

func TestInvalidArguments(t *testing.T) {
	c, sc := newScripted(t, nil, step{s: greet}, step{c: "USER a b\r\n", s: "+OK\r\n"})
	ctx := ctxT(t)
	checks := []struct {
		name string
		err  error
	}{
		{"USER CRLF", c.User(ctx, "bob\r\nDELE 1")},
		{"USER LF", c.User(ctx, "bob\n")},
		{"PASS NUL", c.Pass(ctx, "pw\x00")},
		{"PASS CR", c.Pass(ctx, "pw\rx")},
		{"APOP space", c.APOP(ctx, "a b", "pw")},
		{"RETR 0", func() error { _, err := c.Retr(ctx, 0); return err }()},
		{"TOP -1 lines", func() error { _, err := c.Top(ctx, 1, -1); return err }()},
		{"DELE -1", c.Dele(ctx, -1)},
		{"AUTH bad mech", c.AuthSASL(ctx, "PLAIN X", nil, nil)},
		{"RetrAll 0", c.RetrAll(ctx, []int{1, 0}, 0, nil)},
	}
	for _, ch := range checks {
		if !errors.Is(ch.err, ErrInvalidArgument) {
			t.Errorf("%s: err = %v, want ErrInvalidArgument", ch.name, ch.err)
		}
	}
	// Spaces are fine in a USER name (USER takes the rest of the line).
	if err := c.User(ctx, "a b"); err != nil {
		t.Fatalf("USER with a space: %v", err)
	}
	if got := sc.finish(); got != "USER a b\r\n" {
		t.Errorf("client sent %q, want only the valid USER", got)
	}
}

func TestProtocolError(t *testing.T) {
	c, _ := newScripted(t, nil, step{s: greet}, step{c: "NOOP\r\n", s: "HELLO THERE\r\n"})
	err := c.Noop(ctxT(t))
	var pe *ProtocolError
	if !errors.As(err, &pe) || pe.Command != "NOOP" || pe.Line != "HELLO THERE" {
		t.Fatalf("err = %v, want *ProtocolError", err)
	}
	err = c.Noop(ctxT(t))
	if !errors.Is(err, ErrClosed) || !errors.As(err, &pe) {
		t.Errorf("after protocol error: %v, want ErrClosed wrapping the cause", err)
	}
}

func TestProtocolErrorTruncatesLine(t *testing.T) {
	e := &ProtocolError{Command: "LIST", Line: strings.Repeat("x", 1000), Err: "bad"}
	if n := len(e.Error()); n > 200 {
		t.Errorf("Error() is %d bytes long", n)
	}
}

func TestBadListingLine(t *testing.T) {
	c, _ := newScripted(t, nil, step{s: greet}, step{c: "LIST\r\n", s: "+OK\r\n1 abc\r\n.\r\n"})
	var pe *ProtocolError
	if _, err := c.List(ctxT(t)); !errors.As(err, &pe) {
		t.Fatalf("err = %v, want *ProtocolError", err)
	}
}

func TestLineTooLong(t *testing.T) {
	long := strings.Repeat("x", 200)
	_, conn := newScript(t, step{s: "+OK " + long + "\r\n"})
	_, err := NewClient(ctxT(t), conn, &Options{MaxLineLength: 100})
	if !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("greeting of 204 bytes: err = %v, want ErrLineTooLong", err)
	}
}

// A line with no end at all is refused after a bounded read, not buffered
// without limit.
func TestLineTooLongUnterminated(t *testing.T) {
	sc, conn := newScript(t, step{s: greet})
	c, err := NewClient(ctxT(t), conn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc.waitDone(t)
	go func() {
		// Feed 1 MiB without a newline; the client stops reading early,
		// so the write ends with an error once the client closes.
		_, _ = sc.conn.Write(bytes.Repeat([]byte("y"), 1<<20))
	}()
	_, err = c.List(ctxT(t))
	if !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("err = %v, want ErrLineTooLong", err)
	}
}

func TestListingTooLong(t *testing.T) {
	c, _ := newScripted(t, &Options{MaxListing: 3},
		step{s: greet},
		step{c: "UIDL\r\n", s: "+OK\r\n1 a\r\n2 b\r\n3 c\r\n4 d\r\n.\r\n"},
	)
	if _, err := c.UIDL(ctxT(t)); !errors.Is(err, ErrListingTooLong) {
		t.Fatalf("err = %v, want ErrListingTooLong", err)
	}
	if err := c.Noop(ctxT(t)); !errors.Is(err, ErrClosed) {
		t.Errorf("after listing too long: %v, want ErrClosed", err)
	}
}

func TestTimeout(t *testing.T) {
	c, _ := newScripted(t, &Options{Timeout: 150 * time.Millisecond}, step{s: greet}, step{c: "NOOP\r\n"})
	start := time.Now()
	err := c.Noop(ctxT(t))
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("timeout took %v", d)
	}
	var te interface{ Timeout() bool }
	if !errors.As(err, &te) || !te.Timeout() {
		t.Errorf("err has no Timeout() true")
	}
	if err := c.Noop(ctxT(t)); !errors.Is(err, ErrClosed) || !errors.Is(err, ErrTimeout) {
		t.Errorf("after timeout: %v, want ErrClosed wrapping ErrTimeout", err)
	}
}

// The idle timeout restarts whenever bytes arrive: a slow but steady body
// outlasts it.
func TestIdleTimeoutResetByData(t *testing.T) {
	c, sc := newScripted(t, &Options{Timeout: 300 * time.Millisecond}, step{s: greet}, step{c: "RETR 1\r\n", s: "+OK\r\n"})
	b, err := c.Retr(ctxT(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	sc.waitDone(t)
	go func() {
		for i := 0; i < 8; i++ {
			time.Sleep(100 * time.Millisecond)
			_, _ = sc.conn.Write([]byte("line\r\n"))
		}
		_, _ = sc.conn.Write([]byte(".\r\n"))
	}()
	data, err := io.ReadAll(b)
	if err != nil {
		t.Fatalf("slow body failed after %d bytes: %v", len(data), err)
	}
	if string(data) != strings.Repeat("line\r\n", 8) {
		t.Errorf("body = %q", data)
	}
}

func TestCancel(t *testing.T) {
	c, _ := newScripted(t, nil, step{s: greet}, step{c: "NOOP\r\n"})
	ctx, cancel := context.WithCancel(ctxT(t))
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	err := c.Noop(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("cancel took %v", d)
	}
	if err := c.Noop(ctxT(t)); !errors.Is(err, ErrClosed) {
		t.Errorf("after cancel: %v, want ErrClosed", err)
	}
}

func TestContextDeadline(t *testing.T) {
	c, _ := newScripted(t, nil, step{s: greet}, step{c: "NOOP\r\n"})
	ctx, cancel := context.WithTimeout(ctxT(t), 100*time.Millisecond)
	defer cancel()
	if err := c.Noop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
}

func TestCancelDuringBody(t *testing.T) {
	c, _ := newScripted(t, nil, step{s: greet}, step{c: "RETR 1\r\n", s: "+OK\r\npartial\r\n"})
	ctx, cancel := context.WithCancel(ctxT(t))
	b, err := c.Retr(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	n, err := b.Read(buf)
	if err != nil || string(buf[:n]) != "partial\r\n" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err := io.ReadAll(b); !errors.Is(err, context.Canceled) {
		t.Fatalf("Read after cancel: %v", err)
	}
	if err := b.Close(); !errors.Is(err, context.Canceled) {
		t.Errorf("Close = %v", err)
	}
}

// A context already done is refused before anything is sent, and the
// client stays usable.
func TestContextDoneBeforeCall(t *testing.T) {
	c, sc := newScripted(t, nil, step{s: greet}, step{c: "NOOP\r\n", s: "+OK\r\n"})
	ctx, cancel := context.WithCancel(ctxT(t))
	cancel()
	if err := c.Noop(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if err := c.Noop(ctxT(t)); err != nil {
		t.Fatalf("client broken by a done context: %v", err)
	}
	if got := sc.finish(); got != "NOOP\r\n" {
		t.Errorf("client sent %q", got)
	}
}

// Close from another goroutine aborts a command that waits on the server.
func TestCloseAbortsCommand(t *testing.T) {
	c, _ := newScripted(t, nil, step{s: greet}, step{c: "NOOP\r\n"})
	time.AfterFunc(100*time.Millisecond, func() { _ = c.Close() })
	if err := c.Noop(ctxT(t)); !errors.Is(err, ErrClosed) {
		t.Fatalf("err = %v, want ErrClosed", err)
	}
}

func TestDebugTranscript(t *testing.T) {
	var dbg bytes.Buffer
	c, _ := newScripted(t, &Options{Debug: &dbg},
		step{s: greet},
		step{c: "USER bob\r\n", s: "+OK\r\n"},
		step{c: "PASS s3cret pass\r\n", s: "+OK\r\n"},
		step{c: "RETR 1\r\n", s: "+OK\r\nBODY-SECRET\r\n.\r\n"},
	)
	ctx := ctxT(t)
	if err := c.User(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := c.Pass(ctx, "s3cret pass"); err != nil {
		t.Fatal(err)
	}
	b, err := c.Retr(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	want := "S: +OK POP3 ready\nC: USER bob\nS: +OK\nC: PASS ********\nS: +OK\nC: RETR 1\nS: +OK\n"
	if got := dbg.String(); got != want {
		t.Errorf("transcript:\n%s\nwant:\n%s", got, want)
	}
}

func TestBodyMustBeFinished(t *testing.T) {
	c, sc := newScripted(t, nil,
		step{s: greet},
		step{c: "RETR 1\r\n", s: "+OK\r\nabc\r\ndef\r\n.\r\n"},
		step{c: "NOOP\r\n", s: "+OK\r\n"},
	)
	ctx := ctxT(t)
	b, err := c.Retr(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Noop(ctx); !errors.Is(err, ErrBodyOpen) {
		t.Fatalf("Noop with open body: %v, want ErrBodyOpen", err)
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(b, buf); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if b.WireBytes() != 10 {
		t.Errorf("WireBytes = %d, want 10", b.WireBytes())
	}
	if err := c.Noop(ctx); err != nil {
		t.Fatalf("Noop after Close: %v", err)
	}
	if got := sc.finish(); got != "RETR 1\r\nNOOP\r\n" {
		t.Errorf("client sent %q", got)
	}
}
