"""Every listener's sessions write their replies at once: the server's end of
each accepted TCP connection has TCP_NODELAY set and is not corked, so a
reply written after another (pipelined commands, a greeting after the TLS
handshake, the answer of a job thread) never waits for the client's delayed
ACK. Read from the server's own socket (harness.sockopt), not timed."""

import socket
import ssl

import pytest

from harness import server
from harness.server import LISTENERS
from harness.sockopt import server_option

ALL = ["smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s",
       "lmtp", "managesieve", "http", "https"]


def _ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _open(srv, name):
    """A connection to listener `name` that the server has answered (its
    greeting), or for HTTP one with a request begun (HTTP/1.1 closes after
    the answer)."""
    prefix, _, tls = LISTENERS[name]
    s = socket.create_connection((srv.host, srv.ports[name]), timeout=20)
    if tls:
        s = _ctx().wrap_socket(s)
    if name.startswith("http"):
        s.sendall(b"GET /metrics HTTP/1.1\r\n")
        return s
    data = b""
    while prefix not in data:
        chunk = s.recv(4096)
        assert chunk, "%s closed before answering: %r" % (name, data)
        data += chunk
    return s


@pytest.fixture
def every_listener(sqlite_instance):
    with server.running(server.start, sqlite_instance, ALL) as srv:
        yield srv


def test_every_listener_sets_nodelay(every_listener):
    srv = every_listener
    for name in ALL:
        s = _open(srv, name)
        try:
            master = srv.proc.pid
            assert server_option(master, s, socket.IPPROTO_TCP, socket.TCP_NODELAY), name
            assert server_option(master, s, socket.IPPROTO_TCP, socket.TCP_CORK) == 0, name
        finally:
            s.close()
