package eml

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/popmigrate/popmigrate/exporters"
)

// Stream starts writing the message with key, downloaded from account,
// into a fresh temporary file, <account-dir>/.tmp/<key>.<random>.tmp, as
// Put would, and returns the Stream that takes its bytes. If the account
// folder already holds the key, under whatever date, Stream writes nothing
// and returns a nil Stream and the copy's Ref, as Put would.
//
// The name of a message file starts with the message's date, which is in
// its header: the Stream keeps the first MaxHeaderScan bytes written (no
// more, whatever the message's size) and Commit names the file from them
// exactly as Put names it from the same bytes. A Stream has no
// msg.Received: where the header has no usable date, the fallback is the
// time of Commit, which is when the pipeline hands a downloaded message to
// its destinations (a Put's msg.Received is the time of that call).
//
// Commit checks the length, closes the file and stages it for the next
// Sync, exactly as Put does once it has copied a body: the file keeps its
// temporary name until Sync makes it durable and renames it into the
// account folder. When a Put or another Stream of the key committed first,
// Commit removes its file and returns that copy's Ref. Abort, a failed
// Commit, or Close of the Exporter removes the temporary file. A read-only
// Exporter fails with exporters.ErrReadOnly and writes nothing.
func (e *Exporter) Stream(ctx context.Context, account, key string) (exporters.Stream, exporters.Delivery, error) {
	if e.readOnly {
		return nil, exporters.Delivery{}, fmt.Errorf("eml: stream %s (account %q) into %s: %w", key, account, e.dir, exporters.ErrReadOnly)
	}
	if err := checkKey(key); err != nil {
		return nil, exporters.Delivery{}, fmt.Errorf("eml: stream into %s: %w", e.dir, err)
	}
	wrap := func(err error) error {
		return fmt.Errorf("eml: stream %s (account %q) into %s: %w", key, account, e.dir, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, exporters.Delivery{}, wrap(err)
	}
	if err := e.begin(); err != nil {
		return nil, exporters.Delivery{}, wrap(err)
	}
	defer e.ops.RUnlock()
	acct := AccountDir(account)
	if err := e.loadAccount(acct, true); err != nil {
		return nil, exporters.Delivery{}, wrap(err)
	}
	ref, err := e.lookup(acct, key)
	if err != nil || ref != "" {
		if err != nil {
			err = wrap(err)
		}
		return nil, exporters.Delivery{Ref: ref}, err
	}
	tmp, f, err := e.w.Create(e.tmpName(acct, key))
	if err != nil {
		return nil, exporters.Delivery{}, wrap(err)
	}
	hp := headerPool.Get().(*[]byte)
	s := &stream{e: e, account: account, acct: acct, key: key, tmp: tmp, f: f, hp: hp, head: (*hp)[:0]}
	e.mu.Lock()
	if e.streams == nil {
		e.streams = map[*stream]bool{}
	}
	e.streams[s] = true
	e.mu.Unlock()
	return s, exporters.Delivery{}, nil
}

// stream is a message being written into its account's TmpDir by Stream.
type stream struct {
	e       *Exporter
	account string // the account id, for errors
	acct    string // its folder, AccountDir(account)
	key     string
	tmp     string // name of the temporary file, relative to the root

	mu   sync.Mutex // guards the fields below against Close of the Exporter
	f    *os.File   // nil once committed or aborted
	n    int64      // bytes written
	err  error      // the first write error
	hp   *[]byte    // head's buffer, from headerPool; nil once given back
	head []byte     // the first MaxHeaderScan bytes written, for the date
}

func (s *stream) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.err != nil:
		return 0, s.err
	case s.f == nil:
		return 0, fmt.Errorf("eml: stream %s (account %q) into %s: %w", s.key, s.account, s.e.dir, exporters.ErrClosed)
	}
	n, err := s.f.Write(p)
	s.n += int64(n)
	if k := min(n, MaxHeaderScan-len(s.head)); k > 0 {
		s.head = append(s.head, p[:k]...)
	}
	if err != nil {
		s.err = fmt.Errorf("eml: stream %s (account %q) into %s: write %s: %w", s.key, s.account, s.e.dir, s.e.w.Path(s.tmp), err)
		return n, s.err
	}
	return n, nil
}

func (s *stream) Commit(ctx context.Context, size int64) (exporters.Delivery, error) {
	e := s.e
	wrap := func(err error) error {
		return fmt.Errorf("eml: put %s (account %q) into %s: %w", s.key, s.account, e.dir, err)
	}
	if err := e.begin(); err != nil {
		s.Abort() // Close has aborted it already
		return exporters.Delivery{}, wrap(err)
	}
	defer e.ops.RUnlock()
	s.mu.Lock()
	f, n, werr, hp, head := s.f, s.n, s.err, s.hp, s.head
	s.f, s.hp, s.head = nil, nil, nil
	s.mu.Unlock()
	if f == nil {
		return exporters.Delivery{}, wrap(errors.New("stream already ended"))
	}
	defer headerPool.Put(hp)
	e.untrack(s)
	received := time.Now()
	err := werr
	switch {
	case err != nil:
	case n != size:
		err = fmt.Errorf("write %s: %w: %d of %d bytes", e.w.Path(s.tmp), exporters.ErrShortBody, n, size)
	default:
		err = ctx.Err()
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close %s: %w", e.w.Path(s.tmp), cerr)
	}
	var ref string
	if err == nil {
		ref, err = e.commitTmp(ctx, s.acct, s.key, fileName(nameDate(head, received), s.key), s.tmp)
	}
	if err != nil {
		e.root.Remove(s.tmp)
		if err == werr {
			return exporters.Delivery{}, err
		}
		return exporters.Delivery{}, wrap(err)
	}
	return exporters.Delivery{Ref: ref}, nil
}

// commitTmp stages tmp, the complete temporary file of the message with
// key in the account folder acct, to be published as name, as Put stages
// the file it wrote, and returns its reference. When the folder came to
// hold the key since the stream started (a Put or another stream of the
// key), commitTmp removes tmp and returns that copy's reference. On error
// the caller removes tmp. The caller holds ops shared.
func (e *Exporter) commitTmp(ctx context.Context, acct, key, name, tmp string) (string, error) {
	release, err := e.claim(ctx, acct+"/"+key)
	if err != nil {
		return "", err
	}
	defer release()
	ref, err := e.lookup(acct, key)
	if err != nil {
		return "", err
	}
	if ref != "" {
		e.root.Remove(tmp)
		return ref, nil
	}
	if err := e.checkFinal(acct, name); err != nil {
		return "", err
	}
	return e.place(acct, key, name, tmp), nil
}

func (s *stream) Abort() {
	s.mu.Lock()
	f, hp := s.f, s.hp
	s.f, s.hp, s.head = nil, nil, nil
	s.mu.Unlock()
	if f == nil {
		return
	}
	headerPool.Put(hp)
	f.Close()
	s.e.untrack(s)
	// The root stays open while Close aborts streams, and a stream that
	// Close aborted is not aborted again here.
	s.e.root.Remove(s.tmp)
}

// untrack forgets s, committed or aborted.
func (e *Exporter) untrack(s *stream) {
	e.mu.Lock()
	delete(e.streams, s)
	e.mu.Unlock()
}
