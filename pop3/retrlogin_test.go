package pop3

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// loginWrite is what the client sends after the CAPA: the login, the
// listing and RETR n with its marker for n = 1..retrs.
func loginWrite(retrs int) string {
	s := "USER bob\r\nPASS pw\r\nCAPA\r\nLIST\r\nUIDL\r\n"
	for n := 1; n <= retrs; n++ {
		s += fmt.Sprintf("RETR %d\r\nLIST %d\r\n", n, n)
	}
	return s
}

// msgBody is message n's served body and its size.
func msgBody(n int, tag string) (string, int) {
	b := fmt.Sprintf("Subject: %s %d\r\n\r\nbody\r\n", tag, n)
	return b, len(b)
}

// listingOf answers LOGIN, CAPA, LIST and UIDL for a mailbox of count
// messages.
func listingOf(count int) string {
	s := "+OK\r\n+OK\r\n+OK\r\nPIPELINING\r\nUIDL\r\n.\r\n+OK\r\n"
	for n := 1; n <= count; n++ {
		_, size := msgBody(n, "m")
		s += fmt.Sprintf("%d %d\r\n", n, size)
	}
	s += ".\r\n+OK\r\n"
	for n := 1; n <= count; n++ {
		s += fmt.Sprintf("%d u%d\r\n", n, n)
	}
	return s + ".\r\n"
}

// retrAnswer is the answer to RETR n and its marker, for a mailbox of
// count messages.
func retrAnswer(n, count int, tag string) string {
	if n > count {
		return fmt.Sprintf("-ERR There's no message %d.\r\n-ERR There's no message %d.\r\n", n, n)
	}
	b, size := msgBody(n, tag)
	return fmt.Sprintf("+OK %d octets\r\n%s.\r\n+OK %d %d\r\n", size, b, n, size)
}

func retrAnswers(from, to, count int, tag string) string {
	var s string
	for n := from; n <= to; n++ {
		s += retrAnswer(n, count, tag)
	}
	return s
}

// bodies runs RetrAll over ids and returns "id:subject" per message and
// "id:-ERR" per refusal.
func bodies(t *testing.T, c *Client, ids []int, window int) ([]string, error) {
	t.Helper()
	var got []string
	err := c.RetrAll(ctxT(t), ids, window, func(id int, b *Body, err error) error {
		if err != nil {
			got = append(got, fmt.Sprintf("%d:-ERR", id))
			return nil
		}
		data, rerr := io.ReadAll(b)
		if rerr != nil {
			return rerr
		}
		subj, _, _ := strings.Cut(strings.TrimPrefix(string(data), "Subject: "), "\r\n")
		got = append(got, fmt.Sprintf("%d:%s", id, subj))
		return nil
	})
	return got, err
}

var bobAuth = &Auth{Username: "bob", Password: "pw", Mechanisms: []string{"USER"}, AllowPlaintext: true}

// RETRs sent with the login are RetrAll's first: the mailbox's messages
// come from them, and the -ERR answers past its count are swallowed,
// neither handed to fn nor an error.
func TestRetrAtLoginSmallMailbox(t *testing.T) {
	c, sc := newScripted(t, &Options{ListAtLogin: true, RetrAtLogin: 4},
		step{s: greet},
		step{c: "CAPA\r\n", s: capaPipe},
		step{c: loginWrite(4), s: listingOf(2) + retrAnswers(1, 4, 2, "m")},
		step{c: "NOOP\r\n", s: "+OK\r\n"},
	)
	ctx := ctxT(t)
	if err := c.Login(ctx, bobAuth); err != nil {
		t.Fatal(err)
	}
	if list, uids, err := c.ListUIDL(ctx); err != nil || len(list) != 2 || len(uids) != 2 {
		t.Fatalf("ListUIDL = %v, %v, %v", list, uids, err)
	}
	got, err := bodies(t, c, []int{1, 2}, 8)
	if err != nil || fmt.Sprint(got) != "[1:m 1 2:m 2]" {
		t.Fatalf("RetrAll = %v, %v", got, err)
	}
	if err := c.Noop(ctx); err != nil {
		t.Fatalf("NOOP after RetrAll: %v", err)
	}
	sc.waitDone(t)
}

