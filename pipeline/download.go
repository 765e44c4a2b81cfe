package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/pop3"
	"github.com/popmigrate/popmigrate/verify"
)

// fetched is one message handed from the downloader to the writer: a
// spooled body, or the error that prevented its download.
type fetched struct {
	p    *planned
	body *spooled
	wire int64 // octets as received (CRLF), to compare with LIST
	err  error
	// slot, when not nil, is the queue slot a spooled body holds until
	// the writer takes it (see download).
	slot chan struct{}
}

// spooledQueue is how many spooled bodies (in memory up to the spool
// threshold, else in a spool file) wait for the writer at most, and
// maxQueue how many messages in all: what the download may run ahead.
const (
	spooledQueue = 2
	maxQueue     = 256
)

// errTooLarge ends a session after a message over the size cap: the POP3
// client cannot skip the rest of it, so the session is retried without it.
var errTooLarge = errors.New("message over the size cap; reconnecting without it")

// download retrieves the planned messages (pipelined when the server
// allows) and stores them. The downloader and the writer run concurrently:
// while one message is written and synced, the next ones arrive.
func (ar *accountRun) download(ctx context.Context, c *pop3.Client, plan []planned) error {
	byID := make(map[int]*planned, len(plan))
	ids := make([]int, 0, len(plan))
	for i := range plan {
		p := &plan[i]
		if ar.skip[p.uidl] {
			continue
		}
		byID[p.id] = p
		ids = append(ids, p.id)
	}
	// The queue to the writer. A streamed message reaches it as a file
	// already ended (see spooled.end), which costs nothing to hold, so
	// that the download goes on for up to a batch while the writer syncs
	// and commits the one before; a spooled body holds memory or a spool
	// file, and at most spooledQueue of them wait at once.
	ch := make(chan fetched, min(max(ar.r.opts.BatchSize, spooledQueue), maxQueue))
	slots := make(chan struct{}, spooledQueue)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return ar.writer(gctx, ch, len(ids)) })

	send := func(f fetched) error {
		if f.body != nil && f.body.stream == nil {
			select {
			case slots <- struct{}{}:
				f.slot = slots
			case <-gctx.Done():
				f.body.Release()
				return gctx.Err()
			}
		}
		select {
		case ch <- f:
			return nil
		case <-gctx.Done():
			if f.body != nil {
				f.body.Release()
			}
			return gctx.Err()
		}
	}
	// broke handles the message the session broke on (see brokeOn); done
	// keeps it from being handled twice (the body's error comes back
	// from RetrAll too).
	var done *planned
	broke := func(p *planned, err error) {
		if p == nil || p == done || ctx.Err() != nil {
			return
		}
		done = p
		if ar.brokeOn(p, ids, err) {
			send(fetched{p: p, err: err})
		}
	}
	rerr := c.RetrAll(gctx, ids, ar.r.opts.Window, func(id int, body *pop3.Body, err error) error {
		p, ok := byID[id]
		if !ok {
			return fmt.Errorf("retr: server answered for message %d, which was not asked for", id)
		}
		if err != nil {
			return send(fetched{p: p, err: fmt.Errorf("retr %d (uidl %q): %w", id, p.uidl, err)})
		}
		stream := ar.stream(gctx, p)
		sp, err := ar.r.spool.fill(body, stream)
		if err != nil {
			if stream != nil {
				stream.Abort() // a body whose RETR broke is never stored
			}
			err = fmt.Errorf("retr %d (uidl %q): %w", id, p.uidl, err)
			if errors.Is(err, pop3.ErrMessageTooLarge) {
				ar.skip[p.uidl] = true
				send(fetched{p: p, err: err})
				return errTooLarge
			}
			broke(p, err) // a timeout, a drop, a reply out of sync
			return err
		}
		sp.end(gctx)
		return send(fetched{p: p, body: sp, wire: body.WireBytes()})
	})
	var re *pop3.RetrError
	if errors.As(rerr, &re) && byID[re.ID] != nil {
		p := byID[re.ID]
		broke(p, fmt.Errorf("retr %d (uidl %q): %w", p.id, p.uidl, rerr))
	}
	close(ch)
	werr := g.Wait()
	// A writer that stopped early leaves bodies in ch: free their memory
	// and spool files now rather than at the next GC.
	for f := range ch {
		if f.body != nil {
			f.body.Release()
		}
	}
	if werr != nil {
		return werr
	}
	return rerr
}

