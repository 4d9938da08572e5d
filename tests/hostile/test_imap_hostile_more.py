"""Hostile IMAP clients, beyond tests/integration/test_imap_hostile.py:
synchronising literals over the limit in more commands (refused without a
'+'), overlong lines before login and after a literal, invalid modified UTF-7
and raw invalid UTF-8 in mailbox names, more path tricks, STARTTLS partial-line
injection, slow and half-open clients. SQLite. Every test ends with
hostile_util.healthy()."""

import os
import re
import socket
import threading
import time

import pytest

from harness.instance import TIMEOUT_SCALE
from hostile_util import (ALICE, BOB, PASSWORD, closed_within, dropped_after_timeout, healthy,
                          idle_timeout, still_open, tree)
from imap_util import Literal, folders_on_disk, maildir_of
from pop3_util import workers_rss_kb
from test_smtp_hostile import trickle


@pytest.fixture(scope="module")
def srv(shared_sqlite):
    return shared_sqlite


@pytest.fixture
def c(srv):
    conn = srv.imap()
    conn.login(ALICE, PASSWORD)
    conn.select("INBOX")
    yield conn
    conn.close()


def send_bounded(c, data, timeout=5):
    c.sock.settimeout(timeout)
    try:
        c.sock.sendall(data)
        return True
    except (socket.timeout, BrokenPipeError, ConnectionResetError):
        return False
    finally:
        c.sock.settimeout(c.timeout)


def outside_snapshot(inst):
    md = os.path.relpath(maildir_of(inst, ALICE), inst.dir)
    return {p for p in tree(inst.dir)
            if not (p == md or p.startswith(md + os.sep)) and "petrel.db" not in p
            and not p.startswith("queue")}


# --------------------------------------------------------------------------
# literals over the limit: refused before the bytes are sent (RFC 3501 7.5, RFC 7888)

HUGE = [
    ("select", b"SELECT {100000000}\r\n"),
    ("rename", b"RENAME Trash {100000000}\r\n"),
    ("status", b"STATUS {100000000}\r\n"),
    ("subscribe", b"SUBSCRIBE {100000000}\r\n"),
    ("list", b'LIST "" {100000000}\r\n'),
    ("copy", b"COPY 1 {100000000}\r\n"),
    ("id", b'ID ("name" {100000000}\r\n'),
    ("login-authenticated", b"LOGIN {100000000}\r\n"),
]


@pytest.mark.parametrize("raw", [r for _, r in HUGE], ids=[i for i, _ in HUGE])
def test_huge_literal_refused_without_continuation(srv, c, raw):
    """The server answers (NO/BAD) without asking for, or waiting for, the
    100 MB; the session goes on."""
    t0 = time.monotonic()
    r = c.no_continuation(b"H1 " + raw, "H1")
    assert r.status in ("NO", "BAD"), r
    assert time.monotonic() - t0 < 5 * TIMEOUT_SCALE
    c.ok("NOOP")
    healthy(srv)


# --------------------------------------------------------------------------
# overlong lines


def test_overlong_line_before_login(srv):
    """A 70 KiB line before login: tagged BAD or '* BYE'/close, never OK; the
    server goes on."""
    with srv.imap() as c:
        ok = send_bounded(c, b"P1 LOGIN " + b"u" * 70000 + b" pw\r\n")
        try:
            hit, got = c.read_until(rb"^(P1 |\* BYE)", timeout=5)
        except ConnectionError:
            hit, got = b"* BYE (closed)", []
        assert hit is not None or not ok, got
        if hit is not None:
            assert not hit.startswith(b"P1 OK"), hit
    healthy(srv)


def test_overlong_line_after_a_literal(srv):
    """The rest of a command line after a literal counts toward the line limit:
    70 KiB after a small literal is BAD/BYE, not run."""
    with srv.imap() as c:
        c.send(b"P2 LOGIN {%d}\r\n" % len(ALICE))
        l = c.line()
        assert l.startswith(b"+"), l
        send_bounded(c, ALICE.encode() + b" " + b"p" * 70000 + b"\r\n")
        try:
            hit, got = c.read_until(rb"^(P2 |\* BYE)", timeout=5)
        except ConnectionError:
            hit = None
        if hit is not None:
            assert not hit.startswith(b"P2 OK"), hit
    healthy(srv)


# --------------------------------------------------------------------------
# mailbox names: modified UTF-7 (RFC 3501 5.1.3) and raw invalid UTF-8

MUTF7 = ["&AGEAYQ-", "&3AE-", "&2D3YPQ-", "&Jjo!-", "&AGE"]


