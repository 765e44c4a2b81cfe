package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/all"
	"github.com/popmigrate/popmigrate/exporters/eml"
	"github.com/popmigrate/popmigrate/exporters/maildir"
	"github.com/popmigrate/popmigrate/exporters/mbox"
	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

// fanDests are the file destinations of one account in the fan-out
// tests: its Maildir, its own mbox file and an eml tree that the accounts
// share (one folder per account inside it).
type fanDests struct {
	account string
	maildir string
	mbox    string
	emlRoot string
}

// fanDestsIn returns the destinations of account under dir: the layout
// that fanTo turns into destination specs.
func fanDestsIn(dir, account string) fanDests {
	return fanDests{
		account: account,
		maildir: filepath.Join(dir, "mail", account),
		mbox:    filepath.Join(dir, "mbox", account+".mbox"),
		emlRoot: filepath.Join(dir, "eml"),
	}
}

// specs returns the destination specs, in the order the account lists
// them: Maildir, mbox, eml.
func (d fanDests) specs() []string {
	return []string{"maildir:" + d.maildir, "mbox:" + d.mbox, "eml:" + d.emlRoot}
}

// ids returns the destination ids the journal records, parallel to specs.
func (d fanDests) ids(t testing.TB) []string {
	t.Helper()
	var ids []string
	for _, s := range d.specs() {
		pd, err := all.Registry().Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, pd.ID())
	}
	return ids
}

// emlDir is the account's folder in the eml tree.
func (d fanDests) emlDir() string { return filepath.Join(d.emlRoot, eml.AccountDir(d.account)) }

// fanAccount returns the account of user (as e.account) writing to the
// Maildir, an mbox file and the shared eml tree, and its destinations.
func (e *env) fanAccount(user string) (*config.Account, fanDests) {
	a := e.account(user)
	d := fanDestsIn(e.dir, a.Name)
	a.To = d.specs()
	return a, d
}

// datedMsgs returns n small messages with UIDLs prefix1..prefixN, each
// with a Date: header (a different day each) so that the name of its .eml
// file is known in advance: see emlName.
func datedMsgs(prefix string, n int) []srcMsg {
	out := make([]srcMsg, n)
	for i := range out {
		body := fmt.Sprintf("Date: %s\nFrom: dated%d@example.org\nTo: rcpt@example.org\nSubject: dated %s%d\nMessage-ID: <%s%d@example.org>\n\nBody of dated message %d.\nFrom the start of a line.\n",
			datedDate(i).Format(time.RFC1123Z), i, prefix, i+1, prefix, i+1, i)
		out[i] = newMsg(fmt.Sprintf("%s%d", prefix, i+1), []byte(body))
	}
	return out
}

// datedDate is the Date: of message i (0-based) of datedMsgs.
func datedDate(i int) time.Time {
	return time.Date(2024, 2, 1+i, 9, 30, 15, 0, time.FixedZone("", 2*3600))
}

// emlName is the file name the eml exporter gives message key of account
// when the message's Date: is date.
func emlName(account, key string, date time.Time) string {
	return date.UTC().Format(eml.DateLayout) + "-" + exporters.MessageKey(account, key) + eml.Ext
}

// emlFile is one message file of an account folder of an eml tree.
type emlFile struct {
	name string
	data []byte
}

