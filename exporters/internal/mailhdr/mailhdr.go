// Package mailhdr is the one header reader and the one date policy of every
// destination: the IMAP INTERNALDATE, the mbox From_ line and the .eml file
// name of a message all come from here, so they agree.
//
// Reading is lenient, because mail in old mailboxes is not what RFC 5322
// says it should be: the header section ends at the first empty line or at
// the first line that is neither a field nor a continuation (a message
// without headers starts with body text, which is never read as fields); a
// first line "From ..." (an mbox separator the server's storage left in the
// message) is skipped; lines may end in LF or CRLF; white space between a
// field name and its colon (RFC 5322 section 4.5.3) is accepted. Fields are
// unfolded by go-message's textproto.
//
// Dates are read as RFC 5322 section 3.3 has them, with net/mail's
// leniencies, and section 4.3's obsolete forms: the zone names UT, GMT,
// EST, EDT, CST, CDT, MST, MDT, PST and PDT with their offsets, and the
// military letters as "-0000" (as 4.3 says: their meaning was never agreed
// on). Beyond that, the C library's asctime form ("Mon Mar  3 10:00:00
// 2025") and a date without a zone are read as UTC. Nothing depends on the
// machine's local time zone: every date is returned in UTC.
package mailhdr

import (
	"bufio"
	"bytes"
	"net/mail"
	"strings"
	"time"

	"github.com/emersion/go-message/textproto"
)

// MaxHeader bounds the bytes of a message that Read looks at: a header
// section larger than that is unusual, and its first part holds the newest
// Received fields.
const MaxHeader = 256 << 10

// Header is the header section of a message, read leniently.
type Header struct {
	h textproto.Header
}

// Read reads the header section at the start of msg: the message, or a
// prefix of it that holds its header section (at most MaxHeader bytes are
// looked at; a last line without a line end counts as a line). It never
// fails: what is not a header field ends the section.
func Read(msg []byte) Header {
	if len(msg) > MaxHeader {
		msg = msg[:MaxHeader]
	}
	section := headerSection(msg)
	// The section holds only field and continuation lines, so textproto
	// reads it without error; the terminating empty line is ours.
	r := bufio.NewReader(bytes.NewReader(append(section, '\r', '\n')))
	h, _ := textproto.ReadHeader(r)
	return Header{h: h}
}

// headerSection returns the lines of msg that make up its header section,
// each ending in CRLF: field lines and their continuations, up to the first
// empty line, the first line that is neither, or the end of msg.
func headerSection(msg []byte) []byte {
	var out []byte
	rest := msg
	for first := true; len(rest) > 0; first = false {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line = rest[:i+1]
		}
		rest = rest[len(line):]
		content := bytes.TrimRight(line, "\r\n")
		if len(content) == 0 {
			break
		}
		switch {
		case content[0] == ' ' || content[0] == '\t':
			if len(out) == 0 {
				return nil // a continuation of nothing: not a header
			}
		case first && bytes.HasPrefix(content, []byte("From ")):
			// QUIRK: an mbox separator left at the start of the
			// message is skipped (TestQuirkLeadingFromLine).
			continue
		case !isField(content):
			return out
		}
		out = append(out, content...)
		out = append(out, '\r', '\n')
	}
	return out
}

// isField reports whether line starts with a field name (printable ASCII
// but ':') and a colon, with white space allowed before the colon.
func isField(line []byte) bool {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return false
	}
	name := bytes.TrimRight(line[:colon], " \t")
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if c < 33 || c > 126 {
			return false
		}
	}
	return true
}

// Values returns the unfolded values of the fields called key
// (case-insensitive), in header order, with leading and trailing white
// space removed.
func (h Header) Values(key string) []string {
	vs := h.h.Values(key)
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = strings.TrimSpace(v)
	}
	return out
}

