package dovecottest

import "syscall"

// procAttr makes the kernel send SIGTERM to the Dovecot master if the test
// process dies without running its cleanups (a panic or a -timeout), so no
// server outlives the tests. Dovecot stops its children on SIGTERM.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
