"""Hostile logins and directory values, on every protocol: SQL metacharacters
in addresses and logins (both backends: sqlite, mariadb), NUL-truncated
passwords, SASL authzid impersonation, the failed-login delay (grows per client
IP, reset by a success, not bypassed by pipelining or by hanging up), and users
whose `maildir` column points outside mail_root. Every test ends with
hostile_util.healthy()."""

import os
import socket
import time

import pytest

import mx_util
from hostile_util import (ALICE, BOB, PASSWORD, assert_queue_empty, delivered, healthy,
                          pop3_login, smtp_msg, timed, tree)
from conftest import make_instance
from imap_util import Literal, quote

INJECTIONS = [
    "' OR '1'='1", "x' OR 1=1 -- ", "' OR 1=1 #", "%", "_lice@example.test", "%@example.test",
    "alice@example.test' -- ", "alice@example.test'#", "alice@example.test\\",
    "' UNION SELECT id, address, crypt, name, uid, gid, home, maildir FROM users -- ",
    "\" OR \"\"=\"", "\\", "alice@example.test'; DROP TABLE users; -- ",
]
PASSWORDS = [PASSWORD, "' OR '1'='1"]


@pytest.fixture(scope="module")
def any_srv(shared_any):
    return shared_any


def directory_intact(inst):
    rows = inst.sql("SELECT COUNT(*) FROM users")
    assert rows == [("2",)], rows
    assert inst.user_row(ALICE) is not None


# --------------------------------------------------------------------------
# SQL metacharacters (SPEC 1: prepared statements, never interpolation)


def test_sqli_rcpt_to(any_srv):
    """On the MX port: an ordinary 5xx (550 5.1.1 unknown user, 5.1.3/501 bad
    syntax, 554 relay) for each, never 250 and never 4xx (a 4xx would be an
    SQL error)."""
    inst = any_srv.instance
    before = delivered(inst)
    bad = []
    for inj in INJECTIONS:   # a session each: stay below the per-session error limit
        with any_srv.mx() as c:
            c.expect("EHLO client.test", 250)
            c.expect("MAIL FROM:<x@y.test>", 250)
            for rcpt in (inj, inj + "@example.test" if "@" not in inj else inj,
                         '"%s"@example.test' % inj.replace("\\", "\\\\").replace('"', '\\"')):
                r = c.cmd("RCPT TO:<%s>" % rcpt)
                if not 500 <= r.code < 600:
                    bad.append((rcpt, r))
            r = c.cmd("DATA")
            assert r.code in (503, 554), r
    assert not bad, bad
    assert delivered(inst) == before
    assert_queue_empty(inst)
    directory_intact(inst)
    healthy(any_srv)


def sub_session(srv):
    c = srv.sub()
    c.login(ALICE, PASSWORD)
    return c


def test_sqli_submission_mail_from(any_srv):
    """Authenticated as alice: an injected envelope sender is not 'owned'
    (SPEC 4 submission): 5xx, never 250."""
    bad = []
    c = sub_session(any_srv)
    try:
        n = 0
        for inj in INJECTIONS:
            for sender in (inj, inj + "@example.test" if "@" not in inj else inj):
                r = c.cmd("MAIL FROM:<%s>" % sender)
                if not 500 <= r.code < 600:
                    bad.append((sender, r))
                if r.code == 250:
                    c.expect("RSET", 250)
                n += 1
                if n % 8 == 0:   # stay below the per-session error limit
                    c.close()
                    c = sub_session(any_srv)
        c.expect("MAIL FROM:<%s>" % ALICE, 250)
    finally:
        c.close()
    assert not bad, bad
    directory_intact(any_srv.instance)
    healthy(any_srv)


def test_sqli_auth_plain_submission(any_srv):
    bad = []
    for inj in INJECTIONS:
        with any_srv.sub() as c:
            c.ehlo()
            c.starttls()
            c.ehlo()
            for pw in PASSWORDS:
                r = c.auth_plain(inj, pw)
                if r.code != 535:
                    bad.append((inj, pw, r))
    assert not bad, bad
    directory_intact(any_srv.instance)
    healthy(any_srv)


