// Package units formats quantities for people, one way everywhere: the
// terminal report, check's warnings and the HTML report say the same
// "1.5 MiB" for the same count.
package units

import "fmt"

// Bytes formats n bytes with a binary unit and one decimal: "512 B",
// "1.5 KiB", "77.5 MiB".
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
