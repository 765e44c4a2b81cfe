package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/all"
	"github.com/popmigrate/popmigrate/exporters/eml"
	"github.com/popmigrate/popmigrate/exporters/mbox"
	"github.com/popmigrate/popmigrate/internal/dovecottest"
	"github.com/popmigrate/popmigrate/internal/testmsg"
	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/pipeline"
)

// imapMessage is one message of an IMAP folder as the tests read it.
type imapMessage struct {
	uid   imap.UID
	body  []byte // canonical: every CRLF turned into LF
	flags []imap.Flag
	date  time.Time
}

// imapLogin returns an IMAPS client of srv logged in as user.
func imapLogin(t *testing.T, srv *dovecottest.Server, user, password string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialTLS(srv.IMAPSAddr, &imapclient.Options{TLSConfig: srv.PKI.ClientConfig()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login(user, password).Wait(); err != nil {
		c.Close()
		t.Fatalf("IMAP login as %s: %v", user, err)
	}
	return c
}

// imapFolder returns the server's name of folder ("INBOX/Imported", with
// '/' between levels, as popmigrate's destinations have it), or "" when
// there is no such folder.
func imapFolder(t *testing.T, c *imapclient.Client, folder string) string {
	t.Helper()
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatalf("LIST: %v", err)
	}
	for _, l := range list {
		name := l.Mailbox
		if l.Delim != 0 {
			name = strings.ReplaceAll(name, string(l.Delim), "/")
		}
		if name == folder {
			return l.Mailbox
		}
	}
	return ""
}

// readIMAPFolder returns every message of user's folder, by UID order,
// read without changing its flags (BODY.PEEK[]).
func readIMAPFolder(t *testing.T, srv *dovecottest.Server, user, password, folder string) []imapMessage {
	t.Helper()
	c := imapLogin(t, srv, user, password)
	defer c.Close()
	name := imapFolder(t, c, folder)
	if name == "" {
		t.Fatalf("%s has no folder %q", user, folder)
	}
	sel, err := c.Select(name, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatalf("EXAMINE %q: %v", name, err)
	}
	if sel.NumMessages == 0 {
		return nil
	}
	var all imap.SeqSet
	all.AddRange(1, 0)
	section := &imap.FetchItemBodySection{Peek: true}
	bufs, err := c.Fetch(all, &imap.FetchOptions{
		UID: true, Flags: true, InternalDate: true, BodySection: []*imap.FetchItemBodySection{section},
	}).Collect()
	if err != nil {
		t.Fatalf("FETCH from %q: %v", name, err)
	}
	out := make([]imapMessage, 0, len(bufs))
	for _, b := range bufs {
		body := b.FindBodySection(section)
		if body == nil {
			t.Fatalf("FETCH from %q: message %d came without its body", name, b.SeqNum)
		}
		out = append(out, imapMessage{uid: b.UID, body: exporters.Canonicalize(body), flags: b.Flags, date: b.InternalDate})
	}
	slices.SortFunc(out, func(a, b imapMessage) int { return int(a.uid) - int(b.uid) })
	return out
}

// imapCount returns the number of messages in user's folder (STATUS), or
// -1 when the folder does not exist (yet).
func imapCount(t *testing.T, srv *dovecottest.Server, user, password, folder string) int {
	t.Helper()
	c := imapLogin(t, srv, user, password)
	defer c.Close()
	name := imapFolder(t, c, folder)
	if name == "" {
		return -1
	}
	st, err := c.Status(name, &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil {
		t.Fatalf("STATUS %q: %v", name, err)
	}
	return int(*st.NumMessages)
}

// countSums returns how many times each sha256 occurs among msgs.
func countSums(msgs [][]byte) map[string]int {
	out := map[string]int{}
	for _, m := range msgs {
		out[sum(m)]++
	}
	return out
}

// wantSameSums fails unless got and want hold the same messages, each as
// many times, by sha256; names maps a sha256 to a message name for the
// error messages.
func wantSameSums(t *testing.T, where string, got, want map[string]int, names map[string]string) {
	t.Helper()
	for h, n := range want {
		if got[h] != n {
			t.Errorf("%s: message %s (sha256 %s) is there %d times, want %d", where, names[h], h[:12], got[h], n)
		}
	}
	for h, n := range got {
		if want[h] == 0 {
			t.Errorf("%s: %d unexpected messages with sha256 %s", where, n, h[:12])
		}
	}
}

// emlFolderFiles returns the message files of an account folder of an eml
// tree (its temporary folder left out), by name.
func emlFolderFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, e := range entries {
		if e.Name() == eml.TmpDir {
			continue
		}
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), eml.Ext) {
			t.Errorf("%s: unexpected entry %s", dir, e.Name())
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = data
	}
	return out
}

