package pop3test

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// maxCommandLine bounds a command line (AUTH continuations carry tokens).
const maxCommandLine = 16 << 10

// session is one connection.
type session struct {
	s     *Server
	id    int
	conn  net.Conn
	br    *bufio.Reader
	bw    *bufio.Writer
	tls   bool
	f     Faults // faults in force: the defaults, then the user's
	stamp string

	user    string   // from USER
	box     *mailbox // mailbox once logged in
	locked  bool     // this session holds box's lock
	boxUser string
	msgs    []stored // snapshot at login
	deleted []bool

	retrBytes int64
	retrs     int
	retrieved map[uint64]bool // serials of the complete RETRs (GmailSlice)
}

// run serves the session until QUIT, an error, a fault or Server.Close.
func (ss *session) run() {
	defer ss.end()
	if ss.s.implicit && ss.s.tlsConfig != nil {
		tc := tls.Server(ss.conn, ss.s.tlsConfig)
		_ = tc.SetDeadline(time.Now().Add(30 * time.Second))
		if err := tc.Handshake(); err != nil {
			ss.s.logf("%d tls handshake: %v", ss.id, err)
			return
		}
		_ = tc.SetDeadline(time.Time{})
		ss.conn, ss.tls = tc, true
	}
	ss.br = bufio.NewReaderSize(ss.conn, 4096)
	ss.bw = bufio.NewWriterSize(ss.conn, 32<<10)
	greeting := "+OK popmigrate pop3test server ready"
	if ss.f.APOP {
		ss.stamp = greetingStamp(ss.id)
		greeting += " " + ss.stamp
	}
	if !ss.reply(greeting) {
		return
	}
	for {
		if ss.br.Buffered() == 0 {
			if !ss.turn() {
				return
			}
		}
		line, err := ss.readLine()
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				ss.reply("-ERR line too long")
				_ = ss.bw.Flush()
			}
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		verb = strings.ToUpper(verb)
		switch verb {
		case "PASS":
			ss.s.logf("%d C: PASS ********", ss.id)
		case "AUTH":
			mech, _, _ := strings.Cut(arg, " ")
			ss.s.logf("%d C: AUTH %s ...", ss.id, mech)
		default:
			ss.s.logf("%d C: %s", ss.id, line)
		}
		if !ss.dispatch(verb, arg) {
			// The last reply (QUIT's, or a fault's) is waited for too.
			ss.turn()
			return
		}
	}
}

// turn flushes the replies and counts a round trip (Stats.Turns): the
// client is waited for. It reports false when the flush failed.
func (ss *session) turn() bool {
	if err := ss.bw.Flush(); err != nil {
		return false
	}
	ss.s.mu.Lock()
	ss.s.stats.Turns++
	ss.s.mu.Unlock()
	return true
}

// end releases the mailbox without committing and closes the connection.
func (ss *session) end() {
	if ss.box != nil {
		ss.s.mu.Lock()
		if ss.locked {
			ss.box.locked = false
			ss.locked = false
		}
		ss.s.mu.Unlock()
		ss.box = nil
	}
	_ = ss.conn.Close()
}

// readLine reads one command line of bounded length, without its line end.
func (ss *session) readLine() (string, error) {
	var acc []byte
	for {
		frag, err := ss.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			acc = append(acc, frag...)
			if len(acc) > maxCommandLine {
				return "", err
			}
			continue
		}
		if err != nil {
			return "", err
		}
		acc = append(acc, frag...)
		acc = bytes.TrimSuffix(bytes.TrimSuffix(acc, []byte("\n")), []byte("\r"))
		return string(acc), nil
	}
}

// reply waits the fault delay and writes one response line. It reports
// false when the server is closing.
func (ss *session) reply(line string) bool {
	if d := ss.f.Delay; d > 0 {
		_ = ss.bw.Flush()
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ss.s.done:
			t.Stop()
			return false
		}
	}
	ss.s.logf("%d S: %s", ss.id, line)
	_, _ = ss.bw.WriteString(line)
	_, err := ss.bw.WriteString("\r\n")
	return err == nil
}

