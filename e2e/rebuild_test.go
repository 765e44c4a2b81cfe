package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/popmigrate/popmigrate/internal/dovecottest"
	"github.com/popmigrate/popmigrate/pipeline"
)

// rebuildJSON is the output of `journal rebuild --json`.
type rebuildJSON struct {
	DryRun   bool                      `json:"dry_run"`
	Accounts []*pipeline.RebuildReport `json:"accounts"`
}

// The worst case of a lost journal, with the built binary: a run into an
// IMAP folder and a Maildir is killed with SIGKILL between group commits
// (the folder holds messages the journal never recorded), and then its
// journal is lost. journal rebuild --dry-run writes nothing; journal
// rebuild records every copy the destinations hold; the next run stores
// only what is missing, so the folder and the Maildir each hold every
// message exactly once, and verify passes. The IMAP copies, matched by
// header block, are kept on the server by purge until journal rebuild
// --confirm has compared them byte for byte.
func TestDovecotKill9ThenJournalLost(t *testing.T) {
	t.Parallel()
	const n, size, batch = 60, 1500, 10
	msgs := generated("rbkill", n, size)
	const user, password, target, targetPassword = "rbkill", "pw-rbkill-Ue40", "rbtgt", "pw-rbtgt-Qa93"
	srv := dovecottest.Start(t, []dovecottest.User{
		{Name: user, Password: password, Messages: msgs},
		{Name: target, Password: targetPassword},
	}, nil)
	var total int64
	for _, m := range msgs {
		total += int64(len(m) + bytes.Count(m, []byte("\n")))
	}
	proxy := newStallProxy(t, srv.POP3SAddr, total*36/n)

	dir := t.TempDir()
	pwFile := writeFile(t, dir, user+".password", password+"\n")
	jpath := filepath.Join(dir, "journal.db")
	md := filepath.Join(dir, "out", user)
	folder := "INBOX/Rebuilt"
	env := []string{"E2E_RBTGT_PASSWORD=" + targetPassword}
	common := []string{"--source", "pop3s://" + user + "@" + srv.POP3SAddr, "--name", user, "--password-file", pwFile,
		"--ca-file", srv.CAFile, "--journal", jpath,
		"--to", "imaps://" + target + "@" + srv.IMAPSAddr + "/" + folder, "--to-password-env", "E2E_RBTGT_PASSWORD",
		"--to", "maildir:" + md, "--json"}
	with := func(cmd []string, extra ...string) []string {
		return append(append(append([]string{}, cmd...), common...), extra...)
	}
	killed := with([]string{"run"}, "--batch-size", strconv.Itoa(batch), "--batch-interval", "1h")
	killed[slices.Index(killed, "--source")+1] = "pop3s://" + user + "@" + proxy.Addr()

	run := startStalled(t, proxy, env, killed...)
	waitForUncommittedAppends(t, srv, target, targetPassword, folder, jpath, user)
	run.kill(t)
	inFolder := imapCount(t, srv, target, targetPassword, folder)
	inMaildir := len(maildirFiles(t, md))
	t.Logf("killed with %d in the IMAP folder and %d in the Maildir, of %d", inFolder, inMaildir, n)
	if inFolder == 0 || inFolder >= n || inMaildir == 0 {
		t.Fatalf("%d messages in the folder and %d in the Maildir at the kill; want some, not all", inFolder, inMaildir)
	}

	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(jpath + suffix); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}

	rebuild := func(extra ...string) *pipeline.RebuildReport {
		t.Helper()
		r := popmigrate(t, env, with([]string{"journal", "rebuild"}, extra...)...)
		r.wantCode(t, 0)
		var out rebuildJSON
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || len(out.Accounts) != 1 {
			t.Fatalf("journal rebuild --json: %v\n%s", err, r)
		}
		return out.Accounts[0]
	}
	dry := rebuild("--dry-run")
	if dry.ServerMessages != n || dry.Matched != inFolder || dry.Error != "" {
		t.Errorf("rebuild --dry-run: %+v; want %d listed, %d matched (every copy in the folder)", dry, n, inFolder)
	}
	if _, err := os.Stat(jpath); !os.IsNotExist(err) {
		t.Errorf("rebuild --dry-run left a journal behind (%v)", err)
	}
	rep := rebuild()
	if rep.Matched != inFolder || rep.ByKey+rep.ByContent+rep.ByHeaders != rep.Matched || rep.Missing != n-inMaildir || rep.Error != "" {
		t.Errorf("rebuild: %+v; want %d matched, %d missing in some destination", rep, inFolder, n-inMaildir)
	}

	r := popmigrate(t, env, with([]string{"run"})...)
	r.wantCode(t, 0)
	a := accountReport(t, decodeReport(t, r), user)
	if !a.Whole || a.Stored+a.SkippedAlreadyStored != n {
		t.Errorf("run after rebuild: %+v; want every message stored or already stored", a)
	}
	wantSums := map[string]int{}
	names := map[string]string{}
	var want [][]byte
	for i, m := range msgs {
		w := viaDovecot(m)
		want = append(want, w)
		wantSums[sum(w)]++
		names[sum(w)] = fmt.Sprintf("#%d", i+1)
	}
	var bodies [][]byte
	for _, m := range readIMAPFolder(t, srv, target, targetPassword, folder) {
		bodies = append(bodies, m.body)
	}
	wantSameSums(t, "IMAP "+folder, countSums(bodies), wantSums, names)
	checkExactlyOnce(t, md, jpath, user, want)
	popmigrate(t, env, with([]string{"verify"})...).wantCode(t, 0)

	purgePlanned := func() (planned, unconfirmed int) {
		t.Helper()
		r := popmigrate(t, env, with([]string{"purge"}, "--dry-run")...)
		r.wantCode(t, 0)
		var out struct {
			Accounts []*pipeline.PurgeReport `json:"accounts"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || len(out.Accounts) != 1 {
			t.Fatalf("purge --dry-run --json: %v\n%s", err, r)
		}
		return len(out.Accounts[0].Planned), out.Accounts[0].Skipped[pipeline.SkipUnconfirmed]
	}
	if planned, unconfirmed := purgePlanned(); planned+unconfirmed != n || unconfirmed != rep.ByHeaders {
		t.Errorf("purge before --confirm: %d planned, %d kept as unconfirmed; want %d kept of %d", planned, unconfirmed, rep.ByHeaders, n)
	}
	if conf := rebuild("--confirm"); conf.Confirmed != rep.ByHeaders || conf.Forgotten != 0 {
		t.Errorf("rebuild --confirm: %+v; want %d confirmed, none forgotten", conf, rep.ByHeaders)
	}
	if planned, unconfirmed := purgePlanned(); planned != n || unconfirmed != 0 {
		t.Errorf("purge after --confirm: %d planned, %d unconfirmed; want all %d planned", planned, unconfirmed, n)
	}
}