// stream returns where p's body goes as it arrives, when it goes to one
// destination only and that destination takes streams
// (exporters.Streamer: Maildir, eml): its bytes then pass once from the POP3
// stream into the destination's temporary file, and the writer commits
// it. It returns nil, for the spool and Put, when p goes to several
// destinations or to one that cannot stream, when the destination
// already holds p (Put then finds that copy again), and when the stream
// cannot start (Put then meets the same failure and reports it for p).
// Every write to the stream checks the account's lease first, as every
// read of a spooled body by a destination does.
func (ar *accountRun) stream(ctx context.Context, p *planned) exporters.Stream {
	if len(p.missing) != 1 {
		return nil
	}
	s, ok := ar.dests[p.missing[0]].(exporters.Streamer)
	if !ok || ar.held.check(ctx) != nil {
		return nil
	}
	st, _, err := s.Stream(ctx, ar.a.Name, exporters.MessageKey(ar.a.Name, p.uidl))
	if err != nil || st == nil {
		return nil
	}
	if ar.held != nil {
		st = fencedStream{Stream: st, ctx: ctx, h: ar.held}
	}
	return st
}

// brokeOn records that the session broke while p's answer was due or
// arriving (err says how), and reports whether that counts as one of p's
// attempts, to be journaled as its failure. Either way p is asked for
// after the rest of the plan in the next sessions of this run, so a
// message that stalls or breaks the session never keeps the ones after it
// from being fetched.
//
// A reply out of sync with the commands (a body the server did not
// dot-stuff) is the message's own: it always counts. A timeout or a
// dropped connection counts only when p was the first message asked for
// in the session: a server that drops or stalls after so many bytes or
// seconds, whatever the message, breaks every session somewhere, and its
// sessions move the mailbox on; a message that breaks the session by
// itself breaks it also when it comes first.
func (ar *accountRun) brokeOn(p *planned, ids []int, err error) bool {
	ar.broke[p.uidl] = true
	return errors.Is(err, pop3.ErrOutOfSync) || (len(ids) > 0 && ids[0] == p.id)
}