// dispatch runs one command; false ends the session.
func (ss *session) dispatch(verb, arg string) bool {
	if ss.box == nil {
		switch verb {
		case "CAPA":
			return ss.capa()
		case "USER":
			if ss.f.NoUser {
				return ss.reply("-ERR USER not supported")
			}
			ss.user = arg
			return ss.reply("+OK")
		case "PASS":
			if ss.f.NoUser || ss.user == "" {
				return ss.reply("-ERR USER first")
			}
			user := ss.user
			ss.user = ""
			return ss.login(user, func(b *mailbox) bool { return equal(b.password, arg) })
		case "APOP":
			return ss.apop(arg)
		case "AUTH":
			return ss.auth(arg)
		case "STLS":
			return ss.stls()
		case "QUIT":
			ss.reply("+OK bye")
			return false
		}
		return ss.reply("-ERR not allowed before login")
	}
	switch verb {
	case "CAPA":
		return ss.capa()
	case "STAT":
		n, size := 0, int64(0)
		for i, m := range ss.msgs {
			if !ss.deleted[i] {
				n++
				size += m.size + ss.f.SizeSkew
			}
		}
		return ss.reply(fmt.Sprintf("+OK %d %d", n, size))
	case "LIST":
		return ss.list(arg, false)
	case "UIDL":
		if ss.f.NoUIDL {
			return ss.reply("-ERR unknown command")
		}
		return ss.list(arg, true)
	case "RETR":
		return ss.retr(arg)
	case "TOP":
		if ss.f.NoTop {
			return ss.reply("-ERR unknown command")
		}
		return ss.top(arg)
	case "DELE":
		i, ok := ss.msg(arg)
		if !ok {
			return ss.reply("-ERR no such message")
		}
		ss.s.mu.Lock()
		ss.s.deleCount[userUID{ss.boxUser, ss.msgs[i].UID}]++
		ss.s.mu.Unlock()
		if !ss.f.FakeDele {
			ss.deleted[i] = true
		}
		return ss.reply("+OK message deleted")
	case "RSET":
		clear(ss.deleted)
		return ss.reply("+OK")
	case "NOOP":
		return ss.reply("+OK")
	case "QUIT":
		return ss.quit()
	}
	return ss.reply("-ERR unknown command")
}

// equal compares secrets in constant time; an empty stored secret never
// matches.
func equal(stored, given string) bool {
	return stored != "" && subtle.ConstantTimeCompare([]byte(stored), []byte(given)) == 1
}

// capa answers CAPA.
func (ss *session) capa() bool {
	if ss.f.NoCAPA {
		return ss.reply("-ERR unknown command")
	}
	lines := []string{"+OK capability list follows"}
	if !ss.f.NoTop {
		lines = append(lines, "TOP")
	}
	if !ss.f.NoUser {
		lines = append(lines, "USER")
	}
	if !ss.f.NoUIDL {
		lines = append(lines, "UIDL")
	}
	if !ss.f.NoPipelining {
		lines = append(lines, "PIPELINING")
	}
	lines = append(lines, "RESP-CODES", "AUTH-RESP-CODE")
	if ss.f.LoginDelay > 0 {
		lines = append(lines, fmt.Sprintf("LOGIN-DELAY %d", int(ss.f.LoginDelay/time.Second)))
	}
	if ss.box == nil {
		if mechs := ss.mechanisms(); len(mechs) > 0 {
			lines = append(lines, "SASL "+strings.Join(mechs, " "))
		}
		if ss.s.tlsConfig != nil && !ss.tls && !ss.f.NoSTLS {
			lines = append(lines, "STLS")
		}
	}
	lines = append(lines, "IMPLEMENTATION popmigrate-pop3test", ".")
	for _, l := range lines {
		if !ss.reply(l) {
			return false
		}
	}
	return true
}

// mechanisms lists the SASL mechanisms offered.
func (ss *session) mechanisms() []string {
	var m []string
	if ss.f.SASLPlain {
		m = append(m, "PLAIN")
	}
	if ss.f.SASLOAuth {
		m = append(m, "XOAUTH2", "OAUTHBEARER")
	}
	return m
}

// login checks the user's faults, credentials and lock, and on success
// locks the mailbox and takes the session's snapshot.
func (ss *session) login(user string, check func(*mailbox) bool) bool {
	f := ss.s.faultsFor(user)
	s := ss.s
	s.mu.Lock()
	if f.LoginErr != "" && (f.LoginErrCount == 0 || s.loginErrs[user] < f.LoginErrCount) {
		s.loginErrs[user]++
		s.stats.FailedLogins++
		s.mu.Unlock()
		return ss.reply("-ERR " + f.LoginErr)
	}
	b := s.boxes[user]
	if b == nil || !check(b) {
		s.stats.FailedLogins++
		s.mu.Unlock()
		return ss.reply("-ERR [AUTH] invalid user name or password")
	}
	if b.locked && !f.NoLock {
		s.stats.FailedLogins++
		s.mu.Unlock()
		return ss.reply("-ERR [IN-USE] mailbox locked by another session")
	}
	if f.LoginDelay > 0 && !b.lastLogin.IsZero() && time.Since(b.lastLogin) < f.LoginDelay {
		s.stats.FailedLogins++
		s.mu.Unlock()
		return ss.reply("-ERR [LOGIN-DELAY] wait before logging in again")
	}
	b.lastLogin = time.Now()
	if !f.NoLock {
		b.locked = true
		ss.locked = true
	}
	s.stats.Logins++
	ss.box, ss.boxUser = b, user
	ss.msgs = slices.Clone(b.msgs)
	if f.GmailSlice > 0 {
		ss.msgs = slices.DeleteFunc(ss.msgs, func(m stored) bool { return b.hidden[m.serial] })
		ss.msgs = ss.msgs[:min(len(ss.msgs), f.GmailSlice)]
	}
	ss.deleted = make([]bool, len(ss.msgs))
	s.mu.Unlock()
	ss.f = f
	return ss.reply(fmt.Sprintf("+OK %d messages", len(ss.msgs)))
}

