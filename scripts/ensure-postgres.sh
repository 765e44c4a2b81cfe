#!/bin/sh
# ensure-postgres.sh makes sure PostgreSQL's server programs are installed,
# as popmigrate's journal tests need them: they start a private PostgreSQL
# on 127.0.0.1 (initdb in a temporary folder, a high port; see
# internal/pgtest) and never use a system one.
#
#   scripts/ensure-postgres.sh        # exit 0 if PostgreSQL is ready
#   sudo scripts/ensure-postgres.sh   # install it first if it is missing
#
# As root on Debian or Ubuntu it installs the package below with apt-get and
# keeps the packaged cluster from starting (the tests never use it).
# PostgreSQL refuses to run as root: tests run as root start it as the
# postgres user the package creates, which this script checks. Otherwise it
# exits 1 and says what to install. It never succeeds without a working
# initdb, postgres and pg_ctl.
set -eu

PACKAGES="postgresql"

say() { printf 'ensure-postgres: %s\n' "$*" >&2; }

is_root() { [ "$(id -u)" -eq 0 ]; }

# bin_dir prints the folder of the newest server programs: Debian's
# /usr/lib/postgresql/VERSION/bin, or the folder of initdb on PATH (what
# internal/pgtest looks for, in the same order).
bin_dir() {
	best=""
	best_version=""
	for dir in /usr/lib/postgresql/*/bin; do
		[ -x "$dir/initdb" ] && [ -x "$dir/postgres" ] && [ -x "$dir/pg_ctl" ] || continue
		version=$(basename "$(dirname "$dir")")
		if [ -z "$best" ] || [ "$(printf '%s\n%s\n' "$best_version" "$version" | sort -n | tail -n 1)" = "$version" ]; then
			best=$dir
			best_version=$version
		fi
	done
	if [ -n "$best" ]; then
		echo "$best"
		return 0
	fi
	if command -v initdb >/dev/null 2>&1; then
		dirname "$(command -v initdb)"
		return 0
	fi
	return 1
}

version() { "$(bin_dir)/postgres" --version 2>/dev/null | head -n 1; }

# ready reports whether PostgreSQL can run the tests: the programs run, and
# as root the postgres user exists.
ready() {
	dir=$(bin_dir) || return 1
	"$dir/postgres" --version >/dev/null 2>&1 || return 1
	"$dir/initdb" --version >/dev/null 2>&1 || return 1
	"$dir/pg_ctl" --version >/dev/null 2>&1 || return 1
	if is_root && ! getent passwd postgres >/dev/null 2>&1; then
		say "the tests run as root, and then start PostgreSQL as the user postgres, which is missing"
		return 1
	fi
	return 0
}

if ready; then
	say "$(version) is installed ($(bin_dir))"
	exit 0
fi

if ! is_root; then
	say "PostgreSQL is not installed (no initdb in /usr/lib/postgresql/*/bin or on PATH)."
	if command -v apt-get >/dev/null 2>&1; then
		say "install it as root with: sudo $0"
		say "(or: sudo apt-get install $PACKAGES)"
	else
		say "install the PostgreSQL server (10 or newer; Debian package: $PACKAGES)"
		say "with your system's package manager, then run this script again."
	fi
	exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
	say "PostgreSQL is not installed and apt-get is not available on this system;"
	say "install the PostgreSQL server (10 or newer; Debian package: $PACKAGES)"
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

# Keep the packaged cluster from starting during the install: the tests run
# their own servers, and a system one would hold port 5432 and memory.
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
	if systemctl disable --now postgresql.service >/dev/null 2>&1; then
		say "disabled the system postgresql.service (the tests do not use it;" \
			"re-enable with: systemctl enable --now postgresql)"
	fi
fi

if ! ready; then
	say "installed $PACKAGES but initdb, postgres or pg_ctl still does not run:"
	say "server programs: $(bin_dir || echo missing)"
	exit 1
fi
say "$(version) is installed ($(bin_dir))"
