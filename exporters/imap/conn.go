package imap

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"github.com/popmigrate/popmigrate/internal/saslx"
)

// logoutTimeout bounds the polite LOGOUT that Close sends on each
// connection.
const logoutTimeout = 5 * time.Second

// conn is one authenticated IMAP connection with the destination folder
// selected read-only (EXAMINE: APPEND does not need a selection, and the
// searches and fetches of reconciliation and Open must not change flags).
//
// A conn is used by one goroutine at a time (the pool hands it out). Its
// watchdog (begin) may close it from another goroutine.
type conn struct {
	raw     net.Conn    // the TCP connection under TLS: closing it breaks everything above
	bc      *borrowConn // under client, for grouped APPENDs
	client  *imapclient.Client
	tag     int    // the last tag of a grouped APPEND (see multiappend.go)
	gen     uint64 // the Exporter's gen when this session last looked at the folder (see fresh)
	timeout time.Duration

	caps        imap.CapSet
	appendLimit int64 // from APPENDLIMIT=N; 0 means none advertised

	mu   sync.Mutex
	dead bool  // closed, or failed in a way that leaves it unusable
	why  error // why the watchdog closed it: a context error or ErrTimeout
}

// op is one watched operation on a conn: the conn is closed when ctx ends
// or when no progress is made for the conn's timeout.
type op struct {
	c       *conn
	timer   *time.Timer
	stopCtx func() bool
}

// begin arms the watchdog for one operation. The caller calls end when the
// operation is over, and progress whenever bytes move, so that a large
// literal is bounded by its rate rather than by its total time.
func (c *conn) begin(ctx context.Context) *op {
	o := &op{c: c}
	o.timer = time.AfterFunc(c.timeout, func() { c.kill(ErrTimeout) })
	o.stopCtx = context.AfterFunc(ctx, func() { c.kill(ctx.Err()) })
	return o
}

func (o *op) progress() { o.timer.Reset(o.c.timeout) }

func (o *op) end() {
	o.timer.Stop()
	o.stopCtx()
}

// kill closes the connection for good, recording why (the first reason
// wins). It is safe to call from any goroutine, more than once.
func (c *conn) kill(why error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead {
		return
	}
	c.dead, c.why = true, why
	c.raw.Close()
}

// isDead reports whether the connection can no longer be used.
func (c *conn) isDead() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead {
		return true
	}
	select {
	case <-c.client.Closed():
		c.dead = true
		c.raw.Close()
	default:
	}
	return c.dead
}

// fail turns err, the error of an operation on c, into what the caller
// reports: the context's error or ErrTimeout when the watchdog closed the
// connection (so that errors.Is finds them), err itself otherwise. Any
// error that is not a tagged NO or BAD leaves the connection unusable.
func (c *conn) fail(err error) error {
	if err == nil {
		return nil
	}
	c.mu.Lock()
	why := c.why
	c.mu.Unlock()
	if why != nil && why != errConnBroken && why != errConnClosed {
		if errors.Is(why, ErrTimeout) {
			return fmt.Errorf("%w (no progress within %v): %v", why, c.timeout, err)
		}
		return fmt.Errorf("%w: %v", why, err)
	}
	var ierr *imap.Error
	if !errors.As(err, &ierr) {
		c.kill(errConnBroken)
	}
	return err
}

// close logs out (bounded by logoutTimeout) and closes the connection.
func (c *conn) close() {
	if !c.isDead() {
		ctx, cancel := context.WithTimeout(context.Background(), min(logoutTimeout, c.timeout))
		o := c.begin(ctx)
		c.client.Logout().Wait()
		o.end()
		cancel()
	}
	c.kill(errConnClosed)
	c.client.Close()
}

// errConnBroken and errConnClosed record why a conn died when neither a
// context nor the watchdog killed it; they are never returned to callers.
var (
	errConnBroken = errors.New("imap: connection broken")
	errConnClosed = errors.New("imap: connection closed")
)

// dial opens, secures and authenticates a connection and learns the
// server's capabilities. It selects nothing. When the server refuses an
// OAuth2 token of Options.OAuth2TokenFunc, the func is told and one more
// connection is tried with the token it gives next: a connection is not
// trusted after a failed exchange (some servers close it, and go-sasl's
// OAUTHBEARER client leaves it in the middle of one).
func (e *Exporter) dial(ctx context.Context) (*conn, error) {
	c, err := e.dialWith(ctx, "")
	var re *refusedTokenError
	if errors.As(err, &re) {
		c, err = e.dialWith(ctx, re.token)
	}
	return c, err
}

// refusedTokenError is a login whose OAuth2 token the server refused.
type refusedTokenError struct {
	token string // the token refused: a secret, never printed
	err   error
}

func (e *refusedTokenError) Error() string { return e.err.Error() }
func (e *refusedTokenError) Unwrap() error { return e.err }

