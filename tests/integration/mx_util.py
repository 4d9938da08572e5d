"""Helpers for the sending-side tests (test_submission*.py, test_outbound*.py,
test_dkim*.py).

- FakeMX: a small threaded SMTP receiver on loopback that plays the remote MX
  behind a `smtp:[127.0.0.1]:PORT` transport (or relayhost). EHLO with or
  without PIPELINING / STARTTLS (the instance's own cert and key), scripted
  replies per command, and a record of every transaction: envelope, the
  message bytes exactly as received (CRLF, dot-unstuffed), TLS or not, and
  whether the client pipelined commands it was not allowed to.
- PetrelServer / start_petrel(): `petrel serve` (harness.server) with the MX port, the
  submission port (STARTTLS) and the submissions port (implicit TLS) on free
  loopback ports, queue manager on a 1 s scan.
- SubClient (harness.conn.SubmissionConn): the SMTP client with STARTTLS /
  implicit TLS and AUTH PLAIN / LOGIN, for byte-level submission tests.
- queue helpers: `petrel queue list --json`, bounded waits.
"""

import email
import email.policy
import os
import re
import select
import socket
import ssl
import threading
import time

import smtp_util
from harness import server
from harness.conn import SubmissionConn as SubClient  # noqa: F401
from harness.conn import b64, client_ctx, plain_b64  # noqa: F401
from harness.instance import ALICE, BOB, PASSWORD, TIMEOUT_SCALE, USERS, add_users  # noqa: F401
from smtp_util import Client, SmtpServer, free_port, queue_files  # noqa: F401

HOSTNAME = smtp_util.HOSTNAME          # petrel's hostname in these tests
FAIL_DELAY_MS = 100
START_TIMEOUT = 15 * TIMEOUT_SCALE
IO_TIMEOUT = 20 * TIMEOUT_SCALE
WAIT = 20 * TIMEOUT_SCALE          # bound for "the queue manager did it" waits
# Remote mail with no transport of its own goes to a closed port (never
# to real MX records); quick queue scans; short auth failure delay.
DEFAULTS = ("hostname=" + HOSTNAME, "auth_fail_delay=%d" % FAIL_DELAY_MS,
            "relayhost=[127.0.0.1]:9", "queue_retry_min=1", "queue_scan_interval=1")