def test_sqli_imap_login(any_srv):
    bad = []
    with any_srv.imap() as c:
        for inj in INJECTIONS:
            for pw in PASSWORDS:
                r = c.command("LOGIN ", quote(inj), " ", quote(pw))
                if r.status != "NO":
                    bad.append((inj, pw, r))
        c.bad("SELECT INBOX")
    assert not bad, bad
    directory_intact(any_srv.instance)
    healthy(any_srv)


def test_sqli_imap_authenticate_plain(any_srv):
    bad = []
    with any_srv.imap() as c:
        for inj in INJECTIONS:
            for pw in PASSWORDS:
                r = c.auth_plain(inj, pw)
                if r.status != "NO":
                    bad.append((inj, pw, r))
    assert not bad, bad
    directory_intact(any_srv.instance)
    healthy(any_srv)


def test_sqli_pop3_user_pass(any_srv):
    bad = []
    for inj in INJECTIONS:
        with any_srv.pop3() as c:
            for pw in PASSWORDS:
                r = c.cmd("USER " + inj)
                assert r.startswith("+OK") or r.startswith("-ERR"), r
                r = c.cmd("PASS " + pw)
                if not r.startswith("-ERR") or "[SYS/TEMP]" in r:
                    bad.append((inj, pw, r))
    assert not bad, bad
    directory_intact(any_srv.instance)
    healthy(any_srv)


def test_sqli_pop3_auth_plain(any_srv):
    bad = []
    for inj in INJECTIONS:
        with any_srv.pop3() as c:
            for pw in PASSWORDS:
                r = c.auth_plain(inj, pw)
                if not r.startswith("-ERR") or "[SYS/TEMP]" in r:
                    bad.append((inj, pw, r))
    assert not bad, bad
    directory_intact(any_srv.instance)
    healthy(any_srv)


# --------------------------------------------------------------------------
# NUL bytes and authzid


def test_nul_truncated_password(any_srv):
    """'pw\\0junk' is not the password 'pw' (no C-string truncation): IMAP
    LOGIN literal, POP3 PASS, SMTP AUTH PLAIN (a 4th field) all fail."""
    with any_srv.imap() as c:
        r = c.command("LOGIN ", quote(ALICE), " ", Literal(b"pw\0junk"))
        assert r.status in ("NO", "BAD"), r
        c.bad("SELECT INBOX")
    with any_srv.pop3() as c:
        c.ok("USER " + ALICE)
        c.send(b"PASS pw\0junk\r\n")
        r = c.status()
        assert r.startswith("-ERR"), r
        assert c.cmd("STAT").startswith("-ERR")
    with any_srv.sub() as c:
        c.ehlo()
        c.starttls()
        c.ehlo()
        r = c.cmd("AUTH PLAIN " + mx_util.b64("\0%s\0pw\0junk" % ALICE))
        assert 500 <= r.code < 600, r
        assert c.cmd("MAIL FROM:<%s>" % ALICE).code == 530
    healthy(any_srv)


def test_sasl_authzid_impersonation(any_srv):
    """AUTH PLAIN 'bob\\0alice\\0pw' (act as bob with alice's password) fails on
    all three protocols."""
    b = mx_util.plain_b64(ALICE, PASSWORD, authzid=BOB)
    with any_srv.imap() as c:
        r = c.command("AUTHENTICATE PLAIN " + b)
        assert r.status in ("NO", "BAD"), r
    with any_srv.pop3() as c:
        r = c.cmd("AUTH PLAIN " + b)
        assert r.startswith("-ERR"), r
    with any_srv.sub() as c:
        c.ehlo()
        c.starttls()
        c.ehlo()
        r = c.cmd("AUTH PLAIN " + b)
        assert 500 <= r.code < 600, r
    healthy(any_srv)


# --------------------------------------------------------------------------
# failed-login delay (auth_fail_delay=50 ms; workers=1 so one counter)


@pytest.fixture
def delay_srv(sqlite_instance, all_start):
    import hostile_util
    hostile_util.add_users(sqlite_instance)
    return all_start(sqlite_instance, ("auth_fail_delay=50", "workers=1"))


