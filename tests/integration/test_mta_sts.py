"""Outgoing MTA-STS (RFC 8461, `mta_sts = on`): the recipient domain
sts.mxtest publishes its MX, its _mta-sts TXT record and the address of
mta-sts.sts.mxtest in a local DNS server (dns_util.LocalDNS) that petrel's
resolver forwards to; the policy is served over HTTPS by a small Python
server on 127.0.0.73:443 with a certificate of a test CA (pki_util), which
petrel trusts through smtp_tls_ca; the MX is a FakeMX on 127.0.0.72:25.

Cases: enforce and an MX certificate valid for its name -> delivered,
logged tls=mta-sts-verified, the policy fetched once (cached); enforce and
an MX the policy's mx patterns do not name -> deferred, never connected;
enforce and an MX certificate of another CA, or an MX without STARTTLS ->
deferred with the reason, no MAIL; testing and the other CA -> delivered,
the log says what enforce would refuse; no TXT record, the policy server
down, a policy that does not parse, a redirect, a Content-Type other than
text/plain, a policy over 64 KiB, a policy server whose certificate is of
another CA -> delivered as without MTA-STS; a message with "TLS-Required:
No" (RFC 8689) -> delivered as without a policy. Port
25 and 443 need root, as the test command runs.
"""

import http.server
import os
import re
import ssl
import threading

import pytest

from dns_util import LocalDNS
from harness.instance import TIMEOUT_SCALE
from mx_util import ALICE, make_message, queue_json, wire
from pki_util import make_pki

WAIT = 30 * TIMEOUT_SCALE
DOMAIN = "sts.mxtest"
MXHOST = "mx1." + DOMAIN
MXADDR = "127.0.0.72"
WEBADDR = "127.0.0.73"
RCPT = "rcpt@" + DOMAIN


def policy(mode="enforce", mx=(MXHOST,), version="STSv1", max_age=86400):
    lines = ["version: " + version, "mode: " + mode]
    lines += ["mx: " + m for m in mx]
    lines.append("max_age: %d" % max_age)
    return "\r\n".join(lines) + "\r\n"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"),
                    [("mx", "ca", "DNS:" + MXHOST),
                     ("stranger", "otherca", "DNS:" + MXHOST),
                     ("web", "ca", "DNS:mta-sts." + DOMAIN),
                     ("webstranger", "otherca", "DNS:mta-sts." + DOMAIN)])


