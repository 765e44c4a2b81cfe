// Package pop3test is an in-memory POP3 server (RFC 1939, with CAPA,
// response codes, PIPELINING, STLS, SASL PLAIN, XOAUTH2, OAUTHBEARER and
// APOP) for tests and for the demo. Fault knobs make it drop connections,
// answer -ERR, misreport sizes, stall, trickle, forget to delete, skip
// dot-stuffing or skip locking; RetrCount and DeleCount tell what a client
// asked for.
//
// It keeps RFC 1939 semantics: a session locks its mailbox (a second
// concurrent login gets "-ERR [IN-USE]") unless Faults.NoLock, DELE only
// marks, RSET unmarks, QUIT commits the marks, and a dropped connection
// commits nothing.
//
// It does not import "testing", so non-test programs can use it.
package pop3test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// Message is one stored message.
type Message struct {
	// UID is the UIDL of the message. An empty UID is replaced by a
	// generated unique one when the message is stored.
	UID string
	// Data is the message as stored, with LF or CRLF line ends. It is
	// served with every bare LF turned into CRLF (as Dovecot does), unless
	// Raw is set, and dot-stuffed. A last line without a line end gets
	// CRLF before the terminating ".". The server does not modify Data;
	// callers must not either once it is stored.
	Data []byte
	// Raw serves Data without turning bare LF into CRLF.
	Raw bool
}

// Mailbox is one user's account.
type Mailbox struct {
	User     string
	Password string
	// Token is the OAuth 2.0 access token accepted by XOAUTH2 and
	// OAUTHBEARER, or "" to accept neither for this user.
	Token    string
	Messages []Message
}

// Faults are misbehaviours to inject. The zero value is a well-behaved
// server.
type Faults struct {
	// DropAfterBytes closes the connection after this many bytes of RETR
	// body output in a session (0 = off).
	DropAfterBytes int64
	// DropAfterRetrs closes the connection after this many complete RETR
	// responses in a session (0 = off).
	DropAfterRetrs int
	// RetrErr maps a message number to the text of a "-ERR" answer to its
	// RETR, for example "[SYS/TEMP] disk error".
	RetrErr map[int]string
	// SizeSkew is added to every size LIST and STAT report.
	SizeSkew int64
	// NoUIDL, NoCAPA, NoPipelining, NoSTLS and NoTop withhold the command
	// or capability; NoUser refuses USER/PASS.
	NoUIDL, NoCAPA, NoPipelining, NoSTLS, NoTop, NoUser bool
	// Delay is waited before every response.
	Delay time.Duration
	// LoginErr is the "-ERR" text (e.g. "[IN-USE] mailbox locked") given
	// to the first LoginErrCount login attempts of the user, counted over
	// the server's life; LoginErrCount 0 means every attempt.
	LoginErr      string
	LoginErrCount int
	// DropBeforeQuitOK closes the connection on QUIT without answering or
	// committing anything.
	DropBeforeQuitOK bool
	// FakeDele answers "+OK" to DELE but never deletes.
	FakeDele bool
	// APOP puts an APOP timestamp in the greeting and accepts APOP.
	APOP bool
	// SASLPlain offers and accepts SASL PLAIN.
	SASLPlain bool
	// SASLOAuth offers and accepts XOAUTH2 and OAUTHBEARER.
	SASLOAuth bool
	// SASLTwoStep refuses an AUTH command that carries an initial
	// response ("-ERR initial response not accepted"): the client must
	// send AUTH MECH alone and the response after the server's empty
	// challenge, the XOAUTH2 form Microsoft documents for POP.
	SASLTwoStep bool

	// StallInRetr maps a message number (1-based, as listed in the
	// session) to the number of bytes of its served, dot-stuffed body to
	// send after the "+OK" line of its RETR, after which the session sends
	// nothing more and reads (and ignores) commands until the client closes
	// the connection or the server is closed. -1 stalls before the "+OK"
	// line. A count at or past the end of the response sends all of it,
	// terminator included, then stalls. It applies to every RETR of that
	// message, in every session.
	StallInRetr map[int]int64
	// DropInRetr is StallInRetr but closes the connection instead of
	// stalling (-1: before the "+OK" line), in every session, committing
	// nothing.
	DropInRetr map[int]int64
	// NoDotStuff serves RETR and TOP bodies without dot-stuffing: a line
	// that starts with "." is sent as it is, so a line "." in a message
	// ends the response early for the client, like a broken server.
	NoDotStuff bool
	// NoLock disables mailbox locking: several sessions of one user may be
	// logged in at once, each with its own snapshot, like a server without
	// locking.
	NoLock bool
	// Trickle is waited before every chunk of TrickleChunk bytes of a RETR
	// or TOP body, each chunk flushed on its own: a slow but live server.
	// 0 means no wait.
	Trickle time.Duration
	// TrickleChunk is the chunk size of Trickle; 0 means 1 byte.
	TrickleChunk int
	// LoginDelay, when not 0, announces CAPA "LOGIN-DELAY n" (RFC 2449
	// section 6.5) with n its seconds, and refuses with "-ERR
	// [LOGIN-DELAY]" a login to the mailbox sooner than that after its
	// last successful one.
	LoginDelay time.Duration
	// GmailSlice, when not 0, serves the mailbox as Gmail's POP3 does: a
	// session lists only the GmailSlice oldest messages not yet hidden,
	// and the messages retrieved in a session that ends with QUIT are
	// hidden from later sessions (not deleted: Mailbox still has them);
	// without QUIT they stay visible.
	GmailSlice int
}

