#!/usr/bin/env bash
# Build every fuzz target under fuzz/ with clang's libFuzzer (+ ASan and
# UBSan) and run each for FUZZ_SECONDS (default 15) from a copy of its
# corpus in fuzz/corpus/<name>/. A crash, leak, sanitizer report or timeout
# stops the script with status 1; the input that caused it is left in
# $FUZZ_OUT/<name>/ (default: a new directory under $TMPDIR, or /tmp) and
# named on stderr.
#
#   scripts/fuzz.sh                          # the short run of the test command
#   FUZZ_SECONDS=3600 scripts/fuzz.sh        # the longer run (docs/reliability.md)
#   FUZZ_SECONDS=600 scripts/fuzz.sh smtp_parse mime   # some targets only
#   FUZZ_JOBS=1 scripts/fuzz.sh              # one target at a time (default: one per CPU)
#   FUZZ_CPU_SECONDS=1800 FUZZ_MERGE=1 scripts/fuzz.sh http   # the long run: see below
#
# FUZZ_CPU_SECONDS bounds a run by the CPU time the fuzzer used (read from
# /proc every 5 s; libFuzzer is stopped with SIGINT and prints its final
# stats) instead of wall-clock time, so a run on a shared machine gets the
# CPU it was meant to. FUZZ_UNIT_TIMEOUT (default 10) is libFuzzer's
# wall-clock limit for one input: raise it for long runs on a loaded
# machine, where a starved process can spend 10 s on a 0.2 s input.
# FUZZ_MERGE=1 merges what the run found into
# fuzz/corpus/<name>/ (libFuzzer's -merge=1 keeps only inputs that add
# coverage) after a run without failure.
#
# Needs clang and libclang-rt-14-dev (scripts/install-deps.sh --test).
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH=${FUZZ_SECONDS:-15}
UNIT_TIMEOUT=${FUZZ_UNIT_TIMEOUT:-10}
OUT=${FUZZ_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/petrel-fuzz.XXXXXX")}
CC=${FUZZ_CC:-clang}
command -v "$CC" >/dev/null || { echo "fuzz: $CC not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 1; }

base="lib/base/alloc.c lib/base/str.c lib/base/log.c lib/base/base64.c lib/base/err.c"
sources() {
	case "$1" in
	mime|imap_parse) echo "lib/mime/mime.c lib/mime/envelope.c lib/mime/decode.c lib/mime/preview.c lib/imap/parse.c lib/imap/search.c lib/imap/sort.c lib/imap/metadata.c $base" ;;
	imap_sort) echo "lib/mime/mime.c lib/mime/envelope.c lib/mime/decode.c lib/mime/preview.c lib/imap/parse.c lib/imap/search.c lib/imap/sort.c
		lib/store/mbox_sort.c lib/store/mbox_index.c lib/store/mailbox.c lib/store/mbox_cache.c lib/store/mbox_legacy.c
		lib/store/mbox_log.c lib/store/mbox_expunged.c lib/store/mbox_objectid.c
		lib/maildir/maildir.c lib/base/fdio.c $base" ;;
	config|maildir_name) echo "lib/base/addr.c lib/base/fdio.c lib/config/config.c lib/maildir/maildir.c lib/maildir/subscriptions.c lib/dir/dir_url.c $base" ;;
	imap_framing) echo "lib/imap/framing.c lib/imap/parse.c $base" ;;
	smtp_parse) echo "lib/smtp/parse.c $base" ;;
	smtp_reply) echo "lib/smtp/reply.c $base" ;;
	base64) echo "$base" ;;
	authd_proto) echo "lib/authd/proto.c $base" ;;
	queue_file) echo "lib/queue/queue.c lib/queue/spool.c lib/base/fdio.c $base" ;;
	sasl) echo "lib/session/sasl.c $base" ;;
	pop3_cmd) echo "lib/pop3/parse.c $base" ;;
	addr_route|route) echo "lib/route/route.c lib/base/addr.c lib/dir/dir.c lib/dir/dir_sqlite.c lib/dir/dir_mariadb.c
		lib/dir/dir_url.c lib/config/config.c lib/maildir/maildir.c lib/maildir/quota.c lib/base/fdio.c $base
		-I/usr/include/mariadb -lsqlite3 -lmariadb" ;;
	mx_answer) echo "lib/queue/mx_answer.c" ;;
	mbox_index|mailbox_files|legacy_files) echo "lib/store/mbox_index.c lib/store/mailbox.c lib/store/mbox_cache.c lib/store/mbox_legacy.c lib/store/mbox_log.c lib/store/mbox_expunged.c lib/store/mbox_objectid.c lib/maildir/maildir.c
		lib/base/fdio.c $base" ;;
	quota) echo "lib/maildir/quota.c lib/maildir/maildir.c lib/base/fdio.c $base" ;;
	session_line) echo "lib/session/line.c $base -levent" ;;
	http) echo "lib/http/parse.c $base" ;;
	milter_reply) echo "lib/milter/proto.c lib/milter/client.c lib/queue/spool.c lib/base/fdio.c $base" ;;
	sieve_parse|sieve_run) echo "lib/sieve/parse.c lib/sieve/spec.c lib/sieve/run.c lib/sieve/store.c lib/base/fdio.c lib/mime/mime.c lib/mime/envelope.c
		lib/mime/decode.c lib/mime/preview.c $base" ;;
	trust_fields) echo "lib/trust/rdata.c lib/trust/authres.c lib/trust/dmarc.c lib/trust/arc.c lib/trust/tags.c lib/trust/canon.c lib/queue/spool.c lib/dnsrec/check.c lib/trust/dnsq.c lib/base/addr.c lib/base/fdio.c
		lib/config/config.c lib/maildir/maildir.c lib/maildir/subscriptions.c lib/dir/dir_url.c $base -lunbound -lopendmarc -lpsl -lcrypto" ;;
	managesieve_cmd) echo "lib/managesieve/parse.c $base" ;;
	mta_sts) echo "lib/trust/mta_sts.c" ;;
	tlsrpt) echo "lib/trust/tls_rpt.c lib/trust/state_writer.c lib/base/fdio.c $base -lsqlite3 -lz" ;;
	*) echo "fuzz: no target '$1'" >&2; exit 1 ;;
	esac
}

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(smtp_parse smtp_reply imap_parse imap_framing mime config maildir_name base64 queue_file authd_proto
	sasl pop3_cmd addr_route mx_answer mbox_index quota session_line route mailbox_files imap_sort
	legacy_files http milter_reply sieve_parse sieve_run trust_fields managesieve_cmd mta_sts tlsrpt)
