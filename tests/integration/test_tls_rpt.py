"""SMTP TLS reporting (RFC 8460): `tls_rpt_reports`, `tls_rpt_from`,
`tls_rpt_org` and `petrel tlsrpt report [--dry-run]`.

The set-up is test_mta_sts.py's: a local DNS server (dns_util.LocalDNS)
publishes the recipient domain sts.mxtest with two MX hosts, mx0 (first,
127.0.0.81, named by no mx line of the domain's MTA-STS policy) and mx1
(127.0.0.82, a FakeMX on port 25 with a certificate of the test CA that
petrel trusts through smtp_tls_ca); the policy (mode enforce, mx: mx1) is
served over HTTPS on 127.0.0.83:443. Each message is refused at mx0 by the
policy (never connected) and delivered at mx1 over verified TLS: both
sessions are recorded. The domain's _smtp._tls TXT record names a
mailto: address at reports.mxtest (whose MX is a FakeMX on 127.0.0.84:25:
the report is read back from what it received, gunzipped and parsed) and
an https: URI on reports.mxtest (127.0.0.85, a Python HTTPS server of the
test CA on a free port, which records the POST).

Cases: the rows and the report's JSON (organization-name, contact-info,
date-range, report-id, the sts policy with its policy-string and mx-host,
the counts, the failure's result type, sending and receiving addresses,
the receiving MX), the mail's headers (Subject, TLS-Report-Domain,
TLS-Report-Submitter, multipart/report; report-type="tlsrpt", the RFC 8460
file name) and the POST's Content-Type; --dry-run keeps the rows; a second
run sends nothing; the setting off records nothing; no TLSRPT record drops
the rows; rua URIs petrel cannot use are skipped with a line; an MX with a
certificate of another CA is certificate-not-trusted; a testing-mode
policy that does not name the MX is a failure while the mail goes; under
DANE (test_dane.py's DNSSEC-signed zone served by nsd) a TLSA mismatch and
a match are recorded under policy type tlsa with their records; CLI errors
are one line and exit 1. Ports 25 and 443 need root, as the test command
runs.
"""

import email
import email.policy
import gzip
import http.server
import json
import os
import re
import sqlite3
import ssl
import threading

import pytest

from dns_util import LocalDNS
from harness.instance import TIMEOUT_SCALE
from harness.maildir import queue_dir
from mx_util import ALICE, HOSTNAME, make_message, wait_for, wire
from pki_util import make_pki
from smtp_util import free_port
import test_dane
from test_dane import certs, dns as dane_zone  # noqa: F401 (fixtures)
from test_mta_sts import policy

WAIT = 30 * TIMEOUT_SCALE
DOMAIN = "sts.mxtest"
# addresses of their own: test_dane.py and test_mta_sts.py bind port 25 and
# 443 on 127.0.0.71-73
MX0, MX0ADDR = "mx0." + DOMAIN, "127.0.0.81"
MX1, MX1ADDR = "mx1." + DOMAIN, "127.0.0.82"
WEBADDR = "127.0.0.83"
REPMX, REPMXADDR = "rep.reports.mxtest", "127.0.0.84"
REPWEB = "127.0.0.85"
RCPT = "rcpt@" + DOMAIN
REPORT_FROM = "tlsrpt@reporter.test"
ORG = "Reporter Org"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"),
                    [("mx", "ca", "DNS:" + MX1),
                     ("stranger", "otherca", "DNS:" + MX1),
                     ("web", "ca", "DNS:mta-sts." + DOMAIN),
                     ("reports", "ca", "DNS:reports.mxtest")])


