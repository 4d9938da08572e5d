"""Cleartext passwords from the directory (the Postfix howto's `clear`
column) and CRAM-MD5 (RFC 2195): query_login may return the column (named
`clear`, or as the 10th column); a row with only that column (empty crypt)
logs in with LOGIN / USER-PASS / AUTH PLAIN; CRAM-MD5 is offered on IMAP,
POP3 and submission only when query_login returns cleartext, and only over
TLS or from loopback; the auth process checks the digest, and a wrong one
is a failed login like a wrong password. SQLite and MariaDB."""

import base64
import hashlib
import hmac
import imaplib
import poplib
import smtplib

import pytest

from harness import server
from harness.conn import ImapConn, Pop3Conn, client_ctx, quote
from harness.ports import nonloopback_ipv4
from pop3_util import ALICE, PASSWORD, add_users

CAROL = "carol@example.test"
CLEAR = "tanstaaf clear"
DAVE = "dave@example.test"    # both a hash and a cleartext password
DAVE_CLEAR = "dave-clear-pw"
HOST = "mail.petrel.test"

LOGIN_WHERE = ("FROM users WHERE (id = :login OR address = :login) AND imapok = 1 "
               "AND bool1 = 1 AND bool2 = 1")
FIXED = "id, address, crypt, name, uid, gid, home, maildir"
Q_CLEAR = "query_login=SELECT %s, clear %s" % (FIXED, LOGIN_WHERE)
# the SPEC's position: a 10th column, whatever its name
Q_TENTH = "query_login=SELECT %s, domain, clear AS pw %s" % (FIXED, LOGIN_WHERE)
LISTENERS = ("imap", "imaps", "pop3", "pop3s", "submission", "submissions", "smtp")
BASE_OPTS = ("hostname=" + HOST, "auth_fail_delay=100")


def start_all(inst, opts=(), host="127.0.0.1"):
    return server.start(inst, LISTENERS, BASE_OPTS + tuple(opts), host=host,
                        wait={"submissions": "greet"})


@pytest.fixture
def start():
    with server.tracked(start_all) as s:
        yield s


def add_clear_users(inst):
    """alice@ (hash only), carol@ (cleartext only, empty crypt), dave@
    (a hash of another password and a cleartext one)."""
    add_users(inst)
    inst.run("user", "add", CAROL)
    inst.sql("UPDATE users SET crypt = '', clear = %s WHERE address = %s"
             % (inst.quote(CLEAR), inst.quote(CAROL)))
    inst.run("user", "add", DAVE, "--password-stdin", input="dave-hash-pw\n")
    inst.sql("UPDATE users SET clear = %s WHERE address = %s"
             % (inst.quote(DAVE_CLEAR), inst.quote(DAVE)))


@pytest.fixture
def clear_inst(instance):
    add_clear_users(instance)
    return instance


def cram_response(user, password, challenge_b64):
    """The client's side of RFC 2195 on the base64 challenge: base64 line."""
    challenge = base64.b64decode(challenge_b64)
    digest = hmac.new(password.encode(), challenge, hashlib.md5).hexdigest()
    return base64.b64encode(("%s %s" % (user, digest)).encode()).decode()


def login_cmd(user, password):
    return "LOGIN %s %s" % (quote(user), quote(password))


def imap_conn(srv, tls=False):
    return ImapConn(srv.host, srv.ports["imaps" if tls else "imap"], tls=tls)


def pop3_conn(srv, tls=False):
    return Pop3Conn(srv.host, srv.ports["pop3s" if tls else "pop3"], tls=tls)


def imap_cram(srv, user, password, tls=False):
    """AUTHENTICATE CRAM-MD5 over a raw connection; the tagged Result and
    the challenge (decoded)."""
    with imap_conn(srv, tls) as c:
        tag = c.tag()
        c.send("%s AUTHENTICATE CRAM-MD5\r\n" % tag)
        cont = c.line()
        assert cont.startswith(b"+ "), cont
        challenge = base64.b64decode(cont[2:])
        c.send(cram_response(user, password, cont[2:]) + "\r\n")
        return c.read_tagged(tag), challenge


