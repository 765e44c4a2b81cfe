package pop3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"sync/atomic"
	"testing"

	"github.com/popmigrate/popmigrate/internal/dovecottest"
)

// countingDialer counts the writes of the connections it makes: one per
// round trip of a client that writes, then waits.
type countingDialer struct{ writes atomic.Int64 }

func (d *countingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, n: &d.writes}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.n.Add(1)
	return c.Conn.Write(p)
}

// Against the real Dovecot, ListAtLogin lists the same mailbox with one
// write less, with USER/PASS and with AUTH PLAIN, and a wrong password
// gives the same error as without it.
func TestDovecotListAtLogin(t *testing.T) {
	var msgs [][]byte
	for i := range 3 {
		msgs = append(msgs, fmt.Appendf(nil, "From: a@example.org\nSubject: m %d\n\nBody %d.\n", i, i))
	}
	srv := dovecottest.Start(t, []dovecottest.User{{Name: "dora", Password: "pw-dora-Zq3", Messages: msgs}}, &dovecottest.Options{AllowPlaintextAuth: true})
	type result struct {
		list   []MessageInfo
		uids   []UIDInfo
		writes int64
	}
	session := func(t *testing.T, mech string, ahead bool, pw string) (result, error) {
		t.Helper()
		d := &countingDialer{}
		ctx := ctxT(t)
		c, err := Dial(ctx, srv.POP3Addr, &Options{Security: SecurityPlain, Dialer: d, ListAtLogin: ahead})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Login(ctx, &Auth{Username: "dora", Password: pw, Mechanisms: []string{mech}, AllowPlaintext: true}); err != nil {
			return result{}, err
		}
		if c.Mechanism() != mech {
			t.Errorf("mechanism %q, want %q", c.Mechanism(), mech)
		}
		list, uids, err := c.ListUIDL(ctx)
		if err != nil {
			t.Fatalf("ListUIDL: %v", err)
		}
		r := result{list: list, uids: uids, writes: d.writes.Load()}
		if err := c.Quit(ctx); err != nil {
			t.Errorf("QUIT: %v", err)
		}
		return r, nil
	}
	for _, mech := range []string{"USER", "PLAIN"} {
		t.Run(mech, func(t *testing.T) {
			before, err := session(t, mech, false, "pw-dora-Zq3")
			if err != nil {
				t.Fatal(err)
			}
			after, err := session(t, mech, true, "pw-dora-Zq3")
			if err != nil {
				t.Fatal(err)
			}
			if len(after.list) != 3 || !reflect.DeepEqual(before.list, after.list) || !reflect.DeepEqual(before.uids, after.uids) {
				t.Errorf("listing with ListAtLogin %v %v; without %v %v", after.list, after.uids, before.list, before.uids)
			}
			if after.writes != before.writes-1 {
				t.Errorf("%d writes up to the listing with ListAtLogin, %d without; want one less", after.writes, before.writes)
			}
			t.Logf("%s: %d writes up to the listing, %d before", mech, after.writes, before.writes)

			_, want := session(t, mech, false, "wrong")
			_, got := session(t, mech, true, "wrong")
			var we, ge *Error
			if !errors.As(want, &we) || !errors.As(got, &ge) || we.Command != ge.Command || we.Code != ge.Code || we.Temporary() != ge.Temporary() {
				t.Errorf("wrong password: %v with ListAtLogin, %v without", got, want)
			}
		})
	}
}

// Against the real Dovecot, RETRs sent with the login (more than the
// mailbox holds, for an empty one too: Dovecot answers the numbers past
// its count -ERR, well under its limit of 20 refused commands in a row)
// give the same bodies as RETRs sent after the listing, QUIT still gets
// +OK, and a wrong password the same error as without.
func TestDovecotRetrAtLogin(t *testing.T) {
	var msgs [][]byte
	for i := range 3 {
		msgs = append(msgs, fmt.Appendf(nil, "From: a@example.org\nSubject: m %d\n\n.\n..dot %d\n", i, i))
	}
	srv := dovecottest.Start(t, []dovecottest.User{
		{Name: "dora", Password: "pw-dora-Zq3", Messages: msgs},
		{Name: "emma", Password: "pw-emma-Zq3"},
	}, &dovecottest.Options{AllowPlaintextAuth: true})
	session := func(t *testing.T, user, pw string, retr int) ([]string, int64, error) {
		t.Helper()
		d := &countingDialer{}
		ctx := ctxT(t)
		c, err := Dial(ctx, srv.POP3Addr, &Options{Security: SecurityPlain, Dialer: d, ListAtLogin: true, RetrAtLogin: retr})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Login(ctx, &Auth{Username: user, Password: pw, AllowPlaintext: true}); err != nil {
			return nil, 0, err
		}
		list, _, err := c.ListUIDL(ctx)
		if err != nil {
			t.Fatalf("ListUIDL: %v", err)
		}
		var ids []int
		for _, m := range list {
			ids = append(ids, m.ID)
		}
		var got []string
		err = c.RetrAll(ctx, ids, 0, func(id int, b *Body, err error) error {
			if err != nil {
				return err
			}
			data, err := io.ReadAll(b)
			got = append(got, fmt.Sprintf("%d %q", id, data))
			return err
		})
		if err != nil {
			t.Fatalf("RetrAll: %v", err)
		}
		writes := d.writes.Load()
		if err := c.Quit(ctx); err != nil {
			t.Errorf("QUIT: %v", err)
		}
		return got, writes, nil
	}
	for _, u := range []struct{ name, pw string }{{"dora", "pw-dora-Zq3"}, {"emma", "pw-emma-Zq3"}} {
		t.Run(u.name, func(t *testing.T) {
			want, wantWrites, err := session(t, u.name, u.pw, 0)
			if err != nil {
				t.Fatal(err)
			}
			got, writes, err := session(t, u.name, u.pw, MaxRetrAtLogin)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("bodies with RETRs at login %v; without %v", got, want)
			}
			// An empty mailbox sends no RETR either way.
			if len(want) > 0 && writes != wantWrites-1 || len(want) == 0 && writes != wantWrites {
				t.Errorf("%d writes with RETRs at login, %d without", writes, wantWrites)
			}
			t.Logf("%s: %d writes with RETRs at login, %d without", u.name, writes, wantWrites)
			_, _, wantErr := session(t, u.name, "wrong", 0)
			_, _, gotErr := session(t, u.name, "wrong", MaxRetrAtLogin)
			var we, ge *Error
			if !errors.As(wantErr, &we) || !errors.As(gotErr, &ge) || we.Command != ge.Command || we.Code != ge.Code || we.Temporary() != ge.Temporary() {
				t.Errorf("wrong password: %v with RETRs at login, %v without", gotErr, wantErr)
			}
		})
	}
}