// A mailbox larger than the RETRs sent with the login: RetrAll sends
// the rest in its windows, after them.
func TestRetrAtLoginLargerMailbox(t *testing.T) {
	c, _ := newScripted(t, &Options{ListAtLogin: true, RetrAtLogin: 2},
		step{s: greet},
		step{c: "CAPA\r\n", s: capaPipe},
		step{c: loginWrite(2), s: listingOf(5) + retrAnswers(1, 2, 5, "m")},
		step{c: "RETR 3\r\nLIST 3\r\nRETR 4\r\nLIST 4\r\nRETR 5\r\nLIST 5\r\n", s: retrAnswers(3, 5, 5, "m")},
	)
	ctx := ctxT(t)
	if err := c.Login(ctx, bobAuth); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.ListUIDL(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := bodies(t, c, []int{1, 2, 3, 4, 5}, 8)
	if err != nil || fmt.Sprint(got) != "[1:m 1 2:m 2 3:m 3 4:m 4 5:m 5]" {
		t.Fatalf("RetrAll = %v, %v", got, err)
	}
}

// Answers RetrAll's ids do not ask for are read and dropped: a message
// the ids skip is never handed over, and the one asked for later comes
// from a RETR of its own.
func TestRetrAtLoginDropsWhatIsNotAskedFor(t *testing.T) {
	for _, c := range []struct {
		name  string
		ids   []int
		again string // what RetrAll sends
		want  string
	}{
		{"first skipped", []int{2, 3}, "RETR 2\r\nLIST 2\r\nRETR 3\r\nLIST 3\r\n", "[2:A 2 3:A 3]"},
		{"second skipped", []int{1, 3}, "RETR 3\r\nLIST 3\r\n", "[1:m 1 3:A 3]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var again string
			for _, line := range strings.Split(strings.TrimSpace(c.again), "\r\n") {
				var n int
				if _, err := fmt.Sscanf(line, "RETR %d", &n); err == nil {
					again += retrAnswer(n, 3, "A")
				}
			}
			cl, _ := newScripted(t, &Options{ListAtLogin: true, RetrAtLogin: 3},
				step{s: greet},
				step{c: "CAPA\r\n", s: capaPipe},
				step{c: loginWrite(3), s: listingOf(3) + retrAnswers(1, 3, 3, "m")},
				step{c: c.again, s: again},
			)
			ctx := ctxT(t)
			if err := cl.Login(ctx, bobAuth); err != nil {
				t.Fatal(err)
			}
			if _, _, err := cl.ListUIDL(ctx); err != nil {
				t.Fatal(err)
			}
			got, err := bodies(t, cl, c.ids, 8)
			if err != nil || fmt.Sprint(got) != c.want {
				t.Fatalf("RetrAll = %v, %v; want %s", got, err, c.want)
			}
		})
	}
}

// Any other command first reads and drops the answers still due: an
// empty mailbox's QUIT.
func TestRetrAtLoginEmptyMailboxQuit(t *testing.T) {
	c, sc := newScripted(t, &Options{ListAtLogin: true, RetrAtLogin: 8},
		step{s: greet},
		step{c: "CAPA\r\n", s: capaPipe},
		step{c: loginWrite(8), s: listingOf(0) + retrAnswers(1, 8, 0, "m")},
		step{c: "QUIT\r\n", s: "+OK bye\r\n"},
	)
	ctx := ctxT(t)
	if err := c.Login(ctx, bobAuth); err != nil {
		t.Fatal(err)
	}
	if list, _, err := c.ListUIDL(ctx); err != nil || len(list) != 0 {
		t.Fatalf("ListUIDL = %v, %v", list, err)
	}
	if err := c.Quit(ctx); err != nil {
		t.Fatalf("QUIT: %v", err)
	}
	sc.waitDone(t)
}

