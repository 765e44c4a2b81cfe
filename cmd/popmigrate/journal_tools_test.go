package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/maildir"
	"github.com/popmigrate/popmigrate/internal/dovecottest"
)

// saveState copies the state files the real clients write in
// TestJournalImportFromRealTools into a folder, to refresh the samples in
// journal/adopt/testdata:
//
//	go test ./cmd/popmigrate/ -run RealTools -args -save-state /tmp/state
var saveState = flag.String("save-state", "", "TestJournalImportFromRealTools: copy the state files the real clients wrote into this `folder`")

// stateTool is a real POP3 client whose state journal import adopts.
type stateTool struct {
	name string // --from
	// fetch runs the client once against the Dovecot at addr as user,
	// keeping every message on the server, and returns its state file.
	fetch func(t *testing.T, tl *stateTool, dir, addr, caFile, user, password string) string
	path  string // the binary
}

// toolsTimeout bounds one run of a real client.
const toolsTimeout = 60 * time.Second

// TestJournalImportFromRealTools takes a mailbox over from mpop, getmail
// and fetchmail: each real client fetches the mailbox of a private
// Dovecot once, leaving the messages there (as a user who switches would
// have it), two messages arrive, the client's state file is imported,
// and popmigrate run downloads exactly the two new ones; a second run
// downloads nothing, and --delete deletes only what popmigrate stored.
// The clients come from scripts/ensure-switch-tools.sh (make deps).
func TestJournalImportFromRealTools(t *testing.T) {
	tools := []*stateTool{
		{name: "mpop", fetch: fetchMpop},
		{name: "getmail", fetch: fetchGetmail},
		{name: "fetchmail", fetch: fetchFetchmail},
	}
	var users []dovecottest.User
	for _, tl := range tools {
		p, err := exec.LookPath(tl.name)
		if err != nil {
			t.Fatalf("%s is not installed (%v): install it with `sudo scripts/ensure-switch-tools.sh` (make deps)", tl.name, err)
		}
		tl.path = p
		u := dovecottest.User{Name: tl.name + "-user", Password: "pw-" + tl.name + "-Jq3v"}
		for i := 1; i <= 3; i++ {
			u.Messages = append(u.Messages, fmt.Appendf(nil, "From: old%d@example.org\nTo: %s@example.org\nSubject: fetched by %s, %d\n\n"+
				"Body %d.\n.\n..a dot line\n", i, u.Name, tl.name, i, i))
		}
		users = append(users, u)
	}
	srv := dovecottest.Start(t, users, nil)
	_, port, err := net.SplitHostPort(srv.POP3SAddr)
	if err != nil {
		t.Fatal(err)
	}

	for i, tl := range tools {
		u := users[i]
		t.Run(tl.name, func(t *testing.T) {
			dir := t.TempDir()
			state := tl.fetch(t, tl, dir, srv.POP3SAddr, srv.CAFile, u.Name, u.Password)
			data, err := os.ReadFile(state)
			if err != nil {
				t.Fatalf("%s wrote no state file: %v", tl.name, err)
			}
			t.Logf("%s wrote %s:\n%q", tl.name, filepath.Base(state), data)
			if *saveState != "" {
				if err := os.WriteFile(filepath.Join(*saveState, filepath.Base(state)), data, 0o644); err != nil {
					t.Fatal(err)
				}
			}

			// Two messages arrive after the switch.
			var fresh [][]byte
			for k := 1; k <= 2; k++ {
				msg := fmt.Appendf(nil, "From: new%d@example.org\nTo: %s@example.org\nSubject: new after %s, %d\n\nNew body %d.\n", k, u.Name, tl.name, k, k)
				srv.AddMessage(t, u.Name, msg)
				fresh = append(fresh, msg)
			}

			account := u.Name + "@127.0.0.1"
			jpath := filepath.Join(dir, "journal.db")
			r := runMain(t, "journal", "import", "--from", tl.name, state, "--account", account, "--journal", jpath)
			r.wantCode(t, exitOK)
			if !strings.Contains(r.stdout, "adopted 3 UIDLs") {
				t.Fatalf("import: want 3 UIDLs adopted:\n%s", r)
			}
			if n := len(adoptedIn(t, jpath, account)); n != 3 {
				t.Fatalf("the journal holds %d adopted UIDLs, want 3", n)
			}

			pw := writeFile(t, dir, "password", u.Password+"\n")
			out := filepath.Join(dir, "out")
			args := []string{"run", "--source", "pop3s://" + u.Name + "@127.0.0.1:" + port, "--password-file", pw,
				"--ca-file", srv.CAFile, "--to", "maildir:" + out, "--journal", jpath, "--json", "--no-progress"}
			r = runMain(t, args...)
			r.wantCode(t, exitOK)
			a := accountReport(t, decodeReport(t, r.stdout), account)
			if a.ServerMessages != 5 || a.Stored != 2 || a.Adopted != 3 || a.SkippedAlreadyStored != 0 || a.Failed != 0 || !a.Whole {
				t.Errorf("first run: %+v; want 5 on the server, 2 stored, 3 adopted", a)
			}
			checkFresh(t, out, account, adoptedIn(t, jpath, account), fresh)

			// Again, with --delete: nothing is downloaded, and only
			// what popmigrate stored is deleted.
			r = runMain(t, append(args, "--delete")...)
			r.wantCode(t, exitOK)
			rep := decodeReport(t, r.stdout)
			a = accountReport(t, rep, account)
			if a.Stored != 0 || a.SkippedAlreadyStored != 2 || a.Adopted != 3 || rep.Totals.Adopted != 3 || !a.Whole {
				t.Errorf("second run: %+v; want nothing stored, 2 already stored, 3 adopted", a)
			}
			checkFresh(t, out, account, adoptedIn(t, jpath, account), fresh)
			if len(rep.Purge) != 1 || rep.Purge[0].Deleted != 2 || rep.Purge[0].Skipped["adopted from another client"] != 3 {
				t.Errorf("delete: %+v; want the 2 popmigrate stored deleted, the 3 adopted skipped", rep.Purge)
			}
			if n := countMaildir(t, srv.MaildirPath(u.Name)); n != 3 {
				t.Errorf("the server holds %d messages after --delete, want the 3 %s fetched", n, tl.name)
			}

			r = runMain(t, "status", "--journal", jpath, "--json")
			r.wantCode(t, exitOK)
			if !strings.Contains(r.stdout, `"adopted": 3`) {
				t.Errorf("status does not count 3 adopted:\n%s", r.stdout)
			}
		})
	}
}

