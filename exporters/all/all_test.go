package all_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popmigrate/popmigrate/exporters/all"
	"github.com/popmigrate/popmigrate/exporters/imap"
	"github.com/popmigrate/popmigrate/exporters/location"
)

func TestParseDestination(t *testing.T) {
	r := all.Registry()
	l, err := r.Parse("imaps://alice@example.org@imap.example.org/INBOX/Imported")
	if err != nil {
		t.Fatal(err)
	}
	want := imap.Spec{Security: imap.SecurityTLS, Host: "imap.example.org", Port: 993, User: "alice@example.org", Folder: "INBOX/Imported"}
	if l.Kind() != "imap" || l.Spec != want {
		t.Fatalf("got %s %+v, want imap %+v", l.Kind(), l.Spec, want)
	}
	l, err = r.Parse("imap://bob@h:1143")
	if d, ok := l.Spec.(imap.Spec); err != nil || !ok || d.Security != imap.SecurityStartTLS || d.Port != 1143 || d.Folder != "INBOX" {
		t.Fatalf("imap:// = %+v, %v", l.Spec, err)
	}
	for _, k := range []string{"mbox:/a/b.mbox", "eml:/archive", "maildir:/m"} {
		if l, err := r.Parse(k); err != nil || l.Spec.(location.FileSpec).Path == "" {
			t.Errorf("%s: %+v, %v", k, l.Spec, err)
		}
	}
	for _, bad := range []struct{ spec, want string }{
		{"imaps://h/INBOX", "no user"},
		{"imaps://a:pw@h/INBOX", "password in the URL"},
		{"imaps://a@h:0/INBOX", "bad port"},
		{"imaps://a@h/INBOX?x=1", "unexpected query"},
		{"ftp:/x", "unknown kind"},
		{"maildir", "want one of"},
		{"maildir:", "want one of"},
		{"mbox:/a\x00b", "NUL"},
	} {
		if _, err := r.Parse(bad.spec); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("Parse(%q) error = %v, want %q", bad.spec, err, bad.want)
		}
	}
}

// Describe gives what config needs: the journal id, where it writes
// (shared for eml), and whether it logs in.
func TestDescribe(t *testing.T) {
	r := all.Registry()
	abs, _ := filepath.Abs("rel/m")
	for _, tc := range []struct {
		spec, id, place string
		login           bool
	}{
		{"maildir:rel/m", "maildir:" + abs, "maildir:" + abs, false},
		{"mbox:/a/b.mbox", "mbox:/a/b.mbox", "mbox:/a/b.mbox", false},
		{"eml:/archive", "eml:/archive", "", false},
		{"imaps://Alice@IMAP.example.org/INBOX", "imap://Alice@IMAP.example.org:993/INBOX", "imap:alice@imap.example.org:993/INBOX", true},
	} {
		id, place, login, err := r.Describe(tc.spec)
		if err != nil || id != tc.id || place != tc.place || login != tc.login {
			t.Errorf("Describe(%q) = %q, %q, %v, %v; want %q, %q, %v", tc.spec, id, place, login, err, tc.id, tc.place, tc.login)
		}
	}
}

// Every kind is registered once, with its help, and the help lists each.
func TestRegistryHelp(t *testing.T) {
	r := all.Registry()
	if got := strings.Join(r.Kinds(), " "); got != "maildir mbox eml imap" {
		t.Errorf("kinds %q", got)
	}
	h := r.Help()
	for _, u := range []string{"maildir:DIR", "mbox:FILE", "eml:DIR", "imaps://USER@HOST/FOLDER"} {
		if !strings.Contains(h, u) {
			t.Errorf("help lacks %s:\n%s", u, h)
		}
	}
}

// Open opens a file destination with the spec's id.
func TestOpenFileKinds(t *testing.T) {
	r := all.Registry()
	dir := t.TempDir()
	for _, spec := range []string{"maildir:" + dir + "/m", "mbox:" + dir + "/a.mbox", "eml:" + dir + "/e"} {
		e, err := r.Open(context.Background(), spec, location.Env{})
		if err != nil {
			t.Fatalf("Open(%s): %v", spec, err)
		}
		if e.Properties().ID != spec {
			t.Errorf("Open(%s): id %q", spec, e.Properties().ID)
		}
		if err := e.Close(); err != nil {
			t.Error(err)
		}
	}
	if _, err := r.Open(context.Background(), "maildir:"+dir+"/missing", location.Env{ReadOnly: true}); err == nil {
		t.Error("read-only Open of a missing Maildir succeeded")
	}
}
