"""SRS (Sender Rewriting Scheme, docs/trust.md): with `srs_secret` set,
mail for a local recipient forwarded off-host leaves with an SRS0 (SRS1
for an SRS0 sender) address at `srs_domain`, and bounces to those
addresses come back to the original sender.

A FakeMX (mx_util) is the rest of the world (relayhost). An alias to a
remote address, an address in a users row's maildir column (Exim's
forward), a Sieve redirect and an SRS0 sender (SRS1) are rewritten;
an authenticated user's mail and a sender of a hosted domain are not; a
bounce to the SRS address (also in other case) reaches the original
sender, a failed forward's DSN too; an altered hash, an expired stamp and
a malformed address get 550 5.1.1. The expected addresses come from the
scheme reimplemented here in Python (hmac, hashlib, base64), apart from
petrel's code. One server for the module (SQLite)."""

import base64
import hashlib
import hmac
import os
import time

import pytest

import mx_util
from harness import server
from harness.instance import PASSWORD, add_users, make_instance
from harness.maildir import maildir_of
from mx_util import make_message, wait_for, wire

ALICE = "alice@example.test"
BOB = "bob@example.test"
CAROL = "carol@example.test"
SECRET = "a test secret, not a real one"
SRS_DOMAIN = "example.test"
B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def srs_hash(*parts):
    data = "".join(parts).lower().encode()
    mac = hmac.new(SECRET.encode(), data, hashlib.sha1).digest()
    return base64.b64encode(mac).decode()[:4]


