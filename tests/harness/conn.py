"""Raw protocol connections with bounded reads.

LineConn is one client socket (optionally TLS from the start, optionally
from a given source address) with a receive buffer; every read is bounded
by `timeout`. Its subclasses speak the protocols for what smtplib, poplib
and imaplib cannot express (pipelining, raw bytes, NUL, overlong lines,
literals, STARTTLS injection):

- SmtpConn: whole (multi-line) replies as Reply objects, send_message().
- SubmissionConn: SmtpConn with STARTTLS / implicit TLS and AUTH PLAIN/LOGIN.
- Pop3Conn: status lines, multi-line bodies, STLS, AUTH PLAIN.
- ImapConn: tagged commands, literals and continuation requests, IDLE,
  STARTTLS; Result, Literal, quote(), parse() for the responses.
"""

import base64
import re
import socket
import ssl
import time

from harness.instance import ALICE, PASSWORD, TIMEOUT_SCALE

IO_TIMEOUT = 15 * TIMEOUT_SCALE


def client_ctx(minimum=None, maximum=None, legacy=False):
    """A client context without certificate verification (self-signed cert)."""
    import warnings
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if legacy:
        # let OpenSSL 3 offer TLS 1.0/1.1 at all (security level 0)
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if minimum is not None:
            ctx.minimum_version = minimum
        if maximum is not None:
            ctx.maximum_version = maximum
    return ctx


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def plain_b64(authcid, password, authzid=""):
    """The SASL PLAIN initial response, base64."""
    return b64("%s\0%s\0%s" % (authzid, authcid, password))


