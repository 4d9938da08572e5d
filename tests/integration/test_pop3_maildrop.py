"""The maildrop behind POP3: mail delivered over SMTP appears, deletions reach
the Maildir only at QUIT, RETR'd messages get \\Seen, UIDLs are stable, odd
message files, the Maildir++ quota, timeouts and shutdown. SQLite and MariaDB."""

import os
import signal
import time

from harness.instance import TIMEOUT_SCALE
from pop3_util import (ALICE, BOB, PASSWORD, all_files, files, key, maildir_of, message,
                       pquit, put, unstuff, wire)


def uidls(srv, user=ALICE):
    p = srv.login(user)
    out = [l.split()[1].decode() for l in p.uidl()[1]]
    pquit(p)
    return out


def retr_all(p):
    n = p.stat()[0]
    return [b"".join(l + b"\r\n" for l in p.retr(i)[1]) for i in range(1, n + 1)]


def test_smtp_delivered_mail_appears(pop3_server):
    inst = pop3_server.instance
    sent = []
    for i in range(3):
        data = (b"From: someone@example.org\r\nTo: alice@example.test\r\n"
                b"Subject: over smtp %d\r\n\r\nHello %d.\r\n.a line with a dot\r\n" % (i, i))
        pop3_server.smtp_send("someone@example.org", [ALICE], data)
        sent.append(data)
    pop3_server.smtp_send("someone@example.org", [BOB], sent[0])
    stored = files(inst, ALICE)
    assert len(stored) == 3
    p = pop3_server.login()
    assert p.stat()[0] == 3
    assert [l.split()[1].decode() for l in p.uidl()[1]] == [key(n) for n in stored]
    got = retr_all(p)
    for name, data, g in zip(stored, sent, got):
        with open(os.path.join(maildir_of(inst, ALICE), "new", name), "rb") as f:
            assert g == wire(f.read())
        # the message as sent, after petrel's trace headers
        assert g.endswith(data), g
        assert g.startswith(b"Return-Path: <someone@example.org>\r\n"), g
    sizes = [int(l.split()[1]) for l in p.list()[1]]
    assert sizes == [len(g) for g in got]
    pquit(p)
    p = pop3_server.login(BOB)
    assert retr_all(p)[0].endswith(sent[0])
    pquit(p)


def test_deleted_message_is_gone_from_the_maildir(pop3_server):
    inst = pop3_server.instance
    put(inst, ALICE, message(1), name="1600000001.M1P1.x")
    put(inst, ALICE, message(2), name="1600000002.M1P1.x", sub="cur", info="2,S")
    put(inst, ALICE, message(3), name="1600000003.M1P1.x", sub="cur", info="2,")
    d = put(inst, ALICE, message(4), name="1600000004.M1P1.x")
    p = pop3_server.login()
    assert p.stat()[0] == 4
    p.dele(1)
    p.dele(2)
    p.dele(3)
    assert pquit(p).startswith(b"+OK")
    assert all_files(inst, ALICE) == {"new": [d], "cur": []}
    assert uidls(pop3_server) == [key(d)]


def test_retr_sets_seen_at_quit(pop3_server):
    inst = pop3_server.instance
    n1 = put(inst, ALICE, message(1), name="1600000001.M1P1.x")
    n2 = put(inst, ALICE, message(2), name="1600000002.M1P1.x")
    n3 = put(inst, ALICE, message(3), name="1600000003.M1P1.x")
    n4 = put(inst, ALICE, message(4), name="1600000004.M1P1.x", sub="cur", info="2,F")
    n5 = put(inst, ALICE, message(5), name="1600000005.M1P1.x", sub="cur", info="2,RS")
    n6 = put(inst, ALICE, message(6), name="1600000006.M1P1.x")
    before = uidls(pop3_server)
    with pop3_server.conn() as c:
        c.login()
        c.ok_multi("RETR 1")
        c.ok_multi("TOP 2 5")      # TOP is not reading the message
        c.ok_multi("RETR 4")
        c.ok_multi("RETR 5")
        c.ok_multi("RETR 6")
        c.ok("DELE 6")              # read and deleted: just deleted
        c.ok("NOOP")
        # nothing changes before QUIT
        assert files(inst, ALICE, "new") == [n1, n2, n3, n6]
        c.quit()
    assert all_files(inst, ALICE) == {
        "new": [n2, n3],
        "cur": sorted([n1 + ":2,S", n4.replace(":2,F", ":2,FS"), n5]),
    }
    # UIDLs did not change with the flags
    assert uidls(pop3_server) == [u for u in before if u != key(n6)]


