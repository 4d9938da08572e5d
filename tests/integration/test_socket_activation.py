"""Socket activation (docs/operations.md): `petrel serve` started as
systemd starts a socket-activated service, with listening sockets at
descriptors 3, 4, ... and LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES set
(sd_listen_fds(3)); a socket is matched to the listener whose address it
has, or to the service it is named after (FileDescriptorName=). The test
keeps its own copy of each socket open, so petrel could not bind those
addresses itself: a greeting there is the inherited socket's. The example
unit contrib/petrel.socket.in is checked in test_systemd.py."""

import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import clean_env
from harness import server
from harness.instance import TIMEOUT_SCALE, make_instance
from harness.ports import free_port

TIMEOUT = 15 * TIMEOUT_SCALE


@pytest.fixture(scope="module")
def inst(petrel_bin, tmp_path_factory):
    return make_instance(petrel_bin, tmp_path_factory.mktemp("sockact"), "sqlite")


def listening():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    return s


# Put the sockets at 3.. and exec petrel, which keeps this process's pid:
# LISTEN_PID is then petrel's, as systemd sets it.
SHIM = """
import fcntl, os, sys
n = int(sys.argv[1])
src = [int(a) for a in sys.argv[2:2 + n]]
high = [fcntl.fcntl(f, fcntl.F_DUPFD, 100) for f in src]
for f in src:
    os.close(f)
for i, f in enumerate(high):
    os.dup2(f, 3 + i)
    os.close(f)
pid = sys.argv[2 + n]
os.environ.update(LISTEN_PID=str(os.getpid()) if pid == "self" else pid,
                  LISTEN_FDS=str(n), LISTEN_FDNAMES=sys.argv[3 + n])
os.execv(sys.argv[4 + n], sys.argv[4 + n:])
"""


def launch(inst, socks, names, ports, listen_pid="self"):
    """petrel serve with socks at descriptors 3.. and the LISTEN_* set."""
    fds = [s.fileno() for s in socks]
    args = ([sys.executable, "-c", SHIM, str(len(fds))] + [str(f) for f in fds] +
            [listen_pid, ":".join(names)] +
            server.serve_args(inst, ports, opts=("workers=2",)))
    return subprocess.Popen(args, cwd=inst.dir, env=clean_env(), pass_fds=fds,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    try:
        _, err = p.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate(timeout=5)
        raise AssertionError("serve did not stop on SIGTERM\n" + err)
    return p.returncode, err


def wait_greets(p, port, prefix):
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline and p.poll() is None:
        if server.greets("127.0.0.1", port, prefix):
            return True
        time.sleep(0.05)
    if p.poll() is not None:
        raise AssertionError("serve exited with %s:\n%s" % (p.returncode, p.communicate()[1]))
    return False


def test_sockets_matched_by_address_and_by_name(inst):
    smtp, imap = listening(), listening()
    sp, ip = smtp.getsockname()[1], imap.getsockname()[1]
    # smtp_listen lists the first one's address; the second is named
    # "imap" while imap_listen is empty (serve_args turns it off)
    p = launch(inst, [smtp, imap], ["petrel.socket", "imap"], {"smtp": sp})
    try:
        assert wait_greets(p, sp, b"220 "), "no SMTP greeting"
        assert wait_greets(p, ip, b"* OK"), "no IMAP greeting"
        # both workers accept on them, connection after connection
        for _ in range(4):
            assert server.greets("127.0.0.1", sp, b"220 ")
    finally:
        rc, err = stop(p)
        smtp.close()
        imap.close()
    assert rc == 0, err
    assert "listening on 127.0.0.1:%d (smtp, from systemd)" % sp in err, err
    assert "listening on 127.0.0.1:%d (imap, from systemd)" % ip in err, err
    assert "AddressSanitizer" not in err


def test_a_socket_no_listener_claims_is_refused(inst):
    stray = listening()
    port = stray.getsockname()[1]
    p = launch(inst, [stray], ["bogus"], {})
    try:
        p.wait(timeout=TIMEOUT)
        err = p.communicate()[1]
    finally:
        stray.close()
    assert p.returncode == 1, err
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, err
    assert "socket activation: 127.0.0.1:%d (bogus) is no listener's" % port in lines[0]


def test_a_named_socket_also_listed_for_another_service_is_refused(inst):
    s = listening()
    port = s.getsockname()[1]
    p = launch(inst, [s], ["imap"], {"smtp": port})
    try:
        p.wait(timeout=TIMEOUT)
        err = p.communicate()[1]
    finally:
        s.close()
    assert p.returncode == 1, err
    assert "is for imap but smtp_listen lists it" in err, err


def test_sockets_for_another_process_are_left_alone(inst):
    """LISTEN_PID names another process (a parent's sockets): petrel binds
    its listeners itself and leaves descriptor 3 alone."""
    other = listening()
    port = free_port()
    p = launch(inst, [other], ["smtp"], {"smtp": port}, listen_pid="1")
    try:
        assert wait_greets(p, port, b"220 "), "no SMTP greeting"
        with socket.create_connection(other.getsockname(), timeout=2) as c:
            c.settimeout(0.5)
            with pytest.raises(socket.timeout):
                c.recv(10)   # queued on the socket, accepted by no one
    finally:
        rc, err = stop(p)
        other.close()
    assert rc == 0, err
    assert "from systemd" not in err, err
