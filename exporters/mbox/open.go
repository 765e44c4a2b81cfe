package mbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// ErrSymlink is wrapped by the error of New, Open and ReadFile when the
// mbox file, its index or its intent log is a symbolic link: the Exporter
// never follows one, so that it cannot be led to write, cut or read a file
// other than the one it was given.
var ErrSymlink = errors.New("mbox: refusing to follow a symbolic link")

// symlinkError names the symbolic link that openFile refused.
type symlinkError struct{ path string }

func (e *symlinkError) Error() string {
	return "mbox: " + e.path + " is a symbolic link; refusing to follow it"
}

func (e *symlinkError) Is(target error) bool { return target == ErrSymlink }

// openFile opens path with flag and perm, never following a symbolic link
// at the final name (O_NOFOLLOW; where there is none, an Lstat before and
// a check that the same file was opened) and never blocking on a FIFO. A
// symbolic link fails with a *symlinkError.
func openFile(path string, flag int, perm fs.FileMode) (*os.File, error) {
	f, err := os.OpenFile(path, flag|oNoFollow|syscall.O_NONBLOCK, perm)
	if err != nil {
		if li, lerr := os.Lstat(path); lerr == nil && li.Mode()&fs.ModeSymlink != 0 {
			return nil, &symlinkError{path}
		}
		return nil, err
	}
	if oNoFollow == 0 {
		li, err := os.Lstat(path)
		if err == nil && li.Mode()&fs.ModeSymlink != 0 {
			err = &symlinkError{path}
		} else if err == nil {
			var fi fs.FileInfo
			if fi, err = f.Stat(); err == nil && !os.SameFile(li, fi) {
				err = fmt.Errorf("%s changed while being opened", path)
			}
		}
		if err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// wrapOpen returns err as New reports a failed open of what (a file name
// with its role): a symbolic link as it is, anything else naming what.
func wrapOpen(what string, err error) error {
	if errors.Is(err, ErrSymlink) {
		return err
	}
	return fmt.Errorf("mbox: open %s: %w", what, err)
}

// openRegularReadOnly opens the existing file path read-only and checks
// that it is a regular file. An error for a missing file wraps
// fs.ErrNotExist.
func openRegularReadOnly(path string) (*os.File, error) {
	f, err := openFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	if err := checkRegular(f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// openRegular opens path read-write, creating it (mode 0600) if missing,
// and checks that it is a regular file.
func openRegular(path string) (f *os.File, created bool, err error) {
	f, err = openFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		created = true
	} else if errors.Is(err, fs.ErrExist) {
		f, err = openFile(path, os.O_RDWR, 0)
	}
	if err != nil {
		return nil, false, err
	}
	if err := checkRegular(f); err != nil {
		f.Close()
		return nil, false, err
	}
	return f, created, nil
}

func checkRegular(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
