package eml

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/exportertest"
	"github.com/popmigrate/popmigrate/exporters/internal/mailhdr"
	"github.com/popmigrate/popmigrate/exporters/location"
	"github.com/popmigrate/popmigrate/internal/testmsg"
)

// received is the Received time of exportertest.NewMessage, and its name
// prefix.
var received = time.Date(2025, 3, 3, 10, 0, 0, 0, time.UTC)

const receivedPrefix = "20250303T100000Z"

func newExporter(t testing.TB, dir string) *Exporter {
	t.Helper()
	e, err := New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// countFiles counts every non-folder entry under dir.
func countFiles(dir string) int {
	n := 0
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}

// files returns the paths, relative to dir, of every non-folder entry under
// dir, sorted.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, path)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// open is how the conformance suite opens a destination: as popmigrate
// does, through the kind's registry entry.
var open = exportertest.Through(Factory(), func(dir string) string { return "eml:" + dir }, location.Env{})

func TestConformance(t *testing.T) {
	exportertest.RunWithOptions(t, open, &exportertest.Options{
		Count:      func(_ testing.TB, dir string) int { return countFiles(dir) },
		Concurrent: true,
		Files:      true,
	})
}

// msgFor returns a message of account with uidl holding body.
func msgFor(account, uidl, body string) *exporters.Message {
	return &exporters.Message{
		Key:      exporters.MessageKey(account, uidl),
		Account:  account,
		UIDL:     uidl,
		Body:     bytes.NewReader([]byte(body)),
		SHA256:   exportertest.SHA256([]byte(body)),
		Received: received,
	}
}

func msg(uidl, body string) *exporters.Message {
	return exportertest.NewMessage(uidl, []byte(body))
}

func mustPut(t *testing.T, e *Exporter, m *exporters.Message) string {
	t.Helper()
	d, err := e.Put(t.Context(), m)
	if err != nil {
		t.Fatal(err)
	}
	return d.Ref
}

// mustStore is mustPut followed by Sync: the file then has its final name.
func mustStore(t *testing.T, e *Exporter, m *exporters.Message) string {
	t.Helper()
	ref := mustPut(t, e, m)
	if err := e.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	return ref
}

func mustHas(t *testing.T, e *Exporter, key string) (string, bool) {
	t.Helper()
	d, ok, err := e.Has(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	return d.Ref, ok
}

func mustRead(t *testing.T, e *Exporter, ref string) string {
	t.Helper()
	rc, err := e.Open(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestNewDefaultsAndID(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b", "eml")
	e := newExporter(t, dir)
	if p := e.Properties(); p.Kind != "eml" || p.ID != "eml:"+dir {
		t.Errorf("Properties() = %+v, want eml, eml:%s", p, dir)
	}
	if e.Dir() != dir {
		t.Errorf("Dir() = %q, want %q", e.Dir(), dir)
	}
	e2, err := New(filepath.Join(t.TempDir(), "x"), &Options{ID: "eml:custom"})
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	if id := e2.Properties().ID; id != "eml:custom" {
		t.Errorf("ID = %q, want eml:custom", id)
	}
	t.Chdir(t.TempDir())
	e3, err := New("rel", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e3.Close()
	if id := e3.Properties().ID; !strings.HasPrefix(id, "eml:/") || !strings.HasSuffix(id, "/rel") {
		t.Errorf("ID for a relative path = %q, want eml:/.../rel", id)
	}
	if got := files(t, "rel"); len(got) != 0 {
		t.Errorf("New left files behind: %q", got)
	}
}

func TestModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "eml")
	e := newExporter(t, dir)
	ref := mustStore(t, e, msg("mode", "Subject: modes\n\nbody\n"))
	acct := AccountDir(exportertest.Account)
	for _, d := range []string{"", acct, acct + "/" + TmpDir} {
		fi, err := os.Stat(filepath.Join(dir, d))
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o700 {
			t.Errorf("folder %q: mode %o, want 700", d, perm)
		}
	}
	fi, err := os.Stat(filepath.Join(dir, ref))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("message file: mode %o, want 600", perm)
	}
}

func TestAccountDir(t *testing.T) {
	hashed := regexp.MustCompile(`^[A-Za-z0-9._@+-]{1,100}~[0-9a-f]{12}$`)
	for _, tc := range []struct {
		account string
		want    string // "" means: sanitised prefix + "~" + hash, checked by prefix
		prefix  string
	}{
		{account: "alice@example.org", want: "alice@example.org"},
		{account: "Bob.Smith+tag_1-x@example.co.uk", want: "Bob.Smith+tag_1-x@example.co.uk"},
		{account: "a.", want: "a."},
		{account: "a/b", prefix: "a_b~"},
		{account: "../../etc", prefix: "_._.._etc~"},
		{account: ".", prefix: "_~"},
		{account: "..", prefix: "_.~"},
		{account: ".hidden", prefix: "_hidden~"},
		{account: "", prefix: "_~"},
		{account: "a~b", prefix: "a_b~"},
		{account: "jürgen", prefix: "j__rgen~"},
		{account: "x\x00y", prefix: "x_y~"},
		{account: "C:\\Users\\x", prefix: "C__Users_x~"},
		{account: "sp ace", prefix: "sp_ace~"},
		{account: strings.Repeat("a", 100), want: strings.Repeat("a", 100)},
		{account: strings.Repeat("a", 101), prefix: strings.Repeat("a", 100) + "~"},
	} {
		got := AccountDir(tc.account)
		switch {
		case tc.want != "" && got != tc.want:
			t.Errorf("AccountDir(%q) = %q, want %q", tc.account, got, tc.want)
		case tc.want == "" && (!strings.HasPrefix(got, tc.prefix) || !hashed.MatchString(got)):
			t.Errorf("AccountDir(%q) = %q, want %s<12 hex>", tc.account, got, tc.prefix)
		}
		if !ValidAccountDir(got) {
			t.Errorf("ValidAccountDir(AccountDir(%q) = %q) = false", tc.account, got)
		}
		if got == "." || got == ".." || strings.HasPrefix(got, ".") || strings.ContainsAny(got, "/\\\x00") {
			t.Errorf("AccountDir(%q) = %q: not a safe folder name", tc.account, got)
		}
		if AccountDir(tc.account) != got {
			t.Errorf("AccountDir(%q) is not stable", tc.account)
		}
	}
	// Accounts that sanitise to the same characters, or to the name of an
	// account kept as it is, never share a folder.
	seen := map[string]string{}
	for _, a := range []string{"a_b", "a/b", "a:b", "a b", "a\\b", "a~b", "a_b~", strings.Repeat("z", 100), strings.Repeat("z", 100) + "1", strings.Repeat("z", 100) + "2", ".x", "_x"} {
		d := AccountDir(a)
		if prev, dup := seen[d]; dup {
			t.Errorf("accounts %q and %q share the folder %q", prev, a, d)
		}
		seen[d] = a
	}
}

func TestValidAccountDir(t *testing.T) {
	for _, name := range []string{"alice@example.org", "a_b~0123456789ab", "_~0123456789ab", "a."} {
		if !ValidAccountDir(name) {
			t.Errorf("ValidAccountDir(%q) = false, want true", name)
		}
	}
	for _, name := range []string{"", ".", "..", ".tmp", ".x~0123456789ab", "a/b", "a b", "a~", "a~0123456789AB", "a~0123456789a",
		"a~0123456789abc", "a~01234567~9ab", "~0123456789ab", strings.Repeat("a", 101), "a\x00"} {
		if ValidAccountDir(name) {
			t.Errorf("ValidAccountDir(%q) = true, want false", name)
		}
	}
}

// File and folder names come from the account (sanitised) and the message
// key, never from the UIDL, whatever the server and the account list hold.
func TestHostileNames(t *testing.T) {
	dir := t.TempDir()
	e := newExporter(t, dir)
	accounts := []string{"alice@example.org", "../../x", "a/b", ".", "..", "", ".tmp", "x\x00y", "/etc/passwd", strings.Repeat("u", 300)}
	uidls := []string{"../../x", "a/b", "..", ".", "/etc/passwd", "x\x00y", "*", ".hidden", "20250101T000000Z-x.eml", strings.Repeat("u", 300)}
	nameRE := regexp.MustCompile(`^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{32}\.eml$`)
	want := map[string]bool{}
	for _, a := range accounts {
		for _, u := range uidls {
			m := msgFor(a, u, "Subject: hostile\n\n"+a+" "+u+"\n")
			ref := mustPut(t, e, m)
			if w := AccountDir(a) + "/" + receivedPrefix + "-" + m.Key + Ext; ref != w {
				t.Errorf("account %q uidl %q: Ref %q, want %q", a, u, ref, w)
			}
			want[ref] = true
		}
	}
	if err := e.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := files(t, dir)
	if len(got) != len(accounts)*len(uidls) {
		t.Errorf("%d files, want %d", len(got), len(accounts)*len(uidls))
	}
	for _, f := range got {
		acct, name, _ := strings.Cut(f, "/")
		if !want[f] || !ValidAccountDir(acct) || !nameRE.MatchString(name) {
			t.Errorf("file %q: want <account-dir>/<date>-<32 hex>.eml written by Put", f)
		}
	}
	top, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(top) != len(accounts) {
		t.Errorf("%d account folders, want %d", len(top), len(accounts))
	}
	for _, ent := range top {
		if !ent.IsDir() || !ValidAccountDir(ent.Name()) {
			t.Errorf("%q at the root: want an account folder", ent.Name())
		}
	}
}

func TestInvalidKey(t *testing.T) {
	dir := t.TempDir()
	e := newExporter(t, dir)
	for _, key := range []string{"", "../../x", "a/b", "x:2,S", ".hidden", "a.b", "x\x00", "ü", strings.Repeat("a", MaxKeyLen+1)} {
		m := msg("uidl", "body\n")
		m.Key = key
		if _, err := e.Put(t.Context(), m); !errors.Is(err, exporters.ErrInvalidKey) {
			t.Errorf("Put with key %q: err = %v, want exporters.ErrInvalidKey", key, err)
		}
		if _, _, err := e.Has(t.Context(), key); !errors.Is(err, exporters.ErrInvalidKey) {
			t.Errorf("Has(%q): err = %v, want exporters.ErrInvalidKey", key, err)
		}
	}
	if got := files(t, dir); len(got) != 0 {
		t.Errorf("files after invalid keys: %q", got)
	}
	m := msg("uidl", "body\n")
	m.Key = strings.Repeat("a", MaxKeyLen)
	if ref := mustPut(t, e, m); ref != AccountDir(exportertest.Account)+"/"+receivedPrefix+"-"+m.Key+Ext {
		t.Errorf("Put with a key of MaxKeyLen: Ref %q", ref)
	}
}

// The name starts with the Date: header in UTC, or with Received when the
// header is missing or does not parse.
func TestDatePrefix(t *testing.T) {
	long := "X-Long: " + strings.Repeat("x", MaxHeaderScan) + "\n"
	for _, tc := range []struct {
		name, body, want string
	}{
		{"date header", "From: a@b\nDate: Mon, 3 Mar 2025 11:00:00 +0100\nSubject: x\n\nbody\n", "20250303T100000Z"},
		{"other zone crosses midnight", "Date: Tue, 31 Dec 2024 23:30:00 -0130\n\n", "20250101T010000Z"},
		{"lower case, no day, no seconds", "subject: x\ndate: 7 Jun 2021 08:15 +0000\n\n", "20210607T081500Z"},
		{"folded", "Subject: x\nDate: Fri, 14 Feb 2020\n\t 09:08:07 +0000\nTo: c@d\n\n", "20200214T090807Z"},
		{"comment", "Date: Fri, 14 Feb 2020 09:08:07 +0000 (Coordinated Universal Time)\n\n", "20200214T090807Z"},
		{"two-digit year", "Date: 14 Feb 99 09:08:07 +0000\n\n", "19990214T090807Z"},
		{"first of two", "Date: Fri, 14 Feb 2020 09:08:07 +0000\nDate: Sat, 15 Feb 2020 09:08:07 +0000\n\n", "20200214T090807Z"},
		{"headers only, no final newline", "Subject: x\nDate: Fri, 14 Feb 2020 09:08:07 +0000", "20200214T090807Z"},
		{"crlf kept in canonical form", "Date: Fri, 14 Feb 2020 09:08:07 +0000\r\n\r\nbody\r\n", "20200214T090807Z"},
		{"no date", "Subject: x\n\nbody\n", receivedPrefix},
		{"empty message", "", receivedPrefix},
		{"unparsable", "Date: yesterday, around noon\n\n", receivedPrefix},
		{"empty value", "Date:\n\n", receivedPrefix},
		{"date in the body", "Subject: x\n\nDate: Fri, 14 Feb 2020 09:08:07 +0000\n", receivedPrefix},
		{"no headers, date later", "Plain text first\nDate: Fri, 14 Feb 2020 09:08:07 +0000\n", receivedPrefix},
		{"after a line that is not a field", "Subject: x\nnot a header\nDate: Fri, 14 Feb 2020 09:08:07 +0000\n\n", receivedPrefix},
		{"beyond the scan limit", long + "Date: Fri, 14 Feb 2020 09:08:07 +0000\n\n", receivedPrefix},
		{"year 10000 in UTC", "Date: Fri, 31 Dec 9999 23:00:00 -0200\n\n", receivedPrefix},
		{"X-Date is not Date", "X-Date: Fri, 14 Feb 2020 09:08:07 +0000\n\n", receivedPrefix},
		{"nul in header", "Subject: a\x00b\nDate: Fri, 14 Feb 2020 09:08:07 +0000\n\n", "20200214T090807Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newExporter(t, t.TempDir())
			m := msg("date", tc.body)
			ref := mustPut(t, e, m)
			if want := AccountDir(exportertest.Account) + "/" + tc.want + "-" + m.Key + Ext; ref != want {
				t.Errorf("Ref = %q, want %q", ref, want)
			}
			if got := mustRead(t, e, ref); got != tc.body {
				t.Errorf("stored bytes differ from the body")
			}
		})
	}
}

// The fallback uses Received in UTC.
func TestDateFallbackReceivedUTC(t *testing.T) {
	e := newExporter(t, t.TempDir())
	m := msg("received", "Subject: no date\n\n")
	m.Received = time.Date(2024, 7, 1, 1, 2, 3, 999, time.FixedZone("X", 5*3600))
	if ref, want := mustPut(t, e, m), "20240630T200203Z-"+m.Key+Ext; !strings.HasSuffix(ref, "/"+want) {
		t.Errorf("Ref = %q, want .../%s", ref, want)
	}
}

// QUIRK test: the obsolete zone names of RFC 5322 section 4.3 are read as
// their offsets, not as UTC.
func TestQuirkObsoleteZoneNames(t *testing.T) {
	for zone, want := range map[string]string{
		"EST": "2025-03-03T15:00:00Z", "EDT": "2025-03-03T14:00:00Z",
		"CST": "2025-03-03T16:00:00Z", "CDT": "2025-03-03T15:00:00Z",
		"MST": "2025-03-03T17:00:00Z", "MDT": "2025-03-03T16:00:00Z",
		"PST": "2025-03-03T18:00:00Z", "pdt": "2025-03-03T17:00:00Z",
		"GMT": "2025-03-03T10:00:00Z", "UT": "2025-03-03T10:00:00Z",
	} {
		for _, v := range []string{"Mon, 3 Mar 2025 10:00:00 " + zone, "Mon, 3 Mar 2025 10:00:00 " + zone + " (comment)"} {
			got, ok := mailhdr.ParseDate(v)
			if !ok || got.Format(time.RFC3339) != want {
				t.Errorf("ParseDate(%q) = %v, %v; want %s", v, got, ok, want)
			}
		}
	}
}

// QUIRK test: a Date in asctime form is read as UTC.
func TestQuirkAsctimeDate(t *testing.T) {
	for _, v := range []string{"Mon Mar  3 10:00:00 2025", "Mon Mar 3 10:00:00 2025", " Mon  Mar 3  10:00:00 2025 "} {
		got, ok := mailhdr.ParseDate(v)
		if !ok || !got.Equal(received) {
			t.Errorf("ParseDate(%q) = %v, %v; want %v", v, got, ok, received)
		}
	}
	e := newExporter(t, t.TempDir())
	m := msg("asctime", "Date: Tue Feb 14 09:08:07 2023\n\n")
	if ref := mustPut(t, e, m); !strings.Contains(ref, "/20230214T090807Z-") {
		t.Errorf("Ref = %q, want the asctime date", ref)
	}
}

// QUIRK test: a Date without a zone is taken as UTC.
func TestQuirkDateWithoutZone(t *testing.T) {
	for _, v := range []string{"Mon, 3 Mar 2025 10:00:00", "3 Mar 2025 10:00"} {
		got, ok := mailhdr.ParseDate(v)
		if !ok || !got.Equal(received) {
			t.Errorf("ParseDate(%q) = %v, %v; want %v", v, got, ok, received)
		}
	}
	for _, v := range []string{"", "yesterday", "Mon, 3 Mar 2025", "Mon, 3 Mar 2025 25:00:00 +0000", "(only a comment)", "Mon, 32 Mar 2025 10:00:00 +0000", "Mon, 3 Mar 2025 10:00:00 +99999"} {
		if got, ok := mailhdr.ParseDate(v); ok {
			t.Errorf("ParseDate(%q) = %v, want no date", v, got)
		}
	}
}

// QUIRK test: an mbox "From " line left at the top of a message does not
// hide the header fields after it.
func TestQuirkLeadingFromLine(t *testing.T) {
	hdr := "From alice@example.org Mon Mar  3 10:00:00 2025\nFrom: alice@example.org\nDate: Fri, 14 Feb 2020 09:08:07 +0000\n\nbody\n"
	if v, ok := headerDate([]byte(hdr)); !ok || strings.TrimSpace(v) != "Fri, 14 Feb 2020 09:08:07 +0000" {
		t.Errorf("headerDate = %q, %v", v, ok)
	}
	// Only as the first line: later, a "From " line ends the header.
	hdr = "Subject: x\nFrom alice@example.org Mon Mar  3 10:00:00 2025\nDate: Fri, 14 Feb 2020 09:08:07 +0000\n\n"
	if v, ok := headerDate([]byte(hdr)); ok {
		t.Errorf("headerDate after a later From line = %q, want none", v)
	}
}

// QUIRK test: white space between the field name and the colon.
func TestQuirkSpaceBeforeColon(t *testing.T) {
	for _, hdr := range []string{"Date : Fri, 14 Feb 2020 09:08:07 +0000\n\n", "Subject: x\nDATE\t: Fri, 14 Feb 2020 09:08:07 +0000\n\n"} {
		if v, ok := headerDate([]byte(hdr)); !ok || strings.TrimSpace(v) != "Fri, 14 Feb 2020 09:08:07 +0000" {
			t.Errorf("headerDate(%q) = %q, %v", hdr, v, ok)
		}
	}
}

// The bytes on disk are exactly the canonical body: LF line ends, nothing
// added or dropped, so the file's sha256 is the journal's.
func TestFileBytes(t *testing.T) {
	dir := t.TempDir()
	e := newExporter(t, dir)
	samples := testmsg.Load(t)
	for _, s := range samples {
		m := exportertest.NewMessage(s.Name, s.Data)
		ref := mustStore(t, e, m)
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(ref)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, s.Data) || exportertest.SHA256(data) != m.SHA256 {
			t.Errorf("%s: file differs from the canonical body", s.Name)
		}
	}
	// The sample with Received and Date headers is named after its
	// newest Received date (10:00:05 UTC), as its IMAP INTERNALDATE and
	// mbox From_ line are; its Date (11:00 +0100) is older.
	tr := exportertest.NewMessage("trace-headers", nil)
	if ref, ok := mustHas(t, e, tr.Key); !ok || !strings.Contains(ref, "/20250303T100005Z-"+tr.Key) {
		t.Errorf("trace-headers: Ref %q, %v", ref, ok)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, AccountDir(exportertest.Account), TmpDir)); len(ents) != 0 {
		t.Errorf("%s holds %d entries after the Puts, want none", TmpDir, len(ents))
	}
}

