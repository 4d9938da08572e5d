"""IMAP SEARCH (RFC 3501 6.4.4): every search key, CHARSET UTF-8 with a
literal, nested OR/NOT and parenthesised lists, sequence and UID sets,
header/body/text matching through base64, quoted-printable and RFC 2047
encoded words. One mailbox of six messages for the whole module (SQLite)."""

import calendar
import re

import pytest

from imap_util import (ALICE, MULTIPART, Literal, encoded_message, message,  # noqa: F401
                       put, reset_maildirs, start_imap, check_stopped, imap_instance)


def ts(d, h=12):
    return calendar.timegm((2026, 3, d, h, 0, 0, 0, 0, 0))


MSGS = [
    # (data, internaldate, maildir flags or None for new/)
    (message(1, extra_headers=b"X-Mailer: PetrelTest 1.0\n"), ts(1), "S"),
    (b"From: Bob Smith <bob@example.org>\nTo: alice@example.test\nCc: carol@example.org\n"
     b"Bcc: dave@example.org\nSubject: Quarterly report\n"
     b"Date: Tue, 10 Mar 2026 09:00:00 +0000\nMessage-ID: <m2@example.org>\n\n"
     b"the numbers are in\n", ts(10), "FR"),
    (encoded_message(), ts(15), "D"),
    (message(4, subject=b"big one", body=b"x" * 20000 + b"\n"), ts(20), "T"),
    (MULTIPART, ts(25), None),
    (message(6, date=b"Sat, 28 Feb 2026 23:30:00 -0500"), ts(5), None),
]


@pytest.fixture(scope="module")
def srv(imap_instance):
    reset_maildirs(imap_instance)
    for i, (data, t, flags) in enumerate(MSGS, 1):
        put(imap_instance, ALICE, data, flags=flags, mtime=t,
            name="17000000%02d.M%dP1.search" % (i, i))
    s = start_imap(imap_instance)
    # the keyword on message 3, and \Recent taken by this first session
    c = s.session(select="INBOX")
    c.ok("STORE 3 +FLAGS.SILENT ($Important)")
    c.logout()
    yield s
    problems = check_stopped([s])
    assert not problems, problems


@pytest.fixture(scope="module")
def c(srv):
    conn = srv.session()
    conn.examine("INBOX")
    yield conn
    conn.close()


def search(c, criteria, uid=False):
    r = c.ok(("UID SEARCH " if uid else "SEARCH ") + criteria)
    return sorted(r.search())


CASES = [
    ("ALL", [1, 2, 3, 4, 5, 6]),
    ("SEEN", [1]),
    ("UNSEEN", [2, 3, 4, 5, 6]),
    ("ANSWERED", [2]),
    ("UNANSWERED", [1, 3, 4, 5, 6]),
    ("FLAGGED", [2]),
    ("UNFLAGGED", [1, 3, 4, 5, 6]),
    ("DELETED", [4]),
    ("UNDELETED", [1, 2, 3, 5, 6]),
    ("DRAFT", [3]),
    ("UNDRAFT", [1, 2, 4, 5, 6]),
    ("KEYWORD $Important", [3]),
    ("KEYWORD $important", [3]),
    ("UNKEYWORD $Important", [1, 2, 4, 5, 6]),
    ("KEYWORD NeverUsed", []),
    ("UNKEYWORD NeverUsed", [1, 2, 3, 4, 5, 6]),
    ("OLD", [1, 2, 3, 4, 5, 6]),    # the first session took \Recent
    ("RECENT", []),
    ("NEW", []),
    ("FROM bob", [2]),
    ("FROM BOB@EXAMPLE.ORG", [2]),
    ("FROM alice", [5]),
    ('FROM "Bob Smith"', [2]),
    ("TO alice", [1, 2, 3, 4, 6]),
    ("TO carol", [5]),
    ("CC carol", [2]),
    ("CC dave", [5]),
    ("BCC dave", [2]),
    ("BCC nobody", []),
    ("SUBJECT report", [2]),
    ('SUBJECT "test message"', [1, 6]),
    ("SUBJECT MESSAGE", [1, 6]),    # not 5: 'inner message' is a part's subject
    ("HEADER X-Mailer PetrelTest", [1]),
    ('HEADER X-Mailer ""', [1]),
    ('HEADER Message-ID "<m6@"', [6]),
    ("BODY numbers", [2]),
    ("BODY Quarterly", []),
    ("BODY Zauberlehrling", [3]),   # quoted-printable soft line break decoded
    ('BODY "hello html"', [5]),
    ("BODY AAECAwQFBgcICQ", [5]),   # a binary attachment: its base64 text or nothing
    ("TEXT Quarterly", [2]),
    ("TEXT numbers", [2]),
    ("LARGER 10000", [4]),
    ("SMALLER 10000", [1, 2, 3, 5, 6]),
    ("LARGER 20000000", []),
    ("BEFORE 5-Mar-2026", [1]),
    ("ON 5-Mar-2026", [6]),
    ("ON 05-Mar-2026", [6]),
    ("SINCE 20-Mar-2026", [4, 5]),
    ('SINCE "15-Mar-2026"', [3, 4, 5]),
    ("SENTBEFORE 1-Mar-2026", [6]),
    ("SENTON 2-Mar-2026", [1, 4]),
    ("SENTON 28-Feb-2026", [6]),
    ("SENTSINCE 5-Mar-2026", [2, 3]),
    ("2,4:5", [2, 4, 5]),
    ("5:*", [5, 6]),
    ("*", [6]),
    ("*:5", [5, 6]),
    ("1:3 SEEN", [1]),
    ("NOT SEEN", [2, 3, 4, 5, 6]),
    ("NOT NOT SEEN", [1]),
    ("OR SEEN FLAGGED", [1, 2]),
    ("OR OR SEEN DRAFT DELETED", [1, 3, 4]),
    ("OR (FROM bob SUBJECT report) (NOT (OR DELETED DRAFT))", [1, 2, 5, 6]),
    ("((SEEN))", [1]),
    ("(SEEN) (FROM sender1)", [1]),
    ("SEEN FROM bob", []),
    ("NOT (OR 1:2 3)", [4, 5, 6]),
    ("(1:2 OR 3 4)", []),
    ("OR 1 NOT (OR 2 (3:6 SMALLER 10000))", [1, 4]),
    ("UNDELETED NOT DRAFT NOT KEYWORD $Important SMALLER 5000 SINCE 1-Mar-2026", [1, 2, 5, 6]),
]


