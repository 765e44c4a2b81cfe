package pop3

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

// BenchmarkRetrAll downloads 100 messages of 4 KiB per iteration from
// pop3test on loopback, with and without PIPELINING, and again through a
// link that adds 0.5 ms each way (1 ms round trip), where pipelining shows.
func BenchmarkRetrAll(b *testing.B) {
	const n = 100
	body := "Subject: bench\n\n" + strings.Repeat(strings.Repeat("x", 78)+"\n", 52)
	msgs := make([]pop3test.Message, n)
	ids := make([]int, n)
	for i := range msgs {
		msgs[i] = pop3test.Message{Data: []byte(body)}
		ids[i] = i + 1
	}
	for _, mode := range []struct {
		name   string
		faults pop3test.Faults
		delay  time.Duration
	}{
		{"pipelined", pop3test.Faults{}, 0},
		{"sequential", pop3test.Faults{NoPipelining: true}, 0},
		{"pipelined-1ms-rtt", pop3test.Faults{}, 500 * time.Microsecond},
		{"sequential-1ms-rtt", pop3test.Faults{NoPipelining: true}, 500 * time.Microsecond},
	} {
		b.Run(mode.name, func(b *testing.B) {
			_, addr := startServer(b, []pop3test.Mailbox{{User: "bob", Password: "pw", Messages: msgs}},
				&pop3test.ServerOptions{Faults: mode.faults})
			opts := &Options{Security: SecurityPlain}
			if mode.delay > 0 {
				opts.Dialer = latencyDialer{delay: mode.delay}
			}
			c := login(b, addr, "bob", opts)
			ctx := context.Background()
			var total int64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				err := c.RetrAll(ctx, ids, 0, func(id int, body *Body, err error) error {
					if err != nil {
						return err
					}
					k, err := io.Copy(io.Discard, body)
					total += k
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.SetBytes(total / int64(b.N))
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// latencyDialer dials over TCP and delays every chunk by delay in each
// direction, keeping the order and letting chunks overlap in flight, like
// a link with that one-way latency.
type latencyDialer struct{ delay time.Duration }

func (d latencyDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var nd net.Dialer
	real, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	near, far := net.Pipe()
	go delayCopy(far, real, d.delay)
	go delayCopy(real, far, d.delay)
	return near, nil
}

// delayCopy copies src to dst, each chunk delayed by delay after it was
// read; it closes both ends when src ends.
func delayCopy(dst, src net.Conn, delay time.Duration) {
	type chunk struct {
		at   time.Time
		data []byte
	}
	ch := make(chan chunk, 1024)
	go func() {
		defer close(ch)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				ch <- chunk{time.Now().Add(delay), buf[:n]}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range ch {
		time.Sleep(time.Until(c.at))
		if _, err := dst.Write(c.data); err != nil {
			break
		}
	}
	_ = dst.Close()
	_ = src.Close()
}

// ExampleClient_RetrAll shows a download loop.
func ExampleClient_RetrAll() {
	s := pop3test.NewServer([]pop3test.Mailbox{{User: "bob", Password: "pw", Messages: []pop3test.Message{
		{UID: "a", Data: []byte("Subject: one\n\nhello\n")},
		{UID: "b", Data: []byte("Subject: two\n\nworld\n")},
	}}}, nil)
	defer s.Close()
	addr, _ := s.Listen("127.0.0.1:0")

	ctx := context.Background()
	c, err := Dial(ctx, addr.String(), &Options{Security: SecurityPlain})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	if err := c.Login(ctx, &Auth{Username: "bob", Password: "pw", AllowPlaintext: true}); err != nil {
		fmt.Println(err)
		return
	}
	uids, _ := c.UIDL(ctx)
	ids := []int{}
	for _, u := range uids {
		ids = append(ids, u.ID)
	}
	_ = c.RetrAll(ctx, ids, 0, func(id int, body *Body, err error) error {
		if err != nil {
			return nil // a per-message -ERR: note it, go on
		}
		data, err := io.ReadAll(body)
		fmt.Printf("%d: %q (%d octets)\n", id, data, body.WireBytes())
		return err
	})
	fmt.Println(c.Quit(ctx))
	// Output:
	// 1: "Subject: one\r\n\r\nhello\r\n" (23 octets)
	// 2: "Subject: two\r\n\r\nworld\r\n" (23 octets)
	// <nil>
}