// emlFiles returns the message files of the account folder dir by message
// key, and the names of the files in its temporary folder. Every entry of
// the folder other than the temporary folder must be a message file
// named <date>-<key>.eml, each key once.
func emlFiles(t testing.TB, dir string) (byKey map[string]emlFile, tmp []string) {
	t.Helper()
	byKey = map[string]emlFile{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range entries {
		name := de.Name()
		if name == eml.TmpDir {
			if !de.IsDir() {
				t.Errorf("%s: %s is not a folder", dir, name)
			}
			continue
		}
		stem, ok := strings.CutSuffix(name, eml.Ext)
		date, key, ok2 := strings.Cut(stem, "-")
		if !ok || !ok2 || len(date) != len(eml.DateLayout) || len(key) != 32 || !de.Type().IsRegular() {
			t.Errorf("%s: unexpected entry %s (%v)", dir, name, de.Type())
			continue
		}
		if _, dup := byKey[key]; dup {
			t.Errorf("%s: key %s has two files", dir, key)
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		byKey[key] = emlFile{name: name, data: data}
	}
	tmpEntries, err := os.ReadDir(filepath.Join(dir, eml.TmpDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	for _, de := range tmpEntries {
		tmp = append(tmp, de.Name())
	}
	return byKey, tmp
}

// mboxMessages reads the mbox file at path the way a user's tools would
// and checks that it ends cleanly: every entry parses (Entries), the file
// ends with the blank line that closes its last entry, and ReadFile (with
// the index) agrees on the number of messages. It returns the messages as
// ReadFile gives them, which is byte for byte what Put was given.
func mboxMessages(t testing.TB, path string) [][]byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var entries int
	for _, err := range mbox.Entries(bytes.NewReader(raw)) {
		if err != nil {
			t.Errorf("%s: entry %d does not parse: %v", path, entries+1, err)
			return nil
		}
		entries++
	}
	if len(raw) > 0 && !bytes.HasSuffix(raw, []byte("\n\n")) {
		t.Errorf("%s: %d bytes ending %q: the last entry is torn (no blank line after it)", path, len(raw), raw[max(0, len(raw)-20):])
	}
	msgs, err := mbox.ReadFile(path)
	if err != nil {
		t.Errorf("%s: ReadFile: %v", path, err)
		return nil
	}
	if len(msgs) != entries {
		t.Errorf("%s: ReadFile found %d messages, Entries %d", path, len(msgs), entries)
	}
	return msgs
}

// sumCounts returns how many times each sha256 occurs among msgs.
func sumCounts(msgs [][]byte) map[string]int {
	out := map[string]int{}
	for _, m := range msgs {
		out[sha256Hex(m)]++
	}
	return out
}

// wantSumCounts is sumCounts of the canonical forms of msgs.
func wantSumCounts(msgs []srcMsg) map[string]int {
	out := map[string]int{}
	for _, m := range msgs {
		out[m.sum()]++
	}
	return out
}

// checkCounts fails unless got and want are the same multiset.
func checkCounts(t testing.TB, where string, got, want map[string]int) {
	t.Helper()
	for sum, n := range want {
		if got[sum] != n {
			t.Errorf("%s: the message with sha256 %s is there %d times, want %d", where, sum[:12], got[sum], n)
		}
	}
	for sum, n := range got {
		if want[sum] == 0 {
			t.Errorf("%s: %d unexpected messages with sha256 %s", where, n, sum[:12])
		}
	}
}

// mboxEntryAt returns the message of the entry at ref ("<offset>+<length>")
// of the mbox file raw, with the mboxrd quoting undone, and an error if
// ref does not delimit exactly one entry.
func mboxEntryAt(raw []byte, ref string) ([]byte, error) {
	offStr, nStr, ok := strings.Cut(ref, "+")
	off, err1 := strconv.ParseInt(offStr, 10, 64)
	n, err2 := strconv.ParseInt(nStr, 10, 64)
	if !ok || err1 != nil || err2 != nil || off < 0 || n <= 0 || off+n > int64(len(raw)) {
		return nil, fmt.Errorf("ref %q is not an entry of a %d-byte file", ref, len(raw))
	}
	msgs, err := mbox.ReadAll(bytes.NewReader(raw[off : off+n]))
	if err != nil {
		return nil, fmt.Errorf("ref %q: %w", ref, err)
	}
	if len(msgs) != 1 {
		return nil, fmt.Errorf("ref %q delimits %d entries, want 1", ref, len(msgs))
	}
	if off+n < int64(len(raw)) && !bytes.HasPrefix(raw[off+n:], []byte("From ")) {
		return nil, fmt.Errorf("ref %q does not end where the next entry starts", ref)
	}
	return msgs[0], nil
}

// checkFanout checks that each destination of d holds every message of
// msgs exactly once, byte-equal to its canonical form, and nothing else;
// that the journal records each as stored, with its sha256 and exactly one
// delivery per destination whose reference names that copy; and that the
// journal's state for the mbox is the file's committed end, its size.
// allowTmp accepts leftover temporary files (after a kill).
func checkFanout(t testing.TB, j *journal.Journal, d fanDests, msgs []srcMsg, allowTmp bool) {
	t.Helper()
	name := d.account
	want := wantSumCounts(msgs)

	checkMaildir(t, d.maildir, name, msgs, allowTmp)

	mboxRaw, err := os.ReadFile(d.mbox)
	if err != nil {
		t.Fatal(err)
	}
	checkCounts(t, d.mbox, sumCounts(mboxMessages(t, d.mbox)), want)

	files, tmp := emlFiles(t, d.emlDir())
	if len(tmp) > 0 && !allowTmp {
		t.Errorf("%s: temporary files %v left", d.emlDir(), tmp)
	}
	var emlData [][]byte
	for _, f := range files {
		emlData = append(emlData, f.data)
	}
	checkCounts(t, d.emlDir(), sumCounts(emlData), want)

	ctx := context.Background()
	rows, err := j.Messages(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	dels, err := j.Deliveries(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(msgs) || len(dels) != len(msgs) {
		t.Errorf("journal: %d messages and %d with deliveries for %s, want %d", len(rows), len(dels), name, len(msgs))
	}
	byKey := map[string]journal.MessageRow{}
	for _, r := range rows {
		byKey[r.UIDL] = r
	}
	ids := d.ids(t)
	for _, m := range msgs {
		key := exporters.MessageKey(name, m.key)
		r, ok := byKey[m.key]
		if !ok || r.State != journal.StateStored || r.SHA256 != m.sum() || r.Error != "" {
			t.Errorf("journal: message %q of %s: %+v; want stored with sha256 %s", m.key, name, r, m.sum())
		}
		if len(dels[m.key]) != len(ids) {
			t.Errorf("journal: message %q of %s has %d deliveries, want %d: %v", m.key, name, len(dels[m.key]), len(ids), dels[m.key])
		}
		for i, id := range ids {
			del, ok := dels[m.key][id]
			if !ok {
				t.Errorf("journal: message %q of %s has no delivery to %s", m.key, name, id)
				continue
			}
			if del.SHA256 != m.sum() {
				t.Errorf("journal: delivery of %q to %s: sha256 %s, want %s", m.key, id, del.SHA256, m.sum())
			}
			var wantRef string
			switch i {
			case 0:
				wantRef = "new/" + key + maildir.Suffix
			case 1:
				got, err := mboxEntryAt(mboxRaw, del.Ref)
				if err != nil {
					t.Errorf("journal: delivery of %q to %s: %v", m.key, id, err)
					continue
				}
				// The mbox format cannot tell whether a message ended
				// with LF: Entries gives it one.
				if !bytes.Equal(got, m.want) && !bytes.Equal(got, append(bytes.Clone(m.want), '\n')) {
					t.Errorf("journal: delivery of %q to %s: the entry at %s holds another message", m.key, id, del.Ref)
				}
				continue
			case 2:
				f, ok := files[key]
				if !ok {
					t.Errorf("journal: delivery of %q to %s: no file for key %s", m.key, id, key)
					continue
				}
				wantRef = eml.AccountDir(name) + "/" + f.name
				if !bytes.Equal(f.data, m.want) {
					t.Errorf("%s: %s (message %q) differs from its canonical form", d.emlDir(), f.name, m.key)
				}
			}
			if del.Ref != wantRef {
				t.Errorf("journal: delivery of %q to %s: ref %q, want %q", m.key, id, del.Ref, wantRef)
			}
		}
	}
	state, err := j.DestState(ctx, name, ids[1])
	if err != nil {
		t.Fatal(err)
	}
	if state != strconv.Itoa(len(mboxRaw)) {
		t.Errorf("journal: state of %s is %q, want the file's size %d", ids[1], state, len(mboxRaw))
	}
}

// TestFanoutEveryDestination runs two accounts into a Maildir, an mbox
// file and an eml tree each at once: every message lands once in each,
// byte-equal; the journal records one delivery per destination with the
// message's sha256 and the mbox's committed end; a second run stores and
// changes nothing.
func TestFanoutEveryDestination(t *testing.T) {
	alice, bob := trickyMsgs(t, "t-"), smallMsgs("s-", 5)
	e := newEnv(t, []pop3test.Mailbox{mailbox("alice", alice), mailbox("bob", bob)}, nil)
	aliceAcct, aliceDests := e.fanAccount("alice")
	bobAcct, bobDests := e.fanAccount("bob")
	accounts := []*config.Account{aliceAcct, bobAcct}
	o := testOptions()
	o.BatchSize = 4

	rep := e.run(accounts, o)
	for _, c := range []struct {
		msgs  []srcMsg
		dests fanDests
	}{{alice, aliceDests}, {bob, bobDests}} {
		a := accountReport(t, rep, c.dests.account)
		n := len(c.msgs)
		wantCounts(t, a, n, n, 0, 0, true)
		if ids := c.dests.ids(t); !slices.Equal(a.Destinations, ids) {
			t.Errorf("%s: destinations %v, want %v", a.Account, a.Destinations, ids)
		}
		checkFanout(t, e.j, c.dests, c.msgs, false)
	}

	before := map[string]map[string]fs.FileInfo{}
	for _, dir := range []string{"mail", "mbox", "eml"} {
		before[dir] = stamps(t, filepath.Join(e.dir, dir))
	}
	retrs := e.srv.Stats().Retrs
	rep = e.run(accounts, o)
	wantCounts(t, accountReport(t, rep, "alice"), len(alice), 0, len(alice), 0, true)
	wantCounts(t, accountReport(t, rep, "bob"), len(bob), 0, len(bob), 0, true)
	if got := e.srv.Stats().Retrs - retrs; got != 0 {
		t.Errorf("the second run downloaded %d messages, want none", got)
	}
	for dir, st := range before {
		sameFiles(t, filepath.Join(e.dir, dir), st)
	}
	checkFanout(t, e.j, aliceDests, alice, false)
	checkFanout(t, e.j, bobDests, bob, false)
}

// TestFanoutPartialFailure makes the eml tree refuse two messages (a
// folder sits where their files must go, so the rename fails): the other
// destinations hold them and the journal records those deliveries, but
// the messages are failed and the account is not whole. With the fault
// removed, a second run downloads only those two and writes only their
// .eml files: the Maildir and the mbox gain nothing.
func TestFanoutPartialFailure(t *testing.T) {
	msgs := datedMsgs("d", 6)
	e := newEnv(t, []pop3test.Mailbox{mailbox("alice", msgs)}, nil)
	a, d := e.fanAccount("alice")
	ids := d.ids(t)
	bad := map[string]bool{"d2": true, "d5": true}
	var blockers []string
	for i, m := range msgs {
		if !bad[m.key] {
			continue
		}
		p := filepath.Join(d.emlDir(), emlName(a.Name, m.key, datedDate(i)))
		if err := os.MkdirAll(filepath.Join(p, "blocker"), 0o700); err != nil {
			t.Fatal(err)
		}
		blockers = append(blockers, p)
	}
	o := testOptions()
	o.BatchSize = 2

	ar := accountReport(t, e.run([]*config.Account{a}, o), a.Name)
	wantCounts(t, ar, 6, 4, 0, 2, false)
	for _, f := range ar.Failures {
		// The folder at the file's name is found by Put, before the
		// group commit's rename would fail on it (and with it the batch).
		if !bad[f.UIDL] || !strings.Contains(f.Error, "destination "+ids[2]) || !strings.Contains(f.Error, "a folder sits at") {
			t.Errorf("failure %+v, want one of %v naming %s and the folder in the way", f, bad, ids[2])
		}
	}
	if ar.Error != "" {
		t.Errorf("account error %q: a message failure must not fail the account", ar.Error)
	}
	checkMaildir(t, d.maildir, a.Name, msgs, false)
	checkCounts(t, d.mbox, sumCounts(mboxMessages(t, d.mbox)), wantSumCounts(msgs))
	ctx := context.Background()
	dels, err := e.j.Deliveries(ctx, a.Name)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := e.j.Messages(ctx, a.Name)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		got := slices.Sorted(maps.Keys(dels[r.UIDL]))
		want := slices.Sorted(slices.Values(ids))
		wantState := journal.StateStored
		if bad[r.UIDL] {
			want = slices.Sorted(slices.Values(ids[:2]))
			wantState = journal.StateFailed
			if !strings.Contains(r.Error, ids[2]) {
				t.Errorf("journal: message %q: error %q does not name %s", r.UIDL, r.Error, ids[2])
			}
		}
		if r.State != wantState || !slices.Equal(got, want) {
			t.Errorf("journal: message %q: state %q deliveries %v; want %q %v", r.UIDL, r.State, got, wantState, want)
		}
		for id, del := range dels[r.UIDL] {
			if del.SHA256 != r.SHA256 || r.SHA256 == "" {
				t.Errorf("journal: message %q: delivery to %s has sha256 %s, the message %s", r.UIDL, id, del.SHA256, r.SHA256)
			}
		}
	}

	for _, p := range blockers {
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
	}
	// The folders that stood in the way were no messages: the eml
	// folder holds the four others.
	if files, _ := emlFiles(t, d.emlDir()); len(files) != 4 {
		t.Errorf("%s: %d message files, want 4", d.emlDir(), len(files))
	}
	mdBefore := stamps(t, d.maildir)
	mboxBefore := stamps(t, filepath.Dir(d.mbox))
	emlBefore := stamps(t, d.emlDir())
	retrs := e.srv.Stats().Retrs
	ar = accountReport(t, e.run([]*config.Account{a}, o), a.Name)
	wantCounts(t, ar, 6, 2, 4, 0, true)
	if got := e.srv.Stats().Retrs - retrs; got != 2 {
		t.Errorf("the second run downloaded %d messages, want the 2 that one destination lacked", got)
	}
	sameFiles(t, d.maildir, mdBefore)
	sameFiles(t, filepath.Dir(d.mbox), mboxBefore)
	// The eml folder kept its four files untouched and gained two.
	after := stamps(t, d.emlDir())
	for rel, fi := range emlBefore {
		if nfi, ok := after[rel]; !ok || !os.SameFile(fi, nfi) || !fi.ModTime().Equal(nfi.ModTime()) {
			t.Errorf("%s: %s was replaced or removed", d.emlDir(), rel)
		}
	}
	if len(after) != len(emlBefore)+2 {
		t.Errorf("%s: %d files after the second run, want %d", d.emlDir(), len(after), len(emlBefore)+2)
	}
	for i, m := range msgs {
		if bad[m.key] {
			if _, ok := after[emlName(a.Name, m.key, datedDate(i))]; !ok {
				t.Errorf("%s: message %q is not at its dated name", d.emlDir(), m.key)
			}
		}
	}
	checkFanout(t, e.j, d, msgs, false)
}
