"""IMAP CONDSTORE (RFC 7162 section 3.1): ENABLE CONDSTORE, SELECT/EXAMINE
(CONDSTORE) and HIGHESTMODSEQ, STATUS (HIGHESTMODSEQ), FETCH MODSEQ and
(CHANGEDSINCE n), STORE (UNCHANGEDSINCE n) and [MODIFIED ...], MODSEQ in the
FETCH responses of flag changes once enabled, SEARCH MODSEQ with (MODSEQ n)
and ESEARCH MODSEQ. The RFC's examples, sequence and UID ranges with '*',
two sessions and an SMTP delivery, modseqs across a restart and after the
index is removed (never going back). SQLite."""

import os
import re

from imap_util import (ALICE, crlf, deliver, folder_dir, imap_inst,  # noqa: F401 (fixtures)
                       imap_instance, imap_server, imap_start, message, put_many)

from harness.conn import parse


def highest(r):
    """The HIGHESTMODSEQ response code of a command's untagged OKs."""
    v = [re.search(r"\[HIGHESTMODSEQ (\d+)\]", u) for u in r.find(r"HIGHESTMODSEQ")]
    v = [int(m.group(1)) for m in v if m]
    assert len(v) == 1, r
    return v[0]


def status_modseq(c, mailbox="INBOX"):
    r = c.ok("STATUS %s (HIGHESTMODSEQ MESSAGES)" % mailbox)
    v = parse(r.data("STATUS")[0])[1]
    d = {k.upper(): int(x) for k, x in zip(v[::2], v[1::2])}
    return d["HIGHESTMODSEQ"]


def modseqs(c, rng="1:*", uid=False):
    """{seq: (uid, modseq, flags)} from FETCH rng (UID MODSEQ FLAGS)."""
    r = c.ok("%sFETCH %s (UID MODSEQ FLAGS)" % ("UID " if uid else "", rng))
    out = {}
    for n, d in r.fetches().items():
        out[n] = (int(d["UID"]), int(d["MODSEQ"][0]), set(d["FLAGS"]) - {"\\Recent"})
    return out


def test_capability_and_enable(imap_server):
    with imap_server.session() as c:
        caps = c.capability()
        assert "CONDSTORE" in caps, caps
        r = c.ok("ENABLE CONDSTORE")
        assert r.data("ENABLED") == [b"CONDSTORE"], r
        # already enabled: not named again (RFC 5161 3.1)
        r = c.ok("ENABLE CONDSTORE X-UNKNOWN")
        assert r.data("ENABLED") in ([b""], []), r
        c.logout()


def test_select_highestmodseq(imap_server):
    put_many(imap_server.instance, ALICE, 3)
    with imap_server.session() as c:
        # a plain SELECT says nothing of modseqs
        r = c.ok("SELECT INBOX")
        assert not r.find("HIGHESTMODSEQ"), r
        # SELECT (CONDSTORE) does (RFC 7162 3.1.2.1)
        r = c.ok("SELECT INBOX (CONDSTORE)")
        h = highest(r)
        assert 1 <= h < 2 ** 63
        # EXAMINE too, and the value is the same
        r = c.ok("EXAMINE INBOX (CONDSTORE)")
        assert highest(r) == h
        # every message has a modseq at most the highest
        ms = modseqs(c)
        assert len(ms) == 3 and all(1 <= m <= h for _, m, _ in ms.values()), ms
        # STATUS (HIGHESTMODSEQ) agrees
        assert status_modseq(c) == h
        c.logout()
    # bad parameters
    with imap_server.session() as c:
        c.bad("SELECT INBOX (XYZZY)")
        c.bad("SELECT INBOX CONDSTORE")
        c.bad("SELECT INBOX (QRESYNC (1 1))")     # QRESYNC not enabled
        c.logout()


