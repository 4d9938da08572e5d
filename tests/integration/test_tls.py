"""TLS profiles (tls_profile, docs/security.md "TLS") on every TLS listener:
SMTP STARTTLS, submission STARTTLS, submissions, IMAP STARTTLS, IMAPS, POP3
STLS, POP3S -- probed with `openssl s_client`. intermediate (the default):
TLS 1.2 and 1.3, forward-secret AEAD suites only for 1.2 (no static RSA key
exchange, no CBC), X25519 first among the groups, session resumption.
modern: TLS 1.3 only. SQLite."""

import json
import shutil
import subprocess
import time

import pytest

from harness import ci_skips, server
from harness.instance import make_instance

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl")

LISTENERS = ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s", "lmtp")
STARTTLS = {"smtp": "smtp", "submission": "smtp", "imap": "imap", "pop3": "pop3", "lmtp": "lmtp"}
DEFAULTS = ("hostname=mx.petrel.test", "relayhost=[127.0.0.1]:9", "queue_retry_min=3600")


def start(inst, opts=()):
    return server.start(inst, LISTENERS, DEFAULTS + tuple(opts),
                        wait={"submissions": "accept", "imaps": "accept", "pop3s": "accept"})


@pytest.fixture(scope="module")
def tls_inst(petrel_bin, tmp_path_factory):
    return make_instance(petrel_bin, tmp_path_factory.mktemp("tls"), "sqlite")


@pytest.fixture(scope="module")
def srv(tls_inst):
    with server.running(start, tls_inst) as s:
        yield s


@pytest.fixture(scope="module")
def modern(petrel_bin, tmp_path_factory):
    inst = make_instance(petrel_bin, tmp_path_factory.mktemp("tls-modern"), "sqlite")
    with server.running(start, inst, ("tls_profile=modern",)) as s:
        yield s


