#!/usr/bin/env bash
# Configure and build petrel: build/ (release-ish, debugoptimized) and, with
# --asan, build-asan/ (AddressSanitizer + UndefinedBehaviorSanitizer).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f build/build.ninja ]; then
	meson setup build --buildtype=debugoptimized -Dwerror=true >/dev/null
fi
meson compile -C build >/dev/null
if [ "${1:-}" = "--asan" ]; then
	if [ ! -f build-asan/build.ninja ]; then
		meson setup build-asan --buildtype=debug -Db_sanitize=address,undefined \
			-Db_lundef=false -Dwerror=true >/dev/null
	fi
	meson compile -C build-asan >/dev/null
fi
