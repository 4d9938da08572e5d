#!/bin/sh
# bench/outbound_compare.sh: the outbound queue against Postfix's, same run
# (issue "performance": outbound). Each server takes MESSAGES messages of
# SIZE bytes by SMTP (smtp-source) for remote domains whose next hops do
# not answer yet, so every message is queued and deferred once; then the
# smtp-sink processes start on loopback, the queue is flushed (`petrel
# queue flush`, `postqueue -f`) and the clock runs until the queue is
# empty (every message relayed and acknowledged): the queue's drain alone,
# not the inbound side. Two layouts: all mail for one domain, and
# mail spread over DOMAINS domains, domain k relayed to its own sink on
# 127.0.0.(k+2) (a transport per domain on both servers: every domain is a
# destination of its own for the queue's concurrency limits). Rounds
# alternate which server goes first.
#
#   bench/outbound_compare.sh                    # 10,000 x 2 KiB, 1 and 100 domains, 2 rounds
#   MESSAGES=2000 ROUNDS=1 bench/outbound_compare.sh
#
# petrel: `petrel init` defaults (queue_concurrency, queue_destination_
# concurrency as written), a domain with a transport smtp:[127.0.0.x]:PORT
# per destination. Postfix (Debian's package, own instance `postfix -c
# DIR`): relay_domains and a transport map with the same next hops, its
# defaults otherwise (default_destination_concurrency_limit 20, the
# connection cache on demand, queue-file fsync before the 250). Neither
# verifies TLS here: smtp-sink offers no STARTTLS.
#
# Env: PETREL (build/petrel), MESSAGES (10000), SIZE (2048), DOMAINS (100),
#      SESSIONS (20: smtp-source sessions for one domain; spread over the
#      domains otherwise), ROUNDS (2), TIMEOUT (seconds per run, 900),
#      BENCH_DIR (/var/tmp), SERVERS ("petrel postfix": one alone for a
#      profile; the ratios need both), LAYOUTS ("1 $DOMAINS"),
#      PETREL_OPTS (extra "-o key=value" for petrel serve; none: init's).
# Output: "RESULT server=petrel|postfix domains=D round=R seconds=S
# msgs_per_s=M" lines (S: flush to empty queue), then "RESULT median
# domains=D petrel=P postfix=F ratio=P/F" per layout.
set -eu
# shellcheck disable=SC2034 # read by bench/lib.sh
bench_name=outbound_compare
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
MESSAGES=${MESSAGES:-10000}
SIZE=${SIZE:-2048}
DOMAINS=${DOMAINS:-100}
SESSIONS=${SESSIONS:-20}
ROUNDS=${ROUNDS:-2}
TIMEOUT=${TIMEOUT:-900}
SERVERS=${SERVERS:-petrel postfix}
PETREL_OPTS=${PETREL_OPTS:-}
LAYOUTS=${LAYOUTS:-1 $DOMAINS}
SMTP_SOURCE=/usr/sbin/smtp-source
SMTP_SINK=/usr/sbin/smtp-sink
[ -x "$SMTP_SOURCE" ] && [ -x "$SMTP_SINK" ] || die "needs smtp-source and smtp-sink (package postfix)"
command -v postfix >/dev/null || die "needs postfix (package postfix)"
[ "$DOMAINS" -ge 2 ] && [ "$DOMAINS" -le 200 ] || die "DOMAINS must be 2..200"

SINK_PIDS=
PF=
bench_extra_cleanup='for p in $SINK_PIDS; do stop_pid "$p" smtp-sink; done; [ -n "$PF" ] && postfix -c "$PF/etc" stop >/dev/null 2>&1'
bench_instance outbound_compare
sink_port=$(free_port)
pport=$(free_port)
fport=$(free_port)

