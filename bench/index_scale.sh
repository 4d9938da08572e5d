#!/bin/sh
# bench/index_scale.sh: does the cost of one change grow with the folder?
#
# For each N in NS, one user whose INBOX holds N small messages (about
# 300 bytes each, Maildir names with S= and a few flags), written straight
# into cur/ before the server starts (fast: no realistic bodies, nothing
# for petrel to parse). A plain-IMAP `petrel serve` on a free loopback
# port is then started, and a Python imaplib client does, per folder:
#   setup:    SELECT INBOX once (the index is built; timed, not a figure)
#   STORE:    UID STORE <uid> +FLAGS (\Flagged), then -FLAGS, on random
#             messages, one command at a time
#   EXPUNGE:  UID STORE <uid> +FLAGS.SILENT (\Deleted) + EXPUNGE, timed
#             as a whole (one message gone per round)
#   deliver:  a message written to tmp/ and renamed into new/ (as a
#             delivery does), then NOOP until "EXISTS" is seen; the time
#             from the rename to the NOOP's tagged OK
#   peer:     after each STORE above, a second session on the same
#             folder sends NOOP and gets the FETCH FLAGS (another
#             session picking up a change)
# Figures are per operation in milliseconds: the median and the 90th
# percentile of ROUNDS rounds. Also the server's RSS per session with the
# folder open (from /proc, the worker's VmRSS growth after SELECT).
#
# The folders are kept in BENCH_DATA between runs (making 1,000,000 files
# takes minutes); `rm -rf` it when done. With FRESH=1 the petrel-index,
# petrel-index.log and petrel-cache files are removed before the run (a
# cold first SELECT).
#
#   bench/index_scale.sh                          # N = 1000 100000 1000000
#   NS="1000 100000" ROUNDS=50 bench/index_scale.sh
#
# Env: PETREL_BIN (default build/petrel), NS, ROUNDS (20), BENCH_DATA
#      (.bench-data under the source tree), PYTHON (/usr/bin/python3).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
PETREL=${PETREL_BIN:-$here/../build/petrel}
NS=${NS:-1000 100000 1000000}
ROUNDS=${ROUNDS:-20}
BENCH_DATA=${BENCH_DATA:-$here/../.bench-data}
PY=${PYTHON:-/usr/bin/python3}

die() { echo "index_scale.sh: $*" >&2; exit 1; }
[ -x "$PETREL" ] || die "no petrel binary at $PETREL (ninja -C build)"

mkdir -p "$BENCH_DATA"
dir=$(cd "$BENCH_DATA" && pwd)/instance
pid=
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		i=0
		while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
		kill -KILL "$pid" 2>/dev/null || true
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ ! -f "$dir/petrel.conf" ]; then
	rm -rf "$dir"
	mkdir -p "$dir"
	chmod 755 "$dir"
	"$PETREL" init --dir "$dir" --domain bench.test >/dev/null 2>"$dir/init.log" ||
		{ cat "$dir/init.log" >&2; exit 1; }
fi
conf=$dir/petrel.conf
mail_root=$(sed -n 's/^mail_root *= *//p' "$conf")

for n in $NS; do
	md=$mail_root/bench.test/s$n
	if [ ! -f "$md/.bench-complete" ]; then
		printf 'pw\n' | "$PETREL" -c "$conf" user add "s$n@bench.test" \
			--password-stdin >/dev/null 2>&1 || true
		[ -d "$md/cur" ] || die "no maildir $md after user add"
		echo "making $n messages in $md ..." >&2
		"$PY" - "$md" "$n" <<'EOF' || die "filling the maildir failed"
import os, sys

