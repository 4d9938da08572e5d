"""IMAP RFC 5267: the PARTIAL result option of ESEARCH and ESORT (negative
ranges counting from the end, RFC 9394): ranges in either order, past the
end, empty results, UID against sequence numbers, with SORT, with SAVE
(SEARCHRES), and the BAD answers (PARTIAL with ALL, zero, mixed signs);
CONTEXT=SEARCH and CONTEXT=SORT: RETURN (UPDATE) with another session's
flag changes, APPEND and expunges and an SMTP delivery giving ADDTO and
REMOVEFROM (positions 0 for SEARCH, in the sort order for SORT), after
commands and during IDLE, CANCELUPDATE, the bound on updating searches.
One server for the module."""

import re
import time

import pytest

from imap_util import (ALICE, PASSWORD, Literal, check_stopped, imap_instance,  # noqa: F401
                       message, reset_maildirs, start_imap)

# ten messages; message k has subject "s<11-k>" (SORT SUBJECT reverses
# them) and FLAGGED ones are 2, 3, 5, 7 and 8
N = 10
FLAGGED = [2, 3, 5, 7, 8]


@pytest.fixture(scope="module")
def srv(imap_instance):
    reset_maildirs(imap_instance)
    s = start_imap(imap_instance)
    yield s
    problems = check_stopped([s])
    assert not problems, problems


NAMES = iter(range(1000))


@pytest.fixture
def c(srv):
    """A session with a new folder of the ten messages selected; their
    UIDs in c.uids."""
    conn = srv.session()
    box = "Ctx%d" % next(NAMES)
    conn.ok("CREATE " + box)
    parts = ["APPEND " + box]
    for k in range(1, N + 1):
        flags = "\\Flagged" if k in FLAGGED else ""
        parts += [" (%s) " % flags,
                  Literal(message(k, subject=b"s%02d" % (N + 1 - k)), plus=True)]
    conn.ok(*parts)
    conn.select(box)
    conn.box = box
    conn.uids = [int(f["UID"]) for _, f in sorted(conn.ok("FETCH 1:* UID").fetches().items())]
    yield conn
    conn.close()


def esearch(r):
    out = r.data("ESEARCH")
    assert len(out) == 1, r
    return out[0].decode()


def partial(r):
    """The PARTIAL item of the one ESEARCH response: (range, set)."""
    line = esearch(r)
    head, sep, rest = line.partition(" PARTIAL (")
    assert sep, line
    body = rest[:rest.index(")")]
    rng, _, value = body.partition(" ")
    return rng, value


def seqset(nums):
    """The numbers as the server writes them: runs ascending by one."""
    out, i = [], 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        out.append(str(nums[i]) if i == j else "%d:%d" % (nums[i], nums[j]))
        i = j + 1
    return ",".join(out)


def test_first_page(c):
    # RFC 5267 4.4: the first of the results, by position
    assert partial(c.ok("SEARCH RETURN (PARTIAL 1:3) ALL")) == ("1:3", "1:3")
    r = c.ok("UID SEARCH RETURN (PARTIAL 1:3) ALL")
    assert esearch(r).startswith('(TAG "%s") UID ' % r.tag.decode()), r
    assert partial(r) == ("1:3", seqset(c.uids[:3]))


def test_pages_of_a_subset(c):
    # FLAGGED finds 2 3 5 7 8: positions 2..4 are 3 5 7
    assert partial(c.ok("SEARCH RETURN (PARTIAL 2:4) FLAGGED")) == ("2:4", "3,5,7")
    r = c.ok("UID SEARCH RETURN (PARTIAL 2:4) FLAGGED")
    assert partial(r) == ("2:4", seqset([c.uids[k - 1] for k in (3, 5, 7)]))
    # the range may be written either way round
    assert partial(c.ok("SEARCH RETURN (PARTIAL 4:2) FLAGGED")) == ("2:4", "3,5,7")


