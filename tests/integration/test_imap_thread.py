"""IMAP THREAD and UID THREAD (RFC 5256): ORDEREDSUBJECT and REFERENCES on
one mailbox of ten messages built for the edge cases: References and
In-Reply-To, a message without Message-ID (threaded by its "Re:" subject),
replies to a message that is not in the mailbox (a dummy parent), two
messages naming each other (a loop), a duplicate Message-ID, identical
dates, a message without Date (INTERNALDATE); with search keys, '*' ranges,
UIDs and empty results. Every expected answer was worked out by hand from
the RFC's steps."""

import calendar

import pytest

from imap_util import (ALICE, make_folder, put, reset_maildirs,  # noqa: F401
                       start_imap, check_stopped, imap_instance)


def ts(h, m=0):
    return calendar.timegm((2026, 3, 2, h, m, 0, 0, 0, 0))


def hdr(date, subject, msgid=None, refs=None, irt=None):
    h = b"From: someone@example.org\nTo: alice@example.test\nSubject: " + subject + b"\n"
    if date is not None:
        h += b"Date: Mon, 2 Mar 2026 " + date + b" +0000\n"
    if msgid is not None:
        h += b"Message-ID: " + msgid + b"\n"
    if refs is not None:
        h += b"References: " + refs + b"\n"
    if irt is not None:
        h += b"In-Reply-To: " + irt + b"\n"
    return h + b"\nbody\n"


MSGS = [
    # 1: the start of a thread
    (hdr(b"09:00:00", b"Meeting", b"<a@x>"), ts(9)),
    # 2 and 3: a chain below 1
    (hdr(b"10:00:00", b"Re: Meeting", b"<b@x>", refs=b"<a@x>"), ts(10)),
    (hdr(b"11:00:00", b"Re: Meeting", b"<c@x>", refs=b"<a@x> <b@x>"), ts(11)),
    # 4: In-Reply-To only; the same date as 2
    (hdr(b"10:00:00", b"Re: Meeting", b"<d@x>", irt=b"<a@x>"), ts(10)),
    # 5 and 6: replies to <gone@x>, which is not in the mailbox
    (hdr(b"12:00:00", b"Lost parent", b"<e@x>", refs=b"<gone@x>"), ts(12)),
    (hdr(b"12:30:00", b"Re: Lost parent", b"<f@x>", refs=b"<gone@x>"), ts(12, 30)),
    # 7: no Message-ID, no references, a "Re:" subject
    (hdr(b"13:00:00", b"Re: meeting"), ts(13)),
    # 8 and 9: each names the other as its parent; identical dates
    (hdr(b"14:00:00", b"Loop", b"<loop1@x>", refs=b"<loop2@x>"), ts(14)),
    (hdr(b"14:00:00", b"Re: Loop", b"<loop2@x>", refs=b"<loop1@x>"), ts(14)),
    # 10: the Message-ID of 1 again; no Date (INTERNALDATE 15:00)
    (hdr(None, b"Duplicate", b"<a@x>"), ts(15)),
]


@pytest.fixture(scope="module")
def srv(imap_instance):
    reset_maildirs(imap_instance)
    for i, (data, t) in enumerate(MSGS, 1):
        put(imap_instance, ALICE, data, flags="S" if i % 2 else "", mtime=t,
            name="17200000%02d.M%dP1.thread" % (i, i))
    s = start_imap(imap_instance)
    yield s
    problems = check_stopped([s])
    assert not problems, problems


@pytest.fixture(scope="module")
def c(srv):
    conn = srv.session()
    conn.examine("INBOX")
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def uids(c):
    r = c.ok("FETCH 1:* UID")
    return {i: int(r.fetches()[i]["UID"]) for i in range(1, 11)}


def thread(c, command):
    """The text of the one '* THREAD' response."""
    r = c.ok(command)
    lines = r.data("THREAD")
    assert len(lines) == 1, r.untagged
    return lines[0].decode()


def with_uids(text, uids):
    """A thread answer in sequence numbers rewritten with UIDs."""
    out, num = [], ""
    for ch in text + " ":
        if ch.isdigit():
            num += ch
            continue
        if num:
            out.append(str(uids[int(num)]))
            num = ""
        out.append(ch)
    return "".join(out)[:-1]


