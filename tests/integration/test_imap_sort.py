"""IMAP SORT and UID SORT (RFC 5256) with every sort key, REVERSE, base
subjects, addresses compared by the first mailbox's local part, DATE falling
back to INTERNALDATE, ties broken by sequence number; the SEARCH keys after
the charset (sequence sets with '*', UID sets, literals); ESORT (RFC 5267:
SORT RETURN answered with ESEARCH) and SORT=DISPLAY (RFC 5957: DISPLAYFROM,
DISPLAYTO). One mailbox of seven messages for the whole module; every
expected order below was worked out by hand from the RFCs' rules."""

import calendar
import os
import re

import pytest

from imap_util import (ALICE, Literal, folder_dir, make_folder, put,  # noqa: F401
                       reset_maildirs, start_imap, check_stopped, imap_instance)


def ts(d, h=12):
    return calendar.timegm((2026, 3, d, h, 0, 0, 0, 0, 0))


def msg(headers, body_len):
    return headers + b"\n" + b"x" * body_len + b"\n"


# (data, INTERNALDATE, Maildir flags or None)
MSGS = [
    # 1: LUNCH PLANS (a reply), From zoe, To bob, Cc ann, 3 Mar 09:00 UTC
    (msg(b'From: "Zoe Adams" <zoe@example.org>\nTo: bob@example.org\n'
         b"Cc: ann@example.org\nSubject: Re: Lunch plans\n"
         b"Date: Tue, 3 Mar 2026 09:00:00 +0000\nMessage-ID: <s1@example.org>\n", 4000),
     ts(5), None),
    # 2: BUDGET (a [blob] removed), 12:00 +0100 = 2 Mar 11:00 UTC
    (msg(b'From: alice@example.test\nTo: "Carl" <carl@example.org>\n'
         b"Subject: [team] budget\nDate: Mon, 2 Mar 2026 12:00:00 +0100\n"
         b"Message-ID: <s2@example.org>\n", 1000),
     ts(3), "S"),
    # 3: LUNCH PLANS (RFC 2047 "Fwd:"), no Date: INTERNALDATE 1 Mar 12:00
    (msg(b"From: =?UTF-8?Q?=C3=89mile?= <emile@example.org>\nTo: zed@example.org\n"
         b"Subject: =?UTF-8?Q?Fwd:_lunch_plans?=\nMessage-ID: <s3@example.org>\n", 3000),
     ts(1), None),
    # 4: BUDGET ("(fwd)" removed), 2 Mar 11:00 UTC as 2; ARRIVAL as 2
    (msg(b'From: "bob" <Bob@example.org>\nTo: Ann <ann@example.org>\n'
         b'Cc: "Zed" <zed@example.org>\nSubject: Budget (fwd)\n'
         b"Date: Mon, 2 Mar 2026 11:00:00 +0000\nMessage-ID: <s4@example.org>\n", 2000),
     ts(3), None),
    # 5: ZEBRA, To a group without mailboxes, 10:00 -0500 = 4 Mar 15:00 UTC
    (msg(b"From: Carl <carl@example.org>\nTo: undisclosed-recipients:;\n"
         b"Subject: zebra\nDate: Wed, 4 Mar 2026 10:00:00 -0500\n"
         b"Message-ID: <s5@example.org>\n", 5000),
     ts(4), "S"),
    # 6 and 7: no From, To, Cc, Subject or Date; the same size and arrival
    (msg(b"Message-ID: <s6@example.org>\n", 1), ts(2), None),
    (msg(b"Message-ID: <s7@example.org>\n", 1), ts(2), None),
]


@pytest.fixture(scope="module")
def srv(imap_instance):
    reset_maildirs(imap_instance)
    for i, (data, t, flags) in enumerate(MSGS, 1):
        put(imap_instance, ALICE, data, flags=flags, mtime=t,
            name="17100000%02d.M%dP1.sort" % (i, i))
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
    return {i: int(r.fetches()[i]["UID"]) for i in range(1, 8)}


def sort(c, command, *extra):
    """The numbers of the one '* SORT' response, in order."""
    r = c.ok(command, *extra)
    lines = r.data("SORT")
    assert len(lines) == 1, r
    return [int(x) for x in lines[0].split()]


