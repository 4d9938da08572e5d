"""POP3 (RFC 1939, 2449): greeting, CAPA, the TRANSACTION commands, errors,
limits and pipelining. Every test runs on SQLite and MariaDB (`pop3_server`)."""

import os
import poplib
import socket
import time

import pytest

from pop3_util import (ALICE, BOB, HOSTNAME, all_files, key, login_after_drop, message, pquit,
                       put, unstuff, wire)


def fill(inst, n=3, address=ALICE):
    """n messages in new/, names in delivery order; [(name, data)]."""
    out = []
    for i in range(1, n + 1):
        data = message(i)
        out.append((put(inst, address, data, name="100000000%d.M%dP1.fill" % (i, i)), data))
    return out


# --------------------------------------------------------------------------
# greeting and CAPA


def test_greeting_and_capa_before_login(pop3_server):
    with pop3_server.conn() as c:
        assert c.greeting == ("+OK %s petrel POP3 ready" % HOSTNAME).encode()
        capa = c.capa()
        for cap in ("CAPA", "TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING",
                    "USER", "SASL PLAIN", "STLS", "IMPLEMENTATION petrel"):
            assert cap in capa, (cap, capa)
        assert len(capa) == len(set(capa)), capa
        c.quit()
    p = pop3_server.poplib()
    caps = p.capa()
    assert caps["SASL"] == ["PLAIN"] and "STLS" in caps and "USER" in caps
    pquit(p)


def test_capa_after_login(pop3_server):
    with pop3_server.conn() as c:
        c.login()
        capa = c.capa()
        for cap in ("CAPA", "TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING",
                    "IMPLEMENTATION petrel"):
            assert cap in capa, (cap, capa)
        for cap in ("USER", "SASL PLAIN", "STLS"):
            assert cap not in capa, (cap, capa)
        c.quit()


# --------------------------------------------------------------------------
# STAT LIST UIDL RETR TOP NOOP


def test_stat_list_uidl_retr(pop3_server):
    inst = pop3_server.instance
    msgs = fill(inst, 3)
    p = pop3_server.login()
    sizes = [len(wire(d)) for _, d in msgs]
    assert p.stat() == (3, sum(sizes))
    resp, lines, _ = p.list()
    assert resp.startswith(b"+OK")
    assert lines == [b"%d %d" % (i + 1, s) for i, s in enumerate(sizes)]
    assert p.list(2) == b"+OK 2 %d" % sizes[1]
    resp, lines, _ = p.uidl()
    assert lines == [b"%d %s" % (i + 1, key(n).encode()) for i, (n, _) in enumerate(msgs)]
    assert p.uidl(3) == b"+OK 3 " + key(msgs[2][0]).encode()
    for i, (_, data) in enumerate(msgs):
        resp, lines, octets = p.retr(i + 1)
        assert resp == b"+OK %d octets" % sizes[i]
        assert b"".join(l + b"\r\n" for l in lines) == wire(data)
    assert p.noop().startswith(b"+OK")
    assert pquit(p).startswith(b"+OK")


def test_lowercase_commands(pop3_server):
    fill(pop3_server.instance, 1)
    with pop3_server.conn() as c:
        c.ok("user " + ALICE)
        c.ok("Pass pw")
        assert c.ok("stat").startswith("+OK 1 ")
        c.ok_multi("Retr 1")
        c.ok_multi("uidl")
        c.ok("noop")
        c.ok("quit")


def test_retr_byte_stuffing_on_the_wire(pop3_server):
    inst = pop3_server.instance
    body = (b"first\n.\n..two dots\n.leading dot\n\n.\nmiddle . dot\n. space\n"
            b"last line\n")
    data = message(1, body=body)
    put(inst, ALICE, data)
    with pop3_server.conn() as c:
        c.login()
        r, raw = c.ok_multi("RETR 1")
        assert r == "+OK %d octets" % len(wire(data))
        # every line that starts with '.' is sent with one more '.'
        for orig, sent in zip(wire(data).split(b"\r\n"), raw):
            if orig.startswith(b"."):
                assert sent == b"." + orig, (orig, sent)
            else:
                assert sent == orig
        assert b"." not in raw
        assert unstuff(raw) == wire(data)
        # poplib undoes it too
        c.quit()
    p = pop3_server.login()
    assert b"".join(l + b"\r\n" for l in p.retr(1)[1]) == wire(data)
    pquit(p)


