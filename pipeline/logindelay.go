package pipeline

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/popmigrate/popmigrate/pop3"
)

// The server's timing rules (RFC 2449 section 6.5): a server that
// announces LOGIN-DELAY n refuses a login to the same mailbox sooner than
// n seconds after the last one, with [LOGIN-DELAY]. popmigrate logs in
// once per account (download, verify and delete share a session), and a
// session that must be retried waits for the delay first, instead of
// being refused and backing off blindly.

// noteLoginDelay records the LOGIN-DELAY the server announces after
// login (0 when none). It is called after the listing, whose write
// carried the CAPA (see pop3.Client.ListUIDL), so it costs no round trip.
func (ar *accountRun) noteLoginDelay(ctx context.Context, c *pop3.Client) {
	caps, err := c.Capabilities(ctx)
	if err != nil {
		return
	}
	if v := caps["LOGIN-DELAY"]; len(v) > 0 {
		if n, err := strconv.Atoi(v[0]); err == nil && n > 0 {
			ar.loginDelay = time.Duration(n) * time.Second
		}
	}
}

// waitLoginDelay waits until the server's LOGIN-DELAY since the last
// login of this run has passed.
func (ar *accountRun) waitLoginDelay(ctx context.Context) error {
	if ar.loginDelay == 0 || ar.lastLogin.IsZero() {
		return nil
	}
	d := time.Until(ar.lastLogin.Add(ar.loginDelay))
	if d <= 0 {
		return nil
	}
	ar.r.opts.Logger.Info("waiting for the server's LOGIN-DELAY", "account", ar.a.Name, "in", d.Round(time.Second))
	ar.park()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// retryDelay is how long to wait before the next session after err: the
// backoff, and after a [LOGIN-DELAY] refusal at least the server's
// announced delay (or, when none was seen, the backoff's cap: such servers
// count minutes, not seconds).
func (ar *accountRun) retryDelay(err error, attempt int) time.Duration {
	o := &ar.r.opts
	d := backoff(o.Backoff, o.MaxBackoff, attempt)
	var perr *pop3.Error
	if errors.As(err, &perr) && perr.Code == "LOGIN-DELAY" {
		switch {
		case ar.loginDelay > 0:
			d = max(d, ar.loginDelay)
		default:
			d = max(d, o.MaxBackoff)
		}
	}
	return d
}
