package main

import "errors"

// outcome is how a command that works on accounts ended, as its report
// and its errors say. Each command computes its own (runOutcome,
// verifyOutcome, purgeOutcome); outcome.code is the one place an ending
// becomes an exit code, the one the journal records for the run and the
// one the process exits with.
type outcome struct {
	// Interrupted: the command was cancelled (Ctrl-C, SIGTERM) before it
	// finished its work.
	Interrupted bool
	// Err is the command's own failure rather than an account's: the
	// journal could not record what was done, or a phase could not run.
	// Main prints it as it is.
	Err error
	// Mismatch: a verification found stored copies that contradict the
	// journal (or the manifest).
	Mismatch bool
	// Failed: some account or message failed, or could not be verified or
	// purged completely.
	Failed bool
}

// code returns o's exit code: the first of these that holds decides.
// Interrupted is 130, the command's own error 1, a mismatch 3, a failure
// 1; an outcome with none of them is whole, 0.
func (o outcome) code() int {
	switch {
	case o.Interrupted:
		return exitInterrupted
	case o.Err != nil:
		return exitFailed
	case o.Mismatch:
		return exitMismatch
	case o.Failed:
		return exitFailed
	}
	return exitOK
}

// outcomeText is what a command prints on stderr when it ends interrupted,
// with a mismatch, or failed. The command's own error is printed as it is.
type outcomeText struct {
	Interrupted, Mismatch, Failed string
}

// err returns the error that ends a command with outcome o: nil when o is
// whole, else an *exitError with o.code() and the text of the fact that
// decided it.
func (o outcome) err(t outcomeText) error {
	code := o.code()
	var err error
	switch {
	case code == exitOK:
		return nil
	case o.Interrupted:
		err = errors.New(t.Interrupted)
	case o.Err != nil:
		err = o.Err
	case o.Mismatch:
		err = errors.New(t.Mismatch)
	default:
		err = errors.New(t.Failed)
	}
	return &exitError{code: code, err: err}
}
