package report

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// FileMode is the mode of a report file. A report holds no secret (sources
// are recorded without passwords, and no credential ever reaches the
// journal) and is made to be handed on, so it is readable by all.
const FileMode os.FileMode = 0o644

// WriteFile writes r's HTML page to path atomically: into a temporary file
// in the same folder, which is synced, given FileMode and renamed over
// path, and then the folder is synced. A reader of path sees the previous
// file or the whole new one, never a part. On error path is left as it
// was and the temporary file is removed.
func (r *Report) WriteFile(path string) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".*.tmp")
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := r.WriteHTML(f); err != nil {
		return fmt.Errorf("report: write %s: %w", tmp, err)
	}
	if err := f.Chmod(FileMode); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return syncDir(dir)
}

// syncDir makes a rename in dir durable. A system that cannot sync a
// folder (it refuses to open one for that) is not an error: the rename
// happened.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return nil
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("report: sync %s: %w", dir, err)
	}
	return nil
}
