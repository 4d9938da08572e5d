"""LMTP (RFC 2033) on lmtp_listen: the SMTP session in LMTP mode, as an MTA in
front (Postfix's virtual_transport = lmtp:inet:...) uses it. LHLO and its
capabilities, one reply per recipient after DATA in RCPT order (a full
mailbox fails alone), local recipients only, HELO/EHLO/AUTH refused,
pipelining. One server for the module; the limits are in
test_session_limits.py."""

import imaplib
import os
import re
import smtplib
import socket

import pytest

from harness import server
from harness.instance import PASSWORD, add_users, make_instance
from harness.maildir import listdir, maildir_of, put

ALICE, BOB, FULL = "alice@example.test", "bob@example.test", "full@example.test"


@pytest.fixture(scope="module")
def inst(petrel_bin, tmp_path_factory):
    inst = make_instance(petrel_bin, tmp_path_factory.mktemp("lmtp"), "sqlite")
    add_users(inst, (ALICE, BOB))
    inst.add_user(FULL, None, "--quota", "1000")
    return inst


@pytest.fixture(scope="module")
def srv(inst):
    with server.running(server.start, inst, ("lmtp", "imap"),
                        ["hostname=mx.petrel.test"]) as s:
        yield s


def new_msgs(inst, address):
    d = os.path.join(maildir_of(inst, address), "new")
    out = []
    for n in listdir(d):
        with open(os.path.join(d, n), "rb") as f:
            out.append(f.read())
    return out


def client(srv):
    c = smtplib.LMTP(srv.host, srv.ports["lmtp"], timeout=10)
    code, _ = c.ehlo()     # smtplib.LMTP sends LHLO here
    assert code == 250
    return c


def message(subject, body=b"hello\r\n"):
    return (b"From: sender@outside.test\r\nTo: users@example.test\r\nSubject: " +
            subject.encode() + b"\r\n\r\n" + body)


def test_lhlo_and_per_recipient_replies(srv, inst):
    """LHLO lists the extensions (no AUTH); a message to alice, the full
    mailbox and bob gets three replies in RCPT order: 250, 452 4.2.2, 250;
    alice and bob have it (Maildir and IMAP), with Received ... with LMTP
    for each one; a message larger than the whole quota gets 552 for that
    recipient alone."""
    # 900 of the 1000 bytes used: RCPT (no SIZE=) fits, the real message not
    put(inst, FULL, b"Subject: old\r\n\r\n" + b"x" * 880 + b"\r\n")
    with client(srv) as c:
        feats = c.esmtp_features
        for ext in ("pipelining", "size", "enhancedstatuscodes", "8bitmime"):
            assert ext in feats, feats
        assert "auth" not in feats and "chunking" in feats, feats
        assert c.mail("sender@outside.test") == (250, b"2.1.0 Ok")
        for a in (ALICE, FULL, BOB):
            code, text = c.rcpt(a)
            assert code == 250, (a, code, text)
        code, text = c.data(message("per recipient", b"y" * 300 + b"\r\n"))
        replies = [(code, text)] + [c.getreply() for _ in range(2)]
        assert [r[0] for r in replies] == [250, 452, 250], replies
        assert replies[0][1].startswith(b"2.0.0 <alice@example.test>"), replies
        assert replies[1][1].startswith(b"4.2.2 <full@example.test>"), replies
        assert replies[2][1].startswith(b"2.0.0 <bob@example.test>"), replies
        # larger than the quota itself: permanent, for that recipient only
        c.mail("sender@outside.test")
        c.rcpt(FULL)
        c.rcpt(ALICE)
        code, text = c.data(message("too big", b"z" * 1500 + b"\r\n"))
        second = c.getreply()
        assert (code, second[0]) == (552, 250), (code, text, second)
        assert text.startswith(b"5.2.2"), text
    assert len(new_msgs(inst, FULL)) == 1      # the old one only
    assert len(new_msgs(inst, ALICE)) == 2
    [b] = new_msgs(inst, BOB)
    assert b"with LMTP id " in b and b"for <bob@example.test>" in b, b[:400]
    assert b.startswith(b"Return-Path: <sender@outside.test>\nDelivered-To: bob@example.test\n")
    m = imaplib.IMAP4(srv.host, srv.ports["imap"], timeout=10)
    try:
        assert m.login(BOB, PASSWORD)[0] == "OK"
        typ, data = m.select("INBOX")
        assert typ == "OK" and data == [b"1"], data
        typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert b"per recipient" in data[0][1], data
    finally:
        m.logout()
    assert srv.wait_log(r"from=<sender@outside.test>, size=\d+, nrcpt=2 \(accepted\)"), srv.log()


