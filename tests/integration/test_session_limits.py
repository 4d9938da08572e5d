"""Connection limits and session ids shared by every protocol (lib/session):
each listener refuses connections past X_max_connections and
X_max_connections_per_ip with its protocol's own line, a client of another
address is still served, and the slots come back when clients leave. Session
ids in the logs are unique across workers."""

import re
import socket
import ssl
import time

import pytest

from harness import server
from imap_util import (ALICE, imap_inst, imap_instance, imap_start)  # noqa: F401 (fixtures)
from imap_util import Conn as ImapConn
from pop3_util import free_port

HEX_SID = re.compile(r"\b([0-9a-f]{16}): (smtp|imap|pop3) connect from \[([0-9.:a-f]+)\]:\d+")


def raw_greeting(host, port, source=None, timeout=10):
    """Connect and read the first line; returns (line, closed-after-it)."""
    s = socket.create_connection((host, port), timeout=timeout,
                                 source_address=(source, 0) if source else None)
    s.settimeout(timeout)
    buf = b""
    while b"\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    line = buf.split(b"\r\n", 1)[0]
    return s, line


def closed_soon(sock, timeout=10):
    """True when the server closes the connection (EOF) within timeout."""
    sock.settimeout(timeout)
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return True
    except (socket.timeout, TimeoutError):
        return False
    except OSError:
        return True


def fill(host, port, want_ok, n, source=None):
    """Open n connections; returns (accepted sockets, refused greeting lines)."""
    held, refused = [], []
    for _ in range(n):
        s, line = raw_greeting(host, port, source=source)
        if line.startswith(want_ok):
            held.append(s)
        else:
            refused.append(line)
            assert closed_soon(s), "a refused connection was left open: %r" % line
            s.close()
    return held, refused


def wait_served(host, port, ok, source=None, timeout=10):
    """Connect until the server greets (the slot of a client that just left,
    such as the start-up probe, comes back once the server has seen it go);
    returns the socket."""
    deadline = time.monotonic() + timeout
    while True:
        s, line = raw_greeting(host, port, source=source)
        if line.startswith(ok):
            return s
        s.close()
        assert time.monotonic() < deadline, "not served again: %r" % line
        time.sleep(0.1)


def close_all(socks):
    for s in socks:
        s.close()


@pytest.mark.parametrize("proto", ["imap", "pop3", "smtp"])
def test_per_address_limit(imap_inst, imap_start, proto):
    """X_max_connections_per_ip=3: the fourth and fifth connection from
    127.0.0.1 are refused with the protocol's temporary-failure line; 127.0.0.2
    is still served; once the first three leave, 127.0.0.1 is served again."""
    srv, port, ok, refusal = start(imap_inst, imap_start, proto,
                                   "%s_max_connections_per_ip=3" % proto)
    wait_served(srv.host, port, ok).close()
    time.sleep(0.3)
    for rnd in range(2):
        held, refused = fill(srv.host, port, ok, 5)
        try:
            assert len(held) == 3 and len(refused) == 2, (rnd, len(held), refused)
            assert all(l.startswith(refusal) for l in refused), refused
            other, refused2 = fill(srv.host, port, ok, 2, source="127.0.0.2")
            assert len(other) == 2 and not refused2, refused2
            close_all(other)
        finally:
            close_all(held)
        # the slots come back once the server has seen the clients leave
        wait_served(srv.host, port, ok).close()
        time.sleep(0.3)
    assert srv.wait_log(r"connection from \[127\.0\.0\.1\]:\d+ refused: too many connections "
                        r"from this address", count=4)


@pytest.mark.parametrize("proto", ["imap", "pop3", "smtp"])
def test_total_limit(imap_inst, imap_start, proto):
    """X_max_connections=4 (two workers, one count for the node): a fifth
    client is refused whatever its address, and served after one of the four
    leaves."""
    srv, port, ok, _ = start(imap_inst, imap_start, proto, "%s_max_connections=4" % proto)
    wait_served(srv.host, port, ok).close()
    time.sleep(0.3)
    held = []
    try:
        for i in range(4):
            h, r = fill(srv.host, port, ok, 1, source="127.0.0.%d" % (i + 1))
            assert len(h) == 1 and not r, r
            held += h
        h, r = fill(srv.host, port, ok, 1, source="127.0.0.9")
        assert not h and len(r) == 1, r
        held.pop().close()
        held.append(wait_served(srv.host, port, ok, source="127.0.0.9"))
    finally:
        close_all(held)
    assert srv.wait_log(r"connection from \[127\.0\.0\.9\]:\d+ refused: server busy")


