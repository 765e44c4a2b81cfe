package eml

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/popmigrate/popmigrate/exporters"
)

func mustList(t *testing.T, e *Exporter, account string) []exporters.Listed {
	t.Helper()
	l, err := e.List(t.Context(), account)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(l, func(a, b exporters.Listed) int { return strings.Compare(a.Ref, b.Ref) })
	return l
}

// TestListOneAccount: the root holds a folder per account; List gives
// the messages of the account asked for only, read afresh from the disk
// (a file another Exporter wrote is seen, a deleted one is not), and both
// files of a key held twice.
func TestListOneAccount(t *testing.T) {
	dir := t.TempDir()
	e := newExporter(t, dir)
	alice, bob := "alice@example.org", "bob/../weird"
	a1 := msgFor(alice, "1", "Date: Mon, 3 Mar 2025 10:00:00 +0000\nSubject: 1\n\n1\n")
	a2 := msgFor(alice, "2", "Subject: 2\n\n2\n")
	b1 := msgFor(bob, "1", "Subject: b\n\nb\n")
	ref1, ref2 := mustStore(t, e, a1), mustStore(t, e, a2)
	refB := mustStore(t, e, b1)

	if got, want := mustList(t, e, bob), []exporters.Listed{{Key: b1.Key, Ref: refB}}; !slices.Equal(got, want) {
		t.Errorf("List(%q) = %v, want %v", bob, got, want)
	}
	if got := mustList(t, e, "nobody"); len(got) != 0 {
		t.Errorf("List of an account without a folder = %v, want nothing", got)
	}

	// Another copy of a1 under another date, a temporary file, a hidden
	// file and a foreign file; a2 deleted by hand.
	data, err := os.ReadFile(filepath.Join(dir, ref1))
	if err != nil {
		t.Fatal(err)
	}
	dupRef := AccountDir(alice) + "/20010101T000000Z-" + a1.Key + Ext
	for name, b := range map[string][]byte{
		dupRef: data,
		AccountDir(alice) + "/" + TmpDir + "/" + a2.Key + ".x.tmp": data,
		AccountDir(alice) + "/.hidden" + Ext:                       data,
		AccountDir(alice) + "/notes.txt":                           data,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(filepath.Join(dir, ref2)); err != nil {
		t.Fatal(err)
	}
	want := []exporters.Listed{{Key: a1.Key, Ref: dupRef}, {Key: a1.Key, Ref: ref1}}
	if got := mustList(t, e, alice); !slices.Equal(got, want) {
		t.Errorf("List(%q) = %v, want %v", alice, got, want)
	}
}
