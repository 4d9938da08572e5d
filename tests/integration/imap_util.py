"""Helpers for the IMAP integration tests (test_imap_*.py) and for client tests
(curl, mbsync, mutt) that need a running IMAP server.

- ImapServer / start_imap(): `petrel serve` with the SMTP, IMAP and IMAPS
  listeners on free loopback ports (everything else off), stderr collected by
  a thread (log(), wait_log(), crashes() as in pop3_util).
- running(inst, opts=()): a context manager around start_imap() that stops the
  server at the end and fails if it did not exit 0 or a worker died.
- imap_start / imap_instance / imap_inst / imap_server: pytest fixtures (import
  them into a test module: `from imap_util import imap_start, ...`).
- login(server, user) -> an imaplib.IMAP4 logged in; login_ssl() for IMAPS.
- Conn: a raw-socket IMAP client (tagged commands, literals, continuation
  requests, pipelining, raw bytes, IDLE, STARTTLS) for what imaplib cannot
  express; parse() turns a response into nested Python lists.
- Maildir helpers: put() a message into a user's INBOX or folder (new/ or cur/,
  with Maildir flags), files(), folder_dir(), reset_maildirs(); deliver() via
  SMTP to the server's SMTP port.
- Message builders: simple, multipart, message/rfc822, encoded.
"""

import base64
import contextlib
import imaplib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest

from conftest import TIMEOUT_SCALE, clean_env, make_instance
from pop3_util import (ALICE, BOB, PASSWORD, USERS, Pop3Server, client_ctx,  # noqa: F401
                       free_port, has_ipv6_loopback, listdir, maildir_of,
                       nonloopback_ipv4, nonloopback_ipv6, plain_b64, wire)

HOSTNAME = "imap.petrel.test"
START_TIMEOUT = 10 * TIMEOUT_SCALE
STOP_TIMEOUT = 15 * TIMEOUT_SCALE
IO_TIMEOUT = 15 * TIMEOUT_SCALE
OFF = ("submission_listen", "submissions_listen", "pop3_listen", "pop3s_listen")
FAIL_DELAY_MS = 100
SPECIAL = {"Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash", "Junk": "\\Junk",
           "Archive": "\\Archive"}


# --------------------------------------------------------------------------
# the server


class ImapServer(Pop3Server):
    """A running `petrel serve` with SMTP, IMAP and IMAPS listeners.
    Attributes: host, smtp_port, port (IMAP), ssl_port (IMAPS), instance,
    proc, args; log(), log_lines(), wait_log(), crashes(), alive(), stop(),
    kill() as in pop3_util.Pop3Server."""

    @property
    def imap_port(self):
        return self.port

    @property
    def imaps_port(self):
        return self.ssl_port

    # --- clients
    def imaplib(self, timeout=IO_TIMEOUT):
        return imaplib.IMAP4(self.host, self.port, timeout=timeout)

    def imaplib_ssl(self, timeout=IO_TIMEOUT, context=None):
        return imaplib.IMAP4_SSL(self.host, self.ssl_port, ssl_context=context or client_ctx(),
                                 timeout=timeout)

    def login(self, user=ALICE, password=PASSWORD, timeout=IO_TIMEOUT):
        """An imaplib session logged in with LOGIN."""
        m = self.imaplib(timeout=timeout)
        typ, _ = m.login(user, password)
        assert typ == "OK"
        return m

    def login_ssl(self, user=ALICE, password=PASSWORD, timeout=IO_TIMEOUT, context=None):
        m = self.imaplib_ssl(timeout=timeout, context=context)
        typ, _ = m.login(user, password)
        assert typ == "OK"
        return m

    def conn(self, timeout=IO_TIMEOUT, tls=False, context=None, source=None, greeting=True):
        return Conn(self.host, self.ssl_port if tls else self.port, timeout=timeout,
                    tls=tls, context=context, source=source, greeting=greeting)

    def session(self, user=ALICE, password=PASSWORD, select=None, **kw):
        """A raw Conn logged in (and SELECTing `select` if given)."""
        c = self.conn(**kw)
        c.login(user, password)
        if select:
            c.select(select)
        return c

    def smtp_send(self, sender, rcpts, data):
        import smtplib
        with smtplib.SMTP(self.host, self.smtp_port, local_hostname="client.test",
                          timeout=30) as s:
            s.sendmail(sender, rcpts, data)

    def deliver(self, rcpt=ALICE, data=None, sender="sender@example.org"):
        """Deliver data (bytes; default: message(1)) to rcpt over SMTP."""
        self.smtp_send(sender, [rcpt], data if data is not None else message(1))

    def __repr__(self):
        return "<ImapServer %s:%d pid %s>" % (self.host, self.port, self.proc.pid)


