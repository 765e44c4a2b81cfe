package imap

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/emersion/go-sasl"

	"github.com/popmigrate/popmigrate/internal/testpki"
)

const (
	memUser     = "alice"
	memPassword = "secret-pw"
	memToken    = "ya29.test-token"
)

// memConfig adjusts a memServer.
type memConfig struct {
	noUIDPlus     bool                          // neither advertise UIDPLUS nor answer APPENDUID
	implicitTLS   bool                          // serve TLS from the first byte
	startTLS      bool                          // offer STARTTLS
	mechs         []string                      // SASL mechanisms; nil: the server's default (PLAIN)
	reject        func(data []byte) *imap.Error // answer APPEND of data with this error
	strictParents bool                          // CREATE fails unless the parent exists
	appendLimit   uint32                        // advertise APPENDLIMIT=N (and enforce it)
	noUIDNext     bool                          // leave UIDNEXT out of the SELECT answer (it says 0)
}

// memServer is go-imap's in-memory server on 127.0.0.1 with knobs.
type memServer struct {
	addr   string
	pki    *testpki.PKI
	user   *imapmemserver.User
	cfg    memConfig
	logins atomic.Int32 // LOGIN commands and successful SASL exchanges
	mu     sync.Mutex
	raw    map[rawKey][]byte // every message as appended
}

func startMem(t *testing.T, cfg memConfig) *memServer {
	t.Helper()
	pki, err := testpki.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := &memServer{pki: pki, user: imapmemserver.NewUser(memUser, memPassword), cfg: cfg, raw: map[rawKey][]byte{}}
	caps := imap.CapSet{imap.CapIMAP4rev1: {}}
	if !cfg.noUIDPlus {
		caps[imap.CapUIDPlus] = struct{}{}
	}
	opts := &imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			base := &memSession{s: s}
			switch {
			case cfg.mechs != nil:
				return &memSessionSASL{base}, nil, nil
			case cfg.appendLimit > 0:
				return &memSessionLimit{base}, nil, nil
			}
			return base, nil, nil
		},
		Caps:         caps,
		InsecureAuth: true, // so that a client that wrongly logs in without TLS would succeed
		Logger:       log.New(io.Discard, "", 0),
	}
	if cfg.startTLS {
		opts.TLSConfig = pki.ServerConfig
	}
	srv := imapserver.New(opts)
	var ln net.Listener
	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	if cfg.implicitTLS {
		ln = tls.NewListener(ln, pki.ServerConfig)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

// options returns Options that reach s.
func (s *memServer) options(folder string) *Options {
	o := &Options{
		Addr:     s.addr,
		Security: SecurityPlain,
		Username: memUser,
		Password: memPassword,
		Folder:   folder,
		Timeout:  10 * time.Second,
	}
	if s.cfg.implicitTLS {
		o.Security = SecurityTLS
		o.TLSConfig = s.pki.ClientConfig()
	}
	if s.cfg.startTLS {
		o.Security = SecurityStartTLS
		o.TLSConfig = s.pki.ClientConfig()
	}
	return o
}

// messages returns the bodies (as stored, CRLF) of folder by UID.
func (s *memServer) messages(t testing.TB, folder string) map[imap.UID][]byte {
	t.Helper()
	c := s.client(t)
	defer c.Close()
	if _, err := c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatalf("select %q: %v", folder, err)
	}
	msgs, err := c.Fetch(imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}}, &imap.FetchOptions{
		UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}},
	}).Collect()
	if err != nil {
		t.Fatalf("fetch %q: %v", folder, err)
	}
	out := make(map[imap.UID][]byte)
	for _, m := range msgs {
		for _, b := range m.BodySection {
			out[m.UID] = b.Bytes
		}
	}
	return out
}

