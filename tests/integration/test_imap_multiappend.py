"""IMAP MULTIAPPEND (RFC 3502): several messages in one APPEND, each with
its own flags and date, all stored or none (an empty message, a message
over message_size_limit, the quota, a missing mailbox: nothing stored),
one APPENDUID with the UIDs of all of them (RFC 4315), messages over 64 KiB
(written to tmp/ as they arrive) mixed with small ones, the bound on the
messages per command (docs/security.md), and a second session that sees
all the new messages at once. One server for the module (SQLite)."""

import datetime
import os

import pytest

from imap_util import (ALICE, PASSWORD, Literal, check_stopped, crlf, folder_dir,  # noqa: F401
                       imap_instance, message, reset_maildirs, start_imap)

from harness.conn import capabilities

SIZE_LIMIT = 1000000

# RFC 3502 section 6, the two messages of the example (CRLF line ends)
RFC_MSG1 = (b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n"
            b"From: Fred Foobar <foobar@Blurdybloop.example.COM>\r\n"
            b"Subject: afternoon meeting\r\n"
            b"To: mooch@owatagu.siam.edu\r\n"
            b"Message-Id: <B27397-0100000@Blurdybloop.example.COM>\r\n"
            b"MIME-Version: 1.0\r\n"
            b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
            b"\r\n"
            b"Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n")
RFC_MSG2 = (b"Date: Mon, 7 Feb 1994 22:43:04 -0800 (PST)\r\n"
            b"From: Joe Mooch <mooch@OWaTaGu.siam.EDU>\r\n"
            b"Subject: Re: afternoon meeting\r\n"
            b"To: foobar@blurdybloop.example.com\r\n"
            b"Message-Id: <a0434793874930@OWaTaGu.siam.EDU>\r\n"
            b"MIME-Version: 1.0\r\n"
            b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
            b"\r\n"
            b"3:30 is fine with me.\r\n")

CAROL = "carol@example.test"


@pytest.fixture(scope="module")
def srv(imap_instance):
    reset_maildirs(imap_instance)
    # carol: 20 KB of quota
    imap_instance.add_user(CAROL, PASSWORD, "--quota", "20000")
    s = start_imap(imap_instance, ("message_size_limit=%d" % SIZE_LIMIT,))
    yield s
    problems = check_stopped([s])
    assert not problems, problems


@pytest.fixture
def c(srv):
    conn = srv.session()
    yield conn
    conn.close()


def fresh(c, name):
    c.ok("CREATE " + name)
    return name


def count(c, name):
    r = c.ok("STATUS %s (MESSAGES UIDNEXT)" % name)
    words = r.data("STATUS")[0].decode().split("(")[1].rstrip(")").split()
    d = dict(zip(words[::2], words[1::2]))
    return int(d["MESSAGES"]), int(d["UIDNEXT"])


def appenduid(r):
    code = r.code()
    assert code and code.upper().startswith("APPENDUID "), r
    _, validity, uids = code.split()
    out = []
    for part in uids.split(","):
        lo, _, hi = part.partition(":")
        out += list(range(int(lo), int(hi or lo) + 1))
    return int(validity), out


def bodies(c, name, n):
    """FETCH of all n messages; FLAGS without \\Recent, INTERNALDATE as a
    datetime."""
    c.examine(name)
    r = c.ok("FETCH 1:%d (FLAGS INTERNALDATE BODY.PEEK[])" % n)
    out = r.fetches()
    for f in out.values():
        f["FLAGS"] = sorted(x for x in f["FLAGS"] if x != "\\Recent")
        f["INTERNALDATE"] = when(f["INTERNALDATE"].decode())
    return out


def when(text):
    return datetime.datetime.strptime(text.strip(), "%d-%b-%Y %H:%M:%S %z")


def test_capability(srv):
    with srv.conn() as c:
        assert "MULTIAPPEND" not in capabilities(c.ok("CAPABILITY").data("CAPABILITY")[0])
        c.login(ALICE, PASSWORD)
        assert "MULTIAPPEND" in capabilities(c.ok("CAPABILITY").data("CAPABILITY")[0])