def pop3_cram(srv, user, password, tls=False):
    with pop3_conn(srv, tls) as c:
        cont = c.cmd("AUTH CRAM-MD5")
        assert cont.startswith("+ "), cont
        r = c.cmd(cram_response(user, password, cont[2:]))
        if r.startswith("+OK"):
            c.ok("STAT")
        return r


def submission(srv):
    s = smtplib.SMTP(srv.host, srv.ports["submission"], local_hostname="client.test",
                     timeout=30)
    s.starttls(context=client_ctx())
    s.ehlo("client.test")
    return s


# --------------------------------------------------------------------------
# password logins against the cleartext column


@pytest.mark.parametrize("query", [Q_CLEAR, Q_TENTH], ids=["named", "tenth"])
def test_cleartext_only_row_logs_in(clear_inst, start, query):
    """A row with an empty crypt and a cleartext password logs in with IMAP
    LOGIN and AUTHENTICATE PLAIN, POP3 USER/PASS and AUTH PLAIN, submission
    AUTH PLAIN and LOGIN, and `petrel user auth`; a wrong password does not;
    a row with a hash keeps using the hash."""
    srv = start(clear_inst, (query,))
    m = imaplib.IMAP4(srv.host, srv.ports["imap"])
    assert m.login(CAROL, CLEAR)[0] == "OK"
    m.logout()
    with imap_conn(srv) as c:
        assert c.auth_plain(CAROL, CLEAR).status == "OK"
    with imap_conn(srv) as c:
        c.no(login_cmd(CAROL, CLEAR + "x"), contains="[AUTHENTICATIONFAILED]")
        c.no(login_cmd(CAROL, CLEAR[:-1]), contains="[AUTHENTICATIONFAILED]")
        # dave has a hash: the hash wins, the cleartext is not a password
        c.no(login_cmd(DAVE, DAVE_CLEAR), contains="[AUTHENTICATIONFAILED]")
        c.login(DAVE, "dave-hash-pw")
    p = poplib.POP3(srv.host, srv.ports["pop3"])
    p.user(CAROL)
    assert p.pass_(CLEAR).startswith(b"+OK")
    p.quit()
    with pop3_conn(srv) as c:
        assert c.auth_plain(CAROL, CLEAR).startswith("+OK")
    with pop3_conn(srv) as c:
        assert c.auth_plain(CAROL, "nope") == "-ERR [AUTH] Authentication failed"
    s = submission(srv)
    s.user, s.password = CAROL, CLEAR
    assert s.auth("PLAIN", s.auth_plain)[0] == 235
    s.quit()
    s = submission(srv)
    s.user, s.password = CAROL, CLEAR
    assert s.auth("LOGIN", s.auth_login)[0] == 235
    s.quit()
    assert clear_inst.run("-o", query, "user", "auth", CAROL, input=CLEAR + "\n",
                          check=False).returncode == 0
    assert clear_inst.run("-o", query, "user", "auth", CAROL, input="wrong\n",
                          check=False).returncode == 1


def test_default_query_ignores_clear_column(clear_inst, start):
    """Without the column in query_login, the cleartext is never used: carol
    (no hash) cannot log in, and CRAM-MD5 is offered nowhere."""
    srv = start(clear_inst)
    with imap_conn(srv) as c:
        caps = c.capability()
        assert "AUTH=PLAIN" in caps and "AUTH=CRAM-MD5" not in caps, caps
        c.no("AUTHENTICATE CRAM-MD5", contains="Unsupported")
        c.no(login_cmd(CAROL, CLEAR), contains="[AUTHENTICATIONFAILED]")
    with imap_conn(srv, tls=True) as c:
        assert "AUTH=CRAM-MD5" not in c.capability()
    with pop3_conn(srv) as c:
        capa = c.capa()
        assert "SASL PLAIN" in capa, capa
        assert not any("CRAM-MD5" in l for l in capa), capa
        c.err("AUTH CRAM-MD5", contains="Unsupported")
        _, mechs = c.ok_multi("AUTH")
        assert mechs == [b"PLAIN"], mechs
    s = submission(srv)
    assert s.has_extn("auth")
    mechs = s.esmtp_features["auth"].split()
    assert "PLAIN" in mechs and "CRAM-MD5" not in mechs, mechs
    code, _ = s.docmd("AUTH", "CRAM-MD5")
    assert code == 535, code
    s.quit()