// snapshot describes every folder of s: its name and, for each message,
// its UID, flags, INTERNALDATE and size. Taking it changes nothing.
func (s *memServer) snapshot(t testing.TB) string {
	t.Helper()
	c := s.client(t)
	defer c.Close()
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	var names []string
	for _, d := range list {
		names = append(names, d.Mailbox)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, name := range names {
		sel, err := c.Select(name, &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			t.Fatalf("examine %q: %v", name, err)
		}
		fmt.Fprintf(&b, "%s: %d messages, UIDVALIDITY %d, UIDNEXT %d\n", name, sel.NumMessages, sel.UIDValidity, sel.UIDNext)
		if sel.NumMessages == 0 {
			continue
		}
		msgs, err := c.Fetch(imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}}, &imap.FetchOptions{
			UID: true, Flags: true, InternalDate: true, RFC822Size: true,
		}).Collect()
		if err != nil {
			t.Fatalf("fetch %q: %v", name, err)
		}
		for _, m := range msgs {
			fmt.Fprintf(&b, "  UID %d %s %s %d bytes\n", m.UID, flagSet(m.Flags), m.InternalDate.UTC().Format(time.RFC3339), m.RFC822Size)
		}
	}
	return b.String()
}

// client returns an authenticated client, bypassing the knobs.
func (s *memServer) client(t testing.TB) *imapclient.Client {
	t.Helper()
	var c *imapclient.Client
	var err error
	o := &imapclient.Options{TLSConfig: s.pki.ClientConfig()}
	switch {
	case s.cfg.implicitTLS:
		c, err = imapclient.DialTLS(s.addr, o)
	case s.cfg.startTLS:
		c, err = imapclient.DialStartTLS(s.addr, o)
	default:
		c, err = imapclient.DialInsecure(s.addr, o)
	}
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.mechs != nil {
		err = c.Authenticate(sasl.NewPlainClient("", memUser, memPassword))
	} else {
		err = c.Login(memUser, memPassword).Wait()
	}
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type memSession struct {
	*imapmemserver.UserSession
	s        *memServer
	selected string
}

// rawKey names a message of the server: UIDVALIDITY (unique per folder
// here) and UID.
type rawKey struct {
	uidValidity uint32
	uid         imap.UID
}

func (s *memServer) uidValidity(folder string) uint32 {
	st, err := s.user.Status(folder, &imap.StatusOptions{UIDValidity: true})
	if err != nil {
		return 0
	}
	return st.UIDValidity
}

func (ss *memSession) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	data, err := ss.UserSession.Select(name, options)
	if err == nil {
		ss.selected = name
		if ss.s.cfg.noUIDNext {
			data.UIDNext = 0
		}
	}
	return data, err
}

// Fetch serves BODY[] from the bytes as appended. QUIRK of the test
// server: imapmemserver re-serialises the header through go-message,
// which changes a message without a header, with a header only, or
// empty; a real server (Dovecot) serves what it stored.
func (ss *memSession) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	if len(options.BodySection) != 1 || len(options.BodySection[0].Part) != 0 || options.BodySection[0].Specifier != imap.PartSpecifierNone {
		return ss.UserSession.Fetch(w, numSet, options)
	}
	var criteria imap.SearchCriteria
	switch set := numSet.(type) {
	case imap.SeqSet:
		criteria.SeqNum = []imap.SeqSet{set}
	case imap.UIDSet:
		criteria.UID = []imap.UIDSet{set}
	}
	seqs, err := ss.UserSession.Search(imapserver.NumKindSeq, &criteria, &imap.SearchOptions{})
	if err != nil {
		return err
	}
	uids, err := ss.UserSession.Search(imapserver.NumKindUID, &criteria, &imap.SearchOptions{})
	if err != nil {
		return err
	}
	seqSet, _ := seqs.All.(imap.SeqSet)
	seqNums, _ := seqSet.Nums()
	uidNums := uids.AllUIDs()
	uv := ss.s.uidValidity(ss.selected)
	for i, seq := range seqNums {
		ss.s.mu.Lock()
		data, ok := ss.s.raw[rawKey{uv, uidNums[i]}]
		ss.s.mu.Unlock()
		if !ok {
			return fmt.Errorf("no raw copy of UID %d", uidNums[i])
		}
		rw := w.CreateMessage(seq)
		rw.WriteUID(uidNums[i])
		if options.RFC822Size {
			rw.WriteRFC822Size(int64(len(data)))
		}
		wc := rw.WriteBodySection(options.BodySection[0], int64(len(data)))
		wc.Write(data)
		if err := wc.Close(); err != nil {
			return err
		}
		if err := rw.Close(); err != nil {
			return err
		}
	}
	return nil
}

