package pop3

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"

	"github.com/popmigrate/popmigrate/pop3/internal/wire"
)

// prelisting is what the CAPA, LIST and UIDL sent with the login
// answered (Options.ListAtLogin): ListUIDL's results.
type prelisting struct {
	list []MessageInfo
	uids []UIDInfo
	err  error
}

// loginLine is one command of a pipelined login and its transcript form.
type loginLine struct{ line, log string }

// pipelinedLogin sends the login commands lines in one write, with CAPA,
// LIST and UIDL after them when Options.ListAtLogin asks for it (and
// the RETRs of Options.RetrAtLogin), and reads the login's answers with
// answer, which returns the login's error. After a successful login it
// reads the answers to CAPA, LIST and UIDL, for ListUIDL (their errors
// are ListUIDL's, not the login's), and leaves those to the RETRs for
// RetrAll. After a refused one it reads and drops the answers to CAPA,
// LIST and UIDL, or, when RETRs were sent too, makes the client
// unusable; either way it returns the login's error. answer must leave
// the client unusable on any error but a *Error.
func (c *Client) pipelinedLogin(ctx context.Context, verb string, lines []loginLine, answer func() error) error {
	release, err := c.begin(ctx, verb)
	if err != nil {
		return err
	}
	defer release()
	for _, l := range lines {
		c.queue(l.line, l.log)
	}
	list := c.opts.ListAtLogin
	var retrs []int
	if list {
		c.queue("CAPA", "CAPA")
		c.queue("LIST", "LIST")
		c.queue("UIDL", "UIDL")
		if n := min(c.opts.RetrAtLogin, MaxRetrAtLogin); n > 0 && c.capsKnown && c.caps.Has("UIDL") {
			for id := 1; id <= n; id++ {
				retr, marker := "RETR "+strconv.Itoa(id), "LIST "+strconv.Itoa(id)
				c.queue(retr, retr)
				c.queue(marker, marker)
				retrs = append(retrs, id)
			}
		}
	}
	if err := c.flush(verb); err != nil {
		return err
	}
	if err := answer(); err != nil {
		switch {
		case !list || !isERR(err):
		case len(retrs) > 0:
			_ = c.fatal(fmt.Errorf("pop3: %s: login refused with RETR commands sent after it: %w", verb, err))
		default:
			c.dropAfterRefusal()
		}
		return err
	}
	c.loggedIn()
	if list {
		c.prelisted = c.readPrelisting(len(retrs) > 0)
		if c.usable(verb) == nil {
			c.ahead = retrs
		}
	}
	return nil
}

// readPrelisting reads the answers to the CAPA, LIST and UIDL sent with
// a successful login; pending says that answers to RETRs sent after them
// are on their way.
func (c *Client) readPrelisting(pending bool) *prelisting {
	if err := c.readCapa(); err != nil {
		return &prelisting{err: err}
	}
	list, uids, err := c.readListUIDL()
	if err != nil && !isERR(err) {
		return &prelisting{err: err}
	}
	if !pending {
		if qerr := c.quiet("UIDL", 0); qerr != nil {
			return &prelisting{err: qerr}
		}
	}
	return &prelisting{list: list, uids: uids, err: err}
}

// dropAfterRefusal reads and drops the answers to the CAPA, LIST and
// UIDL sent after a login the server refused: in the AUTHORIZATION
// state CAPA is answered and LIST and UIDL are refused ("-ERR Unknown
// command." in Dovecot's pop3-login), but whatever comes is taken. A
// server that ends the session instead leaves the client unusable; the
// login's refusal is what Login reports either way.
func (c *Client) dropAfterRefusal() {
	for _, verb := range []string{"CAPA", "LIST", "UIDL"} {
		if _, err := c.status(verb, 0); err != nil {
			if !isERR(err) {
				return
			}
			continue
		}
		if err := c.readListing(verb, c.opts.MaxListing, func([]byte) error { return nil }); err != nil {
			return
		}
	}
	_ = c.quiet("UIDL", 0)
}

// authPlainPipelined is AUTH PLAIN with its initial response ir on the
// AUTH line, pipelined with the commands of Options.ListAtLogin. ok is
// false, and nothing is sent, when the line would pass 255 octets: the
// response then waits for the server's challenge (see AuthSASL).
func (c *Client) authPlainPipelined(ctx context.Context, ir []byte) (ok bool, err error) {
	const verb = "AUTH"
	line := "AUTH PLAIN " + base64.StdEncoding.EncodeToString(ir)
	if len(line) > maxAuthLine {
		return false, nil
	}
	return true, c.pipelinedLogin(ctx, verb, []loginLine{{line, "AUTH PLAIN ********"}}, func() error {
		raw, err := c.readLine(verb)
		if err != nil {
			return err
		}
		st, ok := wire.ParseStatus(raw)
		if !ok {
			// A challenge after PLAIN's only message: the server would
			// take the next command for the answer.
			return c.fatal(&ProtocolError{Command: verb, Line: string(raw), Err: "expected +OK or -ERR after AUTH PLAIN with an initial response"})
		}
		if !st.OK {
			return &Error{Command: verb, Code: st.Code, Text: st.Text}
		}
		return nil
	})
}

// dropAhead reads and drops the answers to RETRs sent with the login
// (each followed by its LIST marker) that no RetrAll takes: a "-ERR"
// (a number past the mailbox's count) and its marker's "-ERR" are
// swallowed, a body is read to its end and its marker checked, as
// RetrAll checks them, so the session stays in step. An error, with the
// number whose answer it broke in, has made the client unusable.
func (c *Client) dropAhead(ids []int) (int, error) {
	for _, id := range ids {
		if _, err := c.status("RETR", id); err != nil {
			if !isERR(err) {
				return id, err
			}
			ioErr, syncErr := c.readMarker(id, true)
			if syncErr != nil {
				return id, c.fatal(syncErr)
			}
			if ioErr != nil {
				return id, ioErr
			}
			continue
		}
		b := c.openBody("RETR", id, nil)
		b.marker = true
		if err := b.Close(); err != nil {
			return id, err
		}
		if b.markerErr != nil {
			return id, b.markerErr
		}
	}
	return 0, nil
}
