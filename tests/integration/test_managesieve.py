"""ManageSieve (RFC 5804) on managesieve_listen: the greeting's
capabilities (SIEVE as the interpreter lists them), STARTTLS with the
capabilities again (allow_plaintext_auth=no: no SASL mechanism before it),
AUTHENTICATE PLAIN and LOGIN (initial response, continuation, literal,
abort, wrong password), every script command with its
response codes (NONEXISTENT, ALREADYEXISTS, ACTIVE, QUOTA/MAXSIZE), names
and sizes refused, hostile input answered NO/BYE; the real
sieve-connect client; and a script uploaded here filing mail at delivery.
One server for the module (SQLite)."""

import base64
import os
import shutil
import smtplib
import socket
import ssl
import subprocess
import time

import pytest

from harness import server
from harness.instance import add_users, make_instance
from harness.maildir import listdir, maildir_of

PASSWORD = "pw"
ALICE = "alice@example.test"
BOB = "bob@example.test"
CAROL = "carol@example.test"
DAVE = "dave@example.test"

SCRIPT = ('require ["fileinto", "mailbox"];\r\n'
          'if header :contains "subject" "report" {\r\n'
          '  fileinto :create "Reports";\r\n'
          '}\r\n')


@pytest.fixture(scope="module")
def srv(petrel_bin, tmp_path_factory):
    base = tmp_path_factory.mktemp("managesieve")
    inst = make_instance(petrel_bin, base / "inst", "sqlite")
    add_users(inst, (ALICE, BOB, CAROL, DAVE), password=PASSWORD)
    s = server.start(inst, ("managesieve", "smtp"),
                     ("hostname=sieve.petrel.test", "auth_fail_delay=100",
                      "allow_plaintext_auth=no",
                      "sieve_max_redirects=2", "managesieve_timeout=60",
                      "managesieve_max_connections=50",
                      "managesieve_max_connections_per_ip=40"))
    yield s
    problems = server.check_stopped([s])
    assert not problems, problems


class Client:
    """A raw ManageSieve connection: send bytes, read responses (lines and
    literals) up to OK/NO/BYE."""

    def __init__(self, srv, tls=True):
        self.sock = socket.create_connection((srv.host, srv.sieve_port), timeout=15)
        self.f = self.sock.makefile("rb")
        self.greeting = self.response()
        if tls:
            self.caps = self.starttls()

    def starttls(self):
        """STARTTLS; the capabilities the server sends again over TLS."""
        st = self.status("STARTTLS")
        assert st.startswith(b"OK"), st
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.sock = ctx.wrap_socket(self.sock, server_hostname="sieve.petrel.test")
        self.f = self.sock.makefile("rb")
        lines, st = self.response()
        assert st.startswith(b"OK"), st
        return lines

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def item(self):
        """One line with any literals it announces folded in."""
        line = self.f.readline(4 * 1024 * 1024)
        assert line.endswith(b"\r\n"), line
        line = line[:-2]
        while line.endswith(b"}") and b"{" in line:
            head, _, n = line[:-1].rpartition(b"{")
            if not n.isdigit():
                break
            data = self.f.read(int(n))
            rest = self.f.readline(4 * 1024 * 1024)
            assert rest.endswith(b"\r\n"), rest
            line = head + b"{" + n + b"}\r\n" + data + rest[:-2]
        return line

    def response(self):
        """(lines before the status, the status line)."""
        lines = []
        for _ in range(1000):
            line = self.item()
            if line.split(b" ", 1)[0] in (b"OK", b"NO", b"BYE"):
                return lines, line
            lines.append(line)
        raise AssertionError("no status line: %r" % lines[-3:])

    def cmd(self, text):
        self.send(text + "\r\n" if isinstance(text, str) else text + b"\r\n")
        return self.response()

    def status(self, text):
        return self.cmd(text)[1]

    def login(self, user=ALICE, password=PASSWORD):
        ir = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
        st = self.status('AUTHENTICATE "PLAIN" "%s"' % ir)
        assert st.startswith(b"OK"), st
        return self

    def closed(self):
        self.sock.settimeout(5)
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, ssl.SSLError):
            return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


