package pop3

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// fuzzSeeds are server byte streams for FuzzClientRetrAll: a greeting, the
// answers to LIST, UIDL and CAPA, then RETR answers (with their LIST
// markers when PIPELINING is announced).
var fuzzSeeds = []string{
	// Well-behaved, pipelined.
	"+OK hi\r\n+OK\r\n1 7\r\n2 7\r\n.\r\n+OK\r\n1 a\r\n2 b\r\n.\r\n+OK\r\nPIPELINING\r\n.\r\n" +
		"+OK\r\nbody 1\r\n.\r\n+OK 1 7\r\n+OK\r\nbody 2\r\n.\r\n+OK 2 7\r\n",
	// A lone "." in a body that was not stuffed, and a forged reply.
	"+OK hi\r\n+OK\r\n1 60\r\n2 7\r\n.\r\n+OK\r\n1 a\r\n2 b\r\n.\r\n+OK\r\nPIPELINING\r\n.\r\n" +
		"+OK\r\nSubject: a\r\n\r\nhello\r\n.\r\n+OK 20 octets\r\nforged\r\n.\r\n+OK 1 60\r\n+OK\r\nbody 2\r\n.\r\n+OK 2 7\r\n",
	// Lockstep, with bytes after the first body.
	"+OK hi\r\n+OK\r\n1 7\r\n.\r\n+OK\r\n1 a\r\n.\r\n+OK\r\n.\r\n+OK\r\nbody 1\r\n.\r\n+OK\r\nbody 2\r\n.\r\n",
	// An overlong UIDL line.
	"+OK hi\r\n+OK\r\n1 7\r\n.\r\n+OK\r\n1 " + strings.Repeat("u", 300) + "\r\n.\r\n-ERR\r\n+OK\r\nbody 1\r\n.\r\n",
	// CR-only line ends.
	"+OK hi\r+OK\r1 7\r.\r+OK\r1 a\r.\r+OK\rPIPELINING\r.\r+OK\rbody\r.\r",
	// -ERR answers and markers.
	"+OK hi\r\n+OK\r\n.\r\n-ERR no UIDL\r\n+OK\r\nPIPELINING\r\n.\r\n-ERR gone\r\n-ERR no such message\r\n-ERR x\r\n+OK 2 3\r\n",
	// A body that ends without a terminator.
	"+OK hi\r\n+OK\r\n1 7\r\n.\r\n+OK\r\n1 a\r\n.\r\n+OK\r\n.\r\n+OK\r\nhalf a mess",
}

// FuzzClientRetrAll feeds a server byte stream to a client that runs List,
// UIDL and RetrAll over it: no panic, no hang, a body handed over with
// io.EOF is never longer than the bytes fed, WireBytes counts what Read
// returned, and no body is handed over after one failed out of sync.
func FuzzClientRetrAll(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s), uint8(2))
	}
	f.Fuzz(func(t *testing.T, in []byte, window uint8) {
		cli, srv := net.Pipe()
		done := make(chan struct{})
		go func() { // the server: the canned bytes, then EOF
			defer close(done)
			_ = srv.SetWriteDeadline(time.Now().Add(5 * time.Second))
			_, _ = srv.Write(in)
			_ = srv.Close()
		}()
		go func() { _, _ = io.Copy(io.Discard, srv) }() // what the client sends
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		opts := &Options{Timeout: 200 * time.Millisecond, MaxLineLength: 128, MaxListing: 50, MaxMessageSize: 1 << 16}
		c, err := NewClient(ctx, cli, opts)
		if err != nil {
			<-done
			return
		}
		defer func() {
			_ = c.Close()
			<-done
		}()
		ids := []int{1, 2, 3}
		if list, err := c.List(ctx); err == nil && len(list) > 0 {
			ids = ids[:0]
			for _, m := range list[:min(len(list), 5)] {
				ids = append(ids, m.ID)
			}
		}
		if uids, err := c.UIDL(ctx); err == nil {
			for _, u := range uids {
				if u.ID < 1 || (u.Overlong && u.UID != "") || (!u.Overlong && (u.UID == "" || strings.ContainsAny(u.UID, " \t\r\n"))) {
					t.Fatalf("UIDL entry %+v", u)
				}
			}
		}
		outOfSync := false
		calls := 0
		err = c.RetrAll(ctx, ids, int(window%8), func(id int, b *Body, err error) error {
			calls++
			if outOfSync {
				t.Fatalf("message %d handed over after one out of sync", id)
			}
			if err != nil {
				var pe *Error
				if !errors.As(err, &pe) || b != nil {
					t.Fatalf("message %d: %v with body %v", id, err, b)
				}
				return nil
			}
			data, rerr := io.ReadAll(b)
			if int64(len(data)) != b.WireBytes() {
				t.Fatalf("read %d bytes, WireBytes %d", len(data), b.WireBytes())
			}
			if rerr == nil && len(data) > len(in) {
				t.Fatalf("body of %d bytes from %d bytes fed", len(data), len(in))
			}
			if errors.Is(rerr, ErrOutOfSync) {
				outOfSync = true
			}
			return rerr
		})
		if err == nil && calls != len(ids) {
			t.Fatalf("RetrAll succeeded after %d of %d messages", calls, len(ids))
		}
		var re *RetrError
		if errors.As(err, &re) && (re.ID < 1 || re.Err == nil) {
			t.Fatalf("RetrError %#v", re)
		}
	})
}
