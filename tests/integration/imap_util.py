"""Helpers for the IMAP integration tests (test_imap_*.py) and for client tests
(curl, mbsync, mutt) that need a running IMAP server.

- ImapServer / start_imap(): `petrel serve` (harness.server) with the SMTP,
  IMAP and IMAPS listeners on free loopback ports (everything else off);
  log(), wait_log(), crashes(), stop() as every harness.server.Server.
- running(inst, opts=()): a context manager around start_imap() that stops the
  server at the end and fails if it did not exit 0 or a worker died.
- imap_start / imap_instance / imap_inst / imap_server: pytest fixtures (import
  them into a test module: `from imap_util import imap_start, ...`).
- login(server, user) -> an imaplib.IMAP4 logged in; login_ssl() for IMAPS.
- Conn (harness.conn.ImapConn): a raw-socket IMAP client (tagged commands,
  literals, continuation requests, pipelining, raw bytes, IDLE, STARTTLS) for
  what imaplib cannot express; parse() turns a response into nested lists.
- Maildir helpers: put() a message into a user's INBOX or folder (new/ or cur/,
  with Maildir flags), files(), folder_dir(), reset_maildirs(); deliver() via
  SMTP to the server's SMTP port.
- Message builders: simple, multipart, message/rfc822, encoded.
"""

import base64
import imaplib
import os
import re
import signal
import time

import pytest

from harness import maildir, server
from harness.conn import IO_TIMEOUT, Literal, Result, capabilities, parse, quote  # noqa: F401
from harness.conn import ImapConn as Conn
from harness.instance import make_instance
from harness.maildir import folder_dir, make_folder, reset_maildirs, tree  # noqa: F401
from harness.server import START_TIMEOUT, STOP_TIMEOUT, check_stopped  # noqa: F401
from pop3_util import (ALICE, BOB, PASSWORD, USERS, add_users, client_ctx,  # noqa: F401
                       free_port, has_ipv6_loopback, listdir, maildir_of,
                       nonloopback_ipv4, nonloopback_ipv6, plain_b64, wire)

HOSTNAME = "imap.petrel.test"
FAIL_DELAY_MS = 100
DEFAULTS = ("hostname=" + HOSTNAME, "auth_fail_delay=%d" % FAIL_DELAY_MS)
SPECIAL = {"Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash", "Junk": "\\Junk",
           "Archive": "\\Archive"}


# --------------------------------------------------------------------------
# the server


class ImapServer(server.Server):
    """A running `petrel serve` with SMTP, IMAP and IMAPS listeners.
    Attributes: host, smtp_port, port = imap_port (IMAP), ssl_port =
    imaps_port (IMAPS), instance, proc, args; log(), log_lines(), wait_log(),
    crashes(), alive(), stop(), kill() (harness.server.Server)."""

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


def start_imap(inst, opts=(), host="127.0.0.1", timeout=START_TIMEOUT):
    """Start `petrel serve` for inst (SMTP, IMAP, IMAPS on free ports,
    hostname imap.petrel.test, auth_fail_delay=100; opts "key=value" win);
    wait (bounded) until IMAP greets and IMAPS accepts."""
    return server.start(inst, ("imap", "imaps", "smtp"), DEFAULTS + tuple(opts), host=host,
                        cls=ImapServer, timeout=timeout)


def running(inst, opts=(), host="127.0.0.1"):
    """with running(inst) as srv: ... -- a started ImapServer, stopped at the
    end; raises AssertionError if it did not exit 0 or a worker died."""
    return server.running(start_imap, inst, opts, host=host)


# --------------------------------------------------------------------------
# fixtures (import them into the test module)


@pytest.fixture
def imap_start():
    """Factory: imap_start(instance, opts=(), host="127.0.0.1") -> ImapServer.
    At teardown every server still running gets SIGTERM; one that does not
    exit 0 in time, or whose log shows a dead worker, fails the test."""
    with server.tracked(start_imap) as start:
        yield start


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


def unique_name(prefix=None):
    return maildir.unique_name(prefix, "imaptest")


def put(inst, address, data, folder="INBOX", sub="new", flags=None, name=None, mtime=None):
    """Write data (bytes) as a message file into a folder of the user's
    maildir the Maildir way (tmp/ then rename), owned like the maildir.
    flags: Maildir letters ('S', 'FS', ...) -> ':2,FLAGS' and sub='cur'.
    mtime: seconds since the epoch (the INTERNALDATE). Returns the name."""
    info = None
    if flags is not None:
        info = "2," + "".join(sorted(flags))
        sub = "cur"
    return maildir.put(inst, address, data, folder=folder, sub=sub,
                       name=name or unique_name(), info=info, mtime=mtime)


def put_many(inst, address, n, folder="INBOX", start=1, **kw):
    """n messages message(start..), names in order; [(name, data)]."""
    out = []
    for i in range(start, start + n):
        data = message(i)
        out.append((put(inst, address, data, folder=folder,
                        name="10000%05d.M%dP1.imaptest" % (i, i), **kw), data))
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
