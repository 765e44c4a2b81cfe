//go:build !linux

package dovecottest

import "syscall"

// procAttr returns nil: only Linux can tie the master's life to the test
// process; elsewhere a test binary killed before its cleanups leaves the
// server running.
func procAttr() *syscall.SysProcAttr {
	return nil
}