// A Put of a key already stored writes nothing and returns the first Ref,
// even when the message would now get another name (a message without
// Date is named after Received, which changes on every download).
func TestPutSameKeyTwice(t *testing.T) {
	dir := t.TempDir()
	body := "Subject: no date\n\nbody\n"
	e := newExporter(t, dir)
	ref := mustStore(t, e, msg("twice", body))
	later := msg("twice", body)
	later.Received = received.Add(48 * time.Hour)
	if got := mustStore(t, e, later); got != ref {
		t.Errorf("second Put = %q, want %q", got, ref)
	}
	if err := e.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e2 := newExporter(t, dir)
	if got := mustStore(t, e2, later); got != ref {
		t.Errorf("Put from a new Exporter = %q, want %q", got, ref)
	}
	if got := files(t, dir); !slices.Equal(got, []string{ref}) {
		t.Errorf("files = %q, want only %q", got, ref)
	}

	// The file was deleted by hand: Put writes it again.
	if err := os.Remove(filepath.Join(dir, ref)); err != nil {
		t.Fatal(err)
	}
	if r, ok := mustHas(t, e2, later.Key); ok {
		t.Errorf("Has after delete = %q, want not found", r)
	}
	if _, err := e2.Open(t.Context(), ref); !errors.Is(err, exporters.ErrNotFound) {
		t.Errorf("Open after delete: err = %v, want ErrNotFound", err)
	}
	again := mustStore(t, e2, later)
	if want := AccountDir(exportertest.Account) + "/" + later.Received.Format(DateLayout) + "-" + later.Key + Ext; again != want {
		t.Errorf("Put after delete = %q, want %q", again, want)
	}
	if got := files(t, dir); !slices.Equal(got, []string{again}) {
		t.Errorf("files = %q, want only %q", got, again)
	}
}

