"""IMAP PREVIEW (RFC 8970): FETCH PREVIEW and PREVIEW (LAZY). The text
comes from the first text/plain part (text/html with its markup removed
when there is none; attachments skipped; text/plain preferred in
multipart/alternative), transfer-decoded (quoted-printable, base64) and
converted to UTF-8, white space collapsed, at most 256 characters; "" for
a message without text. LAZY gives NIL until the preview has been made
once (it is then cached), the RFC's example of both; modifiers other than
LAZY are BAD; a huge message costs bounded work; \\Seen is not set. One
server for the module (SQLite)."""

import base64
import time

import pytest

from harness.instance import TIMEOUT_SCALE
from imap_util import (ALICE, Literal, check_stopped, crlf, imap_instance,  # noqa: F401
                       reset_maildirs, start_imap)

from harness.conn import capabilities


@pytest.fixture(scope="module")
def srv(imap_instance):
    reset_maildirs(imap_instance)
    s = start_imap(imap_instance)
    yield s
    problems = check_stopped([s])
    assert not problems, problems


@pytest.fixture(scope="module")
def c(srv):
    conn = srv.session()
    yield conn
    conn.close()


def msg(headers, body):
    return crlf(b"From: a@example.org\nTo: b@example.org\nSubject: p\n" + headers + b"\n" + body)


def add(c, data, folder="INBOX"):
    """APPEND data; its sequence number in the selected folder."""
    c.ok("APPEND %s " % folder, Literal(data, plus=True))
    r = c.ok("NOOP")
    c.select(folder)
    r = c.ok("SEARCH ALL")
    return int(r.data("SEARCH")[0].split()[-1])


def preview(c, seq, lazy=False):
    r = c.ok("FETCH %d (PREVIEW%s)" % (seq, " (LAZY)" if lazy else ""))
    v = r.fetches()[seq]["PREVIEW"]
    return None if v is None else v.decode("utf-8")


def test_capability(srv):
    with srv.conn() as conn:
        assert "PREVIEW" not in capabilities(conn.ok("CAPABILITY").data("CAPABILITY")[0])
        conn.login()
        assert "PREVIEW" in capabilities(conn.ok("CAPABILITY").data("CAPABILITY")[0])
        conn.logout()


def test_plain_text_collapsed(c):
    n = add(c, msg(b"", b"Preview   text!\n\n\tSecond\tline  \n"))
    assert preview(c, n) == "Preview text! Second line"


def test_rfc_example_lazy(c):
    """RFC 8970 4: PREVIEW, then PREVIEW (LAZY) over messages with a
    preview made (given), an empty one (given, ""), one not made yet (NIL),
    and both syntaxes of the modifier."""
    a = add(c, msg(b"", b"Preview text!\n"))
    b = add(c, msg(b"Content-Type: image/png\nContent-Transfer-Encoding: base64\n",
                   base64.encodebytes(b"\x89PNG....")))
    d = add(c, msg(b"", b"Not made yet\n"))
    assert preview(c, a) == "Preview text!"
    assert preview(c, b) == ""
    r = c.ok("FETCH %d:%d (PREVIEW (LAZY))" % (a, d))
    f = r.fetches()
    assert f[a]["PREVIEW"] == b"Preview text!"
    assert f[b]["PREVIEW"] == b""
    assert f[d]["PREVIEW"] is None
    # without the list parentheses: FETCH n PREVIEW (LAZY)
    r = c.ok("FETCH %d PREVIEW (LAZY)" % d)
    assert r.fetches()[d]["PREVIEW"] is None
    assert preview(c, d) == "Not made yet"
    assert preview(c, d, lazy=True) == "Not made yet"
    # beside items that read the file: made then, LAZY or not
    e = add(c, msg(b"", b"With the body\n"))
    r = c.ok("FETCH %d (BODY.PEEK[TEXT] PREVIEW (LAZY))" % e)
    assert r.fetches()[e]["PREVIEW"] == b"With the body"


