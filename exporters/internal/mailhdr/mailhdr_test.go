package mailhdr

import (
	"testing"
	"time"
)

func utc(y int, mo time.Month, d, h, mi, s int) time.Time {
	return time.Date(y, mo, d, h, mi, s, 0, time.UTC)
}

// TestParseDateRealWorld: dates as mailers wrote them over the years,
// each with the instant it means.
func TestParseDateRealWorld(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"Mon, 3 Feb 2025 08:00:00 +0000", utc(2025, 2, 3, 8, 0, 0)},
		{"Mon, 3 Feb 2025 08:00:00 -0500", utc(2025, 2, 3, 13, 0, 0)},
		{"Mon, 03 Feb 2025 08:00:00 +0100 (CET)", utc(2025, 2, 3, 7, 0, 0)},
		{"Mon, 3 Feb 2025 08:00:00 +0100 CET", utc(2025, 2, 3, 7, 0, 0)},
		{"Mon, 3 Feb 2025 08:00:00 +0100 EST", utc(2025, 2, 3, 7, 0, 0)}, // the numeric zone wins
		{"3 Feb 2025 08:00 +0000", utc(2025, 2, 3, 8, 0, 0)},             // no weekday, no seconds
		{"Mon, 3 Feb 2025 08:00:00 EST", utc(2025, 2, 3, 13, 0, 0)},      // RFC 5322 4.3
		{"Mon, 3 Feb 2025 08:00:00 est", utc(2025, 2, 3, 13, 0, 0)},      // any case
		{"Sun, 1 Jun 2025 08:00:00 EDT", utc(2025, 6, 1, 12, 0, 0)},      //
		{"Mon, 3 Feb 2025 08:00:00 CST", utc(2025, 2, 3, 14, 0, 0)},      //
		{"Mon, 3 Feb 2025 08:00:00 CDT", utc(2025, 2, 3, 13, 0, 0)},      //
		{"Mon, 3 Feb 2025 08:00:00 MST", utc(2025, 2, 3, 15, 0, 0)},      //
		{"Mon, 3 Feb 2025 08:00:00 MDT", utc(2025, 2, 3, 14, 0, 0)},      //
		{"Mon, 3 Feb 2025 08:00:00 PST", utc(2025, 2, 3, 16, 0, 0)},      //
		{"Mon, 3 Feb 2025 08:00:00 PDT", utc(2025, 2, 3, 15, 0, 0)},      //
		{"Mon, 3 Feb 2025 08:00:00 UT", utc(2025, 2, 3, 8, 0, 0)},        //
		{"Mon, 3 Feb 2025 08:00:00 GMT", utc(2025, 2, 3, 8, 0, 0)},       //
		{"Mon, 3 Feb 2025 08:00:00 Z", utc(2025, 2, 3, 8, 0, 0)},         // military: -0000
		{"Mon, 3 Feb 2025 08:00:00 A", utc(2025, 2, 3, 8, 0, 0)},         // military: -0000, not +0100
		{"Mon, 3 Feb 2025 08:00:00 +0000 (Coordinated Universal Time)", utc(2025, 2, 3, 8, 0, 0)},
		{"Tue,  4 Feb 2025\r\n\t09:59:58 +0100 (CET)", utc(2025, 2, 4, 8, 59, 58)}, // folded
		{"Mon Mar  3 10:00:00 2025", utc(2025, 3, 3, 10, 0, 0)},                    // asctime
		{"Mon, 3 Mar 2025 10:00:00", utc(2025, 3, 3, 10, 0, 0)},                    // no zone
		{"Fri, 21 Nov 97 09:55:06 -0600", utc(1997, 11, 21, 15, 55, 6)},            // two-digit year
	} {
		got, ok := ParseDate(tc.in)
		if !ok || !got.Equal(tc.want) || got.Location() != time.UTC {
			t.Errorf("ParseDate(%q) = %v, %v; want %v UTC", tc.in, got, ok, tc.want)
		}
	}
	for _, bad := range []string{"", "yesterday", "Mon, 3 Feb 2025", "32 Feb 2025 08:00:00 +0000", "Mon, 3 Feb 2025 25:00:00 +0000"} {
		if got, ok := ParseDate(bad); ok {
			t.Errorf("ParseDate(%q) = %v, want no date", bad, got)
		}
	}
}

// The machine's time zone changes nothing.
func TestParseDateIgnoresLocalTimeZone(t *testing.T) {
	was := time.Local
	defer func() { time.Local = was }()
	var first time.Time
	for i, zone := range []string{"UTC", "America/New_York", "Asia/Kolkata"} {
		loc, err := time.LoadLocation(zone)
		if err != nil {
			loc = time.FixedZone(zone, (i-1)*5*3600)
		}
		time.Local = loc
		got, ok := ParseDate("Mon, 3 Mar 2025 10:00:00")
		if !ok {
			t.Fatal("no date")
		}
		if i == 0 {
			first = got
		} else if !got.Equal(first) {
			t.Errorf("with local zone %s: %v, with UTC: %v", zone, got, first)
		}
	}
}

