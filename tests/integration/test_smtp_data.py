"""SMTP server: the message itself. Byte-exact storage (CRLF -> LF after the three
prepended headers), dot-stuffing, 8-bit and NUL bytes, long lines, SMTP smuggling,
BDAT (CHUNKING), message_size_limit."""

import smtplib

import pytest

from smtp_util import (all_delivered, lf, new_files, queue_files, read_new, split_stored,
                       tmp_files)

ALICE, BOB = "alice@example.test", "bob@example.test"


def only_message(inst, address=ALICE):
    files = read_new(inst, address)
    assert len(files) == 1, "%s: %d files in new/" % (address, len(files))
    return split_stored(files[0])


def raw_send(srv, wire_body, rcpts=(ALICE,), sender="x@y.test"):
    """DATA with exactly wire_body (already stuffed, CRLF) then CRLF.CRLF; the reply."""
    with srv.client() as c:
        r = c.send_message(sender, list(rcpts), wire_body)
        c.expect("QUIT", 221)
    return r


# --------------------------------------------------------------------------
# byte-exact bodies

HEAD = b"From: x@y.test\r\nTo: alice@example.test\r\nSubject: exact\r\n\r\n"

BODIES = {
    "8bit": HEAD + "Grüße, ça va? Ωμέγα 日本語\r\n".encode() + bytes(range(0x80, 0x100)) + b"\r\n",
    "998-octet-line": HEAD + b"a" * 998 + b"\r\n" + b"b" * 997 + b"\r\n",
    "leading-dots": HEAD + b".one\r\n..two\r\n...\r\n. space\r\nend\r\n",
    "lone-dot-line": HEAD + b"before\r\n.\r\nafter\r\n",
    "dot-last-line": HEAD + b"text\r\n.\r\n",
    "empty-lines": HEAD + b"\r\n\r\n\r\nx\r\n\r\n",
    "long-line-100k": HEAD + b"z" * 100000 + b"\r\nshort\r\n",
    "headers-only": b"Subject: no body\r\n",
}


@pytest.mark.parametrize("name", sorted(BODIES))
def test_body_exact_smtplib(sqlite_smtp_server, name):
    """smtplib with bytes (it dot-stuffs): stored body == sent with CRLF -> LF."""
    data = BODIES[name]
    s = sqlite_smtp_server.smtplib()
    try:
        s.sendmail("x@y.test", [ALICE], data, mail_options=["BODY=8BITMIME"])
    finally:
        s.quit()
    head, body = only_message(sqlite_smtp_server.instance)
    assert head["Return-Path"] == "<x@y.test>"
    assert head["Delivered-To"] == ALICE
    assert body == lf(data), "stored body differs (%d vs %d bytes)" % (len(body), len(lf(data)))


RAW = {
    # name: (wire form inside DATA, expected stored body)
    "nul-bytes": (b"Subject: nul\r\n\r\na\x00b\r\n\x00\r\n\x00\x00\x00end\r\n",
                  b"Subject: nul\n\na\x00b\n\x00\n\x00\x00\x00end\n"),
    "no-trailing-newline": (b"Subject: t\r\n\r\nlast line without newline",
                            b"Subject: t\n\nlast line without newline\n"),
    "dot-stuffed": (b"Subject: d\r\n\r\n..\r\n..x\r\n...\r\n",
                    b"Subject: d\n\n.\n.x\n..\n"),
    "bare-cr-and-lf": (b"Subject: b\r\n\r\na\rb\nc\r\n",
                       b"Subject: b\n\na\rb\nc\n"),
    "crlf-at-64k-boundary": (b"S: x\r\n\r\n" + b"q" * (64 * 1024 - 1) + b"\r\n" + b"r" * 70000 +
                             b"\r\nend\r\n",
                             b"S: x\n\n" + b"q" * (64 * 1024 - 1) + b"\n" + b"r" * 70000 + b"\nend\n"),
    "long-line-with-dot": (b"S: x\r\n\r\n.." + b"d" * 200000 + b"\r\n",
                           b"S: x\n\n." + b"d" * 200000 + b"\n"),
    "one-empty-line": (b"\r\n", b"\n"),
}


@pytest.mark.parametrize("name", sorted(RAW))
def test_body_exact_raw(sqlite_smtp_server, name):
    wire, want = RAW[name]
    r = raw_send(sqlite_smtp_server, wire)
    assert r.code == 250, r
    head, body = only_message(sqlite_smtp_server.instance)
    assert body == want, (body[:200], want[:200], len(body), len(want))


