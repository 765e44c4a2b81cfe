package journal

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/internal/pgtest"
)

// The journal's tests run on both backends: one suite, two databases. A
// test that holds for both is written once as testX(t, be) and run by
// TestX through forEachBackend, as TestX/sqlite and TestX/postgres. Tests
// of what only one backend has (a file's mode, SQLite's PRAGMAs, the
// connection settings of PostgreSQL) stay apart. The PostgreSQL subtests
// share one private server (internal/pgtest), each with its own database.
func TestMain(m *testing.M) {
	if path := os.Getenv(openChildEnv); path != "" {
		os.Exit(openChild(path))
	}
	os.Exit(pgtest.Main(m))
}

// backend is a database the journal runs on.
type backend struct {
	name string
	d    dialect
	// newPath returns where a new journal goes: a file in a new temporary
	// folder, or the URL of a new, empty PostgreSQL database.
	newPath func(t testing.TB) string
}

var (
	sqliteBackend = backend{name: "sqlite", d: sqliteDialect{}, newPath: func(t testing.TB) string {
		return filepath.Join(t.TempDir(), "journal.db")
	}}
	postgresBackend = backend{name: "postgres", d: postgresDialect{}, newPath: func(t testing.TB) string {
		return pgtest.Shared(t).NewDB(t)
	}}
	backends = []backend{sqliteBackend, postgresBackend}
)

// forEachBackend runs f as a subtest per backend, named after it.
func forEachBackend(t *testing.T, f func(t *testing.T, be backend)) {
	t.Helper()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) { f(t, be) })
	}
}

// forEachBackendB is forEachBackend for benchmarks.
func forEachBackendB(b *testing.B, f func(b *testing.B, be backend)) {
	b.Helper()
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) { f(b, be) })
	}
}

func (be backend) isSQLite() bool { return be.name == "sqlite" }