def test_retr_crlf_files_big_files_and_no_final_newline(pop3_server):
    """Files stored with CRLF, mixed or no final line end, and one of several
    MiB, come out as the same CRLF lines, each exactly once."""
    inst = pop3_server.instance
    big_body = b"".join(b"%s line %06d of a big message\n" % (b"." if i % 97 == 0 else b"x", i)
                        for i in range(120000))
    datas = [message(1, body=b"crlf one\r\n.crlf dot\r\nlast\r\n").replace(b"\n", b"\r\n")
             .replace(b"\r\r\n", b"\r\n"),
             message(2, body=b"mixed\r\nends\nno final newline"),
             message(3, body=big_body)]
    for i, d in enumerate(datas):
        put(inst, ALICE, d, name="170000000%d.M%dP1.mix" % (i, i))
    assert len(datas[2]) > 3 * 1024 * 1024
    expect = [wire(datas[0]), wire(datas[1]) + b"\r\n", wire(datas[2])]
    with pop3_server.conn() as c:
        c.login()
        for i, e in enumerate(expect):
            r, raw = c.ok_multi("RETR %d" % (i + 1))
            assert unstuff(raw) == e, i
        # TOP on the file without a final newline: the head and one line
        r, raw = c.ok_multi("TOP 2 1")
        assert unstuff(raw) == wire(datas[1]).split(b"\r\n\r\n", 1)[0] + b"\r\n\r\nmixed\r\n"
        c.quit()


def test_messages_listed_in_delivery_order(pop3_server):
    """Sorted by file name (Maildir delivery order), whatever the directory
    order or mtimes, new/ and cur/ together."""
    inst = pop3_server.instance
    names = ["1700000005.M1P1.h", "1700000001.M1P1.h", "1700000003.M1P1.h",
             "1700000002.M1P1.h", "1700000004.M1P1.h"]
    data = {}
    for i, n in enumerate(names):
        data[n] = message(i, body=b"body of %s\n" % n.encode())
        sub = "cur" if i % 2 else "new"
        put(inst, ALICE, data[n], name=n, sub=sub, info="2," if sub == "cur" else None)
        os.utime(os.path.join(inst.mail_root, "example.test/alice", sub,
                              n + (":2," if sub == "cur" else "")), (2e9 - i, 2e9 - i))
    p = pop3_server.login()
    order = sorted(names)
    assert [l.split()[1].decode() for l in p.uidl()[1]] == order
    for i, n in enumerate(order):
        assert b"".join(l + b"\r\n" for l in p.retr(i + 1)[1]) == wire(data[n])
    pquit(p)


def test_top(pop3_server):
    inst = pop3_server.instance
    body = b"b1\n.b2\nb3\nb4\n"
    data = message(7, body=body)
    name = put(inst, ALICE, data)
    head = wire(data).split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    with pop3_server.conn() as c:
        c.login()
        r, raw = c.ok_multi("TOP 1 0")
        assert unstuff(raw) == head
        r, raw = c.ok_multi("TOP 1 2")
        assert unstuff(raw) == head + b"b1\r\n.b2\r\n"
        assert raw[-1] == b"..b2"
        r, raw = c.ok_multi("TOP 1 100")
        assert unstuff(raw) == wire(data)
        for bad in ("TOP 1", "TOP 1 -1", "TOP 1 x", "TOP", "TOP 2 0", "TOP 0 1"):
            c.err(bad)
        c.quit()
    # TOP does not count as reading the message: it stays unseen in new/
    assert all_files(inst, ALICE) == {"new": [name], "cur": []}


