"""SMTP server: recipients decided by the SQL directory (SPEC section 1), on SQLite
and MariaDB: users, aliases (1->N, nested, loops, self-reference), catch-all,
recipient delimiter, case, error and smtp transports, remote forwarding to the
queue, relay denial in every address form, quotas, the directory going down."""

import os
import time

import pytest

from harness.instance import TIMEOUT_SCALE
from smtp_util import (all_delivered, lf, maildir_of, new_files, queue_files, read_new,
                       split_stored, tmp_files)

ALICE, BOB, CAROL = "alice@example.test", "bob@example.test", "carol@example.test"


def message(subject, body=b"routing test\r\n"):
    return (b"From: x@y.test\r\nSubject: " + subject.encode() + b"\r\n"
            b"Message-ID: <" + subject.replace(" ", ".").encode() + b"@y.test>\r\n\r\n" + body)


def setup_directory(inst):
    """The whole routing table, made with the CLI (raw SQL only for what the CLI
    normalises away)."""
    for u in ("carol@example.test", "keep@example.test", "catcher@example.test"):
        inst.add_user(u)
    inst.run("domain", "add", "catch.test")
    inst.add_user("real@catch.test")
    inst.run("alias", "add", "list@example.test", "alice@example.test,bob@example.test")
    inst.run("alias", "add", "n1@example.test", "n2@example.test")
    inst.run("alias", "add", "n2@example.test", "n3@example.test")
    inst.run("alias", "add", "n3@example.test", "carol@example.test")
    inst.run("alias", "add", "loop1@example.test", "loop2@example.test")
    inst.run("alias", "add", "loop2@example.test", "loop1@example.test")
    inst.run("alias", "add", "keep@example.test", "keep@example.test,bob@example.test")
    inst.run("alias", "add", "@catch.test", "catcher@example.test")
    inst.run("domain", "add", "gone.test", "--transport", "error:gone away")
    inst.run("alias", "add", "fwd@example.test", "someone@remote.test")
    inst.run("domain", "add", "relay.test", "--transport", "smtp:[127.0.0.1]:2600")
    # stored in mixed case, as an old howto database may have it
    inst.insert_user("Mixed@Example.Test", "Mixed@Example.Test", "", maildir="example.test/mixed/")


@pytest.fixture
def routed(instance, smtp_start):
    """smtp_server with the routing table of setup_directory()."""
    for a in (ALICE, BOB):
        instance.add_user(a)
    setup_directory(instance)
    return smtp_start(instance)


def rcpt_codes(srv, rcpts, sender="x@y.test"):
    """One transaction per call, RCPT only; [(code, text)] and RSET."""
    out = []
    with srv.client() as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<%s>" % sender, 250)
        for r in rcpts:
            rep = c.cmd("RCPT TO:<%s>" % r)
            out.append((rep.code, rep.text))
        c.expect("RSET", 250)
        c.expect("QUIT", 221)
    return out


def send(srv, rcpts, subject, body=b"routing test\r\n", sender="x@y.test"):
    """A whole transaction; asserts every RCPT and the DATA are accepted."""
    data = message(subject, body)
    with srv.client() as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<%s>" % sender, 250)
        for r in rcpts:
            c.expect("RCPT TO:<%s>" % r, 250)
        c.expect("DATA", 354)
        c.send(data + b".\r\n")
        rep = c.reply()
        assert rep.code == 250, rep
        c.expect("QUIT", 221)
    return lf(data)


def only_in(inst, expected):
    """Exactly the mailboxes in `expected` (address -> number of files) got mail."""
    got = {}
    for p in all_delivered(inst):
        assert os.path.basename(os.path.dirname(p)) == "new", "file outside new/: %s" % p
        mbox = os.path.dirname(os.path.dirname(p))
        got[mbox] = got.get(mbox, 0) + 1
    want = {maildir_of(inst, a): n for a, n in expected.items()}
    assert got == want


def stored(inst, address):
    files = read_new(inst, address)
    assert len(files) == 1, "%s: %d files" % (address, len(files))
    return split_stored(files[0])


# --------------------------------------------------------------------------
# local delivery