// fileSum returns the sha256 of the file at path.
func fileSum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sum(b)
}

// destID returns the journal's id of the destination spec.
func destID(t *testing.T, spec string) string {
	t.Helper()
	d, err := all.Registry().Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	return d.ID()
}

// fanoutSource is a source account of TestDovecotIMAPFanout and what it
// must become.
type fanoutSource struct {
	user, password string
	target         string // the IMAP target user
	targetPassword string
	msgs           [][]byte // as stored in the source Maildir
	names          []string // a name per message, for errors and pins
}

// datedMessages returns two messages, their names and the INTERNALDATE
// each must get: one with Received fields and a Date field, whose
// INTERNALDATE is the newest Received date (not that of the first field),
// and one with only a Date field.
func datedMessages() (names []string, msgs [][]byte, dates []time.Time) {
	received := "Received: from relay1.example.net by mx.example.org; Tue, 4 Feb 2025 08:00:00 +0000\n" +
		"Received: from relay0.example.net by relay1.example.net; Tue, 4 Feb 2025 09:15:30 +0100\n" +
		"Received: from client by relay0.example.net; Tue, 4 Feb 2025 07:59:00 +0000\n" +
		"Date: Mon, 3 Feb 2025 12:00:00 +0000\nFrom: a@example.net\nSubject: received\nMessage-ID: <dated-received@example.net>\n\nThe newest Received is the second one.\n"
	dateOnly := "Date: Wed, 5 Mar 2025 07:06:05 -0500\nFrom: b@example.net\nSubject: date only\nMessage-ID: <dated-date@example.net>\n\nNo Received field.\n"
	return []string{"dated-received", "dated-date"},
		[][]byte{[]byte(received), []byte(dateOnly)},
		[]time.Time{time.Date(2025, 2, 4, 8, 15, 30, 0, time.UTC), time.Date(2025, 3, 5, 12, 6, 5, 0, time.UTC)}
}