class PolicyServer:
    """HTTPS on WEBADDR:443 serving `body` at /.well-known/mta-sts.txt;
    `requests` lists the (path, Host header) of each request."""

    def __init__(self, cert, body, status=200, ctype="text/plain"):
        self.body = body.encode()
        self.requests = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append((self.path, self.headers.get("Host")))
                if self.path != "/.well-known/mta-sts.txt":
                    self.send_error(404)
                    return
                self.send_response(status)
                if status in (301, 302):
                    self.send_header("Location", "https://mta-sts.%s/p.txt" % DOMAIN)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer((WEBADDR, 443), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*cert)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def web(pki):
    made = []

    def make(body, cert="web", **kw):
        s = PolicyServer(pki[cert], body, **kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.stop()


@pytest.fixture
def dns(tmp_path):
    made = []

    def make(txt=True):
        records = ["%s. 300 IN MX 10 %s." % (DOMAIN, MXHOST),
                   "%s. 300 IN A %s" % (MXHOST, MXADDR),
                   "mta-sts.%s. 300 IN A %s" % (DOMAIN, WEBADDR)]
        if txt:
            records.append('_mta-sts.%s. 300 IN TXT "v=STSv1; id=20261207T1"' % DOMAIN)
        ns = LocalDNS(tmp_path / ("dns%d" % len(made)), records)
        made.append(ns)
        return ns.resolver
    yield make
    for ns in made:
        ns.stop()


@pytest.fixture
def mx(fake_mx):
    if os.geteuid() != 0:
        pytest.fail("ports 25 and 443 need root (the test command runs as root)")

    def make(cert):
        return fake_mx(host=MXADDR, port=25, pipelining=True, starttls=cert is not None,
                       cert=cert)
    return make


def start(out_instance, petrel_start, resolver, pki, *opts):
    return petrel_start(out_instance, ("relayhost=", "dns_resolver=" + resolver,
                                       "mta_sts=on", "smtp_tls_ca=" + pki["ca"],
                                       "queue_retry_min=3600") + opts)


def send(srv, subject):
    msg = make_message(subject, b"body\r\n", to=RCPT)
    assert srv.submit(ALICE, ALICE, [RCPT], wire(msg)).code == 250


def status_line(srv, status, count=1):
    found = srv.wait_log(r"to=<%s>, relay=.*status=%s" % (re.escape(RCPT), status),
                         count=count, timeout=WAIT)
    return found[-1] if found else None


def mails_sent(m):
    return [c for _, c in m.commands if c.upper().startswith("MAIL")]


def queued_last(inst):
    return [r.get("last", "") for q in queue_json(inst) for r in q.get("recipients", [])]


def test_enforce_verified_delivers_and_caches(out_instance, petrel_start, dns, web, mx, pki):
    w = web(policy())
    m = mx(pki["mx"])
    srv = start(out_instance, petrel_start, dns(), pki)
    send(srv, "sts-ok")
    line = status_line(srv, "sent")
    assert line and "tls=mta-sts-verified" in line, srv.log()
    assert len(m.wait_messages(1)) == 1 and m.transactions[0].tls
    assert w.requests == [("/.well-known/mta-sts.txt", "mta-sts." + DOMAIN)], w.requests
    # the second message: the policy from the cache, even with the server gone
    w.stop()
    send(srv, "sts-ok-2")
    line = status_line(srv, "sent", count=2)
    assert line and "tls=mta-sts-verified" in line, srv.log()
    assert len(m.wait_messages(2)) == 2 and len(w.requests) == 1


def test_enforce_mx_not_in_policy_defers(out_instance, petrel_start, dns, web, mx, pki):
    web(policy(mx=("*.elsewhere.mxtest", "mx2." + DOMAIN)))
    m = mx(pki["mx"])
    srv = start(out_instance, petrel_start, dns(), pki)
    send(srv, "sts-nomatch")
    line = status_line(srv, "deferred")
    why = "4.7.5 MTA-STS: %s matches no mx pattern" % MXHOST
    assert line and why in line, srv.log()
    assert m.connections == 0, m.commands


def test_enforce_wildcard_pattern_matches(out_instance, petrel_start, dns, web, mx, pki):
    web(policy(mx=("*." + DOMAIN,)))
    m = mx(pki["mx"])
    srv = start(out_instance, petrel_start, dns(), pki)
    send(srv, "sts-wildcard")
    line = status_line(srv, "sent")
    assert line and "tls=mta-sts-verified" in line, srv.log()
    assert len(m.wait_messages(1)) == 1


def test_enforce_other_ca_defers(out_instance, petrel_start, dns, web, mx, pki):
    web(policy())
    m = mx(pki["stranger"])
    srv = start(out_instance, petrel_start, dns(), pki)
    send(srv, "sts-stranger")
    line = status_line(srv, "deferred")
    why = "451 4.7.5 MTA-STS: certificate of %s not verified (" % MXHOST
    assert line and why in line and "tls=" not in line, srv.log()
    assert mails_sent(m) == [], m.commands
    assert [t for t in queued_last(out_instance) if why in t], queue_json(out_instance)


def test_enforce_no_starttls_defers(out_instance, petrel_start, dns, web, mx, pki):
    web(policy())
    m = mx(None)
    srv = start(out_instance, petrel_start, dns(), pki)
    send(srv, "sts-plain")
    line = status_line(srv, "deferred")
    assert line and "MTA-STS: %s offers no STARTTLS" % MXHOST in line, srv.log()
    assert m.connections >= 1 and mails_sent(m) == [], m.commands


def test_testing_mode_delivers_and_reports(out_instance, petrel_start, dns, web, mx, pki):
    web(policy(mode="testing"))
    m = mx(pki["stranger"])
    srv = start(out_instance, petrel_start, dns(), pki)
    send(srv, "sts-testing")
    line = status_line(srv, "sent")
    assert line and "tls=mta-sts" not in line, srv.log()
    assert len(m.wait_messages(1)) == 1 and m.transactions[0].tls
    assert srv.wait_log(r"MTA-STS \(testing\) for %s: certificate of %s not verified.*"
                        r"enforce would not deliver" % (re.escape(DOMAIN), re.escape(MXHOST)),
                        timeout=0), srv.log()


def test_tls_required_no_sets_the_policy_aside(out_instance, petrel_start, dns, web, mx, pki):
    """RFC 8689 5: a message with "TLS-Required: No" is delivered as if the
    domain had no policy (opportunistic TLS to an MX the policy in force
    would refuse), and the queue file says so; the same message without
    the field is deferred."""
    web(policy())
    m = mx(pki["stranger"])
    srv = start(out_instance, petrel_start, dns(), pki)
    plain = make_message("sts-tls-required-no", b"body\r\n", to=RCPT,
                         extra=b"TLS-Required: No\r\n")
    assert srv.submit(ALICE, ALICE, [RCPT], wire(plain)).code == 250
    line = status_line(srv, "sent")
    assert line and "tls=" not in line, srv.log()
    got = m.wait_messages(1)
    assert len(got) == 1 and got[0].tls and b"TLS-Required: No" in got[0].data
    send(srv, "sts-without-the-field")
    assert status_line(srv, "deferred"), srv.log()
    assert len(m.transactions) == 1, m.transactions


@pytest.mark.parametrize("case", ["no-txt", "server-down", "bad-version", "bad-syntax",
                                  "bad-mode", "redirect", "not-text-plain", "too-big",
                                  "web-other-ca"])
def test_no_usable_policy_delivers(out_instance, petrel_start, dns, web, mx, pki, case):
    # the MX's certificate is of another CA: under a policy in force it
    # would be refused, so delivery shows that no policy applied
    w = None
    if case == "bad-version":
        w = web(policy(version="STSv2"))
    elif case == "bad-syntax":
        w = web(policy() + "this line has no colon\r\n")
    elif case == "bad-mode":
        w = web(policy(mode="strict"))
    elif case == "no-txt":
        w = web(policy())
    elif case == "redirect":
        w = web(policy(), status=301)
    elif case == "not-text-plain":
        w = web(policy(), ctype="text/html")
    elif case == "too-big":
        # a valid policy (unknown keys are ignored) over 64 KiB
        w = web(policy() + ("x-pad: " + "a" * 100 + "\r\n") * 700)
    elif case == "web-other-ca":
        w = web(policy(), cert="webstranger")
    m = mx(pki["stranger"])
    srv = start(out_instance, petrel_start, dns(txt=case != "no-txt"), pki)
    send(srv, "sts-" + case)
    line = status_line(srv, "sent")
    assert line and "tls=" not in line, srv.log()
    assert len(m.wait_messages(1)) == 1 and m.transactions[0].tls
    if case == "no-txt":
        assert w.requests == [], "policy fetched without a TXT record"
    else:
        assert srv.wait_log(r"mta-sts: policy of %s not fetched" % re.escape(DOMAIN),
                            timeout=0), srv.log()
        why = {"bad-version": "invalid policy", "bad-syntax": "invalid policy",
               "bad-mode": "invalid policy", "redirect": "HTTP status 301",
               "not-text-plain": "Content-Type is not text/plain",
               "too-big": "over 65536 octets",
               "web-other-ca": "certificate not verified",
               "server-down": "connect"}[case]
        assert srv.wait_log(r"not fetched.*" + re.escape(why), timeout=0), srv.log()
