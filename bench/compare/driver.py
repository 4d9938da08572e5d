#!/usr/bin/python3
"""The measuring side of bench/compare.sh: runs every workload against
petrel and against the incumbent (Postfix for SMTP, Dovecot for IMAP and
POP3), alternating which goes first, for ROUNDS rounds; prints per-round
raw figures to stderr and one markdown table to stdout and to OUT.

Everything comes from the environment (compare.sh sets it):
  PETREL_SMTP PETREL_IMAP PETREL_POP3 PETREL_PID PETREL_ROOT
  INC_SMTP INC_IMAP INC_POP3 POSTFIX_PID DOVECOT_PID INC_ROOT
  DOMAIN PASSWORD SMTP_SOURCE BIN_DIR WORK_DIR ROUNDS QUICK OUT
  N_SMALL N_LARGE N_BIG IDLE_USERS IDLE_CONNS IDLE_BIG LOGINS LOGIN_PAR LOGIN_USERS
  SMTP_PLAN ("SESSIONSxSIZExCOUNT ...") FSYNC_SECONDS TCP_MIB MEM_FLOOR_MIB
  HEADER (lines for the table's preamble)

The IMAP/POP3 client is raw sockets with a preallocated receive buffer and a
tail search for the tagged reply, so that it is not the bottleneck for big
responses. Every wait is bounded.
"""
import errno
import json
import os
import re
import selectors
import socket
import ssl
import statistics
import subprocess
import sys
import time

# the test harness's /proc helpers (tests/harness/procs.py)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests"))
from harness.procs import tree_cpu, tree_mem  # noqa: E402

E = os.environ
DOMAIN = E.get("DOMAIN", "bench.test")
PW = E["PASSWORD"].encode()
ROUNDS = int(E.get("ROUNDS", "3"))
QUICK = E.get("QUICK", "0") == "1"
N_SMALL = int(E["N_SMALL"])
N_LARGE = int(E["N_LARGE"])
N_BIG = int(E["N_BIG"])
IDLE_USERS = int(E["IDLE_USERS"])
IDLE_CONNS = [int(x) for x in E["IDLE_CONNS"].split()]     # every round
IDLE_BIG = [int(x) for x in E.get("IDLE_BIG", "").split()]  # last round only
LOGIN_USERS = int(E.get("LOGIN_USERS", "100"))
IN_FLIGHT = 50      # idle-connection set-ups under way at a time
LOGINS = int(E["LOGINS"])
LOGIN_PAR = int(E.get("LOGIN_PAR", "10"))
SMTP_PLAN = [tuple(int(v) for v in p.split("x")) for p in E["SMTP_PLAN"].split()]
FSYNC_SECONDS = int(E.get("FSYNC_SECONDS", "3"))
TCP_MIB = int(E.get("TCP_MIB", "2048"))
MEM_FLOOR_KIB = int(E.get("MEM_FLOOR_MIB", "3072")) * 1024
SEARCH_WORD = "zeppelin"
BODY_REPS = int(E.get("BODY_REPS", "5"))
SESSION_CLIENTS = int(E.get("SESSION_CLIENTS", "20"))
SESSION_ITERS = int(E.get("SESSION_ITERS", "200" if QUICK else "1000"))
SESSION_SECONDS = int(E.get("SESSION_SECONDS", "120"))
TLS_SECONDS = int(E.get("TLS_SECONDS", "5"))
TLS_CLIENTS = max(1, int(E.get("TLS_CLIENTS", "1")))
# ONLY: run just these workload groups (smtp login session env body search
# sort pop3 idle tls); empty = all. The machine rows always run.
ONLY = set(E.get("ONLY", "").split())


def want(group):
    return not ONLY or group in ONLY

PETREL = {"name": "petrel", "smtp_name": "petrel", "imap_name": "petrel",
          "smtp": int(E["PETREL_SMTP"]), "imap": int(E["PETREL_IMAP"]),
          "pop3": int(E["PETREL_POP3"]), "smtp_pid": int(E["PETREL_PID"]),
          "imap_pid": int(E["PETREL_PID"]), "root": E["PETREL_ROOT"],
          "imaps": int(E["PETREL_IMAPS"]), "smtps": int(E["PETREL_SMTPS"])}
INC = {"name": "incumbent", "smtp_name": "Postfix", "imap_name": "Dovecot",
       "smtp": int(E["INC_SMTP"]), "imap": int(E["INC_IMAP"]), "pop3": int(E["INC_POP3"]),
       "smtp_pid": int(E["POSTFIX_PID"]), "imap_pid": int(E["DOVECOT_PID"]),
       "root": E["INC_ROOT"], "imaps": int(E["INC_IMAPS"]), "smtps": int(E["INC_SMTPS"])}
PRODUCTS = (PETREL, INC)


class BenchError(Exception):
    pass


def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def maildir(prod, user):
    return os.path.join(prod["root"], DOMAIN, user)


# ---------------------------------------------------------------- /proc
# proc_table(), tree(), tree_cpu(), tree_mem(): harness.procs


def mem_available_kib():
    with open("/proc/meminfo") as f:
        for l in f:
            if l.startswith("MemAvailable:"):
                return int(l.split()[1])
    return 0


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def check_servers():
    for prod in PRODUCTS:
        for k in ("smtp_pid", "imap_pid"):
            if not alive(prod[k]):
                raise BenchError("%s (pid %d) is gone" % (prod[k.split("_")[0] + "_name"], prod[k]))


# ---------------------------------------------------------------- client

class Conn:
    """A blocking client connection with one preallocated receive buffer."""

    def __init__(self, port, bufsize=1 << 20, timeout=120, tls=False):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:     # implicit TLS (imaps); the certificate is not checked
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            self.s = ctx.wrap_socket(self.s)
        self.buf = bytearray(bufsize)
        self.mv = memoryview(self.buf)
        self.n = 0
        self.pos = 0
        self.tags = 0

    def close(self):
        self.mv.release()
        self.s.close()

    def _fill(self):
        """Receive more; returns by how much the buffer content moved left."""
        shift = 0
        if self.n == len(self.buf):
            if self.pos > 0:        # drop what was consumed
                shift = self.pos
                self.buf[:self.n - self.pos] = self.buf[self.pos:self.n]
                self.n -= self.pos
                self.pos = 0
            if self.n == len(self.buf):
                self.mv.release()
                self.buf.extend(bytes(len(self.buf)))
                self.mv = memoryview(self.buf)
        r = self.s.recv_into(self.mv[self.n:])
        if r == 0:
            raise ConnectionError("connection closed by the server")
        self.n += r
        return shift

    def send(self, data):
        self.s.sendall(data)

    def line(self):
        while True:
            i = self.buf.find(b"\r\n", self.pos, self.n)
            if i >= 0:
                l = bytes(self.buf[self.pos:i])
                self.pos = i + 2
                return l
            self._fill()

    def cmd(self, text):
        """Send an IMAP command; read up to its tagged reply. Returns
        (start, end, tagged line): the untagged part is buf[start:end]."""
        self.tags += 1
        tag = b"T%d" % self.tags
        self.send(tag + b" " + text + b"\r\n")
        return self.until_tag(tag)

    def until_tag(self, tag):
        t = tag + b" "
        pat = b"\r\n" + t
        start = self.pos
        scan = start
        tagpos = -1
        while True:
            if tagpos < 0:
                if self.buf[start:start + len(t)] == t:
                    tagpos = start
                else:
                    i = self.buf.find(pat, scan, self.n)
                    if i >= 0:
                        tagpos = i + 2
                    else:
                        scan = max(start, self.n - len(pat) + 1)
            if tagpos >= 0:
                e = self.buf.find(b"\r\n", tagpos, self.n)
                if e >= 0:
                    line = bytes(self.buf[tagpos:e])
                    self.pos = e + 2
                    return start, tagpos, line
            shift = self._fill()
            start -= shift
            scan -= shift
            if tagpos >= 0:
                tagpos -= shift

    def pop_multi(self):
        """Read a POP3 multi-line reply; returns the octets of its body."""
        first = self.line()
        if not first.startswith(b"+OK"):
            raise BenchError("POP3: %r" % first[:80])
        start = self.pos
        scan = start
        while True:
            if self.buf[start:start + 3] == b".\r\n":
                end = start
            else:
                i = self.buf.find(b"\r\n.\r\n", scan, self.n)
                end = i + 2 if i >= 0 else -1
            if end >= 0:
                self.pos = end + 3
                if self.pos == self.n:      # keep the buffer from filling up
                    self.pos = self.n = 0
                return end - start
            scan = max(start, self.n - 4)
            shift = self._fill()
            start -= shift
            scan -= shift