// raw opens the journal's database at path as another program would: a
// plain database/sql pool, no migration, no checks. It is closed at the end
// of the test.
func (be backend) raw(t testing.TB, path string) *sql.DB {
	t.Helper()
	driver := sqliteDriver
	if !be.isSQLite() {
		driver = "pgx"
	}
	db, err := sql.Open(driver, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// schemaVersion reads the schema version of the journal at path.
func (be backend) schemaVersion(t testing.TB, path string) int {
	t.Helper()
	return schemaVersionIn(t, be.raw(t, path), be.d)
}

func schemaVersionIn(t testing.TB, db *sql.DB, d dialect) int {
	t.Helper()
	tx, err := db.BeginTx(testCtx(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() // read only
	v, err := d.schemaVersion(testCtx(t), tx)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// setSchemaVersion writes the schema version of the journal at path, as a
// popmigrate of that version would have.
func (be backend) setSchemaVersion(t testing.TB, path string, v int) {
	t.Helper()
	ctx := testCtx(t)
	tx, err := be.raw(t, path).BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() // no-op after Commit
	if err := be.d.setSchemaVersion(ctx, tx, v); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// injectFailure makes the database refuse, with the message "injected
// failure", every INSERT into table whose new row satisfies cond (an SQL
// condition on NEW), until the returned function removes the trigger.
func (be backend) injectFailure(t testing.TB, j *Journal, name, table, cond string) (remove func()) {
	t.Helper()
	ctx := testCtx(t)
	var create, drop []string
	if be.isSQLite() {
		create = []string{fmt.Sprintf(`CREATE TRIGGER %s BEFORE INSERT ON %s
WHEN %s BEGIN SELECT RAISE(ABORT, 'injected failure'); END`, name, table, cond)}
		drop = []string{"DROP TRIGGER " + name}
	} else {
		create = []string{
			fmt.Sprintf(`CREATE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'injected failure'; END $$`, name),
			fmt.Sprintf(`CREATE TRIGGER %s BEFORE INSERT ON %s FOR EACH ROW WHEN (%s) EXECUTE FUNCTION %s()`, name, table, cond, name),
		}
		drop = []string{fmt.Sprintf("DROP TRIGGER %s ON %s", name, table), fmt.Sprintf("DROP FUNCTION %s()", name)}
	}
	for _, s := range create {
		if _, err := j.w.ExecContext(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	return func() {
		t.Helper()
		for _, s := range drop {
			if _, err := j.w.ExecContext(testCtx(t), s); err != nil {
				t.Fatalf("%s: %v", s, err)
			}
		}
	}
}

// fingerprint returns what a reader must not change in the journal at
// path: for SQLite the file's bytes and modification time, for PostgreSQL
// the tables there are and every row of each.
func (be backend) fingerprint(t *testing.T, path string) string {
	t.Helper()
	if be.isSQLite() {
		return fmt.Sprint(stateOf(t, path))
	}
	ctx := testCtx(t)
	db := be.raw(t, path)
	var tables sql.NullString
	if err := db.QueryRowContext(ctx, `SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables
WHERE schemaname = current_schema()`).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString(tables.String)
	for _, table := range strings.Split(tables.String, ",") {
		if table == "" {
			continue
		}
		var rows sql.NullString
		if err := db.QueryRowContext(ctx, fmt.Sprintf(`SELECT string_agg(x::text, E'\n' ORDER BY x::text) FROM %s x`, table)).
			Scan(&rows); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "\n-- %s\n%s", table, rows.String)
	}
	return b.String()
}

// closedJournal writes a journal with a run, a listing, a store, a
// destination state and a lease at path, and closes it. A SQLite file's
// modification time is then set an hour back, so that any write to it
// would show.
func closedJournal(t *testing.T, be backend, path string) {
	t.Helper()
	ctx := testCtx(t)
	j, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.StartRun(ctx, "run"); err != nil {
		t.Fatal(err)
	}
	mustListing(t, j, "alice", listing("u", 3))
	var b Batch
	b.Stored(stored("alice", "u0000", true, "maildir"))
	b.DestState("alice", "maildir", "state-1")
	mustCommit(t, j, &b)
	if _, err := j.AcquireLease(ctx, "alice", Holder{ID: "h", PID: 1, Host: "x"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if be.isSQLite() {
		old := time.Now().Add(-time.Hour).Truncate(time.Second)
		if err := os.Chtimes(path, old, old); err != nil {
			t.Fatal(err)
		}
	}
}

// openV1 creates the journal a popmigrate of schema version 1 wrote at path,
// with data in every table, and closes it.
func openV1(t *testing.T, path string) {
	t.Helper()
	ctx := testCtx(t)
	j, err := openBackend(ctx, path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer j.closeDBs()
	if err := migrateTo(ctx, j.w, j.d, j.path, 1); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		`INSERT INTO runs (started_at, finished_at, args, summary, exit_code) VALUES (1000, 2000, 'run --to mbox:/x', '{"ok":1}', 0)`,
		`INSERT INTO accounts (account, source, last_run, server_count, server_bytes, updated_at)
			VALUES ('alice', 'pop3s://alice@pop.example:995', 1500, 2, 300, 1500)`,
		`INSERT INTO messages (account, uidl, uid_kind, listed_size, received_size, sha256, state, attempts, first_seen, last_seen, stored_at)
			VALUES ('alice', 'u0000', 'uidl', 100, 98, '` + sum("m0") + `', 'stored', 0, 1500, 1500, 1600)`,
		`INSERT INTO messages (account, uidl, uid_kind, listed_size, state, error, attempts, first_seen, last_seen)
			VALUES ('alice', 'u0001', 'uidl', 200, 'failed', 'pop3: retr 2: timeout', 1, 1500, 1500)`,
		`INSERT INTO deliveries (account, uidl, dest_id, ref, sha256, stored_at)
			VALUES ('alice', 'u0000', 'mbox', '0', '` + sum("m0") + `', 1600)`,
	} {
		if _, err := j.w.ExecContext(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	if v := schemaVersionIn(t, j.w, j.d); v != 1 {
		t.Fatalf("fixture: schema version %d; want a version-1 journal", v)
	}
	if _, err := j.w.ExecContext(ctx, "SELECT COUNT(*) FROM dest_states"); err == nil {
		t.Fatal("fixture: a version-1 journal has a dest_states table")
	}
}

// waitFor polls cond every 10 ms until it holds, failing the test after
// 10 s with what.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting after 10s for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
