#!/usr/bin/env bash
# The long runs of the reliability suite, in one command (about an hour):
#   - tests/reliability with PETREL_STRESS=1 (kill -9 rounds: 60 under SMTP
#     load, 45 during queue runs; the 50-session IMAP model for 600
#     operations per session; the outage and disk-full cases) against the
#     ASan + UBSan build, then the plain build;
#   - libFuzzer for FUZZ_SECONDS (default 300) per target.
#
#   tests/stress/run.sh                    # everything
#   FUZZ_SECONDS=3600 tests/stress/run.sh  # a longer fuzzing run
#
# Needs what the test command installs (scripts/install-deps.sh --test).
set -euo pipefail
cd "$(dirname "$0")/../.."

bash scripts/build.sh --asan
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
export PETREL_STRESS=1
for b in build-asan build; do
	echo "== tests/reliability, PETREL_STRESS=1, $b =="
	PETREL_BIN="$PWD/$b/petrel" PETREL_BUILD_DIR="$PWD/$b" \
		/usr/bin/python3 -m pytest -q tests/reliability "$@"
done
echo "== libFuzzer, ${FUZZ_SECONDS:-300} s per target =="
FUZZ_SECONDS=${FUZZ_SECONDS:-300} bash scripts/fuzz.sh
