//go:build unix

package mbox

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockTries bounds the retries of flock interrupted by a signal.
const lockTries = 8

// lockFile takes an exclusive flock on f without waiting. It returns an
// error wrapping ErrLocked when another open file description holds a lock
// on the file. The lock goes with f's descriptor: closing f releases it.
func lockFile(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	for range lockTries {
		if err := rc.Control(func(fd uintptr) {
			ferr = syscall.Flock(int(fd), syscall.LOCK_EX|syscall.LOCK_NB)
		}); err != nil {
			return err
		}
		if !errors.Is(ferr, syscall.EINTR) {
			break
		}
	}
	switch {
	case ferr == nil:
		return nil
	case errors.Is(ferr, syscall.EWOULDBLOCK):
		return fmt.Errorf("%w (is another popmigrate run writing to it?)", ErrLocked)
	default:
		return fmt.Errorf("flock: %w", ferr)
	}
}