def fail_sub(srv, user=ALICE, pw="wrong"):
    with srv.sub() as c:
        c.ehlo()
        c.starttls()
        c.ehlo()
        r, dt = timed(c.auth_plain, user, pw)
        assert r.code == 535, r
        return dt


def ok_sub(srv):
    with srv.sub() as c:
        c.login(ALICE, PASSWORD)


def fail_imap(srv, user=ALICE, pw="wrong"):
    with srv.imap() as c:
        r, dt = timed(c.auth_plain, user, pw)
        assert r.status == "NO", r
        return dt


def ok_imap(srv):
    with srv.imap() as c:
        assert c.auth_plain(ALICE, PASSWORD).status == "OK"


def fail_pop3(srv, user=ALICE, pw="wrong"):
    with srv.pop3() as c:
        r, dt = timed(c.auth_plain, user, pw)
        assert r.startswith("-ERR"), r
        return dt


def ok_pop3(srv):
    c = pop3_login(srv, ALICE)
    c.quit()
    c.close()


PROTOS = {"submission": (fail_sub, ok_sub), "imap": (fail_imap, ok_imap),
          "pop3": (fail_pop3, ok_pop3)}


@pytest.mark.parametrize("proto", sorted(PROTOS))
def test_delay_grows_per_ip_and_resets(delay_srv, proto):
    """Submission AUTH PLAIN, IMAP AUTHENTICATE PLAIN, POP3 AUTH PLAIN, each
    failure on a new connection: 50, 100, 200 ms...; a success resets."""
    fail, ok = PROTOS[proto]
    ok(delay_srv)
    d = [fail(delay_srv) for _ in range(3)]
    # at least 50, 100, 200 ms (load can only make them longer)
    assert d[0] >= 0.045 and d[1] >= 0.09 and d[2] >= 0.18, d
    ok(delay_srv)
    d5 = fail(delay_srv)
    assert 0.045 <= d5 < d[2], (d, d5)
    ok(delay_srv)
    healthy(delay_srv)


@pytest.mark.parametrize("proto", sorted(PROTOS))
def test_unknown_user_and_injection_delayed_too(delay_srv, proto):
    """No shortcut for a login that does not exist (no user enumeration by
    timing, no cheap guessing of logins): the same growing delay."""
    fail, ok = PROTOS[proto]
    ok(delay_srv)
    d1 = fail(delay_srv, user="nobody@example.test", pw="x")
    d2 = fail(delay_srv, user="' OR '1'='1", pw="' OR '1'='1")
    assert d1 >= 0.045 and d2 >= 0.09, (d1, d2)
    ok(delay_srv)
    healthy(delay_srv)


def test_pipelined_failures_each_delayed(delay_srv):
    """Three failed logins in one write are not answered at once: IMAP and
    POP3 each take >= 50+100+200 ms for the three."""
    ok_imap(delay_srv)
    with delay_srv.imap() as c:
        t0 = time.monotonic()
        c.send("P1 LOGIN %s w1\r\nP2 LOGIN %s w2\r\nP3 LOGIN %s w3\r\n" % (ALICE, ALICE, ALICE))
        for t in ("P1", "P2", "P3"):
            assert c.read_tagged(t).status == "NO"
        took = time.monotonic() - t0
    assert took >= 0.33, took
    ok_pop3(delay_srv)
    with delay_srv.pop3() as c:
        t0 = time.monotonic()
        c.send(("USER %s\r\nPASS w1\r\n" % ALICE) * 3)
        for _ in range(3):
            assert c.status().startswith("+OK")
            assert c.status().startswith("-ERR")
        took = time.monotonic() - t0
    assert took >= 0.33, took
    ok_pop3(delay_srv)
    healthy(delay_srv)


