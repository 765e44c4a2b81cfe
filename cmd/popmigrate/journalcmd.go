package main

import "github.com/spf13/cobra"

// newJournalCmd returns the journal command, the parent of the commands
// that work on the journal itself rather than on mailboxes. Each
// subcommand lives in its own file.
func newJournalCmd(io *iostreams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "journal",
		Short: "Work on the journal itself: enrol a migration's accounts, adopt another POP3 client's state, rebuild a lost journal",
		Long: `The journal subcommands change what the journal describes without
contacting any mail server.

  enrol   record accounts with their sources and destinations, so that
          workers started with popmigrate run --from-journal share them
  import  adopt the messages another POP3 client (getmail, mpop, fetchmail)
          fetched, so that run does not download them again
  rebuild record what the destinations already hold after the journal
          was lost, so that run stores only what is missing`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError("unknown command %q for %s (see %s --help)", args[0], cmd.CommandPath(), cmd.CommandPath())
			}
			return cmd.Help()
		},
	}
	cmd.AddCommand(newJournalEnrolCmd(io, nil))
	cmd.AddCommand(newJournalImportCmd(io, nil))
	cmd.AddCommand(newJournalRebuildCmd(io, nil))
	return cmd
}
