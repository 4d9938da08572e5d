#!/usr/bin/env bash
# Unpack the IMAP and POP3 servers petrel replaces, Dovecot and Courier, from
# Debian 12's packages into a private directory (default
# /opt/petrel-legacy, or $PETREL_LEGACY_DIR), for the migration round-trip
# tests (tests/integration/test_migration_roundtrip.py), and Dovecot's
# Sieve plugin (dovecot-sieve: Pigeonhole's sieve-test), the reference the
# Sieve corpus test compares petrel's interpreter with
# (tests/integration/test_sieve_corpus.py). The packages
# dovecot-imapd and courier-imap conflict (courier-pop would pull in the
# Courier MTA), and none may start a
# service here, so both are unpacked with `dpkg -x`, never installed; only
# the shared libraries they need are installed (ordinary library packages).
# Idempotent and quiet when everything is already present. Run as root
# (scripts/install-deps.sh --test calls it).
set -euo pipefail

dest=${PETREL_LEGACY_DIR:-/opt/petrel-legacy}
debs=(dovecot-core dovecot-imapd dovecot-pop3d dovecot-sieve courier-imap
	courier-pop courier-authlib libcourier-unicode4 libgamin0)
stamp="$dest/.unpacked"
libpath="$dest/usr/lib/x86_64-linux-gnu:$dest/usr/lib:$dest/usr/lib/dovecot"

complete() {
	[ -f "$stamp" ] && [ -x "$dest/usr/lib/dovecot/imap" ] &&
		[ -x "$dest/usr/bin/doveconf" ] && [ -x "$dest/usr/bin/imapd" ] &&
		[ -x "$dest/usr/bin/sieve-test" ] &&
		[ -x "$dest/usr/lib/dovecot/pop3" ] &&
		[ -x "$dest/usr/lib/courier/courier/courierpop3d" ] &&
		! LD_LIBRARY_PATH="$libpath" ldd "$dest/usr/lib/dovecot/imap" \
			"$dest/usr/bin/imapd" "$dest/usr/bin/sieve-test" \
			"$dest/usr/lib/dovecot/pop3" \
			"$dest/usr/lib/courier/courier/courierpop3d" 2>/dev/null |
			grep -q "not found"
}
complete && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null || { echo "install-legacy-imap: run as root" >&2; exit 1; }
	SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"

# The package lists may never have been fetched on this machine.
if ! apt-cache show "${debs[@]}" >/dev/null 2>&1; then
	$SUDO apt-get update -qq
fi
# The libraries the binaries link (Depends: lib*), installed as usual.
libs=()
for d in $(apt-cache depends --no-recommends --no-suggests --no-conflicts \
	--no-breaks --no-replaces --no-enhances "${debs[@]}" 2>/dev/null |
	awk '$1 == "Depends:" && $2 ~ /^lib/ { print $2 }' | sort -u); do
	case " ${debs[*]} " in *" $d "*) continue ;; esac
	if ! dpkg-query -W -f='${Status}' "$d" 2>/dev/null | grep -q "install ok installed"; then
		if apt-cache show "$d" >/dev/null 2>&1; then
			libs+=("$d")
		fi
	fi
done
if [ ${#libs[@]} -gt 0 ]; then
	echo "install-legacy-imap: installing ${libs[*]}" >&2
	if ! $SUDO apt-get install -y -qq --no-install-recommends "${libs[@]}" \
		>"$work/apt.log" 2>&1; then
		cat "$work/apt.log" >&2
		exit 1
	fi
fi

echo "install-legacy-imap: unpacking ${debs[*]} into $dest" >&2
(cd "$work" && apt-get download -qq -o APT::Sandbox::User=root "${debs[@]}" >/dev/null)
$SUDO mkdir -p "$dest"
for f in "$work"/*.deb; do
	$SUDO dpkg -x "$f" "$dest"
done
if LD_LIBRARY_PATH="$libpath" ldd "$dest/usr/lib/dovecot/imap" "$dest/usr/bin/imapd" \
	"$dest/usr/bin/sieve-test" "$dest/usr/lib/dovecot/pop3" \
	"$dest/usr/lib/courier/courier/courierpop3d" |
	grep "not found" >&2; then
	echo "install-legacy-imap: libraries missing (above)" >&2
	exit 1
fi
(cd "$work" && ls -1 *.deb) | $SUDO tee "$stamp" >/dev/null