@pytest.fixture
def client(srv):
    made = []

    def make(tls=True):
        c = Client(srv, tls)
        made.append(c)
        return c
    yield make
    for c in made:
        c.close()


def caps(lines):
    out = {}
    for line in lines:
        parts = line.split(b'"')
        out[parts[1].decode()] = parts[3].decode() if len(parts) > 3 else None
    return out


def literal(text):
    return "{%d+}\r\n%s" % (len(text.encode()), text)


def test_greeting_and_capabilities(srv, client):
    c = client(tls=False)
    lines, st = c.greeting
    assert st.startswith(b"OK"), c.greeting
    cp = caps(lines)
    assert cp["IMPLEMENTATION"] == "petrel"
    assert cp["SASL"] == ""           # no plain-text password without TLS
    assert "STARTTLS" in cp and cp["VERSION"] == "1.0"
    assert cp["MAXREDIRECTS"] == "2"
    assert "UNAUTHENTICATE" not in cp and "OWNER" not in cp
    exts = cp["SIEVE"].split()
    for e in ("fileinto", "reject", "envelope", "vacation", "imap4flags", "variables",
              "comparator-i;ascii-numeric", "date", "index", "editheader", "duplicate",
              "include"):
        assert e in exts, exts
    # what the interpreter refuses is not announced
    assert "regex" not in exts and "enotify" not in exts
    lines2, st2 = c.cmd("CAPABILITY")
    assert st2.startswith(b"OK") and lines2 == lines
    plain = base64.b64encode(b"\0" + ALICE.encode() + b"\0" + PASSWORD.encode()).decode()
    for mech in ("PLAIN", "LOGIN"):
        st = c.status('AUTHENTICATE "%s" "%s"' % (mech, plain))
        assert st.startswith(b"NO (ENCRYPT-NEEDED)"), st
    # STARTTLS: the capabilities again, now with the mechanisms; pipelined
    # input after it is dropped
    c.send("STARTTLS\r\nLOGOUT\r\n")
    assert c.response()[1].startswith(b"OK")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    c.sock = ctx.wrap_socket(c.sock, server_hostname="sieve.petrel.test")
    c.f = c.sock.makefile("rb")
    lines, st = c.response()
    assert st.startswith(b"OK")
    cp = caps(lines)
    assert "STARTTLS" not in cp and cp["SASL"] == "PLAIN LOGIN"
    assert c.status("STARTTLS").startswith(b"NO")
    # every extension announced is one a script may require
    c.login()
    req = 'require [%s];\r\nkeep;\r\n' % ", ".join('"%s"' % e for e in exts)
    assert c.status("CHECKSCRIPT " + literal(req)).startswith(b"OK")
    lines3, _ = c.cmd("CAPABILITY")
    cp3 = caps(lines3)
    assert cp3["OWNER"] == ALICE and "UNAUTHENTICATE" in cp3
    assert "SASL" not in cp3 and "STARTTLS" not in cp3
    assert c.status("LOGOUT").startswith(b"OK")
    assert c.closed()


