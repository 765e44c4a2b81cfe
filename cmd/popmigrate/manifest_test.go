package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestManifestCLI(t *testing.T) {
	f := newVerifyFixture(t, 3)
	account := f.account("alice")
	out := filepath.Join(f.dir, "alice.manifest.jsonl")
	r := runMain(t, "manifest", "--journal", f.journal, "--account", account, "--out", out)
	r.wantCode(t, exitOK)
	if !regexp.MustCompile(`^` + regexp.QuoteMeta(out) + `: 3 messages of account ` + regexp.QuoteMeta(account) + `, root [0-9a-f]{64}\n$`).MatchString(r.stdout) {
		t.Errorf("stdout %q", r.stdout)
	}
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("manifest mode %v, want 0600", fi.Mode().Perm())
	}
	if left, _ := filepath.Glob(filepath.Join(f.dir, ".alice.manifest.jsonl.*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	m, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	// --out - writes the same bytes to stdout.
	r = runMain(t, "manifest", "--journal", f.journal, "--account", account, "--out", "-")
	r.wantCode(t, exitOK)
	if r.stdout != string(m) {
		t.Errorf("--out - wrote\n%s\nthe file holds\n%s", r.stdout, m)
	}

	// The untouched archive verifies against the manifest, in each of its
	// three destinations, with the journal gone.
	if err := os.Rename(f.journal, f.journal+".away"); err != nil {
		t.Fatal(err)
	}
	for _, dest := range []string{"maildir:" + f.maildir, "mbox:" + f.mbox, "eml:" + f.eml} {
		r = runMain(t, "verify", "--manifest", out, "--to", dest)
		r.wantCode(t, exitOK)
		if want := account + ": 3 copies checked: 3 match\n0 problems, 0 notes\n"; r.stdout != want {
			t.Errorf("verify --manifest --to %s: stdout %q, want %q", dest, r.stdout, want)
		}
	}
	if _, err := os.Stat(f.journal); !os.IsNotExist(err) {
		t.Errorf("verify --manifest created a journal: %v", err)
	}

	// One manifest line changed: the root no longer matches.
	edited := filepath.Join(f.dir, "edited.jsonl")
	if err := os.WriteFile(edited, bytes.Replace(m, []byte(`"uidl":"alice-uid-002"`), []byte(`"uidl":"alice-uid-00X"`), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	r = runMain(t, "verify", "--manifest", edited, "--to", "maildir:"+f.maildir)
	r.wantCode(t, exitMismatch)
	if !strings.Contains(r.stdout, "! "+account+" ? ? manifest (want ") || !strings.Contains(r.stdout, "a line was changed") {
		t.Errorf("no manifest finding for an edited line:\n%s", r)
	}

	// One stored message changed: its checksum differs.
	changeFile(t, f.maildirFile(3), flipBody(3))
	r = runMain(t, "verify", "--manifest", out, "--to", "maildir:"+f.maildir)
	r.wantCode(t, exitMismatch)
	if !regexp.MustCompile(`(?m)^\* `+regexp.QuoteMeta(account)+` alice-uid-003 \S+ checksum differs`).MatchString(r.stdout) || strings.Contains(r.stdout, "manifest") {
		t.Errorf("want only message 3's checksum reported:\n%s", r)
	}
}

func TestManifestCLIUnknownAccount(t *testing.T) {
	f := newVerifyFixture(t, 1)
	out := filepath.Join(f.dir, "m.jsonl")
	r := runMain(t, "manifest", "--journal", f.journal, "--account", "nobody", "--out", out)
	r.wantCode(t, exitUsage)
	if !strings.Contains(r.stderr, `has no account "nobody"`) || !strings.Contains(r.stderr, f.account("alice")) {
		t.Errorf("want the known accounts listed:\n%s", r)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a manifest was written for an unknown account: %v", err)
	}
}

func TestManifestFlags(t *testing.T) {
	var got *manifestOptions
	cmd := newManifestCmd(&iostreams{Out: &bytes.Buffer{}, Err: &bytes.Buffer{}}, func(_ context.Context, o *manifestOptions) error {
		got = o
		return nil
	})
	cmd.SetArgs([]string{"--journal", "/x/j.db", "--account", "a@b", "--out", "/x/m"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got == nil || got.Journal != "/x/j.db" || got.Account != "a@b" || got.Out != "/x/m" {
		t.Errorf("parsed %+v", got)
	}
}

func TestWriteFileAtomicKeepsOldFileOnError(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "m", "old\n")
	boom := errors.New("boom")
	err := writeFileAtomic(path, func(w io.Writer) error {
		w.Write([]byte("half a manifest"))
		return boom
	})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), path) {
		t.Errorf("error %v, want boom naming %s", err, path)
	}
	if b, _ := os.ReadFile(path); string(b) != "old\n" {
		t.Errorf("the file holds %q after a failed write, want the old content", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("folder holds %d entries after a failed write, want the file only", len(ents))
	}
}
