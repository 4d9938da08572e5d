"""IMAP CATENATE (RFC 4469): APPEND ... CATENATE (TEXT literal / URL url)
builds a message from literals and parts of the user's own messages named
by IMAP URLs (RFC 5092: relative paths and imap:// with this user, UIDVALIDITY,
SECTION of headers, MIME headers, parts and TEXT, PARTIAL); the RFC's
example (a draft's attachment kept while the text is replaced); with
MULTIAPPEND, all or none; a large TEXT literal (spooled); [BADURL] for a URL
that names nothing of this user's (another user, a wrong UIDVALIDITY, a
missing UID or mailbox, URLAUTH, bad syntax) and [TOOBIG] over the limit,
nothing stored then. One server for the module (SQLite)."""

import re

import pytest

from imap_util import (ALICE, Literal, check_stopped, crlf, imap_instance,  # noqa: F401
                       reset_maildirs, start_imap)

from harness.conn import capabilities

LIMIT = 200000

# RFC 4469 6: a draft with a text part and an attachment
DRAFT = crlf(b"""From: Alice <alice@example.test>
To: Bob <bob@example.org>
Subject: draft
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="------------030308070208000400050907"

--------------030308070208000400050907
Content-Type: text/plain; charset=us-ascii

old text
--------------030308070208000400050907
Content-Type: application/octet-stream; name="a.bin"
Content-Transfer-Encoding: base64

QUJDREVGRw==
--------------030308070208000400050907--
""")
SEP = b"--------------030308070208000400050907"


@pytest.fixture(scope="module")
def srv(imap_instance):
    reset_maildirs(imap_instance)
    s = start_imap(imap_instance, ("message_size_limit=%d" % LIMIT,))
    yield s
    problems = check_stopped([s])
    assert not problems, problems


@pytest.fixture(scope="module")
def c(srv):
    conn = srv.session()
    conn.ok("CREATE Drafts2")
    r = conn.ok("APPEND Drafts2 (\\Draft) ", Literal(DRAFT, plus=True))
    conn.uidvalidity, conn.uid = map(int, re.search(r"APPENDUID (\d+) (\d+)", r.text).groups())
    yield conn
    conn.close()


def url(c, tail="", box="Drafts2"):
    return '"/%s;UIDVALIDITY=%d/;UID=%d%s"' % (box, c.uidvalidity, c.uid, tail)


def last(c, box):
    """The newest message of box, as stored (CRLF form) and its count."""
    c.select(box)
    r = c.ok("FETCH * BODY.PEEK[]")
    (d,) = r.fetches().values()
    return d["BODY[]"]


def count(c, box):
    r = c.ok("STATUS %s (MESSAGES)" % box)
    return int(re.search(rb"MESSAGES (\d+)", r.data("STATUS")[0]).group(1))


def test_capability(srv):
    with srv.conn() as conn:
        assert "CATENATE" not in capabilities(conn.ok("CAPABILITY").data("CAPABILITY")[0])
        conn.login()
        assert "CATENATE" in capabilities(conn.ok("CAPABILITY").data("CAPABILITY")[0])
        conn.logout()


def test_rfc4469_example(c):
    """6: header and attachment from the old draft, a new text part."""
    t1 = b"\r\n" + SEP + b"\r\n"
    t2 = b"\r\n" + SEP + b"\r\n"
    t3 = b"\r\n" + SEP + b"--\r\n"
    r = c.ok("APPEND Drafts2 (\\Seen \\Draft $MDNSent) CATENATE (URL ",
             url(c, "/;section=HEADER"), " TEXT ", Literal(t1),
             " URL ", url(c, "/;section=1.MIME"), " URL ", url(c, "/;section=1"),
             " TEXT ", Literal(t2), " URL ", url(c, "/;SECTION=2.MIME"),
             " URL ", url(c, "/;SECTION=2"), " TEXT ", Literal(t3), ")")
    assert "APPENDUID" in r.text, r
    got = last(c, "Drafts2")
    head = DRAFT[:DRAFT.index(b"\r\n\r\n") + 4]
    p1m = b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    p2m = (b"Content-Type: application/octet-stream; name=\"a.bin\"\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n")
    assert got == head + t1 + p1m + b"old text" + t2 + p2m + b"QUJDREVGRw==" + t3, got
    r = c.ok("FETCH * (FLAGS BODY.PEEK[2])")
    (d,) = r.fetches().values()
    assert d["BODY[2]"] == b"QUJDREVGRw=="
    assert "$MDNSent" in d["FLAGS"] and "\\Draft" in d["FLAGS"]


