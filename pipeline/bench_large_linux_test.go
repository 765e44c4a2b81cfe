//go:build linux

package pipeline_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/config"
	"github.com/popmigrate/popmigrate/exporters/all"
	"github.com/popmigrate/popmigrate/internal/dovecottest"
	"github.com/popmigrate/popmigrate/journal"
	"github.com/popmigrate/popmigrate/pipeline"
)

// benchMailMB is the total canonical size of the large mailbox of
// BenchmarkRunLargeMailbox (-bench-mail-mb), scaled down 1:4 from the
// 426 MB mailbox of the CPU-per-megabyte measurements so that one
// iteration takes seconds on a 2-core machine.
var benchMailMB = flag.Int("bench-mail-mb", 100, "BenchmarkRunLargeMailbox: total size of the mailbox in MB")

// BenchmarkRunLargeMailbox measures one run of one large mailbox: 2000
// realistic messages (60 % short text of ~4 KiB, 25 % ~40 KiB with a
// small attachment, 15 % with a large base64 attachment that brings the
// total to -bench-mail-mb, 100 MB by default) from a private, real Dovecot
// over POP3S into a fresh Maildir and journal each iteration. Dovecot runs
// in its own processes, so the CPU time reported (cpu-s/op, user + system
// of this process) and a -cpuprofile are the client's alone. Its
// sub-benchmarks run with the in-session verify that `popmigrate run` does
// by default (verify) and without it (no-verify).
func BenchmarkRunLargeMailbox(b *testing.B) {
	msgs, total := largeMailbox(2000, int64(*benchMailMB)*1e6)
	benchVerifyAndNot(b, func(b *testing.B, verify bool) { benchOneMailbox(b, msgs, total, verify) })
}

// benchVerifyAndNot runs bench as the sub-benchmarks verify and no-verify.
func benchVerifyAndNot(b *testing.B, bench func(b *testing.B, verify bool)) {
	b.Run("verify", func(b *testing.B) { bench(b, true) })
	b.Run("no-verify", func(b *testing.B) { bench(b, false) })
}

// BenchmarkRunSmallMessages is BenchmarkRunLargeMailbox for 5000 messages
// of 4 KiB: what each message costs (a file, a journal row, a hash, a read
// back), beside what each byte costs. It reports cpu-us/msg besides.
func BenchmarkRunSmallMessages(b *testing.B) {
	const n = 5000
	msgs := make([][]byte, n)
	var total int64
	for i := range msgs {
		m := fmt.Appendf(nil, "From: <s%d@example.net>\nTo: <big@example.org>\nSubject: small %d\nMessage-ID: <%d@example.net>\n\n", i%7, i, i)
		for len(m) < 4<<10 {
			m = fmt.Appendf(m, "line %06d of a small message, of the kind a mailbox holds thousands of.\n", len(m))
		}
		msgs[i] = m
		total += int64(len(m))
	}
	benchVerifyAndNot(b, func(b *testing.B, verify bool) {
		cpu := benchOneMailbox(b, msgs, total, verify)
		b.ReportMetric(cpu.Seconds()/float64(b.N)/n*1e6, "cpu-us/msg")
	})
}

// benchOneMailbox serves msgs (canonical, total bytes in all) as one
// mailbox of a private Dovecot and runs benchRuns over it, each run into
// a fresh Maildir and journal, verified in the session when verify is
// set; it reports cpu-ms/MB and returns the CPU of the timed runs.
func benchOneMailbox(b *testing.B, msgs [][]byte, total int64, verify bool) time.Duration {
	n := len(msgs)
	srv := dovecottest.Start(b, []dovecottest.User{{Name: "big", Password: "pw-big-Qe31", Messages: msgs}}, nil)
	dir := b.TempDir()
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("pw-big-Qe31\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	once := func(dir string) time.Duration {
		j, err := journal.Open(context.Background(), filepath.Join(dir, "journal.db"))
		if err != nil {
			b.Fatal(err)
		}
		defer j.Close()
		a, err := config.FromFlags("pop3s://big@"+srv.POP3SAddr, "big", config.Defaults{
			To: []string{"maildir:" + filepath.Join(dir, "mail")}, Password: config.Secret{File: pwFile}, CAFile: srv.CAFile,
		})
		if err != nil {
			b.Fatal(err)
		}
		before := cpuTime()
		rep, err := pipeline.Run(context.Background(), j, []*config.Account{a},
			&pipeline.Options{Destinations: all.Registry(), VerifyInSession: verify})
		spent := cpuTime() - before
		if err == nil && verify && (len(rep.Verify) != 1 || rep.Verify[0].Checked != n || rep.Verify[0].Problems() != 0) {
			err = fmt.Errorf("verify: %+v", rep.Verify)
		}
		if err != nil || rep.Totals.Stored != n || rep.Totals.StoredBytes != total {
			var why string
			for _, ar := range rep.Accounts {
				why = ar.Error
			}
			b.Fatalf("run: %v, %+v %s (want %d messages, %d bytes)", err, rep.Totals, why, n, total)
		}
		return spent
	}
	cpu := benchRuns(b, total, once)
	b.ReportMetric(cpu.Seconds()/float64(b.N)/(float64(total)/1e6)*1e3, "cpu-ms/MB")
	return cpu
}

