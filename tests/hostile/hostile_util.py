"""Helpers for the hostile-input tests (tests/hostile).

- AllServer / start_all(): `petrel serve` with the MX, submission (STARTTLS),
  submissions (TLS), IMAP and POP3 listeners on free loopback ports (IMAPS and
  POP3S off), stderr collected by a thread (log(), wait_log(), crashes()).
- healthy(srv): the server still runs, no worker died, no sanitizer report,
  and a fresh SMTP, IMAP and POP3 session each work.
- snapshots of a directory tree, timing, raw-socket helpers.
"""

import os
import socket
import ssl
import subprocess
import time

import imap_util
import mx_util
import pop3_util
from conftest import TIMEOUT_SCALE, clean_env
from smtp_util import SmtpServer, all_delivered, free_port, queue_files

PASSWORD = "pw"
ALICE = "alice@example.test"
BOB = "bob@example.test"
USERS = (ALICE, BOB)
HOSTNAME = "mx.petrel.test"
START_TIMEOUT = 15 * TIMEOUT_SCALE
IO_TIMEOUT = 15 * TIMEOUT_SCALE


class AllServer(SmtpServer):
    """A running `petrel serve`: .port (MX), .sub_port, .subs_port, .imap_port,
    .pop3_port."""

    def __init__(self, inst, ports, proc, args):
        SmtpServer.__init__(self, inst, ports[0], proc, args)
        self.sub_port, self.subs_port, self.imap_port, self.pop3_port = ports[1:]

    def mx(self, timeout=IO_TIMEOUT):
        return mx_util.SubClient(self.host, self.port, timeout=timeout)

    def sub(self, timeout=IO_TIMEOUT):
        return mx_util.SubClient(self.host, self.sub_port, timeout=timeout)

    def imap(self, timeout=IO_TIMEOUT, greeting=True):
        return imap_util.Conn(self.host, self.imap_port, timeout=timeout, greeting=greeting)

    def pop3(self, timeout=IO_TIMEOUT, greeting=True):
        return pop3_util.Conn(self.host, self.pop3_port, timeout=timeout, greeting=greeting)

    def __repr__(self):
        return "<AllServer mx %d sub %d imap %d pop3 %d pid %s>" % (
            self.port, self.sub_port, self.imap_port, self.pop3_port, self.proc.pid)


def serve_args(inst, ports, opts=()):
    smtp, sub, subs, imap, pop3 = ports
    args = [inst.bin, "-c", inst.conf,
            "-o", "smtp_listen=127.0.0.1:%d" % smtp,
            "-o", "submission_listen=127.0.0.1:%d" % sub,
            "-o", "submissions_listen=127.0.0.1:%d" % subs,
            "-o", "imap_listen=127.0.0.1:%d" % imap,
            "-o", "pop3_listen=127.0.0.1:%d" % pop3,
            "-o", "imaps_listen=", "-o", "pop3s_listen=",
            # remote mail goes to a closed port and stays queued (never real MX)
            "-o", "hostname=" + HOSTNAME,
            "-o", "relayhost=[127.0.0.1]:9",
            "-o", "queue_retry_min=3600",
            "-o", "auth_fail_delay=50"]
    for o in opts:
        args += ["-o", o]
    return args + ["serve"]


def _greets(port, prefix, bye, deadline):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.settimeout(max(0.5, deadline - time.monotonic()))
            data = b""
            while b"\n" not in data:
                chunk = s.recv(1024)
                if not chunk:
                    break
                data += chunk
            if data.startswith(prefix):
                s.sendall(bye)
                try:
                    while s.recv(1024):
                        pass
                except OSError:
                    pass
                return True
    except OSError:
        pass
    return False


