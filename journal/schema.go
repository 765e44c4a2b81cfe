package journal

import (
	"context"
	"database/sql"
	"fmt"
)

// A migration moves the schema from version-1 to version. Its statements run
// in one transaction together with the version bump, so a migration either
// happens whole or not at all.
type migration struct {
	version int
	stmts   []string
}

// migrations is the ordered schema history. Append only: never edit a
// migration that has shipped, add the next one. The statements are portable
// SQL; "{{serial_pk}}" is the one token a dialect substitutes (and
// PostgreSQL's spells TEXT as TEXT COLLATE "C", see postgresDialect.ddl).
//
// Times are BIGINT unix nanoseconds, UTC; NULL means "not yet". Sizes are
// bytes. sha256 values are lower-case hex of the canonical form (CRLF -> LF).
var migrations = []migration{
	{version: 1, stmts: []string{
		`CREATE TABLE runs (
			id          {{serial_pk}},
			started_at  BIGINT NOT NULL,
			finished_at BIGINT,
			args        TEXT NOT NULL DEFAULT '',
			summary     TEXT,
			exit_code   INTEGER
		)`,
		`CREATE TABLE accounts (
			account      TEXT NOT NULL PRIMARY KEY,
			source       TEXT NOT NULL DEFAULT '',
			last_run     BIGINT,
			last_error   TEXT,
			server_count INTEGER NOT NULL DEFAULT 0,
			server_bytes BIGINT NOT NULL DEFAULT 0,
			updated_at   BIGINT NOT NULL
		)`,
		`CREATE TABLE messages (
			account       TEXT NOT NULL REFERENCES accounts (account),
			uidl          TEXT NOT NULL,
			uid_kind      TEXT NOT NULL CHECK (uid_kind IN ('uidl', 'dup', 'synthetic')),
			listed_size   BIGINT NOT NULL CHECK (listed_size >= 0),
			received_size BIGINT CHECK (received_size >= 0),
			sha256        TEXT,
			state         TEXT NOT NULL CHECK (state IN ('listed', 'stored', 'verified', 'deleted', 'failed')),
			error         TEXT,
			attempts      INTEGER NOT NULL DEFAULT 0,
			first_seen    BIGINT NOT NULL,
			last_seen     BIGINT NOT NULL,
			stored_at     BIGINT,
			verified_at   BIGINT,
			deleted_at    BIGINT,
			PRIMARY KEY (account, uidl)
		)`,
		`CREATE INDEX messages_account_state ON messages (account, state)`,
		`CREATE TABLE deliveries (
			account     TEXT NOT NULL,
			uidl        TEXT NOT NULL,
			dest_id     TEXT NOT NULL,
			ref         TEXT NOT NULL DEFAULT '',
			sha256      TEXT NOT NULL,
			stored_at   BIGINT NOT NULL,
			verified_at BIGINT,
			PRIMARY KEY (account, uidl, dest_id),
			FOREIGN KEY (account, uidl) REFERENCES messages (account, uidl)
		)`,
	}},
	// Version 2: the state a destination keeps for its crash safety, one row
	// per (account, destination): mbox's committed end offset, IMAP's APPEND
	// intent. The state is opaque to the journal. There is no foreign key to
	// accounts: a destination may record its state before the account's
	// first listing.
	{version: 2, stmts: []string{
		`CREATE TABLE dest_states (
			account    TEXT NOT NULL,
			dest_id    TEXT NOT NULL,
			state      TEXT NOT NULL,
			updated_at BIGINT NOT NULL,
			PRIMARY KEY (account, dest_id)
		)`,
	}},
	// Version 3: suspect messages and account leases.
	//
	// messages.suspect is why a message is suspect (its RETR size far from
	// its LIST size), NULL when it is not: a suspect message is kept and
	// reported, and never deleted from the source without an explicit
	// flag. It sits beside the state rather than being one, since a
	// suspect message is stored (and may be verified) all the same.
	//
	// leases holds one row per account that a process has worked on: the
	// holder (a random id per process, with its pid and host for people
	// to read), the epoch (raised at every change of holder, so a commit
	// fenced by an older epoch fails), and when it was acquired, last
	// renewed and expires. A released lease keeps its row and epoch with
	// an empty holder.
	{version: 3, stmts: []string{
		`ALTER TABLE messages ADD COLUMN suspect TEXT`,
		`CREATE TABLE leases (
			account      TEXT NOT NULL PRIMARY KEY,
			holder       TEXT NOT NULL,
			pid          INTEGER NOT NULL,
			host         TEXT NOT NULL,
			epoch        BIGINT NOT NULL,
			acquired_at  BIGINT NOT NULL,
			heartbeat_at BIGINT NOT NULL,
			expires_at   BIGINT NOT NULL
		)`,
	}},
	// Version 4: the journal describes its migration. account_destinations
	// holds each destination an account was run with, by id, with the spec
	// that opens it (templates expanded, never a secret), so that verify,
	// manifest, status and reports need nothing but the journal.
	{version: 4, stmts: []string{
		`CREATE TABLE account_destinations (
			account    TEXT NOT NULL,
			dest_id    TEXT NOT NULL,
			spec       TEXT NOT NULL,
			updated_at BIGINT NOT NULL,
			PRIMARY KEY (account, dest_id)
		)`,
	}},
	// Version 5: UIDLs adopted from another POP3 client's state (popmigrate
	// journal import): messages that getmail, mpop or fetchmail fetched
	// and left on the server before popmigrate took the mailbox over. A
	// run never downloads an adopted UIDL, verify expects no copy of it
	// and purge never deletes it (popmigrate never read a copy of it
	// back). tool names the client whose state file it came from, file
	// is that file as given to the import, imported_at when it was
	// recorded. The account row exists before its adoptions (Adopt
	// creates it), as before its messages.
	{version: 5, stmts: []string{
		`CREATE TABLE adopted (
			account     TEXT NOT NULL REFERENCES accounts (account),
			uidl        TEXT NOT NULL,
			tool        TEXT NOT NULL,
			file        TEXT NOT NULL,
			imported_at BIGINT NOT NULL,
			PRIMARY KEY (account, uidl)
		)`,
	}},
	// Version 6: messages recorded by popmigrate journal rebuild, which
	// matched the copies a destination already held against the server's
	// listing instead of downloading them. matched_by says how strongly
	// (see the Matched constants): 'headers' (same header block, a size
	// that fits, not compared byte for byte) keeps the message from
	// being deleted from the source until a rebuild with --confirm
	// compares it. One row per message, the weakest match of its copies.
	{version: 6, stmts: []string{
		`CREATE TABLE rebuilt (
			account    TEXT NOT NULL,
			uidl       TEXT NOT NULL,
			matched_by TEXT NOT NULL CHECK (matched_by IN ('key', 'content', 'headers')),
			rebuilt_at BIGINT NOT NULL,
			PRIMARY KEY (account, uidl),
			FOREIGN KEY (account, uidl) REFERENCES messages (account, uidl)
		)`,
	}},
}

