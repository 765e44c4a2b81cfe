package pipeline_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/pipeline"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

// TestCheckNamesWhatWouldFail: a mix of good and broken accounts and
// destinations; check names exactly what would fail and why, and
// downloads, creates and changes nothing.
func TestCheckNamesWhatWouldFail(t *testing.T) {
	msgs := smallMsgs("c", 3)
	e := newEnv(t, []pop3test.Mailbox{mailbox("alice", msgs), mailbox("bob", msgs), mailbox("carol", msgs)}, nil)
	notADir := filepath.Join(e.dir, "a-file")
	if err := os.WriteFile(notADir, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	withTo := func(a *config.Account, to ...string) *config.Account {
		a.To = to
		return a
	}
	fresh := filepath.Join(e.dir, "new", "maildir")
	accounts := []*config.Account{
		withTo(e.account("alice"), "maildir:"+fresh, "mbox:"+filepath.Join(e.dir, "new", "a.mbox")),
		withTo(e.account("bob"), "maildir:"+notADir),
		e.accountWithPassword("carol", "wrong"),
	}
	res := pipeline.Check(context.Background(), accounts, testOptions())
	byName := map[string]*pipeline.CheckResult{}
	for _, r := range res {
		byName[r.Account] = r
	}
	a := byName["alice"]
	if !a.OK() || a.Messages != 3 || a.Largest == 0 || a.TLS == "none" || a.Certificate == nil || len(a.CapabilitiesBeforeLogin) == 0 || len(a.Destinations) != 2 {
		t.Fatalf("alice: %+v", a)
	}
	if a.Auth != "USER" {
		t.Errorf("alice logged in with %q, want USER (the test server offers no SASL)", a.Auth)
	}
	for _, d := range a.Destinations {
		if d.Error != "" || len(d.Warnings) != 1 || !strings.Contains(d.Warnings[0], "does not exist yet") {
			t.Errorf("alice's %s: %+v, want ok with a note that the run creates it", d.Destination, d)
		}
	}
	if b := byName["bob"]; b.OK() || !strings.Contains(b.Error, "not a directory") || len(b.Destinations) != 1 {
		t.Errorf("bob: %+v, want the Maildir that is a file named", b)
	}
	if c := byName["carol"]; c.OK() || !strings.Contains(c.Error, "login") || c.Auth != "" {
		t.Errorf("carol: %+v, want the failed login", c)
	}
	if n := e.srv.Stats().Retrs; n != 0 {
		t.Errorf("check downloaded %d messages", n)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "new")); !os.IsNotExist(err) {
		t.Errorf("check created %s (%v)", filepath.Join(e.dir, "new"), err)
	}
}
