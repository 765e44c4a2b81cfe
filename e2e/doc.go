// Package e2e holds popmigrate's end-to-end tests: they build the popmigrate
// binary once and run it as a user would, as a subprocess, against a private
// real Dovecot (internal/dovecottest) and the in-memory POP3 server, then
// check what reached the disk, the journal and the output.
//
// The tests need Dovecot (scripts/ensure-dovecot.sh installs it); without it
// they fail, they never skip. Run them with
//
//	go test ./e2e/
//
// The package has no code besides its tests.
package e2e