KEYS = [
    ("(SUBJECT)", [6, 7, 2, 4, 1, 3, 5]),
    ("(REVERSE SUBJECT)", [5, 1, 3, 2, 4, 6, 7]),
    ("(ARRIVAL)", [3, 6, 7, 2, 4, 5, 1]),
    ("(REVERSE ARRIVAL)", [1, 5, 2, 4, 6, 7, 3]),
    ("(DATE)", [3, 2, 4, 6, 7, 1, 5]),
    ("(REVERSE DATE)", [5, 1, 6, 7, 2, 4, 3]),
    ("(FROM)", [6, 7, 2, 4, 5, 3, 1]),
    ("(REVERSE FROM)", [1, 3, 5, 4, 2, 6, 7]),
    ("(TO)", [5, 6, 7, 4, 1, 2, 3]),
    ("(CC)", [2, 3, 5, 6, 7, 1, 4]),
    ("(SIZE)", [6, 7, 2, 4, 3, 1, 5]),
    ("(REVERSE SIZE)", [5, 1, 3, 4, 2, 6, 7]),
    ("(DISPLAYFROM)", [6, 7, 2, 4, 5, 1, 3]),
    ("(DISPLAYTO)", [5, 6, 7, 4, 1, 2, 3]),
    ("(REVERSE DISPLAYFROM)", [3, 1, 5, 4, 2, 6, 7]),
    ("(REVERSE SUBJECT DATE)", [5, 3, 1, 2, 4, 6, 7]),
    ("(CC REVERSE FROM)", [3, 5, 2, 6, 7, 1, 4]),
    ("(subject reverse arrival)", [6, 7, 2, 4, 1, 3, 5]),
    ("(ARRIVAL SIZE DATE FROM TO CC SUBJECT)", [3, 6, 7, 2, 4, 5, 1]),
]


@pytest.mark.parametrize("prog,expected", KEYS, ids=[k for k, _ in KEYS])
def test_sort_keys(c, prog, expected):
    assert sort(c, "SORT %s UTF-8 ALL" % prog) == expected


def test_sort_identical_keys_keep_sequence_order(c):
    """RFC 5256: messages whose keys are all equal come in ascending
    sequence order, whatever REVERSE says about the key."""
    assert sort(c, "SORT (SUBJECT) UTF-8 6:7") == [6, 7]
    assert sort(c, "SORT (REVERSE SUBJECT) UTF-8 6:7") == [6, 7]
    assert sort(c, "SORT (REVERSE ARRIVAL REVERSE SIZE) UTF-8 6:7") == [6, 7]
    assert sort(c, "SORT (REVERSE DATE) UTF-8 2,4") == [2, 4]
    assert sort(c, "SORT (REVERSE ARRIVAL) UTF-8 4,2") == [2, 4]


def test_sort_with_search_keys(c):
    assert sort(c, "SORT (SUBJECT) UTF-8 SEEN") == [2, 5]
    assert sort(c, "SORT (DATE) UTF-8 UNSEEN") == [3, 4, 6, 7, 1]
    assert sort(c, "SORT (ARRIVAL) UTF-8 5:*") == [6, 7, 5]
    assert sort(c, "SORT (ARRIVAL) UTF-8 *") == [7]
    assert sort(c, "SORT (ARRIVAL) UTF-8 *:6") == [6, 7]
    assert sort(c, "SORT (REVERSE DATE) US-ASCII OR FROM zoe FROM carl") == [5, 1]
    assert sort(c, "SORT (SIZE) utf-8 NOT 1:4") == [6, 7, 5]
    # a search string as a literal, and LITERAL+
    assert sort(c, "SORT (DATE) UTF-8 SUBJECT ", Literal("lunch")) == [3, 1]
    assert sort(c, "SORT (DATE) UTF-8 FROM ",
                Literal("Émile".encode(), plus=True)) == [3]


def test_sort_empty_result(c):
    r = c.ok("SORT (SUBJECT) UTF-8 SUBJECT no-such-subject")
    assert r.data("SORT") == [b""], r.untagged
    r = c.ok("UID SORT (DATE) UTF-8 UID 999999")
    assert r.data("SORT") == [b""], r.untagged