def test_user(routed):
    inst = routed.instance
    data = send(routed, [ALICE], "to alice")
    head, body = stored(inst, ALICE)
    assert body == data
    assert head["Return-Path"] == "<x@y.test>"
    assert head["Delivered-To"] == ALICE
    assert "for <alice@example.test>" in head["Received"], head
    only_in(inst, {ALICE: 1})
    log = routed.wait_log(r"to=<alice@example.test>, orig_to=<alice@example.test>, "
                          r"relay=maildir, delay=\d+\.\d\d, dsn=2\.0\.0, status=sent \(delivered to maildir ")
    assert log, routed.log()
    assert routed.wait_log(r"from=<x@y.test>, size=\d+, nrcpt=1 \(accepted\)"), routed.log()


def test_alias_one_to_many(routed):
    inst = routed.instance
    data = send(routed, ["list@example.test"], "to list")
    for who in (ALICE, BOB):
        head, body = stored(inst, who)
        assert body == data
        assert head["Delivered-To"] == who
    only_in(inst, {ALICE: 1, BOB: 1})
    for who in (ALICE, BOB):
        assert routed.wait_log(r"to=<%s>, orig_to=<list@example.test>, relay=maildir, "
                               r"delay=\d+\.\d\d, dsn=2\.0\.0, status=sent" % who), routed.log()


def test_nested_aliases(routed):
    inst = routed.instance
    data = send(routed, ["n1@example.test"], "nested")
    head, body = stored(inst, CAROL)
    assert body == data and head["Delivered-To"] == CAROL
    only_in(inst, {CAROL: 1})


def test_alias_loop(routed):
    inst = routed.instance
    for addr in ("loop1@example.test", "loop2@example.test"):
        [(code, text)] = rcpt_codes(routed, [addr])
        assert code == 554 and text.startswith("5.4.6"), (addr, code, text)
    only_in(inst, {})


def test_self_referencing_alias(routed):
    """keep@ -> keep@, bob@ (the Postfix idiom): both mailboxes get a copy."""
    inst = routed.instance
    data = send(routed, ["keep@example.test"], "keep a copy")
    for who in ("keep@example.test", BOB):
        head, body = stored(inst, who)
        assert body == data and head["Delivered-To"] == who
    only_in(inst, {"keep@example.test": 1, BOB: 1})


def test_catch_all(routed):
    inst = routed.instance
    send(routed, ["whoever@catch.test"], "caught")
    only_in(inst, {"catcher@example.test": 1})
    # the catch-all never shadows an existing user
    data = send(routed, ["real@catch.test"], "real")
    head, body = stored(inst, "real@catch.test")
    assert body == data and head["Delivered-To"] == "real@catch.test"
    only_in(inst, {"catcher@example.test": 1, "real@catch.test": 1})


def test_recipient_delimiter(routed):
    inst = routed.instance
    data = send(routed, ["alice+news@example.test"], "tagged")
    files = read_new(inst, ALICE)
    assert len(files) == 1
    assert split_stored(files[0])[1] == data
    # an alias with a tag expands like the alias
    send(routed, ["list+x@example.test"], "tagged list")
    only_in(inst, {ALICE: 2, BOB: 1})
    # +tag of an unknown user is still unknown
    [(code, text)] = rcpt_codes(routed, ["nobody+x@example.test"])
    assert code == 550, (code, text)


@pytest.fixture
def routed_with(instance, smtp_start):
    """Factory: routed_with(*opts) -> the routed server started with -o opts,
    plus kept@catch.test, a user with the alias kept@catch.test ->
    kept@catch.test (Postfix's way to keep a mailbox out of a catch-all)."""
    def make(*opts):
        for a in (ALICE, BOB):
            instance.add_user(a)
        setup_directory(instance)
        instance.add_user("kept@catch.test")
        instance.run("alias", "add", "kept@catch.test", "kept@catch.test")
        return smtp_start(instance, opts)
    return make


@pytest.mark.parametrize("opts", [(), ("catchall_order=after-users",)],
                         ids=["default", "after-users"])
def test_catchall_order_after_users(routed_with, opts):
    """The default: the catch-all takes only what no alias and no user takes."""
    srv = routed_with(*opts)
    inst = srv.instance
    send(srv, ["real@catch.test"], "real")
    send(srv, ["kept@catch.test"], "kept")
    send(srv, ["whoever@catch.test"], "caught")
    # +tag: the user without the tag comes before the catch-all
    send(srv, ["real+tag@catch.test"], "real tagged")
    only_in(inst, {"real@catch.test": 2, "kept@catch.test": 1,
                   "catcher@example.test": 1})


