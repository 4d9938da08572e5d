"""Outbound delivery found through DNS (RFC 5321 5.1, RFC 7505): the queue
manager asks a real local DNS server (Unbound, dns_util.LocalDNS) through
`dns_resolver`, and FakeMX receivers listen on port 25 of other loopback
addresses, as MX hosts do. MX preference order, equal preferences in one
attempt, no MX -> the domain's own address, a CNAME'd MX host, null MX and
NXDOMAIN -> an immediate bounce, SERVFAIL -> deferral, and a DNS server that
never answers does not hold up other domains' mail.

Port 25 needs root, as the test command runs.
"""

import os

import pytest

from dns_util import LocalDNS
from harness.instance import TIMEOUT_SCALE
from mx_util import ALICE, make_message, wait_for, wire

WAIT = 30 * TIMEOUT_SCALE

RECORDS = [
    # preference order: 10 is down, 20 answers
    "order.mxtest. 300 IN MX 10 mx1.order.mxtest.",
    "order.mxtest. 300 IN MX 20 mx2.order.mxtest.",
    "mx1.order.mxtest. 300 IN A 127.0.0.21",
    "mx2.order.mxtest. 300 IN A 127.0.0.22",
    # the better preference answers: the worse one is never asked
    "best.mxtest. 300 IN MX 20 worse.best.mxtest.",
    "best.mxtest. 300 IN MX 5 better.best.mxtest.",
    "worse.best.mxtest. 300 IN A 127.0.0.24",
    "better.best.mxtest. 300 IN A 127.0.0.23",
    # equal preferences: one down, the other takes it in the same attempt
    "eq.mxtest. 300 IN MX 10 a.eq.mxtest.",
    "eq.mxtest. 300 IN MX 10 b.eq.mxtest.",
    "a.eq.mxtest. 300 IN A 127.0.0.31",
    "b.eq.mxtest. 300 IN A 127.0.0.32",
    # no MX: the domain's own address (the implicit MX)
    "amx.mxtest. 300 IN A 127.0.0.41",
    # an MX host that is a CNAME
    "cn.mxtest. 300 IN MX 10 alias.cn.mxtest.",
    "alias.cn.mxtest. 300 IN CNAME real.cn.mxtest.",
    "real.cn.mxtest. 300 IN A 127.0.0.51",
    # RFC 7505: takes no mail
    "nullmx.mxtest. 300 IN MX 0 .",
    # a zone in which the recipient domain does not exist
    "other.nx.mxtest. 300 IN A 127.0.0.9",
]


@pytest.fixture
def dns(tmp_path):
    d = LocalDNS(tmp_path, RECORDS, servfail=["broken.mxtest."], slow=["slow.mxtest."])
    yield d
    d.stop()


@pytest.fixture
def mx25(fake_mx):
    """fake_mx on port 25 of a loopback address."""
    if os.geteuid() != 0:
        pytest.fail("port 25 needs root (the test command runs as root)")

    def make(host, **kw):
        return fake_mx(host=host, port=25, **kw)
    return make


@pytest.fixture
def srv(out_instance, petrel_start, dns):
    inst = out_instance
    for n, domain in enumerate(("order", "best", "eq", "amx", "cn", "nullmx", "gone.nx",
                                "broken", "slow")):
        inst.run("alias", "add", "%s@example.test" % domain.replace(".", "-"),
                 "rcpt@%s.mxtest" % domain)
    return petrel_start(inst, ("relayhost=", "dns_resolver=" + dns.resolver,
                               "queue_retry_min=3600"))


def send(srv, alias, subject):
    msg = make_message(subject, b"body\r\n", to=alias)
    assert srv.submit(ALICE, ALICE, [alias], wire(msg)).code == 250


def sent_line(srv, rcpt):
    return srv.wait_log(r"to=<%s>, relay=[^,]+, delay=\d+, status=sent" % rcpt, timeout=WAIT)


def test_preference_order_and_fallback(srv, mx25):
    mx2 = mx25("127.0.0.22")
    better, worse = mx25("127.0.0.23"), mx25("127.0.0.24")
    send(srv, "order@example.test", "order")
    send(srv, "best@example.test", "best")
    line = sent_line(srv, r"rcpt@order\.mxtest")
    assert line and "relay=mx2.order.mxtest[127.0.0.22]:25" in line[-1], srv.log()
    assert len(mx2.wait_messages(1)) == 1
    line = sent_line(srv, r"rcpt@best\.mxtest")
    assert line and "relay=better.best.mxtest[127.0.0.23]:25" in line[-1], srv.log()
    assert len(better.wait_messages(1)) == 1
    assert worse.connections == 0
    # the refused first MX did not defer the message: one attempt
    assert not srv.wait_log(r"to=<rcpt@order\.mxtest>.*status=deferred", timeout=0)


def test_equal_preference_tried_in_the_same_attempt(srv, mx25):
    b = mx25("127.0.0.32")
    send(srv, "eq@example.test", "equal")
    line = sent_line(srv, r"rcpt@eq\.mxtest")
    assert line and "b.eq.mxtest[127.0.0.32]:25" in line[-1] and "attempts=1" in line[-1], \
        srv.log()
    assert len(b.wait_messages(1)) == 1


def test_implicit_mx_and_cname(srv, mx25):
    a, c = mx25("127.0.0.41"), mx25("127.0.0.51")
    send(srv, "amx@example.test", "implicit")
    send(srv, "cn@example.test", "cname")
    assert sent_line(srv, r"rcpt@amx\.mxtest"), srv.log()
    assert sent_line(srv, r"rcpt@cn\.mxtest"), srv.log()
    assert len(a.wait_messages(1)) == 1 and len(c.wait_messages(1)) == 1


@pytest.mark.parametrize("alias,rcpt,code", [
    ("nullmx@example.test", r"rcpt@nullmx\.mxtest", "5.1.10"),
    ("gone-nx@example.test", r"rcpt@gone\.nx\.mxtest", "5.1.2"),
])
def test_null_mx_and_nxdomain_bounce_at_once(srv, alias, rcpt, code):
    send(srv, alias, "bounce " + alias)
    line = srv.wait_log(r"to=<%s>, relay=none, delay=\d+, status=bounced \([^)]*%s"
                        % (rcpt, code.replace(".", r"\.")), timeout=WAIT)
    assert line and "attempts=1" in line[-1], srv.log()
    # the sender (alice, local) gets the notification
    assert srv.wait_log(r"to=<alice@example\.test>, orig_to=<alice@example\.test>, "
                        r"relay=maildir", timeout=WAIT), srv.log()


def test_servfail_defers(srv):
    send(srv, "broken@example.test", "servfail")
    line = srv.wait_log(r"to=<rcpt@broken\.mxtest>, relay=none, delay=\d+, "
                        r"status=deferred \(451 4\.4\.3 MX lookup", timeout=WAIT)
    assert line, srv.log()
    assert not srv.wait_log(r"status=bounced", timeout=0)


def test_slow_dns_does_not_hold_up_other_domains(srv, mx25):
    a = mx25("127.0.0.41")
    send(srv, "slow@example.test", "slow first")
    send(srv, "amx@example.test", "fast second")
    assert sent_line(srv, r"rcpt@amx\.mxtest"), srv.log()
    assert len(a.wait_messages(1)) == 1
    # the slow domain's lookup had not ended when the other was delivered
    lines = srv.log_lines()
    sent_at = next(i for i, l in enumerate(lines) if "to=<rcpt@amx.mxtest>, relay=" in l)
    assert not any("to=<rcpt@slow.mxtest>, relay=" in l for l in lines[:sent_at]), lines
