package pipeline_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/all"
	"github.com/popmigrate/popmigrate/exporters/maildir"
	"github.com/popmigrate/popmigrate/internal/testmsg"
	"github.com/popmigrate/popmigrate/internal/testpki"
	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/pipeline"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

// testTimeout bounds every Run of these tests.
const testTimeout = 60 * time.Second

// srcMsg is one message as a test knows it: what the server serves and
// what must land in the destination.
type srcMsg struct {
	// uid is the server's UIDL ("" when the server has none).
	uid string
	// key is the journal's UIDL for the message: uid, a disambiguated
	// duplicate, or "" when the test cannot know it (synthetic keys).
	key string
	// wire is the served form: CRLF line ends, served as is (Raw).
	wire []byte
	// want is the canonical form the destination must hold.
	want []byte
}

// sum returns the sha256 of the canonical form, lower-case hex.
func (m srcMsg) sum() string { return sha256Hex(m.want) }

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// wireForm returns the CRLF form of a canonical message, as a server
// storing CRLF would serve it: every LF becomes CRLF (so a CR LF of the
// canonical form becomes CR CR LF) and a last line without a line end gets
// one, as RETR must end with CRLF "." CRLF.
func wireForm(canonical []byte) []byte {
	w := bytes.ReplaceAll(canonical, []byte("\n"), []byte("\r\n"))
	if len(w) > 0 && !bytes.HasSuffix(w, []byte("\r\n")) {
		w = append(w, '\r', '\n')
	}
	return w
}

// newMsg returns a message with UIDL uid whose canonical form is data
// (after the final line end wireForm may add).
func newMsg(uid string, data []byte) srcMsg {
	w := wireForm(data)
	return srcMsg{uid: uid, key: uid, wire: w, want: exporters.Canonicalize(w)}
}

// trickyMsgs returns every sample of testdata/messages as a message with
// UIDL prefix+name.
func trickyMsgs(t testing.TB, prefix string) []srcMsg {
	t.Helper()
	var out []srcMsg
	for _, s := range testmsg.Load(t) {
		out = append(out, newMsg(prefix+s.Name, s.Data))
	}
	return out
}

// smallMsgs returns n small distinct messages with UIDLs prefix1..prefixN.
func smallMsgs(prefix string, n int) []srcMsg {
	out := make([]srcMsg, n)
	for i := range out {
		body := fmt.Sprintf("From: sender%d@example.org\nTo: rcpt@example.org\nSubject: message %s%d\n\nBody of message %d.\n.\n..leading dot\n", i, prefix, i+1, i)
		out[i] = newMsg(fmt.Sprintf("%s%d", prefix, i+1), []byte(body))
	}
	return out
}

// mailbox returns the server mailbox of user holding msgs.
func mailbox(user string, msgs []srcMsg) pop3test.Mailbox {
	mb := pop3test.Mailbox{User: user, Password: passwordOf(user)}
	for _, m := range msgs {
		mb.Messages = append(mb.Messages, pop3test.Message{UID: m.uid, Data: m.wire, Raw: true})
	}
	return mb
}

func passwordOf(user string) string { return "pw-" + user + "-secret" }

// env is one test's world: a POP3 server with implicit TLS on 127.0.0.1,
// trusted through a private CA file, a real SQLite journal, and Maildir
// folders, all in a temporary folder.
type env struct {
	t     testing.TB
	dir   string
	pki   *testpki.PKI
	srv   *pop3test.Server
	port  int
	jpath string
	j     *journal.Journal
}

// newEnv starts the server with boxes and opens the journal. so may set
// faults; its TLS fields are filled in.
func newEnv(t testing.TB, boxes []pop3test.Mailbox, so *pop3test.ServerOptions) *env {
	t.Helper()
	dir := t.TempDir()
	pki, err := testpki.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	var o pop3test.ServerOptions
	if so != nil {
		o = *so
	}
	o.TLSConfig, o.Implicit = pki.ServerConfig, true
	srv := pop3test.NewServer(boxes, &o)
	addr, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	e := &env{t: t, dir: dir, pki: pki, srv: srv, port: addr.(*net.TCPAddr).Port}
	e.jpath = filepath.Join(dir, "journal.db")
	e.j = e.openJournal()
	return e
}

// openJournal opens the env's journal and closes it at the end of the test.
func (e *env) openJournal() *journal.Journal {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	j, err := journal.Open(ctx, e.jpath)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { j.Close() })
	return j
}

// maildir returns the Maildir folder of account name.
func (e *env) maildir(name string) string { return filepath.Join(e.dir, "mail", name) }

// account returns the account of user, named user, that logs in with its
// right password and writes to e.maildir(user).
func (e *env) account(user string) *config.Account {
	return e.accountWithPassword(user, passwordOf(user))
}

