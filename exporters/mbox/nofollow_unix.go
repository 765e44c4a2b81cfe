//go:build unix

package mbox

import "syscall"

// oNoFollow makes open fail on a symbolic link at the final name.
const oNoFollow = syscall.O_NOFOLLOW