def test_uidl_stable_across_sessions_and_renames(pop3_server):
    """Another program (an IMAP server) moving new/ -> cur/ and changing flags
    does not change a UIDL."""
    inst = pop3_server.instance
    names = [put(inst, ALICE, message(i)) for i in range(4)]
    first = uidls(pop3_server)
    assert first == [key(n) for n in names]
    md = maildir_of(inst, ALICE)
    os.rename(os.path.join(md, "new", names[1]), os.path.join(md, "cur", names[1] + ":2,S"))
    os.rename(os.path.join(md, "new", names[2]), os.path.join(md, "cur", names[2] + ":2,RT"))
    assert uidls(pop3_server) == first
    p = pop3_server.login()
    for i in range(1, 5):
        p.retr(i)
    pquit(p)
    assert uidls(pop3_server) == first
    assert files(inst, ALICE, "new") == []


def test_uidl_is_rfc1939_conforming(pop3_server):
    """RFC 1939 7: a unique-id is 1 to 70 characters in 0x21..0x7E, and
    unique within the maildrop. Maildir names made by petrel with a realistic
    host name, or by other programs, can be longer or contain other bytes; the
    UIDLs must still conform (and stay stable)."""
    inst = pop3_server.instance
    names = [
        # what petrel's own delivery makes on a host called mx1.mail.example-hosting.com
        "1700000001.M123456P12345Q1R0123abcd.mx1.mail.example-hosting.com,S=1234,W=1260",
        "1700000002.M123456P12345Q2R0123abcd.mx1.mail.example-hosting.com,S=1234,W=1260",
        # another program's names
        "1700000003.M1P1.my host",
        "1700000004.M1P1.h\xc3\xb4te",
    ]
    for i, n in enumerate(names):
        data = message(i)
        put(inst, ALICE, data, name=n)
    first = uidls(pop3_server)
    assert len(first) == len(names)
    for u in first:
        assert 1 <= len(u) <= 70 and all(0x21 <= ord(ch) <= 0x7E for ch in u), u
    assert len(set(first)) == len(first)
    p = pop3_server.login()
    for i in range(1, len(names) + 1):
        p.retr(i)
    pquit(p)
    assert uidls(pop3_server) == first


def test_session_is_a_snapshot(pop3_server):
    """Mail arriving during a session is not shown (message numbers are stable);
    it is there in the next session and not deleted by the first one's QUIT."""
    inst = pop3_server.instance
    put(inst, ALICE, message(1))
    with pop3_server.conn() as c:
        c.login()
        pop3_server.smtp_send("x@example.org", [ALICE], b"Subject: late\r\n\r\nlate\r\n")
        put(inst, ALICE, message(2))
        assert c.cmd("STAT").startswith("+OK 1 ")
        c.err("RETR 2")
        c.ok("DELE 1")
        c.quit()
    p = pop3_server.login()
    got = retr_all(p)
    assert len(got) == 2 and any(g.endswith(b"late\r\n") for g in got)
    pquit(p)


