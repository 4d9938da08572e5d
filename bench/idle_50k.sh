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
# one message by SMTP to each of NOTIFY users and times, for each of those
# users' connections, the delay from the delivery's 250 to "* n EXISTS"
# (median, p99, max over all of them). When one process cannot hold CONNS
# descriptors, DRIVERS driver processes each take a slice of the users (and
# NOTIFY / DRIVERS of the deliveries, in parallel).
# Memory: VmRSS and PSS (smaps_rollup) summed over `petrel serve` and all its
# descendants, after the warm-up and with the connections idling.
#
#   bench/idle_50k.sh                         # 10,000 connections, 500 users
#   CONNS=50000 bench/idle_50k.sh
#
# Env: CONNS (10000), USERS (500), NOTIFY (50), NSRC (8), RATE (5000),
#      INFLIGHT (200), SETUP_SECS (240), TIMEOUT (whole driver run, 330 s),
#      DRIVERS (client processes; default: the fewest the open-files limit allows),
#      WORKERS (petrel's "workers"; default as petrel init writes it),
#      PETREL (build/petrel; build-bench/petrel for figures), BENCH_DIR.
# Needs root for more than the hard open-files limit: it raises
# RLIMIT_NOFILE (soft and hard) to 4 * CONNS + 1000 for the server and the
# driver (a worker holds four descriptors per idling session: the socket and
# the INBOX's petrel-index, petrel-index.log and petrel-lock; and one worker
# may hold most of the sessions).
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

# Without CAP_SYS_RESOURCE the hard limit stays where it is: then the
# connections are spread over DRIVERS driver processes and petrel's WORKERS
# so that none goes past it.
ulimit -Hn $((4 * CONNS + 1000)) 2>/dev/null || true
ulimit -Sn "$(ulimit -Hn)"
lim=$(ulimit -n)
[ "$lim" -ge 4000 ] || die "open files limit $lim too low"
if [ -z "${DRIVERS:-}" ]; then
	# the fewest that fit (CONNS / DRIVERS + 1000 <= limit) and divide both
	DRIVERS=$(( (CONNS + lim - 1001) / (lim - 1000) ))
	while [ $((USERS % DRIVERS)) != 0 ] || [ $((CONNS % DRIVERS)) != 0 ]; do
		DRIVERS=$((DRIVERS + 1))
		[ "$DRIVERS" -le "$USERS" ] || die "no DRIVERS divides USERS and CONNS"
	done
fi
[ -n "${WORKERS:-}" ] || [ $((4 * CONNS + 1000)) -le "$lim" ] ||
	WORKERS=$(( (5 * CONNS + lim - 1) / lim ))
[ $((USERS % DRIVERS)) = 0 ] && [ $((CONNS % DRIVERS)) = 0 ] ||
	die "USERS ($USERS) and CONNS ($CONNS) must be multiples of DRIVERS ($DRIVERS)"
per_notify=$((NOTIFY / DRIVERS)); [ "$per_notify" -ge 1 ] || per_notify=1

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
rss=0; pss=0; np=0; fds=0; per=
for p in \$pids; do
	r=\$(awk '/^Rss:/ {print \$2}' /proc/\$p/smaps_rollup 2>/dev/null) || continue
	s=\$(awk '/^Pss:/ {print \$2}' /proc/\$p/smaps_rollup 2>/dev/null) || continue
	[ -n "\$r" ] || continue
	rss=\$((rss + r)); pss=\$((pss + s)); np=\$((np + 1))
	f=\$(ls /proc/\$p/fd 2>/dev/null | wc -l)
	fds=\$((fds + f)); per="\$per\${per:+,}\$f"
done
echo "RESULT phase=memory label=\$1 processes=\$np open_fds=\$fds rss_kib=\$rss pss_kib=\$pss fds_per_process=\$per"
EOF

bench_machine
echo "command: DRIVERS=$DRIVERS CONNS=$CONNS USERS=$USERS NOTIFY=$NOTIFY NSRC=$NSRC RATE=$RATE INFLIGHT=$INFLIGHT bench/idle_50k.sh; workers: $(sed -n 's/^workers *= *//p' "$CONF")${WORKERS:+ (-o workers=$WORKERS)}"
# warm-up: each user once
timeout 120 "$drv" "$imap" "$smtp" "$USERS" "$USERS" "$DOMAIN" bench-password \
	"$NSRC" "$RATE" "$INFLIGHT" 100 0 true 1 /dev/null >"$BDIR/warm.out" ||
	{ cat "$BDIR/warm.out"; tail -5 "$BDIR/serve.log" >&2; die "warm-up failed"; }
