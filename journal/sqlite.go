package journal

// This file is the SQLite dialect: everything SQLite-only lives here (the
// driver, the DSN and its PRAGMAs, the file on disk and its mode, the schema
// version in PRAGMA user_version, the rowid primary key). postgres.go is the
// PostgreSQL dialect. The rest of the package speaks portable SQL through
// database/sql: "?" placeholders (the PostgreSQL dialect rewrites them to $n
// in rebind), INSERT ... ON CONFLICT
// (...) DO UPDATE SET col = excluded.col (the same in SQLite >= 3.24 and
// PostgreSQL >= 9.5), INSERT ... RETURNING (SQLite >= 3.35), window functions
// (SQLite >= 3.25), BIGINT unix nanoseconds for times and TEXT for the rest.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mattn/go-sqlite3" // also registers the "sqlite3" database/sql driver
)

// sqliteCorrupt reports whether err is SQLite's SQLITE_CORRUPT or
// SQLITE_NOTADB.
func sqliteCorrupt(err error) bool {
	var se sqlite3.Error
	if errors.As(err, &se) {
		return se.Code == sqlite3.ErrCorrupt || se.Code == sqlite3.ErrNotADB
	}
	return false
}

// sqliteBusy reports whether err is SQLite's SQLITE_BUSY or SQLITE_LOCKED.
func sqliteBusy(err error) bool {
	var se sqlite3.Error
	if errors.As(err, &se) {
		return se.Code == sqlite3.ErrBusy || se.Code == sqlite3.ErrLocked
	}
	return false
}

const (
	sqliteDriver = "sqlite3"

	// sqliteBusyTimeoutMS is how long a connection waits for a lock held by
	// another connection (another popmigrate on the same journal, or a
	// checkpoint) before it gives up with SQLITE_BUSY.
	sqliteBusyTimeoutMS = 10000

	// sqliteReadConns bounds the read pool. Reads never block the writer and
	// are not blocked by it in WAL mode.
	sqliteReadConns = 4
)

// sqliteDialect implements dialect for SQLite.
type sqliteDialect struct{}

func (sqliteDialect) rebind(query string) string { return query }

// ddl substitutes the one schema type SQLite spells its own way: an integer
// primary key that the database assigns. "INTEGER PRIMARY KEY" is SQLite's
// rowid alias.
func (sqliteDialect) ddl(stmt string) string {
	return strings.ReplaceAll(stmt, "{{serial_pk}}", "INTEGER PRIMARY KEY")
}

// schemaVersion reads PRAGMA user_version: 0 for a database no migration has
// touched.
func (sqliteDialect) schemaVersion(ctx context.Context, tx *sql.Tx) (int, error) {
	var v int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return 0, err
	}
	return v, nil
}

// setSchemaVersion writes PRAGMA user_version inside tx, so the version
// changes if and only if the migration's transaction commits. A PRAGMA takes
// no bound parameters; v is an int, formatted by us.
func (sqliteDialect) setSchemaVersion(ctx context.Context, tx *sql.Tx, v int) error {
	_, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v))
	return err
}

// lockSchema has nothing to do: the write pool's transactions start with
// BEGIN IMMEDIATE, which holds the database's write lock from the start.
func (sqliteDialect) lockSchema(context.Context, *sql.Tx) error { return nil }

// snapshot: a SQLite transaction sees one snapshot from its first read on.
func (sqliteDialect) snapshot() *sql.TxOptions { return &sql.TxOptions{ReadOnly: true} }

// lockMessageSQL is empty: a write transaction holds the write lock of the
// whole database, so no other writer can change a message's deliveries
// while it reads them.
func (sqliteDialect) lockMessageSQL() string { return "" }

// SQLite's TEXT holds any bytes: a UIDL or a reference is stored as it is.
func (sqliteDialect) encodeOpaque(s string) string      { return s }
func (sqliteDialect) decodeOpaque(stored string) string { return stored }

// retryable is always false: with one write connection and BEGIN
// IMMEDIATE, a writer waits for the database's one write lock
// (busy_timeout) and no transaction is aborted to be run again.
func (sqliteDialect) retryable(error) bool { return false }

