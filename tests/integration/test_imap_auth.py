"""IMAP logins (RFC 3501 6.1-6.2, RFC 4959 SASL-IR, RFC 4616 PLAIN, RFC 5530
codes): greeting and CAPABILITY, LOGIN, AUTHENTICATE PLAIN, the failed-login
delay, allow_plaintext_auth / LOGINDISABLED, STARTTLS and IMAPS, the login
flags, the log lines. Directory-dependent tests run on SQLite and MariaDB."""

import imaplib
import re
import threading
import time

import pytest

from harness.instance import TIMEOUT_SCALE
from imap_util import (ALICE, BOB, HOSTNAME, PASSWORD, Literal, add_users, capabilities,
                       has_ipv6_loopback, imap_inst, imap_instance, imap_server,  # noqa: F401
                       imap_start, message, nonloopback_ipv4, plain_b64, put)

PRE = ("IMAP4REV1", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE", "NAMESPACE", "UNSELECT")
POST = ("IMAP4REV1", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE", "NAMESPACE", "UIDPLUS",
        "MOVE", "UNSELECT", "CHILDREN", "SPECIAL-USE", "QUOTA")


def timed(fn, *a, **kw):
    t0 = time.monotonic()
    r = fn(*a, **kw)
    return r, time.monotonic() - t0


def hash_of(inst, password):
    return inst.run("hash", input=password + "\n").stdout.strip()


def assert_authfail(r):
    assert r.status == "NO", r
    assert r.text.startswith("[AUTHENTICATIONFAILED]"), r


@pytest.fixture
def server(instance, imap_start):
    """petrel serve on `instance` (sqlite and mariadb) with alice@ and bob@."""
    add_users(instance)
    return imap_start(instance)


# --------------------------------------------------------------------------
# greeting and CAPABILITY


def test_greeting_and_capability(imap_server):
    with imap_server.conn() as c:
        g = c.greeting.decode()
        m = re.match(r"^\* OK \[CAPABILITY ([^\]]*)\] (.*)$", g)
        assert m, g
        assert m.group(2) == "%s petrel IMAP4rev1 ready" % HOSTNAME, g
        greet_caps = capabilities(g)
        caps = c.capability()
        assert sorted(caps) == sorted(greet_caps), (caps, greet_caps)
        for cap in PRE + ("STARTTLS", "AUTH=PLAIN"):
            assert cap in caps, (cap, caps)
        assert "LOGINDISABLED" not in caps, caps  # loopback may log in
        assert len(caps) == len(set(caps)), caps
        # lower case commands work too (RFC 3501 9: case-insensitive)
        r = c.ok("capability")
        assert r.data("CAPABILITY"), r
        c.logout()


def test_login_ok_carries_capabilities(server):
    with server.conn() as c:
        r = c.login()
        caps = capabilities(r.text)
        assert r.text.startswith("[CAPABILITY "), r
        for cap in POST:
            assert cap in caps, (cap, caps)
        assert "STARTTLS" not in caps and "LOGINDISABLED" not in caps, caps
        assert sorted(c.capability()) == sorted(caps)
        c.logout()


def test_imaplib_login_and_logout_logged(server):
    m = server.login()
    assert m.state == "AUTH"
    typ, data = m.noop()
    assert typ == "OK"
    typ, data = m.logout()
    assert typ == "BYE", (typ, data)
    assert server.wait_log(r"imap login: user=<%s>, \[127\.0\.0\.1\]:\d+" % re.escape(ALICE)), \
        server.log()
    assert server.wait_log(r"imap logout: user=<%s>" % re.escape(ALICE)), server.log()


def test_logout_before_login(imap_server):
    with imap_server.conn() as c:
        r = c.logout()
        assert r.find(r"^\* BYE ")


def test_login_by_id_and_odd_passwords(instance, imap_start):
    """query_login matches id or address; passwords with spaces, quotes and
    backslashes arrive intact as quoted strings and as literals."""
    pw = 'a b "q" \\ c '
    instance.insert_user("carol-login", "carol@example.test", hash_of(instance, pw))
    srv = imap_start(instance)
    for login in ("carol-login", "carol@example.test"):
        m = srv.imaplib()
        typ, _ = m.login(login, pw)  # imaplib quotes
        assert typ == "OK"
        m.logout()
        with srv.conn() as c:
            c.ok("LOGIN ", Literal(login), " ", Literal(pw))
            # no maildir existed for this user: it works all the same
            r = c.select("INBOX")
            assert r.numbered("EXISTS") in ([0], [1]), r
            if r.numbered("EXISTS") == [0]:
                assert c.append("INBOX", b"Subject: x\r\n\r\nx\r\n").status == "OK"
            c.logout()
        with srv.conn() as c:
            r = c.auth_plain(login, pw)
            assert r.status == "OK", r
            c.logout()
    with srv.conn() as c:
        assert_authfail(c.command('LOGIN carol-login "a b c"'))
        # an atom password
        c.fails("LOGIN carol-login")


def test_wrong_password_and_unknown_user(server):
    """Same answer (and delay) for a wrong password and an unknown user; the
    session stays unauthenticated and can then log in."""
    for user, pw in ((ALICE, "wrong"), ("nobody@example.test", "pw"), (ALICE, "PW"),
                     (ALICE, "pw "), ("' OR '1'='1", "' OR '1'='1"), ("%", "pw"),
                     ("", "pw"), (ALICE, "")):
        with server.conn() as c:
            r, dt = timed(c.command, "LOGIN ", '"%s"' % user.replace('"', ''), " ", '"%s"' % pw)
            assert_authfail(r)
            assert dt >= 0.09, (user, pw, dt)
            c.bad("SELECT INBOX")  # still not authenticated: wrong state
            c.login()
            c.select()
            c.logout()


def test_failure_delay_grows_per_ip_and_resets(sqlite_instance, imap_start):
    """auth_fail_delay (100 ms here), growing with further failures from the
    same address, reset by a success; the delay does not stall other clients."""
    add_users(sqlite_instance)
    srv = imap_start(sqlite_instance, ("workers=1",))

    def fail_once():
        with srv.conn() as c:
            r, dt = timed(c.command, "LOGIN %s wrong" % ALICE)
            assert_authfail(r)
            return dt

    d1, d2, d3 = fail_once(), fail_once(), fail_once()
    # The delays chosen are in the log; each answer waits at least that
    # long plus the password check (its time varies on a loaded machine,
    # so differences between two answers say little). The log reaches the
    # test through a pipe read by another thread: wait for it.
    failed = r"imap login failed: .*\(delay (\d+) ms\)"
    srv.wait_log(failed, count=3)
    assert re.findall(failed, srv.log()) == ["100", "200", "400"], srv.log()
    for d, delay in zip((d1, d2, d3), (0.1, 0.2, 0.4)):
        assert d >= delay - 0.01, (d1, d2, d3)

    res = {}
    t = threading.Thread(target=lambda: res.setdefault("d4", fail_once()))
    t.start()
    # once the fourth failure's 800 ms delay has begun (its log line), another
    # client is answered while that one still waits
    srv.wait_log(r"imap login failed: .*\(delay 800 ms\)")
    with srv.conn() as c:
        c.capability()
        assert t.is_alive(), res
    t.join(20)
    assert res["d4"] >= 0.79, (d1, d2, d3, res)

    with srv.conn() as c:
        c.login()
        c.logout()
    d5 = fail_once()
    assert d5 >= 0.09, (d1, d2, d3, d5)
    srv.wait_log(failed, count=5)
    assert re.findall(failed, srv.log())[-1] == "100", srv.log()


@pytest.mark.parametrize("column", ["imapok", "bool1", "bool2"])
def test_login_flags_refuse(instance, imap_start, column):
    add_users(instance)
    instance.sql("UPDATE users SET %s = 0 WHERE address = %s" % (column, instance.quote(ALICE)))
    srv = imap_start(instance)
    with srv.conn() as c:
        assert_authfail(c.command("LOGIN %s %s" % (ALICE, PASSWORD)))
        assert_authfail(c.auth_plain(ALICE, PASSWORD))
        c.login(BOB)
        c.logout()
    instance.sql("UPDATE users SET %s = 1 WHERE address = %s" % (column, instance.quote(ALICE)))
    with srv.conn() as c:
        c.login()
        c.logout()


def test_password_change_takes_effect_at_once(instance, imap_start):
    instance.add_user(ALICE, "old-pw")
    srv = imap_start(instance, ("workers=1",))
    with srv.conn() as c:
        c.login(ALICE, "old-pw")
        c.logout()
    instance.run("user", "passwd", ALICE, input="new-pw\n")
    with srv.conn() as c:
        assert_authfail(c.command("LOGIN %s old-pw" % ALICE))
        c.login(ALICE, "new-pw")
        c.logout()


def test_login_twice_and_wrong_state(imap_server):
    with imap_server.conn() as c:
        for cmd in ("SELECT INBOX", "EXAMINE INBOX", "FETCH 1 FLAGS", "IDLE", "NAMESPACE",
                    'LIST "" "*"', "CREATE x", "DELETE x", "STATUS INBOX (MESSAGES)",
                    "GETQUOTAROOT INBOX", "ENABLE IMAP4rev2", "APPEND INBOX {1+}\r\nx",
                    "UID FETCH 1 FLAGS", "EXPUNGE", "CLOSE", "UNSELECT", "SUBSCRIBE x"):
            c.bad(cmd)
        c.login()
        c.bad("LOGIN %s %s" % (ALICE, PASSWORD))   # already authenticated
        c.bad("AUTHENTICATE PLAIN " + plain_b64(ALICE, PASSWORD))
        c.bad("FETCH 1 FLAGS")                     # no mailbox selected
        c.bad("CLOSE")
        c.bad("XYZZY")
        c.bad("LOGIN")
        c.logout()


# --------------------------------------------------------------------------
# AUTHENTICATE PLAIN


def test_authenticate_plain(server):
    put(server.instance, ALICE, message(1))
    # SASL-IR
    with server.conn() as c:
        r = c.auth_plain(ALICE, PASSWORD)
        assert r.status == "OK", r
        r = c.select()
        assert r.numbered("EXISTS") == [1], r
        c.logout()
    # no initial response: '+ ' (empty challenge), then the response
    with server.conn() as c:
        r = c.auth_plain(ALICE, PASSWORD, ir=False)
        assert r.status == "OK", r
        assert r.cont and r.cont[0].rstrip() == b"+", r.cont
        c.logout()
    # case-insensitive mechanism; authzid = authcid is allowed
    with server.conn() as c:
        assert c.command("authenticate plain " +
                         plain_b64(ALICE, PASSWORD, ALICE)).status == "OK"
        c.logout()
    # imaplib's authenticate()
    m = server.imaplib()
    typ, _ = m.authenticate("PLAIN", lambda _: ("\0%s\0%s" % (ALICE, PASSWORD)).encode())
    assert typ == "OK"
    m.logout()


def test_authenticate_failures(instance, imap_start):
    """(auth_fail_delay=10 here: the many failures on one connection would
    otherwise add up to many seconds)"""
    add_users(instance)
    server = imap_start(instance, ("auth_fail_delay=10",))
    with server.conn(timeout=30) as c:
        # '*' cancels: BAD (RFC 3501 6.2.2), the session goes on
        tag = c.tag()
        c.send(tag + " AUTHENTICATE PLAIN\r\n")
        assert c.response().startswith(b"+")
        c.send("*\r\n")
        r = c.read_tagged(tag)
        assert r.status == "BAD", r
        c.bad("SELECT INBOX")
        # wrong password: delayed
        r, dt = timed(c.auth_plain, ALICE, "wrong")
        assert_authfail(r)
        assert dt >= 0.009
        r, dt = timed(c.auth_plain, ALICE, "wrong", ir=False)
        assert_authfail(r)
        # one user may not act for another
        r = c.auth_plain(ALICE, PASSWORD, authzid=BOB)
        assert r.status == "NO", r
        # garbage and unknown mechanisms; '=' is an empty initial response
        # (RFC 4959), which is not a valid PLAIN message
        for bad in ("AUTHENTICATE PLAIN !!!notbase64", "AUTHENTICATE PLAIN YWxpY2U=",
                    "AUTHENTICATE PLAIN =",
                    "AUTHENTICATE CRAM-MD5", "AUTHENTICATE XOAUTH2 abc",
                    "AUTHENTICATE LOGIN", "AUTHENTICATE"):
            c.fails(bad)
        tag = c.tag()
        c.send(tag + " AUTHENTICATE PLAIN\r\n")
        assert c.response().startswith(b"+")
        c.send("not base64 at all\r\n")
        r = c.read_tagged(tag)
        assert r.status in ("NO", "BAD"), r
        # an overlong SASL response ends the exchange
        tag = c.tag()
        c.send(tag + " AUTHENTICATE PLAIN\r\n")
        assert c.response().startswith(b"+")
        c.send("A" * 20000 + "\r\n")
        r = c.read_tagged(tag)
        assert r.status in ("NO", "BAD"), r
        c.bad("SELECT INBOX")
        # and then it works
        assert c.auth_plain(ALICE, PASSWORD).status == "OK"
        c.select()
        c.logout()


def test_passwords_are_not_logged(imap_inst, imap_start):
    srv = imap_start(imap_inst)
    secret = "Sekr1t-Pa55-xyzzy"
    with srv.conn() as c:
        assert_authfail(c.command("LOGIN %s %s" % (ALICE, secret)))
        assert_authfail(c.auth_plain(ALICE, secret))
        assert_authfail(c.auth_plain(BOB, secret, ir=False))
        c.login()
        c.logout()
    srv.stop()
    log = srv.log()
    assert "imap login" in log, log
    for s in (secret, plain_b64(ALICE, secret), plain_b64(BOB, secret)):
        assert s not in log, s


# --------------------------------------------------------------------------
# allow_plaintext_auth, STARTTLS, IMAPS


def test_plaintext_no(imap_inst, imap_start):
    srv = imap_start(imap_inst, ("allow_plaintext_auth=no",))
    with srv.conn() as c:
        caps = capabilities(c.greeting)
        assert "LOGINDISABLED" in caps and "STARTTLS" in caps, caps
        assert "AUTH=PLAIN" not in caps, caps
        assert sorted(c.capability()) == sorted(caps)
        r = c.command("LOGIN %s %s" % (ALICE, PASSWORD))
        assert r.status == "NO", r
        r = c.auth_plain(ALICE, PASSWORD)
        assert r.status in ("NO", "BAD"), r
        c.bad("SELECT INBOX")
        c.starttls()
        caps = c.capability()
        assert "LOGINDISABLED" not in caps and "STARTTLS" not in caps, caps
        assert "AUTH=PLAIN" in caps, caps
        c.login()
        c.select()
        c.logout()
    with srv.conn() as c:
        c.starttls()
        assert c.auth_plain(ALICE, PASSWORD).status == "OK"
        c.logout()
    # implicit TLS
    with srv.conn(tls=True) as c:
        caps = capabilities(c.greeting)
        assert "LOGINDISABLED" not in caps and "STARTTLS" not in caps, caps
        assert "AUTH=PLAIN" in caps
        c.login()
        c.logout()
    m = srv.login_ssl()
    m.logout()
    # imaplib's starttls()
    from imap_util import client_ctx
    m = srv.imaplib()
    typ, _ = m.starttls(ssl_context=client_ctx())
    assert typ == "OK"
    m.login(ALICE, PASSWORD)
    m.logout()


def test_plaintext_loopback_and_yes(imap_inst, imap_start):
    srv = imap_start(imap_inst)
    with srv.conn(source="127.0.0.2") as c:
        assert "LOGINDISABLED" not in capabilities(c.greeting)
        c.login()
        c.logout()
    srv.stop()
    addr = nonloopback_ipv4()
    if addr is None:
        pytest.skip("no non-loopback IPv4 address on this machine")
    srv = imap_start(imap_inst, host=addr)
    with srv.conn() as c:
        caps = capabilities(c.greeting)
        assert "LOGINDISABLED" in caps and "AUTH=PLAIN" not in caps, caps
        assert c.command("LOGIN %s %s" % (ALICE, PASSWORD)).status == "NO"
        c.starttls()
        c.login()
        c.logout()
    srv.stop()
    srv = imap_start(imap_inst, ("allow_plaintext_auth=yes",), host=addr)
    with srv.conn() as c:
        assert "LOGINDISABLED" not in capabilities(c.greeting)
        c.login()
        c.logout()


def test_plaintext_loopback_ipv6(imap_inst, imap_start):
    if not has_ipv6_loopback():
        pytest.skip("no IPv6 loopback")
    srv = imap_start(imap_inst, host="::1")
    with srv.conn() as c:
        assert "LOGINDISABLED" not in capabilities(c.greeting)
        c.login()
        c.logout()
    assert srv.wait_log(r"imap login: user=<%s>, \[::1\]:\d+" % re.escape(ALICE)), srv.log()


def test_starttls(imap_server):
    with imap_server.conn() as c:
        c.starttls()
        caps = c.capability()
        assert "STARTTLS" not in caps, caps
        c.bad("STARTTLS")  # already TLS
        c.login()
        c.select()
        c.logout()
    with imap_server.conn() as c:
        c.login()
        c.bad("STARTTLS")  # only in the not-authenticated state
        c.logout()


def test_starttls_discards_injected_plaintext(imap_server):
    """Commands sent in plaintext after STARTTLS in the same packet must be
    thrown away, not run inside the TLS session (CVE-2011-0411 class)."""
    from imap_util import client_ctx
    with imap_server.conn() as c:
        c.send("S1 STARTTLS\r\nS2 LOGIN %s %s\r\nS3 SELECT INBOX\r\n" % (ALICE, PASSWORD))
        r = c.read_tagged("S1")
        assert r.status == "OK", r
        assert c.buf == b"", c.buf
        c.sock = client_ctx().wrap_socket(c.sock)
        assert c.nothing_pending(0.5), c.buf
        # still not authenticated
        c.bad("SELECT INBOX")
        caps = c.capability()
        assert "STARTTLS" not in caps
        c.login()
        c.logout()


def test_imaps(imap_server):
    with imap_server.conn(tls=True) as c:
        g = c.greeting.decode()
        assert g.startswith("* OK") and "petrel IMAP4rev1 ready" in g, g
        caps = c.capability()
        assert "STARTTLS" not in caps and "AUTH=PLAIN" in caps, caps
        c.bad("STARTTLS")
        c.login()
        c.select()
        c.logout()
    m = imap_server.login_ssl()
    assert m.select("INBOX")[0] == "OK"
    m.logout()


def test_id_and_enable(imap_server):
    """ID (RFC 2971) before and after login; ENABLE (RFC 5161) only after."""
    with imap_server.conn() as c:
        r = c.ok('ID ("name" "pytest" "version" "1")')
        ids = r.data("ID")
        assert len(ids) == 1, r
        c.ok("ID NIL")
        c.login()
        r = c.ok("ENABLE XYZZY-NOT-A-THING")
        # unknown extensions are ignored: '* ENABLED' with nothing or nothing at all
        for e in r.data("ENABLED"):
            assert b"XYZZY" not in e.upper(), r
        c.logout()


def test_idle_timeout_closes_unauthenticated(imap_inst, imap_start):
    """imap_timeout: an idle connection is closed (with * BYE) after it."""
    srv = imap_start(imap_inst, ("imap_timeout=2",))
    with srv.conn() as c:
        t0 = time.monotonic()
        data, closed = c.read_rest(timeout=10)
        dt = time.monotonic() - t0
        assert closed, data
        assert 1.5 <= dt < 6 * TIMEOUT_SCALE, dt
        assert data == b"" or data.startswith(b"* BYE"), data


def test_directory_down_is_temporary(new_instance, imap_start, mariadb):
    """While MariaDB is down a login gets a NO that is not
    [AUTHENTICATIONFAILED] (RFC 5530: [UNAVAILABLE]), and works again after."""
    inst = new_instance("mariadb", "down")
    add_users(inst)
    srv = imap_start(inst)
    with srv.conn() as c:
        c.login()
        c.logout()
    try:
        mariadb.stop()
        with srv.conn(timeout=60) as c:
            t0 = time.monotonic()
            r = c.command("LOGIN %s %s" % (ALICE, PASSWORD))
            assert r.status == "NO", r
            assert "[UNAVAILABLE]" in r.text, r
            assert time.monotonic() - t0 < 30 * TIMEOUT_SCALE
            r = c.auth_plain(ALICE, PASSWORD)
            assert r.status == "NO" and "[UNAVAILABLE]" in r.text, r
    finally:
        mariadb.ensure_running()
    for user in (ALICE, BOB):
        with srv.conn(timeout=60) as c:
            c.login(user)
            c.logout()


def test_imaplib_errors(server):
    m = server.imaplib()
    with pytest.raises(imaplib.IMAP4.error):
        m.login(ALICE, "wrong")
    m.login(ALICE, PASSWORD)
    m.logout()


def test_authenticate_response_over_line_limit(imap_server):
    """An AUTHENTICATE response longer than a line may be is refused with a
    tagged BAD for the AUTHENTICATE (or BYE and close); the next line is a
    command again."""
    with imap_server.conn() as c:
        tag = c.tag()
        c.send(tag + " AUTHENTICATE PLAIN\r\n")
        assert c.response().startswith(b"+")
        c.send(b"A" * 100000 + b"\r\n")
        try:
            hit, got = c.read_until(rb"^(%s |\* BYE)" % tag.encode(), timeout=5)
        except ConnectionError:
            return
        assert hit is not None, "no tagged answer to AUTHENTICATE: %r" % got
        if hit.startswith(b"* BYE"):
            return
        assert hit.startswith(tag.encode() + b" BAD") or hit.startswith(tag.encode() + b" NO"), hit
        c.bad("SELECT INBOX")
        assert c.auth_plain(ALICE, PASSWORD).status == "OK"
        c.logout()


def test_running_context_manager(sqlite_instance):
    """imap_util.running() (used by the client tests) starts and stops a
    server and reports a clean exit."""
    from imap_util import running
    add_users(sqlite_instance)
    with running(sqlite_instance) as srv:
        m = srv.login()
        assert m.select("INBOX")[0] == "OK"
        m.logout()
        port = srv.port
    assert srv.returncode == 0
    import socket
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
