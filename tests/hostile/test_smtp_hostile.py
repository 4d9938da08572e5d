"""Hostile SMTP clients (MX and submission ports): smuggling variants not
covered by tests/integration/test_smtp_data.py (other bare CR/LF shapes, split
writes, BDAT, the submission port), line-length truncation, invalid UTF-8 in
addresses, more relay tricks, STARTTLS command injection, slow and half-open
clients. Every test ends with the server alive, no worker dead, no sanitizer
report, and new sessions served (hostile_util.healthy)."""

import socket
import threading
import time

import pytest

from harness.instance import TIMEOUT_SCALE
from hostile_util import (ALICE, BOB, PASSWORD, assert_queue_empty, client_ctx,
                          closed_within, delivered, dropped_after_timeout, healthy, idle_timeout,
                          no_crash, smtp_msg, still_open)
from smtp_util import new_files, read_new, split_stored


@pytest.fixture(scope="module")
def srv(shared_sqlite):
    return shared_sqlite


def rcpt_reply(c, rcpt, sender="x@y.test"):
    c.expect("MAIL FROM:<%s>" % sender, 250)
    r = c.cmd("RCPT TO:%s" % rcpt)
    c.expect("RSET", 250)
    return r


# --------------------------------------------------------------------------
# smuggling (RFC 5321 4.1.1.4: only CRLF.CRLF ends DATA; SPEC 4 "no SMTP smuggling")

SMUGGLED = (b"MAIL FROM:<admin@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
            b"From: admin@example.test\r\nSubject: smuggled\r\n\r\nevil\r\n")

NEW_SEQS = [b"\r\n.\r\r\n", b"\r\r\n.\r\r\n", b"\n\n.\n\n", b"\r\n. \r\n", b"\r\n.\x00\r\n"]


def check_one_message(srv, bob_before, alice_before, must_contain=b"Subject: smuggled"):
    inst = srv.instance
    assert new_files(inst, BOB) == bob_before, "a smuggled message reached bob"
    new = [f for f in new_files(inst, ALICE) if f not in alice_before]
    assert len(new) <= 1, new
    if new:
        with open(new[0], "rb") as f:
            _, body = split_stored(f.read())
        assert must_contain in body, body
    return new


@pytest.mark.parametrize("seq", NEW_SEQS, ids=[repr(s)[2:-1] for s in NEW_SEQS])
def test_smuggling_variant_does_not_end_data(srv, seq):
    """A fake end-of-data is message text: exactly one reply after the real
    CRLF.CRLF (250, or a 5xx refusal of the whole message), never a second
    transaction."""
    inst = srv.instance
    bob0, alice0 = new_files(inst, BOB), new_files(inst, ALICE)
    with srv.mx() as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<x@y.test>", 250)
        c.expect("RCPT TO:<%s>" % ALICE, 250)
        c.expect("DATA", 354)
        c.send(b"Subject: outer\r\n\r\nhello" + seq + SMUGGLED + b"\r\n.\r\n")
        r = c.reply()
        assert r.code == 250 or 550 <= r.code <= 554, r
        r2 = c.cmd("QUIT")
        assert r2.code == 221, "only one reply may follow the data, then QUIT's: %r" % r2
    new = check_one_message(srv, bob0, alice0)
    assert len(new) == (1 if r.code == 250 else 0)
    healthy(srv)


def test_smuggling_fake_terminator_split_across_writes(srv):
    """'\\n.\\n' arriving byte-group by byte-group, with pauses, is still text."""
    inst = srv.instance
    bob0, alice0 = new_files(inst, BOB), new_files(inst, ALICE)
    with srv.mx() as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<x@y.test>", 250)
        c.expect("RCPT TO:<%s>" % ALICE, 250)
        c.expect("DATA", 354)
        for part in (b"Subject: split\r\n\r\nhello\n", b".", b"\n", SMUGGLED[:20],
                     SMUGGLED[20:], b"\r\n.", b"\r\n"):
            c.send(part)
            time.sleep(0.15)
        r = c.reply()
        assert r.code == 250, r
        assert c.cmd("QUIT").code == 221
    assert len(check_one_message(srv, bob0, alice0)) == 1
    healthy(srv)


