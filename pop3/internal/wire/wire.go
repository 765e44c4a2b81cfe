// Package wire parses the POP3 wire format (RFC 1939, RFC 2449): status
// lines, response codes, listing lines and dot-stuffed multi-line bodies.
// It does no I/O of its own except DotReader, which reads from a
// *bufio.Reader it is given, and it never rewrites line endings.
package wire

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
)

// Status is a parsed "+OK" or "-ERR" status line.
type Status struct {
	// OK is true for "+OK", false for "-ERR".
	OK bool
	// Code is the RFC 2449 response code in brackets at the start of the
	// text, upper-cased, without the brackets ("IN-USE", "SYS/TEMP"), or "".
	Code string
	// Text is the rest of the line after the status indicator and the code.
	Text string
}

// TrimEOL removes one line ending from line: CRLF, or a bare LF.
//
// QUIRK: a sloppy server may end lines with LF alone; such lines are
// accepted as if they ended in CRLF (pop3.TestQuirkLFLineEndings).
func TrimEOL(line []byte) []byte {
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
	}
	return line
}

// hasPrefixFold reports whether s starts with prefix, ignoring ASCII case.
func hasPrefixFold(s []byte, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(string(s[:len(prefix)]), prefix)
}

// isSpace reports whether b separates fields on a POP3 line.
func isSpace(b byte) bool { return b == ' ' || b == '\t' }

// ParseStatus parses a status line without its line ending. It reports
// false when the line is neither "+OK" nor "-ERR".
//
// QUIRK: the indicator is matched without regard to case ("+ok"), and the
// text may be missing ("+OK" alone) or separated by several spaces or tabs
// (pop3.TestQuirkLowercaseStatus, pop3.TestQuirkBareOK).
func ParseStatus(line []byte) (Status, bool) {
	var st Status
	var rest []byte
	switch {
	case hasPrefixFold(line, "+OK"):
		st.OK = true
		rest = line[3:]
	case hasPrefixFold(line, "-ERR"):
		rest = line[4:]
	default:
		return Status{}, false
	}
	if len(rest) > 0 && !isSpace(rest[0]) {
		return Status{}, false
	}
	text := strings.TrimLeft(string(rest), " \t")
	st.Code, st.Text = ParseCode(text)
	return st, true
}

// ParseCode splits an RFC 2449 response code ("[SYS/TEMP] text") off the
// front of a status text. It returns code "" and the text unchanged when
// the text does not start with a well-formed code.
func ParseCode(text string) (code, rest string) {
	if !strings.HasPrefix(text, "[") {
		return "", text
	}
	end := strings.IndexByte(text, ']')
	if end < 2 {
		return "", text
	}
	code = text[1:end]
	for i := 0; i < len(code); i++ {
		c := code[i]
		if c <= ' ' || c > '~' || c == '[' {
			return "", text
		}
	}
	return strings.ToUpper(code), strings.TrimLeft(text[end+1:], " \t")
}

// ParseContinuation parses an AUTH continuation line ("+ base64"), without
// its line ending, and returns the base64 text after the "+ ".
//
// QUIRK: a bare "+" (no space) is taken as an empty challenge
// (pop3.TestQuirkBareContinuation).
func ParseContinuation(line []byte) (string, bool) {
	if len(line) == 0 || line[0] != '+' {
		return "", false
	}
	if len(line) == 1 {
		return "", true
	}
	if !isSpace(line[1]) {
		return "", false
	}
	return strings.TrimSpace(string(line[2:])), true
}

// Unstuff removes the dot-stuffing from one line of a multi-line response
// (line ending already removed). It reports end when the line is the
// terminating ".".
func Unstuff(line []byte) (out []byte, end bool) {
	if len(line) > 0 && line[0] == '.' {
		if len(line) == 1 {
			return nil, true
		}
		return line[1:], false
	}
	return line, false
}

// ErrSyntax is returned for a listing or status line that does not parse.
var ErrSyntax = errors.New("malformed line")

// fields splits a line on runs of spaces and tabs.
func fields(line []byte) [][]byte {
	return bytes.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' })
}

// ParseID parses a message number: a decimal integer >= 1.
func ParseID(b []byte) (int, error) {
	if len(b) == 0 || len(b) > 10 {
		return 0, ErrSyntax
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, ErrSyntax
		}
	}
	n, err := strconv.Atoi(string(b))
	if err != nil || n < 1 {
		return 0, ErrSyntax
	}
	return n, nil
}

// ParseSize parses an octet count: a decimal integer >= 0.
func ParseSize(b []byte) (int64, error) {
	if len(b) == 0 || len(b) > 19 {
		return 0, ErrSyntax
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, ErrSyntax
		}
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return 0, ErrSyntax
	}
	return n, nil
}

// ParseListLine parses "id size" from a LIST listing or a LIST n / STAT
// response text.
//
// QUIRK: fields may be separated by several spaces or tabs, and fields after
// the size are ignored (Dovecot and others add comments)
// (pop3.TestQuirkListExtraFields).
func ParseListLine(line []byte) (id int, size int64, err error) {
	f := fields(line)
	if len(f) < 2 {
		return 0, 0, ErrSyntax
	}
	if id, err = ParseID(f[0]); err != nil {
		return 0, 0, err
	}
	if size, err = ParseSize(f[1]); err != nil {
		return 0, 0, err
	}
	return id, size, nil
}

// ParseStat parses "count size" from a STAT response text. Like
// ParseListLine it ignores trailing fields.
func ParseStat(text []byte) (count int, size int64, err error) {
	f := fields(text)
	if len(f) < 2 {
		return 0, 0, ErrSyntax
	}
	n, err := ParseSize(f[0])
	if err != nil || n > 1<<31-1 {
		return 0, 0, ErrSyntax
	}
	count = int(n)
	if size, err = ParseSize(f[1]); err != nil {
		return 0, 0, err
	}
	return count, size, nil
}

// ParseUIDLLine parses "id uid" from a UIDL listing or a UIDL n response
// text. The uid is returned as sent: RFC 1939 allows 1 to 70 octets from
// 0x21 to 0x7E, but longer uids and other octets are accepted too, except
// CR and LF, which are line structure, not data (a line with one inside
// is ErrSyntax).
//
// QUIRK: fields after the uid are ignored, and separators may be runs of
// spaces or tabs (pop3.TestQuirkUIDLExtraFields).
func ParseUIDLLine(line []byte) (id int, uid string, err error) {
	f := fields(line)
	if len(f) < 2 {
		return 0, "", ErrSyntax
	}
	if id, err = ParseID(f[0]); err != nil {
		return 0, "", err
	}
	if bytes.ContainsAny(f[1], "\r\n") {
		return 0, "", ErrSyntax
	}
	return id, string(f[1]), nil
}

// ParseUIDLPrefix parses the message number at the start of a UIDL listing
// line that was cut short because it is too long: the number, then a
// space or tab, then the start of the unique id.
func ParseUIDLPrefix(prefix []byte) (id int, err error) {
	prefix = bytes.TrimLeft(prefix, " \t")
	i := bytes.IndexAny(prefix, " \t")
	if i < 0 {
		return 0, ErrSyntax
	}
	if len(bytes.TrimLeft(prefix[i:], " \t")) == 0 {
		return 0, ErrSyntax
	}
	return ParseID(prefix[:i])
}