def test_negative_ranges(c):
    # RFC 9394: -1 is the last message found
    assert partial(c.ok("SEARCH RETURN (PARTIAL -1:-3) ALL")) == ("-1:-3", "8:10")
    assert partial(c.ok("SEARCH RETURN (PARTIAL -3:-1) ALL")) == ("-1:-3", "8:10")
    assert partial(c.ok("SEARCH RETURN (PARTIAL -2:-2) FLAGGED")) == ("-2:-2", "7")
    r = c.ok("UID SEARCH RETURN (PARTIAL -1:-2) FLAGGED")
    assert partial(r) == ("-1:-2", seqset([c.uids[6], c.uids[7]]))


def test_ranges_past_the_end(c):
    assert partial(c.ok("SEARCH RETURN (PARTIAL 8:500) ALL")) == ("8:500", "8:10")
    assert partial(c.ok("SEARCH RETURN (PARTIAL 11:500) ALL")) == ("11:500", "NIL")
    assert partial(c.ok("SEARCH RETURN (PARTIAL -4:-500) FLAGGED")) == ("-4:-500", "2:3")
    assert partial(c.ok("SEARCH RETURN (PARTIAL -6:-9) FLAGGED")) == ("-6:-9", "NIL")
    assert partial(c.ok("SEARCH RETURN (PARTIAL 1:4294967295) FLAGGED")) == \
        ("1:4294967295", "2:3,5,7:8")


def test_empty_result(c):
    r = c.ok("SEARCH RETURN (PARTIAL 1:5 COUNT) KEYWORD nothing")
    assert partial(r) == ("1:5", "NIL")
    assert " COUNT 0" in esearch(r), r
    r = c.ok("UID SEARCH RETURN (PARTIAL -1:-5) KEYWORD nothing")
    assert partial(r) == ("-1:-5", "NIL")


def test_with_min_max_count(c):
    r = c.ok("SEARCH RETURN (MIN MAX COUNT PARTIAL 2:2) FLAGGED")
    line = esearch(r)
    assert " MIN 2" in line and " MAX 8" in line and " COUNT 5" in line, line
    assert " ALL " not in line, line
    assert partial(r) == ("2:2", "3")


def test_bad_ranges(srv, c):
    rets = ["PARTIAL 1:3 ALL", "ALL PARTIAL 1:3", "PARTIAL 0:3", "PARTIAL 1:0",
                "PARTIAL -1:3", "PARTIAL 1:-3", "PARTIAL", "PARTIAL 1", "PARTIAL 1:",
                "PARTIAL 1:2 PARTIAL 3:4", "PARTIAL 1:4294967296", "PARTIAL -0:-1",
                "PARTIAL 1:2x", "PARTIAL 1,2", "PARTIAL *:2", "PARTIAL (1:2)"]
    # a few errors per session: too many would end it
    for k in range(0, len(rets), 2):
        with srv.session(select=c.box) as s:
            for ret in rets[k:k + 2]:
                s.bad("SEARCH RETURN (%s) ALL" % ret)
                s.bad("SORT RETURN (%s) (SUBJECT) UTF-8 ALL" % ret)
            # the session goes on
            assert partial(s.ok("SEARCH RETURN (PARTIAL 1:1) ALL")) == ("1:1", "1")


def test_sort(c):
    # SUBJECT reverses the messages: positions count in the sort order
    r = c.ok("SORT RETURN (PARTIAL 1:3) (SUBJECT) UTF-8 ALL")
    assert partial(r) == ("1:3", "10,9,8")
    r = c.ok("SORT RETURN (PARTIAL -1:-2) (SUBJECT) UTF-8 ALL")
    assert partial(r) == ("-1:-2", "2,1")
    r = c.ok("UID SORT RETURN (PARTIAL 2:3 COUNT) (SUBJECT) UTF-8 FLAGGED")
    assert esearch(r).startswith('(TAG "%s") UID ' % r.tag.decode()), r
    assert " COUNT 5" in esearch(r)
    assert partial(r) == ("2:3", "%d,%d" % (c.uids[6], c.uids[4]))
    r = c.ok("SORT RETURN (PARTIAL 6:9) (SUBJECT) UTF-8 FLAGGED")
    assert partial(r) == ("6:9", "NIL")
    # ARRIVAL keeps the order: a run is written as one
    r = c.ok("SORT RETURN (PARTIAL 3:5) (ARRIVAL) UTF-8 ALL")
    assert partial(r) == ("3:5", "3:5")


