//go:build linux

package pipeline_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/exporters/all"
	"github.com/popmigrate/popmigrate/internal/dovecottest"
	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/pipeline"
)

// BenchmarkRunIntoIMAP measures one run of 1000 messages (the mix of
// BenchmarkRunLargeMailbox, -bench-mail-mb/4 MB in all) from a private,
// real Dovecot over POP3S into a fresh folder of the same Dovecot over
// IMAPS, with the verify phase (every copy read back, in the download's
// session) and without it (--no-verify). The difference of the two is the
// cost of reading every byte back; verify-ms/op is the time from the last
// message written to the end of the account (the verify phase, and the
// last group commit before it). verify-only times popmigrate verify of a
// folder filled by such a run: the read-back alone.
func BenchmarkRunIntoIMAP(b *testing.B) {
	const n = 1000
	msgs, total := largeMailbox(n, int64(*benchMailMB)*1e6/4)
	const pw = "pw-imap-Tq84"
	srv := dovecottest.Start(b, []dovecottest.User{
		{Name: "src", Password: pw, Messages: msgs},
		{Name: "dst", Password: pw},
	}, nil)
	dir := b.TempDir()
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte(pw+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	iter := 0
	once := func(verify bool) time.Duration {
		iter++
		d := b.TempDir()
		j, err := journal.Open(context.Background(), filepath.Join(d, "journal.db"))
		if err != nil {
			b.Fatal(err)
		}
		defer j.Close()
		a, err := config.FromFlags("pop3s://src@"+srv.POP3SAddr, "src", config.Defaults{
			To:       []string{fmt.Sprintf("imaps://dst@%s/Run%d", srv.IMAPSAddr, iter)},
			Password: config.Secret{File: pwFile}, CAFile: srv.CAFile,
		})
		if err != nil {
			b.Fatal(err)
		}
		a.ToPassword = config.Secret{File: pwFile}
		var verifyTime time.Duration
		logger := &phaseTimer{}
		rep, err := pipeline.Run(context.Background(), j, []*config.Account{a}, &pipeline.Options{
			Destinations: all.Registry(), VerifyInSession: verify,
			Progress: logger,
		})
		if err != nil || rep.Totals.Stored != n || rep.Totals.StoredBytes != total {
			var why string
			for _, ar := range rep.Accounts {
				why = ar.Error
			}
			b.Fatalf("run: %v, %+v %s (want %d messages, %d bytes)", err, rep.Totals, why, n, total)
		}
		if verify {
			if len(rep.Verify) != 1 || rep.Verify[0].Checked != n || pipeline.Mismatches(rep.Verify[0]) != 0 {
				b.Fatalf("verify: %+v", rep.Verify)
			}
			verifyTime = logger.verify()
		}
		return verifyTime
	}
	// The read-back alone: popmigrate verify of the last run's folder.
	b.Run("verify-only", func(b *testing.B) {
		d := b.TempDir()
		j, err := journal.Open(context.Background(), filepath.Join(d, "journal.db"))
		if err != nil {
			b.Fatal(err)
		}
		defer j.Close()
		iter++
		a, err := config.FromFlags("pop3s://src@"+srv.POP3SAddr, "src", config.Defaults{
			To:       []string{fmt.Sprintf("imaps://dst@%s/Run%d", srv.IMAPSAddr, iter)},
			Password: config.Secret{File: pwFile}, CAFile: srv.CAFile,
		})
		if err != nil {
			b.Fatal(err)
		}
		a.ToPassword = config.Secret{File: pwFile}
		accts := []*config.Account{a}
		if _, err := pipeline.Run(context.Background(), j, accts, &pipeline.Options{Destinations: all.Registry()}); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(total)
		b.ResetTimer()
		for range b.N {
			res, err := pipeline.Verify(context.Background(), j, accts, &pipeline.VerifyOptions{Options: pipeline.Options{Destinations: all.Registry()}})
			if err != nil || len(res) != 1 || res[0].Checked != n || pipeline.Mismatches(res[0]) != 0 {
				b.Fatalf("verify: %v %+v", err, res)
			}
		}
	})
	for _, verify := range []bool{true, false} {
		name := "verify"
		if !verify {
			name = "no-verify"
		}
		b.Run(name, func(b *testing.B) {
			once(verify) // untimed: Dovecot builds its indexes
			b.SetBytes(total)
			var spent time.Duration
			b.ResetTimer()
			for range b.N {
				spent += once(verify)
			}
			if verify {
				b.ReportMetric(float64(spent.Milliseconds())/float64(b.N), "verify-ms/op")
			}
		})
	}
}

// phaseTimer is a Progress that notes when the last message was written
// and when the account ended.
type phaseTimer struct {
	mu         sync.Mutex
	last, done time.Time
}

func (p *phaseTimer) AccountStart(string, int, int64) {}

func (p *phaseTimer) MessageDone(string, int64) {
	p.mu.Lock()
	p.last = time.Now()
	p.mu.Unlock()
}

func (p *phaseTimer) AccountDone(string, *pipeline.AccountReport) {
	p.mu.Lock()
	p.done = time.Now()
	p.mu.Unlock()
}

func (p *phaseTimer) verify() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done.Sub(p.last)
}
