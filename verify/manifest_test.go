package verify_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/maildir"
	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/verify"
)

func (w *world) manifest() []byte {
	w.t.Helper()
	var b bytes.Buffer
	if err := verify.WriteManifest(ctxT(w.t), w.j, acct, &b); err != nil {
		w.t.Fatal(err)
	}
	return b.Bytes()
}

func verifyManifest(t *testing.T, m []byte, dest exporters.Exporter) *verify.Result {
	t.Helper()
	res, err := verify.VerifyManifest(ctxT(t), bytes.NewReader(m), dest)
	if err != nil {
		t.Fatalf("VerifyManifest: %v", err)
	}
	return res
}

// TestManifestFormat checks the manifest against its documented format,
// recomputing the root independently.
func TestManifestFormat(t *testing.T) {
	w := newWorld(t, 3)
	// u0 is listed and never stored: it has no line.
	w.recordListing(journal.Listed{UIDL: "u0", Kind: journal.KindUIDL, Size: 5})
	w.verifyAll(nil) // sets verified_at
	m := w.manifest()
	if !bytes.HasSuffix(m, []byte("\n")) {
		t.Fatalf("manifest does not end with a line end: %q", m)
	}
	lines := strings.SplitAfter(string(m), "\n")
	lines = lines[:len(lines)-1]
	if len(lines) != 4 {
		t.Fatalf("manifest has %d lines, want 3 messages and a summary:\n%s", len(lines), m)
	}
	root := sha256.New()
	var uidls []string
	for i, line := range lines[:3] {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		var keys []string
		for k := range rec {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if want := []string{"destinations", "first_seen", "sha256", "size", "stored_at", "uidl", "verified_at"}; !slices.Equal(keys, want) {
			t.Errorf("line %d has fields %v, want %v", i+1, keys, want)
		}
		msg := w.msgs[i]
		if rec["uidl"] != msg.uidl || rec["sha256"] != sha256Hex(msg.canon) || rec["size"] != float64(len(msg.wire)) {
			t.Errorf("line %d: %v; want uidl %s, sha256 of the canonical form, size as received %d", i+1, rec, msg.uidl, len(msg.wire))
		}
		for _, k := range []string{"first_seen", "stored_at", "verified_at"} {
			if s, ok := rec[k].(string); !ok || !strings.HasSuffix(s, "Z") {
				t.Errorf("line %d: %s = %v, want an RFC 3339 time in UTC", i+1, k, rec[k])
			}
		}
		ds, _ := rec["destinations"].([]any)
		var ids []string
		for _, d := range ds {
			dm := d.(map[string]any)
			id, ref := dm["id"].(string), dm["ref"].(string)
			ids = append(ids, id)
			if w.refs[msg.uidl][id] != ref {
				t.Errorf("line %d: destination %s ref %q, want %q", i+1, id, ref, w.refs[msg.uidl][id])
			}
		}
		if !slices.IsSorted(ids) || len(ids) != 3 {
			t.Errorf("line %d: destinations %v, want the 3, sorted by id", i+1, ids)
		}
		uidls = append(uidls, msg.uidl)
		s := sha256.Sum256([]byte(line))
		root.Write(s[:])
	}
	if !slices.IsSorted(uidls) {
		t.Errorf("message lines in UIDL order %v, want sorted by UIDL", uidls)
	}
	var sum map[string]any
	if err := json.Unmarshal([]byte(lines[3]), &sum); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"summary": true, "account": acct, "count": float64(3), "root": hex.EncodeToString(root.Sum(nil))}
	if len(sum) != len(want) {
		t.Errorf("summary %v, want %v", sum, want)
	}
	for k, v := range want {
		if sum[k] != v {
			t.Errorf("summary %s = %v, want %v", k, sum[k], v)
		}
	}
	if again := w.manifest(); !bytes.Equal(again, m) {
		t.Errorf("a second manifest of the same journal differs:\n%s\n%s", m, again)
	}
}