def test_save(c):
    # PARTIAL without ALL or COUNT: "$" is what PARTIAL returned
    r = c.ok("SEARCH RETURN (SAVE PARTIAL 2:3) FLAGGED")
    assert partial(r) == ("2:3", "3,5")
    assert sorted(c.ok("FETCH $ UID").fetches()) == [3, 5]
    r = c.ok("SEARCH RETURN (SAVE MIN PARTIAL -1:-1) FLAGGED")
    assert partial(r) == ("-1:-1", "8")
    assert sorted(c.ok("FETCH $ UID").fetches()) == [2, 8]
    # with COUNT: every message found
    c.ok("SEARCH RETURN (SAVE COUNT PARTIAL 1:1) FLAGGED")
    assert sorted(c.ok("FETCH $ UID").fetches()) == FLAGGED
    # nothing in the range: "$" is empty
    c.ok("SEARCH RETURN (SAVE PARTIAL 9:10) FLAGGED")
    assert c.ok("UID SEARCH $").search() == []
    # a BAD one leaves "$" as it was
    c.ok("SEARCH RETURN (SAVE PARTIAL 1:2) FLAGGED")
    c.bad("SEARCH RETURN (SAVE ALL PARTIAL 1:2) ALL")
    assert sorted(c.ok("FETCH $ UID").fetches()) == [2, 3]



# ---- CONTEXT=SEARCH and CONTEXT=SORT ----


def updates(r, tag):
    """The ESEARCH items for tag in r's untagged responses, in order:
    [(kind, position, value), ...]."""
    out = []
    for d in r.data("ESEARCH"):
        d = d.decode()
        if not d.startswith('(TAG "%s")' % tag):
            continue
        for m in re.finditer(r"(ADDTO|REMOVEFROM) \((\d+) ([^)]*)\)", d):
            out.append((m.group(1), int(m.group(2)), m.group(3)))
    return out


