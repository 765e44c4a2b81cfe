package journal

// This file is the PostgreSQL dialect: the driver (jackc/pgx through
// database/sql), the connection settings the journal's guarantees rest on,
// the schema version in a one-row table, the lock that serialises
// migrations, and the spelling of the schema's types. The SQL of the rest of
// the package is the same for SQLite and PostgreSQL.
//
// Isolation: every write runs at READ COMMITTED, set on the write pool's
// connections (default_transaction_isolation), whatever the server's
// default. That is enough, and SERIALIZABLE would only add aborts to retry,
// because each write transaction reads nothing it does not also lock:
//   - the writes are UPDATEs and upserts of single rows by primary key whose
//     new values depend only on the row itself (attempts + 1, "state IN
//     (...)", COALESCE(stored_at, ?)). At READ COMMITTED PostgreSQL locks
//     the row and evaluates such a statement against its latest committed
//     version, waiting for a concurrent writer of the row to finish first,
//     so no update is lost and no state goes down;
//   - a fenced commit starts with the lease's UPDATE ... WHERE holder = ?
//     AND epoch = ?: the lease row stays locked until the batch commits, so
//     a takeover waits for the batch, and a batch whose lease was taken
//     over matches no row and records nothing;
//   - AcquireLease reads the lease and then writes it with a compare-and-set
//     (the upsert's WHERE names the row as it was read), so of two
//     processes that read the same expired lease only one takes it; the
//     other reads again and is told who holds it;
//   - the one statement that reads other rows than it writes, the promotion
//     of a message to 'verified' once no delivery is unverified, runs after
//     the message's row is locked (lockMessageSQL), so every transaction
//     that changed a delivery of the message has committed and is seen;
//   - a migration takes a transaction-scoped advisory lock before it reads
//     the schema version, and READ COMMITTED gives that read a snapshot
//     taken after the lock, so two processes migrating at once apply each
//     migration once.
// Status, the one multi-statement read, runs in a READ ONLY REPEATABLE READ
// transaction: one snapshot for all its queries.
//
// Durability: a commit that returned is durable when synchronous_commit is
// on (or local, remote_write, remote_apply). The write pool sets it on
// unless the connection string names it; a journal whose writes would run
// with synchronous_commit=off is refused, as a SQLite journal without WAL
// and synchronous=FULL is.
//
// Text: PostgreSQL's text holds valid UTF-8 without NUL bytes (in a UTF8
// database). Error texts and a run's arguments are made so before they are
// stored (clipText, cleanText); destination states are refused otherwise
// (checkDestState). A UIDL (untrusted bytes from the server) and a
// delivery's reference (opaque to the journal) are stored as they are when
// they are such text, and otherwise escaped (encodeOpaque), so that they
// still round-trip exactly. Account names, sources and destination ids
// must be valid UTF-8 without NUL: PostgreSQL refuses a write that carries
// anything else, and nothing of it is recorded. Every text
// column compares and sorts bytewise (COLLATE "C"), as SQLite's do, whatever
// the database's locale.

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

const (
	// pgWriteConns bounds the write pool. Unlike SQLite, PostgreSQL runs
	// many writers at once, each on its own rows (one account per lease
	// holder), so commits of different accounts need not queue behind each
	// other; a few connections keep N workers x pgWriteConns within a
	// server's max_connections.
	pgWriteConns = 4
	// pgReadConns bounds the read pool (status, resume and verify queries).
	pgReadConns = 2
	// pgConnMaxIdle closes connections a quiet process no longer needs, so
	// many idle workers do not hold the server's connection slots.
	pgConnMaxIdle = time.Minute

	// pgMigrationLock is the key of the advisory lock that serialises
	// migrations of one database ("popmig" in ASCII).
	pgMigrationLock = 0x706f706d6967

	// pgMinVersion is the oldest server the journal runs on: identity
	// columns need PostgreSQL 10.
	pgMinVersion = 100000
)

// libpqKeyword matches the start of a libpq keyword/value connection string.
var libpqKeyword = regexp.MustCompile(`^\s*(host|hostaddr|port|dbname|user|password|passfile|service|sslmode|sslrootcert|connect_timeout|application_name|target_session_attrs)\s*=`)

// IsPostgres reports whether Open and OpenReadOnly take path for a
// PostgreSQL connection string rather than a SQLite file: a URL with the
// scheme postgres or postgresql (in any case), or a libpq keyword/value
// string that starts with one of libpq's keywords ("host=db1
// dbname=migration ..."). Anything else is a file name; a SQLite file whose
// name looks like a keyword string can be given as "./host=...".
func IsPostgres(path string) bool {
	lower := strings.ToLower(path)
	return strings.HasPrefix(lower, "postgres://") || strings.HasPrefix(lower, "postgresql://") ||
		libpqKeyword.MatchString(path)
}

