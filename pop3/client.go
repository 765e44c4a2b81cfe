// Package pop3 is a POP3 client (RFC 1939) with the extensions a mail
// migration needs: CAPA and response codes (RFC 2449, RFC 3206), STLS
// (RFC 2595), implicit TLS (RFC 8314), SASL authentication with an initial
// response (RFC 5034) and PIPELINING.
//
// The client reads every status and listing line with a length bound,
// streams message bodies without rewriting their line endings, maps
// contexts and an idle timeout onto connection deadlines, and never sends a
// credential over an unencrypted connection unless told to.
//
// A Client is not safe for concurrent use, except that Close may be called
// from any goroutine to abort whatever is in progress. After a timeout, a
// cancellation, a protocol error, replies out of sync with the commands
// (ErrOutOfSync) or an I/O error the client is unusable, and its
// connection is closed at once:
// every later call returns an error wrapping ErrClosed and the cause. A
// "-ERR" response (*Error) leaves the client usable.
package pop3

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/popmigrate/popmigrate/pop3/internal/wire"
)

// Security says how a connection is protected.
type Security int

const (
	// SecurityTLS is implicit TLS from the first byte (pop3s, port 995,
	// RFC 8314).
	SecurityTLS Security = iota
	// SecuritySTLS is a plain connection upgraded with STLS (RFC 2595)
	// before any credential is sent (pop3, port 110). Dial fails with
	// ErrSTLSUnavailable when the server does not offer it.
	SecuritySTLS
	// SecurityPlain is no TLS at all; use it only when the user explicitly
	// allowed plaintext.
	SecurityPlain
)

// String returns "tls", "stls" or "plain".
func (s Security) String() string {
	switch s {
	case SecurityTLS:
		return "tls"
	case SecuritySTLS:
		return "stls"
	case SecurityPlain:
		return "plain"
	}
	return "Security(" + strconv.Itoa(int(s)) + ")"
}

// Dialer makes network connections; *net.Dialer satisfies it.
type Dialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// Options configures a Client. A nil *Options and zero fields mean the
// defaults documented on each field.
type Options struct {
	// Security is how Dial protects the connection. NewClient ignores it.
	Security Security
	// TLSConfig is used for implicit TLS and STLS. nil means the system
	// roots. An empty ServerName is filled from the address; MinVersion is
	// raised to TLS 1.2 when lower.
	TLSConfig *tls.Config
	// DialTimeout bounds the TCP connect and the implicit TLS handshake.
	// 0 means 30s.
	DialTimeout time.Duration
	// Timeout is the idle timeout of every command: the deadline moves
	// forward whenever bytes arrive, so a large message may take longer as
	// long as data keeps flowing. 0 means 60s.
	Timeout time.Duration
	// MaxLineLength bounds status and listing lines, in bytes without the
	// line ending. 0 means 4096.
	MaxLineLength int
	// MaxListing bounds the number of entries of a LIST or UIDL listing.
	// 0 means 10 000 000.
	MaxListing int
	// MaxMessageSize bounds the bytes of one RETR or TOP body (after
	// dot-unstuffing). 0 means 2 GiB. A larger body fails with
	// ErrMessageTooLarge and leaves the client unusable.
	MaxMessageSize int64
	// Debug, when not nil, receives the protocol transcript, one line per
	// command or response line ("C: LIST", "S: +OK"). Passwords, APOP
	// digests and AUTH payloads are replaced by "********"; message bodies
	// are not logged.
	Debug io.Writer
	// Dialer makes the TCP connection for Dial. nil means a net.Dialer.
	Dialer Dialer
	// ListAtLogin makes Login, when it pipelines the login (USER and
	// PASS, or AUTH PLAIN with its initial response, to a server whose
	// capabilities before login offer PIPELINING), send CAPA, LIST and
	// UIDL in the same write, one round trip less per session: the
	// capabilities after login and the next ListUIDL then answer from
	// what came back (see ListUIDL). A refused login returns the
	// login's error as it would without: the answers to the commands
	// after it are read and dropped.
	ListAtLogin bool
	// RetrAtLogin, with ListAtLogin, also sends "RETR n" and its marker
	// "LIST n" (see RetrAll) for n = 1..RetrAtLogin in that write, when
	// the capabilities before login list UIDL; more than MaxRetrAtLogin
	// means MaxRetrAtLogin. Their answers wait for the next RetrAll: the
	// RETRs its ids begin with (1, 2, ... in that order, each listed by
	// the LIST sent with the login) are taken as sent, each body checked
	// as RetrAll checks any; the answers to the others, "-ERR" for a
	// number past the mailbox's count, bodies the ids do not ask for,
	// are read and dropped before any other answer, never handed over.
	// A refused login leaves the client unusable (the commands after it
	// are bad ones in the AUTHORIZATION state, which servers count: the
	// login's error is what Login returns).
	RetrAtLogin int
}

// MaxRetrAtLogin bounds Options.RetrAtLogin. Each RETR sent at login
// that the mailbox cannot answer costs two refused commands; Dovecot's
// pop3 process ends a session after 20 refused commands in a row.
const MaxRetrAtLogin = 8

const (
	defaultDialTimeout    = 30 * time.Second
	defaultTimeout        = 60 * time.Second
	defaultMaxLineLength  = 4096
	defaultMaxListing     = 10_000_000
	defaultMaxMessageSize = 2 << 30
	capaMaxLines          = 1000
	bufferSize            = 64 << 10
)

