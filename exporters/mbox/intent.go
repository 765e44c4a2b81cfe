package mbox

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
)

// IntentSuffix ends the name of the intent log of an mbox file:
// <path>.pmintent.
const IntentSuffix = ".pmintent"

const (
	// intentBlock is the granularity of an intent's digests: one sha256
	// per intentBlock-aligned block of the mbox file. A crash tears a
	// write at a page boundary of the file (the kernel copies a write
	// page by page, and every page size is a multiple of 4096), so every
	// byte a torn write left is in a whole block with its digest.
	intentBlock = 4096
	// maxWrite bounds one write to the mbox file, and so one intent line.
	maxWrite = 256 << 10
	// maxIntentLine bounds one line of the intent log: two decimal int64
	// and the digests of the blocks of maxWrite bytes at any offset.
	maxIntentLine = 2*20 + 2 + (maxWrite/intentBlock+1)*(2*sha256.Size+1)
	// compactAt is the size of the intent log past which Sync rewrites
	// it without the intents that no Resume can need any more.
	compactAt = 256 << 10
)

// intent is one line of the intent log: the bytes of one write to the mbox
// file, recorded before the write.
//
//	offset length sha256,sha256,...\n
//
// with one sha256 (lower-case hex) per piece of [offset, offset+length):
// the part of it within one intentBlock-aligned block of the file, in
// order.
type intent struct {
	off, n int64
	sums   [][sha256.Size]byte
}

func (in intent) end() int64 { return in.off + in.n }

// span is the range [from, to) of the mbox file.
type span struct{ from, to int64 }

// pieces returns the pieces of [off, off+n): its parts within one
// intentBlock-aligned block each, in order.
func pieces(off, n int64) []span {
	var ps []span
	for p, end := off, off+n; p < end; {
		q := min((p/intentBlock+1)*intentBlock, end)
		ps = append(ps, span{p, q})
		p = q
	}
	return ps
}

// newIntent returns the intent of writing b at offset off.
func newIntent(off int64, b []byte) intent {
	in := intent{off: off, n: int64(len(b))}
	for _, p := range pieces(off, in.n) {
		in.sums = append(in.sums, sha256.Sum256(b[p.from-off:p.to-off]))
	}
	return in
}

// appendLine appends the intent log line of in.
func (in intent) appendLine(dst []byte) []byte {
	dst = strconv.AppendInt(dst, in.off, 10)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, in.n, 10)
	for i, s := range in.sums {
		if i == 0 {
			dst = append(dst, ' ')
		} else {
			dst = append(dst, ',')
		}
		dst = hex.AppendEncode(dst, s[:])
	}
	return append(dst, '\n')
}

var errIntentLine = errors.New("malformed intent line")

func parseIntentLine(line string) (intent, error) {
	f := strings.Split(line, " ")
	if len(f) != 3 {
		return intent{}, errIntentLine
	}
	off, err1 := parseUint(f[0])
	n, err2 := parseUint(f[1])
	if err1 != nil || err2 != nil || n == 0 || n > maxWrite || off > maxInt64-n {
		return intent{}, errIntentLine
	}
	in := intent{off: off, n: n}
	sums := strings.Split(f[2], ",")
	if len(sums) != len(pieces(off, n)) {
		return intent{}, errIntentLine
	}
	for _, s := range sums {
		if !isLowerHex(s, 2*sha256.Size) {
			return intent{}, errIntentLine
		}
		var sum [sha256.Size]byte
		hex.Decode(sum[:], []byte(s))
		in.sums = append(in.sums, sum)
	}
	return in, nil
}

// readIntents returns the intents of the intent log read from r, in the
// order they were written. It is lenient: a line that does not parse (a
// torn last line, a line a failed write left half written) explains no
// byte of the mbox, so it is left out, and so is everything after a read
// error. Leaving an intent out can only keep Resume from cutting.
func readIntents(r io.Reader) []intent {
	br := bufio.NewReaderSize(r, maxIntentLine+1)
	var ins []intent
	for {
		line, err := br.ReadSlice('\n')
		if err == nil {
			if in, perr := parseIntentLine(string(line[:len(line)-1])); perr == nil {
				ins = append(ins, in)
			}
			continue
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return ins // io.EOF (and a torn last line) or a read error
		}
		for errors.Is(err, bufio.ErrBufferFull) { // skip the over-long line
			_, err = br.ReadSlice('\n')
		}
		if err != nil {
			return ins
		}
	}
}