def test_fetch_modseq_enables_condstore(imap_server):
    """A first FETCH MODSEQ on a selected mailbox gets HIGHESTMODSEQ, and
    from then on flag changes carry MODSEQ."""
    put_many(imap_server.instance, ALICE, 2)
    with imap_server.session(select="INBOX") as c:
        r = c.ok("FETCH 1:* (MODSEQ)")
        h = highest(r)
        assert sorted(r.fetches()) == [1, 2], r
        r = c.ok("STORE 1 +FLAGS (\\Flagged)")
        f = r.fetches()[1]
        assert "\\Flagged" in f["FLAGS"] and int(f["MODSEQ"][0]) > h, r
        c.logout()
    # ENABLE CONDSTORE with a mailbox selected: HIGHESTMODSEQ at once
    with imap_server.session(select="INBOX") as c:
        r = c.ok("ENABLE CONDSTORE")
        assert r.data("ENABLED") == [b"CONDSTORE"] and highest(r) > h, r
        c.logout()
    # so does STATUS (HIGHESTMODSEQ), a CONDSTORE enabling command
    with imap_server.session(select="INBOX") as c:
        r = c.ok("STATUS INBOX (HIGHESTMODSEQ)")
        assert highest(r) > h, r
        r = c.ok("STORE 2 +FLAGS (\\Seen)")
        assert "MODSEQ" in r.fetches()[2], r
        c.logout()


