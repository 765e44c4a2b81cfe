//go:build linux

package pipeline_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/exporters/all"
	"github.com/popmigrate/popmigrate/internal/dovecottest"
	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/pipeline"
)

// BenchmarkRunManyMailboxes measures one run of many small mailboxes, the
// shape of most migrations: 50 accounts of 20 realistic messages (29 MB
// in all, as the comparison of make bench has them) from a private, real
// Dovecot over POP3S, 8 at once, each into its own fresh Maildir and
// verified in its session as popmigrate run does, with a fresh journal
// each iteration. It reports the client's CPU (cpu-s/op) and, per
// account, cpu-ms/account: what an account costs beyond its bytes shows
// there, and in a -cpuprofile.
func BenchmarkRunManyMailboxes(b *testing.B) {
	const users, per = 50, 20
	var dus []dovecottest.User
	var total int64
	for i := range users {
		msgs, size := largeMailbox(per, 580_000)
		dus = append(dus, dovecottest.User{Name: fmt.Sprintf("u%02d", i), Password: "pw-many-Vd42", Messages: msgs})
		total += size
	}
	srv := dovecottest.Start(b, dus, nil)
	dir := b.TempDir()
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("pw-many-Vd42\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	once := func(dir string) time.Duration {
		j, err := journal.Open(context.Background(), filepath.Join(dir, "journal.db"))
		if err != nil {
			b.Fatal(err)
		}
		defer j.Close()
		var accounts []*config.Account
		for _, u := range dus {
			a, err := config.FromFlags("pop3s://"+u.Name+"@"+srv.POP3SAddr, u.Name, config.Defaults{
				To: []string{"maildir:" + filepath.Join(dir, u.Name)}, Password: config.Secret{File: pwFile}, CAFile: srv.CAFile,
			})
			if err != nil {
				b.Fatal(err)
			}
			accounts = append(accounts, a)
		}
		before := cpuTime()
		rep, err := pipeline.Run(context.Background(), j, accounts, &pipeline.Options{Destinations: all.Registry(), Jobs: 8, PerHost: 8, VerifyInSession: true})
		spent := cpuTime() - before
		if err != nil || rep.Totals.Stored != users*per || rep.Totals.StoredBytes != total {
			b.Fatalf("run: %v, %+v (want %d messages, %d bytes)", err, rep.Totals, users*per, total)
		}
		return spent
	}
	cpu := benchRuns(b, total, once)
	b.ReportMetric(cpu.Seconds()/float64(b.N)/users*1e3, "cpu-ms/account")
}