// sqliteDSN returns the go-sqlite3 DSN for the database file at path. path
// must be absolute. mode=rw: SQLite never creates the file, prepareSQLiteFile
// does (with mode 0600).
//
// Every connection gets (the write connection sets journal_mode, which
// the file keeps, and checks it; see openSQLite):
//   - journal_mode=WAL: readers and the writer do not block each other, and a
//     commit appends to the log instead of rewriting pages.
//   - synchronous=FULL: the journal commit is popmigrate's durability point.
//     The pipeline acts on a commit as if it were permanent: it moves on,
//     verifies, and eventually deletes from the source server. With
//     synchronous=NORMAL (go-sqlite3's default in WAL mode) a WAL commit is
//     durable only at the next checkpoint, so a power loss could forget
//     commits that already returned. FULL fsyncs the WAL on every commit; the
//     cost is one fsync per batch, which group commit amortises.
//   - foreign_keys=ON: deliveries must belong to a listed message, messages to
//     a known account.
//   - busy_timeout: a lock held by another connection is waited for, not
//     reported as SQLITE_BUSY.
//
// The write pool also gets _txlock=immediate: every transaction starts with
// BEGIN IMMEDIATE and takes the write lock up front, where busy_timeout
// applies. A deferred transaction that upgrades from read to write can fail
// with SQLITE_BUSY at once, whatever the timeout. The read pool gets
// query_only: it can never write, by mistake or otherwise.
func sqliteDSN(path string, write bool) string {
	q := url.Values{}
	q.Set("mode", "rw")
	q.Set("_synchronous", "FULL")
	q.Set("_foreign_keys", "1")
	q.Set("_busy_timeout", fmt.Sprint(sqliteBusyTimeoutMS))
	if write {
		q.Set("_journal_mode", "WAL")
		q.Set("_txlock", "immediate")
	} else {
		// The writer made the file a WAL database before any reader
		// opens (WAL mode is persistent): a reader that set it again
		// could meet another process's switch and fail at once.
		q.Set("_query_only", "1")
	}
	return "file:" + sqliteURIPath(path) + "?" + q.Encode()
}

// sqliteReadOnlyDSN returns the go-sqlite3 DSN for reading the existing
// database file at path (absolute) and nothing else: mode=ro opens the file
// read-only (SQLite neither creates nor writes it) and query_only refuses
// any write statement besides. No journal_mode is set: that PRAGMA may
// write, and the file is already in WAL mode if a writer ever opened it.
// SQLite may create the -wal and -shm files beside the database, as any
// reader of a WAL database does (they belong to SQLite's locking, not to
// the journal's data, and take the database file's mode).
func sqliteReadOnlyDSN(path string) string {
	q := url.Values{}
	q.Set("mode", "ro")
	q.Set("_query_only", "1")
	q.Set("_busy_timeout", fmt.Sprint(sqliteBusyTimeoutMS))
	return "file:" + sqliteURIPath(path) + "?" + q.Encode()
}

// sqliteURIPath escapes path for a SQLite URI: a SQLite URI ends its path
// at '?' or '#' and decodes %HH, so those three are escaped; everything
// else in a file name is taken literally.
func sqliteURIPath(path string) string {
	return strings.NewReplacer("%", "%25", "?", "%3F", "#", "%23").Replace(filepath.ToSlash(path))
}

