package exporters

// Concurrent is implemented by destinations that serve several Puts at
// once, faster than one after another (an IMAP exporter: one APPEND per
// connection). The pipeline keeps up to PutConcurrency Puts in flight.
type Concurrent interface {
	// PutConcurrency returns how many Puts the destination serves at
	// once; 1 or less means one.
	PutConcurrency() int
}

// Grouping is implemented by Concurrent destinations that may gather the
// Puts in flight into one request to their server (an IMAP exporter: one
// MULTIAPPEND for many messages, stored in one transaction). Their Puts
// return when the group is stored, so a group holds as many messages as
// the pipeline keeps in flight: it keeps up to PutConcurrency, whatever
// the size of the download, within its bound of bytes in flight.
type Grouping interface {
	// GroupsPuts reports whether the destination groups its Puts.
	GroupsPuts() bool
}