// apop handles APOP name digest.
func (ss *session) apop(arg string) bool {
	if !ss.f.APOP {
		return ss.reply("-ERR unknown command")
	}
	name, digest, ok := strings.Cut(arg, " ")
	if !ok {
		return ss.reply("-ERR usage: APOP name digest")
	}
	return ss.login(name, func(b *mailbox) bool {
		if b.password == "" {
			return false
		}
		sum := md5.Sum([]byte(ss.stamp + b.password))
		return equal(hex.EncodeToString(sum[:]), strings.ToLower(digest))
	})
}

// auth handles AUTH (RFC 5034).
func (ss *session) auth(arg string) bool {
	mech, ir, hasIR := strings.Cut(arg, " ")
	mech = strings.ToUpper(mech)
	if mech == "" {
		return ss.reply("-ERR mechanism required")
	}
	if !slices.Contains(ss.mechanisms(), mech) {
		return ss.reply("-ERR unsupported mechanism")
	}
	if hasIR && ss.f.SASLTwoStep {
		return ss.reply("-ERR initial response not accepted; send AUTH " + mech + " alone")
	}
	if !hasIR {
		if !ss.reply("+ ") {
			return false
		}
		line, ok := ss.readAuthLine()
		if !ok {
			return false
		}
		ir = line
	}
	if ir == "*" {
		return ss.reply("-ERR authentication cancelled")
	}
	var resp []byte
	if ir != "=" {
		var err error
		if resp, err = base64.StdEncoding.DecodeString(ir); err != nil {
			return ss.reply("-ERR invalid base64")
		}
	}
	switch mech {
	case "PLAIN":
		parts := strings.Split(string(resp), "\x00")
		if len(parts) != 3 || (parts[0] != "" && parts[0] != parts[1]) {
			return ss.reply("-ERR [AUTH] invalid PLAIN response")
		}
		pw := parts[2]
		return ss.login(parts[1], func(b *mailbox) bool { return equal(b.password, pw) })
	case "XOAUTH2":
		user, token, ok := parseXOAuth2(string(resp))
		return ss.oauth(user, token, ok, "")
	default: // OAUTHBEARER
		user, token, ok := parseOAuthBearer(string(resp))
		return ss.oauth(user, token, ok, "\x01")
	}
}

// readAuthLine reads a client continuation line during AUTH.
func (ss *session) readAuthLine() (string, bool) {
	if ss.br.Buffered() == 0 && !ss.turn() {
		return "", false
	}
	line, err := ss.readLine()
	if err != nil {
		return "", false
	}
	ss.s.logf("%d C: ********", ss.id)
	return line, true
}

// oauth completes XOAUTH2 or OAUTHBEARER: on a bad token it sends the
// error challenge, reads the client's answer (wantAck after decoding for
// OAUTHBEARER) and fails.
func (ss *session) oauth(user, token string, ok bool, wantAck string) bool {
	if ok {
		s := ss.s
		if s.tokenValid != nil {
			if token != "" && s.tokenValid(user, token) {
				return ss.login(user, func(*mailbox) bool { return true })
			}
		} else {
			s.mu.Lock()
			b := s.boxes[user]
			good := b != nil && equal(b.token, token)
			s.mu.Unlock()
			if good {
				return ss.login(user, func(b *mailbox) bool { return equal(b.token, token) })
			}
		}
	}
	ss.s.mu.Lock()
	ss.s.stats.FailedLogins++
	ss.s.mu.Unlock()
	challenge := base64.StdEncoding.EncodeToString([]byte(oauthChallenge))
	if !ss.reply("+ " + challenge) {
		return false
	}
	line, rok := ss.readAuthLine()
	if !rok {
		return false
	}
	if ack, err := base64.StdEncoding.DecodeString(line); err != nil || string(ack) != wantAck {
		return ss.reply("-ERR [AUTH] invalid token; unexpected answer to the error challenge")
	}
	return ss.reply("-ERR [AUTH] invalid token")
}