var (
	// urlPasswordParam matches a password given as a URL query parameter.
	urlPasswordParam = regexp.MustCompile(`([?&](?:ssl)?password=)[^&#]*`)
	// keywordPassword matches a password of a keyword/value string, quoted
	// or not.
	keywordPassword = regexp.MustCompile(`\b((?:ssl)?password)\s*=\s*('(?:[^'\\]|\\.)*'|\S*)`)
)

// redactDSN returns dsn with every password in it replaced by "xxxxx": the
// one in a URL's user info, and password= or sslpassword= in a URL's query
// or in a keyword/value string. It is what Journal.Path and every error
// show of a PostgreSQL journal.
func redactDSN(dsn string) string {
	i := strings.Index(dsn, "://")
	if i < 0 {
		return keywordPassword.ReplaceAllString(dsn, "${1}=xxxxx")
	}
	rest := dsn[i+3:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	auth := rest[:end]
	if at := strings.LastIndex(auth, "@"); at >= 0 {
		if c := strings.Index(auth[:at], ":"); c >= 0 {
			auth = auth[:c] + ":xxxxx" + auth[at:]
		}
	}
	return dsn[:i+3] + auth + urlPasswordParam.ReplaceAllString(rest[end:], "${1}xxxxx")
}

// postgresCorrupt reports whether err is PostgreSQL's data_corrupted
// (SQLSTATE XX001) or index_corrupted (XX002).
func postgresCorrupt(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "XX001" || pe.Code == "XX002")
}

// pgNotExistError is the error of opening a database that does not exist
// (SQLSTATE 3D000). It matches fs.ErrNotExist, as a missing SQLite file does.
type pgNotExistError struct{ err error }

func (e *pgNotExistError) Error() string        { return e.err.Error() }
func (e *pgNotExistError) Unwrap() error        { return e.err }
func (e *pgNotExistError) Is(target error) bool { return target == fs.ErrNotExist }

// openPostgres opens the pools of the PostgreSQL journal at dsn; display is
// dsn without its password, for errors. For a writer (readOnly false) it
// returns a write pool and a read pool; for a reader both are the same
// read-only pool. It connects once to check the server and the settings;
// the database must exist (Open creates the journal's tables in it, not the
// database). dsn is parsed as libpq would, PG* environment variables,
// ~/.pgpass (or PGPASSFILE) and sslmode included.
func openPostgres(ctx context.Context, dsn, display string, readOnly bool) (w, r *sql.DB, err error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx quotes the connection string in its error, with the
		// passwords it recognises redacted; do not rely on that.
		return nil, nil, fmt.Errorf("journal: %s: not a valid PostgreSQL connection string", display)
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = "popmigrate"
	}
	readCfg := cfg.Copy()
	// The read pool can never write, by mistake or otherwise (as SQLite's
	// query_only): a write statement fails in the server.
	readCfg.RuntimeParams["default_transaction_read_only"] = "on"
	r = stdlib.OpenDB(*readCfg)
	r.SetMaxOpenConns(pgReadConns)
	r.SetMaxIdleConns(pgReadConns)
	r.SetConnMaxIdleTime(pgConnMaxIdle)
	if readOnly {
		if err := checkPostgres(ctx, r, false); err != nil {
			r.Close()
			return nil, nil, pgOpenError(display, err)
		}
		return r, r, nil
	}

	cfg.RuntimeParams["default_transaction_isolation"] = "read committed"
	if _, ok := cfg.RuntimeParams["synchronous_commit"]; !ok {
		cfg.RuntimeParams["synchronous_commit"] = "on"
	}
	w = stdlib.OpenDB(*cfg)
	w.SetMaxOpenConns(pgWriteConns)
	w.SetMaxIdleConns(pgWriteConns)
	w.SetConnMaxIdleTime(pgConnMaxIdle)
	if err := checkPostgres(ctx, w, true); err != nil {
		w.Close()
		r.Close()
		return nil, nil, pgOpenError(display, err)
	}
	return w, r, nil
}

// pgOpenError names the journal in an error of opening it; a database
// that does not exist matches fs.ErrNotExist.
func pgOpenError(display string, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "3D000" {
		err = &pgNotExistError{err}
	}
	return fmt.Errorf("journal: %s: %w", display, err)
}

// checkPostgres connects to the server and checks that it is new enough
// and, for the write pool, that commits are durable.
func checkPostgres(ctx context.Context, db *sql.DB, write bool) error {
	var num string
	if err := db.QueryRowContext(ctx, "SHOW server_version_num").Scan(&num); err != nil {
		return err
	}
	if v, err := strconv.Atoi(num); err != nil || v < pgMinVersion {
		return fmt.Errorf("PostgreSQL server version %s is too old; the journal needs PostgreSQL 10 or newer", num)
	}
	if !write {
		return nil
	}
	var sync string
	if err := db.QueryRowContext(ctx, "SHOW synchronous_commit").Scan(&sync); err != nil {
		return err
	}
	if strings.EqualFold(sync, "off") {
		return errors.New("synchronous_commit=off: a commit would not be durable when it returns; " +
			"remove synchronous_commit from the connection string (popmigrate sets it on)")
	}
	return nil
}