@pytest.mark.parametrize("name", MUTF7)
def test_invalid_mutf7_names(srv, c, name):
    """ASCII encoded in base64, lone low surrogate, two high surrogates, a
    character outside modified base64, an unterminated shift: NO/BAD for
    CREATE, RENAME-to and APPEND; nothing on disk."""
    inst = srv.instance
    before = folders_on_disk(inst, ALICE)
    for line in ('CREATE "%s"' % name, 'RENAME Trash "%s"' % name,
                 'APPEND "%s" {1+}\r\nx' % name):
        r = c.command(line)
        assert r.status in ("NO", "BAD"), (line, r)
    assert folders_on_disk(inst, ALICE) == before
    c.ok("NOOP")
    healthy(srv)


BAD_UTF8 = [b"\xff\xfe", b"\xc0\xaf", b"\xed\xa0\x80"]


@pytest.mark.parametrize("bad", BAD_UTF8, ids=[b.hex() for b in BAD_UTF8])
def test_invalid_utf8_names(srv, c, bad):
    """Raw 8-bit (invalid UTF-8) mailbox names in literals: NO/BAD for every
    command that takes a name; no folder appears."""
    inst = srv.instance
    before = folders_on_disk(inst, ALICE)
    name = b"Box" + bad
    for parts in (("CREATE ", Literal(name)), ("SELECT ", Literal(name)),
                  ("RENAME Trash ", Literal(name)), ("STATUS ", Literal(name), " (MESSAGES)"),
                  ("SUBSCRIBE ", Literal(name)), ("COPY 1 ", Literal(name))):
        r = c.command(*parts)
        assert r.status in ("NO", "BAD"), (parts[0], r)
        if parts[0].startswith("SELECT"):
            c.select("INBOX")
    assert folders_on_disk(inst, ALICE) == before
    healthy(srv)


# --------------------------------------------------------------------------
# path tricks not in test_imap_hostile.PATHS

PATHS = ["INBOX/../x", "~", "~root", "~/x", "/etc/petrel", "..\\..\\x", "x/..", "INBOX/./x",
         "INBOX.../x"]


# names that are not paths in Maildir++ ("~" is an ordinary character there):
# refusing them is fine; creating them is tolerated only inside the maildir
CONFINED_OK = {"~", "~root"}


@pytest.mark.parametrize("name", PATHS)
def test_path_tricks_more(srv, c, name):
    """Refused (NO/BAD) by every command that takes a name; nothing created
    anywhere outside alice's maildir, no folder added inside it."""
    inst = srv.instance
    outside = outside_snapshot(inst)
    before = set(folders_on_disk(inst, ALICE))
    q = '"%s"' % name.replace("\\", "\\\\")
    if name in CONFINED_OK:
        r = c.command("CREATE " + q)
        if r.status == "OK":
            added = set(folders_on_disk(inst, ALICE)) - before
            assert len(added) == 1, added
            assert outside_snapshot(inst) == outside
            c.ok("DELETE " + q)
        else:
            assert r.status in ("NO", "BAD"), r
    else:
        for cmd in ("CREATE %s", "SELECT %s", "DELETE %s", "RENAME Trash %s", "COPY 1 %s",
                    "APPEND %s {1+}\r\nx"):
            r = c.command(cmd % q)
            assert r.status in ("NO", "BAD"), (cmd % q, r)
            c.select("INBOX")
    assert set(folders_on_disk(inst, ALICE)) == before
    assert outside_snapshot(inst) == outside
    assert not os.path.exists("/etc/petrel/cur") and not os.path.exists("/etc/petrel/new")
    healthy(srv)


# --------------------------------------------------------------------------
# STARTTLS: a partial line before the handshake (CVE-2011-0411 class)


def test_starttls_partial_line_not_joined(srv):
    from hostile_util import client_ctx
    with srv.imap() as c:
        c.send("S1 STARTTLS\r\nS2 LOGIN %s" % ALICE)
        r = c.read_tagged("S1")
        assert r.status == "OK", r
        c.sock = client_ctx().wrap_socket(c.sock)
        c.send(" %s\r\n" % PASSWORD)
        # a tag-less garbage line: '* BAD' or a tagged BAD for a bogus tag, but
        # no 'S2 OK' (the LOGIN is not completed across the handshake)
        hit, got = c.read_until(rb"BAD|^S2 ", timeout=3)
        assert not any(g.startswith(b"S2 OK") for g in got), got
        c.bad("SELECT INBOX")           # not authenticated
        c.login(ALICE, PASSWORD)
        c.logout()
    healthy(srv)


# --------------------------------------------------------------------------
# slow and half-open clients


