// Package bench holds popmigrate's end-to-end benchmark: popmigrate against
// mpop (https://marlam.de/mpop/), both downloading the same mailboxes from
// the same private, real Dovecot on 127.0.0.1 over POP3S into Maildir.
//
// The package has no code of its own; everything is in its test files. The
// comparison is TestBenchCompare, which runs only when asked:
//
//	make bench
//	# or, after scripts/ensure-dovecot.sh and scripts/ensure-bench-tools.sh:
//	go test -count=1 -run '^TestBenchCompare$' -v -timeout 30m ./bench/ -args -bench-compare
//
// Without -bench-compare the test skips (it is not part of `make test`).
// With it, every part really runs: a missing dovecot, mpop, GNU time or go
// command fails the test with a message naming the script that installs it.
// It builds ./cmd/popmigrate from the working tree, or measures the binary
// given with -bench-popmigrate. -bench-users, -bench-messages, -bench-reps,
// -bench-jobs and -bench-rtt change the workload (defaults 8, 500, 3, 8,
// 2ms); the whole run takes about 1.5 minutes on 2 CPUs.
//
// What it measures, per run of a tool with a fresh destination and fresh
// state (journal, UIDL file): wall time, messages/s, MB/s (10^6 bytes of
// messages in canonical form), peak RSS (reported by GNU time, see
// runProcs for why not our own rusage) and user+system CPU time of the
// client processes, and the CPU time of the Dovecot processes that served
// the run. Each measurement is repeated (-bench-reps) with the tools'
// order rotated between repetitions; the table shows medians and the ratio
// popmigrate/mpop of the medians, all measured in the same run of the test.
// The table also gives the load average before and after: other work on
// the machine skews the figures.
//
// Scenarios:
//
//   - A "one mailbox": one account, popmigrate with its default pipelining
//     window against mpop (which pipelines when the server offers
//     PIPELINING, as Dovecot does).
//   - B "all mailboxes": every account; popmigrate as one process with
//     --accounts CSV --jobs 8 --per-host 8, against mpop run once per account
//     one after another, and against 8 mpop processes at once.
//   - C: A and B again through a userspace TCP proxy in the test that delays
//     every chunk by half the round-trip time (-bench-rtt, 2 ms by default)
//     in each direction, keeping the order of bytes and the throughput.
//
// Every run is checked before it counts: popmigrate must exit 0 and report
// every message stored, and for both tools (mpop with received_header off
// stores the same canonical bytes) each destination Maildir must
// hold exactly the account's messages, byte for byte in canonical form (the
// multiset of sha256 sums), so the benchmark cannot pass on a broken run.
package bench
