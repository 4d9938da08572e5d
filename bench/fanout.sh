#!/bin/sh
# bench/fanout.sh: one message to an alias of N local users (1,000 by
# default: ALIAS_TARGETS_MAX), end of DATA to the 250, which petrel sends
# only once every copy is durable; beside it the same message to one user,
# so the per-copy cost is (t_N - t_1) / (N - 1).
#
#   bench/fanout.sh                                  # N=1000, ROUNDS=5
#   PETREL_BASE=/tmp/petrel-old bench/fanout.sh      # and another build, alternating, same instance
#
# Env: PETREL (build/petrel), PETREL_BASE (a second binary to compare, or
#      empty), N (1000), ROUNDS (5), SIZE (message body bytes, 4096),
#      BENCH_DIR (/var/tmp), TIMEOUT (seconds for the whole run, 600).
# Checks after every 250 that each of the N maildirs has the message in
# new/. Output: "RESULT binary=... rcpts=N median_s=... per_copy_ms=..."
# lines at the end. Stops serve by PID and removes the instance.
set -eu
# shellcheck disable=SC2034 # read by bench/lib.sh
bench_name=fanout
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
N=${N:-1000}
ROUNDS=${ROUNDS:-5}
SIZE=${SIZE:-4096}
TIMEOUT=${TIMEOUT:-600}
PETREL_BASE=${PETREL_BASE:-}
[ -z "$PETREL_BASE" ] || [ -x "$PETREL_BASE" ] || die "no binary at PETREL_BASE=$PETREL_BASE"

bench_instance fanout
bench_users 0 $((N - 1))
targets=$("$PY" -c "import sys; print(','.join('u%d@$DOMAIN' % i for i in range($N)))")
"$PETREL" -c "$CONF" alias add "all@$DOMAIN" "$targets" >>"$BDIR/init.log" 2>&1 ||
	{ tail -3 "$BDIR/init.log" >&2; die "petrel alias add failed"; }
port=$(free_port)
bench_machine
echo "instance: $N users, alias all@$DOMAIN -> u0..u$((N - 1)); message $SIZE bytes; $ROUNDS rounds"

deadline=$(($(date +%s) + TIMEOUT))
bins=$PETREL
[ -n "$PETREL_BASE" ] && bins="$PETREL $PETREL_BASE"
r=1
sent=0
: >"$BDIR/times"
while [ $r -le "$ROUNDS" ]; do
	for b in $bins; do
		[ "$(date +%s)" -lt "$deadline" ] || die "TIMEOUT=$TIMEOUT s reached"
		PETREL=$b
		bench_serve -o "smtp_listen=127.0.0.1:$port" -o smtp_max_connections_per_ip=1000
		wait_greeting "$port" 220
		sent=$((sent + 1))
		"$PY" - "$port" "$DOMAIN" "$N" "$SIZE" "$ROOT" "$sent" "$b" >>"$BDIR/times" <<'PYEOF' ||
import os, smtplib, sys, time
port, dom, n, size, root, sent, binary = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], int(sys.argv[6]), sys.argv[7]
body = ("Subject: fan-out\r\nFrom: a@x.test\r\nTo: all@%s\r\n\r\n" % dom) + ("x" * 70 + "\r\n") * (size // 72)
def one(rcpt):
    c = smtplib.SMTP("127.0.0.1", port, timeout=120)
    c.ehlo("bench")
    c.mail("a@x.test")
    code, _ = c.rcpt(rcpt)
    assert code == 250, code
    c.putcmd("DATA")
    code, _ = c.getreply()
    assert code == 354, code
    c.send(body.encode() + b".\r\n")
    t0 = time.monotonic()
    code, msg = c.getreply()
    t1 = time.monotonic()
    assert code == 250, (code, msg)
    c.quit()
    return t1 - t0
t1 = one("u0@" + dom)
tn = one("all@" + dom)
# every copy is there after the 250 (u0 has the single one as well)
for i in range(n):
    d = os.path.join(root, dom, "u%d" % i, "new")
    have = len(os.listdir(d))
    want = sent + (sent if i == 0 else 0)
    assert have == want, (d, have, want)
print("%s %.6f %.6f" % (binary, t1, tn))
PYEOF
			{ tail -5 "$BDIR/serve.log" >&2; die "the delivery failed"; }
		stop_pid "$SERVE_PID" "petrel serve"
		SERVE_PID=
		tail -1 "$BDIR/times" | awk -v n="$N" '{ printf "round: %s  1 rcpt %.1f ms  %d rcpts %.1f ms\n", $1, $2 * 1000, n, $3 * 1000 }'
	done
	r=$((r + 1))
done
"$PY" - "$N" "$BDIR/times" <<'PYEOF'
import statistics, sys
n = int(sys.argv[1])
rows = {}
for line in open(sys.argv[2]):
    b, t1, tn = line.split()
    rows.setdefault(b, []).append((float(t1), float(tn)))
for b, v in rows.items():
    t1 = statistics.median(x[0] for x in v)
    tn = statistics.median(x[1] for x in v)
    print("RESULT binary=%s rcpts=%d rounds=%d one_rcpt_ms=%.1f median_s=%.3f (min %.3f max %.3f) per_copy_ms=%.3f copies_per_s=%.0f"
          % (b, n, len(v), t1 * 1000, tn, min(x[1] for x in v), max(x[1] for x in v),
             (tn - t1) / (n - 1) * 1000, n / tn))
PYEOF
