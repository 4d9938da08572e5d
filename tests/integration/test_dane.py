"""Outgoing DANE (RFC 7672, `dane = opportunistic`): a real DNSSEC-signed
test zone (signed here with ldnsutils' ldns-keygen and ldns-signzone, served
by nsd on a free loopback port, dns_util.Nsd) that the queue manager's
libunbound forwards to (`dns_resolver`) and validates from the zone's own DS
record (`dnssec_trust_anchor`). The MX is a FakeMX on port 25 of a loopback
address with STARTTLS and a certificate made here with the openssl CLI.

Cases: TLSA 3 1 1 matching -> delivered, logged tls=dane-verified; not
matching -> deferred with the reason in the queue and the log, and bounced
with it once queue_lifetime runs out, or the next MX (matching) in the same
attempt; 2 0 1 of a test CA that issued the MX's certificate -> delivered;
an MX without STARTTLS but with TLSA -> deferred, never plaintext; only
unusable (PKIX-EE) records -> STARTTLS still required, not checked; an
unsigned zone with (non-matching) TLSA -> opportunistic TLS, delivered; a
TLSA record whose signature does not hold (the validator's SERVFAIL), or
whose server does not answer (SERVFAIL) -> deferred, not bounced; the zone
served without signatures under the anchor -> deferred, so nothing
unvalidated counts as secure; a [bracketed] transport -> no DANE; DANE
connections are not kept for the next delivery; a trust anchor file that
cannot be used; an MTA-STS policy in force for the same MX (`mta_sts = on`)
gives way to its matching TLSA record. An MX host that is a CNAME (secure
chain): the TLSA records at the target are used first (matching: verified;
not matching: refused and bounced with the reason, though the MX host's own
name has none), and both names are reference identifiers. Port 25 needs root, as the test command runs (nsd too).
"""

import hashlib
import os
import re
import subprocess
import time

import pytest

from dns_util import UNBOUND, Nsd, query
from harness import procs
from harness.ports import free_ports
from harness.instance import TIMEOUT_SCALE
from mx_util import ALICE, make_message, parse_stored, queue_json, wait_for, wire
from smtp_util import read_new

WAIT = 30 * TIMEOUT_SCALE
ZONE = "dane.mxtest"
MXHOST = "mx1." + ZONE
MXADDR = "127.0.0.71"
RCPT = "rcpt@" + ZONE


def run(*args, cwd=None):
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True).stdout