// Get returns the first value of key, or "".
func (h Header) Get(key string) string {
	if vs := h.Values(key); len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// Has reports whether the header has a field called key.
func (h Header) Has(key string) bool { return h.h.Has(key) }

// zones are the obsolete zone names of RFC 5322 section 4.3 with their
// offsets; net/mail reads every one of them as UTC.
var zones = map[string]string{
	"UT": "+0000", "GMT": "+0000",
	"EST": "-0500", "EDT": "-0400",
	"CST": "-0600", "CDT": "-0500",
	"MST": "-0700", "MDT": "-0600",
	"PST": "-0800", "PDT": "-0700",
}

// maxComments bounds the trailing comments ParseDate strips.
const maxComments = 4

// ParseDate parses a date-time as mail carries it (see the package doc) and
// returns it in UTC.
//
// QUIRK: the obsolete zone names of RFC 5322 section 4.3 are read as their
// offsets, the military letters as -0000 (TestParseDateRealWorld).
//
// QUIRK: the asctime form and a date without a zone are read as UTC.
func ParseDate(s string) (time.Time, bool) {
	v := strings.Join(strings.Fields(s), " ")
	for range maxComments {
		if !strings.HasSuffix(v, ")") {
			break
		}
		i := strings.LastIndexByte(v, '(')
		if i < 0 {
			break
		}
		v = strings.TrimSpace(v[:i])
	}
	if i := strings.LastIndexByte(v, ' '); i >= 0 && !hasOffset(v[:i]) {
		name := strings.ToUpper(v[i+1:])
		if off, ok := zones[name]; ok {
			v = v[:i+1] + off
		} else if len(name) == 1 && name[0] >= 'A' && name[0] <= 'Z' && name != "J" {
			v = v[:i+1] + "-0000"
		}
	}
	if t, err := mail.ParseDate(v); err == nil {
		return t.UTC(), true
	}
	if t, err := time.Parse("Mon Jan 2 15:04:05 2006", v); err == nil {
		return t.UTC(), true
	}
	if t, err := mail.ParseDate(v + " +0000"); err == nil {
		return t.UTC(), true
	}
	return time.Time{}, false
}

// hasOffset reports whether s ends with a numeric zone ("+0100"): a name
// after it is a comment-like leftover ("+0100 CET"), not the zone.
func hasOffset(s string) bool {
	i := strings.LastIndexByte(s, ' ')
	z := s[i+1:]
	if len(z) != 5 || (z[0] != '+' && z[0] != '-') {
		return false
	}
	for _, c := range z[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Policy says where a message's date comes from.
type Policy string

const (
	// FromReceived takes the newest usable date among the Received
	// fields, then the Date field, then the fallback: when the message
	// reached the old mailbox, which is how that mailbox sorted it.
	FromReceived Policy = "received"
	// FromDate takes the Date field, then the fallback: when the sender
	// wrote it.
	FromDate Policy = "date"
	// FromDownload takes the fallback: when popmigrate downloaded it.
	FromDownload Policy = "download"
)

// Valid reports whether p is one of the policies.
func (p Policy) Valid() bool { return p == FromReceived || p == FromDate || p == FromDownload }

// Date returns the message's date per policy (FromReceived when empty) in
// UTC, with downloaded (when popmigrate downloaded the message) as the
// fallback; it is the zero time when downloaded is zero and no header date
// is usable.
//
// A header date is usable when it is in the years 1980 to 9999 and, when
// downloaded is known, at most a day after it: an earlier or later one is a
// broken clock or a forged header, not when the message arrived. The date
// of a Received field is the part after its last ';' (RFC 5322 section
// 3.6.7). "Newest" is the latest date, not the first field: relays prepend
// their field, but a relay's clock may be wrong.
func (h Header) Date(policy Policy, downloaded time.Time) time.Time {
	if policy == "" {
		policy = FromReceived
	}
	usable := func(t time.Time) bool {
		return t.Year() >= 1980 && t.Year() <= 9999 && (downloaded.IsZero() || !t.After(downloaded.Add(24*time.Hour)))
	}
	if policy == FromReceived {
		var newest time.Time
		for _, v := range h.Values("Received") {
			i := strings.LastIndexByte(v, ';')
			if i < 0 {
				continue
			}
			if t, ok := ParseDate(v[i+1:]); ok && usable(t) && t.After(newest) {
				newest = t
			}
		}
		if !newest.IsZero() {
			return newest
		}
	}
	if policy == FromReceived || policy == FromDate {
		for _, v := range h.Values("Date") {
			if t, ok := ParseDate(v); ok && usable(t) {
				return t
			}
		}
	}
	return downloaded.UTC()
}
