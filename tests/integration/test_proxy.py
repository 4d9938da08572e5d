"""Scale-out: IMAP, POP3 and ManageSieve proxying by user (SPEC 6). A
frontend `petrel serve` on 127.0.0.1 and a backend on 127.0.0.2 share one
SQLite directory; the frontend authenticates the user, then opens the
backend session with proxy_secret (SASL PLAIN as petrel-proxy for the user)
after passing the client's address (IMAP ID, POP3 and ManageSieve
XCLIENT), and relays bytes. With proxy_tls_ca the backend's certificate
(made here with the openssl CLI) must chain to that CA and name the
backend's address."""

import imaplib
import os
import poplib
import re
import shutil
import smtplib
import socket
import subprocess
import threading
import time

import pytest

from conftest import add_users, make_instance
from harness import maildir, server
from harness.ports import free_ports
from pki_util import make_pki, server_cert_opts
from pop3_util import message, put

ALICE = "alice@example.test"
PASSWORD = "pw"
SECRET = "s3cret-proxy-key"
CLIENT_IP = "127.0.0.4"     # the client's source address, as the backend should see it


class SourceIMAP(imaplib.IMAP4):
    """imaplib from a chosen source address."""

    def __init__(self, host, port, source):
        self._source = source
        super().__init__(host, port, timeout=20)

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self._source, 0))


class SourcePOP3(poplib.POP3):
    def __init__(self, host, port, source):
        self._source = source
        super().__init__(host, port, timeout=20)

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self._source, 0))


@pytest.fixture(scope="module")
def cluster_insts(petrel_bin, tmp_path_factory):
    back = make_instance(petrel_bin, tmp_path_factory.mktemp("backend"), "sqlite")
    add_users(back)
    front = make_instance(petrel_bin, tmp_path_factory.mktemp("frontend"), "sqlite")
    return back, front


@pytest.fixture
def cluster(cluster_insts):
    """(backend, frontend) servers; started fresh for each test."""
    back, front = cluster_insts
    started = []

    def start_backend(opts=()):
        srv = server.start(back, ("imap", "pop3", "smtp", "managesieve"),
                           ("hostname=backend.test", "role=backend",
                            "proxy_secret=" + SECRET,
                            "proxy_trusted_networks=127.0.0.1") + tuple(opts),
                           host="127.0.0.2")
        started.append(srv)
        return srv

    def start_frontend(imap_port, pop3_port, opts=(), sieve_port=4190):
        srv = server.start(front, ("imap", "pop3", "managesieve"),
                           ("hostname=frontend.test", "role=frontend",
                            "database=sqlite:" + back.sqlite_path(),
                            "backend_default=127.0.0.2",
                            "backend_ports=24,%d,%d,%d" % (imap_port, pop3_port, sieve_port),
                            "proxy_secret=" + SECRET, "auth_fail_delay=100") + tuple(opts),
                           host="127.0.0.1")
        started.append(srv)
        return srv

    maildir.reset_maildirs(back)
    yield back, start_backend, start_frontend
    for srv in started:
        print(srv.log())   # shown when the test failed
    problems = server.check_stopped(started)
    if problems:
        pytest.fail("\n\n".join(problems))


def backend_connects(srv, proto):
    return len(re.findall(r"%s connect from \[127\.0\.0\.1\]" % proto, srv.log()))


