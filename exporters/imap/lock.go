package imap

import (
	"context"
)

// keyState is the Put of one key: running until done is closed, then
// stored at ref (or failed, and removed from the map).
type keyState struct {
	done chan struct{}
	ref  string
}

// lockKey makes the caller the Put of key, or returns the Ref of an
// earlier Put of key. A Put of the same key in flight is waited for.
func (e *Exporter) lockKey(ctx context.Context, key string) (ref string, owner bool, err error) {
	for {
		e.mu.Lock()
		ks := e.keys[key]
		if ks == nil {
			e.keys[key] = &keyState{done: make(chan struct{})}
			e.mu.Unlock()
			return "", true, nil
		}
		if ks.ref != "" {
			e.mu.Unlock()
			return ks.ref, false, nil
		}
		e.mu.Unlock()
		select {
		case <-ks.done:
		case <-ctx.Done():
			return "", false, ctx.Err()
		}
	}
}

// unlockKey ends the Put of key: stored at ref, or failed when ref is "".
func (e *Exporter) unlockKey(key, ref string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ks := e.keys[key]
	if ref == "" {
		delete(e.keys, key)
	} else {
		ks.ref = ref
	}
	close(ks.done)
}
