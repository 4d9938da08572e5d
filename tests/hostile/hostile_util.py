"""Helpers for the hostile-input tests (tests/hostile).

- AllServer / start_all(): `petrel serve` (harness.server) with the MX,
  submission (STARTTLS), submissions (TLS), IMAP and POP3 listeners on free
  loopback ports (IMAPS and POP3S off); log(), wait_log(), crashes().
- healthy(srv): the server still runs, no worker died, no sanitizer report,
  and a fresh SMTP, IMAP and POP3 session each work.
- snapshots of a directory tree, timing, raw-socket helpers.
"""

import socket
import ssl
import time

from harness import server
from harness.conn import ImapConn, Pop3Conn, SubmissionConn, client_ctx  # noqa: F401
from harness.conn import IO_TIMEOUT
from harness.instance import ALICE, BOB, PASSWORD, TIMEOUT_SCALE, USERS, add_users  # noqa: F401
from harness.maildir import all_delivered, queue_files, tree  # noqa: F401
from harness.server import check_stopped  # noqa: F401
from smtp_util import SmtpServer

HOSTNAME = "mx.petrel.test"
START_TIMEOUT = 15 * TIMEOUT_SCALE
# remote mail goes to a closed port and stays queued (never real MX)
DEFAULTS = ("hostname=" + HOSTNAME, "relayhost=[127.0.0.1]:9", "queue_retry_min=3600",
            "auth_fail_delay=50")


class AllServer(SmtpServer):
    """A running `petrel serve`: .port (MX), .sub_port, .subs_port, .imap_port,
    .pop3_port."""

    def mx(self, timeout=IO_TIMEOUT):
        return SubmissionConn(self.host, self.port, timeout=timeout)

    def sub(self, timeout=IO_TIMEOUT):
        return SubmissionConn(self.host, self.sub_port, timeout=timeout)

    def imap(self, timeout=IO_TIMEOUT, greeting=True):
        return ImapConn(self.host, self.imap_port, timeout=timeout, greeting=greeting)

    def pop3(self, timeout=IO_TIMEOUT, greeting=True):
        return Pop3Conn(self.host, self.pop3_port, timeout=timeout, greeting=greeting)


def start_all(inst, opts=(), timeout=START_TIMEOUT):
    """Start `petrel serve` for inst; wait (bounded) until every listener
    greets (submissions over TLS)."""
    return server.start(inst, ("smtp", "submission", "submissions", "imap", "pop3"),
                        DEFAULTS + tuple(opts), cls=AllServer, wait={"submissions": "greet"},
                        timeout=timeout)


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


def idle_timeout():
    """The protocol timeout the half-open tests set: long enough that a
    normal client's session ends before it, on any machine (scaled)."""
    return int(4 * TIMEOUT_SCALE)


def still_open(socks):
    """Those of socks the server has not closed yet (what they had received
    is read and dropped)."""
    out = []
    for s in socks:
        was = s.gettimeout()
        s.settimeout(0)
        try:
            while True:
                if s.recv(65536) == b"":
                    break
        except BlockingIOError:
            out.append(s)
        except OSError:
            pass
        finally:
            s.settimeout(was)
    return out


def dropped_after_timeout(socks, timeout, what):
    """Every one of socks is closed by the server within timeout + a slack
    (scaled); AssertionError naming `what` otherwise."""
    deadline = time.monotonic() + timeout + 6 * TIMEOUT_SCALE
    for s in socks:
        closed, _, _ = closed_within(s, max(0.1, deadline - time.monotonic()))
        assert closed, "an idle connection outlived %s=%d by more than %.0f s" % (
            what, timeout, 6 * TIMEOUT_SCALE)


def smtp_msg(subject, body=b"hostile test\r\n"):
    return (b"From: x@y.test\r\nSubject: " + subject.encode() + b"\r\n\r\n" + body)