def test_catchall_order_postfix(routed_with):
    """catchall_order = postfix: as Postfix virtual(5), @domain applies before
    the mailboxes, unless the address has an alias of its own."""
    srv = routed_with("catchall_order=postfix")
    inst = srv.instance
    send(srv, ["real@catch.test"], "real, caught")
    head, _ = stored(inst, "catcher@example.test")
    assert head["Delivered-To"] == "catcher@example.test"
    send(srv, ["kept@catch.test"], "kept")
    send(srv, ["whoever@catch.test"], "caught")
    # the alias of the address without its tag comes before the catch-all,
    # the catch-all before the user without its tag
    send(srv, ["kept+tag@catch.test"], "kept tagged")
    send(srv, ["real+tag@catch.test"], "real tagged, caught")
    only_in(inst, {"kept@catch.test": 2, "catcher@example.test": 3})
    # a domain without a catch-all routes to its users as before
    for rcpt in (ALICE, "alice+x@example.test", "list@example.test"):
        send(srv, [rcpt], "no catch-all: " + rcpt)
    only_in(inst, {"kept@catch.test": 2, "catcher@example.test": 3, ALICE: 3, BOB: 1})
    [(code, _)] = rcpt_codes(srv, ["nobody@example.test"])
    assert code == 550


@pytest.mark.parametrize("order", ["after-users", "postfix"])
def test_recipient_delimiter_off(routed_with, order):
    """recipient_delimiter empty (Postfix's default, the howtos'): user+tag is
    an address of its own, unknown unless a catch-all takes it."""
    srv = routed_with("recipient_delimiter=", "catchall_order=" + order)
    inst = srv.instance
    codes = rcpt_codes(srv, ["alice+news@example.test", "list+x@example.test",
                             "alice@example.test"])
    assert [c for c, _ in codes] == [550, 550, 250], codes
    send(srv, ["kept+tag@catch.test", "real+tag@catch.test"], "tagged, caught")
    head, _ = stored(inst, "catcher@example.test")
    assert head["Delivered-To"] == "catcher@example.test"
    only_in(inst, {"catcher@example.test": 1})


def test_recipient_delimiter_other(routed_with):
    """Another delimiter character ("-") replaces "+": alice-news reaches
    alice, alice+news is unknown."""
    srv = routed_with("recipient_delimiter=-")
    codes = rcpt_codes(srv, ["alice-news@example.test", "alice+news@example.test"])
    assert [c for c, _ in codes] == [250, 550], codes
    send(srv, ["alice-news@example.test"], "dash tag")
    only_in(srv.instance, {ALICE: 1})


def test_bare_alias_target_local_domain(instance, smtp_start):
    """A bare local name in an alias target ("root") is that name in the
    alias's own domain by default, and in local_domain when it is set (as
    Postfix appends $myorigin); petrel check names a local_domain that is not
    hosted."""
    inst = instance
    inst.add_user(ALICE)
    inst.run("domain", "add", "host.example.test")
    inst.run("alias", "add", "root@host.example.test", ALICE)
    inst.sql("INSERT INTO virtual (address, goto) VALUES ('admin@example.test', 'root')")
    srv = smtp_start(inst)
    [(code, _)] = rcpt_codes(srv, ["admin@example.test"])
    assert code == 550
    srv.stop()
    srv = smtp_start(inst, ("local_domain=host.example.test",))
    data = send(srv, ["admin@example.test"], "to root")
    head, body = stored(inst, ALICE)
    assert body == data and head["Delivered-To"] == ALICE
    only_in(inst, {ALICE: 1})
    assert srv.wait_log(r"to=<alice@example.test>, orig_to=<admin@example.test>")
    cp = inst.run("-o", "local_domain=host.example.test", "check", check=False)
    assert "local_domain" not in cp.stderr, cp.stderr
    cp = inst.run("-o", "local_domain=nowhere.test", "check", check=False)
    assert cp.returncode == 1
    assert "petrel: check: local_domain nowhere.test is not a hosted domain" in cp.stderr


def test_case_insensitive(routed):
    inst = routed.instance
    send(routed, ["ALICE@EXAMPLE.TEST"], "upper")
    send(routed, ["List@Example.Test"], "upper list")
    send(routed, ["mixed@example.test"], "stored mixed")  # row is Mixed@Example.Test
    send(routed, ["MIXED@EXAMPLE.test"], "stored mixed 2")
    only_in(inst, {ALICE: 2, BOB: 1, "mixed@example.test": 2})


