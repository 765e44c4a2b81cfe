package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/maildir"
	"github.com/popmigrate/popmigrate/internal/dovecottest"
	"github.com/popmigrate/popmigrate/internal/testmsg"
	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/pipeline"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

// Binaries built once by TestMain.
var (
	popmigrateBin string
	demoserverBin string
)

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

// buildAndRun builds popmigrate and demoserver into a temporary folder,
// runs the tests and removes the folder.
func buildAndRun(m *testing.M) int {
	goTool, err := exec.LookPath("go")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: the go command is needed to build popmigrate: %v\n", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "popmigrate-e2e-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, goTool, "build", "-o", dir+string(filepath.Separator),
		"github.com/popmigrate/popmigrate/cmd/popmigrate",
		"github.com/popmigrate/popmigrate/internal/cmd/demoserver")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build: %v\n%s", err, out)
		return 1
	}
	popmigrateBin = filepath.Join(dir, "popmigrate")
	demoserverBin = filepath.Join(dir, "demoserver")
	return m.Run()
}

// result is what one popmigrate process did.
type result struct {
	args           []string
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("popmigrate %s\nexit %d\n--- stdout:\n%s--- stderr:\n%s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

func (r result) wantCode(t *testing.T, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("want exit %d, got %s", code, r)
	}
}

// popmigrate runs the binary with args and extra environment variables
// ("NAME=value") and waits for it, at most 45 s.
func popmigrate(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, popmigrateBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{args: args, stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case ctx.Err() != nil:
		t.Fatalf("popmigrate did not finish within 45s: %s", r)
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("popmigrate: %v", err)
	}
	return r
}

// decodeReport parses a run's --json output strictly.
func decodeReport(t *testing.T, r result) *pipeline.Report {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	dec.DisallowUnknownFields()
	var rep pipeline.Report
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("stdout is not a JSON report: %v\n%s", err, r)
	}
	if dec.More() {
		t.Fatalf("stdout holds more than the report:\n%s", r)
	}
	return &rep
}

func accountReport(t *testing.T, rep *pipeline.Report, account string) *pipeline.AccountReport {
	t.Helper()
	for _, a := range rep.Accounts {
		if a.Account == account {
			return a
		}
	}
	t.Fatalf("the report has no account %q", account)
	return nil
}

// statusEntry is one account of `status --json`, as a script reads it.
type statusEntry struct {
	Account     string `json:"account"`
	Source      string `json:"source"`
	ServerCount int    `json:"server_messages"`
	ServerBytes int64  `json:"server_bytes"`
	Listed      int    `json:"listed"`
	Stored      int    `json:"stored"`
	Verified    int    `json:"verified"`
	Deleted     int    `json:"deleted"`
	Failed      int    `json:"failed"`
	LastError   string `json:"last_error"`
	State       string `json:"state"`
}

func statusJSON(t *testing.T, journalPath string) map[string]statusEntry {
	t.Helper()
	r := popmigrate(t, nil, "status", "--journal", journalPath, "--json")
	r.wantCode(t, 0)
	var st []statusEntry
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, r)
	}
	out := map[string]statusEntry{}
	for _, s := range st {
		out[s.Account] = s
	}
	return out
}