// ServerOptions configures a Server. A nil *ServerOptions is a plain
// server with no faults.
type ServerOptions struct {
	// TLSConfig enables TLS: implicit when Implicit is set, otherwise
	// offered through STLS.
	TLSConfig *tls.Config
	// Implicit makes listeners speak TLS from the first byte (pop3s).
	Implicit bool
	// Faults apply to every user without an entry in UserFaults, and to
	// everything before login (greeting, CAPA, STLS, the offered
	// mechanisms), when the user is not yet known.
	Faults Faults
	// UserFaults apply to one user from login on, and to their login
	// attempts (LoginErr).
	UserFaults map[string]Faults
	// Log, when not nil, receives the transcript of every session
	// ("3 C: RETR 1"), with secrets redacted and bodies left out.
	Log io.Writer
	// TokenValid, when not nil, decides which OAuth 2.0 access tokens
	// XOAUTH2 and OAUTHBEARER accept for user, in place of Mailbox.Token
	// (a test's token endpoint mints tokens that expire). It is called
	// without the server's lock held, from the session's goroutine.
	TokenValid func(user, token string) bool
}

// Stats are counters over the server's life. Per-message counts are kept by
// user and UID: see RetrCount and DeleCount.
type Stats struct {
	Sessions       int // connections accepted
	Logins         int // successful logins
	FailedLogins   int // rejected login attempts
	Retrs          int // complete RETR responses sent
	DelesCommitted int // messages removed by a committed QUIT
	Concurrent     int // sessions open now
	MaxConcurrent  int // most sessions open at once
	// Turns counts the times a session flushed what it had to say and
	// waited for the client with nothing of the client's left unread:
	// the round trips of all sessions, the greeting's included.
	Turns int
}

// Server is an in-memory POP3 server. Its methods are safe for concurrent
// use.
type Server struct {
	tlsConfig  *tls.Config
	implicit   bool
	log        io.Writer
	tokenValid func(user, token string) bool

	mu         sync.Mutex
	boxes      map[string]*mailbox
	faults     Faults
	userFaults map[string]Faults
	loginErrs  map[string]int
	stats      Stats
	retrCount  map[userUID]int
	deleCount  map[userUID]int
	serial     uint64
	listeners  []net.Listener
	conns      map[net.Conn]struct{}
	closed     bool
	done       chan struct{}
	wg         sync.WaitGroup
	logMu      sync.Mutex
}

// userUID keys the per-message counters.
type userUID struct{ user, uid string }