mkdir -p "$OUT"
# One target: build it, run it from a copy of its corpus; 0, or 1 with the
# end of its log on stderr.
run_target() {
	local t=$1 dir="$OUT/$1" runs
	rm -rf "$dir" && mkdir -p "$dir/corpus"
	# shellcheck disable=SC2046
	if ! "$CC" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
		-D_GNU_SOURCE -I. "fuzz/fuzz_$t.c" $(sources "$t") -o "$dir/fuzz_$t"; then
		echo "fuzz: $t does not build" >&2
		return 1
	fi
	cp fuzz/corpus/"$t"/* "$dir/corpus/" 2>/dev/null || true
	local limit=$SECONDS_EACH what="${SECONDS_EACH}s" st=0
	[ -z "${FUZZ_CPU_SECONDS:-}" ] || { limit=$((FUZZ_CPU_SECONDS * 4 + 600)); what="${FUZZ_CPU_SECONDS} CPU-s"; }
	(cd "$dir" && exec ./"fuzz_$t" -max_total_time="$limit" -timeout="$UNIT_TIMEOUT" \
		-rss_limit_mb=2048 -print_final_stats=1 corpus >log 2>&1) &
	local pid=$!
	[ -z "${FUZZ_CPU_SECONDS:-}" ] || cpu_watch "$pid" "$FUZZ_CPU_SECONDS" "$dir" &
	wait "$pid" || st=$?
	# SIGINT from the CPU watch ends libFuzzer with its stats and status 0/130
	if [ "$st" -ne 0 ] && ! { [ -n "${FUZZ_CPU_SECONDS:-}" ] && [ -f "$dir/.cpu-done" ] &&
		! ls "$dir"/crash-* "$dir"/leak-* "$dir"/timeout-* >/dev/null 2>&1; }; then
		tail -40 "$dir/log" >&2
		echo "fuzz: $t failed; the input is in $dir (crash-*, leak-*, timeout-*)" >&2
		return 1
	fi
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log")
	echo "fuzz: $t: ${runs:-?} runs in $what, no failure; $(grep -o 'cov: [0-9]* ft: [0-9]*' "$dir/log" | tail -1)"
	if [ "${FUZZ_MERGE:-0}" = 1 ]; then
		mkdir -p fuzz/corpus/"$t"
		(cd "$dir" && ./"fuzz_$t" -merge=1 -timeout="$UNIT_TIMEOUT" -rss_limit_mb=2048 \
			"$OLDPWD/fuzz/corpus/$t" corpus >merge.log 2>&1) ||
			{ tail -20 "$dir/merge.log" >&2; echo "fuzz: $t: merge failed" >&2; return 1; }
		echo "fuzz: $t: corpus now $(find fuzz/corpus/"$t" -type f | wc -l) files"
	fi
}

# Stop fuzzer PID with SIGINT once it used SECS seconds of CPU (user+system,
# from /proc/PID/stat); DIR/.cpu-done (the CPU seconds) marks the stop so it
# is not taken for a failure.
cpu_watch() {
	local pid=$1 secs=$2 dir=$3 tck used
	tck=$(getconf CLK_TCK)
	while kill -0 "$pid" 2>/dev/null; do
		sleep 5
		used=$(awk -v t="$tck" '{ print int(($14 + $15) / t) }' /proc/"$pid"/stat 2>/dev/null) || continue
		if [ "${used:-0}" -ge "$secs" ]; then
			echo "$used" >"$dir/.cpu-done"
			kill -INT "$pid" 2>/dev/null || true
			return 0
		fi
	done
}

# FUZZ_JOBS targets at a time (default: one per CPU); the first failure
# stops the starting of new ones, the running ones finish.
jobs_max=${FUZZ_JOBS:-$(nproc)}
failed=0
running=0
for t in "${targets[@]}"; do
	sources "$t" >/dev/null || exit 1
	if [ "$running" -ge "$jobs_max" ]; then
		wait -n || failed=1
		running=$((running - 1))
	fi
	[ "$failed" -eq 0 ] || break
	run_target "$t" &
	running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
	wait -n || failed=1
	running=$((running - 1))
done
if [ "$failed" -ne 0 ]; then
	exit 1
fi
# a run of its own that found nothing leaves nothing behind
[ -n "${FUZZ_OUT:-}" ] || rm -rf "$OUT"
