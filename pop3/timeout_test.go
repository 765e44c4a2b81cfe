package pop3

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

// Options.Timeout is an idle timeout: a server that sends one byte every
// 20 ms is read to the end even though the whole message takes far longer
// than the timeout.
func TestTrickleServerOutlastsTimeout(t *testing.T) {
	data := strings.Repeat("abcdefghi\n", 20) // 200 bytes, 220 served
	_, addr := startServer(t, []pop3test.Mailbox{{User: "bob", Password: "pw", Messages: []pop3test.Message{{Data: []byte(data)}}}},
		&pop3test.ServerOptions{UserFaults: map[string]pop3test.Faults{"bob": {Trickle: 20 * time.Millisecond}}})
	// Twenty times the trickle's pace, so that a loaded machine does not
	// fail the test; the whole message still takes several timeouts.
	const timeout = 400 * time.Millisecond
	c := login(t, addr, "bob", &Options{Security: SecurityPlain, Timeout: timeout})
	start := time.Now()
	var got string
	err := c.RetrAll(ctxT(t), []int{1}, 0, func(id int, b *Body, err error) error {
		if err != nil {
			return err
		}
		d, err := io.ReadAll(b)
		got = string(d)
		return err
	})
	if err != nil {
		t.Fatalf("trickled message failed after %v: %v", time.Since(start), err)
	}
	if want := strings.ReplaceAll(data, "\n", "\r\n"); got != want {
		t.Errorf("body = %q, want %q", got, want)
	}
	if d := time.Since(start); d < 2*timeout {
		t.Errorf("took %v, not longer than the timeout: the test proves nothing", d)
	}
}

// A server that stops mid-body gets ErrTimeout after about Timeout, and
// the client closes the connection at once, so a server that holds the
// mailbox lock until the connection closes lets go of it.
func TestStalledServerTimesOutAndCloses(t *testing.T) {
	srv, addr := startServer(t, []pop3test.Mailbox{{User: "bob", Password: "pw", Messages: sampleMessages(3)}},
		&pop3test.ServerOptions{UserFaults: map[string]pop3test.Faults{"bob": {StallInRetr: map[int]int64{2: 10}}}})
	const timeout = 200 * time.Millisecond
	c := login(t, addr, "bob", &Options{Security: SecurityPlain, Timeout: timeout})
	start := time.Now()
	var done []int
	err := c.RetrAll(ctxT(t), []int{1, 2, 3}, 0, func(id int, b *Body, err error) error {
		if err != nil {
			return err
		}
		if _, err := io.ReadAll(b); err != nil {
			return err
		}
		done = append(done, id)
		return nil
	})
	elapsed := time.Since(start)
	var re *RetrError
	if !errors.As(err, &re) || re.ID != 2 || !re.Started || !errors.Is(err, ErrTimeout) {
		t.Fatalf("RetrAll = %v, want *RetrError{ID: 2, Started: true} wrapping ErrTimeout", err)
	}
	if len(done) != 1 || done[0] != 1 {
		t.Errorf("complete messages %v", done)
	}
	if elapsed < timeout || elapsed > timeout+2*time.Second {
		t.Errorf("timed out after %v, want about %v", elapsed, timeout)
	}
	// The server's stalled session ends when it reads EOF: without any
	// Close from the test, within well under a timeout.
	closed := time.Now()
	deadline := closed.Add(2 * time.Second)
	for srv.Stats().Concurrent != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the server did not see the connection closed")
		}
		time.Sleep(2 * time.Millisecond)
	}
	if d := time.Since(closed); d > timeout {
		t.Errorf("server saw the close %v after the timeout", d)
	}
	c2 := login(t, addr, "bob", nil) // the lock is free again
	_ = c2.Close()
}
