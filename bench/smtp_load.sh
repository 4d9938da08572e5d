#!/bin/sh
# bench/smtp_load.sh: inbound SMTP throughput of petrel, end to end, with
# Postfix's smtp-source (Debian package "postfix"; no Postfix daemon is used).
#
#   bench/smtp_load.sh                      # 20 sessions x 10000 messages x 2 KiB
#   SESSIONS=50 MESSAGES=50000 SIZE=4096 bench/smtp_load.sh
#
# Env: PETREL (binary, default build/petrel), SESSIONS (20), MESSAGES (10000),
#      SIZE (payload bytes per message, 2048), OPTS (space-separated key=value
#      settings for serve), WORKERS (petrel "workers", default:
#      the value petrel init writes), BENCH_DIR (parent of the temporary
#      instance, /var/tmp), TIMEOUT (seconds for the whole run, 900).
#
# Installs and builds nothing. Makes a temporary instance with `petrel init`
# under /var/tmp (reachable by the 'mail' user, so serve drops to it as in
# production), starts `petrel serve` on a free loopback port, sends the
# messages to one user, waits until every message is a file in new/, prints
# messages/s, then stops the server (by PID) and removes the instance.
# Output: one line "RESULT messages=N seconds=S msgs_per_s=R" at the end.
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
PETREL=${PETREL:-$here/build/petrel}
SESSIONS=${SESSIONS:-20}
MESSAGES=${MESSAGES:-10000}
SIZE=${SIZE:-2048}
BENCH_DIR=${BENCH_DIR:-/var/tmp}
TIMEOUT=${TIMEOUT:-900}
SMTP_SOURCE=${SMTP_SOURCE:-/usr/sbin/smtp-source}

die() { echo "smtp_load: $*" >&2; exit 1; }
[ -x "$PETREL" ] || die "no petrel binary at $PETREL (build it first)"
[ -x "$SMTP_SOURCE" ] || die "no $SMTP_SOURCE (Debian package postfix)"
command -v python3 >/dev/null || die "python3 is needed (free port, timing)"

dir=$(mktemp -d "$BENCH_DIR/petrel-bench.XXXXXX")
chmod 755 "$dir"
pid=
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		i=0
		while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$PETREL" init --dir "$dir" --domain example.test >/dev/null
conf=$dir/petrel.conf
"$PETREL" -c "$conf" user add alice@example.test >/dev/null 2>&1
maildir=$dir/mail/example.test/alice

port=$(PYTHONPATH="$here/tests" python3 -c 'from harness.ports import free_port; print(free_port())')
set -- -o "smtp_listen=127.0.0.1:$port" -o submission_listen= -o submissions_listen= \
	-o imap_listen= -o imaps_listen= -o pop3_listen= -o pop3s_listen= -o http_listen= \
	-o https_listen= -o lmtp_listen= -o managesieve_listen=
[ -n "${WORKERS:-}" ] && set -- "$@" -o "workers=$WORKERS"
for o in ${OPTS:-}; do set -- "$@" -o "$o"; done
"$PETREL" -c "$conf" "$@" serve 2>"$dir/serve.log" &
pid=$!

# wait (bounded) for the greeting
python3 - "$port" <<'EOF' || { cat "$dir/serve.log" >&2; die "serve did not start"; }
import socket, sys, time
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    try:
        with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2) as s:
            if s.recv(100).startswith(b"220"):
                s.sendall(b"QUIT\r\n")
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.05)
sys.exit(1)
EOF

now() { python3 -c 'import time; print("%.3f" % time.monotonic())'; }
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
echo "petrel: $PETREL (built $(date -r "$PETREL" '+%Y-%m-%d %H:%M'))"
echo "machine: $(nproc) CPUs, $cpu; instance in $dir ($(df -T "$dir" | awk 'NR==2 {print $2}'))"
echo "serve: $(sed -n 's/.*info: \(running as .*\)/\1/p; s/.*warning: \(user = .*\)/\1/p' "$dir/serve.log" | head -1), $(sed -n 's/.*started (pid [0-9]*, \([0-9]* worker(s)\).*/\1/p' "$dir/serve.log" | head -1)"
echo "smtp-source -s $SESSIONS -m $MESSAGES -l $SIZE -> 127.0.0.1:$port"

t0=$(now)
timeout "$TIMEOUT" "$SMTP_SOURCE" -s "$SESSIONS" -m "$MESSAGES" -l "$SIZE" \
	-f sender@x.test -t alice@example.test "127.0.0.1:$port" ||
	{ tail -20 "$dir/serve.log" >&2; die "smtp-source failed (exit $?)"; }
t1=$(now)
# every message must be a file in new/ (a 250 means it already is; check anyway)
n=0
while :; do
	n=$(find "$maildir/new" -type f | wc -l)
	[ "$n" -ge "$MESSAGES" ] && break
	if python3 -c "import sys; sys.exit(0 if $(now) - $t1 > 60 else 1)"; then
		die "only $n of $MESSAGES messages in new/ after 60 s"
	fi
	sleep 0.2
done
t2=$(now)
python3 - "$MESSAGES" "$t0" "$t1" "$t2" "$n" <<'EOF'
import sys
m, t0, t1, t2, n = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
print("smtp-source finished in %.2f s, all %d files in new/ after %.2f s" % (t1 - t0, n, t2 - t0))
print("RESULT messages=%d seconds=%.2f msgs_per_s=%.0f" % (m, t2 - t0, m / (t2 - t0)))
EOF
