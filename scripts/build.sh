#!/usr/bin/env bash
# Configure and build petrel: build/ (debugoptimized) and, with --asan,
# build-asan/ (AddressSanitizer + UndefinedBehaviorSanitizer). Quiet when
# all is well; the full compiler output when something fails.
set -euo pipefail
cd "$(dirname "$0")/.."

run() {
	local log
	log=$(mktemp)
	if ! "$@" >"$log" 2>&1; then
		cat "$log" >&2
		rm -f "$log"
		echo "build: failed: $*" >&2
		exit 1
	fi
	rm -f "$log"
}

if [ ! -f build/build.ninja ]; then
	run meson setup build --buildtype=debugoptimized -Dwerror=true
fi
run meson compile -C build
if [ "${1:-}" = "--asan" ]; then
	if [ ! -f build-asan/build.ninja ]; then
		run meson setup build-asan --buildtype=debug \
			-Db_sanitize=address,undefined -Db_lundef=false -Dwerror=true
	fi
	run meson compile -C build-asan
fi
