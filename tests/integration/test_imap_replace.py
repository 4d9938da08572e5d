"""IMAP REPLACE (RFC 8508): REPLACE and UID REPLACE store the new message as
APPEND does and remove the old one, as one action: the RFC's examples
(untagged OK [APPENDUID], then EXISTS, then EXPUNGE, then the tagged OK), a
replacement into another mailbox (Drafts to Sent), only the named message
expunged (other \\Deleted ones stay), the quota counting only the net growth,
and the errors (an invalid sequence number, a UID that does not exist, no
such mailbox, an empty or too large message, a read-only mailbox, more than
one message): nothing changes. A second session sees the replacement as one
EXISTS and one EXPUNGE. One server for the module (SQLite)."""

import re

import pytest

from imap_util import (ALICE, PASSWORD, Literal, check_stopped, crlf, imap_instance,  # noqa: F401
                       message, reset_maildirs, start_imap)

from harness.conn import capabilities

SIZE_LIMIT = 1000000
CAROL = "carol@example.test"

# RFC 8508 3.2 and 3.3
RFC_NEW1 = (b"Date: Thu, 1 Jan 2015 00:05:00 -0500 (EST)\r\n"
            b"From: Fritz Schmidt <fritz.ze@example.org>\r\n"
            b"Subject: happy new year !!\r\n"
            b"To: miss.mitzy@example.org\r\n"
            b"Message-Id: <B238822388-0100000@example.org>\r\n"
            b"MIME-Version: 1.0\r\n"
            b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
            b"\r\n"
            b"Just saw the best fireworks show. Wish you were here.\r\n")
RFC_NEW2 = (b"Date: Thu, 1 Jan 2015 00:06:00 -0500 (EST)\r\n"
            b"From: Fritz Schmidt <fritz.ze@example.org>\r\n"
            b"Subject: happy new year !!\r\n"
            b"To: miss.mitzy@example.org\r\n"
            b"Message-Id: <B238822389-0100000@example.org>\r\n"
            b"MIME-Version: 1.0\r\n"
            b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
            b"\r\n"
            b"Just saw the best fireworks show. Wish you were here.\r\n"
            b"Hopefully next year you can join us.\r\n")


@pytest.fixture(scope="module")
def srv(imap_instance):
    reset_maildirs(imap_instance)
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


def folder(c, name, n):
    """An empty folder (made unless it exists: Drafts does) given messages
    1..n (subjects "test message k"), selected."""
    r = c.command("CREATE " + name)
    assert r.status == "OK" or "ALREADYEXISTS" in r.text, r
    assert count(c, name) == 0
    for k in range(1, n + 1):
        c.ok("APPEND %s " % name, Literal(message(k), plus=True))
    c.select(name)
    return name


def count(c, name):
    r = c.ok("STATUS %s (MESSAGES)" % name)
    return int(r.data("STATUS")[0].decode().split("(")[1].split()[1].rstrip(")"))


def order(r):
    """The untagged responses as kinds, in order: OK, EXISTS, EXPUNGE..."""
    out = []
    for u in r.untagged:
        w = u.decode().split()
        if w[1] == "OK":
            out.append("OK")
        elif len(w) > 2 and w[2] in ("EXISTS", "EXPUNGE"):
            out.append("%s %s" % (w[1], w[2]))
    return out


def appenduid(r):
    for u in r.untagged:
        m = re.match(r"\* OK \[APPENDUID (\d+) (\d+)\] ", u.decode())
        if m:
            return int(m.group(1)), int(m.group(2))
    raise AssertionError("no APPENDUID in %r" % r)


def subjects(c, rng="1:*"):
    r = c.ok("FETCH %s BODY.PEEK[HEADER.FIELDS (SUBJECT)]" % rng)
    f = r.fetches()
    return [f[k]["BODY[HEADER.FIELDS (SUBJECT)]"].strip().decode() for k in sorted(f)]


def test_capability(srv):
    with srv.conn() as c:
        assert "REPLACE" not in capabilities(c.ok("CAPABILITY").data("CAPABILITY")[0])
        c.login(ALICE, PASSWORD)
        assert "REPLACE" in capabilities(c.ok("CAPABILITY").data("CAPABILITY")[0])
        # only in the selected state, both forms
        c.bad("REPLACE 1 INBOX ", Literal(message(1)))
        c.bad("UID REPLACE 1 INBOX ", Literal(message(1)))