def test_smuggling_inside_bdat_chunk(srv):
    """RFC 3030: a BDAT chunk is opaque octets; a CRLF.CRLF and commands inside
    it are message content, and exactly one message results."""
    inst = srv.instance
    bob0, alice0 = new_files(inst, BOB), new_files(inst, ALICE)
    chunk = b"Subject: bdat\r\n\r\nhello\r\n.\r\n" + SMUGGLED + b".\r\n"
    with srv.mx() as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<x@y.test>", 250)
        c.expect("RCPT TO:<%s>" % ALICE, 250)
        c.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
        r = c.reply()
        assert r.code == 250, r
        c.expect("NOOP", 250)     # not a reply to a smuggled command
        assert c.cmd("QUIT").code == 221
    new = check_one_message(srv, bob0, alice0, must_contain=b"RCPT TO:<bob@example.test>")
    assert len(new) == 1
    healthy(srv)


SUB_SEQS = [b"\n.\n", b"\r.\r\n", b"\n.\r\n"]


@pytest.mark.parametrize("seq", SUB_SEQS, ids=[repr(s)[2:-1] for s in SUB_SEQS])
def test_smuggling_on_submission(srv, seq):
    """The same class on the authenticated submission port: a smuggled second
    message to a remote address must not enter the outbound queue."""
    inst = srv.instance
    bob0 = new_files(inst, BOB)
    smuggled = (b"MAIL FROM:<alice@example.test>\r\nRCPT TO:<victim@remote.test>\r\nDATA\r\n"
                b"Subject: smuggled\r\n\r\nevil\r\n")
    with srv.sub() as c:
        c.login(ALICE, PASSWORD)
        c.expect("MAIL FROM:<%s>" % ALICE, 250)
        c.expect("RCPT TO:<%s>" % BOB, 250)
        c.expect("DATA", 354)
        c.send(b"Subject: outer\r\n\r\nhello" + seq + smuggled + b"\r\n.\r\n")
        r = c.reply()
        assert r.code == 250 or 550 <= r.code <= 554, r
        assert c.cmd("QUIT").code == 221
    new = [f for f in new_files(inst, BOB) if f not in bob0]
    assert len(new) == (1 if r.code == 250 else 0), new
    time.sleep(0.2)
    assert_queue_empty(inst)
    healthy(srv)


# --------------------------------------------------------------------------
# lines over the limit, NUL, invalid UTF-8


def test_overlong_rcpt_is_not_truncated_into_a_valid_one(srv):
    """RFC 5321 4.5.3.1.4 / SPEC 4 bounded lines: an RCPT line over 1000 octets
    whose first 1000 octets are a valid RCPT is refused as a whole (500), not
    cut and accepted; DATA then has no recipient."""
    with srv.mx() as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<x@y.test>", 250)
        r = c.cmd("RCPT TO:<%s>" % ALICE + " " * 1100 + "X-TAIL")
        assert r.code == 500, r
        r = c.cmd("RCPT TO:<%s> NOTIFY=NEVER" % BOB + "A" * 1200)
        assert r.code in (500, 501, 555), r
        r = c.cmd("DATA")
        assert r.code in (503, 554), "DATA without any accepted recipient: %r" % r
        c.expect("NOOP", 250)
    healthy(srv)


def test_overlong_ehlo_and_mail_pipelined(srv):
    """Several overlong lines in one write: one 500 each, the tail of a long
    line is not run as a command."""
    with srv.mx() as c:
        c.send(b"EHLO " + b"h" * 3000 + b"\r\nEHLO ok.test\r\nMAIL FROM:<x@y.test>"
               + b" " * 2000 + b"RCPT TO:<bob@example.test>\r\nNOOP\r\n")
        codes = [r.code for r in c.replies(4)]
        assert codes[0] == 500 and codes[1] == 250 and codes[2] == 500 and codes[3] == 250, codes
        assert c.cmd("RCPT TO:<%s>" % BOB).code == 503, "no MAIL was accepted"
    healthy(srv)