// oauthChallenge is the error challenge of a failed XOAUTH2 or
// OAUTHBEARER exchange, as Google documents it for XOAUTH2.
const oauthChallenge = `{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`

// parseXOAuth2 parses "user=U\x01auth=Bearer T\x01\x01".
func parseXOAuth2(s string) (user, token string, ok bool) {
	rest, found := strings.CutSuffix(s, "\x01\x01")
	if !found {
		return "", "", false
	}
	u, a, found := strings.Cut(rest, "\x01")
	if !found || !strings.HasPrefix(u, "user=") || !strings.HasPrefix(a, "auth=Bearer ") {
		return "", "", false
	}
	return u[len("user="):], a[len("auth=Bearer "):], true
}

// parseOAuthBearer parses "n,a=U,\x01auth=Bearer T\x01\x01" (RFC 7628).
func parseOAuthBearer(s string) (user, token string, ok bool) {
	gs2, kv, found := strings.Cut(s, "\x01")
	if !found || !strings.HasPrefix(gs2, "n,a=") || !strings.HasSuffix(gs2, ",") {
		return "", "", false
	}
	user = strings.NewReplacer("=2C", ",", "=3D", "=").Replace(gs2[len("n,a=") : len(gs2)-1])
	for _, pair := range strings.Split(kv, "\x01") {
		if t, found := strings.CutPrefix(pair, "auth=Bearer "); found {
			return user, t, true
		}
	}
	return "", "", false
}

// stls handles STLS (RFC 2595).
func (ss *session) stls() bool {
	if ss.s.tlsConfig == nil || ss.tls || ss.f.NoSTLS {
		return ss.reply("-ERR STLS not available")
	}
	if !ss.reply("+OK begin TLS negotiation") {
		return false
	}
	if err := ss.bw.Flush(); err != nil {
		return false
	}
	// Anything the client sent after STLS in plaintext is discarded.
	ss.br.Reset(ss.conn)
	tc := tls.Server(ss.conn, ss.s.tlsConfig)
	_ = tc.SetDeadline(time.Now().Add(30 * time.Second))
	if err := tc.Handshake(); err != nil {
		ss.s.logf("%d tls handshake: %v", ss.id, err)
		return false
	}
	_ = tc.SetDeadline(time.Time{})
	ss.conn, ss.tls = tc, true
	ss.br.Reset(tc)
	ss.bw.Reset(tc)
	return true
}

// msg resolves a message number argument to an index of an undeleted
// message.
func (ss *session) msg(arg string) (int, bool) {
	n, err := strconv.Atoi(strings.TrimSpace(arg))
	if err != nil || n < 1 || n > len(ss.msgs) || ss.deleted[n-1] {
		return 0, false
	}
	return n - 1, true
}

// list answers LIST or UIDL, for all messages or one.
func (ss *session) list(arg string, uidl bool) bool {
	entry := func(i int) string {
		if uidl {
			return fmt.Sprintf("%d %s", i+1, ss.msgs[i].UID)
		}
		return fmt.Sprintf("%d %d", i+1, ss.msgs[i].size+ss.f.SizeSkew)
	}
	if arg != "" {
		i, ok := ss.msg(arg)
		if !ok {
			return ss.reply("-ERR no such message")
		}
		return ss.reply("+OK " + entry(i))
	}
	if !ss.reply("+OK listing follows") {
		return false
	}
	for i := range ss.msgs {
		if !ss.deleted[i] && !ss.reply(entry(i)) {
			return false
		}
	}
	return ss.reply(".")
}