// journalMessages reads account's message rows from the journal.
func journalMessages(t *testing.T, path, account string) []journal.MessageRow {
	t.Helper()
	ctx := context.Background()
	j, err := journal.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	rows, err := j.Messages(ctx, account)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// maildirFiles returns the message files in the Maildir at dir (new/ and
// cur/), by base name.
func maildirFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, sub := range []string{"new", "cur"} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if errors.Is(err, os.ErrNotExist) {
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
				t.Errorf("%s: %s is in both new/ and cur/", dir, base)
			}
			out[base] = data
		}
	}
	return out
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// checkExactlyOnce fails the test unless the Maildir at dir holds every
// message of want exactly once, byte for byte, and nothing else, and the
// journal records each of them as stored under the file the key names,
// with the file's sha256.
func checkExactlyOnce(t *testing.T, dir, journalPath, account string, want [][]byte) {
	t.Helper()
	files := maildirFiles(t, dir)
	wantCount := map[string]int{}
	for _, m := range want {
		wantCount[sum(m)]++
	}
	gotCount := map[string]int{}
	for _, data := range files {
		gotCount[sum(data)]++
	}
	if len(files) != len(want) {
		t.Errorf("%s: %d messages, want %d", dir, len(files), len(want))
	}
	for h, n := range wantCount {
		if gotCount[h] != n {
			t.Errorf("%s: a message with sha256 %s is there %d times, want %d", dir, h[:12], gotCount[h], n)
		}
	}
	for h, n := range gotCount {
		if wantCount[h] == 0 {
			t.Errorf("%s: %d unexpected messages with sha256 %s", dir, n, h[:12])
		}
	}
	rows := journalMessages(t, journalPath, account)
	if len(rows) != len(want) {
		t.Errorf("journal: %d messages of %s, want %d", len(rows), account, len(want))
	}
	for _, r := range rows {
		name := exporters.MessageKey(account, r.UIDL) + maildir.Suffix
		data, ok := files[name]
		switch {
		case r.State != journal.StateVerified:
			// run verifies what it stored, by default.
			t.Errorf("journal: %s message %q is %s (%s), want verified", account, r.UIDL, r.State, r.Error)
		case !ok:
			t.Errorf("journal: %s message %q is stored, but %s is not in %s", account, r.UIDL, name, dir)
		case sum(data) != r.SHA256:
			t.Errorf("journal: %s message %q: sha256 %s, the file has %s", account, r.UIDL, r.SHA256, sum(data))
		}
	}
}

// generated returns n distinct messages of about size bytes each, in
// canonical form, for user.
func generated(user string, n, size int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		var b bytes.Buffer
		fmt.Fprintf(&b, "From: sender%d@example.net\nTo: %s@example.org\nSubject: generated %d of %d for %s\nMessage-ID: <gen-%d-%s@example.net>\n\n",
			i+1, user, i+1, n, user, i+1, user)
		for line := 0; b.Len() < size; line++ {
			fmt.Fprintf(&b, "line %d of message %d for %s: the quick brown fox jumps over the lazy dog\n", line, i+1, user)
		}
		b.WriteString(".\n..\n.end\n")
		out[i] = b.Bytes()
	}
	return out
}

