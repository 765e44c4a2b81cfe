package mbox

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/popmigrate/popmigrate/exporters/exportertest"
	"github.com/popmigrate/popmigrate/internal/testmsg"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenSamples are the samples whose mbox framing and quoting the golden
// files pin.
var goldenSamples = []string{"from-lines", "dot-lines", "no-final-newline", "empty", "no-headers", "trace-headers"}

// checkGolden compares got with testdata/name, or rewrites it with -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file:\n got: %q\nwant: %q", name, got, want)
	}
}

// TestGolden writes each sample to an mbox of its own, and all of them to
// one mbox, and compares the files (and the index of the shared one) with
// testdata/.
func TestGolden(t *testing.T) {
	all := filepath.Join(t.TempDir(), "all.mbox")
	ea := newExporter(t, all)
	for _, name := range goldenSamples {
		sm := testmsg.Find(t, name)
		path := filepath.Join(t.TempDir(), name+".mbox")
		e := newExporter(t, path)
		mustPut(t, e, exportertest.NewMessage(name, sm.Data))
		mustClose(t, e)
		checkGolden(t, name+".mbox", readFile(t, path))
		mustPut(t, ea, exportertest.NewMessage(name, sm.Data))
	}
	mustSync(t, ea)
	mustClose(t, ea)
	checkGolden(t, "all.mbox", readFile(t, all))
	checkGolden(t, "all.mbox"+IndexSuffix, readFile(t, all+IndexSuffix))
}

// The golden mbox reads back, with its index, as the samples.
func TestGoldenReadBack(t *testing.T) {
	msgs, err := ReadFile(filepath.Join("testdata", "all.mbox"))
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != len(goldenSamples) {
		t.Fatalf("ReadFile: %d messages, want %d", len(msgs), len(goldenSamples))
	}
	for i, name := range goldenSamples {
		if want := testmsg.Find(t, name).Data; !bytes.Equal(msgs[i], want) {
			t.Errorf("message %d (%s) = %q, want %q", i, name, msgs[i], want)
		}
	}
}