// TestDovecotIMAPFanout migrates two POP3S users of a real Dovecot, from
// a CSV with a target password per row (one from its to_password_env
// column, one from --to-password-env), each into an IMAP folder of its
// own target user on the same Dovecot, an mbox file and an eml tree, in
// one run. It reads the IMAP folders back with an IMAP client: exactly the
// source messages, with \Seen and the INTERNALDATE of the newest Received
// (or Date); the message IMAP cannot carry is quarantined (exit 1, listed
// with its path, kept 0600) and held by the other destinations. A second
// run adds nothing anywhere; a run with --imap-flags none sets no flag.
func TestDovecotIMAPFanout(t *testing.T) {
	t.Parallel()
	var tricky fanoutSource
	tricky.user, tricky.password = "isrc1", "pw-isrc1-Qa81"
	tricky.target, tricky.targetPassword = "itgt1", "pw-itgt1-Zx42"
	for _, s := range testmsg.Load(t) {
		tricky.names = append(tricky.names, s.Name)
		tricky.msgs = append(tricky.msgs, s.Data)
	}
	dNames, dMsgs, dDates := datedMessages()
	tricky.names = append(tricky.names, dNames...)
	tricky.msgs = append(tricky.msgs, dMsgs...)
	bulk := fanoutSource{user: "isrc2", password: "pw-isrc2-Lm07", target: "itgt2", targetPassword: "pw-itgt2-Ve93"}
	bulk.msgs = generated("isrc2", 6, 700)
	for i := range bulk.msgs {
		bulk.names = append(bulk.names, fmt.Sprintf("generated-%d", i+1))
	}
	const noFlagsTarget, noFlagsPassword = "itgt3", "pw-itgt3-Kk15"
	sources := []*fanoutSource{&tricky, &bulk}
	srv := dovecottest.Start(t, []dovecottest.User{
		{Name: tricky.user, Password: tricky.password, Messages: tricky.msgs},
		{Name: bulk.user, Password: bulk.password, Messages: bulk.msgs},
		{Name: tricky.target, Password: tricky.targetPassword},
		{Name: bulk.target, Password: bulk.targetPassword},
		{Name: noFlagsTarget, Password: noFlagsPassword},
	}, nil)

	// What happens to the samples on the way, pinned. Dovecot's POP3
	// alters three before popmigrate sees them (viaDovecot): it serves
	// the empty message as one empty line and ends no-final-newline with
	// a line end (each 2 bytes more than LIST says, so the report lists a
	// size mismatch), and serves a CR LF of crlf-in-canonical as CRLF, so
	// that message arrives without the CR (nothing can report that: the
	// server sends it so). What popmigrate
	// received then reaches IMAP byte for byte: Dovecot's IMAP accepts the
	// one-line message that the empty one became and has no CR LF left to
	// drop. IMAP cannot carry NUL bytes, so nul-bytes is quarantined
	// instead of uploaded, and is in the mbox and the eml tree.
	quarantined := map[string]bool{"nul-bytes": true}
	alteredBySource := []string{"empty", "crlf-in-canonical", "no-final-newline"}
	sizeMismatch := []string{"empty", "no-final-newline"}

	dir := t.TempDir()
	jpath := filepath.Join(dir, "journal.db")
	quarantineDir := filepath.Join(dir, "popmigrate-quarantine") // the default: beside the journal
	emlRoot := filepath.Join(dir, "eml")
	mboxOf := func(s *fanoutSource) string { return filepath.Join(dir, "mbox", s.user+".mbox") }
	imapSpec := func(s *fanoutSource) string {
		return "imaps://" + s.target + "@" + srv.IMAPSAddr + "/INBOX/Imported"
	}
	row := func(s *fanoutSource, toPasswordEnv string) string {
		pw := writeFile(t, dir, s.user+".password", s.password+"\n")
		return strings.Join([]string{s.user, "pop3s://" + s.user + "@" + srv.POP3SAddr, pw,
			imapSpec(s) + " mbox:" + mboxOf(s) + " eml:" + emlRoot, toPasswordEnv}, ",")
	}
	csv := writeFile(t, dir, "accounts.csv", strings.Join([]string{
		"name,source,password_file,to,to_password_env",
		row(&tricky, "E2E_ITGT1_PASSWORD"),
		row(&bulk, ""), // --to-password-env
	}, "\n")+"\n")
	env := []string{"E2E_ITGT1_PASSWORD=" + tricky.targetPassword, "E2E_ITGT2_PASSWORD=" + bulk.targetPassword}
	args := []string{"run", "--accounts", csv, "--ca-file", srv.CAFile, "--journal", jpath,
		"--to-password-env", "E2E_ITGT2_PASSWORD", "--batch-size", "5", "--json"}

	started := time.Now()
	r := popmigrate(t, env, args...)
	finished := time.Now()
	// The quarantined message makes its account not whole: exit 1. The
	// verify phase reads every copy back and finds them all, and the
	// quarantined message not stored in IMAP, which the run reported
	// already: that is no mismatch of a stored copy (exit 3).
	if r.code != 1 {
		t.Errorf("want exit 1 (an account not whole), got %s", r)
	}
	rep := decodeReport(t, r)

	// want[s][i] is message i of s as popmigrate receives it over POP3.
	want := map[*fanoutSource][][]byte{}
	names := map[string]string{} // sha256 -> name
	for _, s := range sources {
		for i, m := range s.msgs {
			w := viaDovecot(m)
			want[s] = append(want[s], w)
			names[sum(w)] = s.user + "/" + s.names[i]
		}
	}
	// uidlOf maps a sha256 to the message's UIDL, and nameByUIDL an
	// account's UIDL to the message's name, from the journal. (UIDLs
	// of different accounts may be equal.)
	uidlOf := map[string]string{}
	nameByUIDL := map[string]map[string]string{}
	for _, s := range sources {
		nameByUIDL[s.user] = map[string]string{}
		for _, row := range journalMessages(t, jpath, s.user) {
			uidlOf[row.SHA256] = row.UIDL
			nameByUIDL[s.user][row.UIDL] = names[row.SHA256]
		}
	}
	nameOf := func(user, uidl string) string {
		if n, ok := nameByUIDL[user][uidl]; ok {
			return n
		}
		return user + "/uidl " + uidl
	}

	for _, s := range sources {
		a := accountReport(t, rep, s.user)
		var wantQ []string // UIDLs
		for i, name := range s.names {
			if s == &tricky && quarantined[name] {
				wantQ = append(wantQ, uidlOf[sum(want[s][i])])
			}
		}
		slices.Sort(wantQ)
		n := len(s.msgs)
		if a.Error != "" || a.Stored != n-len(wantQ) || a.Failed != len(wantQ) || a.Whole != (len(wantQ) == 0) || a.ServerMessages != n {
			t.Errorf("%s: %+v; want %d stored, %d failed (quarantined)", s.user, a, n-len(wantQ), len(wantQ))
		}
		wantDests := []string{destID(t, imapSpec(s)), destID(t, "mbox:"+mboxOf(s)), destID(t, "eml:"+emlRoot)}
		if !slices.Equal(a.Destinations, wantDests) {
			t.Errorf("%s: destinations %v, want %v", s.user, a.Destinations, wantDests)
		}
		var gotQ, gotFailed []string
		for _, f := range a.Failures {
			gotFailed = append(gotFailed, f.UIDL)
		}
		for _, q := range a.Quarantined {
			gotQ = append(gotQ, q.UIDL)
			if q.Destination != wantDests[0] || q.Reason == "" || filepath.Dir(q.Path) != quarantineDir {
				t.Errorf("%s: quarantined %+v; want destination %s, a reason and a file in %s", s.user, q, wantDests[0], quarantineDir)
			}
			fi, err := os.Stat(q.Path)
			if err != nil {
				t.Errorf("%s: the quarantined copy of %s: %v", s.user, nameOf(s.user, q.UIDL), err)
				continue
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: %s has mode %v, want 0600", s.user, q.Path, fi.Mode().Perm())
			}
			data, err := os.ReadFile(q.Path)
			if err != nil {
				t.Fatal(err)
			}
			if uidlOf[sum(data)] != q.UIDL {
				t.Errorf("%s: %s does not hold %s byte for byte", s.user, q.Path, nameOf(s.user, q.UIDL))
			}
		}
		slices.Sort(gotQ)
		slices.Sort(gotFailed)
		if !slices.Equal(gotQ, wantQ) || !slices.Equal(gotFailed, wantQ) {
			t.Errorf("%s: quarantined %v, failed %v; want both %v", s.user, gotQ, gotFailed, wantQ)
		}
	}
	if !strings.Contains(r.stderr, "1 of 2 accounts not whole") {
		t.Errorf("stderr does not say an account is not whole:\n%s", r.stderr)
	}
	// No target password in anything popmigrate wrote.
	written := []string{r.stdout, r.stderr}
	for _, suffix := range []string{"", "-wal"} {
		if b, err := os.ReadFile(jpath + suffix); err == nil {
			written = append(written, string(b))
		}
	}
	for i, w := range written {
		for _, s := range sources {
			if strings.Contains(w, s.targetPassword) {
				t.Errorf("output %d contains %s's password", i, s.target)
			}
		}
	}
	// The size mismatches Dovecot's POP3 causes are reported; the
	// messages are stored as received.
	var gotMismatch []string
	for _, sm := range accountReport(t, rep, tricky.user).SizeMismatches {
		name := strings.TrimPrefix(nameOf(tricky.user, sm.UIDL), tricky.user+"/")
		gotMismatch = append(gotMismatch, name)
		// LIST counts the file with CRLF line ends, RETR adds the final
		// CRLF the file lacks.
		data := testmsg.Find(t, name).Data
		if listed := int64(len(data) + bytes.Count(data, []byte("\n"))); sm.Listed != listed || sm.Received != listed+2 {
			t.Errorf("size mismatch of %s: %+v, want listed %d, received 2 bytes more", name, sm, listed)
		}
	}
	if slices.Sort(gotMismatch); !slices.Equal(gotMismatch, sizeMismatch) {
		t.Errorf("size mismatches of %v, want %v", gotMismatch, sizeMismatch)
	}
	// Verification read back every copy: all match, and the one
	// quarantined message is not stored in the IMAP folder.
	if len(rep.Verify) != len(sources) {
		t.Errorf("the report has %d verify results, want %d", len(rep.Verify), len(sources))
	}
	for _, v := range rep.Verify {
		a := accountReport(t, rep, v.Account)
		wantMatch := 3*a.ServerMessages - len(a.Quarantined)
		if v.Error != "" || v.Counts["match"] != wantMatch || v.Checked != wantMatch || len(v.Findings) != len(a.Quarantined) {
			t.Errorf("verify %s: %+v; want %d copies matched, and a not-stored finding per quarantined message", v.Account, v, wantMatch)
		}
		for _, f := range v.Findings {
			if f.Kind != "not-stored" || f.DestID != a.Destinations[0] ||
				!slices.ContainsFunc(a.Quarantined, func(q pipeline.Quarantined) bool { return q.UIDL == f.UIDL }) {
				t.Errorf("verify %s: finding %+v, want not-stored in %s for a quarantined message", v.Account, f, a.Destinations[0])
			}
		}
	}

	// The IMAP folders hold exactly the messages that are not
	// quarantined, with \Seen and the INTERNALDATE of the newest Received
	// (then Date, then the download time).
	wantDate := map[string]time.Time{
		"trace-headers": time.Date(2025, 3, 3, 10, 0, 5, 0, time.UTC),
		"plain-ascii":   time.Date(2025, 3, 3, 10, 0, 0, 0, time.UTC),
	}
	for i, name := range dNames {
		wantDate[name] = dDates[i]
	}
	folders := map[*fanoutSource][]imapMessage{}
	for _, s := range sources {
		wantIMAP := map[string]int{}
		nameIdx := map[string]int{}
		for i, w := range want[s] {
			nameIdx[sum(w)] = i
			if !(s == &tricky && quarantined[s.names[i]]) {
				wantIMAP[sum(w)]++
			}
		}
		got := readIMAPFolder(t, srv, s.target, s.targetPassword, "INBOX/Imported")
		folders[s] = got
		var bodies [][]byte
		for _, m := range got {
			bodies = append(bodies, m.body)
			i, ok := nameIdx[sum(m.body)]
			if !ok {
				continue // reported by wantSameSums
			}
			if !slices.Contains(m.flags, imap.FlagSeen) {
				t.Errorf("%s: IMAP message %s has flags %v, want \\Seen", s.target, names[sum(m.body)], m.flags)
			}
			for _, f := range m.flags {
				if f != imap.FlagSeen && f != "\\Recent" {
					t.Errorf("%s: IMAP message %s has the unexpected flag %s", s.target, names[sum(m.body)], f)
				}
			}
			if d, ok := wantDate[s.names[i]]; ok && s == &tricky {
				if !m.date.Equal(d) {
					t.Errorf("%s: IMAP message %s: INTERNALDATE %v, want %v", s.target, s.names[i], m.date, d)
				}
			} else if m.date.Before(started.Truncate(time.Second)) || m.date.After(finished) {
				t.Errorf("%s: IMAP message %s: INTERNALDATE %v, want the download time (between %v and %v)",
					s.target, names[sum(m.body)], m.date, started, finished)
			}
		}
		wantSameSums(t, s.target+" INBOX/Imported", countSums(bodies), wantIMAP, names)
		if s == &tricky {
			// The altered samples are in the folder as popmigrate
			// received them, which is not the sample itself.
			for _, name := range alteredBySource {
				data := testmsg.Find(t, name).Data
				in := countSums(bodies)
				if in[sum(viaDovecot(data))] != 1 || in[sum(data)] != 0 {
					t.Errorf("%s: %s is not there exactly once as Dovecot's POP3 served it", s.target, name)
				}
			}
		}

		// The mbox and the eml folder hold every message, the
		// quarantined one included.
		all := countSums(want[s])
		mb, err := mbox.ReadFile(mboxOf(s))
		if err != nil {
			t.Fatal(err)
		}
		wantSameSums(t, mboxOf(s), countSums(mb), all, names)
		emlDir := filepath.Join(emlRoot, eml.AccountDir(s.user))
		wantSameSums(t, emlDir, countSums(slices.Collect(maps.Values(emlFolderFiles(t, emlDir)))), all, names)

		// The journal: each message once, with a delivery to every
		// destination that holds it, under the sha256 of what it holds.
		a := accountReport(t, rep, s.user)
		dels := journalDeliveries(t, jpath, s.user)
		uidOf := map[imap.UID]string{}
		for _, m := range got {
			uidOf[m.uid] = sum(m.body)
		}
		for _, row := range journalMessages(t, jpath, s.user) {
			q := slices.ContainsFunc(a.Quarantined, func(q pipeline.Quarantined) bool { return q.UIDL == row.UIDL })
			wantState, wantN := journal.StateVerified, 3
			if q {
				wantState, wantN = journal.StateFailed, 2
			}
			if row.State != wantState || len(dels[row.UIDL]) != wantN {
				t.Errorf("journal: %s: state %s with %d deliveries, want %s with %d", nameOf(s.user, row.UIDL), row.State, len(dels[row.UIDL]), wantState, wantN)
			}
			for id, d := range dels[row.UIDL] {
				if d.SHA256 != row.SHA256 {
					t.Errorf("journal: %s: delivery to %s has sha256 %s, the message %s", nameOf(s.user, row.UIDL), id, d.SHA256, row.SHA256)
				}
			}
			if d, ok := dels[row.UIDL][a.Destinations[0]]; ok {
				_, uidStr, _ := strings.Cut(d.Ref, "/")
				uid, err := strconv.ParseUint(uidStr, 10, 32)
				if err != nil || uidOf[imap.UID(uid)] != row.SHA256 {
					t.Errorf("journal: %s: IMAP ref %q does not name the message in the folder", nameOf(s.user, row.UIDL), d.Ref)
				}
			}
		}
	}

	// A second run finds everything in place: nothing new in IMAP, the
	// mbox or the eml tree. The quarantined message is tried again (it
	// still is not in the IMAP folder) and quarantined again.
	mboxSums := map[*fanoutSource]string{}
	for _, s := range sources {
		mboxSums[s] = fileSum(t, mboxOf(s))
	}
	emlBefore := snapshot(t, emlRoot)
	r = popmigrate(t, env, args...)
	if r.code != 1 {
		t.Errorf("second run: want exit 1 (the quarantined message again), got %s", r)
	}
	rep = decodeReport(t, r)
	for _, s := range sources {
		a := accountReport(t, rep, s.user)
		nq := len(a.Quarantined)
		if a.Stored != 0 || a.SkippedAlreadyStored != len(s.msgs)-nq || a.Failed != nq {
			t.Errorf("second run, %s: %+v; want nothing stored", s.user, a)
		}
		if s == &tricky && nq != len(quarantined) {
			t.Errorf("second run, %s: %d quarantined, want %d again", s.user, nq, len(quarantined))
		}
		got := readIMAPFolder(t, srv, s.target, s.targetPassword, "INBOX/Imported")
		if !slices.EqualFunc(got, folders[s], func(a, b imapMessage) bool { return a.uid == b.uid && bytes.Equal(a.body, b.body) }) {
			t.Errorf("second run: %s's folder changed: %d messages, %d before", s.target, len(got), len(folders[s]))
		}
		if fileSum(t, mboxOf(s)) != mboxSums[s] {
			t.Errorf("second run: %s changed", mboxOf(s))
		}
	}
	if after := snapshot(t, emlRoot); !maps.Equal(after, emlBefore) {
		t.Errorf("second run: the eml tree changed: %d files, %d before", len(after), len(emlBefore))
	}

	// --imap-flags none: no flags on the uploaded messages.
	pw := filepath.Join(dir, bulk.user+".password")
	r = popmigrate(t, []string{"E2E_ITGT3_PASSWORD=" + noFlagsPassword}, "run",
		"--source", "pop3s://"+bulk.user+"@"+srv.POP3SAddr, "--password-file", pw,
		"--to", "imaps://"+noFlagsTarget+"@"+srv.IMAPSAddr+"/NoFlags", "--to-password-env", "E2E_ITGT3_PASSWORD",
		"--ca-file", srv.CAFile, "--journal", filepath.Join(dir, "noflags.db"), "--imap-flags", "none", "--json")
	r.wantCode(t, 0)
	got := readIMAPFolder(t, srv, noFlagsTarget, noFlagsPassword, "NoFlags")
	if len(got) != len(bulk.msgs) {
		t.Errorf("--imap-flags none: %d messages in NoFlags, want %d", len(got), len(bulk.msgs))
	}
	for _, m := range got {
		for _, f := range m.flags {
			if f != "\\Recent" {
				t.Errorf("--imap-flags none: message %s has flag %s", names[sum(m.body)], f)
			}
		}
	}
}