def serve_args(inst, host, ports, opts=()):
    smtp, imap, imaps = ports
    h = "[%s]" % host if ":" in host else host
    args = [inst.bin, "-c", inst.conf,
            "-o", "smtp_listen=%s:%d" % (h, smtp),
            "-o", "imap_listen=%s:%d" % (h, imap),
            "-o", "imaps_listen=%s:%d" % (h, imaps)]
    for key in OFF:
        args += ["-o", key + "="]
    args += ["-o", "hostname=" + HOSTNAME, "-o", "auth_fail_delay=%d" % FAIL_DELAY_MS]
    for o in opts:
        args += ["-o", o]
    return args + ["serve"]


def _greets(host, port, deadline):
    try:
        with socket.create_connection((host, port), timeout=2) as s:
            s.settimeout(max(0.5, deadline - time.monotonic()))
            data = b""
            while b"\n" not in data:
                chunk = s.recv(1024)
                if not chunk:
                    break
                data += chunk
            if data.startswith(b"* OK"):
                s.sendall(b"Z LOGOUT\r\n")
                return True
    except OSError:
        pass
    return False


def _accepts(host, port):
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def start_imap(inst, opts=(), host="127.0.0.1", timeout=START_TIMEOUT):
    """Start `petrel serve` for inst (SMTP, IMAP, IMAPS on free ports,
    hostname imap.petrel.test, auth_fail_delay=100; opts "key=value" win);
    wait (bounded) until IMAP greets and IMAPS accepts."""
    last = None
    for attempt in range(4):
        ports = (free_port(host), free_port(host), free_port(host))
        if len(set(ports)) < 3:
            continue
        args = serve_args(inst, host, ports, opts)
        try:
            proc = subprocess.Popen(args, cwd=inst.dir, env=clean_env(),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, start_new_session=True)
        except OSError as e:
            last = "cannot run %s: %s" % (args[0], e)
            time.sleep(1)
            continue
        srv = ImapServer(inst, host, ports, proc, args)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if _greets(host, ports[1], deadline) and _accepts(host, ports[2]):
                return srv
            time.sleep(0.05)
        if proc.poll() is None:
            srv.kill()
            raise AssertionError("petrel serve did not greet on IMAP %s:%d within %ss\nlog:\n%s"
                                 % (host, ports[1], timeout, srv.log()))
        srv._reader.join(timeout=5)
        last = ("petrel serve exited with %s before greeting\ncommand: %s\nlog:\n%s"
                % (proc.returncode, " ".join(args), srv.log()))
        if "Address already in use" not in srv.log() and "No such file" not in srv.log():
            break
        time.sleep(0.5)
    raise AssertionError(last)


def check_stopped(servers):
    """Stop every server; a list of problems (did not exit 0, a worker died)."""
    problems = []
    for srv in servers:
        try:
            rc = srv.stop()
        except AssertionError as e:
            problems.append(str(e))
            continue
        if rc != 0:
            problems.append("petrel serve exited %s (expected 0)\nlog:\n%s" % (rc, srv.log()))
        crashes = srv.crashes()
        if crashes:
            problems.append("a worker died:\n%s\nlog:\n%s" % ("".join(crashes), srv.log()))
    return problems


@contextlib.contextmanager
def running(inst, opts=(), host="127.0.0.1"):
    """with running(inst) as srv: ... -- a started ImapServer, stopped at the
    end; raises AssertionError if it did not exit 0 or a worker died."""
    srv = start_imap(inst, opts, host=host)
    try:
        yield srv
    finally:
        problems = check_stopped([srv])
    if problems:
        raise AssertionError("\n\n".join(problems))


def add_users(inst, users=USERS, password=PASSWORD):
    for a in users:
        inst.add_user(a, password)


# --------------------------------------------------------------------------
# fixtures (import them into the test module)


@pytest.fixture
def imap_start():
    """Factory: imap_start(instance, opts=(), host="127.0.0.1") -> ImapServer.
    At teardown every server still running gets SIGTERM; one that does not
    exit 0 in time, or whose log shows a dead worker, fails the test."""
    servers = []

    def start(inst, opts=(), host="127.0.0.1"):
        srv = start_imap(inst, opts, host=host)
        servers.append(srv)
        return srv

    yield start
    problems = check_stopped(servers)
    if problems:
        pytest.fail("\n\n".join(problems))


