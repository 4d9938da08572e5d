#!/bin/sh
# bench/outbound.sh: the outbound queue's throughput to a remote MX. A
# fast SMTP sink on loopback (Postfix's smtp-sink, which accepts and
# discards) is the next hop of a domain whose transport is
# smtp:[127.0.0.1]:PORT; smtp-source hands MESSAGES messages for it to
# petrel's SMTP listener; the clock runs from smtp-source's start until the
# queue's incoming/ is empty (every message relayed and acknowledged by the
# sink). Both programs are from the Debian package postfix; no Postfix
# daemon runs.
#
#   bench/outbound.sh                         # 5000 x 2 KiB, 20 sessions in
#   MESSAGES=20000 OPTS="queue_concurrency=50 queue_destination_concurrency=50" bench/outbound.sh
#
# Env: PETREL (build/petrel), MESSAGES (5000), SIZE (2048), SESSIONS
#      (smtp-source sessions, 20), RCPTS (recipients per message, 1), OPTS
#      (key=value settings for serve, e.g. the queue_*concurrency keys),
#      BENCH_DIR (/var/tmp), TIMEOUT (seconds for the whole run, 600).
# Output: "RESULT messages=N accepted_s=A drained_s=D msgs_per_s=R" (R over D).
set -eu
# shellcheck disable=SC2034 # read by bench/lib.sh
bench_name=outbound
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
MESSAGES=${MESSAGES:-5000}
SIZE=${SIZE:-2048}
SESSIONS=${SESSIONS:-20}
RCPTS=${RCPTS:-1}
TIMEOUT=${TIMEOUT:-600}
SMTP_SOURCE=${SMTP_SOURCE:-/usr/sbin/smtp-source}
SMTP_SINK=${SMTP_SINK:-/usr/sbin/smtp-sink}
[ -x "$SMTP_SOURCE" ] && [ -x "$SMTP_SINK" ] || die "needs $SMTP_SOURCE and $SMTP_SINK (package postfix)"

sink_pid=
bench_extra_cleanup='stop_pid "$sink_pid" smtp-sink'
bench_instance outbound
sink_port=$(free_port)
port=$(free_port)
"$PETREL" -c "$CONF" domain add sink.test --transport "smtp:[127.0.0.1]:$sink_port" \
	>>"$BDIR/init.log" 2>&1 || { tail -3 "$BDIR/init.log" >&2; die "petrel domain add failed"; }
queue=$(sed -n 's/^queue_dir *= *//p' "$CONF")

# -u: smtp-sink refuses to run as root without a user to become
u=; [ "$(id -u)" -eq 0 ] && u="-u nobody"
# shellcheck disable=SC2086
"$SMTP_SINK" $u 127.0.0.1:"$sink_port" 1000 >/dev/null 2>"$BDIR/sink.log" &
sink_pid=$!
set -- -o "smtp_listen=127.0.0.1:$port" -o smtp_max_connections_per_ip=10000
for o in ${OPTS:-}; do set -- "$@" -o "$o"; done
bench_serve "$@"
wait_greeting "$port" 220
wait_greeting "$sink_port" 220
bench_machine
echo "settings: petrel init defaults${OPTS:+, and $OPTS}"
echo "smtp-source -s $SESSIONS -m $MESSAGES -l $SIZE -r $RCPTS -> petrel 127.0.0.1:$port -> smtp-sink 127.0.0.1:$sink_port"

t0=$(now)
timeout "$TIMEOUT" "$SMTP_SOURCE" -s "$SESSIONS" -m "$MESSAGES" -l "$SIZE" -r "$RCPTS" \
	-f sender@example.test -t rcpt@sink.test "127.0.0.1:$port" ||
	{ tail -20 "$BDIR/serve.log" >&2; die "smtp-source failed"; }
t1=$(now)
end=$(($(date +%s) + TIMEOUT))
while :; do
	left=$(find "$queue/incoming" -type f | wc -l)
	[ "$left" -eq 0 ] && break
	[ "$(date +%s)" -lt "$end" ] || die "$left messages still queued after TIMEOUT=$TIMEOUT s"
	sleep 0.05
done
t2=$(now)
sent=$(grep -c 'status=sent' "$BDIR/serve.log" || true)
deferred=$(grep -c 'status=deferred' "$BDIR/serve.log" || true)
echo "serve.log: $sent status=sent lines, $deferred status=deferred"
"$PY" - "$MESSAGES" "$t0" "$t1" "$t2" <<'PYEOF'
import sys
m, t0, t1, t2 = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
print("RESULT messages=%d accepted_s=%.2f drained_s=%.2f msgs_per_s=%.0f" % (m, t1 - t0, t2 - t0, m / (t2 - t0)))
PYEOF
