// Command popmigrate moves mail off POP3 servers: it downloads every
// mailbox of a migration concurrently, stores each message in every
// destination, records what it did in a journal so that an interrupted run
// resumes with nothing lost and nothing duplicated, and reports.
package main

import "os"

func main() {
	os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
}