def test_authenticate_forms(srv, client):
    plain = base64.b64encode(b"\0" + BOB.encode() + b"\0" + PASSWORD.encode()).decode()
    # continuation: an empty challenge, the response as a quoted string
    c = client()
    c.send('AUTHENTICATE "PLAIN"\r\n')
    assert c.item() == b'""'
    c.send('"%s"\r\n' % plain)
    assert c.response()[1].startswith(b"OK")
    assert c.status("LISTSCRIPTS").startswith(b"OK")
    # the initial response as a literal; case-insensitive mechanism
    c = client()
    assert c.status('AUTHENTICATE "plain" %s' % literal(plain)).startswith(b"OK")
    # a continuation answered with a literal
    c = client()
    c.send('AUTHENTICATE "PLAIN"\r\n')
    assert c.item() == b'""'
    assert c.status(literal(plain)).startswith(b"OK")
    # LOGIN: two quoted challenges
    c = client()
    c.send('AUTHENTICATE "LOGIN"\r\n')
    assert c.item() == b'"%s"' % base64.b64encode(b"Username:")
    c.send('"%s"\r\n' % base64.b64encode(BOB.encode()).decode())
    assert c.item() == b'"%s"' % base64.b64encode(b"Password:")
    assert c.status('"%s"' % base64.b64encode(PASSWORD.encode()).decode()).startswith(b"OK")
    # UNAUTHENTICATE, then in again
    assert c.status("UNAUTHENTICATE").startswith(b"OK")
    assert c.status("LISTSCRIPTS").startswith(b"NO")
    c.login(ALICE)
    # abort, bad base64, wrong password (after the failed-login delay)
    c = client()
    c.send('AUTHENTICATE "PLAIN"\r\n')
    assert c.item() == b'""'
    st = c.status('"*"')
    assert st.startswith(b"NO") and b"aborted" in st, st
    assert c.status('AUTHENTICATE "PLAIN" "!!!"').startswith(b"NO")
    bad = base64.b64encode(b"\0" + BOB.encode() + b"\0wrong").decode()
    t0 = time.monotonic()
    st = c.status('AUTHENTICATE "PLAIN" "%s"' % bad)
    assert st.startswith(b"NO") and b"failed" in st, st
    assert time.monotonic() - t0 >= 0.09
    assert srv.wait_log(r"managesieve login failed: user=<%s>" % BOB)
    assert c.status('AUTHENTICATE "DIGEST-MD5"').startswith(b"NO")
    assert c.status('AUTHENTICATE').startswith(b"NO")
    # nothing but AUTHENTICATE, STARTTLS, CAPABILITY, NOOP, LOGOUT before login
    for cmd in ("LISTSCRIPTS", 'GETSCRIPT "a"', 'HAVESPACE "a" 10', "UNAUTHENTICATE"):
        st = c.status(cmd)
        assert st.startswith(b"NO") and b"Authenticate first" in st, (cmd, st)
    assert c.status('NOOP "t1"') == b'OK (TAG "t1") "Done"'
    assert srv.wait_log(r"managesieve login: user=<%s>" % BOB)


def test_script_commands(srv, client):
    inst = srv.instance
    home = maildir_of(inst, ALICE).rstrip("/")
    c = client().login()
    # both literal forms, and a quoted script
    assert c.status('PUTSCRIPT "one" ' + literal(SCRIPT)).startswith(b"OK")
    sync = "keep;\r\n"
    assert c.status('PUTSCRIPT "two" {%d}\r\n%s' % (len(sync), sync)).startswith(b"OK")
    assert c.status('PUTSCRIPT "three" "discard;"').startswith(b"OK")
    with open(os.path.join(home, "sieve", "one.sieve"), newline="") as f:
        assert f.read() == SCRIPT
    lines, st = c.cmd("LISTSCRIPTS")
    assert st.startswith(b"OK") and sorted(lines) == [b'"one"', b'"three"', b'"two"']
    # activate: Pigeonhole's link
    assert c.status('SETACTIVE "one"').startswith(b"OK")
    assert os.readlink(os.path.join(home, ".dovecot.sieve")) == "sieve/one.sieve"
    lines, _ = c.cmd("LISTSCRIPTS")
    assert b'"one" ACTIVE' in lines and b'"two"' in lines
    # what the CLI sees is the same store
    cp = inst.run("sieve", "list", ALICE)
    assert cp.stdout.splitlines() == ["one ACTIVE", "three", "two"]
    lines, st = c.cmd('GETSCRIPT "one"')
    assert st.startswith(b"OK")
    assert lines == [b"{%d}\r\n%s" % (len(SCRIPT), SCRIPT.encode())]
    # the active script cannot be deleted; names taken; names missing
    st = c.status('DELETESCRIPT "one"')
    assert st.startswith(b"NO (ACTIVE)"), st
    assert c.status('RENAMESCRIPT "two" "three"').startswith(b"NO (ALREADYEXISTS)")
    for cmd in ('GETSCRIPT "nope"', 'DELETESCRIPT "nope"', 'SETACTIVE "nope"',
                'RENAMESCRIPT "nope" "other"'):
        st = c.status(cmd)
        assert st.startswith(b"NO (NONEXISTENT)"), (cmd, st)
    # renaming the active script keeps it active
    assert c.status('RENAMESCRIPT "one" "main"').startswith(b"OK")
    assert os.readlink(os.path.join(home, ".dovecot.sieve")) == "sieve/main.sieve"
    lines, _ = c.cmd("LISTSCRIPTS")
    assert b'"main" ACTIVE' in lines and b'"one"' not in lines
    # replace a script in place
    assert c.status('PUTSCRIPT "two" "stop;"').startswith(b"OK")
    assert c.cmd('GETSCRIPT "two"')[0] == [b"{5}\r\nstop;"]
    # deactivate, then delete
    assert c.status('SETACTIVE ""').startswith(b"OK")
    assert not os.path.lexists(os.path.join(home, ".dovecot.sieve"))
    assert all(b"ACTIVE" not in x for x in c.cmd("LISTSCRIPTS")[0])
    for name in ("main", "two", "three"):
        assert c.status('DELETESCRIPT "%s"' % name).startswith(b"OK")
    lines, st = c.cmd("LISTSCRIPTS")
    assert lines == [] and st.startswith(b"OK")
    assert srv.wait_log(r"managesieve: user=<%s>, rename one to main: ok" % ALICE)


