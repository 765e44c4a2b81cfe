package pipeline

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sort"
	"syscall"
	"time"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/location"
	"github.com/popmigrate/popmigrate/exporters/quarantine"
	"github.com/popmigrate/popmigrate/internal/tlsconf"
	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/pop3"
)

// accountRun is the state of one account across its sessions.
type accountRun struct {
	r *runner
	a *config.Account
	// ticket holds the account's job and session slots in a Run (see
	// scheduler); nil in verify, purge and check.
	ticket *ticket
	rep    *AccountReport
	dests  []exporters.Exporter
	ids    []string // destination ids, parallel to dests
	auth   *pop3.Auth
	tlsCfg *tls.Config
	// tokens gives the OAuth2 tokens of the account's logins (see
	// login); nil when it logs in with a password.
	tokens *config.TokenCache
	// storedNow holds the UIDLs this run stored, so a retried session
	// does not count them as stored by an earlier run.
	storedNow map[string]bool
	// skip holds the UIDLs of messages over the size cap: later sessions
	// of this run do not ask for them again.
	skip map[string]bool
	// lease is the account's lease; the writer's commits are fenced by it,
	// and held.check comes before every destination write. Nil for
	// verify, which takes none.
	lease *journal.Lease
	held  *heldLease
	// broke holds the UIDLs of the messages a session of this run broke
	// on: later sessions ask for them after the rest (see brokeOn).
	broke map[string]bool
	// failedNow counts the failures this run recorded per UIDL, and
	// startAttempts the failures the journal held before the run: see
	// allowed.
	failedNow, startAttempts map[string]int
	// planned is how many messages the last session's plan held.
	planned int
	// lastLogin and loginDelay are when this run last logged in to the
	// account and the server's LOGIN-DELAY; waited is the time spent
	// waiting between sessions (see Options.MaxWait).
	lastLogin  time.Time
	loginDelay time.Duration
	waited     time.Duration
	// progress counts the messages whose outcome (stored or failed) a
	// session committed: a session that moved any message on is not
	// counted against Attempts.
	progress int
	// unsavedDests are the destinations prepare opened, until the first
	// listing records them (see prepare); nil once it has.
	unsavedDests []journal.AccountDestination
	// began is when the run took the account's lease: a copy the journal
	// records as verified since was read back by this run's writer (see
	// readBack), and its session's verify need not read it again.
	began time.Time
	// noListAtLogin is set once a session that sent LIST and UIDL with
	// the login timed out waiting for their answers (a server that drops
	// what it read past the login): later sessions list after it.
	noListAtLogin bool
}

