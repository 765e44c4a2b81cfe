//go:build unix

package mbox

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// checkSymlinkErr checks that err refuses the symbolic link at link, as
// ErrSymlink, naming it.
func checkSymlinkErr(t *testing.T, what string, err error, link string) {
	t.Helper()
	if !errors.Is(err, ErrSymlink) || !strings.Contains(err.Error(), link+" is a symbolic link; refusing to follow it") {
		t.Errorf("%s: err = %v, want ErrSymlink saying %s is a symbolic link", what, err, link)
	}
}

// A symbolic link at the name of the mbox file, its index or its intent
// log is never followed, in write mode or read-only: New fails naming
// it, and the file it points to is neither created nor changed.
func TestNewRefusesSymlinks(t *testing.T) {
	for _, which := range []string{"mbox", "index", "intent log"} {
		for _, dangling := range []bool{false, true} {
			name := which
			if dangling {
				name += " dangling"
			}
			t.Run(name, func(t *testing.T) {
				a := newArchive(t) // an mbox, its index and its intent log
				link := map[string]string{"mbox": a.path, "index": a.path + IndexSuffix, "intent log": a.path + IntentSuffix}[which]
				target := filepath.Join(t.TempDir(), "elsewhere")
				if err := os.Rename(link, target); err != nil {
					t.Fatal(err)
				}
				if dangling {
					if err := os.Remove(target); err != nil {
						t.Fatal(err)
					}
				}
				if err := os.Symlink(target, link); err != nil {
					t.Fatal(err)
				}
				var old []byte
				if !dangling {
					old = readFile(t, target)
				}
				for _, readOnly := range []bool{false, true} {
					e, err := New(a.path, &Options{ReadOnly: readOnly})
					if err == nil {
						e.Close()
					}
					what := "New"
					if readOnly {
						what = "New read-only"
					}
					checkSymlinkErr(t, what, err, link)
				}
				if which != "intent log" {
					_, err := ReadFile(a.path)
					checkSymlinkErr(t, "ReadFile", err, link)
				}
				if dangling {
					if _, err := os.Lstat(target); !errors.Is(err, fs.ErrNotExist) {
						t.Errorf("the target of the link was created: %v", err)
					}
				} else if got := readFile(t, target); !bytes.Equal(got, old) {
					t.Error("the target of the link changed")
				}
				if li, err := os.Lstat(link); err != nil || li.Mode()&fs.ModeSymlink == 0 {
					t.Errorf("the link is no longer a link: %v", err)
				}
			})
		}
	}
}

// Open reads through no symbolic link either: an mbox file replaced by
// one since New is refused.
func TestOpenRefusesSymlink(t *testing.T) {
	a := newArchive(t)
	e := newReadOnly(t, a.path, "")
	target := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.Rename(a.path, target); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, a.path); err != nil {
		t.Fatal(err)
	}
	_, err := e.Open(t.Context(), a.refs[0])
	checkSymlinkErr(t, "Open", err, a.path)
}
