package verify

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/journal"
)

// maxManifestLine bounds a line of a manifest read by VerifyManifest.
const maxManifestLine = 1 << 20

// manifestDest is one destination of a message line.
type manifestDest struct {
	ID  string `json:"id"`
	Ref string `json:"ref"`
}

// manifestLine is a message line.
type manifestLine struct {
	UIDL         string         `json:"uidl"`
	Size         int64          `json:"size"`
	SHA256       string         `json:"sha256"`
	Destinations []manifestDest `json:"destinations"`
	FirstSeen    *time.Time     `json:"first_seen"`
	StoredAt     *time.Time     `json:"stored_at"`
	VerifiedAt   *time.Time     `json:"verified_at"`
}

// manifestSummary is the summary line.
type manifestSummary struct {
	Summary bool   `json:"summary"`
	Account string `json:"account"`
	Count   int    `json:"count"`
	Root    string `json:"root"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// WriteManifest writes the manifest of account, as the journal records it
// now, to w (see "Manifest format" in the package documentation). It reads the journal only. An account
// the journal does not know gets a manifest of no messages. WriteManifest
// does not close w; an error names the account.
func WriteManifest(ctx context.Context, j *journal.Journal, account string, w io.Writer) error {
	msgs, err := j.Messages(ctx, account)
	if err != nil {
		return fmt.Errorf("verify: manifest of account %q: %w", account, err)
	}
	dels, err := j.Deliveries(ctx, account)
	if err != nil {
		return fmt.Errorf("verify: manifest of account %q: %w", account, err)
	}
	sort.Slice(msgs, func(a, b int) bool { return msgs[a].UIDL < msgs[b].UIDL })
	bw := bufio.NewWriter(w)
	root := sha256.New()
	count := 0
	for _, m := range msgs {
		byDest := dels[m.UIDL]
		if len(byDest) == 0 {
			continue
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("verify: manifest of account %q: %w", account, err)
		}
		line := manifestLine{UIDL: m.UIDL, Size: m.ReceivedSize, SHA256: m.SHA256,
			FirstSeen: timePtr(m.FirstSeen), StoredAt: timePtr(m.StoredAt), VerifiedAt: timePtr(m.VerifiedAt)}
		for id, d := range byDest {
			line.Destinations = append(line.Destinations, manifestDest{ID: id, Ref: d.Ref})
		}
		sort.Slice(line.Destinations, func(a, b int) bool { return line.Destinations[a].ID < line.Destinations[b].ID })
		b, err := json.Marshal(line)
		if err != nil {
			return fmt.Errorf("verify: manifest of account %q: uidl %q: %w", account, m.UIDL, err)
		}
		b = append(b, '\n')
		sum := sha256.Sum256(b)
		root.Write(sum[:])
		count++
		if _, err := bw.Write(b); err != nil {
			return fmt.Errorf("verify: manifest of account %q: %w", account, err)
		}
	}
	b, err := json.Marshal(manifestSummary{Summary: true, Account: account, Count: count, Root: hex.EncodeToString(root.Sum(nil))})
	if err != nil {
		return fmt.Errorf("verify: manifest of account %q: %w", account, err)
	}
	bw.Write(b)
	bw.WriteByte('\n')
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("verify: manifest of account %q: %w", account, err)
	}
	return nil
}

// manifestRecord is any line of a manifest, decoded.
type manifestRecord struct {
	manifestLine
	Summary bool   `json:"summary"`
	Account string `json:"account"`
	Count   *int   `json:"count"`
	Root    string `json:"root"`
}

// VerifyManifest checks the manifest read from r, and the copies it lists
// in dest, which must implement exporters.Opener; it needs no journal and
// no server, and does not close dest.
//
// The manifest is checked as it is read: every line must parse, message
// lines must be sorted by UIDL, the summary line must come last, and its
// count and root must be those of the message lines before it (see the
// format in the package documentation). Each discrepancy is a finding of kind Manifest;
// reading goes on after one, so that a damaged manifest still verifies
// what it can.
//
// For every message line, the copy it lists for dest is read back and its
// sha256 and length compared with the line's: through Opener.Open, or,
// when dest implements exporters.BatchOpener, many at once through
// OpenAll, in windows of at most 2048 copies (the same findings, in the
// same order, in fewer round trips). The copy for dest is the one
// whose id is dest's Properties().ID; when the line has none, the one
// whose id is of dest's kind ("maildir:/old/path" for a Maildir that was
// moved), if there is exactly one; a line with none of either is not about
// dest. If dest implements exporters.Lister, every copy it holds for the
// manifest's account that no line lists is an Extra.
//
// VerifyManifest returns an error when dest is not an Opener, when r
// cannot be read, or when ctx ends.
func VerifyManifest(ctx context.Context, r io.Reader, dest exporters.Exporter) (*Result, error) {
	o, ok := dest.(exporters.Opener)
	if !ok {
		return nil, fmt.Errorf("verify: manifest: destination %s (%T) cannot read messages back", dest.Properties().ID, dest)
	}
	props := dest.Properties()
	res := NewResult("")
	c := newChecker(res)
	b, _ := dest.(exporters.BatchOpener)
	w := manifestWindow{c: c, o: o, b: b}
	bad := func(line int, want, got, format string, args ...any) {
		w.add(Finding{Kind: Manifest, Want: want, Got: got, Detail: fmt.Sprintf("line %d: ", line) + fmt.Sprintf(format, args...)})
	}

	br := bufio.NewReaderSize(r, 64<<10)
	root := sha256.New()
	var (
		count    int // message lines before the summary
		lines    int // message lines
		summary  *manifestRecord
		prevUIDL string
		expect   = map[string]string{} // uidl -> Ref of the copy in dest
		all      = map[string]bool{}   // every uidl of a message line
	)
	lineNo := 0
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("verify: manifest: %w", err)
		}
		raw, long, err := readLine(br)
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("verify: manifest: read line %d: %w", lineNo+1, err)
		}
		if len(raw) == 0 && !long && err == io.EOF {
			break
		}
		lineNo++
		if long {
			bad(lineNo, "", "", "longer than %d bytes", maxManifestLine)
			if err == io.EOF {
				break
			}
			continue
		}
		if raw[len(raw)-1] != '\n' {
			bad(lineNo, "", "", "the last line has no line end: the manifest was cut short")
		}
		if summary != nil {
			bad(lineNo, "", "", "a line after the summary line")
		}
		var rec manifestRecord
		if derr := json.Unmarshal(raw, &rec); derr != nil {
			bad(lineNo, "", "", "not a JSON object: %v", derr)
			if err == io.EOF {
				break
			}
			continue
		}
		if rec.Summary {
			if summary == nil {
				summary = &rec
			}
			if err == io.EOF {
				break
			}
			continue
		}
		// A message line before the summary counts towards root
		// whatever it holds.
		if summary == nil {
			sum := sha256.Sum256(raw)
			root.Write(sum[:])
			count++
		}
		lines++
		m := &rec.manifestLine
		if m.UIDL != "" {
			all[m.UIDL] = true
		}
		switch {
		case m.UIDL == "":
			bad(lineNo, "", "", "no uidl")
		case !isHex64(m.SHA256):
			bad(lineNo, "", "", "uidl %s: sha256 %s is not 64 lower-case hex digits", quote(m.UIDL), quote(m.SHA256))
		case m.Size < 0:
			bad(lineNo, "", "", "uidl %s: negative size %d", quote(m.UIDL), m.Size)
		case lines > 1 && m.UIDL <= prevUIDL:
			bad(lineNo, "", "", "uidl %s is not after the previous line's %s: lines were moved or repeated", quote(m.UIDL), quote(prevUIDL))
		}
		if m.UIDL != "" && (lines == 1 || m.UIDL > prevUIDL) {
			prevUIDL = m.UIDL
		}
		if m.UIDL == "" || !isHex64(m.SHA256) || m.Size < 0 {
			if err == io.EOF {
				break
			}
			continue
		}
		d, ok, why := pickDest(m.Destinations, props)
		if why != "" {
			bad(lineNo, "", "", "uidl %s: %s", quote(m.UIDL), why)
		}
		if ok {
			if _, dup := expect[m.UIDL]; !dup {
				expect[m.UIDL] = d.Ref
				if cerr := w.check(ctx, expected{uidl: m.UIDL, destID: props.ID, ref: d.Ref, sum: m.SHA256, wire: m.Size}); cerr != nil {
					return nil, fmt.Errorf("verify: manifest: %w", cerr)
				}
			}
		}
		if err == io.EOF {
			break
		}
	}
	if err := w.flush(ctx); err != nil {
		return nil, fmt.Errorf("verify: manifest: %w", err)
	}
	gotRoot := hex.EncodeToString(root.Sum(nil))
	account := ""
	switch {
	case summary == nil:
		bad(lineNo+1, "", "", "no summary line: the manifest was cut short")
	default:
		account = summary.Account
		res.Account = account
		if summary.Count == nil || *summary.Count != count {
			want := "none"
			if summary.Count != nil {
				want = strconv.Itoa(*summary.Count)
			}
			res.Add(Finding{Kind: Manifest, Want: want, Got: strconv.Itoa(count),
				Detail: "the summary's count of message lines is not the number of message lines: lines were added or removed"})
		}
		if summary.Root != gotRoot {
			res.Add(Finding{Kind: Manifest, Want: summary.Root, Got: gotRoot,
				Detail: "the summary's root is not that of the message lines: a line was changed, added, removed or moved"})
		}
	}
	if l, ok := dest.(exporters.Lister); ok {
		exp := make(map[string]want, len(expect))
		for uidl, ref := range expect {
			exp[exporters.MessageKey(account, uidl)] = want{uidl: uidl, ref: ref}
		}
		// Without the account (no summary), keys cannot be computed:
		// copies are matched by Ref.
		byRef := map[string]string{}
		if summary == nil {
			for uidl, ref := range expect {
				byRef[ref] = uidl
			}
		}
		byKey := map[string]string{}
		if summary != nil {
			for uidl := range all {
				byKey[exporters.MessageKey(account, uidl)] = uidl
			}
		}
		known := func(key string) (string, string) {
			if uidl, ok := byKey[key]; ok {
				return uidl, "the manifest lists this message, but not in this destination"
			}
			return "", "no message of the manifest has this key"
		}
		if err := c.extrasByRef(ctx, l, account, props.ID, exp, byRef, known); err != nil {
			return nil, fmt.Errorf("verify: manifest: %w", err)
		}
	}
	for i := range res.Findings {
		if res.Findings[i].Account == "" {
			res.Findings[i].Account = account
		}
	}
	return res, nil
}

// manifestWindow holds the findings of a manifest's lines, in line order,
// while the copies among them wait to be read back together by a
// BatchOpener; without one, each copy is read at once and nothing waits.
// At most readBackWindow copies, and 2*readBackWindow entries in all,
// wait at a time, whatever the size of the manifest.
type manifestWindow struct {
	c       *checker
	o       exporters.Opener
	b       exporters.BatchOpener // nil: read each copy through o
	pending []pendingCheck
	copies  int // entries of pending that are copies
}

// pendingCheck is a finding of a line (x nil) or a copy to read back.
type pendingCheck struct {
	f Finding
	x *expected
}

// add adds f after what waits.
func (w *manifestWindow) add(f Finding) {
	if w.b == nil || len(w.pending) == 0 {
		w.c.res.Add(f)
		return
	}
	w.pending = append(w.pending, pendingCheck{f: f})
}

// check reads the copy x back, now or with the window, and adds its
// finding after what waits. It returns an error only when ctx ended.
func (w *manifestWindow) check(ctx context.Context, x expected) error {
	if w.b == nil {
		_, err := w.c.check(ctx, w.o, x)
		return err
	}
	w.pending = append(w.pending, pendingCheck{x: &x})
	w.copies++
	if w.copies >= readBackWindow || len(w.pending) >= 2*readBackWindow {
		return w.flush(ctx)
	}
	return nil
}

// flush reads the copies that wait with one OpenAll and adds every
// finding that waits, in order. It returns an error only when ctx ended.
func (w *manifestWindow) flush(ctx context.Context) error {
	if len(w.pending) == 0 {
		return nil
	}
	refs := make([]string, 0, w.copies)
	for _, p := range w.pending {
		if p.x != nil {
			refs = append(refs, p.x.ref)
		}
	}
	var rr []readResult
	if len(refs) > 0 {
		var err error
		if rr, err = readBatch(ctx, w.b, refs); err != nil {
			return err
		}
	}
	k := 0
	for _, p := range w.pending {
		if p.x == nil {
			w.c.res.Add(p.f)
			continue
		}
		if _, err := w.c.judge(ctx, *p.x, rr[k].st, rr[k].err); err != nil {
			return err
		}
		k++
	}
	clear(w.pending)
	w.pending, w.copies = w.pending[:0], 0
	return nil
}

// extrasByRef is extras for a manifest: with byRef set (the account is
// unknown), a listed copy whose Ref a line lists is not extra.
func (c *checker) extrasByRef(ctx context.Context, l exporters.Lister, account, destID string, expect map[string]want, byRef map[string]string,
	known func(key string) (uidl, detail string)) error {
	if len(byRef) == 0 {
		return c.extras(ctx, l, account, destID, expect, known)
	}
	return c.extras(ctx, refLister{l, byRef}, account, destID, expect, known)
}

// refLister drops the listed copies at a Ref of byRef.
type refLister struct {
	exporters.Lister
	byRef map[string]string
}

func (r refLister) List(ctx context.Context, account string) ([]exporters.Listed, error) {
	l, err := r.Lister.List(ctx, account)
	out := l[:0]
	for _, x := range l {
		if _, ok := r.byRef[x.Ref]; !ok {
			out = append(out, x)
		}
	}
	return out, err
}

// pickDest returns the destination entry of a message line that is about
// the destination with props: the one with its id, else the only one of
// its kind. why explains a line that cannot be matched (two of the kind).
func pickDest(ds []manifestDest, props exporters.Properties) (d manifestDest, ok bool, why string) {
	var sameKind []manifestDest
	for _, d := range ds {
		if d.ID == props.ID {
			return d, true, ""
		}
		if kind, _, _ := strings.Cut(d.ID, ":"); kind == props.Kind {
			sameKind = append(sameKind, d)
		}
	}
	switch len(sameKind) {
	case 0:
		return manifestDest{}, false, ""
	case 1:
		return sameKind[0], true, ""
	}
	ids := make([]string, len(sameKind))
	for i, d := range sameKind {
		ids[i] = quote(d.ID)
	}
	return manifestDest{}, false, fmt.Sprintf("destinations %s are all of kind %s and none is %s: cannot tell which one to check", strings.Join(ids, ", "), props.Kind, quote(props.ID))
}

// readLine returns the next line of br with its LF (the last line may
// have none); long reports a line over maxManifestLine, which is skipped
// to its end and not returned. err is io.EOF at the end of the input.
func readLine(br *bufio.Reader) (line []byte, long bool, err error) {
	for {
		frag, err := br.ReadSlice('\n')
		if !long {
			if len(line)+len(frag) > maxManifestLine {
				long, line = true, nil
			} else {
				line = append(line, frag...)
			}
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err != nil:
			return line, long, err
		}
		return line, long, nil
	}
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
