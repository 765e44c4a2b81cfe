package journal

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fileState is what a read must not change in a file: its bytes and its
// modification time.
type fileState struct {
	sum   [sha256.Size]byte
	size  int64
	mtime time.Time
}

func stateOf(t *testing.T, path string) fileState {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fileState{sum: sha256.Sum256(b), size: fi.Size(), mtime: fi.ModTime()}
}

func openReadOnlyTest(t *testing.T, path string) *Journal {
	t.Helper()
	j, err := OpenReadOnly(testCtx(t), path)
	if err != nil {
		t.Fatalf("OpenReadOnly: %v", err)
	}
	t.Cleanup(func() {
		if err := j.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return j
}

func TestOpenReadOnlyDoesNotCreateTheFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "never-ran.db")
	j, err := OpenReadOnly(testCtx(t), path)
	if err == nil {
		j.Close()
		t.Fatal("OpenReadOnly opened a journal that does not exist")
	}
	if !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), "journal: ") || !strings.Contains(err.Error(), "never-ran.db") {
		t.Errorf("err = %v, want a journal: error naming the file and wrapping fs.ErrNotExist", err)
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Errorf("OpenReadOnly left %d files in the folder (%v)", len(entries), err)
	}
}

func TestOpenReadOnlyRefusesDirectory(t *testing.T) {
	j, err := OpenReadOnly(testCtx(t), t.TempDir())
	if err == nil {
		j.Close()
		t.Fatal("OpenReadOnly accepted a directory")
	}
}

// Reading everything a read-only journal offers, and trying every write,
// leaves the journal as it was: a SQLite file's bytes and modification
// time, a PostgreSQL database's tables and rows.
func TestOpenReadOnlyLeavesTheFileUnchanged(t *testing.T) {
	forEachBackend(t, testOpenReadOnlyLeavesTheFileUnchanged)
}

func testOpenReadOnlyLeavesTheFileUnchanged(t *testing.T, be backend) {
	path := be.newPath(t)
	closedJournal(t, be, path)
	before := be.fingerprint(t, path)

	ctx := testCtx(t)
	j := openReadOnlyTest(t, path)
	if st := statusOf(t, j, "alice"); st.Listed != 2 || st.Stored != 1 {
		t.Errorf("status %+v, want 2 listed and 1 stored", st)
	}
	if rows := messagesByUIDL(t, j, "alice"); len(rows) != 3 || rows["u0000"].State != StateStored {
		t.Errorf("messages %+v", rows)
	}
	if d, err := j.Deliveries(ctx, "alice"); err != nil || d["u0000"]["maildir"].Ref != "maildir:u0000" {
		t.Errorf("deliveries %+v, %v", d, err)
	}
	if s, err := j.DestState(ctx, "alice", "maildir"); err != nil || s != "state-1" {
		t.Errorf("destination state %q, %v", s, err)
	}
	if runs, err := j.Runs(ctx); err != nil || len(runs) != 1 {
		t.Errorf("runs %+v, %v", runs, err)
	}
	if ls, err := j.Leases(ctx); err != nil || len(ls) != 1 {
		t.Errorf("leases %+v, %v", ls, err)
	}
	tryEveryWrite(t, j)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	if after := be.fingerprint(t, path); after != before {
		t.Errorf("the journal changed: before %+v, after %+v", before, after)
	}
	// And a writer finds the data as it was.
	w, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if runs, err := w.Runs(ctx); err != nil || len(runs) != 1 || !runs[0].FinishedAt.IsZero() {
		t.Errorf("runs after the read-only session: %+v, %v", runs, err)
	}
	if st := statusOf(t, w, "alice"); st.Listed != 2 || st.Stored != 1 || st.Deleted != 0 || st.Failed != 0 || st.LastError != "" {
		t.Errorf("status after the read-only session: %+v", st)
	}
}

// tryEveryWrite calls each write method of the read-only j and wants
// every one refused with ErrReadOnly.
func tryEveryWrite(t *testing.T, j *Journal) {
	t.Helper()
	ctx := testCtx(t)
	lease := &Lease{Account: "alice", Holder: Holder{ID: "h", PID: 1, Host: "x"}, Epoch: 1, TTL: time.Hour}
	var b Batch
	b.Failed("alice", "u0001", "boom")
	writes := map[string]func() error{
		"StartRun": func() error { _, err := j.StartRun(ctx, "status"); return err },
		"FinishRun": func() error {
			return j.FinishRun(ctx, 1, 0, nil)
		},
		"RecordListing": func() error {
			return j.RecordListing(ctx, "alice", "pop3s://alice@pop.example:995", listing("v", 1))
		},
		"SetAccountError": func() error { return j.SetAccountError(ctx, "alice", "boom") },
		"Commit":          func() error { return j.Commit(ctx, &b) },
		"MarkVerified": func() error {
			return j.MarkVerified(ctx, "alice", "u0000", "maildir", time.Time{})
		},
		"MarkDeleted":   func() error { return j.MarkDeleted(ctx, "alice", []string{"u0000"}) },
		"SaveDestState": func() error { return j.SaveDestState(ctx, "alice", "maildir", "state-2") },
		"AcquireLease": func() error {
			_, err := j.AcquireLease(ctx, "bob", Holder{ID: "h2", PID: 2, Host: "y"}, time.Hour)
			return err
		},
		"RenewLease": func() error { return j.RenewLease(ctx, lease) },
		"Adopt": func() error {
			_, err := j.Adopt(ctx, "alice", "mpop", "uidls", []string{"u0009"})
			return err
		},
		"ReleaseLease": func() error { return j.ReleaseLease(ctx, lease) },
	}
	for name, write := range writes {
		if err := write(); !errors.Is(err, ErrReadOnly) || !strings.Contains(err.Error(), j.Path()) {
			t.Errorf("%s on a read-only journal: err = %v, want ErrReadOnly naming the file", name, err)
		}
	}
}

