#!/bin/sh
# bench-fs.sh runs a command with TMPDIR on a fresh, journaled ext4 file
# system of its own, so that `make bench` measures mail tools on the kind of
# disk a mail server has, the same for every tool and every run.
#
#   scripts/bench-fs.sh COMMAND [ARG...]
#
# Why: every run of the benchmarks creates thousands of message files, and
# deletes them before the next run. On ext4 without a journal (some virtual
# machines' root file systems are made so), allocating an inode skips every
# inode deleted in the last minute or more, reading each one's block to
# check (ext4's recently_deleted()): creating one file then costs hundreds
# of microseconds of CPU instead of tens, and the benchmark measures the
# deletions of its own previous runs, not the tools. A journaled file system
# has no such scan.
#
# As root, with losetup and mkfs.ext4: a sparse image of BENCH_FS_SIZE
# (default 24G) beside ${TMPDIR:-/tmp} is formatted ext4 (with its journal,
# the default), mounted there on a new directory, and removed afterwards.
# BENCH_FS=host, or anyone but root, measures in ${TMPDIR:-/tmp} as it is
# (the comparison's header says which file system and what creating a file
# costs there).
set -eu

say() { printf 'bench-fs: %s\n' "$*" >&2; }

if [ $# -eq 0 ]; then
	say "usage: $0 COMMAND [ARG...]"
	exit 2
fi
base=${TMPDIR:-/tmp}
if [ "${BENCH_FS:-}" = host ]; then
	say "BENCH_FS=host: measuring in $base as it is"
	exec "$@"
fi
if [ "$(id -u)" -ne 0 ]; then
	say "not root, so no file system of its own: measuring in $base as it is"
	exec "$@"
fi
for tool in losetup mkfs.ext4 mount umount; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		say "$tool not found (Debian packages mount, e2fsprogs); set BENCH_FS=host to measure in $base as it is"
		exit 1
	fi
done

img=$(mktemp "$base/popmigrate-bench-fs.XXXXXX.img")
mnt=$(mktemp -d "$base/pmbench.XXXXXX")
cleanup() {
	# Dovecot or a killed run may still hold files: a lazy unmount then.
	umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || say "could not unmount $mnt"
	rmdir "$mnt" 2>/dev/null || true
	rm -f "$img"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

truncate -s "${BENCH_FS_SIZE:-24G}" "$img"
mkfs.ext4 -q -F -L popmigrate-bench "$img"
if ! mount -o loop "$img" "$mnt"; then
	say "could not mount $img on $mnt (no loop devices?); set BENCH_FS=host to measure in $base as it is"
	exit 1
fi
chmod 1777 "$mnt"
say "measuring on a fresh journaled ext4 mounted on $mnt (TMPDIR)"
status=0
TMPDIR=$mnt "$@" || status=$?
exit "$status"
