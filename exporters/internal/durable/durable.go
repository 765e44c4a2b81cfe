// Package durable holds the file-writing steps that popmigrate's file
// exporters (Maildir, .eml) share: writing a message to a temporary file and
// renaming it into place in the order that survives a crash, fsyncing a
// folder, opening a stored file without following a planted link, and
// removing temporary files left by a crash.
//
// Every operation goes through an *os.Root, so no name leads out of the
// destination folder, by ".." or by a symbolic link. Names are relative to
// the root and use '/' as separator.
package durable

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/popmigrate/popmigrate/exporters"
)

// TmpSuffix ends the name of every file RemoveStale removes. Callers end
// the temporary names they give Write with it, so that a file left by a
// crash is cleaned up later.
const TmpSuffix = ".tmp"

const (
	chunkSize   = 64 << 10 // bytes copied per ReadAt
	createTries = 3        // attempts at a fresh tmp name
	readDirN    = 1024     // directory entries read per call
)

// Writer writes files durably under one root folder. Its methods are safe
// for use by several goroutines at once.
type Writer struct {
	// Root is the folder every operation goes through. The caller owns it
	// and closes it.
	Root *os.Root
	// ErrShortBody is wrapped in the error of a Write whose body ends
	// before its Size. Nil means exporters.ErrShortBody, the one every
	// exporter reports.
	ErrShortBody error

	dirs map[string]openDir // folders OpenDirs opened, by name; read-only after it
}

// openDir is a folder OpenDirs opened, and its descriptor, taken once
// (File.Fd on every call would do more than read it).
type openDir struct {
	f  *os.File
	fd int
}

// Path returns the path of rel (relative to the root) for error messages:
// the root's name joined with rel.
func (w *Writer) Path(rel string) string {
	return filepath.Join(w.Root.Name(), filepath.FromSlash(rel))
}

// Write stores body at dst, in the order that makes dst hold the complete
// body whenever it exists:
//
//  1. create a temporary file exclusively (O_EXCL), mode 0600, at the
//     name tmpName returns; tmpName is called again, up to 3 times in all,
//     while the name is taken;
//  2. copy exactly body.Size() bytes in chunks, checking ctx before each;
//  3. fsync and close the file, keeping the error of Close;
//  4. check ctx once more, then rename the file to dst, replacing whatever
//     sits there (a symbolic link included: Write never writes through one).
//
// On any error, cancellation included, Write removes the temporary file
// and dst is left as it was. An error from ctx or from the body is wrapped,
// so errors.Is finds it. The rename is not durable until the folder holding
// dst is fsynced (SyncDir). Errors name the temporary file's path; the
// caller adds which message it was.
func (w *Writer) Write(ctx context.Context, tmpName func() string, dst string, body exporters.Body) (err error) {
	tmp, f, err := w.create(ctx, tmpName, body)
	if err != nil {
		return err
	}
	defer func() {
		if f != nil {
			f.Close()
		}
		if err != nil {
			w.Remove(tmp)
		}
	}()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", w.Path(tmp), err)
	}
	cerr := f.Close()
	f = nil
	if cerr != nil {
		return fmt.Errorf("close %s: %w", w.Path(tmp), cerr)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := w.rename(tmp, dst); err != nil {
		return fmt.Errorf("rename %s to %s: %w", w.Path(tmp), w.Path(dst), err)
	}
	return nil
}

// Stage writes body to a new temporary file, as steps 1 and 2 of Write do,
// and closes it without fsync: the file is complete but not durable. The
// caller makes a batch of staged files durable with one Barrier, and only
// then renames them where readers look, so that a file there is always
// complete and durable. On error nothing is left behind.
func (w *Writer) Stage(ctx context.Context, tmpName func() string, body exporters.Body) (string, error) {
	tmp, f, err := w.create(ctx, tmpName, body)
	if err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		w.Remove(tmp)
		return "", fmt.Errorf("close %s: %w", w.Path(tmp), err)
	}
	return tmp, nil
}