def test_unknown_user(routed):
    [(code, text)] = rcpt_codes(routed, ["nobody@example.test"])
    assert code == 550 and text.startswith("5.1.1"), (code, text)
    [(code, text)] = rcpt_codes(routed, ["nobody@relay.test.example.test"])
    assert 500 <= code < 600, (code, text)
    only_in(routed.instance, {})


def test_error_transport(routed):
    [(code, text)] = rcpt_codes(routed, ["anyone@gone.test"])
    assert code == 550 and "gone away" in text, (code, text)
    only_in(routed.instance, {})


def test_discard_unsupported_and_maildrop_transports(routed):
    """discard: accepts and drops (logged); lmtp:, which petrel cannot run,
    defers with 451 and an error in the log (never a silent local copy), and
    `petrel check` names it; maildrop: delivers to the Maildir as virtual:."""
    inst = routed.instance
    inst.run("domain", "add", "drop.test", "--transport", "discard:")
    # rows an old howto database may have; the CLI writes neither
    for d, t in (("lmtp.test", "lmtp:unix:private/dovecot-lmtp"), ("md.test", "maildrop:")):
        cp = inst.run("domain", "add", d, "--transport", t, check=False)
        assert cp.returncode == 1 and "bad transport" in cp.stderr, cp.stderr
        inst.sql("INSERT INTO transport (domain, transport) VALUES (%s, %s)"
                 % (inst.quote(d), inst.quote(t)))
    inst.add_user("u@drop.test")
    inst.add_user("u@lmtp.test")
    inst.add_user("u@md.test")
    [(code, text)] = rcpt_codes(routed, ["u@lmtp.test"])
    assert code == 451 and text.startswith("4.3.5"), (code, text)
    assert routed.wait_log(r"domain lmtp.test has transport 'lmtp:unix:private/dovecot-lmtp', "
                           r"which petrel cannot run"), routed.log()
    send(routed, ["u@drop.test", ALICE], "dropped")
    assert routed.wait_log(r"to=<u@drop.test>, orig_to=<u@drop.test>, relay=none, "
                           r"delay=\d+\.\d\d, dsn=2\.0\.0, status=sent \(discarded by transport discard:\)"), routed.log()
    data = send(routed, ["u@md.test"], "maildropped")
    only_in(inst, {ALICE: 1, "u@md.test": 1})
    assert read_new(inst, "u@md.test")[0].endswith(data)
    cp = inst.run("check", check=False)
    assert cp.returncode == 1, (cp.stdout, cp.stderr)
    assert "domain lmtp.test has transport 'lmtp:unix:private/dovecot-lmtp', which petrel " \
        "cannot run" in cp.stderr, cp.stderr
    assert "note: domain md.test has transport 'maildrop:'" in cp.stdout, cp.stdout
    assert "drop.test" not in cp.stderr


def test_maildir_column_holding_addresses_forwards(routed):
    """The Exim howto keeps a user's redirect in the maildir column: mail goes
    to the addresses, and no directory named after an address is made."""
    inst = routed.instance
    inst.insert_user("fw@example.test", "fw@example.test", "",
                     maildir="someone@remote.test, bob@example.test")
    data = send(routed, ["fw@example.test"], "forwarded by the users row")
    only_in(inst, {BOB: 1})
    assert read_new(inst, BOB)[0].endswith(data)
    files = queue_files(inst)
    assert len(files) == 1, files
    with open(files[0], "rb") as f:
        env = f.read().partition(b"\n\n")[0]
    assert b"\nrcpt someone@remote.test -" in b"\n" + env + b"\n", env
    made = [n for n in os.listdir(inst.mail_root) if "@" in n]
    assert made == [], made


def test_alias_to_remote_address_is_queued(routed):
    inst = routed.instance
    data = send(routed, ["fwd@example.test"], "forwarded")
    files = queue_files(inst)
    assert len(files) == 1, files
    with open(files[0], "rb") as f:
        q = f.read()
    env, _, rest = q.partition(b"\n\n")
    assert b"\nrcpt someone@remote.test -" in b"\n" + env + b"\n", q[:500]
    assert b"sender x@y.test" in env, env
    assert rest.endswith(data), q[-500:]
    only_in(inst, {})
    assert routed.wait_log(r"to=<someone@remote.test>, status=queued \(remote\)"), routed.log()


