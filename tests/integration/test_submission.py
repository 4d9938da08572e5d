"""Submission (RFC 6409, 8314): AUTH only after TLS, AUTH PLAIN / LOGIN,
failures and their delay, the envelope sender must belong to the user,
Message-ID / Date completion, and the MX port is no open relay.

Tests that involve the directory (AUTH, sender ownership) run on SQLite and
MariaDB (`sub_instance`); protocol-only ones on SQLite (`out_instance`)."""

import email.utils
import re
import time

import pytest

from harness.instance import TIMEOUT_SCALE
from mx_util import (ALICE, BOB, PASSWORD, WAIT, b64, make_message, plain_b64, wait_for,
                     wire)
from smtp_util import all_delivered, queue_files, read_new

SETTLE = 1.3


def relay_opts(mx):
    """Mail to foreign domains goes to the fake MX (relayhost)."""
    return ["relayhost=[127.0.0.1]:%d" % mx.port]


# --------------------------------------------------------------------------
# what EHLO offers, where


def test_auth_offered_only_after_tls(out_instance, petrel_start):
    srv = petrel_start(out_instance)
    with srv.sub() as c:
        r = c.ehlo()
        assert "STARTTLS" in r.keywords, r
        assert not any(k.startswith("AUTH") for k in r.keywords), \
            "AUTH offered before STARTTLS: %r" % r
        assert "AUTH" not in r.text.upper(), r
        c.starttls()
        r = c.ehlo()
        auth = [k for k in r.keywords if k.startswith("AUTH")]
        assert len(auth) == 1, r
        mechs = auth[0].split()[1:]
        assert "PLAIN" in mechs and "LOGIN" in mechs, r
        assert "STARTTLS" not in r.keywords, "STARTTLS offered again inside TLS: %r" % r
    with srv.subs() as c:   # implicit TLS
        r = c.ehlo()
        assert any(k.startswith("AUTH") and "PLAIN" in k and "LOGIN" in k
                   for k in r.keywords), r
        assert "STARTTLS" not in r.keywords, r
    with srv.mx() as c:     # never on the MX port, TLS or not
        r = c.ehlo()
        assert not any(k.startswith("AUTH") for k in r.keywords), r
        if "STARTTLS" in r.keywords:
            c.starttls()
            r = c.ehlo()
            assert not any(k.startswith("AUTH") for k in r.keywords), r
        r = c.cmd("AUTH PLAIN " + plain_b64(ALICE, PASSWORD))
        assert 500 <= r.code < 600, "AUTH on the MX port: %r" % r


def test_auth_before_starttls_refused(out_instance, petrel_start):
    srv = petrel_start(out_instance)
    with srv.sub() as c:
        c.ehlo()
        r = c.cmd("AUTH PLAIN " + plain_b64(ALICE, PASSWORD))
        assert r.code == 530 and "5.7.0" in r.text, "AUTH before STARTTLS: %r" % r
        r = c.cmd("AUTH LOGIN")
        assert r.code == 530, r
        r = c.cmd("AUTH PLAIN")
        assert r.code == 530, r
        # still nobody: MAIL needs AUTH
        r = c.cmd("MAIL FROM:<%s>" % ALICE)
        assert r.code == 530 and "5.7.0" in r.text, r
        # the session is still usable: STARTTLS and AUTH now work
        c.starttls()
        c.ehlo()
        assert c.auth_plain(ALICE, PASSWORD).code == 235
    # the log reaches the test through a pipe read by another thread
    assert srv.wait_log(re.escape("sasl_username=%s" % ALICE)), srv.log()
    assert len(re.findall(r"sasl_username=", srv.log())) == 1, srv.log()


def test_mail_without_auth_refused(out_instance, petrel_start, fake_mx):
    mx = fake_mx()
    srv = petrel_start(out_instance, relay_opts(mx))
    for implicit in (False, True):
        with (srv.subs() if implicit else srv.sub()) as c:
            if not implicit:
                c.ehlo()
                c.starttls()
            c.ehlo()
            r = c.cmd("MAIL FROM:<%s>" % ALICE)
            assert r.code == 530 and "5.7.0" in r.text, r
            r = c.cmd("RCPT TO:<x@other.test>")
            assert 500 <= r.code < 600, r
            r = c.cmd("RCPT TO:<%s>" % BOB)
            assert 500 <= r.code < 600, "local delivery on submission without AUTH: %r" % r
    assert queue_files(out_instance) == [] and all_delivered(out_instance) == []


