//go:build unix

package durable

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// The folder fast path. os.Root resolves every name component by
// component on every call: an operation on "new/NAME" opens new/, acts,
// and closes it again, and a rename from tmp/ to new/ opens both. A
// Maildir message costs about ten such calls (look for the key in new/,
// create in tmp/, rename into new/, open to read back), so for small
// messages the folder opens cost more CPU than the message itself
// (BenchmarkRunSmallMessages, ./pipeline: the os.Root calls took about 105
// µs of 200 µs per message). os.Root offers no way to keep a sub-folder
// open and rename between two of them, hence these few *at(2) calls on
// folders opened once through Root. They take only a name without '/'
// (never "." or ".."), never follow a symbolic link at it (O_NOFOLLOW,
// AT_SYMLINK_NOFOLLOW; renameat(2) and unlinkat(2) act on the link), and
// so stay inside the folder exactly as Root does. Anything else (a name
// in another folder, a platform without *at calls) goes through Root.

// OpenDirs opens each of dirs (folders relative to the root, without '/')
// once, for the operations of the Writer on files directly in them. It is
// called before any other method and not concurrently with them; the
// caller calls CloseDirs before closing the root. A folder that cannot be
// opened is an error naming it, and nothing stays open.
func (w *Writer) OpenDirs(dirs ...string) error {
	opened := map[string]openDir{}
	for _, d := range dirs {
		f, err := w.Root.Open(d)
		if err == nil {
			var fi fs.FileInfo
			if fi, err = f.Stat(); err == nil && !fi.IsDir() {
				err = errors.New("not a folder")
			}
			if err != nil {
				f.Close()
			}
		}
		if err != nil {
			for _, o := range opened {
				o.f.Close()
			}
			return fmt.Errorf("open %s: %w", w.Path(d), err)
		}
		opened[d] = openDir{f: f, fd: int(f.Fd())}
	}
	w.dirs = opened
	return nil
}

// CloseDirs closes the folders OpenDirs opened; later operations go
// through the root.
func (w *Writer) CloseDirs() {
	for _, o := range w.dirs {
		o.f.Close()
	}
	w.dirs = nil
}

