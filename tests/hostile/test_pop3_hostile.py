"""Hostile POP3 clients, beyond tests/integration/test_pop3_*.py: overlong
USER/PASS lines that must not be truncated into a valid login, invalid UTF-8
and 32-bit wrap-around in arguments, STLS partial-line injection, slow and
half-open clients. SQLite. Every test ends with hostile_util.healthy()."""

import socket
import threading
import time

import pytest

from harness.instance import TIMEOUT_SCALE
from hostile_util import (ALICE, BOB, PASSWORD, client_ctx, closed_within, dropped_after_timeout,
                          healthy, idle_timeout, pop3_login, still_open)
from pop3_util import message, put
from test_smtp_hostile import trickle


@pytest.fixture(scope="module")
def srv(shared_sqlite):
    return shared_sqlite


def not_logged_in(c):
    r = c.cmd("STAT")
    assert r.startswith("-ERR"), "STAT answered %r: logged in" % r


@pytest.mark.parametrize("tail", [" " * 3000, "x" * 3000, "\t" * 2100],
                         ids=["spaces", "chars", "tabs"])
def test_overlong_pass_is_not_truncated(srv, tail):
    """RFC 2449 4: 255-octet arguments; petrel's line limit is 2048. 'PASS pw'
    followed by > 2048 octets is one overlong line: -ERR, not a login with the
    first part."""
    with srv.pop3() as c:
        c.ok("USER " + ALICE)
        r = c.cmd("PASS " + PASSWORD + tail)
        assert r.startswith("-ERR"), r
        assert c.nothing_pending(0.3), c.buf
        not_logged_in(c)
    healthy(srv)


def test_overlong_user_is_not_truncated(srv):
    with srv.pop3() as c:
        r = c.cmd("USER " + ALICE + " " * 3000)
        assert r.startswith("-ERR"), r
        assert c.nothing_pending(0.3), c.buf
        r = c.cmd("PASS " + PASSWORD)
        assert r.startswith("-ERR"), "PASS after a refused USER: %r" % r
        not_logged_in(c)
    healthy(srv)


def test_overlong_line_in_transaction_state(srv):
    c = pop3_login(srv, BOB)
    try:
        r = c.cmd("RETR 1" + " " * 3000)
        assert r.startswith("-ERR"), r
        assert c.nothing_pending(0.3)
        assert c.cmd("STAT").startswith("+OK")
        c.quit()
    finally:
        c.close()
    healthy(srv)


@pytest.mark.parametrize("bad", [b"\xff\xfe", b"\xc0\xaf", b"\xed\xa0\x80"],
                         ids=["fffe", "c0af", "eda080"])
def test_invalid_utf8_user(srv, bad):
    """A login name with invalid UTF-8 never logs in (ordinary -ERR)."""
    with srv.pop3() as c:
        c.send(b"USER alice" + bad + b"@example.test\r\n")
        r = c.status()
        assert r.startswith("+OK") or r.startswith("-ERR"), r
        r = c.cmd("PASS " + PASSWORD)
        assert r.startswith("-ERR"), r
        not_logged_in(c)
    healthy(srv)


def test_message_numbers_do_not_wrap(srv):
    """Numbers that wrap to 1 in 32 or 64 bits (2^32+1, 2^64+1) are -ERR, not
    message 1."""
    inst = srv.instance
    put(inst, BOB, message(1))
    c = pop3_login(srv, BOB)
    try:
        for cmd in ("LIST 4294967297", "RETR 4294967297", "DELE 4294967297",
                    "UIDL 4294967297", "TOP 4294967297 0", "LIST 18446744073709551617",
                    "DELE 18446744073709551617", "TOP 1 -1"):
            r = c.cmd(cmd)
            assert r.startswith("-ERR"), (cmd, r)
        r = c.cmd("TOP 1 4294967296")
        assert r.startswith("+OK") or r.startswith("-ERR"), r
        if r.startswith("+OK"):
            c.multi()
        assert c.cmd("STAT").startswith("+OK 1 ")
        c.ok("RSET")
        c.quit()
    finally:
        c.close()
    healthy(srv)


def test_stls_partial_line_not_joined(srv):
    """Half a command before the handshake is dropped, not joined with what
    comes inside TLS (CVE-2011-0411 class)."""
    with srv.pop3() as c:
        c.send("STLS\r\nUSER al")
        assert c.line() == b"+OK Begin TLS negotiation"
        c.sock = client_ctx().wrap_socket(c.sock)
        r = c.cmd("ice@example.test")
        assert r.startswith("-ERR"), r
        r = c.cmd("PASS " + PASSWORD)
        assert r.startswith("-ERR"), "USER was joined across STLS: %r" % r
        c.login(ALICE, PASSWORD)
        c.quit()
    healthy(srv)


def test_slowloris_pop3(sqlite_instance, all_start):
    """pop3_timeout=2: one byte per second must not hold a connection for ever;
    others are served meanwhile."""
    import hostile_util
    hostile_util.add_users(sqlite_instance)
    timeout = idle_timeout()
    srv = all_start(sqlite_instance, ("pop3_timeout=%d" % timeout,))
    s = socket.create_connection((srv.host, srv.pop3_port), timeout=10)
    s.recv(1024)
    res = {}
    t = threading.Thread(target=lambda: res.setdefault(
        "r", trickle(s, b"USER " + b"s" * 40, 1.0, 12)))
    t.start()
    time.sleep(1.5)
    c = pop3_login(srv, ALICE)
    c.ok("STAT")
    c.quit()
    c.close()
    t.join(20)
    s.close()
    closed, took = res["r"]
    assert closed and took <= 9 * TIMEOUT_SCALE, \
        "a 1 byte/s client was still connected after %.1fs" % took
    healthy(srv)


def test_half_open_connections_pop3(sqlite_instance, all_start):
    import hostile_util
    hostile_util.add_users(sqlite_instance)
    timeout = idle_timeout()
    srv = all_start(sqlite_instance, ("pop3_timeout=%d" % timeout,))
    socks = []
    try:
        for i in range(40):
            s = socket.create_connection((srv.host, srv.pop3_port), timeout=10)
            if i % 2:
                s.sendall(b"USER half")
            socks.append(s)
        c = pop3_login(srv, ALICE)
        c.ok("STAT")
        c.quit()
        c.close()
        # served while every idle connection was still open: they did not
        # keep it out until the server dropped them
        assert len(still_open(socks)) == len(socks), \
            "served only after idle connections were dropped"
        dropped_after_timeout(socks, timeout, "pop3_timeout")
    finally:
        for s in socks:
            s.close()
    healthy(srv)