# REFERENCES, step by step (RFC 5256):
#  1: <a> 1 <- <b> 2 <- <c> 3 and <a> 1 <- <d> 4; <gone> (a dummy) <- 5, 6;
#     7 alone; <loop2> 9 <- <loop1> 8 (8 made <loop2> its parent first, so
#     9's claim on 8 would be a loop and is dropped); 10 gets a container of
#     its own (duplicate ID).
#  4: the dummy <gone> has two children and stays in the root set.
#  5: 7's base subject MEETING is 1's; 7 is a reply and 1 is not: 7 becomes
#     a child of 1. LOST PARENT, LOOP, DUPLICATE are alone.
#  6: 1's children by date: 2 (10:00), 4 (10:00, later in the mailbox),
#     7 (13:00); roots by date: 1 (09:00), the dummy (its first child 5,
#     12:00), 9 (14:00), 10 (15:00).
REFERENCES_ALL = "(1 (2 3)(4)(7))((5)(6))(9 8)(10)"
# ORDEREDSUBJECT: MEETING 1 (09:00), 2 (10:00), 4 (10:00), 3 (11:00),
# 7 (13:00); LOST PARENT 5, 6; LOOP 8, 9 (the same date: mailbox order);
# DUPLICATE 10; threads by the date of their first message.
ORDERED_ALL = "(1 (2)(4)(3)(7))(5 6)(8 9)(10)"

CASES = [
    ("REFERENCES UTF-8 ALL", REFERENCES_ALL),
    ("ORDEREDSUBJECT UTF-8 ALL", ORDERED_ALL),
    ("references us-ascii ALL", REFERENCES_ALL),
    ("orderedsubject utf-8 ALL", ORDERED_ALL),
    # only the first four: the same shape without 7
    ("REFERENCES UTF-8 1:4", "(1 (2 3)(4))"),
    # 2 and 3 without 1: <a> is a dummy with one child, which takes its place
    ("REFERENCES UTF-8 2:3", "(2 3)"),
    # 5 alone: its parent is a dummy with one child
    ("REFERENCES UTF-8 5", "(5)"),
    ("REFERENCES UTF-8 8:*", "(9 8)(10)"),
    ("ORDEREDSUBJECT UTF-8 8:*", "(8 9)(10)"),
    ("ORDEREDSUBJECT UTF-8 *", "(10)"),
    # 9 without 8: <loop1> is a dummy parent with one child, which takes
    # its place
    ("REFERENCES UTF-8 *:9", "(9)(10)"),
    # 4 and 7 without their parent: both "Re: Meeting"; neither is a dummy
    # and both are replies: a dummy above them (step 5)
    ("REFERENCES UTF-8 4,7", "((4)(7))"),
    ("ORDEREDSUBJECT UTF-8 4,7", "(4 7)"),
    # the odd ones are \Seen. Without 1, 10 is the only message with the
    # Message-ID <a@x>: 2 and 4 (replies to <a@x>) become its children
    ("REFERENCES UTF-8 UNSEEN", "(6)(8)(10 (2)(4))"),
    ("ORDEREDSUBJECT UTF-8 SEEN", "(1 (3)(7))(5)(9)"),
    ("REFERENCES UTF-8 SUBJECT loop", "(9 8)"),
]


@pytest.mark.parametrize("command,expected", CASES, ids=[c for c, _ in CASES])
def test_thread(c, command, expected):
    assert thread(c, "THREAD " + command) == expected


def test_uid_thread(c, uids):
    assert thread(c, "UID THREAD REFERENCES UTF-8 ALL") == with_uids(REFERENCES_ALL, uids)
    assert thread(c, "UID THREAD ORDEREDSUBJECT UTF-8 ALL") == with_uids(ORDERED_ALL, uids)
    assert thread(c, "UID THREAD REFERENCES UTF-8 UID %d:*" % uids[8]) == \
        "(%d %d)(%d)" % (uids[9], uids[8], uids[10])
    # UID n:* names the last message even when n is beyond it
    assert thread(c, "UID THREAD ORDEREDSUBJECT UTF-8 UID %d:*" % (uids[10] + 9)) == \
        "(%d)" % uids[10]


def test_thread_empty_result(c):
    r = c.ok("THREAD REFERENCES UTF-8 SUBJECT no-such-subject")
    assert r.data("THREAD") == [b""], r.untagged
    r = c.ok("UID THREAD ORDEREDSUBJECT UTF-8 UID 999999")
    assert r.data("THREAD") == [b""], r.untagged


