package main

import (
	"fmt"
	"io"

	"github.com/popmigrate/popmigrate/config"
)

// printConfigWarnings prints on w (stderr) the warnings about the files
// behind accounts, once each (config.Warnings): a password or token file,
// or an accounts CSV or config file holding passwords, that others can
// read. They do not stop the command.
func printConfigWarnings(w io.Writer, accounts []*config.Account) {
	for _, msg := range config.Warnings(accounts) {
		fmt.Fprintf(w, "popmigrate: WARNING: %s\n", msg)
	}
}
