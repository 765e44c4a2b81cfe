package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/internal/testpki"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

// serve starts an implicit-TLS test server with two users on loopback and
// writes their accounts file; it returns the address, the CA file, the
// accounts file and the messages' size with LF line ends. One message has
// a line longer than the read buffer.
func serve(t *testing.T, faults pop3test.Faults) (addr, caFile, accounts string, size int) {
	t.Helper()
	dir := t.TempDir()
	pki, err := testpki.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	var boxes []pop3test.Mailbox
	var list strings.Builder
	list.WriteString("user,password_file\n")
	for _, u := range []string{"ann", "ben"} {
		box := pop3test.Mailbox{User: u, Password: "pw-" + u}
		for i := range 30 {
			body := fmt.Sprintf("Subject: %d\n\nline one\n.a dot line\n..two dots\n.\n%s\n", i, strings.Repeat("x", i*5000))
			size += len(body)
			box.Messages = append(box.Messages, pop3test.Message{Data: []byte(body)})
		}
		boxes = append(boxes, box)
		pw := filepath.Join(dir, u+".pw")
		if err := os.WriteFile(pw, []byte(box.Password+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&list, "%s,%s\n", u, pw)
	}
	accounts = filepath.Join(dir, "accounts")
	if err := os.WriteFile(accounts, []byte(list.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := pop3test.NewServer(boxes, &pop3test.ServerOptions{TLSConfig: pki.ServerConfig, Implicit: true, Faults: faults})
	t.Cleanup(func() { srv.Close() })
	a, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return a.String(), pki.CAFile, accounts, size
}

// TestRun: every message of every account read, at once and one after
// another, unstuffed and counted; a size that does not match LIST fails
// the run.
func TestRun(t *testing.T) {
	addr, ca, accounts, size := serve(t, pop3test.Faults{})
	for _, n := range []int{1, 2, 8} {
		var out bytes.Buffer
		if err := run(&out, addr, ca, accounts, n, 10*time.Second); err != nil {
			t.Fatalf("concurrency %d: %v", n, err)
		}
		var accts, msgs, octets, lines int
		if _, err := fmt.Sscanf(out.String(), "accounts=%d messages=%d bytes=%d lines=%d", &accts, &msgs, &octets, &lines); err != nil {
			t.Fatalf("concurrency %d: output %q: %v", n, out.String(), err)
		}
		if accts != 2 || msgs != 60 || octets-lines != size || lines != 60*7 {
			t.Errorf("concurrency %d: %q; want 2 accounts, 60 messages, %d bytes with LF, 420 lines", n, out.String(), size)
		}
	}
	addr, ca, accounts, _ = serve(t, pop3test.Faults{SizeSkew: 1})
	if err := run(io.Discard, addr, ca, accounts, 2, 10*time.Second); err == nil || !strings.Contains(err.Error(), "LIST said") {
		t.Fatalf("with LIST sizes off by one: %v, want a size mismatch", err)
	}
}