# the sinks: 127.0.0.1 for the one-domain layout, 127.0.0.2.. for the
# others; started for a drain, stopped before the next run fills a queue
u=; [ "$(id -u)" -eq 0 ] && u="-u nobody"
sinks_start() {
	k=1
	while [ $k -le $((DOMAINS + 1)) ]; do
		# shellcheck disable=SC2086
		"$SMTP_SINK" $u "127.0.0.$k:$sink_port" 1000 >/dev/null 2>>"$BDIR/sink.log" &
		SINK_PIDS="$SINK_PIDS $!"
		k=$((k + 1))
	done
	"$PY" - "$sink_port" "$DOMAINS" <<'PYEOF' || die "the sinks did not start"
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
deadline = time.monotonic() + 30
for k in range(1, n + 2):
    while True:
        try:
            with socket.create_connection(("127.0.0.%d" % k, port), timeout=2) as s:
                if s.recv(100).startswith(b"220"):
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            sys.exit(1)
        time.sleep(0.05)
PYEOF
}
sinks_stop() {
	for p in $SINK_PIDS; do kill "$p" 2>/dev/null || true; done
	for p in $SINK_PIDS; do wait "$p" 2>/dev/null || true; done
	SINK_PIDS=
}

# petrel: a domain per destination, with its transport
queue=$(sed -n 's/^queue_dir *= *//p' "$CONF")
"$PETREL" -c "$CONF" domain add one.test --transport "smtp:[127.0.0.1]:$sink_port" \
	>>"$BDIR/init.log" 2>&1 || die "petrel domain add failed"
k=0
while [ $k -lt "$DOMAINS" ]; do
	"$PETREL" -c "$CONF" domain add "d$k.test" --transport "smtp:[127.0.0.$((k + 2))]:$sink_port" \
		>>"$BDIR/init.log" 2>&1 || die "petrel domain add d$k.test failed"
	k=$((k + 1))
done
# shellcheck disable=SC2086 # PETREL_OPTS: several -o key=value
bench_serve -o "smtp_listen=127.0.0.1:$pport" -o smtp_max_connections_per_ip=10000 $PETREL_OPTS

# Postfix: own instance, relaying the same domains to the same next hops
PF=$BDIR/postfix
mkdir -p "$PF/etc" "$PF/queue" "$PF/data"
chown postfix "$PF/data"
{
	echo "compatibility_level = 3.6"
	echo "queue_directory = $PF/queue"
	echo "data_directory = $PF/data"
	echo "meta_directory = /etc/postfix"
	echo "mail_owner = postfix"
	echo "setgid_group = postdrop"
	echo "maillog_file = $PF/maillog"
	echo "myhostname = incumbent.bench.invalid"
	echo "mydestination ="
	echo "inet_interfaces = 127.0.0.1"
	echo "inet_protocols = ipv4"
	echo "mynetworks = 127.0.0.0/8"
	echo "alias_maps ="
	echo "local_recipient_maps ="
	echo "smtpd_relay_restrictions = permit_mynetworks reject"
	echo "relay_domains = texthash:$PF/etc/transport"
	echo "transport_maps = texthash:$PF/etc/transport"
	echo "smtp_tls_security_level = none"
} >"$PF/etc/main.cf"
{
	echo "one.test smtp:[127.0.0.1]:$sink_port"
	k=0
	while [ $k -lt "$DOMAINS" ]; do
		echo "d$k.test smtp:[127.0.0.$((k + 2))]:$sink_port"
		k=$((k + 1))
	done
} >"$PF/etc/transport"
# Debian's master.cf services, no chroot, smtpd on the chosen port
sed -e "s|@SMTP_PORT@|$fport|" -e '/^127\.0\.0\.1:@SMTPS_PORT@/,/@TLS_KEY@/d' \
	"$bench_top/bench/compare/postfix/master.cf.in" >"$PF/etc/master.cf"
postfix -c "$PF/etc" check >"$PF/check.log" 2>&1 || { cat "$PF/check.log" >&2; die "postfix check failed"; }
postfix -c "$PF/etc" start >"$PF/start.log" 2>&1 || { cat "$PF/start.log" >&2; die "postfix start failed"; }

wait_greeting "$pport" 220
wait_greeting "$fport" 220
bench_machine
echo "load: $MESSAGES x $SIZE bytes; one domain ($SESSIONS smtp-source sessions) and $DOMAINS domains (one smtp-source per domain); petrel 127.0.0.1:$pport, Postfix 127.0.0.1:$fport, smtp-sink on 127.0.0.1-$((DOMAINS + 1)):$sink_port"

deferred() { # SERVER: its status=deferred log lines so far
	if [ "$1" = petrel ]; then
		grep -c 'status=deferred' "$BDIR/serve.log" || true
	else
		grep -c 'status=deferred' "$PF/maillog" 2>/dev/null || true
	fi
}