// writer Puts each fetched message into the destinations that lack it and
// group-commits: every BatchSize messages, BatchBytes bytes or
// BatchInterval, whichever comes first, each written
// destination is Synced, then one journal transaction records the batch.
// Messages that arrived before a download error are still committed.
//
// Up to putWorkers messages are Put at once (an IMAP destination gets one
// APPEND per connection in flight); the batch itself belongs to this
// goroutine alone, and a commit waits until every Put in flight has ended.
func (ar *accountRun) writer(ctx context.Context, ch <-chan fetched, n int) error {
	o := &ar.r.opts
	var (
		batch    journal.Batch
		done     []func() // report updates, applied once the batch commits
		dirty    = make([]bool, len(ar.dests))
		timer    = time.NewTimer(time.Hour)
		timerOn  bool
		workers  = ar.putWorkers(n)
		results  = make(chan outcome, workers)
		inflight int
		closed   bool  // ch is drained
		due      bool  // a commit is due once the Puts in flight end
		stop     error // the first error: take no more input
		pending  int64 // bytes of the messages in the batch
		flying   int64 // bytes of the messages being Put
	)
	timer.Stop()
	defer timer.Stop()
	batch.Fence(ar.lease)
	readBack := ar.readBack()
	// Sync and Commit are bounded (local writes, or an IMAP server's
	// answers within its timeout); they run even when ctx is cancelled so
	// that what was written before an interrupt is recorded rather than
	// downloaded again.
	wctx := context.WithoutCancel(ctx)
	commit := func() error {
		if timerOn {
			timer.Stop()
			timerOn = false
		}
		if batch.Len() == 0 {
			return nil
		}
		// Sync makes the batch visible (a Maildir's rename into new/):
		// not once another process took the account over.
		if err := ar.held.check(wctx); err != nil {
			return err
		}
		for i, d := range ar.dests {
			if !dirty[i] {
				continue
			}
			if err := d.Sync(wctx); err != nil {
				return &destError{dest: ar.ids[i], err: fmt.Errorf("sync: %w", err)}
			}
			dirty[i] = false
			// The destination's resume state goes into the same
			// transaction as the deliveries it covers.
			if rs, ok := d.(exporters.Resumable); ok {
				batch.DestState(ar.a.Name, ar.ids[i], rs.CommitState())
			}
		}
		if h := o.hooks.afterSync; h != nil {
			h(ar.r.syncCount.next())
		}
		if readBack != nil {
			// Synced: what a reader of the files finds now is what
			// stays. Read back with ctx, so that an interrupt stops
			// the reading and records the batch as stored.
			batch.ReadBack(func(m *journal.StoredMessage, d *journal.Delivery) bool {
				return readBack(ctx, m, d)
			}, time.Now())
		}
		began := time.Now()
		if err := ar.r.j.Commit(wctx, &batch); err != nil {
			return leaseErr(err)
		}
		ar.held.renewed(began) // a fenced commit renews the lease
		took := time.Since(began)
		o.Metrics.JournalCommit(took)

		if h := o.hooks.afterCommit; h != nil {
			h(ar.r.commitCount.next())
		}
		rep := ar.rep
		stored, bytes, moved := rep.Stored, rep.StoredBytes, ar.progress
		for _, f := range done {
			f()
		}
		done = done[:0]
		o.Logger.Info(evBatch, "account", ar.a.Name, "stored", rep.Stored-stored, "failed", ar.progress-moved-(rep.Stored-stored), "bytes", rep.StoredBytes-bytes,
			"epoch", ar.epoch(), "journal_ms", float64(took.Microseconds())/1000)
		o.Metrics.Stored(rep.Stored-stored, rep.StoredBytes-bytes)
		batch.Reset()
		pending = 0
		return nil
	}
	for {
		if inflight == 0 && (due || closed || stop != nil) {
			if err := commit(); err != nil {
				return err
			}
			due = false
			if closed || stop != nil {
				// Interrupted or failed: what was Put before still
				// got its Sync and commit, as wctx promises.
				return stop
			}
		}
		// A batch holds exactly BatchSize writes at most: Puts in flight
		// count against it.
		var input <-chan fetched
		// Bytes in flight count against the batch's bytes too, and are
		// bounded by putFlyingMax: the bodies that wait for a grouping
		// destination's answer (see putWorkers) hold memory.
		if inflight < workers && batch.Len()+inflight < o.BatchSize &&
			(inflight == 0 || pending+flying < o.BatchBytes && flying < putFlyingMax) &&
			!closed && !due && stop == nil {
			input = ch
		}
		select {
		case f, ok := <-input:
			if !ok {
				closed = true
				continue
			}
			if f.slot != nil {
				<-f.slot
			}
			inflight++
			var size int64
			if f.body != nil {
				size = f.body.Size()
			}
			flying += size
			go func() {
				r := ar.put(ctx, f)
				r.admitted = size
				results <- r
			}()
		case r := <-results:
			inflight--
			flying -= r.admitted
			if r.err != nil {
				if stop == nil {
					stop = r.err
				}
				continue
			}
			ar.record(r, &batch, &done, dirty)
			// Small messages fill a batch by count, large ones by
			// bytes: one barrier amortised over many small files, and
			// a large message never waits behind BatchSize others.
			pending += r.size
			if batch.Len() >= o.BatchSize || pending >= o.BatchBytes {
				due = true
			} else if !timerOn && batch.Len() > 0 {
				timer.Reset(o.BatchInterval)
				timerOn = true
			}
		case <-timer.C:
			timerOn = false
			due = true
		}
	}
}

// readBackKinds are the destinations whose copies the writer reads back
// itself when the session verifies: those that keep each message in a
// file of its own, found by its name, so that opening a Ref after Sync
// reads exactly what any reader of the folder finds. An mbox copy is an
// entry that only parsing the whole file delimits, and an IMAP copy is
// read back faster in sets (one UID FETCH for many): the session's
// verify reads those (an mbox from a fresh, read-only view; an IMAP
// folder through the writer's own connections, see reuseForVerify).
var readBackKinds = map[string]bool{"maildir": true, "eml": true}

