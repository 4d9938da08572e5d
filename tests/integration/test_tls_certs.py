"""Certificates (docs/operations.md, "Certificates"): tls_sni_dir picks the
certificate by the name a client asks for (certbot's live/ layout); files
replaced on disk are served from the next handshake on, sessions in flight
keep theirs; a pair written half keeps the old one until it is whole;
`petrel check` reads every pair; SIGHUP with a changed certificate and a
changed setting under 100 open sessions drops none and loses no message.
SQLite; certificates made by `openssl req` (EC P-256, quick to make)."""

import os
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest

from harness import server
from harness.conn import SmtpConn, SubmissionConn
from harness.instance import ALICE, TIMEOUT_SCALE, add_users, make_instance, parse_conf
from harness.maildir import maildir_of

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl")

DEFAULTS = ("hostname=mx.petrel.test", "relayhost=[127.0.0.1]:9", "queue_retry_min=3600")


def make_pair(directory, cn, *names, cert="fullchain.pem", key="privkey.pem"):
    """A self-signed pair for cn (and subjectAltName names) in directory;
    the certificate's DER."""
    os.makedirs(directory, exist_ok=True)
    certp, keyp = os.path.join(directory, cert), os.path.join(directory, key)
    san = ",".join("DNS:" + n for n in (names or (cn,)))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30",
                    "-subj", "/CN=" + cn, "-addext", "subjectAltName=" + san,
                    "-keyout", keyp + ".new", "-out", certp + ".new"],
                   check=True, capture_output=True, timeout=30)
    os.replace(keyp + ".new", keyp)
    os.replace(certp + ".new", certp)
    return der_of(certp)