BAD_UTF8 = [b"\xff\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\xf8\x88\x80\x80\x80"]


@pytest.mark.parametrize("bad", BAD_UTF8, ids=[b.hex() for b in BAD_UTF8])
def test_invalid_utf8_in_addresses(srv, bad):
    """Malformed UTF-8 in MAIL FROM / RCPT TO is refused (5xx) with or without
    SMTPUTF8 (RFC 6531 3.3: addresses are UTF-8); no message is taken."""
    before = delivered(srv.instance)
    wrong = []
    with srv.mx() as c:
        c.expect("EHLO client.test", 250)
        for line in (b"MAIL FROM:<x" + bad + b"@y.test>",
                     b"MAIL FROM:<x" + bad + b"@y.test> SMTPUTF8",
                     b"MAIL FROM:<x@y" + bad + b".test> SMTPUTF8"):
            c.send(line + b"\r\n")
            r = c.reply()
            if not 500 <= r.code < 600:
                wrong.append((line, r))
            c.expect("RSET", 250)
        c.expect("MAIL FROM:<x@y.test> SMTPUTF8", 250)
        for line in (b"RCPT TO:<alice" + bad + b"@example.test>",
                     b"RCPT TO:<" + bad + b"@example.test>",
                     b"RCPT TO:<alice@example" + bad + b".test>"):
            c.send(line + b"\r\n")
            r = c.reply()
            if not 500 <= r.code < 600:
                wrong.append((line, r))
        r = c.cmd("DATA")
        if r.code == 354:
            c.send(b"Subject: bad utf8\r\n\r\nx\r\n.\r\n")
            c.reply()
        assert r.code in (503, 554), r
    assert not wrong, "accepted: %r" % wrong
    assert delivered(srv.instance) == before
    healthy(srv)


def test_utf8_address_without_smtputf8(srv):
    """RFC 6531 3.4: a non-ASCII address without the SMTPUTF8 parameter is
    refused (553 5.6.7 recommended); never accepted silently."""
    with srv.mx() as c:
        c.expect("EHLO client.test", 250)
        c.send("MAIL FROM:<jörg@bücher.test>\r\n".encode())
        r = c.reply()
        assert 500 <= r.code < 600, r
        c.expect("MAIL FROM:<x@y.test>", 250)
        c.send("RCPT TO:<jörg@example.test>\r\n".encode())
        r = c.reply()
        assert 500 <= r.code < 600, r
    healthy(srv)


def test_nul_in_ehlo_and_data_command(srv):
    with srv.mx() as c:
        c.send(b"EHLO a\0b.test\r\n")
        assert c.reply().code in (500, 501)
        c.expect("EHLO ok.test", 250)
        c.expect("MAIL FROM:<x@y.test>", 250)
        c.expect("RCPT TO:<%s>" % ALICE, 250)
        c.send(b"DATA\0\r\n")
        r = c.reply()
        assert r.code in (500, 501), r
        c.expect("RSET", 250)
    healthy(srv)


# --------------------------------------------------------------------------
# relay tricks (forms not in tests/integration/test_smtp_routing.RELAY_FORMS)