// SchemaVersion is the newest journal schema this package knows: the version
// of the last migration. Open refuses a journal with a newer version.
const SchemaVersion = 6

// migrate brings the database up to SchemaVersion, one migration per
// transaction. It refuses a database whose version is newer than
// SchemaVersion with a *SchemaError and changes nothing in it.
func migrate(ctx context.Context, db *sql.DB, d dialect, path string) error {
	return migrateTo(ctx, db, d, path, SchemaVersion)
}

// migrateTo brings the database up to version target (at most
// SchemaVersion), one migration per transaction. A database at target or
// above is left as it is, except that one newer than SchemaVersion is
// refused with a *SchemaError. Tests use a target below SchemaVersion to
// build the journal an older popmigrate wrote.
func migrateTo(ctx context.Context, db *sql.DB, d dialect, path string, target int) error {
	for {
		done, err := migrateOne(ctx, db, d, path, target)
		if err != nil || done {
			return err
		}
	}
}

// migrateOne applies the next pending migration towards target, if any. The
// version is read inside the transaction after the dialect's schema lock
// is taken (SQLite: the write lock of BEGIN IMMEDIATE; PostgreSQL: an
// advisory lock), so two processes opening the same journal at once never
// apply a migration twice.
func migrateOne(ctx context.Context, db *sql.DB, d dialect, path string, target int) (done bool, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("journal: %s: migrate: %w", path, err)
	}
	defer tx.Rollback() // no-op after Commit
	if err := d.lockSchema(ctx, tx); err != nil {
		return false, fmt.Errorf("journal: %s: migrate: lock: %w", path, err)
	}
	v, err := d.schemaVersion(ctx, tx)
	if err != nil {
		return false, fmt.Errorf("journal: %s: read schema version: %w", path, err)
	}
	if v > SchemaVersion {
		return false, &SchemaError{Path: path, Version: v, Known: SchemaVersion}
	}
	if v >= target {
		return true, nil
	}
	var m *migration
	for i := range migrations {
		if migrations[i].version > v {
			m = &migrations[i]
			break
		}
	}
	if m == nil { // cannot happen: the last migration is SchemaVersion
		return false, fmt.Errorf("journal: %s: no migration from schema version %d", path, v)
	}
	for i, s := range m.stmts {
		if _, err := tx.ExecContext(ctx, d.ddl(s)); err != nil {
			return false, fmt.Errorf("journal: %s: migration %d statement %d: %w", path, m.version, i+1, err)
		}
	}
	if err := d.setSchemaVersion(ctx, tx, m.version); err != nil {
		return false, fmt.Errorf("journal: %s: migration %d: set version: %w", path, m.version, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("journal: %s: migration %d: commit: %w", path, m.version, err)
	}
	return m.version >= target, nil
}
