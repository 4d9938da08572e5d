"""IMAP RFC 5267 PARTIAL result option of ESEARCH and ESORT (negative
ranges counting from the end, RFC 9394): ranges in either order, past the
end, empty results, UID against sequence numbers, with SORT, with SAVE
(SEARCHRES), and the BAD answers (PARTIAL with ALL, zero, mixed signs).
One server for the module."""

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

