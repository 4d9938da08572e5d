"""IMAP QRESYNC (RFC 7162 section 3.2): ENABLE QRESYNC, SELECT/EXAMINE
(QRESYNC (uidvalidity modseq [known-uids [seq-match-data]])) with VANISHED
(EARLIER) and FETCH of what changed, UID FETCH (CHANGEDSINCE n VANISHED),
VANISHED instead of EXPUNGE, [CLOSED] on a second SELECT. The RFC's
examples, two sessions and an SMTP delivery, concurrent expunges, a
restart, and a folder that forgot its expunges (every missing UID is
reported). SQLite."""

import os
import re
import threading

from imap_util import (ALICE, deliver, folder_dir, imap_inst,  # noqa: F401 (fixtures)
                       imap_instance, imap_server, imap_start, message, put_many)

from harness.conn import parse


def highest(r):
    v = [re.search(r"\[HIGHESTMODSEQ (\d+)\]", u) for u in r.find(r"HIGHESTMODSEQ")]
    v = [int(m.group(1)) for m in v if m]
    assert len(v) == 1, r
    return v[0]


def uidvalidity(r):
    v = [re.search(r"\[UIDVALIDITY (\d+)\]", u) for u in r.find(r"UIDVALIDITY")]
    return [int(m.group(1)) for m in v if m][0]


def uid_set(text):
    """'1:3,5' -> {1, 2, 3, 5}"""
    out = set()
    for part in text.split(","):
        lo, _, hi = part.partition(":")
        lo, hi = int(lo), int(hi or lo)
        out.update(range(min(lo, hi), max(lo, hi) + 1))
    return out


def vanished(r, earlier=True):
    """The UIDs of the VANISHED responses (EARLIER or not)."""
    out = set()
    for d in r.data("VANISHED"):
        d = d.decode()
        if d.upper().startswith("(EARLIER) "):
            if not earlier:
                continue
            d = d[len("(EARLIER) "):]
        elif earlier:
            continue
        out |= uid_set(d)
    return out


def qsession(srv):
    c = srv.session()
    r = c.ok("ENABLE QRESYNC")
    assert r.data("ENABLED") == [b"QRESYNC"], r
    return c


def state(srv):
    """(uidvalidity, highestmodseq, {uid: flags}) of INBOX, from a fresh
    QRESYNC session."""
    with qsession(srv) as c:
        r = c.ok("SELECT INBOX")
        uv, h = uidvalidity(r), highest(r)
        f = c.ok("UID FETCH 1:* (FLAGS)").fetches()
        c.logout()
    return uv, h, {int(d["UID"]): set(d["FLAGS"]) - {"\\Recent"} for d in f.values()}


def test_capability_enable_and_bad_parameters(imap_server):
    put_many(imap_server.instance, ALICE, 2)
    with imap_server.session() as c:
        assert "QRESYNC" in c.capability()
        # not enabled: the parameter is refused
        c.bad("SELECT INBOX (QRESYNC (1 1))")
        r = c.ok("ENABLE QRESYNC CONDSTORE")
        assert r.data("ENABLED") == [b"CONDSTORE QRESYNC"], r
        c.bad("SELECT INBOX (QRESYNC)")
        c.bad("SELECT INBOX (QRESYNC ())")
        c.bad("SELECT INBOX (QRESYNC (1))")
        c.bad("SELECT INBOX (QRESYNC (0 1))")
        c.bad("SELECT INBOX (QRESYNC (1 0))")
        c.bad("SELECT INBOX (QRESYNC (1 x))")
        c.bad("SELECT INBOX (QRESYNC (1 1 1:x))")
        c.bad("SELECT INBOX (QRESYNC (1 1 1:5 (1:2)))")
        c.bad("SELECT INBOX (QRESYNC (1 1 1:5 (1:2 x)))")
        c.bad("SELECT INBOX (QRESYNC (1 1) QRESYNC (1 1))")
        # a wrong UIDVALIDITY: a plain select (the client starts over)
        r = c.ok("SELECT INBOX (QRESYNC (1 1 1:5 (1:2 1:2)))")
        assert highest(r) >= 1 and not r.data("VANISHED") and not r.fetches(), r
        c.logout()