// viaDovecot is how a message stored in Dovecot comes back through POP3 in
// canonical form. Dovecot serves the Maildir file with every LF as CRLF, and
// an existing CR LF stays CR LF on the wire (it is not doubled), so after
// CRLF->LF a CR LF of the file comes back as LF. A last line without a line
// end gets one, and so does an empty message: Dovecot serves it as one
// empty line.
func viaDovecot(m []byte) []byte {
	m = bytes.ReplaceAll(m, []byte("\r\n"), []byte("\n"))
	if len(m) == 0 || m[len(m)-1] != '\n' {
		m = append(m[:len(m):len(m)], '\n')
	}
	return m
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

// TestDovecot migrates several users of a real Dovecot, over POP3S
// (implicit TLS) and POP3 with STLS, from a CSV, with one wrong password;
// checks the Maildirs message by message; runs again (nothing stored);
// and compares status --json with the journal and the disk.
func TestDovecot(t *testing.T) {
	t.Parallel()
	var tricky [][]byte
	for _, s := range testmsg.Load(t) {
		tricky = append(tricky, s.Data)
	}
	bulk := generated("bulk", 200, 1500)
	stls := append(generated("stls", 20, 800), testmsg.Find(t, "dot-lines").Data, testmsg.Find(t, "eight-bit").Data)
	users := []dovecottest.User{
		{Name: "tricky", Password: "pw-tricky-Jd82", Messages: tricky},
		{Name: "bulk", Password: "pw-bulk-Lq04", Messages: bulk},
		{Name: "stls", Password: "pw-stls-Wm55", Messages: stls},
		{Name: "wrongpw", Password: "pw-wrongpw-Xe17", Messages: generated("wrongpw", 3, 300)},
	}
	srv := dovecottest.Start(t, users, nil)

	dir := t.TempDir()
	pw := map[string]string{}
	for _, u := range users {
		pw[u.Name] = writeFile(t, dir, u.Name+".password", u.Password+"\n")
	}
	badPW := writeFile(t, dir, "bad.password", "not-the-password-Vb31\n")
	env := []string{"E2E_STLS_PASSWORD=" + users[2].Password}
	csv := writeFile(t, dir, "accounts.csv", strings.Join([]string{
		"name,source,password_file,password_env",
		"tricky,pop3s://tricky@" + srv.POP3SAddr + "," + pw["tricky"] + ",",
		"bulk,pop3s://bulk@" + srv.POP3SAddr + "," + pw["bulk"] + ",",
		// pop3:// is STLS: no --insecure-plaintext, and the plain port
		// refuses passwords before STLS.
		"stls,pop3://stls@" + srv.POP3Addr + ",,E2E_STLS_PASSWORD",
		"wrongpw,pop3s://wrongpw@" + srv.POP3SAddr + "," + badPW + ",",
	}, "\n")+"\n")
	jpath := filepath.Join(dir, "journal.db")
	out := filepath.Join(dir, "out")
	traces := filepath.Join(dir, "traces")
	args := []string{"run", "--accounts", csv, "--ca-file", srv.CAFile, "--journal", jpath,
		"--to", "maildir:" + filepath.Join(out, "{account}"), "--trace-dir", traces, "--json"}

	r := popmigrate(t, env, args...)
	r.wantCode(t, 1) // wrongpw
	rep := decodeReport(t, r)
	wantMsgs := map[string][][]byte{"tricky": nil, "bulk": nil, "stls": nil}
	for _, u := range users[:3] {
		for _, m := range u.Messages {
			wantMsgs[u.Name] = append(wantMsgs[u.Name], viaDovecot(m))
		}
		a := accountReport(t, rep, u.Name)
		if !a.Whole || a.Stored != len(u.Messages) || a.ServerMessages != len(u.Messages) || a.Error != "" || a.Failed != 0 {
			t.Errorf("%s: %+v, want %d stored, whole", u.Name, a, len(u.Messages))
		}
		// Dovecot's LIST size leaves out the CRLF it adds to a message
		// without a final line end (the empty one included): RETR delivers
		// 2 bytes more, which the report must show.
		unterminated := 0
		for _, m := range u.Messages {
			if len(m) == 0 || m[len(m)-1] != '\n' {
				unterminated++
			}
		}
		if len(a.SizeMismatches) != unterminated {
			t.Errorf("%s: size mismatches %+v, want %d", u.Name, a.SizeMismatches, unterminated)
		}
		for _, sm := range a.SizeMismatches {
			if sm.Received != sm.Listed+2 {
				t.Errorf("%s: size mismatch %+v, want RETR 2 bytes over LIST", u.Name, sm)
			}
		}
		checkExactlyOnce(t, filepath.Join(out, u.Name), jpath, u.Name, wantMsgs[u.Name])
	}
	w := accountReport(t, rep, "wrongpw")
	if w.Whole || w.Stored != 0 || !strings.Contains(w.Error, "login as wrongpw") || w.Sessions != 1 {
		t.Errorf("wrongpw: %+v, want a login error after one session", w)
	}
	if !strings.Contains(r.stderr, "wrongpw") || !strings.Contains(r.stderr, "1 of 4 accounts not whole") {
		t.Errorf("stderr does not name the failed account:\n%s", r.stderr)
	}
	if files := maildirFiles(t, filepath.Join(out, "wrongpw")); len(files) != 0 {
		t.Errorf("wrongpw: %d messages stored", len(files))
	}

	// The STLS account upgraded before it authenticated.
	tr, err := os.ReadFile(filepath.Join(traces, "stls.trace"))
	if err != nil {
		t.Fatal(err)
	}
	stlsAt, authAt := bytes.Index(tr, []byte("C: STLS")), bytes.Index(tr, []byte("C: AUTH"))
	if userAt := bytes.Index(tr, []byte("C: USER")); authAt < 0 || (userAt >= 0 && userAt < authAt) {
		authAt = userAt
	}
	if stlsAt < 0 || authAt < 0 || authAt < stlsAt {
		t.Errorf("stls.trace: STLS at %d, login at %d; want STLS first:\n%.2000s", stlsAt, authAt, tr)
	}
	// No password anywhere popmigrate writes.
	written := [][]byte{[]byte(r.stdout), []byte(r.stderr), tr}
	for _, suffix := range []string{"", "-wal"} {
		if b, err := os.ReadFile(jpath + suffix); err == nil {
			written = append(written, b)
		}
	}
	for _, u := range users {
		for i, b := range written {
			if bytes.Contains(b, []byte(u.Password)) {
				t.Errorf("output %d contains %s's password", i, u.Name)
			}
		}
	}

	// Again, with the right password for wrongpw: only its messages are
	// downloaded.
	writeFile(t, dir, "accounts.csv", strings.ReplaceAll(mustRead(t, csv), badPW, pw["wrongpw"]))
	r = popmigrate(t, env, args...)
	r.wantCode(t, 0)
	rep = decodeReport(t, r)
	for _, u := range users {
		a := accountReport(t, rep, u.Name)
		wantStored, wantSkipped := 0, len(u.Messages)
		if u.Name == "wrongpw" {
			wantStored, wantSkipped = len(u.Messages), 0
			for _, m := range u.Messages {
				wantMsgs["wrongpw"] = append(wantMsgs["wrongpw"], viaDovecot(m))
			}
		}
		if !a.Whole || a.Stored != wantStored || a.SkippedAlreadyStored != wantSkipped {
			t.Errorf("second run, %s: %+v, want %d stored, %d already stored", u.Name, a, wantStored, wantSkipped)
		}
		checkExactlyOnce(t, filepath.Join(out, u.Name), jpath, u.Name, wantMsgs[u.Name])
	}

	// A third run stores nothing at all.
	r = popmigrate(t, env, args...)
	r.wantCode(t, 0)
	if rep := decodeReport(t, r); rep.Totals.Stored != 0 || rep.Totals.SkippedAlreadyStored != rep.Totals.ServerMessages {
		t.Errorf("third run totals %+v, want nothing stored", rep.Totals)
	}

	// status --json agrees with the journal and the disk.
	st := statusJSON(t, jpath)
	if len(st) != len(users) {
		t.Errorf("status lists %d accounts, want %d", len(st), len(users))
	}
	for _, u := range users {
		s := st[u.Name]
		onDisk := len(maildirFiles(t, filepath.Join(out, u.Name)))
		rows := journalMessages(t, jpath, u.Name)
		if s.Verified != len(u.Messages) || s.ServerCount != len(u.Messages) || onDisk != len(u.Messages) || len(rows) != len(u.Messages) ||
			s.Failed != 0 || s.LastError != "" {
			t.Errorf("status of %s: %+v; %d on disk, %d in the journal; want %d stored", u.Name, s, onDisk, len(rows), len(u.Messages))
		}
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// stallProxy forwards TCP connections to target. Once limit bytes have gone
// from the server to the clients, it stops forwarding (the client sees a
// server that stalls) until release, after which it forwards everything.
type stallProxy struct {
	ln      net.Listener
	target  string
	limit   int64
	stalled chan struct{} // closed when the limit is reached
	release chan struct{} // closed by Release

	mu       sync.Mutex
	sent     int64
	conns    []net.Conn
	once     sync.Once
	released sync.Once
	wg       sync.WaitGroup
}

func newStallProxy(t *testing.T, target string, limit int64) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, target: target, limit: limit, stalled: make(chan struct{}), release: make(chan struct{})}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.Close)
	return p
}

