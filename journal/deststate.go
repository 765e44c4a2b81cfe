package journal

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// maxDestState bounds a destination's state. States are small (an mbox
// offset, an IMAP intent naming one batch of messages); a bigger one is a bug
// in the destination, refused before it reaches the database.
const maxDestState = 1 << 20

// DestState returns the state last recorded for destination destID of
// account, by SaveDestState or by a committed Batch.DestState; "" when none
// was ever recorded (or "" was). The state is opaque to the journal: what
// exporters.Resumable's Resume receives. It reads the last committed state
// and does not wait for writes in progress. An empty account or destID is
// refused.
func (j *Journal) DestState(ctx context.Context, account, destID string) (string, error) {
	if account == "" || destID == "" {
		return "", fmt.Errorf("journal: destination state: empty account or destination (account %q, destination %q)", account, destID)
	}
	var state string
	err := j.r.QueryRowContext(ctx, j.q(`SELECT state FROM dest_states WHERE account = ? AND dest_id = ?`),
		account, destID).Scan(&state)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("journal: destination state of account %q, destination %q: %w", account, destID, err)
	}
	return state, nil
}

// SaveDestState records state as destination destID's state for account,
// replacing the previous one, at once and in its own transaction, outside
// any group commit: IMAP records its APPEND intent with it before the APPEND.
// When it returns nil the state is durable (see sqliteDSN); on error nothing
// was recorded. It blocks while another goroutine's write is in progress,
// for as long as ctx allows.
//
// An empty account or destID is refused; an empty state is recorded as
// such. state must be valid UTF-8 without NUL bytes (the journal's TEXT
// columns are portable only so) and at most 1 MiB long; any other is
// refused and nothing is recorded.
func (j *Journal) SaveDestState(ctx context.Context, account, destID, state string) error {
	if err := checkDestState(account, destID, state); err != nil {
		return fmt.Errorf("journal: save destination state: %w", err)
	}
	if err := j.writable("save destination state"); err != nil {
		return err
	}
	if _, err := j.st.destStateUpsert.ExecContext(ctx, account, destID, state, toNanos(j.now())); err != nil {
		return fmt.Errorf("journal: save destination state: account %q, destination %q: %w", account, destID, err)
	}
	return nil
}

// checkDestState refuses a malformed state write. The error names the
// account and destination but never repeats the state.
func checkDestState(account, destID, state string) error {
	switch {
	case account == "" || destID == "":
		return fmt.Errorf("empty account or destination (account %q, destination %q)", account, destID)
	case len(state) > maxDestState:
		return fmt.Errorf("account %q, destination %q: state of %d bytes is longer than %d", account, destID, len(state), maxDestState)
	case !utf8.ValidString(state):
		return fmt.Errorf("account %q, destination %q: state is not valid UTF-8", account, destID)
	case strings.IndexByte(state, 0) >= 0:
		return fmt.Errorf("account %q, destination %q: state contains a NUL byte", account, destID)
	}
	return nil
}
