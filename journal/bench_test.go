package journal

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkCommit measures group commits of 1, 64 and 256 stored messages
// (two deliveries each) on each backend and reports messages/s. Every
// SQLite commit is durable (synchronous=FULL): the figure includes one
// fsync per batch. The PostgreSQL figure is that of the test server
// (internal/pgtest), which runs without fsync: it measures the round trips
// and the server's work, not the disk.
func BenchmarkCommit(b *testing.B) { forEachBackendB(b, benchmarkCommit) }

func benchmarkCommit(b *testing.B, be backend) {
	for _, size := range []int{1, 64, 256} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			j, err := Open(testCtx(b), be.newPath(b))
			if err != nil {
				b.Fatal(err)
			}
			defer j.Close()
			ctx := testCtx(b)
			n := b.N * size
			msgs := make([]Listed, n)
			for i := range msgs {
				msgs[i] = Listed{UIDL: fmt.Sprintf("uidl-%09d", i), Kind: KindUIDL, Size: 4096}
			}
			if err := j.RecordListing(ctx, "bench", "pop3s://bench@pop.example", msgs); err != nil {
				b.Fatal(err)
			}
			// Build the batches before timing: the benchmark measures Commit.
			batches := make([]Batch, b.N)
			for i := range n {
				m := stored("bench", msgs[i].UIDL, true, "maildir", "mbox")
				batches[i/size].Stored(m)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range batches {
				if err := j.Commit(ctx, &batches[i]); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkStoredAndVerified compares the two ways a message read back by
// its writer reaches 'verified', 256 messages of one delivery a batch:
// recorded stored, then verified in a second commit (what a verify after
// the download does), or stored and read back in one (Batch.ReadBack).
func BenchmarkStoredAndVerified(b *testing.B) { forEachBackendB(b, benchmarkStoredAndVerified) }

func benchmarkStoredAndVerified(b *testing.B, be backend) {
	const size = 256
	for _, mode := range []string{"two-commits", "read-back"} {
		b.Run(mode, func(b *testing.B) {
			j, err := Open(testCtx(b), be.newPath(b))
			if err != nil {
				b.Fatal(err)
			}
			defer j.Close()
			ctx := testCtx(b)
			n := b.N * size
			msgs := make([]Listed, n)
			for i := range msgs {
				msgs[i] = Listed{UIDL: fmt.Sprintf("uidl-%09d", i), Kind: KindUIDL, Size: 4096}
			}
			if err := j.RecordListing(ctx, "bench", "pop3s://bench@pop.example", msgs); err != nil {
				b.Fatal(err)
			}
			batches := make([]Batch, 2*b.N)
			for i := range n {
				batches[2*(i/size)].Stored(stored("bench", msgs[i].UIDL, true, "maildir"))
				if mode == "two-commits" {
					batches[2*(i/size)+1].Verified("bench", msgs[i].UIDL, "maildir", time.Time{})
				}
			}
			if mode == "read-back" {
				for i := range batches {
					batches[i].ReadBack(func(*StoredMessage, *Delivery) bool { return true }, time.Time{})
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range batches {
				if err := j.Commit(ctx, &batches[i]); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
