"""IMAP SEARCHRES (RFC 5182): SEARCH RETURN (SAVE) keeps the result as "$",
used wherever a sequence set goes (FETCH, STORE, COPY, MOVE, SEARCH, UID
EXPUNGE and their UID forms), with the ESEARCH result options (RFC 4731) as
the RFC's table says; the RFC's examples 1 to 10; the rules for resetting it
(SELECT, EXAMINE, CLOSE, UNSELECT empty it; an expunged message leaves it; a
failed SEARCH with SAVE empties it, one without SAVE or a BAD one leaves it).
One server for the module (SQLite)."""

import re

import pytest

from imap_util import (ALICE, PASSWORD, Literal, check_stopped, imap_instance,  # noqa: F401
                       message, reset_maildirs, start_imap)

from harness.conn import capabilities

# (flags, INTERNALDATE, From): RFC 5182 example 1's search
# "FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"" finds 2, 5 and 7
MSGS = [
    ("\\Flagged", "01-Jan-1994 10:00:00 +0000", b"Jones <jones@example.org>"),
    ("\\Flagged", "10-Feb-1994 10:00:00 +0000", b"Jones <jones@example.org>"),
    ("", "10-Feb-1994 10:00:00 +0000", b"Jones <jones@example.org>"),
    ("\\Flagged $Junk", "01-Mar-2000 10:00:00 +0000", b"John Smith <js@example.org>"),
    ("\\Flagged", "01-Mar-2000 10:00:00 +0000", b"Jones <jones@example.org>"),
    ("$Junk", "01-Jan-2007 10:00:00 +0000", b"Eric <eric@example.org>"),
    ("\\Flagged $Junk", "01-Jan-2007 10:00:00 +0000", b"Brown <brown@example.org>"),
    ("", "01-Jan-2007 10:00:00 +0000", b"Eric <eric@example.org>"),
]
EXAMPLE1 = 'FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"'


def msg(k):
    frm = MSGS[k - 1][2]
    # message 5 is the only one over 4096 bytes (example 3)
    body = b"x" * 6000 + b"\n" if k == 5 else None
    return message(k, frm=frm, body=body)


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
    """A session with a new folder of the eight messages selected; its
    name in c.box and their UIDs in c.uids."""
    conn = srv.session()
    box = "Res%d" % next(NAMES)
    conn.ok("CREATE " + box)
    parts = ["APPEND " + box]
    for k, (flags, date, _) in enumerate(MSGS, 1):
        parts += [" (%s) \"%s\" " % (flags, date), Literal(msg(k), plus=True)]
    conn.ok(*parts)                 # one MULTIAPPEND
    conn.select(box)
    conn.box = box
    conn.uids = [int(f["UID"]) for _, f in sorted(conn.ok("FETCH 1:* UID").fetches().items())]
    yield conn
    conn.close()


def fetched(r):
    return sorted(r.fetches())


def uids_of(c, seqs):
    return [c.uids[s - 1] for s in seqs]


def saved(c):
    """The sequence numbers "$" holds now (FETCH $)."""
    return fetched(c.ok("FETCH $ UID"))


def esearch(r):
    out = r.data("ESEARCH")
    assert len(out) <= 1, r
    return out[0].decode() if out else None


def test_capability(srv):
    with srv.conn() as c:
        c.login(ALICE, PASSWORD)
        caps = capabilities(c.ok("CAPABILITY").data("CAPABILITY")[0])
        assert "SEARCHRES" in caps and "ESEARCH" in caps


def test_example1_save_then_fetch(c):
    r = c.ok("SEARCH RETURN (SAVE) " + EXAMPLE1)
    # SAVE alone: no SEARCH or ESEARCH response
    assert not r.data("SEARCH") and not r.data("ESEARCH"), r
    r = c.ok("FETCH $ (UID INTERNALDATE FLAGS RFC822.HEADER)")
    f = r.fetches()
    assert sorted(f) == [2, 5, 7], r
    assert [int(f[k]["UID"]) for k in (2, 5, 7)] == uids_of(c, [2, 5, 7])


def test_example2_pipelined(c):
    c.send(b"A282 SEARCH RETURN (SAVE) " + EXAMPLE1.encode() + b"\r\n"
           b"A283 FETCH $ (UID FLAGS)\r\n")
    r1 = c.read_tagged("A282")
    r2 = c.read_tagged("A283")
    assert r1.status == "OK" and r2.status == "OK", (r1, r2)
    assert fetched(r2) == [2, 5, 7], r2


