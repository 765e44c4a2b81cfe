package eml

import (
	"context"
	"fmt"
	"time"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/exporters/internal/durable"
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
	t, err := e.w.CreateTemp(&e.streams, e.tmpName(acct, key), MaxHeaderScan,
		fmt.Sprintf("eml: stream %s (account %q) into %s", key, account, e.dir))
	if err != nil {
		return nil, exporters.Delivery{}, wrap(err)
	}
	return &stream{Temp: t, e: e, account: account, acct: acct, key: key}, exporters.Delivery{}, nil
}

// stream is a message being written into its account's TmpDir by Stream;
// its Temp keeps the first MaxHeaderScan bytes, for the date.
type stream struct {
	*durable.Temp
	e       *Exporter
	account string // the account id, for errors
	acct    string // its folder, AccountDir(account)
	key     string
}

var _ exporters.Ender = (*stream)(nil)

// End closes the file now, for a Commit later (exporters.Ender).
func (s *stream) End(ctx context.Context, size int64) error {
	return s.Temp.End(ctx, size, s.wrap)
}

func (s *stream) wrap(err error) error {
	return fmt.Errorf("eml: put %s (account %q) into %s: %w", s.key, s.account, s.e.dir, err)
}

func (s *stream) Commit(ctx context.Context, size int64) (exporters.Delivery, error) {
	e, wrap := s.e, s.wrap
	if err := e.begin(); err != nil {
		s.Abort() // Close has aborted it already
		return exporters.Delivery{}, wrap(err)
	}
	defer e.ops.RUnlock()
	defer s.Release()
	head, err := s.Finish(ctx, size, wrap)
	if err != nil {
		return exporters.Delivery{}, err
	}
	received := time.Now()
	ref, err := e.commitTmp(ctx, s.acct, s.key, fileName(nameDate(head, received), s.key), s.Name())
	if err != nil {
		e.root.Remove(s.Name())
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