// checkFresh fails the test unless the Maildir out holds exactly the
// messages fresh (canonical form), and no file named for one of the
// adopted UIDLs of account (popmigrate names each file by account and
// UIDL).
func checkFresh(t *testing.T, out, account string, adopted map[string]bool, fresh [][]byte) {
	t.Helper()
	files := maildirFiles(t, out)
	if len(files) != len(fresh) {
		t.Errorf("%s holds %d messages, want the %d new ones", out, len(files), len(fresh))
	}
	for u := range adopted {
		if _, ok := files[exporters.MessageKey(account, u)+maildir.Suffix]; ok {
			t.Errorf("%s holds the adopted message %q", out, u)
		}
	}
	for i, want := range fresh {
		found := false
		for _, got := range files {
			found = found || bytes.Equal(got, want)
		}
		if !found {
			t.Errorf("%s lacks new message %d byte for byte: %q", out, i+1, want)
		}
	}
}

// countMaildir counts the message files of a Maildir (new/ and cur/).
func countMaildir(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	for _, sub := range []string{"new", "cur"} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		n += len(entries)
	}
	return n
}

// runTool runs a real client with HOME in dir (so it reads and writes
// nothing of the machine's user) and fails the test with its output when
// it fails.
func runTool(t *testing.T, dir, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), toolsTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir, "LC_ALL=C")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
	}
	t.Logf("%s: %s", filepath.Base(name), out.String())
}

