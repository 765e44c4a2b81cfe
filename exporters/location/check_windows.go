//go:build windows

package location

import (
	"fmt"
	"os"

	"golang.org/x/sys/windows"
)

// writableFree checks that dir is a folder this process can create files
// in and returns the bytes free for this user on its volume. Windows has
// no access(2): a read-only attribute on a folder does not stop creating
// files in it, and ACLs decide. Only creating a file answers for them,
// which a check that changes nothing cannot do: here the folder's
// existence is checked, and the run's first write answers the rest.
func writableFree(dir string) (int64, error) {
	if _, err := os.Stat(dir); err != nil {
		return 0, fmt.Errorf("%s is not writable: %w", dir, err)
	}
	p, err := windows.UTF16PtrFromString(dir)
	if err != nil {
		return 0, fmt.Errorf("free space of %s: %w", dir, err)
	}
	var free uint64
	if err := windows.GetDiskFreeSpaceEx(p, &free, nil, nil); err != nil {
		return 0, fmt.Errorf("free space of %s: %w", dir, err)
	}
	return int64(free), nil
}
