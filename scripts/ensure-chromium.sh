#!/bin/sh
# ensure-chromium.sh makes sure a headless-capable Chromium is installed, as
# the HTML report's browser test (report/browser_test.go) renders the report
# in it: --dump-dom to count rows and chart bars, --screenshot for a PNG.
#
#   scripts/ensure-chromium.sh        # exit 0 if chromium is ready
#   sudo scripts/ensure-chromium.sh   # install it first if it is missing
#
# As root on Debian or Ubuntu it installs the package below with apt-get
# (after apt-get update). Otherwise it exits 1 and says what to install. It
# never succeeds without a chromium that runs.
set -eu

PACKAGES="chromium"

say() { printf 'ensure-chromium: %s\n' "$*" >&2; }

# shellcheck source=lib/install.sh
. "$(dirname "$0")/lib/install.sh"

# find_browser prints the path of the first Chromium binary in PATH; the
# test looks for the same names in the same order.
find_browser() {
	for name in chromium chromium-browser; do
		if command -v "$name" 2>/dev/null; then
			return 0
		fi
	done
	return 1
}

version() { "$(find_browser)" --version 2>/dev/null | head -n 1; }

ready() {
	find_browser >/dev/null || return 1
	"$(find_browser)" --version >/dev/null 2>&1 || return 1
	return 0
}

if ready; then
	say "$(version) is installed at $(find_browser)"
	exit 0
fi

install_packages "Chromium is not installed (chromium and chromium-browser not found in PATH)" \
	"install Chromium (Debian package: $PACKAGES)" "$PACKAGES"

if ! ready; then
	say "installed $PACKAGES but chromium still does not run: $(find_browser || echo 'not in PATH')"
	exit 1
fi
say "$(version) is installed at $(find_browser)"