# --------------------------------------------------------------------------
# AUTH on both backends


def test_auth_mechanisms(sub_instance, petrel_start):
    srv = petrel_start(sub_instance)
    # PLAIN with an initial response
    with srv.sub() as c:
        c.ehlo()
        c.starttls()
        c.ehlo()
        r = c.auth_plain(ALICE, PASSWORD)
        assert r.code == 235 and "2.7.0" in r.text, r
        r = c.auth_plain(ALICE, PASSWORD)
        assert r.code == 503, "a second AUTH: %r" % r
        assert c.cmd("MAIL FROM:<%s>" % ALICE).code == 250
    # PLAIN with the 334 continuation; the address in another case
    with srv.sub() as c:
        c.ehlo()
        c.starttls()
        c.ehlo()
        r = c.auth_plain(BOB.upper(), PASSWORD, initial=False)
        assert r.code == 235, r
        assert c.cmd("MAIL FROM:<%s>" % BOB).code == 250
    # LOGIN
    with srv.sub() as c:
        c.ehlo()
        c.starttls()
        c.ehlo()
        r = c.auth_login(ALICE, PASSWORD)
        assert r.code == 235 and "2.7.0" in r.text, r
    # implicit TLS, both mechanisms
    with srv.subs() as c:
        c.ehlo()
        assert c.auth_login(BOB, PASSWORD).code == 235
    with srv.subs() as c:
        c.ehlo()
        assert c.auth_plain(ALICE, PASSWORD).code == 235
        assert c.cmd("MAIL FROM:<%s>" % ALICE).code == 250


def test_auth_failures(sub_instance, petrel_start):
    srv = petrel_start(sub_instance)
    with srv.sub() as c:
        c.ehlo()
        c.starttls()
        c.ehlo()
        delays = []
        for attempt in (lambda: c.auth_plain(ALICE, "wrong"),
                        lambda: c.auth_login(ALICE, "wrong-too"),
                        lambda: c.auth_plain("nobody@example.test", PASSWORD)):
            t0 = time.monotonic()
            r = attempt()
            delays.append(time.monotonic() - t0)
            assert r.code == 535 and "5.7.8" in r.text, r
        # auth_fail_delay=100 ms, doubled per further failure from this IP
        assert delays[0] >= 0.09, delays
        assert delays[1] >= 0.18, delays
        assert delays[2] >= 0.36, delays
        assert max(delays) < 15, delays
        # a cancelled exchange and garbage are errors, not logins
        r = c.cmd("AUTH LOGIN")
        assert r.code == 334
        r = c.cmd("*")
        assert r.code == 501, "AUTH cancelled with '*': %r" % r
        r = c.cmd("AUTH PLAIN !!!notbase64!!!")
        assert 500 <= r.code < 600, r
        r = c.cmd("AUTH CRAM-MD5")
        assert 500 <= r.code < 600, r
        r = c.cmd("MAIL FROM:<%s>" % ALICE)
        assert r.code == 530, "not logged in after failures: %r" % r
        # the right password still works on the same connection
        assert c.auth_plain(ALICE, PASSWORD).code == 235
    log = srv.log()
    assert "wrong-too" not in log and b64("wrong-too") not in log, "password in the log"


def test_directory_down_is_temporary(new_instance, petrel_start, mariadb):
    """MariaDB down: AUTH answers 454 4.7.0, never 535."""
    inst = new_instance("mariadb", "subdown")
    inst.add_user(ALICE, PASSWORD)
    inst.add_user(BOB, PASSWORD)
    srv = petrel_start(inst)
    with srv.subs() as c:
        c.ehlo()
        assert c.auth_plain(ALICE, PASSWORD).code == 235
    try:
        mariadb.stop()
        with srv.subs(timeout=60) as c:
            c.ehlo()
            t0 = time.monotonic()
            r = c.auth_plain(BOB, PASSWORD)   # not in the auth cache
            assert r.code == 454 and "4.7.0" in r.text, r
            assert time.monotonic() - t0 < 45 * TIMEOUT_SCALE
    finally:
        mariadb.ensure_running()
    with srv.subs(timeout=60) as c:
        c.ehlo()
        assert c.auth_plain(BOB, PASSWORD).code == 235


# --------------------------------------------------------------------------
# the envelope sender belongs to the user


