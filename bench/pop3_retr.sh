#!/bin/sh
# bench/pop3_retr.sh: POP3 RETR throughput of petrel.
#
# Makes a throw-away instance under /var/tmp (any user may run this; as root
# petrel serve drops to the instance's `user`), puts N messages of SIZE bytes
# straight into a maildir, starts `petrel serve` with only a POP3 listener on a
# free loopback port, then times a Python poplib client that logs in and
# RETRs every message in one session (then QUIT). RUNS runs; prints MB/s (of
# message octets as sent, CRLF line ends) and messages/s per run and the
# median. Cleans up on exit.
#
#   bench/pop3_retr.sh                       # 1000 x 100 KiB, 3 runs
#   N=200 SIZE=1048576 RUNS=5 bench/pop3_retr.sh
#   PETREL_BIN=/path/to/petrel bench/pop3_retr.sh
set -eu

here=$(cd "$(dirname "$0")" && pwd)
PETREL=${PETREL_BIN:-$here/../build/petrel}
N=${N:-1000}
SIZE=${SIZE:-102400}
RUNS=${RUNS:-3}
PY=${PYTHON:-/usr/bin/python3}

[ -x "$PETREL" ] || { echo "pop3_retr.sh: no petrel binary at $PETREL (ninja -C build)" >&2; exit 1; }

dir=$(mktemp -d /var/tmp/petrel-bench.XXXXXX)
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
trap cleanup EXIT INT TERM
chmod 755 "$dir"

"$PETREL" init --dir "$dir" --domain bench.test >/dev/null 2>"$dir/init.log" ||
	{ cat "$dir/init.log" >&2; exit 1; }
conf=$dir/petrel.conf
printf 'pw\n' | "$PETREL" -c "$conf" user add reader@bench.test --password-stdin >/dev/null
maildir=$(sed -n 's/^mail_root *= *//p' "$conf")/bench.test/reader

port=$(PYTHONPATH="$here/../tests" "$PY" -c 'from harness.ports import free_port; print(free_port())')

# N messages of SIZE bytes (LF line ends, 78-octet lines), named in delivery
# order, owned like the maildir (petrel may run as another user)
"$PY" - "$maildir" "$N" "$SIZE" <<'EOF'
import os, sys
md, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
st = os.stat(md)
for i in range(n):
    head = (b"From: bench@example.org\nTo: reader@bench.test\nSubject: bench %d\n"
            b"Message-ID: <bench%d@example.org>\n\n" % (i, i))
    line = b"%s\n" % (b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-" * 2)[:77]
    body = (line * (size // len(line) + 1))[: size - len(head) - 1] + b"\n"
    name = "%d.M%dP1.bench" % (1700000000 + i, i)
    tmp = os.path.join(md, "tmp", name)
    with open(tmp, "wb") as f:
        f.write(head + body)
    os.chown(tmp, st.st_uid, st.st_gid)
    os.rename(tmp, os.path.join(md, "new", name))
EOF

"$PETREL" -c "$conf" -o pop3_listen=127.0.0.1:$port -o smtp_listen= -o pop3s_listen= \
	-o submission_listen= -o submissions_listen= -o imap_listen= -o imaps_listen= -o http_listen= \
	-o https_listen= -o lmtp_listen= -o managesieve_listen= \
	-o log_level=warning serve 2>"$dir/serve.log" &
pid=$!

"$PY" - "$port" "$N" "$RUNS" "$pid" <<'EOF'
import os, poplib, socket, statistics, sys, time
port, n, runs, master = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])


def server_cpu():
    """CPU seconds used so far by petrel's worker processes (children of master)."""
    total = 0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(st[1]) == master:
            total += int(st[11]) + int(st[12])
    return total / os.sysconf("SC_CLK_TCK")


deadline = time.monotonic() + 15
while True:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("pop3_retr.sh: petrel serve did not start")
        time.sleep(0.05)
print("petrel POP3 RETR: %d messages, one session per run, poplib client" % n)
mbs, mps = [], []
for r in range(runs):
    p = poplib.POP3("127.0.0.1", port, timeout=120)
    p.user("reader@bench.test")
    p.pass_("pw")
    count, total = p.stat()
    assert count == n, (count, n)
    c0 = server_cpu()
    u0 = time.process_time()
    t0 = time.perf_counter()
    octets = 0
    for i in range(1, n + 1):
        resp, lines, _ = p.retr(i)
        octets += sum(len(l) + 2 for l in lines)
    dt = time.perf_counter() - t0
    cpu = server_cpu() - c0
    ucpu = time.process_time() - u0
    p.quit()
    assert octets == total, (octets, total)
    mbs.append(octets / dt / 1e6)
    mps.append(n / dt)
    print("run %d: %d messages, %.1f MB in %.2f s: %.1f MB/s, %.0f messages/s "
          "(CPU: petrel workers %.2f s, client %.2f s)"
          % (r + 1, n, octets / 1e6, dt, mbs[-1], mps[-1], cpu, ucpu))
print("median: %.1f MB/s, %.0f messages/s" % (statistics.median(mbs), statistics.median(mps)))
EOF
