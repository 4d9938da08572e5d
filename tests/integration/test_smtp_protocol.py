"""SMTP server: the dialogue (greeting, EHLO, command sequencing), pipelining,
limits against hostile clients, durability of a 250, signals."""

import os
import random
import signal
import socket
import time

import pytest

from harness.instance import TIMEOUT_SCALE
from smtp_util import (HOSTNAME, Client, all_delivered, lf, new_files, queue_files, read_new,
                       split_stored, tmp_files)

ALICE = "alice@example.test"
BOB = "bob@example.test"


def reloaded(srv):
    """Wait for the server's word that a SIGHUP was taken: the reload line,
    then the new auth process's start (until it accepts, a directory lookup
    of the old workers waits for it and may find it too late under load)."""
    assert srv.wait_log(r"SIGHUP: configuration reloaded", timeout=60 * TIMEOUT_SCALE), \
        srv.log()
    assert srv.wait_log(r"auth process started", count=2, timeout=60 * TIMEOUT_SCALE), \
        srv.log()


def wait_gone(srv, port):
    """Wait for the server's own word that the session of the client on
    local port `port` has ended (its jobs done, its files removed)."""
    assert srv.wait_log(r"smtp disconnect from \[[^\]]+\]:%d$" % port,
                        timeout=60 * TIMEOUT_SCALE), srv.log()


def msg(subject, body=b"hello\r\n"):
    return b"From: x@y.test\r\nTo: alice@example.test\r\nSubject: " + subject.encode() + \
        b"\r\n\r\n" + body


# --------------------------------------------------------------------------
# greeting, EHLO, simple commands


def test_greeting_and_ehlo(sqlite_smtp_server):
    srv = sqlite_smtp_server
    with srv.client() as c:
        assert c.greeting.lines == ["220 %s ESMTP petrel" % HOSTNAME], c.greeting
        r = c.expect("EHLO client.test", 250)
        assert r.lines[0] == "250-" + HOSTNAME, r
        assert all(l.startswith("250-") for l in r.lines[:-1]) and r.lines[-1].startswith("250 "), r
        kw = [l[4:] for l in r.lines[1:]]
        names = {k.split()[0].upper() for k in kw}
        for want in ("PIPELINING", "SIZE", "VRFY", "ENHANCEDSTATUSCODES", "8BITMIME",
                     "SMTPUTF8", "CHUNKING"):
            assert want in names, "EHLO must offer %s: %r" % (want, r)
        assert "SIZE 52428800" in kw, "SIZE must announce message_size_limit: %r" % r
        # The MX port offers opportunistic STARTTLS (the instance has a
        # certificate) but never AUTH: that is for the submission ports.
        assert "STARTTLS" in names and "AUTH" not in names, r
        c.expect("QUIT", 221)
        assert c.is_closed(), "the server must close after 221"


def test_size_keyword_follows_config(sqlite_instance, smtp_start):
    srv = smtp_start(sqlite_instance, ["message_size_limit=10000"])
    with srv.client() as c:
        r = c.expect("EHLO client.test", 250)
        assert "250-SIZE 10000" in r.lines or "250 SIZE 10000" in r.lines, r


def test_helo_and_a_message(sqlite_smtp_server):
    srv = sqlite_smtp_server
    with srv.client() as c:
        r = c.expect("HELO client.test", 250)
        assert len(r.lines) == 1 and HOSTNAME in r.text, r
        c.expect("MAIL FROM:<x@y.test>", 250)
        c.expect("RCPT TO:<alice@example.test>", 250)
        c.expect("DATA", 354)
        c.send(msg("via HELO") + b".\r\n")
        r = c.reply()
        assert r.code == 250, r
        c.expect("QUIT", 221)
    files = read_new(srv.instance, ALICE)
    assert len(files) == 1
    head, body = split_stored(files[0])
    assert "with SMTP" in head["Received"], head


def test_simple_commands(sqlite_smtp_server):
    with sqlite_smtp_server.client() as c:
        c.expect("EHLO client.test", 250)
        r = c.expect("VRFY alice@example.test", 252)
        assert r.text.startswith("2."), r
        c.expect("HELP", 214)
        c.expect("NOOP", 250)
        c.expect("RSET", 250)
        c.expect("noop", 250)  # case-insensitive verbs
        r = c.expect("FOOBAR", 502)
        assert r.text.startswith("5.5.2"), r
        r = c.expect("STARTTLS x", 501)   # no arguments allowed
        r = c.expect("AUTH PLAIN", 502)   # no AUTH on the MX port
        r = c.expect("QUIT", 221)
        assert r.text.startswith("2.0.0"), r
        assert c.is_closed()