// accountWithPassword is account with the given password.
func (e *env) accountWithPassword(user, password string) *config.Account {
	e.t.Helper()
	pwFile := filepath.Join(e.dir, "secret-"+user)
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		e.t.Fatal(err)
	}
	a, err := config.FromFlags(fmt.Sprintf("pop3s://%s@127.0.0.1:%d", user, e.port), user, config.Defaults{
		To:       []string{"maildir:" + e.maildir(user)},
		Password: config.Secret{File: pwFile},
		CAFile:   e.pki.CAFile,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

// testOptions returns options for quick tests: tiny backoff, short
// timeouts. Callers change what they need.
func testOptions() *pipeline.Options {
	return &pipeline.Options{
		Destinations:  all.Registry(),
		Backoff:       10 * time.Millisecond,
		MaxBackoff:    40 * time.Millisecond,
		Timeout:       20 * time.Second,
		BatchInterval: 100 * time.Millisecond,
	}
}

// run runs the pipeline and fails the test if Run returns an error.
func (e *env) run(accounts []*config.Account, o *pipeline.Options) *pipeline.Report {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	rep, err := pipeline.Run(ctx, e.j, accounts, o)
	if err != nil {
		e.t.Fatalf("Run: %v", err)
	}
	if len(rep.Accounts) != len(accounts) {
		e.t.Fatalf("report has %d accounts, want %d", len(rep.Accounts), len(accounts))
	}
	return rep
}

// accountReport returns the report of account name.
func accountReport(t testing.TB, rep *pipeline.Report, name string) *pipeline.AccountReport {
	t.Helper()
	for _, a := range rep.Accounts {
		if a != nil && a.Account == name {
			return a
		}
	}
	t.Fatalf("no report for account %s", name)
	return nil
}

// wantCounts checks the counts of an account report.
func wantCounts(t testing.TB, a *pipeline.AccountReport, server, stored, skipped, failed int, whole bool) {
	t.Helper()
	if a.ServerMessages != server || a.Stored != stored || a.SkippedAlreadyStored != skipped || a.Failed != failed || a.Whole != whole {
		t.Errorf("account %s: server %d stored %d skipped %d failed %d whole %v; want %d %d %d %d %v (error %q, failures %v)",
			a.Account, a.ServerMessages, a.Stored, a.SkippedAlreadyStored, a.Failed, a.Whole,
			server, stored, skipped, failed, whole, a.Error, a.Failures)
	}
	if failed == 0 && len(a.Failures) != 0 {
		t.Errorf("account %s: failures %v, want none", a.Account, a.Failures)
	}
}

// mdFile is one message file of a Maildir.
type mdFile struct {
	rel  string // "new/<name>" or "cur/<name>"
	data []byte
}

// maildirFiles returns the message files in new/ and cur/ of dir, skipping
// hidden names (which Maildir readers ignore), and the names of the regular
// files in tmp/.
func maildirFiles(t testing.TB, dir string) (msgs []mdFile, tmp []string) {
	t.Helper()
	for _, sub := range []string{"new", "cur", "tmp"} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, de := range entries {
			if !de.Type().IsRegular() {
				t.Errorf("%s/%s: not a regular file (%v)", sub, de.Name(), de.Type())
				continue
			}
			if sub == "tmp" {
				tmp = append(tmp, de.Name())
				continue
			}
			if strings.HasPrefix(de.Name(), ".") {
				continue
			}
			data, err := os.ReadFile(filepath.Join(dir, sub, de.Name()))
			if err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, mdFile{rel: sub + "/" + de.Name(), data: data})
		}
	}
	return msgs, tmp
}

// checkMaildir checks that the Maildir of account name holds every message
// of msgs exactly once, byte-equal to its canonical form, under the name
// derived from its key when the key is known, and nothing else; tmp/ must
// be empty unless allowTmp.
func checkMaildir(t testing.TB, dir, name string, msgs []srcMsg, allowTmp bool) {
	t.Helper()
	files, tmp := maildirFiles(t, dir)
	if len(tmp) > 0 && !allowTmp {
		t.Errorf("%s: tmp/ holds %v, want nothing", dir, tmp)
	}
	got := make([]string, 0, len(files))
	byRel := make(map[string][]byte, len(files))
	for _, f := range files {
		got = append(got, sha256Hex(f.data))
		byRel[f.rel] = f.data
	}
	want := make([]string, 0, len(msgs))
	for _, m := range msgs {
		want = append(want, m.sum())
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s: %d message files, want %d; the multisets of sha256 differ", dir, len(got), len(want))
	}
	for _, m := range msgs {
		if m.key == "" {
			continue
		}
		rel := "new/" + exporters.MessageKey(name, m.key) + maildir.Suffix
		data, ok := byRel[rel]
		if !ok {
			t.Errorf("%s: message %q is not in %s", dir, m.key, rel)
			continue
		}
		if !bytes.Equal(data, m.want) {
			t.Errorf("%s: %s (message %q) is %d bytes, differs from the canonical %d bytes", dir, rel, m.key, len(data), len(m.want))
		}
	}
}

