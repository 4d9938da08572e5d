#!/bin/sh
# bench/imap_idle_mem.sh: what an idle IMAP client costs petrel in memory.
#
# Makes a throw-away instance under /var/tmp with USERS users (each INBOX
# holding MSGS small messages), starts `petrel serve` with only a plain IMAP
# listener on a free loopback port (allow_plaintext_auth=yes), logs every
# user in once (warm-up: the directory, the auth cache and each INBOX's index
# exist before the baseline), then opens CONNS connections from one Python
# process (non-blocking sockets and selectors, no thread per connection),
# each doing LOGIN, SELECT INBOX, IDLE (connections spread evenly over the
# users). It measures the resident memory of petrel's workers (the sum of
# VmRSS of the children of the `petrel serve` master, from /proc) before and
# once every connection is idling, and prints KiB per idle connection. Then
# it drops a message into one user's INBOX and counts how many of that
# user's idling connections are told (* n EXISTS), closes everything and
# measures once more; then ROUNDS-1 more rounds of opening and closing the
# connections (RSS that keeps growing from round to round after the close is
# a leak; RSS that stays put is the allocator keeping freed memory). Cleans
# up on exit (the server by PID, the instance).
#
#   bench/imap_idle_mem.sh                     # 1000 connections, 100 users
#   CONNS=5000 USERS=500 bench/imap_idle_mem.sh
#   COMPRESS=1 bench/imap_idle_mem.sh          # each turns on COMPRESS=DEFLATE after LOGIN
#
# Env: PETREL_BIN (default build/petrel), CONNS (1000), USERS (100), MSGS
#      (20), ROUNDS (3), COMPRESS (0; 1: COMPRESS DEFLATE (RFC 4978) after LOGIN), WORKERS (petrel "workers"; default: the value petrel init
#      writes), BENCH_DIR (/var/tmp), TIMEOUT (seconds for the client, 300),
#      PYTHON (/usr/bin/python3).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
PETREL=${PETREL_BIN:-${PETREL:-$here/../build/petrel}}
CONNS=${CONNS:-1000}
USERS=${USERS:-100}
MSGS=${MSGS:-20}
ROUNDS=${ROUNDS:-3}
COMPRESS=${COMPRESS:-0}
BENCH_DIR=${BENCH_DIR:-/var/tmp}
TIMEOUT=${TIMEOUT:-300}
PY=${PYTHON:-/usr/bin/python3}

die() { echo "imap_idle_mem.sh: $*" >&2; exit 1; }
[ -x "$PETREL" ] || die "no petrel binary at $PETREL (ninja -C build)"
command -v "$PY" >/dev/null || die "no $PY"

# every connection costs the client one descriptor and the server one
need=$((CONNS + 200))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
	ulimit -n "$need" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fi
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge "$need" ] ||
	die "open files limit $(ulimit -n) < $need (raise ulimit -n, or lower CONNS)"

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
db=$(sed -n 's/^database *= *sqlite://p' "$conf")
[ -n "$db" ] || die "expected an SQLite instance"

# one user made by the CLI (hash, maildir, ownership), the others copied
# from it in SQL with their maildirs made like it
printf 'pw\n' | "$PETREL" -c "$conf" user add u0@bench.test --password-stdin >/dev/null
"$PY" - "$db" "$mail_root/bench.test" "$USERS" "$MSGS" <<'EOF' || die "making the users failed"
import os, sqlite3, sys

db, root, users, msgs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
con = sqlite3.connect(db)
cols = [r[1] for r in con.execute("PRAGMA table_info(users)")]
row = dict(zip(cols, con.execute("SELECT * FROM users WHERE id = 'u0@bench.test'").fetchone()))
st = os.stat(os.path.join(root, "u0"))
for u in range(users):
    name = "u%d" % u
    md = os.path.join(root, name)
    if u:
        r = dict(row, id=name + "@bench.test", address=name + "@bench.test",
                 maildir=row["maildir"].replace("/u0/", "/%s/" % name))
        con.execute("INSERT INTO users (%s) VALUES (%s)" % (", ".join(cols), ", ".join("?" * len(cols))),
                    [r[c] for c in cols])
        os.mkdir(md, 0o700)
        os.chown(md, st.st_uid, st.st_gid)
        for sub in ("cur", "new", "tmp"):
            os.mkdir(os.path.join(md, sub), 0o700)
            os.chown(os.path.join(md, sub), st.st_uid, st.st_gid)
    for i in range(msgs):
        p = os.path.join(md, "cur", "%d.M%dP1.bench:2,S" % (1700000000 + i, i))
        with open(p, "wb") as f:
            f.write(b"From: someone%d@example.org\nTo: %s@bench.test\nSubject: message %d\n"
                    b"Date: Tue, 14 Nov 2023 22:13:20 +0000\nMessage-ID: <%d.%s@example.org>\n\n"
                    b"hello\n" % (i, name.encode(), i, i, name.encode()))
        os.chown(p, st.st_uid, st.st_gid)
