//go:build linux

package pipeline_test

import (
	"crypto/tls"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/pipeline"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
	"github.com/popmigrate/popmigrate/verify"
)

// TestSessionVerifyIMAPThroughWritersConnection: the session's verify of
// an IMAP copy reads it back through the writer's own connection (no
// second login), and still sees the folder as the server has it: a copy
// another client expunged after the commit that recorded it is reported
// missing, the others match, and nothing is deleted from the source.
func TestSessionVerifyIMAPThroughWritersConnection(t *testing.T) {
	msgs := smallMsgs("v", 6)
	e := newEnv(t, []pop3test.Mailbox{mailbox("alice", msgs)}, nil)
	a := e.account("alice")
	const password = "imap-pw-alice"
	srv := startIMAPTarget(t, e, a, password)
	srv.discardAppends(t, len(msgs))
	o := testOptions()
	o.VerifyInSession = true
	expunged := false
	pipeline.SetTestHooks(o, nil, nil, func(n int) {
		if n != 1 {
			return
		}
		// The batch is recorded: another client removes its first copy.
		c, err := imapclient.DialTLS(srv.addr, &imapclient.Options{TLSConfig: &tls.Config{RootCAs: e.pki.CAPool, ServerName: "127.0.0.1"}})
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		if err := c.Login(a.User, password).Wait(); err != nil {
			t.Error(err)
			return
		}
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Error(err)
			return
		}
		if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
			t.Error(err)
			return
		}
		if err := c.Expunge().Close(); err != nil {
			t.Error(err)
			return
		}
		expunged = true
	})
	rep := e.run([]*config.Account{a}, o)
	if !expunged {
		t.Fatal("the copy was not expunged after the commit")
	}
	if len(rep.Verify) != 1 {
		t.Fatalf("verify results: %+v", rep.Verify)
	}
	res := rep.Verify[0]
	missing := 0
	for _, f := range res.Findings {
		if f.Kind == verify.Missing {
			missing++
		}
	}
	if missing != 1 || res.Counts[verify.Match] != len(msgs)-1 {
		t.Errorf("verify through the writer's connection: %d missing, %d matching; want 1 and %d\n%s",
			missing, res.Counts[verify.Match], len(msgs)-1, describeResult(res))
	}
}
