// Package bench holds popmigrate's end-to-end benchmarks: popmigrate
// against mpop (https://marlam.de/mpop/), and against mpop followed by
// mbsync (https://isync.sourceforge.io/) for IMAP, all reading the same
// mailboxes from the same private, real Dovecot on 127.0.0.1 over POP3S;
// and popmigrate workers sharing one journal (TestBenchScaleOut).
//
// The package has no code of its own but the reference reader
// (bench/refread); everything else is in its test files. The comparison is
// TestBenchCompare, which runs only when asked:
//
//	make bench
//	# or, after scripts/ensure-dovecot.sh and scripts/ensure-bench-tools.sh:
//	go test -count=1 -run '^TestBenchCompare$' -v -timeout 60m ./bench/ -args -bench-compare
//	# a smoke run of about a minute:
//	go test -count=1 -run '^TestBenchCompare$' -v ./bench/ -args -bench-compare -bench-scale 0.05
//
// Without -bench-compare the test skips (it is not part of `make test`).
// With it, every part really runs: a missing dovecot, mpop, mbsync, GNU
// time or go command fails the test with a message naming the script that
// installs it. It builds ./cmd/popmigrate from the working tree (or
// measures the binary given with -bench-popmigrate) and ./bench/refread.
// -bench-scale (0, 1] scales the message and mailbox counts and the 64 MiB
// message; -bench-reps is the number of pairs per cell (default 3);
// -bench-rtt the added round trip (default 20ms); -bench-rows a regular
// expression choosing rows by key.
//
// Workloads (keys in parentheses), at scale 1, from one seeded corpus:
//
//   - (big) 1 mailbox, 2000 messages of the realistic mix (60 % small
//     text, 30 % medium with a dot-stuffed line, 10 % with a base64
//     attachment) scaled to 426 MB;
//   - (small) 1 mailbox, 5000 messages of 4 KiB;
//   - (many8) 50 mailboxes x 20 messages of the mix (unscaled, ~27 MB), 8
//     at once: popmigrate --jobs 8 --per-host 8, mpop as 8 processes at
//     once, each fetching its share of the accounts;
//   - (many8-rtt) the same through a userspace TCP proxy in the test that
//     holds every chunk 10 ms each way (20 ms round trip), keeping the
//     order of bytes and the throughput;
//   - (many1-rtt) the same 50 mailboxes one at a time through the proxy:
//     popmigrate --jobs 1, one `mpop -a`;
//   - (imap-big) the 426 MB mailbox into an IMAP folder of the same
//     Dovecot: mpop into a Maildir, then mbsync pushing it (Sync Push,
//     Create Far), their times summed, against popmigrate in one pass
//     (--to imaps://...);
//   - (imap-many8) the 50 mailboxes into IMAP, 8 at once (8 mpop, then 8
//     mbsync processes, against --jobs 8);
//   - (rss-huge, rss-crowd) popmigrate's peak RSS for one mailbox holding
//     one 64 MiB message, and for 200 small mailboxes at once (--jobs 200
//     --per-host 200).
//
// Columns: mpop (or mpop + mbsync); popmigrate with verify on (the
// default); popmigrate --no-verify; the reference reader (every RETR
// pipelined, bytes discarded: what the server can serve); then ratios,
// each the median over the rounds of the ratio of the two runs of one
// round: popmigrate / mpop, popmigrate / reference, verify overhead (verify
// on / --no-verify - 1), client CPU popmigrate / reference (the same bytes,
// so per MB); popmigrate's peak RSS; and per row the targets it met or
// missed. The tools run in turn within a round (A B C D, A B C D, ...), so
// the machine's drift falls on every tool alike. A second table gives per
// tool the medians of wall time, MB/s, client CPU, CPU per MB, the CPU of
// the Dovecot processes that served the run, and peak RSS (reported by GNU
// time, see runProcs for why not our own rusage), and every run's wall
// time. The header says the commit, tool versions, CPUs, load average
// before and after, pairs per cell and the total time.
//
// Every run starts with a fresh destination and fresh state (journal,
// UIDL files, mbsync state) and is checked before it counts: popmigrate
// must exit 0 and report every message stored; every Maildir must hold
// exactly the account's messages, byte for byte in canonical form (the
// multiset of sha256 sums; mpop runs with received_header off); every
// IMAP folder is read back with go-imap and must hold the same multiset
// of bodies in canonical form (CRLF to LF; the X-TUID header mbsync adds
// is removed first), and is deleted afterwards, untimed; the reference
// reader must report every message and byte. So the benchmark cannot pass
// on a broken run.
//
// TestBenchServerFloor (-bench-floor, also in make bench) measures what the
// server's side of the many-mailbox rows costs Dovecot at least, per
// account: the reference reader for POP3, then each IMAP step (the login,
// CREATE and SELECT, one MULTIAPPEND of the account's messages, the
// read-back FETCH) done by raw sessions with every command in one write,
// beside
// `popmigrate run` into IMAP with and without verify. It prints the Dovecot
// CPU per account and the whole machine's busy CPU of each, which bound
// what any client can reach on a machine that shares its CPUs with the
// server.
package bench
