//go:build !linux

package pgtest

import "syscall"

// canRunAs: running the server as another user (the tests run as root) is
// done on Linux only; elsewhere the tests run as an unprivileged user.
const canRunAs = false

// procAttr returns nil: only Linux can tie the server's life to the test
// process; elsewhere a test binary killed before its cleanups leaves the
// server running.
func procAttr(runAs *credential, server bool) *syscall.SysProcAttr {
	return nil
}