sleep 2
before=$(sh "$BDIR/mem.sh" before)
echo "$before"
rc=0
dpids=
bench_extra_cleanup='for p in $dpids; do kill -KILL "$p" 2>/dev/null; done'
for k in $(seq 0 $((DRIVERS - 1))); do
	# MEMCMD: say "ready", wait for the go (at most TIMEOUT)
	timeout -k 5 "$TIMEOUT" "$drv" "$imap" "$smtp" $((CONNS / DRIVERS)) \
		$((USERS / DRIVERS)) "$DOMAIN" bench-password "$NSRC" \
		$(( (RATE + DRIVERS - 1) / DRIVERS )) $(( (INFLIGHT + DRIVERS - 1) / DRIVERS )) \
		"$SETUP_SECS" "$per_notify" \
		"touch $BDIR/ready.$k; i=0; while [ ! -e $BDIR/go ] && [ \$i -lt $((TIMEOUT * 5)) ]; do sleep 0.2; i=\$((i + 1)); done" \
		$((1 + k * USERS / DRIVERS)) "$BDIR/lat.$k" >"$BDIR/run.$k" 2>&1 &
	dpids="$dpids $!"
done
i=0
while [ "$(ls "$BDIR" | grep -c '^ready\.')" -lt "$DRIVERS" ] && [ $i -lt $((TIMEOUT * 5)) ]; do
	sleep 0.2; i=$((i + 1))
	for p in $dpids; do kill -0 "$p" 2>/dev/null || i=$((TIMEOUT * 5)); done
done
sh "$BDIR/mem.sh" with >"$BDIR/run.mem"
touch "$BDIR/go"
for p in $dpids; do wait "$p" || rc=$?; done
dpids=
cat "$BDIR"/run.[0-9]* "$BDIR/run.mem" >"$BDIR/run.out"
cat "$BDIR/run.out"
sum() { sed -n "s/.*phase=$1 \(.* \)\?$2=\([0-9]*\).*/\2/p" "$BDIR/run.out" | awk '{ s += $1 } END { print s + 0 }'; }
secs=$(sed -n 's/.*phase=setup .* seconds=\([0-9.]*\).*/\1/p' "$BDIR/run.out" | sort -n | tail -1)
echo "RESULT phase=total drivers=$DRIVERS workers=${WORKERS:-default} opened=$(sum setup opened) idling=$(sum setup idling) failed=$(sum setup failed) setup_s=$secs rate_per_s=$(awk -v n="$(sum setup idling)" -v s="${secs:-0}" 'BEGIN { if (s > 0) printf "%.0f", n / s; else print 0 }')"
cat "$BDIR"/lat.[0-9]* 2>/dev/null | sort -n | awk -v conns="$(sum notify connections)" '
	{ v[NR] = $1 }
	END { if (NR == 0) { print "RESULT phase=latency told=0 of " conns; exit }
	      printf "RESULT phase=latency told=%d of %d median_ms=%.1f p99_ms=%.1f max_ms=%.1f\n",
	             NR, conns, v[int((NR + 1) / 2)], v[(int(NR * 0.99) > 0) ? int(NR * 0.99) : 1], v[NR] }'
[ "$rc" = 0 ] || { say "a driver's exit status $rc; serve.log:"; tail -10 "$BDIR/serve.log" >&2; }
with=$(grep 'label=with' "$BDIR/run.out" || true)
idle=$(sum setup idling)
if [ -n "$with" ] && [ "${idle:-0}" -gt 0 ]; then
	field() { echo "$1" | sed -n "s/.* $2=\([0-9]*\).*/\1/p"; }
	awk -v rb="$(field "$before" rss_kib)" -v pb="$(field "$before" pss_kib)" \
	    -v rw="$(field "$with" rss_kib)" -v pw="$(field "$with" pss_kib)" -v n="$idle" \
	    'BEGIN { printf "RESULT phase=per_connection idling=%d rss_kib=%.1f pss_kib=%.1f\n", n, (rw - rb) / n, (pw - pb) / n }'
fi
grep -c . "$BDIR/serve.log" >/dev/null 2>&1 && { say "serve.log (last lines):"; tail -5 "$BDIR/serve.log" >&2; }
exit "$rc"
