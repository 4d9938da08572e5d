"""IMAP COMPRESS=DEFLATE (RFC 4978): after the tagged OK both directions
are raw DEFLATE (no zlib header), each side flushing what it sends. The
client here is ImapConn with a zlib layer under its send/receive, so every
other command runs unchanged over the compressed stream; over plain IMAP
and over IMAPS."""

import re
import zlib

import pytest

from imap_util import (ALICE, Conn, Literal, PASSWORD, imap_inst, imap_instance,  # noqa: F401
                       imap_server, imap_start, crlf, message, put)


class DeflateConn(Conn):
    """ImapConn that, once compress() succeeded, deflates what it sends
    (Z_SYNC_FLUSH per send, as RFC 4978 asks) and inflates what it reads.
    wire_in/wire_out count the bytes on the socket after compress()."""

    def __init__(self, *a, **kw):
        self.z_out = self.z_in = None
        self.wire_in = self.wire_out = 0
        Conn.__init__(self, *a, **kw)

    def compress(self):
        r = self.cmd("COMPRESS DEFLATE")
        assert r.status == "OK", r
        assert not self.buf, "data after the OK of COMPRESS: %r" % self.buf
        self.z_out = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.z_in = zlib.decompressobj(-15)
        return r

    def send_raw(self, data):
        self.wire_out += len(data)
        self.sock.sendall(data)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        if self.z_out is None:
            return Conn.send(self, data)
        self.send_raw(self.z_out.compress(data) + self.z_out.flush(zlib.Z_SYNC_FLUSH))

    def _fill(self):
        if self.z_in is None:
            return Conn._fill(self)
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by the server")
            self.wire_in += len(chunk)
            out = self.z_in.decompress(chunk)
            if out:
                self.buf += out
                return


def connect(srv, tls=False):
    c = DeflateConn(srv.host, srv.ssl_port if tls else srv.port, tls=tls)
    c.login(ALICE, PASSWORD)
    return c


def caps(c):
    r = c.ok("CAPABILITY")
    return r.data("CAPABILITY")[0].decode().split()


def big_message(lines=20000):
    body = b"".join(b"line %06d of a long and very repetitive body\r\n" % i
                    for i in range(lines))
    return (b"From: a@example.org\r\nTo: alice@example.test\r\nSubject: big\r\n"
            b"Message-ID: <big@example.org>\r\n\r\n" + body)


def test_capability_only_after_login(imap_server):
    with DeflateConn(imap_server.host, imap_server.port) as c:
        assert "COMPRESS=DEFLATE" not in caps(c)
        c.bad("COMPRESS DEFLATE")   # not in the not-authenticated state
        c.login(ALICE, PASSWORD)
        assert "COMPRESS=DEFLATE" in caps(c)


@pytest.mark.parametrize("tls", [False, True], ids=["imap", "imaps"])
def test_session_over_deflate(imap_server, tls):
    """SELECT, FETCH of a 1 MB message, APPEND with a literal, SEARCH and
    LOGOUT all work compressed, and the wire carries far fewer bytes than
    the message."""
    srv = imap_server
    big = big_message()
    put(srv.instance, ALICE, big)
    put(srv.instance, ALICE, message(2))
    c = connect(srv, tls)
    c.compress()
    r = c.ok("SELECT INBOX")
    assert 2 in r.numbered("EXISTS"), r
    r = c.ok("UID FETCH 1:* (UID RFC822.SIZE BODY.PEEK[])")
    f = r.fetches()
    assert f[1]["BODY[]"] == big and int(f[1]["RFC822.SIZE"]) == len(big)
    assert c.wire_in < len(big) // 5, (c.wire_in, len(big))
    # APPEND: synchronising literal (the '+' comes compressed too) and LITERAL+
    appended = crlf(message(3))
    c.ok("APPEND INBOX (\\Seen) ", Literal(appended))
    c.ok("APPEND INBOX ", Literal(message(4), plus=True))
    r = c.ok("UID SEARCH SEEN")
    assert r.search() == [3], r
    r = c.ok("FETCH 3 BODY.PEEK[]")
    assert r.fetches()[3]["BODY[]"] == appended
    # a second COMPRESS: NO [COMPRESSIONACTIVE]
    r = c.no("COMPRESS DEFLATE")
    assert "COMPRESSIONACTIVE" in r.line.decode(), r
    r = c.cmd("LOGOUT")
    assert r.status == "OK" and any(u.startswith(b"* BYE") for u in r.untagged), r
    c.close()
    assert "COMPRESS=DEFLATE active" in srv.log()


