"""POP3 over TLS: STLS (RFC 2595) and implicit TLS (pop3s, RFC 8314);
TLS 1.2+ only; no plaintext command injection across STLS. SQLite and MariaDB."""

import socket
import ssl

import pytest

from harness.sockopt import server_option
from pop3_util import (ALICE, HOSTNAME, PASSWORD, client_ctx, message, pquit, put, unstuff,
                       wire)


def test_stls(pop3_server):
    data = message(1)
    put(pop3_server.instance, ALICE, data)
    with pop3_server.conn() as c:
        assert c.stls() == "+OK Begin TLS negotiation"
        assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
        capa = c.capa()
        assert "STLS" not in capa and "USER" in capa and "SASL PLAIN" in capa, capa
        c.err("STLS")  # already TLS
        c.login()
        c.err("STLS")
        r, raw = c.ok_multi("RETR 1")
        assert unstuff(raw) == wire(data)
        c.ok("DELE 1")
        c.quit()  # the +OK must get through the TLS layer before the close
    p = pop3_server.login()
    assert p.stat() == (0, 0)
    pquit(p)


def test_stls_with_poplib(pop3_server):
    p = pop3_server.poplib()
    assert p.stls(context=client_ctx()).startswith(b"+OK")
    p.user(ALICE)
    p.pass_(PASSWORD)
    assert p.stat() == (0, 0)
    pquit(p)


def test_stls_after_login_refused(pop3_server):
    with pop3_server.conn() as c:
        c.login()
        c.err("STLS")
        c.ok("NOOP")  # still plaintext, still working
        c.quit()


def test_stls_pipelined_plaintext_is_discarded(pop3_server):
    """Bytes sent in the same packet after STLS must not be executed, neither
    before nor after the handshake (CVE-2011-0411 class)."""
    with pop3_server.conn() as c:
        c.send("STLS\r\nUSER %s\r\nCAPA\r\nNOOP\r\n" % ALICE)
        assert c.line() == b"+OK Begin TLS negotiation"
        assert c.buf == b"" and c.nothing_pending(0.3), c.buf
        c.sock = client_ctx().wrap_socket(c.sock)
        # had the injected USER been run, this PASS would log in
        assert c.cmd("PASS " + PASSWORD) == "-ERR USER first"
        # had CAPA/NOOP been run, their answers would come before this one
        assert c.cmd("QUIT") == "+OK Bye"


def test_pop3s(pop3_server):
    data = message(2, body=b".\n..\nx\n")
    put(pop3_server.instance, ALICE, data)
    with pop3_server.conn(tls=True) as c:
        assert c.greeting == ("+OK %s petrel POP3 ready" % HOSTNAME).encode()
        assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
        capa = c.capa()
        assert "STLS" not in capa and "USER" in capa and "SASL PLAIN" in capa, capa
        c.err("STLS")
        assert c.auth_plain(ALICE, PASSWORD).startswith("+OK")
        r, raw = c.ok_multi("RETR 1")
        assert unstuff(raw) == wire(data)
        c.quit()
    p = pop3_server.poplib_ssl()
    p.user(ALICE)
    p.pass_(PASSWORD)
    assert b"".join(l + b"\r\n" for l in p.retr(1)[1]) == wire(data)
    pquit(p)


def test_big_message_over_tls(pop3_server):
    body = b"".join(b"%07d %s\n" % (i, b"y" * 90) for i in range(30000))  # ~3 MB
    data = message(3, body=body)
    put(pop3_server.instance, ALICE, data)
    with pop3_server.conn(tls=True, timeout=60) as c:
        c.login()
        r, raw = c.ok_multi("RETR 1")
        assert r == "+OK %d octets" % len(wire(data))
        assert unstuff(raw) == wire(data)
        c.quit()
    with pop3_server.conn(timeout=60) as c:
        c.stls()
        c.login()
        r, raw = c.ok_multi("RETR 1")
        assert unstuff(raw) == wire(data)
        c.quit()


@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
def test_old_tls_refused(pop3_server, version):
    v = getattr(ssl.TLSVersion, version)
    ctx = client_ctx(minimum=v, maximum=v, legacy=True)
    with pytest.raises((ssl.SSLError, ConnectionError)) as e:
        pop3_server.conn(tls=True, context=ctx)
    # the server refused it (our client did offer the old version)
    assert "NO_PROTOCOLS_AVAILABLE" not in str(e.value), e.value
    with pop3_server.conn() as c:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            c.stls(ctx)
    # TLS 1.2 is fine on both
    ctx = client_ctx(minimum=ssl.TLSVersion.TLSv1_2, maximum=ssl.TLSVersion.TLSv1_2)
    with pop3_server.conn(tls=True, context=ctx) as c:
        assert c.sock.version() == "TLSv1.2"
        c.login()
        c.quit()
    with pop3_server.conn() as c:
        c.stls(ctx)
        assert c.sock.version() == "TLSv1.2"
        c.login()
        c.quit()
    # the server is still fine
    with pop3_server.conn(tls=True) as c:
        c.login()
        c.quit()


def test_plaintext_on_pop3s_port(pop3_server):
    """No plaintext greeting on the implicit-TLS port; garbage ends the connection."""
    with socket.create_connection((pop3_server.host, pop3_server.ssl_port), timeout=10) as s:
        s.sendall(b"CAPA\r\nUSER alice@example.test\r\n")
        data = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
        assert b"+OK" not in data, data
    with pop3_server.conn(tls=True) as c:
        c.login()
        c.quit()


def test_pop3s_greeting_is_not_delayed(pop3_server):
    """The greeting is queued before the TLS handshake ends and goes out right
    after it. It must not wait for the client's delayed ACK (Nagle, about
    40 ms): the server's end of the connection has TCP_NODELAY set and is not
    corked, read from the socket itself rather than timed."""
    for _ in range(3):
        with pop3_server.conn(tls=True) as c:
            assert c.greeting.startswith(b"+OK")
            master = pop3_server.proc.pid
            assert server_option(master, c.sock, socket.IPPROTO_TCP, socket.TCP_NODELAY)
            assert server_option(master, c.sock, socket.IPPROTO_TCP, socket.TCP_CORK) == 0
            c.login()
            c.quit()
