package mbox

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// IndexSuffix ends the name of the sidecar index of an mbox file:
// <path>.pmidx.
const IndexSuffix = ".pmidx"

// maxIndexLine bounds one line of the index: a key of MaxKeyLen bytes, two
// decimal int64, 64 hex digits, flags and separators fit well within it.
const maxIndexLine = 512

// Flags of an index entry.
const (
	flagNone    = "-" // the entry holds the message's bytes as they were
	flagAddedLF = "n" // Put added the final LF: the message did not end with one
)

// entry is one message of the mbox as the index records it.
type entry struct {
	key     string
	off     int64 // offset of the From_ line
	n       int64 // length of the entry: From_ line to the blank line after the message, included
	sum     string
	addedLF bool
}

// ref returns the entry's Delivery.Ref: "<offset>+<length>".
func (en entry) ref() string {
	return strconv.FormatInt(en.off, 10) + "+" + strconv.FormatInt(en.n, 10)
}

// appendLine appends the index line of en: "key offset length sha256 flags\n".
func (en entry) appendLine(dst []byte) []byte {
	dst = append(dst, en.key...)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, en.off, 10)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, en.n, 10)
	dst = append(dst, ' ')
	dst = append(dst, en.sum...)
	dst = append(dst, ' ')
	if en.addedLF {
		dst = append(dst, flagAddedLF...)
	} else {
		dst = append(dst, flagNone...)
	}
	return append(dst, '\n')
}

// readIndex reads the index lines in r. A last line without its LF is a
// torn append (a crash while the index grew): readIndex leaves it out and
// reports torn. Any other malformed line, two entries with one key, and
// entries that are not in increasing order without overlap fail with an
// error wrapping ErrCorruptIndex that gives the line number.
func readIndex(r io.Reader) (ents []entry, torn bool, err error) {
	br := bufio.NewReaderSize(r, 4096)
	seen := map[string]bool{}
	var end int64 // end of the previous entry
	for lineNo := 1; ; lineNo++ {
		line, err := br.ReadSlice('\n')
		switch {
		case err == io.EOF:
			return ents, len(line) > 0, nil
		case errors.Is(err, bufio.ErrBufferFull) || len(line) > maxIndexLine:
			return nil, false, fmt.Errorf("%w: line %d is longer than %d bytes", ErrCorruptIndex, lineNo, maxIndexLine)
		case err != nil:
			return nil, false, err
		}
		en, err := parseIndexLine(string(line[:len(line)-1]))
		if err != nil {
			return nil, false, fmt.Errorf("%w: line %d: %v", ErrCorruptIndex, lineNo, err)
		}
		if seen[en.key] {
			return nil, false, fmt.Errorf("%w: line %d: key %s listed twice", ErrCorruptIndex, lineNo, en.key)
		}
		if en.off < end {
			return nil, false, fmt.Errorf("%w: line %d: entry at offset %d overlaps the one before (ending at %d)", ErrCorruptIndex, lineNo, en.off, end)
		}
		seen[en.key] = true
		end = en.off + en.n
		ents = append(ents, en)
	}
}

// minEntryLen is the length of the shortest entry Put writes: "From " a
// one-byte sender, a space, a 24-byte date, LF, the LF added to an empty
// message and the blank line.
const minEntryLen = len("From x Mon Jan  2 15:04:05 2006\n\n\n")

func parseIndexLine(line string) (entry, error) {
	f := strings.Split(line, " ")
	if len(f) != 5 {
		return entry{}, fmt.Errorf("%d fields, want 5", len(f))
	}
	if err := checkKey(f[0]); err != nil {
		return entry{}, err
	}
	off, err := parseUint(f[1])
	if err != nil {
		return entry{}, fmt.Errorf("offset: %v", err)
	}
	n, err := parseUint(f[2])
	if err != nil {
		return entry{}, fmt.Errorf("length: %v", err)
	}
	if n < int64(minEntryLen) || off > maxInt64-n {
		return entry{}, fmt.Errorf("impossible length %d at offset %d", n, off)
	}
	if !isLowerHex(f[3], 64) {
		return entry{}, fmt.Errorf("sha256 %q is not 64 lower-case hex digits", f[3])
	}
	en := entry{key: f[0], off: off, n: n, sum: f[3]}
	switch f[4] {
	case flagNone:
	case flagAddedLF:
		en.addedLF = true
	default:
		return entry{}, fmt.Errorf("unknown flags %q", f[4])
	}
	return en, nil
}

const maxInt64 = 1<<63 - 1

// parseUint parses a decimal int64 >= 0 written without sign or leading
// zeros, as strconv.FormatInt writes it.
func parseUint(s string) (int64, error) {
	if s == "" || (len(s) > 1 && s[0] == '0') || s[0] < '0' || s[0] > '9' {
		return 0, fmt.Errorf("%q is not a decimal number", s)
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a decimal number", s)
	}
	return v, nil
}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
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