def test_whole_message_partial_and_absolute_urls(c, srv):
    n = count(c, "INBOX")
    c.ok("APPEND INBOX CATENATE (URL ", url(c), ")")
    assert last(c, "INBOX") == DRAFT
    c.ok("APPEND INBOX CATENATE (URL ", url(c, "/;PARTIAL=0.40"), " TEXT {3+}\r\nxyz)")
    assert last(c, "INBOX") == DRAFT[:40] + b"xyz"
    c.ok("APPEND INBOX CATENATE (TEXT {2+}\r\nA: URL ", url(c, "/;SECTION=1/;PARTIAL=4"), ")")
    assert last(c, "INBOX") == b"A:text"
    c.ok('APPEND INBOX CATENATE (URL "imap://%s@127.0.0.1/Drafts2/;UID=%d/;SECTION=HEADER.FIELDS%%20(SUBJECT)"'
         ' TEXT {4+}\r\nbody)' % (ALICE, c.uid))
    assert last(c, "INBOX") == b"Subject: draft\r\n\r\nbody"
    c.ok('APPEND INBOX CATENATE (URL "imap://127.0.0.1/Drafts2/;UID=%d/;SECTION=TEXT" )' % c.uid)
    assert last(c, "INBOX") == DRAFT[DRAFT.index(b"\r\n\r\n") + 4:]
    assert count(c, "INBOX") == n + 5


def test_multiappend_all_or_none(c):
    n = count(c, "INBOX")
    r = c.ok("APPEND INBOX CATENATE (URL ", url(c, "/;SECTION=HEADER"), " TEXT {2+}\r\nhi)",
             " (\\Flagged) {14+}\r\nSubject: x\r\n\r\n")
    assert re.search(r"APPENDUID \d+ \d+:\d+", r.text), r
    assert count(c, "INBOX") == n + 2
    r = c.no("APPEND INBOX {14+}\r\nSubject: y\r\n\r\n CATENATE (URL ",
             url(c, "", box="Nowhere"), ")")
    assert (r.code() or "").startswith("BADURL"), r
    assert count(c, "INBOX") == n + 2


def test_large_text_literal_spooled(c):
    """A TEXT literal over 64 KiB arrives in a spool file."""
    big = b"Subject: big\r\n\r\n" + (b"x" * 78 + b"\r\n") * 1500
    c.ok("APPEND INBOX CATENATE (TEXT ", Literal(big), " URL ", url(c, "/;SECTION=1"), ")")
    assert last(c, "INBOX") == big + b"old text"


@pytest.mark.parametrize("bad", [
    "/Drafts2;UIDVALIDITY=1/;UID={uid}",            # another UIDVALIDITY
    "/Drafts2/;UID=999999",                         # no such UID
    "/Drafts2/;UID=0",
    "/Nowhere/;UID={uid}",                          # no such mailbox
    "imap://bob@example.test@127.0.0.1/Drafts2/;UID={uid}",
    "imap://carol%40example.test@127.0.0.1/Drafts2/;UID={uid}",
    "/Drafts2/;UID={uid}/;URLAUTH=anonymous",       # URLAUTH: not taken
    "/Drafts2/;UID={uid}/;SECTION=1/;PARTIAL=x",
    "/Drafts2/;UID={uid}/;SECTION=BOGUS",
    "/Drafts2/;UID={uid}/;SECTION=%zz",
    "Drafts2/;UID={uid}",
    "/Drafts2;UID={uid}",
    "http://example.org/",
    "/../../etc/;UID=1",
    "/Drafts2]/;UID={uid}",
])
def test_badurl(c, bad):
    n = count(c, "INBOX")
    u = bad.format(uid=c.uid)
    r = c.no('APPEND INBOX CATENATE (TEXT {3+}\r\nabc URL "%s")' % u)
    code = r.code() or ""
    assert code.startswith("BADURL "), r
    assert "]" not in code and code[7:] == u.replace("]", "?"), r
    assert count(c, "INBOX") == n


def test_toobig_and_syntax(c):
    n = count(c, "INBOX")
    half = b"y" * (LIMIT // 2 + 10)
    r = c.no("APPEND INBOX CATENATE (TEXT ", Literal(half, plus=True), " TEXT ",
             Literal(half, plus=True), ")")
    assert (r.code() or "") == "TOOBIG", r
    # a literal within the limit and a URL part that takes it over
    near = b"z" * (LIMIT - 100)
    r = c.no("APPEND INBOX CATENATE (TEXT ", Literal(near), " URL ", url(c), ")")
    assert (r.code() or "") == "TOOBIG", r
    c.bad("APPEND INBOX CATENATE ()")
    c.bad("APPEND INBOX CATENATE (TEXT)")
    c.bad('APPEND INBOX CATENATE (TEXT "quoted")')
    c.bad("APPEND INBOX CATENATE (FOO {1+}\r\nx)")
    c.bad("APPEND INBOX CATENATE (URL (x))")
    c.bad("APPEND INBOX CATENATE")
    r = c.no("APPEND INBOX CATENATE (TEXT {0+}\r\n)")
    assert count(c, "INBOX") == n