def test_empty_maildrop(pop3_server):
    p = pop3_server.login(BOB)
    assert p.stat() == (0, 0)
    assert p.list()[1] == []
    assert p.uidl()[1] == []
    with pytest.raises(poplib.error_proto):
        p.retr(1)
    assert pquit(p).startswith(b"+OK")


# --------------------------------------------------------------------------
# DELE RSET QUIT


def test_dele_rset_quit(pop3_server):
    inst = pop3_server.instance
    msgs = fill(inst, 4)
    sizes = [len(wire(d)) for _, d in msgs]
    with pop3_server.conn() as c:
        c.login()
        c.ok("DELE 2")
        assert c.cmd("STAT") == "+OK 3 %d" % (sum(sizes) - sizes[1])
        # a deleted message is gone from every command; numbers are not reused
        for cmd in ("DELE 2", "RETR 2", "TOP 2 0", "LIST 2", "UIDL 2"):
            c.err(cmd)
        _, lines = c.ok_multi("LIST")
        assert lines == [b"1 %d" % sizes[0], b"3 %d" % sizes[2], b"4 %d" % sizes[3]]
        _, lines = c.ok_multi("UIDL")
        assert [l.split()[0] for l in lines] == [b"1", b"3", b"4"]
        c.ok("RSET")
        assert c.cmd("STAT") == "+OK 4 %d" % sum(sizes)
        c.ok_multi("RETR 2")
        c.ok("DELE 1")
        c.ok("DELE 3")
        # nothing happens before QUIT
        assert len(all_files(inst, ALICE)["new"]) == 4
        r = c.quit()
        assert "2" in r, r
        assert c.read_rest() == (b"", True)
    left = all_files(inst, ALICE)
    gone = {msgs[0][0], msgs[2][0]}
    assert not gone & set(left["new"] + [n.split(":")[0] for n in left["cur"]])
    p = pop3_server.login()
    assert [l.split()[1].decode() for l in p.uidl()[1]] == [key(msgs[1][0]), key(msgs[3][0])]
    pquit(p)


def test_dropped_connection_deletes_nothing(pop3_server):
    inst = pop3_server.instance
    msgs = fill(inst, 2)
    with pop3_server.conn() as c:
        c.login()
        c.ok_multi("RETR 1")  # read, and so \Seen at QUIT -- but there is no QUIT
        c.ok("DELE 1")
        c.ok("DELE 2")
    # the session is gone: the lock is free again (once the server noticed the
    # drop), nothing was deleted or flagged
    p = login_after_drop(pop3_server)
    assert p.stat()[0] == 2
    pquit(p)
    assert all_files(inst, ALICE) == {"new": [n for n, _ in msgs], "cur": []}


def test_quit_before_login(pop3_server):
    with pop3_server.conn() as c:
        assert c.ok("QUIT").startswith("+OK")
        assert c.read_rest() == (b"", True)


# --------------------------------------------------------------------------
# errors


BAD_NUMBERS = ["0", "-1", "4", "99999999999999999999999", "18446744073709551617", "abc", "1x",
               "", " 1", "+1", "0x1", "1.0"]


def test_bad_message_numbers(pop3_server):
    fill(pop3_server.instance, 3)
    for arg in BAD_NUMBERS:
        with pop3_server.conn() as c:  # a session per argument: 20 errors close one
            c.login()
            for cmd in ("RETR", "DELE", "LIST", "UIDL", "TOP"):
                if arg == "" and cmd in ("LIST", "UIDL"):
                    continue  # the whole listing
                c.err("%s %s" % (cmd, arg) + (" 1" if cmd == "TOP" else ""))
            assert c.cmd("STAT").startswith("+OK 3 "), arg
            c.quit()
    assert len(all_files(pop3_server.instance, ALICE)["new"]) == 3