# --------------------------------------------------------------------------
# CRAM-MD5


def test_imap_cram_md5(clear_inst, start):
    srv = start(clear_inst, (Q_CLEAR,))
    with imap_conn(srv) as c:
        caps = c.capability()
        assert "AUTH=CRAM-MD5" in caps and "AUTH=PLAIN" in caps, caps
    # imaplib's own CRAM-MD5
    m = imaplib.IMAP4(srv.host, srv.ports["imap"])
    assert "AUTH=CRAM-MD5" in m.capabilities
    typ, _ = m.login_cram_md5(CAROL, CLEAR)
    assert typ == "OK"
    assert m.select("INBOX")[0] == "OK"
    m.logout()
    # AUTHENTICATE with an hmac-md5 callback, over IMAPS too
    seen = []

    def answer(challenge):
        seen.append(challenge)
        return (CAROL + " " + hmac.new(CLEAR.encode(), challenge, hashlib.md5).hexdigest())

    m = imaplib.IMAP4_SSL(srv.host, srv.ports["imaps"], ssl_context=client_ctx())
    assert m.authenticate("CRAM-MD5", answer)[0] == "OK"
    m.logout()
    # RFC 2195: "<random.timestamp@hostname>", a new one each time
    r, ch1 = imap_cram(srv, CAROL, CLEAR)
    assert r.status == "OK", r
    assert ch1.startswith(b"<") and ch1.endswith(b"@" + HOST.encode() + b">"), ch1
    assert seen[0].startswith(b"<") and seen[0] != ch1
    # dave logs in with his cleartext password (the only one CRAM can use)
    r, _ = imap_cram(srv, DAVE, DAVE_CLEAR)
    assert r.status == "OK", r
    # alice has only a hash: CRAM-MD5 cannot work for her
    r, _ = imap_cram(srv, ALICE, PASSWORD)
    assert r.status == "NO" and "[AUTHENTICATIONFAILED]" in r.text, r
    # no initial response for CRAM-MD5 (the server speaks first)
    with imap_conn(srv) as c:
        c.bad("AUTHENTICATE CRAM-MD5 Zm9v")
        # a cancelled exchange
        tag = c.tag()
        c.send("%s AUTHENTICATE CRAM-MD5\r\n" % tag)
        assert c.line().startswith(b"+ ")
        c.send("*\r\n")
        assert c.read_tagged(tag).status == "BAD"
        # garbage is a failed authentication, and the session goes on
        tag = c.tag()
        c.send("%s AUTHENTICATE CRAM-MD5\r\n" % tag)
        assert c.line().startswith(b"+ ")
        c.send("!!!not-base64\r\n")
        r = c.read_tagged(tag)
        assert r.status == "NO", r
        c.ok("NOOP")
    assert srv.alive()
    assert CLEAR not in srv.log()


def test_cram_md5_wrong_digest_is_a_failed_login(clear_inst, start):
    """A wrong digest gets each protocol's failure reply after the delay, is
    logged as a failed login, and counts toward auth_max_failures_per_user:
    after the limit even the right digest is refused."""
    # a long lockout time: the counts do not leak away during the test
    srv = start(clear_inst, (Q_CLEAR, "auth_max_failures_per_user=3",
                             "auth_lockout_time=86400"))
    r, _ = imap_cram(srv, CAROL, CLEAR + "x")
    assert r.status == "NO" and r.text.startswith("[AUTHENTICATIONFAILED]"), r
    r = pop3_cram(srv, CAROL, "wrong")
    assert r == "-ERR [AUTH] Authentication failed", r
    s = submission(srv)
    s.user, s.password = CAROL, "wrong"
    with pytest.raises(smtplib.SMTPAuthenticationError) as e:
        s.auth("CRAM-MD5", s.auth_cram_md5)
    assert e.value.smtp_code == 535, e.value
    s.quit()
    assert srv.wait_log(r"imap login failed: user=<%s>" % CAROL)
    assert srv.wait_log(r"pop3 login failed: user=<%s>" % CAROL)
    # one more (the counts leak away by the second, so three seconds' worth
    # of failures may score just under a limit of three): carol is locked
    # out, the right digest is refused too
    r, _ = imap_cram(srv, CAROL, "wrong again")
    assert r.status == "NO", r
    r, _ = imap_cram(srv, CAROL, CLEAR)
    assert r.status == "NO", (r, srv.log())
    assert srv.wait_log(r"login refused \(locked\): user=<%s>" % CAROL)
    # another user is not affected
    r, _ = imap_cram(srv, DAVE, DAVE_CLEAR)
    assert r.status == "OK", r