def test_smtp_transport_is_queued(routed):
    inst = routed.instance
    data = send(routed, ["anyone@relay.test"], "relayed")
    files = queue_files(inst)
    assert len(files) == 1, files
    with open(files[0], "rb") as f:
        q = f.read()
    env, _, rest = q.partition(b"\n\n")
    assert b"rcpt anyone@relay.test smtp:[127.0.0.1]:2600\n" in env + b"\n", env
    assert rest.endswith(data)
    only_in(inst, {})


def test_local_and_remote_in_one_message(routed):
    inst = routed.instance
    data = send(routed, [ALICE, "fwd@example.test"], "both")
    assert stored(inst, ALICE)[1] == data
    files = queue_files(inst)
    assert len(files) == 1
    with open(files[0], "rb") as f:
        env = f.read().partition(b"\n\n")[0]
    rcpts = [l for l in env.split(b"\n") if l.startswith(b"rcpt ")]
    assert rcpts == [b"rcpt someone@remote.test -"], env


def test_duplicate_through_alias_one_copy(routed):
    """RCPT list@ (-> alice, bob) and RCPT alice@ in one transaction: alice gets one
    copy (Postfix removes duplicate recipients after alias expansion)."""
    inst = routed.instance
    send(routed, ["list@example.test", ALICE, "n1@example.test", CAROL], "overlap")
    only_in(inst, {ALICE: 1, BOB: 1, CAROL: 1})


def test_bare_local_name_target(routed):
    """A goto entry without '@' is that local part in the source's domain."""
    inst = routed.instance
    inst.run("alias", "add", "bare@example.test", "alice")
    data = send(routed, ["bare@example.test"], "bare target")
    head, body = stored(inst, ALICE)
    assert body == data and head["Delivered-To"] == ALICE


def test_postfix_style_virtual_alias_domain(routed):
    """A bare domain as an alias source marks a hosted alias domain (virtual(5))."""
    inst = routed.instance
    inst.sql("INSERT INTO virtual (address, goto) VALUES ('valias.test', 'anything')")
    inst.sql("INSERT INTO virtual (address, goto) VALUES ('info@valias.test', 'alice@example.test')")
    send(routed, ["info@valias.test"], "alias domain")
    only_in(inst, {ALICE: 1})
    [(code, text)] = rcpt_codes(routed, ["other@valias.test"])
    assert code == 550 and text.startswith("5.1.1"), (code, text)


def test_unusable_maildir_is_temporary(routed):
    """A user whose maildir cannot be written: 4xx after DATA (never 250, never a
    bounce), other recipients of the message still get it, and a maildir value that
    climbs out of mail_root is refused."""
    inst = routed.instance
    os.makedirs(inst.mail_root, exist_ok=True)
    blocker = os.path.join(inst.mail_root, "not-a-dir")
    with open(blocker, "w") as f:
        f.write("x")
    inst.insert_user("broken@example.test", "broken@example.test", "",
                     maildir=blocker + "/box/")
    inst.insert_user("escape@example.test", "escape@example.test", "",
                     maildir="../../escape/")
    with routed.client() as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<x@y.test>", 250)
        r = c.cmd("RCPT TO:<escape@example.test>")
        assert 400 <= r.code < 500, r
        c.expect("RCPT TO:<broken@example.test>", 250)
        c.expect("DATA", 354)
        c.send(message("broken") + b".\r\n")
        r = c.reply()
        assert 400 <= r.code < 500, "a failed write must be a temporary error: %r" % r
        c.expect("NOOP", 250)
    assert not os.path.exists(os.path.join(os.path.dirname(inst.mail_root), "escape"))
    assert not os.path.exists(os.path.join(inst.dir, "..", "escape"))
    only_in(inst, {})
    assert queue_files(inst) == []


# --------------------------------------------------------------------------
# relay denial (unauthenticated client)

RELAY_FORMS = [
    ("plain", "x@other.test"),
    ("percent", "user%other.test@example.test"),
    ("bang", "other.test!user@example.test"),
    ("quoted", '"user@other.test"@example.test'),
    ("source-route", "@example.test:user@other.test"),
    ("source-route-2", "@a.test,@example.test:user@other.test"),
    ("double-at", "user@other.test@example.test"),
    ("ip-literal", "user@[1.2.3.4]"),
    ("subdomain", "user@sub.example.test"),
    ("trailing-dot", "user@other.test."),
]


