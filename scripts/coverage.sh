#!/usr/bin/env bash
# Line and branch coverage of the C code by the test suites: a gcov build in
# build-cov/ (-Db_coverage=true, -O0), the C unit tests, then the pytest
# suites named on the command line (default: tests/integration) against
# build-cov/petrel, then a per-directory summary by gcovr.
#
#   bash scripts/coverage.sh                        # unit + integration
#   bash scripts/coverage.sh tests/integration tests/hostile
#   PYTEST_ARGS="-k imap" bash scripts/coverage.sh  # a subset
#
# Output: build-cov/coverage.txt (per directory, also on stdout),
# build-cov/coverage-files.txt (lines per file), build-cov/coverage.json. Counters of processes killed
# by SIGKILL are lost (gcov writes at exit), so the crash suite adds little.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v gcovr >/dev/null; then
	apt-get install -y -q gcovr >/dev/null
fi
if [ ! -f build-cov/build.ninja ]; then
	meson setup build-cov --buildtype=debug -Db_coverage=true >/dev/null
fi
meson compile -C build-cov >/dev/null
# counters from an earlier run would add up with this one's
find build-cov -name '*.gcda' -delete
meson test -C build-cov --print-errorlogs >/dev/null

suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(tests/integration)
export PETREL_BIN="$PWD/build-cov/petrel" PETREL_BUILD_DIR="$PWD/build-cov"
# the suites' own failures are reported, the figures are made anyway
/usr/bin/python3 -m pytest -q ${PYTEST_ARGS:-} "${suites[@]}" || echo "coverage: some tests failed" >&2

filters=(--root . --object-directory build-cov
	--exclude 'build-cov/' --exclude 'tests/' --exclude 'fuzz/' --exclude 'bench/')
gcovr "${filters[@]}" --branches --json-summary build-cov/coverage.json >/dev/null
gcovr "${filters[@]}" --txt build-cov/coverage-files.txt >/dev/null
# per directory, from gcovr's per-file figures
/usr/bin/python3 - build-cov/coverage.json <<'EOF' | tee build-cov/coverage.txt
import collections, json, sys

acc = collections.OrderedDict()
for f in sorted(json.load(open(sys.argv[1]))["files"], key=lambda f: f["filename"]):
    name = f["filename"]
    d = name.rsplit("/", 1)[0] if "/" in name else "."
    a = acc.setdefault(d, [0, 0, 0, 0])
    a[0] += f["line_total"]; a[1] += f["line_covered"]
    a[2] += f["branch_total"]; a[3] += f["branch_covered"]
tot = [sum(v[i] for v in acc.values()) for i in range(4)]
pct = lambda n, d: "%5.1f%%" % (100.0 * n / d) if d else "    -"
print("%-16s %7s %8s %8s %8s" % ("directory", "lines", "covered", "branches", "covered"))
for d, (l, lc, b, bc) in list(acc.items()) + [("total", tot)]:
    print("%-16s %7d %8s %8d %8s" % (d, l, pct(lc, l), b, pct(bc, b)))
EOF