def noop_until(conn, tag, timeout=10):
    """NOOP until an update for tag comes (a delivery may take a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        r = conn.ok("NOOP")
        got = updates(r, tag)
        if got or time.monotonic() > deadline:
            return got, r
        time.sleep(0.1)


def new_box(conn, subjects, flags=""):
    box = "Upd%d" % next(NAMES)
    conn.ok("CREATE " + box)
    for k, subj in enumerate(subjects, 1):
        conn.ok("APPEND %s (%s) " % (box, flags), Literal(message(k, subject=subj), plus=True))
    return box


def uids(conn):
    return sorted(conn.ok("UID SEARCH ALL").search())


def test_capability(srv):
    with srv.session() as conn:
        caps = conn.ok("CAPABILITY").data("CAPABILITY")[0].decode().split()
        assert "CONTEXT=SEARCH" in caps and "CONTEXT=SORT" in caps, caps


def test_update_search_with_delivery(srv):
    a = srv.session(select="INBOX")
    b = srv.session(select="INBOX")
    try:
        # start from a known INBOX: everything in it seen
        if uids(a):
            a.ok("STORE 1:* +FLAGS.SILENT (\\Seen)")
        for k in range(3):
            b.ok("APPEND INBOX ", Literal(message(k + 1), plus=True))
        a.ok("NOOP")
        u = uids(a)[-3:]
        r = a.ok("UID SEARCH RETURN (ALL UPDATE) UNSEEN")
        assert esearch(r).endswith("UID ALL %s" % seqset(u)), r
        assert updates(r, r.tag.decode()) == []
        tag = r.tag.decode()
        # another session's flag change: the message leaves the result
        b.ok("UID STORE %d +FLAGS (\\Seen)" % u[0])
        got, r = noop_until(a, tag)
        assert got == [("REMOVEFROM", 0, str(u[0]))], r
        # and comes back
        b.ok("UID STORE %d -FLAGS (\\Seen)" % u[0])
        got, r = noop_until(a, tag)
        assert got == [("ADDTO", 0, str(u[0]))], r
        # a delivery over SMTP is unseen: ADDTO
        srv.deliver(ALICE, message(40))
        got, r = noop_until(a, tag)
        assert r.numbered("EXISTS"), r
        new = uids(a)[-1]
        assert got == [("ADDTO", 0, str(new))], r
        # an expunge by the other session: EXPUNGE, then REMOVEFROM
        b.ok("UID STORE %d +FLAGS.SILENT (\\Deleted)" % u[1])
        b.ok("UID EXPUNGE %d" % u[1])
        got, r = noop_until(a, tag)
        assert r.numbered("EXPUNGE"), r
        assert got == [("REMOVEFROM", 0, str(u[1]))], r
        # nothing changed: nothing said
        assert updates(a.ok("NOOP"), tag) == []
        # CANCELUPDATE ends it
        a.ok('CANCELUPDATE "%s"' % tag)
        b.ok("UID STORE %d +FLAGS (\\Seen)" % u[2])
        b.ok("APPEND INBOX ", Literal(message(41), plus=True))
        time.sleep(0.3)
        r = a.ok("NOOP")
        assert r.numbered("EXISTS") and not r.data("ESEARCH"), r
        a.bad('CANCELUPDATE "%s"' % tag)
    finally:
        a.close()
        b.close()


def test_update_by_sequence_numbers_and_own_store(srv):
    a = srv.session()
    box = new_box(a, [b"one", b"two", b"three"])
    a.select(box)
    b = srv.session(select=box)
    try:
        r = a.ok("SEARCH RETURN (COUNT UPDATE) UNSEEN")
        tag = r.tag.decode()
        assert " COUNT 3" in esearch(r), r
        # the session's own STORE counts too; numbers are sequence numbers
        r = a.ok("STORE 2 +FLAGS (\\Seen)")
        assert updates(r, tag) == [("REMOVEFROM", 0, "2")], r
        b.ok("APPEND %s " % box, Literal(message(4), plus=True))
        got, r = noop_until(a, tag)
        assert got == [("ADDTO", 0, "4")], r
        # an expunged message: its EXPUNGE says it all for sequence numbers
        b.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        b.ok("EXPUNGE")
        r = a.ok("NOOP")
        assert r.numbered("EXPUNGE") == [1] and updates(r, tag) == [], r
        b.ok("STORE 1 +FLAGS (\\Seen)")        # "two", now 1, already seen
        b.ok("STORE 2 +FLAGS (\\Seen)")        # "three"
        got, r = noop_until(a, tag)
        assert got == [("REMOVEFROM", 0, "2")], r
    finally:
        a.close()
        b.close()


def test_update_sort_positions(srv):
    a = srv.session()
    box = new_box(a, [b"b", b"d", b"f"])
    a.select(box)
    b = srv.session(select=box)
    try:
        u = uids(a)
        r = a.ok("UID SORT RETURN (ALL UPDATE) (SUBJECT) UTF-8 UNSEEN")
        tag = r.tag.decode()
        assert esearch(r).endswith("UID ALL %s" % seqset(u)), r
        # "c" goes second
        b.ok("APPEND %s " % box, Literal(message(4, subject=b"c"), plus=True))
        got, r = noop_until(a, tag)
        c_uid = uids(a)[-1]
        assert got == [("ADDTO", 2, str(c_uid))], r
        # b c d f: "d" leaves from the third place
        b.ok("UID STORE %d +FLAGS (\\Seen)" % u[1])
        got, r = noop_until(a, tag)
        assert got == [("REMOVEFROM", 3, str(u[1]))], r
        # b c f; "a" and "e" together: first and fourth once added
        b.ok("APPEND %s " % box, Literal(message(5, subject=b"e"), plus=True))
        b.ok("APPEND %s " % box, Literal(message(6, subject=b"a"), plus=True))
        got, r = noop_until(a, tag)
        e_uid, a_uid = uids(a)[-2:]
        assert got == [("ADDTO", 1, str(a_uid)), ("ADDTO", 4, str(e_uid))], r
        # a b c e f: "b" and "f" go, the last first
        b.ok("UID STORE %d,%d +FLAGS (\\Seen)" % (u[0], u[2]))
        got, r = noop_until(a, tag)
        assert got == [("REMOVEFROM", 5, str(u[2])), ("REMOVEFROM", 2, str(u[0]))], r
        # a sort by sequence numbers, reverse order, during IDLE
        r = a.ok("SORT RETURN (UPDATE) (REVERSE SUBJECT) UTF-8 ALL")
        tag2 = r.tag.decode()
        a.send(b"I1 IDLE\r\n")
        m, _ = a.read_until(rb"^\+", timeout=10)
        assert m is not None
        b.ok("APPEND %s " % box, Literal(message(7, subject=b"z"), plus=True))
        m, got = a.read_until(rb'^\* ESEARCH \(TAG "%s"\)' % tag2.encode(), timeout=10)
        assert m is not None, got
        # z is first in reverse order; it is message 7
        assert m.endswith(b"ADDTO (1 7)"), m
        a.send(b"DONE\r\n")
        assert a.read_tagged("I1").status == "OK"
    finally:
        a.close()
        b.close()


def test_update_bounded(srv):
    a = srv.session()
    box = new_box(a, [b"x"])
    a.select(box)
    try:
        tags = []
        for k in range(5):
            r = a.ok("SEARCH RETURN (UPDATE) ALL")
            assert not r.find("NOUPDATE"), r
            tags.append(r.tag.decode())
        r = a.ok("SEARCH RETURN (MIN UPDATE) ALL")
        assert r.find(r'^\* NO \[NOUPDATE "%s"\]' % r.tag.decode()), r
        assert " MIN 1" in esearch(r), r
        # UNSELECT ends them all: CANCELUPDATE knows none
        a.ok('CANCELUPDATE "%s" "%s"' % (tags[0], tags[1]))
        a.bad('CANCELUPDATE "%s"' % tags[0])
        r = a.ok("SEARCH RETURN (UPDATE) ALL")
        assert not r.find("NOUPDATE"), r
        a.ok("UNSELECT")
        a.select(box)
        a.bad('CANCELUPDATE "%s"' % tags[2])
        r = a.ok("SEARCH RETURN (UPDATE) ALL")
        assert not r.find("NOUPDATE"), r
    finally:
        a.close()


def test_update_tag_used_again(srv):
    a = srv.session()
    box = new_box(a, [b"x", b"y"])
    a.select(box)
    b = srv.session(select=box)
    try:
        assert a.command("UID SEARCH RETURN (UPDATE) UNSEEN", tag="R1").status == "OK"
        # the same tag again: this search replaces the first
        assert a.command("UID SEARCH RETURN (UPDATE) SEEN", tag="R1").status == "OK"
        u = uids(a)
        b.ok("UID STORE %d +FLAGS (\\Seen)" % u[0])
        got, r = noop_until(a, "R1")
        assert got == [("ADDTO", 0, str(u[0]))], r
        assert len(r.data("ESEARCH")) == 1, r
    finally:
        a.close()
        b.close()