def test_message_vanishing_during_session(pop3_server):
    """Another program deleted a message after the listing: RETR says so, the
    session goes on, and QUIT still applies the other deletions."""
    inst = pop3_server.instance
    put(inst, ALICE, message(1))
    n2 = put(inst, ALICE, message(2))
    n3 = put(inst, ALICE, message(3))
    with pop3_server.conn() as c:
        c.login()
        os.unlink(os.path.join(maildir_of(inst, ALICE), "new", n2))
        c.err("RETR 2")
        c.err("TOP 2 0")
        r, raw = c.ok_multi("RETR 3")
        assert unstuff(raw) == wire(message(3))
        c.ok("DELE 2")
        c.ok("DELE 1")
        assert c.quit().startswith("+OK")
    assert all_files(inst, ALICE) == {"new": [], "cur": [n3 + ":2,S"]}


def test_odd_message_files(pop3_server):
    inst = pop3_server.instance
    cases = [
        (b"Subject: no final newline\n\nlast line", None),
        (b"Subject: stored with CRLF\r\n\r\nbody\r\n.dot\r\n", None),
        (b"Subject: bare CR\n\na\rb\nc\r\r\n", None),
        (b"Subject: 8bit and NUL\n\n\xc3\xa9t\xc3\xa9 \x00 \xff\n", None),
        (b"Subject: long line\n\n" + b"z" * 200000 + b"\n", None),
        (b"Subject: headers only\nX-A: 1\n", None),
        (b"", None),
        (b"\n\n\n", None),
        (b".\n", None),
    ]
    names = [put(inst, ALICE, data, name="170000%04d.M1P1.odd" % i)
             for i, (data, _) in enumerate(cases)]
    with pop3_server.conn(timeout=30) as c:
        c.login()
        _, sizes = c.ok_multi("LIST")
        for i, (data, _) in enumerate(cases):
            r, raw = c.ok_multi("RETR %d" % (i + 1))
            got = unstuff(raw)
            expect = wire(data)
            if expect and not expect.endswith(b"\n"):
                expect += b"\r\n"  # RETR ends every line, the last one too
            assert got == expect, (i, got[:200], expect[:200])
            if data.endswith(b"\n") or not data:
                # the size is the octet count of what RETR sends (before stuffing)
                assert r == "+OK %d octets" % len(got), (i, r)
                assert sizes[i] == b"%d %d" % (i + 1, len(got)), (i, sizes[i])
            _, raw = c.ok_multi("TOP %d 0" % (i + 1))
            assert expect.startswith(unstuff(raw)), i
        c.quit()
    assert len(files(inst, ALICE, "cur")) == len(names)


def test_folders_tmp_and_dot_files_are_not_listed(pop3_server):
    inst = pop3_server.instance
    md = maildir_of(inst, ALICE)
    inbox = put(inst, ALICE, message(1))
    for sub in ("new", "cur", "tmp"):
        os.makedirs(os.path.join(md, ".Sent", sub), exist_ok=True)
    with open(os.path.join(md, ".Sent", "cur", "1.M1P1.sent:2,S"), "wb") as f:
        f.write(message(9))
    with open(os.path.join(md, "tmp", "2.M2P2.in-progress"), "wb") as f:
        f.write(message(8))
    with open(os.path.join(md, "new", ".hidden"), "wb") as f:
        f.write(message(7))
    assert uidls(pop3_server) == [key(inbox)]


def test_many_messages_pipelined_delete(pop3_server):
    inst = pop3_server.instance
    n = 300
    for i in range(n):
        put(inst, ALICE, message(i), name="1650%06d.M1P1.many" % i)
    with pop3_server.conn(timeout=30) as c:
        c.login()
        assert c.cmd("STAT").startswith("+OK %d " % n)
        c.send("".join("DELE %d\r\n" % i for i in range(1, n + 1)))
        for i in range(n):
            assert c.status().startswith("+OK"), i
        assert c.cmd("STAT") == "+OK 0 0"
        c.quit()
    assert all_files(inst, ALICE) == {"new": [], "cur": []}


def maildirsize_usage(path):
    """[bytes, count] summed over a maildirsize file's delta lines."""
    with open(path) as f:
        lines = f.read().splitlines()
    total = [0, 0]
    for l in lines[1:]:
        b, c = l.split()
        total[0] += int(b)
        total[1] += int(c)
    return total