def imap_login(port, user, bufsize=1 << 20, tls=False):
    c = Conn(port, bufsize, tls=tls)
    g = c.line()
    if not g.startswith(b"* OK"):
        raise BenchError("IMAP greeting %r" % g[:80])
    _, _, st = c.cmd(b"LOGIN %s@%s %s" % (user.encode(), DOMAIN.encode(), PW))
    if b" OK" not in st[:8]:
        raise BenchError("LOGIN %s: %r" % (user, st[:120]))
    return c


def imap_ok(st, what):
    if not re.match(rb"T\d+ OK", st):
        raise BenchError("%s: %r" % (what, st[:200]))


def imap_logout(c):
    try:
        c.cmd(b"LOGOUT")
    except (OSError, ConnectionError):
        pass
    c.close()


# ---------------------------------------------------------------- workloads

def clear_dir(d):
    for name in os.listdir(d):
        os.unlink(os.path.join(d, name))


def smtp_run(prod, sessions, size, count):
    md = maildir(prod, "sink")
    new = os.path.join(md, "new")
    for sub in ("new", "cur", "tmp"):
        clear_dir(os.path.join(md, sub))
    os.sync()
    time.sleep(1)
    cpu0 = tree_cpu(prod["smtp_pid"])
    t0 = time.monotonic()
    cmd = [E["SMTP_SOURCE"], "-s", str(sessions), "-m", str(count), "-l", str(size),
           "-f", "sender@example.org", "-t", "sink@%s" % DOMAIN, "127.0.0.1:%d" % prod["smtp"]]
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900)
    except subprocess.TimeoutExpired:
        raise BenchError("%s: smtp-source did not finish in 900 s" % prod["smtp_name"])
    t1 = time.monotonic()
    if p.returncode != 0:
        raise BenchError("%s: smtp-source exited %d: %s" % (prod["smtp_name"], p.returncode,
                                                            p.stdout.decode(errors="replace")[-500:].strip()))
    n = 0
    while True:
        n = len(os.listdir(new))
        if n >= count:
            break
        if time.monotonic() - t1 > 300:
            raise BenchError("%s: only %d of %d messages in new/ 300 s after smtp-source ended"
                             % (prod["smtp_name"], n, count))
        time.sleep(0.02)
    t2 = time.monotonic()
    cpu = tree_cpu(prod["smtp_pid"]) - cpu0
    rate = count / (t2 - t0)
    return rate, ("%d msgs in %.2f s (smtp-source done at %.2f s), server CPU %.1f s"
                  % (count, t2 - t0, t1 - t0, cpu))


def _login_child(port, users, count, go_r, res_w, k0):
    import signal
    signal.alarm(600)
    os.read(go_r, 1)
    ok = err = 0
    first_err = ""
    for k in range(count):
        u = users[(k0 + k) % len(users)]
        try:
            c = imap_login(port, u, 1 << 14)
            imap_logout(c)
            ok += 1
        except (OSError, ConnectionError, BenchError) as e:
            err += 1
            first_err = first_err or "%s: %s" % (u, e)
    os.write(res_w, (json.dumps([ok, err, first_err]) + "\n").encode())
    os._exit(0)


def fan_out(prod, children, settle, limit):
    """Fork one client process per entry of `children` (each a function of
    (go_r, res_w) that waits for a byte on go_r, works, writes one JSON line
    to res_w and exits), start them together after `settle` seconds, and
    collect their lines for at most `limit` seconds. Returns (results,
    elapsed seconds, server CPU seconds)."""
    go_r, go_w = os.pipe()
    res_r, res_w = os.pipe()
    kids = []
    for child in children:
        pid = os.fork()
        if pid == 0:
            os.close(go_w)
            os.close(res_r)
            child(go_r, res_w)
            os._exit(0)
        kids.append(pid)
    os.close(go_r)
    os.close(res_w)
    time.sleep(settle)
    cpu0 = tree_cpu(prod["imap_pid"])
    t0 = time.monotonic()
    os.write(go_w, b"x" * len(children))
    data = b""
    deadline = t0 + limit
    with os.fdopen(res_r, "rb") as f:
        while data.count(b"\n") < len(children) and time.monotonic() < deadline:
            chunk = f.readline()
            if not chunk:
                break
            data += chunk
    t1 = time.monotonic()
    cpu = tree_cpu(prod["imap_pid"]) - cpu0
    os.close(go_w)
    for pid in kids:
        os.waitpid(pid, 0)
    return [json.loads(l) for l in data.splitlines()], t1 - t0, cpu


def login_run(prod, users, total, par):
    per = total // par
    res, dt, cpu = fan_out(prod, [
        (lambda go_r, res_w, k0=i * per * 7: _login_child(prod["imap"], users, per, go_r, res_w, k0))
        for i in range(par)], 0.3, 620)
    ok = sum(r[0] for r in res)
    err = sum(r[1] for r in res)
    if len(res) < par or err:
        raise BenchError("%s: %d of %d logins failed (%s)" % (
            prod["imap_name"], par * per - ok, par * per,
            next((r[2] for r in res if r[2]), "a client process did not report")))
    return ok / dt, "%d logins in %.2f s, %d parallel, server CPU %.1f s" % (ok, dt, par, cpu)


SESSION_MSG = (b"From: load@example.org\r\nTo: x@bench.test\r\nSubject: load %d\r\n"
               b"Message-ID: <load-%d-%d@example.org>\r\n\r\n" + b"a line of text\r\n" * 40)


