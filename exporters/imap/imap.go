// Package imap uploads messages into a folder of an IMAP server (RFC 3501)
// with APPEND: the destination of a migration off POP3 onto IMAP.
//
// # What is stored
//
// Put sends the canonical body with every LF turned into CRLF, so that the
// message read back and canonicalised (CRLF->LF) is byte for byte the body
// that was put. Each message gets the flags of Options.Flags (\Seen by
// default) and an INTERNALDATE per Options.DateFrom (by default the newest
// Received: date, so that the new mailbox sorts by arrival as the old one
// did). A message IMAP cannot carry (NUL bytes: RFC 3501 literals are
// CHAR8) or that the server rejects (NO or BAD to APPEND, too large) fails
// with a *RejectedError, or a *QuarantinedError when Options.QuarantineDir
// keeps a copy; the run goes on.
//
// # References
//
// A Delivery's Ref is "UIDVALIDITY/UID", from the APPENDUID of UIDPLUS
// (RFC 4315) or, without it, found after the APPEND by UID SEARCH (UIDs
// above the folder's UIDNEXT before the APPEND, and the Message-ID) and a
// sha256 of each candidate read back.
//
// # Crash safety
//
// The server's tagged OK to APPEND means it holds the message, so Sync
// has nothing to flush. What a crash can lose is the journal's record of
// an APPEND that succeeded: the Exporter implements exporters.Resumable.
// Before the first APPEND after a Sync (or after Resume) it saves an
// intent, the folder's UIDVALIDITY and UIDNEXT, in the journal: one write
// per batch. On Resume after a crash, the messages at or above the
// recorded UIDNEXT are read back and hashed, and a later Put of a message
// with the same sha256 returns the stored one instead of appending it
// again. The state is JSON:
//
//	{"uidvalidity":N,"uidnext":N,"open":bool,"pending":[UID,...]}
//
// "open" says an intent is not yet closed by a commit; "pending" lists
// messages found that way which no Put has claimed yet (their POP3
// originals have not been seen again), so that a second crash still finds
// them. A folder deleted and created again gets a new UIDVALIDITY; Resume
// and every connection then fail with ErrUIDValidity, since the journal's
// references no longer name the stored messages.
//
// # Connections
//
// Options.Conns connections APPEND in parallel; Put, Sync and Open are safe
// for concurrent use. A connection that fails during a Put is replaced
// once; an APPEND whose answer was lost is looked up in the folder before
// it is sent again. Every command has a deadline (Options.Timeout, counted
// from the last progress) and obeys its context: a cancelled or timed out
// connection is closed and replaced on next use.
//
// The package never implements exporters.Finder: IMAP cannot look a
// message up by popmigrate's key.
package imap

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popmigrate/popmigrate/exporters"
)

// Security modes of Options.Security.
const (
	// SecurityTLS is implicit TLS (IMAPS, usually port 993).
	SecurityTLS = "tls"
	// SecurityStartTLS is STARTTLS on the plain port (usually 143),
	// required: the Exporter refuses to log in if the server refuses it.
	SecurityStartTLS = "starttls"
	// SecurityPlain sends everything, the password included, in clear
	// text. It is used only when asked for by name.
	SecurityPlain = "plain"
)

// INTERNALDATE policies of Options.DateFrom.
const (
	// DateFromReceived takes the newest date among the Received: fields,
	// then the Date: field, then the download time.
	DateFromReceived = "received"
	// DateFromDate takes the Date: field, then the download time.
	DateFromDate = "date"
	// DateFromDownload takes the time popmigrate downloaded the message.
	DateFromDownload = "download"
)

// Defaults of Options.
const (
	DefaultConns   = 2
	DefaultTimeout = 60 * time.Second
	DefaultFolder  = "INBOX"
)

var (
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("imap: exporter closed")
	// ErrReadOnly is wrapped by Put, Sync and Resume of an Exporter
	// opened with Options.ReadOnly.
	ErrReadOnly = errors.New("imap: exporter is read-only")
	// ErrTimeout is wrapped when a command made no progress within
	// Options.Timeout.
	ErrTimeout = errors.New("imap: timeout")
	// ErrNoStartTLS is wrapped when Security is "starttls" and the server
	// does not start TLS: the Exporter does not log in.
	ErrNoStartTLS = errors.New("imap: the server refused STARTTLS; not logging in without TLS")
	// ErrAuth is wrapped when the server rejects the credentials.
	ErrAuth = errors.New("imap: authentication failed")
	// ErrAuthUnsupported is wrapped when the server offers no mechanism
	// for the configured secret.
	ErrAuthUnsupported = errors.New("imap: no usable authentication mechanism")
	// ErrUIDValidity is wrapped when the folder's UIDVALIDITY is not the
	// one recorded: the folder was deleted and created again, and the UIDs
	// the journal holds no longer name the stored messages.
	ErrUIDValidity = errors.New("imap: folder UIDVALIDITY changed")
	// ErrInvalidRef is wrapped by Open for a reference that is not
	// "UIDVALIDITY/UID".
	ErrInvalidRef = errors.New("imap: invalid reference")
	// ErrInvalidState is wrapped by Resume for a state it cannot parse.
	ErrInvalidState = errors.New("imap: invalid resume state")
)