// readBack returns what the writer calls, after a batch's Sync and before
// its commit, for each delivery of the batch not yet verified: it reads
// the copy back and reports whether it matched, to be recorded verified
// with the batch (see journal.Batch.ReadBack). It returns nil when the
// session does not verify, or no destination is read back so.
//
// A copy that does not match, or cannot be read, is recorded stored, not
// verified: the session's verify reads it again and reports what is wrong
// with it. The verify counts the copies read back here as checked
// (verify.Options.ReadSince); what it still does for them is look for
// extra copies and compare with the server's listing.
func (ar *accountRun) readBack() func(ctx context.Context, m *journal.StoredMessage, d *journal.Delivery) bool {
	if !ar.r.opts.VerifyInSession {
		return nil
	}
	openers := map[string]exporters.Opener{}
	for i, e := range ar.dests {
		if o, ok := e.(exporters.Opener); ok && readBackKinds[e.Properties().Kind] {
			openers[ar.ids[i]] = o
		}
	}
	if len(openers) == 0 {
		return nil
	}
	buf := make([]byte, 64<<10)
	return func(ctx context.Context, m *journal.StoredMessage, d *journal.Delivery) bool {
		o, ok := openers[d.DestID]
		if !ok {
			return false
		}
		sum := d.SHA256
		if sum == "" {
			sum = m.SHA256
		}
		return verify.Matches(ctx, o, d.Ref, sum, m.ReceivedSize, buf)
	}
}

// putWorkers is how many messages the writer Puts at once, of a download
// of n: one, unless a destination works faster with several requests in
// flight (exporters.Concurrent: IMAP, one APPEND per connection), and then
// one for every putShareMin messages, as many as it takes: each request
// in flight beyond the first opens a connection, a login that a few
// messages do not repay (the accounts of a run already work in parallel).
// Every exporter is safe for concurrent Puts; with more than one worker,
// an mbox beside an IMAP destination may hold neighbouring messages in a
// slightly different order than the server.
//
// A destination that groups its Puts (exporters.Grouping: IMAP's
// MULTIAPPEND) chooses its connections itself, and gets every message of
// the download in flight, up to PutConcurrency: the more wait, the fuller
// its groups.
func (ar *accountRun) putWorkers(n int) int {
	if ar.groupsPuts() {
		return min(ar.putConcurrency(), max(1, n))
	}
	return min(ar.putConcurrency(), max(1, (n+putShareMin-1)/putShareMin))
}

// groupsPuts reports whether a destination groups its Puts.
func (ar *accountRun) groupsPuts() bool {
	for _, d := range ar.dests {
		for ; d != nil; d = unwrap(d) {
			if g, ok := d.(exporters.Grouping); ok && g.GroupsPuts() {
				return true
			}
		}
	}
	return false
}

// putFlyingMax bounds the bytes of the bodies being Put at once (one
// body may exceed it alone): with a destination that groups its Puts,
// each waits in memory (up to the spool threshold) for its group's
// answer. Two of IMAP's groups fit (their bytes bound, 2 MiB), so that
// one fills while the server stores the other.
const putFlyingMax = 4 << 20

// putShareMin is the fewest messages of a download that get a Put
// worker (an IMAP connection) of their own (see putWorkers).
const putShareMin = 32

// putConcurrency is the most Puts at once that the destinations take
// (see putWorkers).
func (ar *accountRun) putConcurrency() int {
	n := 1
	for _, d := range ar.dests {
		// A decorator (the quarantine) answers for what it wraps.
		for ; d != nil; d = unwrap(d) {
			if c, ok := d.(exporters.Concurrent); ok {
				n = max(n, c.PutConcurrency())
				break
			}
		}
	}
	return n
}

// unwrap returns the destination a decorator (the quarantine) wraps, or
// nil when d wraps none.
func unwrap(d exporters.Exporter) exporters.Exporter {
	if u, ok := d.(interface{ Unwrap() exporters.Exporter }); ok {
		return u.Unwrap()
	}
	return nil
}