queued() { # SERVER: message files still in its queue
	if [ "$1" = petrel ]; then
		find "$queue/incoming" -type f | wc -l
	else
		find "$PF/queue/incoming" "$PF/queue/active" "$PF/queue/deferred" \
			"$PF/queue/maildrop" -type f 2>/dev/null | wc -l
	fi
}

one_run() { # SERVER LAYOUT(1|D) ROUND
	port=$pport
	[ "$1" = postfix ] && port=$fport
	n=$MESSAGES
	[ "$2" = 1 ] || n=$(((MESSAGES / DOMAINS) * DOMAINS))
	d0=$(deferred "$1")
	if [ "$2" = 1 ]; then
		timeout "$TIMEOUT" "$SMTP_SOURCE" -s "$SESSIONS" -m "$MESSAGES" -l "$SIZE" \
			-f sender@bench.test -t rcpt@one.test "127.0.0.1:$port" ||
			die "smtp-source to $1 failed"
	else
		per=$((MESSAGES / DOMAINS))
		pids=
		k=0
		while [ $k -lt "$DOMAINS" ]; do
			timeout "$TIMEOUT" "$SMTP_SOURCE" -s 1 -m "$per" -l "$SIZE" \
				-f sender@bench.test -t "rcpt@d$k.test" "127.0.0.1:$port" &
			pids="$pids $!"
			k=$((k + 1))
		done
		for p in $pids; do wait "$p" || die "an smtp-source to $1 failed"; done
	fi
	# every message tried once and deferred (its next hop not answering)
	end=$(($(date +%s) + TIMEOUT))
	while [ $(($(deferred "$1") - d0)) -lt "$n" ]; do
		[ "$(date +%s)" -lt "$end" ] || die "$1: only $(($(deferred "$1") - d0)) of $n deferred after $TIMEOUT s"
		sleep 0.2
	done
	sinks_start
	t0=$(now)
	if [ "$1" = petrel ]; then
		"$PETREL" -c "$CONF" queue flush >/dev/null || die "petrel queue flush failed"
	else
		postqueue -c "$PF/etc" -f || die "postqueue -f failed"
	fi
	end=$(($(date +%s) + TIMEOUT))
	while [ "$(queued "$1")" -gt 0 ]; do
		[ "$(date +%s)" -lt "$end" ] || die "$1: $(queued "$1") messages still queued after $TIMEOUT s"
		sleep 0.05
	done
	t1=$(now)
	sinks_stop
	echo "RESULT server=$1 domains=$2 round=$3 seconds=$("$PY" -c "print('%.2f' % ($t1 - $t0))") msgs_per_s=$("$PY" -c "print('%.0f' % ($n / ($t1 - $t0)))")"
}

: >"$BDIR/results"
r=1
while [ $r -le "$ROUNDS" ]; do
	for layout in $LAYOUTS; do
		order=$SERVERS
		[ $((r % 2)) -eq 0 ] && order=$(echo "$SERVERS" | awk '{for (i = NF; i > 0; i--) printf "%s ", $i}')
		for s in $order; do
			one_run "$s" "$layout" "$r" >>"$BDIR/results"
			tail -1 "$BDIR/results"
		done
	done
	r=$((r + 1))
done
sent_p=$(grep -c 'status=sent' "$BDIR/serve.log" || true)
sent_f=$(grep -c 'status=sent' "$PF/maillog" || true)
echo "status=sent lines: petrel $sent_p, Postfix $sent_f"
"$PY" - "$BDIR/results" <<'PYEOF'
import re, statistics, sys
rate = {}
for line in open(sys.argv[1]):
    m = re.search(r"server=(\w+) domains=(\d+) .*msgs_per_s=(\d+)", line)
    if m:
        rate.setdefault(int(m.group(2)), {}).setdefault(m.group(1), []).append(int(m.group(3)))
for d in sorted(rate):
    if len(rate[d]) < 2:
        continue
    p, f = statistics.median(rate[d]["petrel"]), statistics.median(rate[d]["postfix"])
    print("RESULT median domains=%d petrel=%.0f postfix=%.0f msgs/s ratio=%.2f" % (d, p, f, p / f))
PYEOF