func (ss *memSession) Login(username, password string) error {
	if err := ss.s.user.Login(username, password); err != nil {
		return err
	}
	ss.s.logins.Add(1)
	ss.UserSession = imapmemserver.NewUserSession(ss.s.user)
	return nil
}

func (ss *memSession) Close() error {
	if ss.UserSession == nil {
		return nil
	}
	return ss.UserSession.Close()
}

func (ss *memSession) Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	if int64(len(data)) != r.Size() {
		// QUIRK of the test server: imapmemserver would store a literal
		// cut short by a dropped connection; a real server does not.
		return nil, fmt.Errorf("literal cut at %d of %d bytes", len(data), r.Size())
	}
	if ss.s.cfg.reject != nil {
		if ierr := ss.s.cfg.reject(data); ierr != nil {
			return nil, ierr
		}
	}
	if ss.s.cfg.appendLimit > 0 && len(data) > int(ss.s.cfg.appendLimit) {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTooBig, Text: "too big"}
	}
	ad, err := ss.UserSession.Append(mailbox, bytes.NewReader(data), options)
	if err == nil {
		ss.s.mu.Lock()
		ss.s.raw[rawKey{ad.UIDValidity, ad.UID}] = data
		ss.s.mu.Unlock()
	}
	if ss.s.cfg.noUIDPlus {
		ad = nil
	}
	return ad, err
}

func (ss *memSession) Create(name string, options *imap.CreateOptions) error {
	if i := strings.LastIndexByte(name, '/'); ss.s.cfg.strictParents && i > 0 {
		if _, err := ss.s.user.Status(name[:i], &imap.StatusOptions{}); err != nil {
			return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "parent missing"}
		}
	}
	return ss.UserSession.Create(name, options)
}

type memSessionLimit struct{ *memSession }

func (ss *memSessionLimit) AppendLimit() uint32 { return ss.s.cfg.appendLimit }

type memSessionSASL struct{ *memSession }

func (ss *memSessionSASL) AuthenticateMechanisms() []string { return ss.s.cfg.mechs }

func (ss *memSessionSASL) Authenticate(mech string) (sasl.Server, error) {
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			return ss.Login(username, password)
		}), nil
	case sasl.OAuthBearer:
		return sasl.NewOAuthBearerServer(func(o sasl.OAuthBearerOptions) *sasl.OAuthBearerError {
			if o.Username != memUser || o.Token != memToken {
				return &sasl.OAuthBearerError{Status: "invalid_token", Schemes: "bearer"}
			}
			ss.s.logins.Add(1)
			ss.UserSession = imapmemserver.NewUserSession(ss.s.user)
			return nil
		}), nil
	case "XOAUTH2":
		return &xoauth2Server{ss: ss.memSession}, nil
	}
	return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Text: "unsupported mechanism"}
}

// xoauth2Server checks an XOAUTH2 initial response; on failure it sends
// a JSON challenge and fails after the client's empty answer.
type xoauth2Server struct {
	ss     *memSession
	failed bool
}

