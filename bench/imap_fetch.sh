#!/bin/sh
# bench/imap_fetch.sh: how fast petrel opens a big IMAP folder and lists it.
#
# Makes a throw-away instance under /var/tmp (any user may run this; as root
# petrel serve drops to the instance's `user`), and for each N in NS one user
# whose INBOX holds N realistic messages (2-4 KiB, varied headers: Received,
# encoded words, Cc, In-Reply-To/References, some multipart; Maildir flags
# as in a long-lived mailbox: most seen, some answered/flagged, the newest
# in new/). The files are written straight into the Maildir before the
# server starts. Then `petrel serve` runs with only a plain IMAP listener on
# a free loopback port, and a Python imaplib client times, per case:
#   LOGIN, SELECT INBOX, UID FETCH 1:* (FLAGS ENVELOPE RFC822.SIZE), LOGOUT
#   cold: petrel-index and petrel-cache deleted from the folder first (the
#         index is rebuilt from the directory listing, every ENVELOPE parsed
#         from its file; the OS page cache is left as it is);
#   warm: the same again right after (index and cache in place).
# One line per case (select and fetch seconds, messages/s, reply size, CPU
# of petrel's workers and of the client). Cleans up on exit (the server by
# PID, the instance directory).
#
#   bench/imap_fetch.sh                         # N = 10000 and 100000
#   NS="1000 10000" bench/imap_fetch.sh
#   PETREL_BIN=/path/to/petrel bench/imap_fetch.sh
#
# Env: PETREL_BIN (default build/petrel), NS ("10000 100000"), BENCH_DIR
#      (/var/tmp), TIMEOUT (seconds for the measuring client, 1800),
#      PYTHON (/usr/bin/python3).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
PETREL=${PETREL_BIN:-${PETREL:-$here/../build/petrel}}
NS=${NS:-10000 100000}
BENCH_DIR=${BENCH_DIR:-/var/tmp}
TIMEOUT=${TIMEOUT:-1800}
PY=${PYTHON:-/usr/bin/python3}

die() { echo "imap_fetch.sh: $*" >&2; exit 1; }
[ -x "$PETREL" ] || die "no petrel binary at $PETREL (ninja -C build)"
command -v "$PY" >/dev/null || die "no $PY"

dir=$(mktemp -d "$BENCH_DIR/petrel-bench.XXXXXX")
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
chmod 755 "$dir"

"$PETREL" init --dir "$dir" --domain bench.test >/dev/null 2>"$dir/init.log" ||
	{ cat "$dir/init.log" >&2; exit 1; }
conf=$dir/petrel.conf
mail_root=$(sed -n 's/^mail_root *= *//p' "$conf")

for n in $NS; do
	printf 'pw\n' | "$PETREL" -c "$conf" user add "n$n@bench.test" --password-stdin >/dev/null
	"$PY" - "$mail_root/bench.test/n$n" "$n" <<'EOF' || die "filling the maildir failed"
import os, random, sys, time

md, n = sys.argv[1], int(sys.argv[2])
st = os.stat(md)
rnd = random.Random(n)
first = ["Anna", "Bernd", "Chloé", "Dmitri", "Eva", "François", "Gül", "Hiro", "Ines", "Jürgen",
         "Kasper", "Lena", "Mateo", "Nora", "Olaf", "Priya", "Quentin", "Rosa", "Sven", "Tomás"]
last = ["Müller", "Smith", "Dubois", "Ivanov", "Rossi", "García", "Kowalski", "Nakamura",
        "Jensen", "O'Brien", "Schmidt", "Novák"]
doms = ["example.org", "lists.example.net", "mail.example.com", "corp.example", "uni.example.edu"]
words = ("meeting report budget review quarterly release planning invoice question update "
         "deadline draft schedule proposal minutes travel server outage patch security "
         "feedback agenda contract results training holiday").split()
lorem = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
         "incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud "
         "exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat. Duis aute "
         "irure dolor in reprehenderit in voluptate velit esse cillum dolore eu fugiat nulla "
         "pariatur.").split()


def addr():
    f, l = rnd.choice(first), rnd.choice(last)
    local = "%s.%s" % (f.lower(), l.lower().replace("'", ""))
    local = local.encode("ascii", "ignore").decode()
    name = "%s %s" % (f, l)
    if any(ord(c) > 127 for c in name):
        import base64
        name = "=?UTF-8?B?%s?=" % base64.b64encode(name.encode()).decode()
    elif "'" in name:
        name = '"%s"' % name
    return "%s <%s@%s>" % (name, local, rnd.choice(doms))


def text(nbytes):
    out, size = [], 0
    while size < nbytes:
        line = " ".join(rnd.choice(lorem) for _ in range(rnd.randint(8, 12)))
        out.append(line)
        size += len(line) + 1
    return "\n".join(out) + "\n"


