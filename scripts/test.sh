#!/usr/bin/env bash
# Install what the tests need, build petrel twice (plain, and with
# ASan + UBSan), and run the whole suite -- the C unit tests and the pytest
# integration tests -- against the sanitizer build, then the plain build,
# with Debian's python3. The last line is pytest's summary of the plain run;
# any failure in either run stops the script with a non-zero status.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh --test
bash scripts/build.sh --asan
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"

echo "== ASan + UBSan build =="
PETREL_BIN="$PWD/build-asan/petrel" PETREL_BUILD_DIR="$PWD/build-asan" \
	/usr/bin/python3 -m pytest -q tests/integration "$@"
echo "== plain build =="
PETREL_BIN="$PWD/build/petrel" PETREL_BUILD_DIR="$PWD/build" \
	/usr/bin/python3 -m pytest -q tests/integration "$@"
