package exportertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/popmigrate/popmigrate/exporters"
	"github.com/popmigrate/popmigrate/internal/testmsg"
)

// The list subtests run when the destination implements
// exporters.Lister:
//
//   - ListEmpty: a new, empty destination lists nothing for Account;
//   - ListStored: after Put and Sync of some messages, List(Account)
//     returns each of them exactly once, with its key and the Ref Put
//     returned, and that Ref opens to the message's bytes; a new Exporter
//     on the same destination lists the same;
//   - ListCancelled: List with a cancelled context fails with an error
//     wrapping context.Canceled.

func lister(t *testing.T, e exporters.Exporter) exporters.Lister {
	t.Helper()
	l, ok := e.(exporters.Lister)
	if !ok {
		t.Fatalf("%T does not implement exporters.Lister", e)
	}
	return l
}

func (s *suite) testListEmpty(t *testing.T) {
	c := ctx(t)
	e := s.openExporter(t, t.TempDir())
	got, err := lister(t, e).List(c, Account)
	if err != nil {
		t.Fatalf("List of an empty destination: %v", err)
	}
	if len(got) != 0 {
		t.Errorf("List of an empty destination = %v, want nothing", got)
	}
}

func (s *suite) testListStored(t *testing.T) {
	c := ctx(t)
	dir := t.TempDir()
	first := s.openExporter(t, dir)
	var msgs []*exporters.Message
	var data [][]byte
	for i := range 4 {
		b := fmt.Appendf(nil, "From: a@example.org\nSubject: list %d\n\nbody %d\n", i, i)
		msgs = append(msgs, NewMessage(fmt.Sprintf("list-%d", i), b))
		data = append(data, b)
	}
	// A sample with "From " lines and dots: its Ref must still open to
	// the exact bytes.
	sm := testmsg.Load(t)[0]
	msgs = append(msgs, NewMessage("list-sample-"+sm.Name, sm.Data))
	data = append(data, sm.Data)
	want := map[string]string{} // key -> Ref
	for _, m := range msgs {
		want[m.Key] = s.put(t, c, first, m)
	}
	s.sync(t, c, first)
	check := func(e exporters.Exporter, what string) {
		t.Helper()
		got, err := lister(t, e).List(c, Account)
		if err != nil {
			t.Fatalf("%s: List: %v", what, err)
		}
		seen := map[string]int{}
		for _, l := range got {
			seen[l.Key]++
			ref, ok := want[l.Key]
			switch {
			case !ok:
				t.Errorf("%s: List returned key %q (Ref %q), which no Put stored", what, l.Key, l.Ref)
			case l.Ref != ref:
				t.Errorf("%s: List returned key %s at Ref %q, Put returned %q", what, l.Key, l.Ref, ref)
			}
		}
		for _, m := range msgs {
			if seen[m.Key] != 1 {
				t.Errorf("%s: key %s (uidl %q) listed %d times, want once", what, m.Key, m.UIDL, seen[m.Key])
			}
		}
		for i, m := range msgs {
			if got := readBack(t, c, e, want[m.Key]); !bytes.Equal(got, data[i]) {
				t.Errorf("%s: the listed Ref %q of %s opens to %d bytes, differing from the %d stored", what, want[m.Key], m.Key, len(got), len(data[i]))
			}
		}
	}
	check(first, "same Exporter")
	if err := first.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	check(s.openExporter(t, dir), "new Exporter on the same destination")
}

func (s *suite) testListCancelled(t *testing.T) {
	e := s.openExporter(t, t.TempDir())
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := lister(t, e).List(cancelled, Account); !errors.Is(err, context.Canceled) {
		t.Errorf("List with a cancelled context: err = %v, want one wrapping context.Canceled", err)
	}
}
