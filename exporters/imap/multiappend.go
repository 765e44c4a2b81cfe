package imap

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popmigrate/popmigrate/exporters"
)

// Grouped APPENDs (RFC 3502 MULTIAPPEND).
//
// A server stores each APPEND in a transaction of its own: Dovecot, for
// one, writes and fsyncs its index and UID list for every one, which
// costs it more than the message itself for all but large messages
// (measured: 1000 messages of a realistic mix, 45 MB, into Dovecot 2.3
// on 4 connections took 3.4 s one APPEND at a time, 3.2 s pipelined
// with LITERAL+, and 0.8 s as MULTIAPPENDs of 32, with a third of the
// server's CPU). So when the server offers MULTIAPPEND, LITERAL+ and
// UIDPLUS, the Puts in flight are gathered: the first opens an APPEND on
// a connection, each one that arrives while it is open adds its message
// to it, and the command ends (its CRLF) when groupMax messages or
// groupBytes are in it, or when no Put came for groupLinger. Every Put
// of the group returns when the server answers: with the UIDs of
// APPENDUID, in the order of the messages.
//
// The server stores all of a group or none. A group it refuses (NO or
// BAD) is sent again one message at a time, where the single APPEND's
// answer says what the refusal means: only a message at fault is
// rejected, and a refusal of the account's (over quota) fails each Put
// as it would have without groups. A group whose answer was lost,
// or that was cut off on the way, is uncertain as a whole: each of its
// messages is looked for before it is sent again, as after a lost answer
// to a single APPEND (resolveUncertain).
const (
	groupMax    = 32
	groupBytes  = 2 << 20
	groupLinger = 2 * time.Millisecond
)

// testHookGroupSent, when set by a test, is called on the connection of
// a group once its command's CRLF went out, before the answer is read.
var testHookGroupSent func(c *conn)

// member is one Put waiting in, or for, a group.
type member struct {
	ctx  context.Context
	msg  *exporters.Message
	p    *prepared
	done chan struct{} // closed when the fields below are set

	uid         imap.UID
	uidValidity uint32
	ref         string // set when the folder already held the message
	err         error
	alone       bool // not stored by the group: send it on its own
}

// canGroup reports whether the connection's server takes grouped
// APPENDs from this Exporter: MULTIAPPEND, LITERAL+ (no round trip per
// message) and UIDPLUS (the UIDs of the group), on a connection that can
// be borrowed. A folder name outside printable ASCII goes in modified
// UTF-7, as go-imap sends it (encodeMailbox).
func (e *Exporter) canGroup(c *conn) bool {
	return c.bc != nil && c.caps.Has(imap.CapMultiAppend) && c.caps.Has(imap.CapLiteralPlus) && c.caps.Has(imap.CapUIDPlus)
}

// putGrouped stores the message through a group. handled is false when
// the message was not stored and must be sent on its own (see member).
func (e *Exporter) putGrouped(ctx context.Context, msg *exporters.Message, p *prepared) (ref string, handled bool, err error) {
	if e.noGroups.Load() || e.appendLimit > 0 && p.wireSize > e.appendLimit {
		return "", false, nil // the single APPEND's check rejects it
	}
	if err := e.ensureIntent(ctx); err != nil {
		return "", true, err
	}
	m := &member{ctx: ctx, msg: msg, p: p, done: make(chan struct{})}
	e.enqueue(m)
	<-m.done // the sender is bounded by the connection's watchdog
	switch {
	case m.ref != "":
		return m.ref, true, nil
	case m.alone:
		return "", false, nil
	case m.err != nil:
		return "", true, m.err
	case m.uidValidity != e.uidValidity:
		return "", true, fmt.Errorf("APPEND to %q: %w", e.mailbox, e.uidValidityErr(m.uidValidity, e.uidValidity))
	}
	e.mu.Lock()
	e.owned[m.uid] = true
	e.uidNext = max(e.uidNext, m.uid+1)
	e.mu.Unlock()
	return e.ref(m.uid), true, nil
}

// enqueue adds m to the queue of the open group, starting a sender when
// no group is open and fewer senders than connections run.
func (e *Exporter) enqueue(m *member) {
	e.mu.Lock()
	e.gq = append(e.gq, m)
	e.gqBytes += m.p.wireSize
	start := e.maybeSenderLocked()
	e.mu.Unlock()
	select {
	case e.gkick <- struct{}{}:
	default:
	}
	if start {
		go e.sender()
	}
}

