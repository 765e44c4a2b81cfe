package pgtest

import "syscall"

// canRunAs: procAttr can run a program as another user.
const canRunAs = true

// procAttr runs a program as runAs (nil: as the current user). For the
// server itself (server true) it also makes the kernel send it SIGINT, a
// fast shutdown, if the test process dies without stopping it (a panic or
// a -timeout), so no server outlives the tests.
func procAttr(runAs *credential, server bool) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{}
	if runAs != nil {
		a.Credential = &syscall.Credential{Uid: runAs.uid, Gid: runAs.gid, NoSetGroups: true}
	}
	if server {
		a.Pdeathsig = syscall.SIGINT
	}
	return a
}