def test_slowloris_imap(sqlite_instance, all_start):
    """imap_timeout=2: one byte per second (never a whole line) must not keep
    the connection forever; others are served meanwhile."""
    import hostile_util
    hostile_util.add_users(sqlite_instance)
    timeout = idle_timeout()
    srv = all_start(sqlite_instance, ("imap_timeout=%d" % timeout,))
    s = socket.create_connection((srv.host, srv.imap_port), timeout=10)
    s.recv(1024)
    res = {}
    t = threading.Thread(target=lambda: res.setdefault(
        "r", trickle(s, b"A1 LOGIN " + b"s" * 40, 1.0, 12)))
    t.start()
    time.sleep(1.5)
    with srv.imap() as c:
        c.login(ALICE, PASSWORD)
        c.select("INBOX")
        c.logout()
    t.join(20)
    s.close()
    closed, took = res["r"]
    assert closed and took <= 9 * TIMEOUT_SCALE, \
        "a 1 byte/s client was still connected after %.1fs" % took
    healthy(srv)


def test_half_open_connections_imap(sqlite_instance, all_start):
    import hostile_util
    hostile_util.add_users(sqlite_instance)
    timeout = idle_timeout()
    srv = all_start(sqlite_instance, ("imap_timeout=%d" % timeout,))
    socks = []
    try:
        for i in range(40):
            s = socket.create_connection((srv.host, srv.imap_port), timeout=10)
            if i % 2:
                s.sendall(b"A1 LOGIN half")
            socks.append(s)
        with srv.imap() as c:
            c.login(ALICE, PASSWORD)
            c.select("INBOX")
            c.logout()
        # served while every idle connection was still open: they did not
        # keep it out until the server dropped them
        assert len(still_open(socks)) == len(socks), \
            "served only after idle connections were dropped"
        dropped_after_timeout(socks, timeout, "imap_timeout")
    finally:
        for s in socks:
            s.close()
    healthy(srv)


def read_fetch_reply(sock, tag=b"F1"):
    """Everything up to and including the FETCH's tagged OK."""
    buf = bytearray()
    while not buf.endswith(tag + b" OK Fetch completed.\r\n"):
        more = sock.recv(1 << 20)
        assert more, "connection closed mid-FETCH"
        buf += more
    return bytes(buf)


def test_big_fetch_to_clients_that_do_not_read(sqlite_instance, all_start, monkeypatch):
    """16 clients ask for FETCH 1:* BODY[] of a 10 MB folder and read
    nothing: the server holds a few reply chunks per client, not the whole
    reply (its memory grows by well under what the replies add up to), and
    keeps serving others. Then half of them vanish mid-reply and the other
    half read their reply, which is whole and exact."""
    import hostile_util
    from imap_util import crlf, message, put
    hostile_util.add_users(sqlite_instance)
    n_msgs, n_clients = 50, 16
    wires = []
    for i in range(n_msgs):
        data = message(i + 1, body=b"".join(b"%02d %05d %s\n" % (i, j, b"x" * 62)
                                            for j in range(2900)))
        wires.append(crlf(data))
        put(sqlite_instance, ALICE, data, name="17000000%02d.M%dP1.big" % (i, i))
    assert sum(map(len, wires)) > 10 * 1024 * 1024

    def literals(buf):
        out, pos = [], 0
        pat = re.compile(rb"\* (\d+) FETCH \(BODY\[\] \{(\d+)\}\r\n")
        while True:
            m = pat.search(buf, pos)
            if not m:
                return out
            n = int(m.group(2))
            out.append(bytes(buf[m.end():m.end() + n]))
            pos = m.end() + n
    # under ASan, freed memory would sit in its quarantine and count as RSS
    monkeypatch.setenv("ASAN_OPTIONS", os.environ.get("ASAN_OPTIONS", "") +
                       ":quarantine_size_mb=0:thread_local_quarantine_size_kb=0")
    srv = all_start(sqlite_instance)
    pid = srv.proc.pid

    def start_fetch():
        c = srv.imap(timeout=30)
        c.login(ALICE, PASSWORD)
        c.select("INBOX")
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        c.sock.sendall(b"F1 FETCH 1:* BODY.PEEK[]\r\n")
        return c

    # one whole FETCH first, so that the baseline has the worker's usual
    # buffers and arenas
    c = start_fetch()
    assert literals(read_fetch_reply(c.sock)) == wires
    c.logout()
    base = workers_rss_kb(pid)
    clients = [start_fetch() for _ in range(n_clients)]
    time.sleep(2)
    grown = workers_rss_kb(pid) - base
    # the replies add up to 16 x 10 MB: without a bound the server would
    # hold most of that
    assert grown < 60 * 1024, "server RSS grew by %d KiB for %d stalled FETCHes" % (
        grown, n_clients)
    # others are served meanwhile
    with srv.imap() as o:
        o.login(BOB, PASSWORD)
        o.select("INBOX")
        o.logout()
    for c in clients[::2]:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.sock.close()
    for c in clients[1::2]:
        c.sock.settimeout(30)
        assert literals(read_fetch_reply(c.sock)) == wires
        c.close()
    healthy(srv)
