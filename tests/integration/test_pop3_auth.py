"""POP3 logins: USER/PASS, AUTH PLAIN (RFC 5034), the failed-login delay,
allow_plaintext_auth, the maildrop lock ([IN-USE]) and the directory being
down ([SYS/TEMP]). SQLite and MariaDB."""

import poplib
import re
import socket
import threading
import time

import pytest

from harness.sockopt import server_option
from harness.instance import TIMEOUT_SCALE
from pop3_util import (ALICE, BOB, PASSWORD, add_users, has_ipv6_loopback, message,
                       nonloopback_ipv4, nonloopback_ipv6, plain_b64, pquit, put)

FAIL = "-ERR [AUTH] Authentication failed"


def timed(fn, *a):
    t0 = time.monotonic()
    r = fn(*a)
    return r, time.monotonic() - t0


def hash_of(inst, password):
    return inst.run("hash", input=password + "\n").stdout.strip()


# --------------------------------------------------------------------------
# USER / PASS


def test_user_pass(pop3_server):
    put(pop3_server.instance, ALICE, message(1))
    p = pop3_server.poplib()
    assert p.user(ALICE).startswith(b"+OK")
    assert p.pass_(PASSWORD).startswith(b"+OK")
    assert p.stat()[0] == 1
    pquit(p)


def test_wrong_password_and_unknown_user(pop3_inst, pop3_start):
    """Same answer for a wrong password and an unknown user, both delayed; the
    session stays in AUTHORIZATION and a later right password works (and takes
    back ALICE's failures from the delay, not those for other logins: one
    worker, so that it is the same counter)."""
    srv = pop3_start(pop3_inst, ("workers=1",))
    others = 0   # failures for logins other than ALICE, never reset here
    expected = []
    for user, pw in ((ALICE, "wrong"), ("nobody@example.test", "pw"),
                     ("nobody@elsewhere.test", "pw"), (ALICE, "PW"), (ALICE, "pw "),
                     (BOB, "nope"), ("' OR '1'='1", "' OR '1'='1"), ("%", "pw"),
                     ("", "pw")):
        with srv.conn() as c:
            c.ok("USER " + user) if user else c.err("USER")
            if not user:
                continue
            r, dt = timed(c.cmd, "PASS " + pw)
            assert r == FAIL, (user, pw, r)
            # the delay chosen (in the log, checked below) doubles with the
            # failures that no success took back; the answer waits at least
            # that long (how much longer depends on the machine's load)
            delay = 100 * 2 ** others
            expected.append(str(delay))
            assert dt >= delay / 1000 - 0.01, (user, pw, dt)
            if user != ALICE:
                others += 1
            c.err("STAT")
            c.err("PASS pw")  # PASS needs a USER first (the failed one is forgotten)
            c.login()
            assert c.cmd("STAT") == "+OK 0 0"
            c.quit()
    failed = r"pop3 login failed: .*\(delay (\d+) ms\)"
    srv.wait_log(failed, count=len(expected))
    assert re.findall(failed, srv.log()) == expected, srv.log()
    p = srv.poplib()
    p.user(BOB)
    with pytest.raises(poplib.error_proto) as e:
        p.pass_("nope")
    assert e.value.args[0] == FAIL.encode()
    p.close()


def test_login_by_id_and_password_with_spaces(instance, pop3_start):
    """query_login matches id or address; PASS takes the rest of the line."""
    pw = "a b  c "
    instance.insert_user("carol-login", "carol@example.test", hash_of(instance, pw))
    srv = pop3_start(instance)
    for login in ("carol-login", "carol@example.test"):
        with srv.conn() as c:
            c.ok("USER " + login)
            r = c.cmd("PASS " + pw)
            assert r.startswith("+OK"), (login, r)
            # no maildir was made for this user: an empty maildrop
            assert c.cmd("STAT") == "+OK 0 0"
            c.quit()
        with srv.conn() as c:
            assert c.auth_plain(login, pw).startswith("+OK")
            c.quit()
        with srv.conn() as c:
            c.ok("USER " + login)
            assert c.cmd("PASS a b c") == FAIL


@pytest.mark.parametrize("column", ["imapok", "bool1", "bool2"])
def test_login_flags_refuse(instance, pop3_start, column):
    instance.add_user(ALICE, PASSWORD)
    instance.sql("UPDATE users SET %s = 0 WHERE address = %s" % (column, instance.quote(ALICE)))
    srv = pop3_start(instance)
    with srv.conn() as c:
        c.ok("USER " + ALICE)
        assert c.cmd("PASS " + PASSWORD) == FAIL
        assert c.auth_plain(ALICE, PASSWORD) == FAIL
    instance.sql("UPDATE users SET %s = 1 WHERE address = %s" % (column, instance.quote(ALICE)))
    with srv.conn() as c:
        c.login()
        c.quit()


