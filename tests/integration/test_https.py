"""The HTTP service over implicit TLS (https_listen): Thunderbird autoconfig
and the MTA-STS policy fetched with http.client over TLS; the certificate
served is tls_cert's, or the tls_sni_dir one for the name a client asks
for (verified as an MTA-STS fetcher verifies: the name checked against
the certificate); plain HTTP sent to the TLS port gets no HTTP answer and
leaves the listener serving. The limits are in test_session_limits.py.
SQLite; the SNI certificate made by `openssl req`."""

import http.client
import os
import shutil
import socket
import ssl
import subprocess
import urllib.parse
import xml.etree.ElementTree as ET

import pytest

from conftest import DOMAIN, make_instance
from harness import server
from harness.instance import TIMEOUT_SCALE, parse_conf

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl")

HOST = "mail.example.test"
STS = "mta-sts." + DOMAIN


def der_of(path):
    with open(path) as f:
        pem = f.read()
    end = "-----END CERTIFICATE-----"
    return ssl.PEM_cert_to_DER_cert(pem[:pem.index(end) + len(end)])


@pytest.fixture(scope="module")
def web(petrel_bin, tmp_path_factory):
    top = tmp_path_factory.mktemp("https")
    inst = make_instance(petrel_bin, top / "inst", "sqlite")
    sni = top / "live" / STS
    os.makedirs(sni)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30",
                    "-subj", "/CN=" + STS, "-addext", "subjectAltName=DNS:" + STS,
                    "-keyout", str(sni / "privkey.pem"), "-out", str(sni / "fullchain.pem")],
                   check=True, capture_output=True, timeout=30)
    with server.tracked(server.start) as start:
        srv = start(inst, ("http", "https", "imaps"),
                    ("hostname=" + HOST, "http_timeout=1",
                     "tls_sni_dir=" + str(top / "live")))
        srv.inst = inst
        srv.sni_cert = str(sni / "fullchain.pem")
        yield srv


def fetch(srv, path, ctx, name=None):
    """(status, content type, body, DER of the certificate served) of a GET
    over TLS, name sent as SNI and Host."""
    conn = http.client.HTTPSConnection("127.0.0.1", srv.ports["https"], context=ctx,
                                       timeout=10 * TIMEOUT_SCALE)
    if name is not None:
        # SNI and the name checked come from the host given to the socket
        conn.host = name
        conn._create_connection = lambda addr, *a, **k: socket.create_connection(
            ("127.0.0.1", srv.ports["https"]), *a, **k)
    try:
        conn.connect()
        der = conn.sock.getpeercert(True)
        conn.request("GET", path, headers={"Host": name or "localhost"})
        r = conn.getresponse()
        body = r.read()
        return r.status, r.getheader("Content-Type"), body, der
    finally:
        conn.close()


def insecure():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def test_autoconfig_over_https_with_tls_cert(web):
    status, ctype, body, der = fetch(web, "/mail/config-v1.1.xml?emailaddress=" +
                                     urllib.parse.quote("alice@example.org"), insecure())
    assert status == 200 and ctype.startswith("application/xml")
    root = ET.fromstring(body)
    prov = root.find("emailProvider")
    assert prov.get("id") == "example.org"
    ports = {(s.findtext("type") or s.get("type"), int(s.findtext("port")))
             for s in prov.iter("incomingServer")}
    assert ("imap", web.ports["imaps"]) in ports
    # no SNI: the host's certificate, tls_cert
    assert der == der_of(parse_conf(web.inst.conf)["tls_cert"])


def test_mta_sts_policy_over_https_verified_by_name(web):
    ctx = ssl.create_default_context(cafile=web.sni_cert)   # checks the name too
    status, ctype, body, der = fetch(web, "/.well-known/mta-sts.txt", ctx, name=STS)
    assert status == 200 and ctype.startswith("text/plain")
    fields = dict(ln.split(": ", 1) for ln in body.decode().split("\r\n") if ln)
    assert fields["version"] == "STSv1" and fields["mx"] == HOST
    assert der == der_of(web.sni_cert)
    # the same certificate does not pass for a name it does not hold
    with pytest.raises(ssl.SSLCertVerificationError):
        fetch(web, "/.well-known/mta-sts.txt", ctx, name="other." + DOMAIN)


def test_plain_http_on_the_tls_port_fails_cleanly(web):
    with socket.create_connection(("127.0.0.1", web.ports["https"]),
                                  timeout=10 * TIMEOUT_SCALE) as s:
        s.sendall(b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        try:
            while len(data) < 65536:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
    # closed by the server (at most a TLS alert), never an HTTP answer
    assert not data.startswith(b"HTTP/") and b"STSv1" not in data, data[:200]
    assert len(data) < 64, data
    # the listener still serves, and nothing crashed
    assert fetch(web, "/.well-known/mta-sts.txt", insecure())[0] == 200
    assert web.alive()