def test_uid_sort(c, uids):
    assert sort(c, "UID SORT (SUBJECT) UTF-8 ALL") == \
        [uids[i] for i in (6, 7, 2, 4, 1, 3, 5)]
    assert sort(c, "UID SORT (REVERSE DATE) UTF-8 UID %d:*" % uids[5]) == \
        [uids[5], uids[6], uids[7]]
    # UID n:* names the last message even when n is beyond it
    assert sort(c, "UID SORT (ARRIVAL) UTF-8 UID %d:*" % (uids[7] + 50)) == [uids[7]]
    assert sort(c, "UID SORT (FROM) UTF-8 1:3") == [uids[2], uids[3], uids[1]]


def esearch(c, command):
    """The one '* ESEARCH' response of command: (tag, uid, [(name, value)])."""
    r = c.ok(command)
    lines = r.data("ESEARCH")
    assert len(lines) == 1 and not r.data("SORT"), r.untagged
    m = re.match(r'\(TAG "([^"]+)"\)( UID)?((?: [A-Z]+ \S+)*)$', lines[0].decode())
    assert m, lines
    words = m.group(3).split()
    assert m.group(1) == r.tag.decode()
    return bool(m.group(2)), list(zip(words[::2], words[1::2]))


def test_esort_return_options(c, uids):
    """RFC 5267 section 3: MIN and MAX are the first and the last message
    in sort order, ALL lists them in sort order, COUNT counts them."""
    uid, d = esearch(c, "SORT RETURN (MIN MAX COUNT ALL) (DATE) UTF-8 ALL")
    assert not uid
    assert dict(d) == {"MIN": "3", "MAX": "5", "COUNT": "7", "ALL": "3,2,4,6:7,1,5"}, d
    _, d = esearch(c, "SORT RETURN () (REVERSE ARRIVAL) UTF-8 ALL")
    assert d == [("ALL", "1,5,2,4,6:7,3")], d
    _, d = esearch(c, "SORT RETURN (COUNT) (SUBJECT) UTF-8 SEEN")
    assert d == [("COUNT", "2")], d
    _, d = esearch(c, "SORT RETURN (MIN MAX) (SUBJECT) UTF-8 ALL")
    assert dict(d) == {"MIN": "6", "MAX": "5"}, d
    # nothing matches: COUNT 0 and nothing else
    uid, d = esearch(c, "UID SORT RETURN (MIN MAX COUNT ALL) (SUBJECT) UTF-8 "
                        "SUBJECT no-such-subject")
    assert uid and d == [("COUNT", "0")], d
    uid, d = esearch(c, "UID SORT RETURN (MIN ALL) (REVERSE SUBJECT) UTF-8 1:3")
    assert uid and dict(d) == {"MIN": str(uids[1]),
                               "ALL": "%d,%d,%d" % (uids[1], uids[3], uids[2])}, d


@pytest.mark.parametrize("command", [
    "SORT",
    "SORT (SUBJECT)",
    "SORT (SUBJECT) UTF-8",
    "SORT () UTF-8 ALL",
    "SORT (BOGUS) UTF-8 ALL",
    "SORT SUBJECT UTF-8 ALL",
    "SORT (REVERSE) UTF-8 ALL",
    "SORT (SUBJECT REVERSE) UTF-8 ALL",
    "SORT (REVERSE REVERSE DATE) UTF-8 ALL",
    "SORT (SUBJECT (DATE)) UTF-8 ALL",
    "SORT (SUBJECT) UTF-8 NOSUCHKEY",
    "SORT (SUBJECT) UTF-8 (SEEN",
    "SORT (SUBJECT) UTF-8 CHARSET UTF-8 ALL",
    "SORT (SUBJECT) (UTF-8) ALL",
    "SORT RETURN (BOGUS) (SUBJECT) UTF-8 ALL",
    "SORT RETURN (SUBJECT) UTF-8 ALL",
    "SORT RETURN",
    "SORT (" + "DATE " * 17 + ") UTF-8 ALL",
])
def test_sort_syntax_errors(c, command):
    r = c.cmd(command)
    assert r.status == "BAD", (command, r)
    c.ok("NOOP")


def test_sort_unknown_charset(c):
    for cs in ("ISO-8859-1", "KOI8-R", '"x-unknown"'):
        r = c.cmd("SORT (SUBJECT) %s ALL" % cs)
        assert r.status == "NO" and r.code() == "BADCHARSET (UTF-8 US-ASCII)", r