// A write that got past the readOnly checks still fails in the database.
func TestOpenReadOnlyConnectionsCannotWrite(t *testing.T) {
	forEachBackend(t, testOpenReadOnlyConnectionsCannotWrite)
}

func testOpenReadOnlyConnectionsCannotWrite(t *testing.T, be backend) {
	path := be.newPath(t)
	closedJournal(t, be, path)
	j := openReadOnlyTest(t, path)
	if _, err := j.w.ExecContext(testCtx(t), `INSERT INTO runs (started_at) VALUES (1)`); err == nil {
		t.Error("the read-only pool wrote a run")
	}
	if _, err := j.st.accountError.ExecContext(testCtx(t), "alice", "boom", 1); err == nil {
		t.Error("a prepared write statement wrote on the read-only pool")
	}
}

// A reader beside a writer sees what the writer committed.
func TestOpenReadOnlyBesideAWriter(t *testing.T) { forEachBackend(t, testOpenReadOnlyBesideAWriter) }

func testOpenReadOnlyBesideAWriter(t *testing.T, be backend) {
	w, path := be.open(t)
	mustListing(t, w, "alice", listing("u", 2))
	r := openReadOnlyTest(t, path)
	if st := statusOf(t, r, "alice"); st.Listed != 2 {
		t.Errorf("status %+v, want 2 listed", st)
	}
	var b Batch
	b.Stored(stored("alice", "u0000", true, "maildir"))
	mustCommit(t, w, &b)
	if st := statusOf(t, r, "alice"); st.Listed != 1 || st.Stored != 1 {
		t.Errorf("status after the writer's commit %+v, want 1 listed, 1 stored", st)
	}
}

func TestOpenReadOnlyRefusesNewerSchema(t *testing.T) {
	forEachBackend(t, testOpenReadOnlyRefusesNewerSchema)
}

func testOpenReadOnlyRefusesNewerSchema(t *testing.T, be backend) {
	path := be.newPath(t)
	closedJournal(t, be, path)
	be.setSchemaVersion(t, path, 99)
	before := be.fingerprint(t, path)

	j, err := OpenReadOnly(testCtx(t), path)
	if err == nil {
		j.Close()
		t.Fatal("OpenReadOnly accepted a journal of schema version 99")
	}
	var se *SchemaError
	if !errors.As(err, &se) || se.Version != 99 || se.Known != SchemaVersion || se.Path != redactDSN(path) {
		t.Fatalf("err = %#v, want *SchemaError{%s, 99, %d}", err, redactDSN(path), SchemaVersion)
	}
	if !strings.Contains(err.Error(), redactDSN(path)) || !strings.Contains(err.Error(), "newer popmigrate") {
		t.Errorf("error text %q does not name the file and what to do", err)
	}
	if after := be.fingerprint(t, path); after != before {
		t.Errorf("the refused journal changed: before %+v, after %+v", before, after)
	}
}

// An older journal is refused, not upgraded: reading never migrates. The
// error says how to upgrade it.
func TestOpenReadOnlyRefusesOlderSchema(t *testing.T) {
	forEachBackend(t, testOpenReadOnlyRefusesOlderSchema)
}

func testOpenReadOnlyRefusesOlderSchema(t *testing.T, be backend) {
	path := be.newPath(t)
	openV1(t, path)
	before := be.fingerprint(t, path)

	j, err := OpenReadOnly(testCtx(t), path)
	if err == nil {
		j.Close()
		t.Fatal("OpenReadOnly accepted a journal of schema version 1")
	}
	var se *SchemaError
	if !errors.As(err, &se) || se.Version != 1 || se.Known != SchemaVersion {
		t.Fatalf("err = %#v, want *SchemaError{%s, 1, %d}", err, path, SchemaVersion)
	}
	if !strings.Contains(err.Error(), "older") || !strings.Contains(err.Error(), "popmigrate run") || !strings.Contains(err.Error(), "upgrade") {
		t.Errorf("error text %q does not say how to upgrade the journal", err)
	}
	if after := be.fingerprint(t, path); after != before {
		t.Errorf("the refused journal changed: before %+v, after %+v", before, after)
	}
	// Open upgrades it; then it reads.
	w, err := Open(testCtx(t), path)
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	openReadOnlyTest(t, path)
}

// An empty file holds no journal: refused, and left empty.
func TestOpenReadOnlyRefusesEmptyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "empty.db")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	j, err := OpenReadOnly(testCtx(t), path)
	if err == nil {
		j.Close()
		t.Fatal("OpenReadOnly accepted an empty file")
	}
	var se *SchemaError
	if !errors.As(err, &se) || se.Version != 0 || !strings.Contains(err.Error(), "no popmigrate journal") {
		t.Errorf("err = %v, want a *SchemaError saying there is no journal", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
		t.Errorf("the empty file changed: %v, %v", fi, err)
	}
}

func TestOpenReadOnlyRefusesNonDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notes.txt")
	text := bytes.Repeat([]byte("this is not a database\n"), 100)
	if err := os.WriteFile(path, text, 0o600); err != nil {
		t.Fatal(err)
	}
	j, err := OpenReadOnly(testCtx(t), path)
	if err == nil {
		j.Close()
		t.Fatal("OpenReadOnly accepted a text file")
	}
	if !IsCorrupt(err) || !strings.HasPrefix(err.Error(), "journal: ") || !strings.Contains(err.Error(), path) {
		t.Errorf("err = %v, want a corrupt-journal error naming the file", err)
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(b, text) {
		t.Error("the text file changed")
	}
}
