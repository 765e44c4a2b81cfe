//go:build !linux

package pipeline

import (
	"errors"
	"os"
)

// openTmpfile is not available here: the caller falls back to a file
// unlinked right after its creation.
func openTmpfile(dir string) (*os.File, error) {
	return nil, errors.New("no O_TMPFILE")
}