def _session_child(port, user, iters, go_r, res_w):
    """One persistent session: LOGIN once, then `iters` rounds of SELECT,
    APPEND, FETCH, STORE, EXPUNGE (the folder ends as it began)."""
    import signal
    signal.alarm(SESSION_SECONDS + 60)
    cmds = err = 0
    first_err = ""
    try:
        c = imap_login(port, user, 1 << 20)
        os.read(go_r, 1)
        t_end = time.monotonic() + SESSION_SECONDS
        for k in range(iters):
            if time.monotonic() > t_end:
                break
            s, e, st = c.cmd(b"SELECT INBOX")
            imap_ok(st, "SELECT")
            m = re.search(rb"\* (\d+) EXISTS", c.buf[s:e])
            n = int(m.group(1)) if m else 0
            msg = SESSION_MSG % (k, os.getpid(), k)
            s, e, st = c.cmd(b"APPEND INBOX {%d+}\r\n%s" % (len(msg), msg))
            imap_ok(st, "APPEND")
            s, e, st = c.cmd(b"FETCH %d:* (FLAGS RFC822.SIZE ENVELOPE)" % max(1, n - 8))
            imap_ok(st, "FETCH")
            s, e, st = c.cmd(b"STORE %d +FLAGS.SILENT (\\Seen \\Deleted)" % (n + 1))
            imap_ok(st, "STORE")
            s, e, st = c.cmd(b"EXPUNGE")
            imap_ok(st, "EXPUNGE")
            cmds += 5
        imap_logout(c)
    except (OSError, ConnectionError, BenchError) as e:
        err += 1
        first_err = "%s: %s" % (user, e)
    os.write(res_w, (json.dumps([cmds, err, first_err]) + "\n").encode())
    os._exit(0)


def session_run(prod, users, iters):
    """Persistent sessions: one client process per user, each holding one
    session, all started together; commands per second over all of them."""
    res, dt, cpu = fan_out(prod, [
        (lambda go_r, res_w, u=u: _session_child(prod["imap"], u, iters, go_r, res_w))
        for u in users], 1.0, SESSION_SECONDS + 90)
    cmds = sum(r[0] for r in res)
    err = sum(r[1] for r in res)
    if len(res) < len(users) or err:
        raise BenchError("%s: %d of %d sessions failed (%s)" % (
            prod["imap_name"], err + len(users) - len(res), len(users),
            next((r[2] for r in res if r[2]), "a client process did not report")))
    return cmds / dt, ("%d commands in %.2f s, %d sessions, server CPU %.1f s "
                       "(%.3f ms per command)" % (cmds, dt, len(users), cpu,
                                                  1000.0 * cpu / max(cmds, 1)))


INDEX_PREFIXES = ("dovecot", "petrel-")


def drop_indexes(prod, user):
    md = maildir(prod, user)
    for name in os.listdir(md):
        if name.startswith(INDEX_PREFIXES) and os.path.isfile(os.path.join(md, name)):
            os.unlink(os.path.join(md, name))


def fetch_env_run(prod, user, n):
    bufsize = 1 << 26 if n <= 20000 else 1 << 28
    c = imap_login(prod["imap"], user, bufsize)
    cpu0 = tree_cpu(prod["imap_pid"])
    t0 = time.monotonic()
    s, e, st = c.cmd(b"SELECT INBOX")
    t1 = time.monotonic()
    imap_ok(st, "SELECT")
    m = re.search(rb"\* (\d+) EXISTS", c.buf[s:e])
    if not m or int(m.group(1)) != n:
        raise BenchError("%s: SELECT INBOX of %s: %r EXISTS, expected %d"
                         % (prod["imap_name"], user, m and m.group(1), n))
    s, e, st = c.cmd(b"UID FETCH 1:* (FLAGS ENVELOPE RFC822.SIZE)")
    t2 = time.monotonic()
    imap_ok(st, "UID FETCH")
    got = c.buf.count(b" FETCH (", s, e)
    nbytes = e - s
    cpu = tree_cpu(prod["imap_pid"]) - cpu0
    imap_logout(c)
    if got != n:
        raise BenchError("%s: UID FETCH gave %d responses, expected %d" % (prod["imap_name"], got, n))
    return t2 - t0, "SELECT %.3f s + FETCH %.3f s, %.1f MB of replies, server CPU %.2f s" % (
        t1 - t0, t2 - t1, nbytes / 1e6, cpu)


FETCH_CLIENT = os.path.join(E.get("BIN_DIR", ""), "fetch_client")


def fetch_body_run(prod, reps=1, tls=False):
    """FETCH 1:* BODY[] of the big folder, reps times in one session (the
    clock runs over all of them: one is only a fraction of a second); over
    imaps (TLS 1.3, the server's choice of cipher) when tls. By
    bench/compare/fetch_client.c when compare.sh could build it (the Python
    client below is itself the limit near 350 MB/s), else in Python; the
    row's note names the client."""
    if os.access(FETCH_CLIENT, os.X_OK):
        return fetch_body_c(prod, reps, tls)
    return fetch_body_py(prod, reps, tls)


def fetch_body_c(prod, reps, tls):
    args = [FETCH_CLIENT, str(prod["imaps"] if tls else prod["imap"]),
            "big@%s" % DOMAIN, PW.decode(), str(N_BIG), str(reps)] + (["tls"] if tls else [])
    cpu0 = tree_cpu(prod["imap_pid"])
    p = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=600)
    cpu = tree_cpu(prod["imap_pid"]) - cpu0
    if p.returncode != 0:
        raise BenchError("%s: %s" % (prod["imap_name"],
                                     p.stderr.decode(errors="replace").strip()[:300]))
    r = dict(kv.split("=", 1) for kv in p.stdout.decode().split())
    octets, elapsed = int(r["bytes"]), float(r["seconds"])
    how = ", %s %s" % (r["proto"], r["cipher"]) if tls else ""
    # the server's CPU includes its LOGIN, SELECT and LOGOUT (small)
    return octets / elapsed / 1e6, "%d × %d msgs, %.1f MB in %.3f s, server CPU %.2f s, " \
        "C client (fetch_client)%s" % (reps, N_BIG, octets / 1e6, elapsed, cpu, how)


def fetch_body_py(prod, reps, tls):
    c = imap_login(prod["imaps"] if tls else prod["imap"], "big", 1 << 28, tls=tls)
    how = ", %s %s" % (c.s.version(), c.s.cipher()[0]) if tls else ""
    s, e, st = c.cmd(b"SELECT INBOX")
    imap_ok(st, "SELECT")
    cpu0 = tree_cpu(prod["imap_pid"])
    octets = 0
    elapsed = 0.0
    for _ in range(reps):
        t0 = time.monotonic()
        s, e, st = c.cmd(b"FETCH 1:* BODY[]")
        elapsed += time.monotonic() - t0
        imap_ok(st, "FETCH BODY[]")
        lits = [int(x) for x in re.findall(rb"BODY\[\] \{(\d+)\}\r\n", c.buf[s:e])]
        if len(lits) != N_BIG:
            raise BenchError("%s: FETCH BODY[] gave %d literals, expected %d"
                             % (prod["imap_name"], len(lits), N_BIG))
        octets += sum(lits)
    cpu = tree_cpu(prod["imap_pid"]) - cpu0
    imap_logout(c)
    return octets / elapsed / 1e6, "%d × %d msgs, %.1f MB in %.3f s, server CPU %.2f s, " \
        "Python client%s" % (reps, N_BIG, octets / 1e6, elapsed, cpu, how)


