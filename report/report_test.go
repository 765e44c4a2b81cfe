package report

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/journal"
)

func accountOf(t *testing.T, r *Report, name string) Account {
	t.Helper()
	for _, a := range r.Accounts {
		if a.Name == name {
			return a
		}
	}
	t.Fatalf("report has no account %q", name)
	return Account{}
}

func html(t *testing.T, r *Report) string {
	t.Helper()
	var b bytes.Buffer
	if err := r.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestBuildFromJournal(t *testing.T) {
	r := fixtureReport(t, nil)
	if len(r.Accounts) != 3 {
		t.Fatalf("%d accounts, want 3", len(r.Accounts))
	}
	alice := accountOf(t, r, fixAlice)
	if alice.Status != StatusVerified || alice.Copied != 400 || alice.Verified != 400 || alice.Failed != 0 ||
		alice.ServerMessages != 400 || alice.Stored != 400 || alice.Source != "pop3s://alice@pop.example.org" {
		t.Errorf("alice: %+v", alice)
	}
	markup := accountOf(t, r, fixMarkup)
	if markup.Status != StatusCopied || markup.Copied != 150 || markup.Verified != 0 {
		t.Errorf("%s: %+v", fixMarkup, markup)
	}
	carol := accountOf(t, r, fixCarol)
	if carol.Status != StatusIncomplete || carol.Copied != 90 || carol.Failed != 3 || carol.Suspect != 1 ||
		len(carol.Failures) != 3 || len(carol.Suspects) != 1 {
		t.Errorf("carol: %+v", carol)
	}
	for _, f := range carol.Failures {
		if f.Hint == "" || f.Attempts != 1 {
			t.Errorf("carol's failure %+v: want a hint and 1 attempt", f)
		}
	}
	if carol.Suspects[0].UIDL != "C00007" || carol.Suspects[0].Hint != suspectHint {
		t.Errorf("carol's suspect: %+v", carol.Suspects[0])
	}

	// Per-account activity: the stores spread over the run.
	if alice.FirstStored.Before(fixStart) || !alice.LastStored.After(alice.FirstStored.Add(20*time.Minute)) ||
		alice.Duration != alice.LastStored.Sub(alice.FirstStored) {
		t.Errorf("alice stored from %v to %v (%v), want a span of over 20 minutes after %v",
			alice.FirstStored, alice.LastStored, alice.Duration, fixStart)
	}

	tt := r.Totals
	if tt.Accounts != 3 || tt.AccountsComplete != 2 || tt.Copied != 640 || tt.Failed != 3 || tt.Stored != 640 ||
		tt.StoredBytes != alice.StoredBytes+markup.StoredBytes+carol.StoredBytes {
		t.Errorf("totals: %+v", tt)
	}
	if len(r.Runs) != 1 || r.Runs[0].ExitCode != 1 {
		t.Errorf("runs: %+v, want the fixture's one run", r.Runs)
	}

	// The throughput covers the period without a gap, and adds up.
	if r.Bucket != time.Minute {
		t.Errorf("bucket %v for a 35-minute period, want 1m", r.Bucket)
	}
	if n := len(r.Throughput); n < 30 || n > MaxBuckets {
		t.Fatalf("%d buckets, want 30 to %d", n, MaxBuckets)
	}
	var sum int64
	var msgs int
	for i, p := range r.Throughput {
		if i > 0 && !p.Start.Equal(r.Throughput[i-1].Start.Add(r.Bucket)) {
			t.Errorf("bucket %d starts at %v, after %v", i, p.Start, r.Throughput[i-1].Start)
		}
		sum += p.Bytes
		msgs += p.Messages
	}
	if sum != tt.StoredBytes || msgs != tt.Stored {
		t.Errorf("throughput adds up to %d messages, %d bytes; want %d, %d", msgs, sum, tt.Stored, tt.StoredBytes)
	}
	if first := r.Throughput[0].Start; first.After(tt.FirstStored) || first.Add(r.Bucket).Before(tt.FirstStored) {
		t.Errorf("first bucket %v does not hold the first store %v", first, tt.FirstStored)
	}
	if tt.PeakRate <= tt.AverageRate() {
		t.Errorf("peak %v B/s not above average %v B/s", tt.PeakRate, tt.AverageRate())
	}
}

func TestHTMLRowPerAccountAndBarPerBucket(t *testing.T) {
	r := fixtureReport(t, nil)
	page := html(t, r)
	if n := strings.Count(page, `<tr class="account"`); n != 3 {
		t.Errorf("%d account rows, want 3", n)
	}
	if n := strings.Count(page, `<rect class="bucket"`); n != len(r.Throughput) {
		t.Errorf("%d bucket bars, want %d", n, len(r.Throughput))
	}
	if !strings.Contains(page, `<table id="accounts">`) || !strings.Contains(page, `<svg id="throughput"`) {
		t.Error("no table#accounts or svg#throughput")
	}
}

// Account names, UIDLs and error texts come from servers and users: every
// one is escaped.
func TestHTMLEscapesEverything(t *testing.T) {
	page := html(t, fixtureReport(t, &Options{Title: `ACME <i>&</i> "Co"`}))
	for _, raw := range []string{fixMarkup, `<img src=x`, `<script>`, `<i>&</i>`} {
		if strings.Contains(page, raw) {
			t.Errorf("the page holds %q unescaped", raw)
		}
	}
	for _, esc := range []string{
		`&lt;b&gt;&#34;x&#34;&amp;y&lt;/b&gt;`,
		`&lt;img src=x onerror=alert(1)&gt;`,
		`&lt;script&gt;alert(&#34;quota&#34;)&lt;/script&gt;`,
		`<title>ACME &lt;i&gt;&amp;&lt;/i&gt; &#34;Co&#34;</title>`,
	} {
		if !strings.Contains(page, esc) {
			t.Errorf("the page lacks %q", esc)
		}
	}
}

// The page loads nothing: no script, no link but the empty icon, no URL
// in its CSS; and its policy forbids loading anything.
func TestHTMLSelfContained(t *testing.T) {
	page := html(t, fixtureReport(t, nil))
	for _, re := range []string{`(?i)<script`, `(?i)<[a-z][^>]*\ssrc\s*=`, `(?i)url\(`, `(?i)@import`, `(?i)<iframe`, `(?i)<object`, `(?i)<img`} {
		if m := regexp.MustCompile(re).FindString(page); m != "" {
			t.Errorf("the page holds %q", m)
		}
	}
	for _, m := range regexp.MustCompile(`(?i)href\s*=\s*"([^"]*)"`).FindAllStringSubmatch(page, -1) {
		if m[1] != "data:," {
			t.Errorf("the page links to %q", m[1])
		}
	}
	if !strings.Contains(page, `content="default-src 'none'; style-src 'unsafe-inline'; img-src data:"`) {
		t.Error("the page has no Content-Security-Policy that forbids loading")
	}
}

func TestHTMLPrintRules(t *testing.T) {
	page := html(t, fixtureReport(t, nil))
	for _, want := range []string{"@media print", "break-inside: avoid", "page-break-inside: avoid", "@page"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page has no %q", want)
		}
	}
}