def test_sort_needs_a_selected_mailbox(srv):
    c = srv.session()
    try:
        r = c.cmd("SORT (SUBJECT) UTF-8 ALL")
        assert r.status == "BAD", r
        r = c.cmd("UID SORT (SUBJECT) UTF-8 ALL")
        assert r.status == "BAD", r
    finally:
        c.close()


def test_sort_capabilities(srv, c):
    caps = c.ok("CAPABILITY").data("CAPABILITY")[0].decode().split()
    for name in ("SORT", "SORT=DISPLAY", "ESORT"):
        assert name in caps, caps
    pre = srv.conn()
    try:
        r = pre.ok("CAPABILITY")
        assert "SORT" not in r.data("CAPABILITY")[0].decode().split()
    finally:
        pre.close()


def test_imaplib_sort(srv):
    """imaplib sends SORT only when the server advertises it."""
    m = srv.login()
    try:
        m.select("INBOX", readonly=True)
        typ, data = m.sort("(REVERSE DATE)", "UTF-8", "ALL")
        assert typ == "OK" and data == [b"5 1 6 7 2 4 3"], data
        typ, data = m.uid("SORT", "(SUBJECT)", "UTF-8", "SEEN")
        assert typ == "OK" and len(data[0].split()) == 2, data
    finally:
        m.logout()


def test_sort_sees_new_messages(srv, imap_instance):
    """A message delivered after SELECT sorts in once the session knows it;
    it is not in a SORT answered before."""
    c = srv.session()
    try:
        c.select("INBOX")
        before = sort(c, "SORT (SUBJECT) UTF-8 ALL")
        assert len(before) == 7
        srv.deliver(ALICE, b"From: aaron@example.org\nTo: alice@example.test\n"
                    b"Subject: Re: aardvark\nDate: Thu, 5 Mar 2026 10:00:00 +0000\n"
                    b"Message-ID: <s8@example.org>\n\nhello\n")
        c.ok("NOOP")
        after = sort(c, "SORT (SUBJECT) UTF-8 ALL")
        assert after == [6, 7, 8, 2, 4, 1, 3, 5], after
        assert sort(c, "SORT (FROM) UTF-8 ALL")[2] == 8
        assert sort(c, "SORT (REVERSE DATE) UTF-8 ALL")[0] == 8
        # the delivery goes away again for the other tests
        c.ok("STORE 8 +FLAGS.SILENT (\\Deleted)")
        c.ok("EXPUNGE")
        assert sort(c, "SORT (SUBJECT) UTF-8 ALL") == [6, 7, 2, 4, 1, 3, 5]
    finally:
        c.close()


def test_sort_caches_envelopes(srv, imap_instance):
    """SORT takes its keys from the ENVELOPE the store caches for FETCH,
    and caches the ENVELOPE of a header it had to read: a later FETCH
    ENVELOPE gives the same, and a second SORT the same order."""
    make_folder(imap_instance, ALICE, "Cached")
    for i, (data, t, _) in enumerate(MSGS, 1):
        put(imap_instance, ALICE, data, folder="Cached", mtime=t,
            name="17300000%02d.M%dP1.sort" % (i, i))
    cache = os.path.join(folder_dir(imap_instance, ALICE, "Cached"), "petrel-cache")
    c = srv.session()
    try:
        c.examine("Cached")
        assert not os.path.exists(cache) or b"Zoe Adams" not in open(cache, "rb").read()
        assert sort(c, "SORT (DISPLAYFROM) UTF-8 ALL") == [6, 7, 2, 4, 5, 1, 3]
        assert b"Zoe Adams" in open(cache, "rb").read()
        assert sort(c, "SORT (DISPLAYFROM) UTF-8 ALL") == [6, 7, 2, 4, 5, 1, 3]
        assert sort(c, "SORT (REVERSE DATE) UTF-8 ALL") == [5, 1, 6, 7, 2, 4, 3]
        r = c.ok("FETCH 1 ENVELOPE")
        assert b'(("Zoe Adams" NIL "zoe" "example.org"))' in r.untagged[0], r.untagged
    finally:
        c.close()


