package imap

import (
	"bufio"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// scriptedServer accepts one connection on loopback, sends greeting,
// and answers the first command line with answer (one write). It
// returns the address and a channel that gets every line the client
// sent before it hung up.
func scriptedServer(t *testing.T, greeting, answer string) (string, <-chan []string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	lines := make(chan []string, 1)
	go func() {
		var got []string
		defer func() { lines <- got }()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write([]byte(greeting))
		r := bufio.NewReader(c)
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			got = append(got, strings.TrimRight(l, "\r\n"))
			if len(got) == 1 {
				c.Write([]byte(answer))
			}
		}
	}()
	return ln.Addr().String(), lines
}

// TestStartTLSRefusals: popmigrate's own STARTTLS refuses a PREAUTH
// greeting, a STARTTLS answered NO, and bytes sent after the OK before
// TLS (injected by a man in the middle); in each case nothing but
// STARTTLS reached the server, so no password went out.
func TestStartTLSRefusals(t *testing.T) {
	for _, c := range []struct {
		name, greeting, answer string
		want                   error
		wantText               string
	}{
		{"preauth", "* PREAUTH hello\r\n", "", ErrNoStartTLS, "PREAUTH"},
		{"no", "* OK hello\r\n", "PM0 NO not now\r\n", ErrNoStartTLS, "not now"},
		{"bad", "* OK hello\r\n", "PM0 BAD what\r\n", ErrNoStartTLS, "what"},
		{"injected", "* OK hello\r\n", "PM0 OK go ahead\r\n* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] injected\r\n", nil, "before TLS"},
		{"bye", "* BYE busy\r\n", "", nil, "BYE"},
	} {
		t.Run(c.name, func(t *testing.T) {
			addr, lines := scriptedServer(t, c.greeting, c.answer)
			o := &Options{Addr: addr, Security: SecurityStartTLS, Username: "u", Password: "secret-pw",
				Folder: "INBOX", Timeout: 5 * time.Second}
			e, err := New(testCtx(t), o)
			if err == nil {
				e.Close()
				t.Fatal("New succeeded")
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Errorf("err = %v, want %v", err, c.want)
			}
			if !strings.Contains(err.Error(), c.wantText) {
				t.Errorf("err = %v, want it to say %q", err, c.wantText)
			}
			var got []string
			select {
			case got = <-lines:
			case <-time.After(10 * time.Second):
				t.Fatal("the server never saw the client hang up")
			}
			for _, l := range got {
				if l != "PM0 STARTTLS" {
					t.Errorf("the server got %q, want nothing but STARTTLS", l)
				}
			}
		})
	}
}