// dialWith is dial; rejected is "" or a token the server refused, which
// Options.OAuth2TokenFunc is told of.
func (e *Exporter) dialWith(ctx context.Context, rejected string) (*conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, e.opts.Timeout)
	raw, err := e.opts.Dial(dctx, "tcp", e.opts.Addr)
	cancel()
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("%w: %v", cerr, err)
		}
		return nil, fmt.Errorf("dial: %w", err)
	}
	c := &conn{raw: raw, timeout: e.opts.Timeout}
	o := c.begin(ctx)
	defer o.end()
	if err := e.setUp(ctx, c, o, rejected); err != nil {
		err = c.fail(err)
		c.kill(errConnBroken)
		if c.client != nil {
			c.client.Close()
		}
		return nil, err
	}
	return c, nil
}

// setUp runs the steps of dial after the TCP connection is up.
func (e *Exporter) setUp(ctx context.Context, c *conn, o *op, rejected string) error {
	copts := &imapclient.Options{TLSConfig: e.tlsConfig}
	switch e.opts.Security {
	case SecurityTLS:
		tc := tls.Client(c.raw, e.tlsConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("TLS handshake: %w", err)
		}
		c.bc = newBorrowConn(tc)
		c.client = imapclient.New(c.bc, copts)
	case SecurityStartTLS:
		// STARTTLS goes out right after the greeting, whatever the
		// capabilities say, and a refusal fails: no password ever goes
		// out in clear text, and a man in the middle who strips STARTTLS
		// from the capabilities gains nothing.
		tc, err := startTLS(ctx, c.raw, e.tlsConfig, o)
		if err != nil {
			return err
		}
		c.bc = newBorrowConn(tc)
		c.bc.pending = []byte(afterStartTLS)
		c.client = imapclient.New(c.bc, copts)
	default: // SecurityPlain, explicitly asked for
		c.bc = newBorrowConn(c.raw)
		c.client = imapclient.New(c.bc, copts)
	}
	if err := c.client.WaitGreeting(); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	o.progress()
	if c.client.State() == imap.ConnStateNotAuthenticated {
		if err := e.authenticate(ctx, c, rejected); err != nil {
			return err
		}
		o.progress()
	}
	c.caps = c.client.Caps()
	if c.caps == nil {
		return errors.New("no CAPABILITY answer")
	}
	if limit, ok := c.caps.AppendLimit(); ok && limit != nil {
		c.appendLimit = int64(*limit)
	}
	return nil
}

// bump records that an APPEND goes out or ended: the sessions that did
// not look at the folder since may not see its message (see fresh).
func (e *Exporter) bump() {
	e.mu.Lock()
	e.gen++
	e.mu.Unlock()
}

// fresh brings c's view of the folder up to date, with a NOOP, when a
// message may have been appended since it last looked, on any of the
// Exporter's connections: a server reports new messages to a session
// only as it answers a command (Dovecot: after a UID FETCH or SEARCH
// that its old view answered, without the new messages), so a read or a
// search on a stale session would find a stored message missing.
func (e *Exporter) fresh(c *conn) error {
	e.mu.Lock()
	stale := c.gen != e.gen
	e.mu.Unlock()
	if !stale {
		return nil
	}
	return e.refresh(c)
}

// refresh sends a NOOP on c, after which its view of the folder holds
// every message the server had stored, and notes it for fresh.
func (e *Exporter) refresh(c *conn) error {
	e.mu.Lock()
	g := e.gen
	e.mu.Unlock()
	if err := c.client.Noop().Wait(); err != nil {
		return fmt.Errorf("NOOP: %w", c.fail(err))
	}
	c.gen = g
	return nil
}

// uidNextNow asks the server, on c, for the folder's UIDNEXT now.
func (e *Exporter) uidNextNow(ctx context.Context, c *conn) (imap.UID, error) {
	o := c.begin(ctx)
	defer o.end()
	// Dovecot answers STATUS on the selected folder from the session's
	// view, which only a command that syncs it (NOOP) brings up to date.
	// Whatever another process appended counts too, so the NOOP goes out
	// even when fresh would not send it.
	if err := e.refresh(c); err != nil {
		return 0, err
	}
	return c.statusUIDNext(e.mailbox)
}

// statusUIDNext is uidNextNow within an op of the caller's.
func (c *conn) statusUIDNext(mailbox string) (imap.UID, error) {
	st, err := c.client.Status(mailbox, &imap.StatusOptions{UIDNext: true}).Wait()
	if err != nil {
		return 0, fmt.Errorf("STATUS %q: %w", mailbox, c.fail(err))
	}
	if st.UIDNext == 0 {
		return 0, fmt.Errorf("STATUS %q: the server sent no UIDNEXT", mailbox)
	}
	return st.UIDNext, nil
}

// examine selects mailbox read-only on c and returns its UIDVALIDITY and
// UIDNEXT.
func (c *conn) examine(ctx context.Context, mailbox string) (*imap.SelectData, error) {
	o := c.begin(ctx)
	defer o.end()
	sel, err := c.client.Select(mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return nil, fmt.Errorf("EXAMINE %q: %w", mailbox, c.fail(err))
	}
	if sel.UIDValidity == 0 {
		return nil, fmt.Errorf("EXAMINE %q: the server sent no UIDVALIDITY", mailbox)
	}
	if sel.UIDNext == 0 {
		// QUIRK: RFC 3501 lets a server leave UIDNEXT out of the SELECT
		// answer; STATUS must give it.
		next, err := c.statusUIDNext(mailbox)
		if err != nil {
			return nil, err
		}
		sel.UIDNext = next
	}
	return sel, nil
}