def test_wrong_state(pop3_server):
    fill(pop3_server.instance, 1)
    with pop3_server.conn() as c:
        for cmd in ("STAT", "LIST", "LIST 1", "UIDL", "RETR 1", "TOP 1 0", "DELE 1", "RSET",
                    "NOOP", "PASS pw", "XYZZY", ""):
            c.err(cmd)
        c.quit()
    with pop3_server.conn() as c:  # a new session: 20 errors close one
        c.login()
        for cmd in ("USER " + ALICE, "PASS pw", "AUTH PLAIN", "AUTH", "STLS", "APOP a b",
                    "XYZZY", ""):
            c.err(cmd)
        assert c.cmd("STAT").startswith("+OK 1 ")
        c.quit()


def test_overlong_lines(pop3_server):
    with pop3_server.conn() as c:
        # a 2 000 octet line is fine (2048 is the limit)
        c.ok("USER " + "a" * 1990)
        # longer: one -ERR per line, and the session goes on
        c.err("USER " + "b" * 3000)
        c.send(b"USER " + b"c" * 200000 + b"\r\n")
        assert c.status().startswith("-ERR")
        # the tail of the long line was not run as a command
        assert c.nothing_pending(0.5)
        # a long line split over several writes
        c.send(b"NOOP " + b"x" * 1500)
        time.sleep(0.05)
        c.send(b"x" * 1500)
        time.sleep(0.05)
        c.send(b"x" * 1500 + b"\r\nCAPA\r\n")
        assert c.status().startswith("-ERR")
        assert c.status().startswith("+OK")
        c.multi()
        c.login()
        c.ok("NOOP")
        c.quit()


def test_nul_in_command(pop3_server):
    with pop3_server.conn() as c:
        c.send(b"USER alice@example.test\0x\r\n")
        assert c.status().startswith("-ERR")
        c.send(b"CA\0PA\r\n")
        assert c.status().startswith("-ERR")
        c.login()
        c.send(b"STAT\0\r\n")
        assert c.status().startswith("-ERR")
        assert c.ok("STAT")
        c.quit()


def test_too_many_errors_close_the_session(pop3_server):
    with pop3_server.conn() as c:
        for i in range(19):
            c.err("BOGUS%d" % i)
        c.ok_multi("CAPA")  # still open after 19
        c.send("BOGUS\r\n")
        assert c.status().startswith("-ERR")
        data, closed = c.read_rest(timeout=10)
        assert closed, data
        assert all(l.startswith(b"-ERR") for l in data.splitlines()), data


# --------------------------------------------------------------------------
# pipelining (RFC 2449 PIPELINING)


def test_pipelining_in_order(pop3_server):
    inst = pop3_server.instance
    msgs = fill(inst, 2)
    sizes = [len(wire(d)) for _, d in msgs]
    with pop3_server.conn() as c:
        # the login itself pipelined with the commands after it
        c.send("CAPA\r\nUSER %s\r\nPASS pw\r\nSTAT\r\nLIST\r\nRETR 1\r\nTOP 2 0\r\nUIDL 2\r\n"
               "DELE 1\r\nBOGUS\r\nRETR 1\r\nRETR 2\r\nNOOP\r\nRSET\r\nSTAT\r\nQUIT\r\n" % ALICE)
        assert c.status().startswith("+OK")
        assert b"PIPELINING" in c.multi()
        assert c.status().startswith("+OK")                      # USER
        assert c.status().startswith("+OK")                      # PASS
        assert c.status() == "+OK 2 %d" % sum(sizes)             # STAT
        assert c.status().startswith("+OK")
        assert c.multi() == [b"1 %d" % sizes[0], b"2 %d" % sizes[1]]
        assert c.status() == "+OK %d octets" % sizes[0]
        assert unstuff(c.multi()) == wire(msgs[0][1])
        assert c.status().startswith("+OK")                      # TOP 2 0
        assert unstuff(c.multi()) == wire(msgs[1][1]).split(b"\r\n\r\n")[0] + b"\r\n\r\n"
        assert c.status() == "+OK 2 " + key(msgs[1][0])
        assert c.status().startswith("+OK")                      # DELE 1
        assert c.status().startswith("-ERR")                     # BOGUS
        assert c.status().startswith("-ERR")                     # RETR 1 (deleted)
        assert c.status() == "+OK %d octets" % sizes[1]
        assert unstuff(c.multi()) == wire(msgs[1][1])
        assert c.status().startswith("+OK")                      # NOOP
        assert c.status().startswith("+OK")                      # RSET
        assert c.status() == "+OK 2 %d" % sum(sizes)
        assert c.status().startswith("+OK")                      # QUIT
        assert c.read_rest() == (b"", True)


