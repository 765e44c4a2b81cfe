//go:build !linux

package durable

import (
	"fmt"
	"os"
)

// Barrier makes the staged files durable: an fsync of each (no syncfs
// here).
func (w *Writer) Barrier(files []string) error {
	for _, name := range files {
		f, err := w.Root.OpenFile(name, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("fsync %s: %w", w.Path(name), err)
		}
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("fsync %s: %w", w.Path(name), err)
		}
	}
	return nil
}