// Puts of one key from several goroutines at once, with different
// Received times, leave one file.
func TestConcurrentSameKey(t *testing.T) {
	dir := t.TempDir()
	e := newExporter(t, dir)
	const n = 8
	refs := make(chan string, n)
	errs := make(chan error, n)
	for i := range n {
		go func() {
			m := msg("race", "Subject: race\n\nbody\n")
			m.Received = received.Add(time.Duration(i) * time.Hour)
			d, err := e.Put(t.Context(), m)
			refs <- d.Ref
			errs <- err
		}()
	}
	seen := map[string]bool{}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
		seen[<-refs] = true
	}
	if len(seen) != 1 {
		t.Errorf("Refs = %v, want one", seen)
	}
	if got := files(t, dir); len(got) != 1 {
		t.Errorf("files = %q, want one", got)
	}
}

// Has and Put read each account folder once per Exporter, however many
// look-ups.
func TestIndexReadOnce(t *testing.T) {
	dir := t.TempDir()
	accounts := []string{"alice@example.org", "bob@example.org", "a/b"}
	e0 := newExporter(t, dir)
	var stored []*exporters.Message
	for _, a := range accounts {
		for i := range 5 {
			m := msgFor(a, fmt.Sprint(i), fmt.Sprintf("Subject: %s %d\n\n", a, i))
			mustPut(t, e0, m)
			stored = append(stored, m)
		}
	}
	e0.Close()
	// Files of other programs are ignored.
	for _, junk := range []string{"notes.txt", ".hidden" + Ext, "20250303T100000Z-" + Ext, "2025030xT100000Z-abc" + Ext, "20250230T100000Z-abc" + Ext} {
		if err := os.WriteFile(filepath.Join(dir, "alice@example.org", junk), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "stray-file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}

	e := newExporter(t, dir)
	for round := range 3 {
		for _, m := range stored {
			ref, ok := mustHas(t, e, m.Key)
			if want := AccountDir(m.Account) + "/" + receivedPrefix + "-" + m.Key + Ext; !ok || ref != want {
				t.Errorf("round %d: Has(%s) = %q, %v; want %q", round, m.UIDL, ref, ok, want)
			}
		}
		for i := range 20 {
			if ref, ok := mustHas(t, e, exporters.MessageKey("nobody", fmt.Sprint(i))); ok {
				t.Errorf("Has found an absent message at %q", ref)
			}
		}
		if _, ok := mustHas(t, e, "abc"); ok {
			t.Error("Has found a file with an invalid date")
		}
		for _, m := range stored {
			m.Body = bytes.NewReader([]byte("Subject: again\n\n"))
			mustPut(t, e, m)
		}
		mustPut(t, e, msgFor("carol@example.org", fmt.Sprint(round), "Subject: new\n\n"))
	}
	e.mu.Lock()
	reads := e.reads
	e.mu.Unlock()
	if want := len(accounts) + 1; reads != want {
		t.Errorf("account folders read %d times, want %d (once each)", reads, want)
	}
	if n := countFiles(dir); n != len(stored)+3+5+1 {
		t.Errorf("%d files, want %d", n, len(stored)+3+5+1)
	}
}

// Put reads only the message's account folder; Has, given a key only,
// reads the others on its first miss.
func TestPutReadsOnlyItsAccount(t *testing.T) {
	dir := t.TempDir()
	e0 := newExporter(t, dir)
	for i := range 10 {
		mustPut(t, e0, msgFor(fmt.Sprintf("user%d", i), "1", "x\n"))
	}
	e0.Close()
	e := newExporter(t, dir)
	mustPut(t, e, msgFor("user3", "1", "x\n"))
	mustPut(t, e, msgFor("user3", "2", "y\n"))
	e.mu.Lock()
	reads := e.reads
	e.mu.Unlock()
	if reads != 1 {
		t.Errorf("%d account folders read by two Puts for one account, want 1", reads)
	}
	if _, ok := mustHas(t, e, exporters.MessageKey("user7", "1")); !ok {
		t.Error("Has did not find a message of an account folder it had not read")
	}
}

func TestStaleTmpCleanup(t *testing.T) {
	dir := t.TempDir()
	e0 := newExporter(t, dir)
	mustPut(t, e0, msg("first", "x\n"))
	e0.Close()
	acct := AccountDir(exportertest.Account)
	tmp := filepath.Join(dir, acct, TmpDir)
	old := time.Now().Add(-StaleTmpAge - time.Hour)
	recent := time.Now().Add(-StaleTmpAge + time.Hour)
	mk := func(name string, mtime time.Time) {
		t.Helper()
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	mk("k.0123.tmp", old)        // stale: removed
	mk("k.4567.tmp", recent)     // may still be written: kept
	mk("other.file", old)        // another program's file: kept
	mk("k.89ab.tmp", time.Now()) // fresh: kept
	if err := os.Mkdir(filepath.Join(tmp, "dir.tmp"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(filepath.Join(tmp, "dir.tmp"), old, old); err != nil {
		t.Fatal(err)
	}
	e := newExporter(t, dir)
	// The account folder is read, and cleaned, when first touched.
	mustHas(t, e, exporters.MessageKey("nobody", "x"))
	var got []string
	for _, f := range files(t, dir) {
		if rest, ok := strings.CutPrefix(f, acct+"/"+TmpDir+"/"); ok {
			got = append(got, rest)
		}
	}
	if want := []string{"k.4567.tmp", "k.89ab.tmp", "other.file"}; !slices.Equal(got, want) {
		t.Errorf("%s after first use = %q, want %q", TmpDir, got, want)
	}
	if _, err := os.Stat(filepath.Join(tmp, "dir.tmp")); err != nil {
		t.Errorf("a folder in %s was touched: %v", TmpDir, err)
	}
}

func TestOpenInvalidRef(t *testing.T) {
	dir := t.TempDir()
	e := newExporter(t, dir)
	m := msg("open", "body\n")
	ref := mustPut(t, e, m)
	acct, name, _ := strings.Cut(ref, "/")
	for _, bad := range []string{
		"", name, acct, acct + "/", "/" + ref, "../" + ref, acct + "/../" + ref, "./" + ref, acct + "/./" + name,
		acct + "//" + name, ref + "/", ref + ".tmp", acct + "/" + TmpDir + "/" + name, TmpDir + "/" + name,
		acct + "/" + m.Key + Ext, acct + "/x" + name, acct + "/" + strings.ToLower(name), acct + "/" + strings.Replace(name, "T", "t", 1),
		acct + "/" + strings.TrimSuffix(name, Ext), acct + "/" + strings.TrimSuffix(name, Ext) + ".EML", "." + acct + "/" + name,
		"a b/" + name, "a~0123/" + name, acct + "/" + "20250230T100000Z-" + m.Key + Ext, acct + "/" + "+0250303T100000Z-" + m.Key + Ext,
	} {
		if _, err := e.Open(t.Context(), bad); !errors.Is(err, ErrInvalidRef) {
			t.Errorf("Open(%q): err = %v, want ErrInvalidRef", bad, err)
		}
	}
	absent := acct + "/" + receivedPrefix + "-" + exporters.MessageKey(exportertest.Account, "absent") + Ext
	if _, err := e.Open(t.Context(), absent); !errors.Is(err, exporters.ErrNotFound) {
		t.Errorf("Open(%q): err = %v, want ErrNotFound", absent, err)
	}
	if _, err := e.Open(t.Context(), "nobody/"+name); !errors.Is(err, exporters.ErrNotFound) {
		t.Errorf("Open in a missing account folder: err = %v, want ErrNotFound", err)
	}
	if got := mustRead(t, e, ref); got != "body\n" {
		t.Errorf("Open(%q) = %q", ref, got)
	}
}

// A symbolic link planted at a message's final name is never written
// through, and never read through.
func TestSymlinkAtFinalName(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	e := newExporter(t, dir)
	mustStore(t, e, msg("other", "x\n")) // creates the account folder
	target := filepath.Join(outside, "victim")
	if err := os.WriteFile(target, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := msg("link", "body\n")
	ref := AccountDir(exportertest.Account) + "/" + receivedPrefix + "-" + m.Key + Ext
	link := filepath.Join(dir, filepath.FromSlash(ref))
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	e2 := newExporter(t, dir) // its index is read with the link in place
	if _, ok := mustHas(t, e2, m.Key); ok {
		t.Error("Has counts a symbolic link as a message")
	}
	if _, err := e2.Open(t.Context(), ref); err == nil {
		t.Error("Open read through a symbolic link")
	}
	if got := mustStore(t, e2, m); got != ref {
		t.Errorf("Put = %q, want %q", got, ref)
	}
	if got, _ := os.ReadFile(target); string(got) != "secret\n" {
		t.Errorf("link target changed to %q", got)
	}
	if fi, err := os.Lstat(link); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("%s after Put: %v, %v; want a regular file", ref, fi, err)
	}
	if got := mustRead(t, e2, ref); got != "body\n" {
		t.Errorf("Open = %q", got)
	}
}

// An account folder that links out of the root is refused.
func TestAccountLinkOutside(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dir, "alice")); err != nil {
		t.Fatal(err)
	}
	e := newExporter(t, dir)
	_, err := e.Put(t.Context(), msgFor("alice", "1", "x\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "eml: ") || !strings.Contains(err.Error(), `"alice"`) {
		t.Errorf("Put into a folder linking outside: err = %v, want an eml error naming the account", err)
	}
	if _, _, err := e.Has(t.Context(), exporters.MessageKey("alice", "1")); err == nil {
		t.Error("Has read an account folder linking outside the root")
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("%d entries written outside the root", len(ents))
	}
}

func TestAccountDirIsFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "alice"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	e := newExporter(t, dir)
	_, err := e.Put(t.Context(), msgFor("alice", "1", "x\n"))
	if want := filepath.Join(dir, "alice") + " is not a folder"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want one containing %q", err, want)
	}
}

// Sync fsyncs the account folders renamed into since the last Sync, and
// the root when an account folder was created.
func TestSyncTracksFolders(t *testing.T) {
	dir := t.TempDir()
	e := newExporter(t, dir)
	state := func() ([]string, bool) {
		e.mu.Lock()
		defer e.mu.Unlock()
		var d []string
		for k := range e.dirty {
			d = append(d, k)
		}
		slices.Sort(d)
		return d, e.rootDirty
	}
	if d, r := state(); len(d) != 0 || r {
		t.Errorf("after New: dirty %q, root %v", d, r)
	}
	mustPut(t, e, msgFor("alice", "1", "x\n"))
	mustPut(t, e, msgFor("bob", "1", "x\n"))
	if d, r := state(); !slices.Equal(d, []string{"alice", "bob"}) || !r {
		t.Errorf("after Puts: dirty %q, root %v; want alice, bob, root", d, r)
	}
	if err := e.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if d, r := state(); len(d) != 0 || r {
		t.Errorf("after Sync: dirty %q, root %v", d, r)
	}
	mustPut(t, e, msgFor("alice", "2", "x\n"))
	mustPut(t, e, msgFor("alice", "1", "x\n")) // already there: no rename
	if d, r := state(); !slices.Equal(d, []string{"alice"}) || r {
		t.Errorf("after a Put into an existing folder: dirty %q, root %v; want alice only", d, r)
	}
	// A failed Sync keeps the folders for the next one.
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	if err := e.Sync(cancelled); !errors.Is(err, context.Canceled) {
		t.Errorf("Sync with a cancelled context: %v", err)
	}
	if d, _ := state(); !slices.Equal(d, []string{"alice"}) {
		t.Errorf("after a failed Sync: dirty %q, want alice kept", d)
	}
	if err := e.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestPutErrorNamesMessage: the error of a failed Put names the account
// too. (The conformance suite checks that it wraps exporters.ErrShortBody
// and names the message and the folder.)
func TestPutErrorNamesMessage(t *testing.T) {
	dir := t.TempDir()
	e := newExporter(t, dir)
	m := msg("named", "body\n")
	m.Body = lyingBody{}
	_, err := e.Put(t.Context(), m)
	if err == nil || !strings.Contains(err.Error(), exportertest.Account) {
		t.Errorf("err = %v, want it to name the account %s", err, exportertest.Account)
	}
	if n := countFiles(dir); n != 0 {
		t.Errorf("%d files after a failed Put", n)
	}
	if _, err := e.Put(t.Context(), nil); err == nil {
		t.Error("Put(nil) succeeded")
	}
}

// lyingBody claims 10 bytes and holds none.
type lyingBody struct{}

func (lyingBody) Size() int64                           { return 10 }
func (lyingBody) ReadAt(p []byte, _ int64) (int, error) { return 0, io.EOF }

func TestNewErrors(t *testing.T) {
	t.Run("root is a file", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := New(p, nil)
		if err == nil || !strings.Contains(err.Error(), p) || !strings.HasPrefix(err.Error(), "eml: ") {
			t.Errorf("New on a file: err = %v, want an eml error naming %s", err, p)
		}
	})
	t.Run("empty path", func(t *testing.T) {
		if _, err := New("", nil); err == nil {
			t.Error(`New("") succeeded`)
		}
	})
	t.Run("not writable", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("permission bits do not stop root")
		}
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(dir, 0o700)
		_, err := New(dir, nil)
		if want := dir + " is not writable"; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want %q", err, want)
		}
	})
}

