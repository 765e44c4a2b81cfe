package mbox

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/exporters/internal/mailhdr"
)

// fromLineRE matches a From_ line: "From", a sender without white space,
// an asctime date.
var fromLineRE = regexp.MustCompile(`^From [!-~]+ [A-Z][a-z]{2} [A-Z][a-z]{2} [ 1-3][0-9] [0-2][0-9]:[0-5][0-9]:[0-6][0-9] [0-9]{4}$`)

var downloaded = time.Date(2025, 3, 3, 10, 0, 0, 0, time.FixedZone("CET", 3600))

// The From_ date comes from the newest Received field with a usable date,
// then Date, then the download time: never from the clock.
func TestFromLineDate(t *testing.T) {
	for _, tc := range []struct {
		name, head string
		received   time.Time
		want       string
	}{
		{"newest Received first",
			"Received: from a by b; Tue, 4 Mar 2025 08:00:00 +0000\n" +
				"Received: from c by a; Mon, 3 Mar 2025 07:00:00 +0000\n" +
				"Date: Sun, 2 Mar 2025 06:00:00 +0000\n\nbody\n",
			downloaded, "Tue Mar  4 08:00:00 2025"},
		// Downloaded after it arrived: a header date more than a day
		// after the download is a broken clock (mailhdr.Header.Date).
		{"date after the last semicolon, folded, with a comment",
			"Received: from a (x; y)\n\tby b with ESMTP id 1;\n\tWed, 5 Mar 2025 10:00:05 +0100 (CET)\n\n",
			downloaded.Add(48 * time.Hour), "Wed Mar  5 09:00:05 2025"},
		{"malformed newest Received falls back to the next one",
			"Received: from a by b; yesterday at noon\n" +
				"Received: from c by a; Mon, 3 Mar 2025 07:00:00 -0200\n" +
				"Date: Sun, 2 Mar 2025 06:00:00 +0000\n\n",
			downloaded, "Mon Mar  3 09:00:00 2025"},
		{"Received without a semicolon is skipped",
			"Received: from a by b\nDate: Sun, 2 Mar 2025 06:00:00 +0000\n\n",
			downloaded, "Sun Mar  2 06:00:00 2025"},
		{"no usable Received: Date",
			"Received: garbage; garbage\nDate: Sat, 1 Mar 2025 23:30:00 -0100\n\n",
			downloaded, "Sun Mar  2 00:30:00 2025"},
		{"malformed Date: download time in UTC",
			"Date: the first of March\n\n", downloaded, "Mon Mar  3 09:00:00 2025"},
		{"no header at all: download time",
			"This message has no header.\n", downloaded, "Mon Mar  3 09:00:00 2025"},
		{"year out of range falls back",
			"Date: Sat, 1 Mar 1900 10:00:00 +0000\n\n", downloaded, "Mon Mar  3 09:00:00 2025"},
		{"no date and no download time: the epoch",
			"Subject: x\n\n", time.Time{}, "Thu Jan  1 00:00:00 1970"},
		{"Received in the body is not a header",
			"Subject: x\n\nReceived: from a by b; Tue, 4 Mar 2025 08:00:00 +0000\n",
			downloaded, "Mon Mar  3 09:00:00 2025"},
		{"field names are case-insensitive",
			"DATE: Sun, 2 Mar 2025 06:00:00 +0000\n\n", downloaded, "Sun Mar  2 06:00:00 2025"},
		{"two-digit year",
			"Date: Sun, 2 Mar 25 06:00:00 +0000\n\n", downloaded, "Sun Mar  2 06:00:00 2025"},
		{"a header section ends at a line that is not a field",
			"Subject: x\nnot a field\nDate: Sun, 2 Mar 2025 06:00:00 +0000\n\n",
			downloaded, "Mon Mar  3 09:00:00 2025"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			line := fromLine([]byte(tc.head), tc.received)
			if got := line[len(line)-24:]; got != tc.want {
				t.Errorf("date of %q = %q, want %q (line %q)", tc.head, got, tc.want, line)
			}
		})
	}
}

// QUIRK test: obsolete zone names have their RFC 5322 offsets, not UTC.
func TestQuirkObsoleteZoneNames(t *testing.T) {
	for _, tc := range []struct{ date, want string }{
		{"Mon, 3 Mar 2025 10:00:00 EST", "Mon Mar  3 15:00:00 2025"},
		{"Mon, 3 Mar 2025 10:00:00 pdt", "Mon Mar  3 17:00:00 2025"},
		{"Mon, 3 Mar 2025 10:00:00 UT", "Mon Mar  3 10:00:00 2025"},
		{"Mon, 3 Mar 2025 10:00:00 CST (Central)", "Mon Mar  3 16:00:00 2025"},
	} {
		tm, ok := mailhdr.ParseDate(tc.date)
		if !ok {
			t.Errorf("ParseDate(%q) failed", tc.date)
			continue
		}
		if got := tm.Format(time.ANSIC); got != tc.want {
			t.Errorf("ParseDate(%q) = %s, want %s", tc.date, got, tc.want)
		}
	}
}

// QUIRK test: white space before a field's colon is obsolete syntax that
// still names the field.
func TestQuirkSpaceBeforeColon(t *testing.T) {
	line := fromLine([]byte("Return-Path : <a@example.org>\nDate\t: Sun, 2 Mar 2025 06:00:00 +0000\n\n"), downloaded)
	if want := "From a@example.org Sun Mar  2 06:00:00 2025"; line != want {
		t.Errorf("fromLine = %q, want %q", line, want)
	}
}

// QUIRK test: a CR left before the LF of a header line does not end up in
// the sender or break the date.
func TestQuirkCRLFInHeader(t *testing.T) {
	line := fromLine([]byte("Return-Path: <a@example.org>\r\nDate: Sun, 2 Mar 2025 06:00:00 +0000\r\n\r\nbody\r\n"), downloaded)
	if want := "From a@example.org Sun Mar  2 06:00:00 2025"; line != want {
		t.Errorf("fromLine = %q, want %q", line, want)
	}
}

func TestFromLineSender(t *testing.T) {
	long := strings.Repeat("x", 300) + "@example.org"
	for _, tc := range []struct{ head, want string }{
		{"Return-Path: <alice@example.org>\n\n", "alice@example.org"},
		{"Return-Path: alice@example.org\n\n", "alice@example.org"},
		{"Return-Path: <>\n\n", DefaultSender},
		{"Return-Path:\n\n", DefaultSender},
		{"Subject: none\n\n", DefaultSender},
		{"", DefaultSender},
		{"Return-Path: (comment) <bob@example.net> \n\n", "bob@example.net"},
		{"Return-Path: <first@example.org>\nReturn-Path: <second@example.org>\n\n", "first@example.org"},
		{"Return-Path: <\"john doe\"@example.org>\n\n", `"john_doe"@example.org`},
		{"Return-Path: <a\x00b\xffc@example.org>\n\n", "a_b_c@example.org"},
		{"Return-Path: <" + long + ">\n\n", long[:maxSenderLen]},
		{"Return-Path:\n <folded@example.org>\n\n", "folded@example.org"},
	} {
		line := fromLine([]byte(tc.head), downloaded)
		sender, _, _ := strings.Cut(strings.TrimPrefix(line, "From "), " ")
		if sender != tc.want {
			t.Errorf("sender of %q = %q, want %q (line %q)", tc.head, sender, tc.want, line)
		}
		if !fromLineRE.MatchString(line) {
			t.Errorf("From_ line %q is not 'From SENDER DATE'", line)
		}
	}
}