def wait_for(fn, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    return fn()


# --------------------------------------------------------------------------
# IMAP


def assert_relayed(b, f, proto, client=CLIENT_IP):
    """The backend logged the client's own address, passed by the frontend
    (ID / XCLIENT), and the login by proxy_secret under it; the frontend
    reached the backend over STARTTLS, which the backend offers."""
    assert b.wait_log(r"%s: client \[%s\]:\d+, via frontend \[127\.0\.0\.1\]"
                      % (proto, re.escape(client))), b.log()
    assert b.wait_log(r"%s login: user=<%s>, \[%s\]:"
                      % (proto, re.escape(ALICE), re.escape(client))), b.log()
    assert f.wait_log(r"%s proxy: user=<%s>, \[%s\]:\d+, to backend 127\.0\.0\.2 port %d "
                      r"over TLS" % (proto, re.escape(ALICE), re.escape(client),
                                     b.port_of(proto))), f.log()


def test_imap_login_reaches_backend_mailbox(cluster):
    back, start_backend, start_frontend = cluster
    b = start_backend()
    f = start_frontend(b.port_of("imap"), b.port_of("pop3"))

    # a message delivered on the backend
    with smtplib.SMTP("127.0.0.2", b.port_of("smtp"), timeout=20) as s:
        s.sendmail("sender@example.org", [ALICE],
                   b"From: sender@example.org\r\nTo: alice@example.test\r\n"
                   b"Subject: via backend\r\n\r\nhello from the backend\r\n")

    c = SourceIMAP("127.0.0.1", f.port_of("imap"), CLIENT_IP)
    typ, data = c.login(ALICE, PASSWORD)
    assert typ == "OK"
    # the backend's capabilities after login
    assert b"[CAPABILITY " in data[0] and b"IMAP4rev1" in data[0]
    assert b"STARTTLS" not in data[0]

    def count():
        typ, d = c.select("INBOX")
        assert typ == "OK"
        return int(d[0]) if int(d[0]) >= 1 else 0
    assert wait_for(count) == 1
    typ, d = c.fetch("1", "(BODY.PEEK[TEXT])")
    assert typ == "OK" and b"hello from the backend" in d[0][1]

    # APPEND through the frontend lands in the backend's Maildir
    typ, _ = c.append("INBOX", None, None,
                      b"From: a@example.org\r\nSubject: appended\r\n\r\nappended body\r\n")
    assert typ == "OK"
    found = []
    for root, _dirs, names in os.walk(maildir.maildir_of(back, ALICE)):
        for n in names:
            p = os.path.join(root, n)
            if ("/cur" in root or "/new" in root) and b"appended body" in open(p, "rb").read():
                found.append(p)
    assert len(found) == 1, found
    c.logout()

    assert_relayed(b, f, "imap")


def test_imap_wrong_password_stays_on_frontend(cluster):
    back, start_backend, start_frontend = cluster
    b = start_backend()
    f = start_frontend(b.port_of("imap"), b.port_of("pop3"))
    before = backend_connects(b, "imap")
    c = imaplib.IMAP4("127.0.0.1", f.port_of("imap"), timeout=20)
    with pytest.raises(imaplib.IMAP4.error) as e:
        c.login(ALICE, "wrong")
    assert "AUTHENTICATIONFAILED" in str(e.value)
    f.wait_log(r"imap login failed: user=<%s>" % re.escape(ALICE))
    # refused before any backend connection is made: none was
    assert backend_connects(b, "imap") == before
    assert "imap proxy" not in f.log()
    # and the session can still log in
    typ, _ = c.login(ALICE, PASSWORD)
    assert typ == "OK"
    c.logout()


def test_imap_backend_down_says_unavailable(cluster):
    back, start_backend, start_frontend = cluster
    closed = free_ports(2, "127.0.0.2")
    f = start_frontend(closed[0], closed[1])
    with socket.create_connection(("127.0.0.1", f.port_of("imap")), timeout=20) as s:
        r = s.makefile("rb")
        assert r.readline().startswith(b"* OK")
        s.sendall(b"a LOGIN %s %s\r\n" % (ALICE.encode(), PASSWORD.encode()))
        line = r.readline()
        assert line.startswith(b"a NO [UNAVAILABLE] "), line
        # still not logged in
        s.sendall(b"b SELECT INBOX\r\n")
        assert r.readline().startswith(b"b BAD Log in first")
        s.sendall(b"c LOGOUT\r\n")
    f.wait_log(r"imap proxy: user=<%s>, .*: backend 127\.0\.0\.2 unavailable: " % re.escape(ALICE))


def test_imap_no_backend_at_all(cluster):
    back, start_backend, start_frontend = cluster
    f = start_frontend(1, 1, ("backend_default=",))
    with socket.create_connection(("127.0.0.1", f.port_of("imap")), timeout=20) as s:
        r = s.makefile("rb")
        r.readline()
        s.sendall(b"a LOGIN %s %s\r\n" % (ALICE.encode(), PASSWORD.encode()))
        line = r.readline()
        assert line.startswith(b"a NO [UNAVAILABLE] "), line
    f.wait_log(r"backend \(none\) unavailable: no backend for this user")


def _plain(authz, authc, pw):
    import base64
    return base64.b64encode(b"%s\0%s\0%s" % (authz.encode(), authc.encode(),
                                               pw.encode())).decode()


def test_imap_backend_trusts_only_frontends(cluster):
    back, start_backend, start_frontend = cluster
    b = start_backend()
    port = b.port_of("imap")

    def auth(source, secret):
        with socket.create_connection(("127.0.0.2", port), timeout=20,
                                      source_address=(source, 0)) as s:
            r = s.makefile("rb")
            assert r.readline().startswith(b"* OK")
            s.sendall(b'a ID ("x-originating-ip" "192.0.2.9" "x-originating-port" "4")\r\n')
            while True:
                line = r.readline()
                if line.startswith(b"a "):
                    break
            assert line.startswith(b"a OK"), line
            s.sendall(b"b AUTHENTICATE PLAIN %s\r\n" %
                      _plain(ALICE, "petrel-proxy", secret).encode())
            line = r.readline()
            s.sendall(b"c LOGOUT\r\n")
            return line.split()[1].decode()

    # from a trusted address with the secret: in
    assert auth("127.0.0.1", SECRET) == "OK"
    b.wait_log(r"imap: client \[192\.0\.2\.9\]:4, via frontend \[127\.0\.0\.1\]")
    # from elsewhere: ID is ignored, the login refused (a failed login)
    assert auth("127.0.0.3", SECRET) == "NO"
    b.wait_log(r"imap login failed: user=<petrel-proxy>, \[127\.0\.0\.3\]")
    assert not re.search(r"client \[192\.0\.2\.9\]:4, via frontend \[127\.0\.0\.3\]", b.log())
    # a wrong secret from the trusted address: a failed login
    assert auth("127.0.0.1", SECRET + "x") == "NO"
    b.wait_log(r"imap login failed: user=<%s>, \[192\.0\.2\.9\]:4" % re.escape(ALICE))


def test_imap_empty_secret_refuses(cluster):
    back, start_backend, start_frontend = cluster
    b = start_backend(("proxy_secret=",))
    c = imaplib.IMAP4("127.0.0.2", b.port_of("imap"), timeout=20)
    typ, _ = c._simple_command("AUTHENTICATE", "PLAIN", _plain(ALICE, "petrel-proxy", ""))
    assert typ == "NO"
    c.shutdown()


def test_curl_lists_through_frontend(cluster):
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl not installed")
    back, start_backend, start_frontend = cluster
    b = start_backend()
    f = start_frontend(b.port_of("imap"), b.port_of("pop3"))
    cp = subprocess.run([curl, "-sS", "--max-time", "20", "-u", "%s:%s" % (ALICE, PASSWORD),
                         "imap://127.0.0.1:%d/" % f.port_of("imap")],
                        capture_output=True, timeout=30)
    assert cp.returncode == 0, cp.stderr
    assert b"INBOX" in cp.stdout, cp.stdout


def _mbsync(workdir, port):
    """mbsync (isync) against the frontend's IMAP port: a two-way channel
    of INBOX with a local Maildir; its completed process."""
    conf = os.path.join(workdir, "mbsyncrc")
    near = os.path.join(workdir, "inbox")
    with open(conf, "w") as fh:
        fh.write("IMAPAccount front\nHost 127.0.0.1\nPort %d\nUser %s\nPass %s\n"
                 "AuthMechs LOGIN\nSSLType None\nTimeout 30\n\n"
                 "IMAPStore front-far\nAccount front\n\n"
                 "MaildirStore near\nPath %s/\nInbox %s\n\n"
                 "Channel front\nFar :front-far:\nNear :near:\nPatterns INBOX\n"
                 "Create Both\nExpunge Both\nSyncState *\nSync All\n"
                 % (port, ALICE, PASSWORD, workdir, near))
    os.chmod(conf, 0o600)
    env = dict(os.environ, HOME=workdir, LC_ALL="C")
    return subprocess.run([shutil.which("mbsync"), "-c", conf, "-a"], env=env,
                          capture_output=True, timeout=120)


def _near_messages(workdir):
    """{subject line: flags} of the local Maildir mbsync keeps."""
    out = {}
    for sub in ("cur", "new"):
        d = os.path.join(workdir, "inbox", sub)
        for n in os.listdir(d) if os.path.isdir(d) else ():
            data = open(os.path.join(d, n), "rb").read()
            subj = re.search(rb"^Subject: (.*)$", data, re.M).group(1).strip()
            out[subj] = n.split(":2,")[1] if ":2," in n else ""
    return out


def test_mbsync_through_frontend(cluster, tmp_path):
    """mbsync syncs the backend's INBOX through the frontend both ways: the
    messages and a new arrival come down, a flag set locally goes up (the
    backend's file gets it), and the UIDs it recorded stay valid across
    sessions (a second and third run neither duplicate nor lose one)."""
    if shutil.which("mbsync") is None:
        pytest.skip("mbsync (isync) not installed")
    back, start_backend, start_frontend = cluster
    b = start_backend()
    f = start_frontend(b.port_of("imap"), b.port_of("pop3"))
    for n in (1, 2, 3):
        put(back, ALICE, message(n), name="17000000%02d.M%dP1.proxy" % (n, n))
    work = str(tmp_path)
    cp = _mbsync(work, f.port_of("imap"))
    assert cp.returncode == 0, (cp.stdout, cp.stderr, f.log())
    assert _near_messages(work) == {b"test message 1": "", b"test message 2": "",
                                    b"test message 3": ""}

    # a new arrival on the backend; message 2 flagged \Seen locally
    put(back, ALICE, message(4), name="1700000004.M4P1.proxy")
    cur = os.path.join(work, "inbox", "cur")
    new = os.path.join(work, "inbox", "new")
    for d in (new, cur):
        for n in os.listdir(d):
            if b"test message 2" in open(os.path.join(d, n), "rb").read():
                base = n.split(":2,")[0]
                os.rename(os.path.join(d, n), os.path.join(cur, base + ":2,S"))
    cp = _mbsync(work, f.port_of("imap"))
    assert cp.returncode == 0, (cp.stdout, cp.stderr, f.log())
    near = _near_messages(work)
    assert sorted(near) == [b"test message %d" % n for n in (1, 2, 3, 4)], near
    on_backend = {}
    for root, _dirs, names in os.walk(maildir.maildir_of(back, ALICE)):
        if root.endswith("/cur") or root.endswith("/new"):
            for n in names:
                data = open(os.path.join(root, n), "rb").read()
                subj = re.search(rb"^Subject: (.*)$", data, re.M).group(1).strip()
                on_backend[subj] = n.split(":2,")[1] if ":2," in n else ""
    assert sorted(on_backend) == sorted(near), on_backend
    assert "S" in on_backend[b"test message 2"], on_backend
    # nothing left to do: a third run changes neither side
    cp = _mbsync(work, f.port_of("imap"))
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    assert _near_messages(work) == near
    assert f.wait_log(r"imap proxy: user=<%s>" % re.escape(ALICE), count=3)


def test_fetchmail_through_frontend(cluster, tmp_path):
    """fetchmail over POP3 through the frontend: every message of the
    backend's maildrop is fetched (the same bytes) and deleted there."""
    if shutil.which("fetchmail") is None:
        pytest.skip("fetchmail not installed")
    back, start_backend, start_frontend = cluster
    b = start_backend()
    f = start_frontend(b.port_of("imap"), b.port_of("pop3"))
    msgs = [message(n) for n in (1, 2, 3)]
    for n, m in enumerate(msgs, 1):
        put(back, ALICE, m, name="17000000%02d.M%dP1.fetch" % (n, n))
    work = str(tmp_path)
    out = os.path.join(work, "out")
    os.makedirs(out)
    mda = os.path.join(work, "mda.sh")
    with open(mda, "w") as fh:
        fh.write('#!/bin/sh\nn=$(ls "%s" | wc -l)\nexec cat > "%s/msg.$(printf %%04d "$n")"\n'
                 % (out, out))
    os.chmod(mda, 0o755)
    rc = os.path.join(work, "fetchmailrc")
    with open(rc, "w") as fh:
        fh.write("set no bouncemail\n"
                 "poll 127.0.0.1 port %d protocol pop3 auth password timeout 20\n"
                 "  user '%s' there with password '%s' is 'root' here\n"
                 "  options no keep fetchall sslproto '' no rewrite\n"
                 "  mda \"%s\"\n" % (f.port_of("pop3"), ALICE, PASSWORD, mda))
    os.chmod(rc, 0o600)
    env = dict(os.environ, HOME=work, FETCHMAILHOME=work, LC_ALL="C")
    cp = subprocess.run([shutil.which("fetchmail"), "--nodetach", "--nosyslog", "--invisible",
                         "-v", "-f", rc, "--idfile", os.path.join(work, "ids"),
                         "--pidfile", os.path.join(work, "pid")],
                        env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    assert cp.returncode == 0, (cp.stdout, cp.stderr, f.log())
    got = [open(os.path.join(out, n), "rb").read() for n in sorted(os.listdir(out))]
    assert len(got) == 3, got
    for m in msgs:
        # fetchmail adds its Received: line on top; the message follows whole
        assert any(g.replace(b"\r\n", b"\n").endswith(m) for g in got), (m, got)
    left = [n for root, _d, names in os.walk(maildir.maildir_of(back, ALICE))
            if root.endswith("/cur") or root.endswith("/new") for n in names]
    assert left == [], left
    assert_relayed(b, f, "pop3", client="127.0.0.1")


# --------------------------------------------------------------------------
# POP3


def test_pop3_login_reaches_backend_maildrop(cluster):
    back, start_backend, start_frontend = cluster
    b = start_backend()
    f = start_frontend(b.port_of("imap"), b.port_of("pop3"))
    put(back, ALICE, message(7))
    p = SourcePOP3("127.0.0.1", f.port_of("pop3"), CLIENT_IP)
    p.user(ALICE)
    assert p.pass_(PASSWORD).startswith(b"+OK")
    assert p.stat()[0] == 1
    resp, lines, _ = p.retr(1)
    assert b"line 1 of message 7" in b"\n".join(lines)
    assert p.quit().startswith(b"+OK")
    assert_relayed(b, f, "pop3")


def test_pop3_wrong_password_and_backend_down(cluster):
    back, start_backend, start_frontend = cluster
    b = start_backend()
    f = start_frontend(b.port_of("imap"), b.port_of("pop3"))
    before = backend_connects(b, "pop3")
    p = poplib.POP3("127.0.0.1", f.port_of("pop3"), timeout=20)
    p.user(ALICE)
    with pytest.raises(poplib.error_proto) as e:
        p.pass_("wrong")
    assert b"[AUTH]" in e.value.args[0]
    f.wait_log(r"pop3 login failed: user=<%s>" % re.escape(ALICE))
    assert backend_connects(b, "pop3") == before
    p.close()

    closed = free_ports(2, "127.0.0.2")
    f2 = start_frontend(closed[0], closed[1])
    p = poplib.POP3("127.0.0.1", f2.port_of("pop3"), timeout=20)
    p.user(ALICE)
    with pytest.raises(poplib.error_proto) as e:
        p.pass_(PASSWORD)
    assert e.value.args[0].startswith(b"-ERR [SYS/TEMP] "), e.value.args
    # still in AUTHORIZATION
    with pytest.raises(poplib.error_proto):
        p.stat()
    p.close()


def test_pop3_backend_trusts_only_frontends(cluster):
    back, start_backend, start_frontend = cluster
    b = start_backend()
    port = b.port_of("pop3")

    p = SourcePOP3("127.0.0.2", port, "127.0.0.3")
    with pytest.raises(poplib.error_proto):
        p._shortcmd("XCLIENT ADDR=192.0.2.9 PORT=4")
    with pytest.raises(poplib.error_proto):
        p._shortcmd("AUTH PLAIN " + _plain(ALICE, "petrel-proxy", SECRET))
    p.close()
    b.wait_log(r"pop3 login failed: user=<petrel-proxy>, \[127\.0\.0\.3\]")

    p = SourcePOP3("127.0.0.2", port, "127.0.0.1")
    assert p._shortcmd("XCLIENT ADDR=192.0.2.9 PORT=4").startswith(b"+OK")
    with pytest.raises(poplib.error_proto):
        p._shortcmd("AUTH PLAIN " + _plain(ALICE, "petrel-proxy", "nope"))
    b.wait_log(r"pop3 login failed: user=<%s>, \[192\.0\.2\.9\]:4" % re.escape(ALICE))
    p.close()

    p = SourcePOP3("127.0.0.2", port, "127.0.0.1")
    assert p._shortcmd("AUTH PLAIN " + _plain(ALICE, "petrel-proxy", SECRET)).startswith(b"+OK")
    p.quit()


# --------------------------------------------------------------------------
# ManageSieve (XCLIENT passes the client's address)


def sieve_status(f, s, cmd):
    s.sendall(cmd + b"\r\n")
    while True:
        line = f.readline()
        assert line, "connection closed"
        if line.split(b" ", 1)[0].rstrip(b"\r\n") in (b"OK", b"NO", b"BYE"):
            return line


def sieve_greeting(f):
    while True:
        line = f.readline()
        assert line
        if line.startswith(b"OK"):
            return


def test_managesieve_through_frontend(cluster):
    back, start_backend, start_frontend = cluster
    b = start_backend()
    f = start_frontend(b.port_of("imap"), b.port_of("pop3"),
                       sieve_port=b.port_of("managesieve"))
    with socket.create_connection(("127.0.0.1", f.port_of("managesieve")), timeout=20) as s:
        r = s.makefile("rb")
        sieve_greeting(r)
        ir = _plain("", ALICE, PASSWORD)
        assert sieve_status(r, s, b'AUTHENTICATE "PLAIN" "%s"' % ir.encode()).startswith(b"OK")
        script = b'keep;\r\n'
        assert sieve_status(r, s, b'PUTSCRIPT "viafront" {%d+}\r\n%s' %
                            (len(script), script)).startswith(b"OK")
        assert sieve_status(r, s, b'SETACTIVE "viafront"').startswith(b"OK")
        s.sendall(b"LOGOUT\r\n")
    # stored on the backend, for the user
    cp = back.run("sieve", "list", ALICE)
    assert "viafront" in cp.stdout, cp.stdout
    f.wait_log(r"managesieve proxy: user=<%s>, .* to backend 127\.0\.0\.2 port %d over TLS" %
               (re.escape(ALICE), b.port_of("managesieve")))


def test_managesieve_backend_down(cluster):
    back, start_backend, start_frontend = cluster
    closed = free_ports(3, "127.0.0.2")
    f = start_frontend(closed[0], closed[1], sieve_port=closed[2])
    with socket.create_connection(("127.0.0.1", f.port_of("managesieve")), timeout=20) as s:
        r = s.makefile("rb")
        sieve_greeting(r)
        ir = _plain("", ALICE, PASSWORD)
        line = sieve_status(r, s, b'AUTHENTICATE "PLAIN" "%s"' % ir.encode())
        assert line.startswith(b"NO (TRYLATER) "), line
        # still before login
        assert sieve_status(r, s, b"LISTSCRIPTS").startswith(b"NO")


def test_backend_takes_one_client_address(cluster):
    """A frontend names its client once: a second ID does not change it
    (the failed login below is logged under the first address)."""
    back, start_backend, start_frontend = cluster
    b = start_backend()
    with socket.create_connection(("127.0.0.2", b.port_of("imap")), timeout=20,
                                  source_address=("127.0.0.1", 0)) as s:
        r = s.makefile("rb")
        r.readline()
        for n, ip in ((b"a", b"192.0.2.21"), (b"b", b"192.0.2.22")):
            s.sendall(n + b' ID ("x-originating-ip" "' + ip + b'" "x-originating-port" "7")\r\n')
            while not r.readline().startswith(n + b" "):
                pass
        s.sendall(b"c AUTHENTICATE PLAIN %s\r\n" % _plain(ALICE, "petrel-proxy", "bad").encode())
        assert r.readline().startswith(b"c NO")
    b.wait_log(r"imap login failed: user=<%s>, \[192\.0\.2\.21\]:7" % re.escape(ALICE))
    assert "192.0.2.22" not in b.log()


def test_managesieve_passes_client_address(cluster):
    """The frontend names its client to the backend with XCLIENT: the
    backend logs the session and the login under the client's address."""
    back, start_backend, start_frontend = cluster
    b = start_backend()
    f = start_frontend(b.port_of("imap"), b.port_of("pop3"),
                       sieve_port=b.port_of("managesieve"))
    with socket.create_connection(("127.0.0.1", f.port_of("managesieve")), timeout=20,
                                  source_address=(CLIENT_IP, 0)) as s:
        r = s.makefile("rb")
        sieve_greeting(r)
        ir = _plain("", ALICE, PASSWORD)
        assert sieve_status(r, s, b'AUTHENTICATE "PLAIN" "%s"' % ir.encode()).startswith(b"OK")
        assert sieve_status(r, s, b"LISTSCRIPTS").startswith(b"OK")
        s.sendall(b"LOGOUT\r\n")
    assert_relayed(b, f, "managesieve")


def test_managesieve_xclient_trusted_only(cluster):
    """XCLIENT on a backend's ManageSieve port: refused from an address
    outside proxy_trusted_networks (the login is then logged under the
    real peer); from a frontend it is taken once, before login."""
    back, start_backend, start_frontend = cluster
    b = start_backend()
    port = b.port_of("managesieve")

    with socket.create_connection(("127.0.0.2", port), timeout=20,
                                  source_address=("127.0.0.3", 0)) as s:
        r = s.makefile("rb")
        sieve_greeting(r)
        line = sieve_status(r, s, b"XCLIENT ADDR=192.0.2.9 PORT=4")
        assert line.startswith(b"NO "), line
        ir = _plain(ALICE, "petrel-proxy", SECRET)
        assert sieve_status(r, s, b'AUTHENTICATE "PLAIN" "%s"' % ir.encode()).startswith(b"NO")
    b.wait_log(r"managesieve login failed: user=<petrel-proxy>, \[127\.0\.0\.3\]")
    assert "192.0.2.9" not in b.log()

    with socket.create_connection(("127.0.0.2", port), timeout=20,
                                  source_address=("127.0.0.1", 0)) as s:
        r = s.makefile("rb")
        sieve_greeting(r)
        assert sieve_status(r, s, b'XCLIENT "ADDR=192.0.2.9" PORT=4').startswith(b"OK")
        # once only
        assert sieve_status(r, s, b"XCLIENT ADDR=192.0.2.10 PORT=5").startswith(b"NO")
        ir = _plain(ALICE, "petrel-proxy", SECRET)
        assert sieve_status(r, s, b'AUTHENTICATE "PLAIN" "%s"' % ir.encode()).startswith(b"OK")
        # not after login
        assert sieve_status(r, s, b"XCLIENT ADDR=192.0.2.11 PORT=6").startswith(b"NO")
        s.sendall(b"LOGOUT\r\n")
    b.wait_log(r"managesieve: client \[192\.0\.2\.9\]:4, via frontend \[127\.0\.0\.1\]")
    b.wait_log(r"managesieve login: user=<%s>, \[192\.0\.2\.9\]:4" % re.escape(ALICE))
    assert "192.0.2.10" not in b.log() and "192.0.2.11" not in b.log()

    with socket.create_connection(("127.0.0.2", port), timeout=20,
                                  source_address=("127.0.0.1", 0)) as s:
        r = s.makefile("rb")
        sieve_greeting(r)
        assert sieve_status(r, s, b"XCLIENT ADDR=not-an-address").startswith(b"NO")
        assert sieve_status(r, s, b"XCLIENT PORT=4").startswith(b"NO")


# --------------------------------------------------------------------------
# proxy_tls_ca: the backend's certificate verified


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """The test CA and another CA; backend certificates signed by the
    first: one for 127.0.0.2 (the backend's address as backend_default
    writes it), one for other names only; one for 127.0.0.2 signed by the
    other CA."""
    return make_pki(tmp_path_factory.mktemp("pki"), (
        ("good", "ca", "IP:127.0.0.2,DNS:backend.test"),
        ("wrongname", "ca", "IP:127.0.0.9,DNS:other.test"),
        ("othersigned", "otherca", "IP:127.0.0.2")))


def _try_all_protocols(f):
    """Log in through the frontend by IMAP, POP3 and ManageSieve from
    CLIENT_IP; the three first answers to the login."""
    with socket.create_connection(("127.0.0.1", f.port_of("imap")), timeout=20,
                                  source_address=(CLIENT_IP, 0)) as s:
        r = s.makefile("rb")
        r.readline()
        s.sendall(b"a LOGIN %s %s\r\n" % (ALICE.encode(), PASSWORD.encode()))
        while True:
            imap = r.readline()
            if not imap.startswith(b"* "):
                break
        s.sendall(b"b LOGOUT\r\n")
    with socket.create_connection(("127.0.0.1", f.port_of("pop3")), timeout=20,
                                  source_address=(CLIENT_IP, 0)) as s:
        r = s.makefile("rb")
        r.readline()
        s.sendall(b"USER %s\r\n" % ALICE.encode())
        r.readline()
        s.sendall(b"PASS %s\r\n" % PASSWORD.encode())
        pop3 = r.readline()
        s.sendall(b"QUIT\r\n")
    with socket.create_connection(("127.0.0.1", f.port_of("managesieve")), timeout=20,
                                  source_address=(CLIENT_IP, 0)) as s:
        r = s.makefile("rb")
        sieve_greeting(r)
        ir = _plain("", ALICE, PASSWORD)
        sieve = sieve_status(r, s, b'AUTHENTICATE "PLAIN" "%s"' % ir.encode())
        s.sendall(b"LOGOUT\r\n")
    return imap, pop3, sieve


def test_proxy_tls_ca_verified_backend(cluster, pki):
    """proxy_tls_ca set, the backend's certificate from that CA for its
    address: the three proxied logins work, over verified TLS."""
    back, start_backend, start_frontend = cluster
    b = start_backend(server_cert_opts(pki, "good"))
    f = start_frontend(b.port_of("imap"), b.port_of("pop3"),
                       ("proxy_tls_ca=" + pki["ca"],), sieve_port=b.port_of("managesieve"))
    imap, pop3, sieve = _try_all_protocols(f)
    assert imap.startswith(b"a OK"), imap
    assert pop3.startswith(b"+OK"), pop3
    assert sieve.startswith(b"OK"), sieve
    for proto in ("imap", "pop3", "managesieve"):
        assert f.wait_log(r"%s proxy: user=<%s>, .* to backend 127\.0\.0\.2 port %d over TLS, "
                          r"certificate verified" % (proto, re.escape(ALICE), b.port_of(proto))), \
            f.log()
        assert b.wait_log(r"%s login: user=<%s>, \[%s\]:" % (proto, re.escape(ALICE),
                                                              re.escape(CLIENT_IP))), b.log()


@pytest.mark.parametrize("cert,ca,reason", [
    ("othersigned", "ca", r"certificate not verified: unable to get local issuer certificate"),
    ("good", "otherca", r"certificate not verified: unable to get local issuer certificate"),
    ("wrongname", "ca", r"certificate not verified: IP address mismatch"),
])
def test_proxy_tls_ca_refuses_unverified_backend(cluster, pki, cert, ca, reason):
    """A backend certificate from another CA, or one that does not name
    the backend's address: each protocol's temporary error, the reason in
    the frontend's log, and the backend never sees a login, a client
    address or the secret (the handshake failed before any of them)."""
    back, start_backend, start_frontend = cluster
    b = start_backend(server_cert_opts(pki, cert))
    f = start_frontend(b.port_of("imap"), b.port_of("pop3"),
                       ("proxy_tls_ca=" + pki[ca],), sieve_port=b.port_of("managesieve"))
    imap, pop3, sieve = _try_all_protocols(f)
    assert imap.startswith(b"a NO [UNAVAILABLE] "), imap
    assert pop3.startswith(b"-ERR [SYS/TEMP] "), pop3
    assert sieve.startswith(b"NO (TRYLATER) "), sieve
    for proto in ("imap", "pop3", "managesieve"):
        assert f.wait_log(r"%s proxy: user=<%s>, .*backend 127\.0\.0\.2 unavailable: %s"
                          % (proto, re.escape(ALICE), reason)), f.log()
    # the backend saw the frontend's connections end (the first of each
    # protocol was the start's readiness probe), with no login on them
    for proto in ("imap", "pop3", "managesieve"):
        assert b.wait_log(r"%s disconnect from \[127\.0\.0\.1\]" % proto, count=2), b.log()
    blog = b.log()
    assert "login" not in blog and "via frontend" not in blog, blog
    assert CLIENT_IP not in blog and SECRET not in blog, blog


def test_proxy_tls_ca_needs_starttls_and_a_ca(cluster, pki, tmp_path):
    """proxy_tls_ca set and a backend that offers no STARTTLS: no
    plaintext fallback. A CA file that cannot be read: no proxied login,
    the reason logged."""
    back, start_backend, start_frontend = cluster
    b = start_backend(("tls_cert=", "tls_key=", "tls_sni_dir="))
    f = start_frontend(b.port_of("imap"), b.port_of("pop3"),
                       ("proxy_tls_ca=" + pki["ca"],), sieve_port=b.port_of("managesieve"))
    imap, pop3, sieve = _try_all_protocols(f)
    assert imap.startswith(b"a NO [UNAVAILABLE] "), imap
    assert pop3.startswith(b"-ERR [SYS/TEMP] "), pop3
    assert sieve.startswith(b"NO (TRYLATER) "), sieve
    assert f.wait_log(r"unavailable: backend offers no STARTTLS \(proxy_tls_ca is set\)",
                      count=3), f.log()
    assert "login" not in b.log(), b.log()

    f2 = start_frontend(b.port_of("imap"), b.port_of("pop3"),
                        ("proxy_tls_ca=" + str(tmp_path / "missing.pem"),),
                        sieve_port=b.port_of("managesieve"))
    imap, pop3, sieve = _try_all_protocols(f2)
    assert imap.startswith(b"a NO [UNAVAILABLE] "), imap
    assert pop3.startswith(b"-ERR [SYS/TEMP] "), pop3
    assert sieve.startswith(b"NO (TRYLATER) "), sieve
    assert f2.wait_log(r"imap proxy: .*unavailable: proxy_tls_ca: cannot load the CA "
                       r"certificates of .*missing\.pem"), f2.log()


class RecordingRelay:
    """A TCP relay on 127.0.0.2 in front of one backend port that keeps
    every byte the frontend sent through it (bounded: 20 s a socket)."""

    def __init__(self, port):
        self.port_to = port
        self.sent = bytearray()
        self.lock = threading.Lock()
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.2", 0))
        self.lsock.listen(8)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self.stopping = False
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _pump(self, a, b, record):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                if record:
                    with self.lock:
                        self.sent += data
                b.sendall(data)
        except OSError:
            pass
        for x in (a, b):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            up = socket.create_connection(("127.0.0.2", self.port_to), timeout=20)
            c.settimeout(20)
            for a, b, rec in ((c, up, True), (up, c, False)):
                t = threading.Thread(target=self._pump, args=(a, b, rec), daemon=True)
                t.start()
                self.threads.append(t)

    def stop(self):
        self.stopping = True
        self.lsock.close()
        for t in self.threads:
            t.join(25)

    def data(self):
        with self.lock:
            return bytes(self.sent)


def test_proxy_tls_ca_nothing_in_plaintext(cluster, pki):
    """What a frontend sends towards a backend whose certificate does not
    verify (read on the wire by a relay in between): the STARTTLS command,
    then only TLS records, never a login, the client's address or the
    secret; the same relay with the right certificate carries a working
    session, again with none of them in plaintext."""
    back, start_backend, start_frontend = cluster
    plain = _plain(ALICE, "petrel-proxy", SECRET).encode()
    for cert, works in (("othersigned", False), ("good", True)):
        b = start_backend(server_cert_opts(pki, cert))
        relays = {p: RecordingRelay(b.port_of(p)) for p in ("imap", "pop3", "managesieve")}
        try:
            f = start_frontend(relays["imap"].port, relays["pop3"].port,
                               ("proxy_tls_ca=" + pki["ca"],),
                               sieve_port=relays["managesieve"].port)
            imap, pop3, sieve = _try_all_protocols(f)
            assert imap.startswith(b"a OK" if works else b"a NO [UNAVAILABLE] "), imap
            assert pop3.startswith(b"+OK" if works else b"-ERR [SYS/TEMP] "), pop3
            assert sieve.startswith(b"OK" if works else b"NO (TRYLATER) "), sieve
            assert f.stop() == 0
        finally:
            for r in relays.values():
                r.stop()
        b.stop()
        for proto, r in relays.items():
            data = r.data()
            first = {"imap": b"P STARTTLS\r\n", "pop3": b"CAPA\r\nSTLS\r\n",
                     "managesieve": b"STARTTLS\r\n"}[proto]
            assert data.startswith(first), (proto, data[:200])
            # then a TLS handshake record (content type 22)
            assert data[len(first):len(first) + 1] == b"\x16", (proto, data[:200])
            for secret_thing in (plain, SECRET.encode(), b"AUTHENTICATE", b"AUTH ", b"XCLIENT",
                                 b"x-originating-ip", CLIENT_IP.encode()):
                assert secret_thing not in data, (proto, secret_thing, data[:300])