class PolicyServer:
    """HTTPS on WEBADDR:443 serving `body` at /.well-known/mta-sts.txt."""

    def __init__(self, cert, body):
        body = body.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path != "/.well-known/mta-sts.txt":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer((WEBADDR, 443), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*cert)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class ReportServer:
    """HTTPS on REPWEB:port that records each POST (path, headers, body)."""

    def __init__(self, cert):
        self.posts = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                outer.posts.append((self.path, dict(self.headers), self.rfile.read(n)))
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer((REPWEB, 0), Handler)
        self.port = self.httpd.server_address[1]
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*cert)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def env(tmp_path, pki, fake_mx):
    """The policy server, the MX, the report receivers; dns(rua) starts the
    DNS server with that rua= in _smtp._tls (None: no record)."""
    if os.geteuid() != 0:
        pytest.fail("ports 25 and 443 need root (the test command runs as root)")
    stop = []
    web = PolicyServer(pki["web"], policy(mx=(MX1,)))
    stop.append(web)
    rep = ReportServer(pki["reports"])
    stop.append(rep)
    mx = fake_mx(host=MX1ADDR, port=25, pipelining=True, starttls=True, cert=pki["mx"])
    repmx = fake_mx(host=REPMXADDR, port=25, pipelining=True)

    def dns(rua, record=None):
        records = ["%s. 300 IN MX 10 %s." % (DOMAIN, MX0),
                   "%s. 300 IN MX 20 %s." % (DOMAIN, MX1),
                   "%s. 300 IN A %s" % (MX0, MX0ADDR),
                   "%s. 300 IN A %s" % (MX1, MX1ADDR),
                   "mta-sts.%s. 300 IN A %s" % (DOMAIN, WEBADDR),
                   '_mta-sts.%s. 300 IN TXT "v=STSv1; id=20261207T1"' % DOMAIN,
                   "reports.mxtest. 300 IN MX 10 %s." % REPMX,
                   "%s. 300 IN A %s" % (REPMX, REPMXADDR),
                   "reports.mxtest. 300 IN A %s" % REPWEB]
        if record is None and rua is not None:
            record = "v=TLSRPTv1; rua=%s" % rua
        if record is not None:
            records.append('_smtp._tls.%s. 300 IN TXT "%s"' % (DOMAIN, record))
        ns = LocalDNS(tmp_path / ("dns%d" % len(stop)), records)
        stop.append(ns)
        return ns.resolver

    class Env:
        pass
    e = Env()
    e.web, e.rep, e.mx, e.repmx, e.dns = web, rep, mx, repmx, dns
    e.https = "https://reports.mxtest:%d/v1/tlsrpt" % rep.port
    yield e
    for s in stop:
        s.stop()


def start(inst, petrel_start, resolver, pki, *opts):
    return petrel_start(inst, ("relayhost=", "dns_resolver=" + resolver, "mta_sts=on",
                               "smtp_tls_ca=" + pki["ca"], "queue_retry_min=3600",
                               "tls_rpt_reports=yes") + opts)


def send(srv, subject, count):
    msg = make_message(subject, b"body\r\n", to=RCPT)
    assert srv.submit(ALICE, ALICE, [RCPT], wire(msg)).code == 250
    found = srv.wait_log(r"to=<%s>, relay=.*status=sent" % re.escape(RCPT),
                         count=count, timeout=WAIT)
    assert found and "tls=mta-sts-verified" in found[-1], srv.log()


def rows(inst, domain=DOMAIN):
    path = os.path.join(queue_dir(inst), "state.db")
    if not os.path.exists(path):
        return []
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=10)
    try:
        return db.execute("SELECT ptype, result, rmx, rip FROM tls_rpt WHERE domain = ? "
                          "ORDER BY id", (domain,)).fetchall()
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):
            return []
        raise
    finally:
        db.close()


def report(inst, resolver, pki, *args, check=True, opts=()):
    o = []
    for kv in ("dns_resolver=" + resolver, "hostname=" + HOSTNAME,
               "tls_rpt_from=" + REPORT_FROM, "tls_rpt_org=" + ORG,
               "smtp_tls_ca=" + pki["ca"]) + tuple(opts):
        o += ["-o", kv]
    return inst.run(*o, "tlsrpt", "report", *args, check=check)


