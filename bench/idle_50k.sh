#!/bin/bash
# bench/idle_50k.sh: many idle IMAP connections on one `petrel serve`, and
# how soon each is told of a new message.
#
# A throw-away instance (bench/lib.sh) with USERS users (empty INBOXes),
# `petrel serve` with a plain IMAP and an SMTP listener on loopback, the
# IMAP connection limits raised (imap_max_connections,
# imap_max_connections_per_ip). bench/compare/idle_driver.c (built here with
# cc) first logs every user in once (warm-up: directory, auth cache, INBOX
# index), then opens CONNS connections from source addresses 127.0.0.2 ..
# 127.0.0.(1+NSRC) (the ephemeral port range is per source address), at most
# RATE new ones a second and INFLIGHT being set up at once, connection i as
# user u(i % USERS + 1), each doing LOGIN, SELECT INBOX, IDLE; then delivers
# one message by SMTP to each of u1 .. uNOTIFY and times, for each of those
# users' connections, the delay from the delivery's 250 to "* n EXISTS".
# Memory: VmRSS and PSS (smaps_rollup) summed over `petrel serve` and all its
# descendants, after the warm-up and with the connections idling.
#
#   bench/idle_50k.sh                         # 10,000 connections, 500 users
#   CONNS=50000 bench/idle_50k.sh
#
# Env: CONNS (10000), USERS (500), NOTIFY (50), NSRC (8), RATE (5000),
#      INFLIGHT (200), SETUP_SECS (240), TIMEOUT (whole driver run, 330 s),
#      WORKERS (petrel's "workers"; default as petrel init writes it),
#      PETREL (build/petrel; build-bench/petrel for figures), BENCH_DIR.
# Needs root for more than the hard open-files limit: it raises
# RLIMIT_NOFILE (soft and hard) to CONNS + 1000 for the server and driver.
set -eu -o pipefail
bench_name=idle_50k.sh
. "$(dirname "$0")/lib.sh"

CONNS=${CONNS:-10000}
USERS=${USERS:-500}
NOTIFY=${NOTIFY:-50}
NSRC=${NSRC:-8}
RATE=${RATE:-5000}
INFLIGHT=${INFLIGHT:-200}
SETUP_SECS=${SETUP_SECS:-240}
TIMEOUT=${TIMEOUT:-330}
CC=${CC:-cc}

need=$((CONNS + 1000))
if [ "$(ulimit -n)" -lt "$need" ]; then
	ulimit -Hn "$need" 2>/dev/null || true
	ulimit -Sn "$need" 2>/dev/null || ulimit -Sn "$(ulimit -Hn)"
fi
[ "$(ulimit -n)" -ge "$need" ] ||
	die "open files limit $(ulimit -n) < $need (run as root, or lower CONNS)"
[ "$(cat /proc/sys/fs/nr_open)" -ge "$need" ] || die "fs.nr_open < $need"

bench_instance idle50k
drv=$BDIR/idle_driver
"$CC" -O2 -o "$drv" "$bench_top/bench/compare/idle_driver.c" -lpthread ||
	die "building idle_driver failed"
bench_users 1 "$USERS" bench-password

imap=$(free_port)
smtp=$(free_port)
set -- -o "imap_listen=127.0.0.1:$imap" -o "smtp_listen=127.0.0.1:$smtp" \
	-o allow_plaintext_auth=yes -o log_level=warning \
	-o "imap_max_connections=$((CONNS + 100))" \
	-o "imap_max_connections_per_ip=$((CONNS + 100))" \
	-o smtp_max_connections_per_ip=1000
[ -n "${WORKERS:-}" ] && set -- "$@" -o "workers=$WORKERS"
bench_serve "$@"
wait_greeting "$imap" "* OK"
wait_greeting "$smtp" 220

# the memory of serve and its descendants, one line
cat >"$BDIR/mem.sh" <<EOF
#!/bin/sh
pids=\$(ps -e -o pid= -o ppid= | awk -v root=$SERVE_PID '
	{ kids[\$2] = kids[\$2] " " \$1 }
	END { n = 1; q[1] = root; out = root
	      while (n > 0) { p = q[n--]; m = split(kids[p], k, " ")
	                      for (i = 1; i <= m; i++) { out = out " " k[i]; q[++n] = k[i] } }
	      print out }')
rss=0; pss=0; np=0
for p in \$pids; do
	r=\$(awk '/^Rss:/ {print \$2}' /proc/\$p/smaps_rollup 2>/dev/null) || continue
	s=\$(awk '/^Pss:/ {print \$2}' /proc/\$p/smaps_rollup 2>/dev/null) || continue
	[ -n "\$r" ] || continue
	rss=\$((rss + r)); pss=\$((pss + s)); np=\$((np + 1))
done
echo "RESULT phase=memory label=\$1 processes=\$np rss_kib=\$rss pss_kib=\$pss"
EOF

bench_machine
echo "command: CONNS=$CONNS USERS=$USERS NOTIFY=$NOTIFY NSRC=$NSRC RATE=$RATE INFLIGHT=$INFLIGHT bench/idle_50k.sh; workers: $(sed -n 's/^workers *= *//p' "$CONF")${WORKERS:+ (-o workers=$WORKERS)}"
# warm-up: each user once
timeout 120 "$drv" "$imap" "$smtp" "$USERS" "$USERS" "$DOMAIN" bench-password \
	"$NSRC" "$RATE" "$INFLIGHT" 100 0 true >"$BDIR/warm.out" ||
	{ cat "$BDIR/warm.out"; tail -5 "$BDIR/serve.log" >&2; die "warm-up failed"; }
sleep 2
before=$(sh "$BDIR/mem.sh" before)
echo "$before"
rc=0
timeout -k 5 "$TIMEOUT" "$drv" "$imap" "$smtp" "$CONNS" "$USERS" "$DOMAIN" \
	bench-password "$NSRC" "$RATE" "$INFLIGHT" "$SETUP_SECS" "$NOTIFY" \
	"sh $BDIR/mem.sh with" | tee "$BDIR/run.out" || rc=$?
[ "$rc" = 0 ] || { say "driver exit status $rc; serve.log:"; tail -10 "$BDIR/serve.log" >&2; }
with=$(grep 'label=with' "$BDIR/run.out" || true)
idle=$(sed -n 's/.*phase=setup .*idling=\([0-9]*\).*/\1/p' "$BDIR/run.out")
if [ -n "$with" ] && [ "${idle:-0}" -gt 0 ]; then
	field() { echo "$1" | sed -n "s/.* $2=\([0-9]*\).*/\1/p"; }
	awk -v rb="$(field "$before" rss_kib)" -v pb="$(field "$before" pss_kib)" \
	    -v rw="$(field "$with" rss_kib)" -v pw="$(field "$with" pss_kib)" -v n="$idle" \
	    'BEGIN { printf "RESULT phase=per_connection idling=%d rss_kib=%.1f pss_kib=%.1f\n", n, (rw - rb) / n, (pw - pb) / n }'
fi
grep -c . "$BDIR/serve.log" >/dev/null 2>&1 && { say "serve.log (last lines):"; tail -5 "$BDIR/serve.log" >&2; }
exit "$rc"