// outcome is what Putting one fetched message did.
type outcome struct {
	f           fetched
	dels        []journal.Delivery
	written     []int // destinations that now hold it
	failure     error // the first destination's failure, if any
	quarantined []Quarantined
	size        int64
	admitted    int64 // the body's size when the writer took it (see writer)
	err         error // an interrupt: nothing of this message is recorded
}

// put Puts one fetched message into every destination that lacks it. A
// destination that fails for this message does not undo the others: the
// journal records which destinations hold it. put releases the body.
func (ar *accountRun) put(ctx context.Context, f fetched) outcome {
	r := outcome{f: f}
	if f.err != nil {
		return r
	}
	defer f.body.Release()
	name, uidl := ar.a.Name, f.p.uidl
	// Every read of the body, which a destination makes as it writes
	// (an IMAP APPEND's literal), checks the lease first: a process that
	// was paused mid-message stops writing before another byte goes out.
	var body exporters.Body = f.body
	if ar.held != nil {
		body = fencedBody{Body: f.body, ctx: ctx, h: ar.held}
	}
	msg := &exporters.Message{
		Key:      exporters.MessageKey(name, uidl),
		Account:  name,
		UIDL:     uidl,
		Body:     body,
		SHA256:   f.body.sum,
		Received: time.Now(),
	}
	r.size = f.body.Size()
	for _, i := range f.p.missing {
		if err := ar.held.check(ctx); err != nil {
			return outcome{err: err}
		}
		var (
			d   exporters.Delivery
			err error
		)
		switch st := f.body.stream; {
		case st == nil:
			d, err = ar.dests[i].Put(ctx, msg)
		case f.body.streamErr != nil:
			// The download wrote into the destination's stream (its
			// only one, i) and failed there, or ending its file did
			// (see spooled.end): the message fails there as a Put
			// would have.
			err = f.body.streamErr
		default:
			d, err = st.Commit(ctx, r.size)
		}
		if h := ar.r.opts.hooks.afterPut; h != nil {
			h(ar.r.putCount.next())
		}
		if err != nil {
			if cause := context.Cause(ctx); errors.Is(cause, errLeaseLost) {
				return outcome{err: cause}
			}
			if ctx.Err() != nil {
				// Destinations this message already reached keep
				// an unrecorded copy, which the next run's Put
				// finds again (Put is idempotent per key).
				return outcome{err: ctx.Err()}
			}
			if r.failure == nil {
				r.failure = fmt.Errorf("message %d (uidl %q): destination %s: %w", f.p.id, uidl, ar.ids[i], err)
			}
			if path, ok := quarantined(err); ok {
				r.quarantined = append(r.quarantined, Quarantined{UIDL: uidl, Destination: ar.ids[i], Path: path, Reason: err.Error()})
			}
			continue
		}
		r.written = append(r.written, i)
		r.dels = append(r.dels, journal.Delivery{DestID: ar.ids[i], Ref: d.Ref, SHA256: msg.SHA256})
	}
	ar.r.opts.Progress.MessageDone(name, r.size)
	return r
}