def test_scripts_and_names_refused(srv, client):
    c = client().login(DAVE)
    # a script that does not parse: the parser's errors
    bad = 'require "fileinto";\r\nfileint "A";\r\n'
    st = c.status('PUTSCRIPT "bad" ' + literal(bad))
    assert st.startswith(b"NO") and b"line 2: unknown command 'fileint'" in st, st
    st = c.status("CHECKSCRIPT " + literal('keep;\r\nif true {\r\n'))
    assert st.startswith(b"NO") and b"line 2" in st, st
    assert c.status("CHECKSCRIPT " + literal(SCRIPT)).startswith(b"OK")
    assert c.cmd("LISTSCRIPTS")[0] == []
    # names (RFC 5804 1.6, as `petrel sieve` takes them)
    for name in ('"../x"', '".hidden"', '"a/b"', '""', '"%s"' % ("n" * 129),
                 '{3+}\r\na\x01b', '{3+}\r\na\x00b', '{4+}\r\na\r\nb'):
        st = c.status('PUTSCRIPT %s "keep;"' % name)
        assert st.startswith(b"NO") and b"Invalid script name" in st, (name, st)
    assert c.status('PUTSCRIPT "%s" "keep;"' % ("n" * 128)).startswith(b"OK")
    assert c.status('PUTSCRIPT "caf\xc3\xa9 r\\"x\\\\" "keep;"'.encode("latin-1")).startswith(b"OK")
    lines, _ = c.cmd("LISTSCRIPTS")
    assert b'"caf\xc3\xa9 r\\"x\\\\"' in lines, lines
    # sizes: HAVESPACE and a script over the bound (read, dropped, refused)
    assert c.status('HAVESPACE "x" 1000').startswith(b"OK")
    assert c.status('HAVESPACE "x" 1048577').startswith(b"NO (QUOTA/MAXSIZE)")
    assert c.status('HAVESPACE "x" 99999999999999999999').startswith(b"NO")
    assert c.status('HAVESPACE "x" "10"').startswith(b"NO")
    big = "#" * (1024 * 1024 + 1)
    st = c.status('PUTSCRIPT "big" ' + literal(big))
    assert st.startswith(b"NO (QUOTA/MAXSIZE)"), st
    assert c.status("NOOP").startswith(b"OK")
    assert b'"big"' not in b" ".join(c.cmd("LISTSCRIPTS")[0])
    # arguments
    assert c.status('PUTSCRIPT "x"').startswith(b"NO")
    assert c.status('GETSCRIPT x').startswith(b"NO")
    assert c.status('LISTSCRIPTS "x"').startswith(b"NO")
    assert c.status('AUTHENTICATE "PLAIN"').startswith(b"NO")   # already in


