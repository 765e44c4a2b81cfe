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

# shellcheck source=lib/install.sh
. "$(dirname "$0")/lib/install.sh"

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

# Keep the packaged cluster from starting: the tests run their own servers,
# and a system one would hold port 5432 and memory.
install_packages "PostgreSQL is not installed (no initdb in /usr/lib/postgresql/*/bin or on PATH)" \
	"install the PostgreSQL server (10 or newer; Debian package: $PACKAGES)" \
	"$PACKAGES" postgresql

if ! ready; then
	say "installed $PACKAGES but initdb, postgres or pg_ctl still does not run:"
	say "server programs: $(bin_dir || echo missing)"
	exit 1
fi
say "$(version) is installed ($(bin_dir))"
