"""The HTTP listener (http_listen): /metrics parsed with the Prometheus
client's own parser while sessions come and go and under a mixed delivery
load, Thunderbird autoconfig and
Outlook Autodiscover read with xml.etree as those clients read them, Apple
configuration profiles read with plistlib (and refused for what is not a
mailbox), the MTA-STS policy, strict refusals of malformed requests, and the listener
off in an existing configuration that lacks the key."""

import imaplib
import plistlib
import smtplib
import socket
import time
import urllib.parse
import xml.etree.ElementTree as ET

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.instance import TIMEOUT_SCALE
from conftest import DOMAIN, add_users, make_instance
from harness import server
from harness.ports import free_port

HOST = "mail.example.test"
ALICE = "alice@" + DOMAIN
LISTENERS = ("http", "smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s",
             "lmtp")
OPTS = ("hostname=" + HOST, "auth_fail_delay=50", "http_timeout=1")


@pytest.fixture(scope="module")
def web(petrel_bin, tmp_path_factory):
    inst = make_instance(petrel_bin, tmp_path_factory.mktemp("http"), "sqlite")
    add_users(inst)
    with server.tracked(server.start) as start:
        yield start(inst, LISTENERS, OPTS)


def request(srv, raw, timeout=5):
    """Send raw bytes; (status, headers dict, body) of the answer, read to
    the server's close."""
    with socket.create_connection(("127.0.0.1", srv.ports["http"]), timeout=timeout) as s:
        s.sendall(raw)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, status, _reason = lines[0].split(" ", 2)
    assert version == "HTTP/1.1", lines[0]
    headers = {}
    for ln in lines[1:]:
        k, v = ln.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    assert int(headers["content-length"]) == len(body), (headers, body)
    assert headers["connection"] == "close"
    return int(status), headers, body


