"""Helpers for the SMTP integration tests (test_smtp*.py).

- SmtpServer / start_smtp(): `petrel serve` with only the SMTP listener on a free
  loopback port, stderr collected by a thread (log() / wait_log()).
- Client: a raw-socket SMTP client that reads whole (multi-line) replies, for the
  byte-level tests smtplib cannot express (smuggling, pipelining, BDAT, garbage).
- Maildir / queue helpers: files in new/ and tmp/, splitting the three headers
  petrel prepends (Return-Path, Delivered-To, Received) from the stored message.
"""

import os
import re
import signal
import socket
import subprocess
import threading
import time

from conftest import TIMEOUT_SCALE, clean_env

HOSTNAME = "mx.petrel.test"
START_TIMEOUT = 10 * TIMEOUT_SCALE
STOP_TIMEOUT = 15 * TIMEOUT_SCALE
OTHER_LISTENERS = ("submission_listen", "submissions_listen", "imap_listen", "imaps_listen",
                   "pop3_listen", "pop3s_listen")


def free_port():
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


# --------------------------------------------------------------------------
# the server


class SmtpServer:
    """A running `petrel serve` (SMTP listener only)."""

    def __init__(self, inst, port, proc, args):
        self.instance = inst
        self.host = "127.0.0.1"
        self.port = port
        self.proc = proc
        self.args = args
        self.returncode = None
        self._lines = []
        self._allowed = []  # regexes of log lines crashes() must ignore
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for raw in iter(self.proc.stderr.readline, b""):
            with self._lock:
                self._lines.append(raw.decode("utf-8", "replace"))
        self.proc.stderr.close()

    # --- log
    def log(self):
        """The server's stderr so far."""
        with self._lock:
            return "".join(self._lines)

    def log_lines(self):
        with self._lock:
            return list(self._lines)

    def wait_log(self, pattern, count=1, timeout=10):
        """Wait until regex `pattern` matches at least `count` log lines; the matches."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            found = [l for l in self.log_lines() if rx.search(l)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def accepted_count(self):
        return sum(1 for l in self.log_lines() if l.rstrip().endswith("(accepted)"))

    def crashes(self):
        """Log lines that report a worker that died.
        (SIGTERM is what the master itself sends when it stops; a worker that
        gets it before installing its handler is reported by
        test_stop_right_after_start, not here.)"""
        return [l for l in self.log_lines()
                if re.search(r"killed by signal (?!15\b)|exited with status|exited with code|"
                             r"AddressSanitizer|runtime error", l)
                and not any(re.search(a, l) for a in self._allowed)]

    def allow_log(self, pattern):
        """A test that kills a worker on purpose: crashes() ignores lines matching."""
        self._allowed.append(pattern)

    # --- lifecycle
    def alive(self):
        return self.proc.poll() is None

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Signal the server and wait (bounded); the exit status. Kills it on timeout
        and raises AssertionError."""
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
            # the whole process group: the master and its workers
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        if self.returncode is None:
            self.returncode = self.proc.returncode

    def client(self, timeout=15, greeting=True):
        return Client(self.host, self.port, timeout=timeout, greeting=greeting)

    def smtplib(self, timeout=30):
        import smtplib
        return smtplib.SMTP(self.host, self.port, local_hostname="client.test", timeout=timeout)

    def __repr__(self):
        return "<SmtpServer %s:%d pid %s>" % (self.host, self.port, self.proc.pid)


def serve_args(inst, port, opts=()):
    args = [inst.bin, "-c", inst.conf, "-o", "smtp_listen=127.0.0.1:%d" % port]
    for key in OTHER_LISTENERS:
        args += ["-o", key + "="]
    args += ["-o", "hostname=" + HOSTNAME]
    # Outbound mail stays in the queue during these tests: the queue manager
    # relays through a closed loopback port (connection refused -> deferred)
    # instead of looking up MX records. Queue-delivery tests override it.
    args += ["-o", "relayhost=[127.0.0.1]:9", "-o", "queue_retry_min=3600"]
    for o in opts:
        args += ["-o", o]
    return args + ["serve"]


def start_smtp(inst, opts=(), timeout=START_TIMEOUT):
    """Start `petrel serve` for inst on a free port; wait (bounded) until a client
    gets the 220 greeting. Retries a few times on a port clash / vanished binary
    (someone else may rebuild build/ meanwhile)."""
    last = None
    for attempt in range(3):
        port = free_port()
        args = serve_args(inst, port, opts)
        try:
            proc = subprocess.Popen(args, cwd=inst.dir, env=clean_env(),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, start_new_session=True)
        except (FileNotFoundError, PermissionError, OSError) as e:
            last = "cannot run %s: %s" % (args[0], e)
            time.sleep(1)
            continue
        srv = SmtpServer(inst, port, proc, args)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                    s.settimeout(max(0.5, deadline - time.monotonic()))
                    data = b""
                    while b"\n" not in data:
                        chunk = s.recv(1024)
                        if not chunk:
                            break
                        data += chunk
                    if data.startswith(b"220 "):
                        # QUIT and wait for the close, so that this probe is gone
                        # from the server's connection counts when we return
                        s.sendall(b"QUIT\r\n")
                        try:
                            while s.recv(1024):
                                pass
                        except OSError:
                            pass
                        return srv
            except OSError:
                pass
            time.sleep(0.05)
        if proc.poll() is None:
            srv.kill()
            raise AssertionError("petrel serve did not greet on port %d within %ss\nlog:\n%s"
                                 % (port, timeout, srv.log()))
        srv._reader.join(timeout=5)
        last = ("petrel serve exited with %s before greeting\ncommand: %s\nlog:\n%s"
                % (proc.returncode, " ".join(args), srv.log()))
        if "Address already in use" not in srv.log() and "No such file" not in srv.log():
            break
    raise AssertionError(last)