def test_command_sequencing(smtp_server):
    with smtp_server.client() as c:
        r = c.expect("MAIL FROM:<x@y.test>", 503)  # before HELO
        c.expect("EHLO client.test", 250)
        c.expect("RCPT TO:<alice@example.test>", 503)  # before MAIL
        c.expect("DATA", 503)  # before MAIL
        c.expect("MAIL FROM:<x@y.test>", 250)
        c.expect("MAIL FROM:<x@y.test>", 503)  # nested
        c.expect("DATA", 554)  # no recipient at all
        c.expect("RCPT TO:<nobody@example.test>", 550)
        r = c.expect("DATA", 554)  # no valid recipient
        c.expect("RSET", 250)
        c.expect("RCPT TO:<alice@example.test>", 503)  # RSET ended the transaction
        # and a correct transaction still works
        c.expect("MAIL FROM:<>", 250)  # null sender (bounces)
        c.expect("RCPT TO:<alice@example.test>", 250)
        c.expect("DATA", 354)
        c.send(msg("after errors") + b".\r\n")
        assert c.reply().code == 250
    files = read_new(smtp_server.instance, ALICE)
    assert len(files) == 1
    head, _ = split_stored(files[0])
    assert head["Return-Path"] == "<>", head


def test_enhanced_status_codes(sqlite_smtp_server):
    with sqlite_smtp_server.client() as c:
        c.expect("EHLO client.test", 250)
        for line, code, enh in (("MAIL FROM:<x@y.test>", 250, "2.1.0"),
                                ("RCPT TO:<alice@example.test>", 250, "2.1.5"),
                                ("RCPT TO:<nobody@example.test>", 550, "5.1.1"),
                                ("RCPT TO:<x@other.test>", 554, "5.7.1"),
                                ("MAIL FROM:<x@y.test>", 503, "5.5.1")):
            r = c.expect(line, code)
            assert r.text.startswith(enh), "%s -> %r, expected %s" % (line, r, enh)


def test_ehlo_resets_transaction(sqlite_smtp_server):
    with sqlite_smtp_server.client() as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<x@y.test>", 250)
        c.expect("RCPT TO:<alice@example.test>", 250)
        c.expect("EHLO client.test", 250)
        c.expect("DATA", 503)
        c.expect("MAIL FROM:<x@y.test>", 250)
        c.expect("RCPT TO:<alice@example.test>", 250)
        c.expect("QUIT", 221)  # QUIT in a transaction: nothing delivered
    assert all_delivered(sqlite_smtp_server.instance) == []


