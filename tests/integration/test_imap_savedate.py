"""IMAP SAVEDATE (RFC 8514): FETCH SAVEDATE is the time the message was
saved into its folder (APPEND, COPY, MOVE, delivery), not its INTERNALDATE;
it survives flag changes and a restart; a file whose name does not tell
(another program's naming) has NIL. SEARCH SAVEDBEFORE, SAVEDON,
SAVEDSINCE (a message without a save date is compared by its INTERNALDATE)
and SAVEDATESUPPORTED (every message). One server for the module (SQLite),
restarted once."""

import re
import time

import pytest

from imap_util import (ALICE, PASSWORD, Literal, check_stopped, imap_date,  # noqa: F401
                       imap_instance, message, put, reset_maildirs, start_imap)

from harness.conn import capabilities

CAROL = "carol@example.test"
OLD = 1500000000                      # 14-Jul-2017 02:40:00 +0000
OLD_DATE = "14-Jul-2017 02:40:00 +0000"


@pytest.fixture(scope="module")
def box(imap_instance):
    reset_maildirs(imap_instance)
    imap_instance.add_user(CAROL, PASSWORD)
    holder = {"srv": start_imap(imap_instance)}
    yield holder
    problems = check_stopped([holder["srv"]])
    assert not problems, problems


@pytest.fixture
def srv(box):
    return box["srv"]


@pytest.fixture
def c(srv):
    conn = srv.session()
    yield conn
    conn.close()


def epoch(s):
    return int(time.mktime(time.strptime(s, "%d-%b-%Y %H:%M:%S +0000")) - time.timezone)


def savedates(c, rng="1:*"):
    """{UID: SAVEDATE as seconds or None}."""
    r = c.ok("UID FETCH %s (SAVEDATE INTERNALDATE)" % rng)
    out = {}
    for d in r.fetches().values():
        v = d["SAVEDATE"]
        out[int(d["UID"])] = None if v is None else epoch(v.decode() if isinstance(v, bytes) else v)
    return out


def search(c, keys):
    r = c.ok("UID SEARCH " + keys)
    return [int(x) for x in r.data("SEARCH")[0].split()]


def day(t):
    return imap_date(t)[:11]


def uids_by_subject(c):
    """{k: UID} of the selected folder's messages made by message(k)."""
    r = c.ok("UID FETCH 1:* BODY.PEEK[HEADER.FIELDS (SUBJECT)]")
    out = {}
    for d in r.fetches().values():
        subj = d["BODY[HEADER.FIELDS (SUBJECT)]"].decode()
        out[int(re.search(r"(\d+)\s*$", subj).group(1))] = int(d["UID"])
    return out


def test_capability(srv):
    with srv.conn() as c:
        assert "SAVEDATE" not in capabilities(c.ok("CAPABILITY").data("CAPABILITY")[0])
        c.login()
        assert "SAVEDATE" in capabilities(c.ok("CAPABILITY").data("CAPABILITY")[0])
        c.logout()


def test_append_copy_move_deliver(box, srv):
    """APPEND with an old INTERNALDATE: SAVEDATE is now. A message saved
    in 2017 (its file named then) keeps that date, and its COPY and MOVE
    into another folder are saved now; a delivery too. The same after
    flag changes and a restart."""
    inst = srv.instance
    put(inst, CAROL, message(1), name="%d.M1P1.oldhost" % OLD, mtime=OLD - 3600)
    srv.deliver(CAROL, message(2))
    with srv.session(user=CAROL) as c:
        c.ok("CREATE Other")
        t0 = int(time.time())
        r = c.ok('APPEND INBOX (\\Seen) "%s" ' % "01-Jan-2000 00:00:00 +0000",
                 Literal(message(3), plus=True))
        t1 = int(time.time())
        c.select("INBOX")
        got = savedates(c)
        assert got[1] == OLD, got
        assert t0 - 60 <= got[2] <= t1, got         # delivered just before
        assert t0 <= got[3] <= t1, got
        r = c.ok("UID FETCH 3 (INTERNALDATE SAVEDATE)")
        d = r.fetches()[3]
        assert d["INTERNALDATE"] == b"01-Jan-2000 00:00:00 +0000", d
        assert re.match(rb"\d\d-[A-Z][a-z]{2}-\d{4} \d\d:\d\d:\d\d \+0000$", d["SAVEDATE"]), d
        c.ok("UID STORE 1:* +FLAGS (\\Flagged)")
        assert savedates(c) == got
        t2 = int(time.time())
        c.ok("UID COPY 1 Other")
        c.ok("UID MOVE 1 Other")
        t3 = int(time.time())
        c.select("Other")
        other = savedates(c)
        assert len(other) == 2
        assert all(t2 <= v <= t3 for v in other.values()), other
        c.logout()
    srv = box["srv"]
    srv.stop()
    box["srv"] = srv = start_imap(inst)
    with srv.session(user=CAROL) as c:
        c.select("INBOX")
        assert savedates(c) == {k: v for k, v in got.items() if k != 1}
        c.logout()


