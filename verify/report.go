package verify

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// WriteReport writes results as a text report in the manner of rclone
// check: one line per finding (see Finding.String), problems and notes
// alike, then a line per result that could not be completed ("! ACCOUNT
// not verified completely: ERROR"), then the counts:
//
//	ACCOUNT: N copies checked: N match, N missing, ...   (one per result)
//	N accounts: N copies checked: N match, ...           (unless one result)
//	N problems, N notes
//
// Counts of zero are left out. WriteReport returns the first write error.
func WriteReport(w io.Writer, results []*Result) error {
	bw := bufio.NewWriter(w)
	for _, r := range results {
		for _, f := range r.Findings {
			fmt.Fprintln(bw, f.String())
		}
	}
	for _, r := range results {
		if r.Error != "" {
			fmt.Fprintf(bw, "! %s not verified completely: %s\n", quote(r.Account), clean(r.Error))
		}
	}
	var checked, problems, notes int
	total := map[Kind]int{}
	for _, r := range results {
		checked += r.Checked
		problems += r.Problems()
		for k, n := range r.Counts {
			total[k] += n
			if !(Finding{Kind: k}).Problem() && k != Match {
				notes += n
			}
		}
		fmt.Fprintf(bw, "%s: %d copies checked%s\n", quote(r.Account), r.Checked, countList(r.Counts))
	}
	if len(results) != 1 {
		fmt.Fprintf(bw, "%d accounts: %d copies checked%s\n", len(results), checked, countList(total))
	}
	fmt.Fprintf(bw, "%d problems, %d notes\n", problems, notes)
	return bw.Flush()
}

// countList returns ": N match, N missing, ..." for the non-zero counts, in
// the order of Kinds, or "".
func countList(counts map[Kind]int) string {
	var parts []string
	for _, k := range Kinds {
		if n := counts[k]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, k))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return ": " + strings.Join(parts, ", ")
}
