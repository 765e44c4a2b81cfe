package main

import (
	"github.com/popmigrate/popmigrate/exporters/all"
	"github.com/popmigrate/popmigrate/exporters/location"
)

// destinations returns the registry of every destination kind: what
// --to accepts, how each kind is opened, and its help.
func destinations() *location.Registry { return all.Registry() }