def test_select_qresync_after_changes_and_delivery(imap_server):
    """RFC 7162 3.2.5.1: a client that last saw modseq h learns, at SELECT,
    the UIDs expunged since (VANISHED (EARLIER)) and the messages changed
    since (FETCH with UID, FLAGS and MODSEQ), including a new arrival."""
    put_many(imap_server.instance, ALICE, 5)
    uv, h, _ = state(imap_server)
    with imap_server.session(select="INBOX") as b:
        b.ok("STORE 2 +FLAGS.SILENT (\\Seen)")
        b.ok("STORE 3,4 +FLAGS.SILENT (\\Deleted)")
        b.ok("EXPUNGE")
        b.logout()
    deliver(imap_server, ALICE, message(6))
    with qsession(imap_server) as a:
        r = a.ok("SELECT INBOX (QRESYNC (%d %d))" % (uv, h))
        assert vanished(r) == {3, 4}, r
        f = {int(d["UID"]): d for d in r.fetches().values()}
        assert set(f) == {2, 6}, r
        assert "\\Seen" in f[2]["FLAGS"] and int(f[2]["MODSEQ"][0]) > h, r
        h2 = highest(r)
        assert h2 >= max(int(d["MODSEQ"][0]) for d in f.values())
        # VANISHED comes before the FETCHes
        kinds = [u.split()[1] for u in r.untagged if re.match(rb"\* (VANISHED|\d+ FETCH)", u)]
        assert kinds[0] == b"VANISHED", r
        # known UIDs narrow both (RFC 7162 3.2.5.1)
        r = a.ok("EXAMINE INBOX (QRESYNC (%d %d 1:3))" % (uv, h))
        assert r.find(r"^\* OK \[CLOSED\]"), r
        assert vanished(r) == {3}, r
        assert {int(d["UID"]) for d in r.fetches().values()} == {2}, r
        # with seq-match-data (accepted; the answer stays right)
        r = a.ok("SELECT INBOX (QRESYNC (%d %d 1:6 (1:3 1:3)))" % (uv, h))
        assert vanished(r) == {3, 4}, r
        # nothing changed since h2
        r = a.ok("SELECT INBOX (QRESYNC (%d %d))" % (uv, h2))
        assert not r.data("VANISHED") and not r.fetches(), r
        a.logout()


