package mbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
)

// Entry is one message of an mbox file, as Entries finds it.
type Entry struct {
	// Offset is where the entry's From_ line starts in the file, and
	// Length the bytes from there to the next From_ line or the end of
	// the file: for an entry Put wrote, "<Offset>+<Length>" is its Ref.
	Offset, Length int64
	// From is the From_ line without "From " and its LF: "SENDER DATE".
	From string
	// Data is the message: the lines after the From_ line, without the
	// blank line that ends the entry, with the mboxrd quoting undone. The
	// mbox format cannot say whether the message ended with an LF: Data
	// always ends with one (unless it is empty), and ReadFile uses the
	// index to remove an LF that Put added.
	Data []byte
}

// Entries returns the entries of the mboxrd file read from r, in order.
// Every line that starts with "From " starts an entry (mboxrd quotes every
// such line of a message); the entry ends before the next one. The last
// LF of an entry is removed when its last line is blank (the blank line
// that separates entries). Iteration stops at the first error: data before
// the first From_ line, a From_ line longer than 4 KiB, or a read error.
// An empty r has no entries. Each message is held in memory whole.
func Entries(r io.Reader) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		br := bufio.NewReaderSize(r, 64<<10)
		var cur *Entry
		var raw []byte // lines of cur after its From_ line, quoted
		var off int64  // offset of the next line
		finish := func() bool {
			if cur == nil {
				return true
			}
			n := len(raw)
			if n > 0 && raw[n-1] == '\n' && (n == 1 || raw[n-2] == '\n') {
				raw = raw[:n-1]
			}
			var q quoter
			q.unquote = true
			data, err := q.transform(make([]byte, 0, len(raw)), raw)
			if err != nil { // cannot happen: such a line starts an entry
				return yield(Entry{}, fmt.Errorf("mbox: entry at offset %d: %w", cur.Offset, err))
			}
			cur.Data = q.flush(data)
			ok := yield(*cur, nil)
			cur, raw = nil, nil
			return ok
		}
		for {
			frag, err := br.ReadSlice('\n')
			if len(frag) == 0 && err == io.EOF {
				finish()
				return
			}
			if err != nil && err != io.EOF && !errors.Is(err, bufio.ErrBufferFull) {
				yield(Entry{}, fmt.Errorf("mbox: read at offset %d: %w", off+int64(len(frag)), err))
				return
			}
			// frag is a whole line, or at least its first 64 KiB.
			if bytes.HasPrefix(frag, []byte(fromPrefix)) {
				if !finish() {
					return
				}
				if err != nil || len(frag) > maxFromLine {
					yield(Entry{}, fmt.Errorf("%w: the From_ line at offset %d is longer than %d bytes or has no LF", ErrCorrupt, off, maxFromLine))
					return
				}
				cur = &Entry{Offset: off, Length: int64(len(frag)), From: string(frag[len(fromPrefix) : len(frag)-1])}
				off += int64(len(frag))
				continue
			}
			if cur == nil {
				yield(Entry{}, fmt.Errorf("%w: data before the first From_ line", ErrNotMbox))
				return
			}
			for {
				raw = append(raw, frag...)
				cur.Length += int64(len(frag))
				off += int64(len(frag))
				if !errors.Is(err, bufio.ErrBufferFull) {
					break
				}
				frag, err = br.ReadSlice('\n')
				if err != nil && err != io.EOF && !errors.Is(err, bufio.ErrBufferFull) {
					yield(Entry{}, fmt.Errorf("mbox: read at offset %d: %w", off+int64(len(frag)), err))
					return
				}
			}
			if err == io.EOF {
				finish()
				return
			}
		}
	}
}

// ReadAll returns the messages of the mboxrd file read from r, in order:
// the Data of every entry of Entries.
func ReadAll(r io.Reader) ([][]byte, error) {
	var msgs [][]byte
	for en, err := range Entries(r) {
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, en.Data)
	}
	return msgs, nil
}

// ReadFile returns the messages of the mbox file at path, in order, exactly
// as Put was given them: it reads the file like ReadAll and uses the index
// <path>.pmidx, when there is one, to remove the LF that Put added to a
// message without a final LF. An entry the index does not list (written
// by another program) comes back as ReadAll returns it. ReadFile fails with
// an error wrapping ErrCorruptIndex when an index entry does not delimit
// an entry of the file. It takes no lock: run it on a file no Exporter is
// writing. It refuses a symbolic link (ErrSymlink) at the name of the
// file or its index, as New does.
func ReadFile(path string) ([][]byte, error) {
	f, err := openRegularReadOnly(path)
	if err != nil {
		return nil, readFileError(path, err)
	}
	defer f.Close()
	byOff := map[int64]entry{}
	idx, err := openRegularReadOnly(path + IndexSuffix)
	switch {
	case err == nil:
		ents, _, err := readIndex(idx)
		idx.Close()
		if err != nil {
			return nil, fmt.Errorf("mbox: index %s: %w", path+IndexSuffix, err)
		}
		fi, err := f.Stat()
		if err != nil {
			return nil, fmt.Errorf("mbox: %w", err)
		}
		for _, en := range ents {
			// Entries past the end were indexed but never written
			// to the disk (a crash); New drops them too.
			if en.off+en.n <= fi.Size() {
				byOff[en.off] = en
			}
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, readFileError(path+IndexSuffix, err)
	}
	var msgs [][]byte
	for en, err := range Entries(f) {
		if err != nil {
			return nil, fmt.Errorf("mbox: %s: %w", path, err)
		}
		ie, ok := byOff[en.Offset]
		if ok {
			delete(byOff, en.Offset)
			if ie.n != en.Length {
				return nil, fmt.Errorf("%w: %s lists key %s at %s, the file has an entry of %d bytes there", ErrCorruptIndex, path+IndexSuffix, ie.key, ie.ref(), en.Length)
			}
			if ie.addedLF {
				if len(en.Data) == 0 || en.Data[len(en.Data)-1] != '\n' {
					return nil, fmt.Errorf("%w: %s: entry %s has no LF to remove", ErrCorrupt, path, ie.ref())
				}
				en.Data = en.Data[:len(en.Data)-1]
			}
		}
		msgs = append(msgs, en.Data)
	}
	if len(byOff) > 0 {
		ie := entry{off: maxInt64}
		for _, x := range byOff {
			if x.off < ie.off {
				ie = x
			}
		}
		return nil, fmt.Errorf("%w: %s lists key %s at %s, where the file has no entry", ErrCorruptIndex, path+IndexSuffix, ie.key, ie.ref())
	}
	return msgs, nil
}

// readFileError is the error of ReadFile for a file at path it could not
// open: as it is when it names the file already, else naming it.
func readFileError(path string, err error) error {
	var pe *fs.PathError
	switch {
	case errors.Is(err, ErrSymlink):
		return err
	case errors.As(err, &pe):
		return fmt.Errorf("mbox: %w", err)
	}
	return fmt.Errorf("mbox: %s: %w", path, err)
}
