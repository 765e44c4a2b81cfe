package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/popmigrate/popmigrate/journal"
)

// Exit codes, documented in --help and the README.
const (
	exitOK          = 0   // every account whole
	exitFailed      = 1   // some account or message failed
	exitUsage       = 2   // usage or configuration error
	exitMismatch    = 3   // verification found a mismatch
	exitInterrupted = 130 // interrupted (Ctrl-C, SIGTERM)
)

const exitCodesHelp = `Exit codes:
  0    every account is whole: all messages stored in every destination
  1    some account or message failed (see the report)
  2    usage or configuration error; nothing was done
  3    verification found a mismatch
  130  interrupted (Ctrl-C or SIGTERM); run again to resume`

// exitError carries an exit code through cobra. A nil err means the
// command already reported everything it had to say.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

func usageError(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// iostreams are where a command writes: results to Out, everything else
// (progress, warnings, logs) to Err.
type iostreams struct {
	Out, Err io.Writer
	// ErrIsTerminal says Err is a terminal: progress bars are drawn only then.
	ErrIsTerminal bool
}

func newRootCmd(io *iostreams) *cobra.Command {
	root := &cobra.Command{
		Use:   "popmigrate",
		Short: "Move mail off POP3 servers, safely and fast",
		Long: `popmigrate downloads every message of one or many POP3 mailboxes into
Maildir, mbox, .eml files or an IMAP folder, records each step in a SQLite
journal, resumes an interrupted run with nothing lost and nothing duplicated,
verifies what it stored, and only then, when asked, deletes from the source.

` + exitCodesHelp,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(io.Out)
	root.SetErr(io.Err)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &exitError{code: exitUsage, err: fmt.Errorf("%w (see %s --help)", err, c.CommandPath())}
	})
	root.AddCommand(newRunCmd(io, nil))
	root.AddCommand(newStatusCmd(io, nil))
	root.AddCommand(newCheckCmd(io, nil))
	root.AddCommand(newPurgeCmd(io, nil))
	root.AddCommand(newVerifyCmd(io, nil))
	root.AddCommand(newManifestCmd(io, nil))
	root.AddCommand(newReportCmd(io, nil))
	root.AddCommand(newJournalCmd(io))
	return root
}

// Main runs popmigrate with args and returns the exit code. SIGINT and
// SIGTERM cancel the run: what was stored is committed, the rest resumes
// on the next run.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Progress, warnings and logs reach stderr from many goroutines.
	ios := &iostreams{Out: stdout, Err: &lockedWriter{w: stderr}, ErrIsTerminal: isTerminal(stderr)}
	root := newRootCmd(ios)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	return exitCode(ctx, err, stderr)
}

// corruptJournalHint says what to do about a damaged journal.
const corruptJournalHint = `popmigrate: the journal file is damaged or is not a popmigrate journal; running again will not help.
  Restore it from a backup, or try "sqlite3 FILE .recover | sqlite3 NEW" and pass --journal NEW.
  Or move it aside and rebuild a new one from the destinations: popmigrate journal rebuild with the
  run's accounts, --to and a new --journal, then run with it (an IMAP folder receives no second copy).
  Never purge with a new journal before a run and a verify have read every copy back.`

// unwrapExit returns the error an *exitError carries, or err.
func unwrapExit(err error) error {
	var ee *exitError
	if errors.As(err, &ee) && ee.err != nil {
		return ee.err
	}
	return err
}

func exitCode(ctx context.Context, err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	// A damaged journal is not a failure a retry fixes: it is exit 2,
	// with what to do, whichever command met it.
	if journal.IsCorrupt(err) {
		fmt.Fprintf(stderr, "popmigrate: %v\n%s\n", unwrapExit(err), corruptJournalHint)
		return exitUsage
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(stderr, "popmigrate: %v\n", ee.err)
		}
		return ee.code
	}
	if ctx.Err() != nil || errors.Is(err, context.Canceled) {
		fmt.Fprintln(stderr, "popmigrate: interrupted; run the same command again to resume")
		return exitInterrupted
	}
	fmt.Fprintf(stderr, "popmigrate: %v\n", err)
	// Cobra's own argument errors are usage errors.
	return exitUsage
}

// lockedWriter serialises the Writes of several goroutines to w (an
// *os.File is safe for that, a bytes.Buffer is not).
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// isTerminal reports whether w is an *os.File open on a terminal. A
// character device that is not a terminal (/dev/null) is not one.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