def der_of(path):
    with open(path) as f:
        pem = f.read()
    first = pem[:pem.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")]
    return ssl.PEM_cert_to_DER_cert(first)


def served(port, name):
    """The DER certificate an implicit-TLS listener presents to a client
    that sends `name` as SNI (None: no SNI)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10 * TIMEOUT_SCALE) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as s:
            return s.getpeercert(binary_form=True)


def wait_served(port, name, want, timeout=10):
    """Handshakes until `want` is served (the workers look at the files at
    most once a second); the last certificate seen."""
    deadline = time.monotonic() + timeout * TIMEOUT_SCALE
    while True:
        got = served(port, name)
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


@pytest.fixture(scope="module")
def certs(petrel_bin, tmp_path_factory):
    """An instance with its default pair (tls_cert), and a tls_sni_dir with
    a.test (a.test, www.a.test) and b.test (*.b.test); one server."""
    inst = make_instance(petrel_bin, tmp_path_factory.mktemp("certs"), "sqlite")
    add_users(inst)
    conf = parse_conf(inst.conf)
    sni = os.path.join(inst.dir, "live")
    ders = {
        "default": make_pair(os.path.dirname(conf["tls_cert"]), "mx.petrel.test",
                             cert=os.path.basename(conf["tls_cert"]),
                             key=os.path.basename(conf["tls_key"])),
        "a": make_pair(os.path.join(sni, "a.test"), "a.test", "a.test", "www.a.test"),
        "b": make_pair(os.path.join(sni, "b.test"), "b.test", "*.b.test"),
    }
    with open(os.path.join(sni, "README"), "w") as f:
        f.write("not a certificate\n")
    opts = DEFAULTS + ("tls_sni_dir=" + sni,)
    with server.running(server.start, inst, ("smtp", "imaps", "submissions"), opts) as srv:
        yield inst, srv, conf, sni, ders


def test_sni_picks_the_certificate(certs):
    inst, srv, conf, sni, ders = certs
    port = srv.ports["imaps"]
    assert served(port, "a.test") == ders["a"]
    assert served(port, "WWW.A.test") == ders["a"]
    assert served(port, "x.b.test") == ders["b"]
    # a wildcard stands for one label only, not none and not two
    assert served(port, "b.test") == ders["default"]
    assert served(port, "y.x.b.test") == ders["default"]
    assert served(port, "other.test") == ders["default"]
    assert served(port, None) == ders["default"]
    # the same on another implicit-TLS listener
    assert served(srv.ports["submissions"], "a.test") == ders["a"]


def test_sni_on_starttls(certs):
    inst, srv, conf, sni, ders = certs
    c = SmtpConn("127.0.0.1", srv.ports["smtp"])
    try:
        c.expect("EHLO client.test", 250)
        c.expect("STARTTLS", 220)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s = ctx.wrap_socket(c.sock, server_hostname="mail.b.test")
        assert s.getpeercert(binary_form=True) == ders["b"]
        s.close()
    finally:
        c.close()


def test_replaced_files_served_next_handshake(certs):
    """What a certbot deploy hook does: the new pair copied over the old
    files. The next handshakes get it; a session opened before goes on."""
    inst, srv, conf, sni, ders = certs
    port = srv.ports["imaps"]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    old = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                          server_hostname="a.test")
    try:
        assert old.recv(4096).startswith(b"* OK")
        tmp = os.path.join(inst.dir, "renewed")
        new_a = make_pair(tmp, "a.test", "a.test", "www.a.test")
        for f in ("fullchain.pem", "privkey.pem"):
            shutil.copyfile(os.path.join(tmp, f), os.path.join(sni, "a.test", f))
        assert wait_served(port, "a.test", new_a) == new_a
        assert served(port, "x.b.test") == ders["b"]
        # the default pair too, written in place
        new_default = make_pair(tmp, "mx.petrel.test")
        shutil.copyfile(os.path.join(tmp, "fullchain.pem"), conf["tls_cert"])
        shutil.copyfile(os.path.join(tmp, "privkey.pem"), conf["tls_key"])
        assert wait_served(port, None, new_default) == new_default
        ders["a"], ders["default"] = new_a, new_default
        # the session from before the renewal still works
        old.sendall(b"a NOOP\r\n")
        assert b"a OK" in old.recv(4096)
        assert srv.wait_log(r"TLS: certificates read again"), srv.log()
    finally:
        old.close()


def test_half_written_pair_keeps_the_old_one(certs):
    """A certificate whose key is not there yet: the old pair stays in use
    (logged once, not per handshake) until the key arrives."""
    inst, srv, conf, sni, ders = certs
    port = srv.ports["imaps"]
    tmp = os.path.join(inst.dir, "half")
    new_b = make_pair(tmp, "b.test", "*.b.test")
    shutil.copyfile(os.path.join(tmp, "fullchain.pem"), os.path.join(sni, "b.test",
                                                                      "fullchain.pem"))
    for _ in range(8):
        assert served(port, "x.b.test") == ders["b"]
        time.sleep(0.3)
    keeping = srv.wait_log(r"TLS: keeping the certificates in use: .*b\.test/privkey\.pem")
    assert 1 <= len(keeping) <= len(srv.worker_pids()), keeping
    shutil.copyfile(os.path.join(tmp, "privkey.pem"), os.path.join(sni, "b.test", "privkey.pem"))
    assert wait_served(port, "x.b.test", new_b) == new_b
    ders["b"] = new_b


def test_new_name_added(certs):
    inst, srv, conf, sni, ders = certs
    port = srv.ports["imaps"]
    # every worker reads the files again at its own pace (at most once a
    # second): the renewed default may reach the second one only now
    assert wait_served(port, "c.test", ders["default"]) == ders["default"]
    tmp = os.path.join(inst.dir, "c")
    new_c = make_pair(tmp, "c.test")
    shutil.copytree(tmp, os.path.join(sni, "c.test"))
    assert wait_served(port, "c.test", new_c) == new_c


def test_check_reads_every_pair(certs):
    inst, srv, conf, sni, ders = certs
    cp = inst.run("-o", "tls_sni_dir=" + sni, "check", check=False)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    bad = os.path.join(inst.dir, "badlive")
    make_pair(os.path.join(bad, "d.test"), "d.test")
    make_pair(os.path.join(bad, "e.test"), "e.test")
    shutil.copyfile(os.path.join(bad, "e.test", "privkey.pem"),
                    os.path.join(bad, "d.test", "privkey.pem"))
    cp = inst.run("-o", "tls_sni_dir=" + bad, "check", check=False)
    assert cp.returncode != 0
    assert "d.test/privkey.pem does not match" in cp.stdout + cp.stderr, cp.stdout + cp.stderr
    cp = inst.run("-o", "tls_sni_dir=" + os.path.join(inst.dir, "nowhere"), "check",
                  check=False)
    assert cp.returncode != 0 and "tls_sni_dir" in cp.stdout + cp.stderr


def test_sighup_under_100_sessions(petrel_bin, tmp_path):
    """SIGHUP with a new certificate and a new message_size_limit while 100
    SMTP sessions are in the middle of a transaction (10 of them over TLS):
    every one finishes with 250 and every message is stored; the next
    handshake gets the new certificate, the next EHLO the new limit."""
    inst = make_instance(petrel_bin, tmp_path / "inst", "sqlite")
    add_users(inst)
    conf = parse_conf(inst.conf)
    limits = DEFAULTS + ("smtp_max_connections=300", "smtp_max_connections_per_ip=300",
                         "submissions_max_connections=50")
    with server.running(server.start, inst, ("smtp", "submissions"), limits) as srv:
        sessions = []
        try:
            for i in range(100):
                tls = i % 10 == 0
                port = srv.ports["submissions" if tls else "smtp"]
                c = SubmissionConn("127.0.0.1", port, implicit_tls=tls)
                c.expect("EHLO client%d.test" % i, 250)
                if tls:
                    assert c.auth_plain(ALICE, "pw").code == 235
                c.expect("MAIL FROM:<%s>" % (ALICE if tls else "x%d@y.test" % i), 250)
                c.expect("RCPT TO:<%s>" % ALICE, 250)
                sessions.append(c)
            tmp = os.path.join(inst.dir, "renewed")
            new = make_pair(tmp, "mx.petrel.test")
            shutil.copyfile(os.path.join(tmp, "fullchain.pem"), conf["tls_cert"])
            shutil.copyfile(os.path.join(tmp, "privkey.pem"), conf["tls_key"])
            with open(inst.conf) as f:
                text = f.read()
            assert "message_size_limit = 52428800" in text
            with open(inst.conf, "w") as f:
                f.write(text.replace("message_size_limit = 52428800",
                                     "message_size_limit = 2000000"))
            srv.send_signal(signal.SIGHUP)
            assert srv.wait_log(r"SIGHUP: configuration reloaded"), srv.log()
            for i, c in enumerate(sessions):
                c.expect("DATA", 354)
                c.send(b"Subject: across HUP %d\r\n\r\nbody\r\n.\r\n" % i)
                r = c.reply()
                assert r.code == 250, (i, r)
                c.expect("QUIT", 221)
        finally:
            for c in sessions:
                c.close()
        stored = os.listdir(os.path.join(maildir_of(inst, ALICE), "new"))
        assert len(stored) == 100
        assert served(srv.ports["submissions"], "mx.petrel.test") == new
        c = SmtpConn("127.0.0.1", srv.ports["smtp"])
        try:
            r = c.expect("EHLO client.test", 250)
            assert "250-SIZE 2000000" in r.lines, r
        finally:
            c.close()
