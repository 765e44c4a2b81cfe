#!/bin/sh
# ensure-switch-tools.sh makes sure the POP3 clients whose state
# `popmigrate journal import` adopts are installed: mpop, getmail 6 and
# fetchmail. The tests run each against a private Dovecot and import the
# state file it wrote (cmd/popmigrate, TestJournalImportFromRealTools).
#
#   scripts/ensure-switch-tools.sh        # exit 0 if all three are ready
#   sudo scripts/ensure-switch-tools.sh   # install what is missing first
#
# As root on Debian or Ubuntu it installs the packages with apt-get and
# keeps fetchmail's system service from starting (the tests never use it).
# Otherwise it exits 1 and says what to install. It never succeeds without
# a working mpop, getmail and fetchmail.
set -eu

say() { printf 'ensure-switch-tools: %s\n' "$*" >&2; }

# shellcheck source=lib/install.sh
. "$(dirname "$0")/lib/install.sh"

have_mpop() { command -v mpop >/dev/null 2>&1 && mpop --version >/dev/null 2>&1; }
have_getmail() { command -v getmail >/dev/null 2>&1 && getmail --version >/dev/null 2>&1; }
have_fetchmail() { command -v fetchmail >/dev/null 2>&1 && fetchmail --version >/dev/null 2>&1; }

# missing prints the Debian packages of the clients that are not ready.
missing() {
	m=""
	have_mpop || m="$m mpop"
	have_getmail || m="$m getmail6"
	have_fetchmail || m="$m fetchmail"
	echo "${m# }"
}

report() {
	say "$(mpop --version 2>/dev/null | head -n 1), $(getmail --version 2>/dev/null | head -n 1)" \
		"and $(fetchmail --version 2>/dev/null | grep -m 1 'release' | sed 's/^This is //; s/+.*//') are installed"
}

need=$(missing)
if [ -z "$need" ]; then
	report
	exit 0
fi

install_packages "missing: $need (Debian packages: $need)" \
	"install mpop (https://marlam.de/mpop/), getmail 6 (https://getmail6.org/) and fetchmail (https://www.fetchmail.info/)" \
	"$need" fetchmail

need=$(missing)
if [ -n "$need" ]; then
	say "installed the packages but these still do not run: $need"
	exit 1
fi
report
