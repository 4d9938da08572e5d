#!/usr/bin/env bash
# Run the test suite with every petrel process under valgrind's memcheck:
# PETREL_BIN becomes a wrapper that starts build/petrel under valgrind
# (workers and the queue manager, which serve re-executes, are followed),
# any memcheck error
# makes that petrel process exit 99 (which the tests see as a failure), and
# the helpers' time bounds are stretched (PETREL_TIMEOUT_SCALE, default 8).
# Reports: $VG_LOGS/vg.<pid>.log (default $TMPDIR/petrel-valgrind, /tmp without TMPDIR); the script
# ends with the list of logs that hold an error.
#
#   scripts/valgrind.sh                                   # the whole suite (hours)
#   scripts/valgrind.sh tests/integration/test_smtp_protocol.py -x
#
# Needs valgrind (scripts/install-deps.sh --test). Leaks are checked by
# LeakSanitizer in the ASan run of the test command, not here.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/build.sh
VG_LOGS=${VG_LOGS:-${TMPDIR:-/tmp}/petrel-valgrind}
rm -rf "$VG_LOGS" && mkdir -p "$VG_LOGS"
wrapper="$VG_LOGS/petrel"
cat >"$wrapper" <<WRAP
#!/bin/sh
exec valgrind -q --trace-children=yes --error-exitcode=99 --leak-check=no --track-fds=no \\
	--log-file="$VG_LOGS/vg.%p.log" "$PWD/build/petrel" "\$@"
WRAP
chmod 755 "$wrapper"
chmod 755 "$VG_LOGS"

export PETREL_BIN="$wrapper" PETREL_BUILD_DIR="$PWD/build"
export PETREL_TIMEOUT_SCALE=${PETREL_TIMEOUT_SCALE:-8}
status=0
if [ $# -gt 0 ]; then
	/usr/bin/python3 -m pytest -q "$@" || status=1
else
	for t in tests/hostile tests/reliability tests/integration; do
		/usr/bin/python3 -m pytest -q "$t" || status=1
	done
fi
bad=$(grep -l "ERROR SUMMARY: [1-9]\|Invalid \|uninitialised" "$VG_LOGS"/vg.*.log 2>/dev/null || true)
if [ -n "$bad" ]; then
	echo "valgrind: errors reported in:" $bad >&2
	status=1
else
	echo "valgrind: no memcheck error in $(ls "$VG_LOGS"/vg.*.log 2>/dev/null | wc -l) process logs"
fi
exit $status
