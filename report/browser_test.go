package report

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// These tests render the report in a real headless Chromium (the Debian
// package "chromium", installed by scripts/ensure-chromium.sh, which
// `make deps` runs). A machine without it fails them with the way to
// install it: they never skip.
//
// Each run writes its files into t.ArtifactDir(): a temporary folder
// removed after the test, or, with
//
//	go test ./report/ -run Browser -artifacts -outputdir DIR
//
// a folder under DIR/_artifacts that is kept, to look at the screenshot
// (report.png) and the printed page (report.pdf).

// browserTimeout bounds one run of the browser.
const browserTimeout = 60 * time.Second

// browserNames are the names of Chromium's binary, in the order looked up
// in PATH (Debian: chromium; Ubuntu's and others' packages:
// chromium-browser).
var browserNames = []string{"chromium", "chromium-browser"}

func findBrowser(t *testing.T) string {
	t.Helper()
	for _, name := range browserNames {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatalf("no Chromium in PATH (looked for %s): the HTML report's tests render it in a real browser.\n"+
		"Install it with: sudo bash scripts/ensure-chromium.sh (or: make deps; or: sudo apt-get install chromium)",
		strings.Join(browserNames, ", "))
	return ""
}

// consoleLine matches what Chromium logs for each message of a page's
// console. How to see them was found by trying, with Chromium 156
// (Debian 12), on a page with console.log, console.error, an uncaught
// exception and a load its Content-Security-Policy blocked:
//
//   - --enable-logging=stderr --v=0 makes the browser log every console
//     message, whatever its level, to stderr as one line
//     `[pid:tid:date:INFO:CONSOLE:LINE] "TEXT", source: URL (LINE)`
//     (older versions wrote `INFO:CONSOLE(LINE)]`). The level is INFO for
//     console.error too, so the level cannot tell errors apart: an
//     uncaught exception shows only as "Uncaught ..." in TEXT.
//   - A resource that fails to load (a missing file) logs nothing there;
//     a load that the page's Content-Security-Policy blocks logs a
//     console line ("... violates the following Content Security Policy
//     directive ...").
//
// So the test fails on ANY console line: the report runs no script and,
// with its policy default-src 'none', any asset it tried to load is a
// console line. TestBrowserConsoleCheckSeesErrors shows that this
// Chromium logs what the check looks for.
var consoleLine = regexp.MustCompile(`(?m)^\[[^\]]*:CONSOLE[:(][^\]]*\].*$|^.*Uncaught .*$`)

// consoleMessages returns the console lines of Chromium's stderr.
func consoleMessages(stderr string) []string {
	return consoleLine.FindAllString(stderr, -1)
}

// runBrowser runs headless Chromium on the page at path with the extra
// arguments, within browserTimeout, and returns its stdout and stderr.
// Its process group is killed when the time is up and after it exits,
// so that no renderer outlives the test.
func runBrowser(t *testing.T, path string, args ...string) (stdout, stderr string) {
	t.Helper()
	bin := findBrowser(t)
	ctx, cancel := context.WithTimeout(t.Context(), browserTimeout)
	defer cancel()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	all := append([]string{
		"--headless",
		// The sandbox needs privileges a test (often root in a
		// container) does not have; the page is our own file.
		"--no-sandbox",
		"--user-data-dir=" + t.TempDir(),
		"--no-first-run", "--no-default-browser-check", "--disable-extensions",
		"--disable-gpu", "--hide-scrollbars",
		"--enable-logging=stderr", "--v=0",
	}, args...)
	all = append(all, "file://"+filepath.ToSlash(abs))
	cmd := exec.CommandContext(ctx, bin, all...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir()) // nothing of the user's profile
	inProcessGroup(cmd)
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err = cmd.Run()
	killGroup(cmd)
	t.Logf("chromium %s: %v", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	if ctx.Err() != nil {
		t.Fatalf("chromium %s: killed after %v\nstderr:\n%s", strings.Join(args, " "), browserTimeout, errOut.String())
	}
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("chromium: %v", err)
		}
		t.Fatalf("chromium %s: %v\nstderr:\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String(), errOut.String()
}

// noConsole fails the test if the page logged to its console.
func noConsole(t *testing.T, what, stderr string) {
	t.Helper()
	if lines := consoleMessages(stderr); len(lines) > 0 {
		t.Errorf("%s: the page logged to the console:\n%s", what, strings.Join(lines, "\n"))
	}
}

// The report of three accounts, one with failures and one whose name needs
// escaping, renders in Chromium without a console message: a table with
// a row per account, the chart with a bar per bucket, the name shown as
// text; and it makes a screenshot and a printed page.
func TestBrowserReport(t *testing.T) {
	r := fixtureReport(t, nil)
	dir := t.ArtifactDir()
	page := filepath.Join(dir, "report.html")
	if err := r.WriteFile(page); err != nil {
		t.Fatal(err)
	}

	// The DOM after the browser built it.
	dom, stderr := runBrowser(t, page, "--dump-dom")
	noConsole(t, "--dump-dom", stderr)
	table := regexp.MustCompile(`(?s)<table id="accounts">.*?</table>`).FindString(dom)
	if table == "" {
		t.Fatalf("no table#accounts in the DOM:\n%s", dom)
	}
	if n := len(regexp.MustCompile(`<tr class="account"`).FindAllString(table, -1)); n != 3 {
		t.Errorf("table#accounts has %d account rows, want 3", n)
	}
	// The name is text in its cell: the serialiser escapes < > & in
	// text, and no <b> element was made of it.
	if !strings.Contains(table, `<div class="name">&lt;b&gt;"x"&amp;y&lt;/b&gt;</div>`) {
		t.Errorf("the name %q is not shown as text in the table:\n%s", fixMarkup, table)
	}
	for _, el := range []string{"<b>", "<img", "<script"} {
		if strings.Contains(dom, el) {
			t.Errorf("the DOM holds a %s element made of a name or an error text", el)
		}
	}
	svg := regexp.MustCompile(`(?s)<svg id="throughput".*?</svg>`).FindString(dom)
	if svg == "" {
		t.Fatalf("no svg#throughput in the DOM")
	}
	bars := regexp.MustCompile(`<rect class="bucket" x="[^"]*" y="[^"]*" width="[^"]*" height="([^"]*)"`).FindAllStringSubmatch(svg, -1)
	if len(bars) != len(r.Throughput) || len(bars) < 30 {
		t.Errorf("svg#throughput has %d bucket bars, want %d (one per bucket)", len(bars), len(r.Throughput))
	}
	drawn, nonEmpty := 0, 0
	for i, b := range bars {
		if h, err := strconv.ParseFloat(b[1], 64); err == nil && h > 0 {
			drawn++
		}
		if i < len(r.Throughput) && r.Throughput[i].Bytes > 0 {
			nonEmpty++
		}
	}
	if drawn != nonEmpty || drawn == 0 {
		t.Errorf("%d bars have a height, want %d (the buckets in which something was stored)", drawn, nonEmpty)
	}

	// A screenshot: a PNG of the window, with the chart's blue in it.
	shot := filepath.Join(dir, "report.png")
	_, stderr = runBrowser(t, page, "--screenshot="+shot, "--window-size=1280,2000")
	noConsole(t, "--screenshot", stderr)
	checkScreenshot(t, shot, 1280, 2000)

	// The printed page (A4, the print CSS): a PDF of a few pages.
	pdf := filepath.Join(dir, "report.pdf")
	_, stderr = runBrowser(t, page, "--print-to-pdf="+pdf, "--no-pdf-header-footer")
	noConsole(t, "--print-to-pdf", stderr)
	checkPDF(t, pdf)
	t.Logf("artifacts: %s (report.html, report.png, report.pdf)", dir)
}

// checkScreenshot fails the test unless path is a w×h PNG in which the
// chart's bars (the accent colour, #2f6fde) cover a good number of pixels.
func checkScreenshot(t *testing.T, path string, w, h int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot %s: %v", path, err)
	}
	if b := img.Bounds(); b.Dx() != w || b.Dy() != h {
		t.Errorf("screenshot is %dx%d, want %dx%d", b.Dx(), b.Dy(), w, h)
	}
	if n := countColour(img, 0x2f, 0x6f, 0xde); n < 5000 {
		t.Errorf("screenshot has %d pixels of the bars' colour: the chart is not drawn", n)
	}
}

func countColour(img image.Image, r, g, b uint8) int {
	near := func(a uint32, want uint8) bool { d := int(a>>8) - int(want); return d > -12 && d < 12 }
	n := 0
	bounds := img.Bounds()
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			cr, cg, cb, _ := img.At(x, y).RGBA()
			if near(cr, r) && near(cg, g) && near(cb, b) {
				n++
			}
		}
	}
	return n
}