def test_store_bumps_and_changedsince(imap_server):
    """RFC 7162 3.1.4.1: FETCH (CHANGEDSINCE n) returns the messages changed
    since n, with MODSEQ; every STORE gives a new, higher modseq."""
    put_many(imap_server.instance, ALICE, 5)
    with imap_server.session() as c:
        h0 = highest(c.ok("SELECT INBOX (CONDSTORE)"))
        r = c.ok("STORE 2,4 +FLAGS (\\Seen)")
        f = r.fetches()
        m1 = int(f[2]["MODSEQ"][0])
        assert m1 > h0 and int(f[4]["MODSEQ"][0]) == m1, r
        r = c.ok("STORE 4 +FLAGS (\\Answered)")
        m2 = int(r.fetches()[4]["MODSEQ"][0])
        assert m2 > m1
        assert status_modseq(c) == m2
        # CHANGEDSINCE h0: 2 and 4; since m1: only 4; since m2: none
        r = c.ok("FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % h0)
        assert sorted(r.fetches()) == [2, 4], r
        assert all("MODSEQ" in d for d in r.fetches().values()), r
        r = c.ok("FETCH 1:* (UID) (CHANGEDSINCE %d)" % m1)
        assert sorted(r.fetches()) == [4], r
        r = c.ok("FETCH 1:* (UID) (CHANGEDSINCE %d)" % m2)
        assert r.fetches() == {}, r
        # UID FETCH with '*' (the highest UID), and "*:1"
        uids = {n: u for n, (u, _, _) in modseqs(c).items()}
        r = c.ok("UID FETCH %d:* (FLAGS) (CHANGEDSINCE %d)" % (uids[3], h0))
        assert sorted(r.fetches()) == [4], r
        r = c.ok("FETCH *:1 (FLAGS) (CHANGEDSINCE %d)" % h0)
        assert sorted(r.fetches()) == [2, 4], r
        r = c.ok("FETCH * (MODSEQ)")
        assert sorted(r.fetches()) == [5], r
        # CHANGEDSINCE 0: every message
        r = c.ok("FETCH 1:* (UID) (CHANGEDSINCE 0)")
        assert sorted(r.fetches()) == [1, 2, 3, 4, 5], r
        # a store that changes nothing leaves the modseq alone
        r = c.ok("STORE 4 +FLAGS (\\Answered)")
        assert int(r.fetches()[4]["MODSEQ"][0]) == m2, r
        # bad modifiers
        c.bad("FETCH 1 (FLAGS) (CHANGEDSINCE)")
        c.bad("FETCH 1 (FLAGS) (CHANGEDSINCE x)")
        c.bad("FETCH 1 (FLAGS) (CHANGEDSINCE 99999999999999999999)")
        c.bad("FETCH 1 (FLAGS) (CHANGEDSINCE 1 CHANGEDSINCE 2)")
        c.bad("FETCH 1 (FLAGS) (FOO 1)")
        # VANISHED needs UID FETCH and QRESYNC
        c.bad("UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)")
        c.logout()


def test_unchangedsince_rfc_example(imap_server):
    """RFC 7162 3.1.3 examples: a conditional STORE fails for the messages
    changed since; .SILENT still gets FETCH (MODSEQ) for those updated."""
    put_many(imap_server.instance, ALICE, 4)
    with imap_server.session() as a, imap_server.session() as b:
        a.ok("SELECT INBOX (CONDSTORE)")
        b.ok("SELECT INBOX")
        ms = modseqs(a)
        base = max(m for _, m, _ in ms.values())
        # another session changes message 3
        b.ok("STORE 3 +FLAGS.SILENT ($Work)")
        r = a.command("STORE 1:4 (UNCHANGEDSINCE %d) +FLAGS.SILENT (\\Deleted)" % base)
        assert r.status == "OK" and r.code() == "MODIFIED 3", r
        f = r.fetches()
        assert all(int(f[n]["MODSEQ"][0]) > base for n in (1, 2, 4)), r
        assert all("FLAGS" not in f[n] for n in (1, 2, 4)), r     # .SILENT
        # 3 only as the report of B's change (FLAGS with its MODSEQ)
        assert 3 not in f or "$Work" in f[3]["FLAGS"], r
        ms2 = modseqs(a)
        assert "\\Deleted" not in ms2[3][2] and "$Work" in ms2[3][2], ms2
        assert all("\\Deleted" in ms2[n][2] for n in (1, 2, 4)), ms2
        # UID STORE: the MODIFIED set names UIDs
        h = max(m for _, m, _ in ms2.values())
        b.ok("NOOP")
        b.ok("STORE 2 -FLAGS.SILENT (\\Deleted)")
        r = a.command("UID STORE %d,%d (UNCHANGEDSINCE %d) FLAGS (\\Seen)"
                      % (ms2[2][0], ms2[4][0], h))
        assert r.code() == "MODIFIED %d" % ms2[2][0], r
        f = r.fetches()
        assert int(f[4]["UID"]) == ms2[4][0], r
        assert int(f[4]["MODSEQ"][0]) > h, r
        assert set(f[4]["FLAGS"]) - {"\\Recent"} == {"\\Seen"}, r
        # 2 only as the report of B's change
        assert 2 not in f or "\\Deleted" not in f[2]["FLAGS"], r
        # UNCHANGEDSINCE 0 always fails (RFC 7162 3.1.3)
        r = a.command("STORE 1,3 (UNCHANGEDSINCE 0) +FLAGS (\\Flagged)")
        assert r.code() == "MODIFIED 1,3", r
        assert r.fetches() == {}, r
        # with a large enough value it works
        r = a.command("STORE 1 (UNCHANGEDSINCE %d) +FLAGS (\\Flagged)" % (2 ** 62))
        assert r.status == "OK" and r.code() is None, r
        # bad modifiers
        a.bad("STORE 1 (UNCHANGEDSINCE) +FLAGS (\\Seen)")
        a.bad("STORE 1 (UNCHANGEDSINCE -1) +FLAGS (\\Seen)")
        a.bad("STORE 1 (UNCHANGEDSINCE 9223372036854775808) +FLAGS (\\Seen)")
        a.bad("STORE 1 (FOO 1) +FLAGS (\\Seen)")
        a.logout()
        b.logout()


def test_search_modseq(imap_server):
    """RFC 7162 3.1.5: SEARCH MODSEQ, the (MODSEQ n) of the reply, the
    entry-name form, ESEARCH with MODSEQ."""
    put_many(imap_server.instance, ALICE, 4)
    with imap_server.session() as c:
        h0 = highest(c.ok("SELECT INBOX (CONDSTORE)"))
        r = c.ok("STORE 2 +FLAGS.SILENT (\\Draft)")
        r = c.ok("STORE 4 +FLAGS.SILENT (\\Flagged)")
        m4 = int(r.fetches()[4]["MODSEQ"][0])
        r = c.ok("SEARCH MODSEQ %d" % (h0 + 1))
        assert r.data("SEARCH") == [b"2 4 (MODSEQ %d)" % m4], r
        r = c.ok('SEARCH OR NOT MODSEQ %d MODSEQ "/flags/\\\\draft" all %d'
                 % (h0 + 1, m4))
        assert r.data("SEARCH") == [b"1 3 4 (MODSEQ %d)" % m4], r
        r = c.ok("UID SEARCH RETURN (ALL) MODSEQ %d" % m4)
        e = r.data("ESEARCH")[0]
        assert e.endswith(b" MODSEQ %d" % m4) and b" ALL " in e, r
        # SORT too (RFC 7162 3.1.5), and ESORT
        r = c.ok("SORT (REVERSE SUBJECT) UTF-8 MODSEQ %d" % (h0 + 1))
        assert r.data("SORT") == [b"4 2 (MODSEQ %d)" % m4], r
        r = c.ok("SORT RETURN (ALL) (ARRIVAL) UTF-8 MODSEQ %d" % (h0 + 1))
        assert r.data("ESEARCH")[0].endswith(b"ALL 2,4 MODSEQ %d" % m4), r
        # nothing found: no MODSEQ
        r = c.ok("SEARCH MODSEQ %d" % (m4 + 1))
        assert r.data("SEARCH") == [b""], r
        c.bad("SEARCH MODSEQ")
        c.bad("SEARCH MODSEQ abc")
        c.bad('SEARCH MODSEQ "/flags/\\\\draft" weird 5')
        c.bad("SEARCH MODSEQ 9223372036854775808")
        c.logout()


def test_two_sessions_and_a_delivery(imap_server):
    """A has CONDSTORE on; B changes flags and a message arrives by SMTP:
    A's NOOP reports EXISTS and FETCH (FLAGS MODSEQ), and the new message's
    modseq is above everything A saw."""
    put_many(imap_server.instance, ALICE, 2)
    with imap_server.session() as a, imap_server.session(select="INBOX") as b:
        h0 = highest(a.ok("SELECT INBOX (CONDSTORE)"))
        b.ok("STORE 1 +FLAGS.SILENT (\\Seen)")
        deliver(imap_server, ALICE, message(3))
        r = a.ok("NOOP")
        if r.numbered("EXISTS") != [3]:
            r = a.ok("NOOP")        # the delivery may land a moment later
        f = r.fetches()
        assert 1 in f and "\\Seen" in f[1]["FLAGS"] and int(f[1]["MODSEQ"][0]) > h0, r
        ms = modseqs(a)
        assert len(ms) == 3, ms
        assert ms[3][1] > h0 and ms[3][1] <= status_modseq(a)
        # B's later change to the new message, seen through CHANGEDSINCE
        h1 = status_modseq(a)
        b.ok("NOOP")
        b.ok("STORE 3 +FLAGS.SILENT (\\Flagged)")
        r = a.ok("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % h1)
        assert list(r.fetches()) == [3], r
        assert status_modseq(a) > h1
        a.logout()
        b.logout()


def test_modseq_survives_restart_and_reindex(imap_inst, imap_start):
    """Modseqs are in the index: the same after a restart; after the index
    is removed they start again above anything a client saw."""
    put_many(imap_inst, ALICE, 3)
    srv = imap_start(imap_inst)
    with srv.session() as c:
        c.ok("ENABLE CONDSTORE")
        c.ok("SELECT INBOX")
        c.ok("STORE 2 +FLAGS.SILENT (\\Flagged)")
        before = modseqs(c)
        h = status_modseq(c)
        c.logout()
    assert srv.stop() == 0
    srv = imap_start(imap_inst)
    with srv.session() as c:
        assert highest(c.ok("SELECT INBOX (CONDSTORE)")) == h
        assert modseqs(c) == before
        c.logout()
    assert srv.stop() == 0
    os.unlink(os.path.join(folder_dir(imap_inst, ALICE), "petrel-index"))
    srv = imap_start(imap_inst)
    with srv.session() as c:
        h2 = highest(c.ok("SELECT INBOX (CONDSTORE)"))
        assert h2 > h
        ms = modseqs(c)
        assert len(ms) == 3 and all(m > h for _, m, _ in ms.values()), ms
        assert "\\Flagged" in ms[2][2]
        c.ok("STORE 1 +FLAGS.SILENT (\\Seen)")
        assert status_modseq(c) > h2
        c.logout()


def test_append_and_expunge_bump(imap_server):
    put_many(imap_server.instance, ALICE, 2)
    with imap_server.session() as c:
        h0 = highest(c.ok("SELECT INBOX (CONDSTORE)"))
        r = c.append("INBOX", crlf(message(3)))
        assert r.status == "OK", r
        c.ok("NOOP")
        ms = modseqs(c)
        assert ms[3][1] > h0, ms
        h1 = status_modseq(c)
        c.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        h2 = status_modseq(c)
        c.ok("EXPUNGE")
        assert status_modseq(c) > h2 > h1
        c.logout()
