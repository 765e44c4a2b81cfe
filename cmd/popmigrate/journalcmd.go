package main

import "github.com/spf13/cobra"

// newJournalCmd returns the journal command, the parent of the commands
// that work on the journal itself rather than on mailboxes. Each
// subcommand lives in its own file.
func newJournalCmd(io *iostreams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "journal",
		Short: "Work on the journal itself: enrol a migration's accounts, adopt another POP3 client's state",
		Long: `The journal subcommands change what the journal describes without
contacting any mail server.

  enrol   record accounts with their sources and destinations, so that
          workers started with popmigrate run --from-journal share them
  import  adopt the messages another POP3 client (getmail, mpop, fetchmail)
          fetched, so that run does not download them again`,
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
	return cmd
}
