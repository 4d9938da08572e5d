"""SMTP server against a real client: swaks (Debian package `swaks`)."""

import shutil
import subprocess

import pytest

from smtp_util import new_files, read_new, split_stored

ALICE = "alice@example.test"


@pytest.fixture(scope="module")
def swaks_bin():
    path = shutil.which("swaks")
    if path is None:
        pytest.fail("swaks is not installed (Debian package 'swaks': apt-get install swaks)")
    return path


def swaks(swaks_bin, srv, *args, timeout=60):
    cmd = [swaks_bin, "--server", srv.host, "--port", str(srv.port),
           "--helo", "client.test"] + list(args)
    try:
        cp = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail("swaks did not finish in %ss: %s\n%s" % (timeout, cmd, e.stdout))
    cp.text = cp.stdout.decode("utf-8", "replace")
    return cp


def assert_body_sent(stored, body):
    """swaks sends its headers, a blank line, the body and blank line(s) of its own."""
    assert b"\n\n" + body in stored, stored[-400:]
    tail = stored[stored.index(b"\n\n" + body) + 2 + len(body):]
    assert tail.strip(b"\n") == b"", tail[:200]


def test_swaks_plain(swaks_bin, smtp_server):
    cp = swaks(swaks_bin, smtp_server, "--to", ALICE, "--from", "x@y.test")
    assert cp.returncode == 0, cp.text
    files = read_new(smtp_server.instance, ALICE)
    assert len(files) == 1, cp.text
    head, body = split_stored(files[0])
    assert head["Return-Path"] == "<x@y.test>"
    assert b"This is a test mailing" in body
    assert "<-  250 2.0.0 Ok: queued as " in cp.text, cp.text


def test_swaks_pipelining(swaks_bin, smtp_server):
    cp = swaks(swaks_bin, smtp_server, "--pipeline", "--to", ALICE + ",bob@example.test",
               "--from", "x@y.test")
    assert cp.returncode == 0, cp.text
    assert len(new_files(smtp_server.instance, ALICE)) == 1
    assert len(new_files(smtp_server.instance, "bob@example.test")) == 1


def test_swaks_8bit_body_from_file(swaks_bin, sqlite_smtp_server, tmp_path):
    body = ("Grüße aus Köln — ünïcödé ✓\n.leading dot\n..two dots\n.\n"
            "end\n").encode() + bytes(range(0xa0, 0x100)) + b"\n"
    f = tmp_path / "body.txt"
    f.write_bytes(body)
    cp = swaks(swaks_bin, sqlite_smtp_server, "--to", ALICE, "--from", "x@y.test",
               "--body", "@" + str(f), "--add-header", "Content-Type: text/plain; charset=utf-8")
    assert cp.returncode == 0, cp.text
    files = read_new(sqlite_smtp_server.instance, ALICE)
    assert len(files) == 1
    head, stored = split_stored(files[0])
    assert_body_sent(stored, body)


def test_swaks_unknown_user(swaks_bin, smtp_server):
    cp = swaks(swaks_bin, smtp_server, "--quit-after", "RCPT", "--to", "nobody@example.test",
               "--from", "x@y.test")
    assert cp.returncode != 0, cp.text
    assert "550" in cp.text, cp.text
    assert new_files(smtp_server.instance, ALICE) == []


def test_swaks_relay_denied(swaks_bin, sqlite_smtp_server):
    cp = swaks(swaks_bin, sqlite_smtp_server, "--to", "x@other.test", "--from", "x@y.test")
    assert cp.returncode != 0, cp.text
    assert "554" in cp.text, cp.text


def test_swaks_large(swaks_bin, sqlite_smtp_server):
    """A larger message (1.5 MB, spilled to disk) through swaks, byte-exact."""
    line = b"0123456789" * 7 + b"\n"
    body = line * 20000
    f = sqlite_smtp_server.instance.dir + "/big.txt"
    with open(f, "wb") as fh:
        fh.write(body)
    cp = swaks(swaks_bin, sqlite_smtp_server, "--to", ALICE, "--from", "x@y.test",
               "--body", "@" + f, "--suppress-data", timeout=120)
    assert cp.returncode == 0, cp.text[-2000:]
    head, stored = split_stored(read_new(sqlite_smtp_server.instance, ALICE)[0])
    assert_body_sent(stored, body)
