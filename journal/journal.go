// Package journal is popmigrate's checkpoint store. It records, per account
// and message, what was listed on the server, stored (and in which
// destinations), verified, deleted or failed, so that an interrupted run
// resumes with nothing lost and nothing duplicated.
//
// A message's life is listed -> stored -> verified -> deleted, with failed
// beside listed. No write ever lowers a state: a listing, a failure or a
// partial delivery never takes a stored message back to listed or failed.
//
// Beside the messages, the journal keeps one opaque state per account and
// destination for the destinations whose crash safety needs one (mbox's
// committed end offset, IMAP's APPEND intent): see DestState,
// SaveDestState and Batch.DestState; and the UIDLs an account adopted from
// another POP3 client's state, messages popmigrate never downloads,
// verifies or deletes: see Adopt.
//
// The journal is a SQLite database file in WAL mode with synchronous=FULL
// (the embedded default, for one machine), or a PostgreSQL database that
// many popmigrate processes on many machines share (see Open): when a
// commit returns nil, what it recorded survives a crash or a power loss (see
// sqliteDSN and postgres.go). Both hold the same schema, brought up to date
// by the same migrations. The SQL is portable; SQLite specifics live in
// sqlite.go, PostgreSQL's in postgres.go.
//
// Times are stored as BIGINT unix nanoseconds in UTC (NULL for "not yet") and
// returned as UTC time.Time values; a zero time.Time means "not yet".
//
// A *Journal is safe for concurrent use by many goroutines. On SQLite,
// writes are serialised on one connection; on PostgreSQL a few run at once,
// each in its own transaction. Reads run on a separate pool and see the
// last committed state.
package journal

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Message states, as stored in messages.state.
const (
	StateListed   = "listed"
	StateStored   = "stored"
	StateVerified = "verified"
	StateDeleted  = "deleted"
	StateFailed   = "failed"
)

// Kinds of message keys, as stored in messages.uid_kind.
const (
	KindUIDL      = "uidl"      // the server's UIDL
	KindDup       = "dup"       // a UIDL the server listed more than once, disambiguated
	KindSynthetic = "synthetic" // no UIDL: a key derived from the headers and size
)

// maxErrorText bounds the error texts the journal stores. Server responses
// end up in them; a flood must not end up in the database.
const maxErrorText = 4096

var (
	// ErrNotListed is returned when a write names a message that no listing
	// has recorded for that account. Nothing of the write is recorded.
	ErrNotListed = errors.New("journal: message was never listed")
	// ErrNotDelivered is returned by MarkVerified (and Commit of a batch with
	// Verified) for a destination that holds no recorded delivery of the
	// message.
	ErrNotDelivered = errors.New("journal: no recorded delivery to destination")
	// ErrReadOnly is wrapped by the error of every write method of a
	// journal opened with OpenReadOnly. Nothing of the write is recorded.
	ErrReadOnly = errors.New("journal: opened read-only")
)

// SchemaError is returned by Open for a journal written by a newer popmigrate
// whose schema this one does not know, and by OpenReadOnly for a journal
// whose schema is not exactly SchemaVersion (newer, older, or none at all).
// The journal is left as it was.
type SchemaError struct {
	Path    string // the journal file or database (as Journal.Path shows it)
	Version int    // the journal's schema version (0: no journal schema)
	Known   int    // the newest version this popmigrate knows (SchemaVersion)
}

func (e *SchemaError) Error() string {
	switch {
	case e.Version > e.Known:
		return fmt.Sprintf("journal: %s: schema version %d is newer than this popmigrate supports (%d); use a newer popmigrate",
			e.Path, e.Version, e.Known)
	case e.Version == 0:
		return fmt.Sprintf("journal: %s: holds no popmigrate journal (schema version 0)", e.Path)
	}
	return fmt.Sprintf("journal: %s: schema version %d is older than this popmigrate reads (%d); "+
		"run a command that writes the journal (popmigrate run, verify or purge) once to upgrade it",
		e.Path, e.Version, e.Known)
}