def get(srv, path, host="localhost"):
    return request(srv, ("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, host)).encode())


def scrape(srv):
    status, headers, body = get(srv, "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            key = s.name + "".join("{%s=%s}" % kv for kv in sorted(s.labels.items()))
            out[key] = s.value
    return out


def until(srv, pred, what, timeout=5):
    """Scrape until pred(metrics) holds (bounded); the last metrics."""
    deadline = time.monotonic() + timeout
    while True:
        m = scrape(srv)
        if pred(m):
            return m
        assert time.monotonic() < deadline, "%s: %r" % (what, m)
        time.sleep(0.05)


def test_metrics_move_with_sessions(web):
    m0 = scrape(web)
    conn = "petrel_connections{service=%s}"
    assert set(conn % n for n in LISTENERS) <= set(m0), m0
    assert m0[conn % "http"] == 1  # the scrape itself
    before_imap, before_pop3 = m0[conn % "imap"], m0[conn % "pop3"]

    held = [socket.create_connection(("127.0.0.1", web.ports["imap"]), timeout=5)
            for _ in range(3)]
    held.append(socket.create_connection(("127.0.0.1", web.ports["pop3"]), timeout=5))
    try:
        for s in held:
            assert s.recv(1024)  # greeted: the session is live
        until(web, lambda m: m[conn % "imap"] == before_imap + 3
              and m[conn % "pop3"] == before_pop3 + 1, "3 IMAP + 1 POP3 sessions counted")

        # logins: one good, one wrong password
        im = imaplib.IMAP4("127.0.0.1", web.ports["imap"], timeout=10)
        im.login(ALICE, "pw")
        im.logout()
        im = imaplib.IMAP4("127.0.0.1", web.ports["imap"], timeout=10)
        with pytest.raises(imaplib.IMAP4.error):
            im.login(ALICE, "wrong")
        im.logout()
        # a message in over SMTP
        with smtplib.SMTP("127.0.0.1", web.ports["smtp"], timeout=10) as c:
            c.sendmail("someone@example.org", [ALICE], b"Subject: m\r\n\r\nbody\r\n")
        m1 = until(web, lambda m: m["petrel_logins_total{result=ok}"] >=
                   m0["petrel_logins_total{result=ok}"] + 1 and
                   m["petrel_logins_total{result=failed}"] >=
                   m0["petrel_logins_total{result=failed}"] + 1 and
                   m["petrel_messages_received_total"] >= m0["petrel_messages_received_total"] + 1,
                   "logins and messages counted")
        assert m1["petrel_logins_total{result=ok}"] == m0["petrel_logins_total{result=ok}"] + 1
        assert m1["petrel_messages_received_total"] == m0["petrel_messages_received_total"] + 1
        assert m1["petrel_http_requests_total"] > m0["petrel_http_requests_total"]
    finally:
        for s in held:
            s.close()
    until(web, lambda m: m[conn % "imap"] == before_imap and m[conn % "pop3"] == before_pop3,
          "sessions gone from the counts")


def histogram(m, name):
    """A histogram's cumulative buckets (by bound), _sum and _count, checked
    for consistency."""
    buckets = sorted((float(k.split("{le=")[1].rstrip("}")), v) for k, v in m.items()
                     if k.startswith(name + "_bucket{"))
    assert buckets and buckets[-1][0] == float("inf"), (name, buckets)
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), (name, buckets)       # cumulative
    assert m[name + "_count"] == counts[-1]
    assert m[name + "_sum"] >= 0
    return dict(buckets), m[name + "_sum"], m[name + "_count"]


def test_metrics_deliveries_latency_and_processes(web, fake_mx):
    """A mixed load: a local delivery, a remote one accepted, a remote one to a
    closed port (deferred), a remote one refused with 550 (bounced, the
    notification delivered to the local sender). The counts move by exactly
    those amounts; the latency histograms stay consistent; every process
    under the master shows its memory."""
    inst = web.instance
    ok_mx = fake_mx()
    bad_mx = fake_mx(rcpt="550 5.1.1 no such user")
    inst.run("domain", "add", "accept.test", "--transport", ok_mx.transport)
    inst.run("domain", "add", "refuse.test", "--transport", bad_mx.transport)
    inst.run("domain", "add", "closed.test", "--transport",
             "smtp:[127.0.0.1]:%d" % free_port())
    m0 = scrape(web)
    dir0 = histogram(m0, "petrel_directory_query_seconds")
    for sender, rcpt in (("someone@example.org", ALICE),
                         ("someone@example.org", "x@accept.test"),
                         ("someone@example.org", "x@closed.test"),
                         (ALICE, "x@refuse.test")):
        with smtplib.SMTP("127.0.0.1", web.ports["smtp"], timeout=10) as c:
            c.sendmail(sender, [rcpt], b"Subject: m\r\n\r\nbody\r\n")
    d, f, b = ("petrel_messages_%s_total" % k for k in ("delivered", "deferred", "bounced"))
    m1 = until(web, lambda m: m[d] >= m0[d] + 3 and m[f] >= m0[f] + 1 and m[b] >= m0[b] + 1,
               "deliveries counted", timeout=30)
    # local + accepted + the bounce to alice; one deferral; one bounce
    assert (m1[d] - m0[d], m1[f] - m0[f], m1[b] - m0[b]) == (3, 1, 1)
    assert len(ok_mx.transactions) == 1
    lat0 = histogram(m0, "petrel_delivery_latency_seconds")
    lat1 = histogram(m1, "petrel_delivery_latency_seconds")
    assert lat1[2] - lat0[2] == 3 and lat1[1] >= lat0[1]
    assert lat1[2] == m1[d]          # one observation per status=sent
    # each RCPT was routed by the directory: queries timed there
    dir1 = histogram(m1, "petrel_directory_query_seconds")
    assert dir1[2] >= dir0[2] + 4 and dir1[1] >= dir0[1]
    for pool in ("worker", "directory", "queue"):
        assert m1["petrel_jobs_waiting{pool=%s}" % pool] >= 0
    # memory: each live child of the master, by role
    rss = {k: v for k, v in m1.items() if k.startswith("petrel_process_resident_memory_bytes{")}
    seen = {}
    for k, v in rss.items():
        labels = dict(x.split("=", 1) for x in k.split("{", 1)[1].rstrip("}").split("}{"))
        assert v > 0, k
        seen[int(labels["pid"])] = labels["role"]
    kids = set(web.worker_pids())
    assert set(seen) == kids, (seen, kids)
    roles = sorted(seen.values())
    assert roles == ["auth", "protocol", "protocol", "queue"], roles


def test_metrics_queue_and_head(web):
    m = scrape(web)
    assert m["petrel_queue_messages"] >= 0 and m["petrel_queue_oldest_age_seconds"] >= 0
    with socket.create_connection(("127.0.0.1", web.ports["http"]), timeout=5) as s:
        s.sendall(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and body == b""
    assert int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]) > 100


def servers_of(root, tag):
    return [{c.tag: c.text for c in el} | {"type": el.get("type")}
            for el in root.iter(tag)]


@pytest.mark.parametrize("path", ["/mail/config-v1.1.xml",
                                  "/.well-known/autoconfig/mail/config-v1.1.xml"])
def test_thunderbird_autoconfig(web, path):
    status, headers, body = get(web, path + "?emailaddress=" +
                                urllib.parse.quote("alice@example.org"))
    assert status == 200 and headers["content-type"].startswith("application/xml")
    root = ET.fromstring(body)
    assert root.tag == "clientConfig" and root.get("version") == "1.1"
    prov = root.find("emailProvider")
    assert prov.get("id") == "example.org" and prov.findtext("domain") == "example.org"
    incoming = servers_of(prov, "incomingServer")
    outgoing = servers_of(prov, "outgoingServer")
    want_in = {("imap", web.ports["imaps"], "SSL"), ("imap", web.ports["imap"], "STARTTLS"),
               ("pop3", web.ports["pop3s"], "SSL"), ("pop3", web.ports["pop3"], "STARTTLS")}
    want_out = {("smtp", web.ports["submissions"], "SSL"),
                ("smtp", web.ports["submission"], "STARTTLS")}
    assert {(s["type"], int(s["port"]), s["socketType"]) for s in incoming} == want_in
    assert {(s["type"], int(s["port"]), s["socketType"]) for s in outgoing} == want_out
    for s in incoming + outgoing:
        assert s["hostname"] == HOST
        assert s["username"] == "%EMAILADDRESS%"
        assert s["authentication"] == "password-cleartext"


def test_autoconfig_domain_from_host_and_bad_address(web):
    status, _, body = get(web, "/mail/config-v1.1.xml", host="autoconfig.Example.NET")
    assert status == 200
    assert ET.fromstring(body).find("emailProvider/domain").text == "example.net"
    for bad in ("no-at-sign", "a%40", "%ZZ", "a%00b%40example.org", "<x>%40example.org"):
        status, _, _ = get(web, "/mail/config-v1.1.xml?emailaddress=" + bad)
        assert status == 400, bad


def test_autodiscover(web):
    body = (b'<?xml version="1.0" encoding="utf-8"?>'
            b'<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/'
            b'outlook/requestschema/2006"><Request><EMailAddress>Alice@Example.test'
            b'</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/'
            b'autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request>'
            b'</Autodiscover>')
    raw = (b"POST /Autodiscover/Autodiscover.xml HTTP/1.1\r\nHost: autodiscover.example.test\r\n"
           b"Content-Type: text/xml\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
    status, _, answer = request(web, raw)
    assert status == 200
    ns = {"a": "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"}
    root = ET.fromstring(answer)
    protos = {p.findtext("a:Type", namespaces=ns): p
              for p in root.iterfind(".//a:Account/a:Protocol", ns)}
    assert set(protos) == {"IMAP", "POP3", "SMTP"}
    assert int(protos["IMAP"].findtext("a:Port", namespaces=ns)) == web.ports["imaps"]
    assert int(protos["SMTP"].findtext("a:Port", namespaces=ns)) == web.ports["submissions"]
    for p in protos.values():
        assert p.findtext("a:Server", namespaces=ns) == HOST
        assert p.findtext("a:LoginName", namespaces=ns) == "alice@example.test"
        assert p.findtext("a:SSL", namespaces=ns) == "on"
    # GET is not how Autodiscover asks
    assert get(web, "/autodiscover/autodiscover.xml")[0] == 405


def mobileconfig(srv, query):
    status, headers, body = get(srv, "/email.mobileconfig?" + query)
    if status == 200:
        assert headers["content-type"] == "application/x-apple-aspen-config"
        return plistlib.loads(body)
    return status, body


def test_apple_mobileconfig(web):
    """An unsigned profile with a com.apple.mail.managed payload, read with
    plistlib: IMAP over TLS (imaps_listen), submission over TLS
    (submissions_listen), the address as login; the same UUIDs on each
    download (installing it again replaces it)."""
    inst = web.instance
    odd = "o'neil&co@example.test"          # atext that XML must escape
    inst.add_user(odd, "pw")
    prof = mobileconfig(web, "email=Alice%40Example.test")
    assert prof["PayloadType"] == "Configuration" and prof["PayloadVersion"] == 1
    assert prof["PayloadIdentifier"].startswith("test.example.mail.petrel.")
    [acct] = prof["PayloadContent"]
    want = {
        "PayloadType": "com.apple.mail.managed", "PayloadVersion": 1,
        "EmailAddress": ALICE, "EmailAccountType": "EmailTypeIMAP",
        "IncomingMailServerHostName": HOST,
        "IncomingMailServerPortNumber": web.ports["imaps"],
        "IncomingMailServerUseSSL": True, "IncomingMailServerUsername": ALICE,
        "IncomingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingMailServerHostName": HOST,
        "OutgoingMailServerPortNumber": web.ports["submissions"],
        "OutgoingMailServerUseSSL": True, "OutgoingMailServerUsername": ALICE,
        "OutgoingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingPasswordSameAsIncomingPassword": True,
    }
    assert {k: acct.get(k) for k in want} == want
    assert acct["PayloadUUID"] != prof["PayloadUUID"]
    again = plistlib.loads(get(web, "/mobileconfig?emailaddress=alice%40example.test")[2])
    assert again == prof
    other = mobileconfig(web, "email=" + urllib.parse.quote(odd))
    assert other["PayloadContent"][0]["EmailAddress"] == odd
    # a mailbox whose name holds the recipient delimiter is one of its own
    inst.add_user("carol+x@example.test", "pw")
    carol = mobileconfig(web, "email=carol%2Bx%40example.test")
    assert carol["PayloadContent"][0]["IncomingMailServerUsername"] == "carol+x@example.test"
    assert other["PayloadUUID"] != prof["PayloadUUID"]
    # HEAD: the headers only
    with socket.create_connection(("127.0.0.1", web.ports["http"]), timeout=5) as c:
        c.sendall(b"HEAD /email.mobileconfig?email=alice@example.test HTTP/1.1\r\n"
                  b"Host: x\r\n\r\n")
        data = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and body == b""
    assert b"\r\nContent-Type: application/x-apple-aspen-config\r\n" in head


def test_apple_mobileconfig_refusals(web):
    web.instance.run("alias", "add", "info@example.test", ALICE)
    # not a mailbox here: unknown user, an alias, a +tag, a foreign domain
    for q in ("email=nobody%40example.test", "email=info%40example.test",
              "email=alice%2Btag%40example.test", "email=alice%40elsewhere.test"):
        status, body = mobileconfig(web, q)
        assert status == 404, q
    # not an address: never echoed
    for q in ("", "email=", "email=alice", "email=%3Cscript%3E%40example.test",
              "email=a%0d%0aX-Evil:%201%40example.test", "email=%C3%A9%40example.test",
              "email=%zz"):
        status, body = mobileconfig(web, q)
        assert status == 400, q
        assert b"script" not in body and b"Evil" not in body
    raw = b"POST /email.mobileconfig HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    assert request(web, raw)[0] == 405


def test_apple_mobileconfig_starttls_listeners(petrel_bin, tmp_path):
    """Without imaps and submissions: IMAP and submission with STARTTLS
    (UseSSL false: Mail upgrades the connection itself); without any IMAP:
    POP3."""
    inst = make_instance(petrel_bin, tmp_path, "sqlite")
    add_users(inst)
    with server.tracked(server.start) as start:
        srv = start(inst, ("http", "imap", "submission", "pop3s"), OPTS)
        acct = mobileconfig(srv, "email=" + ALICE)["PayloadContent"][0]
        assert (acct["IncomingMailServerPortNumber"], acct["IncomingMailServerUseSSL"]) == \
            (srv.ports["imap"], False)
        assert (acct["OutgoingMailServerPortNumber"], acct["OutgoingMailServerUseSSL"]) == \
            (srv.ports["submission"], False)
        srv.stop()
        srv = start(inst, ("http", "pop3s", "submission"), OPTS)
        acct = mobileconfig(srv, "email=" + ALICE)["PayloadContent"][0]
        assert acct["EmailAccountType"] == "EmailTypePOP"
        assert (acct["IncomingMailServerPortNumber"], acct["IncomingMailServerUseSSL"]) == \
            (srv.ports["pop3s"], True)


def test_mta_sts_policy(web):
    status, headers, body = get(web, "/.well-known/mta-sts.txt")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert body.endswith(b"\r\n")
    fields = dict(ln.split(": ", 1) for ln in body.decode().split("\r\n") if ln)
    assert fields == {"version": "STSv1", "mode": "testing", "mx": HOST, "max_age": "604800"}


def test_mta_sts_policy_settings(petrel_bin, tmp_path):
    """mta_sts_mode and mta_sts_max_age are what the policy says."""
    inst = make_instance(petrel_bin, tmp_path, "sqlite")
    with server.running(server.start, inst, ("http",),
                        OPTS + ("mta_sts_mode=enforce", "mta_sts_max_age=86400")) as srv:
        status, _, body = get(srv, "/.well-known/mta-sts.txt")
    assert status == 200
    fields = dict(ln.split(": ", 1) for ln in body.decode().split("\r\n") if ln)
    assert fields["mode"] == "enforce" and fields["max_age"] == "86400", fields


def big_header():
    """A header section that reaches the 8 KiB bound without its blank line
    (exactly 8192 octets: the server reads all of it before answering, so
    its close sends no reset that could eat the answer)."""
    raw = b"GET / HTTP/1.1\r\nHost: x\r\n"
    while len(raw) + 40 < 8192:
        raw += b"X-A: " + b"b" * 30 + b"\r\n"
    return raw + b"X-B: " + b"c" * (8192 - len(raw) - 7) + b"\r\n"


BIG_HEADER = big_header()
assert len(BIG_HEADER) == 8192


@pytest.mark.parametrize("raw,status", [
    (b"GET /nothing-here HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    (b"DELETE /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    (b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405),
    (b"GET /metrics HTTP/1.1\nHost: x\n\n", 400),                       # bare LF
    (b"GET /metrics HTTP/1.1\r\n\r\n", 400),                            # no Host
    (b"GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"GET /metrics HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),
    (b"GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    (b"GET metrics HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET /metrics HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
    (b"POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: x\r\nContent-Length: 9999999\r\n\r\n",
     413),
    (b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (BIG_HEADER, 431),
], ids=["404", "405-delete", "405-post", "bare-lf", "no-host", "two-hosts", "folding",
        "space-before-colon", "not-origin-form", "505", "501-chunked", "413", "414", "431"])
def test_malformed_requests(web, raw, status):
    got, headers, _ = request(web, raw)
    assert got == status
    if status == 405:
        assert headers["allow"] == "GET, HEAD, POST"


def test_slow_client_gets_408(web):
    with socket.create_connection(("127.0.0.1", web.ports["http"]), timeout=10) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\n")  # and nothing more
        s.settimeout(10)
        data = b""
        t0 = time.monotonic()
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert time.monotonic() - t0 < 5 * TIMEOUT_SCALE


def test_off_when_absent_from_an_existing_config(petrel_bin, tmp_path):
    inst = make_instance(petrel_bin, tmp_path / "old", "sqlite")
    with open(inst.conf) as f:
        lines = f.readlines()
    with open(inst.conf, "w") as f:
        f.writelines(ln for ln in lines if not ln.startswith("http_"))
    args = server.serve_args(inst, {"smtp": free_port()})
    i = args.index("http_listen=")
    del args[i - 1:i + 1]
    assert not any(a.startswith("http_listen") for a in args)
    srv = server.Server.launch(inst, args, {})
    try:
        deadline = time.monotonic() + 10
        while "petrel 0.1.0 started" not in srv.log() and "started (pid" not in srv.log():
            assert srv.alive() and time.monotonic() < deadline, srv.log()
            time.sleep(0.05)
        assert "(smtp)" in srv.log()
        assert "(http)" not in srv.log(), srv.log()
    finally:
        assert srv.stop() == 0, srv.log()