def test_example3_search_in_saved(c):
    c.ok("SEARCH RETURN (SAVE) SINCE 1-Jan-1994 NOT FROM \"Smith\"")
    a = c.ok("UID SEARCH UID $ SMALLER 4096").search()
    b = c.ok("UID SEARCH $ SMALLER 4096").search()
    assert sorted(a) == sorted(b) == uids_of(c, [1, 2, 3, 6, 7, 8]), (a, b)


def test_example4_or_with_saved(c):
    c.ok("SEARCH RETURN (SAVE) " + EXAMPLE1)
    r = c.ok("SEARCH CHARSET UTF-8 (OR $ 1,3000:3021) TEXT ", Literal("message".encode()))
    assert sorted(r.search()) == [1, 2, 5, 7], r


def test_example5_failed_search(c):
    c.ok("SEARCH RETURN (SAVE) " + EXAMPLE1)
    # without SAVE: a NO leaves "$" as it was (2.1)
    r = c.no("SEARCH CHARSET KOI8-R (OR $ 1,3000:3021) TEXT ", Literal(b"XXXX"))
    assert "BADCHARSET" in r.text, r
    assert saved(c) == [2, 5, 7]
    # a BAD leaves it too, with SAVE or without
    c.bad("SEARCH RETURN (SAVE) NOSUCHKEY")
    c.bad("SEARCH RETURN (SAVE BOGUS) ALL")
    c.bad("SEARCH FLAGGED (")
    assert saved(c) == [2, 5, 7]
    # with SAVE: a NO empties it
    r = c.no("SEARCH RETURN (SAVE) CHARSET KOI8-R (OR $ 1,3000:3021) TEXT ",
             Literal(b"XXXX"))
    assert "BADCHARSET" in r.text, r
    assert saved(c) == []


def test_example6_empty_saved(c):
    c.ok('CREATE "Other Messages"')
    r = c.ok('SEARCH RETURN (SAVE) SINCE 28-Oct-2006 NOT FROM "Eric"')
    assert not r.data("ESEARCH"), r
    # messages 7 (Brown) only
    assert saved(c) == [7]
    c.ok("SEARCH RETURN (SAVE) SUBJECT nothing-has-this")
    r = c.ok('COPY $ "Other Messages"')
    assert not r.untagged, r
    assert not c.ok("FETCH $ FLAGS").fetches()
    assert c.ok("SEARCH $").search() == []
    c.ok("STORE $ +FLAGS (\\Seen)")
    assert c.ok("SEARCH SEEN").search() == []
    r = c.ok('STATUS "Other Messages" (MESSAGES)')
    assert b"MESSAGES 0" in r.data("STATUS")[0], r


def test_example7_copy_and_store_pipelined(c):
    c.ok("CREATE Junk%s" % c.box)
    c.send(b"F282 SEARCH RETURN (SAVE) KEYWORD $Junk\r\n"
           b"F283 COPY $ Junk%s\r\n"
           b"F284 STORE $ +FLAGS.Silent (\\Deleted)\r\n" % c.box.encode())
    for t in ("F282", "F283", "F284"):
        r = c.read_tagged(t)
        assert r.status == "OK", r
    assert c.ok("SEARCH DELETED").search() == [4, 6, 7]
    r = c.ok("STATUS Junk%s (MESSAGES)" % c.box)
    assert b"MESSAGES 3" in r.data("STATUS")[0], r


def test_example8_9_later_save_wins(c):
    c.ok("SEARCH RETURN (SAVE) KEYWORD $Junk")
    assert saved(c) == [4, 6, 7]
    r = c.ok('SEARCH RETURN (ALL) SINCE 28-Oct-2006 FROM "Eric"')
    assert esearch(r) == '(TAG "%s") ALL 6,8' % r.tag.decode(), r
    assert saved(c) == [4, 6, 7]        # no SAVE: unchanged
    c.ok("SEARCH FLAGGED")
    assert saved(c) == [4, 6, 7]
    c.ok('SEARCH RETURN (SAVE) SINCE 28-Oct-2006 FROM "Eric"')
    assert saved(c) == [6, 8]