def test_password_change_takes_effect_at_once(instance, pop3_start):
    """The login cache must not keep an old password working."""
    instance.add_user(ALICE, "old-pw")
    srv = pop3_start(instance, ("workers=1",))
    with srv.conn() as c:
        c.login(ALICE, "old-pw")
        c.quit()
    instance.run("user", "passwd", ALICE, input="new-pw\n")
    with srv.conn() as c:
        c.ok("USER " + ALICE)
        assert c.cmd("PASS old-pw") == FAIL
        c.login(ALICE, "new-pw")
        c.quit()


# --------------------------------------------------------------------------
# AUTH PLAIN


def test_auth_plain(pop3_server):
    put(pop3_server.instance, ALICE, message(1))
    # initial response
    with pop3_server.conn() as c:
        r = c.auth_plain(ALICE, PASSWORD)
        assert r.startswith("+OK"), r
        assert c.cmd("STAT").startswith("+OK 1 ")
        c.quit()
    # no initial response: an empty continuation, then the response
    with pop3_server.conn() as c:
        assert c.cmd("AUTH PLAIN") == "+ "
        assert c.cmd(plain_b64(ALICE, PASSWORD)).startswith("+OK")
        assert c.cmd("STAT").startswith("+OK 1 ")
        c.quit()
    # the mechanism name is case-insensitive; authzid = authcid is fine
    with pop3_server.conn() as c:
        assert c.cmd("auth plain " + plain_b64(ALICE, PASSWORD, ALICE)).startswith("+OK")
        c.quit()


def test_auth_plain_failures(pop3_server):
    with pop3_server.conn() as c:
        # AUTH alone lists the mechanisms
        assert c.cmd("AUTH") == "+OK"
        assert c.multi() == [b"PLAIN"]
        # '*' aborts, and the session goes on
        assert c.cmd("AUTH PLAIN") == "+ "
        c.err("*")
        c.err("STAT")
        # wrong password: delayed [AUTH]
        r, dt = timed(c.auth_plain, ALICE, "wrong")
        assert r == FAIL and dt >= 0.09
        assert c.cmd("AUTH PLAIN") == "+ "
        r, dt = timed(c.cmd, plain_b64(ALICE, "wrong"))
        assert r == FAIL and dt >= 0.09
        # one user may not act for another
        r = c.auth_plain(ALICE, PASSWORD, authzid=BOB)
        assert r.startswith("-ERR"), r
        # garbage
        for bad in ("AUTH PLAIN !!!notbase64", "AUTH PLAIN " + "YWxpY2U=",  # no NULs
                    "AUTH PLAIN =", "AUTH LOGIN", "AUTH CRAM-MD5", "AUTH XOAUTH2 abc"):
            c.err(bad)
        assert c.cmd("AUTH PLAIN") == "+ "
        c.err("not base64 at all")
        c.err("STAT")
        # and then it works
        assert c.auth_plain(ALICE, PASSWORD).startswith("+OK")
        assert c.cmd("STAT") == "+OK 0 0"
        c.quit()


def test_auth_plain_overlong_response_ends_the_exchange(pop3_server):
    """An overlong line as the SASL response is answered -ERR, and that ends
    the AUTH command: the next line is a command again, not a SASL response."""
    with pop3_server.conn() as c:
        assert c.cmd("AUTH PLAIN") == "+ "
        c.send("A" * 3000 + "\r\n")
        assert c.status().startswith("-ERR")
        r = c.cmd("CAPA")
        assert r.startswith("+OK"), r
        assert b"USER" in c.multi()
        c.login()
        c.quit()


# --------------------------------------------------------------------------
# the failed-login delay