// checkJournal checks that the journal records every message of msgs
// (with a known key) as stored, with its sha256 and one delivery per
// destination whose file exists and has that sha256, and records nothing
// else for the account.
func checkJournal(t testing.TB, j *journal.Journal, dir, name string, msgs []srcMsg) {
	t.Helper()
	ctx := context.Background()
	rows, err := j.Messages(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	dels, err := j.Deliveries(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(msgs) {
		t.Errorf("journal: %d messages of %s, want %d", len(rows), name, len(msgs))
	}
	byKey := make(map[string]journal.MessageRow, len(rows))
	for _, r := range rows {
		byKey[r.UIDL] = r
	}
	for _, m := range msgs {
		if m.key == "" {
			continue
		}
		r, ok := byKey[m.key]
		if !ok {
			t.Errorf("journal: no row for message %q of %s", m.key, name)
			continue
		}
		if r.State != journal.StateStored || r.SHA256 != m.sum() || r.Error != "" {
			t.Errorf("journal: message %q of %s: state %q sha256 %s error %q; want stored, %s, no error", m.key, name, r.State, r.SHA256, r.Error, m.sum())
		}
		wantRef := "new/" + exporters.MessageKey(name, m.key) + maildir.Suffix
		if len(dels[m.key]) != 1 {
			t.Errorf("journal: message %q of %s has %d deliveries, want 1", m.key, name, len(dels[m.key]))
		}
		for dest, d := range dels[m.key] {
			if d.Ref != wantRef || d.SHA256 != m.sum() {
				t.Errorf("journal: delivery of %q to %s: ref %q sha256 %s; want %q %s", m.key, dest, d.Ref, d.SHA256, wantRef, m.sum())
			}
		}
	}
	checkDeliveriesOnDisk(t, j, dir, name)
}

// checkDeliveriesOnDisk checks that every delivery the journal records for
// account name points at a file in dir with the recorded sha256, and that
// every message with a delivery is stored.
func checkDeliveriesOnDisk(t testing.TB, j *journal.Journal, dir, name string) {
	t.Helper()
	ctx := context.Background()
	dels, err := j.Deliveries(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := j.Messages(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	state := make(map[string]string, len(rows))
	for _, r := range rows {
		state[r.UIDL] = r.State
	}
	for uidl, byDest := range dels {
		if state[uidl] != journal.StateStored {
			t.Errorf("journal: message %q of %s has a delivery but state %q", uidl, name, state[uidl])
		}
		for dest, d := range byDest {
			if !strings.HasPrefix(d.Ref, "new/") && !strings.HasPrefix(d.Ref, "cur/") || strings.Contains(d.Ref[4:], "/") {
				t.Errorf("journal: delivery of %q to %s: ref %q is not a file of new/ or cur/", uidl, dest, d.Ref)
				continue
			}
			data, err := os.ReadFile(filepath.Join(dir, d.Ref))
			if err != nil {
				t.Errorf("journal: delivery of %q to %s points at a missing file: %v", uidl, dest, err)
				continue
			}
			if sha256Hex(data) != d.SHA256 {
				t.Errorf("journal: delivery of %q to %s: file sha256 %s, recorded %s", uidl, dest, sha256Hex(data), d.SHA256)
			}
		}
	}
}

// stamps returns the FileInfo of every file under dir, by path relative
// to dir, to tell later whether a run created, replaced or rewrote one.
func stamps(t testing.TB, dir string) map[string]fs.FileInfo {
	t.Helper()
	out := map[string]fs.FileInfo{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		out[rel] = fi
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sameFiles checks that the files under dir are exactly those of before:
// none created, removed, replaced or modified.
func sameFiles(t testing.TB, dir string, before map[string]fs.FileInfo) {
	t.Helper()
	after := stamps(t, dir)
	for rel, fi := range after {
		old, ok := before[rel]
		switch {
		case !ok:
			t.Errorf("%s: new file %s", dir, rel)
		case !os.SameFile(old, fi) || old.Size() != fi.Size() || !old.ModTime().Equal(fi.ModTime()):
			t.Errorf("%s: %s was replaced or modified", dir, rel)
		}
	}
	for rel := range before {
		if _, ok := after[rel]; !ok {
			t.Errorf("%s: %s disappeared", dir, rel)
		}
	}
}