// benchRuns runs once, which runs popmigrate into the fresh folder it is
// given and returns the client CPU it took, once untimed (Dovecot builds
// its indexes on the first session) and then b.N times, each time in a
// new folder removed afterwards, untimed; it reports cpu-s/op and returns
// the CPU of the b.N runs.
func benchRuns(b *testing.B, total int64, once func(dir string) time.Duration) time.Duration {
	once(b.TempDir())
	b.SetBytes(total)
	var cpu time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		d := b.TempDir()
		b.StartTimer()
		cpu += once(d)
		b.StopTimer()
		os.RemoveAll(d)
		b.StartTimer()
	}
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
	return cpu
}

// cpuTime returns the user + system CPU time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// largeMailbox returns n messages in canonical form (LF line ends) of
// about total bytes in all, and their exact total: headers as a provider
// writes them, text lines of ~72 characters (some starting with a dot,
// dot-stuffed on the wire), and base64 attachments in 76-character lines.
func largeMailbox(n int, total int64) ([][]byte, int64) {
	rng := rand.New(rand.NewPCG(426, 10))
	nLarge := n * 15 / 100
	small, medium := int64(4<<10), int64(40<<10)
	rest := total - int64(n*60/100)*small - int64(n*25/100)*medium
	large := max(rest/int64(nLarge), 64<<10)
	words := strings.Fields("the a of to and in is for on that with as this be are from at by it or invoice " +
		"meeting report quarterly shipment schedule please find attached regards thanks project update review")
	msgs := make([][]byte, n)
	var sum int64
	for i := range msgs {
		var size int64
		attach := true
		switch x := rng.IntN(100); {
		case x < 60:
			size, attach = small, false
		case x < 85:
			size = medium
		default:
			size = large
		}
		size = size * int64(75+rng.IntN(51)) / 100
		var b bytes.Buffer
		date := time.Date(2023, 1, 1, 8, 0, 0, 0, time.UTC).Add(time.Duration(i) * 37 * time.Minute)
		fmt.Fprintf(&b, "Return-Path: <sender%d@example.net>\nReceived: from mx%d.example.net (mx%d.example.net [192.0.2.%d])\n"+
			"\tby pop.example.org with ESMTPS id %08x\n\tfor <big@example.org>; %s\n",
			i%17, i%3, i%3, 1+i%200, rng.Uint32(), date.Format(time.RFC1123Z))
		fmt.Fprintf(&b, "Date: %s\nFrom: \"Sender %d\" <sender%d@example.net>\nTo: <big@example.org>\n"+
			"Subject: %s %s number %d\nMessage-ID: <%d.%08x@example.net>\nMIME-Version: 1.0\n",
			date.Format(time.RFC1123Z), i%17, i%17, words[rng.IntN(len(words))], words[rng.IntN(len(words))], i, i, rng.Uint32())
		text := func(limit int) {
			for line := 0; b.Len() < limit; line++ {
				w := 0
				if line%40 == 3 {
					b.WriteString(". a line that starts with a dot")
					w = 31
				}
				for w < 72 {
					word := words[rng.IntN(len(words))]
					if w > 0 {
						b.WriteByte(' ')
						w++
					}
					b.WriteString(word)
					w += len(word)
				}
				b.WriteByte('\n')
			}
		}
		if !attach {
			b.WriteString("Content-Type: text/plain; charset=utf-8\n\n")
			text(int(size))
		} else {
			boundary := fmt.Sprintf("=_b_%08x", rng.Uint32())
			fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"%s\"\n\n--%s\nContent-Type: text/plain; charset=utf-8\n\n", boundary, boundary)
			text(b.Len() + 1500)
			fmt.Fprintf(&b, "\n--%s\nContent-Type: application/pdf; name=\"r%d.pdf\"\nContent-Transfer-Encoding: base64\n\n", boundary, i)
			raw := make([]byte, max(0, int(size)-b.Len())*3/4)
			for k := range raw {
				raw[k] = byte(rng.Uint32())
			}
			enc := base64.StdEncoding.EncodeToString(raw)
			for len(enc) > 76 {
				b.WriteString(enc[:76])
				b.WriteByte('\n')
				enc = enc[76:]
			}
			fmt.Fprintf(&b, "%s\n\n--%s--\n", enc, boundary)
		}
		msgs[i] = b.Bytes()
		sum += int64(b.Len())
	}
	return msgs, sum
}