def test_rfc8508_examples(c):
    box = folder(c, "Drafts", 4)
    r = c.ok("REPLACE 4 Drafts (\\Seen \\Draft) ", Literal(RFC_NEW1))
    assert r.cont, r        # a synchronising literal: '+' first
    assert order(r) == ["OK", "5 EXISTS", "4 EXPUNGE"], r
    assert "Replacement Message ready" in r.find(r"^\* OK")[0], r
    validity, uid = appenduid(r)
    # the new message is number 4 now, the old one is gone
    r2 = c.ok("FETCH 4 (UID FLAGS BODY.PEEK[])")
    f = r2.fetches()[4]
    assert int(f["UID"]) == uid and f["BODY[]"] == RFC_NEW1, f
    assert {"\\Seen", "\\Draft"} <= set(f["FLAGS"]), f
    assert subjects(c, "1:3") == ["Subject: test message %d" % k for k in (1, 2, 3)]
    # 3.3: UID REPLACE of the new one
    r = c.ok("UID REPLACE %d Drafts (\\Seen \\Draft) " % uid, Literal(RFC_NEW2))
    assert order(r) == ["OK", "5 EXISTS", "4 EXPUNGE"], r
    validity2, uid2 = appenduid(r)
    assert validity2 == validity and uid2 > uid
    assert c.ok("FETCH 4 BODY.PEEK[]").fetches()[4]["BODY[]"] == RFC_NEW2
    assert count(c, box) == 4
    r = c.ok("UID FETCH %d FLAGS" % uid)
    assert not r.fetches(), r       # the old UID is gone for good


def test_replace_into_another_mailbox(c):
    """Drafts to Sent after submission (RFC 8508 3.4): no EXISTS here, the
    EXPUNGE of the draft; APPENDUID names Sent's UIDVALIDITY."""
    folder(c, "Drafts2", 3)
    c.ok("CREATE Sent2")
    st = c.ok("STATUS Sent2 (UIDVALIDITY UIDNEXT)").data("STATUS")[0].decode()
    r = c.ok("REPLACE 2 Sent2 (\\Seen) ", Literal(message(9)))
    assert order(r) == ["OK", "2 EXPUNGE"], r
    validity, uid = appenduid(r)
    assert "UIDVALIDITY %d" % validity in st and "UIDNEXT %d" % uid in st, (st, r)
    assert subjects(c) == ["Subject: test message 1", "Subject: test message 3"]
    assert count(c, "Sent2") == 1
    c.examine("Sent2")
    assert subjects(c) == ["Subject: test message 9"]


def test_only_the_named_message_is_expunged(c):
    folder(c, "Del", 4)
    c.ok("STORE 1,3 +FLAGS.SILENT (\\Deleted)")
    r = c.ok("REPLACE 2 Del ", Literal(message(7)))
    assert order(r) == ["OK", "5 EXISTS", "2 EXPUNGE"], r
    assert subjects(c) == ["Subject: test message %d" % k for k in (1, 3, 4, 7)]
    f = c.ok("FETCH 1:2 FLAGS").fetches()
    assert "\\Deleted" in f[1]["FLAGS"] and "\\Deleted" in f[2]["FLAGS"], f
    # a \Deleted message can be replaced too
    r = c.ok("REPLACE 1 Del ", Literal(message(8)))
    assert order(r) == ["OK", "5 EXISTS", "1 EXPUNGE"], r


