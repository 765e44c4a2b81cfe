package imap

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/exportertest"
	"github.com/popmigrate/popmigrate/internal/dovecottest"
)

func TestParseAppendUID(t *testing.T) {
	for _, c := range []struct {
		code imap.ResponseCode
		args string
		n    int
		want []imap.UID
	}{
		{"APPENDUID", "38505 3955", 1, []imap.UID{3955}},
		{"APPENDUID", "38505 3955:3957", 3, []imap.UID{3955, 3956, 3957}},
		{"APPENDUID", "38505 3957:3955", 3, []imap.UID{3955, 3956, 3957}},
		{"APPENDUID", "38505 5,7:8,2", 4, []imap.UID{5, 7, 8, 2}},
		{"APPENDUID", "38505 3955:3957", 2, nil},    // more UIDs than messages
		{"APPENDUID", "38505 3955:3956", 3, nil},    // fewer
		{"APPENDUID", "38505 1:4294967295", 3, nil}, // a huge range is refused before it is expanded
		{"APPENDUID", "0 5", 1, nil},
		{"APPENDUID", "38505 0", 1, nil},
		{"APPENDUID", "38505", 1, nil},
		{"APPENDUID", "38505 x", 1, nil},
		{"COPYUID", "38505 5", 1, nil},
	} {
		v, uids, ok := parseAppendUID(c.code, c.args, c.n)
		if ok != (c.want != nil) || !slices.Equal(uids, c.want) || (ok && v != 38505) {
			t.Errorf("parseAppendUID(%s %q, %d) = %d %v %v, want %v", c.code, c.args, c.n, v, uids, ok, c.want)
		}
	}
}

func TestParseTagged(t *testing.T) {
	st, err := parseTagged("OK [APPENDUID 7 3:4] Append completed.")
	if err != nil || st.typ != imap.StatusResponseTypeOK || st.code != "APPENDUID" || st.args != "7 3:4" || st.text != "Append completed." {
		t.Errorf("OK with APPENDUID: %+v %v", st, err)
	}
	st, err = parseTagged("no [overquota] Quota exceeded")
	if err != nil || st.typ != imap.StatusResponseTypeNo || st.code != "OVERQUOTA" || st.text != "Quota exceeded" {
		t.Errorf("NO: %+v %v", st, err)
	}
	st, err = parseTagged("BAD Syntax")
	if err != nil || st.typ != imap.StatusResponseTypeBad || st.code != "" || st.text != "Syntax" {
		t.Errorf("BAD: %+v %v", st, err)
	}
	for _, bad := range []string{"PREAUTH x", "OK [APPENDUID 7 3", ""} {
		if _, err := parseTagged(bad); err == nil {
			t.Errorf("parseTagged(%q) succeeded", bad)
		}
	}
}

func TestTrailingLiteral(t *testing.T) {
	for line, want := range map[string]int64{
		"* 1 FETCH (BODY[] {12}\r\n": 12,
		"* 1 FETCH (BODY[] {0}\r\n":  0,
		"* 1 FETCH (X {5+}\r\n":      5,
		"* 3 EXISTS\r\n":             -1,
		"* OK {x}\r\n":               -1,
		"* OK }\r\n":                 -1,
	} {
		n, ok := trailingLiteral([]byte(line))
		if (want < 0) == ok || (ok && n != want) {
			t.Errorf("trailingLiteral(%q) = %d %v, want %d", line, n, ok, want)
		}
	}
}

