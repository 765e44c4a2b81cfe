package imap

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/internal/mailhdr"
	"github.com/popmigrate/popmigrate/exporters/quarantine"
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

// INTERNALDATE policies of Options.DateFrom: mailhdr's date policies, the
// ones the mbox From_ line and the .eml file name follow too.
const (
	// DateFromReceived takes the newest date among the Received: fields,
	// then the Date: field, then the download time.
	DateFromReceived = string(mailhdr.FromReceived)
	// DateFromDate takes the Date: field, then the download time.
	DateFromDate = string(mailhdr.FromDate)
	// DateFromDownload takes the time popmigrate downloaded the message.
	DateFromDownload = string(mailhdr.FromDownload)
)

// Defaults of Options.
const (
	DefaultConns   = 2
	DefaultTimeout = 60 * time.Second
	DefaultFolder  = "INBOX"
)

// The errors of this package. The errors every destination shares are in
// package exporters: every method called after Close wraps
// exporters.ErrClosed; Put, Sync and Resume of an Exporter opened with
// Options.ReadOnly wrap exporters.ErrReadOnly; Put wraps
// exporters.ErrShortBody when a body ends before its Size.
var (
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
	// OAuth2TokenFunc, when set, is used instead of OAuth2Token: it is
	// asked for the token at each login (each new connection), with
	// rejected "". When the server refuses a token, OAuth2TokenFunc is
	// asked once more with that token as rejected, and the login is tried
	// again, on a new connection, with the token it returns, unless that
	// is the same one. It may be called from several goroutines at once.
	OAuth2TokenFunc func(ctx context.Context, rejected string) (string, error)
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
	// QuarantineDir, when set, is the folder (created 0700 by New) where
	// a message the server rejects is kept as <key>.eml, as
	// quarantine.Wrap keeps it; Put then returns a *QuarantinedError.
	// Empty means Put returns an *exporters.RejectedError (wrapping a
	// *RejectedError).
	QuarantineDir string
	// ReadOnly opens the folder for reading back only (verify): a missing
	// folder is an error wrapping exporters.ErrNotFound instead of being
	// created, and Put, Sync and Resume return exporters.ErrReadOnly.
	// Reads never change a message (BODY.PEEK).
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
	quar      *quarantine.Folder // nil: no quarantine

	idle      chan *conn    // connections ready for use
	slots     chan struct{} // one token per open (or opening) connection
	closing   chan struct{} // closed by Close
	syncSem   chan struct{} // serialises Sync
	intentSem chan struct{} // serialises intent saves
	resolving sync.Mutex    // held while lost APPENDs are looked for (resolveUncertain)

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

	// Grouped APPENDs (multiappend.go); grouping and appendLimit are set
	// by New.
	grouping    bool          // the server takes MULTIAPPEND from this Exporter
	noGroups    atomic.Bool   // set when the server refused a group's syntax: no more groups
	appendLimit int64         // the server's APPENDLIMIT; 0: none
	gq          []*member     // Puts waiting for a group
	gqBytes     int64         // their bytes on the wire
	gopen       int           // groups open to new members
	gsenders    int           // senders running
	gkick       chan struct{} // a member was queued
	gen         uint64        // bumped as APPENDs go out and end (see fresh)
	groups      int           // groups the server stored, and their messages
	grouped     int
}

var (
	_ exporters.Exporter  = (*Exporter)(nil)
	_ exporters.Opener    = (*Exporter)(nil)
	_ exporters.Resumable = (*Exporter)(nil)
)

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
		gkick:     make(chan struct{}, 1),
	}
	if e.id == "" {
		u := url.URL{Scheme: "imap", User: url.User(o.Username), Host: o.Addr, Path: "/" + o.Folder}
		e.id = u.String()
	}
	if o.QuarantineDir != "" {
		q, err := quarantine.Open(o.QuarantineDir)
		if err != nil {
			return nil, fmt.Errorf("imap: %s: %s: %w", e.id, o.QuarantineDir, err)
		}
		e.quar = q
	}
	if err := e.start(ctx); err != nil {
		if e.quar != nil {
			e.quar.Close()
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
	if o.Password == "" && o.OAuth2Token == "" && o.OAuth2TokenFunc == nil {
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
	name, subscribed, err := e.ensureFolder(ctx, c, true)
	if err != nil {
		return fail(err)
	}
	sel, err := c.examine(ctx, name)
	subscribed()
	var ierr *imap.Error
	if name == "INBOX" && errors.As(err, &ierr) && !c.isDead() &&
		(ierr.Code == imap.ResponseCodeNonExistent || ierr.Code == imap.ResponseCodeTryCreate) {
		// A server without an INBOX yet (go-imap's memory server
		// starts with none): look for it and create it like any
		// other folder.
		if name, subscribed, err = e.ensureFolder(ctx, c, false); err == nil {
			sel, err = c.examine(ctx, name)
			subscribed()
		}
	}
	if err != nil {
		return fail(err)
	}
	e.mailbox = name
	e.uidValidity, e.uidNext = sel.UIDValidity, sel.UIDNext
	e.grouping = !e.opts.ReadOnly && e.canGroup(c)
	e.appendLimit = c.appendLimit
	e.conns[c] = struct{}{}
	e.idle <- c
	return nil
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
			c.kill(exporters.ErrClosed) // in use: its user sees the failure and discards it
		}
	}
	e.mu.Unlock()
	if e.quar != nil {
		if err := e.quar.Close(); err != nil {
			return fmt.Errorf("imap: %s: close quarantine folder: %w", e.id, err)
		}
	}
	return nil
}
