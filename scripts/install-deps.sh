#!/usr/bin/env bash
# Install petrel's build dependencies (and with --test, what the test suite
# needs) from Debian 12's packages. Idempotent and quiet when everything is
# already present. Must run as root (or with sudo available).
set -euo pipefail

build_pkgs=(gcc meson ninja-build pkg-config libssl-dev libsqlite3-dev
	libmariadb-dev libcrypt-dev libevent-dev libunbound-dev libopendkim-dev
	zlib1g-dev libspf2-dev libopendmarc-dev libpsl-dev publicsuffix)
# Real clients the integration tests drive: swaks (with Net::SSLeay for
# its TLS, only recommended by the package), curl, fetchmail, Postfix's
# smtp-source (from the postfix package; no Postfix service is run),
# python3-dkim as an independent DKIM verifier and ARC signer (its arc_sign
# needs python3-authres), and for IMAP mbsync (isync)
# and mutt (driven in a detached tmux session); clang and its libFuzzer
# runtime for the short fuzz runs (scripts/fuzz.sh); valgrind for
# scripts/valgrind.sh; testssl.sh for one scan in tests/integration/test_tls.py;
# nsd-checkzone (nsd; its service is never started) to load `petrel dns` output,
# and nsd itself, which test_trust_dns.py runs on loopback with its own zones;
# ldnsutils (ldns-keygen, ldns-signzone) signs test_dane.py's DNSSEC zone;
# strace for the syscall-order durability test (tests/reliability);
# debhelper and lintian to build and check the Debian package, and
# systemd's tools (systemd-analyze) for the unit (test_packaging.py,
# test_systemd.py; systemd is not started); iproute2 for the test addresses
# on lo (scripts/test.sh) and the harness's address lookup.
# Roundcube webmail (with its SQLite backend, served by php-cli's built-in
# server) driven by headless Chromium through selenium (test_webmail.py).
# man-db and groff-base render the manual pages with warnings on
# (test_help.py); python3-prometheus-client parses /metrics (test_http.py).
# rspamd, whose milter proxy test_milter.py starts with its own
# configuration on loopback (the package's service is never started).
# python3-llfuse and fuse3 for durafs, the file system that forgets what was
# never synced (tests/reliability/test_power_loss.py).
# PostfixAdmin (run from a copy of its configuration, its CLI against the
# tests' private MariaDB; no web server or system database is set up) with
# the PHP modules it needs (test_postfixadmin.py).
# sieve-connect, a real ManageSieve client (test_managesieve.py).
# galera-4 and rsync: a private three-node Galera cluster, its joiners fed
# by rsync SST (tests/reliability/test_galera.py).
# python3-pytest-xdist runs the integration suite on several workers
# (scripts/test.sh --jobs N).
test_pkgs=(python3 python3-pytest python3-pytest-xdist mariadb-server mariadb-client sqlite3
	openssl procps swaks libnet-ssleay-perl curl fetchmail postfix python3-dkim python3-authres isync mutt tmux
	clang libclang-rt-14-dev valgrind testssl.sh nsd strace pflogsumm unbound
	debhelper lintian systemd git util-linux iproute2
	roundcube-core roundcube-sqlite3 php-cli php-sqlite3 chromium chromium-driver
	python3-selenium man-db groff-base python3-prometheus-client rspamd
	python3-llfuse fuse3 postfixadmin php-mysql php-mbstring php-imap
	sieve-connect galera-4 rsync ldnsutils)

pkgs=("${build_pkgs[@]}")
if [ "${1:-}" = "--test" ]; then
	pkgs+=("${test_pkgs[@]}")
fi

missing=()
for p in "${pkgs[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done
# The old IMAP servers for the migration round trip are unpacked, not
# installed (their packages conflict): scripts/install-legacy-imap.sh.
# test_journald.py runs a systemd-journald of its own, which needs a
# machine id: a bare container may have none (systemd makes one at first
# boot), so make it the same way.
legacy() {
	if [ "${1:-}" = "--test" ]; then
		bash "$(dirname "$0")/install-legacy-imap.sh"
		if [ "$(id -u)" -eq 0 ] && [ ! -s /etc/machine-id ] &&
		    command -v systemd-machine-id-setup >/dev/null; then
			systemd-machine-id-setup >/dev/null
		fi
	fi
}
if [ ${#missing[@]} -eq 0 ]; then
	legacy "${1:-}"
	exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null || { echo "install-deps: run as root" >&2; exit 1; }
	SUDO="sudo"
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# No service may start from the package scripts (the tests run their own
# MariaDB in a temporary directory).
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
	$SUDO chmod +x /usr/sbin/policy-rc.d
	trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
# postfix asks how to configure itself: not at all (we only use its tools).
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
# roundcube-core must not set up a system database (the test uses its own).
echo "roundcube-core roundcube/dbconfig-install boolean false" | $SUDO debconf-set-selections
# nor postfixadmin (test_postfixadmin.py gives it the tests' MariaDB).
echo "postfixadmin postfixadmin/dbconfig-install boolean false" | $SUDO debconf-set-selections
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
legacy "${1:-}"