def test_rfc3502_example(c):
    """RFC 3502 6: two messages, the second with a date; APPENDUID names
    both; then the TRYCREATE of a missing mailbox."""
    box = fresh(c, "saved-messages")
    _, uidnext = count(c, box)
    r = c.ok("APPEND saved-messages (\\Seen) ", Literal(RFC_MSG1),
             ' (\\Seen) " 7-Feb-1994 22:43:04 -0800" ', Literal(RFC_MSG2))
    assert len(r.cont) == 2, r          # a '+' for each synchronising literal
    _, uids = appenduid(r)
    assert uids == [uidnext, uidnext + 1], r
    assert count(c, box)[0] == 2
    f = bodies(c, box, 2)
    assert f[1]["BODY[]"] == RFC_MSG1 and f[2]["BODY[]"] == RFC_MSG2, f
    assert f[1]["FLAGS"] == ["\\Seen"] and f[2]["FLAGS"] == ["\\Seen"], f
    assert f[2]["INTERNALDATE"] == when("07-Feb-1994 22:43:04 -0800"), f
    # A004: no such mailbox
    r = c.no("APPEND bogusname (\\Flagged) ", Literal(RFC_MSG1), " ", Literal(RFC_MSG2))
    assert r.code() == "TRYCREATE", r


def test_each_message_its_own_flags_and_date(c):
    box = fresh(c, "Mixed")
    r = c.ok("APPEND Mixed (\\Flagged $Work) ", Literal(message(1), plus=True),
             " ", Literal(message(2), plus=True),
             ' "01-Jan-2020 10:00:00 +0000" ', Literal(message(3), plus=True),
             " () ", Literal(message(4), plus=True))
    validity, uids = appenduid(r)
    assert len(uids) == 4 and uids == sorted(uids), r
    f = bodies(c, box, 4)
    assert [f[i]["BODY[]"] for i in range(1, 5)] == [crlf(message(i)) for i in range(1, 5)]
    assert sorted(f[1]["FLAGS"]) == ["$Work", "\\Flagged"], f
    assert f[2]["FLAGS"] == [] and f[4]["FLAGS"] == [], f
    assert f[3]["INTERNALDATE"] == when("01-Jan-2020 10:00:00 +0000"), f
    # the UIDs APPENDUID named are those of the messages, in order
    r = c.ok("UID FETCH %d:%d (BODY.PEEK[HEADER.FIELDS (SUBJECT)])" % (uids[0], uids[-1]))
    got = [v for k, v in sorted(r.fetches().items())]
    assert [g["UID"] for g in got] == [str(u) for u in uids], got


def test_large_and_small_messages(c, srv):
    """Messages over 64 KiB are spooled to tmp/ as they arrive; several
    in one command, between small ones, synchronising and LITERAL+."""
    box = fresh(c, "Large")
    big = [message(10 + i, body=(b"%d" % i) * 150000 + b"\n") for i in range(3)]
    r = c.ok("APPEND Large ", Literal(big[0]), " ", Literal(message(1), plus=True),
             " (\\Seen) ", Literal(big[1], plus=True), " ", Literal(big[2]))
    _, uids = appenduid(r)
    assert len(uids) == 4, r
    c.examine(box)
    for i, want in enumerate([big[0], message(1), big[1], big[2]], 1):
        r = c.ok("FETCH %d BODY.PEEK[]" % i)
        assert r.fetches()[i]["BODY[]"] == crlf(want), i
    # nothing left in tmp/ (the spool files became the messages)
    for box_ in ("INBOX", "Large"):
        assert os.listdir(os.path.join(folder_dir(srv.instance, ALICE, box_), "tmp")) == []


def test_failure_stores_nothing(c):
    """An empty message, a bad flag, a bad date, one over the size limit:
    none of the command's messages is stored."""
    box = fresh(c, "Atomic")
    c.ok("APPEND Atomic ", Literal(message(1)))
    n0, uidnext0 = count(c, box)
    r = c.no("APPEND Atomic ", Literal(message(2)), " ", Literal(message(3)),
             " ", Literal(b""))
    assert "empty" in r.text, r
    r = c.command("APPEND Atomic ", Literal(message(2)), " (\\Recent) ", Literal(message(3)))
    assert r.status in ("NO", "BAD"), r
    c.bad("APPEND Atomic ", Literal(message(2)), ' "32-Jan-2020 10:00:00 +0000" ',
          Literal(message(3)))
    # over message_size_limit, after a message that was read: refused
    # before the second one's data is sent
    r = c.command("APPEND Atomic ", Literal(message(2)), " ",
                  Literal(message(3, body=b"z" * (SIZE_LIMIT + 10))))
    assert r.status == "NO" and "TOOBIG" in r.text, r
    # a big one spooled, then a failure
    r = c.no("APPEND Atomic ", Literal(message(2, body=b"q" * 200000)), " ", Literal(b""))
    assert count(c, box) == (n0, uidnext0)
    assert count(c, box) == (1, uidnext0)
    c.ok("NOOP")        # the session still works