// Options.Accounts keeps a report to the accounts of one customer: the
// others of the journal appear nowhere, not in the chart either.
func TestBuildAccountsFilter(t *testing.T) {
	all := fixtureReport(t, nil)
	r := fixtureReport(t, &Options{Accounts: []string{fixAlice, "nobody@example.org"}})
	if len(r.Accounts) != 2 || r.Accounts[0].Name != fixAlice || r.Accounts[1].Status != StatusUnknown {
		t.Fatalf("accounts: %+v", r.Accounts)
	}
	alice := accountOf(t, all, fixAlice)
	var sum int64
	for _, p := range r.Throughput {
		sum += p.Bytes
	}
	if sum != alice.StoredBytes || r.Totals.StoredBytes != alice.StoredBytes || r.Totals.Failed != 0 {
		t.Errorf("throughput %d bytes, totals %+v; want alice's %d bytes only", sum, r.Totals, alice.StoredBytes)
	}
	page := html(t, r)
	if strings.Contains(page, fixCarol) || strings.Contains(page, "x.y@pop.example.com") {
		t.Error("the page names an account left out")
	}
}

// A period shows the stores made in it; where the accounts stand is their
// whole record.
func TestBuildPeriod(t *testing.T) {
	from, to := fixStart.Add(20*time.Minute), fixStart.Add(30*time.Minute)
	r := fixtureReport(t, &Options{From: from, To: to})
	if !r.From.Equal(from) || !r.To.Equal(to) || len(r.Throughput) != 60 || r.Bucket != 10*time.Second {
		t.Errorf("period %v-%v with %d buckets of %v; want %v-%v, 60 of 10s", r.From, r.To, len(r.Throughput), r.Bucket, from, to)
	}
	for _, a := range r.Accounts {
		if a.Stored > 0 && (a.FirstStored.Before(from) || !a.LastStored.Before(to)) {
			t.Errorf("%s: stores from %v to %v, outside the period", a.Name, a.FirstStored, a.LastStored)
		}
	}
	if a := accountOf(t, r, fixAlice); a.Copied != 400 || a.Stored >= 400 {
		t.Errorf("alice: copied %d (want 400, the whole record), stored %d in the period (want fewer)", a.Copied, a.Stored)
	}
	if _, err := Build(t.Context(), nil, &Options{From: to, To: from}); err == nil {
		t.Error("Build with From after To: no error")
	}
}

