//go:build unix

package journal

import (
	"errors"
	"os"
	"strings"
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

// processSpace names the pid space of this process: the boot (a pid of
// another boot names nothing) and, on Linux, the pid namespace, so that
// two containers with one host name are told apart. It is "" where the
// system says neither.
func processSpace() string {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	ns, err := os.Readlink("/proc/self/ns/pid") // "pid:[4026531836]"
	if err != nil {
		return ""
	}
	ns = strings.TrimSuffix(strings.TrimPrefix(ns, "pid:["), "]")
	b := strings.TrimSpace(string(boot))
	if len(b) > 8 {
		b = b[:8]
	}
	return b + "-" + ns
}
