package verify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"sync"

	"github.com/popmigrate/popmigrate/exporters"
)

// readBufSize is the size of the buffer a copy is read through.
const readBufSize = 64 << 10

// copyStats describes a copy read back.
type copyStats struct {
	sum string // sha256, lower-case hex
	n   int64  // bytes
	lfs int64  // LF bytes among them
}

// readBack opens ref in o and reads it to the end, hashing it. The copy is
// already canonical (Opener.Open returns the canonical form). ctx is
// checked between reads.
func readBack(ctx context.Context, o exporters.Opener, ref string, buf []byte) (copyStats, error) {
	rc, err := o.Open(ctx, ref)
	if err != nil {
		return copyStats{}, err
	}
	st, err := readStats(ctx, rc, buf)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return copyStats{}, err
	}
	return st, nil
}

// Matches reads the copy at ref back from o, as Account does, and reports
// whether it is complete and unchanged: its sha256 is sum and its length
// fits a message received as wire bytes (wire < 0: unknown, not checked).
// It reads through buf (any size; nil: a buffer of its own). A copy that
// is missing, unreadable or different is reported as not matching, with
// no finding: Account, reading it again, says what is wrong with it.
func Matches(ctx context.Context, o exporters.Opener, ref, sum string, wire int64, buf []byte) bool {
	if len(buf) == 0 {
		buf = make([]byte, readBufSize)
	}
	st, err := readBack(ctx, o, ref, buf)
	return err == nil && st.sum == sum && (wire < 0 || sizeFits(st, wire))
}

// readStats reads the canonical copy r to the end through buf, hashing
// it. ctx is checked between reads.
func readStats(ctx context.Context, r io.Reader, buf []byte) (copyStats, error) {
	h := sha256.New()
	var st copyStats
	var err error
	for {
		if err = ctx.Err(); err != nil {
			break
		}
		var n int
		n, err = r.Read(buf)
		if n > 0 {
			h.Write(buf[:n])
			st.n += int64(n)
			st.lfs += int64(bytes.Count(buf[:n], []byte{'\n'}))
		}
		if err != nil {
			break
		}
	}
	if err == io.EOF {
		err = nil
	}
	if err != nil {
		return copyStats{}, err
	}
	st.sum = hex.EncodeToString(h.Sum(nil))
	return st, nil
}

// readResult is what reading one copy back gave.
type readResult struct {
	st  copyStats
	err error
}

// bufPool holds the read buffers of batch reads, which run on several
// goroutines at once.
var bufPool = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

// readBatch reads the copies at refs back from b with one OpenAll and
// returns what each gave, in the order of refs. A copy OpenAll did not
// reach gets its error (as an Unreadable finding will say). It returns an
// error only when ctx ended.
func readBatch(ctx context.Context, b exporters.BatchOpener, refs []string) ([]readResult, error) {
	out := make([]readResult, len(refs))
	done := make([]bool, len(refs))
	err := b.OpenAll(ctx, refs, func(i int, r io.Reader, err error) error {
		done[i] = true
		if err != nil {
			out[i].err = err
			return nil
		}
		bp := bufPool.Get().(*[]byte)
		out[i].st, out[i].err = readStats(ctx, r, *bp)
		bufPool.Put(bp)
		return nil
	})
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err != nil {
		for i := range out {
			if !done[i] {
				out[i].err = err
			}
		}
	}
	return out, nil
}

// sizeFits reports whether a canonical copy of st.n bytes holding st.lfs
// LFs can be the canonical form of a message received as wire bytes.
// The received size counts the message after dot-unstuffing, with its
// line ends as the server sent them (usually CRLF); the canonical form
// turns every CRLF into LF and keeps every other byte. So every byte of
// the copy is a byte received, and the received message has at most one
// more byte (a CR) per LF of the copy: st.n <= wire <= st.n + st.lfs. A
// copy outside these bounds was cut or grew; one inside them is checked
// by its sha256 alone.
func sizeFits(st copyStats, wire int64) bool {
	return st.n <= wire && wire <= st.n+st.lfs
}

// expected is what a copy must be.
type expected struct {
	uidl, destID, ref string
	sum               string // sha256 of the copy as written
	msgSum            string // sha256 of the message; "" when only sum is known
	wire              int64  // received size; < 0 when unknown
}

// checker reads copies back and turns what it finds into findings.
type checker struct {
	res *Result
	buf []byte
}

func newChecker(res *Result) *checker {
	return &checker{res: res, buf: make([]byte, readBufSize)}
}

