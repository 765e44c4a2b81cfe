package maildir

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/exportertest"
	"github.com/popmigrate/popmigrate/exporters/location"
	"github.com/popmigrate/popmigrate/internal/testmsg"
)

func newExporter(t testing.TB, dir string) *Exporter {
	t.Helper()
	e, err := New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// countFiles counts every non-folder entry under dir.
func countFiles(dir string) int {
	n := 0
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}

// files returns the paths, relative to dir, of every non-folder entry under
// dir, sorted.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, path)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// open is how the conformance suite opens a destination: as popmigrate
// does, through the kind's registry entry.
var open = exportertest.Through(Factory(), func(dir string) string { return "maildir:" + dir }, location.Env{})

func TestConformance(t *testing.T) {
	exportertest.RunWithOptions(t, open, &exportertest.Options{
		Count:      func(_ testing.TB, dir string) int { return countFiles(dir) },
		Concurrent: true,
		Files:      true,
	})
}

func msg(uidl, body string) *exporters.Message {
	return exportertest.NewMessage(uidl, []byte(body))
}

func mustPut(t *testing.T, e *Exporter, m *exporters.Message) string {
	t.Helper()
	d, err := e.Put(t.Context(), m)
	if err != nil {
		t.Fatal(err)
	}
	return d.Ref
}

// mustStore is mustPut followed by Sync: the message is then in new/.
func mustStore(t *testing.T, e *Exporter, m *exporters.Message) string {
	t.Helper()
	ref := mustPut(t, e, m)
	if err := e.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	return ref
}

func mustHas(t *testing.T, e *Exporter, key string) (string, bool) {
	t.Helper()
	d, ok, err := e.Has(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	return d.Ref, ok
}

func mustRead(t *testing.T, e *Exporter, ref string) string {
	t.Helper()
	rc, err := e.Open(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestNewDefaultsAndID(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b", "Maildir")
	e := newExporter(t, dir)
	if p := e.Properties(); p.Kind != "maildir" || p.ID != "maildir:"+dir {
		t.Errorf("Properties() = %+v, want maildir, maildir:%s", p, dir)
	}
	e2, err := New(filepath.Join(t.TempDir(), "x"), &Options{ID: "maildir:custom"})
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	if id := e2.Properties().ID; id != "maildir:custom" {
		t.Errorf("ID = %q, want maildir:custom", id)
	}
	// A relative path is made absolute.
	t.Chdir(t.TempDir())
	e3, err := New("rel", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e3.Close()
	if id := e3.Properties().ID; !strings.HasPrefix(id, "maildir:/") || !strings.HasSuffix(id, "/rel") {
		t.Errorf("ID for a relative path = %q, want maildir:/.../rel", id)
	}
}

func TestModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	e := newExporter(t, dir)
	ref := mustStore(t, e, msg("mode", "Subject: modes\n\nbody\n"))
	for _, d := range []string{"", "tmp", "new", "cur"} {
		fi, err := os.Stat(filepath.Join(dir, d))
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o700 {
			t.Errorf("folder %q: mode %o, want 700", d, perm)
		}
	}
	fi, err := os.Stat(filepath.Join(dir, ref))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("message file: mode %o, want 600", perm)
	}
}

// Existing folders keep their mode.
func TestNewKeepsExistingFolders(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"tmp", "new", "cur"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	old := filepath.Join(dir, "cur", "1700000000.1.host:2,S")
	if err := os.WriteFile(old, []byte("old mail\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	newExporter(t, dir)
	for _, d := range []string{"tmp", "new", "cur"} {
		fi, err := os.Stat(filepath.Join(dir, d))
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o750 {
			t.Errorf("existing folder %s: mode %o, want 750 kept", d, perm)
		}
	}
	if got := files(t, dir); !slices.Equal(got, []string{"cur/1700000000.1.host:2,S"}) {
		t.Errorf("files after New = %q, want only the existing message", got)
	}
}

// The name of every file comes from the message key, never from the UIDL,
// whatever the server sends.
func TestNamesNeverFromUIDL(t *testing.T) {
	dir := t.TempDir()
	e := newExporter(t, filepath.Join(dir, "Maildir"))
	hostile := []string{"../../x", "a/b", ":2,S", "..", ".", "/etc/passwd", "x\x00y", "*", "new/../../escape", ".hidden", strings.Repeat("u", 300)}
	nameRE := regexp.MustCompile(`^new/[0-9a-f]{32}\.popmigrate$`)
	for _, uidl := range hostile {
		m := msg(uidl, "Subject: hostile uidl\n\n"+uidl+"\n")
		ref := mustPut(t, e, m)
		if want := "new/" + m.Key + Suffix; ref != want {
			t.Errorf("uidl %q: Ref %q, want %q", uidl, ref, want)
		}
	}
	if err := e.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := files(t, dir)
	if len(got) != len(hostile) {
		t.Errorf("%d files, want %d: %q", len(got), len(hostile), got)
	}
	for _, f := range got {
		rel, ok := strings.CutPrefix(f, "Maildir/")
		if !ok || !nameRE.MatchString(rel) {
			t.Errorf("file %q: want Maildir/new/<32 hex>.popmigrate", f)
		}
	}
}

func TestInvalidKey(t *testing.T) {
	dir := t.TempDir()
	e := newExporter(t, dir)
	for _, key := range []string{"", "../../x", "a/b", "x:2,S", ".hidden", "a.b", "x\x00", "ü", strings.Repeat("a", MaxKeyLen+1)} {
		m := msg("uidl", "body\n")
		m.Key = key
		if _, err := e.Put(t.Context(), m); !errors.Is(err, exporters.ErrInvalidKey) {
			t.Errorf("Put with key %q: err = %v, want exporters.ErrInvalidKey", key, err)
		}
		if _, _, err := e.Has(t.Context(), key); !errors.Is(err, exporters.ErrInvalidKey) {
			t.Errorf("Has(%q): err = %v, want exporters.ErrInvalidKey", key, err)
		}
	}
	if got := files(t, dir); len(got) != 0 {
		t.Errorf("files after invalid keys: %q", got)
	}
	m := msg("uidl", "body\n")
	m.Key = strings.Repeat("a", MaxKeyLen)
	if ref := mustPut(t, e, m); ref != "new/"+m.Key+Suffix {
		t.Errorf("Put with a key of MaxKeyLen: Ref %q", ref)
	}
}

// A reader moves a message to cur/ and flags it: Has, Put and Open still
// find it, from the Exporter that wrote it and from a new one.
func TestMovedToCur(t *testing.T) {
	dir := t.TempDir()
	e := newExporter(t, dir)
	m := msg("moved", "Subject: moved\n\nbody\n")
	ref := mustPut(t, e, m)
	if err := e.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	name := m.Key + Suffix
	move := func(from, to string) {
		t.Helper()
		if err := os.Rename(filepath.Join(dir, from), filepath.Join(dir, to)); err != nil {
			t.Fatal(err)
		}
	}
	check := func(e *Exporter, want string) {
		t.Helper()
		if got, ok := mustHas(t, e, m.Key); !ok || got != want {
			t.Errorf("Has = %q, %v; want %q", got, ok, want)
		}
		if got := mustPut(t, e, msg("moved", "Subject: moved\n\nbody\n")); got != want {
			t.Errorf("Put = %q, want %q", got, want)
		}
		for _, r := range []string{ref, "cur/" + name + ":2,S", want} {
			if got := mustRead(t, e, r); got != "Subject: moved\n\nbody\n" {
				t.Errorf("Open(%q) = %q", r, got)
			}
		}
		if got := files(t, dir); !slices.Equal(got, []string{want}) {
			t.Errorf("files = %q, want only %q", got, want)
		}
	}

	// The index of cur/ is loaded before the move: the Exporter knows it
	// wrote the message, so a miss in new/ makes it read cur/ again.
	if _, ok := mustHas(t, e, exporters.MessageKey(exportertest.Account, "absent")); ok {
		t.Fatal("Has found an absent message")
	}
	move("new/"+name, "cur/"+name+":2,S")
	check(e, "cur/"+name+":2,S")

	// Flags change: the index entry is stale and is refreshed.
	move("cur/"+name+":2,S", "cur/"+name+":2,FRS")
	check(e, "cur/"+name+":2,FRS")

	// A new Exporter finds it from its first look at cur/.
	e2 := newExporter(t, dir)
	check(e2, "cur/"+name+":2,FRS")

	// Deleted by the reader: not found, and Put writes it again.
	if err := os.Remove(filepath.Join(dir, "cur", name+":2,FRS")); err != nil {
		t.Fatal(err)
	}
	if got, ok := mustHas(t, e2, m.Key); ok {
		t.Errorf("Has after delete = %q, want not found", got)
	}
	if _, err := e2.Open(t.Context(), ref); !errors.Is(err, exporters.ErrNotFound) {
		t.Errorf("Open after delete: err = %v, want ErrNotFound", err)
	}
	if got := mustPut(t, e2, msg("moved", "Subject: moved\n\nbody\n")); got != ref {
		t.Errorf("Put after delete = %q, want %q", got, ref)
	}
}

// Has reads cur/ once per Exporter, not once per call.
func TestHasReadsCurOnce(t *testing.T) {
	dir := t.TempDir()
	newExporter(t, dir).Close()
	for i := range 50 {
		name := fmt.Sprintf("%032x%s:2,S", i, Suffix)
		if err := os.WriteFile(filepath.Join(dir, "cur", name), []byte("x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e := newExporter(t, dir)
	for i := range 100 {
		key := fmt.Sprintf("%032x", i)
		ref, ok := mustHas(t, e, key)
		if want := i < 50; ok != want {
			t.Errorf("Has(%s) = %v, want %v", key, ok, want)
		} else if ok && ref != "cur/"+key+Suffix+":2,S" {
			t.Errorf("Has(%s) Ref = %q", key, ref)
		}
		mustPut(t, e, msg(fmt.Sprint("put", i), "x\n"))
	}
	e.mu.Lock()
	scans := e.scans
	e.mu.Unlock()
	if scans != 1 {
		t.Errorf("cur/ read %d times for 200 look-ups, want 1", scans)
	}
}

// QUIRK test: an info part after ';' or '!' (tools on file systems without
// ':') still identifies the message.
func TestQuirkAlternativeInfoSeparator(t *testing.T) {
	for _, sep := range []string{";", "!"} {
		dir := t.TempDir()
		e := newExporter(t, dir)
		m := msg("sep", "body\n")
		mustStore(t, e, m)
		moved := "cur/" + m.Key + Suffix + sep + "2,S"
		if err := os.Rename(filepath.Join(dir, "new", m.Key+Suffix), filepath.Join(dir, moved)); err != nil {
			t.Fatal(err)
		}
		for _, ex := range []*Exporter{e, newExporter(t, dir)} {
			if ref, ok := mustHas(t, ex, m.Key); !ok || ref != moved {
				t.Errorf("separator %q: Has = %q, %v; want %q", sep, ref, ok, moved)
			}
			if got := mustRead(t, ex, moved); got != "body\n" {
				t.Errorf("separator %q: Open = %q", sep, got)
			}
		}
	}
}

// QUIRK test: a reader that moves a message to cur/ without adding an info
// part.
func TestQuirkCurWithoutInfo(t *testing.T) {
	dir := t.TempDir()
	e := newExporter(t, dir)
	m := msg("noinfo", "body\n")
	mustStore(t, e, m)
	name := m.Key + Suffix
	if err := os.Rename(filepath.Join(dir, "new", name), filepath.Join(dir, "cur", name)); err != nil {
		t.Fatal(err)
	}
	if ref, ok := mustHas(t, newExporter(t, dir), m.Key); !ok || ref != "cur/"+name {
		t.Errorf("Has = %q, %v; want cur/%s", ref, ok, name)
	}
}

func TestStaleTmpCleanup(t *testing.T) {
	dir := t.TempDir()
	newExporter(t, dir).Close()
	old := time.Now().Add(-StaleTmpAge - time.Hour)
	recent := time.Now().Add(-StaleTmpAge + time.Hour)
	mk := func(name string, mtime time.Time) {
		t.Helper()
		p := filepath.Join(dir, "tmp", name)
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	mk("k.0123.tmp", old)        // stale: removed
	mk("k.4567.tmp", recent)     // may still be written: kept
	mk("1700000000.x.h", old)    // another program's file: kept
	mk("k.89ab.tmp", time.Now()) // fresh: kept
	if err := os.Mkdir(filepath.Join(dir, "tmp", "dir.tmp"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(filepath.Join(dir, "tmp", "dir.tmp"), old, old); err != nil {
		t.Fatal(err)
	}
	newExporter(t, dir)
	want := []string{"tmp/1700000000.x.h", "tmp/k.4567.tmp", "tmp/k.89ab.tmp"}
	if got := files(t, dir); !slices.Equal(got, want) {
		t.Errorf("tmp after New = %q, want %q", got, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "tmp", "dir.tmp")); err != nil {
		t.Errorf("a folder in tmp/ was touched: %v", err)
	}
}

// TestLayout reads the Maildir as a Maildir reader does: tmp/, new/ and
// cur/ folders; messages in new/ under names without ':' or a leading '.';
// nothing left in tmp/; each file holds the message exactly.
func TestLayout(t *testing.T) {
	dir := t.TempDir()
	e := newExporter(t, dir)
	samples := testmsg.Load(t)
	for _, s := range samples {
		mustPut(t, e, exportertest.NewMessage(s.Name, s.Data))
	}
	if err := e.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"tmp", "new", "cur"} {
		if fi, err := os.Stat(filepath.Join(dir, d)); err != nil || !fi.IsDir() {
			t.Fatalf("%s/ is missing: %v", d, err)
		}
	}
	top, _ := os.ReadDir(dir)
	if len(top) != 3 {
		t.Errorf("%d entries at the top of the Maildir, want tmp, new, cur", len(top))
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(ents) != 0 {
		t.Errorf("tmp/ holds %d entries after Sync, want none", len(ents))
	}
	ents, err := os.ReadDir(filepath.Join(dir, "new"))
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string][]byte{}
	for _, ent := range ents {
		n := ent.Name()
		if strings.HasPrefix(n, ".") || strings.ContainsAny(n, ":/") || !ent.Type().IsRegular() {
			t.Errorf("new/%s: not a name a Maildir reader delivers", n)
		}
		data, err := os.ReadFile(filepath.Join(dir, "new", n))
		if err != nil {
			t.Fatal(err)
		}
		byName[n] = data
	}
	if len(byName) != len(samples) {
		t.Errorf("new/ holds %d messages, want %d", len(byName), len(samples))
	}
	for _, s := range samples {
		name := exporters.MessageKey(exportertest.Account, s.Name) + Suffix
		if !bytes.Equal(byName[name], s.Data) {
			t.Errorf("new/%s (%s) differs from the sample", name, s.Name)
		}
	}
}

func TestNewErrors(t *testing.T) {
	t.Run("dir is a file", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := New(p, nil)
		if err == nil || !strings.Contains(err.Error(), p) || !strings.HasPrefix(err.Error(), "maildir: ") {
			t.Errorf("New on a file: err = %v, want a maildir error naming %s", err, p)
		}
	})
	t.Run("new is a file", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "new"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := New(dir, nil)
		if want := filepath.Join(dir, "new"); err == nil || !strings.Contains(err.Error(), want+" is not a folder") {
			t.Errorf("err = %v, want one naming %s", err, want)
		}
	})
	t.Run("cur links outside", func(t *testing.T) {
		dir, outside := t.TempDir(), t.TempDir()
		if err := os.Symlink(outside, filepath.Join(dir, "cur")); err != nil {
			t.Fatal(err)
		}
		_, err := New(dir, nil)
		if want := filepath.Join(dir, "cur"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want one naming %s", err, want)
		}
	})
	t.Run("empty path", func(t *testing.T) {
		if _, err := New("", nil); err == nil {
			t.Error("New(\"\") succeeded")
		}
	})
	t.Run("not writable", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("permission bits do not stop root")
		}
		dir := t.TempDir()
		newExporter(t, dir).Close()
		if err := os.Chmod(filepath.Join(dir, "tmp"), 0o500); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(filepath.Join(dir, "tmp"), 0o700)
		_, err := New(dir, nil)
		if want := filepath.Join(dir, "tmp") + " is not writable"; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want %q", err, want)
		}
	})
}

// A link inside the Maildir is followed, as a reader would.
func TestNewFollowsLinkInside(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "real-cur"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real-cur", filepath.Join(dir, "cur")); err != nil {
		t.Fatal(err)
	}
	newExporter(t, dir)
}

func TestOpenInvalidRef(t *testing.T) {
	dir := t.TempDir()
	e := newExporter(t, dir)
	m := msg("open", "body\n")
	ref := mustPut(t, e, m)
	name := m.Key + Suffix
	for _, bad := range []string{
		"", name, "new/", "cur/", "tmp/" + name, "../" + name, "new/../new/" + name, "new/./" + name,
		"/new/" + name, "new//" + name, "new/" + name + ":2,S", "new/x", "cur/1700000000.1.host:2,S",
		"new/." + name, "new/" + name + "/", "cur/" + name + ":2,S/x", "new/" + m.Key, "NEW/" + name,
	} {
		if _, err := e.Open(t.Context(), bad); !errors.Is(err, ErrInvalidRef) {
			t.Errorf("Open(%q): err = %v, want ErrInvalidRef", bad, err)
		}
	}
	absent := "new/" + exporters.MessageKey(exportertest.Account, "absent") + Suffix
	if _, err := e.Open(t.Context(), absent); !errors.Is(err, exporters.ErrNotFound) {
		t.Errorf("Open(%q): err = %v, want ErrNotFound", absent, err)
	}
	if got := mustRead(t, e, ref); got != "body\n" {
		t.Errorf("Open(%q) = %q", ref, got)
	}
}

// A symbolic link planted at a message's final name is never written
// through, and never read through.
func TestSymlinkAtFinalName(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	e := newExporter(t, dir)
	target := filepath.Join(outside, "victim")
	if err := os.WriteFile(target, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := msg("link", "body\n")
	link := filepath.Join(dir, "new", m.Key+Suffix)
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if _, ok := mustHas(t, e, m.Key); ok {
		t.Error("Has counts a symbolic link as a message")
	}
	if _, err := e.Open(t.Context(), "new/"+m.Key+Suffix); err == nil {
		t.Error("Open read through a symbolic link")
	}
	ref := mustStore(t, e, m)
	if got, _ := os.ReadFile(target); string(got) != "secret\n" {
		t.Errorf("link target changed to %q", got)
	}
	if fi, err := os.Lstat(link); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("new/%s after Put: %v, %v; want a regular file", m.Key+Suffix, fi, err)
	}
	if got := mustRead(t, e, ref); got != "body\n" {
		t.Errorf("Open = %q", got)
	}
}

// Sync fsyncs new/ only when a message was renamed into it since the last
// Sync.
func TestSyncOnlyWhenDirty(t *testing.T) {
	e := newExporter(t, t.TempDir())
	// Sync has work when a file waits in tmp/ to be published, or new/
	// needs its fsync.
	dirty := func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.dirty || e.staged.Len() > 0
	}
	if dirty() {
		t.Error("dirty after New")
	}
	m := msg("dirty", "body\n")
	mustPut(t, e, m)
	if !dirty() {
		t.Error("not dirty after Put")
	}
	if err := e.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if dirty() {
		t.Error("dirty after Sync")
	}
	mustPut(t, e, msg("dirty", "body\n")) // already there: no rename
	if dirty() {
		t.Error("dirty after a Put that wrote nothing")
	}
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	if err := e.Sync(cancelled); !errors.Is(err, context.Canceled) {
		t.Errorf("Sync with a cancelled context: %v", err)
	}
}

func BenchmarkPut(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			e := newExporter(b, b.TempDir())
			data := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n"), size/64)
			ctx := b.Context()
			b.SetBytes(int64(size))
			i := 0
			for b.Loop() {
				m := &exporters.Message{Key: fmt.Sprintf("%032x", i), Body: bytes.NewReader(data)}
				if _, err := e.Put(ctx, m); err != nil {
					b.Fatal(err)
				}
				i++
				if i%64 == 0 {
					if err := e.Sync(ctx); err != nil {
						b.Fatal(err)
					}
				}
			}
			if err := e.Sync(ctx); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// A file left in new/ by an earlier process may not be durable yet (it
// crashed between its rename and the folder's fsync): finding it must make
// the next Sync fsync new/ before the journal records the delivery.
func TestPutFindingAnotherProcessFileMarksDirty(t *testing.T) {
	dir := t.TempDir()
	first := newExporter(t, dir)
	mustPut(t, first, msg("earlier", "body\n"))
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	e := newExporter(t, dir)
	mustPut(t, e, msg("earlier", "body\n"))
	e.mu.Lock()
	dirty := e.dirty
	e.mu.Unlock()
	if !dirty {
		t.Fatal("a Put that found another process's file in new/ did not mark new/ for fsync")
	}
}

// Put writes to tmp/ only; Sync makes the batch durable and only then
// renames it into new/, so a file in new/ is always complete and durable.
// Close publishes what Put wrote since the last Sync.
func TestPutPublishesOnlyAtSync(t *testing.T) {
	dir := t.TempDir()
	e := newExporter(t, dir)
	newCount := func() int {
		entries, err := os.ReadDir(filepath.Join(dir, "new"))
		if err != nil {
			t.Fatal(err)
		}
		return len(entries)
	}
	a := msg("staged-a", "Subject: a\n\na\n")
	ref := mustPut(t, e, a)
	if n := newCount(); n != 0 {
		t.Fatalf("%d files in new/ before Sync, want 0", n)
	}
	if got, ok := mustHas(t, e, a.Key); !ok || got != ref {
		t.Errorf("Has before Sync = %q, %v; want %q", got, ok, ref)
	}
	rc, err := e.Open(t.Context(), ref)
	if err != nil {
		t.Fatalf("Open before Sync: %v", err)
	}
	data, _ := io.ReadAll(rc)
	rc.Close()
	if string(data) != "Subject: a\n\na\n" {
		t.Errorf("Open before Sync read %q", data)
	}
	if err := e.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := newCount(); n != 1 {
		t.Fatalf("%d files in new/ after Sync, want 1", n)
	}
	mustPut(t, e, msg("staged-b", "Subject: b\n\nb\n"))
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if n := newCount(); n != 2 {
		t.Fatalf("%d files in new/ after Close, want 2", n)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(entries) != 0 {
		t.Errorf("tmp/ keeps %d files after Close", len(entries))
	}
}

// A folder at a message's final name fails that Put, not the next Sync
// (whose rename would fail on it, and with it the whole batch).
func TestFolderAtFinalNameFailsPut(t *testing.T) {
	dir := t.TempDir()
	e := newExporter(t, dir)
	m := msg("blocked", "Subject: x\n\nx\n")
	if err := os.MkdirAll(filepath.Join(dir, "new", m.Key+Suffix, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Put(t.Context(), m); err == nil || !strings.Contains(err.Error(), "a folder sits at") {
		t.Fatalf("Put = %v, want an error naming the folder", err)
	}
	mustPut(t, e, msg("fine", "Subject: y\n\ny\n"))
	if err := e.Sync(t.Context()); err != nil {
		t.Fatalf("Sync after a refused Put: %v", err)
	}
}

// TestPutAfterAnotherWriterStoredTheKey: a writer reads new/ once; a key
// another writer stored there afterwards is written again under the same
// name, and the folder still holds one copy of it, which both can read.
func TestPutAfterAnotherWriterStoredTheKey(t *testing.T) {
	dir := t.TempDir()
	e := newExporter(t, dir)
	mustStore(t, e, msg("first", "Subject: a\n\na\n")) // new/ is read here
	other := newExporter(t, dir)
	m := msg("shared", "Subject: s\n\nshared\n")
	theirs := mustStore(t, other, m)
	ours := mustStore(t, e, m)
	if ours != theirs {
		t.Errorf("Ref = %q, the other writer's %q", ours, theirs)
	}
	want := []string{"new/" + msg("first", "").Key + Suffix, theirs}
	slices.Sort(want)
	if got := files(t, dir); !slices.Equal(got, want) {
		t.Errorf("files = %q, want %q", got, want)
	}
	for _, x := range []*Exporter{e, other} {
		if got := mustRead(t, x, ours); got != "Subject: s\n\nshared\n" {
			t.Errorf("Open(%s) = %q", ours, got)
		}
	}
	// A reader's Has still looks new/ up: it finds what a writer stored
	// after it opened the folder (TestReadOnlySeesLaterWrites).
	if ref, ok := mustHas(t, e, m.Key); !ok || ref != ours {
		t.Errorf("Has = %q, %v; want %q", ref, ok, ours)
	}
}

// TestPutFindsAnotherWritersFileMovedToCur: a file another writer left in
// new/, which a reader moves to cur/ after this writer read both folders,
// is found in cur/ by the next Put of its key, not written a second time.
func TestPutFindsAnotherWritersFileMovedToCur(t *testing.T) {
	dir := t.TempDir()
	m := msg("theirs", "Subject: t\n\ntheirs\n")
	mustStore(t, newExporter(t, dir), m)
	e := newExporter(t, dir)
	mustStore(t, e, msg("first", "Subject: a\n\na\n")) // new/ and cur/ are read here
	name := m.Key + Suffix
	if err := os.Rename(filepath.Join(dir, "new", name), filepath.Join(dir, "cur", name+":2,S")); err != nil {
		t.Fatal(err)
	}
	if ref := mustStore(t, e, m); ref != "cur/"+name+":2,S" {
		t.Errorf("Put of a key a reader moved to cur/ = %q, want cur/%s:2,S", ref, name)
	}
	want := []string{"cur/" + name + ":2,S", "new/" + msg("first", "").Key + Suffix}
	if got := files(t, dir); !slices.Equal(got, want) {
		t.Errorf("files = %q, want %q", got, want)
	}
}
