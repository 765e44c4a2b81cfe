package exporters

import "context"

// Lister is implemented by destinations that can enumerate the messages they
// hold for an account, so that verify can find messages the journal does not
// know (extra in destination): a copy written by a run that crashed before
// its journal commit, a second copy of one message, a file put there by hand.
type Lister interface {
	// List returns every message the destination holds for account, in
	// no particular order. A destination that holds one account only (a
	// Maildir, an mbox file) returns everything it holds whatever account
	// is. A message held twice (a Maildir file in both new/ and cur/)
	// is listed twice, once per copy. List reads the destination as it is
	// now; it does not block writers for longer than one directory or
	// index read.
	List(ctx context.Context, account string) ([]Listed, error)
}

// Listed is one message a Lister found.
type Listed struct {
	// Key is the message key the destination's name or index gives:
	// MessageKey(account, uidl). It is "" when the destination holds a
	// message whose key it cannot tell.
	Key string
	// Ref is the message's reference, as Put and Has return it and
	// Opener.Open accepts it.
	Ref string
}