// record adds what put did to the batch, and the report updates that
// follow once the batch commits.
func (ar *accountRun) record(r outcome, batch *journal.Batch, done *[]func(), dirty []bool) {
	name, uidl, id, rep := ar.a.Name, r.f.p.uidl, r.f.p.id, ar.rep
	if r.f.err != nil {
		ar.r.opts.Logger.Warn(evMessageFailed, "account", name, "uidl", uidl, "id", id, "class", errorClass(r.f.err), "error", r.f.err)
		ar.r.opts.Metrics.Failed(errorClass(r.f.err))
		batch.Failed(name, uidl, r.f.err.Error())
		*done = append(*done, func() { ar.progress++; ar.failedNow[uidl]++; rep.fail(uidl, id, r.f.err) })
		return
	}
	var suspect string
	if r.f.wire != r.f.p.size {
		m := SizeMismatch{UIDL: uidl, ID: id, Listed: r.f.p.size, Received: r.f.wire}
		if m.Suspect = sizeSuspect(m.Listed, m.Received, r.size); m.Suspect {
			suspect = fmt.Sprintf("message %d: RETR delivered %d octets (%d with LF line ends) but LIST said %d: "+
				"the copy may be incomplete, so it is kept on the server", id, m.Received, r.size, m.Listed)
			ar.r.opts.Logger.Warn("suspect message", "account", name, "uidl", uidl, "id", id, "listed", m.Listed, "received", m.Received)
		}
		*done = append(*done, func() {
			rep.SizeMismatches = append(rep.SizeMismatches, m)
			if m.Suspect {
				rep.Suspect++
			}
		})
	}
	for _, i := range r.written {
		dirty[i] = true
	}
	batch.Stored(journal.StoredMessage{
		Account:      name,
		UIDL:         uidl,
		ReceivedSize: r.f.wire,
		SHA256:       r.f.body.sum,
		Deliveries:   r.dels,
		Complete:     r.failure == nil,
		Suspect:      suspect,
	})
	if r.failure != nil {
		ar.r.opts.Logger.Warn(evMessageFailed, "account", name, "uidl", uidl, "id", id, "class", "destination", "error", r.failure)
		ar.r.opts.Metrics.Failed("destination")
		batch.Failed(name, uidl, r.failure.Error())
		*done = append(*done, func() {
			ar.progress++
			ar.failedNow[uidl]++
			rep.Quarantined = append(rep.Quarantined, r.quarantined...)
			rep.fail(uidl, id, r.failure)
		})
		return
	}
	*done = append(*done, func() {
		ar.progress++
		rep.Stored++
		rep.StoredBytes += r.size
		ar.storedNow[uidl] = true
		rep.succeed(uidl)
	})
}

// sizeSlack is how many octets a LIST size may be off beyond what the line
// ends explain before a message is suspect: a server that adds or counts a
// final CRLF differently.
const sizeSlack = 2

// sizeSuspect reports whether a LIST size is further from what RETR
// delivered than the line ends explain. A server may count the message as
// it sends it (CRLF: the received size) or as it stores it (LF: the
// canonical size); anything outside that range, give or take sizeSlack,
// means RETR delivered less or more than the server holds: a body cut
// short at a line "." that the server did not dot-stuff, a truncated or
// padded transfer.
func sizeSuspect(listed, received, canonical int64) bool {
	lo, hi := min(canonical, received), max(canonical, received)
	return listed < lo-sizeSlack || listed > hi+sizeSlack
}

// quarantined returns the path where a destination kept a message it
// refused, if err says so.
func quarantined(err error) (string, bool) {
	var q *exporters.QuarantinedError
	if errors.As(err, &q) {
		return q.Path, true
	}
	return "", false
}

// fencedBody is a message body whose every read first checks the
// account's lease (heldLease.check): a destination that writes as it
// reads stops when the account is no longer this process's.
type fencedBody struct {
	exporters.Body
	ctx context.Context
	h   *heldLease
}

// Check is the lease check of every read (exporters.Fenced).
func (b fencedBody) Check(ctx context.Context) error { return b.h.check(ctx) }

func (b fencedBody) ReadAt(p []byte, off int64) (int, error) {
	if err := b.h.check(b.ctx); err != nil {
		return 0, err
	}
	return b.Body.ReadAt(p, off)
}

// epoch is the account's lease epoch, for the log: which tenure of the
// account a commit belongs to (0 without a lease).
func (ar *accountRun) epoch() int64 {
	if ar.lease == nil {
		return 0
	}
	return ar.lease.Epoch
}

// fencedStream is a destination's stream whose every write first checks
// the account's lease, as fencedBody's reads do.
type fencedStream struct {
	exporters.Stream
	ctx context.Context
	h   *heldLease
}

// End ends the file of a stream that can (exporters.Ender), and does
// nothing otherwise: Commit then does it all. Ending a complete file
// writes nothing to the destination, so it is not fenced.
func (s fencedStream) End(ctx context.Context, size int64) error {
	if e, ok := s.Stream.(exporters.Ender); ok {
		return e.End(ctx, size)
	}
	return nil
}

func (s fencedStream) Write(p []byte) (int, error) {
	if err := s.h.check(s.ctx); err != nil {
		return 0, err
	}
	return s.Stream.Write(p)
}
