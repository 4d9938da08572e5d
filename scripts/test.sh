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
# The two integration runs go side by side. The last line is pytest's
# summary of the plain run; any failure stops the script with a non-zero
# status. With CI=true a skipped test is a
# failure unless CI cannot have its reason (tests/harness/ci_skips.py).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh --test

# In CI a skipped test fails (tests/harness/ci_skips.py); the tests of
# logins from a client outside 127.0.0.0/8 and ::1 need an address to listen
# on: give the loopback interface one of each family (TEST-NET-2 and a ULA;
# reachable from this machine only), removed again at exit.
added=()
if [ "${CI:-}" = true ] && [ "$(id -u)" -eq 0 ]; then
	for a in 198.51.100.7/32 fd00:7e57::7/128; do
		if ! ip -o addr show dev lo | grep -q " ${a%/*}/"; then
			extra=()
			case $a in *:*) extra=(nodad) ;; esac
			if ip addr add "$a" dev lo "${extra[@]}"; then
				added+=("$a")
			else
				echo "test: could not add $a to lo" >&2
			fi
		fi
	done
fi
cleanup_addresses() {
	local a
	for a in "${added[@]}"; do
		ip addr del "$a" dev lo || true
	done
}
trap cleanup_addresses EXIT
bash scripts/build.sh --asan
echo "== libFuzzer, ${FUZZ_SECONDS:-15} s per target =="
bash scripts/fuzz.sh
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"

run_suite() {	# BUILD_DIR pytest-args...: one pytest run against that build
	local b=$1
	shift
	env PETREL_BIN="$PWD/$b/petrel" PETREL_BUILD_DIR="$PWD/$b" \
		/usr/bin/python3 -m pytest -q "$@"
}

echo "== ASan + UBSan build =="
run_suite build-asan tests/hostile "$@"
run_suite build-asan tests/reliability "$@"

# The integration suite against both builds at once: most of a test's time
# is spent waiting on its servers and clients, so the two runs share the two
# cores well (about 30 minutes instead of 46 one after the other). Each run
# has its own private MariaDB, temporary directories and free ports; the
# heavy once-per-run suites are in the plain build's run only. The plain
# run's output is kept and printed whole after the sanitizer run's, so that
# the last line is its summary.
plain_log=$(mktemp "${TMPDIR:-/tmp}/petrel-plain.XXXXXX")
(
	b=build
	exec env PETREL_BIN="$PWD/$b/petrel" PETREL_BUILD_DIR="$PWD/$b" \
		/usr/bin/python3 -m pytest -q tests/integration -p no:cacheprovider "$@"
) > "$plain_log" 2>&1 &
plain_pid=$!
stop_plain() {
	kill "$plain_pid" 2>/dev/null || true
}
trap 'stop_plain; cleanup_addresses' EXIT
echo "== ASan + UBSan build: integration (the plain build's run alongside) =="
asan_status=0
run_suite build-asan tests/integration -p no:cacheprovider "$@" || asan_status=$?
plain_status=0
wait "$plain_pid" || plain_status=$?
trap cleanup_addresses EXIT
echo "== plain build: integration =="
cat "$plain_log"
rm -f "$plain_log"
if [ "$asan_status" -ne 0 ]; then
	echo "test: the ASan + UBSan build's integration run failed (status $asan_status, above)" >&2
	exit "$asan_status"
fi
exit "$plain_status"