func TestParseName(t *testing.T) {
	key := exporters.MessageKey("a", "b")
	for name, want := range map[string]bool{
		"20250303T100000Z-" + key + Ext:                              true,
		"00000101T000000Z-a" + Ext:                                   true,
		"99991231T235959Z-a_b-c" + Ext:                               true,
		"20250303T100000Z-" + Ext:                                    false,
		"20250303T100000Z_" + key + Ext:                              false,
		"20250303T100000-" + key + Ext:                               false,
		"20250303T240000Z-" + key + Ext:                              false,
		"20250229T100000Z-" + key + Ext:                              false,
		"2025-303T100000Z-" + key + Ext:                              false,
		"+0250303T100000Z-" + key + Ext:                              false,
		"20250303T100000Z-" + key + ".tmp":                           false,
		"20250303T100000Z-" + key + Ext + "x":                        false,
		"20250303T100000Z-a.b" + Ext:                                 false,
		"20250303T100000Z-" + strings.Repeat("a", MaxKeyLen+1) + Ext: false,
	} {
		if _, ok := parseName(name); ok != want {
			t.Errorf("parseName(%q) = %v, want %v", name, ok, want)
		}
	}
}

func BenchmarkPut(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			e := newExporter(b, b.TempDir())
			data := append([]byte("Date: Mon, 3 Mar 2025 10:00:00 +0000\nSubject: bench\n\n"),
				bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n"), size/64)...)
			ctx := b.Context()
			b.SetBytes(int64(len(data)))
			i := 0
			for b.Loop() {
				m := &exporters.Message{Key: fmt.Sprintf("%032x", i), Account: "bench@example.org", Body: bytes.NewReader(data)}
				if _, err := e.Put(ctx, m); err != nil {
					b.Fatal(err)
				}
				i++
				if i%64 == 0 {
					if err := e.Sync(ctx); err != nil {
						b.Fatal(err)
					}
				}
			}
			if err := e.Sync(ctx); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// Put writes to the account's temporary folder only; Sync makes the batch
// durable and only then gives the files their final names, so a file under
// its final name is always complete and durable. Close publishes what Put
// wrote since the last Sync.
func TestPutPublishesOnlyAtSync(t *testing.T) {
	dir := t.TempDir()
	e := newExporter(t, dir)
	a := msg("staged-a", "Subject: a\n\na\n")
	ref := mustPut(t, e, a)
	if got := files(t, dir); len(got) != 1 || !strings.Contains(got[0], "/"+TmpDir+"/") {
		t.Fatalf("files before Sync = %q, want only a temporary file", got)
	}
	if got, ok := mustHas(t, e, a.Key); !ok || got != ref {
		t.Errorf("Has before Sync = %q, %v; want %q", got, ok, ref)
	}
	rc, err := e.Open(t.Context(), ref)
	if err != nil {
		t.Fatalf("Open before Sync: %v", err)
	}
	data, _ := io.ReadAll(rc)
	rc.Close()
	if string(data) != "Subject: a\n\na\n" {
		t.Errorf("Open before Sync read %q", data)
	}
	if err := e.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := files(t, dir); !slices.Equal(got, []string{ref}) {
		t.Fatalf("files after Sync = %q, want %q", got, ref)
	}
	refB := mustPut(t, e, msg("staged-b", "Subject: b\n\nb\n"))
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	want := []string{ref, refB}
	slices.Sort(want)
	if got := files(t, dir); !slices.Equal(got, want) {
		t.Fatalf("files after Close = %q, want %q", got, want)
	}
}

// headerDate returns the first Date field that mailhdr reads in hdr.
func headerDate(hdr []byte) (string, bool) {
	h := mailhdr.Read(hdr)
	return h.Get("Date"), h.Has("Date")
}
