package journal

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Listed is one message of a server listing (UIDL + LIST).
type Listed struct {
	// UIDL is the message key within the account: the server's UIDL, a
	// disambiguated duplicate or a synthetic key (see Kind). It is untrusted
	// data, stored as is.
	UIDL string
	// Kind is KindUIDL, KindDup or KindSynthetic.
	Kind string
	// Size is the size the server listed, in bytes.
	Size int64
}

// RecordListing records a listing of account's mailbox, in one transaction.
// A message seen for the first time gets state 'listed' and first_seen=now;
// one seen before gets last_seen=now and its listed size updated, and keeps
// its state, kind and first_seen: a listing never lowers a state. The account
// row gets source, server_count=len(msgs), server_bytes=the sum of sizes and
// last_run=now.
//
// source describes the server (a URL) and must not carry a password: one that
// does is refused, and the error does not repeat it. A listing with an empty
// or repeated UIDL, an unknown Kind or a negative Size is refused. A refused
// or failed listing records nothing.
func (j *Journal) RecordListing(ctx context.Context, account, source string, msgs []Listed) error {
	return j.RecordListingWith(ctx, account, source, msgs, nil)
}

// RecordListingWith is RecordListing that also records the account's
// destinations, when dests is not nil, as SaveDestinations does: one
// transaction, one write to disk, for a session's first listing and the
// destinations its messages go to. A destination SaveDestinations would
// refuse fails it, and nothing is recorded.
func (j *Journal) RecordListingWith(ctx context.Context, account, source string, msgs []Listed, dests []AccountDestination) error {
	var info *AccountInfo
	if dests != nil {
		info = &AccountInfo{Name: account, Source: source, Destinations: dests}
		if err := checkAccountInfo(*info); err != nil {
			return err
		}
	}
	if account == "" {
		return fmt.Errorf("journal: record listing: empty account")
	}
	if hasPassword(source) {
		return fmt.Errorf("journal: record listing of account %q: source URL carries a password; refusing to record it", account)
	}
	seen := make(map[string]struct{}, len(msgs))
	var bytes int64
	for i, m := range msgs {
		if err := checkListed(m); err != nil {
			return fmt.Errorf("journal: record listing of account %q: message %d (uidl %q): %w", account, i+1, m.UIDL, err)
		}
		if _, dup := seen[m.UIDL]; dup {
			return fmt.Errorf("journal: record listing of account %q: uidl %q listed twice (duplicates must be disambiguated)", account, m.UIDL)
		}
		seen[m.UIDL] = struct{}{}
		bytes += m.Size
	}

	if err := j.writable("record listing of account %q", account); err != nil {
		return err
	}
	return j.retry(ctx, func() error { return j.recordListing(ctx, account, source, msgs, bytes, info) })
}

// recordListing is one attempt of RecordListingWith of the checked msgs,
// whose sizes add up to bytes, and of the checked destinations in info
// (nil: none).
func (j *Journal) recordListing(ctx context.Context, account, source string, msgs []Listed, bytes int64, info *AccountInfo) error {
	now := toNanos(j.now())
	tx, err := j.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("journal: record listing of account %q: %w", account, err)
	}
	defer tx.Rollback() // no-op after Commit
	if info != nil {
		if err := j.saveAccount(ctx, tx, *info, now); err != nil {
			return err
		}
	}
	if _, err := tx.StmtContext(ctx, j.st.accountListing).ExecContext(ctx,
		account, source, now, len(msgs), bytes, now); err != nil {
		return fmt.Errorf("journal: record listing of account %q: %w", account, err)
	}
	ins := tx.StmtContext(ctx, j.st.listUpsert)
	for _, m := range msgs {
		if _, err := ins.ExecContext(ctx, account, j.d.encodeOpaque(m.UIDL), m.Kind, m.Size, now, now); err != nil {
			return fmt.Errorf("journal: record listing of account %q: uidl %q: %w", account, m.UIDL, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("journal: record listing of account %q: commit: %w", account, err)
	}
	return nil
}

func checkListed(m Listed) error {
	switch {
	case m.UIDL == "":
		return fmt.Errorf("empty uidl")
	case m.Kind != KindUIDL && m.Kind != KindDup && m.Kind != KindSynthetic:
		return fmt.Errorf("unknown kind %q", m.Kind)
	case m.Size < 0:
		return fmt.Errorf("negative size %d", m.Size)
	}
	return nil
}

// hasPassword reports whether source is a URL with a password in it. A
// source that does not parse as a URL but has user info ('@') in it counts as
// one: better refused than stored with a secret.
func hasPassword(source string) bool {
	u, err := url.Parse(source)
	if err != nil {
		return strings.Contains(source, "@")
	}
	if u.User == nil {
		return false
	}
	_, ok := u.User.Password()
	return ok
}

// SetAccountError records errText as account's last error ("" clears it). An
// account the journal does not know yet (its session failed before any
// listing) is created.
func (j *Journal) SetAccountError(ctx context.Context, account, errText string) error {
	if account == "" {
		return fmt.Errorf("journal: set account error: empty account")
	}
	if err := j.writable("set account error"); err != nil {
		return err
	}
	var text any // NULL clears
	if errText != "" {
		text = clipText(errText)
	}
	if _, err := j.st.accountError.ExecContext(ctx, account, text, toNanos(j.now())); err != nil {
		return fmt.Errorf("journal: set error of account %q: %w", account, err)
	}
	return nil
}

// AccountOutcome says how the last process that worked on account left it:
// the account's error ("" when it ended without one; a text saying so when
// its listing was never recorded), how many of its messages are failed and
// how many are listed and not stored yet (adopted ones aside). A worker
// uses it to tell whether an account another worker finished during its
// run needs anything more: it does unless all three are zero.
func (j *Journal) AccountOutcome(ctx context.Context, account string) (errText string, failed, left int, err error) {
	var text sql.NullString
	err = j.r.QueryRowContext(ctx, j.q(`SELECT last_error FROM accounts WHERE account = ?`), account).Scan(&text)
	if errors.Is(err, sql.ErrNoRows) {
		return "the account's listing was never recorded", 0, 0, nil
	}
	if err == nil {
		err = j.r.QueryRowContext(ctx, j.q(`SELECT
	COALESCE(SUM(CASE WHEN state = 'failed' THEN 1 ELSE 0 END), 0),
	COALESCE(SUM(CASE WHEN state = 'listed' THEN 1 ELSE 0 END), 0)
FROM messages WHERE account = ? AND NOT (`+adoptedMessage+`)`), account).Scan(&failed, &left)
	}
	if err != nil {
		return "", 0, 0, fmt.Errorf("journal: outcome of account %q: %w", account, err)
	}
	return text.String, failed, left, nil
}