func (p *stallProxy) Addr() string { return p.ln.Addr().String() }

// Release lets every connection go on without a limit.
func (p *stallProxy) Release() { p.released.Do(func() { close(p.release) }) }

// Close stops the proxy and closes every connection.
func (p *stallProxy) Close() {
	p.Release()
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *stallProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			io.Copy(up, c)
			up.Close()
		}()
		go func() {
			defer p.wg.Done()
			p.down(c, up)
			c.Close()
		}()
	}
}

// down copies server bytes to the client, stalling at the limit.
func (p *stallProxy) down(c, up net.Conn) {
	buf := make([]byte, 4096)
	for {
		n, err := up.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			p.mu.Lock()
			allowed := p.limit - p.sent
			p.mu.Unlock()
			select {
			case <-p.release:
				allowed = int64(n)
			default:
			}
			if allowed < int64(n) {
				if allowed > 0 {
					if _, err := c.Write(chunk[:allowed]); err != nil {
						return
					}
					p.add(allowed)
					chunk = chunk[allowed:]
				}
				p.once.Do(func() { close(p.stalled) })
				<-p.release
			}
			if _, err := c.Write(chunk); err != nil {
				return
			}
			p.add(int64(len(chunk)))
		}
		if err != nil {
			return
		}
	}
}