md, n = sys.argv[1], int(sys.argv[2])
st = os.stat(md)
cur = os.path.join(md, "cur")
t0 = 1700000000
for i in range(n):
    ts = t0 + i
    data = ("From: a%d@example.org\nTo: s%d@bench.test\nSubject: message %d\n"
            "Date: Tue, 14 Nov 2023 22:13:20 +0000\nMessage-ID: <%d@bench.test>\n\n"
            "Body of message %d.\n" % (i % 97, n, i, i, i)).encode()
    flags = "S" if i % 3 else "" if i % 5 else "RS"
    name = "%d.M%dP4242.bench.test,S=%d,W=%d:2,%s" % (ts, i, len(data),
                                                     len(data) + data.count(b"\n"), flags)
    fd = os.open(os.path.join(cur, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, data)
    os.close(fd)
    if st.st_uid != os.getuid():
        os.chown(os.path.join(cur, name), st.st_uid, st.st_gid)
EOF
		touch "$md/.bench-complete"
	fi
	if [ "${FRESH:-0}" = 1 ]; then
		rm -f "$md/petrel-index" "$md/petrel-index.log" "$md/petrel-cache"
	fi
done

port=$(PYTHONPATH="$here/../tests" "$PY" -c 'from harness.ports import free_port; print(free_port())')
"$PETREL" -c "$conf" -o "imap_listen=127.0.0.1:$port" -o imaps_listen= -o smtp_listen= \
	-o submission_listen= -o submissions_listen= -o pop3_listen= -o pop3s_listen= -o http_listen= \
	-o https_listen= -o lmtp_listen= -o managesieve_listen= \
	-o allow_plaintext_auth=yes -o log_level=warning serve 2>"$dir/serve.log" &
pid=$!

echo "petrel: $PETREL (built $(date -r "$PETREL" '+%Y-%m-%d %H:%M')); $(nproc) CPUs; $ROUNDS rounds"
"$PY" - "$port" "$pid" "$mail_root/bench.test" "$ROUNDS" $NS <<'EOF' ||
import imaplib, os, random, re, socket, statistics, sys, time

imaplib._MAXLINE = 1 << 30
port, master, root, rounds = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
ns = [int(x) for x in sys.argv[5:]]

deadline = time.monotonic() + 15
while True:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            if s.recv(100).startswith(b"* OK"):
                break
    except OSError:
        pass
    if time.monotonic() > deadline:
        sys.exit("index_scale.sh: petrel serve did not greet")
    time.sleep(0.05)


def workers():
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(st[1]) == master:
            out.append(int(d))
    return out


def rss_kb():
    total = 0
    for w in workers():
        try:
            with open("/proc/%d/status" % w) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def ms(xs):
    xs = sorted(xs)
    return "%8.2f %8.2f" % (statistics.median(xs) * 1e3, xs[int(len(xs) * 0.9)] * 1e3)


def uids_of(m):
    typ, data = m.uid("SEARCH", "ALL")
    assert typ == "OK", data
    return [int(x) for x in data[0].split()]


print("%-9s %-8s %8s %8s" % ("N", "op", "median", "p90"), "(ms per operation)")
for n in ns:
    md = os.path.join(root, "s%d" % n)
    user = "s%d@bench.test" % n
    a = imaplib.IMAP4("127.0.0.1", port, timeout=3600)
    a.login(user, "pw")
    b = imaplib.IMAP4("127.0.0.1", port, timeout=3600)
    b.login(user, "pw")
    rss0 = rss_kb()
    t0 = time.perf_counter()
    typ, data = a.select("INBOX")
    t1 = time.perf_counter()
    assert typ == "OK", data
    typ, data = b.select("INBOX")
    assert typ == "OK", data
    rss1 = rss_kb()
    count = int(data[0])
    uids = uids_of(a)
    print("%-9d %-8s %8.2f %8s  (%d messages; RSS +%.1f MB for 2 sessions)"
          % (n, "select", (t1 - t0) * 1e3, "", count, (rss1 - rss0) / 1024), flush=True)
    rnd = random.Random(n)

    store, peer = [], []
    for r in range(rounds):
        uid = rnd.choice(uids)
        for sign in "+-":
            t = time.perf_counter()
            typ, data = a.uid("STORE", str(uid), sign + "FLAGS", "(\\Flagged)")
            store.append(time.perf_counter() - t)
            assert typ == "OK", data
            t = time.perf_counter()
            typ, data = b.noop()
            peer.append(time.perf_counter() - t)
            assert typ == "OK", data
    print("%-9d %-8s %s" % (n, "store", ms(store)), flush=True)
    print("%-9d %-8s %s" % (n, "peer", ms(peer)), flush=True)

    expunge = []
    for r in range(rounds):
        uid = uids.pop(rnd.randrange(len(uids)))
        t = time.perf_counter()
        typ, data = a.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Deleted)")
        assert typ == "OK", data
        typ, data = a.expunge()
        expunge.append(time.perf_counter() - t)
        assert typ == "OK" and data[0] is not None, data
        b.noop()
    print("%-9d %-8s %s" % (n, "expunge", ms(expunge)), flush=True)

    deliver = []
    for r in range(rounds):
        name = "%d.M%dP%d.bench.test,S=40" % (int(time.time()), r, os.getpid())
        tmp = os.path.join(md, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(b"Subject: new %d\n\nA new message here.\n" % r)
        st = os.stat(md)
        if st.st_uid != os.getuid():
            os.chown(tmp, st.st_uid, st.st_gid)
        t = time.perf_counter()
        os.rename(tmp, os.path.join(md, "new", name))
        seen = False
        while not seen:
            typ, data = a.noop()
            assert typ == "OK", data
            seen = "EXISTS" in a.untagged_responses
            a.untagged_responses.pop("EXISTS", None)
            a.untagged_responses.pop("RECENT", None)
        deliver.append(time.perf_counter() - t)
        b.noop()
    print("%-9d %-8s %s" % (n, "deliver", ms(deliver)), flush=True)
    a.logout()
    b.logout()
EOF
	{ echo "index_scale.sh: the measuring client failed; server log:" >&2
	  tail -20 "$dir/serve.log" >&2; exit 1; }