// dialect is what a database backend supplies beyond portable SQL.
type dialect interface {
	// rebind rewrites the "?" placeholders of portable SQL to the backend's.
	rebind(query string) string
	// ddl substitutes the backend's spelling of the schema's tokens.
	ddl(stmt string) string
	// lockSchema takes, inside a write transaction and before
	// schemaVersion, the lock that keeps two processes from migrating the
	// database at once; the transaction's end releases it.
	lockSchema(ctx context.Context, tx *sql.Tx) error
	// schemaVersion and setSchemaVersion read and write the schema version
	// inside a transaction. schemaVersion never writes: 0 for a database
	// no migration has touched.
	schemaVersion(ctx context.Context, tx *sql.Tx) (int, error)
	setSchemaVersion(ctx context.Context, tx *sql.Tx, v int) error
	// snapshot returns the options of a read-only transaction all of whose
	// statements see one snapshot.
	snapshot() *sql.TxOptions
	// lockMessageSQL is a statement with the parameters (account, uidl)
	// that locks a message's row until the transaction ends, run before a
	// statement that reads the message's other rows (its deliveries); ""
	// when a write transaction already excludes every other writer.
	lockMessageSQL() string
	// encodeOpaque returns the form in which a text the journal keeps
	// whatever its bytes (a UIDL, a delivery's reference) is stored and
	// bound in queries; decodeOpaque turns a stored one back.
	encodeOpaque(s string) string
	decodeOpaque(stored string) string
	// retryable reports whether a transaction that failed with err was
	// aborted by the database to be run again whole (a deadlock).
	retryable(err error) bool
}

// maxTxAttempts bounds how often a write transaction is run again after
// the database aborted it (dialect.retryable) or it lost a race it can
// recognise (errRaced).
const maxTxAttempts = 5

// errRaced is returned by one attempt of a write transaction whose
// compare-and-set found the row changed by another process since it was
// read: the attempt recorded nothing, and the next one reads again.
var errRaced = errors.New("journal: changed by another process at the same time")

// Journal is an open checkpoint store. Create it with Open (or, to only read
// it, OpenReadOnly) and Close it when done. Its methods may be called from
// many goroutines at once.
type Journal struct {
	path string // as Path returns it: a PostgreSQL password is redacted
	d    dialect
	w    *sql.DB // writes: exactly one connection on SQLite (see openSQLite), a few on PostgreSQL
	r    *sql.DB // reads
	st   stmts
	now  func() time.Time // the clock; tests replace it

	// readOnly: opened by OpenReadOnly. w is then the read-only pool r,
	// and every write method fails with ErrReadOnly before touching it.
	readOnly bool

	closeOnce sync.Once
	closeErr  error
}

// Open opens the journal at path, bringing its schema up to SchemaVersion.
// A journal with a newer schema is refused with a *SchemaError. ctx bounds
// the opening only.
//
// path chooses the backend (see IsPostgres):
//   - a PostgreSQL connection string, a URL such as
//     postgres://USER@HOST:5432/DB?sslmode=verify-full or a libpq
//     keyword/value string such as "host=HOST dbname=DB": the journal's
//     tables in that database, which must exist (Open creates the tables,
//     not the database). What the string leaves out comes from libpq's
//     environment variables (PGHOST, PGPORT, PGUSER, PGPASSWORD,
//     PGPASSFILE, PGSSLMODE, ...) and ~/.pgpass, as for psql. Many
//     processes may open one such journal at once; the account leases
//     keep each account to one of them.
//   - anything else: the SQLite file at that path, created (mode 0600) if
//     missing.
func Open(ctx context.Context, path string) (*Journal, error) {
	j, err := openBackend(ctx, path, false)
	if err != nil {
		return nil, err
	}
	if err := migrate(ctx, j.w, j.d, j.path); err != nil {
		j.closeDBs()
		return nil, err
	}
	if err := j.st.prepare(ctx, j); err != nil {
		j.closeDBs()
		return nil, fmt.Errorf("journal: %s: %w", j.path, err)
	}
	return j, nil
}

// openBackend returns a Journal with the dialect and the pools of the
// journal at path (see Open), not yet migrated or checked, without
// statements. For readOnly, w and r are the same read-only pool.
func openBackend(ctx context.Context, path string, readOnly bool) (*Journal, error) {
	j := &Journal{path: path, d: sqliteDialect{}, now: time.Now, readOnly: readOnly}
	var err error
	switch {
	case IsPostgres(path):
		j.path = redactDSN(path)
		j.d = postgresDialect{}
		j.w, j.r, err = openPostgres(ctx, path, j.path, readOnly)
	case readOnly:
		j.r, err = openSQLiteReadOnly(ctx, path)
		j.w = j.r
	default:
		j.w, j.r, err = openSQLite(ctx, path)
	}
	if err != nil {
		return nil, err
	}
	return j, nil
}

