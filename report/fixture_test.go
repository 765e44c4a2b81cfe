package report

import (
	"database/sql"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/journal"
)

// Names of the fixture's accounts. The second needs escaping everywhere;
// the third has failures, one with markup in its UIDL and error text.
const (
	fixAlice  = "alice@example.org"
	fixMarkup = `<b>"x"&y</b>`
	fixCarol  = "carol@example.net"
)

// fixStart is when the fixture's run began.
var fixStart = time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)

// fixStore is one message of the fixture stored at a time.
type fixStore struct {
	account, uidl string
	size          int64
	at            time.Time
}

// fixtureJournal writes a journal of a 40-minute run of three accounts and
// returns its path. The journal is written through its API; then, as the
// journal takes its clock from the machine, the stored_at of each message
// is set to when the run would have stored it, spread over the run with
// the pauses and bursts of a real one.
func fixtureJournal(t *testing.T) string {
	t.Helper()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "journal.db")
	j, err := journal.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	runID, err := j.StartRun(ctx, "run accounts=3")
	if err != nil {
		t.Fatal(err)
	}

	rng := rand.New(rand.NewPCG(1, 2))
	var stores []fixStore
	// plan lists n messages of account and when they are stored: from
	// start, one every step on average, with a pause at pauseAt.
	plan := func(account, prefix string, n int, start, step time.Duration, pauseAt int, pause time.Duration) []journal.Listed {
		var ls []journal.Listed
		at := fixStart.Add(start)
		for i := range n {
			size := int64(2_000 + rng.IntN(60_000))
			if rng.IntN(12) == 0 {
				size += int64(rng.IntN(4 << 20)) // an attachment
			}
			uidl := fmt.Sprintf("%s%05d", prefix, i)
			ls = append(ls, journal.Listed{UIDL: uidl, Kind: journal.KindUIDL, Size: size})
			if i == pauseAt {
				at = at.Add(pause)
			}
			at = at.Add(time.Duration(rng.Int64N(int64(2 * step))))
			stores = append(stores, fixStore{account, uidl, size, at})
		}
		return ls
	}
	alice := plan(fixAlice, "A", 400, 0, 4*time.Second, 250, 3*time.Minute)
	markup := plan(fixMarkup, "M", 150, 8*time.Minute, 6*time.Second, -1, 0)
	carol := plan(fixCarol, "C", 90, 20*time.Minute, 9*time.Second, 40, 2*time.Minute)
	// carol's last messages are not stored: they fail below.
	carolFailed := []string{"C00090", "C00091", `<img src=x onerror=alert(1)>`}
	for _, u := range carolFailed {
		carol = append(carol, journal.Listed{UIDL: u, Kind: journal.KindUIDL, Size: 5000})
	}
	sources := map[string]string{
		fixAlice:  "pop3s://alice@pop.example.org",
		fixMarkup: "pop3s://x.y@pop.example.com:995",
		fixCarol:  "pop3://carol@mail.example.net",
	}
	for account, ls := range map[string][]journal.Listed{fixAlice: alice, fixMarkup: markup, fixCarol: carol} {
		if err := j.RecordListing(ctx, account, sources[account], ls); err != nil {
			t.Fatal(err)
		}
	}

	var b journal.Batch
	for i, s := range stores {
		m := journal.StoredMessage{Account: s.account, UIDL: s.uidl, ReceivedSize: s.size,
			SHA256: fmt.Sprintf("%064x", i), Complete: true,
			Deliveries: []journal.Delivery{{DestID: "maildir", Ref: s.uidl}}}
		if s.account == fixCarol && s.uidl == "C00007" {
			m.Suspect = "message 8: RETR delivered 1200 octets but LIST said 48211: the copy may be incomplete, so it is kept on the server"
		}
		b.Stored(m)
	}
	b.Failed(fixCarol, "C00090", `retr 91 (uidl "C00090"): pop3: -ERR [SYS/PERM] message is unreadable`)
	b.Failed(fixCarol, "C00091", `retr 92 (uidl "C00091"): read tcp 10.0.0.5:41234->203.0.113.7:995: i/o timeout`)
	b.Failed(fixCarol, `<img src=x onerror=alert(1)>`, `message 93 (uidl "<img src=x onerror=alert(1)>"): destination imap: `+
		`APPEND to "INBOX": the server answered NO [OVERQUOTA] <script>alert("quota")</script>`)
	if err := j.Commit(ctx, &b); err != nil {
		t.Fatal(err)
	}
	// Verify alice's copies, as a verify phase would.
	b.Reset()
	for _, s := range stores {
		if s.account == fixAlice {
			b.Verified(s.account, s.uidl, "maildir", fixStart.Add(45*time.Minute))
		}
	}
	if err := j.Commit(ctx, &b); err != nil {
		t.Fatal(err)
	}
	if err := j.FinishRun(ctx, runID, 1, nil); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	// The times of a run that took 40 minutes.
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for _, s := range stores {
		if _, err := tx.ExecContext(ctx, `UPDATE messages SET stored_at = ? WHERE account = ? AND uidl = ?`,
			s.at.UnixNano(), s.account, s.uidl); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE runs SET started_at = ?, finished_at = ?`,
		fixStart.Add(-30*time.Second).UnixNano(), fixStart.Add(46*time.Minute).UnixNano()); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return path
}

// fixtureReport builds the report of the fixture's journal, read-only,
// with times in UTC.
func fixtureReport(t *testing.T, o *Options) *Report {
	t.Helper()
	path := fixtureJournal(t)
	j, err := journal.OpenReadOnly(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if o == nil {
		o = &Options{}
	}
	if o.Location == nil {
		o.Location = time.UTC
	}
	if o.Now == nil {
		o.Now = func() time.Time { return fixStart.Add(50 * time.Minute) }
	}
	r, err := Build(t.Context(), j, o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
