"""Submission against a real client: swaks (--tls = STARTTLS on the
submission port, --tlsc = implicit TLS on submissions), delivering to a
remote recipient through the FakeMX. SQLite and MariaDB."""

import re
import shutil
import subprocess

import pytest

from mx_util import ALICE, BOB, PASSWORD, add_relay_domain, instance_cert, wait_queue_empty
from smtp_util import all_delivered, queue_files


@pytest.fixture(scope="module")
def swaks_bin():
    path = shutil.which("swaks")
    if path is None:
        pytest.fail("swaks is not installed (Debian package 'swaks': apt-get install swaks)")
    return path


def swaks(swaks_bin, port, *args, timeout=60):
    cmd = [swaks_bin, "--server", "127.0.0.1", "--port", str(port),
           "--helo", "client.test", "--timeout", "30"] + list(args)
    try:
        cp = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail("swaks did not finish in %ss: %s\n%s" % (timeout, cmd, e.stdout))
    cp.text = cp.stdout.decode("utf-8", "replace")
    return cp


def auth_args(user=ALICE, password=PASSWORD, mech="PLAIN"):
    return ["--auth", mech, "--auth-user", user, "--auth-password", password]


@pytest.fixture
def setup(sub_instance, petrel_start, fake_mx):
    mx = fake_mx(starttls=True, cert=instance_cert(sub_instance))
    add_relay_domain(sub_instance, "relay.test", mx.port)
    srv = petrel_start(sub_instance)
    return sub_instance, srv, mx


def test_swaks_starttls_auth_plain(swaks_bin, setup):
    inst, srv, mx = setup
    cp = swaks(swaks_bin, srv.sub_port, "--tls", *auth_args(),
               "--from", ALICE, "--to", "friend@relay.test",
               "--header", "Subject: swaks starttls", "--body", "sent with swaks\n.dot line\n")
    assert cp.returncode == 0, cp.text
    assert "<~  235 2.7.0" in cp.text, cp.text
    got = mx.wait_messages(1)
    assert len(got) == 1, "the fake MX got nothing\n%s\nlog:\n%s" % (cp.text, srv.log())
    t = got[0]
    assert t.mail_from == ALICE and t.rcpts == ["friend@relay.test"], t
    assert t.message()["Subject"] == "swaks starttls"
    assert b"\r\n\r\nsent with swaks\r\n.dot line\r\n" in t.data, t.data[-300:]
    assert "with ESMTPSA" in " ".join(t.message()["Received"].split())
    assert wait_queue_empty(inst)


def test_swaks_implicit_tls_auth_login(swaks_bin, setup):
    inst, srv, mx = setup
    cp = swaks(swaks_bin, srv.subs_port, "--tlsc", *auth_args(user=BOB, mech="LOGIN"),
               "--from", BOB, "--to", "friend@relay.test",
               "--header", "Subject: swaks tlsc")
    assert cp.returncode == 0, cp.text
    got = mx.wait_messages(1)
    assert len(got) == 1, cp.text
    assert got[0].mail_from == BOB and got[0].message()["Subject"] == "swaks tlsc"
    assert wait_queue_empty(inst)


def test_swaks_foreign_sender_refused(swaks_bin, setup):
    inst, srv, mx = setup
    for sender in (BOB, "someone@other.test"):
        cp = swaks(swaks_bin, srv.sub_port, "--tls", *auth_args(),
                   "--from", sender, "--to", "friend@relay.test")
        assert cp.returncode != 0, cp.text
        assert re.search(r"(?m)^<[-~]?\*+ 553 5.7.1 ", cp.text), cp.text
    assert mx.connections == 0 and queue_files(inst) == []


def test_swaks_auth_needs_tls(swaks_bin, setup):
    inst, srv, mx = setup
    # swaks sees no AUTH in the EHLO reply without TLS
    cp = swaks(swaks_bin, srv.sub_port, *auth_args(), "--from", ALICE,
               "--to", "friend@relay.test")
    assert cp.returncode != 0, cp.text
    assert "235" not in cp.text, cp.text
    ehlo = [l for l in cp.text.splitlines() if l.startswith("<-  250")]
    assert ehlo and not any("AUTH" in l for l in ehlo), cp.text
    # and a wrong password with TLS
    cp = swaks(swaks_bin, srv.sub_port, "--tls", *auth_args(password="wrong"),
               "--from", ALICE, "--to", "friend@relay.test")
    assert cp.returncode != 0, cp.text
    assert "535 5.7.8" in cp.text, cp.text
    assert mx.connections == 0 and queue_files(inst) == [] and all_delivered(inst) == []