// TestDovecotGroupedAppend: into a Dovecot (MULTIAPPEND, LITERAL+,
// UIDPLUS), Puts in flight together are stored in groups, each at the
// Ref its Put returned; a message the server refuses in a group is
// quarantined alone while the others are stored; and a group whose
// answer is lost (the connection cut once its command went out) leaves
// every message in the folder exactly once.
func TestDovecotGroupedAppend(t *testing.T) {
	users := []dovecottest.User{}
	for _, name := range []string{"group", "groupbad", "groupcut", "groupmid", "groupstls", "groupdead", "groupone", "groupintl"} {
		users = append(users, dovecottest.User{Name: name, Password: dovecotPassword})
	}
	srv := dovecottest.Start(t, users, nil)
	opts := func(user string) *Options {
		return &Options{
			Addr: srv.IMAPSAddr, Security: SecurityTLS, TLSConfig: srv.PKI.ClientConfig(),
			Username: user, Password: dovecotPassword, Folder: "Grouped", Conns: 2, Timeout: 20 * time.Second,
		}
	}
	// putAll Puts msgs at once and returns each one's result.
	putAll := func(e *Exporter, msgs []*exporters.Message) ([]string, []error) {
		refs, errs := make([]string, len(msgs)), make([]error, len(msgs))
		var wg sync.WaitGroup
		for i, m := range msgs {
			wg.Go(func() {
				d, err := e.Put(testCtx(t), m)
				refs[i], errs[i] = d.Ref, err
			})
		}
		wg.Wait()
		return refs, errs
	}
	// mustPutAll is putAll that fails the test on any Put's error.
	mustPutAll := func(t *testing.T, e *Exporter, msgs []*exporters.Message) []string {
		t.Helper()
		refs, errs := putAll(e, msgs)
		for i, err := range errs {
			if err != nil {
				t.Fatalf("Put %d: %v", i, err)
			}
		}
		return refs
	}
	// checkRefs reads every ref back: it holds the message put there.
	checkRefs := func(t *testing.T, e *Exporter, refs []string, msgs []*exporters.Message) {
		t.Helper()
		for i, ref := range refs {
			if got := mustOpen(t, e, ref); !bytes.Equal(got, messageBytes(msgs[i])) {
				t.Errorf("Put %d: %s holds %q", i, ref, got)
			}
		}
	}
	// folderSumsIn returns the sha256 of every message of the user's
	// folder, and folderSums of its folder "Grouped".
	folderSumsIn := func(user, folder string) []string {
		cl := dovecotClient(t, srv, user)
		if _, err := cl.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
			t.Fatal(err)
		}
		var all imap.UIDSet
		all.AddRange(1, 0)
		msgs, err := cl.Fetch(all, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		var sums []string
		for _, m := range msgs {
			for _, b := range m.BodySection {
				s := sha256.Sum256(bytes.ReplaceAll(b.Bytes, []byte("\r\n"), []byte("\n")))
				sums = append(sums, fmt.Sprintf("%x", s))
			}
		}
		slices.Sort(sums)
		return sums
	}
	folderSums := func(user string) []string { return folderSumsIn(user, "Grouped") }
	wantSums := func(msgs []*exporters.Message) []string {
		var sums []string
		for _, m := range msgs {
			s := sha256.Sum256(messageBytes(m))
			sums = append(sums, fmt.Sprintf("%x", s))
		}
		slices.Sort(sums)
		return sums
	}
	// putAllGrouped Puts 40 messages (msgN(first)...) at once through e,
	// which must send every one in a group: each reads back from its
	// ref, and the user's folder holds each once.
	putAllGrouped := func(t *testing.T, e *Exporter, user, folder string, first int) {
		t.Helper()
		var msgs []*exporters.Message
		for i := range 40 {
			msgs = append(msgs, msgN(first+i))
		}
		refs := mustPutAll(t, e, msgs)
		checkRefs(t, e, refs, msgs)
		e.mu.Lock()
		grouped := e.grouped
		e.mu.Unlock()
		if grouped != len(msgs) {
			t.Errorf("%d of %d messages went in groups", grouped, len(msgs))
		}
		if got := folderSumsIn(user, folder); !slices.Equal(got, wantSums(msgs)) {
			t.Errorf("%q holds %d messages, want the %d put once each", folder, len(got), len(msgs))
		}
	}

	t.Run("Groups", func(t *testing.T) {
		e := newExporter(t, opts("group"))
		if !e.grouping || e.PutConcurrency() != 2*groupMax {
			t.Fatalf("grouping %v, PutConcurrency %d: Dovecot offers MULTIAPPEND, LITERAL+ and UIDPLUS", e.grouping, e.PutConcurrency())
		}
		var msgs []*exporters.Message
		for i := range 100 {
			msgs = append(msgs, msgN(i))
		}
		refs := mustPutAll(t, e, msgs)
		if err := e.Sync(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		checkRefs(t, e, refs, msgs)
		e.mu.Lock()
		groups, grouped := e.groups, e.grouped
		e.mu.Unlock()
		t.Logf("100 Puts at once: %d groups", groups)
		if grouped != 100 || groups > 50 {
			t.Errorf("%d messages in %d groups, want all 100 in groups of more than one on average", grouped, groups)
		}
		if got := folderSums("group"); !slices.Equal(got, wantSums(msgs)) {
			t.Errorf("the folder holds %d messages, not the 100 put once each", len(got))
		}
	})

	t.Run("STARTTLS", func(t *testing.T) {
		// popmigrate starts TLS itself (startTLS), so that it can send
		// grouped APPENDs on the connection under go-imap's client.
		o := opts("groupstls")
		o.Addr, o.Security = srv.IMAPAddr, SecurityStartTLS
		e := newExporter(t, o)
		if !e.grouping {
			t.Fatal("no grouped APPENDs after STARTTLS")
		}
		putAllGrouped(t, e, "groupstls", "Grouped", 3000)
	})

	t.Run("FolderNameOutsideASCII", func(t *testing.T) {
		// go-imap sends CREATE and SELECT in modified UTF-7; the groups
		// must name the same folder (encodeMailbox).
		const folder = "Entwürfe & Архив 📁"
		o := opts("groupintl")
		o.Folder = folder
		e := newExporter(t, o)
		if !e.grouping {
			t.Fatal("no grouped APPENDs into a folder named outside ASCII")
		}
		putAllGrouped(t, e, "groupintl", folder, 8000)
	})

	t.Run("RejectedInGroup", func(t *testing.T) {
		o := opts("groupbad")
		o.QuarantineDir = filepath.Join(t.TempDir(), "q")
		e := newExporter(t, o)
		var msgs []*exporters.Message
		for i := range 20 {
			msgs = append(msgs, msgN(i))
		}
		empty := exportertest.NewMessage("empty", nil) // Dovecot: NO, can't save a zero byte message
		msgs = append(msgs[:10], append([]*exporters.Message{empty}, msgs[10:]...)...)
		_, errs := putAll(e, msgs)
		for i, err := range errs {
			var qe *QuarantinedError
			switch {
			case msgs[i] == empty && !errors.As(err, &qe):
				t.Errorf("the empty message: Put = %v, want a *QuarantinedError", err)
			case msgs[i] != empty && err != nil:
				t.Errorf("Put %d: %v", i, err)
			}
		}
		good := slices.DeleteFunc(slices.Clone(msgs), func(m *exporters.Message) bool { return m == empty })
		if got := folderSums("groupbad"); !slices.Equal(got, wantSums(good)) {
			t.Errorf("the folder holds %d messages, want the 20 good ones once each", len(got))
		}
	})

	t.Run("NoSecondLoginForLessThanAGroup", func(t *testing.T) {
		// While the first group waits for its answer, the rest of a
		// small mailbox waits for the same connection: less than a
		// group is not worth a second login (see maybeSenderLocked).
		o := opts("groupone")
		var dials atomic.Int32
		o.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}
		e := newExporter(t, o)
		var msgs []*exporters.Message
		for i := range groupMax {
			msgs = append(msgs, msgN(7000+i))
		}
		type results struct {
			refs []string
			errs []error
		}
		rest := make(chan results, 1)
		var once sync.Once
		testHookGroupSent = func(c *conn) {
			once.Do(func() {
				go func() { // not the test's goroutine: no t.Fatal here
					refs, errs := putAll(e, msgs[1:])
					rest <- results{refs, errs}
				}()
				// Hold the first group's answer until the others wait.
				for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
					e.mu.Lock()
					n := len(e.gq)
					e.mu.Unlock()
					if n == len(msgs)-1 {
						break
					}
					if time.Now().After(deadline) {
						t.Errorf("%d of %d Puts wait for a group after 10 s", n, len(msgs)-1)
						break
					}
				}
			})
		}
		t.Cleanup(func() { testHookGroupSent = nil })
		refs := mustPutAll(t, e, msgs[:1])
		r := <-rest
		for i, err := range r.errs {
			if err != nil {
				t.Fatalf("Put %d: %v", i+1, err)
			}
		}
		refs = append(refs, r.refs...)
		checkRefs(t, e, refs, msgs)
		if n := dials.Load(); n != 1 {
			t.Errorf("%d connections for %d messages, %d of them waiting behind one group: want 1", n, len(msgs), len(msgs)-1)
		}
		if got := folderSums("groupone"); !slices.Equal(got, wantSums(msgs)) {
			t.Errorf("the folder holds %d messages, want the %d put once each", len(got), len(msgs))
		}
	})

	t.Run("CutAfterSend", func(t *testing.T) {
		e := newExporter(t, opts("groupcut"))
		var once sync.Once
		testHookGroupSent = func(c *conn) {
			// At once: the server is still storing the group when the
			// messages are looked for (see settle).
			once.Do(func() { c.kill(errConnBroken) })
		}
		t.Cleanup(func() { testHookGroupSent = nil })
		var msgs []*exporters.Message
		for i := range 40 {
			msgs = append(msgs, msgN(1000+i))
		}
		refs := mustPutAll(t, e, msgs)
		checkRefs(t, e, refs, msgs)
		if got := folderSums("groupcut"); !slices.Equal(got, wantSums(msgs)) {
			t.Errorf("the folder holds %d messages, want the 40 put once each (a lost answer must not store twice)", len(got))
		}
	})

	t.Run("ResumeAfterDeathMidGroup", func(t *testing.T) {
		// A process dies right after a group's CRLF went out (its
		// connection cut, its Puts ended); the next one resumes from the
		// open intent at once (a dead process's account is taken over
		// at once), while the server may still be storing the group: it
		// must find every message there (see settle), not send them
		// again.
		var j fakeJournal
		e1 := newExporter(t, opts("groupdead"))
		if err := e1.Resume(testCtx(t), "", j.save); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(testCtx(t))
		var once sync.Once
		testHookGroupSent = func(c *conn) {
			once.Do(func() {
				c.kill(errConnBroken)
				cancel() // the process is gone: nothing is sent again
			})
		}
		t.Cleanup(func() { testHookGroupSent = nil })
		var msgs []*exporters.Message
		for i := range 32 {
			msgs = append(msgs, msgN(5000+i))
		}
		var wg sync.WaitGroup
		for _, m := range msgs {
			wg.Go(func() { e1.Put(ctx, m) })
		}
		wg.Wait()
		testHookGroupSent = nil
		e1.Close()

		e2 := newExporter(t, opts("groupdead"))
		if err := e2.Resume(testCtx(t), j.last(), j.save); err != nil {
			t.Fatal(err)
		}
		refs := mustPutAll(t, e2, msgs)
		checkRefs(t, e2, refs, msgs)
		if got := folderSums("groupdead"); !slices.Equal(got, wantSums(msgs)) {
			t.Errorf("the folder holds %d messages, want the 32 once each", len(got))
		}
	})

	t.Run("BodyFailsMidGroup", func(t *testing.T) {
		// A body that fails while its literal is on the wire cuts the
		// group's command short: nothing of it is stored, the connection
		// is abandoned, and every member goes again on its own.
		e := newExporter(t, opts("groupmid"))
		var msgs []*exporters.Message
		for i := range 30 {
			msgs = append(msgs, msgN(2000+i))
		}
		flaky := msgs[15]
		flaky.Body = &failSecondPass{ReaderAt: flaky.Body, size: flaky.Body.Size()}
		refs := mustPutAll(t, e, msgs)
		if n := flaky.Body.(*failSecondPass).passes(); n < 3 {
			t.Fatalf("the flaky body was read from its start %d times, want 3 (scan, group, alone)", n)
		}
		checkRefs(t, e, refs, msgs)
		if got := folderSums("groupmid"); !slices.Equal(got, wantSums(msgs)) {
			t.Errorf("the folder holds %d messages, want the 30 put once each", len(got))
		}
	})
}

