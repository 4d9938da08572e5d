"""The error limits of each protocol (lib/base/limits.h): a client that keeps
sending invalid commands is told goodbye and disconnected after the limit
(SMTP 421 after SMTP_ERRORS_MAX errors, POP3 -ERR after POP3_ERRORS_MAX,
IMAP * BYE after IMAP_BAD_MAX BADs in a row), one short of the limit
the session goes on, and for IMAP a valid command starts the count again."""

import os
import re

from hostile_util import ALICE, PASSWORD, closed_within, healthy

LIMITS_H = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "lib", "base",
                        "limits.h")


def limit(name):
    with open(LIMITS_H) as f:
        m = re.search(r"^#define %s (\d+)$" % name, f.read(), re.M)
    assert m, name
    return int(m.group(1))


def test_smtp_errors(sqlite_instance, all_start):
    n = limit("SMTP_ERRORS_MAX")
    import hostile_util
    hostile_util.add_users(sqlite_instance)
    srv = all_start(sqlite_instance)
    with srv.mx() as c:
        c.cmd("EHLO errors.test")
        for _ in range(n - 1):
            assert c.cmd("FROB").code == 502
        assert c.cmd("NOOP").code == 250           # one short: still served
        r = c.cmd("FROB")
        assert r.code == 502, r
        bye = c.reply()
        assert bye.code == 421 and "too many errors" in bye.lines[-1].lower(), bye
        closed, _, _ = closed_within(c.sock, 10)
        assert closed
    assert srv.wait_log(r"smtp: too many errors from")
    healthy(srv)


def test_pop3_errors(sqlite_instance, all_start):
    n = limit("POP3_ERRORS_MAX")
    import hostile_util
    hostile_util.add_users(sqlite_instance)
    srv = all_start(sqlite_instance)
    with srv.pop3() as c:
        for _ in range(n - 1):
            assert c.cmd("FROB").startswith("-ERR")
        assert c.cmd("CAPA").startswith("+OK")
        c.multi()
        assert c.cmd("FROB").startswith("-ERR")
        bye = c.status()
        assert bye.startswith("-ERR") and "too many errors" in bye.lower(), bye
        closed, _, _ = closed_within(c.sock, 10)
        assert closed
    healthy(srv)


def test_imap_bads_in_a_row(sqlite_instance, all_start):
    n = limit("IMAP_BAD_MAX")
    import hostile_util
    hostile_util.add_users(sqlite_instance)
    srv = all_start(sqlite_instance)
    with srv.imap() as c:
        # before login: n - 1 BADs, a NOOP (the count starts again), n - 1 more
        for _ in range(2):
            for _ in range(n - 1):
                assert c.cmd("FROB").status == "BAD"
            assert c.cmd("NOOP").status == "OK"
        c.ok("LOGIN %s %s" % (ALICE, PASSWORD))
        for _ in range(n - 1):
            assert c.cmd("SELECT").status == "BAD"    # an argument missing
        r = c.cmd("FETCH")
        assert r.status == "BAD", r
        data, closed = c.read_rest(timeout=10)
        assert closed, data
        assert b"* BYE" in b"".join(r.untagged) + data, (r, data)
    healthy(srv)