func (p *stallProxy) add(n int64) {
	p.mu.Lock()
	p.sent += n
	p.mu.Unlock()
}

// TestDovecotKill9 kills popmigrate with SIGKILL in the middle of a
// 200-message mailbox, after group commits have reached the journal and
// while further messages are written but not yet committed, then runs it
// again: every message ends up in the Maildir exactly once.
func TestDovecotKill9(t *testing.T) {
	t.Parallel()
	const n, size, batch = 200, 2000, 40
	msgs := generated("crash", n, size)
	srv := dovecottest.Start(t, []dovecottest.User{{Name: "crash", Password: "pw-crash-Hh20", Messages: msgs}}, nil)
	// Stall the server's output around message 135 (the TLS handshake and
	// the listings come first): batches of 40 are committed up to 120, and
	// the messages after 120 are in the Maildir but not in the journal.
	var total int64
	for _, m := range msgs {
		total += int64(len(m) + bytes.Count(m, []byte("\n")))
	}
	proxy := newStallProxy(t, srv.POP3SAddr, total*140/n)

	dir := t.TempDir()
	pwFile := writeFile(t, dir, "crash.password", "pw-crash-Hh20\n")
	jpath := filepath.Join(dir, "journal.db")
	md := filepath.Join(dir, "out", "crash")
	args := []string{"run", "--source", "pop3s://crash@" + proxy.Addr(), "--name", "crash", "--password-file", pwFile,
		"--ca-file", srv.CAFile, "--journal", jpath, "--to", "maildir:" + md,
		"--batch-size", fmt.Sprint(batch), "--batch-interval", "1h", "--json"}

	run := startStalled(t, proxy, nil, args...)
	committedNow := func() int { return committedCount(t, jpath, "crash") }
	last, stableSince := -1, time.Now()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if c := len(maildirFiles(t, md)); c != last {
			last, stableSince = c, time.Now()
		} else if time.Since(stableSince) > 500*time.Millisecond && committedNow() > 0 {
			break
		}
	}
	run.kill(t)

	committed := committedNow()
	onDisk := len(maildirFiles(t, md))
	t.Logf("killed with %d messages committed and %d in the Maildir, of %d", committed, onDisk, n)
	if committed == 0 || committed%batch != 0 || committed >= n {
		t.Errorf("%d messages committed at the kill, want a positive multiple of %d below %d", committed, batch, n)
	}
	// A message reaches new/ only at its group commit: what was written
	// but not committed waits in tmp/, invisible to mail readers.
	if onDisk != committed {
		t.Errorf("%d messages in the Maildir's new/ and cur/, want exactly the %d committed", onDisk, committed)
	}
	if staged, err := os.ReadDir(filepath.Join(md, "tmp")); err != nil || len(staged) == 0 {
		t.Errorf("tmp/ holds %d files (%v), want the messages written after the last commit", len(staged), err)
	}

	r := popmigrate(t, nil, args...)
	r.wantCode(t, 0)
	a := accountReport(t, decodeReport(t, r), "crash")
	if !a.Whole || a.SkippedAlreadyStored != committed || a.Stored != n-committed {
		t.Errorf("resume: %+v, want %d already stored, %d stored", a, committed, n-committed)
	}
	want := make([][]byte, n)
	for i, m := range msgs {
		want[i] = viaDovecot(m)
	}
	checkExactlyOnce(t, md, jpath, "crash", want)
	if st := statusJSON(t, jpath)["crash"]; st.Verified != n || st.ServerCount != n {
		t.Errorf("status after resume: %+v", st)
	}
	if tmp, err := os.ReadDir(filepath.Join(md, "tmp")); err == nil && len(tmp) > 0 {
		t.Logf("the kill left %d files in tmp/ (the Maildir spec lets readers ignore them)", len(tmp))
	}
}