def test_limits_are_per_listener(imap_inst, imap_start):
    """imap and imaps count apart: a full imap listener does not refuse imaps."""
    srv = imap_start(imap_inst, ["workers=2", "imap_max_connections_per_ip=1"])
    held = [wait_served(srv.host, srv.imap_port, b"* OK")]
    try:
        more, refused = fill(srv.host, srv.imap_port, b"* OK", 1)
        held += more
        assert not more and len(refused) == 1, refused
        with srv.login_ssl() as m:
            typ, _ = m.noop()
            assert typ == "OK"
    finally:
        close_all(held)


def test_session_ids_unique_across_workers(imap_inst, imap_start):
    """Two workers, 60 IMAP connections: every 'connect from' line carries a
    16-digit hexadecimal session id, none repeats, and the connections were
    ids of both workers (each logs with its own pid) in one list."""
    srv = imap_start(imap_inst, ["workers=2"])
    for _ in range(3):
        conns = [ImapConn(srv.host, srv.imap_port) for _ in range(20)]
        for c in conns:
            c.close()
    lines = srv.wait_log(HEX_SID.pattern, count=60)
    ids = [HEX_SID.search(l).group(1) for l in lines]
    assert len(ids) >= 60
    assert len(set(ids)) == len(ids), "session ids repeat"
    # ids in disconnect lines match those of the connects
    gone = {m.group(1) for m in re.finditer(r"\b([0-9a-f]{16}): imap disconnect from",
                                             srv.log())}
    assert set(ids) >= gone and len(gone) > 0


def start(inst, imap_start, proto, limit, workers=2):
    """IMAP (and POP3 and SMTP on free ports) with two workers: the limits
    hold for the node, whichever worker accepts (SMTP's were once counted
    per worker: workers x the setting); returns the server, the port of
    proto, its greeting and its refusal prefix."""
    pop3 = free_port()
    srv = imap_start(inst, ["workers=%d" % workers, "pop3_listen=127.0.0.1:%d" % pop3, limit])
    if proto == "imap":
        return srv, srv.imap_port, b"* OK", b"* BYE [UNAVAILABLE]"
    if proto == "smtp":
        return srv, srv.smtp_port, b"220", b"421"
    return srv, pop3, b"+OK", b"-ERR [SYS/TEMP]"



# Each listener's own pair of limits, named in full (the keys of the table
# in lib/config/config.c): plaintext and implicit-TLS listeners alike.
LISTENER_LIMITS = {
    "smtp": ("smtp_max_connections", "smtp_max_connections_per_ip", False, b"220"),
    "submission": ("submission_max_connections", "submission_max_connections_per_ip",
                   False, b"220"),
    "submissions": ("submissions_max_connections", "submissions_max_connections_per_ip",
                    True, b"220"),
    "imaps": ("imaps_max_connections", "imaps_max_connections_per_ip", True, b"* OK"),
    "pop3s": ("pop3s_max_connections", "pop3s_max_connections_per_ip", True, b"+OK"),
    "lmtp": ("lmtp_max_connections", "lmtp_max_connections_per_ip", False, b"220"),
    "managesieve": ("managesieve_max_connections", "managesieve_max_connections_per_ip",
                    False, b'"IMPLEMENTATION"'),
}


def greeted(host, port, tls, ok, source):
    """A connection that got the listener's greeting (over TLS for the
    implicit-TLS listeners), or None when the server refused it: a refusal
    line, or a handshake the server ended."""
    try:
        s = socket.create_connection((host, port), timeout=10, source_address=(source, 0))
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(s)
        s.settimeout(10)
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    except (ssl.SSLError, ConnectionError):
        return None
    if buf.startswith(ok):
        return s
    s.close()
    return None


