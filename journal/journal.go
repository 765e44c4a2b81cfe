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
// SaveDestState and Batch.DestState.
//
// The journal is a SQLite database in WAL mode with synchronous=FULL: when a
// commit returns nil, what it recorded survives a crash or a power loss (see
// sqliteDSN). The SQL is portable; SQLite specifics live in sqlite.go.
//
// Times are stored as BIGINT unix nanoseconds in UTC (NULL for "not yet") and
// returned as UTC time.Time values; a zero time.Time means "not yet".
//
// A *Journal is safe for concurrent use by many goroutines. Writes are
// serialised on one connection; reads run on a separate pool and see the
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
	Path    string // the journal file
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
	// schemaVersion and setSchemaVersion read and write the schema version
	// inside a transaction.
	schemaVersion(ctx context.Context, tx *sql.Tx) (int, error)
	setSchemaVersion(ctx context.Context, tx *sql.Tx, v int) error
}

// Journal is an open checkpoint store. Create it with Open (or, to only read
// it, OpenReadOnly) and Close it when done. Its methods may be called from
// many goroutines at once.
type Journal struct {
	path string
	d    dialect
	w    *sql.DB // writes: exactly one connection (see openSQLite)
	r    *sql.DB // reads
	st   stmts
	now  func() time.Time // the clock; tests replace it

	// readOnly: opened by OpenReadOnly. w is then the read-only pool r,
	// and every write method fails with ErrReadOnly before touching it.
	readOnly bool

	closeOnce sync.Once
	closeErr  error
}

// Open opens the journal at path, creating it (mode 0600) if missing and
// bringing its schema up to SchemaVersion. A journal with a newer schema is
// refused with a *SchemaError. ctx bounds the opening only.
func Open(ctx context.Context, path string) (*Journal, error) {
	w, r, err := openSQLite(ctx, path)
	if err != nil {
		return nil, err
	}
	j := &Journal{path: path, d: sqliteDialect{}, w: w, r: r, now: time.Now}
	if err := migrate(ctx, w, j.d, path); err != nil {
		j.closeDBs()
		return nil, err
	}
	if err := j.st.prepare(ctx, j); err != nil {
		j.closeDBs()
		return nil, fmt.Errorf("journal: %s: %w", path, err)
	}
	return j, nil
}

// OpenReadOnly opens the existing journal at path for reading only, for
// commands that report what it holds. It never creates the file, never
// migrates its schema and never writes to it: SQLite opens the file
// read-only, so its bytes and its modification time stay as they were
// (SQLite may create its -wal and -shm companions beside it, as every
// reader of a WAL database does). Reads see the last committed state, also
// while another process writes the journal.
//
// A missing file is an error wrapping fs.ErrNotExist. A journal whose
// schema version is not SchemaVersion is refused with a *SchemaError: a
// newer one needs a newer popmigrate, an older one a command that opens it
// with Open first (which upgrades it). Every write method of the returned
// Journal fails with an error wrapping ErrReadOnly and changes nothing.
// ctx bounds the opening only.
func OpenReadOnly(ctx context.Context, path string) (*Journal, error) {
	r, err := openSQLiteReadOnly(ctx, path)
	if err != nil {
		return nil, err
	}
	j := &Journal{path: path, d: sqliteDialect{}, w: r, r: r, now: time.Now, readOnly: true}
	if err := j.checkSchema(ctx); err != nil {
		j.closeDBs()
		return nil, err
	}
	// The write statements are prepared all the same, on the read-only
	// pool: a write that got past the readOnly checks would still fail
	// in SQLite, never in a nil statement.
	if err := j.st.prepare(ctx, j); err != nil {
		j.closeDBs()
		return nil, fmt.Errorf("journal: %s: %w", path, err)
	}
	return j, nil
}

// checkSchema refuses a journal whose schema version is not SchemaVersion,
// reading it in a read-only transaction.
func (j *Journal) checkSchema(ctx context.Context) error {
	tx, err := j.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
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

// Path returns the path the journal was opened with.
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

// StartRun records the start of a run and returns its id. args describes the
// invocation for the record; the caller must have removed every secret from
// it.
func (j *Journal) StartRun(ctx context.Context, args string) (int64, error) {
	if err := j.writable("start run"); err != nil {
		return 0, err
	}
	var id int64
	err := j.w.QueryRowContext(ctx, j.q(`INSERT INTO runs (started_at, args) VALUES (?, ?) RETURNING id`),
		toNanos(j.now()), args).Scan(&id)
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
// UTF-8 (invalid bytes, including a rune cut at the end, become U+FFFD).
func clipText(s string) string {
	if len(s) > maxErrorText {
		s = s[:maxErrorText]
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
