"""IMAP BINARY (RFC 3516): FETCH BINARY[section]<partial>, BINARY.PEEK and
BINARY.SIZE with base64 and quoted-printable parts decoded (a multipart
message, a message/rfc822 part, a single-part message), 7bit/8bit parts as
they are, decoded data with a NUL sent as a literal8 ("~{n}"), partial ranges
counted in decoded octets, NO [UNKNOWN-CTE] for an encoding not known, \\Seen
set by BINARY and not by BINARY.PEEK or BINARY.SIZE; APPEND with a literal8
(synchronising, LITERAL+, spooled over 64 KiB, in a MULTIAPPEND), binary
content a Maildir cannot keep refused with NO [UNKNOWN-CTE], a NUL in a
normal literal refused, a literal8 outside APPEND refused. One server for the
module (SQLite)."""

import base64
import re

import pytest

from imap_util import (ALICE, PASSWORD, Literal, check_stopped, imap_instance,  # noqa: F401
                       reset_maildirs, start_imap)

from harness.conn import capabilities

BLOB = bytes(range(256)) * 3 + b"\0\0end"          # with NULs: a literal8
# (the CRLF before a boundary belongs to the boundary: RFC 2046 5.1.1)
TEXT_QP = "Grüße aus Zürich = 100% ok, a very long line that the encoder " \
          "had to break with a soft line break somewhere here\r\nsecond line"
INNER = (b"From: inner@example.org\r\nSubject: inner\r\n"
         b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
         base64.encodebytes(b"inner text decoded\r\n").replace(b"\n", b"\r\n"))

MULTI = (b"From: a@example.org\r\nTo: alice@example.test\r\nSubject: binary test\r\n"
         b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
         b"--b1\r\n"
         b"Content-Type: text/plain; charset=utf-8\r\n"
         b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
         b"Gr=C3=BC=C3=9Fe aus Z=C3=BCrich =3D 100% ok, a very long line that the=\r\n"
         b" encoder had to break with a soft line break somewhere here\r\n"
         b"second line\r\n"
         b"--b1\r\n"
         b"Content-Type: application/octet-stream\r\n"
         b"Content-Transfer-Encoding: BASE64\r\n\r\n" +
         base64.encodebytes(BLOB).replace(b"\n", b"\r\n") +
         b"--b1\r\n"
         b"Content-Type: text/plain\r\n\r\n"
         b"plain 7bit text\r\n"
         b"--b1\r\n"
         b"Content-Type: message/rfc822\r\n\r\n" + INNER +
         b"--b1--\r\n")
# the part a server cannot decode
UNKNOWN = (b"From: a@example.org\r\nSubject: uu\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: application/octet-stream\r\n"
           b"Content-Transfer-Encoding: x-uuencode\r\n\r\n"
           b"begin 644 x\r\n#86)C\r\n`\r\nend\r\n")
SINGLE = (b"From: a@example.org\r\nSubject: single\r\nMIME-Version: 1.0\r\n"
          b"Content-Type: text/plain; charset=utf-8\r\n"
          b"Content-Transfer-Encoding: base64\r\n\r\n" +
          base64.encodebytes("héllo wörld\r\n".encode()).replace(b"\n", b"\r\n"))


@pytest.fixture(scope="module")
def srv(imap_instance):
    reset_maildirs(imap_instance)
    s = start_imap(imap_instance)
    with s.session() as c:
        c.ok("CREATE Bin")
        c.ok("APPEND Bin ", Literal(MULTI), " ", Literal(SINGLE), " ", Literal(UNKNOWN))
    yield s
    problems = check_stopped([s])
    assert not problems, problems


@pytest.fixture
def c(srv):
    conn = srv.session()
    conn.select("Bin")
    conn.ok("STORE 1:* -FLAGS.SILENT (\\Seen)")
    yield conn
    conn.close()


ITEM = re.compile(rb"(BINARY(?:\.SIZE)?\[[0-9.]*\](?:<\d+>)?) (?:(~?)\{(\d+)\}\r\n|(\d+))")


def binary_items(r, seq):
    """{label: (bytes, literal8?)} or {label: size} of '* seq FETCH'."""
    out = {}
    for u in r.untagged:
        if not u.startswith(b"* %d FETCH " % seq):
            continue
        pos = 0
        while True:
            m = ITEM.search(u, pos)
            if not m:
                break
            label = m.group(1).decode()
            if m.group(4) is not None:
                out[label] = int(m.group(4))
                pos = m.end()
            else:
                n = int(m.group(3))
                out[label] = (u[m.end():m.end() + n], m.group(2) == b"~")
                pos = m.end() + n
    return out


def flags(c, seq):
    return c.ok("FETCH %d FLAGS" % seq).fetches()[seq]["FLAGS"]


def test_capability(srv):
    with srv.conn() as c:
        assert "BINARY" not in capabilities(c.ok("CAPABILITY").data("CAPABILITY")[0])
        c.login(ALICE, PASSWORD)
        assert "BINARY" in capabilities(c.ok("CAPABILITY").data("CAPABILITY")[0])