@pytest.mark.parametrize("listener", sorted(LISTENER_LIMITS))
def test_limits_of_each_listener(imap_inst, listener):
    """X_max_connections=2 and X_max_connections_per_ip=1 on one listener: a
    second client from 127.0.0.1 is refused (per address), one from 127.0.0.2
    is served, a third address is refused (total); the log names the listener
    and the reason of each refusal."""
    total_key, per_ip_key, tls, ok = LISTENER_LIMITS[listener]
    with server.running(server.start, imap_inst, ("imap", listener),
                        ["workers=2", "%s=2" % total_key, "%s=1" % per_ip_key]) as srv:
        port = srv.port_of(listener)
        held = []
        try:
            deadline = time.monotonic() + 10
            while True:     # the start-up probe's slot comes back
                s = greeted(srv.host, port, tls, ok, "127.0.0.1")
                if s is not None:
                    break
                assert time.monotonic() < deadline, "never served"
                time.sleep(0.1)
            held.append(s)
            assert greeted(srv.host, port, tls, ok, "127.0.0.1") is None
            second = greeted(srv.host, port, tls, ok, "127.0.0.2")
            assert second is not None
            held.append(second)
            assert greeted(srv.host, port, tls, ok, "127.0.0.3") is None
        finally:
            close_all(held)

        def seen():     # on failure, the server's account of these connections
            return "\n".join(l for l in srv.log_lines() if "127.0.0." in l or "TLS" in l)
        assert srv.wait_log(r"%s connection from \[127\.0\.0\.1\]:\d+ refused: too many "
                            r"connections from this address" % listener), seen()
        assert srv.wait_log(r"%s connection from \[127\.0\.0\.3\]:\d+ refused: server busy"
                            % listener), seen()


def test_http_limits(imap_inst):
    """http_max_connections=2, http_max_connections_per_ip=1: HTTP has no
    greeting, so the held clients are idle connections the server has logged
    as accepted; a client past a limit gets 503 before it asks anything."""
    with server.running(server.start, imap_inst, ("imap", "http"),
                        ["workers=2", "http_max_connections=2",
                         "http_max_connections_per_ip=1"]) as srv:
        port = srv.port_of("http")

        def hold(source):
            # the slot of a client that just left comes back once the
            # server has seen it go: a refusal then is tried again
            for _ in range(50):
                s = socket.create_connection((srv.host, port), timeout=10,
                                             source_address=(source, 0))
                seen = srv.wait_log(r"\[%s\]:%d (\(http\)|refused)" % (
                    re.escape(source), s.getsockname()[1]))
                if seen and "refused" not in seen[0]:
                    return s
                s.close()
                time.sleep(0.1)
            raise AssertionError("an idle connection from %s was never accepted" % source)

        def ask(source):
            s = socket.create_connection((srv.host, port), timeout=10,
                                         source_address=(source, 0))
            try:
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                return s.makefile("rb").readline()
            except ConnectionError:
                return b""
            finally:
                s.close()

        deadline = time.monotonic() + 10
        while not ask("127.0.0.1").startswith(b"HTTP/1.1 200"):   # the probe's slot
            assert time.monotonic() < deadline, "never served"
            time.sleep(0.1)
        held = [hold("127.0.0.1")]
        try:
            assert ask("127.0.0.1").startswith(b"HTTP/1.1 503")
            held.append(hold("127.0.0.2"))
            assert ask("127.0.0.3").startswith(b"HTTP/1.1 503")
        finally:
            close_all(held)
        assert srv.wait_log(r"http connection from \[127\.0\.0\.1\]:\d+ refused: too many "
                            r"connections from this address")
        assert srv.wait_log(r"http connection from \[127\.0\.0\.3\]:\d+ refused: server busy")


def test_https_limits(imap_inst):
    """https_max_connections=2, https_max_connections_per_ip=1: a client
    whose handshake completed holds a slot; one past a limit has its
    connection closed before the handshake (no bytes of an answer on an
    implicit-TLS port) and the log names the listener and the reason."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with server.running(server.start, imap_inst, ("imap", "https"),
                        ["workers=2", "https_max_connections=2",
                         "https_max_connections_per_ip=1"]) as srv:
        port = srv.port_of("https")

        def handshake(source):
            s = socket.create_connection((srv.host, port), timeout=10,
                                         source_address=(source, 0))
            try:
                return ctx.wrap_socket(s)
            except (ssl.SSLError, ConnectionError):
                s.close()
                return None

        def hold(source):
            # the start-up probe's slot comes back once the server saw it go
            deadline = time.monotonic() + 10
            while True:
                s = handshake(source)
                if s is not None:
                    return s
                assert time.monotonic() < deadline, "never served from %s" % source
                time.sleep(0.1)

        held = [hold("127.0.0.1")]
        try:
            assert handshake("127.0.0.1") is None
            held.append(hold("127.0.0.2"))
            assert handshake("127.0.0.3") is None
            # a held slot still gets its answer
            held[0].sendall(b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            assert held[0].makefile("rb").readline().startswith(b"HTTP/1.1 200")
        finally:
            close_all(held)
        assert srv.wait_log(r"https connection from \[127\.0\.0\.1\]:\d+ refused: too many "
                            r"connections from this address")
        assert srv.wait_log(r"https connection from \[127\.0\.0\.3\]:\d+ refused: server busy")
