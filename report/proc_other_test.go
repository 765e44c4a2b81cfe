//go:build !unix

package report

import "os/exec"

// inProcessGroup leaves cmd as it is: the context's end kills the process
// only.
func inProcessGroup(cmd *exec.Cmd) {}

// killGroup has nothing to do without process groups.
func killGroup(cmd *exec.Cmd) {}