def test_quoted_printable_part(c):
    r = c.ok("FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1])")
    got = binary_items(r, 1)
    data, lit8 = got["BINARY[1]"]
    assert data == TEXT_QP.encode() and not lit8, got
    assert got["BINARY.SIZE[1]"] == len(TEXT_QP.encode())
    # the encoded form is still what BODY[] gives
    r = c.ok("FETCH 1 BODY.PEEK[1]")
    assert b"=C3=BC" in r.fetches()[1]["BODY[1]"]


def test_base64_part_with_nul_is_literal8(c):
    r = c.ok("FETCH 1 (BINARY.PEEK[2] BINARY.SIZE[2])")
    got = binary_items(r, 1)
    assert got["BINARY[2]"] == (BLOB, True), got
    assert got["BINARY.SIZE[2]"] == len(BLOB)


def test_identity_and_nested_parts(c):
    r = c.ok("FETCH 1 (BINARY.PEEK[3] BINARY.PEEK[4.1] BINARY.SIZE[4.1] BINARY.PEEK[4])")
    got = binary_items(r, 1)
    assert got["BINARY[3]"] == (b"plain 7bit text", False), got
    assert got["BINARY[4.1]"] == (b"inner text decoded\r\n", False), got
    assert got["BINARY.SIZE[4.1]"] == len(b"inner text decoded\r\n")
    # a message/rfc822 part is not decoded itself
    assert got["BINARY[4]"][0].startswith(b"From: inner@example.org"), got


def test_single_part_and_whole_message(c):
    r = c.ok("FETCH 2 (BINARY.PEEK[1] BINARY.SIZE[1] BINARY.PEEK[])")
    got = binary_items(r, 2)
    assert got["BINARY[1]"] == ("héllo wörld\r\n".encode(), False), got
    assert got["BINARY.SIZE[1]"] == len("héllo wörld\r\n".encode())
    assert got["BINARY[]"] == (SINGLE, False), got


def test_partial(c):
    r = c.ok("FETCH 1 (BINARY.PEEK[2]<3.5> BINARY.PEEK[1]<0.5> BINARY.PEEK[1]<6.4>)")
    got = binary_items(r, 1)
    assert got["BINARY[2]<3>"] == (BLOB[3:8], False), got       # no NUL in it
    assert got["BINARY[1]<0>"] == ("Grüße".encode()[:5], False), got
    assert got["BINARY[1]<6>"] == (TEXT_QP.encode()[6:10], False), got
    r = c.ok("FETCH 1 (BINARY.PEEK[2]<0.3> BINARY.PEEK[2]<100000.10>)")
    got = binary_items(r, 1)
    assert got["BINARY[2]<0>"] == (b"\0\1\2", True), got
    assert got["BINARY[2]<100000>"] == (b"", False), got
    # the last octets, NULs included
    n = len(BLOB)
    r = c.ok("FETCH 1 BINARY.PEEK[2]<%d.10>" % (n - 5))
    assert binary_items(r, 1)["BINARY[2]<%d>" % (n - 5)] == (b"\0\0end"[-5:], True)


def test_seen(c):
    assert "\\Seen" not in flags(c, 2)
    c.ok("FETCH 2 (BINARY.PEEK[1] BINARY.SIZE[1])")
    assert "\\Seen" not in flags(c, 2)
    r = c.ok("FETCH 2 BINARY[1]")
    assert "\\Seen" in r.fetches()[2]["FLAGS"], r
    assert "\\Seen" in flags(c, 2)


def test_uid_fetch(c):
    r = c.no("UID FETCH 1:* BINARY.SIZE[1]")         # message 3: UNKNOWN-CTE
    assert binary_items(r, 1)["BINARY.SIZE[1]"] == len(TEXT_QP.encode()), r
    uids = sorted(int(f["UID"]) for f in c.ok("FETCH 1:2 UID").fetches().values())
    r = c.ok("UID FETCH %d BINARY.PEEK[1]" % uids[1])
    assert binary_items(r, 2)["BINARY[1]"][0] == "héllo wörld\r\n".encode()


def test_unknown_cte(c):
    r = c.no("FETCH 3 BINARY.PEEK[1]")
    assert r.code() == "UNKNOWN-CTE" and not binary_items(r, 3), r
    r = c.no("FETCH 3 BINARY.SIZE[1]")
    assert r.code() == "UNKNOWN-CTE", r
    # the other messages are still answered; the failing one is not
    r = c.no("FETCH 1:3 BINARY.PEEK[1]")
    assert r.code() == "UNKNOWN-CTE", r
    assert binary_items(r, 1) and binary_items(r, 2) and not binary_items(r, 3), r
    # BODY of it is fine, and a non-PEEK BINARY that failed sets no \Seen
    c.ok("FETCH 3 BODY.PEEK[1]")
    c.no("FETCH 3 BINARY[1]")
    assert "\\Seen" not in flags(c, 3)