def test_empty_message(sqlite_smtp_server):
    """DATA then the dot at once: an empty message, stored as the three headers only."""
    with sqlite_smtp_server.client() as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<x@y.test>", 250)
        c.expect("RCPT TO:<alice@example.test>", 250)
        c.expect("DATA", 354)
        r = c.cmd(".")
        assert r.code == 250, r
    head, body = only_message(sqlite_smtp_server.instance)
    assert body == b"", body


def test_body_exact_many_rcpts_and_8bitmime_flag(smtp_server):
    """The same bytes for every recipient; BODY=8BITMIME and SMTPUTF8 accepted."""
    data = BODIES["8bit"]
    s = smtp_server.smtplib()
    try:
        s.ehlo()
        s.sendmail("x@y.test", [ALICE, BOB], data, mail_options=["BODY=8BITMIME", "SMTPUTF8"])
    finally:
        s.quit()
    for who in (ALICE, BOB):
        head, body = only_message(smtp_server.instance, who)
        assert body == lf(data)
        assert head["Delivered-To"] == who
        assert "UTF8SMTP" in head["Received"], head


def test_utf8_addresses(sqlite_smtp_server):
    inst = sqlite_smtp_server.instance
    with sqlite_smtp_server.client() as c:
        c.expect("EHLO client.test", 250)
        c.send("MAIL FROM:<jörg@bücher.test> SMTPUTF8\r\n".encode())
        assert c.reply().code == 250
        c.expect("RCPT TO:<alice@example.test>", 250)
        c.expect("DATA", 354)
        c.send("Subject: ünïcödé\r\n\r\nbody\r\n.\r\n".encode())
        assert c.reply().code == 250
    head, body = only_message(inst)
    assert head["Return-Path"] == "<jörg@bücher.test>", head
    assert body == "Subject: ünïcödé\n\nbody\n".encode()


# --------------------------------------------------------------------------
# SMTP smuggling

SMUGGLE = [b"\n.\n", b"\r.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\n.\r", b"\r\n.\r"]