def tls_run(prod, listener, mode):
    """TLS handshakes per second of wall-clock time on prod's implicit-TLS
    listener ("imaps" or "smtps"), by one `openssl s_time` client for
    TLS_SECONDS: mode "new" = a full TLS 1.3 handshake each time, "reuse"
    = the first TLS 1.2 session resumed by its ticket each time (s_time
    does not read TLS 1.3's post-handshake tickets). No payload."""
    proto = "-tls1_3" if mode == "new" else "-tls1_2"
    # TLS_CLIENTS s_time processes at once (one is often the limit, not
    # the server): the handshakes of all over the wall-clock time
    t0 = time.monotonic()
    procs = [subprocess.Popen(["openssl", "s_time", "-connect", "127.0.0.1:%d" % prod[listener],
                               proto, "-" + mode, "-time", str(TLS_SECONDS)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT) for _ in range(TLS_CLIENTS)]
    outs = [p.communicate(timeout=TLS_SECONDS * 4 + 30)[0] for p in procs]
    dt = time.monotonic() - t0
    n = resumed = 0
    for raw in outs:
        out = raw.decode("utf-8", "replace")
        counts = re.findall(r"^(\d+) connections in [0-9.]+s", out, re.M)
        if not counts:
            raise BenchError("openssl s_time %s %s: %s" % (listener, mode, out.strip()[-300:]))
        n += int(counts[0])
        # s_time marks each connection: "*" a new session, "r" a resumed one
        marks = "".join(l for l in out.splitlines() if re.fullmatch(r"[*r]+", l))
        resumed += marks.count("r")
    return n / dt, "%d handshakes in %.1f s (%d × s_time %s -%s), %d resumed" % (
        n, dt, TLS_CLIENTS, proto, mode, resumed)


def search_run(prod):
    c = imap_login(prod["imap"], "f%d" % N_SMALL)
    s, e, st = c.cmd(b"SELECT INBOX")
    imap_ok(st, "SELECT")
    cpu0 = tree_cpu(prod["imap_pid"])
    t0 = time.monotonic()
    s, e, st = c.cmd(b"SEARCH TEXT " + SEARCH_WORD.encode())
    t1 = time.monotonic()
    imap_ok(st, "SEARCH")
    cpu = tree_cpu(prod["imap_pid"]) - cpu0
    m = re.search(rb"\* SEARCH([ 0-9]*)\r\n", c.buf[s:e])
    hits = len(m.group(1).split()) if m else -1
    imap_logout(c)
    HITS[prod["name"]] = hits
    return t1 - t0, "%d hits, server CPU %.2f s" % (hits, cpu)


SORT_CMDS = (
    ("sort-date", b"SORT (DATE) UTF-8 ALL", b"SORT"),
    ("sort-subject", b"SORT (SUBJECT) UTF-8 ALL", b"SORT"),
    ("thread-refs", b"THREAD REFERENCES UTF-8 ALL", b"THREAD"),
    ("esearch", b"UID SEARCH RETURN (MIN MAX COUNT ALL) SINCE 1-Jan-2000", b"ESEARCH"),
)


def sort_run(prod, n, which, reps=3):
    """One of SORT_CMDS on the folder of n messages, warm (run once before
    the clock starts), reps times in one session; seconds per command."""
    cmd, reply = next((c, r) for k, c, r in SORT_CMDS if k == which)
    c = imap_login(prod["imap"], "f%d" % n, 1 << 24)
    s, e, st = c.cmd(b"SELECT INBOX")
    imap_ok(st, "SELECT")
    s, e, st = c.cmd(cmd)
    imap_ok(st, cmd.decode())
    cpu0 = tree_cpu(prod["imap_pid"])
    t0 = time.monotonic()
    for _ in range(reps):
        s, e, st = c.cmd(cmd)
        imap_ok(st, cmd.decode())
    t1 = time.monotonic()
    cpu = tree_cpu(prod["imap_pid"]) - cpu0
    body = bytes(c.buf[s:e])
    imap_logout(c)
    if not body.startswith(b"* " + reply):
        raise BenchError("%s: %s answered %r" % (prod["imap_name"], cmd.decode(), body[:120]))
    if reply in (b"SORT", b"THREAD"):
        got = len(re.findall(rb"\d+", body.split(b"\r\n")[0]))
        if got != n:
            raise BenchError("%s: %s named %d messages, expected %d"
                             % (prod["imap_name"], cmd.decode(), got, n))
        detail = "%d messages" % got
    else:
        m = re.search(rb"COUNT (\d+)", body)
        detail = "COUNT %s" % (m.group(1).decode() if m else "?")
    return (t1 - t0) / reps, "%s, %d times, server CPU %.3f s per command" % (
        detail, reps, cpu / reps)


def qresync_run(prod, n, reps=3):
    """A client that was away while 100 messages changed flags comes back
    with SELECT (QRESYNC (uidvalidity modseq)): seconds for that SELECT
    (its FETCHes of the 100 changed messages included), in a folder of n
    messages. Another session makes the 100 changes before each one (a
    keyword no message has, set, then cleared, so the folder ends as it
    began)."""
    c = imap_login(prod["imap"], "f%d" % n, 1 << 24)
    for what in (b"ENABLE QRESYNC", b"SELECT INBOX"):
        s, e, st = c.cmd(what)
        imap_ok(st, what.decode())
    head = bytes(c.buf[s:e])
    v = re.search(rb"UIDVALIDITY (\d+)", head)
    if not v or not re.search(rb"HIGHESTMODSEQ (\d+)", head):
        raise BenchError("%s: no HIGHESTMODSEQ/UIDVALIDITY in SELECT" % prod["imap_name"])
    uidvalidity = int(v.group(1))
    s, e, st = c.cmd(b"UID SEARCH ALL")
    uids = [int(x) for x in re.search(rb"\* SEARCH([ 0-9]*)", bytes(c.buf[s:e])).group(1).split()]
    step = max(1, len(uids) // 100)
    changed = b",".join(b"%d" % u for u in uids[::step][:100])
    total = 0.0
    cpu = 0.0
    for r in range(reps + 1):
        s, e, st = c.cmd(b"STATUS INBOX (HIGHESTMODSEQ)")
        mm = re.search(rb"HIGHESTMODSEQ (\d+)", bytes(c.buf[s:e]))
        if not mm:
            raise BenchError("%s: STATUS without HIGHESTMODSEQ" % prod["imap_name"])
        since = int(mm.group(1))
        s, e, st = c.cmd(b"UID STORE %s %sFLAGS.SILENT ($QRBench)"
                         % (changed, b"+" if r % 2 == 0 else b"-"))
        imap_ok(st, "UID STORE")
        d = imap_login(prod["imap"], "f%d" % n, 1 << 24)
        s, e, st = d.cmd(b"ENABLE QRESYNC")
        cpu0 = tree_cpu(prod["imap_pid"])
        t0 = time.monotonic()
        s, e, st = d.cmd(b"SELECT INBOX (QRESYNC (%d %d))" % (uidvalidity, since))
        t1 = time.monotonic()
        cpu1 = tree_cpu(prod["imap_pid"])
        imap_ok(st, "SELECT (QRESYNC)")
        got = len(re.findall(rb"\* \d+ FETCH ", bytes(d.buf[s:e])))
        imap_logout(d)
        if got < 100:
            raise BenchError("%s: SELECT (QRESYNC) reported %d changed messages, expected 100"
                             % (prod["imap_name"], got))
        if r > 0:               # the first one warms up
            total += t1 - t0
            cpu += cpu1 - cpu0
    imap_logout(c)
    return total / reps, "100 changed of %d, %d times, server CPU %.3f s per SELECT" % (
        n, reps, cpu / reps)


def pop3_run(prod, count_only=False):
    c = Conn(prod["pop3"], 1 << 21)
    g = c.line()
    if not g.startswith(b"+OK"):
        raise BenchError("%s POP3 greeting %r" % (prod["imap_name"], g[:80]))
    c.send(b"USER pop@%s\r\n" % DOMAIN.encode())
    l1 = c.line()
    c.send(b"PASS %s\r\n" % PW)
    l2 = c.line()
    if not (l1.startswith(b"+OK") and l2.startswith(b"+OK")):
        raise BenchError("%s POP3 login: %r %r" % (prod["imap_name"], l1[:80], l2[:80]))
    c.send(b"STAT\r\n")
    st = c.line().split()
    if len(st) < 2 or int(st[1]) != N_BIG:
        raise BenchError("%s POP3 STAT: %r" % (prod["imap_name"], st))
    cpu0 = tree_cpu(prod["imap_pid"])
    t0 = time.monotonic()
    octets = 0
    for i in range(1, N_BIG + 1):
        c.send(b"RETR %d\r\n" % i)
        octets += c.pop_multi()
    t1 = time.monotonic()
    cpu = tree_cpu(prod["imap_pid"]) - cpu0
    c.send(b"QUIT\r\n")
    try:
        c.line()
    except (OSError, ConnectionError):
        pass
    c.close()
    return octets / (t1 - t0) / 1e6, "%d RETR, %.1f MB in %.3f s, server CPU %.2f s" % (
        N_BIG, octets / 1e6, t1 - t0, cpu)


# ---------------------------------------------------------------- idle connections

class IdleClient:
    """LOGIN -> SELECT INBOX -> IDLE, driven by readiness events."""

    def __init__(self, sel, port, n, user):
        self.n = n
        self.user = user
        self.buf = b""
        self.state = "connect"
        self.exists = False
        self.error = None
        self.sock = socket.socket()
        self.sock.setblocking(False)
        err = self.sock.connect_ex(("127.0.0.1", port))
        if err not in (0, errno.EINPROGRESS):
            self.sock.close()
            raise OSError(err, os.strerror(err))
        self.sel = sel
        sel.register(self.sock, selectors.EVENT_READ, self)

    def fail(self, why):
        self.error = why
        self.state = "failed"
        try:
            self.sel.unregister(self.sock)
        except (KeyError, ValueError):
            pass
        self.sock.close()

    def step(self):
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as e:
            return self.fail("%s in state %s" % (e, self.state))
        if not data:
            return self.fail("closed by the server in state %s" % self.state)
        self.buf += data
        while b"\r\n" in self.buf:
            l, self.buf = self.buf.split(b"\r\n", 1)
            try:
                if self.state == "connect":
                    if not l.startswith(b"* OK"):
                        return self.fail("greeting %r" % l[:80])
                    self.sock.sendall(b"a LOGIN %s@%s %s\r\n" % (self.user.encode(), DOMAIN.encode(), PW))
                    self.state = "login"
                elif self.state == "login" and l.startswith(b"a "):
                    if not l.startswith(b"a OK"):
                        return self.fail("LOGIN -> %r" % l[:120])
                    self.sock.sendall(b"b SELECT INBOX\r\n")
                    self.state = "select"
                elif self.state == "select" and l.startswith(b"b "):
                    if not l.startswith(b"b OK"):
                        return self.fail("SELECT -> %r" % l[:120])
                    self.sock.sendall(b"c IDLE\r\n")
                    self.state = "idle-start"
                elif self.state == "idle-start":
                    if l.startswith(b"+"):
                        self.state = "idle"
                    elif l.startswith(b"c "):
                        return self.fail("IDLE -> %r" % l[:120])
                elif self.state == "idle" and l.endswith(b" EXISTS"):
                    self.exists = True
            except OSError as e:
                return self.fail("%s in state %s" % (e, self.state))


def idle_run(prod, nconns):
    root = prod["imap_pid"]
    sel = selectors.DefaultSelector()
    time.sleep(1)
    before = tree_mem(root)
    avail0 = mem_available_kib()
    t0 = time.monotonic()
    conns = []
    failed = []
    stop_reason = ""
    opened = last_mem_check = 0
    while opened < nconns:
        busy = sum(1 for c in conns[-300:] if c.state not in ("idle", "failed"))
        if busy < IN_FLIGHT:
            if opened - last_mem_check >= 100:
                last_mem_check = opened
                avail = mem_available_kib()
                if avail < MEM_FLOOR_KIB:
                    stop_reason = ("stopped opening at %d connections: MemAvailable %d MiB < %d MiB"
                                   % (opened, avail // 1024, MEM_FLOOR_KIB // 1024))
                    break
            for _ in range(min(IN_FLIGHT - busy, nconns - opened)):
                user = "u%d" % (opened % IDLE_USERS)
                opened += 1
                try:
                    conns.append(IdleClient(sel, prod["imap"], opened, user))
                except OSError as e:
                    failed.append("connect: %s" % e)
        for key, _ in sel.select(0.2):
            key.data.step()
        if time.monotonic() - t0 > 900:
            stop_reason = "stopped opening after 900 s at %d connections" % opened
            break
    live = conns
    deadline = time.monotonic() + 180
    while any(c.state not in ("idle", "failed") for c in live) and time.monotonic() < deadline:
        for key, _ in sel.select(0.5):
            key.data.step()
    setup = time.monotonic() - t0
    time.sleep(3)
    for key, _ in sel.select(0):
        key.data.step()
    idle = [c for c in live if c.state == "idle"]
    stuck = [c for c in live if c.state not in ("idle", "failed")]
    failed += [c.error for c in live if c.state == "failed"]
    after = tree_mem(root)
    avail1 = mem_available_kib()

    # a new message for u0 must be announced to u0's idling connections
    mine = [c for c in idle if c.user == "u0"]
    told = 0
    if mine:
        md = maildir(prod, "u0")
        st = os.stat(md)
        name = "%d.M%dP%d.idle-%s" % (int(time.time()), nconns, os.getpid(), prod["name"])
        tmp = os.path.join(md, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(b"From: x@example.org\nSubject: wake up\n\nhello\n")
        os.chown(tmp, st.st_uid, st.st_gid)
        os.rename(tmp, os.path.join(md, "new", name))
        t1 = time.monotonic()
        while not all(c.exists for c in mine) and time.monotonic() - t1 < 35:
            for key, _ in sel.select(0.5):
                key.data.step()
        told = sum(1 for c in mine if c.exists)
    still = sum(1 for c in idle if c.state == "idle")

    # close everything; wait (bounded) for the server to shed the sessions
    for c in live:
        if c.state != "failed":
            try:
                c.sock.sendall(b"DONE\r\nd LOGOUT\r\n")
            except OSError:
                pass
    time.sleep(1)
    for c in live:
        if c.state != "failed":
            try:
                sel.unregister(c.sock)
            except (KeyError, ValueError):
                pass
            c.sock.close()
    sel.close()
    deadline = time.monotonic() + 120
    while tree_mem(root)[2] > before[2] + 2 and time.monotonic() < deadline:
        time.sleep(0.5)

    n_ok = len(idle)
    res = {
        "requested": nconns, "idle": n_ok, "still_idle_at_end": still,
        "failed": len(failed), "stuck": len(stuck), "first_errors": failed[:3],
        "stop_reason": stop_reason, "setup_s": setup,
        "rss_kib": after[0], "pss_kib": after[1], "procs": after[2],
        "rss_before_kib": before[0], "pss_before_kib": before[1], "procs_before": before[2],
        "rss_per_conn_kib": (after[0] - before[0]) / n_ok if n_ok else float("nan"),
        "pss_per_conn_kib": (after[1] - before[1]) / n_ok if n_ok else float("nan"),
        "memavail_drop_mib": (avail0 - avail1) / 1024, "memavail_before_mib": avail0 / 1024,
        "u0_told": told, "u0_idle": len(mine),
    }
    return res


# ---------------------------------------------------------------- machine reference

def fsync_ref(threads, dirsync):
    d = os.path.join(E["WORK_DIR"], "fsync-%d-%d" % (threads, dirsync))
    os.makedirs(d, exist_ok=True)
    p = subprocess.run([os.path.join(E["BIN_DIR"], "fsync_loop"), d, str(threads),
                        str(FSYNC_SECONDS), "2048", str(dirsync)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=FSYNC_SECONDS + 120)
    if p.returncode != 0:
        raise BenchError("fsync_loop: %s" % p.stderr.decode(errors="replace").strip())
    return float(re.search(rb"files_per_s=([0-9.]+)", p.stdout).group(1))


def tcp_ref():
    p = subprocess.run([os.path.join(E["BIN_DIR"], "tcp_bw"), str(TCP_MIB)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    if p.returncode != 0:
        raise BenchError("tcp_bw: %s" % p.stderr.decode(errors="replace").strip())
    return float(re.search(rb"mb_per_s=([0-9.]+)", p.stdout).group(1))


# ---------------------------------------------------------------- table

ROWS = []          # (key, label, unit, higher_better, kind) kind: cmp | ref | derived
RESULTS = {}       # key -> {"petrel": [...], "incumbent": [...]}; None = failed run
NOTES = []
HITS = {}


def row(key, label, unit, higher_better, kind="cmp"):
    ROWS.append((key, label, unit, higher_better, kind))
    RESULTS.setdefault(key, {"petrel": [], "incumbent": []})


def record(key, prod_name, value, detail, rnd):
    RESULTS[key][prod_name].append(value)
    label = next(r[1] for r in ROWS if r[0] == key)
    log("round %d  %-9s  %-62s %12s   %s" % (rnd, prod_name, label, fmt(value), detail))


def run(key, prod, rnd, fn, *args):
    """One measurement; a failure is recorded (and noted) rather than fatal,
    so that one misbehaving workload does not hide the others."""
    name = prod["imap_name"] if key.startswith(("login", "session", "sort", "thread", "esearch",
                                                "env", "body", "search", "pop3", "idle",
                                                "imaps")) \
        else prod["smtp_name"]
    try:
        v, d = fn(prod, *args)
    except (BenchError, OSError, ConnectionError) as e:
        RESULTS[key][prod["name"]].append(None)
        label = next(r[1] for r in ROWS if r[0] == key)
        log("round %d  %-9s  %-62s %12s   [%s] %s" % (rnd, prod["name"], label, "FAILED", name, e))
        NOTES.append("- round %d, %s, %s: failed: %s" % (rnd, name, label, str(e).strip()[:400]))
        return None
    record(key, prod["name"], v, "[%s] %s" % (name, d), rnd)
    return v


def fmt(v):
    if v is None or v != v:
        return "-"
    a = abs(v)
    if a >= 100:
        return "{:,.0f}".format(v)
    if a >= 10:
        return "%.1f" % v
    if a >= 1:
        return "%.2f" % v
    return "%.3f" % v


def cell(allvals):
    vals = [v for v in allvals if v is not None and v == v]
    nfail = sum(1 for v in allvals if v is None)
    fail = " (%d of %d runs failed)" % (nfail, len(allvals)) if nfail else ""
    if not vals:
        return ("failed" + fail if nfail else "-"), None
    med = statistics.median(vals)
    if len(vals) == 1:
        return fmt(med) + fail, med
    return "%s (%s–%s)%s" % (fmt(med), fmt(min(vals)), fmt(max(vals)), fail), med


def table(header_lines):
    out = []
    out.extend(header_lines)
    out.append("")
    out.append("| workload | unit | petrel: median (min–max) | incumbent: median (min–max) "
               "| ratio (>1 = petrel better) |")
    out.append("|---|---|---|---|---|")
    for key, label, unit, hb, kind in ROWS:
        pc, pm = cell(RESULTS[key]["petrel"])
        ic, im = cell(RESULTS[key]["incumbent"])
        if kind == "ref":
            ic, ratio = "(machine)", ""
        elif pm is not None and im is not None and pm > 0 and im > 0:
            ratio = "%.2f" % ((pm / im) if hb else (im / pm))
        else:
            ratio = "-"
        out.append("| %s | %s | %s | %s | %s |" % (label, unit + (" ↑" if hb else " ↓"),
                                                  pc, ic, ratio))
    out.append("")
    out.append("↑ higher is better (ratio = petrel / incumbent); ↓ lower is better "
               "(ratio = incumbent / petrel). So a ratio above 1 always means petrel did better.")
    out.append("")
    out.append("- SMTP: smtp-source, one message per connection, all to one user; the clock "
               "runs from smtp-source's start until every message is a file in the user's new/.")
    out.append("- IMAP FETCH: *warm* = a run right after another one (the server's index and "
               "cache in place); *cold* = the server's own index/cache files (dovecot.index*, "
               "dovecot-uidlist, petrel-index, petrel-cache) deleted just before; the OS page cache "
               "is left as it is. Times are SELECT + FETCH, seen by the client.")
    out.append("- Idle IMAP: memory of every process of the server (petrel serve and its "
               "workers; Dovecot's master and all its children), summed; PSS counts shared pages "
               "once. Per connection = (with clients - before) / connections.")
    out.append("- machine rows: bench/compare/fsync_loop.c (2 KiB files, all threads renaming "
               "into one new/) and tcp_bw.c, run at the start of each round; on a shared machine "
               "they vary as much as the servers do.")
    out.extend(NOTES)
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- main

def ordered(rnd):
    return PRODUCTS if rnd % 2 == 1 else tuple(reversed(PRODUCTS))


def kib(n):
    return "{:,}".format(n)


def main():
    t_start = time.monotonic()
    idle_users = ["u%d" % i for i in range(IDLE_USERS)]

    smtp_plan = SMTP_PLAN if want("smtp") else []
    env_ns = (N_SMALL, N_LARGE) if want("env") else ()
    idle_ns = IDLE_CONNS + IDLE_BIG if want("idle") else []
    for s, size, count in smtp_plan:
        row("smtp-%d-%d" % (s, size), "SMTP in → new/, %d session%s × %s"
            % (s, "s" if s > 1 else "", "%d KiB" % (size // 1024)), "msgs/s", True)
    if want("login"):
        row("login", "IMAP LOGIN+LOGOUT, fresh connection each, %d parallel, %d users"
            % (LOGIN_PAR, LOGIN_USERS), "logins/s", True)
    if want("session"):
        row("session", "IMAP persistent sessions: %d clients, each SELECT, APPEND, FETCH, STORE, "
            "EXPUNGE in a loop (%d rounds or %d s)" % (SESSION_CLIENTS, SESSION_ITERS,
                                                      SESSION_SECONDS), "cmds/s", True)
    for n in env_ns:
        row("env-warm-%d" % n, "SELECT + UID FETCH 1:* (FLAGS ENVELOPE RFC822.SIZE), %s msgs, warm"
            % kib(n), "s", False)
        row("env-cold-%d" % n, "same, %s msgs, cold (indexes deleted first)" % kib(n), "s", False)
    if want("body"):
        row("body", "FETCH 1:* BODY[], %s × 100 KiB (%d times in one session)"
            % (kib(N_BIG), BODY_REPS), "MB/s", True)
        row("body-tls", "same over imaps (TLS)", "MB/s", True)
        NOTES.append("- FETCH BODY[] rows: measured by %s; server CPU per run is in the "
                     "per-round lines (stderr)." % (
                         "bench/compare/fetch_client.c (C, 4 MiB reads, literals skipped by size)"
                         if os.access(FETCH_CLIENT, os.X_OK) else
                         "driver.py's Python client (fetch_client.c could not be built), "
                         "itself the limit near 350 MB/s"))
    if want("tls"):
        for lis, who in (("imaps", "imaps vs Dovecot"), ("smtps", "submissions vs Postfix 465")):
            row("%s-hs-new" % lis, "TLS 1.3 full handshakes, %s (%s%s, openssl s_time "
                "%d s)" % (who, E.get("TLS_KEY", "rsa").upper(),
                           "" if TLS_CLIENTS == 1 else ", %d clients" % TLS_CLIENTS,
                           TLS_SECONDS), "conns/s", True)
            row("%s-hs-reuse" % lis, "TLS 1.2 resumed handshakes (ticket), %s" % who,
                "conns/s", True)
    if want("search"):
        row("search", "SEARCH TEXT %s, %s msgs (warm)" % (SEARCH_WORD, kib(N_SMALL)), "s", False)
    for n in (N_SMALL, N_LARGE) if want("sort") else ():
        for key, cmd, _ in SORT_CMDS:
            row("%s-%d" % (key, n), "%s, %s msgs (warm)" % (cmd.decode(), kib(n)), "s", False)
        row("qresync-%d" % n, "SELECT (QRESYNC) after 100 flag changes, %s msgs" % kib(n),
            "s", False)
    if want("pop3"):
        row("pop3", "POP3 RETR %s × 100 KiB, one session" % kib(N_BIG), "MB/s", True)
    for n in idle_ns:
        once = " (last round only)" if n in IDLE_BIG and n not in IDLE_CONNS and ROUNDS > 1 else ""
        row("idle-ok-%d" % n, "%s idle IMAP (LOGIN, SELECT, IDLE): connections served%s"
            % (kib(n), once), "conns", True)
        row("idle-rss-%d" % n, "%s idle IMAP: summed RSS of all server processes%s" % (kib(n), once),
            "MiB", False)
        row("idle-pss-%d" % n, "%s idle IMAP: summed PSS of all server processes%s" % (kib(n), once),
            "MiB", False)
        row("idle-perconn-%d" % n, "%s idle IMAP: PSS per connection (Δ from no clients)%s"
            % (kib(n), once), "KiB", False)
    row("ref-fs1", "machine: write+fsync+rename 2 KiB files, 1 thread", "files/s", True, "ref")
    row("ref-fs20", "machine: write+fsync+rename 2 KiB files, 20 threads", "files/s", True, "ref")
    row("ref-fsd1", "machine: same + fsync(new/), 1 thread", "files/s", True, "ref")
    row("ref-fsd20", "machine: same + fsync(new/), 20 threads", "files/s", True, "ref")
    row("ref-tcp", "machine: loopback TCP, one stream", "MB/s", True, "ref")
    s20 = [p for p in smtp_plan if p[0] == 20 and p[1] == 2048]
    if s20:
        row("fsync-share", "SMTP 20 sessions × 2 KiB as % of the machine's write+fsync+rename "
            "rate (the better of 1 and 20 threads, medians)", "%", True, "derived")
        row("fsync-share-d", "same, as % of write+fsync+rename+fsync(new/) (better of 1 and 20 "
            "threads)", "%", True, "derived")

    # warm-up (untimed): the login users log in LOGINS times (password
    # checks cached wherever each server caches them: Dovecot's auth
    # process, each petrel worker), the big folder is read once (BODY[]
    # sets \Seen), the POP3 mailbox is read once, SEARCH runs once
    login_users = idle_users[:LOGIN_USERS]
    for prod in PRODUCTS:
        t0 = time.monotonic()
        for group, fn, args in (("login", login_run, (login_users, 4 * LOGIN_USERS, LOGIN_PAR)),
                                ("body", fetch_body_run, ()), ("pop3", pop3_run, ()),
                                ("search", search_run, ())):
            if not want(group):
                continue
            try:
                fn(prod, *args)
            except (BenchError, OSError, ConnectionError) as e:
                log("warm-up %s: %s failed: %s" % (prod["imap_name"], fn.__name__, e))
        log("warm-up %s: %d logins of %d users, big folder and POP3 mailbox read, SEARCH once:"
            " %.1f s" % (prod["imap_name"], 4 * LOGIN_USERS, LOGIN_USERS, time.monotonic() - t0))

    for rnd in range(1, ROUNDS + 1):
        log("---- round %d of %d (first: %s) ----" % (rnd, ROUNDS, ordered(rnd)[0]["name"]))
        check_servers()
        # machine reference
        os.sync()
        record("ref-fs1", "petrel", fsync_ref(1, 0), "", rnd)
        record("ref-fs20", "petrel", fsync_ref(20, 0), "", rnd)
        record("ref-fsd1", "petrel", fsync_ref(1, 1), "", rnd)
        record("ref-fsd20", "petrel", fsync_ref(20, 1), "", rnd)
        record("ref-tcp", "petrel", tcp_ref(), "", rnd)
        for s, size, count in smtp_plan:
            for prod in ordered(rnd):
                run("smtp-%d-%d" % (s, size), prod, rnd, smtp_run, s, size, count)
        check_servers()
        for prod in ordered(rnd) if want("login") else ():
            run("login", prod, rnd, login_run, login_users, LOGINS, LOGIN_PAR)
        session_users = ["u%d" % (IDLE_USERS - 1 - i) for i in range(SESSION_CLIENTS)]
        for prod in ordered(rnd) if want("session") else ():
            run("session", prod, rnd, session_run, session_users, SESSION_ITERS)
        for n in env_ns:
            for prod in ordered(rnd):
                drop_indexes(prod, "f%d" % n)
                os.sync()
                run("env-cold-%d" % n, prod, rnd, fetch_env_run, "f%d" % n, n)
                run("env-warm-%d" % n, prod, rnd, fetch_env_run, "f%d" % n, n)
        for prod in ordered(rnd) if want("body") else ():
            run("body", prod, rnd, fetch_body_run, BODY_REPS)
        for prod in ordered(rnd) if want("body") else ():
            run("body-tls", prod, rnd, fetch_body_run, BODY_REPS, True)
        for lis in ("imaps", "smtps") if want("tls") else ():
            for mode in ("new", "reuse"):
                for prod in ordered(rnd):
                    run("%s-hs-%s" % (lis, mode), prod, rnd, tls_run, lis, mode)
        for prod in ordered(rnd) if want("search") else ():
            run("search", prod, rnd, search_run)
        for n in (N_SMALL, N_LARGE) if want("sort") else ():
            for key, _, _ in SORT_CMDS:
                for prod in ordered(rnd):
                    run("%s-%d" % (key, n), prod, rnd, sort_run, n, key)
            for prod in ordered(rnd):
                run("qresync-%d" % n, prod, rnd, qresync_run, n)
        if len(set(HITS.values())) > 1:
            NOTES.append("- round %d: SEARCH TEXT %s found different numbers of messages (%s)."
                         % (rnd, SEARCH_WORD, ", ".join("%s %d" % kv for kv in HITS.items())))
        for prod in ordered(rnd) if want("pop3") else ():
            run("pop3", prod, rnd, pop3_run)
        check_servers()
        for n in [x for x in IDLE_CONNS + (IDLE_BIG if rnd == ROUNDS else []) if x in idle_ns]:
            for prod in ordered(rnd):
                try:
                    r = idle_run(prod, n)
                except (BenchError, OSError, ConnectionError) as e:
                    for k in ("ok", "rss", "pss", "perconn"):
                        RESULTS["idle-%s-%d" % (k, n)][prod["name"]].append(None)
                    log("round %d  %-9s  idle %d FAILED: %s" % (rnd, prod["name"], n, e))
                    NOTES.append("- round %d, %s, %d idle connections: failed: %s"
                                 % (rnd, prod["imap_name"], n, e))
                    continue
                name = prod["name"]
                log("round %d  %-9s  idle %d [%s]: %s" % (rnd, name, n, prod["imap_name"],
                                                         json.dumps(r, sort_keys=True)))
                record("idle-ok-%d" % n, name, r["idle"], "[%s] %d idle of %d in %.1f s%s" % (
                    prod["imap_name"], r["idle"], n, r["setup_s"],
                    "; " + r["stop_reason"] if r["stop_reason"] else ""), rnd)
                record("idle-rss-%d" % n, name, r["rss_kib"] / 1024,
                       "%d processes (%d before), RSS before %.1f MiB" % (
                           r["procs"], r["procs_before"], r["rss_before_kib"] / 1024), rnd)
                record("idle-pss-%d" % n, name, r["pss_kib"] / 1024,
                       "PSS before %.1f MiB; MemAvailable fell %.0f MiB" % (
                           r["pss_before_kib"] / 1024, r["memavail_drop_mib"]), rnd)
                record("idle-perconn-%d" % n, name, r["pss_per_conn_kib"],
                       "RSS per connection %.1f KiB; u0's %d idling connections told of a new "
                       "message: %d; still idle at the end %d; failed %d %s" % (
                           r["rss_per_conn_kib"], r["u0_idle"], r["u0_told"],
                           r["still_idle_at_end"], r["failed"],
                           r["first_errors"][:2] if r["failed"] else ""), rnd)
                if n in IDLE_BIG:
                    NOTES.append("- %s idle IMAP connections, %s: %d of %d set up (LOGIN, SELECT, IDLE) in "
                                 "%.0f s; %d server processes; MemAvailable %.0f MiB before, fell by "
                                 "%.0f MiB; summed RSS %.0f MiB, PSS %.0f MiB%s."
                                 % (kib(n), prod["imap_name"], r["idle"], n, r["setup_s"], r["procs"],
                                    r["memavail_before_mib"], r["memavail_drop_mib"],
                                    r["rss_kib"] / 1024, r["pss_kib"] / 1024,
                                    "; " + r["stop_reason"] if r["stop_reason"] else ""))
                if r["stop_reason"] or r["failed"] or r["stuck"] or r["u0_told"] < r["u0_idle"]:
                    NOTES.append("- round %d, %s, %d idle connections: %d served%s%s%s%s." % (
                        rnd, prod["imap_name"], n, r["idle"],
                        "; " + r["stop_reason"] if r["stop_reason"] else "",
                        "; %d failed (%s)" % (r["failed"], "; ".join(map(str, r["first_errors"])))
                        if r["failed"] else "",
                        "; %d never got to IDLE" % r["stuck"] if r["stuck"] else "",
                        "; only %d of %d IDLE sessions of u0 told of a new message"
                        % (r["u0_told"], r["u0_idle"]) if r["u0_told"] < r["u0_idle"] else ""))
        check_servers()
        log("---- round %d done, %.0f s since start ----" % (rnd, time.monotonic() - t_start))

    if s20:
        for key, a, b in (("fsync-share", "ref-fs1", "ref-fs20"), ("fsync-share-d", "ref-fsd1", "ref-fsd20")):
            lim = max(statistics.median(RESULTS[a]["petrel"]), statistics.median(RESULTS[b]["petrel"]))
            for name in ("petrel", "incumbent"):
                RESULTS[key][name] = [None if v is None else 100.0 * v / lim
                                      for v in RESULTS["smtp-20-2048"][name]]

    header = [l for l in E.get("HEADER", "").split("\n")]
    header.append("- rounds: %d (in each, the workloads alternate which server goes first); "
                  "measuring took %.0f s."
                  % (ROUNDS, time.monotonic() - t_start))
    text = table(header)
    sys.stdout.write(text)
    out = E.get("OUT")
    if out:
        with open(out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    try:
        main()
    except (BenchError, OSError, ConnectionError, subprocess.SubprocessError) as e:
        sys.stderr.write("compare.sh: %s\n" % e)
        sys.exit(1)
