"""IMAP messages (RFC 3501 6.4, RFC 4315 UIDPLUS, RFC 6851 MOVE, RFC 7888
LITERAL+): APPEND, FETCH (every item and section, partial), ENVELOPE and
BODYSTRUCTURE, STORE, COPY/MOVE, EXPUNGE/UID EXPUNGE/CLOSE/UNSELECT, \\Recent,
keywords. SQLite (the directory does not matter here)."""

import calendar
import os
import re
import threading
import time

import pytest

from imap_util import (ALICE, MULTIPART, crlf, files, folder_dir,  # noqa: F401 (fixtures)
                       imap_inst, imap_instance, imap_server, imap_start,
                       message, message_files, parse, put, put_many)

SIMPLE = message(1)


def uids_of(c, seqset="1:*"):
    r = c.ok("FETCH %s UID" % seqset)
    f = r.fetches()
    return [int(f[n]["UID"]) for n in sorted(f)]


def flags_of(c, seqset="1:*", uid=False):
    """{seq: set(flags)} (PEEK-free: FLAGS never sets \\Seen)."""
    r = c.ok("%sFETCH %s FLAGS" % ("UID " if uid else "", seqset))
    return {n: set(v["FLAGS"]) for n, v in r.fetches().items()}


def apply_expunges(seq_uids, result):
    """Apply the '* N EXPUNGE' responses in order to a list of uids."""
    out = list(seq_uids)
    for n in result.numbered("EXPUNGE"):
        assert 1 <= n <= len(out), (n, out, result)
        del out[n - 1]
    return out


def uidset(s):
    """'1:3,7' -> [1, 2, 3, 7]"""
    out = []
    for part in s.split(","):
        a, _, b = part.partition(":")
        lo, hi = sorted((int(a), int(b or a)))
        out += range(lo, hi + 1)
    return out


def internaldate_ts(s):
    s = s.decode() if isinstance(s, bytes) else s
    t = time.strptime(s[:20].strip(), "%d-%b-%Y %H:%M:%S")
    off = s.strip()[-5:]
    sign = -1 if off[0] == "-" else 1
    return calendar.timegm(t) - sign * (int(off[1:3]) * 3600 + int(off[3:5]) * 60)


def selected(srv, folder="INBOX"):
    return srv.session(select=folder)


# --------------------------------------------------------------------------
# APPEND


def test_append_flags_date_appenduid(imap_server):
    inst = imap_server.instance
    data = crlf(message(7))
    with imap_server.session() as c:
        r = c.ok("STATUS INBOX (UIDVALIDITY UIDNEXT)")
        uv = int(re.search(r"UIDVALIDITY (\d+)", r.find("STATUS")[0]).group(1))
        nxt = int(re.search(r"UIDNEXT (\d+)", r.find("STATUS")[0]).group(1))
        r = c.append("INBOX", data, flags="\\Seen \\Flagged", date="05-Mar-2026 08:00:00 +0100")
        assert r.status == "OK", r
        assert r.cont, "a synchronising literal needs a continuation request"
        code = r.code()
        assert code and code.split()[0].upper() == "APPENDUID", r
        assert int(code.split()[1]) == uv and int(code.split()[2]) == nxt, (r, uv, nxt)
        c.select()
        r = c.ok("FETCH 1 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])")
        f = r.fetches()[1]
        assert int(f["UID"]) == nxt
        assert {"\\Seen", "\\Flagged"} <= set(f["FLAGS"]), f
        assert f["BODY[]"] == data
        assert int(f["RFC822.SIZE"]) == len(data)
        assert internaldate_ts(f["INTERNALDATE"]) == \
            calendar.timegm((2026, 3, 5, 7, 0, 0, 0, 0, 0)), f
        c.logout()
    names = files(inst, ALICE, "cur")
    assert len(names) == 1 and names[0].endswith(":2,FS"), names


def test_append_literal_plus_and_lf_only(imap_server):
    with imap_server.session() as c:
        r = c.append("INBOX", crlf(message(1)), plus=True)
        assert r.status == "OK" and not r.cont, r
        # several LITERAL+ APPENDs pipelined in one write
        c.send(b"".join(b"P%d APPEND INBOX {%d+}\r\n%s\r\n" % (i, len(crlf(message(i))),
                                                               crlf(message(i)))
                        for i in range(2, 5)))
        for i in range(2, 5):
            r = c.read_tagged("P%d" % i)
            assert r.status == "OK", r
        r = c.select()
        assert r.numbered("EXISTS") == [4], r
        r = c.ok("FETCH 1:4 BODY.PEEK[HEADER.FIELDS (SUBJECT)]")
        f = r.fetches()
        assert [f[i]["BODY[HEADER.FIELDS (SUBJECT)]"] for i in range(1, 5)] == \
            [b"Subject: test message %d\r\n\r\n" % i for i in range(1, 5)], f
        c.logout()


def test_append_keywords_and_errors(imap_server):
    with imap_server.session() as c:
        r = c.append("INBOX", b"Subject: kw\r\n\r\nbody\r\n", flags="$Forwarded Work \\Draft")
        assert r.status == "OK", r
        r = c.select()
        fl = parse(r.data("FLAGS")[0])[0]
        assert "$Forwarded" in fl and "Work" in fl, fl
        pf = r.find("PERMANENTFLAGS")[0]
        assert "$Forwarded" in pf and "\\*" in pf, pf
        f = flags_of(c)
        assert f[1] >= {"$Forwarded", "Work", "\\Draft"}, f
        # nonexistent mailbox: [TRYCREATE]
        r = c.append("Nonexistent", b"Subject: x\r\n\r\nx\r\n", plus=True)
        assert r.status == "NO" and (r.code() or "").upper() == "TRYCREATE", r
        # date-day-fixed may be SP DIGIT (RFC 3501 9)
        r = c.append("INBOX", b"Subject: d\r\n\r\nx\r\n", date=" 5-Mar-2026 08:00:00 -0800",
                     plus=True)
        assert r.status == "OK", r
        # a bad date, a bad flag
        r = c.append("INBOX", b"Subject: x\r\n\r\nx\r\n", date="32-Foo-2026 99:00:00 +0000",
                     plus=True)
        assert r.status == "BAD", r
        r = c.append("INBOX", b"Subject: x\r\n\r\nx\r\n", flags="\\Bogus", plus=True)
        assert r.status in ("BAD", "NO"), r
        r = c.append("INBOX", b"Subject: x\r\n\r\nx\r\n", flags="\\Recent", plus=True)
        assert r.status in ("BAD", "NO", "OK"), r
        r = c.ok("NOOP")
        assert flags_of(c)[1] >= {"$Forwarded"}
        c.logout()


def test_append_too_big(imap_inst, imap_start):
    """A synchronising literal over message_size_limit is refused before the
    client sends it (no '+'): NO [TOOBIG] (RFC 7889 / 4469) or BAD."""
    srv = imap_start(imap_inst, ("message_size_limit=10000",))
    with srv.session() as c:
        r = c.no_continuation(b"T1 APPEND INBOX {20000}\r\n", "T1")
        assert r.status in ("NO", "BAD"), r
        if r.status == "NO":
            assert "TOOBIG" in (r.code() or "").upper(), r
        # the session is still in sync: the next command works
        c.ok("NOOP")
        # the limit itself is allowed, one more byte is not
        r = c.no_continuation(b"T2 APPEND INBOX {10001}\r\n", "T2")
        assert r.status in ("NO", "BAD"), r
        r = c.append("INBOX", b"Subject: exact\r\n\r\n" + b"e" * (10000 - 20) + b"\r\n")
        assert r.status == "OK", r
        r = c.append("INBOX", b"Subject: fits\r\n\r\n" + b"x" * 5000 + b"\r\n")
        assert r.status == "OK", r
        r = c.select()
        assert r.numbered("EXISTS") == [2], r
        c.logout()


def test_append_to_selected_mailbox_gives_exists(imap_server):
    with imap_server.session(select="INBOX") as c:
        r = c.append("INBOX", b"Subject: a\r\n\r\na\r\n")
        assert r.status == "OK", r
        r2 = c.ok("NOOP")
        assert (r.numbered("EXISTS") + r2.numbered("EXISTS"))[-1:] == [1], (r, r2)
        c.logout()