def test_pipelined_failed_login_then_success(pop3_server):
    """Commands after a failed PASS wait for its (delayed) answer."""
    with pop3_server.conn() as c:
        t0 = time.monotonic()
        c.send("USER %s\r\nPASS wrong\r\nSTAT\r\nUSER %s\r\nPASS pw\r\nSTAT\r\nQUIT\r\n"
               % (ALICE, ALICE))
        assert c.status().startswith("+OK")
        assert c.status() == "-ERR [AUTH] Authentication failed"
        assert time.monotonic() - t0 >= 0.09
        assert c.status().startswith("-ERR")                     # STAT before login
        assert c.status().startswith("+OK")
        assert c.status().startswith("+OK")
        assert c.status() == "+OK 0 0"
        assert c.status().startswith("+OK")


def test_many_retr_pipelined(pop3_server):
    """A big pipeline of RETRs of a larger message: every answer complete, in order."""
    inst = pop3_server.instance
    data = message(1, body=b"".join(b"%06d %s\n" % (i, b"x" * 70) for i in range(3000)))
    put(inst, ALICE, data)
    with pop3_server.conn(timeout=30) as c:
        c.login()
        c.send("RETR 1\r\n" * 40 + "STAT\r\n")
        for _ in range(40):
            assert c.status() == "+OK %d octets" % len(wire(data))
            assert unstuff(c.multi()) == wire(data)
        assert c.status().startswith("+OK 1 ")
        c.quit()


def test_unread_output_is_bounded(pop3_inst, pop3_start):
    """A client that pipelines many RETRs and reads nothing must not make the
    server buffer all the answers (memory exhaustion by one logged-in user):
    with its output full the session stops taking commands until the client
    reads."""
    srv = pop3_start(pop3_inst, ("workers=1",))
    data = b"Subject: big\n\n" + (b"x" * 1023 + b"\n") * 1024  # 1 MiB
    put(pop3_inst, ALICE, data)
    with srv.conn(timeout=30) as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        c.login()
        before = srv.workers_rss_kb()
        c.send("RETR 1\r\n" * 200)      # 1.6 kB of commands, 200 MiB of answers
        peak = before
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            peak = max(peak, srv.workers_rss_kb())
            time.sleep(0.1)
        assert peak - before < 64 * 1024, \
            "worker RSS grew by %d MiB for a client that reads nothing" % ((peak - before) // 1024)
        # and the answers all come, complete, once the client reads
        for i in range(200):
            assert c.status() == "+OK %d octets" % len(wire(data)), i
            assert unstuff(c.multi()) == wire(data)
        c.quit()


def test_input_while_busy_is_bounded(pop3_inst, pop3_start):
    """While a session waits (here: the failed-login delay, before any login),
    a client that keeps sending must not make the server buffer all of it."""
    srv = pop3_start(pop3_inst, ("workers=1", "auth_fail_delay=2000"))
    with srv.conn() as c:
        c.ok("USER " + ALICE)
        c.send("PASS wrong\r\n")
        before = srv.workers_rss_kb()
        chunk = b"NOOP\r\n" * 65536
        sent = 0
        c.sock.settimeout(0.2)
        deadline = time.monotonic() + 1.2
        while time.monotonic() < deadline and sent < 160 << 20:
            try:
                sent += c.sock.send(chunk)
            except socket.timeout:
                pass
            except OSError:
                break  # the server may also hang up on such a client
        grown = srv.workers_rss_kb() - before
        assert grown < 64 * 1024, "worker RSS grew by %d MiB (%d MiB sent) during the delay" \
            % (grown // 1024, sent >> 20)
