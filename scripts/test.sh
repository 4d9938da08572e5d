#!/usr/bin/env bash
# Install what the tests need, build petrel twice (plain, and with
# ASan + UBSan), and run the whole suite -- the hostile-input cases
# (tests/hostile), the C unit tests, the fuzz corpora and the pytest
# integration tests -- against the sanitizer build, then the plain build,
# with Debian's python3. The last line is pytest's summary of the plain run;
# any failure in either run stops the script with a non-zero status.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh --test
bash scripts/build.sh --asan
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"

for b in build-asan build; do
	if [ "$b" = build-asan ]; then
		echo "== ASan + UBSan build =="
	else
		echo "== plain build =="
	fi
	export PETREL_BIN="$PWD/$b/petrel" PETREL_BUILD_DIR="$PWD/$b"
	# the hostile-input suite (tests/hostile), then everything else;
	# the last line is the integration suite's summary
	/usr/bin/python3 -m pytest -q tests/hostile "$@"
	/usr/bin/python3 -m pytest -q tests/integration "$@"
done