// failSecondPass is a body whose second read from its start fails half
// way: the first is Put's scan, the second a group's literal.
type failSecondPass struct {
	io.ReaderAt
	size int64

	mu    sync.Mutex
	n     int
	armed bool
}

func (b *failSecondPass) Size() int64 { return b.size }

func (b *failSecondPass) passes() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

func (b *failSecondPass) ReadAt(p []byte, off int64) (int, error) {
	b.mu.Lock()
	if off == 0 {
		b.n++
		b.armed = b.n == 2
	}
	fail := b.armed
	b.mu.Unlock()
	if fail {
		half := min(int64(len(p)), b.size/2)
		n, _ := b.ReaderAt.ReadAt(p[:half], off)
		return n, errors.New("disk read error")
	}
	return b.ReaderAt.ReadAt(p, off)
}

// claimGroups adds MULTIAPPEND and LITERAL+ to the capabilities a
// server lists (after UIDPLUS, which go-imap's server lists when logged
// in): go-imap's server, which parses neither, then claims both.
type claimGroups struct{ net.Conn }

func (c claimGroups) Read(p []byte) (int, error) {
	const from, to = " UIDPLUS", " UIDPLUS MULTIAPPEND LITERAL+"
	buf := make([]byte, len(p)-(len(to)-len(from))*4)
	n, err := c.Conn.Read(buf)
	out := bytes.ReplaceAll(buf[:n], []byte(from), []byte(to))
	return copy(p, out), err
}

