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

if ! is_root; then
	say "Dovecot is not installed (dovecot and doveadm not found)."
	if command -v apt-get >/dev/null 2>&1; then
		say "install it as root with: sudo $0"
		say "(or: sudo apt-get install $PACKAGES)"
	else
		say "install Dovecot 2.3 with POP3 and IMAP support (Debian packages: $PACKAGES)"
		say "with your system's package manager, then run this script again."
	fi
	exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
	say "Dovecot is not installed and apt-get is not available on this system;"
	say "install Dovecot 2.3 with POP3 and IMAP support (Debian packages: $PACKAGES)"
	say "with your system's package manager, then run this script again."
	exit 1
fi

log=$(mktemp)
policy_added=""
cleanup() {
	rm -f "$log"
	if [ -n "$policy_added" ]; then
		rm -f /usr/sbin/policy-rc.d
	fi
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

# Keep the system service from starting during the install: the tests run
# their own instances and a system Dovecot would listen on ports 110-995.
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod 755 /usr/sbin/policy-rc.d
	policy_added=yes
fi

say "installing $PACKAGES"
if ! apt-get update -qq >"$log" 2>&1; then
	cat "$log" >&2
	say "apt-get update failed"
	exit 1
fi
if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	$PACKAGES >"$log" 2>&1; then
	cat "$log" >&2
	say "apt-get install $PACKAGES failed"
	exit 1
fi

# The service must not come up on the next boot either.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	if systemctl disable --now dovecot.service >/dev/null 2>&1; then
		say "disabled the system dovecot.service (the tests do not use it;" \
			"re-enable with: systemctl enable --now dovecot)"
	fi
fi

if ! ready; then
	say "installed $PACKAGES but dovecot or doveadm still does not run:"
	say "dovecot: $(find_tool dovecot || echo missing), doveadm: $(find_tool doveadm || echo missing)"
	exit 1
fi
say "Dovecot $(version) is installed"