con.commit()
EOF

port=$(PYTHONPATH="$here/../tests" "$PY" -c 'from harness.ports import free_port; print(free_port())')
set -- -o "imap_listen=127.0.0.1:$port" -o imaps_listen= -o smtp_listen= \
	-o submission_listen= -o submissions_listen= -o pop3_listen= -o pop3s_listen= -o http_listen= \
	-o https_listen= -o lmtp_listen= -o managesieve_listen= \
	-o allow_plaintext_auth=yes -o log_level=warning \
	-o imap_max_connections=1000000 -o imap_max_connections_per_ip=1000000
[ -n "${WORKERS:-}" ] && set -- "$@" -o "workers=$WORKERS"
"$PETREL" -c "$conf" "$@" serve 2>"$dir/serve.log" &
pid=$!

echo "petrel: $PETREL (built $(date -r "$PETREL" '+%Y-%m-%d %H:%M')); $(nproc) CPUs"
PYTHONPATH="$here/../tests" timeout "$TIMEOUT" "$PY" - "$port" "$pid" "$CONNS" "$USERS" "$mail_root/bench.test" "$ROUNDS" "$COMPRESS" <<'EOF' ||
import errno, os, selectors, socket, sys, time, zlib

from harness.procs import rss_kb, worker_pids

port, master, nconns, users, root, rounds = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]),
                                             int(sys.argv[4]), sys.argv[5], int(sys.argv[6]))
compress = sys.argv[7] == "1"
ADDR = ("127.0.0.1", port)


def workers():
    return sorted(worker_pids(master))


def workers_rss():
    """(sum of VmRSS in KiB, {pid: KiB})"""
    per = {p: rss_kb(p) for p in workers()}
    return sum(per.values()), per


class Client:
    """One IMAP connection driven by a little state machine:
    greeting -> LOGIN -> SELECT INBOX -> IDLE (+ continuation) -> idle."""

    def __init__(self, sel, n):
        self.n = n
        self.user = "u%d@bench.test" % (n % users)
        self.buf = b""
        self.state = "connect"
        self.exists = False
        self.zo = self.zi = None
        self.sock = socket.socket()
        self.sock.setblocking(False)
        err = self.sock.connect_ex(ADDR)
        if err not in (0, errno.EINPROGRESS):
            raise OSError(err, os.strerror(err))
        self.sel = sel
        sel.register(self.sock, selectors.EVENT_READ, self)

    def send(self, line):
        if self.zo is not None:
            line = self.zo.compress(line) + self.zo.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(line)   # short commands: the socket buffer takes them

    def lines(self):
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return []
        if not data:
            raise ConnectionError("connection %d (%s) closed by the server in state %s"
                                  % (self.n, self.user, self.state))
        if self.zi is not None:
            data = self.zi.decompress(data)
        self.buf += data
        out = []
        while b"\r\n" in self.buf:
            l, self.buf = self.buf.split(b"\r\n", 1)
            out.append(l)
        return out

    def step(self):
        for l in self.lines():
            if self.state == "connect":
                if not l.startswith(b"* OK"):
                    raise RuntimeError("greeting %r" % l)
                self.send(b"a LOGIN %s pw\r\n" % self.user.encode())
                self.state = "login"
            elif self.state == "login" and l.startswith(b"a "):
                if not l.startswith(b"a OK"):
                    raise RuntimeError("LOGIN %s -> %r" % (self.user, l))
                if compress:
                    self.send(b"z COMPRESS DEFLATE\r\n")
                    self.state = "compress"
                else:
                    self.send(b"b SELECT INBOX\r\n")
                    self.state = "select"
            elif self.state == "compress" and l.startswith(b"z "):
                if not l.startswith(b"z OK"):
                    raise RuntimeError("COMPRESS -> %r" % l)
                self.zo = zlib.compressobj(6, zlib.DEFLATED, -15)
                self.zi = zlib.decompressobj(-15)
                self.send(b"b SELECT INBOX\r\n")
                self.state = "select"
            elif self.state == "select" and l.startswith(b"b "):
                if not l.startswith(b"b OK"):
                    raise RuntimeError("SELECT -> %r" % l)
                self.send(b"c IDLE\r\n")
                self.state = "idle-start"
            elif self.state == "idle-start":
                if l.startswith(b"+"):
                    self.state = "idle"
                elif l.startswith(b"c "):
                    raise RuntimeError("IDLE -> %r" % l)
            elif self.state == "idle":
                if l.endswith(b" EXISTS"):
                    self.exists = True


