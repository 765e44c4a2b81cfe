package pipeline_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

// A run with --max-bandwidth reads no faster than the cap (the cap's own
// accuracy is internal/ratelimit's TestRateHolds), and stores every
// message.
func TestRunHoldsTheBandwidthCap(t *testing.T) {
	var msgs []srcMsg
	for i := 1; i <= 4; i++ {
		msgs = append(msgs, newMsg(fmt.Sprintf("bw%d", i), []byte("Subject: big\n\n"+strings.Repeat("0123456789abcdef\n", 16<<10))))
	}
	e := newEnv(t, []pop3test.Mailbox{mailbox("alice", msgs)}, nil)
	o := testOptions()
	const capacity = 512 << 10
	o.MaxBandwidth = capacity
	start := time.Now()
	rep := e.run([]*config.Account{e.account("alice")}, o)
	took := time.Since(start)
	wantCounts(t, accountReport(t, rep, "alice"), 4, 4, 0, 0, true)
	var total int64
	for _, m := range msgs {
		total += int64(len(m.wire))
	}
	// The bucket lets its burst (a tenth of a second at most) through at
	// once; the rest waits.
	if min := time.Duration(float64(total-capacity/10) / capacity * float64(time.Second) * 0.9); took < min {
		t.Errorf("%d bytes in %v under a cap of %d B/s: faster than the cap allows (%v at least)", total, took, capacity, min)
	}
}
