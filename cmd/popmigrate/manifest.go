package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/spf13/cobra"

	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/verify"
)

type manifestOptions struct {
	io      *iostreams
	Journal string
	Account string
	Out     string
}

func newManifestCmd(io *iostreams, runF func(context.Context, *manifestOptions) error) *cobra.Command {
	opts := &manifestOptions{io: io}
	cmd := &cobra.Command{
		Use:   "manifest",
		Short: "Write an account's checksum manifest, to re-verify its archive later without the journal",
		Long: `Manifest writes, from the journal, the list of an account's stored messages:
one JSON line per message, sorted by UIDL (uidl, size as received, sha256 of
the stored form, the destinations and references holding it, when it was
first seen, stored and verified), then a summary line with the count and a
root hash over every message line, so that a change to any line is detected.
popmigrate verify --manifest FILE --to DEST checks the manifest and the
archive against each other, years later, without the journal.

Manifest only reads the journal: it opens it read-only, and refuses one an
older popmigrate wrote until a run, verify or purge has upgraded it.

The file is written beside its final name, fsynced, then renamed (mode 0600):
a manifest is never left half written. --out - writes to standard output.

Exit codes: 0 written, 2 usage error (no such journal or account).`,
		Example: `  popmigrate manifest --journal popmigrate.db --account alice@mail.example.org --out alice.manifest.jsonl
  popmigrate verify --manifest alice.manifest.jsonl --to maildir:/srv/archive/alice`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return manifestRun(cmd.Context(), opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Journal, "journal", defaultJournal, "journal of the run: a SQLite `FILE` or a postgres://USER@HOST/DB URL")
	f.StringVar(&opts.Account, "account", "", "the account `NAME` as the journal has it (see popmigrate status)")
	f.StringVar(&opts.Out, "out", "", "write the manifest to `FILE` (created 0600; - for standard output)")
	return cmd
}

func manifestRun(ctx context.Context, opts *manifestOptions) error {
	if opts.Account == "" {
		return usageError("give --account NAME (popmigrate status lists the accounts)")
	}
	if opts.Out == "" {
		return usageError("give --out FILE (or --out - for standard output)")
	}
	if _, err := os.Stat(opts.Journal); err != nil && !journal.IsPostgres(opts.Journal) {
		return usageError("journal %s: %v (give --journal FILE of the run that stored the messages)", opts.Journal, err)
	}
	j, err := journal.OpenReadOnly(ctx, opts.Journal)
	if err != nil {
		return usageError("%w", err)
	}
	defer j.Close()
	st, err := j.Status(ctx)
	if err != nil {
		return err
	}
	var names []string
	for _, s := range st {
		names = append(names, s.Account)
	}
	if !slices.Contains(names, opts.Account) {
		return usageError("the journal %s has no account %q (it has %q)", j.Path(), opts.Account, names)
	}
	if opts.Out == "-" {
		return verify.WriteManifest(ctx, j, opts.Account, opts.io.Out)
	}
	tail := &tailWriter{}
	err = writeFileAtomic(opts.Out, func(w io.Writer) error {
		return verify.WriteManifest(ctx, j, opts.Account, io.MultiWriter(w, tail))
	})
	if err != nil {
		return err
	}
	var sum struct {
		Count int    `json:"count"`
		Root  string `json:"root"`
	}
	if err := json.Unmarshal(tail.lastLine(), &sum); err != nil {
		return fmt.Errorf("manifest %s: reading back its summary: %w", opts.Out, err)
	}
	fmt.Fprintf(opts.io.Out, "%s: %d messages of account %s, root %s\n", opts.Out, sum.Count, opts.Account, sum.Root)
	return nil
}

// writeFileAtomic writes path through write: into a temporary file in the
// same folder (mode 0600), fsynced and closed, then renamed over path, and
// the folder fsynced. On error the temporary file is removed and path is
// left as it was.
func writeFileAtomic(path string, write func(io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
			err = fmt.Errorf("write %s: %w", path, err)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if err := write(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	serr := d.Sync()
	if cerr := d.Close(); serr == nil {
		serr = cerr
	}
	if serr != nil {
		return fmt.Errorf("fsync folder: %w", serr)
	}
	return nil
}

// tailWriter keeps the last bytes written to it, enough for the last line
// of a manifest.
type tailWriter struct{ buf []byte }

const tailKeep = 64 << 10

func (t *tailWriter) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*tailKeep {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailKeep:]...)
	}
	return len(p), nil
}

// lastLine returns the last complete line, without its LF.
func (t *tailWriter) lastLine() []byte {
	b := bytes.TrimSuffix(t.buf, []byte("\n"))
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[i+1:]
	}
	return b
}