// A journal that holds no store yet still makes a page: an empty chart
// that says so.
func TestBuildNothingStored(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "journal.db")
	j, err := journal.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if err := j.RecordListing(ctx, "dave", "pop3s://dave@pop.example", []journal.Listed{{UIDL: "1", Kind: journal.KindUIDL, Size: 10}}); err != nil {
		t.Fatal(err)
	}
	r, err := Build(ctx, j, &Options{Location: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Throughput) != 0 || !r.From.IsZero() || r.Accounts[0].Status != StatusIncomplete || r.Accounts[0].Pending != 1 {
		t.Errorf("report: %+v", r)
	}
	page := html(t, r)
	if !strings.Contains(page, "Nothing was stored in this period") || strings.Count(page, `<tr class="account"`) != 1 {
		t.Errorf("page of an empty journal:\n%s", page)
	}
}

// The JSON form holds the same data; times are UTC.
func TestReportJSON(t *testing.T) {
	r := fixtureReport(t, nil)
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Accounts) != 3 || len(back.Throughput) != len(r.Throughput) || back.Totals != r.Totals ||
		back.Bucket != r.Bucket || back.Accounts[0].Name != fixMarkup {
		t.Errorf("JSON round trip lost data:\n%s", b)
	}
	if !strings.Contains(string(b), `"account":"\u003cb\u003e\"x\"\u0026y\u003c/b\u003e"`) {
		t.Errorf("JSON does not hold the escaped name:\n%.400s", b)
	}
	// A Report read back from JSON renders too (no time zone: local).
	if err := back.WriteHTML(new(bytes.Buffer)); err != nil {
		t.Error(err)
	}
}

func TestWriteFileAtomic(t *testing.T) {
	r := fixtureReport(t, nil)
	dir := t.TempDir()
	path := filepath.Join(dir, "report.html")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != FileMode {
		t.Errorf("mode %v, want %v", fi.Mode().Perm(), FileMode)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := html(t, r); string(got) != want {
		t.Error("the file is not the page")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("the folder holds %d entries, want only the report (no temporary file)", len(entries))
	}
	if err := r.WriteFile(filepath.Join(dir, "missing", "report.html")); err == nil {
		t.Error("WriteFile into a missing folder: no error")
	}
}

func TestChooseBucket(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		span time.Duration
		want time.Duration
	}{
		{3 * time.Second, time.Second},
		{60 * time.Second, 2 * time.Second}, // 61 one-second buckets are too many
		{35 * time.Minute, time.Minute},
		{4 * time.Hour, 5 * time.Minute},
		{5 * time.Hour, 10 * time.Minute}, // 61 five-minute buckets are too many
		{3 * 24 * time.Hour, 2 * time.Hour},
		{10 * 365 * 24 * time.Hour, 28 * 24 * time.Hour},
	} {
		got := chooseBucket(t0, t0.Add(c.span+time.Nanosecond))
		if got != c.want {
			t.Errorf("chooseBucket(%v) = %v, want %v", c.span, got, c.want)
		}
		if c.span < 365*24*time.Hour && bucketCount(t0, t0.Add(c.span+time.Nanosecond), got) > MaxBuckets {
			t.Errorf("chooseBucket(%v) = %v: more than %d buckets", c.span, got, MaxBuckets)
		}
	}
}