def test_pipelined_commands(imap_server):
    """Many commands in one compressed write come back in order."""
    srv = imap_server
    for i in range(1, 6):
        put(srv.instance, ALICE, message(i))
    c = connect(srv)
    c.compress()
    c.ok("SELECT INBOX")
    tags = ["P%d" % i for i in range(50)]
    c.send("".join("%s FETCH %d (UID)\r\n" % (t, i % 5 + 1) for i, t in enumerate(tags)))
    for i, t in enumerate(tags):
        r = c.read_tagged(t)
        assert r.status == "OK" and r.fetches()[i % 5 + 1]["UID"] == str(i % 5 + 1), r
    c.ok("LOGOUT")


def test_bad_arguments(imap_server):
    c = connect(imap_server)
    c.bad("COMPRESS")
    c.bad("COMPRESS GZIP")
    c.bad("COMPRESS DEFLATE EXTRA")
    # still uncompressed and usable
    c.ok("NOOP")
    c.compress()
    c.ok("NOOP")
    c.ok("LOGOUT")


def test_garbage_instead_of_deflate_closes(imap_server):
    """Bytes that are not a DEFLATE stream end the connection; the server
    and other sessions carry on."""
    srv = imap_server
    c = connect(srv)
    c.compress()
    c.z_out = None
    c.send_raw(b"\xff\xff\xff\xff garbage that no inflater accepts\r\n" * 4)
    data, closed = c.read_rest(timeout=10)
    assert closed, data
    with connect(srv) as d:
        d.compress()
        d.ok("NOOP")
    assert not srv.crashes()


def test_client_finishes_stream(imap_server):
    """A client that ends its DEFLATE stream (final block) is disconnected
    without a crash; a session that just closes the socket too."""
    srv = imap_server
    c = connect(srv)
    c.compress()
    c.send_raw(c.z_out.compress(b"a NOOP\r\n") + c.z_out.flush(zlib.Z_FINISH))
    c.z_out = None
    data, closed = c.read_rest(timeout=10)
    assert closed
    d = connect(srv)
    d.compress()
    d.close()
    with connect(srv) as e:
        e.ok("NOOP")
    assert not srv.crashes()


def test_idle_compressed(imap_server):
    """IDLE's untagged EXISTS reaches a compressed session at once (the
    server flushes every response)."""
    srv = imap_server
    c = connect(srv)
    c.compress()
    c.ok("SELECT INBOX")
    c.send("I1 IDLE\r\n")
    assert c.response().startswith(b"+")
    srv.deliver(ALICE, message(9))
    got, _ = c.read_until(r"^\* 1 EXISTS", timeout=20)
    assert got is not None
    c.send("DONE\r\n")
    r = c.read_tagged("I1")
    assert r.status == "OK", r
    c.ok("LOGOUT")



def test_loop_command_then_pool_command(imap_server):
    """ENABLE (answered at once) and LIST (answered by a pool job) in one
    compressed write: each tagged reply carries its own tag and text (the
    layer's callbacks are deferred, so writing one reply never starts the
    next command half-way)."""
    c = connect(imap_server)
    c.compress()
    c.send("a3 ENABLE UTF8=ACCEPT\r\na4 LIST \"\" \"\"\r\nA5 NAMESPACE\r\n")
    r3 = c.read_tagged("a3")
    assert r3.status == "OK" and "Enabled" in r3.line.decode(), r3
    r4 = c.read_tagged("a4")
    assert r4.status == "OK" and "LIST" in r4.line.decode().upper(), r4
    assert any(u.startswith(b"* LIST") for u in r4.untagged), r4
    r5 = c.read_tagged("A5")
    assert r5.status == "OK" and any(u.startswith(b"* NAMESPACE") for u in r5.untagged), r5
    c.ok("LOGOUT")