// fetchMpop runs mpop with a configuration in dir: implicit TLS trusting
// the test CA, keep on, delivery to a Maildir, the UIDLs file in dir.
func fetchMpop(t *testing.T, tl *stateTool, dir, addr, caFile, user, password string) string {
	host, port, _ := net.SplitHostPort(addr)
	mail := filepath.Join(dir, "mpop-mail")
	for _, sub := range []string{"new", "cur", "tmp"} {
		if err := os.MkdirAll(filepath.Join(mail, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	pw := writeFile(t, dir, "mpop-password", password+"\n")
	state := filepath.Join(dir, "mpop_uidls")
	rc := writeFile(t, dir, "mpoprc", strings.Join([]string{
		"defaults",
		"host " + host, "port " + port,
		"tls on", "tls_starttls off", "tls_trust_file " + caFile,
		"keep on", "only_new on", "received_header off",
		"uidls_file " + state,
		"",
		"account test",
		"user " + user,
		"passwordeval cat " + pw,
		"delivery maildir " + mail,
		"",
	}, "\n"))
	runTool(t, dir, tl.path, "-C", rc, "--quiet", "test")
	if n := countMaildir(t, mail); n != 3 {
		t.Fatalf("mpop delivered %d messages, want 3", n)
	}
	return state
}

// fetchGetmail runs getmail 6 with a getmailrc in its own getmail
// directory: SimplePOP3SSLRetriever trusting the test CA, delete = false,
// a Maildir destination. Its state is oldmail-SERVER-PORT-USER there.
func fetchGetmail(t *testing.T, tl *stateTool, dir, addr, caFile, login, password string) string {
	host, port, _ := net.SplitHostPort(addr)
	gdir := filepath.Join(dir, "getmail")
	mail := filepath.Join(dir, "getmail-mail")
	for _, sub := range []string{"new", "cur", "tmp"} {
		if err := os.MkdirAll(filepath.Join(mail, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(gdir, 0o700); err != nil {
		t.Fatal(err)
	}
	pw := writeFile(t, dir, "getmail-password", password)
	// getmail refuses to deliver as root: its Maildir destination then
	// delivers as the user it names, which must reach the folder.
	deliverAs := ""
	if os.Geteuid() == 0 {
		deliverAs = "user = nobody"
		nobody, err := user.Lookup("nobody")
		if err != nil {
			t.Fatalf("getmail as root delivers as an unprivileged user: %v", err)
		}
		uid, _ := strconv.Atoi(nobody.Uid)
		gid, _ := strconv.Atoi(nobody.Gid)
		for _, p := range []string{mail, filepath.Join(mail, "new"), filepath.Join(mail, "cur"), filepath.Join(mail, "tmp")} {
			if err := os.Chown(p, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
		for _, p := range []string{dir, filepath.Dir(dir)} {
			if err := os.Chmod(p, 0o711); err != nil {
				t.Fatal(err)
			}
		}
	}
	rc := writeFile(t, gdir, "getmailrc", strings.Join([]string{
		"[retriever]",
		"type = SimplePOP3SSLRetriever",
		"server = " + host, "port = " + port,
		"username = " + login,
		"password_command = ('/bin/cat', '" + pw + "')",
		"ca_certs = " + caFile,
		"",
		"[destination]",
		"type = Maildir",
		"path = " + mail + "/",
		deliverAs,
		"",
		"[options]",
		"delete = false", "read_all = false", "verbose = 0", "received = false", "delivered_to = false",
		"",
	}, "\n"))
	runTool(t, dir, tl.path, "--getmaildir", gdir, "--rcfile", rc)
	if n := countMaildir(t, mail); n != 3 {
		t.Fatalf("getmail delivered %d messages, want 3", n)
	}
	return filepath.Join(gdir, "oldmail-"+host+"-"+port+"-"+login)
}

// fetchFetchmail runs fetchmail with an rcfile and an idfile in dir:
// POP3 with implicit TLS, the certificate checked against the test CA
// (whose server certificate names localhost), keep, and an MDA that
// discards.
func fetchFetchmail(t *testing.T, tl *stateTool, dir, addr, caFile, user, password string) string {
	host, port, _ := net.SplitHostPort(addr)
	idfile := filepath.Join(dir, "fetchids")
	rc := writeFile(t, dir, "fetchmailrc", strings.Join([]string{
		"set no syslog",
		"poll " + host + " with proto POP3 service " + port + " uidl",
		`    user "` + user + `" there with password "` + password + `" is "root" here`,
		"    options keep ssl sslcertck sslcertfile " + caFile + " sslcommonname localhost",
		`    mda "/bin/sh -c 'cat > /dev/null'"`,
		"",
	}, "\n"))
	runTool(t, dir, tl.path, "-f", rc, "--idfile", idfile, "--pidfile", filepath.Join(dir, "fetchmail.pid"), "--nodetach", "--nosyslog")
	return idfile
}
