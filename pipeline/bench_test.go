package pipeline_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/exporters/all"
	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/pipeline"
	"github.com/popmigrate/popmigrate/pop3/pop3test"
)

// BenchmarkRun measures one whole run: 200 messages of about 20 KiB from
// the in-memory POP3 server over TLS on loopback into a fresh Maildir and
// journal each time (the server's own cost is included: it runs in this
// process). It reports messages/s and MB/s of canonical bytes stored.
func BenchmarkRun(b *testing.B) {
	const n, size = 200, 20 << 10
	msgs := make([]srcMsg, n)
	for i := range msgs {
		body := make([]byte, 0, size)
		body = fmt.Appendf(body, "Subject: bench %d\nMessage-ID: <bench-%d@example.org>\n\n", i, i)
		for len(body) < size {
			body = fmt.Appendf(body, "line %06d of a message that is about twenty kilobytes long, as mail is.\n", len(body))
		}
		msgs[i] = newMsg(fmt.Sprintf("bench-%04d", i), body)
	}
	e := newEnv(b, []pop3test.Mailbox{mailbox("bench", msgs)}, nil)
	pwFile := filepath.Join(e.dir, "bench-password")
	if err := os.WriteFile(pwFile, []byte(passwordOf("bench")+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	var bytes int64
	for _, m := range msgs {
		bytes += int64(len(m.want))
	}
	b.SetBytes(bytes)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := b.TempDir()
		j, err := journal.Open(context.Background(), filepath.Join(dir, "journal.db"))
		if err != nil {
			b.Fatal(err)
		}
		a, err := config.FromFlags(fmt.Sprintf("pop3s://bench@127.0.0.1:%d", e.port), "bench", config.Defaults{
			To: []string{"maildir:" + filepath.Join(dir, "mail")}, Password: config.Secret{File: pwFile}, CAFile: e.pki.CAFile,
		})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		rep, err := pipeline.Run(context.Background(), j, []*config.Account{a}, &pipeline.Options{Destinations: all.Registry()})
		b.StopTimer()
		if err != nil || rep.Totals.Stored != n {
			b.Fatalf("run: %v, %+v", err, rep.Totals)
		}
		j.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "msgs/s")
}
