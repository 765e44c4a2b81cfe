package report

import (
	"bufio"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"regexp"
	"time"

	"github.com/popmigrate/popmigrate/internal/units"
)

// The page is one file: CSS inline, the chart an inline SVG, no script, no
// font, no image. Its Content-Security-Policy forbids loading anything, so
// that an asset added by mistake shows in the browser's console (and fails
// the browser test) instead of being fetched from a customer's screen.
//
// html/template escapes every value by its context: account names, sources
// and error texts come from servers and users.

//go:embed report.html.tmpl
var pageTemplate string

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"count":    formatCount,
	"bytes":    units.Bytes,
	"duration": formatDuration,
	"plural":   plural,
	"rate": func(bps float64) string {
		return units.Bytes(int64(bps)) + "/s"
	},
	"pct": func(part, whole int) string {
		if whole <= 0 {
			return ""
		}
		// Rounded down: 99.6% copied is not all.
		return fmt.Sprintf("%d%%", int(math.Floor(100*float64(part)/float64(whole))))
	},
	"sub":       func(a, b int) int { return a - b },
	"hintParts": hintParts,
	"f1":        func(v float64) string { return fmt.Sprintf("%.1f", v) },
	"add64":     func(a, b float64) float64 { return a + b },
	"sub64":     func(a, b float64) float64 { return a - b },
	"mid64":     func(a, b float64) float64 { return (a + b) / 2 },
}).Parse(pageTemplate))

// hintPart is a piece of a hint: text, or a command or flag to show as
// code, unbroken.
type hintPart struct {
	Text string
	Code bool
}

// codeInHint finds the commands and flags in a hint.
var codeInHint = regexp.MustCompile(`popmigrate [a-z]+(?: --[a-z-]+)?|--[a-z][a-z-]*`)

// hintParts splits a hint into its text and its commands and flags.
func hintParts(hint string) []hintPart {
	var parts []hintPart
	last := 0
	for _, m := range codeInHint.FindAllStringIndex(hint, -1) {
		if m[0] > last {
			parts = append(parts, hintPart{Text: hint[last:m[0]]})
		}
		parts = append(parts, hintPart{Text: hint[m[0]:m[1]], Code: true})
		last = m[1]
	}
	if last < len(hint) {
		parts = append(parts, hintPart{Text: hint[last:]})
	}
	return parts
}

// view is what the template renders: the report and what is derived from
// it for people.
type view struct {
	*Report
	Chart chart
}

// Time formats t in the report's time zone, with the date: "2025-03-01
// 14:05 CET"; "" for a zero t.
func (v view) Time(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.In(v.location()).Format("2006-01-02 15:04 MST")
}

// Span formats the times from a to b short: "14:05 – 14:40" on one day,
// with seconds within one minute, with the dates across days; "" when a
// is zero.
func (v view) Span(a, b time.Time) string {
	if a.IsZero() {
		return ""
	}
	loc := v.location()
	a, b = a.In(loc), b.In(loc)
	if a.Truncate(time.Minute).Equal(b.Truncate(time.Minute)) {
		return a.Format("15:04:05") + " – " + b.Format("15:04:05")
	}
	if sameDay(a, b, loc) {
		return a.Format("15:04") + " – " + b.Format("15:04")
	}
	return a.Format("Jan 2 15:04") + " – " + b.Format("Jan 2 15:04")
}

// ZoneText names the time zone of the report's times at the time it was
// made: "UTC", "CET (UTC+01:00)".
func (v view) ZoneText() string {
	t := v.Generated.In(v.location())
	name, off := t.Zone()
	if off == 0 && (name == "UTC" || name == "GMT") {
		return name
	}
	return name + " (UTC" + t.Format("-07:00") + ")"
}

// BucketText names the chart's bucket: "1 minute", "15 seconds".
func (v view) BucketText() string {
	b := v.Bucket
	switch {
	case b >= 24*time.Hour && b%(24*time.Hour) == 0:
		return plural(int(b/(24*time.Hour)), "day")
	case b >= time.Hour && b%time.Hour == 0:
		return plural(int(b/time.Hour), "hour")
	case b >= time.Minute && b%time.Minute == 0:
		return plural(int(b/time.Minute), "minute")
	case b >= time.Second && b%time.Second == 0:
		return plural(int(b/time.Second), "second")
	}
	return b.String()
}

// location is the time zone of the report's times: Options.Location, or
// time.Local for a Report not made by Build.
func (r *Report) location() *time.Location {
	if r.loc == nil {
		return time.Local
	}
	return r.loc
}

// StatusText is how an account's status reads in the table.
func (r *Report) StatusText(status string) string {
	switch status {
	case StatusVerified:
		return "Verified"
	case StatusCopied:
		return "Copied"
	case StatusIncomplete:
		return "Incomplete"
	case StatusFailed:
		return "Failed"
	case StatusEmpty:
		return "Empty"
	}
	return "Unknown"
}

// Problems returns the accounts that have something to report below the
// table: an error, failed or suspect messages.
func (r *Report) Problems() []Account {
	var out []Account
	for _, a := range r.Accounts {
		if a.Error != "" || a.Failed > 0 || a.Suspect > 0 {
			out = append(out, a)
		}
	}
	return out
}

// WriteHTML writes r as one self-contained HTML page to w.
func (r *Report) WriteHTML(w io.Writer) error {
	bw := bufio.NewWriter(w)
	if err := page.Execute(bw, view{Report: r, Chart: newChart(r)}); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}
