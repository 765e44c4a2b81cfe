package imap

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/eml"
	"github.com/popmigrate/popmigrate/exporters/exportertest"
	"github.com/popmigrate/popmigrate/exporters/mbox"
)

// TestSameDateInEveryDestination stores each message in an IMAP folder,
// an mbox file and an .eml tree, and checks that the IMAP INTERNALDATE,
// the date of the mbox From_ line and the date in the .eml file name are
// one instant, the one the default policy gives (the newest usable
// Received date, then Date, then the download time). The three read the
// header through one reader; this pins that they keep agreeing.
func TestSameDateInEveryDestination(t *testing.T) {
	utc := func(y int, mo time.Month, d, h, mi, s int) time.Time {
		return time.Date(y, mo, d, h, mi, s, 0, time.UTC)
	}
	downloaded := exportertest.NewMessage("x", nil).Received // 2025-03-03 10:00:00 UTC
	cases := []struct {
		name, header string
		want         time.Time
	}{
		{"EST", "Date: Mon, 3 Feb 2025 08:00:00 EST\n", utc(2025, 2, 3, 13, 0, 0)},
		{"PDT", "Received: from a by b; Sun, 1 Jun 2024 08:00:00 PDT\n", utc(2024, 6, 1, 15, 0, 0)},
		{"EDT-lower-case", "Date: Sun, 1 Jun 2024 08:00:00 edt\n", utc(2024, 6, 1, 12, 0, 0)},
		{"military-Z", "Date: Mon, 3 Feb 2025 08:00:00 Z\n", utc(2025, 2, 3, 8, 0, 0)},
		{"military-A", "Received: from a by b; Mon, 3 Feb 2025 09:30:00 A\n", utc(2025, 2, 3, 9, 30, 0)},
		{"several-Received", "Received: from c by d; Tue, 4 Feb 2025 08:00:00 -0500\n" +
			"Received: from b by c;\n\tTue, 4 Feb 2025 14:15:16 +0100 (CET)\n" +
			"Received: from a by b; Tue, 4 Feb 2025 12:00:00 GMT\n", utc(2025, 2, 4, 13, 15, 16)},
		{"Received-and-Date-disagree", "Received: from a by b; Sun, 2 Mar 2025 23:59:59 PST\n" +
			"Date: Thu, 20 Feb 2025 10:00:00 +0000\n", utc(2025, 3, 3, 7, 59, 59)},
		{"Received-without-date", "Received: from a by b\nDate: Thu, 20 Feb 2025 10:00:00 CST\n", utc(2025, 2, 20, 16, 0, 0)},
		{"no-date", "Subject: no date at all\n", downloaded},
		{"only-unusable-dates", "Received: x; Mon, 3 Feb 1975 08:00:00 +0000\nDate: Mon, 3 Feb 2099 08:00:00 +0000\n", downloaded},
	}
	srv := startMem(t, memConfig{})
	const folder = "Dates"
	e := newExporter(t, srv.options(folder))
	emlRoot := filepath.Join(t.TempDir(), "eml")
	ee, err := eml.New(emlRoot, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ee.Close()
	cl := srv.client(t)
	defer cl.Close()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := testCtx(t)
			msg := func() *exporters.Message { return exportertest.NewMessage(tc.name, []byte(tc.header+"\nbody\n")) }

			ref := mustPut(t, e, msg())
			if _, err := cl.Select(folder, nil).Wait(); err != nil {
				t.Fatal(err)
			}
			got, err := cl.Fetch(imap.UIDSetNum(refUID(t, ref)), &imap.FetchOptions{InternalDate: true}).Collect()
			if err != nil || len(got) != 1 {
				t.Fatalf("fetch: %v, %d messages", err, len(got))
			}
			internal := got[0].InternalDate

			mb, err := mbox.New(filepath.Join(t.TempDir(), "a.mbox"), nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := mb.Put(c, msg()); err != nil {
				t.Fatal(err)
			}
			if err := mb.Close(); err != nil {
				t.Fatal(err)
			}
			fromLine := firstLine(t, mb.Path())
			fields := strings.Fields(fromLine) // From SENDER Mon Jan _2 15:04:05 2006
			if len(fields) != 7 || fields[0] != "From" {
				t.Fatalf("From_ line %q", fromLine)
			}
			fromDate, err := time.Parse(time.ANSIC, strings.Join(fields[2:], " "))
			if err != nil {
				t.Fatalf("From_ line %q: %v", fromLine, err)
			}

			d, err := ee.Put(c, msg())
			if err != nil {
				t.Fatal(err)
			}
			name := filepath.Base(d.Ref)
			nameDate, err := time.Parse(eml.DateLayout, name[:len(eml.DateLayout)])
			if err != nil {
				t.Fatalf("eml name %q: %v", name, err)
			}

			for what, got := range map[string]time.Time{
				"IMAP INTERNALDATE": internal,
				"mbox From_ line":   fromDate,
				"eml file name":     nameDate,
			} {
				if !got.Equal(tc.want) {
					t.Errorf("%s: %v, want %v", what, got.UTC(), tc.want)
				}
			}
		})
	}
}

// firstLine returns the first line of the file at path, without its LF.
func firstLine(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(line, "\n")
}
