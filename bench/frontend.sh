#!/bin/sh
# bench/frontend.sh: what the frontend -> backend hop costs SMTP (issue
# "scale-out"): the same load sent to one node that stores the mail itself,
# and to a frontend (role = frontend) that queues it and hands it to that
# node by LMTP, in alternating rounds of one run. End to end: from the
# first connection until every message is a file in the user's new/.
#
#   bench/frontend.sh                       # 20 sessions x 2000 messages x 2 KiB, 3 rounds
#   SESSIONS=50 MESSAGES=5000 ROUNDS=5 bench/frontend.sh
#
# One `petrel init` instance holds the directory (SQLite) and the Maildirs;
# the backend is `petrel serve` with SMTP on 127.0.0.1 and LMTP on
# 127.0.0.2 (role single: the one-node reference); the frontend is a second
# `petrel serve` of the same configuration with role=frontend, its own
# queue_dir and backend_default=127.0.0.2. Both on this machine and disk:
# a real frontend has its own, so this is the hop's cost with the disk
# shared, the worst case.
#
# Env: PETREL (build/petrel), SESSIONS (20), MESSAGES (2000), SIZE (2048),
#      ROUNDS (3), BENCH_DIR (/var/tmp), TIMEOUT (seconds per round, 300),
#      SMTP_SOURCE (/usr/sbin/smtp-source, Debian package postfix), FE_OPTS
#      (more "-o key=value" for the frontend, e.g.
#      "-o queue_destination_concurrency=20").
# Output: "RESULT path=direct|frontend round=R seconds=S msgs_per_s=M
# cpu_us_per_msg backend=B frontend=F" lines (the CPU time, user + system,
# each server and its children used in the round, per message), then
# "RESULT median direct=... frontend=... hop_cost_pct=...". STRACE=1
# (Debian package strace) counts the system calls of both servers over
# all rounds, "RESULT syscalls_per_msg backend=B frontend=F" (the backend
# stores the messages of both paths, the frontend those of its own):
# timings under strace mean nothing, the counts are exact.
set -eu
# shellcheck disable=SC2034 # read by bench/lib.sh
bench_name=frontend
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
SESSIONS=${SESSIONS:-20}
MESSAGES=${MESSAGES:-2000}
SIZE=${SIZE:-2048}
ROUNDS=${ROUNDS:-3}
TIMEOUT=${TIMEOUT:-300}
FE_OPTS=${FE_OPTS:-}
SMTP_SOURCE=${SMTP_SOURCE:-/usr/sbin/smtp-source}
[ -x "$SMTP_SOURCE" ] || die "no $SMTP_SOURCE (Debian package postfix)"

bench_instance frontend
bench_users 0 0
sport=$(free_port)
lport=$(free_port)
fport=$(free_port)
FE_PID=
bench_extra_cleanup='stop_pid "$FE_PID" "the frontend"'
bench_serve -o "smtp_listen=127.0.0.1:$sport" -o "lmtp_listen=127.0.0.2:$lport" \
	-o smtp_max_connections_per_ip=1000 -o lmtp_max_connections_per_ip=1000
wait_greeting "$sport" 220
qdir=$(sed -n 's/^queue_dir *= *//p' "$CONF")
mkdir -p "$BDIR/fe-queue"
chown --reference="$qdir" "$BDIR/fe-queue"
chmod --reference="$qdir" "$BDIR/fe-queue"
"$PETREL" -c "$CONF" -o role=frontend -o "queue_dir=$BDIR/fe-queue" \
	-o backend_default=127.0.0.2 -o "backend_ports=$lport,143,110,4190" \
	-o "smtp_listen=127.0.0.1:$fport" -o smtp_max_connections_per_ip=1000 \
	-o submission_listen= -o submissions_listen= -o imap_listen= -o imaps_listen= \
	-o pop3_listen= -o pop3s_listen= -o http_listen= -o https_listen= \
	-o lmtp_listen= -o managesieve_listen= $FE_OPTS serve 2>>"$BDIR/frontend.log" &