// snapshot returns the sha256 of every file under dir, by path relative
// to dir.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		out[rel] = fileSum(t, path)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// journalDeliveries reads account's deliveries from the journal.
func journalDeliveries(t *testing.T, path, account string) map[string]map[string]journal.Delivery {
	t.Helper()
	ctx := context.Background()
	j, err := journal.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	dels, err := j.Deliveries(ctx, account)
	if err != nil {
		t.Fatal(err)
	}
	return dels
}

// TestDovecotIMAPKill9 kills popmigrate with SIGKILL while it uploads to
// a real Dovecot over IMAPS (and writes an mbox): after group commits have
// reached the journal and further messages were APPENDed but not yet
// committed. The next run must find those in the folder instead of
// appending them again: the folder then holds each message exactly once.
func TestDovecotIMAPKill9(t *testing.T) {
	t.Parallel()
	const n, size, batch = 60, 1500, 10
	msgs := generated("ikill", n, size)
	const user, password, target, targetPassword = "ikill", "pw-ikill-Rr28", "iktgt", "pw-iktgt-Ty61"
	srv := dovecottest.Start(t, []dovecottest.User{
		{Name: user, Password: password, Messages: msgs},
		{Name: target, Password: targetPassword},
	}, nil)
	// Stall the server's output around message 36 (the TLS handshake and
	// the listings come first): batches of 10 are committed up to 30, and
	// the messages after 30 are in the folder but not in the journal.
	var total int64
	for _, m := range msgs {
		total += int64(len(m) + bytes.Count(m, []byte("\n")))
	}
	proxy := newStallProxy(t, srv.POP3SAddr, total*36/n)

	dir := t.TempDir()
	pwFile := writeFile(t, dir, "ikill.password", password+"\n")
	jpath := filepath.Join(dir, "journal.db")
	mboxPath := filepath.Join(dir, "ikill.mbox")
	env := []string{"E2E_IKTGT_PASSWORD=" + targetPassword}
	args := []string{"run", "--source", "pop3s://" + user + "@" + proxy.Addr(), "--name", user, "--password-file", pwFile,
		"--ca-file", srv.CAFile, "--journal", jpath,
		"--to", "imaps://" + target + "@" + srv.IMAPSAddr + "/INBOX/Imported", "--to-password-env", "E2E_IKTGT_PASSWORD",
		"--to", "mbox:" + mboxPath,
		"--batch-size", strconv.Itoa(batch), "--batch-interval", "1h", "--json"}

	run := startStalled(t, proxy, env, args...)
	waitForUncommittedAppends(t, srv, target, targetPassword, "INBOX/Imported", jpath, user)
	run.kill(t)
	committed := committedCount(t, jpath, user)
	inFolder := imapCount(t, srv, target, targetPassword, "INBOX/Imported")
	t.Logf("killed with %d messages committed and %d in the IMAP folder, of %d", committed, inFolder, n)
	if committed == 0 || committed%batch != 0 || committed >= n {
		t.Errorf("%d messages committed at the kill, want a positive multiple of %d below %d", committed, batch, n)
	}
	if inFolder <= committed {
		t.Fatalf("%d messages in the IMAP folder, want more than the %d committed (appended, not yet committed)", inFolder, committed)
	}

	r := popmigrate(t, env, args...)
	r.wantCode(t, 0)
	a := accountReport(t, decodeReport(t, r), user)
	if !a.Whole || a.SkippedAlreadyStored != committed || a.Stored != n-committed {
		t.Errorf("resume: %+v, want %d already stored, %d stored", a, committed, n-committed)
	}
	wantSums := map[string]int{}
	names := map[string]string{}
	for i, m := range msgs {
		w := viaDovecot(m)
		wantSums[sum(w)]++
		names[sum(w)] = fmt.Sprintf("#%d", i+1)
	}
	got := readIMAPFolder(t, srv, target, targetPassword, "INBOX/Imported")
	var bodies [][]byte
	for _, m := range got {
		bodies = append(bodies, m.body)
	}
	if len(got) != n {
		t.Errorf("the IMAP folder holds %d messages, want %d", len(got), n)
	}
	wantSameSums(t, "IMAP INBOX/Imported", countSums(bodies), wantSums, names)
	mb, err := mbox.ReadFile(mboxPath)
	if err != nil {
		t.Fatal(err)
	}
	wantSameSums(t, mboxPath, countSums(mb), wantSums, names)

	// The journal names each IMAP copy by a UID of its own.
	uids := map[string]bool{}
	imapID := destID(t, "imaps://"+target+"@"+srv.IMAPSAddr+"/INBOX/Imported")
	dels := journalDeliveries(t, jpath, user)
	for _, row := range journalMessages(t, jpath, user) {
		d, ok := dels[row.UIDL][imapID]
		if row.State != journal.StateVerified || !ok || len(dels[row.UIDL]) != 2 {
			t.Errorf("journal: message %q: state %s, deliveries %v; want verified in both destinations", row.UIDL, row.State, dels[row.UIDL])
			continue
		}
		if uids[d.Ref] {
			t.Errorf("journal: two messages delivered to IMAP ref %s", d.Ref)
		}
		uids[d.Ref] = true
	}
}

