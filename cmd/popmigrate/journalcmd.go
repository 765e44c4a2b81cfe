package main

import "github.com/spf13/cobra"

// newJournalCmd returns the journal command, the parent of the commands
// that work on the journal itself rather than on mailboxes: enrol.
func newJournalCmd(io *iostreams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "journal",
		Short: "Work on the journal itself: enrol the accounts of a migration",
		Long: `The journal subcommands change what the journal describes without
contacting any mail server.

  enrol   record accounts with their sources and destinations, so that
          workers started with popmigrate run --from-journal share them`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newJournalEnrolCmd(io, nil))
	return cmd
}
