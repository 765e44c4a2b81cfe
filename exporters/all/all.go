// Package all lists every destination kind this build of popmigrate can
// write, in one place: adding a kind is one package and one line here.
package all

import (
	"github.com/popmigrate/popmigrate/exporters/eml"
	"github.com/popmigrate/popmigrate/exporters/imap"
	"github.com/popmigrate/popmigrate/exporters/location"
	"github.com/popmigrate/popmigrate/exporters/maildir"
	"github.com/popmigrate/popmigrate/exporters/mbox"
)

// Registry returns the registry of every destination kind, in the order
// --help lists them.
func Registry() *location.Registry {
	return location.NewRegistry(
		maildir.Factory(),
		mbox.Factory(),
		eml.Factory(),
		imap.Factory(),
	)
}