// waitForUncommittedAppends waits, at most 15 s, until the stalled run's
// group commits for account are visible in the journal at jpath and
// user's IMAP folder holds more messages than they: APPENDs the journal
// does not know of. The caller then kills the run.
func waitForUncommittedAppends(t *testing.T, srv *dovecottest.Server, user, password, folder, jpath, account string) {
	t.Helper()
	last, stableSince := -2, time.Now()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		inFolder := imapCount(t, srv, user, password, folder)
		if inFolder != last {
			last, stableSince = inFolder, time.Now()
			continue
		}
		if time.Since(stableSince) > 500*time.Millisecond {
			if committed := committedCount(t, jpath, account); committed > 0 && inFolder > committed {
				return
			}
		}
	}
}

// A message removed from the IMAP folder behind popmigrate's back: verify
// names the copy missing and exits 3, and the next run uploads it again.
func TestDovecotIMAPVerifyFindsExpunged(t *testing.T) {
	t.Parallel()
	const n = 5
	msgs := generated("ivfy", n, 900)
	const user, password, target, targetPassword = "ivfy", "pw-ivfy-Qe41", "ivtgt", "pw-ivtgt-Lm07"
	srv := dovecottest.Start(t, []dovecottest.User{
		{Name: user, Password: password, Messages: msgs},
		{Name: target, Password: targetPassword},
	}, nil)
	dir := t.TempDir()
	pwFile := writeFile(t, dir, "ivfy.password", password+"\n")
	env := []string{"E2E_IVTGT_PASSWORD=" + targetPassword}
	accountArgs := []string{"--source", "pop3s://" + user + "@" + srv.POP3SAddr, "--name", user, "--password-file", pwFile,
		"--ca-file", srv.CAFile, "--journal", filepath.Join(dir, "journal.db"),
		"--to", "imaps://" + target + "@" + srv.IMAPSAddr + "/INBOX/Imported", "--to-password-env", "E2E_IVTGT_PASSWORD"}
	popmigrate(t, env, append([]string{"run"}, accountArgs...)...).wantCode(t, 0)
	if got := imapCount(t, srv, target, targetPassword, "INBOX/Imported"); got != n {
		t.Fatalf("the folder holds %d messages after the run, want %d", got, n)
	}

	// Another client deletes the second message for good.
	c := imapLogin(t, srv, target, targetPassword)
	name := imapFolder(t, c, "INBOX/Imported")
	if _, err := c.Select(name, nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	c.Close()

	r := popmigrate(t, env, append([]string{"verify"}, accountArgs...)...)
	r.wantCode(t, 3)
	if !regexp.MustCompile(`(?m)^- ` + user + ` \S+ imap://\S+ missing`).MatchString(r.stdout) {
		t.Errorf("verify did not name the missing IMAP copy:\n%s", r.stdout)
	}
	popmigrate(t, env, append([]string{"run"}, accountArgs...)...).wantCode(t, 0)
	if got := imapCount(t, srv, target, targetPassword, "INBOX/Imported"); got != n {
		t.Errorf("the folder holds %d messages after the re-run, want %d", got, n)
	}
}

// TestDovecotCheckIMAPDestination: check logs in to the IMAP target and
// looks at the folder without creating it; a wrong target password is
// named as the failure. Nothing is downloaded.
func TestDovecotCheckIMAPDestination(t *testing.T) {
	t.Parallel()
	msgs := generated("ichk", 3, 700)
	const user, password, target, targetPassword = "ichk", "pw-ichk-Tz58", "ichkt", "pw-ichkt-Wq13"
	srv := dovecottest.Start(t, []dovecottest.User{
		{Name: user, Password: password, Messages: msgs},
		{Name: target, Password: targetPassword},
	}, nil)
	dir := t.TempDir()
	pwFile := writeFile(t, dir, "ichk.password", password+"\n")
	args := []string{"check", "--source", "pop3s://" + user + "@" + srv.POP3SAddr, "--name", user, "--password-file", pwFile,
		"--ca-file", srv.CAFile, "--to", "imaps://" + target + "@" + srv.IMAPSAddr + "/INBOX/NotYet", "--to-password-env", "E2E_ICHK_PASSWORD"}
	r := popmigrate(t, []string{"E2E_ICHK_PASSWORD=" + targetPassword}, args...)
	r.wantCode(t, 0)
	// Dovecot offers SASL PLAIN, the strongest mechanism for a password:
	// check shows it in its AUTH column.
	if !strings.Contains(r.stdout, `folder "INBOX/NotYet" does not exist yet`) || !strings.Contains(r.stdout, "certificate") || !regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(user)+` +ok +TLS 1\.[23] +PLAIN `).MatchString(r.stdout) {
		t.Errorf("check output:\n%s", r.stdout)
	}
	c := imapLogin(t, srv, target, targetPassword)
	list, err := c.List("", "INBOX/NotYet", nil).Collect()
	c.Close()
	if err != nil || len(list) != 0 {
		t.Errorf("check created the folder (%v, %v)", list, err)
	}
	r = popmigrate(t, []string{"E2E_ICHK_PASSWORD=wrong"}, args...)
	r.wantCode(t, 1)
	if !strings.Contains(r.stdout, "! "+user+": destination imap://") {
		t.Errorf("check does not name the failing destination:\n%s", r.stdout)
	}
}
