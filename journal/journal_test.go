package journal

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMigrationsAreOrdered(t *testing.T) {
	for i, m := range migrations {
		if m.version != i+1 {
			t.Errorf("migration %d has version %d, want %d", i, m.version, i+1)
		}
		if len(m.stmts) == 0 {
			t.Errorf("migration %d has no statements", m.version)
		}
	}
	if last := migrations[len(migrations)-1].version; last != SchemaVersion {
		t.Errorf("SchemaVersion = %d, last migration is %d", SchemaVersion, last)
	}
}

func TestOpenMigratesFromEmpty(t *testing.T) { forEachBackend(t, testOpenMigratesFromEmpty) }

func testOpenMigratesFromEmpty(t *testing.T, be backend) {
	j, path := be.open(t)
	ctx := testCtx(t)

	if v := be.schemaVersion(t, path); v != SchemaVersion {
		t.Errorf("schema version = %d, want %d", v, SchemaVersion)
	}
	for _, table := range []string{"runs", "accounts", "messages", "deliveries", "dest_states", "leases", "account_destinations", "adopted"} {
		var n int
		err := j.r.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+table).Scan(&n)
		if err != nil || n != 0 {
			t.Errorf("table %s: count %d, err %v; want an empty table", table, n, err)
		}
	}
}

func TestOpenSetsDurabilityPragmas(t *testing.T) {
	j, _ := openTest(t)
	ctx := testCtx(t)
	for _, db := range []struct {
		name string
		db   *sql.DB
	}{{"write", j.w}, {"read", j.r}} {
		var mode string
		var syncMode, fk, busy int
		if err := db.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
			t.Fatal(err)
		}
		if err := db.db.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&syncMode); err != nil {
			t.Fatal(err)
		}
		if err := db.db.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil {
			t.Fatal(err)
		}
		if err := db.db.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&busy); err != nil {
			t.Fatal(err)
		}
		if mode != "wal" || syncMode != 2 || fk != 1 || busy != sqliteBusyTimeoutMS {
			t.Errorf("%s pool: journal_mode=%s synchronous=%d foreign_keys=%d busy_timeout=%d; want wal 2 1 %d",
				db.name, mode, syncMode, fk, busy, sqliteBusyTimeoutMS)
		}
	}
	if got := j.w.Stats().MaxOpenConnections; got != 1 {
		t.Errorf("write pool MaxOpenConnections = %d, want 1", got)
	}
	// The read pool refuses writes.
	if _, err := j.r.ExecContext(ctx, "DELETE FROM runs"); err == nil {
		t.Error("read pool accepted a write")
	}
}

func TestReopenKeepsData(t *testing.T) { forEachBackend(t, testReopenKeepsData) }

func testReopenKeepsData(t *testing.T, be backend) {
	path := be.newPath(t)
	ctx := testCtx(t)
	j, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	mustListing(t, j, "alice", listing("u", 3))
	var b Batch
	b.Stored(stored("alice", "u0000", true, "maildir"))
	mustCommit(t, j, &b)
	id, err := j.StartRun(ctx, "run --to maildir:/x")
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	j, err = Open(ctx, path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer j.Close()
	rows := messagesByUIDL(t, j, "alice")
	if len(rows) != 3 || rows["u0000"].State != StateStored || rows["u0001"].State != StateListed {
		t.Errorf("after reopen: %+v", rows)
	}
	d, err := j.Deliveries(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if d["u0000"]["maildir"].Ref != "maildir:u0000" {
		t.Errorf("delivery after reopen: %+v", d)
	}
	runs, err := j.Runs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || runs[0].ID != id {
		t.Errorf("runs after reopen: %+v", runs)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) { forEachBackend(t, testOpenRefusesNewerSchema) }

func testOpenRefusesNewerSchema(t *testing.T, be backend) {
	path := be.newPath(t)
	ctx := testCtx(t)
	j, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	mustListing(t, j, "alice", listing("u", 2))
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	be.setSchemaVersion(t, path, 99)

	j, err = Open(ctx, path)
	if err == nil {
		j.Close()
		t.Fatal("Open accepted a journal of schema version 99")
	}
	shown := redactDSN(path)
	var se *SchemaError
	if !errors.As(err, &se) || se.Version != 99 || se.Known != SchemaVersion || se.Path != shown {
		t.Fatalf("err = %#v, want *SchemaError{%s, 99, %d}", err, shown, SchemaVersion)
	}
	if !strings.Contains(err.Error(), shown) || !strings.Contains(err.Error(), "newer") {
		t.Errorf("error text %q does not name the file and the cause", err)
	}

	// The journal was left as it was.
	var n int
	v := be.schemaVersion(t, path)
	if err := be.raw(t, path).QueryRowContext(ctx, "SELECT COUNT(*) FROM messages").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if v != 99 || n != 2 {
		t.Errorf("after refusal: schema version %d, %d messages; want 99, 2", v, n)
	}
}

func TestOpenRefusesNonDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(path, bytes.Repeat([]byte("this is not a database\n"), 100), 0o600); err != nil {
		t.Fatal(err)
	}
	j, err := Open(testCtx(t), path)
	if err == nil {
		j.Close()
		t.Fatal("Open accepted a text file")
	}
	if !strings.HasPrefix(err.Error(), "journal: ") || !strings.Contains(err.Error(), path) {
		t.Errorf("error %q lacks prefix or path", err)
	}
}

func TestOpenRefusesDirectory(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(testCtx(t), dir)
	if err == nil {
		j.Close()
		t.Fatal("Open accepted a directory")
	}
	if !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("err = %v", err)
	}
}

func TestOpenPathWithURISpecialCharacters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a?b#c%20d.db")
	j, err := Open(testCtx(t), path)
	if err != nil {
		t.Fatal(err)
	}
	mustListing(t, j, "alice", listing("u", 1))
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("journal not at the literal path: %v", err)
	}
	if fi.Size() == 0 {
		t.Error("journal at the literal path is empty")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "a?b#c%20d.db") {
			t.Errorf("stray file %q: the path was misread", e.Name())
		}
	}
}