type mailbox struct {
	password, token string
	msgs            []stored
	locked          bool
	hidden          map[uint64]bool // GmailSlice: retrieved by a session that quit
	lastLogin       time.Time       // LoginDelay: the last successful login
}

type stored struct {
	Message
	serial uint64
	size   int64 // octets of the served form, before dot-stuffing
}

// NewServer returns a server holding copies of mailboxes (the message
// data is shared, not copied).
func NewServer(mailboxes []Mailbox, opts *ServerOptions) *Server {
	var o ServerOptions
	if opts != nil {
		o = *opts
	}
	s := &Server{
		tlsConfig:  o.TLSConfig,
		implicit:   o.Implicit,
		log:        o.Log,
		tokenValid: o.TokenValid,
		boxes:      map[string]*mailbox{},
		faults:     o.Faults,
		userFaults: map[string]Faults{},
		loginErrs:  map[string]int{},
		retrCount:  map[userUID]int{},
		deleCount:  map[userUID]int{},
		conns:      map[net.Conn]struct{}{},
		done:       make(chan struct{}),
	}
	for u, f := range o.UserFaults {
		s.userFaults[u] = f
	}
	for _, mb := range mailboxes {
		b := &mailbox{password: mb.Password, token: mb.Token}
		s.boxes[mb.User] = b
		for _, m := range mb.Messages {
			b.msgs = append(b.msgs, s.store(m))
		}
	}
	return s
}

// store prepares a message for serving. s.mu must be held or s unshared.
func (s *Server) store(m Message) stored {
	s.serial++
	if m.UID == "" {
		m.UID = fmt.Sprintf("pop3test-%d", s.serial)
	}
	return stored{Message: m, serial: s.serial, size: servedSize(m.Data, m.Raw)}
}

// AddMessage appends a message to user's mailbox (creating the mailbox,
// with no password, if needed). A session already open does not see it.
func (s *Server) AddMessage(user string, m Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.boxes[user]
	if b == nil {
		b = &mailbox{}
		s.boxes[user] = b
	}
	b.msgs = append(b.msgs, s.store(m))
}

// Mailbox returns the user's current messages (after committed deletions),
// or nil for an unknown user.
func (s *Server) Mailbox(user string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.boxes[user]
	if b == nil {
		return nil
	}
	out := make([]Message, len(b.msgs))
	for i, m := range b.msgs {
		out[i] = m.Message
	}
	return out
}

// SetFaults replaces the faults of user; user "" sets the default faults
// (ServerOptions.Faults). Sessions pick them up at their next login, or,
// for the defaults, at connection.
func (s *Server) SetFaults(user string, f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if user == "" {
		s.faults = f
		return
	}
	s.userFaults[user] = f
}

// faultsFor returns the faults that apply to user ("" for the defaults).
func (s *Server) faultsFor(user string) Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.userFaults[user]; ok && user != "" {
		return f
	}
	return s.faults
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// RetrCount returns how many RETR commands for the message of user with
// this UID the server has received over its life, whatever it answered
// (faults included). Messages sharing a UID share the count.
func (s *Server) RetrCount(user, uid string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.retrCount[userUID{user, uid}]
}

// DeleCount returns how many DELE commands for the message of user with
// this UID the server has received over its life, committed or not.
// Messages sharing a UID share the count.
func (s *Server) DeleCount(user, uid string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deleCount[userUID{user, uid}]
}

// Listen listens on addr (for example "127.0.0.1:0") and serves every
// connection in the background until Close. It returns the address bound.
func (s *Server) Listen(addr string) (net.Addr, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pop3test: listen %s: %w", addr, err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = l.Close()
		return nil, errors.New("pop3test: server closed")
	}
	s.listeners = append(s.listeners, l)
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.ServeConn(conn)
			}()
		}
	}()
	return l.Addr(), nil
}

// ServeConn runs one session over conn (for example one end of a
// net.Pipe) and returns when it ends. It closes conn.
func (s *Server) ServeConn(conn net.Conn) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = conn.Close()
		return
	}
	s.conns[conn] = struct{}{}
	s.stats.Sessions++
	s.stats.Concurrent++
	s.stats.MaxConcurrent = max(s.stats.MaxConcurrent, s.stats.Concurrent)
	id := s.stats.Sessions
	s.mu.Unlock()
	sess := &session{s: s, id: id, conn: conn, f: s.faultsFor("")}
	sess.run()
	s.mu.Lock()
	delete(s.conns, conn)
	s.stats.Concurrent--
	s.mu.Unlock()
}

