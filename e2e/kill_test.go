package e2e

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/journal"
)

// stalledRun is popmigrate running against a stallProxy, to be killed
// with SIGKILL at a moment the test chooses.
type stalledRun struct {
	proxy          *stallProxy
	exited         chan struct{} // closed when waitErr is set
	waitErr        error
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
}

// startStalled starts popmigrate with args (and env added to this
// process's environment) and returns once proxy has stalled the server's
// output. The process is killed when the test ends, if it still runs.
func startStalled(t *testing.T, proxy *stallProxy, env []string, args ...string) *stalledRun {
	t.Helper()
	r := &stalledRun{proxy: proxy, exited: make(chan struct{}), cmd: exec.Command(popmigrateBin, args...)}
	r.cmd.Env = append(os.Environ(), env...)
	r.cmd.Stdout, r.cmd.Stderr = &r.stdout, &r.stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		r.waitErr = r.cmd.Wait()
		close(r.exited)
	}()
	t.Cleanup(func() {
		r.cmd.Process.Kill()
		<-r.exited
	})
	select {
	case <-proxy.stalled:
	case <-r.exited:
		t.Fatalf("popmigrate ended (%v) before the server stalled:\n%s\n%s", r.waitErr, r.stdout.String(), r.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatal("the proxy never reached its limit within 30s")
	}
	return r
}

// kill sends SIGKILL, checks that popmigrate died of it, and lets the
// proxy forward again.
func (r *stalledRun) kill(t *testing.T) {
	t.Helper()
	if err := r.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.exited:
		var ee *exec.ExitError
		if !errors.As(r.waitErr, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("popmigrate did not die of SIGKILL: %v\n%s", r.waitErr, r.stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("popmigrate survived SIGKILL for 10s")
	}
	r.proxy.Release()
}

// committedCount returns how many of account's messages the journal at
// jpath records as stored (or verified: with verify on, the writer reads
// each copy back before the batch that records it commits).
func committedCount(t *testing.T, jpath, account string) int {
	t.Helper()
	c := 0
	for _, r := range journalMessages(t, jpath, account) {
		if r.State == journal.StateStored || r.State == journal.StateVerified {
			c++
		}
	}
	return c
}
