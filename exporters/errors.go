package exporters

import "errors"

// The errors every destination reports the same way. A destination wraps
// them with its package prefix and what it was doing, e.g.
// "maildir: put KEY into DIR: exporters: exporter is read-only", so that
// errors.Is finds the shared value whatever the kind.
var (
	// ErrNotFound is returned by Opener.Open when ref names no stored
	// message.
	ErrNotFound = errors.New("exporters: message not found")
	// ErrReadOnly is wrapped by Put and Sync (and Resume) of a destination
	// opened for reading only.
	ErrReadOnly = errors.New("exporters: exporter is read-only")
	// ErrClosed is wrapped by every method but Close called after Close.
	ErrClosed = errors.New("exporters: exporter closed")
	// ErrInvalidKey is wrapped by Put and Finder.Has for a message key
	// that ValidKey refuses.
	ErrInvalidKey = errors.New("exporters: invalid message key")
	// ErrShortBody is wrapped by Put when a Body ends before its Size.
	ErrShortBody = errors.New("exporters: body shorter than its size")
)
