package pipeline_test

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/eml"
	"github.com/popmigrate/popmigrate/pipeline"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
	"github.com/popmigrate/popmigrate/verify"
)

// noSpoolOptions returns options under which any message the pipeline
// spools fails: every body past one byte would move to a spool file, in a
// folder that does not exist. A message stored under them was streamed
// into its destination.
func noSpoolOptions(e *env) *pipeline.Options {
	o := testOptions()
	o.SpoolThreshold = 1
	o.SpoolDir = filepath.Join(e.dir, "no-spool-folder")
	return o
}

// largeBody returns a message of about size bytes in canonical form.
func largeBody(size int) []byte {
	head := "From: large@example.org\nSubject: a large message\n\n"
	line := "a line of a large message, streamed into its .eml file as it comes.\n"
	return []byte(head + strings.Repeat(line, size/len(line)))
}

// storedEML returns the .eml files of account under root by message key,
// failing the test on a temporary file left.
func storedEML(t *testing.T, root, account string) map[string]emlFile {
	t.Helper()
	dir := filepath.Join(root, eml.AccountDir(account))
	files, tmp := emlFiles(t, dir)
	if len(tmp) != 0 {
		t.Errorf("%s: temporary files %v left", dir, tmp)
	}
	return files
}

// A run into one eml destination streams every message into that
// destination's temporary file, with no spool copy, and stores each
// byte for byte; Verify reads every copy back as matching.
func TestRunSingleEMLStreams(t *testing.T) {
	msgs := append(trickyMsgs(t, "t-"), smallMsgs("s", 3)...)
	msgs = append(msgs, newMsg("big", largeBody(5<<20)))
	e := newEnv(t, []pop3test.Mailbox{mailbox("alice", msgs)}, nil)
	a := e.account("alice")
	root := filepath.Join(e.dir, "eml")
	a.To = []string{"eml:" + root}

	rep := e.run([]*config.Account{a}, noSpoolOptions(e))
	wantCounts(t, accountReport(t, rep, "alice"), len(msgs), len(msgs), 0, 0, true)
	files := storedEML(t, root, "alice")
	if len(files) != len(msgs) {
		t.Errorf("%d .eml files, want %d", len(files), len(msgs))
	}
	for _, m := range msgs {
		f, ok := files[exporters.MessageKey("alice", m.uid)]
		got := f.data
		if !ok || !bytes.Equal(got, m.want) {
			t.Errorf("%s: stored %v, %d bytes (sha256 %s); want %d bytes (sha256 %s)", m.uid, ok, len(got), sha256Hex(got), len(m.want), m.sum())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	res, err := pipeline.Verify(ctx, e.j, []*config.Account{a}, &pipeline.VerifyOptions{Options: *testOptions()})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if len(res) != 1 || res[0].Checked != len(msgs) || res[0].Counts[verify.Match] != len(msgs) || len(res[0].Findings) != 0 {
		t.Errorf("verify: %+v, want %d copies checked and matching", res, len(msgs))
	}
	// A second run finds every message stored and writes nothing.
	rep = e.run([]*config.Account{a}, noSpoolOptions(e))
	wantCounts(t, accountReport(t, rep, "alice"), len(msgs), 0, len(msgs), 0, true)
	if again := storedEML(t, root, "alice"); len(again) != len(msgs) {
		t.Errorf("after a second run: %d .eml files, want %d", len(again), len(msgs))
	}
}

// The check above means something: the same options fail the messages
// of a run that must spool them, into two destinations.
func TestRunNoSpoolOptionsFailSpooledMessages(t *testing.T) {
	msgs := smallMsgs("s", 2)
	e := newEnv(t, []pop3test.Mailbox{mailbox("alice", msgs)}, nil)
	a := e.account("alice")
	a.To = []string{"eml:" + filepath.Join(e.dir, "eml"), "maildir:" + e.maildir("alice")}
	rep := e.run([]*config.Account{a}, noSpoolOptions(e))
	ar := accountReport(t, rep, "alice")
	if ar.Stored != 0 || ar.Failed != len(msgs) {
		t.Errorf("stored %d, failed %d of %d messages that needed the spool, want all failed (error %q)", ar.Stored, ar.Failed, len(msgs), ar.Error)
	}
	for _, f := range ar.Failures {
		if !strings.Contains(f.Error, "spool") {
			t.Errorf("failure %+v, want one of the spool", f)
		}
	}
}