def test_sort_records_persist(srv, imap_instance):
    """The keys are kept per message in the folder's petrel-sort: a new
    session sorts and threads from it without adding anything; records
    made from a cached ENVELOPE (without the IDs) are completed when
    THREAD=REFERENCES needs them; a damaged file, or one of another
    UIDVALIDITY, gives the same answers and is written again; expunged
    messages' records go when the file is rewritten."""
    make_folder(imap_instance, ALICE, "Keys")
    for i, (data, t, _) in enumerate(MSGS, 1):
        put(imap_instance, ALICE, data, folder="Keys", mtime=t,
            name="17400000%02d.M%dP1.sort" % (i, i))
    path = os.path.join(folder_dir(imap_instance, ALICE, "Keys"), "petrel-sort")
    progs = [("SORT (DISPLAYFROM) UTF-8 ALL", [6, 7, 2, 4, 5, 1, 3]),
             ("SORT (REVERSE DATE) UTF-8 ALL", [5, 1, 6, 7, 2, 4, 3]),
             ("SORT (SUBJECT) UTF-8 ALL", [6, 7, 2, 4, 1, 3, 5])]

    def check(c):
        for command, expected in progs:
            assert sort(c, command) == expected, command

    def thread(c):
        r = c.ok("THREAD REFERENCES UTF-8 ALL")
        return [x for x in r.untagged if x.startswith(b"* THREAD")]

    c = srv.session()
    try:
        c.examine("Keys")
        assert not os.path.exists(path)
        want = thread(c)
        data = open(path, "rb").read()
        assert data.startswith(b"PTRLSRT1") and b"S1@EXAMPLE.ORG" not in data
        assert b"s1@example.org" in data and b"LUNCH PLANS" in data
        check(c)
        assert open(path, "rb").read() == data   # nothing new to record
    finally:
        c.close()
    c = srv.session()
    try:
        c.examine("Keys")
        check(c)
        assert thread(c) == want
        assert open(path, "rb").read() == data
        # records without the IDs (from the cached ENVELOPEs) first; the
        # process keeps the order of the SORTs above, so a program not
        # asked for yet is what needs the records
        os.unlink(path)
        assert sort(c, "SORT (CC REVERSE ARRIVAL) UTF-8 ALL") == \
            sort(c, "SORT (CC REVERSE ARRIVAL) UTF-8 ALL")
        assert os.path.exists(path)
        check(c)
        no_ids = open(path, "rb").read()
        assert b"s1@example.org" not in no_ids
        assert thread(c) == want
        assert b"s1@example.org" in open(path, "rb").read()
        # damage: a torn append, a changed byte, another UIDVALIDITY
        for damage in ("tail", "flip", "uidvalidity"):
            good = open(path, "rb").read()
            with open(path, "r+b") as f:
                if damage == "tail":
                    f.seek(0, 2)
                    f.write(b"PTRS\x01\x00")
                elif damage == "flip":
                    f.seek(40)
                    f.write(bytes([good[40] ^ 0x20]))
                else:
                    f.seek(8)
                    f.write(bytes([good[8] ^ 1]))
            check(c)
            assert thread(c) == want
            again = open(path, "rb").read()
            assert again.startswith(b"PTRLSRT1") and again[8:12] == good[8:12]
            if damage == "tail":
                assert not again.endswith(b"PTRS\x01\x00")
            if damage == "flip":
                assert again[40] == good[40] or again != good
    finally:
        c.close()
    c = srv.session()
    try:
        c.select("Keys")
        c.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        c.ok("EXPUNGE")
        assert sort(c, "SORT (SUBJECT) UTF-8 ALL") == [5, 6, 1, 3, 2, 4]
    finally:
        c.close()