// checkPDF fails the test unless path is a PDF of one to four pages (the
// fixture's report prints on two A4 pages).
func checkPDF(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("no PDF: %v", err)
	}
	if !bytes.HasPrefix(data, []byte("%PDF-")) || len(data) < 10_000 {
		t.Fatalf("%s is not a PDF of the report (%d bytes)", path, len(data))
	}
	// The page tree's /Count (Chromium writes it uncompressed).
	m := regexp.MustCompile(`/Type\s*/Pages\b[^>]*?/Count\s+(\d+)|/Count\s+(\d+)[^>]*?/Type\s*/Pages\b`).FindSubmatch(data)
	if m == nil {
		t.Fatalf("%s: no page count found", path)
	}
	n, _ := strconv.Atoi(string(m[1]) + string(m[2]))
	if n < 1 || n > 4 {
		t.Errorf("the report prints on %d pages, want 1 to 4", n)
	}
}

// The console check sees what it looks for: a page that logs an error,
// throws, and tries to load what its policy forbids shows each in
// Chromium's stderr, and a page that does nothing shows none.
func TestBrowserConsoleCheckSeesErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.html")
	if err := os.WriteFile(bad, []byte(`<!DOCTYPE html><html><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'unsafe-inline'">
<link rel="icon" href="data:,"><title>bad</title></head><body>
<script>console.error("deliberate console error")</script>
<script>undefinedFunction()</script>
<img src="https://example.invalid/x.png" alt="">
</body></html>`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr := runBrowser(t, bad, "--dump-dom")
	got := strings.Join(consoleMessages(stderr), "\n")
	for _, want := range []string{"deliberate console error", "Uncaught ReferenceError", "Content Security Policy"} {
		if !strings.Contains(got, want) {
			t.Errorf("console lines lack %q; they are:\n%s\nstderr:\n%s", want, got, stderr)
		}
	}
}
