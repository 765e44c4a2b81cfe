package pop3

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

// TestTopAllAgainstServer fetches the header block of every message with
// TopAll, pipelined and one at a time: each answer is the message's
// headers and blank line, in order, and the client is usable after.
func TestTopAllAgainstServer(t *testing.T) {
	msgs := sampleMessages(12)
	ids := make([]int, len(msgs))
	for i := range ids {
		ids[i] = i + 1
	}
	for _, tc := range []struct {
		name   string
		faults pop3test.Faults
		window int
	}{
		{"pipelined", pop3test.Faults{}, 4},
		{"pipelined default window", pop3test.Faults{}, 0},
		{"sequential", pop3test.Faults{NoPipelining: true}, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, addr := startServer(t, []pop3test.Mailbox{{User: "bob", Password: "pw", Messages: msgs}},
				&pop3test.ServerOptions{Faults: tc.faults})
			c := login(t, addr, "bob", nil)
			if _, err := c.List(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			var got []int
			err := c.TopAll(ctxT(t), ids, 0, tc.window, func(id int, b *Body, err error) error {
				got = append(got, id)
				if err != nil {
					return err
				}
				data, err := io.ReadAll(b)
				if err != nil {
					return err
				}
				head, _, _ := strings.Cut(served(msgs[id-1]), "\r\n\r\n")
				if want := head + "\r\n\r\n"; string(data) != want {
					t.Errorf("TOP %d 0 = %q, want %q", id, data, want)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(ids) {
				t.Errorf("callbacks for %v", got)
			}
			if err := c.Noop(ctxT(t)); err != nil {
				t.Fatalf("client unusable after TopAll: %v", err)
			}
		})
	}
}

// TestTopAllNoTop: a server without TOP answers each with -ERR, handed to
// fn as a per-message *Error; a negative line count is refused unsent.
func TestTopAllNoTop(t *testing.T) {
	_, addr := startServer(t, []pop3test.Mailbox{{User: "bob", Password: "pw", Messages: sampleMessages(3)}},
		&pop3test.ServerOptions{Faults: pop3test.Faults{NoTop: true}})
	c := login(t, addr, "bob", nil)
	n := 0
	err := c.TopAll(ctxT(t), []int{1, 2, 3}, 0, 0, func(id int, b *Body, err error) error {
		var pe *Error
		if !errors.As(err, &pe) || pe.ID != id || b != nil {
			t.Errorf("message %d: body %v, err %v; want a -ERR", id, b, err)
		}
		n++
		return nil
	})
	if err != nil || n != 3 {
		t.Fatalf("TopAll = %v after %d answers", err, n)
	}
	if err := c.TopAll(ctxT(t), []int{1}, -1, 0, nil); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("TopAll with -1 lines = %v, want ErrInvalidArgument", err)
	}
	if err := c.Noop(ctxT(t)); err != nil {
		t.Fatalf("client unusable: %v", err)
	}
}
