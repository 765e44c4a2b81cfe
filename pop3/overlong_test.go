package pop3

import (
	"errors"
	"strings"
	"testing"
)

// One overlong UIDL line (far past RFC 1939's 70 octets and past
// MaxLineLength) does not fail the listing: its entry has the number only,
// Overlong set. Lines over MaxLineLength inside the read buffer and far
// past it are both skipped.
func TestQuirkOverlongUIDL(t *testing.T) {
	weird := strings.Repeat("w", 100) + "\xe9/.."
	c, _ := newScripted(t, &Options{MaxLineLength: 512},
		step{s: greet},
		step{c: "UIDL\r\n", s: "+OK\r\n1 abc\r\n2 " + strings.Repeat("x", 1000) + "\r\n3 " + weird + "\r\n" +
			"4\t" + strings.Repeat("y", 300<<10) + "\r\n5 dot\r\n.\r\n"},
		step{c: "NOOP\r\n", s: "+OK\r\n"},
	)
	uids, err := c.UIDL(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	want := []UIDInfo{{ID: 1, UID: "abc"}, {ID: 2, Overlong: true}, {ID: 3, UID: weird}, {ID: 4, Overlong: true}, {ID: 5, UID: "dot"}}
	if len(uids) != len(want) {
		t.Fatalf("UIDL = %v, want %v", uids, want)
	}
	for i := range want {
		if uids[i] != want[i] {
			t.Errorf("entry %d = %+v, want %+v", i, uids[i], want[i])
		}
	}
	if err := c.Noop(ctxT(t)); err != nil {
		t.Fatalf("client unusable after an overlong UIDL line: %v", err)
	}
}

// LIST gets no such leniency.
func TestOverlongListLineIsFatal(t *testing.T) {
	c, _ := newScripted(t, &Options{MaxLineLength: 512},
		step{s: greet},
		step{c: "LIST\r\n", s: "+OK\r\n1 " + strings.Repeat("1", 1000) + "\r\n.\r\n"},
	)
	if _, err := c.List(ctxT(t)); !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("List = %v, want ErrLineTooLong", err)
	}
}

// The skipping is bounded: per line, over the listing, and an overlong
// line must start with a message number.
func TestOverlongUIDLBounds(t *testing.T) {
	t.Run("line", func(t *testing.T) {
		c, _ := newScripted(t, nil,
			step{s: greet},
			step{c: "UIDL\r\n", s: "+OK\r\n1 " + strings.Repeat("z", maxOverlongLine+10) + "\r\n.\r\n"},
		)
		if _, err := c.UIDL(ctxT(t)); !errors.Is(err, ErrLineTooLong) {
			t.Fatalf("UIDL = %v, want ErrLineTooLong", err)
		}
	})
	t.Run("listing", func(t *testing.T) {
		old := maxOverlongBytes
		maxOverlongBytes = 10_000
		t.Cleanup(func() { maxOverlongBytes = old })
		var s strings.Builder
		s.WriteString("+OK\r\n")
		for i := 1; i <= 20; i++ {
			s.WriteString("1 " + strings.Repeat("q", 1000) + "\r\n")
		}
		s.WriteString(".\r\n")
		c, _ := newScripted(t, &Options{MaxLineLength: 100}, step{s: greet}, step{c: "UIDL\r\n", s: s.String()})
		if _, err := c.UIDL(ctxT(t)); !errors.Is(err, ErrListingTooLong) {
			t.Fatalf("UIDL = %v, want ErrListingTooLong", err)
		}
	})
	t.Run("no number", func(t *testing.T) {
		c, _ := newScripted(t, &Options{MaxLineLength: 100},
			step{s: greet},
			step{c: "UIDL\r\n", s: "+OK\r\n" + strings.Repeat("9", 200) + " x\r\n.\r\n"},
		)
		var pe *ProtocolError
		if _, err := c.UIDL(ctxT(t)); !errors.As(err, &pe) {
			t.Fatalf("UIDL = %v, want *ProtocolError", err)
		}
	})
	t.Run("entries", func(t *testing.T) {
		c, _ := newScripted(t, &Options{MaxLineLength: 100, MaxListing: 2},
			step{s: greet},
			step{c: "UIDL\r\n", s: "+OK\r\n1 a\r\n2 " + strings.Repeat("q", 200) + "\r\n3 " + strings.Repeat("q", 200) + "\r\n.\r\n"},
		)
		if _, err := c.UIDL(ctxT(t)); !errors.Is(err, ErrListingTooLong) {
			t.Fatalf("UIDL = %v, want ErrListingTooLong", err)
		}
	})
}
