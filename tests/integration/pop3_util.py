"""Helpers for the POP3 integration tests (test_pop3*.py).

- Pop3Server / start_pop3(): `petrel serve` (harness.server) with the SMTP,
  POP3 and POP3S listeners on free ports (everything else off).
- Conn (harness.conn.Pop3Conn): a raw-socket POP3 client (single- and
  multi-line replies, STLS, raw writes) for what poplib cannot express
  (pipelining, NUL, overlong lines, byte-stuffing on the wire, AUTH PLAIN).
- Maildir helpers: drop messages straight into new/ or cur/, list them, and
  the wire form (CRLF) of a stored message.
"""

import os
import poplib
import re
import time

from harness import maildir, server
from harness.conn import IO_TIMEOUT, client_ctx, plain_b64  # noqa: F401
from harness.conn import Pop3Conn as Conn
from harness.instance import ALICE, BOB, PASSWORD, USERS, add_users  # noqa: F401
from harness.maildir import listdir, maildir_of, reset_maildirs  # noqa: F401
from harness.ports import (free_port, has_ipv6_loopback, nonloopback_ipv4,  # noqa: F401
                           nonloopback_ipv6)
from harness.procs import worker_pids, workers_rss_kb  # noqa: F401
from harness.server import START_TIMEOUT, STOP_TIMEOUT  # noqa: F401

HOSTNAME = "pop.petrel.test"
FAIL_DELAY_MS = 100
DEFAULTS = ("hostname=" + HOSTNAME, "auth_fail_delay=%d" % FAIL_DELAY_MS)


# --------------------------------------------------------------------------
# the server


class Pop3Server(server.Server):
    """A running `petrel serve` with SMTP, POP3 and POP3S listeners: .port
    (POP3), .ssl_port (POP3S), .smtp_port."""

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


def start_pop3(inst, opts=(), host="127.0.0.1", timeout=START_TIMEOUT):
    """Start `petrel serve` for inst on free ports of host; wait (bounded)
    until POP3 greets and POP3S accepts (harness.server.start)."""
    return server.start(inst, ("pop3", "pop3s", "smtp"), DEFAULTS + tuple(opts), host=host,
                        cls=Pop3Server, timeout=timeout)


# --------------------------------------------------------------------------
# raw clients


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


def unstuff(lines):
    """Raw multi-line body lines -> the message bytes (CRLF line ends)."""
    out = []
    for l in lines:
        assert l != b".", "a lone '.' inside a multi-line reply"
        out.append(l[1:] if l.startswith(b".") else l)
    return b"".join(l + b"\r\n" for l in out)


# --------------------------------------------------------------------------
# maildirs and messages


def files(inst, address, sub="new"):
    return listdir(os.path.join(maildir_of(inst, address), sub))


def all_files(inst, address):
    """{'new': [...], 'cur': [...]}"""
    return {"new": files(inst, address, "new"), "cur": files(inst, address, "cur")}


def unique_name(prefix=None):
    return maildir.unique_name(prefix, "pop3test")


def put(inst, address, data, name=None, sub="new", info=None):
    """Write data (bytes, LF or whatever) as a message file into the user's
    maildir the Maildir way (tmp/ then rename); owned like the maildir.
    Returns the file name."""
    return maildir.put(inst, address, data, sub=sub, name=name or unique_name(), info=info)


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
