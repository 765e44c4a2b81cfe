# install.sh: the part the ensure-*.sh scripts share, sourced by them after
# they define say(). install_packages either leaves the packages installed
# or exits 1 having said what to do; it never returns on failure.
#
#   install_packages MISSING HOW PACKAGES [SERVICE]
#
# MISSING says what is not there ("Dovecot is not installed (dovecot and
# doveadm not found)"), HOW how to install it by hand ("install Dovecot 2.3
# (Debian packages: ...)"). Only root with apt-get installs; anyone else is
# told the command. SERVICE, when given, is a system service the package
# brings and the tests never use: it is kept from starting during the
# install (policy-rc.d) and disabled for later boots.

install_packages() {
	missing=$1 how=$2 packages=$3 service=${4:-}
	if [ "$(id -u)" -ne 0 ]; then
		say "$missing"
		if command -v apt-get >/dev/null 2>&1; then
			say "install as root with: sudo $0"
			say "(or: sudo apt-get install $packages)"
		else
			say "$how"
			say "with your system's package manager, then run this script again."
		fi
		exit 1
	fi
	if ! command -v apt-get >/dev/null 2>&1; then
		say "$missing, and apt-get is not available on this system;"
		say "$how"
		say "with your system's package manager, then run this script again."
		exit 1
	fi

	install_log=$(mktemp)
	policy_added=""
	trap 'rm -f "$install_log"; [ -z "$policy_added" ] || rm -f /usr/sbin/policy-rc.d' EXIT
	trap 'exit 1' HUP INT TERM
	if [ -n "$service" ] && [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		policy_added=yes
	fi

	say "installing $packages"
	if ! apt-get update -qq >"$install_log" 2>&1; then
		cat "$install_log" >&2
		say "apt-get update failed"
		exit 1
	fi
	# $packages is a list of words.
	# shellcheck disable=SC2086
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		$packages >"$install_log" 2>&1; then
		cat "$install_log" >&2
		say "apt-get install $packages failed"
		exit 1
	fi

	if [ -n "$service" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		if systemctl disable --now "$service.service" >/dev/null 2>&1; then
			say "disabled the system $service.service (the tests do not use it;" \
				"re-enable with: systemctl enable --now $service)"
		fi
	fi
}