def test_failure_delay_doubles_and_resets(pop3_inst, pop3_start):
    """auth_fail_delay (100 ms here), doubled per further failure from the same
    address, reset by a success; the delay does not stall other clients."""
    srv = pop3_start(pop3_inst, ("workers=1",))

    def fail_once():
        with srv.conn() as c:
            c.ok("USER " + ALICE)
            r, dt = timed(c.cmd, "PASS wrong")
            assert r == FAIL
            return dt

    d1, d2, d3 = fail_once(), fail_once(), fail_once()
    # The delays chosen are in the log; each answer waits at least that
    # long, plus the password check in the auth process (a yescrypt: 20 to
    # 100 ms and more on a loaded machine, so differences between two
    # answers say little).
    # (the log reaches the test through a pipe read by another thread)
    srv.wait_log(r"pop3 login failed: .*\(delay \d+ ms\)", count=3)
    assert re.findall(r"pop3 login failed: .*\(delay (\d+) ms\)", srv.log()) == \
        ["100", "200", "400"], srv.log()
    for d, delay in zip((d1, d2, d3), (0.1, 0.2, 0.4)):
        assert d >= delay - 0.01, (d1, d2, d3)

    # the fourth failure waits 800 ms; meanwhile another client is served at once
    res = {}
    t = threading.Thread(target=lambda: res.setdefault("d4", fail_once()))
    t.start()
    # once the fourth failure's 800 ms delay has begun (its log line), another
    # client is answered while that one still waits
    srv.wait_log(r"pop3 login failed: .*\(delay 800 ms\)")
    with srv.conn() as c:
        c.capa()
        assert t.is_alive(), res
    t.join(10)
    assert res["d4"] >= 0.79, res

    # a success resets the counter
    with srv.conn() as c:
        c.login()
        c.quit()
    d5 = fail_once()
    assert 0.09 <= d5 < 1.1, (d3, d5)
    srv.wait_log(r"pop3 login failed: .*\(delay \d+ ms\)", count=5)
    assert re.findall(r"pop3 login failed: .*\(delay (\d+) ms\)", srv.log())[-1] == "100"


# --------------------------------------------------------------------------
# allow_plaintext_auth


def test_plaintext_no(pop3_inst, pop3_start):
    srv = pop3_start(pop3_inst, ("allow_plaintext_auth=no",))
    with srv.conn() as c:
        capa = c.capa()
        assert "USER" not in capa and "SASL PLAIN" not in capa and "STLS" in capa, capa
        c.err("USER " + ALICE, "[AUTH] Plaintext authentication disallowed")
        c.err("AUTH PLAIN " + plain_b64(ALICE, PASSWORD), "[AUTH] Plaintext authentication disallowed")
        c.err("AUTH PLAIN", "[AUTH]")
        assert c.cmd("AUTH") == "+OK"
        assert c.multi() == []
        c.err("PASS " + PASSWORD)
        # after STLS both work
        c.stls()
        capa = c.capa()
        assert "USER" in capa and "SASL PLAIN" in capa and "STLS" not in capa, capa
        c.login()
        c.quit()
    with srv.conn() as c:
        c.stls()
        assert c.auth_plain(ALICE, PASSWORD).startswith("+OK")
        c.quit()
    # implicit TLS
    with srv.conn(tls=True) as c:
        assert "USER" in c.capa()
        c.login()
        c.quit()


def test_plaintext_loopback_and_yes(pop3_inst, pop3_start):
    """loopback: 127.0.0.0/8 may log in without TLS, other addresses may not;
    yes: everyone may."""
    # 127.0.0.2 is loopback too
    srv = pop3_start(pop3_inst)
    with srv.conn(source="127.0.0.2") as c:
        assert "USER" in c.capa()
        c.login()
        c.quit()
    srv.stop()
    addr = nonloopback_ipv4()
    if addr is None:
        pytest.skip("no non-loopback IPv4 address on this machine")
    srv = pop3_start(pop3_inst, host=addr)
    with srv.conn() as c:
        capa = c.capa()
        assert "USER" not in capa and "SASL PLAIN" not in capa, capa
        c.err("USER " + ALICE, "[AUTH]")
        c.err("AUTH PLAIN " + plain_b64(ALICE, PASSWORD), "[AUTH]")
        c.stls()
        c.login()
        c.quit()
    srv.stop()
    srv = pop3_start(pop3_inst, ("allow_plaintext_auth=yes",), host=addr)
    with srv.conn() as c:
        assert "USER" in c.capa()
        c.login()
        c.quit()
    with srv.conn() as c:
        assert c.auth_plain(ALICE, PASSWORD).startswith("+OK")
        c.quit()


def test_plaintext_loopback_ipv6(pop3_inst, pop3_start):
    """::1 is loopback; another IPv6 address of this machine is not."""
    if not has_ipv6_loopback():
        pytest.skip("no IPv6 loopback")
    srv = pop3_start(pop3_inst, host="::1")
    with srv.conn() as c:
        assert "USER" in c.capa()
        c.login()
        c.quit()
    srv.stop()
    addr = nonloopback_ipv6()
    if addr is None:
        pytest.skip("no non-loopback IPv6 address on this machine")
    srv = pop3_start(pop3_inst, host=addr)
    with srv.conn() as c:
        assert "USER" not in c.capa()
        c.err("USER " + ALICE, "[AUTH]")
        c.stls()
        c.login()
        c.quit()