// TestNoSTLSRefusesCredentials: pop3:// against a server that does not
// offer STLS fails the account before any credential is sent.
func TestNoSTLSRefusesCredentials(t *testing.T) {
	t.Parallel()
	log := &lockedBuffer{}
	srv := pop3test.NewServer([]pop3test.Mailbox{{User: "alice", Password: "pw-alice-Rt66",
		Messages: []pop3test.Message{{Data: []byte("Subject: x\n\nbody\n")}}}},
		&pop3test.ServerOptions{Faults: pop3test.Faults{NoSTLS: true, SASLPlain: true, APOP: true}, Log: log})
	addr, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	dir := t.TempDir()
	pwFile := writeFile(t, dir, "pw", "pw-alice-Rt66\n")
	md := filepath.Join(dir, "out")
	r := popmigrate(t, nil, "run", "--source", "pop3://alice@"+addr.String(), "--password-file", pwFile,
		"--journal", filepath.Join(dir, "j.db"), "--to", "maildir:"+md, "--json")
	r.wantCode(t, 1)
	a := accountReport(t, decodeReport(t, r), "alice@127.0.0.1")
	if !strings.Contains(a.Error, "STLS") || a.Stored != 0 || a.Sessions != 1 {
		t.Errorf("report %+v, want an STLS error after one session", a)
	}
	if st := srv.Stats(); st.Logins != 0 || st.FailedLogins != 0 {
		t.Errorf("server stats %+v: a login was attempted", st)
	}
	for _, verb := range []string{"C: USER", "C: PASS", "C: AUTH", "C: APOP"} {
		if strings.Contains(log.String(), verb) {
			t.Errorf("the client sent %s without TLS:\n%s", verb, log.String())
		}
	}
	if !strings.Contains(log.String(), "C: CAPA") {
		t.Errorf("the server saw no CAPA; did the client connect at all?\n%s", log.String())
	}
	if files := maildirFiles(t, md); len(files) != 0 {
		t.Errorf("%d messages stored", len(files))
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestDemoServer runs what `make demo` runs, minus the rebuild: the sample
// server with testdata/demo, a migration, a second run, and status.
func TestDemoServer(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("not run from the e2e folder of the repository: %v", err)
	}
	mailboxes := filepath.Join(root, "testdata", "demo")
	state := filepath.Join(t.TempDir(), "state")
	srv := exec.Command(demoserverBin, "-mailboxes", mailboxes, "-state", state)
	srvOut := &lockedBuffer{}
	srv.Stdout, srv.Stderr = srvOut, srvOut
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{}) // closed when waitErr is set
	var waitErr error
	go func() {
		waitErr = srv.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		srv.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			srv.Process.Kill()
			<-exited
		}
	})
	ready := false
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(state, "ready")); err == nil {
			ready = true
			break
		}
		select {
		case <-exited:
			t.Fatalf("demoserver exited: %v\n%s", waitErr, srvOut.String())
		default:
		}
	}
	if !ready {
		t.Fatalf("demoserver not ready after 10s:\n%s", srvOut.String())
	}

	out := filepath.Join(t.TempDir(), "demo-out")
	jpath := filepath.Join(state, "journal.db")
	args := []string{"run", "--accounts", filepath.Join(state, "accounts.csv"), "--ca-file", filepath.Join(state, "ca.pem"),
		"--journal", jpath, "--to", "maildir:" + filepath.Join(out, "{user}")}
	r := popmigrate(t, nil, args...)
	r.wantCode(t, 0)
	users, err := os.ReadDir(mailboxes)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, u := range users {
		if !u.IsDir() {
			continue
		}
		files, err := filepath.Glob(filepath.Join(mailboxes, u.Name(), "*.eml"))
		if err != nil {
			t.Fatal(err)
		}
		sort.Strings(files)
		var want [][]byte
		for _, f := range files {
			want = append(want, []byte(mustRead(t, f)))
		}
		total += len(want)
		account := u.Name() + "@127.0.0.1"
		if !strings.Contains(r.stdout, account) {
			t.Errorf("the report does not list %s:\n%s", account, r.stdout)
		}
		checkExactlyOnce(t, filepath.Join(out, u.Name()), jpath, account, want)
	}
	if !strings.Contains(r.stdout, fmt.Sprintf("stored %d", total)) {
		t.Errorf("the report does not say %d were stored:\n%s", total, r.stdout)
	}
	r = popmigrate(t, nil, args...)
	r.wantCode(t, 0)
	if !strings.Contains(r.stdout, fmt.Sprintf("stored 0 (0 B), already stored %d", total)) {
		t.Errorf("the second run stored something:\n%s", r.stdout)
	}
	r = popmigrate(t, nil, "status", "--journal", jpath)
	r.wantCode(t, 0)
	if !strings.Contains(r.stdout, "ACCOUNT") {
		t.Errorf("status printed no table:\n%s", r.stdout)
	}
}