// OpenReadOnly opens the existing journal at path (a file or a PostgreSQL
// database, as for Open) for reading only, for commands that report what
// it holds. It never creates the file or any table, never migrates its
// schema and never writes to it: SQLite opens the file read-only, so its
// bytes and its modification time stay as they were (SQLite may create its
// -wal and -shm companions beside it, as every reader of a WAL database
// does); PostgreSQL's connections run every transaction read-only
// (default_transaction_read_only). Reads see the last committed state, also
// while another process writes the journal.
//
// A missing file or database is an error wrapping fs.ErrNotExist; an empty
// database is a *SchemaError of version 0. A journal whose
// schema version is not SchemaVersion is refused with a *SchemaError: a
// newer one needs a newer popmigrate, an older one a command that opens it
// with Open first (which upgrades it). Every write method of the returned
// Journal fails with an error wrapping ErrReadOnly and changes nothing.
// ctx bounds the opening only.
func OpenReadOnly(ctx context.Context, path string) (*Journal, error) {
	j, err := openBackend(ctx, path, true)
	if err != nil {
		return nil, err
	}
	if err := j.checkSchema(ctx); err != nil {
		j.closeDBs()
		return nil, err
	}
	// The write statements are prepared all the same, on the read-only
	// pool: a write that got past the readOnly checks would still fail
	// in the database, never in a nil statement.
	if err := j.st.prepare(ctx, j); err != nil {
		j.closeDBs()
		return nil, fmt.Errorf("journal: %s: %w", j.path, err)
	}
	return j, nil
}

// IsCorrupt reports whether err (or an error it wraps) says the journal's
// database is damaged, or is not a journal database at all: SQLite's
// SQLITE_CORRUPT and SQLITE_NOTADB, PostgreSQL's data_corrupted and
// index_corrupted (SQLSTATE XX001, XX002). Retrying cannot help such a
// journal; commands report it as a usage error with what to do.
func IsCorrupt(err error) bool {
	return sqliteCorrupt(err) || postgresCorrupt(err)
}

// checkSchema refuses a journal whose schema version is not SchemaVersion,
// reading it in a read-only transaction.
func (j *Journal) checkSchema(ctx context.Context) error {
	tx, err := j.r.BeginTx(ctx, j.d.snapshot())
	if err != nil {
		return fmt.Errorf("journal: %s: %w", j.path, err)
	}
	defer tx.Rollback() // read only: nothing to keep
	v, err := j.d.schemaVersion(ctx, tx)
	if err != nil {
		return fmt.Errorf("journal: %s: read schema version: %w", j.path, err)
	}
	if v != SchemaVersion {
		return &SchemaError{Path: j.path, Version: v, Known: SchemaVersion}
	}
	return nil
}

// writable returns nil, or for a journal opened with OpenReadOnly an error
// wrapping ErrReadOnly that names the file and the operation, op formatted
// with args as by fmt.Sprintf.
func (j *Journal) writable(op string, args ...any) error {
	if j.readOnly {
		return fmt.Errorf("journal: %s: %s: %w", j.path, fmt.Sprintf(op, args...), ErrReadOnly)
	}
	return nil
}

// Path returns the path the journal was opened with; for PostgreSQL, the
// connection string with every password in it replaced by "xxxxx". Errors
// name the journal by it.
func (j *Journal) Path() string { return j.path }

// Close closes the journal. Statements already running finish first; calls
// made after Close fail. Calling Close again returns the first call's result.
func (j *Journal) Close() error {
	j.closeOnce.Do(func() {
		err := j.st.close()
		if cerr := j.closeDBs(); err == nil {
			err = cerr
		}
		if err != nil {
			j.closeErr = fmt.Errorf("journal: close %s: %w", j.path, err)
		}
	})
	return j.closeErr
}

func (j *Journal) closeDBs() error {
	err := j.r.Close()
	if j.w == j.r {
		return err
	}
	if werr := j.w.Close(); err == nil {
		err = werr
	}
	return err
}

// q rewrites portable SQL for the journal's dialect.
func (j *Journal) q(query string) string { return j.d.rebind(query) }

