//go:build unix

package location

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// writableFree checks that dir is writable and searchable by this process
// (access(2), which answers for its real ids, ACLs and read-only mounts
// included) and returns the bytes an unprivileged writer may still use on
// its file system.
func writableFree(dir string) (int64, error) {
	if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
		return 0, fmt.Errorf("%s is not writable: %w", dir, err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("free space of %s: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}