// TestGroupsRefusedBySyntax: a server that offers MULTIAPPEND and
// LITERAL+ but cannot parse a grouped APPEND (go-imap's server) gets
// each message once all the same, and no more groups once it refused
// one.
func TestGroupsRefusedBySyntax(t *testing.T) {
	srv := startMem(t, memConfig{})
	o := srv.options("Claims")
	o.Conns = 2
	o.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return claimGroups{c}, nil
	}
	e := newExporter(t, o)
	if !e.grouping {
		t.Fatal("the server claims MULTIAPPEND, LITERAL+ and UIDPLUS: want grouping")
	}
	var msgs []*exporters.Message
	for i := range 20 {
		msgs = append(msgs, msgN(i))
	}
	refs := make([]string, len(msgs))
	var wg sync.WaitGroup
	for i, m := range msgs {
		wg.Go(func() {
			d, err := e.Put(testCtx(t), m)
			if err != nil {
				t.Errorf("Put %d: %v", i, err)
			}
			refs[i] = d.Ref
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for i, ref := range refs {
		if got := mustOpen(t, e, ref); !bytes.Equal(got, messageBytes(msgs[i])) {
			t.Errorf("Put %d: %s holds %q", i, ref, got)
		}
	}
	if n := len(srv.messages(t, "Claims")); n != len(msgs) {
		t.Errorf("the folder holds %d messages, want the %d put once each", n, len(msgs))
	}
	if !e.noGroups.Load() {
		t.Error("grouping goes on after the server refused a group")
	}
}

// lostFence is a body whose fence fails (exporters.Fenced): its reads
// pass, as a process's last reads before a pause did, and the check
// before the APPEND takes effect finds the account lost.
type lostFence struct{ exporters.Body }

var errFenceLost = errors.New("the account was taken over")

func (lostFence) Check(context.Context) error { return errFenceLost }

// TestFenceBeforeTheAppendTakesEffect: a message whose fence fails after
// its last read is not stored, alone (go-imap's server: one APPEND) or
// in a group (Dovecot), and the other messages of its group are stored
// once each.
func TestFenceBeforeTheAppendTakesEffect(t *testing.T) {
	t.Run("single", func(t *testing.T) {
		srv := startMem(t, memConfig{})
		e := newExporter(t, srv.options("Fence"))
		m := msgN(1)
		m.Body = lostFence{m.Body}
		if _, err := e.Put(testCtx(t), m); !errors.Is(err, errFenceLost) {
			t.Fatalf("Put = %v, want the fence's error", err)
		}
		mustPut(t, e, msgN(2))
		if n := len(srv.messages(t, "Fence")); n != 1 {
			t.Errorf("the folder holds %d messages, want only the one not fenced", n)
		}
	})
	t.Run("group", func(t *testing.T) {
		srv := dovecottest.Start(t, []dovecottest.User{{Name: "fence", Password: dovecotPassword}}, nil)
		e := newExporter(t, &Options{Addr: srv.IMAPSAddr, Security: SecurityTLS, TLSConfig: srv.PKI.ClientConfig(),
			Username: "fence", Password: dovecotPassword, Folder: "Fence", Conns: 1, Timeout: 20 * time.Second})
		if !e.grouping {
			t.Fatal("Dovecot: want grouped APPENDs")
		}
		var msgs []*exporters.Message
		for i := range 10 {
			msgs = append(msgs, msgN(4000+i))
		}
		msgs[5].Body = lostFence{msgs[5].Body}
		errs := make([]error, len(msgs))
		var wg sync.WaitGroup
		for i, m := range msgs {
			wg.Go(func() { _, errs[i] = e.Put(testCtx(t), m) })
		}
		wg.Wait()
		for i, err := range errs {
			switch {
			case i == 5 && !errors.Is(err, errFenceLost):
				t.Errorf("the fenced message: Put = %v, want the fence's error", err)
			case i != 5 && err != nil:
				t.Errorf("Put %d: %v", i, err)
			}
		}
		cl := dovecotClient(t, srv, "fence")
		sel, err := cl.Select("Fence", &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			t.Fatal(err)
		}
		if sel.NumMessages != 9 {
			t.Errorf("the folder holds %d messages, want the 9 not fenced", sel.NumMessages)
		}
	})
}
