package maildir

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/popmigrate/popmigrate/exporters"
)

func mustList(t *testing.T, e *Exporter) []string {
	t.Helper()
	l, err := e.List(t.Context(), "ignored@example.org")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, x := range l {
		_, name, _ := strings.Cut(x.Ref, "/")
		if base, _ := splitInfo(name); base != x.Key+Suffix {
			t.Errorf("listed key %q does not name Ref %q", x.Key, x.Ref)
		}
		out = append(out, x.Ref)
	}
	slices.Sort(out)
	return out
}

// TestListFindsMovedAndDuplicateCopies: a file a reader moved to cur/
// with flags is listed under its new name, and a key held in both new/
// and cur/ (a duplicate) is listed twice, so that verify reports the
// second copy.
func TestListFindsMovedAndDuplicateCopies(t *testing.T) {
	dir := t.TempDir()
	e := newExporter(t, dir)
	a := msg("a", "Subject: a\n\na\n")
	b := msg("b", "Subject: b\n\nb\n")
	refA := mustStore(t, e, a)
	refB := mustStore(t, e, b)
	moved := "cur/" + b.Key + Suffix + ":2,S"
	if err := os.Rename(filepath.Join(dir, refB), filepath.Join(dir, moved)); err != nil {
		t.Fatal(err)
	}
	dup := "cur/" + a.Key + Suffix + ":2,"
	data, err := os.ReadFile(filepath.Join(dir, refA))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, dup), data, 0o600); err != nil {
		t.Fatal(err)
	}
	got := mustList(t, e)
	want := []string{dup, moved, refA}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("List = %v, want %v", got, want)
	}
}

// TestListSkipsForeignEntries: hidden files, mail another program
// delivered, links, folders and tmp/ are not popmigrate's messages.
func TestListSkipsForeignEntries(t *testing.T) {
	dir := t.TempDir()
	e := newExporter(t, dir)
	ref := mustStore(t, e, msg("a", "Subject: a\n\na\n"))
	for _, name := range []string{
		"new/.hidden" + Suffix,
		"new/1700000000.M1P2.host",
		"cur/1700000000.M1P2.host:2,S",
		"new/" + strings.Repeat("x", 8) + ".other",
		"tmp/" + exporters.MessageKey("x", "y") + Suffix,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	key := exporters.MessageKey("x", "link")
	if err := os.Symlink(filepath.Join(dir, ref), filepath.Join(dir, "new", key+Suffix)); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "cur", exporters.MessageKey("x", "dir")+Suffix), 0o700); err != nil {
		t.Fatal(err)
	}
	if got := mustList(t, e); !slices.Equal(got, []string{ref}) {
		t.Errorf("List = %v, want only %v", got, ref)
	}
}
