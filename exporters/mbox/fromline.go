package mbox

import (
	"bytes"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"time"

	"github.com/popmigrate/popmigrate/exporters"
)

// MaxHeaderBytes bounds how much of the start of a message Put reads to find
// the sender and date of its From_ line. Header fields past it are ignored.
const MaxHeaderBytes = 256 << 10

// DefaultSender is the sender of the From_ line of a message without a
// Return-Path, or with the null reverse-path "<>" (a bounce).
const DefaultSender = "MAILER-DAEMON"

const (
	maxSenderLen = 256      // longer senders are cut: the From_ line stays short
	maxFromLine  = 4 << 10  // longest From_ line Open and Entries accept
	headStep     = 16 << 10 // bytes read per step while looking for the header end
)

// fromLine returns the From_ line of the message that starts with head,
// without its LF: "From SENDER DATE", with SENDER from Return-Path and
// DATE in asctime form, in UTC (see messageDate).
func fromLine(head []byte, received time.Time) string {
	h := scanHeader(head)
	return "From " + envelopeSender(h) + " " + messageDate(h, received).Format(time.ANSIC)
}

// header holds the fields of a message header that the From_ line needs.
type header struct {
	returnPath    string
	hasReturnPath bool
	received      []string // values, first (newest) first
	date          string
	hasDate       bool
}

// scanHeader reads the header section at the start of head: fields up to
// the first empty line, unfolded. It never fails: it stops at the end of
// head or at the first line that is neither a field nor a continuation of
// one, so a message without headers (its first line is body text) gives an
// empty header.
func scanHeader(head []byte) header {
	var h header
	var name string           // name of the field being read, lower case
	var value strings.Builder // its value so far
	done := func() {
		switch name {
		case "return-path":
			if !h.hasReturnPath {
				h.returnPath, h.hasReturnPath = value.String(), true
			}
		case "received":
			h.received = append(h.received, value.String())
		case "date":
			if !h.hasDate {
				h.date, h.hasDate = value.String(), true
			}
		}
		name = ""
		value.Reset()
	}
	for len(head) > 0 {
		var line []byte
		if i := bytes.IndexByte(head, '\n'); i >= 0 {
			line, head = head[:i], head[i+1:]
		} else {
			line, head = head, nil
		}
		// QUIRK: a CR before the LF (a CRLF left in the canonical form)
		// still ends the line for the purpose of reading the header.
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			if name == "" {
				// A continuation with no field before it: the
				// message does not start with a header section.
				break
			}
			value.WriteByte(' ')
			value.Write(line)
			continue
		}
		done()
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			break
		}
		// QUIRK: white space before the colon ("Date : ...") is the
		// obsolete syntax of RFC 5322 section 4.5; accept it.
		n := bytes.TrimRight(line[:colon], " \t")
		if !validFieldName(n) {
			break
		}
		name = strings.ToLower(string(n))
		value.Write(line[colon+1:])
	}
	done()
	return h
}

// validFieldName reports whether b is a field name of RFC 5322 section
// 3.6.8: printable US-ASCII except ':'.
func validFieldName(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < 33 || c > 126 || c == ':' {
			return false
		}
	}
	return true
}

// envelopeSender returns the address of h's Return-Path with its angle
// brackets removed, or DefaultSender when there is none or it is "<>".
// Bytes that would break the From_ line (white space, control characters,
// 8-bit bytes) become '_', and the result is at most maxSenderLen bytes.
func envelopeSender(h header) string {
	v := strings.TrimSpace(h.returnPath)
	if i := strings.IndexByte(v, '<'); i >= 0 {
		v = v[i+1:]
		if j := strings.IndexByte(v, '>'); j >= 0 {
			v = v[:j]
		}
	}
	v = strings.TrimSpace(v)
	if v == "" {
		return DefaultSender
	}
	if len(v) > maxSenderLen {
		v = v[:maxSenderLen]
	}
	b := []byte(v)
	for i, c := range b {
		if c < 33 || c > 126 {
			b[i] = '_'
		}
	}
	return string(b)
}

// epoch is the From_ line date of a message with no usable date and no
// download time.
var epoch = time.Unix(0, 0).UTC()

// messageDate returns the date of the From_ line, taken from the message
// itself, never from the clock: the date of the newest Received field (the
// part after its last ';') that parses, else the Date field, else received
// (when popmigrate downloaded the message), else the Unix epoch.
//
// Received fields are prepended by each relay, so the first one in the
// header is the newest: the time of final delivery, which is what a local
// delivery agent writes in the From_ line.
func messageDate(h header, received time.Time) time.Time {
	for _, r := range h.received {
		i := strings.LastIndexByte(r, ';')
		if i < 0 {
			continue
		}
		if t, ok := parseDate(r[i+1:]); ok {
			return t
		}
	}
	if h.hasDate {
		if t, ok := parseDate(h.date); ok {
			return t
		}
	}
	if !received.IsZero() {
		return received.UTC()
	}
	return epoch
}

// obsZones are the obsolete time zone names of RFC 5322 section 4.3 with
// their offsets. time.Parse would read every one of them as UTC.
var obsZones = map[string]string{
	"UT": "+0000", "GMT": "+0000", "Z": "+0000",
	"EST": "-0500", "EDT": "-0400",
	"CST": "-0600", "CDT": "-0500",
	"MST": "-0700", "MDT": "-0600",
	"PST": "-0800", "PDT": "-0700",
}

// parseDate parses an RFC 5322 date-time and returns it in UTC. Dates
// outside the years 1970 to 9999 are not usable in a From_ line and fail.
func parseDate(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	// QUIRK: the obsolete zone names (EST, PDT, UT, ...) that old mailers
	// still write have fixed offsets; net/mail would take them as UTC.
	base := s
	for strings.HasSuffix(base, ")") {
		i := strings.LastIndexByte(base, '(')
		if i < 0 {
			break
		}
		base = strings.TrimSpace(base[:i])
	}
	if i := strings.LastIndexAny(base, " \t"); i >= 0 {
		if off, ok := obsZones[strings.ToUpper(base[i+1:])]; ok {
			s = base[:i] + " " + off
		}
	}
	t, err := mail.ParseDate(s)
	if err != nil {
		return time.Time{}, false
	}
	t = t.UTC()
	if y := t.Year(); y < 1970 || y > 9999 {
		return time.Time{}, false
	}
	return t, true
}

// readHead returns the start of body up to the end of its header section
// (an empty line), at most MaxHeaderBytes, using buf to read.
func readHead(body exporters.Body, buf []byte) ([]byte, error) {
	size := body.Size()
	limit := min(size, MaxHeaderBytes)
	var head []byte
	for int64(len(head)) < limit {
		want := min(int64(headStep), limit-int64(len(head)), int64(len(buf)))
		n, err := body.ReadAt(buf[:want], int64(len(head)))
		from := max(len(head)-1, 0)
		head = append(head, buf[:n]...)
		switch {
		case err == io.EOF && int64(len(head)) < limit:
			return nil, fmt.Errorf("%w: %d of %d bytes", ErrShortBody, len(head), size)
		case err != nil && err != io.EOF:
			return nil, fmt.Errorf("read body at offset %d: %w", len(head), err)
		case n == 0:
			return nil, fmt.Errorf("read body at offset %d: no progress", len(head))
		}
		if head[0] == '\n' || bytes.Contains(head[from:], []byte("\n\n")) {
			break
		}
	}
	return head, nil
}
