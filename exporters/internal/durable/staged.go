package durable

import (
	"fmt"
	"sync"
)

// Staged is a group commit of files: files written with Stage wait in it
// until Publish makes them all durable with one Barrier and only then
// renames each to its final name. A file under its final name is
// therefore always complete and durable. The zero value is ready to use;
// its methods are safe for concurrent use, but the caller serialises
// Publish with whatever must follow it (the fsync of the folders renamed
// into), so that a Sync never returns before an earlier one's fsync.
type Staged struct {
	mu sync.Mutex
	m  map[string]string // final name -> temporary name
}

// Add records tmp to be published as dst. It reports false and records
// nothing when dst is already waiting: the caller removes tmp.
func (s *Staged) Add(dst, tmp string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.m[dst]; dup {
		return false
	}
	if s.m == nil {
		s.m = map[string]string{}
	}
	s.m[dst] = tmp
	return true
}

// Lookup returns the temporary name of dst while dst waits to be
// published.
func (s *Staged) Lookup(dst string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tmp, ok := s.m[dst]
	return tmp, ok
}

// Len returns how many files wait to be published.
func (s *Staged) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// Publish makes every waiting file durable with one w.Barrier, then
// renames each to its final name, replacing a file or a symbolic link
// there (it never writes through a link), and calls renamed, when not
// nil, after each rename. Files added meanwhile wait for the next Publish.
// On error the files not yet renamed keep waiting. The caller still
// fsyncs the folders renamed into.
func (s *Staged) Publish(w *Writer, renamed func(dst string)) error {
	s.mu.Lock()
	batch := make(map[string]string, len(s.m))
	files := make([]string, 0, len(s.m))
	for dst, tmp := range s.m {
		batch[dst] = tmp
		files = append(files, tmp)
	}
	s.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	if err := w.Barrier(files); err != nil {
		return err
	}
	for dst, tmp := range batch {
		if err := w.rename(tmp, dst); err != nil {
			return fmt.Errorf("rename %s to %s: %w", w.Path(tmp), w.Path(dst), err)
		}
		s.mu.Lock()
		delete(s.m, dst)
		s.mu.Unlock()
		if renamed != nil {
			renamed(dst)
		}
	}
	return nil
}