// Options configures an Exporter. Addr, Username, and Password or
// OAuth2Token are required; zero values of the rest mean the defaults.
type Options struct {
	// ID is the destination id recorded in the journal. Empty means
	// "imap://USER@HOST:PORT/FOLDER" (no secret).
	ID string
	// Addr is the server's "host:port".
	Addr string
	// Security is SecurityTLS (the default), SecurityStartTLS or
	// SecurityPlain.
	Security string
	// TLSConfig verifies the server. Nil means the system roots; an empty
	// ServerName is set to Addr's host.
	TLSConfig *tls.Config
	// Username is the login name.
	Username string
	// Password is sent with AUTHENTICATE PLAIN when offered, else LOGIN.
	Password string
	// OAuth2Token, when set, is an OAuth2 access token sent with XOAUTH2
	// or OAUTHBEARER instead of Password.
	OAuth2Token string
	// Folder is the destination folder, with '/' between levels
	// ("INBOX/Imported"); each '/' becomes the server's hierarchy
	// delimiter. It is created, with its parents, when missing. Empty
	// means INBOX.
	Folder string
	// Flags are set on every message. Nil means [\Seen]; an empty non-nil
	// slice means no flags.
	Flags []imap.Flag
	// DateFrom picks the INTERNALDATE: DateFromReceived (the default),
	// DateFromDate or DateFromDownload.
	DateFrom string
	// Conns is the number of connections that APPEND in parallel; 0 means
	// DefaultConns.
	Conns int
	// QuarantineDir, when set, is the folder (created 0700) where a
	// message the server rejects is kept as <key>.eml; Put then returns a
	// *QuarantinedError. Empty means Put returns a *RejectedError.
	QuarantineDir string
	// ReadOnly opens the folder for reading back only (verify): a missing
	// folder is an error wrapping exporters.ErrNotFound instead of being
	// created, and Put, Sync and Resume return ErrReadOnly. Reads never
	// change a message (BODY.PEEK).
	ReadOnly bool
	// Timeout bounds each command, counted from its last progress (bytes
	// moving); 0 means DefaultTimeout.
	Timeout time.Duration
	// Dial opens the TCP connection. Nil means a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Exporter uploads messages into one IMAP folder. Its methods are safe for
// use by several goroutines at once.
type Exporter struct {
	opts      Options // with the defaults filled in
	id        string
	mailbox   string // the folder's name on the server
	tlsConfig *tls.Config
	flags     []imap.Flag
	quar      *quarantine // nil: no quarantine

	idle      chan *conn    // connections ready for use
	slots     chan struct{} // one token per open (or opening) connection
	closing   chan struct{} // closed by Close
	syncSem   chan struct{} // serialises Sync
	intentSem chan struct{} // serialises intent saves

	mu          sync.Mutex // guards the fields below
	closed      bool
	conns       map[*conn]struct{} // every open connection, for Close
	uidValidity uint32
	uidNext     imap.UID // a lower bound of the folder's UIDNEXT
	started     bool     // a Put has begun: Resume comes too late
	save        func(context.Context, string) error
	intentSaved bool     // an intent was saved since the last Sync
	intentNext  imap.UID // the UIDNEXT of that intent
	keys        map[string]*keyState
	found       map[string][]imap.UID // sha256 -> UIDs in the folder no Put has returned yet
	claimed     []imap.UID            // found UIDs returned by Put since the last Sync
	owned       map[imap.UID]bool     // UIDs returned by Put or held in found
	uncertain   []*uncertain          // APPENDs whose answer was lost
	inflight    int                   // Puts running
	gate        chan struct{}         // non-nil while Sync waits: new Puts wait for it
	drained     chan struct{}         // closed when inflight drops to 0 while Sync waits
	syncErr     error                 // first failure of a Put Sync waited for
}

var (
	_ exporters.Exporter  = (*Exporter)(nil)
	_ exporters.Opener    = (*Exporter)(nil)
	_ exporters.Resumable = (*Exporter)(nil)
)

// keyState is the Put of one key: running until done is closed, then
// stored at ref (or failed, and removed from the map).
type keyState struct {
	done chan struct{}
	ref  string
}

// uncertain is an APPEND that was sent completely but whose answer never
// came: the server may or may not hold the message.
type uncertain struct {
	key   string
	sha   string
	msgID string
	lo    imap.UID // the folder's UIDNEXT (lower bound) before the APPEND
}

// state is the journal state of the Exporter (see the package
// documentation).
type state struct {
	UIDValidity uint32   `json:"uidvalidity"`
	UIDNext     uint32   `json:"uidnext"`
	Open        bool     `json:"open"`
	Pending     []uint32 `json:"pending,omitempty"`
}

func (s state) encode() string {
	b, _ := json.Marshal(s)
	return string(b)
}

// New connects to the server, authenticates, creates the folder (and its
// parents) when missing, and EXAMINEs it to learn its UIDVALIDITY and
// UIDNEXT. It fails, naming the server and folder, on a bad option, a
// network or TLS failure, a refused STARTTLS (before any password is
// sent), rejected credentials, or a folder that cannot be created. The
// caller closes the Exporter.
func New(ctx context.Context, opts *Options) (*Exporter, error) {
	if opts == nil {
		return nil, errors.New("imap: nil Options: Addr, Username and a password or token are required")
	}
	o := *opts
	if err := fillOptions(&o); err != nil {
		return nil, err
	}
	host, _, _ := net.SplitHostPort(o.Addr)
	var tc *tls.Config
	if o.TLSConfig != nil {
		tc = o.TLSConfig.Clone()
	} else {
		tc = &tls.Config{}
	}
	if tc.ServerName == "" {
		tc.ServerName = host
	}
	if tc.MinVersion == 0 {
		tc.MinVersion = tls.VersionTLS12
	}
	e := &Exporter{
		opts:      o,
		id:        o.ID,
		tlsConfig: tc,
		flags:     o.Flags,
		idle:      make(chan *conn, o.Conns),
		slots:     make(chan struct{}, o.Conns),
		closing:   make(chan struct{}),
		syncSem:   make(chan struct{}, 1),
		intentSem: make(chan struct{}, 1),
		conns:     make(map[*conn]struct{}),
		keys:      make(map[string]*keyState),
		found:     make(map[string][]imap.UID),
		owned:     make(map[imap.UID]bool),
	}
	if e.id == "" {
		u := url.URL{Scheme: "imap", User: url.User(o.Username), Host: o.Addr, Path: "/" + o.Folder}
		e.id = u.String()
	}
	if o.QuarantineDir != "" {
		q, err := openQuarantine(o.QuarantineDir)
		if err != nil {
			return nil, fmt.Errorf("imap: %s: %s: %w", e.id, o.QuarantineDir, err)
		}
		e.quar = q
	}
	if err := e.start(ctx); err != nil {
		if e.quar != nil {
			e.quar.close()
		}
		return nil, fmt.Errorf("imap: %s: %w", e.id, err)
	}
	return e, nil
}

// fillOptions checks o and fills in the defaults.
func fillOptions(o *Options) error {
	if o.Addr == "" {
		return errors.New("imap: no server address")
	}
	if _, _, err := net.SplitHostPort(o.Addr); err != nil {
		return fmt.Errorf("imap: server address %q: %w", o.Addr, err)
	}
	switch o.Security {
	case "":
		o.Security = SecurityTLS
	case SecurityTLS, SecurityStartTLS, SecurityPlain:
	default:
		return fmt.Errorf("imap: %s: unknown security %q (want %q, %q or %q)",
			o.Addr, o.Security, SecurityTLS, SecurityStartTLS, SecurityPlain)
	}
	if o.Username == "" {
		return fmt.Errorf("imap: %s: no user name", o.Addr)
	}
	if o.Password == "" && o.OAuth2Token == "" {
		return fmt.Errorf("imap: %s: no password or OAuth2 token for %q", o.Addr, o.Username)
	}
	if o.Folder == "" {
		o.Folder = DefaultFolder
	}
	if err := checkFolder(o.Folder); err != nil {
		return fmt.Errorf("imap: %s: %w", o.Addr, err)
	}
	if o.Flags == nil {
		o.Flags = []imap.Flag{imap.FlagSeen}
	}
	for _, f := range o.Flags {
		if !validFlag(string(f)) {
			return fmt.Errorf("imap: %s: invalid flag %q", o.Addr, f)
		}
	}
	switch o.DateFrom {
	case "":
		o.DateFrom = DateFromReceived
	case DateFromReceived, DateFromDate, DateFromDownload:
	default:
		return fmt.Errorf("imap: %s: unknown date source %q (want %q, %q or %q)",
			o.Addr, o.DateFrom, DateFromReceived, DateFromDate, DateFromDownload)
	}
	switch {
	case o.Conns == 0:
		o.Conns = DefaultConns
	case o.Conns < 0:
		return fmt.Errorf("imap: %s: negative connection count %d", o.Addr, o.Conns)
	}
	switch {
	case o.Timeout == 0:
		o.Timeout = DefaultTimeout
	case o.Timeout < 0:
		return fmt.Errorf("imap: %s: negative timeout %v", o.Addr, o.Timeout)
	}
	if o.Dial == nil {
		o.Dial = (&net.Dialer{}).DialContext
	}
	return nil
}

// checkFolder rejects folder names that cannot be sent or would be LIST
// patterns.
func checkFolder(folder string) error {
	if strings.ContainsAny(folder, "\x00\r\n*%") {
		return fmt.Errorf("invalid folder %q: no NUL, CR, LF, '*' or '%%' allowed", folder)
	}
	for _, part := range strings.Split(folder, "/") {
		if part == "" {
			return fmt.Errorf("invalid folder %q: empty level", folder)
		}
	}
	return nil
}

// validFlag reports whether f can be sent as a flag: an atom, optionally
// after one '\' (a system flag).
func validFlag(f string) bool {
	f = strings.TrimPrefix(f, `\`)
	if f == "" {
		return false
	}
	for i := 0; i < len(f); i++ {
		c := f[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}

// start opens the first connection, makes sure the folder exists and
// learns its UIDVALIDITY and UIDNEXT.
func (e *Exporter) start(ctx context.Context) error {
	e.slots <- struct{}{}
	c, err := e.dial(ctx)
	if err != nil {
		<-e.slots
		return fmt.Errorf("connect to %s: %w", e.opts.Addr, err)
	}
	fail := func(err error) error {
		c.close()
		<-e.slots
		return err
	}
	name, err := e.ensureFolder(ctx, c)
	if err != nil {
		return fail(err)
	}
	e.mailbox = name
	sel, err := c.examine(ctx, name)
	if err != nil {
		return fail(err)
	}
	e.uidValidity, e.uidNext = sel.UIDValidity, sel.UIDNext
	e.conns[c] = struct{}{}
	e.idle <- c
	return nil
}

// ensureFolder maps Options.Folder to the server's name for it (the
// server's hierarchy delimiter instead of '/'), creates it with its
// parents when missing, subscribes to a folder it created, and returns
// the name.
func (e *Exporter) ensureFolder(ctx context.Context, c *conn) (string, error) {
	o := c.begin(ctx)
	defer o.end()
	root, err := c.client.List("", "", nil).Collect()
	if err != nil {
		return "", fmt.Errorf("LIST for the hierarchy delimiter: %w", c.fail(err))
	}
	var delim rune
	if len(root) > 0 {
		delim = root[0].Delim
	}
	name, parents, err := serverName(e.opts.Folder, delim)
	if err != nil {
		return "", err
	}
	exists := func() (bool, error) {
		l, err := c.client.List("", name, nil).Collect()
		if err != nil {
			return false, fmt.Errorf("LIST %q: %w", name, c.fail(err))
		}
		for _, d := range l {
			if d.Mailbox != name && !(strings.EqualFold(name, "INBOX") && strings.EqualFold(d.Mailbox, "INBOX")) {
				continue
			}
			if slices.Contains(d.Attrs, imap.MailboxAttrNoSelect) || slices.Contains(d.Attrs, imap.MailboxAttrNonExistent) {
				return false, fmt.Errorf("folder %q exists but cannot hold messages (\\Noselect)", name)
			}
			return true, nil
		}
		return false, nil
	}
	ok, err := exists()
	if err != nil || ok {
		return name, err
	}
	if e.opts.ReadOnly {
		return "", fmt.Errorf("folder %q: %w", name, exporters.ErrNotFound)
	}
	o.progress()
	if cerr := c.client.Create(name, nil).Wait(); cerr != nil {
		if c.isDead() {
			return "", fmt.Errorf("CREATE %q: %w", name, c.fail(cerr))
		}
		// Most servers create the parents themselves; some want them
		// first. A parent that exists already fails harmlessly.
		for _, p := range parents {
			c.client.Create(p, nil).Wait()
			o.progress()
		}
		if err := c.client.Create(name, nil).Wait(); err != nil {
			// Someone else may have created it in the meantime.
			if ok, lerr := exists(); lerr != nil || !ok {
				return "", fmt.Errorf("CREATE %q: %w", name, c.fail(err))
			}
			return name, nil
		}
	}
	// A folder nobody subscribed to is hidden by many mail readers.
	c.client.Subscribe(name).Wait()
	return name, nil
}

// serverName turns folder ('/' between levels) into the server's name for
// it, with delim between levels, and lists its parents, outermost first.
func serverName(folder string, delim rune) (string, []string, error) {
	parts := strings.Split(folder, "/")
	if strings.EqualFold(parts[0], "INBOX") {
		parts[0] = "INBOX"
	}
	if len(parts) == 1 {
		return parts[0], nil, nil
	}
	if delim == 0 {
		return "", nil, fmt.Errorf("folder %q has levels but the server's folders are flat (no hierarchy delimiter)", folder)
	}
	for _, p := range parts {
		if strings.ContainsRune(p, delim) {
			return "", nil, fmt.Errorf("folder %q: level %q holds the server's hierarchy delimiter %q", folder, p, delim)
		}
	}
	var parents []string
	for i := 1; i < len(parts); i++ {
		parents = append(parents, strings.Join(parts[:i], string(delim)))
	}
	return strings.Join(parts, string(delim)), parents, nil
}

// Properties describes the destination.
func (e *Exporter) Properties() exporters.Properties {
	return exporters.Properties{Kind: "imap", ID: e.id}
}

// Folder returns the folder's name on the server (with the server's
// hierarchy delimiter).
func (e *Exporter) Folder() string { return e.mailbox }

// UIDValidity returns the folder's UIDVALIDITY.
func (e *Exporter) UIDValidity() uint32 { return e.uidValidity }

// acquire returns a connection for the caller's exclusive use, opening one
// when none is idle and fewer than Options.Conns are open. The caller
// hands it back with release.
func (e *Exporter) acquire(ctx context.Context) (*conn, error) {
	for {
		select {
		case c := <-e.idle:
			if c.isDead() {
				e.discard(c)
				continue
			}
			return c, nil
		default:
		}
		select {
		case c := <-e.idle:
			if c.isDead() {
				e.discard(c)
				continue
			}
			return c, nil
		case e.slots <- struct{}{}:
			c, err := e.connect(ctx)
			if err != nil {
				<-e.slots
				return nil, err
			}
			e.mu.Lock()
			closed := e.closed
			if !closed {
				e.conns[c] = struct{}{}
			}
			e.mu.Unlock()
			if closed {
				c.close()
				<-e.slots
				return nil, ErrClosed
			}
			return c, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-e.closing:
			return nil, ErrClosed
		}
	}
}

// connect opens a connection and EXAMINEs the folder, checking that its
// UIDVALIDITY has not changed.
func (e *Exporter) connect(ctx context.Context) (*conn, error) {
	c, err := e.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", e.opts.Addr, err)
	}
	sel, err := c.examine(ctx, e.mailbox)
	if err == nil && sel.UIDValidity != e.uidValidity {
		err = e.uidValidityErr(sel.UIDValidity, e.uidValidity)
	}
	if err != nil {
		c.close()
		return nil, err
	}
	e.mu.Lock()
	e.uidNext = max(e.uidNext, sel.UIDNext)
	e.mu.Unlock()
	return c, nil
}

func (e *Exporter) uidValidityErr(now, was uint32) error {
	return fmt.Errorf("%w: folder %q has UIDVALIDITY %d, not %d: it was deleted and created again, and the stored references no longer name its messages",
		ErrUIDValidity, e.mailbox, now, was)
}

// release hands c back to the pool, or closes it if it is broken or the
// Exporter is closed.
func (e *Exporter) release(c *conn) {
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed || c.isDead() {
		e.discard(c)
		return
	}
	e.idle <- c
}

func (e *Exporter) discard(c *conn) {
	c.close()
	e.mu.Lock()
	delete(e.conns, c)
	e.mu.Unlock()
	<-e.slots
}

// enter registers a Put; it waits while a Sync is draining the Puts in
// flight.
func (e *Exporter) enter(ctx context.Context) error {
	e.mu.Lock()
	for e.gate != nil && !e.closed {
		g := e.gate
		e.mu.Unlock()
		select {
		case <-g:
		case <-ctx.Done():
			return ctx.Err()
		}
		e.mu.Lock()
	}
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	e.started = true
	e.inflight++
	return nil
}

// leave ends a Put that returned err.
func (e *Exporter) leave(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.inflight--
	if e.gate != nil && err != nil && !IsRejected(err) && e.syncErr == nil {
		e.syncErr = err
	}
	if e.inflight == 0 && e.drained != nil {
		close(e.drained)
		e.drained = nil
	}
}

// lockKey makes the caller the Put of key, or returns the Ref of an
// earlier Put of key. A Put of the same key in flight is waited for.
func (e *Exporter) lockKey(ctx context.Context, key string) (ref string, owner bool, err error) {
	for {
		e.mu.Lock()
		ks := e.keys[key]
		if ks == nil {
			e.keys[key] = &keyState{done: make(chan struct{})}
			e.mu.Unlock()
			return "", true, nil
		}
		if ks.ref != "" {
			e.mu.Unlock()
			return ks.ref, false, nil
		}
		e.mu.Unlock()
		select {
		case <-ks.done:
		case <-ctx.Done():
			return "", false, ctx.Err()
		}
	}
}

// unlockKey ends the Put of key: stored at ref, or failed when ref is "".
func (e *Exporter) unlockKey(key, ref string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ks := e.keys[key]
	if ref == "" {
		delete(e.keys, key)
	} else {
		ks.ref = ref
	}
	close(ks.done)
}

// Put uploads msg into the folder and returns its Ref, "UIDVALIDITY/UID".
// When Put returns nil the server holds the message (its tagged OK to
// APPEND). Put is idempotent per msg.Key within the Exporter, and after
// Resume a message found in the folder is returned instead of appended
// again.
//
// A message that cannot be stored fails with a *RejectedError, or a
// *QuarantinedError when Options.QuarantineDir is set; other failures
// (network, authentication, a folder that changed UIDVALIDITY) are
// errors of the destination. A connection that fails is replaced once.
// Put blocks while a Sync waits for the Puts in flight.
func (e *Exporter) Put(ctx context.Context, msg *exporters.Message) (exporters.Delivery, error) {
	if e.opts.ReadOnly {
		return exporters.Delivery{}, fmt.Errorf("imap: %s: put: %w", e.id, ErrReadOnly)
	}
	if msg == nil || msg.Body == nil {
		return exporters.Delivery{}, fmt.Errorf("imap: %s: put of a nil message or body", e.id)
	}
	err := ctx.Err()
	if err == nil {
		err = e.enter(ctx)
	}
	var ref string
	if err == nil {
		ref, err = e.putKey(ctx, msg)
		e.leave(err)
	}
	switch {
	case err == nil:
		return exporters.Delivery{Ref: ref}, nil
	case IsRejected(err):
		return exporters.Delivery{}, err // the *RejectedError or *QuarantinedError itself
	default:
		return exporters.Delivery{}, fmt.Errorf("imap: %s: put %s (uidl %q): %w", e.id, msg.Key, msg.UIDL, err)
	}
}

// putKey runs a registered Put: once per key, waiting for a Put of the
// same key in flight.
func (e *Exporter) putKey(ctx context.Context, msg *exporters.Message) (string, error) {
	ref, owner, err := e.lockKey(ctx, msg.Key)
	if err != nil || !owner {
		return ref, err
	}
	ref, err = e.put(ctx, msg)
	e.unlockKey(msg.Key, ref)
	return ref, err
}

// prepared is a message ready to APPEND.
type prepared struct {
	*scan
	sha   string // sha256 of the canonical body, as read by scanBody
	date  time.Time
	msgID string
}

func (e *Exporter) put(ctx context.Context, msg *exporters.Message) (string, error) {
	sc, err := scanBody(ctx, msg.Body)
	if err != nil {
		return "", err
	}
	p := &prepared{
		scan:  sc,
		sha:   sc.sha,
		date:  internalDate(e.opts.DateFrom, sc.header, msg.Received),
		msgID: messageID(sc.header),
	}
	if ref, ok := e.claimFound(p.sha); ok {
		return ref, nil
	}
	if sc.hasNUL {
		return "", e.reject(ctx, msg, &RejectedError{Key: msg.Key,
			Reason: "it contains NUL bytes, which an IMAP APPEND cannot carry (RFC 3501: literals are CHAR8)"})
	}
	for attempt := 0; ; attempt++ {
		c, err := e.acquire(ctx)
		if err != nil {
			return "", err
		}
		ref, err := e.appendVia(ctx, c, msg, p)
		dead := c.isDead()
		e.release(c)
		if err == nil || !dead || attempt > 0 || ctx.Err() != nil || IsRejected(err) || errors.Is(err, ErrUIDValidity) {
			return ref, err
		}
		// The connection failed under the APPEND: replace it once. An
		// APPEND whose answer was lost is looked up before it is sent
		// again (resolveUncertain).
	}
}

// appendVia appends the message on c, unless the folder turns out to
// hold it already.
func (e *Exporter) appendVia(ctx context.Context, c *conn, msg *exporters.Message, p *prepared) (string, error) {
	if err := e.resolveUncertain(ctx, c); err != nil {
		return "", err
	}
	if ref, ok := e.claimFound(p.sha); ok {
		return ref, nil
	}
	if c.appendLimit > 0 && p.wireSize > c.appendLimit {
		return "", e.reject(ctx, msg, &RejectedError{Key: msg.Key,
			Reason: fmt.Sprintf("it is %d bytes on the wire, more than the server's APPENDLIMIT of %d", p.wireSize, c.appendLimit)})
	}
	if err := e.ensureIntent(ctx); err != nil {
		return "", err
	}
	e.mu.Lock()
	lo := e.uidNext
	e.mu.Unlock()
	uid, uidValidity, sent, err := e.appendOnce(ctx, c, msg, p)
	if err != nil {
		var ierr *imap.Error
		if errors.As(err, &ierr) {
			// A tagged NO or BAD: the server does not hold the message.
			if rejectsContent(ierr) {
				return "", e.reject(ctx, msg, &RejectedError{Key: msg.Key, ServerResponse: describe(ierr)})
			}
			return "", fmt.Errorf("APPEND to %q: the server answered %s", e.mailbox, describe(ierr))
		}
		if sent {
			e.addUncertain(&uncertain{key: msg.Key, sha: p.sha, msgID: p.msgID, lo: lo})
		}
		return "", fmt.Errorf("APPEND to %q: %w", e.mailbox, err)
	}
	if uid == 0 {
		// No APPENDUID (no UIDPLUS): look for the message.
		uid, err = e.find(ctx, c, p.sha, p.msgID, lo)
		if err == nil && uid == 0 {
			err = fmt.Errorf("the server stored the message but it is not among the UIDs from %d with its sha256 (did the server change it?)", lo)
		}
		if err != nil {
			e.addUncertain(&uncertain{key: msg.Key, sha: p.sha, msgID: p.msgID, lo: lo})
			return "", fmt.Errorf("APPEND to %q: %w", e.mailbox, err)
		}
	} else {
		if uidValidity != e.uidValidity {
			return "", fmt.Errorf("APPEND to %q: %w", e.mailbox, e.uidValidityErr(uidValidity, e.uidValidity))
		}
		e.mu.Lock()
		e.owned[uid] = true
		e.mu.Unlock()
	}
	e.mu.Lock()
	e.uidNext = max(e.uidNext, uid+1)
	e.mu.Unlock()
	return e.ref(uid), nil
}

// rejectsContent reports whether a NO or BAD to APPEND is about the
// message (its content or size) rather than the account or the folder:
// over quota, a missing folder, a server fault or a permission problem
// would reject every message, so they end the account's run instead of
// quarantining each message.
func rejectsContent(ierr *imap.Error) bool {
	if ierr.Type == imap.StatusResponseTypeBad {
		return true
	}
	switch ierr.Code {
	case "", imap.ResponseCodeTooBig, imap.ResponseCodeParse, imap.ResponseCodeCannot,
		imap.ResponseCodeUnknownCTE, imap.ResponseCodeBadCharset:
		return true
	}
	return false
}

// appendOnce sends one APPEND on c. sent reports whether the whole
// literal went out: if the answer is then lost, the server may hold the
// message. A tagged NO or BAD comes back as the *imap.Error.
func (e *Exporter) appendOnce(ctx context.Context, c *conn, msg *exporters.Message, p *prepared) (uid imap.UID, uidValidity uint32, sent bool, err error) {
	o := c.begin(ctx)
	defer o.end()
	cmd := c.client.Append(e.mailbox, p.wireSize, &imap.AppendOptions{Flags: e.flags, Time: p.date})
	w := &crlfWriter{w: progressWriter{cmd, o}}
	var writeErr error
	rerr := readChunks(ctx, msg.Body, func(b []byte) error {
		if err := w.write(b); err != nil {
			writeErr = err
			return err
		}
		return nil
	})
	if rerr != nil {
		// The body failed, ctx ended, or the server refused the literal:
		// the literal is incomplete, so the command can only be abandoned
		// with its connection, before another byte goes out (even the
		// CRLF that ends a command could complete a literal short of two
		// bytes).
		c.kill(errConnBroken)
	}
	// Some servers store the message as soon as its literal is complete,
	// before the CRLF that ends the command.
	sent = writeErr == nil && w.n == p.wireSize
	cerr := cmd.Close()
	data, err := cmd.Wait()
	if rerr != nil {
		var ierr *imap.Error
		if writeErr != nil && errors.As(err, &ierr) {
			return 0, 0, false, ierr // the server's answer to the literal
		}
		if writeErr != nil {
			return 0, 0, sent, c.fail(writeErr)
		}
		return 0, 0, sent, rerr
	}
	if err == nil {
		err = cerr
	}
	if err != nil {
		return 0, 0, true, c.fail(err)
	}
	return data.UID, data.UIDValidity, true, nil
}

// progressWriter tells the watchdog about every write.
type progressWriter struct {
	w io.Writer
	o *op
}

func (p progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.o.progress()
	return n, err
}

func (e *Exporter) reject(ctx context.Context, msg *exporters.Message, rej *RejectedError) error {
	if e.quar == nil {
		return rej
	}
	return e.quar.keep(ctx, msg, rej)
}

func (e *Exporter) ref(uid imap.UID) string {
	return strconv.FormatUint(uint64(e.uidValidity), 10) + "/" + strconv.FormatUint(uint64(uid), 10)
}

// claimFound returns the Ref of a message with sha256 sum that the folder
// holds and no Put has returned yet, and marks it returned.
func (e *Exporter) claimFound(sum string) (string, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	uids := e.found[sum]
	if len(uids) == 0 {
		return "", false
	}
	uid := uids[0]
	if len(uids) == 1 {
		delete(e.found, sum)
	} else {
		e.found[sum] = uids[1:]
	}
	e.claimed = append(e.claimed, uid)
	return e.ref(uid), true
}

// addFound records that the folder holds a message with sha256 sum at uid
// that no Put has returned.
func (e *Exporter) addFoundLocked(sum string, uid imap.UID) {
	e.owned[uid] = true
	uids := append(e.found[sum], uid)
	slices.Sort(uids)
	e.found[sum] = uids
}

func (e *Exporter) addUncertain(u *uncertain) {
	e.mu.Lock()
	e.uncertain = append(e.uncertain, u)
	e.mu.Unlock()
}

// resolveUncertain looks up, on c, every APPEND whose answer was lost:
// the messages the folder holds become found (a later Put of the same
// message returns them), the others are forgotten.
func (e *Exporter) resolveUncertain(ctx context.Context, c *conn) error {
	e.mu.Lock()
	list := e.uncertain
	e.uncertain = nil
	e.mu.Unlock()
	for i, u := range list {
		uid, err := e.find(ctx, c, u.sha, u.msgID, u.lo)
		if err != nil {
			e.mu.Lock()
			e.uncertain = append(e.uncertain, list[i:]...)
			e.mu.Unlock()
			return fmt.Errorf("look for message %s after a lost APPEND answer: %w", u.key, err)
		}
		if uid != 0 {
			e.mu.Lock()
			e.addFoundLocked(u.sha, uid)
			e.mu.Unlock()
		}
	}
	return nil
}

// find looks, on c, for a message with sha256 sum at or above UID lo that
// no Put has returned, narrowing the search by msgID when not empty. It
// returns 0 when there is none, and claims (owns) the UID it returns.
func (e *Exporter) find(ctx context.Context, c *conn, sum, msgID string, lo imap.UID) (imap.UID, error) {
	o := c.begin(ctx)
	defer o.end()
	var above imap.UIDSet
	above.AddRange(lo, 0) // lo:*
	criteria := &imap.SearchCriteria{UID: []imap.UIDSet{above}}
	if msgID != "" {
		criteria.Header = []imap.SearchCriteriaHeaderField{{Key: "Message-ID", Value: msgID}}
	}
	data, err := c.client.UIDSearch(criteria, nil).Wait()
	if err != nil {
		return 0, fmt.Errorf("UID SEARCH: %w", c.fail(err))
	}
	var candidates []imap.UID
	e.mu.Lock()
	for _, uid := range data.AllUIDs() {
		// "lo:*" holds the last message even when its UID is below lo.
		if uid >= lo && !e.owned[uid] {
			candidates = append(candidates, uid)
		}
	}
	e.mu.Unlock()
	if len(candidates) == 0 {
		return 0, nil
	}
	sums, err := fetchSums(c, o, imap.UIDSetNum(candidates...))
	if err != nil {
		return 0, err
	}
	slices.Sort(candidates)
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, uid := range candidates {
		if sums[uid] == sum && !e.owned[uid] {
			e.owned[uid] = true
			return uid, nil
		}
	}
	return 0, nil
}

// fetchSums reads the messages of uids on c and returns the sha256 of each
// one's canonical form, streaming (no message is held in memory).
func fetchSums(c *conn, o *op, uids imap.UIDSet) (map[imap.UID]string, error) {
	cmd := c.client.Fetch(uids, &imap.FetchOptions{
		UID:         true,
		BodySection: []*imap.FetchItemBodySection{{Peek: true}},
	})
	sums := make(map[imap.UID]string)
	var readErr error
	for m := cmd.Next(); m != nil; m = cmd.Next() {
		var uid imap.UID
		var sum string
		for item := m.Next(); item != nil; item = m.Next() {
			switch it := item.(type) {
			case imapclient.FetchItemDataUID:
				uid = it.UID
			case imapclient.FetchItemDataBodySection:
				s, err := hashCanonical(progressReader{it.Literal, o})
				if err != nil && readErr == nil {
					readErr = err
				}
				sum = s
			}
		}
		o.progress()
		if uid != 0 && sum != "" {
			sums[uid] = sum
		}
	}
	err := cmd.Close()
	if err == nil {
		err = readErr
	}
	if err != nil {
		return nil, fmt.Errorf("UID FETCH: %w", c.fail(err))
	}
	return sums, nil
}

// progressReader tells the watchdog about every read.
type progressReader struct {
	r io.Reader
	o *op
}

func (p progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.o.progress()
	return n, err
}

// ensureIntent saves the append intent in the journal before the first
// APPEND after a Sync or Resume: the folder's UIDVALIDITY and a UIDNEXT at
// or below the UID of every message this batch appends, so that a crash
// before the batch is committed finds them.
func (e *Exporter) ensureIntent(ctx context.Context) error {
	e.mu.Lock()
	save, saved := e.save, e.intentSaved
	e.mu.Unlock()
	if save == nil || saved {
		return nil
	}
	select {
	case e.intentSem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-e.intentSem }()
	e.mu.Lock()
	if e.intentSaved {
		e.mu.Unlock()
		return nil
	}
	st := e.stateLocked(true)
	e.mu.Unlock()
	if err := save(ctx, st.encode()); err != nil {
		return fmt.Errorf("record the append intent: %w", err)
	}
	e.mu.Lock()
	e.intentSaved, e.intentNext = true, imap.UID(st.UIDNext)
	e.mu.Unlock()
	return nil
}

// stateLocked describes what a resume must look at: UIDs from UIDNext
// when Open, and the Pending UIDs (messages in the folder that the journal
// may not record). intent asks for the state saved before an APPEND.
func (e *Exporter) stateLocked(intent bool) state {
	st := state{UIDValidity: e.uidValidity, UIDNext: uint32(e.uidNext), Open: intent}
	if e.intentSaved {
		st.Open = true
		st.UIDNext = min(st.UIDNext, uint32(e.intentNext))
	}
	for _, u := range e.uncertain {
		st.Open = true
		st.UIDNext = min(st.UIDNext, uint32(u.lo))
	}
	for _, uids := range e.found {
		for _, uid := range uids {
			st.Pending = append(st.Pending, uint32(uid))
		}
	}
	for _, uid := range e.claimed {
		st.Pending = append(st.Pending, uint32(uid))
	}
	slices.Sort(st.Pending)
	return st
}

// Sync waits for the Puts in flight (new Puts wait meanwhile) and closes
// the current batch: the next APPEND saves a new intent. Every Put that
// returned nil is already durable (the server's tagged OK). Sync returns
// the first error, other than a rejected message, of a Put it waited for.
func (e *Exporter) Sync(ctx context.Context) error {
	wrap := func(err error) error { return fmt.Errorf("imap: %s: sync: %w", e.id, err) }
	if e.opts.ReadOnly {
		return wrap(ErrReadOnly)
	}
	if err := ctx.Err(); err != nil {
		return wrap(err)
	}
	select {
	case e.syncSem <- struct{}{}:
	case <-ctx.Done():
		return wrap(ctx.Err())
	}
	defer func() { <-e.syncSem }()
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return wrap(ErrClosed)
	}
	gate := make(chan struct{})
	e.gate, e.syncErr = gate, nil
	var drained chan struct{}
	if e.inflight > 0 {
		drained = make(chan struct{})
		e.drained = drained
	}
	e.mu.Unlock()
	if drained != nil {
		select {
		case <-drained:
		case <-ctx.Done():
			e.mu.Lock()
			e.gate, e.drained = nil, nil
			close(gate)
			e.mu.Unlock()
			return wrap(ctx.Err())
		}
	}
	e.mu.Lock()
	err := e.syncErr
	e.intentSaved, e.claimed, e.syncErr, e.gate = false, nil, nil, nil
	close(gate)
	e.mu.Unlock()
	if err != nil {
		return wrap(fmt.Errorf("a Put in flight failed: %w", err))
	}
	return nil
}

// CommitState returns the state that describes everything synced so far:
// {"uidvalidity":N,"uidnext":N,"open":false} when nothing is outstanding.
// It stays open (or lists pending UIDs) while the folder may hold
// messages the journal does not record: APPENDs whose answer was lost,
// and messages found on Resume that no Put has claimed yet.
func (e *Exporter) CommitState() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stateLocked(false).encode()
}

// Resume takes the state last committed for this destination ("" on the
// first run) and save, which records a new state in the journal at once.
// It must be called before any Put. If the state is open, Resume reads
// back every message from its UIDNEXT on (and its pending UIDs), so that
// a later Put of one of them returns it instead of appending it again.
// It fails with ErrUIDValidity, naming the folder, when the folder was
// created again since the state was recorded.
func (e *Exporter) Resume(ctx context.Context, st string, save func(ctx context.Context, state string) error) error {
	wrap := func(err error) error { return fmt.Errorf("imap: %s: resume: %w", e.id, err) }
	if e.opts.ReadOnly {
		return wrap(ErrReadOnly)
	}
	e.mu.Lock()
	switch {
	case e.closed:
		e.mu.Unlock()
		return wrap(ErrClosed)
	case e.started:
		e.mu.Unlock()
		return wrap(errors.New("called after Put"))
	}
	e.save = save
	e.intentSaved = false
	e.mu.Unlock()
	if st == "" {
		return nil
	}
	var s state
	if err := json.Unmarshal([]byte(st), &s); err != nil {
		return wrap(fmt.Errorf("%w %q: %v", ErrInvalidState, st, err))
	}
	if s.UIDValidity == 0 {
		return wrap(fmt.Errorf("%w %q: no uidvalidity", ErrInvalidState, st))
	}
	if s.UIDValidity != e.uidValidity {
		return wrap(e.uidValidityErr(e.uidValidity, s.UIDValidity))
	}
	if !s.Open && len(s.Pending) == 0 {
		return nil
	}
	lo := imap.UID(max(s.UIDNext, 1))
	var set imap.UIDSet
	if s.Open {
		set.AddRange(lo, 0) // lo:*
	}
	pending := make(map[imap.UID]bool, len(s.Pending))
	for _, uid := range s.Pending {
		if uid != 0 {
			set.AddNum(imap.UID(uid))
			pending[imap.UID(uid)] = true
		}
	}
	if len(set) == 0 {
		return nil
	}
	c, err := e.acquire(ctx)
	if err != nil {
		return wrap(err)
	}
	defer e.release(c)
	o := c.begin(ctx)
	sums, err := fetchSums(c, o, set)
	o.end()
	if err != nil {
		return wrap(fmt.Errorf("read back the messages of an unfinished batch: %w", err))
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for uid, sum := range sums {
		// "lo:*" holds the last message even when its UID is below lo.
		if (s.Open && uid >= lo || pending[uid]) && !e.owned[uid] {
			e.addFoundLocked(sum, uid)
		}
	}
	return nil
}

// Open returns the message at ref ("UIDVALIDITY/UID") in canonical form
// (CRLF->LF), streamed from the server: the caller reads it and must
// Close it, which hands the connection back (the reader holds one of the
// Options.Conns connections until then). ctx governs the reading too.
// A message that is gone, or a ref from an earlier UIDVALIDITY of the
// folder, gives an error wrapping exporters.ErrNotFound.
func (e *Exporter) Open(ctx context.Context, ref string) (io.ReadCloser, error) {
	wrap := func(err error) error { return fmt.Errorf("imap: %s: open %q: %w", e.id, ref, err) }
	uidValidity, uid, err := parseRef(ref)
	if err != nil {
		return nil, wrap(err)
	}
	if err := ctx.Err(); err != nil {
		return nil, wrap(err)
	}
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed {
		return nil, wrap(ErrClosed)
	}
	if uidValidity != e.uidValidity {
		return nil, wrap(fmt.Errorf("%w (the folder's UIDVALIDITY is now %d)", exporters.ErrNotFound, e.uidValidity))
	}
	c, err := e.acquire(ctx)
	if err != nil {
		return nil, wrap(err)
	}
	o := c.begin(ctx)
	cmd := c.client.Fetch(imap.UIDSetNum(uid), &imap.FetchOptions{
		UID:         true,
		BodySection: []*imap.FetchItemBodySection{{Peek: true}},
	})
	for m := cmd.Next(); m != nil; m = cmd.Next() {
		for item := m.Next(); item != nil; item = m.Next() {
			if it, ok := item.(imapclient.FetchItemDataBodySection); ok {
				r := &openReader{e: e, c: c, o: o, cmd: cmd, wrap: wrap}
				r.cr = newCanonicalReader(it.Literal, o.progress)
				return r, nil
			}
		}
	}
	err = cmd.Close()
	o.end()
	if err != nil {
		err = c.fail(err)
		e.release(c)
		return nil, wrap(fmt.Errorf("UID FETCH %d: %w", uid, err))
	}
	e.release(c)
	return nil, wrap(exporters.ErrNotFound)
}

func parseRef(ref string) (uint32, imap.UID, error) {
	a, b, ok := strings.Cut(ref, "/")
	uv, err1 := strconv.ParseUint(a, 10, 32)
	uid, err2 := strconv.ParseUint(b, 10, 32)
	if !ok || err1 != nil || err2 != nil || uv == 0 || uid == 0 {
		return 0, 0, fmt.Errorf("%w: want UIDVALIDITY/UID", ErrInvalidRef)
	}
	return uint32(uv), imap.UID(uid), nil
}

// openReader streams one message of Open.
type openReader struct {
	e    *Exporter
	c    *conn
	o    *op
	cmd  *imapclient.FetchCommand
	cr   *canonicalReader
	wrap func(error) error
	done bool  // the command is finished and the connection handed back
	err  error // sticky result once done
}

func (r *openReader) Read(p []byte) (int, error) {
	if r.done {
		return 0, r.err
	}
	n, err := r.cr.Read(p)
	if err == io.EOF {
		// The literal is over: finish the command, then report EOF.
		if ferr := r.finish(false); ferr != nil {
			r.err = r.wrap(ferr)
			return n, r.err
		}
		r.err = io.EOF
		return n, io.EOF
	}
	if err != nil {
		r.finish(true)
		r.err = r.wrap(r.c.fail(err))
		return n, r.err
	}
	return n, nil
}

// finish ends the FETCH and hands the connection back; abort closes the
// connection instead of reading the rest of the message.
func (r *openReader) finish(abort bool) error {
	if r.done {
		return nil
	}
	r.done = true
	if abort {
		r.c.kill(errConnBroken)
	}
	err := r.cmd.Close()
	r.o.end()
	if err != nil {
		err = r.c.fail(err)
	}
	r.e.release(r.c)
	if abort {
		return nil
	}
	return err
}

// Close ends the read; a message not read to its end closes the
// connection under it.
func (r *openReader) Close() error {
	if !r.done {
		r.finish(true)
		r.err = r.wrap(errors.New("reader closed"))
	}
	return nil
}

// Close closes every connection (with a LOGOUT, bounded by a few seconds)
// and the quarantine folder. It does not wait for Puts in flight: they
// fail. Calling Close more than once is safe and returns nil.
func (e *Exporter) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	close(e.closing)
	busy := make([]*conn, 0, len(e.conns))
	for c := range e.conns {
		busy = append(busy, c)
	}
	e.mu.Unlock()
	for {
		select {
		case c := <-e.idle:
			e.discard(c)
			continue
		default:
		}
		break
	}
	e.mu.Lock()
	for _, c := range busy {
		if _, ok := e.conns[c]; ok {
			c.kill(ErrClosed) // in use: its user sees the failure and discards it
		}
	}
	e.mu.Unlock()
	if e.quar != nil {
		if err := e.quar.close(); err != nil {
			return fmt.Errorf("imap: %s: close quarantine folder: %w", e.id, err)
		}
	}
	return nil
}