// account migrates one account, retrying its session on retryable errors,
// with the slots of t (see scheduler). The error it returns is a journal
// failure; everything else is in the report.
//
// When another process holds the account's lease, account opens nothing
// and returns the time to look again (again): the scheduler puts the
// account back until then. When such a process released the lease since,
// having finished the account whole, the report says so (DoneBy) and
// nothing more is done, unless Options.WaitForLease asks to run it anyway.
func (r *runner) account(ctx context.Context, a *config.Account, t *ticket) (rep *AccountReport, again time.Time, err error) {
	rep = &AccountReport{Account: a.Name, Source: a.SourceURL()}
	ar := &accountRun{r: r, a: a, rep: rep, ticket: t, storedNow: map[string]bool{}, skip: map[string]bool{}, failedNow: map[string]int{}, startAttempts: map[string]int{}, broke: map[string]bool{}}
	defer rep.finish()
	lctx, lease, err := r.takeLease(ctx, a.Name, false)
	var held *journal.LeaseHeldError
	if errors.As(err, &held) {
		r.mu.Lock()
		_, again := r.seen[a.Name]
		if !again {
			r.seen[a.Name] = held.LeaseInfo
		}
		r.polls[a.Name]++
		n := r.polls[a.Name]
		r.mu.Unlock()
		if !again {
			r.opts.Logger.Info("another popmigrate works on the account; leaving it to it while it lives", "account", a.Name,
				"holder", held.Holder.String(), "lease_expires", held.ExpiresAt.Local().Format(time.TimeOnly))
		}
		return rep, time.Now().Add(heldPoll(n, r.opts.LeaseTTL)), nil
	}
	if err != nil {
		rep.Error = explain(err)
		return rep, time.Time{}, err // a journal error
	}
	// record is set once the account ends with an outcome to record: its
	// error (or none) is then written in the transaction that releases the
	// lease, after the destinations are closed.
	var record *string
	defer func() {
		if e := r.releaseLease(ctx, lease, record); e != nil && err == nil {
			err = &journalError{e}
		}
	}()
	ar.lease, ar.held, ar.began = lease.l, lease, time.Now()
	if done, err := r.doneByOther(lctx, lease.l, rep); done || err != nil {
		return rep, time.Time{}, err
	}
	r.opts.Metrics.AccountState(a.Name, "running")
	defer func() {
		if rep.Error == "" && len(rep.failures) == 0 {
			r.opts.Metrics.AccountState(a.Name, "done")
		} else {
			r.opts.Metrics.AccountState(a.Name, "failed")
		}
	}()
	err = ar.prepare(lctx)
	defer ar.closeDests()
	if err == nil {
		err = ar.sessions(lctx)
	}
	if cause := context.Cause(lctx); errors.Is(cause, errLeaseLost) && ctx.Err() == nil {
		err = cause
	}
	if err != nil {
		rep.Error = explain(err)
		r.opts.Logger.Warn(evAccountFailed, "account", a.Name, "class", errorClass(err), "error", err)
	}
	var jerr *journalError
	if errors.As(err, &jerr) {
		return rep, time.Time{}, err
	}
	if errors.Is(err, errLeaseLost) {
		// The account is another process's now. It is put back, as an
		// account found taken is, so that this run reports how that one
		// leaves it; a few times at most, so that a run that keeps
		// losing its leases (a journal too slow for --lease-ttl) says so.
		r.mu.Lock()
		r.lost[a.Name]++
		n := r.lost[a.Name]
		r.mu.Unlock()
		if n <= maxLeaseLosses {
			return rep, time.Now().Add(leasePoll(r.opts.LeaseTTL)), nil
		}
		return rep, time.Time{}, nil
	}
	defer func() {
		r.opts.Logger.Info(evDone, "account", a.Name, "stored", rep.Stored, "failed", len(rep.failures), "whole", rep.Error == "" && len(rep.failures) == 0, "sessions", rep.Sessions)
	}()
	errText := rep.Error
	record = &errText
	return rep, time.Time{}, nil
}

// doneByOther reports whether another process finished the account whole
// during this run: l was taken from a lease that its holder released, and
// that holder took it after this run began (its epoch is newer than the
// one the run started with) or held it when this run found it taken. Its
// report then says so. With Options.WaitForLease it is never done.
func (r *runner) doneByOther(ctx context.Context, l *journal.Lease, rep *AccountReport) (bool, error) {
	if r.opts.WaitForLease || l.Prev.Holder.ID != "" || l.Prev.Epoch == 0 {
		return false, nil
	}
	r.mu.Lock()
	first, seen := r.seen[l.Account]
	start := r.startEpochs[l.Account]
	r.mu.Unlock()
	if l.Prev.Epoch <= start && !(seen && l.Prev.Epoch >= first.Epoch) {
		return false, nil // released before this run began
	}
	holder := l.Prev.Holder.String()
	if seen {
		holder = first.Holder.String()
	}
	errText, failed, left, err := r.j.AccountOutcome(ctx, l.Account)
	if err != nil {
		return false, &journalError{err}
	}
	if errText != "" || failed > 0 || left > 0 {
		// Left unfinished: this run has a go at it too.
		r.opts.Logger.Info("another popmigrate left the account unfinished; trying it here", "account", l.Account, "holder", holder,
			"failed", failed, "not_stored", left, "error", errText)
		return false, nil
	}
	rep.DoneBy = holder
	r.opts.Logger.Info(evDone, "account", l.Account, "done_by", rep.DoneBy, "whole", true)
	return true, nil
}