def start_all(inst, opts=(), timeout=START_TIMEOUT):
    last = None
    for attempt in range(4):
        ports = tuple(free_port() for _ in range(5))
        if len(set(ports)) < 5:
            continue
        args = serve_args(inst, ports, opts)
        try:
            proc = subprocess.Popen(args, cwd=inst.dir, env=clean_env(),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, start_new_session=True)
        except OSError as e:
            last = "cannot run %s: %s" % (args[0], e)
            time.sleep(1)
            continue
        srv = AllServer(inst, ports, proc, args)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if (_greets(ports[0], b"220 ", b"QUIT\r\n", deadline)
                    and _greets(ports[1], b"220 ", b"QUIT\r\n", deadline)
                    and _greets(ports[3], b"* OK", b"Z LOGOUT\r\n", deadline)
                    and _greets(ports[4], b"+OK", b"QUIT\r\n", deadline)):
                return srv
            time.sleep(0.05)
        if proc.poll() is None:
            srv.kill()
            raise AssertionError("petrel serve did not greet on %r within %ss\nlog:\n%s"
                                 % (ports, timeout, srv.log()))
        srv._reader.join(timeout=5)
        last = ("petrel serve exited with %s before greeting\ncommand: %s\nlog:\n%s"
                % (proc.returncode, " ".join(args), srv.log()))
        if "Address already in use" not in srv.log() and "No such file" not in srv.log():
            break
        time.sleep(0.5)
    raise AssertionError(last)


def check_stopped(servers):
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


def add_users(inst, users=USERS, password=PASSWORD):
    for a in users:
        inst.add_user(a, password)


# --------------------------------------------------------------------------
# health


def no_crash(srv):
    assert srv.alive(), "petrel serve died\nlog:\n%s" % srv.log()
    crashes = srv.crashes()
    assert not crashes, "worker died / sanitizer report:\n%s\nlog:\n%s" % (
        "".join(crashes), srv.log())


def pop3_login(srv, user, password=PASSWORD, timeout=5):
    """A raw POP3 session logged in; retries [IN-USE] (a dropped session's lock
    goes away a moment later)."""
    deadline = time.monotonic() + timeout
    while True:
        c = srv.pop3()
        c.ok("USER " + user)
        r = c.cmd("PASS " + password)
        if r.startswith("+OK"):
            return c
        c.close()
        assert "[IN-USE]" in r and time.monotonic() < deadline, r
        time.sleep(0.05)


def healthy(srv, smtp=True, imap=True, pop3=True):
    """Alive, no crash report, and each protocol still serves a new session."""
    no_crash(srv)
    if smtp:
        with srv.mx() as c:
            c.expect("EHLO health.test", 250)
            c.expect("MAIL FROM:<h@health.test>", 250)
            c.expect("RCPT TO:<%s>" % BOB, 250)
            c.expect("RSET", 250)
            c.expect("QUIT", 221)
    if imap:
        with srv.imap() as c:
            c.login(BOB, PASSWORD)
            c.select("INBOX")
            c.logout()
    if pop3:
        c = pop3_login(srv, BOB)
        try:
            assert c.cmd("STAT").startswith("+OK")
            c.quit()
        finally:
            c.close()
    no_crash(srv)


# --------------------------------------------------------------------------
# files


def tree(path):
    """Every path under `path` (relative), as a set."""
    out = set()
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            out.add(os.path.relpath(os.path.join(root, n), path))
    return out


def delivered(inst):
    return set(all_delivered(inst))


def queued(inst):
    """Queue files (incoming and tmp) and `petrel queue list --json` entries."""
    files = queue_files(inst) + queue_files(inst, "tmp")
    listing = inst.json("queue", "list", "--json")
    return files, listing


def assert_queue_empty(inst):
    files, listing = queued(inst)
    assert files == [], "queued: %r" % files
    assert listing in ([], {}) or not listing, "queue list: %r" % listing


# --------------------------------------------------------------------------
# misc


def timed(fn, *a, **kw):
    t0 = time.monotonic()
    r = fn(*a, **kw)
    return r, time.monotonic() - t0


def closed_within(sock, timeout):
    """Read until EOF/reset or timeout; (closed, seconds, data)."""
    t0 = time.monotonic()
    data = b""
    deadline = t0 + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False, time.monotonic() - t0, data
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return False, time.monotonic() - t0, data
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            return True, time.monotonic() - t0, data
        if not chunk:
            return True, time.monotonic() - t0, data
        data += chunk


def client_ctx():
    return pop3_util.client_ctx()


def smtp_msg(subject, body=b"hostile test\r\n"):
    return (b"From: x@y.test\r\nSubject: " + subject.encode() + b"\r\n\r\n" + body)