func (x *xoauth2Server) Next(resp []byte) ([]byte, bool, error) {
	if x.failed {
		return nil, true, errors.New("invalid token")
	}
	if string(resp) == "user="+memUser+"\x01auth=Bearer "+memToken+"\x01\x01" {
		x.ss.s.logins.Add(1)
		x.ss.UserSession = imapmemserver.NewUserSession(x.ss.s.user)
		return nil, true, nil
	}
	x.failed = true
	return []byte(`{"status":"401","schemes":"bearer"}`), false, nil
}

// faults is a dialer that injects network failures into the connections
// it makes, to test reconnection and the handling of lost answers.
type faults struct {
	dropAppendOK atomic.Int32 // close instead of delivering the next N APPEND answers
	stall        atomic.Int32 // stop delivering server bytes after the next N commands of stallOn
	stallOn      []string     // command words that stall; nil means " APPEND "
	cutAt        atomic.Int64 // close after this many client bytes on the next connection (0: never)
	cutFetch     atomic.Int64 // once: close after this many server bytes that follow the next FETCH sent (0: never)
	dials        atomic.Int32

	mu   sync.Mutex
	sent bytes.Buffer // every byte the client wrote, on every connection
}

// written returns every byte the client wrote so far.
func (f *faults) written() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sent.String()
}

func (f *faults) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	f.dials.Add(1)
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &faultConn{Conn: c, f: f, cut: f.cutAt.Swap(0), closed: make(chan struct{})}, nil
}

type faultConn struct {
	net.Conn
	f       *faults
	cut     int64
	written int64
	mu      sync.Mutex
	tail    []byte
	stalled bool
	left    int64 // server bytes still delivered before closing (cutFetch); 0: no cut armed
	once    sync.Once
	closed  chan struct{}
}

func (c *faultConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

func (c *faultConn) Write(p []byte) (int, error) {
	if c.cut > 0 && c.written+int64(len(p)) >= c.cut {
		n, _ := c.Conn.Write(p[:c.cut-c.written])
		c.Close()
		return n, net.ErrClosed
	}
	words := c.f.stallOn
	if words == nil {
		words = []string{" APPEND "}
	}
	for _, w := range words {
		if bytes.Contains(p, []byte(w)) && c.f.stall.Load() > 0 && c.f.stall.Add(-1) >= 0 {
			c.mu.Lock()
			c.stalled = true
			c.mu.Unlock()
			break
		}
	}
	if bytes.Contains(p, []byte(" FETCH ")) {
		if n := c.f.cutFetch.Swap(0); n > 0 {
			c.mu.Lock()
			c.left = n
			c.mu.Unlock()
		}
	}
	n, err := c.Conn.Write(p)
	c.written += int64(n)
	c.f.mu.Lock()
	c.f.sent.Write(p[:n])
	c.f.mu.Unlock()
	return n, err
}

func (c *faultConn) isStalled() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stalled
}

func (c *faultConn) Read(p []byte) (int, error) {
	if c.isStalled() {
		<-c.closed
		return 0, net.ErrClosed
	}
	c.mu.Lock()
	left := c.left
	c.mu.Unlock()
	if left > 0 && int64(len(p)) > left {
		p = p[:left]
	}
	n, err := c.Conn.Read(p)
	if left > 0 {
		c.mu.Lock()
		c.left -= int64(n)
		cut := c.left <= 0
		c.mu.Unlock()
		if cut {
			// Deliver what came, then nothing more.
			c.Close()
			return n, nil
		}
	}
	if c.isStalled() {
		// What arrived after the APPEND went out is never delivered.
		<-c.closed
		return 0, net.ErrClosed
	}
	if n > 0 && c.f.dropAppendOK.Load() > 0 {
		window := append(c.tail, p[:n]...)
		if bytes.Contains(window, []byte("APPEND completed")) && c.f.dropAppendOK.Add(-1) >= 0 {
			c.Close()
			return 0, net.ErrClosed
		}
		c.tail = append(c.tail[:0], window[max(0, len(window)-32):]...)
	}
	return n, err
}