// prepare resolves the secret, loads the CA file and opens the
// destinations: everything that does not need the server and is not worth
// retrying when it fails.
func (ar *accountRun) prepare(ctx context.Context) error {
	if err := ar.prepareSession(ctx); err != nil {
		return err
	}
	for _, spec := range ar.a.To {
		e, err := openDestination(ctx, spec, ar.a, &ar.r.opts, false)
		if err != nil {
			return err
		}
		ar.dests = append(ar.dests, e)
		id := e.Properties().ID
		ar.ids = append(ar.ids, id)
		if err := ar.resume(ctx, e, id); err != nil {
			return err
		}
	}
	ar.rep.Destinations = ar.ids
	// The journal describes the migration: verify, status and reports
	// need nothing but it. The destinations are recorded with the first
	// listing (one transaction, one write to disk), before any message
	// can be recorded as delivered to them.
	ar.unsavedDests = make([]journal.AccountDestination, len(ar.ids))
	for i, id := range ar.ids {
		ar.unsavedDests[i] = journal.AccountDestination{ID: id, Spec: ar.a.To[i]}
	}
	return nil
}

// resume hands a Resumable destination the state the journal holds for it,
// before any Put: mbox cuts a torn tail, IMAP reconciles an open intent.
func (ar *accountRun) resume(ctx context.Context, e exporters.Exporter, id string) error {
	rs, ok := e.(exporters.Resumable)
	if !ok {
		return nil
	}
	j, name := ar.r.j, ar.a.Name
	state, err := j.DestState(ctx, name, id)
	if err != nil {
		return &journalError{err}
	}
	// The state (an IMAP intent, saved before the APPENDs it covers) is
	// saved fenced by the lease, as the batches are: a process that was
	// paused past its lease cannot overwrite what the account's new
	// holder recorded.
	save := func(ctx context.Context, state string) error {
		if err := ar.held.check(ctx); err != nil {
			return err
		}
		var b journal.Batch
		b.Fence(ar.lease)
		b.DestState(name, id, state)
		if err := j.Commit(ctx, &b); err != nil {
			return leaseErr(err)
		}
		return nil
	}
	if err := rs.Resume(ctx, state, save); err != nil {
		return &destError{dest: id, err: fmt.Errorf("resume: %w", err)}
	}
	return nil
}

// prepareSession resolves the secret (a password, or a first OAuth2 token
// from the account's token source, asked again at each login) and builds
// the TLS configuration.
func (ar *accountRun) prepareSession(ctx context.Context) error {
	a := ar.a
	ar.auth = &pop3.Auth{
		Username:       a.User,
		Mechanisms:     a.Auth,
		AllowPlaintext: a.Security == config.SecurityPlain,
	}
	if src := a.OAuth2Source(); src != nil {
		tok, err := src.Token(ctx)
		if err != nil {
			return fmt.Errorf("oauth2 token (%s): %w", src, err)
		}
		ar.tokens = src
		ar.auth.OAuth2Token = tok.Value
	} else {
		pw, err := a.Password.Resolve(ctx)
		if err != nil {
			return fmt.Errorf("password (%s): %w", a.Password, err)
		}
		ar.auth.Password = pw
	}
	cfg, err := tlsconf.Client(tlsconf.Options{ServerName: a.Host, CAFile: a.CAFile, InsecureSkipVerify: a.InsecureSkipVerify})
	if err != nil {
		return err
	}
	// Reconnects (a retried session, verify, purge, the next account of
	// the host) resume the TLS session through the session cache every
	// tlsconf config shares: one round trip less and no full handshake
	// for the server.
	ar.tlsCfg = cfg
	return nil
}

// openDestination opens the exporter for an expanded destination spec of
// account a, through the registry of destination kinds (Options.
// Destinations). Every exporter gets the destination id its spec
// describes, so the run, verify and purge agree on it.
//
// With readOnly (verify), every kind is opened for reading only: nothing is
// created (a missing destination is an error), probed, cleaned up, locked
// or rewritten, and an IMAP folder is read with BODY.PEEK and never
// created.
func openDestination(ctx context.Context, spec string, a *config.Account, o *Options, readOnly bool) (exporters.Exporter, error) {
	if o.Destinations == nil {
		return nil, location.ErrNoRegistry
	}
	e, err := o.Destinations.Open(ctx, spec, destinationEnv(a, o, readOnly))
	if err != nil || readOnly || o.IMAP.QuarantineDir == "" {
		return e, err
	}
	// A message a destination refuses for what it is (an IMAP server's
	// NO, NUL bytes) is kept aside rather than lost, whatever the kind.
	return quarantine.Wrap(e, o.IMAP.QuarantineDir), nil
}