def test_errors_change_nothing(c, srv):
    box = folder(c, "Errs", 3)
    before = subjects(c)
    # a sequence number beyond the mailbox, zero, a set: BAD
    c.bad("REPLACE 4 Errs ", Literal(message(5)))
    c.bad("REPLACE 0 Errs ", Literal(message(5)))
    c.bad("REPLACE 1:2 Errs ", Literal(message(5)))
    c.bad("REPLACE 1 Errs")
    # more than one message (REPLACE is not MULTIAPPEND)
    c.bad("REPLACE 1 Errs ", Literal(message(5)), " ", Literal(message(6)))
    # a UID that does not exist: NO
    r = c.no("UID REPLACE 999 Errs ", Literal(message(5)))
    assert not order(r), r
    # no such mailbox
    r = c.no("REPLACE 1 Nonexistent ", Literal(message(5)))
    assert r.code() == "TRYCREATE" and not order(r), r
    # an empty message, one over message_size_limit (before its data)
    r = c.no("REPLACE 1 Errs ", Literal(b""))
    assert not order(r), r
    r = c.command("REPLACE 1 Errs ", Literal(message(5, body=b"x" * (SIZE_LIMIT + 1))))
    assert r.status == "NO" and "TOOBIG" in r.text, r
    assert subjects(c) == before and count(c, box) == 3
    # read-only
    c.examine(box)
    r = c.no("REPLACE 1 Errs ", Literal(message(5)))
    assert "READ-ONLY" in r.text, r
    assert count(c, box) == 3
    c.ok("NOOP")


def test_large_message_spooled(c):
    """A replacement over 64 KiB is written to tmp/ as it arrives (as an
    APPEND's): REPLACE and UID REPLACE, synchronising and LITERAL+."""
    folder(c, "Big", 2)
    big = message(5, body=b"y" * 200000 + b"\n")
    r = c.ok("REPLACE 1 Big ", Literal(big))
    assert order(r) == ["OK", "3 EXISTS", "1 EXPUNGE"], r
    _, uid = appenduid(r)
    big2 = message(6, body=b"z" * 300000 + b"\n")
    r = c.ok("UID REPLACE %d Big " % uid, Literal(big2, plus=True))
    assert order(r) == ["OK", "3 EXISTS", "2 EXPUNGE"], r
    f = c.ok("FETCH 1:* BODY.PEEK[]").fetches()
    assert [f[k]["BODY[]"] for k in sorted(f)] == [crlf(message(2)), crlf(big2)]


def test_quota_counts_net_growth(srv):
    """RFC 8508 3.4: the quota sees the APPEND with the EXPUNGE done."""
    with srv.session(user=CAROL) as c:
        c.ok("CREATE Notes")
        c.ok("APPEND Notes ", Literal(message(1, body=b"a" * 9000 + b"\n")))
        c.select("Notes")
        # 9 KB + 12 KB is over 20 KB, 12 KB alone is not
        r = c.ok("REPLACE 1 Notes ", Literal(message(2, body=b"b" * 12000 + b"\n")))
        assert order(r) == ["OK", "2 EXISTS", "1 EXPUNGE"], r
        r = c.no("REPLACE 1 Notes ", Literal(message(3, body=b"c" * 25000 + b"\n")))
        assert "OVERQUOTA" in r.text and not order(r), r
        assert subjects(c) == ["Subject: test message 2"]


def test_other_session_sees_one_action(c, srv):
    """The other session's sync finds the old message gone and the new one
    there at once: EXPUNGE and EXISTS together, the count unchanged."""
    box = folder(c, "Seen2", 3)
    with srv.session(select=box) as other:
        for k in range(5):
            c.ok("REPLACE 3 Seen2 ", Literal(message(10 + k)))
            r = other.ok("NOOP")
            assert r.numbered("EXPUNGE") == [3] and r.numbered("EXISTS") == [3], r
        assert subjects(other) == ["Subject: test message 1", "Subject: test message 2",
                                   "Subject: test message 14"]


@pytest.mark.parametrize("target", ["same", "other"])
def test_old_message_renamed_by_another_session(c, srv, target):
    """Another session changed the old message's flags (its file got
    another name) after this one last looked: the replacement still
    removes it, and it does not come back under a new UID."""
    box = folder(c, "Ren" + target, 3)
    dst = box if target == "same" else "RenDst"
    if target == "other":
        c.ok("CREATE " + dst)
    with srv.session(select=box) as other:
        other.ok("STORE 2 +FLAGS.SILENT (\\Flagged $Other)")
    r = c.ok("REPLACE 2 %s " % dst, Literal(message(8)))
    assert r.numbered("EXPUNGE") == [2], r
    c.ok("NOOP")
    want = ["Subject: test message 1", "Subject: test message 3"]
    if target == "same":
        want.append("Subject: test message 8")
    assert subjects(c) == want
    assert count(c, box) == len(want)
    with srv.session(select=box) as later:
        assert subjects(later) == want
