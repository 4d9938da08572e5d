"""Helpers for the POP3 integration tests (test_pop3*.py).

- Pop3Server / start_pop3(): `petrel serve` with the SMTP, POP3 and POP3S
  listeners on free ports (everything else off), stderr collected by a thread.
- Conn: a raw-socket POP3 client (single- and multi-line replies, STLS, raw
  writes) for what poplib cannot express (pipelining, NUL, overlong lines,
  byte-stuffing on the wire, AUTH PLAIN).
- Maildir helpers: drop messages straight into new/ or cur/, list them, and
  the wire form (CRLF) of a stored message.
"""

import base64
import os
import poplib
import re
import signal
import socket
import ssl
import subprocess
import threading
import time

from conftest import TIMEOUT_SCALE, clean_env

HOSTNAME = "pop.petrel.test"
START_TIMEOUT = 10 * TIMEOUT_SCALE
STOP_TIMEOUT = 15 * TIMEOUT_SCALE
IO_TIMEOUT = 15 * TIMEOUT_SCALE
PASSWORD = "pw"
USERS = ("alice@example.test", "bob@example.test")
ALICE, BOB = USERS
OFF = ("submission_listen", "submissions_listen", "imap_listen", "imaps_listen")
FAIL_DELAY_MS = 100


def free_port(host="127.0.0.1"):
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def nonloopback_ipv6():
    """A local global/ULA IPv6 address (not ::1, not link-local), or None."""
    try:
        out = subprocess.run(["hostname", "-I"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for a in out.split():
        if ":" in a and a != "::1" and not a.lower().startswith("fe80"):
            try:
                s = socket.socket(socket.AF_INET6)
                s.bind((a, 0))
                s.close()
                return a
            except OSError:
                continue
    return None


def has_ipv6_loopback():
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


def nonloopback_ipv4():
    """A local IPv4 address outside 127.0.0.0/8 that we can listen on, or None."""
    cands = []
    try:
        out = subprocess.run(["hostname", "-I"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, timeout=5).stdout
        cands += out.split()
    except (OSError, subprocess.SubprocessError):
        pass
    for a in cands:
        if re.match(r"^\d+\.\d+\.\d+\.\d+$", a) and not a.startswith("127."):
            try:
                s = socket.socket()
                s.bind((a, 0))
                s.close()
                return a
            except OSError:
                continue
    return None


# --------------------------------------------------------------------------
# TLS contexts


def client_ctx(minimum=None, maximum=None, legacy=False):
    """A client context without certificate verification (self-signed cert)."""
    import warnings
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if legacy:
        # let OpenSSL 3 offer TLS 1.0/1.1 at all (security level 0)
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if minimum is not None:
            ctx.minimum_version = minimum
        if maximum is not None:
            ctx.maximum_version = maximum
    return ctx


# --------------------------------------------------------------------------
# the server


def worker_pids(master):
    """The pids of the children of `petrel serve` (its workers)."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        if int(st.rsplit(")", 1)[1].split()[1]) == master:
            pids.append(int(d))
    return pids


def workers_rss_kb(master):
    """Resident memory of all worker processes of `petrel serve`, in kB."""
    total = 0
    for pid in worker_pids(master):
        try:
            with open("/proc/%d/status" % pid) as f:
                for l in f:
                    if l.startswith("VmRSS:"):
                        total += int(l.split()[1])
        except OSError:
            pass
    return total


class Pop3Server:
    """A running `petrel serve` with SMTP, POP3 and POP3S listeners."""

    def __init__(self, inst, host, ports, proc, args):
        self.instance = inst
        self.host = host
        self.smtp_port, self.port, self.ssl_port = ports
        self.proc = proc
        self.args = args
        self.returncode = None
        self._lines = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for raw in iter(self.proc.stderr.readline, b""):
            with self._lock:
                self._lines.append(raw.decode("utf-8", "replace"))
        self.proc.stderr.close()

    def log(self):
        with self._lock:
            return "".join(self._lines)

    def log_lines(self):
        with self._lock:
            return list(self._lines)

    def wait_log(self, pattern, count=1, timeout=10):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            found = [l for l in self.log_lines() if rx.search(l)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def crashes(self):
        return [l for l in self.log_lines()
                if re.search(r"killed by signal (?!15\b)|exited with status|exited with code|"
                             r"AddressSanitizer|runtime error", l)]

    def alive(self):
        return self.proc.poll() is None

    def worker_pids(self):
        return worker_pids(self.proc.pid)

    def workers_rss_kb(self):
        """Resident memory of all worker processes, in kB."""
        return workers_rss_kb(self.proc.pid)

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        if self.returncode is not None:
            return self.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("petrel serve did not exit within %ss of %s\nlog:\n%s"
                                 % (timeout, sig, self.log()))
        self._reader.join(timeout=5)
        self.returncode = self.proc.returncode
        return self.returncode

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        if self.returncode is None:
            self.returncode = self.proc.returncode

    # --- clients
    def poplib(self, timeout=IO_TIMEOUT):
        return poplib.POP3(self.host, self.port, timeout=timeout)

    def poplib_ssl(self, timeout=IO_TIMEOUT, context=None):
        return poplib.POP3_SSL(self.host, self.ssl_port, timeout=timeout,
                               context=context or client_ctx())

    def login(self, user=ALICE, password=PASSWORD, timeout=IO_TIMEOUT):
        """A poplib session logged in with USER/PASS."""
        p = self.poplib(timeout=timeout)
        p.user(user)
        p.pass_(password)
        return p

    def conn(self, timeout=IO_TIMEOUT, tls=False, context=None, source=None, greeting=True):
        return Conn(self.host, self.ssl_port if tls else self.port, timeout=timeout,
                    tls=tls, context=context, source=source, greeting=greeting)

    def smtp_send(self, sender, rcpts, data):
        import smtplib
        with smtplib.SMTP(self.host, self.smtp_port, local_hostname="client.test",
                          timeout=30) as s:
            s.sendmail(sender, rcpts, data)

    def __repr__(self):
        return "<Pop3Server %s:%d pid %s>" % (self.host, self.port, self.proc.pid)


def serve_args(inst, host, ports, opts=()):
    smtp, pop3, pop3s = ports
    h = "[%s]" % host if ":" in host else host
    args = [inst.bin, "-c", inst.conf,
            "-o", "smtp_listen=%s:%d" % (h, smtp),
            "-o", "pop3_listen=%s:%d" % (h, pop3),
            "-o", "pop3s_listen=%s:%d" % (h, pop3s)]
    for key in OFF:
        args += ["-o", key + "="]
    args += ["-o", "hostname=" + HOSTNAME, "-o", "auth_fail_delay=%d" % FAIL_DELAY_MS]
    for o in opts:
        args += ["-o", o]
    return args + ["serve"]


def _greets(host, port, deadline):
    try:
        with socket.create_connection((host, port), timeout=2) as s:
            s.settimeout(max(0.5, deadline - time.monotonic()))
            data = b""
            while b"\n" not in data:
                chunk = s.recv(1024)
                if not chunk:
                    break
                data += chunk
            if data.startswith(b"+OK "):
                s.sendall(b"QUIT\r\n")
                return True
    except OSError:
        pass
    return False


def _accepts(host, port):
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def start_pop3(inst, opts=(), host="127.0.0.1", timeout=START_TIMEOUT):
    """Start `petrel serve` for inst on free ports; wait (bounded) until POP3
    greets and POP3S accepts. Retries on a port clash or a vanished binary
    (someone may be rebuilding build/)."""
    last = None
    for attempt in range(4):
        ports = (free_port(host), free_port(host), free_port(host))
        if len(set(ports)) < 3:
            continue
        args = serve_args(inst, host, ports, opts)
        try:
            proc = subprocess.Popen(args, cwd=inst.dir, env=clean_env(),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, start_new_session=True)
        except OSError as e:
            last = "cannot run %s: %s" % (args[0], e)
            time.sleep(1)
            continue
        srv = Pop3Server(inst, host, ports, proc, args)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if _greets(host, ports[1], deadline) and _accepts(host, ports[2]):
                return srv
            time.sleep(0.05)
        if proc.poll() is None:
            srv.kill()
            raise AssertionError("petrel serve did not greet on %s:%d within %ss\nlog:\n%s"
                                 % (host, ports[1], timeout, srv.log()))
        srv._reader.join(timeout=5)
        last = ("petrel serve exited with %s before greeting\ncommand: %s\nlog:\n%s"
                % (proc.returncode, " ".join(args), srv.log()))
        if "Address already in use" not in srv.log() and "No such file" not in srv.log():
            break
        time.sleep(0.5)
    raise AssertionError(last)


def add_users(inst, users=USERS, password=PASSWORD):
    for a in users:
        inst.add_user(a, password)


# --------------------------------------------------------------------------
# a raw client


class Conn:
    """Raw POP3 over a socket (optionally TLS); every read is bounded."""

    def __init__(self, host, port, timeout=IO_TIMEOUT, tls=False, context=None,
                 source=None, greeting=True):
        self.host = host
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.sock.settimeout(timeout)
        if tls:
            self.sock = (context or client_ctx()).wrap_socket(self.sock)
        self.buf = b""
        self.greeting = self.line() if greeting else None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def line(self):
        """One reply line as bytes, without CRLF."""
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by the server (pending: %r)"
                                      % self.buf[:200])
            self.buf += chunk
        l, self.buf = self.buf.split(b"\n", 1)
        assert l.endswith(b"\r"), "reply line not CRLF-terminated: %r" % l[:200]
        return l[:-1]

    def status(self):
        l = self.line()
        assert l.startswith(b"+OK") or l.startswith(b"-ERR") or l.startswith(b"+ "), \
            "malformed status line %r" % l[:200]
        return l.decode("utf-8", "replace")

    def multi(self):
        """The lines of a multi-line body up to the terminating '.', raw (still
        byte-stuffed), as bytes."""
        out = []
        while True:
            l = self.line()
            if l == b".":
                return out
            out.append(l)

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.status()

    def ok(self, line):
        r = self.cmd(line)
        assert r.startswith("+OK"), "%s -> %r" % (line, r)
        return r

    def err(self, line, contains=None):
        r = self.cmd(line)
        assert r.startswith("-ERR"), "%s -> %r (expected -ERR)" % (line, r)
        if contains:
            assert contains in r, "%s -> %r, expected %r in it" % (line, r, contains)
        return r

    def ok_multi(self, line):
        """(status, raw lines) of a multi-line reply."""
        r = self.ok(line)
        return r, self.multi()

    def quit(self):
        """QUIT, then wait (bounded) until the server has closed the connection:
        only then is the maildrop lock surely released."""
        r = self.ok("QUIT")
        data, closed = self.read_rest(timeout=10)
        assert (data, closed) == (b"", True), "after QUIT: %r, closed=%s" % (data, closed)
        return r

    def login(self, user=ALICE, password=PASSWORD):
        self.ok("USER " + user)
        return self.ok("PASS " + password)

    def auth_plain(self, authcid, password, authzid=""):
        return self.cmd("AUTH PLAIN " + plain_b64(authcid, password, authzid))

    def stls(self, context=None):
        r = self.ok("STLS")
        assert self.buf == b"", "bytes after the STLS reply: %r" % self.buf
        self.sock = (context or client_ctx()).wrap_socket(self.sock)
        return r

    def capa(self):
        _, lines = self.ok_multi("CAPA")
        return [l.decode() for l in lines]

    def read_rest(self, timeout=5):
        """Everything until the server closes (bounded); (data, closed)."""
        self.sock.settimeout(timeout)
        data, closed = self.buf, False
        self.buf = b""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    closed = True
                    break
                data += chunk
        except socket.timeout:
            pass
        except (ConnectionResetError, ssl.SSLError):
            closed = True
        return data, closed

    def nothing_pending(self, wait=0.3):
        """True if the server sends nothing within `wait` seconds."""
        if self.buf:
            return False
        self.sock.settimeout(wait)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return True
        finally:
            self.sock.settimeout(self.timeout)
        self.buf += chunk
        return False


def pquit(p):
    """poplib QUIT that waits (bounded) for the server to close; the reply."""
    resp = p._shortcmd("QUIT")
    rest = p.file.read()
    assert rest == b"", rest
    p.close()
    return resp


def login_after_drop(srv, user=ALICE, password=PASSWORD, timeout=5):
    """A poplib login right after a client dropped its session: the server may
    take a moment to notice, so [IN-USE] is retried (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        p = srv.poplib()
        p.user(user)
        try:
            p.pass_(password)
            return p
        except poplib.error_proto as e:
            p.close()
            if b"[IN-USE]" not in e.args[0] or time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def plain_b64(authcid, password, authzid=""):
    raw = ("%s\0%s\0%s" % (authzid, authcid, password)).encode()
    return base64.b64encode(raw).decode()


def unstuff(lines):
    """Raw multi-line body lines -> the message bytes (CRLF line ends)."""
    out = []
    for l in lines:
        assert l != b".", "a lone '.' inside a multi-line reply"
        out.append(l[1:] if l.startswith(b".") else l)
    return b"".join(l + b"\r\n" for l in out)


# --------------------------------------------------------------------------
# maildirs and messages


def maildir_of(inst, address):
    local, domain = address.lower().split("@")
    return os.path.join(inst.mail_root, domain, local)


def listdir(path):
    try:
        return sorted(n for n in os.listdir(path) if not n.startswith("."))
    except FileNotFoundError:
        return []


def files(inst, address, sub="new"):
    return listdir(os.path.join(maildir_of(inst, address), sub))


def all_files(inst, address):
    """{'new': [...], 'cur': [...]}"""
    return {"new": files(inst, address, "new"), "cur": files(inst, address, "cur")}


_seq = [0]


def unique_name(prefix=None):
    _seq[0] += 1
    t = prefix if prefix is not None else int(time.time())
    return "%s.M%dP%dQ%d.pop3test" % (t, _seq[0], os.getpid(), _seq[0])


def put(inst, address, data, name=None, sub="new", info=None):
    """Write data (bytes, LF or whatever) as a message file into the user's
    maildir the Maildir way (tmp/ then rename); owned like the maildir.
    Returns the file name."""
    md = maildir_of(inst, address)
    name = name or unique_name()
    if info is not None:
        name = name + ":" + info
    for d in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(md, d), exist_ok=True)
    st = os.stat(md)
    tmp = os.path.join(md, "tmp", name.replace(":", "_"))
    with open(tmp, "wb") as f:
        f.write(data)
    os.chown(tmp, st.st_uid, st.st_gid)
    os.chmod(tmp, 0o600)
    os.rename(tmp, os.path.join(md, sub, name))
    return name


def message(n, body_lines=3, extra_headers=b"", body=None):
    """A small LF message numbered n."""
    head = (b"From: sender%d@example.org\nTo: alice@example.test\n"
            b"Subject: test message %d\nMessage-ID: <m%d@example.org>\n" % (n, n, n))
    if body is None:
        body = b"".join(b"line %d of message %d\n" % (i, n) for i in range(1, body_lines + 1))
    return head + extra_headers + b"\n" + body


def wire(data):
    """The CRLF form of a stored (LF) message, as POP3 sizes count it."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


def key(name):
    """UIDL of a maildir file name: up to ':'."""
    return name.split(":", 1)[0]


def reset_maildirs(inst):
    """Empty every maildir under mail_root (messages, folders' files, the POP3
    lock, maildirsize), keeping the new/ cur/ tmp/ directories."""
    root = inst.mail_root
    for dom in listdir(root):
        for user in listdir(os.path.join(root, dom)):
            md = os.path.join(root, dom, user)
            for entry in os.listdir(md):
                p = os.path.join(md, entry)
                if entry in ("new", "cur", "tmp"):
                    for f in os.listdir(p):
                        os.unlink(os.path.join(p, f))
                elif os.path.isfile(p):
                    os.unlink(p)