def test_quota_counts_all_messages(srv):
    """RFC 3502 6 A005: the messages together over the quota: none stored."""
    with srv.session(user=CAROL) as c:
        c.ok("CREATE test")
        one = message(1, body=b"w" * 9000 + b"\n")
        c.ok("APPEND test ", Literal(one))
        r = c.no("APPEND test (\\Seen) ", Literal(one), " ", Literal(one))
        assert "OVERQUOTA" in r.text, r
        assert count(c, "test")[0] == 1
        # large ones (spooled) count together too
        big = message(2, body=b"v" * 70000 + b"\n")
        r = c.no("APPEND test ", Literal(big))
        assert "OVERQUOTA" in r.text, r
        assert count(c, "test")[0] == 1


def test_message_count_bound(c):
    """At most 64 messages in one APPEND, 16 of them over 64 KiB."""
    box = fresh(c, "Many")
    parts = ["APPEND Many"]
    for i in range(64):
        parts += [" ", Literal(message(i), plus=True)]
    r = c.ok(*parts)
    assert len(appenduid(r)[1]) == 64
    assert count(c, box)[0] == 64
    parts = ["APPEND Many"]
    for i in range(65):
        parts += [" ", Literal(message(i), plus=True)]
    r = c.no(*parts)
    assert "LIMIT" in r.text, r
    assert count(c, box)[0] == 64
    big = message(1, body=b"b" * 70000 + b"\n")
    parts = ["APPEND Many"]
    for i in range(16):
        parts += [" ", Literal(big, plus=True)]
    r = c.ok(*parts)
    assert len(appenduid(r)[1]) == 16
    parts = ["APPEND Many"]
    for i in range(17):
        parts += [" ", Literal(big, plus=True)]
    r = c.no(*parts)
    assert "LIMIT" in r.text, r
    assert count(c, box)[0] == 80
    c.ok("NOOP")


def test_other_session_sees_all_at_once(c, srv):
    box = fresh(c, "Shared")
    with srv.session(select=box) as other:
        for round_ in range(5):
            parts = ["APPEND Shared"]
            for i in range(5):
                parts += [" ", Literal(message(i), plus=True)]
            c.ok(*parts)
            r = other.ok("NOOP")
            assert r.numbered("EXISTS") == [5 * (round_ + 1)], r


def test_syntax(c):
    fresh(c, "Syntax")
    c.bad("APPEND Syntax")
    c.bad("APPEND Syntax (\\Seen)")
    c.bad("APPEND Syntax (\\Seen) (\\Seen) ", Literal(message(1)))
    c.bad("APPEND Syntax ", Literal(message(1)), " (\\Seen)")
    c.bad("APPEND Syntax ", Literal(message(1)), ' "01-Jan-2020 10:00:00 +0000"')
    assert count(c, "Syntax")[0] == 0


def test_pipelined_literal_plus(c):
    """One write: a MULTIAPPEND of LITERAL+ literals (one over 64 KiB)
    and the command after it; both run, in order."""
    box = fresh(c, "Piped")
    one, two = message(1), message(2, body=b"p" * 100000 + b"\n")
    c.send(b"P1 APPEND Piped {%d+}\r\n%s (\\Seen) {%d+}\r\n%s\r\nP2 STATUS Piped (MESSAGES)\r\n"
           % (len(one), one, len(two), two))
    r1 = c.read_tagged("P1")
    r2 = c.read_tagged("P2")
    assert r1.status == "OK" and len(appenduid(r1)[1]) == 2, r1
    assert r2.status == "OK" and b"MESSAGES 2" in r2.data("STATUS")[0], r2
    f = bodies(c, box, 2)
    assert f[1]["BODY[]"] == crlf(one) and f[2]["BODY[]"] == crlf(two)
    assert f[2]["FLAGS"] == ["\\Seen"] and f[1]["FLAGS"] == []