@pytest.fixture(scope="module")
def imap_instance(petrel_bin, tmp_path_factory):
    """One SQLite instance per test module with users alice@ and
    bob@example.test (password "pw"); use it through imap_inst."""
    inst = make_instance(petrel_bin, tmp_path_factory.mktemp("imap-sqlite"), "sqlite")
    add_users(inst)
    return inst


@pytest.fixture
def imap_inst(imap_instance):
    """imap_instance with every maildir emptied (folders removed too)."""
    reset_maildirs(imap_instance)
    return imap_instance


@pytest.fixture
def imap_server(imap_inst, imap_start):
    """A fresh `petrel serve` (SMTP, IMAP, IMAPS) on imap_inst (SQLite)."""
    return imap_start(imap_inst)


# --------------------------------------------------------------------------
# imaplib conveniences


def login(server, user=ALICE, password=PASSWORD, timeout=IO_TIMEOUT):
    """imaplib.IMAP4 logged in to server as user."""
    return server.login(user, password, timeout=timeout)


def logout(m):
    """imaplib LOGOUT; returns the status."""
    typ, _ = m.logout()
    return typ


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


# --------------------------------------------------------------------------
# a raw client


class Literal:
    """A literal argument for Conn.command(): synchronising (waits for '+')
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


class Conn:
    """Raw IMAP over a socket (optionally TLS); every read is bounded."""

    def __init__(self, host, port, timeout=IO_TIMEOUT, tls=False, context=None,
                 source=None, greeting=True):
        self.host = host
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.sock.settimeout(timeout)
        if tls:
            self.sock = (context or client_ctx()).wrap_socket(self.sock)
        self.buf = b""
        self.n = 0
        self.greeting = self.line() if greeting else None

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

    def line(self):
        """One line as bytes, without CRLF (literals not followed)."""
        while b"\n" not in self.buf:
            self._fill()
        l, self.buf = self.buf.split(b"\n", 1)
        assert l.endswith(b"\r"), "response line not CRLF-terminated: %r" % l[:200]
        return l[:-1]

    def read_bytes(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

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
        b64 = plain_b64(authcid, password, authzid)
        if ir:
            return self.command("AUTHENTICATE PLAIN " + b64)
        tag = self.tag()
        self.send(tag + " AUTHENTICATE PLAIN\r\n")
        r = self.response()
        if not r.startswith(b"+"):
            return Result(tag.encode(), r, [], [])
        self.send(b64 + "\r\n")
        res = self.read_tagged(tag)
        res.cont.insert(0, r)
        return res

    def starttls(self, context=None):
        r = self.ok("STARTTLS")
        assert self.buf == b"", "bytes after the STARTTLS reply: %r" % self.buf
        self.sock = (context or client_ctx()).wrap_socket(self.sock)
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
        except (ConnectionResetError, ssl.SSLError):
            closed = True
        finally:
            self.sock.settimeout(self.timeout)
        return data, closed

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


def quote(s):
    """An IMAP quoted string for s (str); raises for CR/LF/NUL/8-bit (use a
    Literal for those)."""
    assert not re.search(r"[\r\n\0\x80-\U0010ffff]", s), "needs a literal: %r" % s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --------------------------------------------------------------------------
# parsing responses


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


def list_entries(result):
    """'* LIST (attrs) "sep" name' responses of a Result -> list of
    (attrs set (as sent), sep, name str)."""
    out = []
    for kind in ("LIST", "LSUB"):
        for d in result.data(kind):
            v = parse(d)
            name = v[2]
            if isinstance(name, bytes):
                name = name.decode("utf-8", "replace")
            sep = v[1].decode() if isinstance(v[1], bytes) else v[1]
            out.append((set(v[0]), sep, name))
    return out


def list_names(result):
    return sorted(n for _, _, n in list_entries(result))


def list_attrs(result):
    """{name: {attr lower-cased}}"""
    return {n: {a.lower() for a in attrs} for attrs, _, n in list_entries(result)}


# --------------------------------------------------------------------------
# modified UTF-7 (RFC 3501 5.1.3)


def mutf7_encode(s):
    out, buf = [], []

    def flush():
        if buf:
            b = "".join(buf).encode("utf-16-be")
            out.append("&" + base64.b64encode(b).decode().rstrip("=").replace("/", ",") + "-")
            buf.clear()
    for ch in s:
        if 0x20 <= ord(ch) <= 0x7e:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            buf.append(ch)
    flush()
    return "".join(out)


def mutf7_decode(s):
    def dec(m):
        t = m.group(1)
        if not t:
            return "&"
        t = t.replace(",", "/")
        t += "=" * (-len(t) % 4)
        return base64.b64decode(t).decode("utf-16-be")
    return re.sub(r"&([^-]*)-", dec, s)


# --------------------------------------------------------------------------
# maildirs


def folder_dir(inst, address, folder="INBOX"):
    """The directory of a folder: the maildir for INBOX, else maildir/.Name
    (Maildir++, '.' as separator)."""
    md = maildir_of(inst, address)
    if folder.upper() == "INBOX":
        return md
    return os.path.join(md, "." + folder)


def files(inst, address, sub="new", folder="INBOX"):
    return listdir(os.path.join(folder_dir(inst, address, folder), sub))


def all_files(inst, address, folder="INBOX"):
    """{'new': [...], 'cur': [...]}"""
    return {"new": files(inst, address, "new", folder), "cur": files(inst, address, "cur", folder)}


def message_files(inst, address, folder="INBOX"):
    """Full paths of every message file of a folder (new/ and cur/)."""
    d = folder_dir(inst, address, folder)
    return [os.path.join(d, s, n) for s in ("new", "cur") for n in listdir(os.path.join(d, s))]


def folders_on_disk(inst, address):
    """The Maildir++ folder names (without the leading '.') that are dirs."""
    md = maildir_of(inst, address)
    try:
        return sorted(e[1:] for e in os.listdir(md)
                      if e.startswith(".") and e not in (".", "..")
                      and os.path.isdir(os.path.join(md, e)))
    except FileNotFoundError:
        return []


_seq = [0]


def unique_name(prefix=None):
    _seq[0] += 1
    t = prefix if prefix is not None else int(time.time())
    return "%s.M%dP%dQ%d.imaptest" % (t, _seq[0], os.getpid(), _seq[0])


def make_folder(inst, address, folder):
    d = folder_dir(inst, address, folder)
    md = maildir_of(inst, address)
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(md, sub), exist_ok=True)
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    if d != md:
        open(os.path.join(d, "maildirfolder"), "a").close()
    st = os.stat(md)
    for p in [d] + [os.path.join(d, sub) for sub in ("tmp", "new", "cur", "maildirfolder")]:
        if os.path.exists(p):
            os.chown(p, st.st_uid, st.st_gid)
    return d


def put(inst, address, data, folder="INBOX", sub="new", flags=None, name=None, mtime=None):
    """Write data (bytes) as a message file into a folder of the user's
    maildir the Maildir way (tmp/ then rename), owned like the maildir.
    flags: Maildir letters ('S', 'FS', ...) -> ':2,FLAGS' and sub='cur'.
    mtime: seconds since the epoch (the INTERNALDATE). Returns the name."""
    d = make_folder(inst, address, folder)
    name = name or unique_name()
    if flags is not None:
        name = name + ":2," + "".join(sorted(flags))
        sub = "cur"
    st = os.stat(d)
    tmp = os.path.join(d, "tmp", name.replace(":", "_"))
    with open(tmp, "wb") as f:
        f.write(data)
    os.chown(tmp, st.st_uid, st.st_gid)
    os.chmod(tmp, 0o600)
    if mtime is not None:
        os.utime(tmp, (mtime, mtime))
    os.rename(tmp, os.path.join(d, sub, name))
    return name


def put_many(inst, address, n, folder="INBOX", start=1, **kw):
    """n messages message(start..), names in order; [(name, data)]."""
    out = []
    for i in range(start, start + n):
        data = message(i)
        out.append((put(inst, address, data, folder=folder,
                        name="10000%05d.M%dP1.imaptest" % (i, i), **kw), data))
    return out


def reset_maildirs(inst):
    """Remove everything inside every maildir under mail_root (messages,
    folders, indexes), keeping empty new/ cur/ tmp/."""
    root = inst.mail_root
    for dom in listdir(root):
        for user in listdir(os.path.join(root, dom)):
            md = os.path.join(root, dom, user)
            if not os.path.isdir(md):
                continue
            for entry in os.listdir(md):
                p = os.path.join(md, entry)
                if os.path.isdir(p) and not os.path.islink(p):
                    if entry in ("new", "cur", "tmp"):
                        for f in os.listdir(p):
                            fp = os.path.join(p, f)
                            if os.path.isdir(fp):
                                shutil.rmtree(fp)
                            else:
                                os.unlink(fp)
                    else:
                        shutil.rmtree(p)
                else:
                    os.unlink(p)


def tree(path):
    """Every path under path (relative), for 'nothing created outside' checks."""
    out = set()
    for root, dirs, fs in os.walk(path):
        for x in dirs + fs:
            out.add(os.path.relpath(os.path.join(root, x), path))
    return out


def deliver(server, rcpt=ALICE, data=None, sender="sender@example.org"):
    """Deliver via SMTP to the server's SMTP port."""
    server.deliver(rcpt, data, sender)


