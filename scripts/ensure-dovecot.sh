#!/bin/sh
# ensure-dovecot.sh makes sure Dovecot (POP3 and IMAP) is installed, as
# popmigrate's integration tests need it: they start private Dovecot
# instances on 127.0.0.1 (see internal/dovecottest).
#
#   scripts/ensure-dovecot.sh        # exit 0 if Dovecot is ready
#   sudo scripts/ensure-dovecot.sh   # install it first if it is missing
#
# As root on Debian or Ubuntu it installs the packages below with apt-get and
# keeps the packaged system service from starting (the tests never use it).
# Otherwise it exits 1 and says what to install. It never succeeds without
# a working dovecot and doveadm.
set -eu

PACKAGES="dovecot-core dovecot-pop3d dovecot-imapd"
# The packaged users Dovecot drops privileges to when started as root.
SYSTEM_USERS="dovecot dovenull"

say() { printf 'ensure-dovecot: %s\n' "$*" >&2; }

# shellcheck source=lib/install.sh
. "$(dirname "$0")/lib/install.sh"

# find_tool prints the path of $1, also looking in the sbin folders that an
# unprivileged PATH often lacks.
find_tool() {
	if command -v "$1" 2>/dev/null; then
		return 0
	fi
	for dir in /usr/sbin /usr/local/sbin /sbin; do
		if [ -x "$dir/$1" ]; then
			echo "$dir/$1"
			return 0
		fi
	done
	return 1
}

have_tools() {
	find_tool dovecot >/dev/null && find_tool doveadm >/dev/null
}

missing_users() {
	missing=""
	for u in $SYSTEM_USERS; do
		getent passwd "$u" >/dev/null 2>&1 || missing="$missing $u"
	done
	echo "${missing# }"
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# create_users adds the system users the Debian package would have made.
create_users() {
	for u in $1; do
		say "creating missing system user $u"
		if command -v adduser >/dev/null 2>&1; then
			adduser --system --group --no-create-home --home /nonexistent \
				--shell /usr/sbin/nologin --quiet "$u" || return 1
		else
			useradd --system --user-group --no-create-home --home-dir /nonexistent \
				--shell /usr/sbin/nologin "$u" || return 1
		fi
	done
}

version() { "$(find_tool dovecot)" --version 2>/dev/null | head -n 1; }

# ready reports whether Dovecot can run the tests (tools, and the system
# users when running as root), fixing the users if it can.
ready() {
	have_tools || return 1
	"$(find_tool dovecot)" --version >/dev/null 2>&1 || return 1
	users=$(missing_users)
	if [ -n "$users" ]; then
		if is_root; then
			if ! create_users "$users" || [ -n "$(missing_users)" ]; then
				say "could not create the system users ($users)"
				exit 1
			fi
		else
			# Unprivileged tests run Dovecot as the current user and do
			# not need them; tests run as root do.
			say "warning: the system users ($users) are missing; tests run as"
			say "root need them: create them with sudo $0"
		fi
	fi
	return 0
}

if ready; then
	say "Dovecot $(version) is installed"
	exit 0
fi

# Keep the system service from starting: the tests run their own instances
# and a system Dovecot would listen on ports 110-995.
install_packages "Dovecot is not installed (dovecot and doveadm not found)" \
	"install Dovecot 2.3 with POP3 and IMAP support (Debian packages: $PACKAGES)" \
	"$PACKAGES" dovecot

if ! ready; then
	say "installed $PACKAGES but dovecot or doveadm still does not run:"
	say "dovecot: $(find_tool dovecot || echo missing), doveadm: $(find_tool doveadm || echo missing)"
	exit 1
fi
say "Dovecot $(version) is installed"