@pytest.mark.parametrize("seq", SMUGGLE, ids=[repr(s)[2:-1] for s in SMUGGLE])
def test_no_smuggling(smtp_server, seq):
    inst = smtp_server.instance
    smuggled = (b"MAIL FROM:<admin@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
                b"From: admin@example.test\r\nSubject: smuggled\r\n\r\nevil\r\n")
    with smtp_server.client() as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<x@y.test>", 250)
        c.expect("RCPT TO:<alice@example.test>", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: outer\r\n\r\nhello" + seq + smuggled + b"\r\n.\r\n")
        r = c.reply()
        assert r.code == 250, r
        r = c.cmd("QUIT")
        assert r.code == 221, "only one reply may follow the data, then QUIT's: %r" % r
        assert c.is_closed()
    head, body = only_message(inst, ALICE)
    assert new_files(inst, BOB) == [], "a smuggled message was delivered"
    assert len(all_delivered(inst)) == 1
    assert b"RCPT TO:<bob@example.test>" in body and b"Subject: smuggled" in body, body
    assert body.startswith(b"Subject: outer\n\nhello"), body
    assert smtp_server.wait_log(r"\(accepted\)$") and smtp_server.accepted_count() == 1


def test_no_smuggling_pipelined(smtp_server):
    """The same with the whole session in one write."""
    inst = smtp_server.instance
    wire = (b"EHLO c\r\nMAIL FROM:<x@y.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"
            b"Subject: outer\r\n\r\nhello\n.\nMAIL FROM:<a@example.test>\r\n"
            b"RCPT TO:<bob@example.test>\r\nDATA\r\nevil\r\n.\r\nQUIT\r\n")
    with smtp_server.client() as c:
        c.send(wire)
        codes = [r.code for r in c.replies(6)]
        assert codes == [250, 250, 250, 354, 250, 221], codes
    assert new_files(inst, BOB) == []
    assert len(new_files(inst, ALICE)) == 1


# --------------------------------------------------------------------------
# BDAT (RFC 3030)


def bdat_session(srv, chunks, rcpts=(ALICE,)):
    """MAIL, RCPTs, then each (data, last) chunk; the replies to the chunks."""
    out = []
    with srv.client() as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<x@y.test> BODY=BINARYMIME", 250)
        for r in rcpts:
            c.expect("RCPT TO:<%s>" % r, 250)
        for data, last in chunks:
            c.send(b"BDAT %d%s\r\n" % (len(data), b" LAST" if last else b"") + data)
            out.append(c.reply())
        c.expect("QUIT", 221)
    return out


def test_bdat_chunks(smtp_server):
    msg = b"Subject: bdat\r\n\r\nline one\r\n.line two\r\n.\r\nend\r\n"
    chunks = [(msg[:10], False), (msg[10:25], False), (msg[25:], True)]
    replies = bdat_session(smtp_server, chunks)
    assert [r.code for r in replies] == [250, 250, 250], replies
    head, body = only_message(smtp_server.instance)
    assert body == lf(msg), body  # no dot-unstuffing in BDAT


def test_bdat_split_crlf(sqlite_smtp_server):
    msg = b"Subject: split\r\n\r\nab\r\ncd\r\n"
    i = msg.index(b"ab\r") + 3  # the first chunk ends with CR, the next starts with LF
    replies = bdat_session(sqlite_smtp_server, [(msg[:i], False), (msg[i:], True)])
    assert [r.code for r in replies] == [250, 250], replies
    head, body = only_message(sqlite_smtp_server.instance)
    assert body == lf(msg), body


def test_bdat_cr_at_chunk_end_not_followed_by_lf(sqlite_smtp_server):
    msg1, msg2 = b"Subject: cr\r\n\r\nab\r", b"cd\r\n"
    replies = bdat_session(sqlite_smtp_server, [(msg1, False), (msg2, True)])
    assert [r.code for r in replies] == [250, 250], replies
    head, body = only_message(sqlite_smtp_server.instance)
    assert body == b"Subject: cr\n\nab\rcd\n", body


def test_bdat_last_only_and_exact_bytes(sqlite_smtp_server):
    msg = b"Subject: last\r\n\r\nno newline at the end; NUL \x00 and 8-bit \xff\xfe."
    replies = bdat_session(sqlite_smtp_server, [(msg, True)])
    assert [r.code for r in replies] == [250], replies
    head, body = only_message(sqlite_smtp_server.instance)
    assert body == lf(msg), body


def test_bdat_zero_last(sqlite_smtp_server):
    msg = b"Subject: zero\r\n\r\nbody\r\n"
    replies = bdat_session(sqlite_smtp_server, [(msg, False), (b"", True)])
    assert [r.code for r in replies] == [250, 250], replies
    head, body = only_message(sqlite_smtp_server.instance)
    assert body == lf(msg)


def test_bdat_pipelined(smtp_server):
    """RFC 3030: BDAT may be pipelined with everything, in one write."""
    msg = b"Subject: pipelined bdat\r\n\r\nhello\r\n"
    wire = (b"EHLO c\r\nMAIL FROM:<x@y.test>\r\nRCPT TO:<alice@example.test>\r\n"
            b"RCPT TO:<nobody@example.test>\r\nBDAT 5\r\n" + msg[:5] +
            b"BDAT %d LAST\r\n" % (len(msg) - 5) + msg[5:] + b"QUIT\r\n")
    with smtp_server.client() as c:
        c.send(wire)
        codes = [r.code for r in c.replies(7)]
        assert codes == [250, 250, 250, 550, 250, 250, 221], codes
    head, body = only_message(smtp_server.instance)
    assert body == lf(msg)


def test_bdat_without_mail(sqlite_smtp_server):
    """BDAT with no transaction: the chunk is read (never taken as commands), then 5xx."""
    srv = sqlite_smtp_server
    inst = srv.instance
    chunk = b"QUIT\r\nMAIL FROM:<x@y.test>\r\n"
    with srv.client() as c:
        c.expect("EHLO client.test", 250)
        c.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
        r = c.reply()
        assert 500 <= r.code < 600, r
        c.expect("NOOP", 250)
        # MAIL but no RCPT
        c.expect("MAIL FROM:<x@y.test>", 250)
        c.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
        r = c.reply()
        assert 500 <= r.code < 600, r
        c.expect("NOOP", 250)
        # a failed non-LAST chunk, then a fresh, correct transaction
        c.expect("RSET", 250)
        c.send(b"BDAT %d\r\n" % len(chunk) + chunk)
        r = c.reply()
        assert 500 <= r.code < 600, r
        c.expect("MAIL FROM:<x@y.test>", 250)
        c.expect("RCPT TO:<alice@example.test>", 250)
        c.send(b"BDAT 9 LAST\r\nSubject:x")
        r = c.reply()
        assert r.code == 250, "a new transaction after a failed BDAT must work: %r" % r
    head, body = only_message(inst)
    assert body == b"Subject:x"


def test_bdat_then_data_refused(sqlite_smtp_server):
    with sqlite_smtp_server.client() as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<x@y.test>", 250)
        c.expect("RCPT TO:<alice@example.test>", 250)
        c.send(b"BDAT 4\r\nabcd")
        assert c.reply().code == 250
        r = c.cmd("DATA")
        assert r.code == 503, r
        c.send(b"BDAT 4 LAST\r\nefgh")
        assert c.reply().code == 250
    head, body = only_message(sqlite_smtp_server.instance)
    assert body == b"abcdefgh"


def test_bdat_bad_size_closes(sqlite_smtp_server):
    """A BDAT whose size cannot be parsed leaves the stream unframed: 5xx and close."""
    with sqlite_smtp_server.client() as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<x@y.test>", 250)
        c.expect("RCPT TO:<alice@example.test>", 250)
        c.send(b"BDAT 99999999999999999999999\r\n")
        data, closed = c.read_rest(5)
        assert data.startswith(b"5"), data
        assert closed
    assert all_delivered(sqlite_smtp_server.instance) == []


# --------------------------------------------------------------------------
# message_size_limit


@pytest.fixture
def small_server(sqlite_instance, smtp_start):
    sqlite_instance.add_user(ALICE)
    return smtp_start(sqlite_instance, ["message_size_limit=10000"])


def test_size_parameter_too_big(small_server):
    with small_server.client() as c:
        c.expect("EHLO client.test", 250)
        r = c.cmd("MAIL FROM:<x@y.test> SIZE=20000")
        assert r.code == 552 and r.text.startswith("5.3.4"), r
        c.expect("MAIL FROM:<x@y.test> SIZE=9000", 250)
        c.expect("RCPT TO:<alice@example.test>", 250)


def test_data_too_big(small_server):
    inst = small_server.instance
    big = b"Subject: big\r\n\r\n" + (b"y" * 98 + b"\r\n") * 200  # 20016 octets
    with small_server.client() as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<x@y.test>", 250)
        c.expect("RCPT TO:<alice@example.test>", 250)
        c.expect("DATA", 354)
        c.send(big + b".\r\n")
        r = c.reply()
        assert r.code == 552 and r.text.startswith("5.3.4"), r
        assert all_delivered(inst) == [] and tmp_files(inst, ALICE) == []
        assert queue_files(inst, "tmp") == []
        # the session is still usable
        c.expect("NOOP", 250)
        r = c.send_message("x@y.test", [ALICE], b"Subject: small\r\n\r\nsmall\r\n")
        assert r.code == 250, r
    head, body = only_message(inst)
    assert body == b"Subject: small\n\nsmall\n"


def test_bdat_too_big(small_server):
    inst = small_server.instance
    with small_server.client() as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<x@y.test>", 250)
        c.expect("RCPT TO:<alice@example.test>", 250)
        c.send(b"BDAT 8000\r\n" + b"a" * 8000)
        assert c.reply().code == 250
        c.send(b"BDAT 8000 LAST\r\n" + b"b" * 8000)
        r = c.reply()
        assert r.code == 552, r
        c.expect("NOOP", 250)
        c.expect("RSET", 250)
        c.expect("MAIL FROM:<x@y.test>", 250)
        c.expect("RCPT TO:<alice@example.test>", 250)
        c.send(b"BDAT 5 LAST\r\nsmall")
        assert c.reply().code == 250
    head, body = only_message(inst)
    assert body == b"small"


def test_size_limit_smtplib(small_server):
    s = small_server.smtplib()
    try:
        with pytest.raises(smtplib.SMTPSenderRefused) as e:
            s.sendmail("x@y.test", [ALICE], b"Subject: big\r\n\r\n" + b"z" * 30000 + b"\r\n")
        assert e.value.smtp_code == 552
    finally:
        s.quit()
    assert all_delivered(small_server.instance) == []