def openssl(*args, cwd=None):
    return run("openssl", *args, cwd=cwd)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A self-signed certificate for the MX, and one issued by a test CA
    (the chain file holds both). Their TLSA association data."""
    d = str(tmp_path_factory.mktemp("certs"))
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    openssl("req", "-x509", *ec, "-keyout", "ee.key", "-out", "ee.pem", "-days", "30",
            "-subj", "/CN=" + MXHOST, "-addext", "subjectAltName=DNS:" + MXHOST, cwd=d)
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "30",
            "-subj", "/CN=petrel test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign", cwd=d)
    openssl("req", "-new", *ec, "-keyout", "leaf.key", "-out", "leaf.csr",
            "-subj", "/CN=" + MXHOST, cwd=d)
    with open(os.path.join(d, "ext"), "w") as f:
        f.write("subjectAltName=DNS:%s\n" % MXHOST)
    openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "leaf.pem", "-days", "30", "-extfile", "ext", cwd=d)
    with open(os.path.join(d, "chain.pem"), "w") as f:
        f.write(open(os.path.join(d, "leaf.pem")).read() + open(os.path.join(d, "ca.pem")).read())
    spki = run("sh", "-c", "openssl x509 -in ee.pem -pubkey -noout | "
               "openssl pkey -pubin -outform DER", cwd=d)
    ca_der = openssl("x509", "-in", "ca.pem", "-outform", "DER", cwd=d)
    return {
        "ee": (os.path.join(d, "ee.pem"), os.path.join(d, "ee.key")),
        "ca_chain": (os.path.join(d, "chain.pem"), os.path.join(d, "leaf.key")),
        "ee_311": "3 1 1 " + hashlib.sha256(spki).hexdigest(),
        "ca_201": "2 0 1 " + hashlib.sha256(ca_der).hexdigest(),
        "wrong_311": "3 1 1 " + hashlib.sha256(b"not the key").hexdigest(),
    }


def zone_text(tlsa, extra=()):
    lines = ["$ORIGIN %s." % ZONE, "$TTL 300",
             "@ IN SOA ns.%s. hostmaster.%s. 1 3600 600 86400 300" % (ZONE, ZONE),
             "@ IN NS ns.%s." % ZONE, "ns IN A 127.0.0.1",
             "@ IN MX 10 %s." % MXHOST, "mx1 IN A " + MXADDR]
    lines += ["_25._tcp.mx1 IN TLSA " + t for t in tlsa]
    lines += list(extra)
    return "\n".join(lines) + "\n"


def keygen(d, zone):
    """A key for zone (ldns-keygen, KSK flag, ECDSA P-256): its file base
    name and the DS record text (the trust anchor)."""
    base = run("ldns-keygen", "-a", "ECDSAP256SHA256", "-k", zone, cwd=d).decode().strip()
    return base, open(os.path.join(d, base + ".ds")).read()


@pytest.fixture
def dns(tmp_path):
    """dns(tlsa, signed=True, tamper=None) -> (resolver, trust anchor path).
    signed=False serves the zone unsigned: anchor=None gives an anchor for
    another zone (validation on, this zone not under it), anchor="zone" the
    zone's own DS (the unsigned answers are then bogus). tamper=(old, new):
    rdata replaced in the signed zone after signing. servfail=NAME: served
    through an Unbound relay under which zone NAME gets SERVFAIL."""
    made = []

    def make(tlsa, signed=True, tamper=None, anchor="zone", extra=(), servfail=None):
        d = str(tmp_path / ("zone%d" % len(made)))
        os.makedirs(d)
        text = zone_text(tlsa, extra)
        with open(os.path.join(d, "z.zone"), "w") as f:
            f.write(text)
        base, ds = keygen(d, ZONE)
        if signed:
            run("ldns-signzone", "-n", "z.zone", base, cwd=d)
            text = open(os.path.join(d, "z.zone.signed")).read()
            assert re.search(r"RRSIG\s+TLSA" if tlsa else r"RRSIG\s+MX", text)
            if tamper:
                old, new = (t.split(None, 3)[3] for t in tamper)
                assert old in text
                text = text.replace(old, new)
        if anchor != "zone":
            _, ds = keygen(d, "other.mxtest")
        ta = os.path.join(d, "anchor.ds")
        with open(ta, "w") as f:
            f.write(ds)
        ns = Nsd(d, ZONE, text, subdir="nsd")
        made.append(ns)
        if servfail is None:
            return ns.resolver, ta
        relay = Relay(d, {ZONE: ns.port, servfail: free_ports(1)[0]})
        made.append(relay)
        return relay.resolver, ta

    yield make
    for ns in made:
        ns.stop()


class Relay:
    """Unbound (iterator only, no validation of its own) on a free loopback
    port in front of the zone's nsd, for dns_resolver: stubs maps zone names
    to nsd ports; a port nothing listens on makes that zone SERVFAIL. It
    passes the DNSSEC records through for petrel's libunbound to validate."""

    def __init__(self, workdir, stubs):
        self.dir = str(workdir)
        self.proc = None
        for _ in range(4):
            self.port = free_ports(1)[0]
            lines = ["server:", "    interface: 127.0.0.1", "    port: %d" % self.port,
                     "    do-daemonize: no", "    use-syslog: no",
                     '    logfile: "%s/unbound.log"' % self.dir, '    username: ""',
                     '    chroot: ""', '    directory: "%s"' % self.dir, '    pidfile: ""',
                     "    do-ip6: no", "    access-control: 127.0.0.0/8 allow",
                     '    module-config: "iterator"', "    do-not-query-localhost: no",
                     "    local-zone: \"mxtest.\" nodefault"]
            for zone, port in stubs.items():
                lines += ["stub-zone:", '    name: "%s."' % zone,
                          "    stub-addr: 127.0.0.1@%d" % port]
            lines += ["remote-control:", "    control-enable: no"]
            conf = os.path.join(self.dir, "unbound.conf")
            with open(conf, "w") as f:
                f.write("\n".join(lines) + "\n")
            self.proc = subprocess.Popen([UNBOUND, "-d", "-c", conf], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 10 * TIMEOUT_SCALE
            while time.monotonic() < deadline and self.proc.poll() is None:
                if query(self.port, ZONE, qtype=6, timeout=0.3) == 0:
                    self.resolver = "127.0.0.1:%d" % self.port
                    return
                time.sleep(0.05)
            procs.terminate(self.proc)
        raise AssertionError("unbound did not answer for %s on 127.0.0.1:%d" % (ZONE, self.port))

    def stop(self):
        procs.terminate(self.proc)


@pytest.fixture
def mx(fake_mx):
    if os.geteuid() != 0:
        pytest.fail("port 25 and nsd need root (the test command runs as root)")

    def make(cert, host=MXADDR, **kw):
        return fake_mx(host=host, port=25, pipelining=True, starttls=cert is not None,
                       cert=cert, **kw)
    return make


def start(out_instance, petrel_start, resolver, anchor, *opts):
    return petrel_start(out_instance, ("relayhost=", "dns_resolver=" + resolver,
                                       "dane=opportunistic", "dnssec_trust_anchor=" + anchor,
                                       "queue_retry_min=3600") + opts)


def send(srv, subject, rcpt=RCPT):
    msg = make_message(subject, b"body\r\n", to=rcpt)
    assert srv.submit(ALICE, ALICE, [rcpt], wire(msg)).code == 250


def status_line(srv, status, rcpt=RCPT, timeout=WAIT):
    found = srv.wait_log(r"to=<%s>, relay=.*status=%s" % (re.escape(rcpt), status),
                         timeout=timeout)
    return found[-1] if found else None


def queued_last(inst):
    """The `last` texts of the queued recipients."""
    return [r.get("last", "") for m in queue_json(inst) for r in m.get("recipients", [])]


def test_dane_ee_match_delivers_verified(out_instance, petrel_start, dns, mx, certs):
    resolver, ta = dns([certs["ee_311"]])
    m = mx(certs["ee"])
    srv = start(out_instance, petrel_start, resolver, ta)
    send(srv, "dane-ee")
    line = status_line(srv, "sent")
    assert line and "tls=dane-verified" in line, srv.log()
    assert "relay=%s[%s]:25" % (MXHOST, MXADDR) in line
    msgs = m.wait_messages(1)
    assert len(msgs) == 1 and m.transactions[0].tls


def test_dane_ee_mismatch_defers_then_bounces(out_instance, petrel_start, dns, mx, certs):
    resolver, ta = dns([certs["wrong_311"]])
    m = mx(certs["ee"])
    srv = start(out_instance, petrel_start, resolver, ta)
    send(srv, "dane-mismatch")
    line = status_line(srv, "deferred")
    why = "4.7.5 TLSA records do not match the certificate of " + MXHOST
    assert line and why in line and "tls=" not in line, srv.log()
    assert srv.wait_log(r"warning: \w+: 451 " + re.escape(why), timeout=0), srv.log()
    assert m.transactions == [] or not any(t.accepted for t in m.transactions)
    last = wait_for(lambda: [t for t in queued_last(out_instance) if why in t])
    assert last, queue_json(out_instance)
    assert m.messages() == []
    srv.stop()

    # with a short queue_lifetime the bounce states the reason
    srv = start(out_instance, petrel_start, resolver, ta, "queue_lifetime=1",
                "queue_retry_min=1")
    assert wait_for(lambda: read_new(out_instance, ALICE)), srv.log()
    dsn = parse_stored(read_new(out_instance, ALICE)[0])
    text = dsn.as_string()
    assert why in text and RCPT in text, text
    assert m.messages() == []


def test_dane_ta_with_test_ca_delivers(out_instance, petrel_start, dns, mx, certs):
    resolver, ta = dns([certs["ca_201"]])
    m = mx(certs["ca_chain"])
    srv = start(out_instance, petrel_start, resolver, ta)
    send(srv, "dane-ta")
    line = status_line(srv, "sent")
    assert line and "tls=dane-verified" in line, srv.log()
    assert len(m.wait_messages(1)) == 1


def test_dane_ta_other_ca_is_refused(out_instance, petrel_start, dns, mx, certs):
    # the self-signed certificate does not chain to the published CA
    resolver, ta = dns([certs["ca_201"]])
    m = mx(certs["ee"])
    srv = start(out_instance, petrel_start, resolver, ta)
    send(srv, "dane-ta-other")
    line = status_line(srv, "deferred")
    assert line and "TLSA records do not match" in line, srv.log()
    assert m.messages() == []


def test_no_starttls_with_tlsa_defers(out_instance, petrel_start, dns, mx, certs):
    resolver, ta = dns([certs["ee_311"]])
    m = mx(None)
    srv = start(out_instance, petrel_start, resolver, ta)
    send(srv, "dane-plain")
    line = status_line(srv, "deferred")
    assert line and "4.7.4 %s offers no STARTTLS" % MXHOST in line, srv.log()
    assert m.connections >= 1 and m.messages() == []
    assert not [c for _, c in m.commands if c.upper().startswith("MAIL")]


def test_insecure_zone_is_opportunistic(out_instance, petrel_start, dns, mx, certs):
    # unsigned zone (the anchor is another zone's): its TLSA records count
    # for nothing, not even the wrong one
    resolver, ta = dns([certs["wrong_311"]], signed=False, anchor=None)
    m = mx(certs["ee"])
    srv = start(out_instance, petrel_start, resolver, ta)
    send(srv, "insecure")
    line = status_line(srv, "sent")
    assert line and "tls=" not in line, srv.log()
    assert len(m.wait_messages(1)) == 1 and m.transactions[0].tls


def test_tlsa_bogus_defers(out_instance, petrel_start, dns, mx, certs):
    # signed with the wrong record, then served with the matching one: the
    # validator refuses it (SERVFAIL); without validation it would match
    resolver, ta = dns([certs["wrong_311"]], tamper=(certs["wrong_311"], certs["ee_311"]))
    m = mx(certs["ee"])
    srv = start(out_instance, petrel_start, resolver, ta)
    send(srv, "servfail")
    line = status_line(srv, "deferred")
    assert line and "4.7.5 TLSA lookup for _25._tcp.%s failed" % MXHOST in line, srv.log()
    assert m.connections == 0 and m.messages() == []
    assert not srv.wait_log(r"status=bounced", timeout=0)
    assert len(queue_json(out_instance)) == 1


def test_unsigned_answers_under_the_anchor_are_not_secure(out_instance, petrel_start, dns, mx,
                                                         certs):
    # the anchor says the zone is signed; served unsigned, its answers are
    # bogus: nothing is delivered on them (without validation the MX would
    # have been taken, and the matching TLSA too)
    resolver, ta = dns([certs["ee_311"]], signed=False)
    m = mx(certs["ee"])
    srv = start(out_instance, petrel_start, resolver, ta)
    send(srv, "bogus")
    line = status_line(srv, "deferred")
    assert line and "failed DNSSEC validation" in line, srv.log()
    assert m.connections == 0 and m.messages() == []


def test_bracketed_transport_has_no_dane(out_instance, petrel_start, dns, mx, certs):
    # as Postfix: smtp:[host] skips the MX lookup, and DANE with it
    resolver, ta = dns([certs["wrong_311"]])
    m = mx(certs["ee"])
    out_instance.run("domain", "add", "bracket.example", "--transport",
                     "smtp:[%s]:25" % MXHOST)
    srv = start(out_instance, petrel_start, resolver, ta)
    send(srv, "bracket", rcpt="x@bracket.example")
    line = status_line(srv, "sent", rcpt="x@bracket.example")
    assert line and "tls=" not in line, srv.log()
    assert len(m.wait_messages(1)) == 1


def test_unusable_tlsa_means_tls_without_a_match(out_instance, petrel_start, dns, mx, certs):
    # only PKIX-EE(1), which RFC 7672 leaves unusable in SMTP: TLS is still
    # required (never plaintext), the certificate is not checked
    resolver, ta = dns(["1 1 1 " + certs["wrong_311"].split()[3]])
    plain = mx(None)
    srv = start(out_instance, petrel_start, resolver, ta)
    send(srv, "unusable")
    line = status_line(srv, "deferred")
    assert line and "offers no STARTTLS" in line, srv.log()
    assert plain.messages() == []
    plain.stop()
    m = mx(certs["ee"])
    out_instance.run("queue", "flush")
    line = status_line(srv, "sent")
    assert line and "tls=dane-encrypted" in line, srv.log()
    assert len(m.wait_messages(1)) == 1 and m.transactions[0].tls


def test_mismatch_tries_the_next_mx(out_instance, petrel_start, dns, mx, certs):
    # mx1 (preference 10) does not match its records; mx2 (20) matches its
    # own: the same attempt goes on to mx2, and mx1 never sees a MAIL
    mx2 = "mx2." + ZONE
    resolver, ta = dns([certs["wrong_311"]], extra=(
        "@ IN MX 20 %s." % mx2, "mx2 IN A 127.0.0.72",
        "_25._tcp.mx2 IN TLSA " + certs["ee_311"]))
    m1 = mx(certs["ee"])
    m2 = mx(certs["ee"], host="127.0.0.72")
    srv = start(out_instance, petrel_start, resolver, ta)
    send(srv, "next-mx")
    line = status_line(srv, "sent")
    assert line and "relay=%s[127.0.0.72]:25" % mx2 in line and "attempts=1" in line, srv.log()
    assert "tls=dane-verified" in line
    assert srv.wait_log(r"TLSA records do not match the certificate of %s.*next address"
                        % re.escape(MXHOST), timeout=0), srv.log()
    assert m1.connections >= 1 and m1.messages() == []
    assert not [c for _, c in m1.commands if c.upper().startswith("MAIL")]
    assert len(m2.wait_messages(1)) == 1


def test_trust_anchor_checked(out_instance, petrel_start, dns, mx, certs, tmp_path):
    # petrel check names an anchor that cannot be used; the queue manager
    # warns and delivers with opportunistic TLS only (the wrong record
    # then counts for nothing)
    resolver, ta = dns([certs["wrong_311"]])
    bad = str(tmp_path / "bad.key")
    with open(bad, "w") as f:
        f.write("this is not a DS record\n")
    missing = str(tmp_path / "missing.key")
    for path in (bad, missing):
        cp = out_instance.run("-o", "dane=opportunistic", "-o", "dnssec_trust_anchor=" + path,
                              "check", check=False)
        assert cp.returncode == 1 and "dnssec_trust_anchor" in cp.stderr, cp.stderr
    cp = out_instance.run("-o", "dane=opportunistic", "-o", "dnssec_trust_anchor=" + ta,
                          "-o", "dns_resolver=" + resolver, "check", check=False)
    assert cp.returncode == 0, cp.stderr
    cp = out_instance.run("-o", "dane=off", "-o", "dnssec_trust_anchor=" + missing, "check",
                          check=False)
    assert cp.returncode == 0, cp.stderr
    m = mx(certs["ee"])
    srv = start(out_instance, petrel_start, resolver, bad)
    assert srv.wait_log(r"warning: dane: dnssec_trust_anchor: .*bad\.key.*opportunistic TLS "
                        r"only", timeout=WAIT), srv.log()
    send(srv, "bad-anchor")
    line = status_line(srv, "sent")
    assert line and "tls=" not in line, srv.log()
    assert len(m.wait_messages(1)) == 1


def test_dane_connections_are_not_kept(out_instance, petrel_start, dns, mx, certs):
    # the outbound connection cache keeps connections for the next
    # delivery to the same next hop; a DANE session is never kept (nor a
    # kept one taken for a host that needs DANE): each delivery checks the
    # certificate on its own connection
    resolver, ta = dns([certs["ee_311"]])
    m = mx(certs["ee"])
    srv = start(out_instance, petrel_start, resolver, ta)
    send(srv, "first")
    assert status_line(srv, "sent"), srv.log()
    assert len(m.wait_messages(1)) == 1
    send(srv, "second")
    lines = srv.wait_log(r"to=<%s>, relay=.*status=sent" % re.escape(RCPT), count=2,
                         timeout=WAIT)
    assert len(lines) == 2, srv.log()
    assert all("tls=dane-verified" in l and "conn_use=" not in l for l in lines), lines
    assert len(m.wait_messages(2)) == 2
    assert m.connections == 2 and all(t.tls for t in m.transactions)


def test_tlsa_lookup_servfail_defers(out_instance, petrel_start, dns, mx, certs):
    # the TLSA name's server does not answer: SERVFAIL from the resolver
    # (the MX and address lookups still validate): deferred, not bounced,
    # and nothing sent to the MX
    resolver, ta = dns([certs["ee_311"]], servfail="_tcp.mx1." + ZONE)
    m = mx(certs["ee"])
    srv = start(out_instance, petrel_start, resolver, ta)
    send(srv, "servfail")
    line = status_line(srv, "deferred")
    assert line and "4.7.5 TLSA lookup for _25._tcp.%s failed" % MXHOST in line, srv.log()
    assert m.connections == 0 and m.messages() == []
    assert not srv.wait_log(r"status=bounced", timeout=0)


def test_dane_wins_over_mta_sts(out_instance, petrel_start, dns, mx, certs, tmp_path):
    # the zone publishes an MTA-STS policy in force naming the MX too; the
    # MX's self-signed certificate would fail its PKIX check, but its TLSA
    # record matches, and DANE decides (RFC 8461 2)
    from pki_util import make_pki
    from test_mta_sts import WEBADDR, PolicyServer, policy
    (tmp_path / "pki").mkdir()
    pki = make_pki(tmp_path / "pki", [("web", "ca", "DNS:mta-sts." + ZONE)])
    web = PolicyServer(pki["web"], policy(mx=(MXHOST,)))
    try:
        resolver, ta = dns([certs["ee_311"]], extra=(
            '_mta-sts IN TXT "v=STSv1; id=dane1"', "mta-sts IN A " + WEBADDR))
        m = mx(certs["ee"])
        srv = start(out_instance, petrel_start, resolver, ta, "mta_sts=on",
                    "smtp_tls_ca=" + pki["ca"])
        send(srv, "dane-and-mta-sts")
        line = status_line(srv, "sent")
        assert line and "tls=dane-verified" in line, srv.log()
        assert len(m.wait_messages(1)) == 1
        assert web.requests, "the policy was not even fetched\n" + srv.log()
    finally:
        web.stop()


# An MX host that is a CNAME (RFC 7672 2.2.2, RFC 7671 7): cn.dane.mxtest's
# MX is alias.dane.mxtest, a CNAME for mx1 in the same signed zone, so the
# chain is secure: the TLSA base domain tried first is mx1 (the expanded
# name), then alias; both are reference identifiers.
CN_RCPT = "rcpt@cn." + ZONE
ALIAS = "alias." + ZONE
CNAME = ("cn IN MX 10 %s." % ALIAS, "alias IN CNAME %s." % MXHOST)


def test_cname_mx_uses_tlsa_at_the_target(out_instance, petrel_start, dns, mx, certs):
    # the records are at _25._tcp.mx1 only; looked up under alias alone
    # there would be none, and the delivery not DANE-verified
    resolver, ta = dns([certs["ee_311"]], extra=CNAME)
    m = mx(certs["ee"])
    srv = start(out_instance, petrel_start, resolver, ta)
    send(srv, "cname-dane", rcpt=CN_RCPT)
    line = status_line(srv, "sent", rcpt=CN_RCPT)
    assert line and "tls=dane-verified" in line, srv.log()
    assert "relay=%s[%s]:25" % (ALIAS, MXADDR) in line, line
    assert len(m.wait_messages(1)) == 1 and m.transactions[0].tls


def test_cname_mx_mismatch_at_the_target_refuses(out_instance, petrel_start, dns, mx, certs):
    # a wrong record at the target, none at the MX host's own name: not
    # delivered (without the CNAME rule it would go with opportunistic
    # TLS), and the bounce says why
    resolver, ta = dns([certs["wrong_311"]], extra=CNAME)
    m = mx(certs["ee"])
    srv = start(out_instance, petrel_start, resolver, ta, "queue_lifetime=1",
                "queue_retry_min=1")
    send(srv, "cname-mismatch", rcpt=CN_RCPT)
    why = "4.7.5 TLSA records do not match the certificate of " + MXHOST
    line = status_line(srv, "(deferred|bounced)", rcpt=CN_RCPT)
    assert line and why in line, srv.log()
    assert wait_for(lambda: read_new(out_instance, ALICE)), srv.log()
    dsn = parse_stored(read_new(out_instance, ALICE)[0])
    text = dsn.as_string()
    assert why in text and CN_RCPT in text, text
    assert m.messages() == []
    assert not [c for _, c in m.commands if c.upper().startswith("MAIL")]


def test_cname_mx_both_names_are_reference_identifiers(out_instance, petrel_start, dns, mx,
                                                       certs):
    # no records at the target, DANE-TA(2) at alias: alias is the base
    # domain, and the certificate names only mx1, the target: it passes
    # because the expanded name is a reference identifier too
    resolver, ta = dns([], extra=CNAME + ("_25._tcp.alias IN TLSA " + certs["ca_201"],))
    m = mx(certs["ca_chain"])
    srv = start(out_instance, petrel_start, resolver, ta)
    send(srv, "cname-refid", rcpt=CN_RCPT)
    line = status_line(srv, "sent", rcpt=CN_RCPT)
    assert line and "tls=dane-verified" in line, srv.log()
    assert len(m.wait_messages(1)) == 1