def test_example10_result_options(c):
    crit = 'SINCE 12-Feb-1994 NOT FROM "Smith"'     # 5, 6, 7, 8
    c.ok("SEARCH RETURN (SAVE) ALL")                # every message
    r = c.ok("SEARCH RETURN (ALL) " + crit)
    assert esearch(r) == '(TAG "%s") ALL 5:8' % r.tag.decode(), r
    assert saved(c) == list(range(1, 9))            # unchanged
    r = c.ok("SEARCH RETURN (ALL SAVE) " + crit)
    assert esearch(r) == '(TAG "%s") ALL 5:8' % r.tag.decode(), r
    assert saved(c) == [5, 6, 7, 8]
    r = c.ok("SEARCH RETURN (SAVE MIN) " + crit)
    assert esearch(r) == '(TAG "%s") MIN 5' % r.tag.decode(), r
    assert saved(c) == [5]
    r = c.ok("SEARCH RETURN (MAX SAVE MIN) " + crit)
    assert esearch(r) == '(TAG "%s") MIN 5 MAX 8' % r.tag.decode(), r
    assert saved(c) == [5, 8]
    r = c.ok("SEARCH RETURN (SAVE MAX) " + crit)
    assert esearch(r) == '(TAG "%s") MAX 8' % r.tag.decode(), r
    assert saved(c) == [8]
    r = c.ok("SEARCH RETURN (MAX SAVE MIN COUNT) " + crit)
    assert esearch(r) == '(TAG "%s") MIN 5 MAX 8 COUNT 4' % r.tag.decode(), r
    assert saved(c) == [5, 6, 7, 8]
    r = c.ok("SEARCH RETURN (ALL SAVE MIN) " + crit)
    assert esearch(r) == '(TAG "%s") MIN 5 ALL 5:8' % r.tag.decode(), r
    assert saved(c) == [5, 6, 7, 8]
    # SAVE with MIN and MAX of one message: "$" holds it once
    r = c.ok("SEARCH RETURN (SAVE MIN MAX) FROM Brown")
    assert esearch(r) == '(TAG "%s") MIN 7 MAX 7' % r.tag.decode(), r
    assert saved(c) == [7]
    # nothing found: "$" empty
    r = c.ok("SEARCH RETURN (SAVE COUNT) FROM nobody-at-all")
    assert esearch(r) == '(TAG "%s") COUNT 0' % r.tag.decode(), r
    assert saved(c) == []


def test_dollar_everywhere(c, srv):
    """"$" in each sequence-set place, and across the two forms: set by
    UID SEARCH, used by FETCH, and the other way round."""
    u = c.uids
    c.ok("UID SEARCH RETURN (SAVE) FROM Jones")          # 1, 2, 3, 5
    assert saved(c) == [1, 2, 3, 5]
    r = c.ok("UID FETCH $ FLAGS")
    assert sorted(int(f["UID"]) for f in r.fetches().values()) == uids_of(c, [1, 2, 3, 5])
    c.ok("STORE $ +FLAGS.SILENT ($Jones)")
    assert c.ok("SEARCH KEYWORD $Jones").search() == [1, 2, 3, 5]
    r = c.ok("UID STORE $ -FLAGS ($Jones)")
    assert sorted(r.fetches()) == [1, 2, 3, 5], r
    assert c.ok("SEARCH $ KEYWORD $Jones").search() == []
    assert sorted(c.ok("UID SEARCH $").search()) == uids_of(c, [1, 2, 3, 5])
    assert c.ok("SEARCH NOT $").search() == [4, 6, 7, 8]
    assert c.ok("SEARCH UID $ FLAGGED").search() == [1, 2, 5]
    c.ok("CREATE Copy%s" % c.box)
    r = c.ok("COPY $ Copy%s" % c.box)
    assert r.code().startswith("COPYUID"), r
    r = c.ok("UID COPY $ Copy%s" % c.box)
    assert r.code().startswith("COPYUID"), r
    r = c.ok('STATUS Copy%s (MESSAGES)' % c.box)
    assert b"MESSAGES 8" in r.data("STATUS")[0], r
    # MOVE $: the four go, "$" is left with none of them
    c.ok("CREATE Move%s" % c.box)
    r = c.ok("MOVE $ Move%s" % c.box)
    assert sorted(r.numbered("EXPUNGE"), reverse=True) == r.numbered("EXPUNGE") and \
        len(r.numbered("EXPUNGE")) == 4, r
    assert saved(c) == []
    assert c.ok("SEARCH ALL").search() == [1, 2, 3, 4]
    # UID MOVE $ and UID EXPUNGE $
    c.ok("SEARCH RETURN (SAVE) FROM Eric")              # 2, 4 (were 6, 8)
    r = c.ok("UID MOVE $ Move%s" % c.box)
    assert r.numbered("EXPUNGE") == [4, 2], r
    c.ok("STORE 1:* +FLAGS.SILENT (\\Deleted)")
    c.ok("SEARCH RETURN (SAVE) FROM Smith")             # 1
    r = c.ok("UID EXPUNGE $")
    assert r.numbered("EXPUNGE") == [1], r
    assert len(c.ok("FETCH 1:* UID").fetches()) == 1
    # "$" is a whole set, not part of one
    c.bad("FETCH 1,$ UID")
    c.bad("FETCH $:3 UID")
    c.bad("SEARCH UID 1,$")
    assert u                                             # the fixture's UIDs


