package pop3

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"time"
)

// deadlineConn maps the idle timeout and a bound context onto the deadlines
// of a net.Conn. Before every Read or Write it sets the deadline to now plus
// the idle timeout (or the context's deadline when that is earlier), so the
// deadline moves forward whenever bytes arrive. When the bound context is
// done, a deadline in the past cancels the I/O in flight.
type deadlineConn struct {
	net.Conn // the connection; Read and Write are wrapped
	idle     time.Duration

	mu          sync.Mutex
	gen         uint64    // binding generation; a stale AfterFunc is ignored
	ctxDeadline time.Time // deadline of the bound context, or zero
	cancelled   error     // non-nil once the bound context is done
}

// bind ties ctx to the connection until release is called. ctx must not
// be done already (the caller checks ctx.Err first).
func (d *deadlineConn) bind(ctx context.Context) (release func()) {
	d.mu.Lock()
	d.gen++
	gen := d.gen
	d.cancelled = nil
	d.ctxDeadline, _ = ctx.Deadline()
	d.mu.Unlock()
	stop := context.AfterFunc(ctx, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.gen != gen {
			return
		}
		d.cancelled = context.Cause(ctx)
		_ = d.Conn.SetDeadline(time.Unix(1, 0))
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			stop()
			d.mu.Lock()
			if d.gen == gen {
				d.gen++
				d.ctxDeadline = time.Time{}
				d.cancelled = nil
			}
			d.mu.Unlock()
		})
	}
}

// arm sets the read or write deadline for the next I/O call.
func (d *deadlineConn) arm(read bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cancelled != nil {
		return d.cancelled
	}
	t := time.Now().Add(d.idle)
	if !d.ctxDeadline.IsZero() && d.ctxDeadline.Before(t) {
		t = d.ctxDeadline
	}
	// An error here means the connection is closed (net.Pipe also says so
	// when the peer closed); the I/O call that follows reports it better.
	if read {
		_ = d.Conn.SetReadDeadline(t)
	} else {
		_ = d.Conn.SetWriteDeadline(t)
	}
	return nil
}

// explain turns a deadline error into the reason for it: the context's
// cancellation, the context's deadline, or the idle timeout.
func (d *deadlineConn) explain(err error) error {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cancelled != nil {
		return d.cancelled
	}
	if !d.ctxDeadline.IsZero() && !time.Now().Before(d.ctxDeadline) {
		return context.DeadlineExceeded
	}
	return &timeoutError{d: d.idle}
}

func (d *deadlineConn) Read(p []byte) (int, error) {
	if err := d.arm(true); err != nil {
		return 0, err
	}
	n, err := d.Conn.Read(p)
	if err != nil {
		err = d.explain(err)
	}
	return n, err
}

func (d *deadlineConn) Write(p []byte) (int, error) {
	if err := d.arm(false); err != nil {
		return 0, err
	}
	n, err := d.Conn.Write(p)
	if err != nil {
		err = d.explain(err)
	}
	return n, err
}
