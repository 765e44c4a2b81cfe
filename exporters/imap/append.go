package imap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/internal/mailhdr"
)

// Put uploads msg into the folder and returns its Ref, "UIDVALIDITY/UID".
// When Put returns nil the server holds the message (its tagged OK to
// APPEND). Put is idempotent per msg.Key within the Exporter, and after
// Resume a message found in the folder is returned instead of appended
// again.
//
// A message that cannot be stored fails with an *exporters.RejectedError
// wrapping a *RejectedError, or a *QuarantinedError wrapping those when
// Options.QuarantineDir is set; other failures
// (network, authentication, a folder that changed UIDVALIDITY) are
// errors of the destination. A connection that fails is replaced once.
// Put blocks while a Sync waits for the Puts in flight.
func (e *Exporter) Put(ctx context.Context, msg *exporters.Message) (exporters.Delivery, error) {
	if e.opts.ReadOnly {
		return exporters.Delivery{}, fmt.Errorf("imap: %s: put: %w", e.id, exporters.ErrReadOnly)
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
		return exporters.Delivery{}, err // the *exporters.RejectedError or *QuarantinedError itself
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
	h := mailhdr.Read(sc.header)
	p := &prepared{
		scan:  sc,
		sha:   sc.sha,
		date:  internalDate(e.opts.DateFrom, h, msg.Received),
		msgID: messageID(h),
	}
	if ref, ok := e.claimFound(p.sha); ok {
		return ref, nil
	}
	if sc.hasNUL {
		return "", e.reject(ctx, msg, &RejectedError{Key: msg.Key,
			Reason: "it contains NUL bytes, which an IMAP APPEND cannot carry (RFC 3501: literals are CHAR8)"})
	}
	if e.grouping {
		if ref, handled, err := e.putGrouped(ctx, msg, p); handled {
			return ref, err
		}
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
	e.bump()
	uid, uidValidity, sent, err := e.appendOnce(ctx, c, msg, p)
	e.bump()
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
	if rerr == nil && writeErr == nil {
		// The last bytes of the literal may still wait in the client's
		// buffer: a process paused since its last read may have lost the
		// account (exporters.Fenced), and must not let them go.
		rerr = exporters.CheckFence(ctx, msg.Body)
	}
	if rerr != nil {
		// The body failed, ctx ended, the fence failed, or the server
		// refused the literal: the literal is incomplete (or its last
		// bytes must not go), so the command can only be abandoned
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

// reject returns the error of a Put of msg that rej refuses: an
// *exporters.RejectedError wrapping rej, kept in the quarantine folder
// when there is one.
func (e *Exporter) reject(ctx context.Context, msg *exporters.Message, rej *RejectedError) error {
	err := rej.shared()
	if e.quar == nil {
		return err
	}
	return e.quar.Keep(ctx, msg, err)
}

func (e *Exporter) ref(uid imap.UID) string {
	return strconv.FormatUint(uint64(e.uidValidity), 10) + "/" + strconv.FormatUint(uint64(uid), 10)
}