class LineConn:
    """One client connection; every read is bounded by `timeout`."""

    # read_rest(): these errors mean the server closed the connection
    CLOSED_ERRORS = (ConnectionResetError, ssl.SSLError)

    def __init__(self, host, port, timeout=IO_TIMEOUT, tls=False, context=None,
                 source=None, greeting=True):
        self.host = host
        self.port = port
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.sock.settimeout(timeout)
        self.tls = False
        if tls:
            self.wrap_tls(context)
        self.buf = b""
        self.greeting = self.read_greeting() if greeting else None

    def read_greeting(self):
        return self.line()

    def wrap_tls(self, context=None):
        self.sock = (context or client_ctx()).wrap_socket(self.sock)
        self.tls = True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    # --- low level
    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed by the server (pending: %r)"
                                  % self.buf[:200])
        self.buf += chunk

    def raw_line(self):
        """One line as bytes, up to (without) the LF."""
        while b"\n" not in self.buf:
            self._fill()
        l, self.buf = self.buf.split(b"\n", 1)
        return l

    def line(self):
        """One line as bytes, without CRLF (asserted CRLF-terminated)."""
        l = self.raw_line()
        assert l.endswith(b"\r"), "line not CRLF-terminated: %r" % l[:200]
        return l[:-1]

    def read_bytes(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_rest(self, timeout=5):
        """Everything until the server closes (bounded); (data, closed)."""
        self.sock.settimeout(timeout)
        data, closed = self.buf, False
        self.buf = b""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    closed = True
                    break
                data += chunk
        except socket.timeout:
            pass
        except self.CLOSED_ERRORS:
            closed = True
        finally:
            self.sock.settimeout(self.timeout)
        return data, closed

    def is_closed(self, timeout=5):
        """True if the server closes the connection within timeout (nothing more to read)."""
        data, closed = self.read_rest(timeout)
        return closed and not data.strip()

    def nothing_pending(self, wait=0.3):
        """True if the server sends nothing within `wait` seconds."""
        if self.buf:
            return False
        self.sock.settimeout(wait)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return True
        finally:
            self.sock.settimeout(self.timeout)
        self.buf += chunk
        return False


# --------------------------------------------------------------------------
# SMTP


class Reply:
    def __init__(self, lines):
        self.lines = lines  # list of str without CRLF
        self.code = int(lines[-1][:3])
        self.text = "\n".join(l[4:] for l in lines)

    @property
    def first(self):
        return self.lines[0]

    def __repr__(self):
        return "Reply(%r)" % "\n".join(self.lines)


class SmtpConn(LineConn):
    """Raw SMTP; the greeting is a Reply."""

    CLOSED_ERRORS = (ConnectionResetError,)

    def __init__(self, host, port, timeout=15, greeting=True, tls=False, context=None,
                 source=None):
        LineConn.__init__(self, host, port, timeout=timeout, tls=tls, context=context,
                          source=source, greeting=greeting)

    def read_greeting(self):
        return self.reply()

    def _line(self):
        return self.raw_line().rstrip(b"\r").decode("utf-8", "replace")

    def reply(self):
        lines = []
        while True:
            l = self._line()
            assert re.match(r"^[2-5][0-9][0-9]([ -]|$)", l), "malformed reply line %r" % l
            lines.append(l)
            if len(l) < 4 or l[3] == " ":
                return Reply(lines)

    def replies(self, n):
        return [self.reply() for _ in range(n)]

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def expect(self, line, code, contains=None):
        r = self.cmd(line)
        assert r.code == code, "%s -> %r, expected %d" % (line, r, code)
        if contains:
            assert contains in r.text, "%s -> %r, expected %r in it" % (line, r, contains)
        return r

    def transaction(self, sender, rcpts, data):
        """MAIL, RCPT for each of rcpts, DATA (each asserted), then data and
        the final dot; the final reply. data: wire form (CRLF, dot-stuffed,
        without the final dot); CRLF.CRLF is added, sharing data's final
        CRLF if it has one."""
        self.expect("MAIL FROM:<%s>" % sender, 250)
        for r in rcpts:
            self.expect("RCPT TO:<%s>" % r, 250)
        self.expect("DATA", 354)
        end = b".\r\n" if data == b"" or data.endswith(b"\r\n") else b"\r\n.\r\n"
        self.send(data + end)
        return self.reply()

    def send_message(self, sender, rcpts, data, ehlo="client.test"):
        """A whole transaction without pipelining; returns the final reply.
        data: bytes already in wire form (CRLF, dot-stuffed, without the final
        dot); CRLF.CRLF is added, sharing data's final CRLF if it has one."""
        self.expect("EHLO " + ehlo, 250)
        return self.transaction(sender, rcpts, data)


class SubmissionConn(SmtpConn):
    """SmtpConn with TLS (STARTTLS or implicit) and AUTH."""

    def __init__(self, host, port, timeout=20 * TIMEOUT_SCALE, implicit_tls=False,
                 greeting=True):
        SmtpConn.__init__(self, host, port, timeout=timeout, greeting=greeting,
                          tls=implicit_tls)

    def ehlo(self, name="client.test"):
        """EHLO; the reply (asserted 250). .keywords: the upper-case keyword lines."""
        r = self.expect("EHLO " + name, 250)
        r.keywords = [l[4:].strip().upper() for l in r.lines[1:]]
        return r

    def starttls(self):
        r = self.cmd("STARTTLS")
        assert r.code == 220, "STARTTLS -> %r" % r
        assert self.buf == b"", "data after the 220 to STARTTLS: %r" % self.buf
        self.wrap_tls()
        return r

    def auth_plain(self, user, password, initial=True):
        if initial:
            return self.cmd("AUTH PLAIN " + plain_b64(user, password))
        r = self.cmd("AUTH PLAIN")
        if r.code != 334:
            return r
        assert r.lines[-1] == "334 " or r.lines[-1] == "334", r
        return self.cmd(plain_b64(user, password))

    def auth_login(self, user, password):
        r = self.cmd("AUTH LOGIN")
        if r.code != 334:
            return r
        assert r.lines[-1] == "334 VXNlcm5hbWU6", r
        r = self.cmd(b64(user))
        if r.code != 334:
            return r
        assert r.lines[-1] == "334 UGFzc3dvcmQ6", r
        return self.cmd(b64(password))

    def login(self, user=ALICE, password=PASSWORD):
        """STARTTLS if needed, EHLO, AUTH PLAIN; asserts 235."""
        if not self.tls:
            self.ehlo()
            self.starttls()
        self.ehlo()
        r = self.auth_plain(user, password)
        assert r.code == 235, "AUTH PLAIN as %s -> %r" % (user, r)
        return r

    def send_message(self, sender, rcpts, data, ehlo=None):
        """MAIL/RCPT/DATA (no EHLO unless ehlo is given); the final reply.
        data: wire form (CRLF, dot-stuffed, without the final dot)."""
        if ehlo:
            self.expect("EHLO " + ehlo, 250)
        return self.transaction(sender, rcpts, data)


# --------------------------------------------------------------------------
# POP3


class Pop3Conn(LineConn):
    """Raw POP3; the greeting is the status line (bytes)."""

    def status(self):
        l = self.line()
        assert l.startswith(b"+OK") or l.startswith(b"-ERR") or l.startswith(b"+ "), \
            "malformed status line %r" % l[:200]
        return l.decode("utf-8", "replace")

    def multi(self):
        """The lines of a multi-line body up to the terminating '.', raw (still
        byte-stuffed), as bytes."""
        out = []
        while True:
            l = self.line()
            if l == b".":
                return out
            out.append(l)

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.status()

    def ok(self, line):
        r = self.cmd(line)
        assert r.startswith("+OK"), "%s -> %r" % (line, r)
        return r

    def err(self, line, contains=None):
        r = self.cmd(line)
        assert r.startswith("-ERR"), "%s -> %r (expected -ERR)" % (line, r)
        if contains:
            assert contains in r, "%s -> %r, expected %r in it" % (line, r, contains)
        return r

    def ok_multi(self, line):
        """(status, raw lines) of a multi-line reply."""
        r = self.ok(line)
        return r, self.multi()

    def quit(self):
        """QUIT, then wait (bounded) until the server has closed the connection:
        only then is the maildrop lock surely released."""
        r = self.ok("QUIT")
        data, closed = self.read_rest(timeout=10)
        assert (data, closed) == (b"", True), "after QUIT: %r, closed=%s" % (data, closed)
        return r

    def login(self, user=ALICE, password=PASSWORD):
        self.ok("USER " + user)
        return self.ok("PASS " + password)

    def auth_plain(self, authcid, password, authzid=""):
        return self.cmd("AUTH PLAIN " + plain_b64(authcid, password, authzid))

    def stls(self, context=None):
        r = self.ok("STLS")
        assert self.buf == b"", "bytes after the STLS reply: %r" % self.buf
        self.wrap_tls(context)
        return r

    def capa(self):
        _, lines = self.ok_multi("CAPA")
        return [l.decode() for l in lines]


# --------------------------------------------------------------------------
# IMAP


def capabilities(text):
    """The capability names (upper case) of a CAPABILITY response or
    [CAPABILITY ...] response code (str or bytes)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    m = re.search(r"\[CAPABILITY ([^\]]*)\]", text, re.I)
    if m:
        text = m.group(1)
    else:
        text = re.sub(r"^\* CAPABILITY ", "", text, flags=re.I)
    return [c.upper() for c in text.split()]


def quote(s):
    """An IMAP quoted string for s (str); raises for CR/LF/NUL/8-bit (use a
    Literal for those)."""
    assert not re.search(r"[\r\n\0\x80-\U0010ffff]", s), "needs a literal: %r" % s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


_TOKEN = re.compile(rb'[ ]*(?:(\()|(\))|"((?:[^"\\]|\\.)*)"|\{(\d+)\+?\}\r\n|'
                    rb'([^ ()\["{}\r\n]+(?:\[[^\]]*\](?:<[0-9.]+>)?)?))', re.S)


def parse(data):
    """An IMAP response fragment -> list of values: '(' ')' lists become Python
    lists, quoted strings and literals bytes, NIL None, other atoms str (with
    their [section] and <partial> kept, e.g. 'BODY[HEADER]<0>')."""
    if isinstance(data, str):
        data = data.encode()
    stack = [[]]
    i = 0
    n = len(data)
    while i < n:
        if data[i:i + 1] in (b" ",):
            i += 1
            continue
        m = _TOKEN.match(data, i)
        if not m or m.end() == i:
            raise ValueError("cannot parse at %d: %r" % (i, data[i:i + 60]))
        i = m.end()
        if m.group(1):
            stack.append([])
        elif m.group(2):
            lst = stack.pop()
            stack[-1].append(lst)
        elif m.group(3) is not None:
            stack[-1].append(re.sub(rb"\\(.)", rb"\1", m.group(3)))
        elif m.group(4) is not None:
            k = int(m.group(4))
            stack[-1].append(data[i:i + k])
            i += k
        else:
            a = m.group(5).decode("utf-8", "replace")
            stack[-1].append(None if a.upper() == "NIL" else a)
    assert len(stack) == 1, "unbalanced parentheses in %r" % data[:200]
    return stack[0]


class Literal:
    """A literal argument for ImapConn.command(): synchronising (waits for '+')
    unless plus=True (LITERAL+, {n+})."""

    def __init__(self, data, plus=False):
        self.data = data.encode() if isinstance(data, str) else data
        self.plus = plus


class Result:
    """A tagged command's outcome: status ('OK', 'NO', 'BAD'), text (the
    tagged line after the status, str), untagged (raw responses, bytes,
    literals inline), cont (continuation request lines seen)."""

    def __init__(self, tag, line, untagged, cont):
        self.tag = tag
        self.line = line
        self.untagged = untagged
        self.cont = cont
        rest = line[len(tag) + 1:]
        self.status, _, text = rest.partition(b" ")
        self.status = self.status.decode("ascii", "replace").upper()
        self.text = text.decode("utf-8", "replace")

    def code(self):
        """The response code of the tagged line ('TRYCREATE', 'COPYUID 1 2 3'...) or None."""
        m = re.match(r"\[([^\]]*)\]", self.text)
        return m.group(1) if m else None

    def find(self, pattern, flags=re.I):
        """Untagged responses (decoded str) matching regex pattern."""
        rx = re.compile(pattern, flags)
        return [u.decode("utf-8", "replace") for u in self.untagged
                if rx.search(u.decode("utf-8", "replace"))]

    def data(self, name):
        """Untagged '* NAME ...' responses, the part after NAME (bytes)."""
        out = []
        for u in self.untagged:
            m = re.match(rb"\* " + re.escape(name.encode()) + rb"(?: |$)", u, re.I)
            if m:
                out.append(u[m.end():])
        return out

    def numbered(self, name):
        """'* N NAME' responses -> [N, ...]."""
        out = []
        for u in self.untagged:
            m = re.match(rb"\* (\d+) " + re.escape(name.encode()) + rb"\b", u, re.I)
            if m:
                out.append(int(m.group(1)))
        return out

    def fetches(self):
        """'* N FETCH (...)' -> {N: {ITEM: value}} (parsed; items upper-case).
        Several FETCH responses for one N are merged."""
        out = {}
        for u in self.untagged:
            m = re.match(rb"\* (\d+) FETCH ", u, re.I)
            if not m:
                continue
            items = parse(u[m.end():])[0]
            d = out.setdefault(int(m.group(1)), {})
            for i in range(0, len(items) - 1, 2):
                k = items[i]
                k = k.upper() if isinstance(k, str) else k
                d[k] = items[i + 1]
        return out

    def search(self):
        """The numbers of the '* SEARCH' responses."""
        out = []
        for d in self.data("SEARCH"):
            out += [int(x) for x in d.split()]
        return out

    def __repr__(self):
        return "<Result %r untagged=%r>" % (self.line, self.untagged[:20])


class ImapConn(LineConn):
    """Raw IMAP; the greeting is the untagged line (bytes)."""

    def __init__(self, *a, **kw):
        self.n = 0
        LineConn.__init__(self, *a, **kw)

    def response(self):
        """One complete response (bytes, without the final CRLF): a line and,
        when it ends with a literal {n}, the literal's bytes and the rest of
        the line, repeatedly (literal octets inline, '{n}\\r\\n' kept)."""
        out = self.line()
        while True:
            m = re.search(rb"\{(\d+)\}$", out)
            if not m:
                return out
            out += b"\r\n" + self.read_bytes(int(m.group(1)))
            out += self.line()

    def tag(self):
        self.n += 1
        return "A%03d" % self.n

    def read_tagged(self, tag):
        """Read responses until the tagged one for `tag`; a Result.
        Continuation requests ('+ ...') are collected in cont."""
        untagged, cont = [], []
        t = tag.encode()
        while True:
            r = self.response()
            if r.startswith(t + b" "):
                return Result(t, r, untagged, cont)
            if r.startswith(b"+"):
                cont.append(r)
            else:
                untagged.append(r)

    def read_until(self, pattern, timeout=5):
        """Untagged responses until one matches the regex pattern (bytes or
        str) or timeout; (matching response or None, all responses read)."""
        if isinstance(pattern, str):
            pattern = pattern.encode()
        rx = re.compile(pattern, re.I)
        got = []
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None, got
                self.sock.settimeout(left)
                try:
                    r = self.response()
                except socket.timeout:
                    return None, got
                got.append(r)
                if rx.search(r):
                    return r, got
        finally:
            self.sock.settimeout(self.timeout)

    # --- commands
    def command(self, *parts, tag=None):
        """Send a command made of parts (str/bytes joined with nothing, and
        Literal objects, each sent as {n} or {n+}); waits for '+' before a
        synchronising literal's bytes. Returns the Result. If the server
        answers the tagged response instead of '+', that is the Result."""
        tag = tag or self.tag()
        out = tag.encode() + b" "
        pending = []
        conts = []
        for p in parts:
            if isinstance(p, Literal):
                out += b"{%d%s}\r\n" % (len(p.data), b"+" if p.plus else b"")
                if p.plus:
                    out += p.data
                    continue
                self.send(out)
                out = b""
                while True:
                    r = self.response()
                    if r.startswith(b"+"):
                        conts.append(r)
                        break
                    if r.startswith(tag.encode() + b" "):
                        return Result(tag.encode(), r, pending, conts)
                    pending.append(r)
                out = p.data
            else:
                out += p.encode() if isinstance(p, str) else p
        self.send(out + b"\r\n")
        res = self.read_tagged(tag)
        res.untagged = pending + res.untagged
        res.cont = conts + res.cont
        return res

    def no_continuation(self, raw, tag):
        """Send raw (a command line ending in a literal {n}\\r\\n) and expect
        the server to refuse it without a continuation request: the Result
        (AssertionError at once if '+' comes)."""
        self.send(raw)
        first = self.response()
        assert not first.startswith(b"+"), \
            "the server asked for the literal of %r: %r" % (raw[:60], first)
        self.buf = first + b"\r\n" + self.buf
        return self.read_tagged(tag)

    def cmd(self, line):
        """A one-line command (str or bytes, no CRLF); the Result."""
        return self.command(line)

    def ok(self, *parts):
        r = self.command(*parts)
        assert r.status == "OK", "%r -> %r (expected OK)" % (parts, r)
        return r

    def no(self, *parts, contains=None):
        r = self.command(*parts)
        assert r.status == "NO", "%r -> %r (expected NO)" % (parts, r)
        if contains:
            assert contains in r.text, "%r -> %r, expected %r in it" % (parts, r, contains)
        return r

    def bad(self, *parts):
        r = self.command(*parts)
        assert r.status == "BAD", "%r -> %r (expected BAD)" % (parts, r)
        return r

    def fails(self, *parts):
        """NO or BAD (whichever: the test does not care)."""
        r = self.command(*parts)
        assert r.status in ("NO", "BAD"), "%r -> %r (expected NO or BAD)" % (parts, r)
        return r

    def login(self, user=ALICE, password=PASSWORD):
        return self.ok("LOGIN ", quote(user), " ", quote(password))

    def select(self, mailbox="INBOX"):
        return self.ok("SELECT ", quote(mailbox))

    def examine(self, mailbox="INBOX"):
        return self.ok("EXAMINE ", quote(mailbox))

    def logout(self):
        """LOGOUT: '* BYE', the tagged OK, then the server closes."""
        r = self.ok("LOGOUT")
        assert r.find(r"^\* BYE"), r
        data, closed = self.read_rest(timeout=10)
        assert (data, closed) == (b"", True), "after LOGOUT: %r, closed=%s" % (data, closed)
        return r

    def append(self, mailbox, data, flags=None, date=None, plus=False):
        parts = ["APPEND ", quote(mailbox)]
        if flags is not None:
            parts.append(" (%s)" % flags)
        if date is not None:
            parts.append(' "%s"' % date)
        parts += [" ", Literal(data, plus=plus)]
        return self.command(*parts)

    def fetch(self, seqset, items, uid=False):
        return self.ok("%sFETCH %s %s" % ("UID " if uid else "", seqset, items))

    def auth_plain(self, authcid, password, authzid="", ir=True):
        """AUTHENTICATE PLAIN with (ir=True, SASL-IR) or without an initial
        response; the Result."""
        b64_ = plain_b64(authcid, password, authzid)
        if ir:
            return self.command("AUTHENTICATE PLAIN " + b64_)
        tag = self.tag()
        self.send(tag + " AUTHENTICATE PLAIN\r\n")
        r = self.response()
        if not r.startswith(b"+"):
            return Result(tag.encode(), r, [], [])
        self.send(b64_ + "\r\n")
        res = self.read_tagged(tag)
        res.cont.insert(0, r)
        return res

    def starttls(self, context=None):
        r = self.ok("STARTTLS")
        assert self.buf == b"", "bytes after the STARTTLS reply: %r" % self.buf
        self.wrap_tls(context)
        return r

    def capability(self):
        r = self.ok("CAPABILITY")
        caps = r.data("CAPABILITY")
        assert len(caps) == 1, r
        return capabilities(caps[0])

    def idle(self):
        """Start IDLE; returns the tag (the '+' line is checked)."""
        tag = self.tag()
        self.send(tag + " IDLE\r\n")
        r = self.response()
        assert r.startswith(b"+"), "IDLE -> %r" % r
        self.idle_tag = tag
        return tag

    def done(self):
        """End IDLE; the Result (untagged responses that came in between are
        in it, unless read before)."""
        self.send(b"DONE\r\n")
        return self.read_tagged(self.idle_tag)
