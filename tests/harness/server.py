"""`petrel serve` under test: one Server class for any set of listeners.

    srv = server.start(inst, ("smtp", "imap"), opts=("workers=1",))
    srv.port_of("imap"), srv.imap_port, srv.log(), srv.crashes(), srv.stop()

start() puts each listener on a free port of `host` (every other listener
off), waits (bounded) until each one greets, and retries on a port clash or
a binary that vanished meanwhile (someone may be rebuilding build/). The
server runs in a session of its own (kill() signals the whole group); its
stderr is collected by a thread.
"""

import contextlib
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time

from harness import procs
from harness.instance import TIMEOUT_SCALE, clean_env
from harness.ports import free_ports

START_TIMEOUT = 10 * TIMEOUT_SCALE
STOP_TIMEOUT = 15 * TIMEOUT_SCALE

# listener -> (greeting prefix, what ends the probe session, TLS from the start)
LISTENERS = {
    "smtp": (b"220 ", b"QUIT\r\n", False),
    "submission": (b"220 ", b"QUIT\r\n", False),
    "submissions": (b"220 ", b"QUIT\r\n", True),
    "imap": (b"* OK", b"Z LOGOUT\r\n", False),
    "imaps": (b"* OK", b"Z LOGOUT\r\n", True),
    "pop3": (b"+OK", b"QUIT\r\n", False),
    "pop3s": (b"+OK", b"QUIT\r\n", True),
    "lmtp": (b"220 ", b"QUIT\r\n", False),
    "managesieve": (b'"IMPLEMENTATION" ', b"LOGOUT\r\n", False),
    # no greeting: ready() asks it for a page (http_ready)
    "http": (b"HTTP/1.1 ", b"", False),
    "https": (b"HTTP/1.1 ", b"", True),
}

CRASH = re.compile(r"killed by signal (?!15\b)|exited with status|exited with code|"
                   r"AddressSanitizer|runtime error")


def _tls_ctx():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Server:
    """A running `petrel serve`. ports: {listener: port}; the first
    listener given is the main one (.port)."""

    def __init__(self, inst, proc, args, ports, host="127.0.0.1"):
        self.instance = inst
        self.host = host
        self.ports = dict(ports)
        self.main = next(iter(self.ports), None)
        self.proc = proc
        self.args = args
        self.returncode = None
        self._lines = []
        self._allowed = []  # regexes of log lines crashes() must ignore
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @classmethod
    def launch(cls, inst, args, ports, host="127.0.0.1"):
        """Popen `args` (a serve command line) for inst; no waiting."""
        proc = subprocess.Popen(args, cwd=inst.dir, env=clean_env(),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True)
        return cls(inst, proc, args, ports, host)

    # --- ports
    def port_of(self, listener):
        return self.ports[listener]

    @property
    def port(self):
        return self.ports[self.main]

    @property
    def ssl_port(self):
        """The implicit-TLS twin of the main listener (imaps for imap...)."""
        return self.ports[self.main + "s"]

    smtp_port = property(lambda self: self.ports["smtp"])
    sub_port = property(lambda self: self.ports["submission"])
    subs_port = property(lambda self: self.ports["submissions"])
    imap_port = property(lambda self: self.ports["imap"])
    imaps_port = property(lambda self: self.ports["imaps"])
    pop3_port = property(lambda self: self.ports["pop3"])
    pop3s_port = property(lambda self: self.ports["pop3s"])
    sieve_port = property(lambda self: self.ports["managesieve"])

    # --- log
    def _read(self):
        for raw in iter(self.proc.stderr.readline, b""):
            with self._lock:
                self._lines.append(raw.decode("utf-8", "replace"))
        self.proc.stderr.close()

    def join_reader(self, timeout=5):
        self._reader.join(timeout=timeout)

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
        """Log lines that report a worker that died or a sanitizer report.
        (SIGTERM is what the master itself sends when it stops; a worker that
        gets it before installing its handler is reported by
        test_stop_right_after_start, not here.)"""
        return [l for l in self.log_lines() if CRASH.search(l)
                and not any(re.search(a, l) for a in self._allowed)]

    def allow_log(self, pattern):
        """A test that kills a worker on purpose: crashes() ignores lines matching."""
        self._allowed.append(pattern)

    # --- processes
    def alive(self):
        return self.proc.poll() is None

    def worker_pids(self):
        return procs.worker_pids(self.proc.pid)

    def workers_rss_kb(self):
        """Resident memory of all worker processes, in kB."""
        return procs.workers_rss_kb(self.proc.pid)

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Signal the server and wait (bounded); the exit status. Kills it on
        timeout and raises AssertionError."""
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
        self.join_reader()
        self.returncode = self.proc.returncode
        return self.returncode

    def kill(self):
        """SIGKILL the whole process group: the master and its workers."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)
        self.join_reader()
        if self.returncode is None:
            self.returncode = self.proc.returncode

    def __repr__(self):
        return "<%s %s pid %s>" % (type(self).__name__, " ".join(
            "%s %d" % kv for kv in self.ports.items()), self.proc.pid)