// retr answers RETR, applying the drop, stall and trickle faults.
func (ss *session) retr(arg string) bool {
	i, ok := ss.msg(arg)
	if !ok {
		return ss.reply("-ERR no such message")
	}
	m := ss.msgs[i]
	ss.s.mu.Lock()
	ss.s.retrCount[userUID{ss.boxUser, m.UID}]++
	ss.s.mu.Unlock()
	if text, bad := ss.f.RetrErr[i+1]; bad {
		return ss.reply("-ERR " + text)
	}
	stallAt, stall := ss.f.StallInRetr[i+1]
	dropAt, drop := ss.f.DropInRetr[i+1]
	switch {
	case stall && stallAt < 0:
		ss.s.logf("%d S: (stalling before the answer to RETR %d)", ss.id, i+1)
		return ss.stall()
	case drop && dropAt < 0:
		ss.s.logf("%d S: (dropped before the answer to RETR %d)", ss.id, i+1)
		_ = ss.bw.Flush()
		return false
	}
	if !ss.reply(fmt.Sprintf("+OK %d octets", m.size)) {
		return false
	}
	// The earliest of the byte limits in force cuts the body.
	limit := int64(-1)
	cut := func(n int64) {
		if limit < 0 || n < limit {
			limit = n
		}
	}
	if ss.f.DropAfterBytes > 0 {
		cut(max(ss.f.DropAfterBytes-ss.retrBytes, 0))
	}
	if stall {
		cut(stallAt)
	}
	if drop {
		cut(dropAt)
	}
	w := &limitWriter{w: ss.body(), n: limit}
	err := writeServed(w, m.Data, m.Raw, ss.f.NoDotStuff, -1)
	ss.retrBytes += w.written
	switch {
	case err == nil:
	case errors.Is(err, errDrop) && stall && w.written == stallAt:
		ss.s.logf("%d S: (stalling after %d body bytes of message %d)", ss.id, w.written, i+1)
		return ss.stall()
	case errors.Is(err, errDrop):
		ss.s.logf("%d S: (dropped after %d body bytes)", ss.id, ss.retrBytes)
		_ = ss.bw.Flush()
		return false
	default:
		return false
	}
	ss.s.logf("%d S: (%d octets of message %d)", ss.id, m.size, i+1)
	ss.retrs++
	ss.s.mu.Lock()
	ss.s.stats.Retrs++
	ss.s.mu.Unlock()
	if ss.retrieved == nil {
		ss.retrieved = map[uint64]bool{}
	}
	ss.retrieved[m.serial] = true
	switch {
	case stall:
		ss.s.logf("%d S: (stalling after the answer to RETR %d)", ss.id, i+1)
		return ss.stall()
	case drop, ss.f.DropAfterRetrs > 0 && ss.retrs >= ss.f.DropAfterRetrs:
		_ = ss.bw.Flush()
		return false
	}
	return true
}

// body returns the writer for a RETR or TOP body: the output buffer, or a
// trickle of it.
func (ss *session) body() io.Writer {
	if ss.f.Trickle <= 0 {
		return ss.bw
	}
	return &trickleWriter{ss: ss, chunk: max(ss.f.TrickleChunk, 1), wait: ss.f.Trickle}
}

// stall flushes what was written, then sends nothing more: it reads and
// discards commands until the client closes the connection or the server
// is closed (which closes it), and ends the session.
func (ss *session) stall() bool {
	_ = ss.bw.Flush()
	_, _ = io.Copy(io.Discard, ss.br)
	return false
}

// top answers TOP n lines.
func (ss *session) top(arg string) bool {
	num, lines, ok := strings.Cut(strings.TrimSpace(arg), " ")
	n, err := strconv.Atoi(strings.TrimSpace(lines))
	if !ok || err != nil || n < 0 {
		return ss.reply("-ERR usage: TOP msg lines")
	}
	i, ok := ss.msg(num)
	if !ok {
		return ss.reply("-ERR no such message")
	}
	m := ss.msgs[i]
	if !ss.reply("+OK top of message follows") {
		return false
	}
	return writeServed(ss.body(), m.Data, m.Raw, ss.f.NoDotStuff, n) == nil
}

// quit enters the UPDATE state: removes the marked messages and answers,
// unless DropBeforeQuitOK.
func (ss *session) quit() bool {
	if ss.f.DropBeforeQuitOK {
		return false
	}
	gone := map[uint64]bool{}
	for i, d := range ss.deleted {
		if d {
			gone[ss.msgs[i].serial] = true
		}
	}
	s := ss.s
	s.mu.Lock()
	before := len(ss.box.msgs)
	ss.box.msgs = slices.DeleteFunc(ss.box.msgs, func(m stored) bool { return gone[m.serial] })
	if ss.f.GmailSlice > 0 {
		if ss.box.hidden == nil {
			ss.box.hidden = map[uint64]bool{}
		}
		for serial := range ss.retrieved {
			ss.box.hidden[serial] = true
		}
	}
	// Without locking another session may have removed some already.
	s.stats.DelesCommitted += before - len(ss.box.msgs)
	if ss.locked {
		ss.box.locked = false
		ss.locked = false
	}
	ss.box = nil
	s.mu.Unlock()
	ss.reply(fmt.Sprintf("+OK %d messages deleted", len(gone)))
	return false
}