def stamp(t=None):
    day = int((time.time() if t is None else t) // 86400) % 1024
    return B32[day >> 5] + B32[day & 31]


def srs0(sender, t=None):
    local, domain = sender.rsplit("@", 1)
    tt = stamp(t)
    return "SRS0=%s=%s=%s=%s@%s" % (srs_hash(tt, domain, local), tt, domain, local,
                                    SRS_DOMAIN)


def srs0_either(sender):
    """Today's, and yesterday's should the day change during the test."""
    now = time.time()
    return {srs0(sender, now), srs0(sender, now - 60)}


@pytest.fixture(scope="module")
def world():
    mx = mx_util.FakeMX(rcpt={"gone@remote.test": "550 5.1.1 no such user", None: None})
    yield mx
    mx.stop()


@pytest.fixture(scope="module")
def srv(petrel_bin, tmp_path_factory, world):
    base = tmp_path_factory.mktemp("srs")
    inst = make_instance(petrel_bin, base / "inst", "sqlite")
    add_users(inst, (ALICE, BOB, CAROL), password=PASSWORD)
    inst.run("alias", "add", "fwd@example.test", "dest@remote.test")
    inst.run("alias", "add", "gone@example.test", "gone@remote.test")
    # the Exim howto's forward: an address in the users row's maildir column
    inst.insert_user("fw@example.test", "fw@example.test", "", maildir="exim-dest@remote.test")
    h = maildir_of(inst, CAROL)
    os.makedirs(os.path.join(h, "sieve"), exist_ok=True)
    with open(os.path.join(h, "sieve", "fwd.sieve"), "w") as f:
        f.write('redirect "sieve-dest@remote.test";\n')
    os.symlink(os.path.join("sieve", "fwd.sieve"), os.path.join(h, ".dovecot.sieve"))
    secret_file = base / "srs.secret"
    secret_file.write_text(SECRET + "\n")
    # petrel check: srs_domain must be hosted, a warning otherwise
    cp = inst.run("-o", "srs_secret=x", "-o", "srs_domain=nowhere.test", "check",
                  check=False)
    assert "warning: srs_domain nowhere.test is not a hosted domain" in cp.stdout, cp.stdout
    with server.tracked(mx_util.start_petrel) as start:
        s = start(inst, ("relayhost=[127.0.0.1]:%d" % world.port,
                         "srs_secret=file:%s" % secret_file, "srs_domain=" + SRS_DOMAIN))
        s.inst = inst
        yield s


def send_mx(srv, sender, rcpts, subject):
    with srv.mx() as c:
        r = c.send_message(sender, rcpts, wire(make_message(subject, sender=sender,
                                                            to=rcpts[0])),
                           ehlo="client.test")
        c.cmd("QUIT")
    return r


def arrived(world, subject):
    """The FakeMX's transactions carrying subject (bounded wait)."""
    def find():
        return [t for t in world.messages() if subject.encode() in t.data]
    return wait_for(find)


def test_alias_forward_rewritten(srv, world):
    r = send_mx(srv, "someone@far.test", ["fwd@example.test"], "srs alias")
    assert r.code == 250, r
    got = arrived(world, "srs alias")
    assert len(got) == 1, "nothing forwarded\nlog:\n%s" % srv.log()
    t = got[0]
    assert t.rcpts == ["dest@remote.test"], t
    assert t.mail_from in srs0_either("someone@far.test"), t.mail_from
    assert srv.wait_log(r"srs: sender <someone@far\.test> rewritten to <SRS0="), srv.log()


def test_maildir_column_forward_rewritten(srv, world):
    r = send_mx(srv, "other@far.test", ["fw@example.test"], "srs exim forward")
    assert r.code == 250, r
    got = arrived(world, "srs exim forward")
    assert len(got) == 1, srv.log()
    assert got[0].rcpts == ["exim-dest@remote.test"], got[0]
    assert got[0].mail_from in srs0_either("other@far.test"), got[0].mail_from


def test_local_senders_not_rewritten(srv, world):
    # an authenticated user, and a sender of a hosted domain
    r = srv.submit(ALICE, ALICE, ["fwd@example.test"],
                   wire(make_message("srs submission", sender=ALICE, to="fwd@example.test")))
    assert r.code == 250, r
    r = send_mx(srv, BOB, ["fwd@example.test"], "srs hosted sender")
    assert r.code == 250, r
    a = arrived(world, "srs submission")
    b = arrived(world, "srs hosted sender")
    assert len(a) == 1 and len(b) == 1, srv.log()
    assert a[0].mail_from == ALICE, a[0]
    assert b[0].mail_from == BOB, b[0]


def test_sieve_redirect_rewritten(srv, world):
    r = send_mx(srv, "Writer@Far.Test", [CAROL], "srs sieve")
    assert r.code == 250, r
    got = arrived(world, "srs sieve")
    assert len(got) == 1, srv.log()
    assert got[0].rcpts == ["sieve-dest@remote.test"], got[0]
    assert got[0].mail_from in srs0_either("Writer@Far.Test"), got[0].mail_from


def test_srs0_sender_becomes_srs1(srv, world):
    sender = "SRS0=AbCd=XY=orig.test=bob@first.test"
    r = send_mx(srv, sender, ["fwd@example.test"], "srs resend")
    assert r.code == 250, r
    got = arrived(world, "srs resend")
    assert len(got) == 1, srv.log()
    want = "SRS1=%s=first.test==AbCd=XY=orig.test=bob@%s" % (
        srs_hash("first.test", "=AbCd=XY=orig.test=bob"), SRS_DOMAIN)
    assert got[0].mail_from == want, got[0].mail_from
    # and the bounce to it goes back to the first forwarder's SRS0 address
    r = send_mx(srv, "", [want], "srs1 bounce")
    assert r.code == 250, r
    back = arrived(world, "srs1 bounce")
    # (petrel takes every RCPT address in lower case; the hashes do not mind)
    assert len(back) == 1 and [a.lower() for a in back[0].rcpts] == [sender.lower()], back


def test_bounce_reaches_the_original_sender(srv, world):
    addr = srs0("orig.sender@far.test")
    r = send_mx(srv, "", [addr], "srs bounce")
    assert r.code == 250, r
    got = arrived(world, "srs bounce")
    assert len(got) == 1, srv.log()
    assert got[0].rcpts == ["orig.sender@far.test"], got[0]
    assert got[0].mail_from == "", got[0]
    # hash and all in another case: still ours
    local, domain = addr.rsplit("@", 1)
    r = send_mx(srv, "", [local.swapcase() + "@" + domain.upper()], "srs bounce case")
    assert r.code == 250, r
    got = arrived(world, "srs bounce case")
    assert len(got) == 1 and got[0].rcpts[0].lower() == "orig.sender@far.test", got


def test_failed_forward_bounces_to_the_original_sender(srv, world):
    r = send_mx(srv, "writer2@far.test", ["gone@example.test"], "srs gone")
    assert r.code == 250, r
    refused = wait_for(lambda: [t for t in world.transactions
                                if ("gone@remote.test", ) == tuple(a for a, _ in t.refused)])
    assert refused and refused[0].mail_from in srs0_either("writer2@far.test"), refused
    dsn = wait_for(lambda: [t for t in world.messages()
                            if t.rcpts == ["writer2@far.test"] and t.mail_from == ""])
    assert len(dsn) == 1, "no DSN to the original sender\nlog:\n%s" % srv.log()


def test_invalid_srs_addresses_refused(srv):
    good = srs0("victim@far.test")
    local, domain = good.rsplit("@", 1)
    h = local.split("=")[1]
    bad_hash = local.replace("=" + h + "=", "=" + ("A" if h[0] != "A" else "B") + h[1:] + "=", 1)
    old = srs0("victim@far.test", time.time() - 30 * 86400)
    with srv.mx() as c:
        c.expect("EHLO client.test", 250)
        assert c.cmd("MAIL FROM:<>").code == 250
        for addr, why in ((bad_hash + "@" + domain, "bad SRS hash"),
                          (old, "expired SRS address"),
                          ("SRS0=zz@" + domain, "malformed")):
            r = c.cmd("RCPT TO:<%s>" % addr)
            assert r.code == 550 and "5.1.1" in r.lines[-1], (addr, r)
            assert "invalid SRS address" in r.lines[-1] and why in r.lines[-1], r
        assert c.cmd("RCPT TO:<%s>" % good).code == 250
        c.cmd("QUIT")