def check_json(doc, successes=2, failures=2):
    assert doc["organization-name"] == ORG
    assert doc["contact-info"] == REPORT_FROM
    assert doc["report-id"].endswith("@reporter.test")
    dr = doc["date-range"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT00:00:00Z", dr["start-datetime"]), dr
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT23:59:59Z", dr["end-datetime"]), dr
    assert len(doc["policies"]) == 1, doc
    p = doc["policies"][0]
    assert p["policy"]["policy-type"] == "sts"
    assert p["policy"]["policy-domain"] == DOMAIN
    assert p["policy"]["policy-string"] == ["version: STSv1", "mode: enforce",
                                            "mx: " + MX1, "max_age: 86400"], p
    assert p["policy"]["mx-host"] == [MX1]
    assert p["summary"] == {"total-successful-session-count": successes,
                            "total-failure-session-count": failures}, p
    fd = p["failure-details"]
    assert len(fd) == 1, fd
    assert fd[0]["result-type"] == "validation-failure"
    assert fd[0]["receiving-mx-hostname"] == MX0
    assert fd[0]["receiving-ip"] == MX0ADDR
    assert fd[0]["failed-session-count"] == failures
    assert "sending-mta-ip" not in fd[0]        # never connected


def test_sessions_recorded_and_reported(out_instance, petrel_start, env, pki):
    resolver = env.dns("mailto:tlsrpt@reports.mxtest," + env.https)
    srv = start(out_instance, petrel_start, resolver, pki)
    send(srv, "rpt-1", 1)
    send(srv, "rpt-2", 2)
    assert len(env.mx.wait_messages(2)) == 2
    # the mismatch before each delivery, then the verified session
    want = [("sts", "validation-failure", MX0, MX0ADDR), ("sts", "", MX1, MX1ADDR)] * 2
    assert wait_for(lambda: rows(out_instance) == want, timeout=WAIT), rows(out_instance)

    # --dry-run: what would go where, the JSON; the rows stay
    cp = report(out_instance, resolver, pki, "--dry-run")
    out = cp.stdout
    first = out.splitlines()[0]
    assert first.startswith(DOMAIN + ": 4 sessions, report ") and \
        "mailto:tlsrpt@reports.mxtest" in first and env.https in first, out
    check_json(json.loads(out[out.index("{"):]))
    assert rows(out_instance) == want
    assert env.rep.posts == [] and env.repmx.transactions == []

    cp = report(out_instance, resolver, pki)
    assert "%s: 4 sessions reported" % DOMAIN in cp.stdout, cp.stdout + cp.stderr
    assert rows(out_instance) == []

    # https: one POST of the gzipped JSON
    assert len(env.rep.posts) == 1, env.rep.posts
    path, headers, body = env.rep.posts[0]
    assert path == "/v1/tlsrpt"
    assert headers["Content-Type"] == "application/tlsrpt+gzip"
    posted = json.loads(gzip.decompress(body))
    check_json(posted)

    # mailto: the mail as RFC 8460 5.3 has it
    got = env.repmx.wait_messages(1)
    assert len(got) == 1, env.repmx.transactions
    t = got[0]
    assert t.rcpts == ["tlsrpt@reports.mxtest"] and t.mail_from == REPORT_FROM
    msg = email.message_from_bytes(t.data, policy=email.policy.default)
    rid = posted["report-id"]
    assert msg["Subject"] == "Report Domain: %s Submitter: reporter.test Report-ID: <%s>" \
        % (DOMAIN, rid), msg["Subject"]
    assert msg["TLS-Report-Domain"] == DOMAIN
    assert msg["TLS-Report-Submitter"] == "reporter.test"
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "tlsrpt"
    att = [p for p in msg.iter_attachments()]
    assert len(att) == 1 and att[0].get_content_type() == "application/tlsrpt+gzip"
    fn = att[0].get_filename()
    assert re.fullmatch(r"reporter\.test!%s!\d+!\d+!\w+\.json\.gz" % re.escape(DOMAIN), fn), fn
    begin, end = (int(x) for x in fn.split("!")[2:4])
    assert end - begin == 86400 and begin % 86400 == 0
    assert json.loads(gzip.decompress(att[0].get_content())) == posted

    # nothing left: a second run sends nothing new
    n_posts = len(env.rep.posts)
    report(out_instance, resolver, pki)
    assert len(env.rep.posts) == n_posts


def test_off_by_default_records_nothing(out_instance, petrel_start, env, pki):
    resolver = env.dns("mailto:tlsrpt@reports.mxtest")
    srv = petrel_start(out_instance, ("relayhost=", "dns_resolver=" + resolver, "mta_sts=on",
                                      "smtp_tls_ca=" + pki["ca"], "queue_retry_min=3600"))
    send(srv, "rpt-off", 1)
    assert rows(out_instance) == []
    cp = report(out_instance, resolver, pki)
    assert "no TLS report to send" in cp.stdout
    assert env.rep.posts == [] and env.repmx.transactions == []


def test_no_record_drops_rows(out_instance, petrel_start, env, pki):
    resolver = env.dns(None)
    srv = start(out_instance, petrel_start, resolver, pki)
    send(srv, "rpt-norecord", 1)
    assert wait_for(lambda: len(rows(out_instance)) == 2, timeout=WAIT), rows(out_instance)
    cp = report(out_instance, resolver, pki)
    assert "%s: 2 sessions, no TLSRPT record at _smtp._tls: dropped" % DOMAIN in cp.stdout, \
        cp.stdout + cp.stderr
    assert rows(out_instance) == []
    assert env.rep.posts == [] and env.repmx.transactions == []


def test_bad_rua_skipped(out_instance, petrel_start, env, pki):
    resolver = env.dns(None, record="v=TLSRPTv1; rua=ftp://reports.mxtest/x,"
                       "mailto:no-at-sign,https://user@reports.mxtest/x," + env.https)
    srv = start(out_instance, petrel_start, resolver, pki)
    send(srv, "rpt-badrua", 1)
    assert wait_for(lambda: len(rows(out_instance)) == 2, timeout=WAIT), rows(out_instance)
    cp = report(out_instance, resolver, pki)
    err = cp.stderr
    assert "rua ftp://reports.mxtest/x: not a mailto: or https: URI" in err, err
    assert "rua mailto:no-at-sign: not a mailto: or https: URI" in err, err
    assert "rua https://user@reports.mxtest/x: not an https: URI petrel posts to" in err, err
    assert len(env.rep.posts) == 1
    check_json(json.loads(gzip.decompress(env.rep.posts[0][2])), successes=1, failures=1)
    assert rows(out_instance) == []
    assert env.repmx.transactions == []


def test_post_refused_keeps_rows(out_instance, petrel_start, env, pki):
    # the only destination fails (a URI on a closed port): kept, exit 1
    closed = free_port(REPWEB)
    resolver = env.dns("https://reports.mxtest:%d/x" % closed)
    srv = start(out_instance, petrel_start, resolver, pki)
    send(srv, "rpt-closed", 1)
    assert wait_for(lambda: len(rows(out_instance)) == 2, timeout=WAIT), rows(out_instance)
    cp = report(out_instance, resolver, pki, check=False)
    assert cp.returncode == 1
    assert "reached no destination; kept" in cp.stderr, cp.stderr
    assert len(rows(out_instance)) == 2


def test_untrusted_certificate(out_instance, petrel_start, env, pki, fake_mx):
    # mx1 with a certificate of another CA: certificate-not-trusted, deferred
    env.mx.stop()
    fake_mx(host=MX1ADDR, port=25, pipelining=True, starttls=True, cert=pki["stranger"])
    resolver = env.dns(env.https)
    srv = start(out_instance, petrel_start, resolver, pki)
    msg = make_message("rpt-untrusted", b"body\r\n", to=RCPT)
    assert srv.submit(ALICE, ALICE, [RCPT], wire(msg)).code == 250
    assert srv.wait_log(r"to=<%s>, relay=.*status=deferred" % re.escape(RCPT), timeout=WAIT)
    want = [("sts", "validation-failure", MX0, MX0ADDR),
            ("sts", "certificate-not-trusted", MX1, MX1ADDR)]
    assert wait_for(lambda: rows(out_instance) == want, timeout=WAIT), rows(out_instance)
    report(out_instance, resolver, pki)
    doc = json.loads(gzip.decompress(env.rep.posts[0][2]))
    p = doc["policies"][0]
    assert p["summary"] == {"total-successful-session-count": 0,
                            "total-failure-session-count": 2}
    nt = [f for f in p["failure-details"] if f["result-type"] == "certificate-not-trusted"]
    assert len(nt) == 1 and nt[0]["receiving-mx-hostname"] == MX1
    assert nt[0]["sending-mta-ip"].startswith("127.") and nt[0]["receiving-ip"] == MX1ADDR


def test_cli_errors(out_instance, env, pki):
    resolver = env.dns(None)
    for args, opts in ((("--bogus",), ()), (("x",), ()), ((), ("tls_rpt_from=not an address",))):
        o = []
        for kv in ("dns_resolver=" + resolver,) + opts:
            o += ["-o", kv]
        cp = out_instance.run(*o, "tlsrpt", *(("report",) + args if args != ("x",) else args),
                              check=False)
        assert cp.returncode == 1, (args, cp.stdout, cp.stderr)
        assert len(cp.stderr.strip().splitlines()) == 1, cp.stderr


def test_testing_policy_mismatch_is_a_failure(out_instance, petrel_start, env, pki):
    # mode testing naming only mx0 (no server there: no session); mx1 gets
    # the mail over TLS, and the report counts the mismatch as a failure
    env.web.stop()
    env.web = PolicyServer(pki["web"], policy(mode="testing", mx=(MX0,)))
    try:
        resolver = env.dns(env.https)
        srv = start(out_instance, petrel_start, resolver, pki)
        msg = make_message("rpt-testing", b"body\r\n", to=RCPT)
        assert srv.submit(ALICE, ALICE, [RCPT], wire(msg)).code == 250
        assert srv.wait_log(r"to=<%s>, relay=%s.*status=sent" % (re.escape(RCPT),
                                                                 re.escape(MX1)),
                            timeout=WAIT), srv.log()
        assert len(env.mx.wait_messages(1)) == 1 and env.mx.transactions[0].tls
        want = [("sts", "validation-failure", MX1, MX1ADDR)]
        assert wait_for(lambda: rows(out_instance) == want, timeout=WAIT), rows(out_instance)
        report(out_instance, resolver, pki)
        p = json.loads(gzip.decompress(env.rep.posts[0][2]))["policies"][0]
        assert p["policy"]["policy-string"][1] == "mode: testing"
        assert p["summary"] == {"total-successful-session-count": 0,
                                "total-failure-session-count": 1}
        assert p["failure-details"][0]["failure-reason-code"] == "mx host not in the policy"
    finally:
        env.web.stop()


DANE1, DANE2 = "127.0.0.86", "127.0.0.87"


def test_dane_sessions_recorded(out_instance, petrel_start, fake_mx, certs, dane_zone, pki,
                                monkeypatch):
    # test_dane.py's signed zone: mx1 (first) with a TLSA record its
    # certificate does not match, mx2 with one it does; the TLSRPT record
    # in the same zone
    if os.geteuid() != 0:
        pytest.fail("port 25 and nsd need root (the test command runs as root)")
    monkeypatch.setattr(test_dane, "MXADDR", DANE1)
    zone = test_dane.ZONE
    resolver, ta = dane_zone([certs["wrong_311"]], extra=(
        "@ IN MX 20 mx2.%s." % zone, "mx2 IN A " + DANE2,
        "_25._tcp.mx2 IN TLSA " + certs["ee_311"],
        '_smtp._tls IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@reports.mxtest"'))
    fake_mx(host=DANE1, port=25, pipelining=True, starttls=True, cert=certs["ee"])
    m2 = fake_mx(host=DANE2, port=25, pipelining=True, starttls=True, cert=certs["ee"])
    srv = petrel_start(out_instance, ("relayhost=", "dns_resolver=" + resolver,
                                      "dane=opportunistic", "dnssec_trust_anchor=" + ta,
                                      "queue_retry_min=3600", "tls_rpt_reports=yes"))
    rcpt = test_dane.RCPT
    msg = make_message("rpt-dane", b"body\r\n", to=rcpt)
    assert srv.submit(ALICE, ALICE, [rcpt], wire(msg)).code == 250
    assert srv.wait_log(r"to=<%s>, relay=mx2.*tls=dane-verified.*status=sent" % re.escape(rcpt),
                        timeout=WAIT), srv.log()
    assert len(m2.wait_messages(1)) == 1
    want = [("tlsa", "validation-failure", "mx1." + zone, DANE1),
            ("tlsa", "", "mx2." + zone, DANE2)]
    assert wait_for(lambda: rows(out_instance, zone) == want, timeout=WAIT), \
        rows(out_instance, zone)
    cp = report(out_instance, resolver, pki, "--dry-run")
    first, out = cp.stdout.splitlines()[0], cp.stdout
    assert first.startswith(zone + ": 2 sessions") and \
        first.endswith("would go to mailto:tlsrpt@reports.mxtest"), out
    doc = json.loads(out[out.index("{"):])
    pol = {tuple(p["policy"]["policy-string"]): p for p in doc["policies"]}
    assert set(pol) == {(certs["wrong_311"],), (certs["ee_311"],)}, pol
    bad, good = pol[(certs["wrong_311"],)], pol[(certs["ee_311"],)]
    assert bad["policy"]["policy-type"] == "tlsa" and bad["policy"]["policy-domain"] == zone
    assert bad["summary"] == {"total-successful-session-count": 0,
                              "total-failure-session-count": 1}
    fd = bad["failure-details"][0]
    assert fd["result-type"] == "validation-failure" and fd["receiving-ip"] == DANE1
    assert fd["receiving-mx-hostname"] == "mx1." + zone and fd["sending-mta-ip"]
    assert good["summary"] == {"total-successful-session-count": 1,
                               "total-failure-session-count": 0}
    assert "failure-details" not in good
    assert rows(out_instance, zone) == want       # --dry-run keeps them
