//go:build !unix

package durable

import (
	"io/fs"
	"os"
)

// Without *at(2) calls every operation goes through the root; see
// dirs_unix.go.

// OpenDirs does nothing here.
func (w *Writer) OpenDirs(dirs ...string) error { return nil }

// CloseDirs does nothing here.
func (w *Writer) CloseDirs() {}

// OpenDir opens the folder dir (relative to the root) to read its entries.
func (w *Writer) OpenDir(dir string) (*os.File, error) { return w.Root.Open(dir) }

func (w *Writer) createExcl(rel string) (*os.File, error) {
	return w.Root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
}

func (w *Writer) rename(oldRel, newRel string) error { return w.Root.Rename(oldRel, newRel) }

// Remove removes the file rel.
func (w *Writer) Remove(rel string) error { return w.Root.Remove(rel) }

// LstatType returns the type bits of what sits at rel, without following
// a symbolic link there.
func (w *Writer) LstatType(rel string) (fs.FileMode, error) {
	return w.rootLstatType(rel)
}

func (w *Writer) openRegularFast(string) (*os.File, bool, error) { return nil, false, nil }

func (w *Writer) syncOpenDir(string) (bool, error) { return false, nil }