# --------------------------------------------------------------------------
# messages (LF line ends, as stored; wire() gives the CRLF form)


def message(n, body_lines=3, extra_headers=b"", body=None, subject=None,
            frm=None, to=b"alice@example.test", date=b"Mon, 2 Mar 2026 10:00:00 +0000"):
    """A small text/plain message numbered n."""
    subject = subject if subject is not None else b"test message %d" % n
    frm = frm if frm is not None else b"Sender %d <sender%d@example.org>" % (n, n)
    head = (b"From: " + frm + b"\nTo: " + to + b"\nSubject: " + subject +
            b"\nDate: " + date + b"\nMessage-ID: <m%d@example.org>\n" % n)
    if body is None:
        body = b"".join(b"line %d of message %d\n" % (i, n) for i in range(1, body_lines + 1))
    return head + extra_headers + b"\n" + body


MULTIPART = (
    b"From: Alice <alice@example.test>\n"
    b"To: Bob <bob@example.test>, carol@example.org\n"
    b"Cc: dave@example.org\n"
    b"Subject: multipart test\n"
    b"Date: Tue, 3 Mar 2026 11:12:13 +0100\n"
    b"Message-ID: <multi@example.test>\n"
    b"MIME-Version: 1.0\n"
    b"Content-Type: multipart/mixed; boundary=\"outer\"\n"
    b"\n"
    b"preamble\n"
    b"--outer\n"
    b"Content-Type: multipart/alternative; boundary=\"inner\"\n"
    b"\n"
    b"--inner\n"
    b"Content-Type: text/plain; charset=utf-8\n"
    b"Content-Transfer-Encoding: quoted-printable\n"
    b"\n"
    b"Gr=C3=BC=C3=9Fe aus Z=C3=BCrich\n"
    b"--inner\n"
    b"Content-Type: text/html; charset=utf-8\n"
    b"\n"
    b"<p>hello html</p>\n"
    b"--inner--\n"
    b"--outer\n"
    b"Content-Type: application/octet-stream; name=\"data.bin\"\n"
    b"Content-Transfer-Encoding: base64\n"
    b"Content-Disposition: attachment; filename=\"data.bin\"\n"
    b"\n"
    b"AAECAwQFBgcICQ==\n"
    b"--outer\n"
    b"Content-Type: message/rfc822\n"
    b"\n"
    b"From: Inner <inner@example.org>\n"
    b"To: alice@example.test\n"
    b"Subject: inner message\n"
    b"Date: Wed, 4 Mar 2026 09:00:00 +0000\n"
    b"Message-ID: <inner@example.org>\n"
    b"\n"
    b"inner body line 1\n"
    b"inner body line 2\n"
    b"--outer--\n"
    b"epilogue\n")