def test_unknown_savedate_is_nil(c, srv):
    """A file named without a leading time (or with one in the future) has
    no save date: NIL."""
    inst = srv.instance
    put(inst, ALICE, message(1), folder="Trash", name="nodate.abc", mtime=OLD)
    put(inst, ALICE, message(2), folder="Trash", name="%d.M1.future" % (time.time() + 10 * 86400))
    c.select("Trash")
    assert savedates(c) == {1: None, 2: None}
    r = c.ok("FETCH 1 SAVEDATE")
    assert r.fetches()[1]["SAVEDATE"] is None


def test_search_saved_keys(c, srv):
    """SAVEDBEFORE/SAVEDON/SAVEDSINCE on the day of the save date (UTC),
    the INTERNALDATE for a message without one; SAVEDATESUPPORTED finds
    every message; bad dates are BAD."""
    inst = srv.instance
    c.ok("CREATE Saved")
    put(inst, ALICE, message(1), folder="Saved", name="%d.M1P1.h" % OLD, mtime=OLD + 86400 * 400)
    put(inst, ALICE, message(2), folder="Saved", name="foreign-name", mtime=OLD + 86400)
    c.ok('APPEND Saved "%s" ' % OLD_DATE, Literal(message(3), plus=True))
    c.select("Saved")
    u = uids_by_subject(c)
    now = time.time()
    today, tomorrow = day(now), day(now + 86400)
    assert search(c, "SAVEDATESUPPORTED") == [1, 2, 3]
    assert search(c, "NOT SAVEDATESUPPORTED") == []
    assert search(c, "SAVEDON 14-Jul-2017") == sorted(u[k] for k in (1,))
    assert search(c, "SAVEDON 15-Jul-2017") == sorted(u[k] for k in (2,))      # its INTERNALDATE
    assert search(c, "SAVEDON " + today) == sorted(u[k] for k in (3,))
    assert search(c, "SAVEDSINCE " + today) == sorted(u[k] for k in (3,))
    assert search(c, "SAVEDSINCE 15-Jul-2017") == sorted(u[k] for k in (2, 3,))
    assert search(c, "SAVEDBEFORE 15-Jul-2017") == sorted(u[k] for k in (1,))
    assert search(c, "SAVEDBEFORE " + today) == sorted(u[k] for k in (1, 2,))
    assert search(c, "SAVEDBEFORE " + tomorrow) == sorted(u[k] for k in (1, 2, 3,))
    assert search(c, "SAVEDSINCE " + tomorrow) == []
    # INTERNALDATE keys are not the save date
    assert search(c, "ON 14-Jul-2017") == sorted(u[k] for k in (3,))
    assert search(c, "OR SAVEDON 14-Jul-2017 SAVEDON 15-Jul-2017") == sorted(u[k] for k in (1, 2,))
    for bad in ("SAVEDON", "SAVEDON 32-Jul-2017", "SAVEDBEFORE yesterday",
                "SAVEDATESUPPORTED 1-Jan-2000x"):
        c.bad("UID SEARCH " + bad)