RELAY = [
    ("uppercase-foreign", "<x@OTHER.TEST>", "x@y.test"),
    ("percent-uppercase-local", "<user%other.test@EXAMPLE.TEST>", "x@y.test"),
    ("quoted-percent", '<"user%other.test"@example.test>', "x@y.test"),
    ("quoted-bang", '<"other.test!user"@example.test>', "x@y.test"),
    ("ip-literal-self", "<user@[127.0.0.1]>", "x@y.test"),
    ("ipv6-literal", "<user@[IPv6:::1]>", "x@y.test"),
    ("percent-at-ip-literal", "<user%other.test@[127.0.0.1]>", "x@y.test"),
    ("hosted-as-prefix", "<user@example.test.other.test>", "x@y.test"),
    ("hosted-as-suffix", "<user@xexample.test>", "x@y.test"),
    ("double-trailing-dot", "<user@other.test..>", "x@y.test"),
    ("source-route-uppercase", "<@EXAMPLE.TEST:user@other.test>", "x@y.test"),
    ("spoofed-local-sender", "<user@other.test>", ALICE),
    ("postmaster-foreign", "<postmaster@other.test>", "x@y.test"),
    ("localhost", "<user@localhost>", "x@y.test"),
    ("unknown-domain", "<nobody@unknown.invalid>", "x@y.test"),
    ("unbracketed", "user@other.test", "x@y.test"),
]


@pytest.mark.parametrize("rcpt,sender", [(r, s) for _, r, s in RELAY], ids=[i for i, _, _ in RELAY])
def test_relay_trick_denied(srv, rcpt, sender):
    """SPEC 4: 554/550 relay denied for a foreign destination unless
    authenticated; no relay form may reach the outbound queue."""
    inst = srv.instance
    before = delivered(inst)
    with srv.mx() as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<%s>" % sender, 250)
        r = c.cmd("RCPT TO:" + rcpt)
        assert r.code in (501, 550, 551, 553, 554), "RCPT TO:%s -> %r" % (rcpt, r)
        assert r.text[:4] in ("5.7.", "5.1.", "5.5."), r
        r = c.cmd("DATA")
        assert r.code in (503, 554), r
        c.expect("QUIT", 221)
    time.sleep(0.1)
    assert_queue_empty(inst)
    assert delivered(inst) == before
    healthy(srv)


# --------------------------------------------------------------------------
# STARTTLS injection (CVE-2011-0411 class)


def test_starttls_injection_mx(srv):
    """Commands pipelined after STARTTLS in the same packet are discarded: no
    reply before or after the handshake, and the session is new (RFC 3207 4.2:
    EHLO again, no transaction)."""
    with srv.mx() as c:
        c.expect("EHLO client.test", 250)
        c.send(b"STARTTLS\r\nMAIL FROM:<evil@y.test>\r\nRCPT TO:<alice@example.test>\r\n")
        r = c.reply()
        assert r.code == 220, r
        assert c.buf == b"", "plaintext replies after 220: %r" % c.buf
        c.sock = client_ctx().wrap_socket(c.sock)
        c.sock.settimeout(0.5)
        try:
            extra = c.sock.recv(4096)
        except socket.timeout:
            extra = b""
        c.sock.settimeout(15)
        assert extra == b"", "replies to the injected commands: %r" % extra
        r = c.cmd("RCPT TO:<%s>" % ALICE)
        assert r.code == 503, "the injected MAIL FROM was run: %r" % r
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<x@y.test>", 250)
        c.expect("QUIT", 221)
    healthy(srv)


def test_starttls_injection_submission_auth(srv):
    """On the submission port an AUTH injected after STARTTLS must not
    authenticate the TLS session."""
    import mx_util
    with srv.sub() as c:
        c.ehlo()
        c.send(("STARTTLS\r\nAUTH PLAIN %s\r\n" % mx_util.plain_b64(ALICE, PASSWORD)).encode())
        r = c.reply()
        assert r.code == 220, r
        assert c.buf == b"", c.buf
        c.sock = client_ctx().wrap_socket(c.sock)
        c.tls = True
        c.sock.settimeout(0.5)
        try:
            extra = c.sock.recv(4096)
        except socket.timeout:
            extra = b""
        c.sock.settimeout(15)
        assert extra == b"", "a reply to the injected AUTH: %r" % extra
        c.ehlo()
        r = c.cmd("MAIL FROM:<%s>" % ALICE)
        assert r.code == 530, "authenticated by an injected AUTH: %r" % r
    healthy(srv)