// openSQLiteReadOnly opens the existing journal at path for reading: one
// pool of read-only connections (see sqliteReadOnlyDSN). A missing path is
// an error wrapping fs.ErrNotExist, never created; a path that is not a
// regular file is refused.
func openSQLiteReadOnly(ctx context.Context, path string) (*sql.DB, error) {
	if path == "" {
		return nil, errors.New("journal: empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("journal: %s: %w", path, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("journal: %s: not a regular file", path)
	}
	r, err := sql.Open(sqliteDriver, sqliteReadOnlyDSN(abs))
	if err != nil {
		return nil, fmt.Errorf("journal: %s: %w", path, err)
	}
	r.SetMaxOpenConns(sqliteReadConns)
	r.SetMaxIdleConns(sqliteReadConns)
	if err := r.PingContext(ctx); err != nil {
		r.Close()
		return nil, fmt.Errorf("journal: %s: %w", path, err)
	}
	return r, nil
}

// openSQLite opens the journal at path: the file is created 0600 if missing,
// then a write pool of exactly one connection and a read pool are opened.
//
// Why one write connection: the pipeline commits from one goroutine per
// account, many accounts at once. With a single connection, database/sql
// queues writers in Go (each waits for the connection, honouring its
// context), so two writers of this process never meet inside SQLite and
// SQLITE_BUSY cannot surface between them. SQLite allows one writer at a
// time anyway, so nothing is lost. Another process on the same file is
// waited for through BEGIN IMMEDIATE and busy_timeout.
func openSQLite(ctx context.Context, path string) (w, r *sql.DB, err error) {
	if path == "" {
		return nil, nil, errors.New("journal: empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, nil, fmt.Errorf("journal: %s: %w", path, err)
	}
	if err := prepareSQLiteFile(abs); err != nil {
		return nil, nil, err
	}
	// Several processes that open a new journal at once (workers started
	// together) race to turn it into WAL mode, and SQLite answers the
	// losers SQLITE_BUSY at once, without its busy handler: the first
	// connection is opened again, within the busy timeout.
	deadline := time.Now().Add(sqliteBusyTimeoutMS * time.Millisecond)
	for pause := 5 * time.Millisecond; ; pause = min(2*pause, 200*time.Millisecond) {
		w, err = sql.Open(sqliteDriver, sqliteDSN(abs, true))
		if err != nil {
			return nil, nil, fmt.Errorf("journal: %s: %w", path, err)
		}
		w.SetMaxOpenConns(1)
		w.SetMaxIdleConns(1)
		w.SetConnMaxLifetime(0)
		w.SetConnMaxIdleTime(0)
		err = checkSQLitePragmas(ctx, w)
		if err == nil {
			break
		}
		w.Close()
		if !sqliteBusy(err) || time.Now().Add(pause).After(deadline) {
			return nil, nil, fmt.Errorf("journal: %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("journal: %s: %w", path, ctx.Err())
		case <-time.After(pause):
		}
	}
	r, err = sql.Open(sqliteDriver, sqliteDSN(abs, false))
	if err != nil {
		w.Close()
		return nil, nil, fmt.Errorf("journal: %s: %w", path, err)
	}
	r.SetMaxOpenConns(sqliteReadConns)
	r.SetMaxIdleConns(sqliteReadConns)
	return w, r, nil
}

// checkSQLitePragmas makes sure the settings the durability argument rests on
// are in force on the write connection. journal_mode=WAL silently stays
// "delete" where WAL is unavailable (some network file systems): popmigrate
// refuses such a journal instead of running with other guarantees.
func checkSQLitePragmas(ctx context.Context, db *sql.DB) error {
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return err
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("WAL journal mode is not available here (journal_mode=%s); put the journal on a local file system", mode)
	}
	var syncMode, fk int
	if err := db.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&syncMode); err != nil {
		return err
	}
	if syncMode < 2 { // 2 = FULL, 3 = EXTRA
		return fmt.Errorf("synchronous=%d, want FULL", syncMode)
	}
	if err := db.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil {
		return err
	}
	if fk != 1 {
		return errors.New("foreign keys are not enforced")
	}
	return nil
}

// prepareSQLiteFile makes sure the database file exists with mode 0600 before
// SQLite opens it. A missing file is created with O_CREATE|O_EXCL and then
// chmod-ed: the umask may have removed bits from 0600 (SQLite needs to read
// and write it) and must not be able to add any. An existing journal whose
// mode is wider than 0600 is tightened to 0600, and so are leftover -wal and
// -shm files. SQLite creates -wal and -shm with the mode of the database
// file, so they are 0600 too.
func prepareSQLiteFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		if err := f.Chmod(0o600); err != nil {
			f.Close()
			return fmt.Errorf("journal: %s: %w", path, err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("journal: %s: %w", path, err)
		}
		return syncDir(filepath.Dir(path))
	case !errors.Is(err, fs.ErrExist):
		return fmt.Errorf("journal: create %s: %w", path, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("journal: %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("journal: %s: not a regular file", path)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) && p != path {
			continue
		}
		if err != nil {
			return fmt.Errorf("journal: %s: %w", p, err)
		}
		if fi.Mode().Perm()&^0o600 != 0 {
			if err := os.Chmod(p, 0o600); err != nil {
				return fmt.Errorf("journal: %s: mode %#o is wider than 0600: %w", p, fi.Mode().Perm(), err)
			}
		}
	}
	return nil
}

// syncDir fsyncs a directory so that a file just created in it survives a
// crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("journal: %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("journal: sync %s: %w", dir, err)
	}
	return nil
}