def test_hostile_input(srv, client):
    c = client(tls=False)
    assert c.status("FROB").startswith(b"NO")
    assert c.status('NOOP "unterminated').startswith(b"NO")
    assert c.status('NOOP "bad \\q escape"').startswith(b"NO")
    assert c.status("NOOP  two-spaces").startswith(b"NO")
    assert c.status('NOOP {x}').startswith(b"NO")
    assert c.status("").startswith(b"NO")
    assert c.status(b"\x00\xff\r").startswith(b"NO")
    assert c.status('NOOP "a" "b"').startswith(b"NO")
    # a literal over the bound before login: the session ends
    c.send("NOOP {100000+}\r\n")
    _, st = c.response()
    assert st.startswith(b"BYE"), st
    assert c.closed()
    # an endless line
    c = client(tls=False)
    c.send(b"NOOP " + b"x" * 20000)
    _, st = c.response()
    assert st.startswith(b"BYE") and b"too long" in st, st
    assert c.closed()
    # too many errors
    c = client(tls=False)
    for _ in range(19):
        c.send("FROB\r\n")
    for _ in range(19):
        assert c.response()[1].startswith(b"NO")
    c.send("FROB\r\n")
    assert c.item().startswith(b"NO")
    assert c.item().startswith(b"BYE")
    assert c.closed()
    # a literal announced and never sent, then the client leaves
    c = client().login(CAROL)
    c.send('PUTSCRIPT "half" {500+}\r\nkeep;')
    c.close()
    c = client().login(CAROL)
    assert b'"half"' not in b" ".join(c.cmd("LISTSCRIPTS")[0])
    # pipelined commands, answered in order
    c.send('NOOP "1"\r\nNOOP "2"\r\nPUTSCRIPT "p" "keep;"\r\nLISTSCRIPTS\r\nDELETESCRIPT "p"\r\n')
    assert c.response()[1] == b'OK (TAG "1") "Done"'
    assert c.response()[1] == b'OK (TAG "2") "Done"'
    assert c.response()[1].startswith(b"OK")
    lines, st = c.response()
    assert lines == [b'"p"'] and st.startswith(b"OK")
    assert c.response()[1].startswith(b"OK")
    assert not srv.crashes()


def run_sieve_connect(srv, tmp_path, *args):
    r, w = os.pipe()
    os.write(w, PASSWORD.encode() + b"\n")
    os.close(w)
    try:
        return subprocess.run(
            ["sieve-connect", "--server", srv.host, "--port", str(srv.sieve_port),
             "--user", BOB, "--passwordfd", str(r), "--notlsverify", "--4"] + list(args),
            pass_fds=(r,), cwd=str(tmp_path), capture_output=True, text=True,
            timeout=60, stdin=subprocess.DEVNULL)
    finally:
        os.close(r)


def test_sieve_connect(srv, tmp_path):
    if shutil.which("sieve-connect") is None:
        pytest.skip("sieve-connect is not installed (scripts/install-deps.sh --test)")
    local = tmp_path / "filter.sieve"
    local.write_text(SCRIPT.replace("\r\n", "\n"))
    cp = run_sieve_connect(srv, tmp_path, "--upload", "--localsieve", str(local),
                           "--remotesieve", "filter")
    assert cp.returncode == 0, cp.stderr
    cp = run_sieve_connect(srv, tmp_path, "--activate", "--remotesieve", "filter")
    assert cp.returncode == 0, cp.stderr
    cp = run_sieve_connect(srv, tmp_path, "--list")
    assert cp.returncode == 0, cp.stderr
    assert "filter" in cp.stdout and "active" in cp.stdout.lower(), cp.stdout
    down = tmp_path / "down.sieve"
    cp = run_sieve_connect(srv, tmp_path, "--download", "--remotesieve", "filter",
                           "--localsieve", str(down))
    assert cp.returncode == 0, cp.stderr
    assert down.read_text() == local.read_text()
    # the TLS it negotiated, and the login, are in the log
    assert srv.wait_log(r"managesieve login: user=<%s>, \S+, TLS" % BOB)
    # a script that does not parse is refused with the parser's words
    broken = tmp_path / "broken.sieve"
    broken.write_text("fileinto \"x\";\n")
    cp = run_sieve_connect(srv, tmp_path, "--upload", "--localsieve", str(broken),
                           "--remotesieve", "broken")
    assert cp.returncode != 0 and "fileinto" in (cp.stdout + cp.stderr), cp
    cp = run_sieve_connect(srv, tmp_path, "--deactivate")
    assert cp.returncode == 0, cp.stderr
    cp = run_sieve_connect(srv, tmp_path, "--delete", "--remotesieve", "filter")
    assert cp.returncode == 0, cp.stderr
    cp = run_sieve_connect(srv, tmp_path, "--list")
    assert cp.returncode == 0 and "filter" not in cp.stdout, cp


