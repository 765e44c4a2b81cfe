package durable

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Barrier makes every file written under the root so far durable, files
// (staged with Stage) included: one syncfs(2) of the root's file system,
// the group-commit barrier, instead of one fsync per file. syncfs reports
// write-back errors since Linux 5.8. files is not needed here; other
// systems fsync each of them.
func (w *Writer) Barrier(files []string) error {
	d, err := w.Root.Open(".")
	if err != nil {
		return fmt.Errorf("syncfs %s: %w", w.Root.Name(), err)
	}
	defer d.Close()
	for {
		err = unix.Syncfs(int(d.Fd()))
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("syncfs %s: %w", w.Root.Name(), err)
	}
	return nil
}
