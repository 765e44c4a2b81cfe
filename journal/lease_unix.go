//go:build unix

package journal

import (
	"errors"
	"syscall"
)

// processGone reports whether no process with this pid exists on this
// host. A pid that exists but belongs to another user (EPERM) counts as
// alive: only a certain absence lets a lease be taken before it expires.
func processGone(pid int) bool {
	if pid <= 0 {
		return false
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