# --------------------------------------------------------------------------
# the maildrop lock


def test_in_use(pop3_server):
    put(pop3_server.instance, ALICE, message(1))
    with pop3_server.conn() as first:
        first.login()
        first.ok("DELE 1")
        with pop3_server.conn() as second:
            second.ok("USER " + ALICE)
            r = second.cmd("PASS " + PASSWORD)
            assert r.startswith("-ERR [IN-USE]"), r
            assert second.auth_plain(ALICE, PASSWORD).startswith("-ERR [IN-USE]")
            # another user's maildrop is not affected
            with pop3_server.conn() as other:
                other.login(BOB)
                other.quit()
            # the first session is unaffected; its QUIT releases the lock
            assert first.cmd("STAT") == "+OK 0 0"
            first.quit()
            # still in AUTHORIZATION: the same session may now log in
            second.login()
            assert second.cmd("STAT") == "+OK 0 0"
            second.quit()


def test_lock_released_before_quit_answer(pop3_server):
    """A client that logs in again as soon as it has the +OK to QUIT (fetchmail
    polling twice, curl run twice) must not find the maildrop [IN-USE]. (With
    two workers the next connection may be served by the other one at once.)"""
    put(pop3_server.instance, ALICE, message(1))
    in_use = tries = 0
    deadline = time.monotonic() + 5
    while tries < 1000 and time.monotonic() < deadline:
        tries += 1
        c = pop3_server.conn()
        c.ok("USER " + ALICE)
        r = c.cmd("PASS " + PASSWORD)
        if "[IN-USE]" in r:
            in_use += 1
        else:
            assert r.startswith("+OK"), r
            c.ok("QUIT")  # and do not wait for the close
        c.close()
    assert in_use == 0, "%d of %d logins right after a QUIT got [IN-USE]" % (in_use, tries)


def test_pipelined_login_is_not_delayed(pop3_server):
    """PIPELINING: USER and PASS in one write. The two answers are written at
    different times (the login runs on a job thread); the second must not wait
    for the client's delayed ACK (Nagle, about 40 ms on Linux). Both answers
    come, and the server's end has TCP_NODELAY set (read from the socket, not
    timed)."""
    for _ in range(3):
        with pop3_server.conn() as c:
            c.send("USER %s\r\nPASS %s\r\n" % (ALICE, PASSWORD))
            assert c.status() == "+OK"
            assert c.status().startswith("+OK")
            assert server_option(pop3_server.proc.pid, c.sock,
                                 socket.IPPROTO_TCP, socket.TCP_NODELAY)
            c.quit()

# --------------------------------------------------------------------------
# the directory down


def test_directory_down_is_temporary(new_instance, pop3_start, mariadb):
    inst = new_instance("mariadb", "down")
    add_users(inst)
    srv = pop3_start(inst)
    with srv.conn() as c:
        c.login()
        c.quit()
    try:
        mariadb.stop()
        for attempt in ("userpass", "plain"):
            with srv.conn(timeout=60) as c:
                t0 = time.monotonic()
                if attempt == "userpass":
                    c.ok("USER " + ALICE)
                    r = c.cmd("PASS " + PASSWORD)
                else:
                    r = c.auth_plain(ALICE, PASSWORD)
                assert r.startswith("-ERR [SYS/TEMP]"), r
                assert time.monotonic() - t0 < 30 * TIMEOUT_SCALE
                c.ok("QUIT")
    finally:
        mariadb.ensure_running()
    # back, without a restart of petrel
    for user in (ALICE, BOB, ALICE):
        with srv.conn(timeout=60) as c:
            c.login(user)
            c.quit()


def test_passwords_are_not_logged(pop3_inst, pop3_start):
    srv = pop3_start(pop3_inst)
    secret = "Sekr1t-Pa55-xyzzy"
    with srv.conn() as c:
        c.ok("USER " + ALICE)
        assert c.cmd("PASS " + secret) == FAIL
        assert c.auth_plain(ALICE, secret) == FAIL
        assert c.cmd("AUTH PLAIN") == "+ "
        assert c.cmd(plain_b64(BOB, secret)) == FAIL
        c.login()
        c.quit()
    srv.stop()
    log = srv.log()
    assert "pop3 login failed" in log, log
    for s in (secret, plain_b64(ALICE, secret), plain_b64(BOB, secret), "PASS pw"):
        assert s not in log, s