// explained returns, in order and merged, the spans of [from, to) of the
// mbox file f whose bytes the intents ins describe: the pieces of an
// intent that lie in [from, to) and whose bytes in f hash to the recorded
// sha256. A piece that to cuts short is explained only with partialEnd
// (for a reader, whose to is a size it saw while a writer may have been
// in the middle of that write); Resume never cuts such a piece, as
// nothing tells its bytes from another program's. A read error ends the
// search: what it could not read is not explained. It fails only when ctx
// ends.
func explained(ctx context.Context, f io.ReaderAt, ins []intent, from, to int64, partialEnd bool) ([]span, error) {
	var spans []span
	buf := make([]byte, intentBlock)
	hashed := map[span][sha256.Size]byte{}
	for _, in := range ins {
		if in.end() <= from || in.off >= to {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		for i, p := range pieces(in.off, in.n) {
			if p.to <= from || p.from >= to {
				continue
			}
			if p.to > to {
				if partialEnd {
					spans = append(spans, span{max(p.from, from), to})
				}
				break
			}
			sum, ok := hashed[p]
			if !ok {
				b := buf[:p.to-p.from]
				if _, err := f.ReadAt(b, p.from); err != nil {
					return mergeSpans(spans), nil
				}
				sum = sha256.Sum256(b)
				hashed[p] = sum
			}
			if sum == in.sums[i] {
				spans = append(spans, span{max(p.from, from), p.to})
			}
		}
	}
	return mergeSpans(spans), nil
}

// mergeSpans sorts spans and merges those that touch or overlap.
func mergeSpans(spans []span) []span {
	slices.SortFunc(spans, func(a, b span) int {
		switch {
		case a.from < b.from:
			return -1
		case a.from > b.from:
			return 1
		}
		return 0
	})
	var out []span
	for _, s := range spans {
		if n := len(out); n > 0 && s.from <= out[n-1].to {
			out[n-1].to = max(out[n-1].to, s.to)
			continue
		}
		out = append(out, s)
	}
	return out
}

// unexplained returns the parts of [from, to) that the merged spans do not
// cover, in order.
func unexplained(spans []span, from, to int64) []span {
	var out []span
	at := from
	for _, s := range spans {
		if s.to <= at {
			continue
		}
		if s.from >= to {
			break
		}
		if s.from > at {
			out = append(out, span{at, s.from})
		}
		at = max(at, s.to)
	}
	if at < to {
		out = append(out, span{at, to})
	}
	return out
}

// checkSize fails, breaking the Exporter, when the file is no longer as
// long as what this Exporter wrote to it: another program appended to it
// (or cut it) while the Exporter held it, ignoring the flock. Writing at
// flushed would then overwrite that program's mail, and a cut would
// remove it. The caller holds mu.
func (e *Exporter) checkSize() error {
	fi, err := e.f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", e.path, err)
	}
	size := fi.Size()
	switch ours := max(e.flushed, e.attempted); {
	case size > ours:
		e.broken = fmt.Errorf("%w: another program appended mail to %s while popmigrate was writing it, without honouring popmigrate's lock: %d bytes from offset %d on are not popmigrate's; popmigrate never overwrites or cuts mail it did not write: stop that program, move that mail out of %s (for example with your mail client) or point --to at a new mbox file, then run again",
			ErrForeignData, e.path, size-ours, ours, e.path)
		return e.broken
	case size < e.flushed:
		e.broken = fmt.Errorf("%w: %s was cut from %d to %d bytes while popmigrate was writing it; refusing to write to it", ErrTruncated, e.path, e.flushed, size)
		return e.broken
	}
	return nil
}

// recordIntent appends the line of in to the intent log, before the write
// to the mbox that in describes. The line is written (write(2)) but not
// fsynced: an fsync per write would cost a barrier per message, and it is
// not needed. A process that crashes after both writes leaves both in the
// page cache, so Resume finds the intent of every byte it wrote; after a
// power failure, a tail whose intent did not reach the disk cannot be told
// from foreign data and is kept, which is safe: nothing is cut. The caller
// holds mu.
func (e *Exporter) recordIntent(in intent) error {
	line := e.intentLine[:0]
	if e.intentTorn {
		line = append(line, '\n') // end the line a failed write left
	}
	line = in.appendLine(line)
	e.intentLine = line
	n, err := e.intentF.WriteAt(line, e.intentSize)
	e.intentSize += int64(n)
	if err != nil {
		e.intentTorn = true
		return fmt.Errorf("record the intent of a write to %s in %s: %w", e.path, e.intentPath, err)
	}
	e.intentTorn = false
	e.intents = append(e.intents, in)
	return nil
}