@pytest.mark.parametrize("criteria,expected", CASES, ids=[c for c, _ in CASES])
def test_search_key(c, criteria, expected):
    if criteria == "BODY AAECAwQFBgcICQ":
        got = search(c, criteria)
        assert got in ([5], []), got
        return
    assert search(c, criteria) == expected, criteria


def test_search_uid(c):
    r = c.ok("FETCH 1:* UID")
    uids = [int(r.fetches()[i]["UID"]) for i in range(1, 7)]
    assert search(c, "ALL", uid=True) == uids
    assert search(c, "UID %d:%d" % (uids[1], uids[2])) == [2, 3]
    assert search(c, "UID %d,%d" % (uids[0], uids[5]), uid=True) == [uids[0], uids[5]]
    assert search(c, "UID %d:*" % uids[4], uid=True) == [uids[4], uids[5]]
    assert search(c, "UID %d" % (uids[5] + 100)) == []
    # UID n:* always includes the last message (RFC 3501 6.4.8)
    assert search(c, "UID %d:*" % (uids[5] + 100), uid=True) == [uids[5]]
    assert search(c, "SEEN", uid=True) == [uids[0]]
    assert search(c, "NOT UID %d:%d" % (uids[0], uids[4])) == [6]


def test_search_encoded_words_and_charset(c):
    """RFC 2047 headers and base64 / quoted-printable bodies are searched
    decoded; CHARSET UTF-8 with a literal."""
    def lit(crit, word):
        r = c.ok("SEARCH CHARSET UTF-8 %s " % crit, Literal(word.encode()))
        return sorted(r.search())
    assert lit("SUBJECT", "Köln") == [3]
    assert lit("SUBJECT", "grüße") == [3]
    assert lit("FROM", "Müller") == [3]
    assert lit("BODY", "schläft") == [3]       # base64
    assert lit("BODY", "Grüße") == [3, 5]      # quoted-printable, two messages
    assert lit("TEXT", "Köln") == [3]
    assert lit("BODY", "Zürich") == [5]
    # LITERAL+
    r = c.ok("SEARCH CHARSET UTF-8 SUBJECT ", Literal("Köln".encode(), plus=True))
    assert r.search() == [3]
    assert search(c, "CHARSET US-ASCII SUBJECT report") == [2]
    assert search(c, "CHARSET utf-8 SUBJECT report") == [2]
    # ASCII search words still match case-insensitively inside encoded words
    assert search(c, "SUBJECT aus") == [3]
    r = c.command("SEARCH CHARSET X-BOGUS-CHARSET SUBJECT x")
    assert r.status == "NO" and (r.code() or "").upper().startswith("BADCHARSET"), r


@pytest.mark.parametrize("criteria", [
    "FROBNICATE", "BEFORE notadate", "BEFORE 1-Foo-2026", "LARGER abc", "LARGER",
    "(SEEN", "SEEN)", "OR SEEN", "NOT", "KEYWORD", "HEADER X-Mailer", "UID", "UID abc",
    "0", "1:0x", "FROM", "", "ALL ALL)", 'SUBJECT "unterminated',
])
def test_search_syntax_errors(c, criteria):
    r = c.command("SEARCH " + criteria if criteria else "SEARCH")
    assert r.status == "BAD", (criteria, r)
    c.ok("NOOP")


def test_imaplib_search(srv):
    m = srv.login()
    m.select("INBOX", readonly=True)
    typ, data = m.search(None, "FROM", "bob")
    assert typ == "OK" and data == [b"2"], data
    typ, data = m.search(None, "(OR SEEN FLAGGED)")
    assert data == [b"1 2"], data
    typ, data = m.uid("SEARCH", "ALL")
    assert typ == "OK" and len(data[0].split()) == 6, data
    m.literal = "Köln".encode()
    typ, data = m.search("UTF-8", "SUBJECT")
    assert typ == "OK" and data == [b"3"], data
    m.logout()