# --------------------------------------------------------------------------
# a raw client


class Reply:
    def __init__(self, lines):
        self.lines = lines  # list of str without CRLF
        self.code = int(lines[-1][:3])
        self.text = "\n".join(l[4:] for l in lines)

    @property
    def first(self):
        return self.lines[0]

    def __repr__(self):
        return "Reply(%r)" % "\n".join(self.lines)


class Client:
    """Raw SMTP over a socket; every read is bounded by `timeout`."""

    def __init__(self, host, port, timeout=15, greeting=True):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.greeting = self.reply() if greeting else None

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

    def _line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by the server (pending: %r)" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def reply(self):
        lines = []
        while True:
            l = self._line()
            assert re.match(r"^[2-5][0-9][0-9]([ -]|$)", l), "malformed reply line %r" % l
            lines.append(l)
            if len(l) < 4 or l[3] == " ":
                return Reply(lines)

    def replies(self, n):
        return [self.reply() for _ in range(n)]

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def expect(self, line, code, contains=None):
        r = self.cmd(line)
        assert r.code == code, "%s -> %r, expected %d" % (line, r, code)
        if contains:
            assert contains in r.text, "%s -> %r, expected %r in it" % (line, r, contains)
        return r

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
        except ConnectionResetError:
            closed = True
        return data, closed

    def is_closed(self, timeout=5):
        """True if the server closes the connection within timeout (nothing more to read)."""
        data, closed = self.read_rest(timeout)
        return closed and not data.strip()

    def send_message(self, sender, rcpts, data, ehlo="client.test"):
        """A whole transaction without pipelining; returns the final reply.
        data: bytes already in wire form (CRLF, dot-stuffed, without the final
        dot); CRLF.CRLF is added, sharing data's final CRLF if it has one."""
        self.expect("EHLO " + ehlo, 250)
        self.expect("MAIL FROM:<%s>" % sender, 250)
        for r in rcpts:
            self.expect("RCPT TO:<%s>" % r, 250)
        self.expect("DATA", 354)
        end = b".\r\n" if data == b"" or data.endswith(b"\r\n") else b"\r\n.\r\n"
        self.send(data + end)
        return self.reply()


def dot_stuff(data):
    """Wire form of a message body (CRLF line ends, leading dots doubled)."""
    out = re.sub(rb"(?m)^\.", b"..", data)
    return out


# --------------------------------------------------------------------------
# mailboxes and the queue


def maildir_of(inst, address):
    local, domain = address.lower().split("@")
    return os.path.join(inst.mail_root, domain, local)


def listdir(path):
    try:
        return sorted(n for n in os.listdir(path) if not n.startswith("."))
    except FileNotFoundError:
        return []


def new_files(inst, address):
    d = os.path.join(maildir_of(inst, address), "new")
    return [os.path.join(d, n) for n in listdir(d)]


def tmp_files(inst, address):
    d = os.path.join(maildir_of(inst, address), "tmp")
    return [os.path.join(d, n) for n in listdir(d)]


def read_new(inst, address):
    """Contents of every file in address's new/, sorted by name (arrival)."""
    out = []
    for p in new_files(inst, address):
        with open(p, "rb") as f:
            out.append(f.read())
    return out


def all_delivered(inst):
    """Every file under mail_root/*/*/{new,cur,tmp} (any mailbox)."""
    found = []
    for root, dirs, files in os.walk(inst.mail_root):
        if os.path.basename(root) in ("new", "cur", "tmp"):
            found += [os.path.join(root, f) for f in files]
    return found


def queue_dir(inst):
    q = inst.config().get("queue_dir") or os.path.join(inst.dir, "queue")
    return q if os.path.isabs(q) else os.path.join(inst.dir, q)


def queue_files(inst, sub="incoming"):
    d = os.path.join(queue_dir(inst), sub)
    return [os.path.join(d, n) for n in listdir(d)]


def split_stored(data):
    """A delivered file -> (dict of the three prepended headers, the rest).
    The first three header fields must be Return-Path, Delivered-To and a
    (folded) Received, in that order."""
    lines = data.split(b"\n")
    assert lines[0].startswith(b"Return-Path: <") and lines[0].endswith(b">"), data[:300]
    assert lines[1].startswith(b"Delivered-To: "), data[:300]
    assert lines[2].startswith(b"Received: "), data[:300]
    i = 3
    received = [lines[2]]
    while i < len(lines) and lines[i][:1] in (b"\t", b" "):
        received.append(lines[i])
        i += 1
    head = {
        "Return-Path": lines[0][len(b"Return-Path: "):].decode("utf-8", "replace"),
        "Delivered-To": lines[1][len(b"Delivered-To: "):].decode("utf-8", "replace"),
        "Received": b"\n".join(received).decode("utf-8", "replace"),
    }
    return head, b"\n".join(lines[i:])


def lf(data):
    return data.replace(b"\r\n", b"\n")