def test_uid_fetch_changedsince_vanished(imap_server):
    """RFC 7162 3.2.6: UID FETCH ... (CHANGEDSINCE n VANISHED)."""
    put_many(imap_server.instance, ALICE, 6)
    with qsession(imap_server) as a, imap_server.session(select="INBOX") as b:
        h = highest(a.ok("SELECT INBOX"))
        b.ok("STORE 1,5 +FLAGS.SILENT (\\Deleted)")
        b.ok("STORE 2 +FLAGS.SILENT (\\Flagged)")
        b.ok("EXPUNGE")
        # the UID set limits both; '*' is the highest UID
        r = a.ok("UID FETCH 2:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % h)
        assert vanished(r) == {5}, r
        # the expunges themselves come as VANISHED (not EXPUNGE) once
        # the session may be told (a UID command may tell at once)
        r2 = a.ok("NOOP")
        assert not r.numbered("EXPUNGE") and not r2.numbered("EXPUNGE"), (r, r2)
        assert vanished(r, earlier=False) | vanished(r2, earlier=False) == {1, 5}, (r, r2)
        r = a.ok("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % h)
        assert vanished(r) == {1, 5}, r
        f = {int(d["UID"]): d for d in r.fetches().values()}
        assert set(f) == {2} and "\\Flagged" in f[2]["FLAGS"], r
        # VANISHED only with UID FETCH
        a.bad("FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % h)
        a.bad("UID FETCH 1:* (FLAGS) (VANISHED)")
        a.logout()
        b.logout()


def test_vanished_instead_of_expunge(imap_server):
    """RFC 7162 3.2.10: with QRESYNC on, EXPUNGE responses become VANISHED,
    for the session's own EXPUNGE and another session's."""
    put_many(imap_server.instance, ALICE, 4)
    with qsession(imap_server) as a, qsession(imap_server) as b:
        a.ok("SELECT INBOX")
        b.ok("SELECT INBOX")
        a.ok("STORE 2:3 +FLAGS.SILENT (\\Deleted)")
        r = a.ok("EXPUNGE")
        assert not r.numbered("EXPUNGE") and vanished(r, earlier=False) == {2, 3}, r
        # a delivery meanwhile: B learns both at its next command, and
        # the new message's MODSEQ is above what B saw
        r0 = b.ok("STATUS INBOX (HIGHESTMODSEQ)")
        hb = int(parse(r0.data("STATUS")[0])[1][1])
        deliver(imap_server, ALICE, message(5))
        r = b.ok("NOOP")
        if not r.numbered("EXISTS"):
            r2 = b.ok("NOOP")       # the delivery may land a moment later
            r.untagged += r2.untagged
        r.untagged = r0.untagged + r.untagged   # STATUS may tell at once
        assert not r.numbered("EXPUNGE") and vanished(r, earlier=False) == {2, 3}, r
        assert r.numbered("EXISTS") == [3], r
        f = b.ok("UID FETCH 5 (MODSEQ)").fetches()
        assert int(list(f.values())[0]["MODSEQ"][0]) > hb, f
        r = b.ok("FETCH 1:* (UID)")
        assert sorted(int(d["UID"]) for d in r.fetches().values()) == [1, 4, 5], r
        # UID EXPUNGE too
        b.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
        r = b.ok("UID EXPUNGE 4")
        assert vanished(r, earlier=False) == {4}, r
        a.logout()
        b.logout()
    # a session without QRESYNC still gets EXPUNGE
    with imap_server.session(select="INBOX") as c, qsession(imap_server) as q:
        q.ok("SELECT INBOX")
        q.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        q.ok("EXPUNGE")
        r = c.ok("NOOP")
        assert r.numbered("EXPUNGE") == [1] and not r.data("VANISHED"), r
        c.logout()
        q.logout()


def test_held_back_expunge_lowers_highestmodseq(imap_server):
    """RFC 7162 3.2: while a VANISHED waits (a FETCH may not shift sequence
    numbers) and MODSEQs of later changes go out, the server says a
    HIGHESTMODSEQ from before the expunge."""
    put_many(imap_server.instance, ALICE, 4)
    with qsession(imap_server) as a, imap_server.session(select="INBOX") as b:
        h = highest(a.ok("SELECT INBOX"))
        b.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
        b.ok("EXPUNGE")
        b.ok("STORE 3 +FLAGS.SILENT (\\Flagged)")
        r = a.ok("FETCH 1:* (FLAGS)")
        assert not r.data("VANISHED") and not r.numbered("EXPUNGE"), r
        assert any(b"MODSEQ" in u for u in r.untagged), r
        assert highest(r) <= h, r
        r = a.ok("NOOP")
        assert vanished(r, earlier=False) == {2}, r
        assert not r.find("HIGHESTMODSEQ"), r
        a.logout()
        b.logout()


def test_concurrent_expunges(imap_server):
    """Two sessions expunge overlapping sets at the same time, a delivery
    arrives meanwhile; a client that synced before learns every expunged
    UID, once, and the new message."""
    put_many(imap_server.instance, ALICE, 12)
    uv, h, before = state(imap_server)
    sessions = [imap_server.session(select="INBOX") for _ in range(2)]
    sets = ["1:6", "4:9"]
    for c, s in zip(sessions, sets):
        c.ok("UID STORE %s +FLAGS.SILENT (\\Deleted)" % s)
    errors = []

    def run(c, s):
        try:
            c.ok("UID EXPUNGE %s" % s)
        except Exception as e:      # reported below
            errors.append(e)
    threads = [threading.Thread(target=run, args=(c, s)) for c, s in zip(sessions, sets)]
    for t in threads:
        t.start()
    deliver(imap_server, ALICE, message(13))
    for t in threads:
        t.join(30)
    assert not errors, errors
    for c in sessions:
        c.logout()
        c.close()
    with qsession(imap_server) as a:
        r = a.ok("SELECT INBOX (QRESYNC (%d %d))" % (uv, h))
        assert vanished(r) == set(range(1, 10)), r
        r = a.ok("UID FETCH 1:* (UID)")
        assert sorted(int(d["UID"]) for d in r.fetches().values()) == [10, 11, 12, 13], r
        a.logout()


def test_vanished_survives_restart(imap_inst, imap_start):
    put_many(imap_inst, ALICE, 4)
    srv = imap_start(imap_inst)
    uv, h, _ = state(srv)
    with srv.session(select="INBOX") as c:
        c.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
        c.ok("EXPUNGE")
        c.logout()
    assert srv.stop() == 0
    srv = imap_start(imap_inst)
    with qsession(srv) as a:
        r = a.ok("SELECT INBOX (QRESYNC (%d %d))" % (uv, h))
        assert vanished(r) == {2}, r
        a.logout()


def test_forgotten_expunges_report_every_missing_uid(imap_inst, imap_start):
    """When the folder no longer knows what was expunged since the client's
    modseq (here: its record of expunges is lost), every UID below UIDNEXT
    that is not in the folder is reported (RFC 7162 3.2.5.1 allows it)."""
    put_many(imap_inst, ALICE, 6)
    srv = imap_start(imap_inst)
    uv, h, _ = state(srv)
    with srv.session(select="INBOX") as c:
        c.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
        c.ok("EXPUNGE")
        c.logout()
    _, h1, _ = state(srv)
    os.unlink(os.path.join(folder_dir(imap_inst, ALICE), "petrel-expunged"))
    with srv.session(select="INBOX") as c:
        c.ok("UID STORE 4 +FLAGS.SILENT (\\Deleted)")
        hx = highest(c.ok("EXAMINE INBOX (CONDSTORE)"))
        c.ok("SELECT INBOX")
        c.ok("EXPUNGE")
        c.logout()
    with qsession(srv) as a:
        # from h: not known any more -> every missing UID (2 and 4)
        r = a.ok("SELECT INBOX (QRESYNC (%d %d))" % (uv, h))
        assert vanished(r) == {2, 4}, r
        # within the known UIDs only
        r = a.ok("SELECT INBOX (QRESYNC (%d %d 3:*))" % (uv, h))
        assert vanished(r) == {4}, r
        # from just before that expunge on it is exact again
        r = a.ok("SELECT INBOX (QRESYNC (%d %d))" % (uv, hx))
        assert vanished(r) == {4}, r
        a.logout()
    assert srv.stop() == 0
    # the index removed: modseqs start above h1, every missing UID again
    # (when the UIDVALIDITY is kept)
    os.unlink(os.path.join(folder_dir(imap_inst, ALICE), "petrel-index"))
    srv = imap_start(imap_inst)
    uv2, h2, flags = state(srv)
    assert h2 > h1
    assert len(flags) == 4
    with qsession(srv) as a:
        r = a.ok("SELECT INBOX (QRESYNC (%d %d))" % (uv2, h1))
        if uv2 == uv:
            assert vanished(r) >= {2, 4}, r
        a.logout()


def test_status_and_parse_helpers(imap_server):
    put_many(imap_server.instance, ALICE, 1)
    with qsession(imap_server) as c:
        r = c.ok("STATUS INBOX (HIGHESTMODSEQ UIDVALIDITY)")
        v = parse(r.data("STATUS")[0])[1]
        d = {k.upper(): int(x) for k, x in zip(v[::2], v[1::2])}
        assert d["HIGHESTMODSEQ"] >= 1, r
        c.logout()