func TestHint(t *testing.T) {
	for _, c := range []struct{ text, want string }{
		{"", ""},
		{`retr 3 (uidl "x"): pop3: -ERR [IN-USE] mailbox locked`, "another mail program"},
		{`retr 3: pop3: -ERR [SYS/TEMP] try later`, "temporary problem"},
		{`retr 3: read tcp 1.2.3.4:5->6.7.8.9:995: i/o timeout`, "stopped answering"},
		{`message 4: destination imap: APPEND to "INBOX": the server answered NO [OVERQUOTA] full`, "quota"},
		{`message 4: destination maildir: write: no space left on device`, "disk is full"},
		{`retr 9: pop3: -ERR message gone`, "refused this message"},
		{`something nobody foresaw`, "run again"},
	} {
		got := Hint(c.text)
		if c.want == "" && got != "" || !strings.Contains(got, c.want) {
			t.Errorf("Hint(%q) = %q, want it to say %q", c.text, got, c.want)
		}
	}
	// Flags and commands in a hint are shown unbroken.
	if got := hintParts("run again, or raise --timeout"); len(got) != 2 || got[1] != (hintPart{"--timeout", true}) {
		t.Errorf("hintParts: %+v", got)
	}
	// The run writes its own hint into an account's error: none is added.
	if !hasHint(`login: pop3: -ERR [AUTH] bad (the server refused the credentials: check the user name and password)`) ||
		hasHint(`retr 1: -ERR no (really)`) {
		t.Error("hasHint does not tell the run's hint from a parenthesis")
	}
}

// TestAdoptedMessages: messages another client fetched before the
// migration (journal import) are neither pending nor missing copies: an
// account whose other messages are all verified is verified, and the
// page says how many were adopted.
func TestAdoptedMessages(t *testing.T) {
	ctx := t.Context()
	j, err := journal.Open(ctx, filepath.Join(t.TempDir(), "journal.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	const name = "dave@example.org"
	if _, err := j.Adopt(ctx, name, "mpop", "/home/dave/.mpop_uidls/dave", []string{"d1", "d2", "d3"}); err != nil {
		t.Fatal(err)
	}
	ls := []journal.Listed{{UIDL: "d1", Kind: journal.KindUIDL, Size: 10}, {UIDL: "d2", Kind: journal.KindUIDL, Size: 10},
		{UIDL: "d3", Kind: journal.KindUIDL, Size: 10}, {UIDL: "d4", Kind: journal.KindUIDL, Size: 10}}
	if err := j.RecordListing(ctx, name, "pop3s://dave@pop.example.org:995", ls); err != nil {
		t.Fatal(err)
	}
	var b journal.Batch
	b.Stored(journal.StoredMessage{Account: name, UIDL: "d4", ReceivedSize: 10, SHA256: strings.Repeat("a", 64), Complete: true,
		Deliveries: []journal.Delivery{{DestID: "maildir:/m", Ref: "new/x"}}})
	b.Verified(name, "d4", "maildir:/m", time.Time{})
	if err := j.Commit(ctx, &b); err != nil {
		t.Fatal(err)
	}
	r, err := Build(ctx, j, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := accountOf(t, r, name)
	if a.Status != StatusVerified || a.Adopted != 3 || a.Pending != 0 || a.Copied != 1 || r.Totals.Adopted != 3 {
		t.Errorf("account %+v, totals %+v: want verified, 3 adopted, none pending", a, r.Totals)
	}
	page := html(t, r)
	for _, want := range []string{`3 adopted`, `3 fetched before by another client`, `adopted: fetched by another mail client`} {
		if !strings.Contains(page, want) {
			t.Errorf("the page does not say %q", want)
		}
	}
}