def test_sort_records_kept_across_commands(srv, imap_instance):
    """Records with References serve SORT as well as THREAD (no session
    makes them again), and a message that arrives later gets its record
    appended to the file, not a rewritten file."""
    make_folder(imap_instance, ALICE, "KeysRefs")
    first = (b"From: ann@example.org\nSubject: plan\nMessage-ID: <r1@example.org>\n"
             b"Date: Mon, 2 Mar 2026 10:00:00 +0000\n\nx\n")
    reply = (b"From: bob@example.org\nSubject: Re: plan\nMessage-ID: <r2@example.org>\n"
             b"References: <r0@example.org> <r1@example.org>\n"
             b"Date: Mon, 2 Mar 2026 11:00:00 +0000\n\ny\n")
    put(imap_instance, ALICE, first, folder="KeysRefs", name="1750000001.M1P1.sort")
    put(imap_instance, ALICE, reply, folder="KeysRefs", name="1750000002.M2P1.sort")
    path = os.path.join(folder_dir(imap_instance, ALICE, "KeysRefs"), "petrel-sort")
    c = srv.session()
    try:
        c.select("KeysRefs")
        r = c.ok("THREAD REFERENCES UTF-8 ALL")
        assert r.untagged[0] == b"* THREAD (1 2)", r.untagged
        data = open(path, "rb").read()
        assert b"r0@example.org" in data
    finally:
        c.close()
    for command in ("SORT (SUBJECT) UTF-8 ALL", "SORT (REVERSE DATE) UTF-8 ALL",
                    "THREAD REFERENCES UTF-8 ALL", "SORT (FROM) UTF-8 ALL"):
        c = srv.session()
        try:
            c.examine("KeysRefs")
            c.ok(command)
            assert open(path, "rb").read() == data, command
        finally:
            c.close()
    put(imap_instance, ALICE, b"From: cy@example.org\nSubject: other\n\nz\n",
        folder="KeysRefs", name="1750000003.M3P1.sort")
    c = srv.session()
    try:
        c.examine("KeysRefs")
        assert sort(c, "SORT (SUBJECT) UTF-8 ALL") == [3, 1, 2]
        grown = open(path, "rb").read()
        assert grown.startswith(data) and len(grown) > len(data)
    finally:
        c.close()


def test_kept_order_follows_the_set(srv):
    """A process keeps the order of its last SORTs by folder, program and
    the set of messages found: the same SORT in another session answers
    the same; a message added or expunged, or a flag that changes what
    the criteria find, gives the order of the new set, never the old one."""
    def subj(k, word):
        return (b"From: k%d@example.org\r\nSubject: %s\r\n"
                b"Date: Mon, 2 Mar 2026 10:%02d:00 +0000\r\n\r\nx\r\n" % (k, word, k))

    a = srv.session()
    b = srv.session()
    try:
        a.ok("CREATE Kept")
        for k, word in enumerate((b"delta", b"bravo", b"echo", b"alpha")):
            a.ok("APPEND Kept ", Literal(subj(k, word), plus=True))
        a.select("Kept")
        b.select("Kept")
        assert sort(a, "UID SORT (SUBJECT) UTF-8 ALL") == [4, 2, 1, 3]
        assert sort(b, "UID SORT (SUBJECT) UTF-8 ALL") == [4, 2, 1, 3]
        assert sort(b, "SORT (REVERSE SUBJECT) UTF-8 ALL") == [3, 1, 2, 4]
        # a new message that sorts first
        b.ok("APPEND Kept ", Literal(subj(9, b"aardvark"), plus=True))
        b.ok("NOOP")
        a.ok("NOOP")
        assert sort(a, "UID SORT (SUBJECT) UTF-8 ALL") == [5, 4, 2, 1, 3]
        # sequence numbers after an expunge in the other session
        b.ok("UID STORE 4 +FLAGS.SILENT (\\Deleted)")
        b.ok("EXPUNGE")
        a.ok("NOOP")
        assert sort(a, "SORT (SUBJECT) UTF-8 ALL") == [4, 2, 1, 3]
        assert sort(a, "UID SORT (SUBJECT) UTF-8 ALL") == [5, 2, 1, 3]
        # criteria that depend on flags: the set changes with them
        assert sort(a, "UID SORT (SUBJECT) UTF-8 UNSEEN") == [5, 2, 1, 3]
        b.ok("UID STORE 2 +FLAGS.SILENT (\\Seen)")
        a.ok("NOOP")
        assert sort(a, "UID SORT (SUBJECT) UTF-8 UNSEEN") == [5, 1, 3]
        assert sort(a, "UID SORT (SUBJECT) UTF-8 SEEN") == [2]
        b.ok("UID STORE 2 -FLAGS.SILENT (\\Seen)")
        a.ok("NOOP")
        assert sort(a, "UID SORT (SUBJECT) UTF-8 UNSEEN") == [5, 2, 1, 3]
    finally:
        a.close()
        b.close()
