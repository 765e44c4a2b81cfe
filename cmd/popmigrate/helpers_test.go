package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/maildir"
	"github.com/popmigrate/popmigrate/internal/testpki"
	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/pipeline"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

// result is what one Main call produced.
type result struct {
	code           int
	stdout, stderr string
}

// runMain runs Main(args) and returns its exit code and output. A run
// longer than 20 s fails the test: nothing here should take that long.
func runMain(t *testing.T, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- Main(args, &out, &errOut) }()
	select {
	case code := <-done:
		return result{code: code, stdout: out.String(), stderr: errOut.String()}
	case <-time.After(20 * time.Second):
		t.Fatalf("popmigrate %s: still running after 20s", strings.Join(args, " "))
		return result{}
	}
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout:\n%s--- stderr:\n%s", r.code, r.stdout, r.stderr)
}

// wantCode fails the test unless r exited with code.
func (r result) wantCode(t *testing.T, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("want exit %d, got %s", code, r)
	}
}

// testMailbox is one user of the test server, with the canonical form of
// each message (what must end up on disk) by UIDL.
type testMailbox struct {
	user, password string
	uids           []string
	canon          map[string][]byte
}

// makeMailbox returns a mailbox of n small generated messages. Each is
// served in its wire form (every LF as CRLF, Raw), so that the canonical
// form popmigrate stores is exactly the generated text.
func makeMailbox(user, password string, n int) (testMailbox, pop3test.Mailbox) {
	tm := testMailbox{user: user, password: password, canon: map[string][]byte{}}
	mb := pop3test.Mailbox{User: user, Password: password}
	for i := 1; i <= n; i++ {
		uid := fmt.Sprintf("%s-uid-%03d", user, i)
		canon := fmt.Appendf(nil, "From: sender%d@example.org\nTo: %s@example.org\nSubject: message %d of %s\n\n"+
			"Body of message %d.\n.a line starting with a dot\n.\nFrom the end\n", i, user, i, user, i)
		tm.uids = append(tm.uids, uid)
		tm.canon[uid] = canon
		mb.Messages = append(mb.Messages, pop3test.Message{UID: uid, Data: bytes.ReplaceAll(canon, []byte("\n"), []byte("\r\n")), Raw: true})
	}
	return tm, mb
}

// tlsServer is a pop3test server on 127.0.0.1 with TLS from a private CA.
type tlsServer struct {
	srv    *pop3test.Server
	addr   string
	caFile string
	boxes  map[string]testMailbox
}

// startTLSServer serves mbs with the options o plus a fresh certificate
// (o.Implicit false means STLS). boxes are the expected contents.
func startTLSServer(t *testing.T, boxes []testMailbox, mbs []pop3test.Mailbox, o pop3test.ServerOptions) *tlsServer {
	t.Helper()
	pki, err := testpki.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	o.TLSConfig = pki.ServerConfig
	srv := pop3test.NewServer(mbs, &o)
	addr, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	ts := &tlsServer{srv: srv, addr: addr.String(), caFile: pki.CAFile, boxes: map[string]testMailbox{}}
	for _, b := range boxes {
		ts.boxes[b.user] = b
	}
	return ts
}

// writeFile writes data to dir/name (0600) and returns the path.
func writeFile(t *testing.T, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// maildirFiles returns the message files popmigrate wrote into the Maildir
// at dir (new/ and cur/), by base name, with their contents.
func maildirFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, sub := range []string{"new", "cur"} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".") {
				continue
			}
			data, err := os.ReadFile(filepath.Join(dir, sub, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			base, _, _ := strings.Cut(e.Name(), ":")
			if _, dup := out[base]; dup {
				t.Errorf("%s: message %s is in both new/ and cur/", dir, base)
			}
			out[base] = data
		}
	}
	return out
}

// checkMaildir fails the test unless the Maildir at dir holds exactly the
// messages of mb, once each, byte-equal to their canonical form, under the
// names derived from account and UIDL.
func checkMaildir(t *testing.T, dir, account string, mb testMailbox) {
	t.Helper()
	files := maildirFiles(t, dir)
	if len(files) != len(mb.uids) {
		t.Errorf("%s: %d message files, want %d", dir, len(files), len(mb.uids))
	}
	for _, uid := range mb.uids {
		name := exporters.MessageKey(account, uid) + maildir.Suffix
		got, ok := files[name]
		if !ok {
			t.Errorf("%s: message %q (%s) missing", dir, uid, name)
			continue
		}
		if !bytes.Equal(got, mb.canon[uid]) {
			t.Errorf("%s: message %q differs from its source:\n got %q\nwant %q", dir, uid, got, mb.canon[uid])
		}
	}
}

// decodeReport parses a run's --json output strictly: every field must be
// one of pipeline.Report's, and nothing may follow the report.
func decodeReport(t *testing.T, stdout string) *pipeline.Report {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	var rep pipeline.Report
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("stdout is not a JSON report: %v\n%s", err, stdout)
	}
	if dec.More() {
		t.Fatalf("stdout holds more than one JSON value:\n%s", stdout)
	}
	return &rep
}

// accountReport returns the report of account, failing the test if the
// report has none.
func accountReport(t *testing.T, rep *pipeline.Report, account string) *pipeline.AccountReport {
	t.Helper()
	for _, a := range rep.Accounts {
		if a.Account == account {
			return a
		}
	}
	var names []string
	for _, a := range rep.Accounts {
		names = append(names, a.Account)
	}
	t.Fatalf("report has no account %q (has %v)", account, names)
	return nil
}

// journalStatus opens the journal at path and returns its status by
// account.
func journalStatus(t *testing.T, path string) map[string]journal.AccountStatus {
	t.Helper()
	ctx := context.Background()
	j, err := journal.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	st, err := j.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]journal.AccountStatus{}
	for _, s := range st {
		out[s.Account] = s
	}
	return out
}

// journalBytes returns the bytes of the journal and its SQLite side files
// (-wal, -shm, -journal), whichever exist.
func journalBytes(t *testing.T, path string) []byte {
	t.Helper()
	var all []byte
	for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
		b, err := os.ReadFile(path + suffix)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	if len(all) == 0 {
		t.Fatalf("no journal at %s", path)
	}
	return all
}

// syncWriter is a buffer safe to write from the server's goroutines while
// the test reads it.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}