def test_sender_must_be_owned(sub_instance, petrel_start, fake_mx):
    inst = sub_instance
    inst.run("alias", "add", "alice.alias@example.test", ALICE)
    inst.run("alias", "add", "bobs.alias@example.test", BOB)
    mx = fake_mx()
    srv = petrel_start(inst, relay_opts(mx))
    with srv.sub() as c:
        c.login(ALICE)
        cases = [
            (ALICE, 250), (ALICE.upper(), 250), ("Alice@Example.Test", 250),
            ("alice.alias@example.test", 250), ("ALICE.ALIAS@example.test", 250),
            (BOB, 553), ("bobs.alias@example.test", 553), ("", 553),
            ("x@other.test", 553), ("nobody@example.test", 553), ("alice@other.test", 553),
        ]
        results = []
        for sender, want in cases:
            r = c.cmd("MAIL FROM:<%s>" % sender)
            results.append((sender, r.code, r.text))
            if r.code == 250:
                c.expect("RSET", 250)
        wrong = [(s, code, text) for (s, code, text), (_, want) in zip(results, cases)
                 if code != want or (want == 553 and "5.7.1" not in text)]
        assert not wrong, "MAIL FROM as alice: %r" % wrong
        # a real message from the alias
        r = c.send_message("alice.alias@example.test", ["x@other.test"],
                           wire(make_message("from my alias", sender="alice.alias@example.test")))
        assert r.code == 250, r
    got = mx.wait_messages(1)
    assert len(got) == 1 and got[0].mail_from == "alice.alias@example.test", got
    # and bob cannot send as alice or her alias
    with srv.subs() as c:
        c.ehlo()
        assert c.auth_plain(BOB, PASSWORD).code == 235
        for sender in (ALICE, "alice.alias@example.test"):
            r = c.cmd("MAIL FROM:<%s>" % sender)
            assert r.code == 553 and "5.7.1" in r.text, (sender, r)
        assert c.cmd("MAIL FROM:<bobs.alias@example.test>").code == 250
    # no data was sent after the first message: nothing queued, nothing more sent
    assert queue_files(inst) == [] and queue_files(inst, "tmp") == []
    assert len(mx.transactions) == 1


# --------------------------------------------------------------------------
# Message-ID, Date, Received


def test_message_id_and_date(out_instance, petrel_start, fake_mx):
    mx = fake_mx()
    srv = petrel_start(out_instance, relay_opts(mx))
    bare = make_message("no id, no date", to="x@other.test")
    full = make_message("id and date", to="x@other.test",
                        extra=b"Message-ID: <kept.1@client.test>\r\n"
                              b"Date: Tue, 03 Jan 2023 04:05:06 -0700\r\n")
    assert srv.submit(ALICE, ALICE, ["x@other.test"], wire(bare)).code == 250
    assert srv.submit(ALICE, ALICE, ["y@other.test"], wire(full), implicit_tls=True).code == 250
    got = mx.wait_messages(2)
    assert len(got) == 2, srv.log()
    by_rcpt = {t.rcpts[0]: t for t in got}
    a, b = by_rcpt["x@other.test"].message(), by_rcpt["y@other.test"].message()
    ids = a.get_all("Message-ID") or []
    assert len(ids) == 1 and re.match(r"^\s*<[^<>@\s]+@[^<>@\s]+>\s*$", ids[0]), ids
    dates = a.get_all("Date") or []
    assert len(dates) == 1, dates
    parsed = email.utils.parsedate_tz(dates[0])
    assert parsed is not None, dates
    assert abs(email.utils.mktime_tz(parsed) - time.time()) < 600, dates
    assert b.get_all("Message-ID") == ["<kept.1@client.test>"], b.get_all("Message-ID")
    assert b.get_all("Date") == ["Tue, 03 Jan 2023 04:05:06 -0700"], b.get_all("Date")
    for t in got:
        received = t.message().get_all("Received")
        assert received and "with ESMTPSA" in " ".join(received[0].split()), received
        assert t.data.endswith(b"\r\n\r\nHello.\r\n")