def test_bad_modifiers(c):
    c.select("INBOX")
    c.bad("FETCH 1 (PREVIEW (FOO))")
    c.bad("FETCH 1 (PREVIEW ())")
    c.bad("FETCH 1 (PREVIEW (LAZY FOO))")
    c.bad("FETCH 1 PREVIEW (FOO)")
    c.bad("FETCH 1 FLAGS (LAZY)")
    c.ok("FETCH 1 (PREVIEW (lazy lazy))")


def test_encodings_and_charsets(c):
    qp = add(c, msg(b"Content-Type: text/plain; charset=iso-8859-1\n"
                    b"Content-Transfer-Encoding: quoted-printable\n",
                    b"Gr=FC=DFe aus K=F6ln, soft=\nbreak=20\n"))
    assert preview(c, qp) == "Gr\u00fc\u00dfe aus K\u00f6ln, softbreak"
    b64 = add(c, msg(b"Content-Type: text/plain; charset=utf-8\n"
                     b"Content-Transfer-Encoding: base64\n",
                     base64.encodebytes("Привет,\r\n  мир \u2603".encode())))
    assert preview(c, b64) == "Привет, мир \u2603"
    broken = add(c, msg(b"Content-Type: text/plain; charset=utf-8\n",
                        b"ok \xff\xfe bytes \xc3\x28 end\x01\x02x\n"))
    assert preview(c, broken) == "ok bytes ( end x"


def test_html(c):
    h = add(c, msg(b"Content-Type: text/html; charset=us-ascii\n",
                   b"<html><head><title>T</title><style>p {color: red}</style></head>"
                   b"<body><script>var x = '<p>';</script><!-- hidden -->"
                   b"<p>Hello&nbsp;<b>World</b> &amp; &lt;you&gt; &#233;&#x263A;</p>"
                   b"<br>Line&unknown; two</body></html>\n"))
    assert preview(c, h) == "Hello World & <you> \u00e9\u263a Line&unknown; two"


def test_part_choice(c):
    alt = add(c, msg(b"MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=b\n",
                     b"--b\nContent-Type: text/html\n\n<p>html version</p>\n"
                     b"--b\nContent-Type: text/plain\n\nplain version\n--b--\n"))
    assert preview(c, alt) == "plain version"
    mixed = add(c, msg(b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=m\n",
                       b"--m\nContent-Type: text/plain\nContent-Disposition: attachment; filename=a.txt\n\n"
                       b"attached text\n"
                       b"--m\nContent-Type: message/rfc822\n\nSubject: inner\n\ninner text\n"
                       b"--m\nContent-Type: multipart/related; boundary=r\n\n"
                       b"--r\nContent-Type: text/html\n\n<div>the <i>real</i> body</div>\n--r--\n"
                       b"--m--\n"))
    assert preview(c, mixed) == "the real body"


def test_length_limit(c):
    """256 characters, not bytes; a long run of white space counts as one."""
    body = ("\u00e9" * 200 + "   \n\n   " + "x" * 200).encode()
    n = add(c, msg(b"Content-Type: text/plain; charset=utf-8\n", body + b"\n"))
    p = preview(c, n)
    assert p == "\u00e9" * 200 + " " + "x" * 55, (len(p), p[-60:])
    # no trailing space when the limit falls on one
    n = add(c, msg(b"", b"y" * 255 + b" " + b"z" * 10 + b"\n"))
    assert preview(c, n) == "y" * 255


def test_huge_message_bounded(c):
    """3 MB of markup before any text: the work stops after the first
    64 KiB of the part, and the answer comes at once; \\Seen stays off."""
    big = b"<div>" * (3 * 1024 * 1024 // 5) + b"late text\n"
    n = add(c, msg(b"Content-Type: text/html\n", big))
    t = time.monotonic()
    assert preview(c, n) == ""
    assert time.monotonic() - t < 5 * TIMEOUT_SCALE
    r = c.ok("FETCH %d FLAGS" % n)
    assert b"\\Seen" not in r.untagged[0]
    body = b"word " * (600 * 1024)
    n = add(c, msg(b"", body))
    assert preview(c, n) == ("word " * 52)[:256].rstrip()
