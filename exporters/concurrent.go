package exporters

// Concurrent is implemented by destinations that serve several Puts at
// once, faster than one after another (an IMAP exporter: one APPEND per
// connection). The pipeline keeps up to PutConcurrency Puts in flight.
type Concurrent interface {
	// PutConcurrency returns how many Puts the destination serves at
	// once; 1 or less means one.
	PutConcurrency() int
}