// maybeSenderLocked counts a new sender in and reports whether the
// caller starts it: when members wait, no group is open to take them,
// and fewer senders run than the Exporter has connections. A sender
// beyond the first starts only when a connection is idle or the waiting
// members fill a whole group: a new connection is a login, which costs
// the server more than a group waiting for the running sender's answer
// (each sender takes the next members when its group ends), and the
// members that wait make that group fuller. Measured against Dovecot
// 2.3 on 2 cores: a login costs it about 14 ms of CPU, a group of 20
// realistic messages about 12 ms; with half a group as the threshold, 4
// to 10 of 50 mailboxes of 20 messages logged in twice.
func (e *Exporter) maybeSenderLocked() bool {
	if len(e.gq) == 0 || e.gopen > 0 || e.gsenders >= cap(e.slots) {
		return false
	}
	if e.gsenders > 0 && len(e.idle) == 0 && len(e.gq) < groupMax && e.gqBytes < groupBytes {
		return false
	}
	e.gsenders++
	return true
}

// next takes the first waiting member, or returns nil.
func (e *Exporter) nextLocked() *member {
	if len(e.gq) == 0 {
		return nil
	}
	m := e.gq[0]
	e.gq[0] = nil
	e.gq = e.gq[1:]
	e.gqBytes -= m.p.wireSize
	return m
}

// sender sends groups while members wait, one at a time on one
// connection.
func (e *Exporter) sender() {
	for {
		e.mu.Lock()
		first := e.nextLocked()
		if first == nil {
			e.gsenders--
			e.mu.Unlock()
			return
		}
		e.gopen++
		e.mu.Unlock()
		e.sendGroup(first)
	}
}

// closeGroup marks the open group closed: later members open another,
// on another sender if one may start.
func (e *Exporter) closeGroup() {
	e.mu.Lock()
	e.gopen--
	start := e.maybeSenderLocked()
	e.mu.Unlock()
	if start {
		go e.sender()
	}
}

// groupWire is the state of one group on the wire.
type groupWire struct {
	tag     string
	members []*member
	bytes   int64
	lo      imap.UID // the folder's UIDNEXT before the group
}

// sendGroup opens a group with first, adds the members that arrive
// while it is open, sends it and hands every member its result.
func (e *Exporter) sendGroup(first *member) {
	ctx := first.ctx
	closed := false
	closeOnce := func() {
		if !closed {
			closed = true
			e.closeGroup()
		}
	}
	defer closeOnce()
	c, err := e.acquire(ctx)
	if err != nil {
		e.finishAlone([]*member{first})
		return
	}
	defer e.release(c)
	if err := e.resolveUncertain(ctx, c); err != nil {
		first.err = err
		close(first.done)
		return
	}
	r, err := c.bc.borrow()
	if err != nil {
		e.finishAlone([]*member{first})
		return
	}
	var back []byte
	defer func() { c.bc.giveBack(back, r) }()
	o := c.begin(ctx)
	defer o.end()

	e.mu.Lock()
	lo := e.uidNext
	c.tag++
	g := &groupWire{tag: "PM" + strconv.Itoa(c.tag), lo: lo}
	e.mu.Unlock()
	w := bufio.NewWriterSize(progressWriter{c.bc.Conn, o}, 64<<10)
	flags := e.flagList()
	add := func(m *member) error {
		if ref, ok := e.claimFound(m.p.sha); ok {
			m.ref = ref
			close(m.done)
			return nil
		}
		if len(g.members) == 0 {
			e.bump()
			fmt.Fprintf(w, "%s APPEND %s", g.tag, quoteMailbox(encodeMailbox(e.mailbox)))
		}
		fmt.Fprintf(w, " %s", flags)
		if !m.p.date.IsZero() {
			fmt.Fprintf(w, ` "%s"`, m.p.date.Format("_2-Jan-2006 15:04:05 -0700"))
		}
		fmt.Fprintf(w, " {%d+}\r\n", m.p.wireSize)
		g.members = append(g.members, m)
		g.bytes += m.p.wireSize
		cw := &crlfWriter{w: w}
		if err := readChunks(m.ctx, m.msg.Body, cw.write); err != nil {
			return err
		}
		if cw.n != m.p.wireSize {
			return fmt.Errorf("message %s: %d bytes on the wire, not the %d announced", m.msg.Key, cw.n, m.p.wireSize)
		}
		return nil
	}
	werr := add(first)
	for werr == nil && len(g.members) < groupMax && g.bytes < groupBytes {
		m := e.waitMember(ctx)
		if m == nil {
			break
		}
		werr = add(m)
	}
	closeOnce()
	if werr == nil && len(g.members) == 0 {
		return // every member was in the folder already: no command
	}
	// The group takes effect with its CRLF, up to groupLinger and the
	// other members' reads after a member's last read: a process paused
	// in between may have lost the account (exporters.Fenced). The server
	// stores nothing of a command that never ended.
	for _, m := range g.members {
		if werr != nil {
			break
		}
		werr = exporters.CheckFence(m.ctx, m.msg.Body)
	}
	var status *taggedStatus
	err = werr
	if err == nil {
		w.WriteString("\r\n")
		if err = w.Flush(); err == nil {
			if testHookGroupSent != nil {
				testHookGroupSent(c)
			}
			status, back, err = readTagged(r, g.tag, o)
		}
	}
	e.bump()
	if errors.Is(err, errGroupProtocol) || err == nil && status.typ == imap.StatusResponseTypeBad && len(g.members) > 1 {
		// A server that offers MULTIAPPEND and refuses its syntax, or
		// answers what it did not expect, may have read what followed
		// the first message as commands (go-imap's server does): its
		// stream is not to be trusted, and neither are its groups.
		c.kill(errConnBroken)
		e.noGroups.Store(true)
	}
	if err != nil {
		// A literal cut short (the command can only be abandoned with
		// its connection), or the connection failed before the answer.
		// A command that never ended was not stored, but which bytes
		// went out is not known here: each message is looked for before
		// it goes again, as after a lost answer.
		c.kill(errConnBroken)
		e.uncertainAll(g)
		return
	}
	e.groupDone(g, status)
}