// A body sent with the login is checked against the LIST answer before
// it, as any other: a marker with another size is out of sync.
func TestRetrAtLoginMarkerChecked(t *testing.T) {
	b, size := msgBody(1, "m")
	c, _ := newScripted(t, &Options{ListAtLogin: true, RetrAtLogin: 1},
		step{s: greet},
		step{c: "CAPA\r\n", s: capaPipe},
		step{c: loginWrite(1), s: listingOf(1) + fmt.Sprintf("+OK\r\n%s.\r\n+OK 1 %d\r\n", b, size+7)},
	)
	ctx := ctxT(t)
	if err := c.Login(ctx, bobAuth); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.ListUIDL(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := bodies(t, c, []int{1}, 8)
	var re *RetrError
	if !errors.Is(err, ErrOutOfSync) || !errors.As(err, &re) || re.ID != 1 || !re.Started {
		t.Fatalf("RetrAll = %v; want RetrError{1, started} out of sync", err)
	}
}

// A refused login returns its error, the same as without RETRs; the
// client is then unusable.
func TestRetrAtLoginRefused(t *testing.T) {
	c, _ := newScripted(t, &Options{ListAtLogin: true, RetrAtLogin: 2},
		step{s: greet},
		step{c: "CAPA\r\n", s: capaPipe},
		step{c: loginWrite(2), s: "+OK\r\n-ERR [IN-USE] locked\r\n" + capaPipe + "-ERR Unknown command.\r\n-ERR Unknown command.\r\n-ERR Unknown command.\r\n-ERR Too many bad commands.\r\n", close: true},
	)
	err := c.Login(ctxT(t), bobAuth)
	var pe *Error
	if !errors.As(err, &pe) || pe.Command != "PASS" || pe.Code != "IN-USE" || !pe.Temporary() {
		t.Fatalf("Login = %v; want PASS's -ERR [IN-USE]", err)
	}
	if err := c.Noop(ctxT(t)); !errors.Is(err, ErrClosed) {
		t.Errorf("NOOP after the refused login = %v; want ErrClosed", err)
	}
}

// No RETR goes out with the login when the capabilities before it do
// not list UIDL (the messages would need TOP to be told apart first).
func TestRetrAtLoginNeedsUIDL(t *testing.T) {
	c, _ := newScripted(t, &Options{ListAtLogin: true, RetrAtLogin: 2},
		step{s: greet},
		step{c: "CAPA\r\n", s: "+OK\r\nUSER\r\nPIPELINING\r\n.\r\n"},
		step{c: loginWrite(0), s: "+OK\r\n+OK\r\n+OK\r\nPIPELINING\r\n.\r\n+OK\r\n1 10\r\n.\r\n-ERR no\r\n"},
	)
	if err := c.Login(ctxT(t), bobAuth); err != nil {
		t.Fatal(err)
	}
}

// A LIST refused at login leaves nothing to check the bodies against:
// they are dropped, and RetrAll asks again.
func TestRetrAtLoginWithoutListing(t *testing.T) {
	c, _ := newScripted(t, &Options{ListAtLogin: true, RetrAtLogin: 1},
		step{s: greet},
		step{c: "CAPA\r\n", s: capaPipe},
		step{c: loginWrite(1), s: "+OK\r\n+OK\r\n+OK\r\nPIPELINING\r\nUIDL\r\n.\r\n-ERR [SYS/TEMP] later\r\n+OK\r\n1 u1\r\n.\r\n" + retrAnswer(1, 1, "m")},
		step{c: "RETR 1\r\nLIST 1\r\n", s: retrAnswer(1, 1, "A")},
	)
	ctx := ctxT(t)
	if err := c.Login(ctx, bobAuth); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.ListUIDL(ctx); !isERR(err) {
		t.Fatalf("ListUIDL = %v; want LIST's -ERR", err)
	}
	got, err := bodies(t, c, []int{1}, 8)
	if err != nil || fmt.Sprint(got) != "[1:A 1]" {
		t.Fatalf("RetrAll = %v, %v", got, err)
	}
}

// A server that offers PIPELINING before login but not after took the
// RETRs sent with the login pipelined: their answers (with markers) are
// taken, and the rest goes one command at a time.
func TestRetrAtLoginThenLockstep(t *testing.T) {
	listing := strings.Replace(listingOf(3), "+OK\r\nPIPELINING\r\nUIDL\r\n.\r\n", "+OK\r\nUIDL\r\n.\r\n", 1)
	b3, size3 := msgBody(3, "m")
	c, _ := newScripted(t, &Options{ListAtLogin: true, RetrAtLogin: 2},
		step{s: greet},
		step{c: "CAPA\r\n", s: capaPipe},
		step{c: loginWrite(2), s: listing + retrAnswers(1, 2, 3, "m")},
		step{c: "RETR 3\r\n", s: fmt.Sprintf("+OK\r\n%s.\r\n", b3)},
		step{c: "LIST 3\r\n", s: fmt.Sprintf("+OK 3 %d\r\n", size3)},
	)
	ctx := ctxT(t)
	if err := c.Login(ctx, bobAuth); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.ListUIDL(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := bodies(t, c, []int{1, 2, 3}, 8)
	if err != nil || fmt.Sprint(got) != "[1:m 1 2:m 2 3:m 3]" {
		t.Fatalf("RetrAll = %v, %v", got, err)
	}
}