def test_pop3_cram_md5(clear_inst, start):
    srv = start(clear_inst, (Q_CLEAR,))
    with pop3_conn(srv) as c:
        capa = c.capa()
        assert "SASL PLAIN CRAM-MD5" in capa, capa
        _, mechs = c.ok_multi("AUTH")
        assert mechs == [b"PLAIN", b"CRAM-MD5"], mechs
        # no initial response
        c.err("AUTH CRAM-MD5 Zm9v", contains="[AUTH]")
        cont = c.cmd("AUTH CRAM-MD5")
        assert cont.startswith("+ "), cont
        challenge = base64.b64decode(cont[2:])
        assert challenge.startswith(b"<") and challenge.endswith(HOST.encode() + b">")
        c.ok(cram_response(CAROL, CLEAR, cont[2:]))
        assert c.ok("STAT") == "+OK 0 0"
        c.quit()
    assert pop3_cram(srv, CAROL, CLEAR, tls=True).startswith("+OK")
    # "*" cancels
    with pop3_conn(srv) as c:
        assert c.cmd("AUTH CRAM-MD5").startswith("+ ")
        c.err("*")
        c.err("STAT")


def test_submission_cram_md5(clear_inst, start):
    srv = start(clear_inst, (Q_CLEAR,))
    s = submission(srv)
    mechs = s.esmtp_features["auth"].split()
    assert "CRAM-MD5" in mechs and "PLAIN" in mechs, mechs
    # smtplib prefers CRAM-MD5 when offered
    assert s.login(CAROL, CLEAR)[0] == 235
    s.quit()
    assert srv.wait_log(r"sasl_method=CRAM-MD5, sasl_username=%s" % CAROL)
    s = smtplib.SMTP_SSL(srv.host, srv.ports["submissions"], local_hostname="client.test",
                         timeout=30, context=client_ctx())
    s.ehlo("client.test")
    s.user, s.password = CAROL, CLEAR
    assert s.auth("CRAM-MD5", s.auth_cram_md5)[0] == 235
    s.quit()
    # an initial response is refused (the server speaks first)
    s = submission(srv)
    code, _ = s.docmd("AUTH", "CRAM-MD5 Zm9v")
    assert code == 501, code
    s.quit()


def test_cram_md5_only_over_tls_or_loopback(sqlite_instance, start):
    """From an address that is not loopback, CRAM-MD5 is offered over TLS
    only (IMAPS, POP3S; IMAP after STARTTLS)."""
    ip = nonloopback_ipv4()
    if ip is None:
        pytest.skip("no non-loopback IPv4 address")
    add_clear_users(sqlite_instance)
    srv = start(sqlite_instance, (Q_CLEAR,), host=ip)
    with imap_conn(srv) as c:
        caps = c.capability()
        assert "AUTH=CRAM-MD5" not in caps, caps
        c.no("AUTHENTICATE CRAM-MD5", contains="Unsupported")
        c.starttls()
        assert "AUTH=CRAM-MD5" in c.capability()
    r, _ = imap_cram(srv, CAROL, CLEAR, tls=True)
    assert r.status == "OK", r
    with pop3_conn(srv) as c:
        assert not any("CRAM-MD5" in l for l in c.capa())
        c.err("AUTH CRAM-MD5")
    assert pop3_cram(srv, CAROL, CLEAR, tls=True).startswith("+OK")
