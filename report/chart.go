package report

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/popmigrate/popmigrate/internal/units"
)

// The throughput chart is an SVG drawn here, in Go: one <rect
// class="bucket"> per bucket of the period (an empty bucket is a bar of
// height 0), grid lines and axis labels. The page needs no script.

// Chart geometry, in SVG user units (the viewBox); CSS scales it to the
// page's width.
const (
	chartW       = 960
	chartH       = 280
	chartLeft    = 72 // room for the rate labels
	chartRight   = 12
	chartTop     = 14
	chartBottom  = 34 // room for the time labels
	chartMaxTick = 8  // most time labels
)

// chart is what the template draws.
type chart struct {
	W, H          int
	Left, Top     float64
	Right, Bottom float64 // the plot's right and bottom edges
	Bars          []bar
	YTicks        []tick
	XTicks        []tick
	Unit          string // of the rate axis, e.g. "MiB/s"
	Empty         bool   // nothing stored in the period
}

type bar struct {
	X, Y, W, H float64
	Title      string // the tooltip: when, how many messages, how many bytes
}

type tick struct {
	Pos   float64 // y of a rate tick, x of a time tick
	Label string
}

// rateUnits are the units of the rate axis, by their size in bytes/s.
var rateUnits = []struct {
	name string
	size float64
}{
	{"B/s", 1}, {"KiB/s", 1 << 10}, {"MiB/s", 1 << 20}, {"GiB/s", 1 << 30},
}

// newChart lays out r's throughput.
func newChart(r *Report) chart {
	c := chart{W: chartW, H: chartH, Left: chartLeft, Top: chartTop,
		Right: chartW - chartRight, Bottom: chartH - chartBottom}
	n := len(r.Throughput)
	var stored int64
	for _, p := range r.Throughput {
		stored += p.Bytes
	}
	c.Empty = stored == 0

	// The rate axis: a round maximum in a unit that keeps its numbers
	// small.
	peak := r.Totals.PeakRate
	unit := rateUnits[0]
	for _, u := range rateUnits {
		if peak >= u.size {
			unit = u
		}
	}
	c.Unit = unit.name
	step := niceStep(peak / unit.size / 4)
	top := step * math.Ceil(peak/unit.size/step)
	if top <= 0 {
		top = 4 * step
	}
	plotH := c.Bottom - c.Top
	for i := range int(math.Round(top/step)) + 1 {
		v := float64(i) * step
		c.YTicks = append(c.YTicks, tick{Pos: c.Bottom - v/top*plotH, Label: formatNumber(v, step) + " " + unit.name})
	}
	if n == 0 {
		return c
	}

	slot := (c.Right - c.Left) / float64(n)
	// Bars are 80% of their slot, at least 1 unit (or the slot) wide,
	// and not so wide that a short period shows a few slabs.
	w := math.Min(math.Max(slot*0.8, math.Min(slot, 1)), 48)
	for i, p := range r.Throughput {
		h := p.Rate(r.Bucket) / unit.size / top * plotH
		end := p.Start.Add(r.Bucket)
		c.Bars = append(c.Bars, bar{
			X: c.Left + float64(i)*slot + (slot-w)/2, Y: c.Bottom - h, W: w, H: h,
			Title: fmt.Sprintf("%s – %s: %s stored, %s (%s/s)", r.clock(p.Start, r.Bucket), r.clock(end, r.Bucket),
				plural(p.Messages, "message"), units.Bytes(p.Bytes), units.Bytes(int64(p.Rate(r.Bucket)))),
		})
	}
	// Time labels at bucket starts, every k buckets.
	k := (n + chartMaxTick - 1) / chartMaxTick
	for i := 0; i < n; i += k {
		c.XTicks = append(c.XTicks, tick{Pos: c.Left + float64(i)*slot, Label: r.clock(r.Throughput[i].Start, r.Bucket)})
	}
	return c
}

// niceStep returns the smallest of 1, 2, 2.5, 5 times a power of ten that
// is at least raw; 1 for raw <= 0.
func niceStep(raw float64) float64 {
	if raw <= 0 || math.IsNaN(raw) || math.IsInf(raw, 0) {
		return 1
	}
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw*(1-1e-9) {
			return m * mag
		}
	}
	return 10 * mag
}

// formatNumber formats v with as many decimals as step needs.
func formatNumber(v, step float64) string {
	dec := 0
	for s := step; dec < 6 && math.Abs(s-math.Round(s)) > 1e-9; s *= 10 {
		dec++
	}
	return strconv.FormatFloat(v, 'f', dec, 64)
}

// clock formats t for a time label of buckets of size bucket: with
// seconds for buckets under a minute, with the date when the period spans
// more than one day.
func (r *Report) clock(t time.Time, bucket time.Duration) string {
	loc := r.location()
	t = t.In(loc)
	layout := "15:04"
	if bucket < time.Minute {
		layout = "15:04:05"
	}
	if !sameDay(r.From, r.To.Add(-time.Nanosecond), loc) {
		layout = "Jan 2 " + layout
	}
	return t.Format(layout)
}

func sameDay(a, b time.Time, loc *time.Location) bool {
	ay, am, ad := a.In(loc).Date()
	by, bm, bd := b.In(loc).Date()
	return ay == by && am == bm && ad == bd
}

// formatCount formats n with thousands separators: "12,345".
func formatCount(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// formatDuration formats d for people: "45 s", "12 min 5 s", "3 h 20 min",
// "2 d 4 h"; "under 1 s" for less than a second.
func formatDuration(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Second:
		return "under 1 s"
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		return joinNonZero(int(d/time.Minute), "min", int(d%time.Minute/time.Second), "s")
	case d < 24*time.Hour:
		return joinNonZero(int(d/time.Hour), "h", int(d%time.Hour/time.Minute), "min")
	}
	return joinNonZero(int(d/(24*time.Hour)), "d", int(d%(24*time.Hour)/time.Hour), "h")
}

func joinNonZero(a int, au string, b int, bu string) string {
	if b == 0 {
		return fmt.Sprintf("%d %s", a, au)
	}
	return fmt.Sprintf("%d %s %d %s", a, au, b, bu)
}

// plural returns "1 message", "2 messages".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return formatCount(n) + " " + noun + "s"
}