// destinationEnv is what a destination of account a may use beside its
// spec: the run's settings and the account's destination credentials (an
// OAuth2 token when it has one, else its password), CA file and TLS
// choice.
func destinationEnv(a *config.Account, o *Options, readOnly bool) location.Env {
	env := location.Env{
		ReadOnly:           readOnly,
		CAFile:             o.IMAP.CAFile,
		InsecureSkipVerify: a.InsecureSkipVerify,
		Timeout:            o.Timeout,
		Flags:              o.IMAP.Flags,
		DateFrom:           o.IMAP.DateFrom,
		Conns:              o.IMAP.Conns,
	}
	if env.CAFile == "" {
		env.CAFile = a.CAFile
	}
	if src := a.ToOAuth2Source(); src != nil {
		env.OAuth2Token, env.OAuth2Rejected = destinationTokens(src)
	} else if s := a.ToPassword; !s.IsZero() {
		env.Password = func(ctx context.Context) (string, error) {
			pw, err := s.Resolve(ctx)
			if err != nil {
				return "", fmt.Errorf("password (%s): %w", s, err)
			}
			return pw, nil
		}
	}
	return env
}

func (ar *accountRun) closeDests() {
	for _, d := range ar.dests {
		if err := d.Close(); err != nil {
			ar.r.opts.Logger.Warn("closing destination", "account", ar.a.Name, "destination", d.Properties().ID, "error", err)
		}
	}
}