FE_PID=$!
wait_greeting "$fport" 220 || { tail -5 "$BDIR/frontend.log" >&2; die "the frontend did not start"; }
bench_machine
ST_BE= ST_FE=
if [ "${STRACE:-0}" = 1 ]; then
	command -v strace >/dev/null || die "STRACE=1: no strace (Debian package strace)"
	tree() {
		echo "-p $1"
		for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do tree "$c"; done
	}
	# shellcheck disable=SC2046 # one -p per process
	strace -f -c -o "$BDIR/strace.backend" $(tree "$SERVE_PID") 2>/dev/null &
	ST_BE=$!
	# shellcheck disable=SC2046
	strace -f -c -o "$BDIR/strace.frontend" $(tree "$FE_PID") 2>/dev/null &
	ST_FE=$!
	bench_extra_cleanup="kill $ST_BE $ST_FE 2>/dev/null; $bench_extra_cleanup"
	sleep 1
fi
echo "load: smtp-source -s $SESSIONS -m $MESSAGES -l $SIZE to u0@$DOMAIN; $ROUNDS rounds, direct and through the frontend alternating"

maildir=$ROOT/$DOMAIN/u0
: >"$BDIR/results"
r=1
while [ $r -le "$ROUNDS" ]; do
	for path in direct frontend; do
		port=$sport
		[ $path = frontend ] && port=$fport
		before=$(find "$maildir/new" -type f | wc -l)
		"$PY" - "$SMTP_SOURCE" "$SESSIONS" "$MESSAGES" "$SIZE" "$port" "$maildir/new" \
			"$before" "$TIMEOUT" "$path" "$r" "$DOMAIN" "$SERVE_PID" "$FE_PID" >>"$BDIR/results" <<'PYEOF' ||
import os, subprocess, sys, time
src, sess, n, size, port, new, before, limit, path, rnd, dom, bpid, fpid = sys.argv[1:]
n, before, limit = int(n), int(before), float(limit)
tick = os.sysconf("SC_CLK_TCK")
def cpu(root):
    # user + system CPU seconds of a process and its children (serve forks helpers)
    procs = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                f = open("/proc/%s/stat" % d).read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            procs[int(d)] = (int(f[1]), int(f[11]) + int(f[12]))
    total, todo = 0, [int(root)]
    while todo:
        p = todo.pop()
        total += procs.get(p, (0, 0))[1]
        todo += [c for c, (pp, _) in procs.items() if pp == p]
    return total / tick
c0 = (cpu(bpid), cpu(fpid))
t0 = time.monotonic()
subprocess.run([src, "-s", sess, "-m", str(n), "-l", size, "-f", "bench@client.test",
                "-t", "u0@" + dom, "127.0.0.1:" + port], check=True, timeout=limit)
deadline = t0 + limit
while len(os.listdir(new)) < before + n:
    if time.monotonic() > deadline:
        sys.exit("%s round %s: only %d of %d in new/" % (path, rnd, len(os.listdir(new)) - before, n))
    time.sleep(0.01)
dt = time.monotonic() - t0
c1 = (cpu(bpid), cpu(fpid))
print("RESULT path=%s round=%s seconds=%.3f msgs_per_s=%.0f cpu_us_per_msg backend=%.0f frontend=%.0f"
      % (path, rnd, dt, n / dt, 1e6 * (c1[0] - c0[0]) / n, 1e6 * (c1[1] - c0[1]) / n))
PYEOF
			{ tail -5 "$BDIR/serve.log" "$BDIR/frontend.log" >&2; die "$path round $r failed"; }
		tail -1 "$BDIR/results"
	done
	r=$((r + 1))
done
if [ -n "$ST_BE" ]; then
	kill -INT "$ST_BE" "$ST_FE"
	wait "$ST_BE" "$ST_FE" || true
	calls() { awk '$NF == "total" { print $4 }' "$1"; }
	echo "RESULT syscalls_per_msg backend=$(($(calls "$BDIR/strace.backend") / (2 * ROUNDS * MESSAGES))) frontend=$(($(calls "$BDIR/strace.frontend") / (ROUNDS * MESSAGES)))"
fi
"$PY" - "$BDIR/results" <<'PYEOF'
import re, statistics, sys
rate = {"direct": [], "frontend": []}
for line in open(sys.argv[1]):
    m = re.search(r"path=(\w+) .*msgs_per_s=(\d+)", line)
    if m:
        rate[m.group(1)].append(int(m.group(2)))
d, f = statistics.median(rate["direct"]), statistics.median(rate["frontend"])
print("RESULT median direct=%.0f frontend=%.0f msgs/s hop_cost_pct=%.1f" % (d, f, 100 * (1 - f / d)))
PYEOF