// cutOwn cuts the file to cut bytes, which must lie within what this
// Exporter wrote. It checks first that no other program appended to the
// file. When cut falls inside the range of an intent, the bytes of that
// range before cut stay, and the intent's digest of the block holding cut
// no longer matches them: cutOwn first records an intent for them, read
// back from the file, so that a later Resume still accounts for them.
// The caller holds mu.
func (e *Exporter) cutOwn(cut int64) error {
	if err := e.checkSize(); err != nil {
		return err
	}
	for i := len(e.intents) - 1; i >= 0; i-- {
		in := e.intents[i]
		if in.off >= cut || in.end() <= cut {
			continue
		}
		from := max(in.off, cut/intentBlock*intentBlock)
		if from < cut {
			b := make([]byte, cut-from)
			if _, err := e.f.ReadAt(b, from); err != nil {
				return fmt.Errorf("read back %s at offset %d: %w", e.path, from, err)
			}
			if err := e.recordIntent(newIntent(from, b)); err != nil {
				return err
			}
		}
		break
	}
	if err := e.f.Truncate(cut); err != nil {
		return err
	}
	e.attempted = cut
	return nil
}

// loadIntents opens the intent log and reads its lines. A writer creates
// the log (0600) and keeps it open; a reader reads it if there is one and
// closes it (a missing log explains nothing). Neither follows a symbolic
// link.
//
// A reader can trust what it reads: a writer appends the intent of a
// write before the write, so every byte of the mbox the reader saw
// (having read the file's size first) has its intent in the log, unless
// a Sync dropped it. Sync drops only intents of bytes the Sync before it
// covered, whose index lines that earlier Sync wrote before this one
// began; the reader reads the index after the log, so it finds them
// there.
func (e *Exporter) loadIntents() error {
	var f *os.File
	var err error
	created := false
	if e.readOnly {
		f, err = openRegularReadOnly(e.intentPath)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
	} else {
		f, created, err = openRegular(e.intentPath)
	}
	if err != nil {
		return wrapOpen("intent log "+e.intentPath, err)
	}
	fi, err := f.Stat()
	var last [1]byte
	if err == nil {
		e.intentSize = fi.Size()
		e.intents = readIntents(io.NewSectionReader(f, 0, e.intentSize))
		if e.intentSize > 0 {
			_, err = f.ReadAt(last[:], e.intentSize-1)
		}
	}
	if e.readOnly {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	} else {
		e.intentF = f
		e.dirDirty = e.dirDirty || created
		// A torn last line gets its LF before the next one.
		e.intentTorn = e.intentSize > 0 && last[0] != '\n'
	}
	if err != nil {
		return fmt.Errorf("mbox: read %s: %w", e.intentPath, err)
	}
	return nil
}

// resetIntents empties the intent log, once the file holds exactly what
// the journal committed: no byte of it is ever cut. The log is not
// fsynced: should the old lines come back after a power failure, they can
// only account for bytes that hash to what popmigrate meant to write.
func (e *Exporter) resetIntents() error {
	if e.intentSize == 0 {
		return nil
	}
	if err := e.intentF.Truncate(0); err != nil {
		return fmt.Errorf("mbox: empty %s: %w", e.intentPath, err)
	}
	e.intentSize, e.intents, e.intentTorn = 0, nil, false
	return nil
}

// compactIntents rewrites the intent log without the intents of bytes
// before keepFrom (the state of the previous Sync), once it has grown
// past compactAt bytes and dropping them saves at least as much. It writes
// the intents it keeps to <log>.tmp and renames that over the log, without
// fsync: a crash leaves either log, and both account for every byte a
// Resume may need. The caller holds mu.
func (e *Exporter) compactIntents(keepFrom int64) error {
	if e.intentSize <= compactAt {
		return nil
	}
	var keep []intent
	var lines []byte
	for _, in := range e.intents {
		if in.end() > keepFrom {
			keep = append(keep, in)
			lines = in.appendLine(lines)
		}
	}
	if e.intentSize-int64(len(lines)) < compactAt {
		return nil
	}
	tmp := e.intentPath + ".tmp"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", tmp, err)
	}
	f, err := openFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	if _, err = f.WriteAt(lines, 0); err == nil {
		err = os.Rename(tmp, e.intentPath)
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("rewrite %s: %w", e.intentPath, err)
	}
	// f now has the log's name: keep writing to it.
	old := e.intentF
	e.intentF, e.intentSize, e.intents, e.intentTorn = f, int64(len(lines)), keep, false
	if err := old.Close(); err != nil {
		return fmt.Errorf("close the old %s: %w", e.intentPath, err)
	}
	return nil
}