def test_search_after_expunge_renumbers(imap_instance):
    """In a separate folder: after EXPUNGE the sequence numbers in SEARCH are
    the new ones."""
    s = start_imap(imap_instance)
    try:
        with s.session() as c:
            c.ok("CREATE Renum")
            for i in range(1, 5):
                c.ok("APPEND Renum {%d+}\r\n" % len(b"Subject: n%d\r\n\r\nx\r\n" % i),
                     b"Subject: n%d\r\n\r\nx\r\n" % i)
            c.select("Renum")
            c.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
            c.ok("EXPUNGE")
            assert search(c, "SUBJECT n3") == [2]
            assert search(c, "SUBJECT n4") == [3]
            assert search(c, "ALL") == [1, 2, 3]
            c.logout()
    finally:
        problems = check_stopped([s])
    assert not problems, problems


def test_search_charsets_and_raw_utf8(srv):
    """Bodies in ISO-8859-1 (raw and quoted-printable) and raw UTF-8 headers
    (RFC 6532) match a UTF-8 search string after conversion."""
    msgs = [
        b"Subject: latin raw\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n"
        b"\r\nViele Gr\xfc\xdfe aus M\xfcnchen\r\n",
        b"Subject: latin qp\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=ISO-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\nSch=F6ne Tage in K=F6ln\r\n",
        "Subject: Grüße roh aus Köln\r\nFrom: Jürgen <j@example.org>\r\n\r\nplain\r\n".encode(),
        b"Subject: =?ISO-8859-1?Q?M=FCnchen?= ist sch=?utf-8?q?=C3=B6n?=\r\n\r\nx\r\n",
    ]
    with srv.session() as c:
        c.ok("CREATE Charsets")
        for m in msgs:
            assert c.append("Charsets", m).status == "OK"
        c.examine("Charsets")

        def lit(crit, word):
            r = c.ok("SEARCH CHARSET UTF-8 %s " % crit, Literal(word.encode()))
            return sorted(r.search())
        assert lit("BODY", "Grüße") == [1]
        assert lit("BODY", "München") == [1]
        assert lit("BODY", "Köln") == [2]
        assert lit("TEXT", "Köln") == [2, 3]
        assert lit("SUBJECT", "Köln") == [3]
        assert lit("FROM", "Jürgen") == [3]
        assert lit("SUBJECT", "München") == [4]
        assert lit("SUBJECT", "schön") == [4] or lit("SUBJECT", "schön") == []
        c.logout()


def esearch(c, command):
    """Run command; the one '* ESEARCH' response as (tag, uid, {name: value})."""
    r = c.ok(command)
    lines = r.data("ESEARCH")
    assert len(lines) == 1 and not r.data("SEARCH"), r
    text = lines[0].decode()
    m = re.match(r'\(TAG "([^"]+)"\)( UID)?((?: [A-Z]+ \S+)*)$', text)
    assert m, text
    words = m.group(3).split()
    return m.group(1), bool(m.group(2)), dict(zip(words[::2], words[1::2])), r


def test_esearch_return_options(c):
    """RFC 4731: MIN, MAX, COUNT and ALL (as a compact set), RETURN () as
    ALL, the tag correlated, UID for UID SEARCH, and nothing but COUNT 0 when
    nothing matches."""
    caps = c.ok("CAPABILITY").data("CAPABILITY")[0].decode().split()
    assert "ESEARCH" in caps
    tag, uid, d, r = esearch(c, "SEARCH RETURN (MIN MAX COUNT) UNSEEN")
    assert tag == r.tag.decode() and not uid
    assert d == {"MIN": "2", "MAX": "6", "COUNT": "5"}, d
    _, _, d, _ = esearch(c, "SEARCH RETURN () NOT ANSWERED")
    assert d == {"ALL": "1,3:6"}, d
    _, _, d, _ = esearch(c, "SEARCH RETURN (ALL) CHARSET UTF-8 UNDELETED")
    assert d == {"ALL": "1:3,5:6"}, d
    _, _, d, _ = esearch(c, "SEARCH RETURN (COUNT MIN) SUBJECT no-such-subject")
    assert d == {"COUNT": "0"}, d
    uids = [int(c.ok("FETCH 1:* UID").fetches()[i]["UID"]) for i in range(1, 7)]
    tag, uid, d, _ = esearch(c, "UID SEARCH RETURN (MIN MAX) ALL")
    assert uid and d == {"MIN": str(uids[0]), "MAX": str(uids[-1])}, d
    # the classic form is unchanged
    assert search(c, "UNSEEN") == [2, 3, 4, 5, 6]


@pytest.mark.parametrize("command", [
    "SEARCH RETURN (BOGUS) ALL",
    "SEARCH RETURN ALL",
    "SEARCH RETURN",
    "SEARCH RETURN (MIN) NOSUCHKEY",
])
def test_esearch_bad_return(c, command):
    r = c.cmd(command)
    assert r.status == "BAD", r