// uncertainAll sends the members of g back to be stored one at a time,
// each looked for in the folder first: the server may hold any of them.
func (e *Exporter) uncertainAll(g *groupWire) {
	for _, m := range g.members {
		e.addUncertain(&uncertain{key: m.msg.Key, sha: m.p.sha, msgID: m.p.msgID, lo: g.lo})
	}
	e.finishAlone(g.members)
}

// waitMember returns the next member that arrives within groupLinger,
// or nil.
func (e *Exporter) waitMember(ctx context.Context) *member {
	t := time.NewTimer(groupLinger)
	defer t.Stop()
	for {
		e.mu.Lock()
		m := e.nextLocked()
		e.mu.Unlock()
		if m != nil {
			return m
		}
		select {
		case <-e.gkick:
		case <-t.C:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

// groupDone hands the members of a group the server answered their
// result.
func (e *Exporter) groupDone(g *groupWire, st *taggedStatus) {
	if st.typ != imap.StatusResponseTypeOK {
		// The server stored none of them, and its answer may be about
		// one message, or about the command's size (NO [LIMIT]): each
		// goes again on its own, where the single APPEND says what the
		// answer means (only the message at fault is rejected).
		e.finishAlone(g.members)
		return
	}
	validity, uids, ok := parseAppendUID(st.code, st.args, len(g.members))
	if !ok {
		// Stored, but which UID is which is unknown: each message is
		// found by its sha256, as a lost answer's would be.
		e.uncertainAll(g)
		return
	}
	e.mu.Lock()
	e.groups++
	e.grouped += len(g.members)
	e.mu.Unlock()
	for i, m := range g.members {
		m.uid, m.uidValidity = uids[i], validity
		close(m.done)
	}
}

// finishAlone sends ms back to be stored one at a time: the single
// APPEND meets again whatever failure kept the group from storing them,
// or recovers from it.
func (e *Exporter) finishAlone(ms []*member) {
	for _, m := range ms {
		m.alone = true
		close(m.done)
	}
}

// flagList is the APPEND's flag list: "(\Seen)". The flags were checked
// by New (validFlag).
func (e *Exporter) flagList() string {
	var b strings.Builder
	b.WriteByte('(')
	for i, f := range e.flags {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(string(f))
	}
	b.WriteByte(')')
	return b.String()
}

// quoteMailbox quotes a printable ASCII mailbox name (see
// encodeMailbox); INBOX in any case is INBOX.
func quoteMailbox(name string) string {
	if strings.EqualFold(name, "INBOX") {
		return "INBOX"
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(name); i++ {
		if name[i] == '"' || name[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(name[i])
	}
	b.WriteByte('"')
	return b.String()
}

// taggedStatus is a tagged answer: "TAG OK [CODE args] text".
type taggedStatus struct {
	typ  imap.StatusResponseType
	code imap.ResponseCode
	args string
	text string
}

// errGroupProtocol is wrapped by readTagged when the server's answer is
// not one IMAP allows there.
var errGroupProtocol = errors.New("the server's answer does not follow IMAP")

// maxResponseLine bounds one response line the borrower reads.
const maxResponseLine = 1 << 20

// readTagged reads responses until the tagged one of tag, returning it
// and every other response as read (untagged data, for go-imap's client
// to see). A continuation request, which LITERAL+ rules out, or a
// malformed line fails: the caller abandons the connection.
func readTagged(r *bufio.Reader, tag string, o *op) (*taggedStatus, []byte, error) {
	var back []byte
	for {
		line, err := readResponse(r, o)
		if err != nil {
			return nil, back, err
		}
		switch {
		case bytes.HasPrefix(line, []byte("* ")):
			back = append(back, line...)
		case bytes.HasPrefix(line, []byte(tag+" ")):
			st, err := parseTagged(string(bytes.TrimRight(line[len(tag)+1:], "\r\n")))
			if err != nil {
				err = fmt.Errorf("%w: %v", errGroupProtocol, err)
			}
			return st, back, err
		default:
			return nil, back, fmt.Errorf("%w: unexpected response %q", errGroupProtocol, firstBytes(line, 80))
		}
	}
}

// readResponse reads one response with the literals it carries
// ("{n}\r\n" then n octets, the line going on after them), CRLF
// included.
func readResponse(r *bufio.Reader, o *op) ([]byte, error) {
	var out []byte
	for {
		part, err := r.ReadSlice('\n')
		out = append(out, part...)
		o.progress()
		if err == bufio.ErrBufferFull {
			if len(out) > maxResponseLine {
				return nil, errors.New("response line too long")
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		n, ok := trailingLiteral(out)
		if !ok {
			return out, nil
		}
		if len(out)+int(n) > maxResponseLine {
			return nil, errors.New("literal in a response too long")
		}
		lit := make([]byte, n)
		if _, err := ioReadFull(r, lit, o); err != nil {
			return nil, err
		}
		out = append(out, lit...)
	}
}

// trailingLiteral reports the size of the literal a line announces at its
// end: "... {123}\r\n".
func trailingLiteral(line []byte) (int64, bool) {
	l := bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
	if len(l) < 3 || l[len(l)-1] != '}' {
		return 0, false
	}
	i := bytes.LastIndexByte(l, '{')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSuffix(string(l[i+1:len(l)-1]), "+"), 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

func ioReadFull(r *bufio.Reader, b []byte, o *op) (int, error) {
	n := 0
	for n < len(b) {
		k, err := r.Read(b[n:])
		n += k
		o.progress()
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// parseTagged parses "OK [CODE args] text" (the part after the tag).
func parseTagged(s string) (*taggedStatus, error) {
	typ, rest, _ := strings.Cut(s, " ")
	st := &taggedStatus{typ: imap.StatusResponseType(strings.ToUpper(typ))}
	switch st.typ {
	case imap.StatusResponseTypeOK, imap.StatusResponseTypeNo, imap.StatusResponseTypeBad:
	default:
		return nil, fmt.Errorf("tagged response %q is not OK, NO or BAD", firstBytes([]byte(s), 80))
	}
	if strings.HasPrefix(rest, "[") {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return nil, fmt.Errorf("tagged response %q: unterminated response code", firstBytes([]byte(s), 80))
		}
		code, args, _ := strings.Cut(rest[1:end], " ")
		st.code, st.args = imap.ResponseCode(strings.ToUpper(code)), args
		rest = strings.TrimPrefix(rest[end+1:], " ")
	}
	st.text = rest
	return st, nil
}

// parseAppendUID reads "APPENDUID uidvalidity uid-set" (RFC 4315) for a
// group of n: the UIDs in the order of the messages.
func parseAppendUID(code imap.ResponseCode, args string, n int) (uint32, []imap.UID, bool) {
	if code != "APPENDUID" {
		return 0, nil, false
	}
	v, set, ok := strings.Cut(args, " ")
	validity, err := strconv.ParseUint(v, 10, 32)
	if !ok || err != nil || validity == 0 {
		return 0, nil, false
	}
	var uids []imap.UID
	for _, part := range strings.Split(set, ",") {
		a, b, isRange := strings.Cut(part, ":")
		lo, err := strconv.ParseUint(a, 10, 32)
		if err != nil || lo == 0 {
			return 0, nil, false
		}
		hi := lo
		if isRange {
			if hi, err = strconv.ParseUint(b, 10, 32); err != nil || hi == 0 {
				return 0, nil, false
			}
		}
		if hi < lo {
			lo, hi = hi, lo
		}
		if hi-lo >= uint64(n) {
			return 0, nil, false
		}
		for u := lo; u <= hi; u++ {
			uids = append(uids, imap.UID(u))
		}
		if len(uids) > n {
			return 0, nil, false
		}
	}
	if len(uids) != n {
		return 0, nil, false
	}
	return uint32(validity), uids, true
}

func firstBytes(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}
