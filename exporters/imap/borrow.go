package imap

import (
	"bufio"
	"errors"
	"net"
	"sync"
	"time"
)

// borrowConn is the connection under go-imap's client, which popmigrate
// can borrow between commands to send what that client cannot: a
// MULTIAPPEND (RFC 3502), many messages in one APPEND command, which the
// server stores in one transaction. go-imap v2's client writes one
// literal per APPEND (its Append), and has no way to write raw commands
// (MULTIAPPEND for its client is emersion/go-imap pull requests #531 and
// #750, both open; once one lands, this file and the sending half of
// multiappend.go can go), so while the connection is borrowed the client's reader is parked
// outside Read and the borrower reads and writes the stream itself.
// Untagged responses the borrower reads are given back to the client,
// which sees them as if they had come after its last command.
//
// It sits between go-imap and TLS (or TCP, for a plain connection);
// popmigrate starts TLS itself after STARTTLS (startTLS) so that it can
// sit there too.
type borrowConn struct {
	net.Conn

	mu      sync.Mutex
	cond    *sync.Cond
	want    bool // a borrower waits for, or holds, the connection
	parked  bool // the client's reader waits in Read for the borrower to finish
	reading bool // the client's reader is in Conn.Read
	closed  bool
	pending []byte    // given back by the borrower: read before Conn
	rdl     time.Time // the client's read deadline, applied when not borrowed
	wdl     time.Time // the client's write deadline
}

func newBorrowConn(c net.Conn) *borrowConn {
	b := &borrowConn{Conn: c}
	b.cond = sync.NewCond(&b.mu)
	return b
}

// aLongTimeAgo is a read deadline that ends a blocked Read at once.
var aLongTimeAgo = time.Unix(1, 0)

// Read is the client's: it parks while the connection is borrowed, and
// a Read that the borrower interrupted (its read deadline) parks instead
// of failing.
func (b *borrowConn) Read(p []byte) (int, error) {
	b.mu.Lock()
	for {
		if b.want && !b.closed {
			b.parked = true
			b.cond.Broadcast()
			b.cond.Wait()
			continue
		}
		b.parked = false
		if len(b.pending) > 0 {
			n := copy(p, b.pending)
			b.pending = b.pending[n:]
			b.mu.Unlock()
			return n, nil
		}
		b.reading = true
		b.mu.Unlock()
		n, err := b.Conn.Read(p)
		b.mu.Lock()
		b.reading = false
		b.cond.Broadcast()
		var ne net.Error
		if n == 0 && b.want && !b.closed && errors.As(err, &ne) && ne.Timeout() {
			continue // interrupted by borrow: a TLS Conn survives a timeout
		}
		b.mu.Unlock()
		return n, err
	}
}

func (b *borrowConn) SetReadDeadline(t time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rdl = t
	if b.want {
		return nil
	}
	return b.Conn.SetReadDeadline(t)
}

func (b *borrowConn) SetWriteDeadline(t time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.wdl = t
	if b.want {
		return nil
	}
	return b.Conn.SetWriteDeadline(t)
}

func (b *borrowConn) SetDeadline(t time.Time) error {
	if err := b.SetReadDeadline(t); err != nil {
		return err
	}
	return b.SetWriteDeadline(t)
}

func (b *borrowConn) Close() error {
	b.mu.Lock()
	b.closed = true
	b.cond.Broadcast()
	b.mu.Unlock()
	return b.Conn.Close()
}

// borrow waits until the client's reader is parked and returns a reader
// of the stream for the borrower, who writes to b.Conn directly. The
// caller holds the connection exclusively (no command of the client is
// in flight) and ends the loan with giveBack. It fails when the
// connection is closed (the client's reader may have ended).
func (b *borrowConn) borrow() (*bufio.Reader, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.want = true
	for !b.parked && !b.closed {
		if b.reading {
			b.Conn.SetReadDeadline(aLongTimeAgo)
		}
		b.cond.Wait()
	}
	if b.closed {
		b.want = false
		return nil, net.ErrClosed
	}
	// No deadlines of the client's while borrowed: the conn's watchdog
	// bounds the borrower's work.
	b.Conn.SetReadDeadline(time.Time{})
	b.Conn.SetWriteDeadline(time.Time{})
	return bufio.NewReaderSize(b.Conn, 4096), nil
}

// giveBack ends a loan: back is what the client reads first (the
// untagged responses the borrower read, and whatever r had buffered
// beyond the borrower's last response).
func (b *borrowConn) giveBack(back []byte, r *bufio.Reader) {
	if r != nil && r.Buffered() > 0 {
		rest, _ := r.Peek(r.Buffered())
		back = append(back, rest...)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pending = append(b.pending, back...)
	b.Conn.SetReadDeadline(b.rdl)
	b.Conn.SetWriteDeadline(b.wdl)
	b.want = false
	b.cond.Broadcast()
}