// authenticate logs in with the configured secret: an OAuth2 access token
// through XOAUTH2 or OAUTHBEARER, or a password through AUTHENTICATE PLAIN
// or LOGIN. rejected is "" or the token refused on the connection before
// (see dial). Errors never contain the secret; a refused token of
// Options.OAuth2TokenFunc, on the first try, is a *refusedTokenError.
func (e *Exporter) authenticate(ctx context.Context, c *conn, rejected string) error {
	caps := c.client.Caps()
	if caps == nil {
		return errors.New("no CAPABILITY answer before login")
	}
	user := e.opts.Username
	var err error
	var refused string // the token to report as refused, on the first try
	switch {
	case e.opts.OAuth2TokenFunc != nil || e.opts.OAuth2Token != "":
		if !caps.Has("AUTH=XOAUTH2") && !caps.Has("AUTH=OAUTHBEARER") {
			return fmt.Errorf("%w: the server offers neither AUTH=XOAUTH2 nor AUTH=OAUTHBEARER (it offers %s)",
				ErrAuthUnsupported, mechanisms(caps))
		}
		tok := e.opts.OAuth2Token
		if f := e.opts.OAuth2TokenFunc; f != nil {
			if tok, err = f(ctx, rejected); err != nil {
				return err
			}
			if rejected != "" && tok == rejected {
				return fmt.Errorf("%w: log in as %q: the server refused the OAuth2 token, and the token source gives the same one when asked again", ErrAuth, user)
			}
		}
		err = e.authenticateOAuth(c, caps, tok)
		if e.opts.OAuth2TokenFunc != nil && rejected == "" && tokenRefused(err) {
			// The token may have expired or been revoked since the
			// source gave it: dial tries again with a fresh one.
			refused = tok
		}
	case caps.Has(imap.CapLoginDisabled) && !caps.Has(imap.AuthCap(sasl.Plain)):
		return fmt.Errorf("%w: the server disabled LOGIN and offers no AUTH=PLAIN (it offers %s)",
			ErrAuthUnsupported, mechanisms(caps))
	case caps.Has(imap.AuthCap(sasl.Plain)):
		err = c.client.Authenticate(sasl.NewPlainClient("", user, e.opts.Password))
	default:
		err = c.client.Login(user, e.opts.Password).Wait()
	}
	if err != nil {
		var ierr *imap.Error
		if errors.As(err, &ierr) {
			err = fmt.Errorf("%w: log in as %q: the server answered %s", ErrAuth, user, describe(ierr))
		} else {
			err = fmt.Errorf("log in as %q: %w", user, err)
		}
		if refused != "" {
			return &refusedTokenError{token: refused, err: err}
		}
		return err
	}
	return nil
}

// authenticateOAuth sends tok with XOAUTH2 when the server offers it,
// else with OAUTHBEARER.
func (e *Exporter) authenticateOAuth(c *conn, caps imap.CapSet, tok string) error {
	user := e.opts.Username
	if caps.Has("AUTH=XOAUTH2") {
		return c.client.Authenticate(saslx.NewXOAuth2Client(user, tok))
	}
	host, port := splitHostPort(e.opts.Addr)
	return c.client.Authenticate(sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{
		Username: user, Token: tok, Host: host, Port: port,
	}))
}

// tokenRefused reports whether err is the server's refusal of the
// token: a tagged NO that is not [UNAVAILABLE] (RFC 5530), or the error
// challenge of OAUTHBEARER (RFC 7628 section 3.2.2), which go-sasl's
// client returns as its error.
func tokenRefused(err error) bool {
	var ierr *imap.Error
	var oerr *sasl.OAuthBearerError
	return errors.As(err, &ierr) && ierr.Type == imap.StatusResponseTypeNo && ierr.Code != imap.ResponseCodeUnavailable ||
		errors.As(err, &oerr)
}

// mechanisms lists the AUTH= mechanisms of caps for error messages.
func mechanisms(caps imap.CapSet) string {
	m := caps.AuthMechanisms()
	if len(m) == 0 {
		return "no AUTH= mechanism"
	}
	return "AUTH=" + strings.Join(m, " AUTH=")
}

func splitHostPort(addr string) (string, int) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, 0
	}
	var port int
	fmt.Sscanf(p, "%d", &port)
	return host, port
}

// describe renders a tagged NO or BAD the way the server sent it:
// "NO [TOOBIG] Message too large".
func describe(ierr *imap.Error) string {
	var b strings.Builder
	b.WriteString(string(ierr.Type))
	if ierr.Code != "" {
		fmt.Fprintf(&b, " [%s]", ierr.Code)
	}
	if ierr.Text != "" {
		b.WriteString(" ")
		b.WriteString(ierr.Text)
	}
	return b.String()
}