// withDefaults returns a copy of o with zero fields set to their defaults.
func (o *Options) withDefaults() Options {
	var r Options
	if o != nil {
		r = *o
	}
	if r.DialTimeout <= 0 {
		r.DialTimeout = defaultDialTimeout
	}
	if r.Timeout <= 0 {
		r.Timeout = defaultTimeout
	}
	if r.MaxLineLength <= 0 {
		r.MaxLineLength = defaultMaxLineLength
	}
	if r.MaxListing <= 0 {
		r.MaxListing = defaultMaxListing
	}
	if r.MaxMessageSize <= 0 {
		r.MaxMessageSize = defaultMaxMessageSize
	}
	return r
}

// Client is a POP3 session. Create it with Dial or NewClient, end it with
// Quit (commits DELEs) or Close (commits nothing).
type Client struct {
	opts     Options
	dc       *deadlineConn // the network connection, with deadlines
	conn     net.Conn      // dc, or a *tls.Conn over dc after StartTLS
	br       *bufio.Reader
	bw       *bufio.Writer
	isTLS    bool
	host     string // server name for STLS when the config has none
	greeting string
	stamp    string // APOP timestamp from the greeting, or ""

	caps      Capabilities
	capsKnown bool
	capaOK    bool // the server answered CAPA with +OK
	// pipelinedBefore: the capabilities before login offered
	// PIPELINING (ListUIDL then sends the CAPA after login with LIST and
	// UIDL).
	pipelinedBefore bool
	authed          bool
	mech            string // the mechanism Login used (see Mechanism)
	body            *Body  // open RETR/TOP body, or nil
	// listSizes are the sizes of the session's last complete LIST, by
	// message number; RetrAll checks its markers against them.
	listSizes map[int]int64
	// prelisted is what the LIST and UIDL sent with the login
	// (Options.ListAtLogin) answered, for the next ListUIDL; nil once
	// taken or once another command was sent.
	prelisted *prelisting
	// ahead are the numbers of the RETRs (each with its LIST marker)
	// sent with the login (Options.RetrAtLogin) whose answers are still
	// to be read, in order; they come before any later command's.
	ahead []int

	mu     sync.Mutex
	closed bool  // Close or Quit was called
	broken error // why the client became unusable
}

// Dial connects to addr ("host:port"), protects the connection as
// opts.Security says and reads the greeting. With SecurityTLS the TLS
// handshake comes first. With SecuritySTLS it issues CAPA and STLS and
// fails with ErrSTLSUnavailable, before anything credential-like is sent,
// when STLS is not offered or refused; after the handshake it issues CAPA
// again (RFC 2595 section 4). ctx bounds the whole of Dial.
func Dial(ctx context.Context, addr string, opts *Options) (*Client, error) {
	o := opts.withDefaults()
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("pop3: dial %s: %w", addr, err)
	}
	if o.Security != SecurityTLS && o.Security != SecuritySTLS && o.Security != SecurityPlain {
		return nil, fmt.Errorf("pop3: dial %s: %w: unknown security %v", addr, ErrInvalidArgument, o.Security)
	}
	dctx, cancel := context.WithTimeout(ctx, o.DialTimeout)
	defer cancel()
	var d Dialer = &net.Dialer{}
	if o.Dialer != nil {
		d = o.Dialer
	}
	conn, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pop3: dial %s: %w", addr, err)
	}
	if o.Security == SecurityTLS {
		tc := tls.Client(conn, tlsConfig(o.TLSConfig, host))
		if err := tc.HandshakeContext(dctx); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("pop3: dial %s: tls handshake: %w", addr, err)
		}
		conn = tc
	}
	c, err := NewClient(ctx, conn, &o)
	if err != nil {
		return nil, fmt.Errorf("%w (server %s)", err, addr)
	}
	c.host = host
	if o.Security == SecuritySTLS {
		if err := c.requireSTLS(ctx); err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("%w (server %s)", err, addr)
		}
	}
	return c, nil
}

// requireSTLS upgrades the connection with STLS or fails with
// ErrSTLSUnavailable.
func (c *Client) requireSTLS(ctx context.Context) error {
	caps, err := c.Capabilities(ctx)
	if err != nil {
		return err
	}
	// QUIRK: a server that does not implement CAPA may still implement
	// STLS; try it rather than fail (TestQuirkSTLSWithoutCAPA). A server
	// whose CAPA omits STLS is not asked.
	if c.capaOK && !caps.Has("STLS") {
		return fmt.Errorf("%w: not in CAPA", ErrSTLSUnavailable)
	}
	if err := c.StartTLS(ctx, c.opts.TLSConfig); err != nil {
		var pe *Error
		if errors.As(err, &pe) {
			return fmt.Errorf("%w: %w", ErrSTLSUnavailable, pe)
		}
		return err
	}
	_, err = c.Capabilities(ctx)
	return err
}