def wait_for(predicate, timeout=WAIT, interval=0.05):
    """Poll predicate() until it returns something true or timeout passes;
    returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)


# --------------------------------------------------------------------------
# TLS


def instance_cert(inst):
    """(cert, key) paths of an instance made by `petrel init`."""
    conf = inst.config()
    return (conf.get("tls_cert") or os.path.join(inst.dir, "tls", "cert.pem"),
            conf.get("tls_key") or os.path.join(inst.dir, "tls", "key.pem"))


# --------------------------------------------------------------------------
# the fake remote MX


class Transaction:
    """One MAIL transaction seen by the FakeMX."""

    def __init__(self, conn_no, helo, tls):
        self.conn_no = conn_no
        self.helo = helo
        self.tls = tls
        self.mail_from = None
        self.mail_args = ""
        self.rcpts = []        # accepted (2xx) recipients
        self.refused = []      # (address, reply) of the others
        self.data = None       # message bytes (CRLF, dot-unstuffed, no final .CRLF)
        self.reply = None      # the reply given at the end of data

    @property
    def accepted(self):
        return self.data is not None and self.reply is not None and self.reply[:1] == "2"

    def message(self):
        return email.message_from_bytes(self.data, policy=email.policy.compat32)

    def __repr__(self):
        return ("<Transaction from=%r rcpts=%r refused=%r reply=%r tls=%s %s bytes>"
                % (self.mail_from, self.rcpts, self.refused, self.reply, self.tls,
                   None if self.data is None else len(self.data)))


class FakeMX:
    """A threaded SMTP receiver on 127.0.0.1 (or `host`, another loopback
    address; port 25 there plays a real MX found through DNS).

    Scripted replies: `mail`, `rcpt`, `data` (the answer to DATA) and `eod`
    (the answer after the message) each take
      None      the default (250 / 354 / 250),
      "451 ..." a fixed reply,
      [r1, r2]  replies in order, the last one repeated,
      callable  f(arg) -> any of these (arg: the address, or the Transaction),
      dict      {address (lower case): any of these}, default for the others.
    greeting: the 220 line (or e.g. "421 ..." / "554 ...").
    any_line_end: take a bare CR or a bare LF for a line end too, as a lax
    receiver does (the target of SMTP smuggling); every transaction then also
    keeps .raw, the data bytes exactly as they came, before any unstuffing.
    """

    def __init__(self, port=None, pipelining=True, starttls=False, cert=None,
                 greeting="220 fake-mx.test ESMTP ready", mail=None, rcpt=None,
                 data=None, eod=None, ehlo_extra=("8BITMIME", "ENHANCEDSTATUSCODES"),
                 any_line_end=False, host="127.0.0.1"):
        self.any_line_end = any_line_end
        self.host = host
        self.pipelining = pipelining
        self.starttls = starttls
        self.cert = cert
        self.greeting = greeting
        self.script = {"mail": mail, "rcpt": rcpt, "data": data, "eod": eod}
        self._counters = {}
        self.ehlo_extra = list(ehlo_extra)
        self.transactions = []
        self.connections = 0
        self.commands = []             # (conn_no, command line) of every command
        self.violations = []           # protocol errors by the client (strings)
        self.errors = []               # exceptions in connection threads
        self.cond = threading.Condition()
        self._stop = False
        self._socks = []
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, port or 0))
        self.listener.listen(50)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self._tls_ctx = None
        if starttls:
            assert cert, "STARTTLS needs cert=(certfile, keyfile)"
            self._tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._tls_ctx.load_cert_chain(cert[0], cert[1])
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    @property
    def transport(self):
        return "smtp:[%s]:%d" % (self.host, self.port)

    # --- scripted replies
    def _resolve(self, value, key, arg):
        if callable(value) and not isinstance(value, (str, list, dict)):
            value = value(arg)
        if isinstance(value, dict):
            k = arg.lower() if isinstance(arg, str) else None
            value = value.get(k, value.get(None))
            return self._resolve(value, (key, k), arg)
        if isinstance(value, list):
            with self.cond:
                i = self._counters.get(key, 0)
                self._counters[key] = i + 1
            return value[min(i, len(value) - 1)]
        return value

    def _reply_for(self, kind, arg, default):
        r = self._resolve(self.script[kind], kind, arg)
        return default if r is None else r

    # --- server
    def _accept_loop(self):
        while not self._stop:
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            with self.cond:
                self.connections += 1
                n = self.connections
                self._socks.append(conn)
            threading.Thread(target=self._serve, args=(conn, n), daemon=True).start()

    def _serve(self, conn, n):
        try:
            _Session(self, conn, n).run()
        except (OSError, ssl.SSLError, ConnectionError) as e:
            with self.cond:
                self.errors.append("connection %d: %r" % (n, e))
        except Exception as e:  # a bug in the fake: make it visible
            with self.cond:
                self.errors.append("connection %d: %r" % (n, e))
            raise
        finally:
            try:
                conn.close()
            except OSError:
                pass
            with self.cond:
                self.cond.notify_all()

    def _record(self, kind, value):
        with self.cond:
            getattr(self, kind).append(value)
            self.cond.notify_all()

    def stop(self):
        self._stop = True
        try:
            self.listener.close()
        except OSError:
            pass
        with self.cond:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
        self._thread.join(timeout=5)

    # --- results
    def messages(self):
        """Transactions whose message was accepted (2xx at the end of data)."""
        with self.cond:
            return [t for t in self.transactions if t.accepted]

    def wait_messages(self, count=1, timeout=WAIT):
        """Wait (bounded) until at least `count` messages were accepted; the list."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                got = [t for t in self.transactions if t.accepted]
                left = deadline - time.monotonic()
                if len(got) >= count or left <= 0:
                    return got
                self.cond.wait(min(left, 0.2))

    def wait_transactions(self, count=1, timeout=WAIT):
        """Wait until at least `count` transactions are complete (data answered,
        or ended without data); the list."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                got = list(self.transactions)
                left = deadline - time.monotonic()
                if len(got) >= count or left <= 0:
                    return got
                self.cond.wait(min(left, 0.2))

    def rcpt_commands(self):
        with self.cond:
            return [c for _, c in self.commands if c.upper().startswith("RCPT")]

    def __repr__(self):
        return "<FakeMX %s:%d %d conns %r>" % (self.host, self.port, self.connections,
                                                       self.transactions)


class _Session:
    def __init__(self, mx, sock, n):
        self.mx = mx
        self.sock = sock
        self.n = n
        self.buf = b""
        self.raw = b""
        self.tls = False
        self.helo = None
        self.esmtp = False
        self.txn = None
        sock.settimeout(IO_TIMEOUT)

    def send(self, line):
        self.sock.sendall(line.encode() + b"\r\n")

    def readline(self):
        if self.mx.any_line_end:
            return self._readline_lax()
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line + b"\n"

    def _readline_lax(self):
        """A line ended by CRLF, a bare CR or a bare LF, returned with CRLF;
        the bytes as received are added to self.raw."""
        while True:
            i = min([j for j in (self.buf.find(b"\r"), self.buf.find(b"\n")) if j >= 0],
                    default=-1)
            # a CR at the very end may be the first half of a CRLF
            if i >= 0 and not (self.buf[i:i + 1] == b"\r" and i + 1 == len(self.buf)):
                break
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        n = 2 if self.buf[i:i + 2] == b"\r\n" else 1
        raw, self.buf = self.buf[:i + n], self.buf[i + n:]
        self.raw += raw
        return raw[:i] + b"\r\n"

    def more_pending(self):
        """Bytes the client sent before seeing our reply to its last command."""
        if self.buf:
            return True
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        r, _, _ = select.select([self.sock], [], [], 0)
        return bool(r)

    def run(self):
        mx = self.mx
        self.send(mx.greeting)
        if not mx.greeting.startswith("220"):
            # RFC 5321 3.1: a 554 greeting, then QUIT is still answered
            line = self.readline()
            if line is not None:
                self.send("221 2.0.0 Bye")
            return
        while True:
            raw = self.readline()
            if raw is None:
                return
            if not raw.endswith(b"\r\n"):
                mx._record("violations", "bare LF in command %r" % raw)
            line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
            mx._record("commands", (self.n, line))
            verb = line.split(" ", 1)[0].upper()
            arg = line[len(verb):].strip()
            if verb in ("MAIL", "RCPT") and not (mx.pipelining and self.esmtp):
                if self.more_pending():
                    mx._record("violations", "pipelined after %r without PIPELINING" % line)
            if verb == "EHLO":
                self.helo, self.esmtp = arg, True
                self.txn = None
                lines = ["fake-mx.test hello " + arg, "SIZE 100000000"]
                if mx.pipelining:
                    lines.append("PIPELINING")
                if mx.starttls and not self.tls:
                    lines.append("STARTTLS")
                lines += mx.ehlo_extra
                for l in lines[:-1]:
                    self.send("250-" + l)
                self.send("250 " + lines[-1])
            elif verb == "HELO":
                self.helo, self.esmtp = arg, False
                self.txn = None
                self.send("250 fake-mx.test")
            elif verb == "STARTTLS":
                if not (mx.starttls and not self.tls):
                    self.send("502 5.5.1 STARTTLS not offered")
                    continue
                if self.buf:
                    mx._record("violations", "data pipelined after STARTTLS")
                self.send("220 2.0.0 Ready to start TLS")
                self.sock = mx._tls_ctx.wrap_socket(self.sock, server_side=True)
                self.buf = b""
                self.tls = True
                self.helo, self.esmtp, self.txn = None, False, None
            elif verb == "MAIL":
                if self.helo is None:
                    self.send("503 5.5.1 EHLO first")
                    continue
                m = re.match(r"(?i)FROM:<([^>]*)>(.*)$", arg)
                if not m:
                    self.send("501 5.5.4 Syntax: MAIL FROM:<address>")
                    continue
                txn = Transaction(self.n, self.helo, self.tls)
                txn.mail_from, txn.mail_args = m.group(1), m.group(2).strip()
                r = mx._reply_for("mail", txn.mail_from, "250 2.1.0 Ok")
                self.send(r)
                self.txn = txn if r.startswith("2") else None
            elif verb == "RCPT":
                m = re.match(r"(?i)TO:<([^>]*)>", arg)
                if self.txn is None:
                    self.send("503 5.5.1 MAIL first")
                    continue
                if not m:
                    self.send("501 5.5.4 Syntax: RCPT TO:<address>")
                    continue
                addr = m.group(1)
                r = mx._reply_for("rcpt", addr, "250 2.1.5 Ok")
                self.send(r)
                if r.startswith("2"):
                    self.txn.rcpts.append(addr)
                else:
                    self.txn.refused.append((addr, r))
            elif verb == "DATA":
                txn = self.txn
                if txn is None:
                    self.send("503 5.5.1 MAIL first")
                    continue
                if not txn.rcpts:
                    self.send("554 5.5.1 Error: no valid recipients")
                    self.txn = None
                    mx._record("transactions", txn)
                    continue
                r = mx._reply_for("data", txn, "354 End data with <CR><LF>.<CR><LF>")
                self.send(r)
                if not r.startswith("354"):
                    self.txn = None
                    mx._record("transactions", txn)
                    continue
                lines = []
                self.raw = b""
                while True:
                    l = self.readline()
                    if l is None:
                        return      # connection lost in the middle of the data
                    if l == b".\r\n":
                        break
                    if l.startswith(b"."):
                        l = l[1:]
                    lines.append(l)
                txn.data = b"".join(lines)
                txn.raw = self.raw
                txn.reply = mx._reply_for("eod", txn, "250 2.0.0 Ok: queued as FAKE%d"
                                          % (len(mx.transactions) + 1))
                self.txn = None
                # recorded before the reply goes out: the client may act on
                # the reply (unlink its queue file) before this thread runs on
                mx._record("transactions", txn)
                self.send(txn.reply)
            elif verb == "RSET":
                self.txn = None
                self.send("250 2.0.0 Ok")
            elif verb == "NOOP":
                self.send("250 2.0.0 Ok")
            elif verb == "QUIT":
                self.send("221 2.0.0 Bye")
                return
            else:
                self.send("502 5.5.2 Error: command not recognized")


# --------------------------------------------------------------------------
# petrel serve with MX, submission and submissions ports


class PetrelServer(SmtpServer):
    """A running `petrel serve`: .port (MX), .sub_port (STARTTLS), .subs_port
    (implicit TLS), log(), wait_log(), stop()."""

    def sub(self, timeout=IO_TIMEOUT):
        """A SubClient on the submission port (plaintext until STARTTLS)."""
        return SubClient(self.host, self.sub_port, timeout=timeout)

    def subs(self, timeout=IO_TIMEOUT):
        """A SubClient on the submissions port (implicit TLS)."""
        return SubClient(self.host, self.subs_port, timeout=timeout, implicit_tls=True)

    def mx(self, timeout=IO_TIMEOUT):
        """A SubClient on the MX port."""
        return SubClient(self.host, self.port, timeout=timeout)

    def submit(self, user, sender, rcpts, data, password=PASSWORD, implicit_tls=False):
        """Log in on a submission port and send one message; the final reply."""
        with (self.subs() if implicit_tls else self.sub()) as c:
            c.login(user, password)
            r = c.send_message(sender, rcpts, data)
            c.cmd("QUIT")
            return r


def start_petrel(inst, opts=(), timeout=START_TIMEOUT):
    """Start `petrel serve` for inst on free ports; wait (bounded) until the MX
    and submission ports greet and submissions greets over TLS."""
    return server.start(inst, ("smtp", "submission", "submissions"), DEFAULTS + tuple(opts),
                        cls=PetrelServer, wait={"submissions": "greet"}, timeout=timeout)


# --------------------------------------------------------------------------
# messages


def wire(text):
    """A message in wire form: str/bytes with LF or CRLF -> CRLF, dot-stuffed."""
    if isinstance(text, str):
        text = text.encode()
    text = text.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return re.sub(rb"(?m)^\.", b"..", text)


def make_message(subject, body=b"Hello.\r\n", sender=ALICE, to="x@relay.test", extra=b""):
    """A small RFC 5322 message in CRLF form (not dot-stuffed)."""
    if isinstance(body, str):
        body = body.encode()
    head = ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n" % (sender, to, subject)).encode()
    return head + extra + b"\r\n" + body


# --------------------------------------------------------------------------
# instance set-up and the queue


def add_relay_domain(inst, domain, port):
    """domain -> smtp:[127.0.0.1]:port in the transport table."""
    inst.run("domain", "add", domain, "--transport", "smtp:[127.0.0.1]:%d" % port)


def queue_json(inst):
    return inst.json("queue", "list", "--json")


def queue_ids(inst):
    return sorted(os.path.basename(p) for p in queue_files(inst))


def wait_queue_empty(inst, timeout=WAIT):
    """True if QUEUE_DIR/incoming empties within timeout."""
    return bool(wait_for(lambda: not queue_files(inst), timeout))


def parse_stored(data):
    """A stored maildir file (LF) -> email.message.Message (compat32)."""
    return email.message_from_bytes(data, policy=email.policy.compat32)


def dsn_parts(msg):
    """A multipart/report DSN -> (per-message fields dict, [per-recipient dicts],
    text/rfc822-headers payload as str). Asserts the RFC 3464 structure."""
    assert msg.get_content_type() == "multipart/report", msg.get_content_type()
    assert msg.get_param("report-type") == "delivery-status", msg["Content-Type"]
    parts = msg.get_payload()
    types = [p.get_content_type() for p in parts]
    assert "message/delivery-status" in types, types
    ds = parts[types.index("message/delivery-status")]
    blocks = ds.get_payload()       # a list of Message objects (field groups)
    assert isinstance(blocks, list) and len(blocks) >= 2, blocks
    per_msg = dict((k, v) for k, v in blocks[0].items())
    per_rcpt = [dict((k.lower(), " ".join(v.split())) for k, v in b.items())
                for b in blocks[1:]]
    headers = None
    for p in parts:
        if p.get_content_type() in ("text/rfc822-headers", "message/rfc822-headers"):
            headers = p.get_payload(decode=True).decode("utf-8", "replace")
    assert headers is not None, "no text/rfc822-headers part: %r" % types
    return per_msg, per_rcpt, headers