def test_bdat_per_recipient_replies(srv, inst):
    """CHUNKING (RFC 3030) in LMTP: a chunk before the last gets its own
    reply; BDAT LAST gets one reply per recipient in RCPT order, as DATA's
    dot does (a message larger than the full mailbox's whole quota fails
    for it alone); all of it pipelined in one write, as a frontend's
    cut-through sends it. The stored copy is the chunks joined."""
    first = (b"From: sender@outside.test\r\nTo: users@example.test\r\n"
             b"Subject: in chunks\r\n\r\n" + b"a" * 700 + b"\r\n")
    last = b"b" * 700 + b"\r\n.not stuffed\r\n"
    with client(srv) as c:
        c.send(b"MAIL FROM:<sender@outside.test>\r\n"
               b"RCPT TO:<%s>\r\nRCPT TO:<%s>\r\nRCPT TO:<%s>\r\n"
               % (ALICE.encode(), FULL.encode(), BOB.encode())
               + b"BDAT %d\r\n" % len(first) + first
               + b"BDAT %d LAST\r\n" % len(last) + last)
        replies = [c.getreply() for _ in range(8)]
        assert [r[0] for r in replies[:5]] == [250] * 5, replies
        assert re.fullmatch(rb"2\.0\.0 \d+ octets received", replies[4][1]), replies
        assert [r[0] for r in replies[5:]] == [250, 552, 250], replies
        assert replies[5][1].startswith(b"2.0.0 <alice@example.test>"), replies
        assert replies[6][1].startswith(b"5.2.2 <full@example.test>"), replies
        assert replies[7][1].startswith(b"2.0.0 <bob@example.test>"), replies
        # the session goes on: a NOOP is answered once, not left behind
        assert c.noop()[0] == 250
    stored = [m for m in new_msgs(inst, BOB) if b"Subject: in chunks" in m]
    assert len(stored) == 1, stored
    body = stored[0].split(b"\n\n", 1)[1]
    assert body == b"a" * 700 + b"\n" + b"b" * 700 + b"\n.not stuffed\n", body[-40:]
    assert not any(b"Subject: in chunks" in m for m in new_msgs(inst, FULL))


def test_refusals(srv, inst):
    """Unknown user 550 5.1.1 and a foreign domain 550 5.7.1 at RCPT (an MTA
    bounces at once); HELO and EHLO 500, AUTH 502, MAIL before LHLO 503;
    smtplib's sendmail still delivers to the good recipient."""
    c = smtplib.LMTP(srv.host, srv.ports["lmtp"], timeout=10)
    try:
        assert c.docmd("EHLO", "mta.test")[0] == 500
        assert c.docmd("HELO", "mta.test")[0] == 500
        assert c.docmd("MAIL", "FROM:<a@b.test>")[0] == 503
        assert c.docmd("LHLO", "mta.test")[0] == 250
        assert c.docmd("AUTH", "PLAIN AGFsaWNlAHB3")[0] == 502
        c.mail("a@outside.test")
        code, text = c.rcpt("nobody@example.test")
        assert (code, text[:5]) == (550, b"5.1.1"), text
        code, text = c.rcpt("someone@elsewhere.test")
        assert (code, text[:5]) == (550, b"5.7.1"), text
        assert c.docmd("DATA")[0] == 554        # no valid recipients
        c.rset()
        refused = c.sendmail("a@outside.test", ["nobody@example.test", ALICE],
                             message("sendmail"))
        assert list(refused) == ["nobody@example.test"], refused
    finally:
        c.close()
    assert any(b"Subject: sendmail" in m for m in new_msgs(inst, ALICE))


def test_pipelining(srv, inst):
    """A client that sends everything up to DATA in one write gets the
    replies in order; RCPT of the same user twice gets two 250s and one
    copy."""
    before = len(new_msgs(inst, BOB))
    s = socket.create_connection((srv.host, srv.ports["lmtp"]), timeout=10)
    f = s.makefile("rb")
    try:
        assert f.readline().startswith(b"220 mx.petrel.test LMTP")
        s.sendall(b"LHLO mta.test\r\nMAIL FROM:<p@outside.test>\r\n"
                  b"RCPT TO:<bob@example.test>\r\nRCPT TO:<ghost@example.test>\r\n"
                  b"RCPT TO:<BOB@example.test>\r\nDATA\r\n")
        codes = []
        while len(codes) < 6:
            line = f.readline()
            assert line, codes
            if line[3:4] == b" ":
                codes.append(int(line[:3]))
        assert codes == [250, 250, 250, 550, 250, 354], codes
        s.sendall(message("piped") + b".\r\nQUIT\r\n")
        after = [f.readline()[:3] for _ in range(3)]
        assert after == [b"250", b"250", b"221"], after
    finally:
        f.close()
        s.close()
    msgs = new_msgs(inst, BOB)
    assert len(msgs) == before + 1 and sum(b"Subject: piped" in m for m in msgs) == 1


def test_sieve_runs_for_lmtp_deliveries(srv, inst):
    """A message handed in over LMTP passes through the recipient's Sieve
    script like an SMTP one: bob's script files it into a folder it
    creates and redirects a copy to alice (on the job's auth channel)."""
    h = maildir_of(inst, BOB)
    os.makedirs(os.path.join(h, "sieve"), exist_ok=True)
    with open(os.path.join(h, "sieve", "lmtp.sieve"), "w") as f:
        f.write('require ["fileinto", "mailbox", "copy"];\n'
                'if header :contains "subject" "sorted" {\n'
                '  fileinto :create "Sorted";\n'
                '  redirect :copy "%s";\n'
                '}\n' % ALICE)
    link = os.path.join(h, ".dovecot.sieve")
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(os.path.join("sieve", "lmtp.sieve"), link)
    alice_before = len(new_msgs(inst, ALICE))
    try:
        with client(srv) as c:
            assert c.mail("sender@outside.test")[0] == 250
            assert c.rcpt(BOB)[0] == 250
            code, text = c.data(message("to be sorted"))
            assert code == 250, (code, text)
    finally:
        os.unlink(link)
    sorted_dir = os.path.join(h, ".Sorted")
    got = [n for sub in ("new", "cur") for n in listdir(os.path.join(sorted_dir, sub))]
    assert len(got) == 1, got
    texts = new_msgs(inst, ALICE)
    assert len(texts) == alice_before + 1
    assert any(b"Subject: to be sorted" in t for t in texts), texts