def test_expunged_messages_leave_it(c, srv):
    c.ok("SEARCH RETURN (SAVE) FLAGGED")                 # 1, 2, 4, 5, 7
    assert saved(c) == [1, 2, 4, 5, 7]
    # this session expunges 2
    c.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    c.ok("EXPUNGE")
    assert saved(c) == [1, 3, 4, 6]                      # renumbered
    # another session expunges what was 5 (now 4)
    with srv.session(select=c.box) as other:
        other.ok("UID STORE %d +FLAGS.SILENT (\\Deleted)" % c.uids[4])
        other.ok("EXPUNGE")
    r = c.ok("NOOP")
    assert r.numbered("EXPUNGE") == [4], r
    r = c.ok("FETCH $ UID")
    assert sorted(int(f["UID"]) for f in r.fetches().values()) == uids_of(c, [1, 4, 7])
    assert sorted(r.fetches()) == [1, 3, 5]
    # new messages do not join it
    c.ok("APPEND %s (\\Flagged) " % c.box, Literal(message(9)))
    c.ok("NOOP")
    assert saved(c) == [1, 3, 5]


@pytest.mark.parametrize("how", ["SELECT", "EXAMINE", "SELECT other", "CLOSE", "UNSELECT"])
def test_reset(c, how):
    c.ok("SEARCH RETURN (SAVE) FLAGGED")
    assert saved(c) == [1, 2, 4, 5, 7]
    if how == "SELECT other":
        c.select("INBOX")
    elif how in ("CLOSE", "UNSELECT"):
        c.ok(how)
    else:
        c.ok("%s %s" % (how, c.box))
    c.select(c.box)
    assert saved(c) == []
    assert c.ok("SEARCH $").search() == []
    assert c.ok("SEARCH NOT $").search() == list(range(1, 9))


def test_search_result_bound(c):
    """"$" holds at most one UID per message: a SAVE of ALL, repeated, stays
    the folder's size."""
    for _ in range(3):
        r = c.ok("SEARCH RETURN (SAVE COUNT) ALL")
        assert re.search(r"COUNT 8$", esearch(r)), r
    assert saved(c) == list(range(1, 9))


def test_sort_and_thread_with_saved(c):
    """"$" as a SORT and THREAD criterion (RFC 5256 criteria are SEARCH
    keys); RETURN (SAVE) is for SEARCH only."""
    c.ok("SEARCH RETURN (SAVE) FLAGGED")                 # 1, 2, 4, 5, 7
    # 4 and 5 arrived at the same time: by sequence number (RFC 5256)
    r = c.ok("SORT (REVERSE ARRIVAL) UTF-8 $")
    assert r.data("SORT")[0].split() == [b"7", b"4", b"5", b"2", b"1"], r
    r = c.ok("UID SORT (ARRIVAL) UTF-8 NOT $")
    assert [int(x) for x in r.data("SORT")[0].split()] == uids_of(c, [3, 6, 8]), r
    r = c.ok("THREAD ORDEREDSUBJECT UTF-8 $")
    assert sorted(int(x) for x in re.findall(rb"\d+", r.data("THREAD")[0])) == [1, 2, 4, 5, 7]
    c.bad("SORT RETURN (SAVE) (ARRIVAL) UTF-8 ALL")
    assert saved(c) == [1, 2, 4, 5, 7]