// Close stops the listeners, closes every session (committing nothing) and
// waits for them to end.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	for _, l := range s.listeners {
		_ = l.Close()
	}
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// logf writes one transcript line.
func (s *Server) logf(format string, args ...any) {
	if s.log == nil {
		return
	}
	s.logMu.Lock()
	defer s.logMu.Unlock()
	fmt.Fprintf(s.log, format+"\n", args...)
}

// servedSize is the size of data as served: with bare LF turned into
// CRLF unless raw, without dot-stuffing.
func servedSize(data []byte, raw bool) int64 {
	n := int64(len(data))
	if raw {
		return n
	}
	for i, c := range data {
		if c == '\n' && (i == 0 || data[i-1] != '\r') {
			n++
		}
	}
	return n
}

// writeServed writes data dot-stuffed (unless noStuff), with bare LF
// turned into CRLF unless raw, a CRLF after an unterminated last line, and
// the terminating ".". topLines < 0 writes everything; otherwise the
// headers, the blank line and topLines lines of the body.
func writeServed(w io.Writer, data []byte, raw, noStuff bool, topLines int) error {
	inBody := false
	bodyLines := 0
	for len(data) > 0 {
		if topLines >= 0 && inBody && bodyLines >= topLines {
			break
		}
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line = data[:i+1]
		}
		data = data[len(line):]
		content := bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
		if inBody {
			bodyLines++
		} else if len(content) == 0 {
			inBody = true
		}
		if len(line) > 0 && line[0] == '.' && !noStuff {
			if _, err := w.Write([]byte{'.'}); err != nil {
				return err
			}
		}
		switch {
		case line[len(line)-1] != '\n':
			line = append(line[:len(line):len(line)], '\r', '\n')
		case !raw && (len(line) < 2 || line[len(line)-2] != '\r'):
			if _, err := w.Write(line[:len(line)-1]); err != nil {
				return err
			}
			line = []byte("\r\n")
		}
		if _, err := w.Write(line); err != nil {
			return err
		}
	}
	_, err := w.Write([]byte(".\r\n"))
	return err
}

// errDrop ends a session on purpose (a fault).
var errDrop = errors.New("pop3test: connection dropped (fault)")

// limitWriter passes at most n bytes, then fails with errDrop.
type limitWriter struct {
	w       io.Writer
	n       int64 // remaining; < 0 means unlimited
	written int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.n < 0 {
		k, err := l.w.Write(p)
		l.written += int64(k)
		return k, err
	}
	if int64(len(p)) > l.n {
		k, err := l.w.Write(p[:l.n])
		l.written += int64(k)
		l.n -= int64(k)
		if err == nil {
			err = errDrop
		}
		return k, err
	}
	k, err := l.w.Write(p)
	l.written += int64(k)
	l.n -= int64(k)
	return k, err
}

// trickleWriter writes to the session's output in chunks, each after a
// wait and flushed on its own (Faults.Trickle).
type trickleWriter struct {
	ss    *session
	chunk int
	wait  time.Duration
}

func (t *trickleWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		timer := time.NewTimer(t.wait)
		select {
		case <-timer.C:
		case <-t.ss.s.done:
			timer.Stop()
			return n, errClosing
		}
		k := min(t.chunk, len(p))
		if _, err := t.ss.bw.Write(p[:k]); err != nil {
			return n, err
		}
		if err := t.ss.bw.Flush(); err != nil {
			return n, err
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

// errClosing ends a session because the server is closing.
var errClosing = errors.New("pop3test: server closing")

// greetingStamp returns an APOP timestamp for session id.
func greetingStamp(id int) string {
	return fmt.Sprintf("<%d.%d.%d@pop3test>", os.Getpid(), id, time.Now().UnixNano())
}
