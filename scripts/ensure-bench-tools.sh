#!/bin/sh
# ensure-bench-tools.sh makes sure the tools `make bench` compares popmigrate
# with, and measures it by, are installed: mpop (the POP3 client popmigrate is
# compared with), mbsync (Debian package isync: it pushes mpop's Maildir to
# IMAP in the IMAP rows) and GNU time (peak RSS of each run). See bench/doc.go.
#
#   scripts/ensure-bench-tools.sh        # exit 0 if all are ready
#   sudo scripts/ensure-bench-tools.sh   # install what is missing first
#
# As root on Debian or Ubuntu it installs the packages with apt-get.
# Otherwise it exits 1 and says what to install. It never succeeds without a
# working mpop, mbsync and GNU time. Dovecot is scripts/ensure-dovecot.sh's job.
set -eu

PACKAGES="mpop isync time"

say() { printf 'ensure-bench-tools: %s\n' "$*" >&2; }

# shellcheck source=lib/install.sh
. "$(dirname "$0")/lib/install.sh"

have_mpop() { command -v mpop >/dev/null 2>&1 && mpop --version >/dev/null 2>&1; }

have_mbsync() { command -v mbsync >/dev/null 2>&1 && mbsync --version >/dev/null 2>&1; }

# have_time: the program /usr/bin/time (not the shell keyword), GNU's.
have_time() {
	t=/usr/bin/time
	if [ ! -x "$t" ]; then
		t=$(command -v time 2>/dev/null || true)
		case "$t" in
		/*) ;;
		*) return 1 ;; # none, or only a shell keyword
		esac
	fi
	"$t" --version 2>&1 | grep -q GNU
}

missing() {
	m=""
	have_mpop || m="$m mpop"
	have_mbsync || m="$m isync"
	have_time || m="$m time"
	echo "${m# }"
}

report() {
	say "$(mpop --version 2>/dev/null | head -n 1), $(mbsync --version 2>/dev/null | head -n 1) and GNU time are installed"
}

need=$(missing)
if [ -z "$need" ]; then
	report
	exit 0
fi

install_packages "missing: $need (Debian packages: $need)" \
	"install mpop (https://marlam.de/mpop/), mbsync (isync, https://isync.sourceforge.io/) and GNU time" "$need"

need=$(missing)
if [ -n "$need" ]; then
	say "installed the packages but these still do not run: $need"
	exit 1
fi
report