def encoded_message():
    """A message with an RFC 2047 subject, a base64 text part and a
    quoted-printable text part (for SEARCH)."""
    b64 = base64.encodebytes("Der Bär schläft im Winterquartier\n".encode()).replace(b"\r", b"")
    return (b"From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <juergen@example.org>\n"
            b"To: alice@example.test\n"
            b"Subject: =?UTF-8?B?" + base64.b64encode("Grüße aus Köln".encode()) + b"?=\n"
            b"Date: Thu, 5 Mar 2026 08:00:00 +0000\n"
            b"MIME-Version: 1.0\n"
            b"Content-Type: multipart/mixed; boundary=\"b1\"\n"
            b"\n"
            b"--b1\n"
            b"Content-Type: text/plain; charset=utf-8\n"
            b"Content-Transfer-Encoding: base64\n"
            b"\n" + b64 +
            b"--b1\n"
            b"Content-Type: text/plain; charset=utf-8\n"
            b"Content-Transfer-Encoding: quoted-printable\n"
            b"\n"
            b"Sch=C3=B6ne Gr=C3=BC=C3=9Fe vom Zauberl=\n"
            b"ehrling\n"
            b"--b1--\n")


def crlf(data):
    return wire(data)


def imap_date(ts):
    """An INTERNALDATE string (date-time) for a timestamp, in UTC."""
    return time.strftime("%d-%b-%Y %H:%M:%S +0000", time.gmtime(ts))


def stop_server(srv, sig=signal.SIGTERM):
    return srv.stop(sig)