# --------------------------------------------------------------------------
# FETCH


def test_fetch_simple_items(imap_server):
    inst = imap_server.instance
    ts = calendar.timegm((2026, 3, 2, 10, 0, 5, 0, 0, 0))
    put(inst, ALICE, SIMPLE, mtime=ts)
    wire = crlf(SIMPLE)
    hdr, body = wire.split(b"\r\n\r\n", 1)
    with imap_server.session(select="INBOX") as c:
        r = c.ok("FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE UID ENVELOPE BODY BODYSTRUCTURE)")
        f = r.fetches()[1]
        assert "\\Recent" in f["FLAGS"] and "\\Seen" not in f["FLAGS"], f
        assert internaldate_ts(f["INTERNALDATE"]) == ts, f
        # date-time (RFC 3501 9): "dd-Mon-yyyy hh:mm:ss +zzzz", day as 2DIGIT or SP DIGIT
        assert re.match(rb"^( \d|\d\d)-(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)-"
                        rb"\d{4} \d\d:\d\d:\d\d [+-]\d{4}$", f["INTERNALDATE"]), f
        assert int(f["RFC822.SIZE"]) == len(wire)
        env = f["ENVELOPE"]
        assert env[0] == b"Mon, 2 Mar 2026 10:00:00 +0000"
        assert env[1] == b"test message 1"
        assert env[2] == [[b"Sender 1", None, b"sender1", b"example.org"]], env
        assert env[3] == env[2] and env[4] == env[2], env     # sender, reply-to default
        assert env[5] == [[None, None, b"alice", b"example.test"]], env
        assert env[6] is None and env[7] is None and env[8] is None, env
        assert env[9] == b"<m1@example.org>", env
        bs = f["BODYSTRUCTURE"]
        assert [x.upper() if isinstance(x, bytes) else x for x in bs[:2]] == [b"TEXT", b"PLAIN"]
        assert [x.lower() for x in bs[2]] == [b"charset", b"us-ascii"], bs
        assert bs[3] is None and bs[4] is None and bs[5].upper() == b"7BIT", bs
        assert int(bs[6]) == len(body) and int(bs[7]) == 3, bs
        assert f["BODY"][:8] == bs[:8], (f["BODY"], bs)
        # the macros
        r = c.ok("FETCH 1 FAST")
        assert set(r.fetches()[1]) == {"FLAGS", "INTERNALDATE", "RFC822.SIZE"}, r
        r = c.ok("FETCH 1 ALL")
        assert set(r.fetches()[1]) == {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"}, r
        r = c.ok("FETCH 1 FULL")
        assert set(r.fetches()[1]) == {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE",
                                       "BODY"}, r
        # nothing so far set \Seen
        assert "\\Seen" not in flags_of(c)[1]
        # the whole message and its parts, PEEK
        r = c.ok("FETCH 1 (BODY.PEEK[] BODY.PEEK[HEADER] BODY.PEEK[TEXT] RFC822.HEADER "
                 "RFC822.SIZE)")
        f = r.fetches()[1]
        assert f["BODY[]"] == wire
        assert f["BODY[HEADER]"] == hdr + b"\r\n\r\n"
        assert f["BODY[TEXT]"] == body
        assert f["RFC822.HEADER"] == hdr + b"\r\n\r\n"
        assert "\\Seen" not in flags_of(c)[1]
        # BODY[1] of a non-multipart message is its body
        r = c.ok("FETCH 1 BODY.PEEK[1]")
        assert r.fetches()[1]["BODY[1]"] == body, r
        # header fields, in message order, with the blank line
        r = c.ok("FETCH 1 BODY.PEEK[HEADER.FIELDS (subject FROM X-Nope)]")
        f = r.fetches()[1]
        key = [k for k in f if k.startswith("BODY[HEADER.FIELDS")]
        assert len(key) == 1, f
        assert f[key[0]] == (b"From: Sender 1 <sender1@example.org>\r\n"
                             b"Subject: test message 1\r\n\r\n"), f
        r = c.ok("FETCH 1 BODY.PEEK[HEADER.FIELDS.NOT (Subject From Date Message-ID)]")
        f = r.fetches()[1]
        v = [f[k] for k in f if k.startswith("BODY[HEADER.FIELDS.NOT")][0]
        assert v == b"To: alice@example.test\r\n\r\n", f
        c.logout()


def test_fetch_partial(imap_server):
    inst = imap_server.instance
    put(inst, ALICE, SIMPLE)
    wire = crlf(SIMPLE)
    with imap_server.session(select="INBOX") as c:
        r = c.ok("FETCH 1 (BODY.PEEK[]<0.10> BODY.PEEK[]<10.5> BODY.PEEK[TEXT]<2.4>)")
        f = r.fetches()[1]
        assert f["BODY[]<0>"] == wire[:10], f
        assert f["BODY[]<10>"] == wire[10:15], f
        assert f["BODY[TEXT]<2>"] == wire.split(b"\r\n\r\n", 1)[1][2:6], f
        # beyond the end: empty; across the end: truncated
        r = c.ok("FETCH 1 (BODY.PEEK[]<100000.10> BODY.PEEK[]<%d.100>)" % (len(wire) - 3))
        f = r.fetches()[1]
        assert f["BODY[]<100000>"] in (b"", None), f
        assert f["BODY[]<%d>" % (len(wire) - 3)] == wire[-3:], f
        r = c.ok("FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]<0.7>")
        f = r.fetches()[1]
        v = [f[k] for k in f if k.startswith("BODY[HEADER.FIELDS")]
        assert v == [b"Subject"], f
        c.bad("FETCH 1 BODY.PEEK[]<5>")
        c.bad("FETCH 1 BODY.PEEK[]<a.b>")
        c.logout()


@pytest.mark.parametrize("tls", [False, True])
def test_fetch_big_messages_across_chunks(imap_server, tls):
    """FETCH 1:* of messages that together span many 256 KiB reply chunks,
    LF and CRLF files, over plain and TLS: every literal is the exact CRLF
    form, whichever order BODY[] and the items parsed from the message
    come in, and with RFC822 and a partial BODY[] in the same command."""
    inst = imap_server.instance
    datas = []
    for i in range(12):
        body = b"".join(b"%s %d/%06d %s\n" % (b"." if j % 50 == 0 else b"line", i, j, b"x" * (j % 90))
                        for j in range(2000 + 700 * i))
        d = message(i + 1, body=body)
        if i % 3 == 1:
            d = crlf(d)
        datas.append(d)
        put(inst, ALICE, d, name="17000000%02d.M%dP1.big" % (i, i))
    wires = [crlf(d) for d in datas]
    assert sum(map(len, wires)) > 6 * 256 * 1024
    with imap_server.session(select="INBOX", tls=tls) as c:
        r = c.ok("FETCH 1:* (BODY.PEEK[] ENVELOPE RFC822.SIZE)")
        f = r.fetches()
        assert sorted(f) == list(range(1, 13)), sorted(f)
        for n, w in enumerate(wires, 1):
            assert f[n]["BODY[]"] == w, n
            assert int(f[n]["RFC822.SIZE"]) == len(w), n
            assert f[n]["ENVELOPE"][1] == b"test message %d" % n, n
        # the MIME tree first, the whole message after it
        r = c.ok("FETCH 1:* (BODY.PEEK[TEXT] BODY.PEEK[]<5.20> BODY.PEEK[])")
        f = r.fetches()
        for n, w in enumerate(wires, 1):
            assert f[n]["BODY[TEXT]"] == w.split(b"\r\n\r\n", 1)[1], n
            assert f[n]["BODY[]<5>"] == w[5:25], n
            assert f[n]["BODY[]"] == w, n
        # RFC822 sets \Seen and reports the flag with the message
        r = c.ok("FETCH 2:4 RFC822")
        f = r.fetches()
        for n in (2, 3, 4):
            assert f[n]["RFC822"] == wires[n - 1], n
            assert "\\Seen" in f[n]["FLAGS"], f[n]["FLAGS"]
        c.logout()


def test_fetch_sets_seen(imap_server):
    inst = imap_server.instance
    put_many(inst, ALICE, 4)
    with imap_server.session(select="INBOX") as c:
        r = c.ok("FETCH 1 BODY[]")
        f = r.fetches()[1]
        # the \Seen change is reported (RFC 3501 6.4.5), in this or a
        # separate FETCH response
        assert "\\Seen" in f.get("FLAGS", []), r
        r = c.ok("FETCH 2 RFC822")
        assert r.fetches()[2]["RFC822"] == crlf(message(2))
        r = c.ok("FETCH 3 RFC822.TEXT")
        assert r.fetches()[3]["RFC822.TEXT"] == crlf(message(3)).split(b"\r\n\r\n", 1)[1]
        r = c.ok("FETCH 4 (RFC822.HEADER BODY.PEEK[TEXT])")
        f = flags_of(c)
        assert ["\\Seen" in f[i] for i in (1, 2, 3, 4)] == [True, True, True, False], f
        c.ok("UNSELECT")
        c.examine("INBOX")
        c.ok("FETCH 4 BODY[]")
        assert "\\Seen" not in flags_of(c)[4]       # read-only: nothing changes
        c.logout()
    cur = files(inst, ALICE, "cur")
    assert sum(n.endswith(":2,S") for n in cur) == 3, cur


def test_fetch_multipart_sections(imap_server):
    inst = imap_server.instance
    put(inst, ALICE, MULTIPART)
    wire = crlf(MULTIPART)
    with imap_server.session(select="INBOX") as c:
        r = c.ok("FETCH 1 (BODY.PEEK[1] BODY.PEEK[1.1] BODY.PEEK[1.2] BODY.PEEK[2] "
                 "BODY.PEEK[3] BODY.PEEK[3.HEADER] BODY.PEEK[3.TEXT] BODY.PEEK[1.1.MIME] "
                 "BODY.PEEK[2.MIME] BODY.PEEK[3.1] BODY.PEEK[TEXT])")
        f = r.fetches()[1]
        assert f["BODY[1.1]"] == b"Gr=C3=BC=C3=9Fe aus Z=C3=BCrich", f
        assert f["BODY[1.2]"] == b"<p>hello html</p>", f
        assert f["BODY[2]"] == b"AAECAwQFBgcICQ==", f
        assert f["BODY[1.1.MIME]"] == (b"Content-Type: text/plain; charset=utf-8\r\n"
                                       b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"), f
        assert f["BODY[2.MIME]"].startswith(b"Content-Type: application/octet-stream"), f
        assert f["BODY[2.MIME]"].endswith(b"filename=\"data.bin\"\r\n\r\n"), f
        inner = (b"From: Inner <inner@example.org>\r\nTo: alice@example.test\r\n"
                 b"Subject: inner message\r\nDate: Wed, 4 Mar 2026 09:00:00 +0000\r\n"
                 b"Message-ID: <inner@example.org>\r\n\r\n")
        assert f["BODY[3.HEADER]"] == inner, f
        assert f["BODY[3.TEXT]"] == b"inner body line 1\r\ninner body line 2", f
        assert f["BODY[3]"] == inner + b"inner body line 1\r\ninner body line 2", f
        assert f["BODY[3.1]"] == b"inner body line 1\r\ninner body line 2", f
        assert f["BODY[1]"].startswith(b"--inner\r\n") and \
            f["BODY[1]"].rstrip().endswith(b"--inner--"), f
        assert f["BODY[TEXT]"] == wire.split(b"\r\n\r\n", 1)[1]
        r = c.ok("FETCH 1 (BODY.PEEK[3.HEADER.FIELDS (SUBJECT)] BODY.PEEK[1.2]<3.5> "
                 "BODY.PEEK[3.MIME] BODY.PEEK[3.HEADER.FIELDS.NOT (SUBJECT DATE)])")
        f2 = r.fetches()[1]
        assert f2["BODY[3.HEADER.FIELDS (SUBJECT)]"] == b"Subject: inner message\r\n\r\n", f2
        assert f2["BODY[1.2]<3>"] == b"hello", f2
        assert f2["BODY[3.MIME]"] == b"Content-Type: message/rfc822\r\n\r\n", f2
        assert f2["BODY[3.HEADER.FIELDS.NOT (SUBJECT DATE)]"] == (
            b"From: Inner <inner@example.org>\r\nTo: alice@example.test\r\n"
            b"Message-ID: <inner@example.org>\r\n\r\n"), f2
        # a part that does not exist: empty string or NO (RFC 3501 leaves it open)
        r = c.command("FETCH 1 BODY.PEEK[9]")
        if r.status == "OK":
            assert r.fetches()[1]["BODY[9]"] in (b"", None), r
        else:
            assert r.status in ("NO", "BAD"), r
        assert "\\Seen" not in flags_of(c)[1]
        c.logout()


def test_bodystructure_multipart(imap_server):
    inst = imap_server.instance
    put(inst, ALICE, MULTIPART)
    with imap_server.session(select="INBOX") as c:
        r = c.ok("FETCH 1 (BODYSTRUCTURE BODY ENVELOPE BODY.PEEK[1.1] BODY.PEEK[2] "
                 "BODY.PEEK[3])")
        f = r.fetches()[1]
        bs = f["BODYSTRUCTURE"]
        up = lambda x: x.upper() if isinstance(x, bytes) else x  # noqa: E731
        # (alternative) (octet-stream) (message/rfc822) "MIXED" (boundary) ...
        assert isinstance(bs[0], list) and isinstance(bs[1], list) and isinstance(bs[2], list)
        assert up(bs[3]) == b"MIXED", bs
        assert [x.lower() for x in bs[4]] == [b"boundary", b"outer"], bs
        alt = bs[0]
        assert up(alt[2]) == b"ALTERNATIVE", alt
        plain, html = alt[0], alt[1]
        assert [up(plain[0]), up(plain[1])] == [b"TEXT", b"PLAIN"], plain
        assert [x.lower() for x in plain[2]] == [b"charset", b"utf-8"], plain
        assert up(plain[5]) == b"QUOTED-PRINTABLE", plain
        assert int(plain[6]) == len(f["BODY[1.1]"]), (plain, f["BODY[1.1]"])
        assert [up(html[0]), up(html[1])] == [b"TEXT", b"HTML"], html
        att = bs[1]
        assert [up(att[0]), up(att[1])] == [b"APPLICATION", b"OCTET-STREAM"], att
        assert [x.lower() for x in att[2]] == [b"name", b"data.bin"], att
        assert up(att[5]) == b"BASE64" and int(att[6]) == len(f["BODY[2]"]) == 16, att
        # extension data: disposition
        flat = repr(att).lower()
        assert "attachment" in flat and "data.bin" in flat, att
        msg = bs[2]
        assert [up(msg[0]), up(msg[1])] == [b"MESSAGE", b"RFC822"], msg
        assert int(msg[6]) == len(f["BODY[3]"]), msg
        env, body, lines = msg[7], msg[8], msg[9]
        assert env[1] == b"inner message" and env[9] == b"<inner@example.org>", env
        assert [up(body[0]), up(body[1])] == [b"TEXT", b"PLAIN"], body
        assert int(lines) >= 7, msg
        # BODY is BODYSTRUCTURE without extension data
        b = f["BODY"]
        assert up(b[3]) == b"MIXED" and len(b) == 4, b
        # the envelope of the outer message
        env = f["ENVELOPE"]
        assert env[0] == b"Tue, 3 Mar 2026 11:12:13 +0100"
        assert env[1] == b"multipart test"
        assert env[2] == [[b"Alice", None, b"alice", b"example.test"]], env
        assert env[5] == [[b"Bob", None, b"bob", b"example.test"],
                          [None, None, b"carol", b"example.org"]], env
        assert env[6] == [[None, None, b"dave", b"example.org"]], env
        assert env[9] == b"<multi@example.test>", env
        c.logout()


def test_envelope_odd_headers(imap_server):
    """RFC 2047 words stay encoded, group syntax, quoted strings, no Subject."""
    inst = imap_server.instance
    put(inst, ALICE, b"From: \"Doe, John\" <john@example.org>\n"
                     b"To: undisclosed-recipients:;\n"
                     b"Cc: Team: a@example.org, b@example.org;\n"
                     b"Reply-To: replies@example.org\n"
                     b"In-Reply-To: <x@y>\n"
                     b"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= \"quoted\"\n"
                     b"\nbody\n")
    put(inst, ALICE, b"X-Nothing: at all\n\nbody\n")
    with imap_server.session(select="INBOX") as c:
        r = c.ok("FETCH 1:2 ENVELOPE")
        f = r.fetches()
        env = f[1]["ENVELOPE"]
        assert env[0] is None, env
        assert env[1] == b"=?UTF-8?Q?Gr=C3=BC=C3=9Fe?= \"quoted\"", env
        assert env[2] == [[b"Doe, John", None, b"john", b"example.org"]], env
        assert env[4] == [[None, None, b"replies", b"example.org"]], env
        # groups: (NIL NIL "name" NIL) ... (NIL NIL NIL NIL)
        assert env[5] == [[None, None, b"undisclosed-recipients", None],
                          [None, None, None, None]], env
        assert env[6] == [[None, None, b"Team", None],
                          [None, None, b"a", b"example.org"],
                          [None, None, b"b", b"example.org"],
                          [None, None, None, None]], env
        assert env[8] == b"<x@y>", env
        env = f[2]["ENVELOPE"]
        assert env == [None] * 10, env
        c.logout()


def test_addresses_with_comments_envelope_and_search(imap_server):
    """RFC 5322 3.4: comments (and folding) inside an address are neither
    part of it nor its display name. ENVELOPE shows the bare address, and
    SEARCH FROM/TO/CC/BCC find it by the parsed address, and still by a
    display name's substring (as Dovecot does)."""
    inst = imap_server.instance
    put(inst, ALICE, b"From: <user-from (comment)@ (comment) domain.org>\n"
                     b"To: John Doe\n <john.doe@example.org>\n"
                     b"Cc: user-cc (c1) @ (c2) example.net, x@y.test (Named)\n"
                     b"Bcc: \"Smith, Ann\" <ann(her)@(host)example.com>\n"
                     b"Subject: comments\n\nbody\n", flags="")
    put(inst, ALICE, b"From: other@domain.org\nTo: nobody@example.org\n"
                     b"Subject: (comment) user-from@domain.org\n\nbody\n", flags="")
    with imap_server.session(select="INBOX") as c:
        env = c.ok("FETCH 1 ENVELOPE").fetches()[1]["ENVELOPE"]
        assert env[2] == [[None, None, b"user-from", b"domain.org"]], env
        assert env[5] == [[b"John Doe", None, b"john.doe", b"example.org"]], env
        assert env[6] == [[None, None, b"user-cc", b"example.net"],
                          [b"Named", None, b"x", b"y.test"]], env
        assert env[7] == [[b"Smith, Ann", None, b"ann", b"example.com"]], env
        for crit, want in [("FROM user-from@domain.org", [1]),
                           ("FROM USER-FROM@DOMAIN", [1]),
                           ("FROM comment", []),
                           ("FROM domain.org", [1, 2]),
                           ("TO \"John\"", [1]),
                           ("TO \"John Doe\"", [1]),
                           ("TO john.doe@example.org", [1]),
                           ("CC user-cc@example.net", [1]),
                           ("CC named", [1]),
                           ("BCC ann@example.com", [1]),
                           ("BCC \"Smith, Ann\"", [1]),
                           ("BCC her", []),
                           ("SUBJECT user-from@domain.org", [2]),
                           ("OR FROM user-from@domain.org TO nobody@", [1, 2])]:
            assert sorted(c.ok("SEARCH " + crit).search()) == want, crit
        c.logout()


# --------------------------------------------------------------------------
# STORE


def test_store_variants(imap_server):
    inst = imap_server.instance
    put_many(inst, ALICE, 3)
    with imap_server.session(select="INBOX") as c:
        r = c.ok("STORE 1 FLAGS (\\Seen \\Flagged)")
        f = r.fetches()
        assert set(f[1]["FLAGS"]) - {"\\Recent"} == {"\\Seen", "\\Flagged"}, r
        r = c.ok("STORE 1 +FLAGS (\\Answered)")
        assert set(r.fetches()[1]["FLAGS"]) - {"\\Recent"} == \
            {"\\Seen", "\\Flagged", "\\Answered"}, r
        r = c.ok("STORE 1 -FLAGS (\\Flagged \\Seen)")
        assert set(r.fetches()[1]["FLAGS"]) - {"\\Recent"} == {"\\Answered"}, r
        # .SILENT: no untagged FETCH for our own change
        r = c.ok("STORE 2:3 +FLAGS.SILENT (\\Deleted \\Draft)")
        assert not r.numbered("FETCH"), r
        assert flags_of(c)[2] - {"\\Recent"} == {"\\Deleted", "\\Draft"}
        r = c.ok("STORE 2 FLAGS.SILENT ()")
        assert not r.numbered("FETCH"), r
        assert flags_of(c)[2] - {"\\Recent"} == set()
        # UID STORE: the untagged FETCH carries the UID (RFC 3501 6.4.8)
        uids = uids_of(c)
        r = c.ok("UID STORE %d +FLAGS (\\Seen)" % uids[2])
        f = r.fetches()
        assert int(f[3]["UID"]) == uids[2] and "\\Seen" in f[3]["FLAGS"], r
        r = c.ok("UID STORE %d:%d -FLAGS.SILENT (\\Seen \\Deleted \\Draft)" % (uids[0], uids[2]))
        assert not r.numbered("FETCH"), r
        # a UID that does not exist is silently ignored
        r = c.ok("UID STORE 999999 +FLAGS (\\Seen)")
        assert not r.numbered("FETCH"), r
        # ranges in any order, '*'
        r = c.ok("STORE 3:1 +FLAGS.SILENT (\\Flagged)")
        r = c.ok("STORE * -FLAGS.SILENT (\\Flagged)")
        f = flags_of(c)
        assert ["\\Flagged" in f[i] for i in (1, 2, 3)] == [True, True, False], f
        c.bad("STORE 1 +FLAGS (\\Bogus)")
        c.bad("STORE 1 FROB (\\Seen)")
        c.bad("STORE 1")
        c.logout()
    cur = sorted(files(inst, ALICE, "cur"))
    assert [n.split(":2,")[1] for n in cur] == ["FR", "F", ""], cur


def test_store_readonly_and_persisted(imap_server):
    inst = imap_server.instance
    put_many(inst, ALICE, 2)
    with imap_server.session() as c:
        c.examine("INBOX")
        # read-only: refused (NO) or ignored (OK), but nothing changes
        r = c.command("STORE 1 +FLAGS (\\Seen)")
        assert r.status in ("NO", "OK"), r
        assert "\\Seen" not in flags_of(c)[1]
        c.ok("UNSELECT")
        c.select("INBOX")
        c.ok("STORE 1 +FLAGS (\\Seen \\Answered)")
        c.logout()
    with imap_server.session(select="INBOX") as c:
        f = flags_of(c)
        assert f[1] >= {"\\Seen", "\\Answered"} and "\\Seen" not in f[2], f
        c.logout()


def check_flags_announced(untagged, announced):
    """Walk untagged responses in order: every keyword a FETCH shows must
    be in the last '* FLAGS' (and PERMANENTFLAGS) seen before it (RFC 3501
    7.2.6). announced: the keywords known before. Returns them after."""
    announced = set(announced)
    for u in untagged:
        u = u.decode("utf-8", "replace")
        m = re.match(r"\* FLAGS \((.*)\)$", u)
        if m:
            announced = {f for f in m.group(1).split() if not f.startswith("\\")}
            continue
        m = re.match(r"\* OK \[PERMANENTFLAGS \((.*)\)\]", u)
        if m:
            perm = {f for f in m.group(1).split() if not f.startswith("\\")}
            assert perm == announced, (u, announced)
            continue
        if re.match(r"\* \d+ FETCH ", u):
            items = parse(u.split(" FETCH ", 1)[1])[0]
            d = dict(zip(items[::2], items[1::2]))
            kws = {f for f in d.get("FLAGS", []) if not f.startswith("\\")}
            assert kws <= announced, "%r before FLAGS announced %r" % (u, kws - announced)
    return announced


def test_flags_announced_before_fetch_uses_keyword(imap_server):
    """A keyword never appears in a FETCH before untagged FLAGS (and
    PERMANENTFLAGS) announce it: not when this session's STORE makes it,
    nor when another session's does and a FETCH learns of it."""
    put_many(imap_server.instance, ALICE, 3)
    with imap_server.session() as a, imap_server.session(select="INBOX") as b:
        r = a.select("INBOX")
        known = check_flags_announced(r.untagged, set())
        # this session makes the keyword
        r = a.ok("STORE 1 +FLAGS ($First)")
        assert r.find(r"^\* FLAGS \(.*\$First"), r
        assert r.find(r"^\* OK \[PERMANENTFLAGS \(.*\$First"), r
        known = check_flags_announced(r.untagged, known)
        # another session makes one; this session's FETCH reads the
        # message (its file was renamed) and so learns the new flags
        b.ok("STORE 2 +FLAGS.SILENT ($Second)")
        r = a.ok("FETCH 2 (BODY.PEEK[] FLAGS)")
        known = check_flags_announced(r.untagged, known)
        assert "$Second" in r.fetches()[2]["FLAGS"], r
        assert "$Second" in known, r
        # and one set by a FETCH that sets \Seen after the other renamed
        b.ok("STORE 3 +FLAGS.SILENT ($Third)")
        r = a.ok("FETCH 3 (BODY[] FLAGS)")
        known = check_flags_announced(r.untagged, known)
        r = a.ok("NOOP")
        known = check_flags_announced(r.untagged, known)
        assert {"$First", "$Second", "$Third"} <= known, known
        r = a.ok("FETCH 1:3 FLAGS")
        check_flags_announced(r.untagged, known)
        a.logout()
        b.logout()


def test_keywords(imap_server):
    inst = imap_server.instance
    put_many(inst, ALICE, 2)
    with imap_server.session(select="INBOX") as c:
        r = c.ok("STORE 1 +FLAGS ($Forwarded $Junk Custom)")
        assert {"$Forwarded", "$Junk", "Custom"} <= set(r.fetches()[1]["FLAGS"]), r
        # new keywords are announced in FLAGS (RFC 3501 7.2.6), here or at the
        # next select
        r = c.ok("STORE 2 +FLAGS (custom)")     # case-insensitive: the same keyword
        fl = {x.lower() for x in r.fetches()[2]["FLAGS"]}
        assert "custom" in fl, r
        c.ok("UNSELECT")
        r = c.select("INBOX")
        fl = parse(r.data("FLAGS")[0])[0]
        assert {"$Forwarded", "$Junk"} <= set(fl) and "custom" in {x.lower() for x in fl}, fl
        r = c.ok("STORE 1 -FLAGS ($Junk)")
        assert set(r.fetches()[1]["FLAGS"]) >= {"$Forwarded", "Custom"} and \
            "$Junk" not in r.fetches()[1]["FLAGS"], r
        # up to 26 keywords per mailbox (Maildir letters a-z); beyond: refused
        ok = 0
        for i in range(30):
            r = c.command("STORE 2 +FLAGS (kw%02d)" % i)
            if r.status != "OK":
                assert r.status in ("NO", "BAD"), r
                break
            ok += 1
        assert 20 <= ok <= 26, ok
        c.ok("NOOP")
        c.logout()
    md = folder_dir(inst, ALICE)
    kwf = os.path.join(md, "dovecot-keywords")
    assert os.path.isfile(kwf)
    text = open(kwf).read()
    assert re.search(r"^\d+ \$Forwarded$", text, re.M), text
    cur = sorted(files(inst, ALICE, "cur"))
    assert all(re.search(r":2,[A-Za-z]*[a-z]", n) for n in cur), cur


# --------------------------------------------------------------------------
# COPY / MOVE


def test_copy_and_copyuid(imap_server):
    inst = imap_server.instance
    put_many(inst, ALICE, 3)
    with imap_server.session(select="INBOX") as c:
        c.ok("STORE 2 +FLAGS.SILENT (\\Flagged $Label1)")
        c.ok("CREATE Work")
        uids = uids_of(c)
        r = c.ok("STATUS Work (UIDVALIDITY)")
        uv = int(re.search(r"UIDVALIDITY (\d+)", r.find("STATUS")[0]).group(1))
        r = c.ok("COPY 2:3 Work")
        code = (r.code() or "").split()
        assert code and code[0].upper() == "COPYUID", r
        assert int(code[1]) == uv, (code, uv)
        assert code[2] in ("%d:%d" % (uids[1], uids[2]), "%d,%d" % (uids[1], uids[2])), code
        r = c.ok("UID COPY %d Work" % uids[0])
        code2 = r.code().split()
        assert code2[0].upper() == "COPYUID" and code2[2] == str(uids[0]), r
        # the source is unchanged
        assert len(uids_of(c)) == 3
        r = c.command("COPY 1 Nonexistent")
        assert r.status == "NO" and (r.code() or "").upper() == "TRYCREATE", r
        c.ok("UNSELECT")
        c.select("Work")
        r = c.ok("FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        f = r.fetches()
        assert len(f) == 3, r
        subj = [f[i]["BODY[HEADER.FIELDS (SUBJECT)]"].strip() for i in (1, 2, 3)]
        assert subj == [b"Subject: test message 2", b"Subject: test message 3",
                        b"Subject: test message 1"], subj
        assert {"\\Flagged", "$Label1"} <= set(f[1]["FLAGS"]), f
        # COPYUID's destination set names the new messages' UIDs
        assert [int(f[1]["UID"]), int(f[2]["UID"])] == uidset(code[3]), (code, f)
        assert [int(f[3]["UID"])] == uidset(code2[3]), (code2, f)
        c.logout()
    assert len(message_files(inst, ALICE, "Work")) == 3
    assert len(message_files(inst, ALICE)) == 3


def test_move(imap_server):
    inst = imap_server.instance
    put_many(inst, ALICE, 4)
    with imap_server.session(select="INBOX") as c:
        c.ok("CREATE Archive.2026")
        uids = uids_of(c)
        r = c.ok("MOVE 2:3 Archive.2026")
        # COPYUID in an untagged OK before the EXPUNGEs, or in the tagged OK
        # (RFC 6851 4.3)
        codes = r.find(r"^\* OK \[COPYUID ") + ([r.text] if "COPYUID" in r.text else [])
        assert codes, r
        assert apply_expunges(uids, r) == [uids[0], uids[3]], r
        r = c.ok("UID MOVE %d Archive.2026" % uids[3])
        assert apply_expunges([uids[0], uids[3]], r) == [uids[0]], r
        # UID MOVE of a UID that is gone: OK, nothing happens
        r = c.ok("UID MOVE %d Archive.2026" % uids[3])
        assert not r.numbered("EXPUNGE"), r
        r = c.command("MOVE 1 Nonexistent")
        assert r.status == "NO" and "TRYCREATE" in (r.code() or "").upper(), r
        assert uids_of(c) == [uids[0]]
        c.ok("UNSELECT")
        r = c.select("Archive.2026")
        assert r.numbered("EXISTS") == [3], r
        c.logout()
    assert len(message_files(inst, ALICE)) == 1
    assert len(message_files(inst, ALICE, "Archive.2026")) == 3


def test_imaplib_copy_move_expunge(imap_server):
    inst = imap_server.instance
    put_many(inst, ALICE, 3)
    m = imap_server.login()
    assert m.select("INBOX")[0] == "OK"
    assert m.copy("1", "Trash")[0] == "OK"
    typ, data = m._simple_command("MOVE", "2", "Trash")
    assert typ == "OK", data
    assert m.store("1", "+FLAGS", "(\\Deleted)")[0] == "OK"
    typ, data = m.expunge()
    # imaplib accumulates: the MOVE's '* 2 EXPUNGE', then this one
    assert typ == "OK" and data[-1:] == [b"1"], data
    typ, data = m.search(None, "ALL")
    assert data == [b"1"], data
    m.close()
    m.logout()
    assert len(message_files(inst, ALICE, "Trash")) == 2
    assert len(message_files(inst, ALICE)) == 1


# --------------------------------------------------------------------------
# EXPUNGE / UID EXPUNGE / CLOSE / UNSELECT


def test_expunge(imap_server):
    inst = imap_server.instance
    put_many(inst, ALICE, 5)
    with imap_server.session(select="INBOX") as c:
        uids = uids_of(c)
        c.ok("STORE 1,3,5 +FLAGS.SILENT (\\Deleted)")
        r = c.ok("EXPUNGE")
        assert len(r.numbered("EXPUNGE")) == 3, r
        assert apply_expunges(uids, r) == [uids[1], uids[3]], r
        assert uids_of(c) == [uids[1], uids[3]]
        r = c.ok("EXPUNGE")
        assert not r.numbered("EXPUNGE"), r
        c.logout()
    assert len(message_files(inst, ALICE)) == 2


def test_uid_expunge(imap_server):
    put_many(imap_server.instance, ALICE, 4)
    with imap_server.session(select="INBOX") as c:
        uids = uids_of(c)
        c.ok("STORE 1:4 +FLAGS.SILENT (\\Deleted)")
        r = c.ok("UID EXPUNGE %d,%d" % (uids[1], uids[3]))
        assert apply_expunges(uids, r) == [uids[0], uids[2]], r
        r = c.ok("UID EXPUNGE %d:%d" % (uids[3], uids[3] + 100))
        assert not r.numbered("EXPUNGE"), r
        assert uids_of(c) == [uids[0], uids[2]]
        c.bad("UID EXPUNGE")
        c.logout()


def test_close_unselect(imap_server):
    inst = imap_server.instance
    put_many(inst, ALICE, 3)
    with imap_server.session(select="INBOX") as c:
        c.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        c.ok("CHECK")
        r = c.ok("UNSELECT")             # no expunge
        assert not r.numbered("EXPUNGE")
        c.bad("CHECK")                   # nothing selected
        c.bad("FETCH 1 FLAGS")           # nothing selected
        c.examine("INBOX")
        r = c.ok("CLOSE")                # read-only: no expunge
        assert not r.numbered("EXPUNGE"), r
        assert len(message_files(inst, ALICE)) == 3
        c.select("INBOX")
        r = c.ok("CLOSE")                # expunges silently
        assert not r.numbered("EXPUNGE"), r
        c.bad("FETCH 1 FLAGS")
        assert len(message_files(inst, ALICE)) == 2
        c.bad("CLOSE")
        c.bad("UNSELECT")
        c.logout()


# --------------------------------------------------------------------------
# \Recent


def test_recent(imap_server):
    inst = imap_server.instance
    put_many(inst, ALICE, 2)
    with imap_server.session() as a, imap_server.session() as b:
        # EXAMINE does not take \Recent
        r = b.examine("INBOX")
        assert r.numbered("RECENT") == [2], r
        b.ok("CLOSE")
        r = a.select("INBOX")
        assert r.numbered("RECENT") == [2], r
        assert all("\\Recent" in v for v in flags_of(a).values())
        r = b.select("INBOX")
        assert r.numbered("RECENT") == [0], r
        assert not any("\\Recent" in v for v in flags_of(b).values())
        b.ok("CLOSE")
        # a new message: only one session gets it as \Recent
        put(inst, ALICE, message(3))
        r = a.ok("NOOP")
        assert r.numbered("EXISTS") == [3] and r.numbered("RECENT") == [3], r
        r = b.select("INBOX")
        assert r.numbered("RECENT") == [0], r
        # \Recent cannot be stored
        r = a.command("STORE 1 -FLAGS (\\Recent)")
        assert r.status in ("OK", "BAD", "NO"), r
        assert "\\Recent" in flags_of(a)[1]
        a.logout()
        b.logout()
    # a new session: nothing is recent any more
    with imap_server.session() as c:
        r = c.select("INBOX")
        assert r.numbered("RECENT") == [0], r
        c.logout()


def test_search_recent_new_old(imap_server):
    put_many(imap_server.instance, ALICE, 2)
    with imap_server.session(select="INBOX") as c:
        c.ok("STORE 1 +FLAGS.SILENT (\\Seen)")
        assert c.ok("SEARCH RECENT").search() == [1, 2]
        assert c.ok("SEARCH NEW").search() == [2]
        assert c.ok("SEARCH OLD").search() == []
        c.logout()


# --------------------------------------------------------------------------
# sizes, line ends, folded headers, dates


def test_sizes_match_bodies(imap_server):
    """RFC822.SIZE is the length of BODY[] for every kind of stored message:
    delivered over SMTP, APPENDed with CRLF, with bare LF, dropped with LF."""
    from imap_util import deliver
    inst = imap_server.instance
    deliver(imap_server, ALICE, message(1))
    put(inst, ALICE, MULTIPART)
    with imap_server.session() as c:
        assert c.append("INBOX", b"Subject: mixed\r\n\r\nline1\nline2\r\nline3").status == "OK"
        assert c.append("INBOX", b"Subject: lf\n\nonly\nlf\n").status == "OK"
        c.select("INBOX")
        r = c.ok("FETCH 1:* (RFC822.SIZE BODY.PEEK[] BODY.PEEK[HEADER] BODY.PEEK[TEXT])")
        f = r.fetches()
        assert len(f) == 4, r
        for n, v in f.items():
            body = v["BODY[]"]
            assert int(v["RFC822.SIZE"]) == len(body), (n, v["RFC822.SIZE"], len(body))
            assert v["BODY[HEADER]"] + v["BODY[TEXT]"] == body, n
            assert not re.search(rb"(?<!\r)\n", body), (n, body[:200])   # CRLF on the wire
        c.logout()


def pending_in_index(folder):
    """UIDs whose size and date petrel-index and its change log
    (petrel-index.log) do not know yet: the base's entries, overridden by
    the log's "m" lines."""
    pending = {}
    with open(os.path.join(folder, "petrel-index"), "rb") as f:
        lines = f.read().split(b"\n")[1:]
    try:
        with open(os.path.join(folder, "petrel-index.log"), "rb") as f:
            lines += [l[2:] for l in f.read().split(b"\n") if l.startswith(b"m ")]
    except FileNotFoundError:
        pass
    for l in lines:
        if l:
            pending[l.split(b" ", 1)[0]] = b" ? ? ? " in l
    return sorted(int(u) for u, p in pending.items() if p)


def test_sizes_and_dates_of_files_not_looked_at_yet(imap_server):
    """A sync only lists the directories; sizes and dates are learned when a
    command first needs them, by whichever command comes first, and kept in
    petrel-index (or its log) for the next session."""
    inst = imap_server.instance
    t = calendar.timegm((2024, 2, 29, 12, 0, 0, 0, 0, 0))
    small = b"Subject: small\n\nx\n"                       # no S=, no W=
    big = b"Subject: big\n\n" + b"line of text\n" * 400
    mixed = b"Subject: mixed\r\n\r\n" + b"crlf\r\nlf\n" * 50
    datas = [small, big, mixed]
    for i, d in enumerate(datas):
        put(inst, ALICE, d, mtime=t + 2 * 86400 * i, flags="S")
    sizes = [len(crlf(d)) for d in datas]
    index = os.path.join(folder_dir(inst, ALICE), "petrel-index")
    with imap_server.session(select="INBOX") as c:
        assert pending_in_index(os.path.dirname(index)) == [1, 2, 3]   # nothing looked at yet
        # SEARCH first: LARGER / SMALLER / dates stat the files
        assert c.ok("SEARCH LARGER %d" % (sizes[0] + 1)).search() == [2, 3]
        assert c.ok("SEARCH SMALLER %d" % (sizes[0] + 1)).search() == [1]
        assert c.ok("SEARCH SINCE 2-Mar-2024").search() == [2, 3]
        assert c.ok("SEARCH BEFORE 2-Mar-2024").search() == [1]
        c.logout()
    assert pending_in_index(os.path.dirname(index)) == []   # learned and kept
    os.unlink(index)                                     # start afresh
    if os.path.exists(os.path.join(folder_dir(inst, ALICE), "petrel-cache")):
        os.unlink(os.path.join(folder_dir(inst, ALICE), "petrel-cache"))
    with imap_server.session(select="INBOX") as c:
        # ENVELOPE first: the file read for it gives the size too
        c.ok("FETCH 1:3 ENVELOPE")
        r = c.ok("FETCH 1:3 (RFC822.SIZE INTERNALDATE)").fetches()
        assert [int(r[n]["RFC822.SIZE"]) for n in (1, 2, 3)] == sizes, r
        assert [internaldate_ts(r[n]["INTERNALDATE"]) for n in (1, 2, 3)] == \
            [t, t + 2 * 86400, t + 4 * 86400], r
        c.logout()
    os.unlink(index)
    with imap_server.session(select="INBOX") as c:
        # RFC822.SIZE alone: a stat and a count, no cache entry needed
        r = c.ok("FETCH 1:3 RFC822.SIZE").fetches()
        assert [int(r[n]["RFC822.SIZE"]) for n in (1, 2, 3)] == sizes, r
        # COPY: the copy's name carries the size, the date stays
        os.unlink(index)
        c.ok("UNSELECT")
        c.select("INBOX")
        c.ok("COPY 2 Archive")
        c.ok("UNSELECT")
        c.select("Archive")
        r = c.ok("FETCH * (RFC822.SIZE INTERNALDATE BODY.PEEK[])").fetches()
        (f,) = r.values()
        assert int(f["RFC822.SIZE"]) == sizes[1] == len(f["BODY[]"]), f
        assert internaldate_ts(f["INTERNALDATE"]) == t + 2 * 86400, f
        c.logout()
    assert any(",S=%d" % len(big) in n for n in
               files(inst, ALICE, "cur", "Archive") + files(inst, ALICE, "new", "Archive"))


def test_folded_headers(imap_server):
    put(imap_server.instance, ALICE,
        b"From: a@example.org\nSubject: first part\n  second part\nX-Long: x\n\ty\n"
        b"To: b@example.org\n\nbody\n")
    with imap_server.session(select="INBOX") as c:
        r = c.ok("FETCH 1 (ENVELOPE BODY.PEEK[HEADER.FIELDS (SUBJECT X-LONG)])")
        f = r.fetches()[1]
        assert f["BODY[HEADER.FIELDS (SUBJECT X-LONG)]"] == \
            b"Subject: first part\r\n  second part\r\nX-Long: x\r\n\ty\r\n\r\n", f
        # ENVELOPE unfolds (RFC 5322 2.2.3: remove the CRLF)
        assert f["ENVELOPE"][1] in (b"first part  second part", b"first part second part"), f
        assert c.ok("SEARCH SUBJECT \"second part\"").search() == [1]
        c.logout()


def test_copy_and_move_keep_internaldate_and_flags(imap_server):
    inst = imap_server.instance
    t = calendar.timegm((2025, 12, 24, 18, 30, 0, 0, 0, 0))
    put(inst, ALICE, message(1), mtime=t, flags="FS")
    put(inst, ALICE, message(2), mtime=t + 3600, flags="R")
    with imap_server.session(select="INBOX") as c:
        c.ok("COPY 1 Archive")
        c.ok("MOVE 2 Archive")
        c.ok("UNSELECT")
        c.select("Archive")
        r = c.ok("FETCH 1:2 (INTERNALDATE FLAGS)")
        f = r.fetches()
        assert internaldate_ts(f[1]["INTERNALDATE"]) == t, f
        assert internaldate_ts(f[2]["INTERNALDATE"]) == t + 3600, f
        assert set(f[1]["FLAGS"]) - {"\\Recent"} == {"\\Seen", "\\Flagged"}, f
        assert set(f[2]["FLAGS"]) - {"\\Recent"} == {"\\Answered"}, f
        c.logout()


def test_append_without_date_is_now(imap_server):
    with imap_server.session() as c:
        t0 = time.time()
        assert c.append("INBOX", b"Subject: now\r\n\r\nx\r\n").status == "OK"
        c.select("INBOX")
        r = c.ok("FETCH 1 INTERNALDATE")
        ts = internaldate_ts(r.fetches()[1]["INTERNALDATE"])
        assert t0 - 5 <= ts <= time.time() + 5, (t0, ts)
        c.logout()


def test_append_internaldate_never_changes(imap_server):
    """RFC 3501 2.3.3: INTERNALDATE does not change. APPEND with a date used
    to link the file into cur/ and set its mtime afterwards: a session that
    synced in between reported the time of the APPEND, later the date asked
    for. Another session polls (NOOP, FETCH INTERNALDATE) while APPENDs with
    an old date run; every message it sees has that date, from the first
    sight on."""
    want = calendar.timegm((2001, 2, 3, 4, 5, 6, 0, 0, 0))
    date = "03-Feb-2001 04:05:06 +0000"
    n = 300
    seen = {}
    wrong = []
    done = threading.Event()

    def poll():
        with imap_server.session(select="INBOX") as p:
            while not done.is_set():
                # the newest message only: each FETCH is quick, and the
                # sync after it finds the next one
                r = p.ok("FETCH * (UID INTERNALDATE)")
                for f in r.fetches().values():
                    if "INTERNALDATE" not in f:
                        continue
                    uid, ts = int(f["UID"]), internaldate_ts(f["INTERNALDATE"])
                    seen.setdefault(uid, ts)
                    if ts != want:
                        wrong.append((uid, f["INTERNALDATE"]))
            p.logout()

    with imap_server.session() as c:
        # FETCH * needs a message
        assert c.append("INBOX", crlf(message(0)), date=date).status == "OK"
        pollers = [threading.Thread(target=poll, daemon=True) for _ in range(3)]
        for t in pollers:
            t.start()
        try:
            for i in range(1, n):
                r = c.append("INBOX", crlf(message(i)), date=date, plus=True)
                assert r.status == "OK", r
            c.logout()
        finally:
            done.set()
            for t in pollers:
                t.join(60)
    assert not any(t.is_alive() for t in pollers)
    assert not wrong, "INTERNALDATE other than the APPEND's date seen: %r" % wrong[:5]
    assert len(seen) > 0
    with imap_server.session(select="INBOX") as c:
        r = c.ok("FETCH 1:* INTERNALDATE")
        dates = {internaldate_ts(f["INTERNALDATE"]) for f in r.fetches().values()}
        assert len(r.fetches()) == n and dates == {want}, dates
        c.logout()


# --------------------------------------------------------------------------
# changes made by other Maildir tools


def test_external_unlink_and_flag_change(imap_server):
    inst = imap_server.instance
    put_many(inst, ALICE, 3)
    with imap_server.session(select="INBOX") as c:
        uids = uids_of(c)
        paths = sorted(message_files(inst, ALICE))
        assert len(paths) == 3 and all("/cur/" in p for p in paths), paths
        # another tool marks message 3 as seen and flagged by renaming it
        base, _, fl = paths[2].partition(":2,")
        os.rename(paths[2], base + ":2,FS")
        r = c.ok("NOOP")
        f = r.fetches()
        assert 3 in f and {"\\Seen", "\\Flagged"} <= set(f[3]["FLAGS"]), r
        # ... and deletes message 1
        os.unlink(paths[0])
        r = c.ok("NOOP")
        assert apply_expunges(uids, r) == uids[1:], r
        r = c.ok("FETCH 1:* (UID FLAGS)")
        f = r.fetches()
        assert [int(f[i]["UID"]) for i in (1, 2)] == uids[1:], r
        c.logout()


def test_flag_names_case_insensitive_and_unknown_letters_kept(imap_server):
    """System flags are case-insensitive (RFC 3501 2.3.2); Maildir letters
    petrel does not map (P = passed) survive a flag change."""
    inst = imap_server.instance
    name = put(inst, ALICE, message(1), flags="PS")
    with imap_server.session(select="INBOX") as c:
        r = c.ok("STORE 1 +FLAGS (\\flagged \\ANSWERED)")
        assert {"\\Seen", "\\Flagged", "\\Answered"} <= set(r.fetches()[1]["FLAGS"]), r
        c.logout()
    cur = files(inst, ALICE, "cur")
    assert len(cur) == 1 and cur[0].split(":2,")[0] == name.split(":2,")[0], (name, cur)
    assert cur[0].split(":2,")[1] == "FPRS", cur


def test_copy_into_the_same_mailbox(imap_server):
    put_many(imap_server.instance, ALICE, 2)
    with imap_server.session(select="INBOX") as c:
        uids = uids_of(c)
        r = c.ok("COPY 1:2 INBOX")
        code = (r.code() or "").split()
        assert code and code[0].upper() == "COPYUID", r
        new = uidset(code[3])
        assert len(new) == 2 and min(new) > max(uids), (uids, code)
        r2 = c.ok("NOOP")
        assert (r.numbered("EXISTS") + r2.numbered("EXISTS"))[-1] == 4, (r, r2)
        assert uids_of(c) == uids + new
        c.logout()


EDGE_MESSAGES = [
    # headers only, no blank line
    b"From: a@example.org\nSubject: no body\n",
    # no headers at all
    b"\njust a body\n",
    # multipart without the closing boundary
    b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=xx\n\n--xx\n"
    b"Content-Type: text/plain\n\npart one\n--xx\nContent-Type: text/html\n\n<b>two</b>\n",
    # multipart whose boundary never occurs
    b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=nowhere\n\nplain text\n",
    # multipart without a boundary parameter
    b"MIME-Version: 1.0\nContent-Type: multipart/mixed\n\nplain text\n",
    # message/rfc822 holding a multipart, parameters with RFC 2231 and quoting
    b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"o\"\n\n--o\n"
    b"Content-Type: message/rfc822\n\nSubject: inner\nMIME-Version: 1.0\n"
    b"Content-Type: multipart/alternative; boundary=\"i\"\n\n--i\nContent-Type: text/plain;"
    b" charset=\"iso-8859-1\"; format=flowed\n\nhallo\n--i\nContent-Type: text/enriched\n\n"
    b"<bold>x</bold>\n--i--\n--o\nContent-Type: application/pdf;\n name*=UTF-8''%C3%A4.pdf;"
    b" x-odd=\"a;b\\\"c\"\nContent-Transfer-Encoding: base64\n\nJVBERi0=\n--o--\n",
    # deeply nested multiparts
    b"Content-Type: multipart/mixed; boundary=a\n\n--a\nContent-Type: multipart/mixed; boundary=b\n"
    b"\n--b\nContent-Type: multipart/mixed; boundary=c\n\n--c\n\ndeep\n--c--\n--b--\n--a--\n",
    # an empty message body part and CRLF line ends
    b"Content-Type: multipart/mixed; boundary=e\r\n\r\n--e\r\n\r\n--e--\r\n",
]


def _leaves(bs, path=()):
    """(part path, bodystructure) of every non-multipart part."""
    if isinstance(bs[0], list):
        i = 0
        out = []
        while i < len(bs) and isinstance(bs[i], list):
            out += _leaves(bs[i], path + (i + 1,))
            i += 1
        return out
    out = [(path or (1,), bs)]
    t = [x.upper() if isinstance(x, bytes) else x for x in bs[:2]]
    if t == [b"MESSAGE", b"RFC822"] and len(bs) > 8 and isinstance(bs[8], list):
        out += _leaves(bs[8], path or (1,))
    return out


@pytest.mark.parametrize("data", EDGE_MESSAGES, ids=range(len(EDGE_MESSAGES)))
def test_bodystructure_sizes_match_parts(imap_server, data):
    """For odd and broken MIME: FETCH works, BODYSTRUCTURE parses, and every
    part's size field is the length of BODY[part]."""
    put(imap_server.instance, ALICE, data)
    with imap_server.session(select="INBOX") as c:
        r = c.ok("FETCH 1 (BODYSTRUCTURE BODY ENVELOPE RFC822.SIZE BODY.PEEK[])")
        f = r.fetches()[1]
        assert int(f["RFC822.SIZE"]) == len(f["BODY[]"]) == len(crlf(data))
        for path, part in _leaves(f["BODYSTRUCTURE"]):
            sec = ".".join(map(str, path))
            r = c.ok("FETCH 1 BODY.PEEK[%s]" % sec)
            got = r.fetches()[1]["BODY[%s]" % sec] or b""
            assert int(part[6]) == len(got), (sec, part, got[:200])
        c.logout()


def test_repeated_header_fields(imap_server):
    put(imap_server.instance, ALICE,
        b"Received: from a\nReceived: from b\nSubject: s\nreceived: from c\n\nbody\n")
    with imap_server.session(select="INBOX") as c:
        r = c.ok("FETCH 1 BODY.PEEK[HEADER.FIELDS (Received)]")
        v = [x for k, x in r.fetches()[1].items() if k.startswith("BODY[HEADER.FIELDS")][0]
        assert v == b"Received: from a\r\nReceived: from b\r\nreceived: from c\r\n\r\n", v
        c.logout()


def test_copy_maps_keywords_between_mailboxes(imap_server):
    """Keyword letters are per folder (dovecot-keywords): a message copied or
    moved keeps its keyword names, not its letters."""
    put_many(imap_server.instance, ALICE, 2)
    with imap_server.session() as c:
        c.ok("CREATE Other")
        # Other: a = $Bar, b = $Baz
        assert c.append("Other", b"Subject: o\r\n\r\no\r\n", flags="$Bar $Baz").status == "OK"
        c.select("INBOX")
        # INBOX: a = $Foo
        c.ok("STORE 1 +FLAGS.SILENT ($Foo)")
        c.ok("STORE 2 +FLAGS.SILENT ($Baz $Foo)")
        c.ok("COPY 1 Other")
        c.ok("MOVE 2 Other")
        c.ok("UNSELECT")
        c.select("Other")
        f = flags_of(c)
        assert f[1] - {"\\Recent"} == {"$Bar", "$Baz"}, f
        assert f[2] - {"\\Recent"} == {"$Foo"}, f
        assert f[3] - {"\\Recent"} == {"$Baz", "$Foo"}, f
        c.logout()


def test_keyword_table_full_on_copy(imap_server):
    """COPY into a folder whose 26 keyword letters are taken: OK (the keyword
    is dropped) or NO; never a wrong keyword, never a crash."""
    put_many(imap_server.instance, ALICE, 1)
    with imap_server.session() as c:
        c.ok("CREATE Full")
        flags = " ".join("k%02d" % i for i in range(26))
        r = c.append("Full", b"Subject: f\r\n\r\nf\r\n", flags=flags)
        assert r.status in ("OK", "NO"), r
        c.select("INBOX")
        c.ok("STORE 1 +FLAGS.SILENT (Extra)")
        r = c.command("COPY 1 Full")
        assert r.status in ("OK", "NO"), r
        c.ok("UNSELECT")
        c.select("Full")
        for n, fl in flags_of(c).items():
            for k in fl:
                assert k.startswith("\\") or k == "Extra" or re.match(r"k\d\d$", k), fl
            if n > 1:
                assert not any(re.match(r"k\d\d$", k) for k in fl), fl
        c.logout()


def test_select_leaves_files_being_written_in_tmp(imap_server):
    """SELECT sweeps tmp/ of what dead writers left (files whose mtime and
    ctime are both over 36 hours old; the age test is in test_maildir): a
    file just written, or one with an old mtime but just made, is a
    delivery in progress and stays."""
    inst = imap_server.instance
    put(inst, ALICE, SIMPLE)
    tmp = os.path.join(folder_dir(inst, ALICE), "tmp")
    st = os.stat(folder_dir(inst, ALICE))
    names = {"fresh": None, "old-mtime": time.time() - 40 * 3600}
    for n, mtime in names.items():
        p = os.path.join(tmp, n)
        with open(p, "wb") as f:
            f.write(b"partial")
        os.chown(p, st.st_uid, st.st_gid)
        if mtime:
            os.utime(p, (mtime, mtime))
    with imap_server.session(select="INBOX") as c:
        c.ok("EXAMINE INBOX")
        c.ok("SELECT INBOX")
        c.logout()
    assert sorted(os.listdir(tmp)) == sorted(names)