// postgresDialect implements dialect for PostgreSQL.
type postgresDialect struct{}

// rebind rewrites the "?" placeholders of portable SQL to $1, $2, ... in
// order. A "?" inside a quoted literal or identifier, or in a comment, is
// left alone.
func (postgresDialect) rebind(query string) string {
	if !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case c == '\'' || c == '"':
			end := strings.IndexByte(query[i+1:], c)
			if end < 0 {
				b.WriteString(query[i:])
				return b.String()
			}
			b.WriteString(query[i : i+end+2])
			i += end + 1
		case c == '-' && i+1 < len(query) && query[i+1] == '-':
			end := strings.IndexByte(query[i:], '\n')
			if end < 0 {
				b.WriteString(query[i:])
				return b.String()
			}
			b.WriteString(query[i : i+end])
			i += end - 1
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// pgTextType matches the TEXT type of a column definition.
var pgTextType = regexp.MustCompile(`\bTEXT\b`)

// ddl substitutes the schema's tokens: an identity column for the integer
// primary key the database assigns (BY DEFAULT, as SQLite's rowid alias
// accepts an explicit value), and TEXT COLLATE "C" for TEXT, so that keys
// compare and sort bytewise as in SQLite, whatever the database's locale.
func (postgresDialect) ddl(stmt string) string {
	stmt = strings.ReplaceAll(stmt, "{{serial_pk}}", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
	return pgTextType.ReplaceAllString(stmt, `TEXT COLLATE "C"`)
}

// lockSchema takes the advisory lock that serialises migrations of this
// database until tx ends (pg_advisory_xact_lock), waiting for another
// process's migration to commit or roll back.
func (postgresDialect) lockSchema(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", int64(pgMigrationLock))
	return err
}

// schemaVersion reads the version from the one-row table popmigrate_schema:
// 0 when the table does not exist (a database no migration has touched) or
// is empty. It never creates the table.
func (postgresDialect) schemaVersion(ctx context.Context, tx *sql.Tx) (int, error) {
	var table sql.NullString
	if err := tx.QueryRowContext(ctx, "SELECT to_regclass('popmigrate_schema')::text").Scan(&table); err != nil {
		return 0, err
	}
	if !table.Valid {
		return 0, nil
	}
	var v int
	err := tx.QueryRowContext(ctx, "SELECT version FROM popmigrate_schema").Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return v, err
}

// setSchemaVersion writes the version inside tx, creating popmigrate_schema
// on the first migration; its one row is enforced by a primary key that can
// only be TRUE. The version changes if and only if tx commits.
func (postgresDialect) setSchemaVersion(ctx context.Context, tx *sql.Tx, v int) error {
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS popmigrate_schema (
	one     BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
	version INTEGER NOT NULL
)`); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO popmigrate_schema (one, version) VALUES (TRUE, $1)
ON CONFLICT (one) DO UPDATE SET version = excluded.version`, v)
	return err
}

// snapshot: REPEATABLE READ gives every statement of the transaction the
// same snapshot; at PostgreSQL's default READ COMMITTED each statement
// would take its own.
func (postgresDialect) snapshot() *sql.TxOptions {
	return &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead}
}

func (postgresDialect) lockMessageSQL() string {
	return `SELECT 1 FROM messages WHERE account = ? AND uidl = ? FOR UPDATE`
}

// escapedOpaque starts an opaque text stored escaped: SOH, a byte that no
// UIDL RFC 1939 allows and no reference an exporter makes has.
const escapedOpaque = "\x01"

// encodeOpaque returns the stored form of a text the journal keeps whatever
// its bytes (a UIDL, a delivery's reference): the text itself when it is
// valid UTF-8 without NUL that does not start with escapedOpaque, which is
// every UIDL RFC 1939 allows; otherwise escapedOpaque and the hex digits of
// its bytes. decodeOpaque undoes it. Escaped UIDLs sort before the others.
func (postgresDialect) encodeOpaque(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 && !strings.HasPrefix(s, escapedOpaque) {
		return s
	}
	return escapedOpaque + hex.EncodeToString([]byte(s))
}

func (postgresDialect) decodeOpaque(stored string) string {
	if rest, ok := strings.CutPrefix(stored, escapedOpaque); ok {
		if b, err := hex.DecodeString(rest); err == nil {
			return string(b)
		}
	}
	return stored
}

// retryable: a deadlock (40P01) or serialization failure (40001) aborted
// the transaction, and PostgreSQL expects the client to run it again. At
// READ COMMITTED a serialization failure does not happen; a deadlock can,
// between two processes writing the same account's messages in different
// orders (a verify beside a run).
func (postgresDialect) retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}