def test_syntax(c):
    for bad in ("BINARY[1.HEADER]", "BINARY[TEXT]", "BINARY[1.MIME]", "BINARY.SIZE[1]<0.5>",
                "BINARY[1]<5>", "BINARY.PEEK", "BINARY[x]", "BINARY.SIZE"):
        c.bad("FETCH 1 " + bad)
    # a part that does not exist: empty
    r = c.ok("FETCH 2 (BINARY.PEEK[7] BINARY.SIZE[7])")
    got = binary_items(r, 2)
    assert got["BINARY[7]"] == (b"", False) and got["BINARY.SIZE[7]"] == 0, got


# --------------------------------------------------------------------------
# APPEND with literal8


def append8(c, box, parts):
    """APPEND box with parts: bytes sent as they are, (data, plus) a
    literal8, synchronising unless plus. The Result."""
    tag = c.tag()
    out = tag.encode() + b" APPEND " + box.encode()
    for p in parts:
        if isinstance(p, bytes):
            out += p
            continue
        data, plus = p
        out += b" ~{%d%s}\r\n" % (len(data), b"+" if plus else b"")
        if not plus:
            c.send(out)
            line = c.line()
            if not line.startswith(b"+"):
                c.buf = line + b"\r\n" + c.buf
                return c.read_tagged(tag)
            out = b""
        out += data
    c.send(out + b"\r\n")
    return c.read_tagged(tag)


EIGHTBIT = ("From: a@example.org\r\nSubject: 8bit\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\nüñíçødé body\r\n").encode()


def count(c, box):
    r = c.ok("STATUS %s (MESSAGES)" % box)
    return int(re.search(rb"MESSAGES (\d+)", r.data("STATUS")[0]).group(1))


def test_append_literal8(srv):
    with srv.session() as c:
        c.ok("CREATE L8")
        r = append8(c, "L8", [(EIGHTBIT, False)])
        assert r.status == "OK" and r.code().startswith("APPENDUID"), r
        r = append8(c, "L8", [b" (\\Seen)", (EIGHTBIT, True)])
        assert r.status == "OK", r
        # MULTIAPPEND: a literal8 and a literal
        r = append8(c, "L8", [(EIGHTBIT, True), b" {%d+}\r\n" % len(EIGHTBIT) + EIGHTBIT])
        assert r.status == "OK" and len(r.code().split()[2].split(":")) == 2, r
        # over 64 KiB: spooled
        big = EIGHTBIT + "ü".encode() * 50000 + b"\r\n"
        r = append8(c, "L8", [(big, False)])
        assert r.status == "OK", r
        assert count(c, "L8") == 5
        c.select("L8")
        f = c.ok("FETCH 1:5 BODY.PEEK[]").fetches()
        assert [f[k]["BODY[]"] for k in range(1, 6)] == [EIGHTBIT] * 4 + [big]
        r = c.ok("FETCH 1 BINARY.PEEK[1]")
        assert binary_items(r, 1)["BINARY[1]"] == ("üñíçødé body\r\n".encode(), False)


def test_append_binary_content_refused(srv):
    """RFC 3516 4.4: content the mailbox cannot store (a NUL, a bare LF:
    a Maildir file keeps neither as sent) gets NO [UNKNOWN-CTE]; nothing
    is stored, in one message or in a MULTIAPPEND."""
    nul = b"Subject: nul\r\n\r\nbody\0with a NUL\r\n"
    lf = b"Subject: lf\r\n\r\nbare\nLF\r\n"
    with srv.session() as c:
        c.ok("CREATE L8bad")
        for data in (nul, lf):
            r = append8(c, "L8bad", [(data, False)])
            assert r.status == "NO" and r.code() == "UNKNOWN-CTE", r
            r = append8(c, "L8bad", [(EIGHTBIT, True), (data, True)])
            assert r.status == "NO" and r.code() == "UNKNOWN-CTE", r
        big = b"Subject: big\r\n\r\n" + b"x" * 100000 + b"\0\r\n"
        r = append8(c, "L8bad", [(big, False)])
        assert r.status == "NO" and r.code() == "UNKNOWN-CTE", r
        big = b"Subject: big\r\n\r\n" + b"y" * 100000 + b"\nz\r\n"
        r = append8(c, "L8bad", [(big, True)])
        assert r.status == "NO" and r.code() == "UNKNOWN-CTE", r
        # a NUL in a normal literal is no CHAR8 (RFC 3501 9)
        r = c.command("APPEND L8bad ", Literal(nul))
        assert r.status == "BAD", r
        r = c.command("APPEND L8bad ", Literal(b"Subject: big\r\n\r\n" + b"n" * 100000 + b"\0"))
        assert r.status == "BAD", r
        assert count(c, "L8bad") == 0
        # a literal8 anywhere but APPEND: BAD
        c.send(b"X1 SELECT ~{5+}\r\nINBOX\r\n")
        assert c.read_tagged("X1").status == "BAD"
        c.send(b"X2 UID FETCH 1 ~{5+}\r\nFLAGS\r\n")
        assert c.read_tagged("X2").status == "BAD"
        c.ok("NOOP")