@pytest.fixture(scope="module", params=["sqlite", "mariadb"])
def relay_routed(request, petrel_bin, tmp_path_factory):
    """One routed server per backend for the relay forms: none of them may
    deliver or queue anything, so they share it (and each still checks that
    nothing was stored)."""
    from harness.instance import make_instance
    from harness.server import running
    import smtp_util
    mdb = request.getfixturevalue("mariadb") if request.param == "mariadb" else None
    inst = make_instance(petrel_bin, tmp_path_factory.mktemp("relay-" + request.param),
                         request.param, mariadb=mdb)
    for a in (ALICE, BOB):
        inst.add_user(a)
    setup_directory(inst)
    with running(smtp_util.start_smtp, inst) as srv:
        yield srv


@pytest.mark.parametrize("addr", [a for _, a in RELAY_FORMS], ids=[i for i, _ in RELAY_FORMS])
def test_relay_denied(relay_routed, addr):
    routed = relay_routed
    inst = routed.instance
    with routed.client() as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<x@y.test>", 250)
        r = c.cmd("RCPT TO:<%s>" % addr)
        assert 500 <= r.code < 600, "RCPT TO:<%s> must be refused: %r" % (addr, r)
        if addr in ("x@other.test", "@example.test:user@other.test",
                    "@a.test,@example.test:user@other.test"):
            assert r.code == 554 and r.text.startswith("5.7.1"), r
        r = c.cmd("DATA")
        assert r.code != 354, r
        # a client that sends the message anyway: its lines are bad commands
        c.send(b"Subject: relay\r\n\r\nrelay\r\n.\r\n")
        assert all(r.code >= 500 for r in c.replies(4))
        c.expect("NOOP", 250)  # the session goes on
    # nothing can be queued after this: a message is queued before its 250,
    # and there was none
    assert queue_files(inst) == [], "nothing may be queued for <%s>" % addr
    assert queue_files(inst, "tmp") == []
    only_in(inst, {})