func TestCloseTwice(t *testing.T) { forEachBackend(t, testCloseTwice) }

func testCloseTwice(t *testing.T, be backend) {
	j, err := Open(testCtx(t), be.newPath(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := j.RecordListing(testCtx(t), "a", "", listing("u", 1)); err == nil {
		t.Error("RecordListing after Close succeeded")
	}
}

func TestRuns(t *testing.T) { forEachBackend(t, testRuns) }

func testRuns(t *testing.T, be backend) {
	j, _ := be.open(t)
	c := newClock(j)
	ctx := testCtx(t)

	start := c.now()
	id, err := j.StartRun(ctx, "run --accounts users.csv")
	if err != nil {
		t.Fatal(err)
	}
	id2, err := j.StartRun(ctx, "verify")
	if err != nil {
		t.Fatal(err)
	}
	if id2 <= id {
		t.Errorf("run ids %d then %d, want increasing", id, id2)
	}
	end := c.advance(time.Minute)
	if err := j.FinishRun(ctx, id, 1, []byte(`{"failed":2}`)); err != nil {
		t.Fatal(err)
	}
	if err := j.FinishRun(ctx, id, 0, []byte(`{"failed":`)); err == nil {
		t.Error("FinishRun accepted invalid JSON")
	}
	if err := j.FinishRun(ctx, 999, 0, nil); err == nil || !strings.Contains(err.Error(), "999") {
		t.Errorf("FinishRun of unknown run: %v", err)
	}

	runs, err := j.Runs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 {
		t.Fatalf("runs = %+v", runs)
	}
	r := runs[0]
	if r.ID != id || r.Args != "run --accounts users.csv" || !r.StartedAt.Equal(start) || !r.FinishedAt.Equal(end) ||
		r.ExitCode != 1 || string(r.Summary) != `{"failed":2}` {
		t.Errorf("run 1 = %+v", r)
	}
	if r := runs[1]; r.ID != id2 || !r.FinishedAt.IsZero() || r.Summary != nil {
		t.Errorf("unfinished run 2 = %+v", r)
	}
}

func TestTimesRoundTripInUTCWithNanoseconds(t *testing.T) {
	forEachBackend(t, testTimesRoundTripInUTCWithNanoseconds)
}

func testTimesRoundTripInUTCWithNanoseconds(t *testing.T, be backend) {
	j, _ := be.open(t)
	c := newClock(j)
	at := time.Date(2031, 7, 9, 23, 59, 58, 987654321, time.FixedZone("X", 5*3600))
	c.t = at
	mustListing(t, j, "alice", listing("u", 1))
	row := messagesByUIDL(t, j, "alice")["u0000"]
	if !row.FirstSeen.Equal(at) || row.FirstSeen.Location() != time.UTC || row.FirstSeen.Nanosecond() != 987654321 {
		t.Errorf("FirstSeen = %v, want %v in UTC", row.FirstSeen, at)
	}
	if !row.StoredAt.IsZero() || !row.VerifiedAt.IsZero() || !row.DeletedAt.IsZero() {
		t.Errorf("unset times are not zero: %+v", row)
	}
}

func TestOpenHonoursContext(t *testing.T) { forEachBackend(t, testOpenHonoursContext) }

func testOpenHonoursContext(t *testing.T, be backend) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	j, err := Open(ctx, be.newPath(t))
	if err == nil {
		j.Close()
		t.Fatal("Open with a cancelled context succeeded")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}