// Create makes a new temporary file as step 1 of Write does (exclusively,
// mode 0600, at the name tmpName returns, trying up to 3 names) and
// returns its name and the file, open for writing. The caller writes it,
// closes it, and removes it on failure; Stage and Write do the rest of
// their steps on the files they create this way.
func (w *Writer) Create(tmpName func() string) (string, *os.File, error) {
	var (
		tmp string
		f   *os.File
		err error
	)
	for range createTries {
		tmp = tmpName()
		f, err = w.createExcl(tmp)
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	if err != nil {
		return "", nil, fmt.Errorf("create %s: %w", w.Path(tmp), err)
	}
	return tmp, f, nil
}

// create makes the temporary file and copies body into it; on error it
// removes the file. The caller closes the returned file.
func (w *Writer) create(ctx context.Context, tmpName func() string, body exporters.Body) (string, *os.File, error) {
	tmp, f, err := w.Create(tmpName)
	if err != nil {
		return "", nil, err
	}
	if err := w.copyBody(ctx, f, body); err != nil {
		f.Close()
		w.Remove(tmp)
		return "", nil, fmt.Errorf("write %s: %w", w.Path(tmp), err)
	}
	return tmp, f, nil
}

var chunkPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// copyBody writes exactly body.Size() bytes of body to dst, checking ctx
// before each chunk.
func (w *Writer) copyBody(ctx context.Context, dst io.Writer, body exporters.Body) error {
	bp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bp)
	buf := *bp
	size := body.Size()
	if size < 0 {
		return fmt.Errorf("negative body size %d", size)
	}
	var off int64
	for off < size {
		if err := ctx.Err(); err != nil {
			return err
		}
		want := int(min(int64(len(buf)), size-off))
		n, rerr := body.ReadAt(buf[:want], off)
		if n > 0 {
			nw, werr := dst.Write(buf[:n])
			off += int64(nw)
			if werr != nil {
				return werr
			}
		}
		switch {
		case rerr == io.EOF && off < size:
			short := w.ErrShortBody
			if short == nil {
				short = exporters.ErrShortBody
			}
			return fmt.Errorf("%w: %d of %d bytes", short, off, size)
		case rerr != nil && rerr != io.EOF:
			return fmt.Errorf("read body at offset %d: %w", off, rerr)
		case n == 0 && rerr == nil:
			return fmt.Errorf("read body at offset %d: no progress", off)
		}
	}
	if off != size {
		return fmt.Errorf("wrote %d bytes, body size is %d", off, size)
	}
	return nil
}

// SyncDir fsyncs the folder dir (relative to the root; "." is the root
// itself), making the renames and creations in it durable. The error
// names the folder.
func (w *Writer) SyncDir(dir string) error {
	if open, err := w.syncOpenDir(dir); open {
		if err != nil {
			return fmt.Errorf("fsync %s: %w", w.Path(dir), err)
		}
		return nil
	}
	d, err := w.Root.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync %s: %w", w.Path(dir), err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync %s: %w", w.Path(dir), err)
	}
	return nil
}

// OpenRegular opens name for reading if it is a regular file, without
// following a symbolic link at the final name and without blocking on a
// FIFO. An error for a missing file wraps fs.ErrNotExist. The caller
// closes the file.
func (w *Writer) OpenRegular(name string) (*os.File, error) {
	if f, ok, err := w.openRegularFast(name); ok {
		return f, err
	}
	li, err := w.Root.Lstat(name)
	if err != nil {
		return nil, err
	}
	if !li.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s)", w.Path(name), li.Mode().Type())
	}
	f, err := w.Root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !os.SameFile(li, fi) {
		f.Close()
		return nil, fmt.Errorf("%s changed while being opened", w.Path(name))
	}
	return f, nil
}

// RemoveStale removes the regular files in the folder dir whose names end
// in TmpSuffix and that were last modified before cutoff: temporary files
// left by a crash. Failing to remove one file is not an error (another
// process may have removed or renamed it); failing to read dir is.
func (w *Writer) RemoveStale(dir string, cutoff time.Time) error {
	d, err := w.Root.Open(dir)
	if err != nil {
		return fmt.Errorf("read %s: %w", w.Path(dir), err)
	}
	defer d.Close()
	for {
		entries, err := d.ReadDir(readDirN)
		for _, ent := range entries {
			if !strings.HasSuffix(ent.Name(), TmpSuffix) || !ent.Type().IsRegular() {
				continue
			}
			fi, err := ent.Info()
			if err != nil || !fi.ModTime().Before(cutoff) {
				continue
			}
			w.Remove(dir + "/" + ent.Name())
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", w.Path(dir), err)
		}
	}
}

// rootLstatType is LstatType through the root.
func (w *Writer) rootLstatType(rel string) (fs.FileMode, error) {
	fi, err := w.Root.Lstat(rel)
	if err != nil {
		return 0, err
	}
	return fi.Mode().Type(), nil
}

// RandomHex returns 16 random hex digits, for temporary file names.
func RandomHex() string {
	var b [8]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}
