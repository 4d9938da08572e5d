"""petrel serve: runs in the foreground, logs to stderr, exits 0 on SIGTERM."""

import os
import signal
import socket
import subprocess
import time

from conftest import TIMEOUT_SCALE, clean_env
from harness import server

LISTENERS = ("smtp_listen", "submission_listen", "submissions_listen", "imap_listen",
             "imaps_listen", "pop3_listen", "pop3s_listen", "http_listen", "https_listen",
             "lmtp_listen", "managesieve_listen")


def free_ports(n):
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def start_serve(inst, extra=()):
    args = [inst.bin, "-c", inst.conf]
    ports = free_ports(len(LISTENERS))
    for key, port in zip(LISTENERS, ports):
        args += ["-o", "%s=127.0.0.1:%d" % (key, port)]
    args += list(extra) + ["serve"]
    p = subprocess.Popen(args, cwd=inst.dir, env=clean_env(), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p.smtp_port = ports[0]
    return p


def wait_serving(p):
    """Until the SMTP listener greets (the server is up, its signal
    handling in place), however slow the machine; False if serve exited."""
    deadline = time.monotonic() + 60 * TIMEOUT_SCALE
    while time.monotonic() < deadline and p.poll() is None:
        if server.greets("127.0.0.1", p.smtp_port, deadline=deadline):
            return True
        time.sleep(0.05)
    return False


def stop(p, sig=signal.SIGTERM, timeout=30 * TIMEOUT_SCALE):
    if p.poll() is None:
        p.send_signal(sig)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate(timeout=5)
        raise AssertionError("serve did not exit within %.0fs of %s\nstderr:\n%s" % (timeout, sig, err))
    return p.returncode, out, err


def test_serve_runs_until_sigterm(instance):
    p = start_serve(instance)
    try:
        assert wait_serving(p), "serve exited on its own: %s\n%s" % (p.returncode, p.stderr.read())
        # serving, and it keeps running until told to stop
        time.sleep(0.5)
        assert p.poll() is None, "serve exited on its own: %s\n%s" % (p.returncode, p.stderr.read())
    finally:
        rc, out, err = stop(p)
    assert rc == 0, "serve must exit 0 on SIGTERM, got %s\nstderr:\n%s" % (rc, err)
    assert err.strip(), "serve logs to stderr"


def test_serve_sigint(sqlite_instance):
    p = start_serve(sqlite_instance)
    assert wait_serving(p), p.stderr.read()
    rc, out, err = stop(p, signal.SIGINT)
    assert rc == 0, err


def test_serve_bad_config_fails_fast(sqlite_instance):
    p = start_serve(sqlite_instance, ["-o", "smtp_listen=not-a-listener"])
    try:
        rc = p.wait(timeout=15)
    except subprocess.TimeoutExpired:
        stop(p)
        raise AssertionError("serve with a bad listener did not exit")
    err = p.stderr.read()
    assert rc == 1, (rc, err)
    assert "smtp_listen" in err, err