t0 = 1700000000
for i in range(n):
    ts = t0 + i * 37
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(ts))
    subj = " ".join(rnd.choice(words) for _ in range(rnd.randint(2, 7))).capitalize()
    if i % 7 == 0:
        subj = "Re: " + subj
    if i % 23 == 0:
        subj = "=?UTF-8?Q?Gr=C3=BC=C3=9Fe_zum_" + subj.replace(" ", "_") + "?="
    h = ["Return-Path: <bounce-%d@%s>" % (i, rnd.choice(doms)),
         "Received: from mx%d.example.net (mx%d.example.net [192.0.2.%d])\n\tby mail.bench.test"
         " with ESMTPS id %08X\n\tfor <n%d@bench.test>; %s" % (i % 9, i % 9, i % 250, i, n, date),
         "Received: from client.example.org ([198.51.100.%d]) by mx.example.net;\n\t%s"
         % (i % 250, date),
         "From: " + addr(),
         "To: " + ", ".join(addr() for _ in range(rnd.randint(1, 3))),
         "Subject: " + subj,
         "Date: " + date,
         "Message-ID: <%d.%x@bench.example.org>" % (i, rnd.getrandbits(48))]
    if rnd.random() < 0.3:
        h.append("Cc: " + ", ".join(addr() for _ in range(rnd.randint(1, 4))))
    if i % 7 == 0 and i:
        h.append("In-Reply-To: <%d.0@bench.example.org>" % (i - 1))
        h.append("References: " + " ".join("<%d.0@bench.example.org>" % j
                                           for j in range(max(0, i - 4), i)))
    if rnd.random() < 0.2:
        h.append("List-Id: Bench list <bench.lists.example.net>")
    h.append("X-Mailer: bench/%d.%d" % (i % 5, i % 11))
    h.append("MIME-Version: 1.0")
    size = rnd.randint(2048, 4096)
    if i % 5 == 0:
        body = ("--b%d\nContent-Type: text/plain; charset=utf-8\n\n%s--b%d\n"
                "Content-Type: text/html; charset=utf-8\n\n<p>%s</p>\n--b%d--\n"
                % (i, text(size // 2), i, text(size // 3).replace("\n", "<br>\n"), i))
        h.append('Content-Type: multipart/alternative; boundary="b%d"' % i)
    else:
        h.append("Content-Type: text/plain; charset=utf-8")
        body = text(size - 700)
    data = ("\n".join(h) + "\n\n" + body).encode()
    r = rnd.random()
    flags = "S" if r < 0.7 else "RS" if r < 0.8 else "FS" if r < 0.85 else ""
    base = "%d.M%dP%d.bench.test,S=%d" % (ts, i, 4242, len(data))
    if i >= n - 20:
        path = os.path.join(md, "new", base)       # the newest: just delivered
    else:
        path = os.path.join(md, "cur", base + ":2," + flags)
    with open(path, "wb") as f:
        f.write(data)
    os.utime(path, (ts, ts))
    os.chown(path, st.st_uid, st.st_gid)
EOF
done

port=$(PYTHONPATH="$here/../tests" "$PY" -c 'from harness.ports import free_port; print(free_port())')
"$PETREL" -c "$conf" -o "imap_listen=127.0.0.1:$port" -o imaps_listen= -o smtp_listen= \
	-o submission_listen= -o submissions_listen= -o pop3_listen= -o pop3s_listen= -o http_listen= \
	-o https_listen= -o lmtp_listen= -o managesieve_listen= \
	-o allow_plaintext_auth=yes -o log_level=warning serve 2>"$dir/serve.log" &
pid=$!

echo "petrel: $PETREL (built $(date -r "$PETREL" '+%Y-%m-%d %H:%M')); $(nproc) CPUs"
timeout "$TIMEOUT" "$PY" - "$port" "$pid" "$mail_root/bench.test" $NS <<'EOF' ||
import imaplib, os, re, socket, sys, time

port, master, root = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ns = [int(x) for x in sys.argv[4:]]


def server_cpu():
    """CPU seconds used so far by petrel's workers (children of the master)."""
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
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            if s.recv(100).startswith(b"* OK"):
                break
    except OSError:
        pass
    if time.monotonic() > deadline:
        sys.exit("imap_fetch.sh: petrel serve did not greet")
    time.sleep(0.05)

print("SELECT INBOX + UID FETCH 1:* (FLAGS ENVELOPE RFC822.SIZE), imaplib client, one session")
for n in ns:
    md = os.path.join(root, "n%d" % n)
    for case in ("cold", "warm"):
        if case == "cold":
            for f in ("petrel-index", "petrel-cache"):
                try:
                    os.unlink(os.path.join(md, f))
                except FileNotFoundError:
                    pass
        c0, u0 = server_cpu(), time.process_time()
        m = imaplib.IMAP4("127.0.0.1", port, timeout=600)
        m.login("n%d@bench.test" % n, "pw")
        t0 = time.perf_counter()
        typ, data = m.select("INBOX")
        t1 = time.perf_counter()
        assert typ == "OK" and int(data[0]) == n, (typ, data)
        typ, data = m.uid("FETCH", "1:*", "(FLAGS ENVELOPE RFC822.SIZE)")
        t2 = time.perf_counter()
        assert typ == "OK", (typ, data[:3])
        octets = sum(len(d[0]) + len(d[1]) if isinstance(d, tuple) else len(d)
                     for d in data if d is not None)
        # imaplib gives "N (UID ...)" per FETCH response, or a (head, literal)
        # tuple and the rest of the line when it has literals
        fetches = sum(1 for d in data if re.match(rb"\d+ \(",
                                                  d[0] if isinstance(d, tuple) else d or b""))
        m.logout()
        cpu, ucpu = server_cpu() - c0, time.process_time() - u0
        assert fetches == n, (fetches, n)
        print("N=%-6d %s: SELECT %.3f s, FETCH %.3f s (%.0f messages/s), total %.3f s, "
              "%.1f MB of replies (CPU: petrel workers %.2f s, client %.2f s)"
              % (n, case, t1 - t0, t2 - t1, n / (t2 - t1), t2 - t0, octets / 1e6, cpu, ucpu),
              flush=True)
EOF
	{ echo "imap_fetch.sh: the measuring client failed or timed out; server log:" >&2
	  tail -20 "$dir/serve.log" >&2; exit 1; }
