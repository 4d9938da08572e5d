"""REQUIRETLS (RFC 8689) on the receiving side: offered in EHLO only under
TLS, accepted as a MAIL FROM parameter only there, and kept with the queued
message (its envelope's `requiretls` line, shown by `petrel queue show
--json`), so that the queue's SMTP client can honour it."""

import json

from mx_util import ALICE, PASSWORD, make_message, wait_for, wire
from smtp_util import queue_files


def relay_opts(port):
    """Mail to foreign domains goes to a next hop that does not answer, so it
    stays queued."""
    return ["relayhost=[127.0.0.1]:%d" % port]


def test_offered_only_under_tls(out_instance, petrel_start):
    srv = petrel_start(out_instance)
    for connect in (srv.mx, srv.sub):
        with connect() as c:
            r = c.ehlo()
            assert "REQUIRETLS" not in r.keywords, "offered without TLS: %r" % r
            c.starttls()
            r = c.ehlo()
            assert "REQUIRETLS" in r.keywords, "not offered under TLS: %r" % r
    with srv.subs() as c:   # implicit TLS
        r = c.ehlo()
        assert "REQUIRETLS" in r.keywords, r


def test_parameter_refused_without_tls(out_instance, petrel_start):
    srv = petrel_start(out_instance)
    with srv.mx() as c:
        c.ehlo()
        r = c.cmd("MAIL FROM:<someone@elsewhere.test> REQUIRETLS")
        assert r.code == 555 and "5.5.4" in r.text, r
        # the session goes on: the same MAIL without it is fine
        r = c.cmd("MAIL FROM:<someone@elsewhere.test>")
        assert r.code == 250, r
    with srv.mx() as c:
        c.ehlo()
        c.starttls()
        c.ehlo()
        r = c.cmd("MAIL FROM:<someone@elsewhere.test> REQUIRETLS=yes")
        assert r.code == 555, "REQUIRETLS takes no value: %r" % r
        r = c.cmd("MAIL FROM:<someone@elsewhere.test> REQUIRETLS")
        assert r.code == 250, r


def queued_flags(inst):
    out = {}
    for path in queue_files(inst):
        qid = path.rsplit("/", 1)[1]
        out[qid] = json.loads(inst.run("queue", "show", qid, "--json").stdout)["requiretls"]
    return out


def test_flag_kept_in_the_queue(out_instance, petrel_start):
    from mx_util import free_port
    inst = out_instance
    srv = petrel_start(inst, opts=relay_opts(free_port()))
    msg = wire(make_message("requiretls", b"secret\r\n", to="x@remote.test"))
    for requiretls in (True, False):
        with srv.sub() as c:
            c.login(ALICE, PASSWORD)
            r = c.cmd("MAIL FROM:<%s>%s" % (ALICE, " REQUIRETLS" if requiretls else ""))
            assert r.code == 250, r
            assert c.cmd("RCPT TO:<x@remote.test>").code == 250
            assert c.cmd("DATA").code == 354
            c.send(msg + b".\r\n")
            r = c.reply()
            assert r.code == 250, r
    flags = wait_for(lambda: len(queue_files(inst)) == 2 and queued_flags(inst))
    assert flags, inst.run("queue", "list").stdout
    assert sorted(flags.values()) == [False, True], flags
    # the envelope line itself
    for path in queue_files(inst):
        head = open(path, "rb").read().split(b"\n\n", 1)[0].split(b"\n")
        assert (b"requiretls" in head) == flags[path.rsplit("/", 1)[1]], head


# --------------------------------------------------------------------------
# the queue's side: verified TLS to a server that offers REQUIRETLS, or no
# delivery


import pytest  # noqa: E402