def test_hangup_during_delay(delay_srv):
    """Clients that hang up while their failure is being delayed: the server
    neither crashes nor leaks the session (ASan), and the count is not reset
    by hanging up."""
    ok_imap(delay_srv)
    for i in range(4):
        for port, line in ((delay_srv.imap_port, b"A LOGIN %s wrong\r\n" % ALICE.encode()),
                           (delay_srv.pop3_port, b"USER %s\r\nPASS wrong\r\n" % ALICE.encode())):
            s = socket.create_connection((delay_srv.host, port), timeout=5)
            s.recv(1024)
            s.sendall(line)
            time.sleep(0.01)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()
    with delay_srv.sub() as c:
        c.ehlo()
        c.starttls()
        c.ehlo()
        c.send(("AUTH PLAIN %s\r\n" % mx_util.plain_b64(ALICE, "wrong")).encode())
        time.sleep(0.01)
    time.sleep(1.5)   # let the delays run out on closed connections
    d = fail_imap(delay_srv)
    assert d >= 0.2, "hanging up reset the failure count: %.3f s" % d
    ok_imap(delay_srv)
    healthy(delay_srv)


# --------------------------------------------------------------------------
# users.maildir outside mail_root


ESCAPES = ["../../etc/", "ABS", "a/../../b/", "example.test/../../../x/", "..", "./../x/",
           "example.test/esc/../../../../y/"]


@pytest.fixture(scope="module")
def escape_srv(petrel_bin, tmp_path_factory):
    """An instance nested three levels below a base dir, so every escape lands
    inside the base dir where it can be seen."""
    import hostile_util
    base = tmp_path_factory.mktemp("escape")
    inst = make_instance(petrel_bin, base / "l1" / "l2" / "inst", "sqlite")
    hostile_util.add_users(inst)
    srv = hostile_util.start_all(inst)
    srv.base = str(base)
    srv.crypt = inst.run("hash", input=PASSWORD + "\n").stdout.strip()
    yield srv
    problems = hostile_util.check_stopped([srv])
    assert not problems, "\n\n".join(problems)


def outside_mail_root(srv):
    inst = srv.instance
    mr = os.path.relpath(inst.mail_root, srv.base)
    q = os.path.relpath(os.path.join(inst.dir, "queue"), srv.base)
    return {p for p in tree(srv.base)
            if not (p == mr or p.startswith(mr + os.sep) or p == q or p.startswith(q + os.sep))
            and "petrel.db" not in p}


@pytest.mark.parametrize("maildir", ESCAPES)
def test_maildir_outside_mail_root(escape_srv, maildir):
    """Delivery is refused (4xx/5xx at RCPT or after DATA), IMAP and POP3
    logins fail, and nothing is created outside mail_root. ('ABS' = an
    absolute path outside mail_root, standing in for '/etc/' so that a faulty
    server cannot write into the real /etc.)"""
    srv = escape_srv
    inst = srv.instance
    n = ESCAPES.index(maildir)
    if maildir == "ABS":
        maildir = os.path.join(srv.base, "abs-outside") + "/"
    addr = "esc%d@example.test" % n
    inst.insert_user(addr, addr, srv.crypt, maildir=maildir)
    before = outside_mail_root(srv)
    problems = []
    with srv.mx() as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<x@y.test>", 250)
        r = c.cmd("RCPT TO:<%s>" % addr)
        if r.code == 250:
            c.expect("DATA", 354)
            c.send(smtp_msg("escape") + b".\r\n")
            r = c.reply()
        if r.code < 400:
            problems.append("delivery accepted: %r" % r)
    with srv.imap() as c:
        r = c.command("LOGIN ", quote(addr), " ", quote(PASSWORD))
        if r.status == "OK":
            problems.append("IMAP login: %r" % r)
            c.command("SELECT INBOX")
            c.command("APPEND INBOX {1+}\r\nx")
    with srv.pop3() as c:
        c.ok("USER " + addr)
        r = c.cmd("PASS " + PASSWORD)
        if r.startswith("+OK"):
            problems.append("POP3 login: %r" % r)
            c.cmd("QUIT")
    created = outside_mail_root(srv) - before
    assert not created, "created outside mail_root: %r (%s)" % (sorted(created), problems)
    assert not problems, problems
    assert_queue_empty(inst)
    healthy(srv)