func TestReadIsLenient(t *testing.T) {
	for _, tc := range []struct {
		name, msg, key string
		want           []string
	}{
		{"CRLF and folding", "Subject: a\r\n b\r\nTo: x\r\n\r\nbody", "Subject", []string{"a b"}},
		{"LF", "Subject: a\n\tb\nTo: x\n\nbody\n", "subject", []string{"a b"}},
		{"in order", "Received: one\nX: y\nReceived: two\n\n", "Received", []string{"one", "two"}},
		{"space before colon", "Date : Mon, 3 Feb 2025 08:00:00 +0000\n\n", "Date", []string{"Mon, 3 Feb 2025 08:00:00 +0000"}},
		{"leading From_ line", "From alice@example.org Mon Mar  3 10:00:00 2025\nSubject: s\n\n", "Subject", []string{"s"}},
		{"no headers", "Date: is body text? no:\nhello\nDate: Mon, 3 Feb 2025 08:00:00 +0000\n", "Date", []string{"is body text? no:"}},
		{"body text first", "hello there\nDate: Mon, 3 Feb 2025 08:00:00 +0000\n\n", "Date", []string{}},
		{"stops at the empty line", "A: 1\n\nDate: Mon, 3 Feb 2025 08:00:00 +0000\n", "Date", []string{}},
		{"last line without LF", "A: 1\nDate: Mon, 3 Feb 2025", "Date", []string{"Mon, 3 Feb 2025"}},
		{"continuation first", " folded\nA: 1\n\n", "A", []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Read([]byte(tc.msg)).Values(tc.key)
			if len(got) != len(tc.want) {
				t.Fatalf("Values(%s) = %q, want %q", tc.key, got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("Values(%s) = %q, want %q", tc.key, got, tc.want)
				}
			}
		})
	}
}

// TestQuirkLeadingFromLine: an mbox separator left at the start of a
// message is skipped, so the fields after it are read.
func TestQuirkLeadingFromLine(t *testing.T) {
	h := Read([]byte("From MAILER-DAEMON Mon Mar  3 10:00:00 2025\nDate: Mon, 3 Mar 2025 10:00:00 -0500\n\nx\n"))
	if got := h.Date(FromDate, time.Time{}); !got.Equal(utc(2025, 3, 3, 15, 0, 0)) {
		t.Errorf("Date = %v", got)
	}
}

func TestDatePolicy(t *testing.T) {
	dl := utc(2025, 3, 10, 12, 0, 0)
	trace := "Received: from a by b; Tue, 4 Mar 2025 08:00:00 -0500\n" +
		"Received: from c by a;\n\tTue, 4 Mar 2025 12:59:58 +0000 (UTC)\n" +
		"Date: Mon, 3 Mar 2025 10:00:00 PST\n\nbody\n"
	for _, tc := range []struct {
		name, msg string
		policy    Policy
		dl, want  time.Time
	}{
		{"newest Received", trace, FromReceived, dl, utc(2025, 3, 4, 13, 0, 0)},
		{"empty policy is received", trace, "", dl, utc(2025, 3, 4, 13, 0, 0)},
		{"the latest date wins, not the first field",
			"Received: x; Mon, 3 Feb 2025 08:00:00 +0000\nReceived: y; Mon, 3 Feb 2025 09:00:00 +0000\n\n", FromReceived, dl, utc(2025, 2, 3, 9, 0, 0)},
		{"Date", trace, FromDate, dl, utc(2025, 3, 3, 18, 0, 0)},
		{"download", trace, FromDownload, dl, dl},
		{"Received without a date falls back to Date", "Received: from a by b\nDate: Mon, 3 Feb 2025 08:00:00 EST\n\n", FromReceived, dl, utc(2025, 2, 3, 13, 0, 0)},
		{"malformed Received skipped", "Received: a; yesterday\nReceived: b; Mon, 3 Mar 2025 07:00:00 -0200\n\n", FromReceived, dl, utc(2025, 3, 3, 9, 0, 0)},
		{"no dates: the download time", "Subject: x\n\n", FromReceived, dl, dl},
		{"before 1980 is not usable", "Date: Mon, 3 Feb 1975 08:00:00 +0000\n\n", FromReceived, dl, dl},
		{"far future is not usable", "Date: Mon, 3 Feb 2031 08:00:00 +0000\n\n", FromReceived, dl, dl},
		{"no download time: header dates only", trace, FromReceived, time.Time{}, utc(2025, 3, 4, 13, 0, 0)},
		{"no download time and no date: zero", "Subject: x\n\n", FromReceived, time.Time{}, time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Read([]byte(tc.msg)).Date(tc.policy, tc.dl)
			if !got.Equal(tc.want) || (!got.IsZero() && got.Location() != time.UTC) {
				t.Errorf("Date(%q) = %v, want %v UTC", tc.policy, got, tc.want)
			}
		})
	}
}

func TestPolicyValid(t *testing.T) {
	for _, p := range []Policy{FromReceived, FromDate, FromDownload} {
		if !p.Valid() {
			t.Errorf("%q not valid", p)
		}
	}
	if Policy("arrival").Valid() || Policy("").Valid() {
		t.Error("invalid policy accepted")
	}
}