def serve_args(inst, ports, host="127.0.0.1", opts=()):
    """The `petrel serve` command line: each listener of ports on host, every
    other one off, then opts ("key=value", later ones win)."""
    h = "[%s]" % host if ":" in host else host
    args = [inst.bin, "-c", inst.conf]
    for name, port in ports.items():
        args += ["-o", "%s_listen=%s:%d" % (name, h, port)]
    for name in LISTENERS:
        if name not in ports:
            args += ["-o", name + "_listen="]
    # Many tests fail logins on purpose against one shared server; the
    # password-guessing limits would lock them out. Tests of the limits
    # set their own (later -o options win).
    for o in ("auth_max_failures_per_ip=1000000", "auth_max_failures_per_user=1000000") + tuple(opts):
        args += ["-o", o]
    return args + ["serve"]


def greets(host, port, prefix=b"220 ", bye=b"QUIT\r\n", tls=False, timeout=2, deadline=None):
    """True if host:port answers a line starting with prefix (over TLS if
    tls); then `bye` is sent and the close awaited (bounded), so that the
    probe is gone from the server's connection counts on return."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            left = timeout if deadline is None else max(0.5, deadline - time.monotonic())
            raw.settimeout(left)
            s = _tls_ctx().wrap_socket(raw) if tls else raw
            try:
                data = b""
                while b"\n" not in data:
                    chunk = s.recv(1024)
                    if not chunk:
                        return False
                    data += chunk
                if not data.startswith(prefix):
                    return False
                s.sendall(bye)
                try:
                    while s.recv(1024):
                        pass
                except OSError:
                    pass
                return True
            finally:
                if tls:
                    s.close()
    except OSError:
        return False


def accepts(host, port):
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def ready(host, port, listener, mode, deadline):
    """One probe of a listener: mode "greet" (its greeting; over TLS for
    the implicit-TLS listeners), "accept" (a TCP connection is accepted) or
    None (not probed)."""
    if mode is None:
        return True
    if mode == "accept":
        return accepts(host, port)
    if listener in ("http", "https"):
        return http_ready(host, port, tls=LISTENERS[listener][2])
    prefix, bye, tls = LISTENERS[listener]
    return greets(host, port, prefix, bye, tls=tls, deadline=deadline)


def http_ready(host, port, timeout=2, tls=False):
    """True if the HTTP listener answers a request with a status line (over
    TLS if tls); the answer is read to its end (the server closes), so the
    probe is gone from the connection counts on return."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            s = _tls_ctx().wrap_socket(raw) if tls else raw
            s.sendall(b"GET /ready HTTP/1.1\r\nHost: probe\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            return data.startswith(LISTENERS["http"][0])
    except OSError:
        return False


def start(inst, listeners, opts=(), host="127.0.0.1", cls=Server, wait=None,
          timeout=START_TIMEOUT, attempts=4):
    """Start `petrel serve` for inst with `listeners` on free ports of host;
    wait (bounded) until each is ready: plaintext listeners greet, the
    implicit-TLS ones accept a connection (wait={listener: "greet" |
    "accept" | None} overrides). Returns a `cls` (a Server)."""
    wait = dict(wait or {})
    last = None
    for attempt in range(attempts):
        found = free_ports(len(listeners), host)
        if found is None:
            continue
        ports = dict(zip(listeners, found))
        args = serve_args(inst, ports, host, opts)
        try:
            srv = cls.launch(inst, args, ports, host)
        except OSError as e:
            last = "cannot run %s: %s" % (args[0], e)
            time.sleep(1)
            continue
        modes = {n: wait.get(n, "accept" if LISTENERS[n][2] else "greet") for n in listeners}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and srv.proc.poll() is None:
            if all(ready(host, ports[n], n, modes[n], deadline) for n in listeners):
                return srv
            time.sleep(0.05)
        if srv.proc.poll() is None:
            srv.kill()
            raise AssertionError("petrel serve did not greet on %s %r within %ss\nlog:\n%s"
                                 % (host, ports, timeout, srv.log()))
        srv.join_reader()
        last = ("petrel serve exited with %s before greeting\ncommand: %s\nlog:\n%s"
                % (srv.proc.returncode, " ".join(args), srv.log()))
        if "Address already in use" not in srv.log() and "No such file" not in srv.log():
            break
        time.sleep(0.5)
    raise AssertionError(last)


def check_stopped(servers):
    """Stop every server; a list of problems (did not exit 0 in time, a
    worker died, a sanitizer report)."""
    problems = []
    for srv in servers:
        try:
            rc = srv.stop()
        except AssertionError as e:
            problems.append(str(e))
            continue
        if rc != 0:
            problems.append("petrel serve exited %s (expected 0)\nlog:\n%s" % (rc, srv.log()))
        crashes = srv.crashes()
        if crashes:
            problems.append("a worker died:\n%s\nlog:\n%s" % ("".join(crashes), srv.log()))
    return problems


@contextlib.contextmanager
def tracked(start_fn):
    """For a factory fixture: yields start_fn wrapped so that every server it
    starts is stopped at the end; a server that does not exit 0 in time, or
    whose log shows a dead worker, fails the test."""
    servers = []

    def start_(*a, **kw):
        srv = start_fn(*a, **kw)
        servers.append(srv)
        return srv

    yield start_
    problems = check_stopped(servers)
    if problems:
        import pytest
        pytest.fail("\n\n".join(problems))


@contextlib.contextmanager
def running(start_fn, *a, **kw):
    """with running(start_fn, inst) as srv: ... -- a started server, stopped
    at the end; AssertionError if it did not exit 0 or a worker died."""
    srv = start_fn(*a, **kw)
    try:
        yield srv
    finally:
        problems = check_stopped([srv])
    if problems:
        raise AssertionError("\n\n".join(problems))