// tlsConfig returns a copy of cfg (or a new config) with ServerName and
// MinVersion filled in.
func tlsConfig(cfg *tls.Config, host string) *tls.Config {
	if cfg == nil {
		cfg = &tls.Config{}
	} else {
		cfg = cfg.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	if cfg.MinVersion < tls.VersionTLS12 {
		cfg.MinVersion = tls.VersionTLS12
	}
	return cfg
}

// NewClient runs the protocol over conn, which may already be TLS or not,
// and reads the greeting. The connection counts as encrypted (see Login)
// when conn is a *tls.Conn. The client owns conn from now on: NewClient
// closes it when it fails. A "-ERR" greeting is returned as *Error with
// Command "greeting".
func NewClient(ctx context.Context, conn net.Conn, opts *Options) (*Client, error) {
	o := opts.withDefaults()
	_, isTLS := conn.(*tls.Conn)
	dc := &deadlineConn{Conn: conn, idle: o.Timeout}
	c := &Client{
		opts:  o,
		dc:    dc,
		conn:  dc,
		br:    bufio.NewReaderSize(dc, bufferSize),
		bw:    bufio.NewWriterSize(dc, 4096),
		isTLS: isTLS,
	}
	if host, _, err := net.SplitHostPort(conn.RemoteAddr().String()); err == nil {
		c.host = host
	}
	if err := c.readGreeting(ctx); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// readGreeting reads the server's first line and the APOP timestamp in it.
func (c *Client) readGreeting(ctx context.Context) error {
	const verb = "greeting"
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("pop3: %s: %w", verb, err)
	}
	release := c.dc.bind(ctx)
	defer release()
	st, err := c.status(verb, 0)
	if err != nil {
		return err
	}
	c.greeting = st.Text
	if st.Code != "" {
		c.greeting = "[" + st.Code + "] " + st.Text
	}
	c.stamp = apopTimestamp(c.greeting)
	return nil
}

// apopTimestamp returns the RFC 1939 section 7 timestamp ("<...@...>") in
// a greeting, or "".
//
// QUIRK: a greeting without a timestamp is fine; it only rules out APOP
// (TestQuirkGreetingWithoutTimestamp).
func apopTimestamp(greeting string) string {
	start := strings.IndexByte(greeting, '<')
	if start < 0 {
		return ""
	}
	end := strings.IndexByte(greeting[start:], '>')
	if end < 0 {
		return ""
	}
	ts := greeting[start : start+end+1]
	if !strings.Contains(ts, "@") || strings.ContainsAny(ts, " \t") {
		return ""
	}
	return ts
}

// Greeting returns the text of the server's greeting after "+OK".
func (c *Client) Greeting() string { return c.greeting }

// IsTLS reports whether the connection is encrypted: implicit TLS, a
// *tls.Conn given to NewClient, or after StartTLS.
func (c *Client) IsTLS() bool { return c.isTLS }

// TLSConnectionState returns the TLS state and true when the connection is
// encrypted.
func (c *Client) TLSConnectionState() (tls.ConnectionState, bool) {
	if tc, ok := c.conn.(*tls.Conn); ok {
		return tc.ConnectionState(), true
	}
	if tc, ok := c.dc.Conn.(*tls.Conn); ok {
		return tc.ConnectionState(), true
	}
	return tls.ConnectionState{}, false
}

// Capabilities returns the server's capabilities (CAPA, RFC 2449). The
// answer is cached until STLS or a successful login, after which the
// server may announce different ones. A server without CAPA ("-ERR") gives
// empty Capabilities and a nil error. The returned map is the caller's.
func (c *Client) Capabilities(ctx context.Context) (Capabilities, error) {
	if c.capsKnown {
		if err := c.usable("CAPA"); err != nil {
			return nil, err
		}
		return maps.Clone(c.caps), nil
	}
	release, err := c.begin(ctx, "CAPA")
	if err != nil {
		return nil, err
	}
	defer release()
	if err := c.send("CAPA", "CAPA", "CAPA"); err != nil {
		return nil, err
	}
	if err := c.readCapa(); err != nil {
		return nil, err
	}
	return maps.Clone(c.caps), nil
}

// readCapa reads the answer to a CAPA already sent into c.caps. A "-ERR"
// means no capabilities (capaOK false), not an error.
func (c *Client) readCapa() error {
	caps := Capabilities{}
	if _, err := c.status("CAPA", 0); err != nil {
		var pe *Error
		if !errors.As(err, &pe) {
			return err
		}
		c.caps, c.capsKnown, c.capaOK = caps, true, false
		return nil
	}
	err := c.readListing("CAPA", capaMaxLines, func(line []byte) error {
		f := strings.Fields(string(line))
		if len(f) == 0 {
			return nil // QUIRK: blank lines are skipped (TestQuirkCAPABlankLine).
		}
		name := strings.ToUpper(f[0])
		caps[name] = append(caps[name], f[1:]...)
		return nil
	})
	if err != nil {
		return err
	}
	c.caps, c.capsKnown, c.capaOK = caps, true, true
	return nil
}

// StartTLS issues STLS (RFC 2595) and does the TLS handshake with cfg
// (nil means system roots; ServerName defaults to the server's host). It
// fails without sending anything when the connection is already
// encrypted. A "-ERR" is returned as *Error and leaves the session plain
// and usable. The cached capabilities are discarded.
func (c *Client) StartTLS(ctx context.Context, cfg *tls.Config) error {
	const verb = "STLS"
	if c.isTLS {
		return fmt.Errorf("pop3: %s: %w: connection is already encrypted", verb, ErrInvalidArgument)
	}
	release, err := c.begin(ctx, verb)
	if err != nil {
		return err
	}
	defer release()
	if err := c.send(verb, verb, verb); err != nil {
		return err
	}
	if _, err := c.status(verb, 0); err != nil {
		return err
	}
	if c.br.Buffered() > 0 {
		// Bytes after the STLS response and before the handshake were
		// injected in plaintext; discarding them is not enough to trust
		// the session.
		return c.fatal(&ProtocolError{Command: verb, Err: "data received after +OK before the TLS handshake"})
	}
	tc := tls.Client(c.dc, tlsConfig(cfg, c.host))
	if err := tc.HandshakeContext(ctx); err != nil {
		return c.fatal(fmt.Errorf("pop3: %s: tls handshake: %w", verb, err))
	}
	c.conn = tc
	c.br.Reset(tc)
	c.bw.Reset(tc)
	c.isTLS = true
	c.caps, c.capsKnown, c.capaOK = nil, false, false
	return nil
}

// begin prepares one exchange: it checks that the client is usable and
// idle and binds ctx to the connection until release is called. The
// answers to RETRs sent with the login that are still due are read and
// dropped first (see Options.RetrAtLogin).
func (c *Client) begin(ctx context.Context, verb string) (release func(), err error) {
	return c.start(ctx, verb, false)
}

// start is begin; with keepAhead the answers still due to RETRs sent
// with the login are left for the caller (RetrAll).
func (c *Client) start(ctx context.Context, verb string, keepAhead bool) (release func(), err error) {
	if err := c.usable(verb); err != nil {
		return nil, err
	}
	if c.body != nil {
		return nil, fmt.Errorf("pop3: %s: %w", verb, ErrBodyOpen)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("pop3: %s: %w", verb, err)
	}
	c.prelisted = nil
	release = c.dc.bind(ctx)
	if len(c.ahead) > 0 && !keepAhead {
		ahead := c.ahead
		c.ahead = nil
		if _, err := c.dropAhead(ahead); err != nil {
			release()
			return nil, err
		}
	}
	return release, nil
}

// usable returns an error when the client was closed or broken.
func (c *Client) usable(verb string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken != nil {
		return &brokenError{verb: verb, cause: c.broken}
	}
	if c.closed {
		return fmt.Errorf("pop3: %s: %w", verb, ErrClosed)
	}
	return nil
}

// fatal makes the client unusable because of err, closes the connection
// and returns err.
func (c *Client) fatal(err error) error {
	c.mu.Lock()
	if c.broken == nil && !c.closed {
		c.broken = err
	}
	c.mu.Unlock()
	_ = c.dc.Close()
	return err
}

// ioError wraps a read or write error with what was going on and makes
// the client unusable.
func (c *Client) ioError(what string, err error) error {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return fmt.Errorf("pop3: %s: %w", what, ErrClosed)
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return c.fatal(fmt.Errorf("pop3: %s: %w", what, err))
}

// debugf writes one transcript line when Options.Debug is set.
func (c *Client) debugf(format string, args ...any) {
	if c.opts.Debug != nil {
		fmt.Fprintf(c.opts.Debug, format+"\n", args...)
	}
}

// queue buffers one command line; logLine is what the transcript shows.
func (c *Client) queue(line, logLine string) {
	c.debugf("C: %s", logLine)
	_, _ = c.bw.WriteString(line)
	_, _ = c.bw.WriteString("\r\n")
}

// flush sends the buffered commands.
func (c *Client) flush(what string) error {
	if err := c.bw.Flush(); err != nil {
		return c.ioError(what, err)
	}
	return nil
}

// send writes one command line and flushes it.
func (c *Client) send(what, line, logLine string) error {
	c.queue(line, logLine)
	return c.flush(what)
}

// checkArg rejects an argument that would break the command line.
func checkArg(verb, what, s string, allowSpace bool) error {
	if strings.ContainsAny(s, "\r\n\x00") {
		return fmt.Errorf("pop3: %s: %w: %s contains CR, LF or NUL", verb, ErrInvalidArgument, what)
	}
	if !allowSpace && strings.ContainsAny(s, " \t") {
		return fmt.Errorf("pop3: %s: %w: %s contains a space", verb, ErrInvalidArgument, what)
	}
	return nil
}

// checkID rejects a message number below 1.
func checkID(verb string, id int) error {
	if id < 1 {
		return fmt.Errorf("pop3: %s %d: %w: message numbers start at 1", verb, id, ErrInvalidArgument)
	}
	return nil
}

// label names a command for errors: "RETR 3" or "STAT".
func label(verb string, id int) string {
	if id > 0 {
		return verb + " " + strconv.Itoa(id)
	}
	return verb
}

// readLine reads one line of at most MaxLineLength bytes (line ending
// excluded) and returns it without the line ending. The slice is valid
// until the next read. A longer line or an I/O error makes the client
// unusable.
func (c *Client) readLine(what string) ([]byte, error) {
	line, long, err := c.rawLine(what, false)
	if err != nil {
		return nil, c.ioError(what, err)
	}
	if long > 0 {
		return nil, c.fatal(fmt.Errorf("pop3: %s: %w (over %d bytes)", what, ErrLineTooLong, c.opts.MaxLineLength))
	}
	return line, nil
}

// maxOverlongLine bounds one listing line that rawLine skips: a line longer
// than this is not skipped but fails with ErrLineTooLong.
const maxOverlongLine = 1 << 20

// maxOverlongBytes bounds the bytes of the UIDL lines skipped as overlong
// in one listing (a variable for tests).
var maxOverlongBytes = 64 << 20

// errOverlongLine is what rawLine returns for a line it could not skip.
var errOverlongLine = errors.New("line over the skip bound")

// rawLine reads one line without applying consequences. For a line over
// MaxLineLength it returns long > 0: with skip, the rest of the line is
// read and discarded (up to maxOverlongLine bytes in all, beyond which it
// returns errOverlongLine), line holds its first MaxLineLength bytes and
// long is the line's length with its line ending; without skip, line is
// nil, long is the bytes read so far and the reader is left mid-line. err
// is a read error as the connection returned it. The slice is valid until
// the next read.
func (c *Client) rawLine(what string, skip bool) (line []byte, long int, err error) {
	max := c.opts.MaxLineLength
	var acc []byte
	for {
		frag, err := c.br.ReadSlice('\n')
		switch err {
		case nil:
			line := frag
			if acc != nil {
				line = append(acc, frag...)
			}
			n := len(line)
			line = wire.TrimEOL(line)
			if len(line) > max {
				if !skip {
					return nil, n, nil
				}
				c.debugf("S: %s... (overlong line, %d bytes skipped)", line[:max], len(line)-max)
				return line[:max], n, nil
			}
			c.debugf("S: %s", line)
			return line, 0, nil
		case bufio.ErrBufferFull:
			if len(acc)+len(frag) > max+2 {
				if !skip {
					return nil, len(acc) + len(frag), nil
				}
				acc = append(acc, frag...)
				return c.skipLine(acc[:max], len(acc))
			}
			acc = append(acc, frag...)
		default:
			return nil, 0, err
		}
	}
}

// skipLine discards the rest of an overlong line whose first n bytes have
// been read, and returns prefix.
func (c *Client) skipLine(prefix []byte, n int) ([]byte, int, error) {
	for {
		frag, err := c.br.ReadSlice('\n')
		n += len(frag)
		if n > maxOverlongLine {
			return nil, n, errOverlongLine
		}
		switch err {
		case nil:
			c.debugf("S: %s... (overlong line, %d bytes skipped)", prefix, n-len(prefix))
			return prefix, n, nil
		case bufio.ErrBufferFull:
		default:
			return nil, n, err
		}
	}
}

// readMarker reads the reply to the "LIST id" marker RetrAll sends after
// "RETR id" and checks that it is "+OK id size", with the size of the
// session's last LIST when that listed id. After a "-ERR" to the RETR
// (afterERR) a "-ERR" is accepted too: the message may be gone. ioErr is
// an I/O error (or timeout, or cancellation) reading it, already applied
// to the client; syncErr, not yet applied, wraps ErrOutOfSync for a reply
// that does not fit.
func (c *Client) readMarker(id int, afterERR bool) (ioErr, syncErr error) {
	what := "LIST " + strconv.Itoa(id)
	after := "its body"
	if afterERR {
		after = "its -ERR"
	}
	oos := func(line []byte, why string) error {
		return fmt.Errorf("pop3: RETR %d: %w: %s after %s answered %q (%s)", id, ErrOutOfSync, what, after, truncate(string(line), 80), why)
	}
	line, long, err := c.rawLine(what, false)
	switch {
	case err != nil:
		return c.ioError(what+" (marker after RETR "+strconv.Itoa(id)+")", err), nil
	case long > 0:
		return nil, oos(nil, fmt.Sprintf("a line over %d bytes", c.opts.MaxLineLength))
	}
	st, ok := wire.ParseStatus(line)
	if ok && !st.OK && afterERR {
		return nil, nil
	}
	if !ok || !st.OK {
		return nil, oos(line, "expected +OK "+strconv.Itoa(id)+" and a size")
	}
	got, size, perr := wire.ParseListLine(line[3:])
	if perr != nil || got != id {
		return nil, oos(line, "expected +OK "+strconv.Itoa(id)+" and a size")
	}
	if want, listed := c.listSizes[id]; listed && want != size {
		return nil, oos(line, fmt.Sprintf("LIST gave size %d", want))
	}
	return nil, nil
}

// outOfSyncIfBuffered returns an error wrapping ErrOutOfSync, not yet
// applied to the client, when bytes have arrived that no command sent so
// far asked for: a complete response was read and nothing else is in
// flight. It returns nil otherwise.
func (c *Client) outOfSyncIfBuffered(verb string, id int) error {
	n := c.br.Buffered()
	if n == 0 {
		return nil
	}
	peek, _ := c.br.Peek(min(n, 81))
	return fmt.Errorf("pop3: %s: %w: %d bytes arrived after the response, before the next command: %q",
		label(verb, id), ErrOutOfSync, n, truncate(string(peek), 80))
}

// quiet applies outOfSyncIfBuffered: the client becomes unusable when
// bytes arrived after a complete response with nothing in flight.
func (c *Client) quiet(verb string, id int) error {
	if err := c.outOfSyncIfBuffered(verb, id); err != nil {
		return c.fatal(err)
	}
	return nil
}

// status reads a status line. It returns *Error for "-ERR" (the client
// stays usable) and a fatal *ProtocolError for anything else.
func (c *Client) status(verb string, id int) (wire.Status, error) {
	line, err := c.readLine(label(verb, id))
	if err != nil {
		return wire.Status{}, err
	}
	st, ok := wire.ParseStatus(line)
	if !ok {
		return wire.Status{}, c.fatal(&ProtocolError{Command: verb, Line: string(line), Err: "expected +OK or -ERR"})
	}
	if !st.OK {
		return st, &Error{Command: verb, ID: id, Code: st.Code, Text: st.Text}
	}
	return st, nil
}

// readListing reads the lines of a multi-line response up to the
// terminating ".", unstuffed, passing each to fn. More than max lines
// fail with ErrListingTooLong; an error from fn becomes a ProtocolError.
// Both make the client unusable.
func (c *Client) readListing(verb string, max int, fn func(line []byte) error) error {
	for n := 0; ; n++ {
		line, err := c.readLine(verb)
		if err != nil {
			return err
		}
		out, end := wire.Unstuff(line)
		if end {
			return nil
		}
		if n >= max {
			return c.fatal(fmt.Errorf("pop3: %s: %w (over %d entries)", verb, ErrListingTooLong, max))
		}
		if err := fn(out); err != nil {
			return c.fatal(&ProtocolError{Command: verb, Line: string(line), Err: err.Error()})
		}
	}
}

// simple runs a command with a single-line response and returns the text
// after "+OK".
func (c *Client) simple(ctx context.Context, verb string, id int, line, logLine string) (string, error) {
	release, err := c.begin(ctx, verb)
	if err != nil {
		return "", err
	}
	defer release()
	if err := c.send(label(verb, id), line, logLine); err != nil {
		return "", err
	}
	st, err := c.status(verb, id)
	if c.authed && (err == nil || isERR(err)) {
		// Only one command is ever in flight here: more bytes mean the
		// reply read was not the answer to this command.
		if qerr := c.quiet(verb, id); qerr != nil {
			return "", qerr
		}
	}
	if err != nil {
		return "", err
	}
	return st.Text, nil
}

// isERR reports whether err is a "-ERR" response.
func isERR(err error) bool {
	var pe *Error
	return errors.As(err, &pe)
}

// MessageInfo is one entry of a LIST response.
type MessageInfo struct {
	// ID is the message number, valid for this session only (1-based).
	ID int
	// Size is the size the server reports, in octets, usually counting
	// CRLF line endings. It is the server's claim, not a promise.
	Size int64
}

// UIDInfo is one entry of a UIDL response.
type UIDInfo struct {
	// ID is the message number, valid for this session only.
	ID int
	// UID is the server's unique id, as sent. It is untrusted input: RFC
	// 1939 allows 1 to 70 octets in 0x21..0x7E, but a UID within
	// Options.MaxLineLength that is longer or has other octets (except
	// space, tab, CR and LF, which separate fields) is returned as it is,
	// for the caller to judge. "" when Overlong.
	UID string
	// Overlong is set when the listing line was longer than
	// Options.MaxLineLength: its unique id was skipped, UID is "" and
	// only ID is known.
	Overlong bool
}

// Stat issues STAT and returns the number of messages and their total size.
func (c *Client) Stat(ctx context.Context) (count int, size int64, err error) {
	text, err := c.simple(ctx, "STAT", 0, "STAT", "STAT")
	if err != nil {
		return 0, 0, err
	}
	count, size, perr := wire.ParseStat([]byte(text))
	if perr != nil {
		return 0, 0, c.fatal(&ProtocolError{Command: "STAT", Line: text, Err: "expected count and size"})
	}
	return count, size, nil
}

// List issues LIST and returns every message's number and size, in the
// server's order. Entries are not deduplicated or checked for order.
func (c *Client) List(ctx context.Context) ([]MessageInfo, error) {
	release, err := c.begin(ctx, "LIST")
	if err != nil {
		return nil, err
	}
	defer release()
	if err := c.send("LIST", "LIST", "LIST"); err != nil {
		return nil, err
	}
	if _, err := c.status("LIST", 0); err != nil {
		return nil, err
	}
	list, err := c.listBody()
	if err != nil {
		return nil, err
	}
	if err := c.quiet("LIST", 0); err != nil {
		return nil, err
	}
	return list, nil
}

// listBody reads the lines of a LIST response after its +OK and
// remembers the sizes for RetrAll's markers.
func (c *Client) listBody() ([]MessageInfo, error) {
	var list []MessageInfo
	err := c.readListing("LIST", c.opts.MaxListing, func(line []byte) error {
		id, size, err := wire.ParseListLine(line)
		if err != nil {
			return errors.New("expected message number and size")
		}
		list = append(list, MessageInfo{ID: id, Size: size})
		return nil
	})
	if err != nil {
		return nil, err
	}
	sizes := make(map[int]int64, len(list))
	for _, m := range list {
		if _, dup := sizes[m.ID]; dup {
			// A number listed twice has no one size to check against.
			sizes[m.ID] = -1
			continue
		}
		sizes[m.ID] = m.Size
	}
	for id, size := range sizes {
		if size < 0 {
			delete(sizes, id)
		}
	}
	c.listSizes = sizes
	return list, nil
}

// ListUIDL issues LIST and UIDL and returns both listings, in one round
// trip when the server offers PIPELINING (both commands in one write),
// else one after the other. Right after a login to a server that
// pipelined before it, the CAPA that the capabilities after login need
// goes out in the same write, and Capabilities then answers from it.
// When Login already sent the three with the login (Options.ListAtLogin)
// and no command was sent since, ListUIDL returns what they answered
// without sending anything. A server without UIDL answers it "-ERR": the
// LIST listing is returned with that *Error (Command "UIDL") as the error,
// and the client stays usable. Any other error is the session's, as for
// List and UIDL.
func (c *Client) ListUIDL(ctx context.Context) ([]MessageInfo, []UIDInfo, error) {
	if p := c.prelisted; p != nil {
		c.prelisted = nil
		if p.err == nil {
			if err := c.usable("LIST"); err != nil {
				return nil, nil, err
			}
		}
		return p.list, p.uids, p.err
	}
	if !c.capsKnown && c.authed && c.pipelinedBefore {
		// The capabilities after login are not known yet, and the
		// server pipelined before it: CAPA goes out with LIST and UIDL,
		// one round trip for all three. A server that announced
		// PIPELINING before login is trusted with these three even if
		// its CAPA after login drops it (later commands follow the
		// new answer).
		return c.listUIDLPipelined(ctx, true)
	}
	caps, err := c.Capabilities(ctx)
	if err != nil {
		return nil, nil, err
	}
	if !caps.Pipelining() {
		list, err := c.List(ctx)
		if err != nil {
			return nil, nil, err
		}
		uids, err := c.UIDL(ctx)
		return list, uids, err
	}
	return c.listUIDLPipelined(ctx, false)
}

// listUIDLPipelined is ListUIDL in one write, with CAPA first when capa.
func (c *Client) listUIDLPipelined(ctx context.Context, capa bool) ([]MessageInfo, []UIDInfo, error) {
	release, err := c.begin(ctx, "LIST")
	if err != nil {
		return nil, nil, err
	}
	defer release()
	if capa {
		c.queue("CAPA", "CAPA")
	}
	c.queue("LIST", "LIST")
	c.queue("UIDL", "UIDL")
	if err := c.flush("LIST"); err != nil {
		return nil, nil, err
	}
	if capa {
		if err := c.readCapa(); err != nil {
			return nil, nil, err
		}
	}
	list, uids, err := c.readListUIDL()
	if err != nil && !isERR(err) {
		return nil, nil, err
	}
	if qerr := c.quiet("UIDL", 0); qerr != nil {
		return nil, nil, qerr
	}
	return list, uids, err
}

// readListUIDL reads the answers to a LIST and a UIDL sent one after
// the other and returns them as ListUIDL does: the UIDL answer is read
// whatever LIST said, so the session stays in step. An error that is not
// a *Error has made the client unusable.
func (c *Client) readListUIDL() ([]MessageInfo, []UIDInfo, error) {
	var (
		list []MessageInfo
		err  error
	)
	_, listErr := c.status("LIST", 0)
	if listErr == nil {
		if list, err = c.listBody(); err != nil {
			return nil, nil, err
		}
	} else if !isERR(listErr) {
		return nil, nil, listErr
	}
	_, uidlErr := c.status("UIDL", 0)
	var uids []UIDInfo
	if uidlErr == nil {
		if uids, err = c.uidlBody(); err != nil {
			return nil, nil, err
		}
	} else if !isERR(uidlErr) {
		return nil, nil, uidlErr
	}
	if listErr != nil {
		return nil, nil, listErr
	}
	return list, uids, uidlErr
}

// ListOne issues LIST id for a single message.
func (c *Client) ListOne(ctx context.Context, id int) (MessageInfo, error) {
	if err := checkID("LIST", id); err != nil {
		return MessageInfo{}, err
	}
	line := "LIST " + strconv.Itoa(id)
	text, err := c.simple(ctx, "LIST", id, line, line)
	if err != nil {
		return MessageInfo{}, err
	}
	got, size, perr := wire.ParseListLine([]byte(text))
	if perr != nil || got != id {
		return MessageInfo{}, c.fatal(&ProtocolError{Command: "LIST", Line: text, Err: "expected " + strconv.Itoa(id) + " and a size"})
	}
	return MessageInfo{ID: id, Size: size}, nil
}

// UIDL issues UIDL and returns every message's unique id, in the server's
// order. Duplicate UIDs are returned as they are; the caller must
// disambiguate them. A server without UIDL answers "-ERR": that is
// returned as *Error and the client stays usable, so the caller can fall
// back (for example to TOP n 0).
func (c *Client) UIDL(ctx context.Context) ([]UIDInfo, error) {
	release, err := c.begin(ctx, "UIDL")
	if err != nil {
		return nil, err
	}
	defer release()
	if err := c.send("UIDL", "UIDL", "UIDL"); err != nil {
		return nil, err
	}
	if _, err := c.status("UIDL", 0); err != nil {
		return nil, err
	}
	list, err := c.uidlBody()
	if err != nil {
		return nil, err
	}
	if err := c.quiet("UIDL", 0); err != nil {
		return nil, err
	}
	return list, nil
}

// uidlBody reads the lines of a UIDL response after its +OK.
func (c *Client) uidlBody() ([]UIDInfo, error) {
	var list []UIDInfo
	skipped := 0
	for n := 0; ; n++ {
		// QUIRK: one overlong line (a unique id far beyond RFC 1939's 70
		// octets) does not fail the listing: the rest of the line is
		// skipped, and the entry comes back with its number only and
		// Overlong set (TestQuirkOverlongUIDL). LIST lines get no such
		// leniency.
		line, long, err := c.rawLine("UIDL", true)
		switch {
		case errors.Is(err, errOverlongLine):
			return nil, c.fatal(fmt.Errorf("pop3: UIDL: %w (a line over %d bytes)", ErrLineTooLong, maxOverlongLine))
		case err != nil:
			return nil, c.ioError("UIDL", err)
		}
		out, end := wire.Unstuff(line)
		if end && long == 0 {
			break
		}
		if n >= c.opts.MaxListing {
			return nil, c.fatal(fmt.Errorf("pop3: UIDL: %w (over %d entries)", ErrListingTooLong, c.opts.MaxListing))
		}
		if long > 0 {
			skipped += long
			if skipped > maxOverlongBytes {
				return nil, c.fatal(fmt.Errorf("pop3: UIDL: %w (over %d bytes of overlong lines)", ErrListingTooLong, maxOverlongBytes))
			}
			id, err := wire.ParseUIDLPrefix(out)
			if err != nil {
				return nil, c.fatal(&ProtocolError{Command: "UIDL", Line: string(line), Err: "expected message number and unique id"})
			}
			list = append(list, UIDInfo{ID: id, Overlong: true})
			continue
		}
		id, uid, err := wire.ParseUIDLLine(out)
		if err != nil {
			return nil, c.fatal(&ProtocolError{Command: "UIDL", Line: string(line), Err: "expected message number and unique id"})
		}
		list = append(list, UIDInfo{ID: id, UID: uid})
	}
	return list, nil
}

// UIDLOne issues UIDL id for a single message.
func (c *Client) UIDLOne(ctx context.Context, id int) (UIDInfo, error) {
	if err := checkID("UIDL", id); err != nil {
		return UIDInfo{}, err
	}
	line := "UIDL " + strconv.Itoa(id)
	text, err := c.simple(ctx, "UIDL", id, line, line)
	if err != nil {
		return UIDInfo{}, err
	}
	got, uid, perr := wire.ParseUIDLLine([]byte(text))
	if perr != nil || got != id {
		return UIDInfo{}, c.fatal(&ProtocolError{Command: "UIDL", Line: text, Err: "expected " + strconv.Itoa(id) + " and a unique id"})
	}
	return UIDInfo{ID: id, UID: uid}, nil
}

// Retr issues RETR id and returns the message as a stream: dot-unstuffed,
// with line endings exactly as on the wire (CRLF kept, bare LF and bare CR
// passed through), no per-line limit, at most Options.MaxMessageSize
// bytes. ctx governs the reading of the body too. The caller must read the
// body to EOF or Close it (which drains it) before the next command. A
// "-ERR" is returned as *Error with a nil body.
func (c *Client) Retr(ctx context.Context, id int) (*Body, error) {
	if err := checkID("RETR", id); err != nil {
		return nil, err
	}
	return c.fetch(ctx, "RETR", id, "RETR "+strconv.Itoa(id))
}

// Top issues TOP id lines (RFC 1939 section 7): the headers, the blank
// line and the first lines lines of the body. The body is returned as
// Retr returns it.
func (c *Client) Top(ctx context.Context, id, lines int) (*Body, error) {
	if err := checkID("TOP", id); err != nil {
		return nil, err
	}
	if lines < 0 {
		return nil, fmt.Errorf("pop3: TOP %d: %w: negative line count", id, ErrInvalidArgument)
	}
	return c.fetch(ctx, "TOP", id, "TOP "+strconv.Itoa(id)+" "+strconv.Itoa(lines))
}

// fetch sends a command with a multi-line body response.
func (c *Client) fetch(ctx context.Context, verb string, id int, line string) (*Body, error) {
	release, err := c.begin(ctx, verb)
	if err != nil {
		return nil, err
	}
	if err := c.send(label(verb, id), line, line); err != nil {
		release()
		return nil, err
	}
	if _, err := c.status(verb, id); err != nil {
		if isERR(err) {
			if qerr := c.quiet(verb, id); qerr != nil {
				err = qerr
			}
		}
		release()
		return nil, err
	}
	b := c.openBody(verb, id, release)
	b.quiet = true
	return b, nil
}

// Dele issues DELE id: the message is marked, and deleted only when Quit
// gets "+OK" (RFC 1939 UPDATE state). Rset or a dropped connection
// unmarks it.
func (c *Client) Dele(ctx context.Context, id int) error {
	if err := checkID("DELE", id); err != nil {
		return err
	}
	line := "DELE " + strconv.Itoa(id)
	_, err := c.simple(ctx, "DELE", id, line, line)
	return err
}

// Rset issues RSET: every deletion mark of the session is removed.
func (c *Client) Rset(ctx context.Context) error {
	_, err := c.simple(ctx, "RSET", 0, "RSET", "RSET")
	return err
}

// Noop issues NOOP.
func (c *Client) Noop(ctx context.Context) error {
	_, err := c.simple(ctx, "NOOP", 0, "NOOP", "NOOP")
	return err
}

// Quit issues QUIT, reads the response and closes the connection. Only a
// nil return means the server answered "+OK" and so committed the
// session's deletions (RFC 1939 section 6); a "-ERR" (*Error) means some
// deletions failed, and any other error means it is unknown whether they
// were committed. The client is closed in every case.
func (c *Client) Quit(ctx context.Context) error {
	release, err := c.begin(ctx, "QUIT")
	if err != nil {
		return err
	}
	defer release()
	err = c.send("QUIT", "QUIT", "QUIT")
	if err == nil {
		_, err = c.status("QUIT", 0)
	}
	if cerr := c.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("pop3: QUIT: close: %w", cerr)
	}
	return err
}

// Close closes the connection without QUIT, so the server deletes nothing.
// It is safe to call more than once and from any goroutine; it aborts any
// command in progress. Later calls return errors wrapping ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	was, broken := c.closed, c.broken != nil
	c.closed = true
	c.mu.Unlock()
	if was {
		return nil
	}
	err := c.dc.Close()
	if err != nil && !broken {
		return fmt.Errorf("pop3: close: %w", err)
	}
	return nil
}