def on_disk(inst, user):
    md = maildir_of(inst, user)
    paths = [os.path.join(md, s, n) for s in ("new", "cur") for n in files(inst, user, s)]
    return [sum(os.path.getsize(p) for p in paths), len(paths)]


def test_quota_maildirsize_follows_deletions(pop3_server):
    """Maildir++: deleting over POP3 takes the messages off maildirsize
    (maildir and maildirsize made by hand here)."""
    inst = pop3_server.instance
    md = maildir_of(inst, ALICE)
    for i in range(3):
        put(inst, ALICE, message(i, body_lines=10 * (i + 1)), name="1660000%03d.M1P1.q" % i)
    st = os.stat(md)
    msize = os.path.join(md, "maildirsize")
    with open(msize, "w") as f:
        f.write("10000000S\n%d %d\n" % tuple(on_disk(inst, ALICE)))
    os.chown(msize, st.st_uid, st.st_gid)
    p = pop3_server.login()
    p.dele(1)
    p.dele(3)
    p.retr(2)
    pquit(p)
    assert on_disk(inst, ALICE)[1] == 1
    assert maildirsize_usage(msize) == on_disk(inst, ALICE)


def test_quota_after_smtp_delivery_and_pop3_deletion(pop3_server):
    """The same with mail delivered over SMTP to a user with a quota."""
    inst = pop3_server.instance
    user = "quota@example.test"
    if inst.user_row(user) is None:
        inst.add_user(user, PASSWORD, "--quota", "10000000")
    for i in range(3):
        pop3_server.smtp_send("x@example.org", [user],
                              b"Subject: q%d\r\n\r\n%s\r\n" % (i, b"q" * (1000 * (i + 1))))
    msize = os.path.join(maildir_of(inst, user), "maildirsize")
    assert os.path.exists(msize), "delivery to a user with a quota keeps maildirsize"
    assert maildirsize_usage(msize) == on_disk(inst, user)
    p = pop3_server.login(user)
    p.dele(1)
    p.dele(3)
    p.retr(2)
    pquit(p)
    assert on_disk(inst, user)[1] == 1
    assert maildirsize_usage(msize) == on_disk(inst, user)


def test_idle_timeout_deletes_nothing(pop3_inst, pop3_start):
    """pop3_timeout: an idle client gets -ERR and is disconnected, before and
    after login; a timeout is not a QUIT (nothing deleted or flagged)."""
    srv = pop3_start(pop3_inst, ("pop3_timeout=1",))
    n = put(pop3_inst, ALICE, message(1))
    with srv.conn() as c, srv.conn() as idle:
        c.login()
        c.ok_multi("RETR 1")
        c.ok("DELE 1")
        t0 = time.monotonic()
        for conn in (c, idle):
            data, closed = conn.read_rest(timeout=10)
            assert closed, data
            assert data.startswith(b"-ERR"), data
        assert time.monotonic() - t0 < 5 * TIMEOUT_SCALE
    assert all_files(pop3_inst, ALICE) == {"new": [n], "cur": []}


def test_shutdown_is_not_quit(pop3_inst, pop3_start):
    """SIGTERM while a client is logged in: [SYS/TEMP], the connection closes,
    nothing is deleted or flagged, petrel exits 0."""
    srv = pop3_start(pop3_inst)
    n = put(pop3_inst, ALICE, message(1))
    with srv.conn() as c:
        c.login()
        c.ok_multi("RETR 1")
        c.ok("DELE 1")
        srv.proc.send_signal(signal.SIGTERM)
        data, closed = c.read_rest(timeout=10)
        assert closed, data
        assert data.startswith(b"-ERR [SYS/TEMP]"), data
    assert srv.stop() == 0
    assert all_files(pop3_inst, ALICE) == {"new": [n], "cur": []}