// retry runs fn, one attempt of a write transaction, and runs it again
// while it fails with an error that another attempt may cure: the database
// aborted it (a deadlock, see dialect.retryable) or it lost a race it
// recognised (errRaced). At most maxTxAttempts attempts; never once ctx is
// done.
func (j *Journal) retry(ctx context.Context, fn func() error) error {
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || attempt >= maxTxAttempts || ctx.Err() != nil ||
			!(errors.Is(err, errRaced) || j.d.retryable(err)) {
			return err
		}
	}
}

// StartRun records the start of a run and returns its id. args describes the
// invocation for the record; the caller must have removed every secret from
// it. It is stored as valid UTF-8 without NUL (see cleanText).
func (j *Journal) StartRun(ctx context.Context, args string) (int64, error) {
	if err := j.writable("start run"); err != nil {
		return 0, err
	}
	var id int64
	err := j.w.QueryRowContext(ctx, j.q(`INSERT INTO runs (started_at, args) VALUES (?, ?) RETURNING id`),
		toNanos(j.now()), cleanText(args)).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("journal: start run: %w", err)
	}
	return id, nil
}

// FinishRun records the end of run id: its exit code and summary, a JSON
// document (nil for none). An invalid JSON summary or an unknown id is an
// error and records nothing.
func (j *Journal) FinishRun(ctx context.Context, id int64, exitCode int, summary []byte) error {
	if err := j.writable("finish run"); err != nil {
		return err
	}
	var sum any // NULL
	if summary != nil {
		if !json.Valid(summary) {
			return fmt.Errorf("journal: finish run %d: summary is not valid JSON", id)
		}
		sum = string(summary)
	}
	res, err := j.w.ExecContext(ctx, j.q(`UPDATE runs SET finished_at = ?, exit_code = ?, summary = ? WHERE id = ?`),
		toNanos(j.now()), exitCode, sum, id)
	if err != nil {
		return fmt.Errorf("journal: finish run %d: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("journal: finish run %d: %w", id, err)
	} else if n == 0 {
		return fmt.Errorf("journal: finish run %d: no such run", id)
	}
	return nil
}

// Run is one recorded run.
type Run struct {
	ID         int64
	StartedAt  time.Time
	FinishedAt time.Time // zero while the run has not finished (or crashed)
	Args       string
	Summary    []byte // nil when none was recorded
	ExitCode   int    // meaningful only when FinishedAt is set
}

// Runs returns every recorded run, oldest first.
func (j *Journal) Runs(ctx context.Context) ([]Run, error) {
	rows, err := j.r.QueryContext(ctx, j.q(`SELECT id, started_at, finished_at, args, summary, exit_code FROM runs ORDER BY id`))
	if err != nil {
		return nil, fmt.Errorf("journal: runs: %w", err)
	}
	defer rows.Close()
	var runs []Run
	for rows.Next() {
		var (
			r        Run
			started  int64
			finished sql.NullInt64
			summary  sql.NullString
			exit     sql.NullInt64
		)
		if err := rows.Scan(&r.ID, &started, &finished, &r.Args, &summary, &exit); err != nil {
			return nil, fmt.Errorf("journal: runs: %w", err)
		}
		r.StartedAt = fromNanos(sql.NullInt64{Int64: started, Valid: true})
		r.FinishedAt = fromNanos(finished)
		if summary.Valid {
			r.Summary = []byte(summary.String)
		}
		r.ExitCode = int(exit.Int64)
		runs = append(runs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("journal: runs: %w", err)
	}
	return runs, nil
}

// toNanos converts t to the stored form: unix nanoseconds. A zero t is NULL.
func toNanos(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixNano()
}

// fromNanos converts a stored time back; NULL is the zero time.
func fromNanos(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.Unix(0, n.Int64).UTC()
}

// clipText bounds an error text to maxErrorText bytes and makes it valid
// UTF-8 without NUL (see cleanText; a rune cut at the end becomes U+FFFD).
func clipText(s string) string {
	if len(s) > maxErrorText {
		s = s[:maxErrorText]
	}
	return cleanText(s)
}

// cleanText makes a text for the record (an error, a run's arguments) valid
// UTF-8 without NUL bytes, what every backend's text holds: invalid bytes
// and NUL become U+FFFD.
func cleanText(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}