def test_relay_denied_pipelined_with_valid(routed):
    """A relay attempt next to a valid recipient does not taint or leak."""
    inst = routed.instance
    with routed.client() as c:
        c.send(b"EHLO c\r\nMAIL FROM:<x@y.test>\r\nRCPT TO:<user%other.test@example.test>\r\n"
               b"RCPT TO:<x@other.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
        codes = [r.code for r in c.replies(6)]
        assert codes[0:2] == [250, 250] and codes[4:] == [250, 354], codes
        assert all(500 <= x < 600 for x in codes[2:4]), codes
        c.send(message("mixed") + b".\r\n")
        assert c.reply().code == 250
    only_in(inst, {ALICE: 1})
    assert queue_files(inst) == []


# --------------------------------------------------------------------------
# postmaster (RFC 5321 4.5.1)


def test_postmaster_without_domain(routed):
    """RFC 5321 4.5.1: RCPT TO:<Postmaster> (no domain) MUST be accepted."""
    routed.instance.run("alias", "add", "postmaster@example.test", "alice@example.test")
    [(code, text)] = rcpt_codes(routed, ["Postmaster"])
    assert code == 250, (code, text)


# --------------------------------------------------------------------------
# quota


def test_quota_size_hint(instance, smtp_start):
    instance.run("user", "add", "q@example.test", "--quota", "1000")
    srv = smtp_start(instance)
    with srv.client() as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<x@y.test> SIZE=5000", 250)
        r = c.cmd("RCPT TO:<q@example.test>")
        assert r.code == 452 and r.text.startswith("4.2.2"), r
        c.expect("RSET", 250)
        c.expect("MAIL FROM:<x@y.test> SIZE=500", 250)
        c.expect("RCPT TO:<q@example.test>", 250)
    assert all_delivered(instance) == []


def test_quota_full_mailbox(instance, smtp_start):
    instance.run("user", "add", "q@example.test", "--quota", "1000")
    srv = smtp_start(instance)
    body = b"x" * 70 + b"\r\n"
    accepted = 0
    refused = None
    for i in range(6):
        with srv.client() as c:
            c.expect("EHLO client.test", 250)
            c.expect("MAIL FROM:<x@y.test>", 250)
            r = c.cmd("RCPT TO:<q@example.test>")
            if r.code == 452:
                refused = r
                break
            assert r.code == 250, r
            c.expect("DATA", 354)
            c.send(message("fill %d" % i, body * 5) + b".\r\n")
            assert c.reply().code == 250
            accepted += 1
    assert refused is not None, "RCPT must get 452 once the mailbox is over quota"
    assert refused.text.startswith("4.2.2"), refused
    assert 1 <= accepted <= 3, accepted
    used = sum(os.path.getsize(p) for p in new_files(instance, "q@example.test"))
    assert used >= 1000 - 500, used
    # it stays refused (4xx: the client keeps the message and retries)
    [(code, text)] = rcpt_codes(srv, ["q@example.test"])
    assert code == 452, (code, text)
    assert tmp_files(instance, "q@example.test") == []


# --------------------------------------------------------------------------
# the directory down (MariaDB)


@pytest.fixture
def mariadb_routed(request, petrel_bin, tmp_path, smtp_start):
    import conftest
    mdb = request.getfixturevalue("mariadb")
    inst = conftest.make_instance(petrel_bin, tmp_path / "inst", "mariadb", mariadb=mdb)
    inst.add_user(ALICE)
    inst.add_user(BOB)
    srv = smtp_start(inst)
    yield srv, mdb
    mdb.ensure_running()


def test_directory_down_gives_4xx(mariadb_routed):
    srv, mdb = mariadb_routed
    inst = srv.instance
    with srv.client(timeout=60) as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<x@y.test>", 250)
        c.expect("RCPT TO:<alice@example.test>", 250)
        mdb.stop()
        try:
            for addr in ("bob@example.test", "nobody@example.test", "x@other.test",
                         "alice@example.test"):
                t0 = time.monotonic()
                r = c.cmd("RCPT TO:<%s>" % addr)
                assert r.code == 451 and r.text.startswith("4.3.0"), (addr, r)
                assert time.monotonic() - t0 < 30 * TIMEOUT_SCALE
            # the recipient accepted before the outage still gets the message
            c.expect("DATA", 354)
            c.send(message("during outage") + b".\r\n")
            r = c.reply()
            assert r.code == 250, r
            # a new session while it is down
            with srv.client(timeout=60) as c2:
                c2.expect("EHLO client.test", 250)
                c2.expect("MAIL FROM:<x@y.test>", 250)
                r = c2.cmd("RCPT TO:<bob@example.test>")
                assert r.code == 451, r
        finally:
            mdb.ensure_running()
        # back: the same RCPT works again, on every worker thread, without a restart
        for n in range(3):
            with srv.client(timeout=60) as c3:
                c3.expect("EHLO client.test", 250)
                c3.expect("MAIL FROM:<x@y.test>", 250)
                for i in range(8):
                    r = c3.cmd("RCPT TO:<bob@example.test>")
                    assert r.code == 250, ("after the restart", n, i, r)
                c3.expect("RSET", 250)
                c3.expect("MAIL FROM:<x@y.test>", 250)
                c3.expect("RCPT TO:<bob@example.test>", 250)
                c3.expect("RCPT TO:<nobody@example.test>", 550)
                c3.expect("DATA", 354)
                c3.send(message("after outage %d" % n) + b".\r\n")
                assert c3.reply().code == 250
        c.expect("RSET", 250)
    assert len(new_files(inst, ALICE)) == 1
    assert len(new_files(inst, BOB)) == 3


@pytest.mark.parametrize("form", ["ROOT//", "ROOT/.", "ROOT/./", "./", ".", "ROOT"])
def test_maildir_equal_to_mail_root_is_refused(routed, form):
    """A users row whose maildir resolves to mail_root itself is refused for that
    recipient with 451 4.3.5 and a log line saying why; nothing is written into
    mail_root, and other recipients are unaffected."""
    inst = routed.instance
    os.makedirs(inst.mail_root, exist_ok=True)
    maildir = form.replace("ROOT", inst.mail_root.rstrip("/"))
    inst.insert_user("root@example.test", "root@example.test", "", maildir=maildir)
    with routed.client() as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<x@y.test>", 250)
        r = c.cmd("RCPT TO:<root@example.test>")
        assert r.code == 451 and r.text.startswith("4.3.5"), r
        c.expect("RCPT TO:<%s>" % ALICE, 250)
        c.expect("DATA", 354)
        c.send(message("rootdir") + b".\r\n")
        r = c.reply()
        assert r.code == 250, r
        c.expect("QUIT", 221)
    routed.wait_log(r"root@example.test has an unusable maildir .*strictly below mail_root")
    for sub in ("new", "cur", "tmp"):
        assert not os.path.exists(os.path.join(inst.mail_root, sub)), sub
    stored(inst, ALICE)