def s_client(srv, listener, *opts, stdin=b"", linger=0):
    """One `openssl s_client` handshake; (handshake done, output)."""
    args = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % srv.ports[listener],
            "-servername", "mx.petrel.test"]
    if listener in STARTTLS:
        args += ["-starttls", STARTTLS[listener]]
    p = subprocess.Popen(args + list(opts), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    if linger:
        time.sleep(linger)   # stdin still open: s_client reads what follows
    raw, _ = p.communicate(stdin, timeout=30)
    out = raw.decode("utf-8", "replace")
    done = ("New, " in out or "Reused, " in out) and "Cipher is (NONE)" not in out
    return done, out


def accepted(srv, listener, *opts):
    done, out = s_client(srv, listener, *opts)
    assert done, "%s refused %r:\n%s" % (listener, opts, out[-1500:])
    return out


def refused(srv, listener, *opts):
    done, out = s_client(srv, listener, *opts)
    assert not done, "%s accepted %r:\n%s" % (listener, opts, out[-1500:])
    return out


# the client must offer what it is asked for: its own security level allows
# TLS 1.0/1.1 and weak suites only at level 0
LEGACY = ("-cipher", "DEFAULT@SECLEVEL=0")


@pytest.mark.parametrize("listener", LISTENERS)
def test_old_protocols_refused(srv, listener):
    for proto in ("-tls1", "-tls1_1"):
        refused(srv, listener, proto, *LEGACY)


@pytest.mark.parametrize("listener", LISTENERS)
def test_static_rsa_and_cbc_refused(srv, listener):
    for ciphers in ("AES128-SHA256", "AES256-GCM-SHA384", "AES128-SHA:AES256-SHA",
                    "ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES256-SHA384:"
                    "ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA:"
                    "DHE-RSA-AES128-SHA256:DHE-RSA-AES256-SHA256"):
        refused(srv, listener, "-tls1_2", "-cipher", ciphers + "@SECLEVEL=0")


@pytest.mark.parametrize("listener", LISTENERS)
def test_forward_secret_aead_accepted(srv, listener):
    out = accepted(srv, listener, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256")
    assert "ECDHE-RSA-AES128-GCM-SHA256" in out
    accepted(srv, listener, "-tls1_2", "-cipher", "ECDHE-RSA-CHACHA20-POLY1305")
    accepted(srv, listener, "-tls1_2", "-cipher", "DHE-RSA-AES256-GCM-SHA384")
    out = accepted(srv, listener, "-tls1_3")
    assert "TLSv1.3" in out
    assert "Server Temp Key: X25519" in out or "Negotiated TLS1.3 group: X25519" in out, out


@pytest.mark.parametrize("listener", LISTENERS)
def test_x25519_negotiated_for_tls12(srv, listener):
    out = accepted(srv, listener, "-tls1_2")
    assert "Server Temp Key: X25519" in out, out


@pytest.mark.parametrize("listener", LISTENERS)
def test_session_resumption(srv, listener, tmp_path):
    sess = str(tmp_path / "sess.pem")
    out = accepted(srv, listener, "-tls1_2", "-sess_out", sess)
    assert "New, " in out
    out = accepted(srv, listener, "-tls1_2", "-sess_in", sess)
    assert "Reused, " in out, out[-1500:]


@pytest.mark.parametrize("listener", LISTENERS)
def test_session_resumption_tls13(srv, listener, tmp_path):
    """TLS 1.3: the ticket comes after the handshake; s_client gets a
    moment to read it before its input ends."""
    sess = str(tmp_path / "sess13.pem")
    done, out = s_client(srv, listener, "-tls1_3", "-sess_out", sess, linger=1)
    assert done, out[-1500:]
    out = accepted(srv, listener, "-tls1_3", "-sess_in", sess)
    assert "Reused, " in out, out[-1500:]


@pytest.mark.parametrize("listener", LISTENERS)
def test_modern_is_tls13_only(modern, listener):
    refused(modern, listener, "-tls1_2")
    out = accepted(modern, listener, "-tls1_3")
    assert "TLSv1.3" in out


def test_profile_is_checked(tls_inst):
    """An unknown tls_profile is a configuration error, not a silent default."""
    p = subprocess.run([tls_inst.bin, "-c", tls_inst.conf, "-o", "tls_profile=old", "check"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    assert p.returncode != 0, p.stdout


@pytest.mark.skipif(shutil.which("testssl") is None, reason="no testssl.sh (Debian: testssl.sh)")
def test_testssl_submissions(srv, tmp_path, petrel_bin):
    """An independent scanner on one port: protocols, cipher categories and
    forward secrecy (about 90 s; once per CI run, in the plain build's pass)."""
    ci_skips.run_once(petrel_bin)
    out = str(tmp_path / "testssl.json")
    p = subprocess.run(["testssl", "-p", "-s", "-f", "--quiet", "--color", "0",
                        "--warnings", "off", "--jsonfile", out,
                        "127.0.0.1:%d" % srv.ports["submissions"]],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=240)
    with open(out) as f:
        found = {e["id"]: e["finding"] for e in json.load(f)}
    text = p.stdout.decode("utf-8", "replace")[-3000:]
    for proto in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
        assert found.get(proto) == "not offered", (proto, found.get(proto), text)
    assert found.get("TLS1_2") == "offered", text
    assert found.get("TLS1_3", "").startswith("offered"), text
    for cat in ("NULL", "aNULL", "EXPORT", "LOW", "3DES_IDEA", "AVERAGE"):
        assert found.get("cipherlist_" + cat) == "not offered", (cat, found.get("cipherlist_" + cat))
    assert found.get("PFS") == "offered", text
    assert "X25519" in found.get("PFS_ECDHE_curves", ""), text


@pytest.mark.parametrize("listener", ("imaps", "pop3s", "submissions"))
def test_resumed_across_workers(srv, listener):
    """Python's ssl client: a ticket from the first handshake resumes the
    next 12 connections, whichever of the 2 workers accepts each (the
    ticket keys are the same in every worker), for TLS 1.3 and 1.2."""
    import socket
    import ssl

    assert srv.instance.config().get("workers") == "2"
    for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ctx.maximum_version = version
        session = None
        reused = []
        for i in range(13):
            with socket.create_connection(("127.0.0.1", srv.ports[listener]), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname="mx.petrel.test",
                                     session=session) as s:
                    s.recv(200)     # the greeting (TLS 1.3: the ticket came before it)
                    if i == 0:
                        session = s.session
                        assert session is not None and session.has_ticket
                    else:
                        reused.append(s.session_reused)
        assert all(reused), (version, reused)
