package pipeline

import (
	"testing"

	"github.com/popmigrate/popmigrate/exporters"
)

// concurrentDest is a destination that takes conns Puts at once, as an
// IMAP destination with conns connections does.
type concurrentDest struct {
	exporters.Exporter
	conns int
}

func (d concurrentDest) PutConcurrency() int { return d.conns }

// groupingDest groups its Puts, as an IMAP destination does with
// MULTIAPPEND.
type groupingDest struct{ concurrentDest }

func (groupingDest) GroupsPuts() bool { return true }

// TestPutWorkersByDownloadSize: a destination that takes several Puts at
// once gets one for every putShareMin messages of the download, up to
// what it takes; a short download gets one (one IMAP login, not one per
// connection), and so does every destination that takes one at a time.
// A destination that groups its Puts gets every message in flight, up to
// what it takes: the fuller its groups, the fewer its transactions.
func TestPutWorkersByDownloadSize(t *testing.T) {
	imap4 := &accountRun{dests: []exporters.Exporter{concurrentDest{conns: 4}}}
	grouped := &accountRun{dests: []exporters.Exporter{nil, groupingDest{concurrentDest{conns: 128}}}}
	plain := &accountRun{dests: []exporters.Exporter{nil}}
	for _, c := range []struct {
		ar   *accountRun
		n    int
		want int
	}{
		{imap4, 0, 1},
		{imap4, 1, 1},
		{imap4, putShareMin, 1},
		{imap4, putShareMin + 1, 2},
		{imap4, 3*putShareMin + 1, 4},
		{imap4, 100 * putShareMin, 4},
		{plain, 100 * putShareMin, 1},
		{grouped, 0, 1},
		{grouped, 20, 20},
		{grouped, 1000, 128},
	} {
		if got := c.ar.putWorkers(c.n); got != c.want {
			t.Errorf("putWorkers(%d) with %d at once = %d, want %d", c.n, c.ar.putConcurrency(), got, c.want)
		}
	}
}