def test_starttls_partial_line_not_joined(srv):
    """Half a command line sent before the handshake is dropped, not joined
    with what comes inside TLS."""
    with srv.mx() as c:
        c.expect("EHLO client.test", 250)
        c.send(b"STARTTLS\r\nMAIL FR")
        assert c.reply().code == 220
        c.sock = client_ctx().wrap_socket(c.sock)
        c.expect("EHLO client.test", 250)
        r = c.cmd("OM:<x@y.test>")
        assert 500 <= r.code < 600, "a line joined across STARTTLS: %r" % r
        r = c.cmd("RCPT TO:<%s>" % ALICE)
        assert r.code == 503, r
    healthy(srv)


# --------------------------------------------------------------------------
# slow and half-open clients


def trickle(sock, data, interval, limit):
    """Send data one byte per `interval` s until the server closes or `limit`
    s pass; (closed, seconds)."""
    t0 = time.monotonic()
    for b in data:
        if time.monotonic() - t0 > limit:
            return False, time.monotonic() - t0
        try:
            sock.sendall(bytes([b]))
        except (BrokenPipeError, ConnectionResetError):
            return True, time.monotonic() - t0
        sock.settimeout(interval)
        try:
            chunk = sock.recv(4096)
            if chunk == b"":
                return True, time.monotonic() - t0
            if chunk.startswith(b"421") or b"\r\n421" in chunk:
                closed, _, _ = closed_within(sock, 3)
                return closed, time.monotonic() - t0
        except socket.timeout:
            pass
        except ConnectionResetError:
            return True, time.monotonic() - t0
    return False, time.monotonic() - t0


def test_slowloris_smtp(sqlite_instance, all_start):
    """smtp_timeout=2: a client that sends one byte per second (never a whole
    line) is disconnected within a bound, and others are served meanwhile."""
    import hostile_util
    hostile_util.add_users(sqlite_instance)
    timeout = idle_timeout()
    srv = all_start(sqlite_instance, ("smtp_timeout=%d" % timeout,))
    s = socket.create_connection((srv.host, srv.port), timeout=10)
    s.recv(1024)   # greeting
    res = {}
    t = threading.Thread(target=lambda: res.setdefault(
        "r", trickle(s, b"EHLO " + b"s" * 40, 1.0, 12)))
    t.start()
    time.sleep(1.5)
    with srv.mx() as c:
        r = c.send_message("x@y.test", [ALICE], smtp_msg("while slow"), ehlo="fast.test")
        assert r.code == 250, r
    t.join(20)
    s.close()
    closed, took = res["r"]
    assert closed and took <= 9 * TIMEOUT_SCALE, \
        "a 1 byte/s client was still connected after %.1fs" % took
    healthy(srv)


def test_half_open_connections_smtp(sqlite_instance, all_start):
    """40 idle connections (some with half a command) do not keep a normal
    client out, and the server drops them after smtp_timeout."""
    import hostile_util
    hostile_util.add_users(sqlite_instance)
    timeout = idle_timeout()
    srv = all_start(sqlite_instance, ("smtp_timeout=%d" % timeout,))
    socks = []
    try:
        for i in range(40):
            s = socket.create_connection((srv.host, srv.port), timeout=10)
            if i % 2:
                s.sendall(b"EHLO half")
            socks.append(s)
        with srv.mx() as c:
            r = c.send_message("x@y.test", [ALICE], smtp_msg("among idle"), ehlo="ok.test")
            assert r.code == 250, r
        # served while every idle connection was still open: they did not
        # keep it out until the server dropped them
        assert len(still_open(socks)) == len(socks), \
            "served only after idle connections were dropped"
        dropped_after_timeout(socks, timeout, "smtp_timeout")
    finally:
        for s in socks:
            s.close()
    healthy(srv)