from mx_util import add_relay_domain  # noqa: E402
from pki_util import make_pki  # noqa: E402
from smtp_util import read_new  # noqa: E402


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A test CA, a certificate it signed for 127.0.0.1 (the fake MX's
    address as the transport names it), and one another CA signed."""
    return make_pki(tmp_path_factory.mktemp("pki"),
                    [("mx", "ca", "IP:127.0.0.1"), ("stranger", "otherca", "IP:127.0.0.1")])


def send_requiretls(srv, rcpt, requiretls=True, subject="requiretls"):
    with srv.sub() as c:
        c.login(ALICE, PASSWORD)
        r = c.cmd("MAIL FROM:<%s>%s" % (ALICE, " REQUIRETLS" if requiretls else ""))
        assert r.code == 250, r
        assert c.cmd("RCPT TO:<%s>" % rcpt).code == 250
        assert c.cmd("DATA").code == 354
        c.send(wire(make_message(subject, b"for TLS only\r\n", to=rcpt)) + b".\r\n")
        r = c.reply()
        assert r.code == 250, r


def mails_sent(mx):
    return [line for _, line in mx.commands if line.upper().startswith("MAIL")]


def bounce_texts(inst):
    return [m.decode("utf-8", "replace") for m in read_new(inst, ALICE)]


def test_relayed_with_verified_tls(out_instance, petrel_start, fake_mx, pki):
    inst = out_instance
    mx = fake_mx(starttls=True, cert=pki["mx"],
                 ehlo_extra=("8BITMIME", "ENHANCEDSTATUSCODES", "REQUIRETLS"))
    add_relay_domain(inst, "relay.test", mx.port)
    srv = petrel_start(inst, opts=["smtp_tls_ca=" + pki["ca"]])
    send_requiretls(srv, "x@relay.test")
    got = mx.wait_messages(1)
    assert len(got) == 1, "nothing relayed\n%s" % srv.log()
    t = got[0]
    assert t.tls, "relayed without TLS: %r" % t
    assert t.mail_args.upper() == "REQUIRETLS", "MAIL FROM without REQUIRETLS: %r" % t.mail_args
    assert srv.wait_log(r"to=<x@relay\.test>.*tls=verified.*status=sent"), srv.log()
    # a message without the option is still sent as before, without it
    send_requiretls(srv, "y@relay.test", requiretls=False, subject="plain")
    got = mx.wait_messages(2)
    assert len(got) == 2, srv.log()
    assert "REQUIRETLS" not in got[1].mail_args.upper(), got[1].mail_args


@pytest.mark.parametrize("case", ["no-requiretls", "no-starttls"])
def test_refused_server_bounces(out_instance, petrel_start, fake_mx, pki, case):
    inst = out_instance
    extra = ("8BITMIME", "ENHANCEDSTATUSCODES") + (("REQUIRETLS",) if case != "no-requiretls"
                                                  else ())
    mx = fake_mx(starttls=case != "no-starttls", cert=pki["mx"], ehlo_extra=extra)
    add_relay_domain(inst, "relay.test", mx.port)
    srv = petrel_start(inst, opts=["smtp_tls_ca=" + pki["ca"]])
    send_requiretls(srv, "x@relay.test")
    status = "5.7.30" if case == "no-requiretls" else "5.7.10"
    bounces = wait_for(lambda: [b for b in bounce_texts(inst) if status in b])
    assert bounces, "no %s bounce\n%s" % (status, srv.log())
    assert "REQUIRETLS" in bounces[0], bounces[0][:2000]
    assert srv.wait_log(r"to=<x@relay\.test>.*status=bounced"), srv.log()
    assert mails_sent(mx) == [], "MAIL sent to a server that cannot keep the promise: %r" % (
        mx.commands,)
    # the same server takes a message without the option, as before
    send_requiretls(srv, "y@relay.test", requiretls=False, subject="plain")
    assert len(mx.wait_messages(1)) == 1, srv.log()


def test_unverified_certificate_defers(out_instance, petrel_start, fake_mx, pki):
    inst = out_instance
    mx = fake_mx(starttls=True, cert=pki["stranger"],
                 ehlo_extra=("8BITMIME", "ENHANCEDSTATUSCODES", "REQUIRETLS"))
    add_relay_domain(inst, "relay.test", mx.port)
    srv = petrel_start(inst, opts=["smtp_tls_ca=" + pki["ca"]])
    send_requiretls(srv, "x@relay.test")
    line = srv.wait_log(r"to=<x@relay\.test>.*status=deferred")
    assert line, srv.log()
    assert "REQUIRETLS" in srv.log() and "certificate" in srv.log(), srv.log()
    assert mails_sent(mx) == [], mx.commands
    assert not [b for b in bounce_texts(inst) if "x@relay.test" in b], "bounced at once"
    # with the right CA the same message goes out (the queue retries)
    mx.stop()
    good = fake_mx(port=mx.port, starttls=True, cert=pki["mx"],
                   ehlo_extra=("8BITMIME", "ENHANCEDSTATUSCODES", "REQUIRETLS"))
    srv.stop()
    srv = petrel_start(inst, opts=["smtp_tls_ca=" + pki["ca"]])
    inst.run("queue", "flush")
    got = good.wait_messages(1)
    assert len(got) == 1 and got[0].tls, srv.log()