def test_terminator_split_across_writes(sqlite_smtp_server):
    """CRLF.CRLF arriving one byte per TCP write: one message, one 250."""
    inst = sqlite_smtp_server.instance
    with sqlite_smtp_server.client() as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<x@y.test>", 250)
        c.expect("RCPT TO:<alice@example.test>", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: split\r\n\r\nbody")
        for b in b"\r\n.\r\n":
            time.sleep(0.05)
            c.send(bytes([b]))
        r = c.reply()
        assert r.code == 250, r
        c.expect("QUIT", 221)
    head, body = split_stored(read_new(inst, ALICE)[0])
    assert body == b"Subject: split\n\nbody\n"


# --------------------------------------------------------------------------
# durability and counting


def test_250_means_in_new(smtp_server):
    """After each 250 the file is already in new/ (no waiting), one per message."""
    inst = smtp_server.instance
    s = smtp_server.smtplib()
    try:
        for i in range(10):
            s.sendmail("x@y.test", [ALICE, BOB], msg("durable %d" % i, b"n=%d\r\n" % i))
            assert len(new_files(inst, ALICE)) == i + 1, "alice: not in new/ after 250"
            assert len(new_files(inst, BOB)) == i + 1, "bob: not in new/ after 250"
    finally:
        s.quit()
    for who in (ALICE, BOB):
        bodies = sorted(split_stored(d)[1] for d in read_new(inst, who))
        want = sorted(lf(msg("durable %d" % i, b"n=%d\r\n" % i)) for i in range(10))
        assert bodies == want
        assert tmp_files(inst, who) == []
    assert smtp_server.wait_log(r"\(accepted\)$", 10)
    assert smtp_server.accepted_count() == 10


def test_duplicate_recipient_one_copy(smtp_server):
    """RCPT TO the same mailbox twice (also in another case): one copy, as Postfix does."""
    inst = smtp_server.instance
    with smtp_server.client() as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<x@y.test>", 250)
        c.expect("RCPT TO:<alice@example.test>", 250)
        c.expect("RCPT TO:<alice@example.test>", 250)
        c.expect("RCPT TO:<Alice@Example.Test>", 250)
        c.expect("DATA", 354)
        c.send(msg("dup") + b".\r\n")
        assert c.reply().code == 250
    assert len(new_files(inst, ALICE)) == 1, "one message to one mailbox must be one file"


# --------------------------------------------------------------------------
# pipelining


def test_pipelining_replies_in_order(smtp_server):
    inst = smtp_server.instance
    with smtp_server.client() as c:
        c.send(b"EHLO client.test\r\nMAIL FROM:<x@y.test>\r\n"
               b"RCPT TO:<alice@example.test>\r\nRCPT TO:<nobody@example.test>\r\n"
               b"RCPT TO:<x@other.test>\r\nDATA\r\n")
        codes = [r.code for r in c.replies(6)]
        assert codes == [250, 250, 250, 550, 554, 354], codes
        c.send(msg("pipelined") + b".\r\n")
        r = c.reply()
        assert r.code == 250, r
        c.expect("QUIT", 221)
    assert len(new_files(inst, ALICE)) == 1
    assert len(all_delivered(inst)) == 1, all_delivered(inst)
    assert queue_files(inst) == []


def test_pipelining_whole_transactions(smtp_server):
    """Several whole transactions and QUIT in one write: every reply, in order."""
    inst = smtp_server.instance
    wire = b"EHLO client.test\r\n"
    for i in range(3):
        wire += (b"MAIL FROM:<x@y.test>\r\nRCPT TO:<alice@example.test>\r\n"
                 b"RCPT TO:<bob@example.test>\r\nDATA\r\n" + msg("batch %d" % i) + b".\r\n")
    wire += b"QUIT\r\n"
    with smtp_server.client() as c:
        c.send(wire)
        codes = [r.code for r in c.replies(1 + 3 * 5 + 1)]
        assert codes == [250] + [250, 250, 250, 354, 250] * 3 + [221], codes
        assert c.is_closed()
    assert len(new_files(inst, ALICE)) == 3
    assert len(new_files(inst, BOB)) == 3


# --------------------------------------------------------------------------
# limits and hostile clients


def test_long_command_line(sqlite_smtp_server):
    srv = sqlite_smtp_server
    with srv.client() as c:
        c.expect("EHLO client.test", 250)
        r = c.cmd("NOOP " + "x" * 2000)
        assert r.code == 500 and r.text.startswith("5.5.2"), r
        c.expect("NOOP", 250)
        # the same, pipelined with what follows: exactly one error
        c.send(b"MAIL FROM:<" + b"a" * 2000 + b"@y.test>\r\nNOOP\r\n")
        codes = [r.code for r in c.replies(2)]
        assert codes == [500, 250], codes
        # a huge line trickled in pieces (the server must not buffer it whole)
        for _ in range(20):
            c.send(b"y" * 5000)
        c.send(b"\r\nNOOP\r\n")
        r = c.reply()
        assert r.code == 500, r
        r = c.reply()
        assert r.code == 250, "exactly one 500 for one long line, then NOOP: %r" % r
        r = c.send_message("x@y.test", [ALICE], msg("after long lines"))
        assert r.code == 250, r
    assert len(new_files(srv.instance, ALICE)) == 1


def test_nul_in_command(sqlite_smtp_server):
    with sqlite_smtp_server.client() as c:
        c.expect("EHLO client.test", 250)
        r = c.cmd("NO\0OP")
        assert r.code == 500, r
        r = c.cmd("MAIL FROM:<x@y.test>\0 SIZE=10")
        assert r.code == 500, r
        c.expect("NOOP", 250)
        c.expect("MAIL FROM:<x@y.test>", 250)
        r = c.cmd("RCPT TO:<alice@example.test\0evil@other.test>")
        assert r.code == 500, r
        c.expect("RCPT TO:<alice@example.test>", 250)


def test_too_many_recipients(sqlite_smtp_server):
    srv = sqlite_smtp_server
    with srv.client(timeout=60) as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<x@y.test>", 250)
        c.send(b"".join(b"RCPT TO:<alice+%d@example.test>\r\n" % i for i in range(1001)))
        replies = c.replies(1001)
        codes = [r.code for r in replies]
        assert codes[:1000] == [250] * 1000, [(i, r) for i, r in enumerate(replies) if r.code != 250][:3]
        assert codes[1000] == 452 and replies[1000].text.startswith("4.5.3"), replies[1000]
        c.expect("RSET", 250)
        c.expect("QUIT", 221)
    assert all_delivered(srv.instance) == []


def test_too_many_errors(sqlite_smtp_server):
    with sqlite_smtp_server.client() as c:
        c.expect("EHLO client.test", 250)
        got421 = None
        for i in range(25):
            try:
                r = c.cmd("BOGUS%d" % i)
            except (ConnectionError, OSError):
                break
            if r.code == 421:
                got421 = i
                break
            assert r.code == 502, r
        else:
            # the 421 may come right after the 25th error reply
            try:
                r = c.reply()
                if r.code == 421:
                    got421 = 25
            except (ConnectionError, OSError):
                pass
        assert got421 is not None, "25 bad commands must end with 421"
        assert c.is_closed(), "the connection must close after 421"
    with sqlite_smtp_server.client() as c:
        c.expect("EHLO client.test", 250)


def test_too_many_errors_pipelined(sqlite_smtp_server):
    with sqlite_smtp_server.client() as c:
        c.send(b"".join(b"BOGUS %d\r\n" % i for i in range(25)))
        data, closed = c.read_rest(10)
        lines = [l for l in data.split(b"\r\n") if l]
        assert lines and lines[-1].startswith(b"421"), lines[-3:]
        assert closed, "the connection must close after 421"
        assert len(lines) <= 26, len(lines)


def test_pipelined_garbage(sqlite_smtp_server):
    srv = sqlite_smtp_server
    rnd = random.Random(20240521)
    for n in range(5):
        try:
            with srv.client() as c:
                blob = bytes(rnd.getrandbits(8) for _ in range(64 * 1024))
                if n % 2:
                    blob = blob.replace(b"\n", b"\r\n")  # many short lines
                if n == 4:
                    blob = b"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<alice@example.test>\r\n" \
                           b"BDAT 1000000\r\n" + blob  # a chunk longer than what follows
                c.send(blob)
                c.read_rest(1)
        except (ConnectionError, OSError):
            pass  # the server may close on us: fine
    assert srv.alive()
    with srv.client() as c:
        r = c.send_message("x@y.test", [ALICE], msg("after garbage"))
        assert r.code == 250, r
    assert len(new_files(srv.instance, ALICE)) == 1
    assert srv.crashes() == []


def test_disconnect_with_jobs_in_flight(smtp_server):
    """A client that pipelines many RCPTs (directory jobs) and a whole message, then
    closes without reading a byte: no crash, and the server goes on."""
    srv = smtp_server
    ports = []
    for n in range(3):
        c = srv.client()
        ports.append(c.sock.getsockname()[1])
        wire = b"EHLO c\r\nMAIL FROM:<x@y.test>\r\n"
        wire += b"".join(b"RCPT TO:<%s@example.test>\r\n" % (b"alice" if i % 2 else b"nobody%d" % i)
                         for i in range(300))
        if n == 2:
            wire += b"DATA\r\nSubject: gone\r\n\r\nbye\r\n.\r\n"
        c.send(wire)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()  # RST
    for port in ports:
        wait_gone(srv, port)
    assert srv.alive() and srv.crashes() == []
    with srv.client() as c:
        assert c.send_message("x@y.test", [BOB], msg("after")).code == 250
    assert len(new_files(srv.instance, BOB)) == 1


def test_connection_limit_per_ip(sqlite_instance, smtp_start):
    """More connections from one address than smtp_max_connections_per_ip: the
    extra ones get 421 and are closed; once the others leave, new ones are served."""
    sqlite_instance.add_user(ALICE)
    srv = smtp_start(sqlite_instance, ["workers=1", "smtp_max_connections_per_ip=4"])
    for round in range(3):
        clients, refused = [], 0
        for i in range(6):
            c = Client(srv.host, srv.port, greeting=False)
            r = c.reply()
            if r.code == 220:
                clients.append(c)
            else:
                assert r.code == 421, r
                assert c.is_closed()
                c.close()
                refused += 1
        assert len(clients) == 4 and refused == 2, (round, len(clients), refused)
        for c in clients:
            c.expect("QUIT", 221)
            port = c.sock.getsockname()[1]
            c.close()
            wait_gone(srv, port)
    with srv.client() as c:
        assert c.send_message("x@y.test", [ALICE], msg("limit")).code == 250


def test_http_client(sqlite_smtp_server):
    with sqlite_smtp_server.client() as c:
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data, closed = c.read_rest(5)
        assert data.startswith(b"421") or data.startswith(b"5"), data
        assert closed


def test_silent_client_and_idle_timeout(sqlite_instance, smtp_start):
    for a in ("alice@example.test",):
        sqlite_instance.add_user(a)
    srv = smtp_start(sqlite_instance, ["smtp_timeout=2"])
    inst = srv.instance
    # says nothing and goes away
    s = socket.create_connection((srv.host, srv.port), timeout=5)
    s.close()
    # says nothing and waits: 421 4.4.2 after the timeout, then close
    with srv.client(timeout=15) as c:
        t0 = time.monotonic()
        data, closed = c.read_rest(10)
        took = time.monotonic() - t0
        assert data.startswith(b"421 4.4.2"), data
        assert closed and took < 8 * TIMEOUT_SCALE, (closed, took)
    # idle in the middle of DATA: same, and nothing delivered
    with srv.client(timeout=15) as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<x@y.test>", 250)
        c.expect("RCPT TO:<alice@example.test>", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: half\r\n\r\nhalf a message\r\n")
        data, closed = c.read_rest(10)
        assert data.startswith(b"421"), data
        assert closed
    assert all_delivered(inst) == []
    assert queue_files(inst) == [] and queue_files(inst, "tmp") == []
    with srv.client() as c:
        assert c.send_message("x@y.test", [ALICE], msg("still fine")).code == 250


@pytest.mark.parametrize("size", [100, 3 * 1024 * 1024], ids=["small", "spilled"])
def test_disconnect_in_data(sqlite_smtp_server, size):
    """A client that goes away in the middle of DATA (also after more than the
    in-memory part of the body): nothing delivered, nothing left in tmp/."""
    srv = sqlite_smtp_server
    inst = srv.instance
    c = srv.client()
    c.expect("EHLO client.test", 250)
    c.expect("MAIL FROM:<x@y.test>", 250)
    c.expect("RCPT TO:<alice@example.test>", 250)
    c.expect("RCPT TO:<bob@example.test>", 250)
    c.expect("DATA", 354)
    c.send(b"Subject: cut\r\n\r\n" + (b"x" * 78 + b"\r\n") * (size // 80))
    c.send(b"\r\n")  # a CRLF but no dot
    port = c.sock.getsockname()[1]
    c.close()
    wait_gone(srv, port)
    assert all_delivered(inst) == []
    assert queue_files(inst) == []
    assert queue_files(inst, "tmp") == [], "the spilled body must be removed"
    with srv.client() as c:
        assert c.send_message("x@y.test", [ALICE], msg("next")).code == 250
    assert len(new_files(inst, ALICE)) == 1
    assert new_files(inst, BOB) == []


def test_disconnect_before_quit_after_250(sqlite_smtp_server):
    """A client that disconnects right after the dot (without reading the reply)
    must not crash anything; the message may or may not be delivered, but once."""
    srv = sqlite_smtp_server
    c = srv.client()
    c.send(b"EHLO c\r\nMAIL FROM:<x@y.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
    c.replies(4)
    c.send(msg("gone") + b".\r\n")
    port = c.sock.getsockname()[1]
    c.close()
    wait_gone(srv, port)
    assert len(new_files(srv.instance, ALICE)) <= 1
    with srv.client() as c:
        assert c.send_message("x@y.test", [ALICE], msg("next")).code == 250


# --------------------------------------------------------------------------
# signals


def test_sighup_keeps_serving(smtp_server):
    srv = smtp_server
    s = srv.smtplib()
    s.sendmail("x@y.test", [ALICE], msg("before HUP"))
    s.quit()
    srv.send_signal(signal.SIGHUP)
    reloaded(srv)
    assert srv.alive()
    s = srv.smtplib()
    s.sendmail("x@y.test", [ALICE], msg("after HUP"))
    s.quit()
    subjects = [split_stored(d)[1].split(b"\n")[2] for d in read_new(srv.instance, ALICE)]
    assert sorted(subjects) == [b"Subject: after HUP", b"Subject: before HUP"], subjects
    assert srv.stop() == 0


def test_sighup_rereads_config(smtp_server):
    """SIGHUP: new workers read petrel.conf again (here message_size_limit); a
    broken file keeps the old configuration and the service."""
    srv = smtp_server
    conf = srv.instance.conf
    with open(conf) as f:
        text = f.read()
    with open(conf, "w") as f:
        f.write(text.replace("message_size_limit = 52428800", "message_size_limit = 123456"))
    srv.send_signal(signal.SIGHUP)
    # connections right at the reload: test_sighup_idle_session_survives
    reloaded(srv)
    deadline = time.monotonic() + 10 * TIMEOUT_SCALE
    while True:
        with srv.client() as c:
            r = c.expect("EHLO client.test", 250)
        if "250-SIZE 123456" in r.lines or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert "250-SIZE 123456" in r.lines, r
    with open(conf, "a") as f:
        f.write("no_such_key = 1\n")
    srv.send_signal(signal.SIGHUP)
    assert srv.wait_log(r"SIGHUP: keeping the old configuration", timeout=60 * TIMEOUT_SCALE), \
        srv.log()
    assert srv.alive()
    with srv.client() as c:
        r = c.expect("EHLO client.test", 250)
        assert "250-SIZE 123456" in r.lines, r
        assert c.send_message("x@y.test", [ALICE], msg("after bad HUP")).code == 250
    with open(conf, "w") as f:
        f.write(text)


def test_worker_killed_is_replaced(smtp_server):
    """kill -9 of a worker: the master starts another, the service goes on."""
    srv = smtp_server
    kids = [int(p) for p in open("/proc/%d/task/%d/children" % (srv.proc.pid, srv.proc.pid))
            .read().split()]
    assert kids, "no worker processes?"
    os.kill(kids[0], signal.SIGKILL)
    srv.allow_log(r"killed by signal 9")
    assert srv.wait_log(r"restarted", timeout=10), srv.log()
    for i in range(4):
        with srv.client() as c:
            assert c.send_message("x@y.test", [ALICE], msg("after kill %d" % i)).code == 250
    assert len(new_files(srv.instance, ALICE)) == 4


def test_sighup_idle_session_survives(smtp_server):
    """A reload is not a stop: a session that is between transactions when SIGHUP
    arrives (here right after EHLO) may go on and send its message, as with
    Postfix's reload; it must not be cut with 421."""
    srv = smtp_server
    with srv.client() as c:
        c.expect("EHLO client.test", 250)
        srv.send_signal(signal.SIGHUP)
        reloaded(srv)
        r = c.cmd("MAIL FROM:<x@y.test>")
        assert r.code == 250, "session cut by SIGHUP: %r" % r
        c.expect("RCPT TO:<alice@example.test>", 250)
        c.expect("DATA", 354)
        c.send(msg("idle across HUP") + b".\r\n")
        assert c.reply().code == 250
    assert len(new_files(srv.instance, ALICE)) == 1


def test_sighup_during_a_session(smtp_server):
    """A session open across SIGHUP completes its transaction."""
    srv = smtp_server
    with srv.client() as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<x@y.test>", 250)
        srv.send_signal(signal.SIGHUP)
        reloaded(srv)
        c.expect("RCPT TO:<alice@example.test>", 250)
        c.expect("DATA", 354)
        c.send(msg("across HUP") + b".\r\n")
        assert c.reply().code == 250
    assert len(new_files(srv.instance, ALICE)) == 1


def test_sigterm_with_idle_session(smtp_server):
    srv = smtp_server
    c = srv.client()
    c.expect("EHLO client.test", 250)
    t0 = time.monotonic()
    srv.send_signal(signal.SIGTERM)
    data, closed = c.read_rest(10)
    c.close()
    assert data == b"" or data.startswith(b"421 4.3.2"), data
    assert closed, "the idle session must be closed"
    rc = srv.stop(timeout=10)
    took = time.monotonic() - t0
    assert rc == 0, srv.log()
    assert took < 8 * TIMEOUT_SCALE, "serve took %.1fs to exit" % took


def test_sigterm_mid_transaction_finishes_it(smtp_server):
    """SIGTERM while a client is in a transaction: the client can finish (within
    the drain grace) and its message is delivered; then serve exits 0."""
    srv = smtp_server
    c = srv.client()
    c.expect("EHLO client.test", 250)
    c.expect("MAIL FROM:<x@y.test>", 250)
    srv.send_signal(signal.SIGTERM)
    assert srv.wait_log(r"received SIGTERM, stopping", timeout=60 * TIMEOUT_SCALE)
    c.expect("RCPT TO:<alice@example.test>", 250)
    c.expect("DATA", 354)
    c.send(msg("during shutdown") + b".\r\n")
    r = c.reply()
    assert r.code == 250, r
    c.close()
    assert srv.stop(timeout=25) == 0
    assert len(new_files(srv.instance, ALICE)) == 1


def test_stop_right_after_start(sqlite_instance, smtp_start):
    """SIGTERM right after serve greets (a worker may still be starting): exit 0 and
    no error in the log (a worker killed by the SIGTERM it was sent is an error line)."""
    for i in range(5):
        srv = smtp_start(sqlite_instance)
        assert srv.stop() == 0, srv.log()
        errors = [l for l in srv.log_lines() if ": error: " in l]
        assert errors == [], "".join(errors)


def test_helo_name_cannot_inject_headers(sqlite_smtp_server):
    """The HELO name goes into the Received header: CR, NUL-free control bytes and
    parentheses must not make new header lines or break the comment."""
    inst = sqlite_smtp_server.instance
    with sqlite_smtp_server.client() as c:
        c.send(b"EHLO evil\rX-Injected: yes\r\n")
        assert c.reply().code in (250, 501)
        c.send(b"EHLO a\tb\r\n")
        assert c.reply().code == 250
        r = c.send_message("x@y.test", [ALICE], msg("helo"), ehlo="ev(il)\x01\x7f")
        assert r.code == 250, r
    raw = read_new(inst, ALICE)[0]
    head, body = split_stored(raw)
    received = head["Received"]
    assert not any(l.startswith(b"X-Injected") for l in raw.split(b"\n")), raw[:400]
    assert "\r" not in received and "\x01" not in received and "\x7f" not in received, received
    assert "ev(il)" not in received, "parentheses in the HELO name break the comment"
    assert body.startswith(b"From: x@y.test\n"), body[:100]


@pytest.mark.parametrize("phase", ["DATA", "BDAT"])
def test_data_phase_total_deadline(sqlite_instance, smtp_start, phase):
    """smtp_data_timeout bounds the whole data phase: a client that sends one
    complete line (or one small BDAT chunk) every second, well within
    smtp_timeout, is answered 421 4.4.2 and disconnected once
    smtp_data_timeout has passed; the partial message is neither acknowledged
    nor delivered, and the server still takes mail."""
    sqlite_instance.add_user(ALICE)
    srv = smtp_start(sqlite_instance, ["smtp_timeout=3", "smtp_data_timeout=4"])
    inst = srv.instance
    with srv.client(timeout=15) as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<x@y.test>", 250)
        c.expect("RCPT TO:<%s>" % ALICE, 250)
        if phase == "DATA":
            c.expect("DATA", 354)
        t0 = time.monotonic()
        got = b""
        while time.monotonic() - t0 < 12:
            line = b"X-Trickle: %d\r\n" % int((time.monotonic() - t0) * 1000)
            try:
                if phase == "DATA":
                    c.send(line)
                else:
                    c.send(b"BDAT %d\r\n" % len(line) + line)
            except OSError:
                break
            time.sleep(1)
            c.sock.settimeout(0.01)
            try:
                chunk = c.sock.recv(4096)
            except (socket.timeout, BlockingIOError):
                chunk = None
            except OSError:
                break
            finally:
                c.sock.settimeout(15)
            if chunk == b"":
                break
            if chunk:
                got += chunk
                if b"421" in got:
                    break
        took = time.monotonic() - t0
    assert b"421 4.4.2" in got, got
    assert 3.5 < took < 8 * TIMEOUT_SCALE, took
    if phase == "BDAT":
        assert got.count(b"250 2.0.0") >= 2   # the early chunks were taken
    assert all_delivered(inst) == []
    assert queue_files(inst) == [] and queue_files(inst, "tmp") == []
    srv.wait_log(r"data timeout \(smtp_data_timeout=4\)")
    with srv.client() as c:
        assert c.send_message("x@y.test", [ALICE], msg("still fine")).code == 250
