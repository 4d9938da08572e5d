#!/usr/bin/env bash
# Install what the tests need, build petrel twice (plain and with
# ASan + UBSan), and run the whole suite (C unit tests and the pytest
# integration tests, each against both builds) with Debian's python3.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh --test
bash scripts/build.sh --asan
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
export PETREL_BUILDS="$PWD/build,$PWD/build-asan"
exec /usr/bin/python3 -m pytest -p no:cacheprovider -q -ra tests/integration "$@"