@pytest.mark.parametrize("command", [
    "THREAD",
    "THREAD REFERENCES",
    "THREAD REFERENCES UTF-8",
    "THREAD BOGUS UTF-8 ALL",
    "THREAD (REFERENCES) UTF-8 ALL",
    'THREAD "REFERENCES" UTF-8 ALL',
    "THREAD REFERENCES UTF-8 NOSUCHKEY",
    "THREAD REFERENCES UTF-8 CHARSET UTF-8 ALL",
    "THREAD ORDEREDSUBJECT (UTF-8) ALL",
    "THREAD REFERENCES UTF-8 (ALL",
])
def test_thread_syntax_errors(c, command):
    r = c.cmd(command)
    assert r.status == "BAD", (command, r)
    c.ok("NOOP")


def test_thread_unknown_charset(c):
    r = c.cmd("THREAD REFERENCES ISO-2022-JP ALL")
    assert r.status == "NO" and r.code() == "BADCHARSET (UTF-8 US-ASCII)", r


def test_thread_capabilities_and_imaplib(srv, c):
    caps = c.ok("CAPABILITY").data("CAPABILITY")[0].decode().split()
    assert "THREAD=ORDEREDSUBJECT" in caps and "THREAD=REFERENCES" in caps, caps
    m = srv.login()
    try:
        m.select("INBOX", readonly=True)
        typ, data = m.thread("REFERENCES", "UTF-8", "ALL")
        assert typ == "OK" and data == [REFERENCES_ALL.encode()], data
        r = m.uid("THREAD", "ORDEREDSUBJECT", "UTF-8", "1:2")
        assert r[0] == "OK", r
    finally:
        m.logout()
    c2 = srv.session()
    try:
        r = c2.cmd("THREAD REFERENCES UTF-8 ALL")
        assert r.status == "BAD", r    # no mailbox selected
    finally:
        c2.close()


def test_thread_follows_a_reply_delivered_later(srv):
    """A reply to 3 delivered while the session is open joins the thread
    under 3 once the session knows of it."""
    c = srv.session()
    try:
        c.select("INBOX")
        assert thread(c, "THREAD REFERENCES UTF-8 ALL") == REFERENCES_ALL
        srv.deliver(ALICE, hdr(b"16:00:00", b"Re: Meeting", b"<late@x>",
                               refs=b"<a@x> <b@x> <c@x>"))
        c.ok("NOOP")
        assert thread(c, "THREAD REFERENCES UTF-8 ALL") == \
            "(1 (2 3 11)(4)(7))((5)(6))(9 8)(10)"
        assert thread(c, "THREAD ORDEREDSUBJECT UTF-8 ALL") == \
            "(1 (2)(4)(3)(7)(11))(5 6)(8 9)(10)"
        c.ok("STORE 11 +FLAGS.SILENT (\\Deleted)")
        c.ok("EXPUNGE")
        assert thread(c, "THREAD REFERENCES UTF-8 ALL") == REFERENCES_ALL
    finally:
        c.close()


def test_thread_oversized_header(srv, imap_instance):
    """A header of 5,000 References and 300 KB of filler: only its first
    256 KiB are read (the Subject after the filler is not seen) and only
    the nearest References are kept; the answer is the same shape, fast."""
    make_folder(imap_instance, ALICE, "Big")
    refs = b" ".join(b"<r%d@x>" % i for i in range(5000))
    big = (b"Message-ID: <big@x>\nReferences: " + refs + b"\nX-Filler: " +
           b"f" * 300000 + b"\nSubject: big\nDate: Mon, 2 Mar 2026 09:00:00 +0000\n\nbody\n")
    small = hdr(b"10:00:00", b"Re: big", b"<small@x>", irt=b"<big@x>")
    put(imap_instance, ALICE, big, folder="Big", mtime=ts(9), name="1740000001.M1P1.thread")
    put(imap_instance, ALICE, small, folder="Big", mtime=ts(10), name="1740000002.M2P1.thread")
    c = srv.session()
    try:
        c.examine("Big")
        assert thread(c, "THREAD REFERENCES UTF-8 ALL") == "(1 2)"
        # the first message's Subject lies beyond what is read: empty
        assert thread(c, "THREAD ORDEREDSUBJECT UTF-8 ALL") == "(1)(2)"
        r = c.ok("SORT (SUBJECT) UTF-8 ALL")
        assert r.data("SORT") == [b"1 2"], r.untagged
        # DATE of 1 falls back to INTERNALDATE (its Date is cut off too)
        r = c.ok("SORT (REVERSE DATE) UTF-8 ALL")
        assert r.data("SORT") == [b"2 1"], r.untagged
    finally:
        c.close()