// check reads the copy x describes back from o and adds one finding: a
// Match, or the first of Missing, Unreadable, Size, Checksum that applies.
// It returns whether the copy matched, and an error only when ctx ended.
func (c *checker) check(ctx context.Context, o exporters.Opener, x expected) (bool, error) {
	st, err := readBack(ctx, o, x.ref, c.buf)
	return c.judge(ctx, x, st, err)
}

// judge adds the finding of the copy x describes, read back as st or
// failing with err, as check does.
func (c *checker) judge(ctx context.Context, x expected, st copyStats, err error) (bool, error) {
	c.res.Checked++
	f := Finding{UIDL: x.uidl, DestID: x.destID, Ref: x.ref}
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	switch {
	case errors.Is(err, exporters.ErrNotFound):
		// The error only repeats the destination and the Ref.
		f.Kind = Missing
	case err != nil:
		f.Kind, f.Detail = Unreadable, err.Error()
	case x.wire >= 0 && !sizeFits(st, x.wire):
		f.Kind = Size
		f.Want, f.Got = strconv.FormatInt(x.wire, 10), strconv.FormatInt(st.n, 10)
		f.Detail = fmt.Sprintf("the copy holds %d bytes with %d line ends; a copy of a message received as %d bytes holds at most %d and at least %d minus its line ends: it was cut short or grew",
			st.n, st.lfs, x.wire, x.wire, x.wire)
	case st.sum != x.sum:
		f.Kind, f.Want, f.Got = Checksum, x.sum, st.sum
	case x.msgSum != "" && x.msgSum != x.sum:
		f.Kind, f.Want, f.Got = Checksum, x.msgSum, st.sum
		f.Detail = "the copy matches its delivery record but not the message's sha256 in the journal"
	default:
		c.res.Add(Finding{Kind: Match, UIDL: x.uidl, DestID: x.destID, Ref: x.ref})
		return true, nil
	}
	c.res.Add(f)
	return false, nil
}

// want is what a destination should hold of one key, for finding extras.
type want struct {
	uidl string
	ref  string // the recorded Ref; a listed copy at another Ref is still this copy if the key has no copy at ref
}

// extras lists what l holds for account and adds an Extra finding for
// every copy that expect does not account for: a key not in expect (known
// tells what the journal knows of it, for the finding's UIDL and Detail),
// and every copy of a key after the first (the one at the recorded Ref
// counts as the first). A copy listed without a key is accounted for when
// its Ref is a recorded one. It returns an error only when ctx ended; a
// failed listing is an Unreadable finding.
func (c *checker) extras(ctx context.Context, l exporters.Lister, account, destID string,
	expect map[string]want, known func(key string) (uidl, detail string)) error {
	listed, err := l.List(ctx, account)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		c.res.Add(Finding{Kind: Unreadable, DestID: destID, Detail: "list: " + err.Error()})
		return nil
	}
	sort.Slice(listed, func(i, j int) bool { return listed[i].Ref < listed[j].Ref })
	recorded := make(map[string]bool, len(expect))
	for _, w := range expect {
		recorded[w.ref] = true
	}
	byKey := map[string][]string{}
	var keys []string
	for _, x := range listed {
		if x.Key == "" && recorded[x.Ref] {
			continue
		}
		if _, ok := byKey[x.Key]; !ok {
			keys = append(keys, x.Key)
		}
		byKey[x.Key] = append(byKey[x.Key], x.Ref)
	}
	sort.Strings(keys)
	for _, key := range keys {
		refs := byKey[key]
		w, ok := expect[key]
		if ok && key != "" {
			// Keep the copy at the recorded Ref, or else the first.
			keep := 0
			for i, r := range refs {
				if r == w.ref {
					keep = i
					break
				}
			}
			for i, r := range refs {
				if i != keep {
					c.res.Add(Finding{Kind: Extra, UIDL: w.uidl, DestID: destID, Ref: r,
						Detail: fmt.Sprintf("a second copy of the message (the recorded one is at %s)", quote(refs[keep]))})
				}
			}
			continue
		}
		uidl, detail := "", "no message known for this account has this key"
		if key == "" {
			detail = "the destination cannot tell this message's key"
		} else if known != nil {
			uidl, detail = known(key)
		}
		for _, r := range refs {
			c.res.Add(Finding{Kind: Extra, UIDL: uidl, DestID: destID, Ref: r, Detail: detail})
		}
	}
	return nil
}