def test_message_id_and_date_kept_in_a_large_message(out_instance, petrel_start, fake_mx):
    """A message over 1 MB (spooled to disk) whose Message-ID and Date come
    after more than 64 KB of header fields (a long Cc list): kept, not added
    a second time (RFC 5322 3.6: at most one of each)."""
    mx = fake_mx()
    srv = petrel_start(out_instance, relay_opts(mx))
    cc = b"Cc: " + b",\r\n\t".join(b"<user%05d@example.net>" % i for i in range(3500)) + b"\r\n"
    body = b"".join(b"%07d line of a large body\r\n" % i for i in range(40000))
    original = cc + make_message("large", body, to="x@other.test",
                                 extra=b"Message-ID: <large.1@client.test>\r\n"
                                       b"Date: Tue, 03 Jan 2023 04:05:06 -0700\r\n")
    assert len(cc) > 65536 and len(original) > 1100000
    assert srv.submit(ALICE, ALICE, ["x@other.test"], wire(original)).code == 250
    got = mx.wait_messages(1, timeout=40)
    assert len(got) == 1, srv.log()
    m = got[0].message()
    assert got[0].data.endswith(original)
    assert m.get_all("Message-ID") == ["<large.1@client.test>"], m.get_all("Message-ID")
    assert m.get_all("Date") == ["Tue, 03 Jan 2023 04:05:06 -0700"], m.get_all("Date")


# --------------------------------------------------------------------------
# relaying: only after AUTH


RELAY_FORMS = [
    "x@other.test",
    "user%other.test@example.test",
    '"user@other.test"@example.test',
    "@example.test:user@other.test",
    "@mx.petrel.test,@example.test:user@other.test",
    "user@other.test@example.test",
    "other.test!user@example.test",
    "user@other.test.",
    "user@[127.0.0.1]",
    "USER@OTHER.TEST",
]


@pytest.mark.parametrize("catch_all", [False, True], ids=["plain", "catch-all"])
def test_mx_port_is_not_an_open_relay(out_instance, petrel_start, fake_mx, catch_all):
    """Unauthenticated, on the MX port: no address form gets a message queued
    for a foreign domain. (With a catch-all alias, a form that is really a local
    address of example.test may be delivered locally: never relayed.)"""
    inst = out_instance
    if catch_all:
        inst.run("alias", "add", "@example.test", ALICE)
    mx = fake_mx()
    srv = petrel_start(inst, relay_opts(mx))
    problems = []
    for rcpt in RELAY_FORMS:
        with srv.mx() as c:
            c.ehlo()
            assert c.cmd("MAIL FROM:<x@y.test>").code == 250
            r = c.cmd("RCPT TO:<%s>" % rcpt)
            if r.code == 250:
                if not catch_all:
                    problems.append("RCPT TO:<%s> accepted: %r" % (rcpt, r))
                r = c.cmd("DATA")
                if r.code == 354:
                    c.send(wire(make_message("relay attempt " + rcpt)) + b".\r\n")
                    c.reply()
            elif not 500 <= r.code < 600:
                problems.append("RCPT TO:<%s>: %r (a 5xx refusal expected)" % (rcpt, r))
            if queue_files(inst):
                problems.append("RCPT TO:<%s>: queued %r" % (rcpt, queue_files(inst)))
                for p in queue_files(inst):
                    inst.run("queue", "delete", p.rsplit("/", 1)[1], check=False)
    time.sleep(SETTLE)
    assert mx.connections == 0, "relayed: %r" % mx.transactions
    assert not problems, "\n".join(problems)
    if not catch_all:
        assert all_delivered(inst) == []


def test_authenticated_user_may_relay(sub_instance, petrel_start, fake_mx):
    inst = sub_instance
    mx = fake_mx()
    srv = petrel_start(inst, relay_opts(mx))
    with srv.mx() as c:      # not on the MX port
        c.ehlo()
        c.expect("MAIL FROM:<%s>" % ALICE, 250)
        r = c.cmd("RCPT TO:<x@other.test>")
        assert 500 <= r.code < 600, r
    with srv.sub() as c:
        c.login(ALICE)
        c.expect("MAIL FROM:<%s>" % ALICE, 250)
        c.expect("RCPT TO:<x@other.test>", 250)
        c.expect("RCPT TO:<%s>" % BOB, 250)   # a local one in the same message
        c.expect("DATA", 354)
        c.send(wire(make_message("relayed after auth", to="x@other.test")) + b".\r\n")
        assert c.reply().code == 250
    got = mx.wait_messages(1)
    assert len(got) == 1 and got[0].rcpts == ["x@other.test"], got
    assert got[0].mail_from == ALICE
    assert len(read_new(inst, BOB)) == 1
    assert wait_for(lambda: not queue_files(inst), WAIT)