def folder_files(inst, address, folder=None):
    d = maildir_of(inst, address)
    if folder is not None:
        d = os.path.join(d, "." + folder)
    return [n for sub in ("new", "cur") for n in listdir(os.path.join(d, sub))]


def test_uploaded_script_runs_at_delivery(srv, client):
    inst = srv.instance
    c = client().login(CAROL)
    assert c.status('PUTSCRIPT "rules" ' + literal(SCRIPT)).startswith(b"OK")
    assert c.status('SETACTIVE "rules"').startswith(b"OK")
    msg = ("From: sender@example.org\r\nTo: %s\r\nSubject: monthly report\r\n"
           "Message-ID: <report.1@example.org>\r\n\r\nnumbers\r\n" % CAROL).encode()
    with smtplib.SMTP(srv.host, srv.smtp_port, local_hostname="client.test", timeout=30) as s:
        assert s.sendmail("sender@example.org", [CAROL], msg) == {}
    assert len(folder_files(inst, CAROL, "Reports")) == 1
    assert folder_files(inst, CAROL) == []


def test_script_count_and_storage_limits(petrel_bin, tmp_path):
    """sieve_max_scripts and sieve_max_storage: HAVESPACE and PUTSCRIPT
    answer NO (QUOTA/MAXSCRIPTS) for a name past the count and NO
    (QUOTA/MAXSIZE) past the bytes; replacing a script counts its new size
    only; `petrel sieve put` keeps the same limits."""
    inst = make_instance(petrel_bin, tmp_path / "inst", "sqlite")
    add_users(inst, (ALICE,), password=PASSWORD)
    limits = ("sieve_max_scripts=2", "sieve_max_storage=100")
    with server.running(server.start, inst, ("managesieve",),
                        ("hostname=sieve.petrel.test",) + limits) as s:
        c = Client(s, tls=False)
        try:
            c.login()
            assert c.status('PUTSCRIPT "a" "keep;"').startswith(b"OK")
            assert c.status('PUTSCRIPT "b" "stop;"').startswith(b"OK")
            assert c.status('HAVESPACE "c" 10').startswith(b"NO (QUOTA/MAXSCRIPTS)")
            st = c.status('PUTSCRIPT "c" "keep;"')
            assert st.startswith(b"NO (QUOTA/MAXSCRIPTS)") and b"sieve_max_scripts" in st, st
            # a name already there is a replacement, not one more script
            assert c.status('HAVESPACE "a" 95').startswith(b"OK")      # 95 + 5 = 100
            assert c.status('HAVESPACE "a" 96').startswith(b"NO (QUOTA/MAXSIZE)")
            big = "# " + "x" * 87 + "\r\nkeep;"                            # 96 bytes
            assert len(big) == 96
            st = c.status('PUTSCRIPT "a" ' + literal(big))
            assert st.startswith(b"NO (QUOTA/MAXSIZE)"), st
            assert c.cmd('GETSCRIPT "a"')[0] == [b"{5}\r\nkeep;"]
            assert c.status('DELETESCRIPT "b"').startswith(b"OK")
            assert c.status('PUTSCRIPT "c" "keep;"').startswith(b"OK")
            # the session goes on: store refusals are not client errors
            assert c.status("NOOP").startswith(b"OK")
        finally:
            c.close()
    script = tmp_path / "d.sieve"
    script.write_text("keep;\n")
    cp = inst.run("-o", "sieve_max_scripts=2", "sieve", "put", ALICE, "d", str(script),
                  check=False)
    assert cp.returncode == 1, cp
    err = cp.stderr.strip().splitlines()
    assert len(err) == 1 and "sieve_max_scripts" in err[0], err
    assert inst.run("sieve", "put", ALICE, "d", str(script)).returncode == 0
