"""SMTP settings for hosts moving from Postfix or Exim (docs/migration.md):
smtp_helo_required and smtp_strict_envelopes. Both default to yes (MAIL before
HELO/EHLO gets 503, a path without angle brackets 501); with no, petrel takes
what Postfix and Exim take by default."""

from conftest import SMTP_USERS, add_users, assert_error, run_petrel
from smtp_util import read_new, split_stored

ALICE = "alice@example.test"
BOB = "bob@example.test"
LENIENT = ["smtp_helo_required=no", "smtp_strict_envelopes=no"]


def test_defaults_are_strict(sqlite_smtp_server):
    with sqlite_smtp_server.client() as c:
        r = c.expect("MAIL FROM:<x@y.test>", 503)
        assert r.text.startswith("5.5.1"), r
        c.expect("EHLO client.test", 250)
        r = c.expect("mail from: x@y.test", 501)
        assert r.text.startswith("5.5.4"), r
        c.expect("MAIL FROM:<x@y.test>", 250)
        r = c.expect("rcpt to: alice@example.test", 501)
        assert r.text.startswith("5.5.4"), r
        c.expect("QUIT", 221)
    assert read_new(sqlite_smtp_server.instance, ALICE) == []


def test_exim_howto_session(sqlite_instance, smtp_start):
    """The session as the Exim howto types it: no HELO, lower-case verbs,
    addresses without angle brackets."""
    add_users(sqlite_instance, SMTP_USERS, password=None)
    srv = smtp_start(sqlite_instance, LENIENT)
    with srv.client() as c:
        c.expect("mail from: someone@example.org", 250)
        c.expect("rcpt to: alice@example.test", 250)
        c.expect("data", 354)
        c.send(b"Subject: howto test\r\n\r\ntest\r\n.\r\n")
        r = c.reply()
        assert r.code == 250, r
        c.expect("quit", 221)
    files = read_new(srv.instance, ALICE)
    assert len(files) == 1, files
    head, body = split_stored(files[0])
    assert head["Return-Path"] == "<someone@example.org>", head
    assert b"howto test" in files[0]


def test_lenient_still_checks(sqlite_instance, smtp_start):
    """With the settings off, what is malformed stays refused, recipients are
    still checked, and parameters after a bare address still parse."""
    add_users(sqlite_instance, SMTP_USERS, password=None)
    srv = smtp_start(sqlite_instance, LENIENT)
    with srv.client() as c:
        c.expect("MAIL FROM:", 501)
        c.expect("MAIL FROM: x@y.test>", 501)
        c.expect("MAIL FROM: <x@y.test", 501)
        c.expect("MAIL FROM: x@y.test SIZE=999999999999", 552)
        c.expect("MAIL FROM: x@y.test SIZE=100", 250)
        c.expect("RCPT TO: nobody@example.test", 550)
        c.expect("RCPT TO: x@other.test", 554)
        c.expect("RCPT TO:<bob@example.test>", 250)
        c.expect("RCPT TO:alice@example.test", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: two\r\n\r\nbody\r\n.\r\n")
        assert c.reply().code == 250
        c.expect("QUIT", 221)
    assert len(read_new(srv.instance, ALICE)) == 1
    assert len(read_new(srv.instance, BOB)) == 1


def test_each_setting_alone(sqlite_instance, smtp_start):
    add_users(sqlite_instance, SMTP_USERS, password=None)
    srv = smtp_start(sqlite_instance, ["smtp_helo_required=no"])
    with srv.client() as c:
        c.expect("MAIL FROM:<x@y.test>", 250)
        c.expect("RCPT TO: alice@example.test", 501)
        c.expect("QUIT", 221)
    srv.stop()
    srv = smtp_start(sqlite_instance, ["smtp_strict_envelopes=no"])
    with srv.client() as c:
        c.expect("MAIL FROM: x@y.test", 503)
        c.expect("HELO client.test", 250)
        c.expect("MAIL FROM: x@y.test", 250)
        c.expect("RCPT TO: alice@example.test", 250)
        c.expect("QUIT", 221)


def test_bad_values_refused(sqlite_instance):
    for key in ("smtp_helo_required", "smtp_strict_envelopes"):
        cp = run_petrel(sqlite_instance.bin, ["-c", sqlite_instance.conf, "-o",
                                              key + "=maybe", "domain", "list"])
        assert_error(cp, key, "yes|no")