// TestManifestVerifiesUntouchedArchive: a manifest verifies against every
// destination it lists, the journal gone, and against a Maildir moved to
// another path (matched by kind).
func TestManifestVerifiesUntouchedArchive(t *testing.T) {
	w := newWorld(t, 4)
	m := w.manifest()
	w.j.Close()
	w.open()
	for id, d := range w.dests {
		res := verifyManifest(t, m, d)
		if res.Account != acct || res.Checked != 4 || res.Counts[verify.Match] != 4 || len(res.Findings) != 0 {
			t.Errorf("%s: %+v, want 4 matches and no findings", id, res)
		}
	}
	moved := filepath.Join(t.TempDir(), "moved")
	if out, err := exec.Command("cp", "-a", w.md.Dir(), moved).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	md, err := maildir.New(moved, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	res := verifyManifest(t, m, md)
	if res.Checked != 4 || res.Counts[verify.Match] != 4 || len(res.Findings) != 0 {
		t.Errorf("moved Maildir: %+v, want 4 matches", res)
	}
}

// TestManifestDetectsChanges changes the manifest or the archive, one
// thing per case, and checks the findings.
func TestManifestDetectsChanges(t *testing.T) {
	type want struct {
		kind   verify.Kind
		uidl   string
		detail string
	}
	lineOf := func(m []byte, i int) string { return strings.SplitAfter(string(m), "\n")[i] }
	cases := []struct {
		name   string
		change func(t *testing.T, w *world, m []byte) []byte
		want   []want
	}{
		{"stored message changed", func(t *testing.T, w *world, m []byte) []byte {
			flipByte(t, w.mdPath("u2"))
			return m
		}, []want{{verify.Checksum, "u2", ""}}},
		{"stored message deleted", func(t *testing.T, w *world, m []byte) []byte {
			os.Remove(w.mdPath("u3"))
			return m
		}, []want{{verify.Missing, "u3", ""}}},
		{"extra message in the archive", func(t *testing.T, w *world, m []byte) []byte {
			name := exporters.MessageKey(acct, "u9") + maildir.Suffix
			os.WriteFile(filepath.Join(w.md.Dir(), "new", name), []byte("x\n"), 0o600)
			return m
		}, []want{{verify.Extra, "", ""}}},
		{"sha256 of a line changed", func(t *testing.T, w *world, m []byte) []byte {
			l := lineOf(m, 1)
			sum := sha256Hex(w.msgs[1].canon)
			return bytes.Replace(m, []byte(l), []byte(strings.Replace(l, sum, sha256Hex([]byte("forged")), 1)), 1)
		}, []want{{verify.Checksum, "u2", ""}, {verify.Manifest, "", "root"}}},
		{"a line removed", func(t *testing.T, w *world, m []byte) []byte {
			return bytes.Replace(m, []byte(lineOf(m, 2)), nil, 1)
		}, []want{{verify.Manifest, "", "count"}, {verify.Manifest, "", "root"}, {verify.Extra, "", "no message of the manifest"}}},
		{"a line repeated", func(t *testing.T, w *world, m []byte) []byte {
			l := lineOf(m, 0)
			return append([]byte(l), m...)
		}, []want{{verify.Manifest, "", "moved or repeated"}, {verify.Manifest, "", "count"}, {verify.Manifest, "", "root"}}},
		{"two lines swapped", func(t *testing.T, w *world, m []byte) []byte {
			a, b := lineOf(m, 0), lineOf(m, 1)
			return []byte(b + a + strings.TrimPrefix(string(m), a+b))
		}, []want{{verify.Manifest, "", "moved or repeated"}, {verify.Manifest, "", "root"}}},
		{"summary cut off", func(t *testing.T, w *world, m []byte) []byte {
			return m[:bytes.LastIndex(m[:len(m)-1], []byte("\n"))+1]
		}, []want{{verify.Manifest, "", "no summary"}}},
		{"cut in the middle of a line", func(t *testing.T, w *world, m []byte) []byte {
			return m[:len(lineOf(m, 0))+20]
		}, []want{{verify.Manifest, "", "no line end"}, {verify.Manifest, "", "not a JSON object"}, {verify.Manifest, "", "no summary"}, {verify.Extra, "", ""}, {verify.Extra, "", ""}, {verify.Extra, "", ""}}},
		{"a line after the summary", func(t *testing.T, w *world, m []byte) []byte {
			return append(m, []byte(lineOf(m, 0))...)
		}, []want{{verify.Manifest, "", "after the summary"}, {verify.Manifest, "", "moved or repeated"}}},
		{"a line that is not JSON", func(t *testing.T, w *world, m []byte) []byte {
			return append([]byte("garbage\n"), m...)
		}, []want{{verify.Manifest, "", "not a JSON object"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, 4)
			m := tc.change(t, w, w.manifest())
			w.open()
			res := verifyManifest(t, m, w.md)
			var got []want
			for _, f := range res.Findings {
				got = append(got, want{f.Kind, f.UIDL, f.Detail})
				if !f.Problem() || f.Account == "" && !strings.Contains(tc.name, "cut") {
					t.Errorf("finding %+v: want a problem with the account", f)
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("findings %+v, want %+v", res.Findings, tc.want)
			}
			for i, g := range got {
				x := tc.want[i]
				if g.kind != x.kind || g.uidl != x.uidl && x.uidl != "" || !strings.Contains(g.detail, x.detail) {
					t.Errorf("finding %d: %+v, want %+v", i, res.Findings[i], x)
				}
			}
		})
	}
}

// TestManifestAmbiguousDestination: a line without a destination of the
// verified destination's kind is not about it; two of that kind, neither
// with its id, cannot be told apart.
func TestManifestAmbiguousDestination(t *testing.T) {
	w := newWorld(t, 1)
	line := map[string]any{
		"uidl": "u1", "size": len(w.msgs[0].wire), "sha256": sha256Hex(w.msgs[0].canon),
		"destinations": []map[string]string{{"id": "maildir:/a", "ref": "new/x.popmigrate"}, {"id": "maildir:/b", "ref": "new/x.popmigrate"}},
		"first_seen":   nil, "stored_at": nil, "verified_at": nil,
	}
	b, _ := json.Marshal(line)
	b = append(b, '\n')
	s := sha256.Sum256(b)
	root := sha256.Sum256(s[:])
	sum, _ := json.Marshal(map[string]any{"summary": true, "account": acct, "count": 1, "root": hex.EncodeToString(root[:])})
	m := append(b, append(sum, '\n')...)
	res := verifyManifest(t, m, w.md)
	if res.Checked != 0 || len(res.Findings) != 2 || res.Findings[0].Kind != verify.Manifest ||
		!strings.Contains(res.Findings[0].Detail, "cannot tell which") || res.Findings[1].Kind != verify.Extra {
		t.Errorf("findings %+v; want the line refused as ambiguous, and u1's file extra", res.Findings)
	}
	// The eml destination is not in the line at all: nothing to check,
	// and its copy of u1 is extra.
	res = verifyManifest(t, m, w.em)
	if res.Checked != 0 || len(res.Findings) != 1 || res.Findings[0].Kind != verify.Extra || res.Findings[0].UIDL != "u1" ||
		!strings.Contains(res.Findings[0].Detail, "not in this destination") {
		t.Errorf("eml: findings %+v; want only u1's file extra, as a message of the manifest", res.Findings)
	}
}

func TestManifestOfUnknownAccount(t *testing.T) {
	w := newWorld(t, 0)
	var b bytes.Buffer
	if err := verify.WriteManifest(ctxT(t), w.j, "nobody", &b); err != nil {
		t.Fatal(err)
	}
	empty := sha256.Sum256(nil)
	want := `{"summary":true,"account":"nobody","count":0,"root":"` + hex.EncodeToString(empty[:]) + `"}` + "\n"
	if b.String() != want {
		t.Errorf("manifest %q, want %q", b.String(), want)
	}
}