// OpenDir opens the folder dir (relative to the root) to read its entries.
// An open folder (see OpenDirs) is opened again through its descriptor
// (openat(2) of "."), a new open file of its own, so that File.ReadDir
// takes each entry's type from the folder's entries: a folder opened
// through an os.Root makes ReadDir lstat every entry. Another folder is
// opened through the root. The caller closes the File.
func (w *Writer) OpenDir(dir string) (*os.File, error) {
	o, open := w.dirs[dir]
	if !open {
		return w.Root.Open(dir)
	}
	var fd int
	err := retryEINTR(func() (err error) {
		fd, err = unix.Openat(o.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return nil, &fs.PathError{Op: "openat", Path: dir, Err: err}
	}
	return os.NewFile(uintptr(fd), w.Path(dir)), nil
}

// in returns the descriptor of the open folder rel lies directly in and
// rel's name within it, or ok false.
func (w *Writer) in(rel string) (fd int, name string, ok bool) {
	if w.dirs == nil {
		return 0, "", false
	}
	dir, name, found := strings.Cut(rel, "/")
	if !found || name == "" || name == "." || name == ".." || strings.Contains(name, "/") {
		return 0, "", false
	}
	o, open := w.dirs[dir]
	if !open {
		return 0, "", false
	}
	return o.fd, name, true
}

// retryEINTR calls f until it fails with something other than EINTR.
func retryEINTR(f func() error) error {
	for {
		if err := f(); err != unix.EINTR {
			return err
		}
	}
}

// createExcl creates rel exclusively (O_EXCL, mode 0600) for writing.
func (w *Writer) createExcl(rel string) (*os.File, error) {
	fd, name, ok := w.in(rel)
	if !ok {
		return w.Root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	}
	var nfd int
	err := retryEINTR(func() (err error) {
		nfd, err = unix.Openat(fd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		return err
	})
	if err != nil {
		return nil, &fs.PathError{Op: "openat", Path: rel, Err: err}
	}
	return os.NewFile(uintptr(nfd), w.Path(rel)), nil
}

// rename renames oldRel to newRel, replacing a file or a symbolic link at
// newRel.
func (w *Writer) rename(oldRel, newRel string) error {
	ofd, oname, ok1 := w.in(oldRel)
	nfd, nname, ok2 := w.in(newRel)
	if !ok1 || !ok2 {
		return w.Root.Rename(oldRel, newRel)
	}
	if err := retryEINTR(func() error { return unix.Renameat(ofd, oname, nfd, nname) }); err != nil {
		return &os.LinkError{Op: "renameat", Old: oldRel, New: newRel, Err: err}
	}
	return nil
}

// Remove removes the file rel (a temporary file, as a rule). The error
// wraps fs.ErrNotExist when there is none.
func (w *Writer) Remove(rel string) error {
	fd, name, ok := w.in(rel)
	if !ok {
		return w.Root.Remove(rel)
	}
	err := retryEINTR(func() error { return unix.Unlinkat(fd, name, 0) })
	if err == unix.EISDIR || err == unix.EPERM {
		return w.Root.Remove(rel) // an empty folder, as Root.Remove would
	}
	if err != nil {
		return &fs.PathError{Op: "unlinkat", Path: rel, Err: err}
	}
	return nil
}

// LstatType returns the type bits of what sits at rel (0 for a regular
// file, fs.ModeDir, fs.ModeSymlink, ...) without following a symbolic
// link there. The error wraps fs.ErrNotExist when nothing does.
func (w *Writer) LstatType(rel string) (fs.FileMode, error) {
	fd, name, ok := w.in(rel)
	if !ok {
		return w.rootLstatType(rel)
	}
	var st unix.Stat_t
	if err := retryEINTR(func() error { return unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) }); err != nil {
		return 0, &fs.PathError{Op: "fstatat", Path: rel, Err: err}
	}
	return typeBits(uint32(st.Mode)), nil
}

// typeBits converts the file type of a stat(2) mode to fs.FileMode's.
func typeBits(mode uint32) fs.FileMode {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return 0
	case unix.S_IFDIR:
		return fs.ModeDir
	case unix.S_IFLNK:
		return fs.ModeSymlink
	case unix.S_IFIFO:
		return fs.ModeNamedPipe
	case unix.S_IFSOCK:
		return fs.ModeSocket
	case unix.S_IFCHR:
		return fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		return fs.ModeDevice
	}
	return fs.ModeIrregular
}

// openRegularFast is OpenRegular for a file directly in an open folder: it
// returns ok false, and OpenRegular takes the root's way (which also words
// every refusal), for anything but a regular file opened as found.
func (w *Writer) openRegularFast(rel string) (f *os.File, ok bool, err error) {
	fd, name, in := w.in(rel)
	if !in {
		return nil, false, nil
	}
	var before, after unix.Stat_t
	if err := retryEINTR(func() error { return unix.Fstatat(fd, name, &before, unix.AT_SYMLINK_NOFOLLOW) }); err != nil {
		if err == unix.ENOENT {
			return nil, true, &fs.PathError{Op: "fstatat", Path: rel, Err: err}
		}
		return nil, false, nil
	}
	if uint32(before.Mode)&unix.S_IFMT != unix.S_IFREG {
		return nil, false, nil
	}
	var nfd int
	err = retryEINTR(func() (err error) {
		nfd, err = unix.Openat(fd, name, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return nil, false, nil
	}
	if unix.Fstat(nfd, &after) != nil || after.Dev != before.Dev || after.Ino != before.Ino {
		unix.Close(nfd)
		return nil, false, nil
	}
	return os.NewFile(uintptr(nfd), w.Path(rel)), true, nil
}

// syncOpenDir fsyncs dir when it is an open folder, and reports whether
// it was.
func (w *Writer) syncOpenDir(dir string) (bool, error) {
	o, open := w.dirs[dir]
	if !open {
		return false, nil
	}
	return true, o.f.Sync()
}
