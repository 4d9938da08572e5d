#!/usr/bin/env bash
# Install what the tests need, build petrel twice (plain, and with
# ASan + UBSan), run a short libFuzzer run of every fuzz target
# (scripts/fuzz.sh), then the whole suite with Debian's python3:
#   - against the sanitizer build: the hostile-input cases (tests/hostile),
#     the reliability tests (tests/reliability: crashes, directory outage,
#     disk full, 50 IMAP sessions, privileges, Galera, the scale-out
#     cluster), then the integration modules of the protocol sessions,
#     the store, delivery and filters,
#     the C unit tests and the fuzz corpora (--asan-all: all of them);
#   - against the plain build: the whole integration suite (the hostile
#     cases are the same code paths; they run once, under the sanitizers).
# The last line is pytest's summary of the plain run; any failure stops
# the script with a non-zero status. With CI=true a skipped test is a
# failure unless CI cannot have its reason (tests/harness/ci_skips.py).
set -euo pipefail
cd "$(dirname "$0")/.."

# `--asan-all`: the whole integration suite on the sanitizer build too.
# `--jobs N` runs the integration modules on N pytest workers
# (python3-pytest-xdist; tests/integration/conftest.py keeps the modules
# that share fixed addresses on one worker); tests/hostile and
# tests/reliability always run one test at a time (they load the machine
# on purpose, or measure it).
# `--asan-only --repeat K` (with --asan-all): the sanitizer passes alone,
# K times in a row, stopping at the first failure (no fuzzing, no plain
# pass): the suite's check on itself that no test passes by luck or speed.
asan_all=false
asan_only=false
repeat=1
jobs=()
args=()
while [ $# -gt 0 ]; do
	case $1 in
	--asan-all) asan_all=true ;;
	--asan-only) asan_only=true ;;
	--repeat)
		[ $# -ge 2 ] || { echo "test.sh: --repeat needs a number" >&2; exit 1; }
		case $2 in ''|*[!0-9]*|0) echo "test.sh: --repeat needs a number" >&2; exit 1 ;; esac
		repeat=$2
		shift ;;
	--jobs)
		[ $# -ge 2 ] || { echo "test.sh: --jobs needs a number" >&2; exit 1; }
		case $2 in ''|*[!0-9]*) echo "test.sh: --jobs needs a number" >&2; exit 1 ;; esac
		if [ "$2" -gt 1 ]; then jobs=(-n "$2" --dist loadgroup); fi
		shift ;;
	*) args+=("$1") ;;
	esac
	shift
done
set -- "${args[@]+"${args[@]}"}"

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
if [ "$asan_only" = false ]; then
	echo "== libFuzzer, ${FUZZ_SECONDS:-15} s per target =="
	bash scripts/fuzz.sh
fi
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"

# Against the sanitizer build, the integration modules that drive the
# protocol sessions, the store, delivery, filters and the C unit tests and
# fuzz corpora (the modules that mostly drive the CLI, set-up and
# configuration run against the plain build only: under ASan every CLI
# process pays about 0.2 s of start-up, which made this pass 30-50 minutes).
# `bash scripts/test.sh --asan-all` runs the whole integration suite there.
asan_integration=(tests/integration)
if [ "$asan_all" = false ]; then
	asan_integration=()
	for f in tests/integration/test_unit.py tests/integration/test_fuzz_corpus.py \
		tests/integration/test_imap_*.py tests/integration/test_lmtp.py \
		tests/integration/test_proxy.py tests/integration/test_frontend_lmtp.py tests/integration/test_user_move.py \
		tests/integration/test_smtp_data.py tests/integration/test_submission*.py \
		tests/integration/test_pop3_protocol.py tests/integration/test_outbound*.py \
		tests/integration/test_sieve_*.py tests/integration/test_managesieve.py \
		tests/integration/test_milter.py tests/integration/test_arc.py \
		tests/integration/test_trust_dns.py tests/integration/test_srs.py tests/integration/test_dmarc_failure.py tests/integration/test_tls_rpt.py \
		tests/integration/test_dnsbl_greylist.py tests/integration/test_http*.py \
		tests/integration/test_quota_courier.py tests/integration/test_dkim*.py; do
		if [ -e "$f" ]; then asan_integration+=("$f"); fi
	done
fi

builds=(build-asan build)
if [ "$asan_only" = true ]; then builds=(build-asan); fi
for pass in $(seq 1 "$repeat"); do
	if [ "$repeat" -gt 1 ]; then echo "== pass $pass of $repeat ($(date -u +%H:%M:%S) UTC) =="; fi
	for b in "${builds[@]}"; do
		export PETREL_BIN="$PWD/$b/petrel" PETREL_BUILD_DIR="$PWD/$b"
		if [ "$b" = build-asan ]; then
			echo "== ASan + UBSan build =="
			/usr/bin/python3 -m pytest -q tests/hostile "$@"
			/usr/bin/python3 -m pytest -q tests/reliability "$@"
			/usr/bin/python3 -m pytest -q "${jobs[@]+"${jobs[@]}"}" "${asan_integration[@]}" "$@"
		else
			echo "== plain build =="
			# the last line is the integration suite's summary
			/usr/bin/python3 -m pytest -q "${jobs[@]+"${jobs[@]}"}" tests/integration "$@"
		fi
	done
done