// sessions runs sessions until the account is done, a non-retryable error
// happens or the attempts are used up.
func (ar *accountRun) sessions(ctx context.Context) error {
	o := &ar.r.opts
	for attempt := 1; ; attempt++ {
		ar.rep.Sessions++
		o.Metrics.Session()
		before := ar.progress
		err := ar.session(ctx)
		if err == nil {
			if o.untilEmpty(ar.a) && ar.planned > 0 && ar.progress > before {
				// The server may list more once this session's
				// messages are hidden: another session, a fresh
				// count of attempts.
				attempt = 0
				continue
			}
			return nil
		}
		// A session that stored a message, or recorded the failure of
		// the message it broke on, before it failed made progress: a
		// server that drops the connection every few megabytes still
		// gets its mailbox moved, and one that always breaks on the same
		// message gets the rest moved first. The messages bound how often
		// this can reset the attempts: each is stored once, or uses up
		// the attempts it has in this run (see allowed).
		if ar.progress > before && retryable(err) && !errors.Is(err, errTooLarge) {
			attempt = 0
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !retryable(err) || attempt >= o.Attempts {
			if ar.rep.Sessions > 1 {
				return fmt.Errorf("%w (after %d sessions)", err, ar.rep.Sessions)
			}
			return err
		}
		d := ar.retryDelay(err, attempt)
		if ar.waited += d; o.MaxWait > 0 && ar.waited > o.MaxWait {
			return fmt.Errorf("%w (gave up: the server asked for more than --max-wait %v of waiting in all)", err, o.MaxWait)
		}
		o.Logger.Info("retrying", "account", ar.a.Name, "attempt", attempt+1, "in", d.Round(time.Millisecond), "error", err)
		o.Metrics.Retry()
		ar.park()
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// backoff returns the delay before retry number attempt: base doubled per
// attempt, capped, with up to 50% jitter so that many accounts locked at
// once do not retry in step.
func backoff(base, max time.Duration, attempt int) time.Duration {
	d := min(base, max)
	for i := 1; i < attempt && d < max; i++ {
		if d > max/2 { // doubling would pass the cap, or overflow
			d = max
			break
		}
		d *= 2
	}
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// retryable reports whether a session error is worth another session:
// a temporary POP3 error or a network fault. Authentication failures,
// certificate errors, protocol violations and destination errors are not.
func retryable(err error) bool {
	if errors.Is(err, errTooLarge) {
		return true
	}
	// A session whose replies went out of sync (a server that does not
	// dot-stuff) or that timed out is worth another: the message it broke
	// on is recorded as failed and asked for after the rest.
	if errors.Is(err, pop3.ErrOutOfSync) || errors.Is(err, pop3.ErrTimeout) {
		return true
	}
	if errors.Is(err, errLeaseLost) {
		return false
	}
	var perr *pop3.Error
	if errors.As(err, &perr) {
		return perr.Temporary()
	}
	var jerr *journalError
	var derr *destError
	if errors.As(err, &jerr) || errors.As(err, &derr) {
		return false
	}
	var cerr *tls.CertificateVerificationError
	var uerr x509.UnknownAuthorityError
	var herr x509.HostnameError
	if errors.As(err, &cerr) || errors.As(err, &uerr) || errors.As(err, &herr) {
		return false
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var nerr net.Error
	return errors.As(err, &nerr)
}

// destError marks a destination failure that ends the session (a failed
// Sync): retrying would not help and the journal must not go on.
type destError struct {
	dest string
	err  error
}

func (e *destError) Error() string { return fmt.Sprintf("destination %s: %v", e.dest, e.err) }
func (e *destError) Unwrap() error { return e.err }

// listedMsg is one entry of the server's listing in this session.
type listedMsg struct {
	id   int
	uidl string // unique within the listing
	kind string // "uidl", "dup" or "synthetic"
	size int64
}

// session runs one POP3 session: connect, log in, list, plan, download
// and store everything missing, QUIT.
func (ar *accountRun) session(ctx context.Context) error {
	r := ar.r
	if err := ar.waitLoginDelay(ctx); err != nil {
		return err
	}
	if err := ar.ticket.acquire(ctx); err != nil {
		return err
	}
	r.opts.Metrics.AccountState(ar.a.Name, "running")
	ahead := loginAhead{list: !ar.noListAtLogin}
	if ahead.list {
		n, err := ar.retrAtLogin(ctx)
		if err != nil {
			return err
		}
		ahead.retr = n
	}
	c, err := ar.connectWith(ctx, ahead)
	if err != nil {
		return err
	}
	defer c.Close()
	ar.lastLogin = time.Now()
	listing, err := ar.list(ctx, c)
	// Even after a failed listing: the CAPA may have been answered, and
	// the next session must wait the delay it announced.
	ar.noteLoginDelay(ctx, c)
	if err != nil {
		if ahead.list && errors.Is(err, pop3.ErrTimeout) {
			ar.noListAtLogin = true
		}
		return err
	}
	if err := ar.r.j.RecordListingWith(ctx, ar.a.Name, ar.rep.Source, journalListing(listing), ar.unsavedDests); err != nil {
		return &journalError{err}
	}
	ar.unsavedDests = nil
	plan, err := ar.plan(ctx, listing)
	if err != nil {
		return err
	}
	r.opts.Logger.Info(evListing, "account", ar.a.Name, "messages", ar.rep.ServerMessages, "bytes", ar.rep.ServerBytes, "planned", len(plan))
	ar.planned = len(plan)
	if len(plan) > 0 {
		if err := ar.download(ctx, c, plan); err != nil {
			return err
		}
	}
	// With UntilEmpty the session that lists nothing new verifies: the
	// sessions before it are followed by another.
	if r.opts.VerifyInSession && !(r.opts.untilEmpty(ar.a) && ar.planned > 0) {
		return ar.finishInSession(ctx, c, listing)
	}
	if err := c.Quit(ctx); err != nil {
		// Everything was stored and committed already; a failed QUIT
		// loses nothing (we deleted nothing), so it is only reported.
		r.opts.Logger.Warn("quit", "account", ar.a.Name, "error", err)
	}
	return nil
}

func journalListing(l []listedMsg) []journal.Listed {
	out := make([]journal.Listed, len(l))
	for i, m := range l {
		out[i] = journal.Listed{UIDL: m.uidl, Kind: m.kind, Size: m.size}
	}
	return out
}

// list returns the server's listing with a unique key per message: the
// UIDL, a disambiguated UIDL for repeats, or a synthetic key from the
// headers and size when the server has no UIDL.
func (ar *accountRun) list(ctx context.Context, c *pop3.Client) ([]listedMsg, error) {
	sizes, uids, noUIDL, err := listUIDL(ctx, c)
	if err != nil {
		return nil, err
	}
	byID := make(map[int]string, len(uids))
	overlong := map[int]bool{}
	for _, u := range uids {
		byID[u.ID] = u.UID
		if u.Overlong {
			overlong[u.ID] = true
		}
	}
	ar.rep.NoUIDL = noUIDL
	ar.rep.OverlongUIDLs = 0
	ar.rep.ServerMessages, ar.rep.ServerBytes, ar.rep.DuplicateUIDLs = len(sizes), 0, 0
	ar.rep.ServerListed = true
	// A UIDL longer than the line bound cannot be kept: that message
	// alone is keyed like one of a server without UIDL (and so is never
	// deleted by purge). The keys come from TOP n 0, pipelined.
	var need []pop3.MessageInfo
	for _, s := range sizes {
		if noUIDL || overlong[s.ID] {
			need = append(need, s)
		}
	}
	keys, err := syntheticKeys(ctx, c, need, ar.r.opts.Window)
	if err != nil {
		return nil, err
	}
	seen := make(map[string]int, len(sizes))
	out := make([]listedMsg, 0, len(sizes))
	for _, s := range sizes {
		ar.rep.ServerBytes += s.Size
		m := listedMsg{id: s.ID, size: s.Size, kind: "uidl"}
		if key, ok := keys[s.ID]; ok {
			m.uidl, m.kind = key, "synthetic"
			if !noUIDL {
				ar.rep.OverlongUIDLs++
			}
		} else {
			u, ok := byID[s.ID]
			if !ok {
				return nil, fmt.Errorf("uidl: message %d is in LIST but not in UIDL", s.ID)
			}
			m.uidl = u
		}
		// UIDLs are printable ASCII without spaces (RFC 1939 section 7),
		// so a suffix after a space can never collide with a real UIDL.
		if n := seen[m.uidl]; n > 0 {
			seen[m.uidl] = n + 1
			m.uidl = fmt.Sprintf("%s dup%d", m.uidl, n+1)
			if m.kind == "uidl" {
				m.kind = "dup"
			}
			ar.rep.DuplicateUIDLs++
		} else {
			seen[m.uidl] = 1
		}
		out = append(out, m)
	}
	return out, nil
}

// listUIDL lists the mailbox with LIST and UIDL in one round trip (when the
// server pipelines), and reports whether the server has no UIDL (a -ERR to
// UIDL that is not temporary).
func listUIDL(ctx context.Context, c *pop3.Client) ([]pop3.MessageInfo, []pop3.UIDInfo, bool, error) {
	sizes, uids, err := c.ListUIDL(ctx)
	var perr *pop3.Error
	switch {
	case err == nil:
		return sizes, uids, false, nil
	case sizes != nil && errors.As(err, &perr) && perr.Command == "UIDL" && !perr.Temporary():
		return sizes, nil, true, nil
	case sizes != nil:
		return nil, nil, false, fmt.Errorf("uidl: %w", err)
	}
	return nil, nil, false, fmt.Errorf("list: %w", err)
}

// syntheticKeys makes the keys of msgs, messages of a server without UIDL
// (or whose UIDL is too long to keep): a hash of each one's header block
// (TOP n 0) and size, by message number. The TOP commands are pipelined
// (window at a time) when the server offers PIPELINING.
func syntheticKeys(ctx context.Context, c *pop3.Client, msgs []pop3.MessageInfo, window int) (map[int]string, error) {
	keys := make(map[int]string, len(msgs))
	if len(msgs) == 0 {
		return keys, nil
	}
	ids := make([]int, len(msgs))
	size := make(map[int]int64, len(msgs))
	for i, m := range msgs {
		ids[i], size[m.ID] = m.ID, m.Size
	}
	var keyErr error // an error of one message, as fn returned it
	err := c.TopAll(ctx, ids, 0, window, func(id int, body *pop3.Body, err error) error {
		if err != nil {
			keyErr = fmt.Errorf("no UIDL, and TOP %d failed too, so messages cannot be told apart across runs: %w", id, err)
			return keyErr
		}
		h := sha256.New()
		fmt.Fprintf(h, "%d\n", size[id])
		_, err = copyBuffer(exporters.NewCanonicalWriter(h), body)
		if cerr := body.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			keyErr = fmt.Errorf("top %d: %w", id, err)
			return keyErr
		}
		keys[id] = "synthetic " + hexSum(h)[:32]
		return nil
	})
	switch {
	case err == nil:
	case keyErr != nil && errors.Is(err, keyErr):
		return nil, err
	default:
		return nil, fmt.Errorf("no UIDL, and the TOP commands that key the messages failed: %w", err)
	}
	return keys, nil
}

// planned is one message to download and the destinations that lack it.
type planned struct {
	listedMsg
	missing  []int // indexes into ar.dests
	attempts int   // failed attempts the journal records
}

// plan returns the listed messages some destination does not hold yet,
// according to the journal, but those the account adopted from another
// POP3 client's state (counted in the report's Adopted: never downloaded,
// and so never verified or deleted): first those no attempt has failed on, in
// listing order, then those that failed before or that a session of this
// run broke on (see brokeOn), fewest failures first, so that a message
// that stalls or breaks the session never keeps the ones after it from
// being fetched. A message that used up its attempts for this run (see
// allowed) is left out and reported failed with its last error.
func (ar *accountRun) plan(ctx context.Context, listing []listedMsg) ([]planned, error) {
	have, err := ar.r.j.Deliveries(ctx, ar.a.Name)
	if err != nil {
		return nil, &journalError{err}
	}
	rows, err := ar.r.j.Messages(ctx, ar.a.Name)
	if err != nil {
		return nil, &journalError{err}
	}
	adopted, err := ar.r.j.Adopted(ctx, ar.a.Name)
	if err != nil {
		return nil, &journalError{err}
	}
	attempts := make(map[string]journal.MessageRow, len(rows))
	for _, m := range rows {
		if m.Attempts > 0 && m.State == journal.StateFailed {
			attempts[m.UIDL] = m
		}
	}
	o := &ar.r.opts
	var out, retry []planned
	var bytes int64
	ar.rep.SkippedAlreadyStored, ar.rep.Adopted = 0, 0
	for _, m := range listing {
		var missing []int
		for i, id := range ar.ids {
			if _, ok := have[m.uidl][id]; !ok {
				missing = append(missing, i)
			}
		}
		if len(missing) == 0 {
			if !ar.storedNow[m.uidl] {
				ar.rep.SkippedAlreadyStored++
			}
			continue
		}
		if adopted[m.uidl] {
			ar.rep.Adopted++
			continue
		}
		p := planned{listedMsg: m, missing: missing}
		row, failed := attempts[m.uidl]
		if failed && ar.failedNow[m.uidl] >= ar.allowed(m.uidl, row.Attempts) {
			ar.rep.fail(m.uidl, m.id, fmt.Errorf("gave up for this run after %d attempts in all (the limit is %d; later runs try it once more each, --retry-failed %d times): %s",
				row.Attempts, o.MessageAttempts, o.MessageAttempts, row.Error))
			continue
		}
		if failed || ar.broke[m.uidl] {
			p.attempts = row.Attempts
			retry = append(retry, p)
		} else {
			out = append(out, p)
		}
		bytes += m.size
	}
	sort.SliceStable(retry, func(i, j int) bool { return retry[i].attempts < retry[j].attempts })
	out = append(out, retry...)
	ar.r.opts.Progress.AccountStart(ar.a.Name, len(out), bytes)
	return out, nil
}

// allowed returns how many attempts message uidl gets in this run:
// what is left of Options.MessageAttempts after the attempts the journal
// held when the run first planned it, and at least one, so that a
// message that failed in earlier runs is still tried once more in each
// run, after the rest (a server's trouble may have passed); with
// RetryFailed, MessageAttempts again.
func (ar *accountRun) allowed(uidl string, attempts int) int {
	o := &ar.r.opts
	start, seen := ar.startAttempts[uidl]
	if !seen {
		start = attempts - ar.failedNow[uidl]
		ar.startAttempts[uidl] = start
	}
	if o.RetryFailed {
		return o.MessageAttempts
	}
	return max(1, o.MessageAttempts-start)
}

// loginAhead is what a session sends with its login, when the server
// pipelines: with list, CAPA, LIST and UIDL (pop3.Options.ListAtLogin),
// and RETR 1..retr (pop3.Options.RetrAtLogin).
type loginAhead struct {
	list bool
	retr int
}

// retrAtLogin returns how many RETRs the session may send with its
// login, before its listing is known: pop3.MaxRetrAtLogin (or the
// window, when smaller) when the plan can only be every listed message
// in number order, else 0. That is so when the journal holds nothing of
// the account (no message listed, stored, failed or adopted: every
// message is missing from every destination) and no session of this
// run broke on a message, skipped one or stored one. A provider that
// hides what a session retrieved (UntilEmpty, Gmail) gets none: a
// retrieved message that was then not stored would be hidden from
// later sessions. The client drops any answer RetrAll does not take,
// so a plan that differs after all (a server without UIDL, or with an
// overlong one) costs the bytes of the answers dropped, never a stored
// message it would not have stored.
func (ar *accountRun) retrAtLogin(ctx context.Context) (int, error) {
	o := &ar.r.opts
	if o.untilEmpty(ar.a) || len(ar.broke) > 0 || len(ar.skip) > 0 || len(ar.storedNow) > 0 || ar.progress > 0 {
		return 0, nil
	}
	held, err := ar.r.j.Holds(ctx, ar.a.Name)
	if err != nil {
		return 0, &journalError{err}
	}
	if held {
		return 0, nil
	}
	w := o.Window
	if w <= 0 {
		w = pop3.DefaultWindow
	}
	return min(w, pop3.MaxRetrAtLogin), nil
}

// connect dials the account's server and logs in.
func (ar *accountRun) connect(ctx context.Context) (*pop3.Client, error) {
	return ar.connectWith(ctx, loginAhead{})
}

// connectWith is connect, sending ahead with the login.
func (ar *accountRun) connectWith(ctx context.Context, ahead loginAhead) (*pop3.Client, error) {
	c, err := ar.dial(ctx, ahead)
	if err != nil {
		return nil, err
	}
	st, _ := c.TLSConnectionState()
	ar.r.opts.Logger.Info(evConnect, "account", ar.a.Name, "addr", ar.a.Addr(), "tls", c.IsTLS(), "tls_resumed", st.DidResume)
	if err := ar.login(ctx, c); err != nil {
		c.Close()
		return nil, fmt.Errorf("login as %s: %w", ar.a.User, err)
	}
	ar.r.opts.Logger.Info(evLogin, "account", ar.a.Name, "user", ar.a.User, "mechanism", c.Mechanism())
	return c, nil
}

// dial connects to the account's server, with TLS or STLS as the account
// says, and reads the greeting; it does not log in. The login will send
// ahead with it.
func (ar *accountRun) dial(ctx context.Context, ahead loginAhead) (*pop3.Client, error) {
	r := ar.r
	po := &pop3.Options{
		TLSConfig:      ar.tlsCfg,
		Timeout:        r.opts.Timeout,
		MaxMessageSize: r.opts.MaxMessageSize,
		Dialer:         r.limits.Dialer(ar.a.Host, nil),
		ListAtLogin:    ahead.list,
		RetrAtLogin:    ahead.retr,
	}
	switch ar.a.Security {
	case config.SecurityTLS:
		po.Security = pop3.SecurityTLS
	case config.SecuritySTLS:
		po.Security = pop3.SecuritySTLS
	default:
		po.Security = pop3.SecurityPlain
	}
	if r.opts.Debug != nil {
		if f := r.opts.Debug(ar.a.Name); f != nil {
			po.Debug = f
		}
	}
	c, err := pop3.Dial(ctx, ar.a.Addr(), po)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", ar.a.Addr(), err)
	}
	return c, nil
}
