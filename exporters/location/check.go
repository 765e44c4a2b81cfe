package location

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/popmigrate/popmigrate/internal/units"
)

// spaceMargin is the share of free space a run should leave: file systems
// fill up around their last few percent, and a destination's own files
// (indexes, directories) add to the messages.
const spaceMargin = 1.1

// CheckPath checks a file destination at path for need, changing nothing:
// what exists must be of the right type (a directory, or with file a
// regular file), the nearest existing folder must be writable (a missing
// destination is created by the run), and its file system must have room
// for need.Bytes and a margin.
func CheckPath(path string, file bool, need Need) ([]string, error) {
	var warnings []string
	fi, err := os.Stat(path)
	switch {
	case err == nil && file && !fi.Mode().IsRegular():
		return nil, fmt.Errorf("%s is not a regular file", path)
	case err == nil && !file && !fi.IsDir():
		return nil, fmt.Errorf("%s is not a directory", path)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	dir := path
	if err != nil || file {
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("%s does not exist yet: the run creates it", path))
		}
		dir = filepath.Dir(path)
		for {
			if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
				break
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	free, err := writableFree(dir)
	if err != nil {
		return warnings, err
	}
	if want := int64(float64(need.Bytes) * spaceMargin); want > free {
		return warnings, fmt.Errorf("%s has %s free, the mailbox needs %s (with a 10%% margin)", dir, units.Bytes(free), units.Bytes(want))
	}
	return warnings, nil
}
