//go:build !unix

package mbox

import (
	"errors"
	"os"
)

// lockFile fails: without flock the exporter cannot promise one writer per
// file.
func lockFile(f *os.File) error {
	return errors.New("file locking is not supported on this platform")
}