def pump(sel, until, deadline, what):
    while not until():
        left = deadline - time.monotonic()
        if left <= 0:
            raise SystemExit("imap_idle_mem.sh: timed out waiting for %s" % what)
        for key, _ in sel.select(min(left, 1.0)):
            key.data.step()


deadline = time.monotonic() + 15
while True:
    try:
        with socket.create_connection(ADDR, timeout=2) as s:
            if s.recv(100).startswith(b"* OK"):
                break
    except OSError:
        pass
    if time.monotonic() > deadline:
        sys.exit("imap_idle_mem.sh: petrel serve did not greet")
    time.sleep(0.05)

sel = selectors.DefaultSelector()
# warm-up: every user logs in and selects once (index built, auth cached)
t0 = time.monotonic()
warm = [Client(sel, n) for n in range(users)]
pump(sel, lambda: all(c.state == "idle" for c in warm), time.monotonic() + 120, "the warm-up")
for c in warm:
    sel.unregister(c.sock)
    c.sock.close()
time.sleep(2)
before, per_before = workers_rss()
print("workers: %d (pids %s); warm-up (%d users logged in once) %.1f s"
      % (len(per_before), " ".join(map(str, sorted(per_before))), users, time.monotonic() - t0))

def open_idle():
    """CONNS connections through LOGIN, SELECT INBOX, IDLE (at most 100 being
    set up at a time); (connections, seconds)."""
    t0 = time.monotonic()
    conns = []
    while len(conns) < nconns:
        busy = sum(1 for c in conns if c.state != "idle")
        if busy < 100:
            for _ in range(min(100 - busy, nconns - len(conns))):
                conns.append(Client(sel, len(conns)))
        for key, _ in sel.select(0.5):
            key.data.step()
        if time.monotonic() - t0 > 180:
            raise SystemExit("imap_idle_mem.sh: timed out opening connections (%d idle)"
                             % sum(1 for c in conns if c.state == "idle"))
    pump(sel, lambda: all(c.state == "idle" for c in conns), time.monotonic() + 120,
         "every connection to idle")
    setup = time.monotonic() - t0
    time.sleep(3)  # let allocations settle
    for key, _ in sel.select(0):
        key.data.step()
    return conns, setup


def close_all(conns):
    for c in conns:
        try:
            c.sock.sendall(b"DONE\r\nd LOGOUT\r\n")
        except OSError:
            pass
    time.sleep(1)
    for c in conns:
        sel.unregister(c.sock)
        c.sock.close()
    time.sleep(3)


conns, setup = open_idle()
after, per_after = workers_rss()
print("%d connections (LOGIN, SELECT INBOX, IDLE) in %.1f s" % (nconns, setup))
if len(per_after) <= 16:
    detail = "per worker: " + ", ".join("%d: %d -> %d" % (p, per_before.get(p, 0), per_after[p])
                                        for p in sorted(per_after))
else:
    detail = "%d worker processes now" % len(per_after)
print("workers' RSS: %d KiB before, %d KiB with %d idle connections (%s)"
      % (before, after, nconns, detail))
print("RESULT idle_connections=%d kib_per_connection=%.1f" % (nconns, (after - before) / nconns))

# IDLE works: a new message for u0 is announced to u0's idling connections
mine = [c for c in conns if c.user == "u0@bench.test"]
md = os.path.join(root, "u0")
st = os.stat(md)
tmp = os.path.join(md, "tmp", "1800000000.M1P1.idle")
with open(tmp, "wb") as f:
    f.write(b"From: x@example.org\nSubject: wake up\n\nhello\n")
os.chown(tmp, st.st_uid, st.st_gid)
os.rename(tmp, os.path.join(md, "new", "1800000000.M1P1.idle"))
t1 = time.monotonic()
try:
    pump(sel, lambda: all(c.exists for c in mine), time.monotonic() + 30, "EXISTS")
except SystemExit:
    pass
print("new message: %d of %d idling connections of u0 told (* n EXISTS) in %.2f s"
      % (sum(1 for c in mine if c.exists), len(mine), time.monotonic() - t1))

close_all(conns)
closed, _ = workers_rss()
print("round 1: workers' RSS after closing them: %d KiB (%+d KiB from before)"
      % (closed, closed - before))
# more rounds: RSS that keeps growing after each close is a leak, RSS that
# stays where round 1 left it is the allocator keeping freed memory
for r in range(2, rounds + 1):
    conns, setup = open_idle()
    busy, _ = workers_rss()
    close_all(conns)
    closed, _ = workers_rss()
    print("round %d: %d KiB with %d idle connections, %d KiB after closing them "
          "(%+d KiB from before)" % (r, busy, nconns, closed, closed - before))
EOF
	{ echo "imap_idle_mem.sh: the client failed or timed out; server log:" >&2
	  tail -20 "$dir/serve.log" >&2; exit 1; }
