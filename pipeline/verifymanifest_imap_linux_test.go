//go:build linux

package pipeline_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/imap"
	"github.com/popmigrate/popmigrate/exporters/location"
	"github.com/popmigrate/popmigrate/pipeline"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
	"github.com/popmigrate/popmigrate/verify"
)

// perCopy is an IMAP destination seen without its OpenAll: every copy is
// read back with one Open.
type perCopy struct {
	exporters.Exporter
	exporters.Opener
}

// batched is an IMAP destination whose OpenAll calls are recorded.
type batched struct {
	exporters.Exporter
	exporters.Opener
	b     exporters.BatchOpener
	mu    *sync.Mutex
	sizes *[]int // copies asked for by each OpenAll
}

func (d batched) OpenAll(ctx context.Context, refs []string, fn func(int, io.Reader, error) error) error {
	d.mu.Lock()
	*d.sizes = append(*d.sizes, len(refs))
	d.mu.Unlock()
	return d.b.OpenAll(ctx, refs, fn)
}

// imapRegistry returns a registry of the IMAP kind alone whose
// destinations are what wrap makes of them.
func imapRegistry(wrap func(e exporters.Exporter) exporters.Exporter) *location.Registry {
	f := imap.Factory()
	open := f.Open
	f.Open = func(ctx context.Context, s location.Spec, id string, env location.Env) (exporters.Exporter, error) {
		e, err := open(ctx, s, id, env)
		if err != nil {
			return nil, err
		}
		return wrap(e), nil
	}
	return location.NewRegistry(f)
}

// imapManifestWorld runs msgs from alice's mailbox into a folder of an
// in-memory IMAP server (go-imap's imapmemserver, in a child process) and
// returns the account and its manifest.
func imapManifestWorld(t testing.TB, msgs []srcMsg) (*env, *config.Account, []byte) {
	t.Helper()
	e := newEnv(t, []pop3test.Mailbox{mailbox("alice", msgs)}, nil)
	a := e.account("alice")
	// The child reports every APPEND on its stdout.
	startIMAPTarget(t, e, a, "imap-pw-alice").discardAppends(t, len(msgs))
	o := testOptions()
	rep := e.run([]*config.Account{a}, o)
	wantCounts(t, accountReport(t, rep, "alice"), len(msgs), len(msgs), 0, 0, true)
	var buf bytes.Buffer
	if err := verify.WriteManifest(context.Background(), e.j, "alice", &buf); err != nil {
		t.Fatal(err)
	}
	return e, a, buf.Bytes()
}

// verifyManifestWith is pipeline.VerifyManifest of a's destination opened
// through reg.
func verifyManifestWith(t testing.TB, manifest []byte, a *config.Account, reg *location.Registry) *verify.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	res, err := pipeline.VerifyManifest(ctx, bytes.NewReader(manifest), a.To[0], a, &pipeline.VerifyOptions{Options: pipeline.Options{Destinations: reg}})
	if err != nil {
		t.Fatalf("VerifyManifest: %v", err)
	}
	return res
}

// describeResult renders what a verification found, in order.
func describeResult(res *verify.Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "checked %d, counts %v\n", res.Checked, res.Counts)
	for _, f := range res.Findings {
		fmt.Fprintf(&b, "%s %s %s %s %s %s %s\n", f.Kind, f.UIDL, f.DestID, f.Ref, f.Want, f.Got, f.Detail)
	}
	return b.String()
}

// VerifyManifest of an IMAP folder reads the copies back with OpenAll (a
// UID FETCH per set, not one per message), and finds what reading them one
// at a time finds, in the same order, the findings about a damaged
// manifest's own lines among them. (imapmemserver does not give some of
// the tricky samples back as they were appended: those findings must be
// the same on both paths too.)
func TestVerifyManifestIMAPBatched(t *testing.T) {
	var msgs []srcMsg
	for _, m := range trickyMsgs(t, "t-") {
		if !bytes.Contains(m.want, []byte{0}) { // no IMAP APPEND carries NUL
			msgs = append(msgs, m)
		}
	}
	msgs = append(msgs, smallMsgs("s", 250)...)
	_, a, manifest := imapManifestWorld(t, msgs)
	lines := strings.SplitAfter(string(manifest), "\n")
	damaged := []byte(strings.Join(slices.Insert(slices.Clone(lines), 100, "garbage\n"), ""))

	var (
		mu    sync.Mutex
		sizes []int
	)
	batch := imapRegistry(func(e exporters.Exporter) exporters.Exporter {
		return batched{Exporter: e, Opener: e.(exporters.Opener), b: e.(exporters.BatchOpener), mu: &mu, sizes: &sizes}
	})
	one := imapRegistry(func(e exporters.Exporter) exporters.Exporter {
		return perCopy{Exporter: e, Opener: e.(exporters.Opener)}
	})
	for _, m := range [][]byte{manifest, damaged} {
		sizes = nil
		got := verifyManifestWith(t, m, a, batch)
		if !slices.Equal(sizes, []int{len(msgs)}) {
			t.Errorf("OpenAll asked for %v copies, want all %d at once", sizes, len(msgs))
		}
		want := verifyManifestWith(t, m, a, one)
		if g, w := describeResult(got), describeResult(want); g != w {
			t.Errorf("through OpenAll:\n%s\nwant, as through Open:\n%s", g, w)
		}
		if got.Checked != len(msgs) {
			t.Errorf("checked %d copies, want %d", got.Checked, len(msgs))
		}
		manifestFindings := 0
		for _, f := range got.Findings {
			switch {
			case f.Kind == verify.Manifest:
				manifestFindings++
			case strings.HasPrefix(f.UIDL, "s"):
				t.Errorf("finding %+v, want every small message matching", f)
			}
		}
		if want := min(len(m)-len(manifest), 1); manifestFindings != want {
			t.Errorf("%d findings about the manifest, want %d (the line that is not JSON)", manifestFindings, want)
		}
	}
}

// BenchmarkVerifyManifestIMAP times VerifyManifest of 1000 messages in an
// in-memory IMAP server's folder, reading the copies back one UID FETCH
// per message ("open") or with OpenAll ("openall").
func BenchmarkVerifyManifestIMAP(b *testing.B) {
	_, a, manifest := imapManifestWorld(b, smallMsgs("s", 1000))
	var mu sync.Mutex
	var sizes []int
	for _, tc := range []struct {
		name string
		reg  *location.Registry
	}{
		{"open", imapRegistry(func(e exporters.Exporter) exporters.Exporter {
			return perCopy{Exporter: e, Opener: e.(exporters.Opener)}
		})},
		{"openall", imapRegistry(func(e exporters.Exporter) exporters.Exporter {
			return batched{Exporter: e, Opener: e.(exporters.Opener), b: e.(exporters.BatchOpener), mu: &mu, sizes: &sizes}
		})},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if res := verifyManifestWith(b, manifest, a, tc.reg); res.Counts[verify.Match] != 1000 {
					b.Fatalf("counts %v", res.Counts)
				}
			}
		})
	}
}
