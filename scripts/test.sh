#!/usr/bin/env bash
# Install what the tests need, build petrel twice (plain, and with
# ASan + UBSan), run a short libFuzzer run of every fuzz target
# (scripts/fuzz.sh), then the whole suite with Debian's python3:
#   - against the sanitizer build: the hostile-input cases (tests/hostile),
#     the reliability tests (tests/reliability: crashes, directory outage,
#     disk full, 50 IMAP sessions, privileges), then the integration tests
#     (C unit tests, fuzz corpora, every protocol with real clients);
#   - against the plain build: the integration tests again (the hostile
#     cases are the same code paths; they run once, under the sanitizers).
# The last line is pytest's summary of the plain run; any failure stops
# the script with a non-zero status.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh --test
bash scripts/build.sh --asan
echo "== libFuzzer, ${FUZZ_SECONDS:-15} s per target =="
bash scripts/fuzz.sh
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"

for b in build-asan build; do
	export PETREL_BIN="$PWD/$b/petrel" PETREL_BUILD_DIR="$PWD/$b"
	if [ "$b" = build-asan ]; then
		echo "== ASan + UBSan build =="
		/usr/bin/python3 -m pytest -q tests/hostile "$@"
		/usr/bin/python3 -m pytest -q tests/reliability "$@"
	else
		echo "== plain build =="
	fi
	# the last line is the integration suite's summary
	/usr/bin/python3 -m pytest -q tests/integration "$@"
done
