"""Milters (`milters`, `milter_default_action`, `milter_timeout`): petrel as the
MTA side of the Sendmail milter protocol (version 6).

A small filter written here (FakeMilter: a loopback socket server speaking the
protocol, its answers set per test) checks each verdict and change
deterministically, at the stage it comes at (MAIL, RCPT, after the data): a
reply code of its own, reject, tempfail, discard,
quarantine, header fields added, changed, inserted and deleted, a new body,
and the failures (a truncated reply, a reply whose length lies, a silent
filter, a closed port) that get milter_default_action. Then rspamd, started
here with its milter proxy on loopback: GTUBE is refused at the end of DATA,
a clean message gets rspamd's header fields, and a killed rspamd gives the
default action. Every case checks that nothing was stored twice or lost."""

import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

import pytest

import smtp_util
from harness import server
from harness.instance import TIMEOUT_SCALE, add_users, make_instance
from harness.ports import free_port
from smtp_util import maildir_of, read_new, split_stored

ALICE, BOB = "alice@example.test", "bob@example.test"
MSG = (b"From: x@y.test\r\nTo: alice@example.test\r\nSubject: hello\r\n"
       b"X-Drop: me\r\n\r\nbody line 1\r\nbody line 2\r\n")


def packet(cmd, data=b""):
    return struct.pack(">I", len(data) + 1) + cmd + data


class FakeMilter:
    """A milter on 127.0.0.1:port. For each connection it answers OPTNEG with
    `optneg` (actions, steps), every stage with `stage[cmd]` (default b"c"),
    and the end of the message with the packets of `eom`. `raw` (bytes), when
    set, is all it ever sends back to OPTNEG; `silent` makes it read and never
    answer. What it received is kept in `seen` (list of (cmd, data))."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.reset()
        self.conns = 0
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self):
        self.optneg = (0x1ff & ~0x84, 0)
        self.stage = {}
        self.eom = [packet(b"c")]
        self.raw = None
        self.silent = False
        self.seen = []

    def close(self):
        self.stopped = True
        self.sock.close()

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    @staticmethod
    def _read(c, n):
        buf = b""
        while len(buf) < n:
            d = c.recv(n - len(buf))
            if not d:
                raise EOFError
            buf += d
        return buf

    def _serve(self, c):
        c.settimeout(10)
        try:
            while True:
                n = struct.unpack(">I", self._read(c, 4))[0]
                body = self._read(c, n)
                cmd, data = body[:1], body[1:]
                self.seen.append((cmd, data))
                if self.silent or cmd == b"D":
                    continue
                if cmd == b"Q":
                    return
                if cmd == b"O":
                    if self.raw is not None:
                        c.sendall(self.raw)
                        time.sleep(0.05)
                        return
                    c.sendall(packet(b"O", struct.pack(">III", 6, *self.optneg)))
                elif cmd == b"E":
                    c.sendall(b"".join(self.eom))
                else:
                    answer = self.stage.get(cmd, packet(b"c"))
                    c.sendall(answer(data) if callable(answer) else answer)
        except (EOFError, OSError, socket.timeout):
            pass
        finally:
            c.close()

    def received(self, cmd):
        return [d for c, d in self.seen if c == cmd]


@pytest.fixture(scope="module")
def milter():
    m = FakeMilter()
    yield m
    m.close()


def _instance(petrel_bin, tmp_path_factory, name):
    inst = make_instance(petrel_bin, tmp_path_factory.mktemp(name), "sqlite")
    add_users(inst, (ALICE, BOB), password=None)
    return inst


@pytest.fixture(scope="module")
def tempfail_srv(petrel_bin, tmp_path_factory, milter):
    """petrel with the fake milter and the default action tempfail."""
    inst = _instance(petrel_bin, tmp_path_factory, "milter-tempfail")
    with server.running(smtp_util.start_smtp, inst,
                        ("milters = inet:127.0.0.1:%d" % milter.port,
                         "milter_default_action=tempfail", "milter_timeout=1")) as srv:
        yield srv


@pytest.fixture
def srv(tempfail_srv, milter):
    milter.reset()
    for a in (ALICE, BOB):
        d = os.path.join(maildir_of(tempfail_srv.instance, a), "new")
        for n in os.listdir(d) if os.path.isdir(d) else ():
            os.unlink(os.path.join(d, n))
    return tempfail_srv


def send(srv, data=MSG, rcpts=(ALICE,), sender="x@y.test"):
    """One transaction; the reply that ended it: the first MAIL or RCPT
    reply that is not 250 (every RCPT refused), else the reply after the
    data. r.stage says which ("MAIL", "RCPT", "DATA")."""
    with srv.client() as c:
        c.expect("EHLO client.test", 250)
        r = c.cmd("MAIL FROM:<%s>" % sender)
        r.stage = "MAIL"
        if r.code == 250:
            refused = [c.cmd("RCPT TO:<%s>" % a) for a in rcpts]
            refused = [x for x in refused if x.code != 250]
            if len(refused) == len(rcpts):
                r = refused[0]
                r.stage = "RCPT"
            else:
                c.expect("DATA", 354)
                c.send(data + (b".\r\n" if data.endswith(b"\r\n") else b"\r\n.\r\n"))
                r = c.reply()
                r.stage = "DATA"
                r.refused = refused
        c.expect("QUIT", 221)
    return r


def stored(srv, address=ALICE):
    return read_new(srv.instance, address)


def only(srv, address=ALICE):
    files = stored(srv, address)
    assert len(files) == 1, files
    return split_stored(files[0])[1]


# --------------------------------------------------------------------------
# what the filter is told


def test_filter_sees_the_transaction(srv, milter):
    r = send(srv, rcpts=(ALICE, BOB))
    assert r.code == 250, r
    assert len(stored(srv, ALICE)) == 1 and len(stored(srv, BOB)) == 1
    opt = milter.received(b"O")[0]
    version, actions, steps = struct.unpack(">III", opt)
    assert version == 6 and actions & 0x01 and actions & 0x02 and steps & 0x80
    conn = milter.received(b"C")[0]
    assert conn.startswith(b"[127.0.0.1]\x00") and conn.endswith(b"127.0.0.1\x00")
    assert conn[len(b"[127.0.0.1]\x00"):][:1] == b"4"
    assert milter.received(b"H") == [b"client.test\x00"]
    assert milter.received(b"M") == [b"<x@y.test>\x00"]
    assert milter.received(b"R") == [b"<alice@example.test>\x00", b"<bob@example.test>\x00"]
    headers = milter.received(b"L")
    assert headers[0] == b"From\x00x@y.test\x00"
    assert headers[2] == b"Subject\x00hello\x00"
    assert b"".join(milter.received(b"B")) == b"body line 1\r\nbody line 2\r\n"
    macros = milter.received(b"D")
    assert any(m.startswith(b"C") and b"j\x00mx.petrel.test\x00" in m for m in macros)
    assert any(m.startswith(b"E") and m[1:3] == b"i\x00" for m in macros)
    assert len(milter.received(b"E")) == 1


# --------------------------------------------------------------------------
# verdicts


def test_reply_code_of_its_own(srv, milter):
    milter.eom = [packet(b"y", b"554 5.7.0 Go away, spammer\x00")]
    r = send(srv)
    assert r.code == 554 and "5.7.0 Go away, spammer" in r.text, r
    assert stored(srv) == []


def test_reply_code_sanitized(srv, milter):
    # multi-line, a control character, and an enhanced code of another class
    milter.eom = [packet(b"y", b"550-4.1.1 first\x01 line\r\n550 second\x00")]
    r = send(srv)
    assert r.code == 550, r
    assert r.lines == ["550 5.7.1 first? line"], r
    assert stored(srv) == []


def test_reply_code_not_an_error_is_a_failure(srv, milter):
    milter.eom = [packet(b"y", b"250 fine\x00")]
    r = send(srv)
    assert r.stage == "DATA" and r.code == 451, r
    assert stored(srv) == []


def test_reject_at_mail(srv, milter):
    """A filter's refusal at MAIL is the MAIL reply; the session goes on."""
    milter.stage = {b"M": packet(b"y", b"553 5.7.1 Go away, sender\x00")}
    r = send(srv)
    assert r.stage == "MAIL" and r.code == 553 and r.lines == ["553 5.7.1 Go away, sender"], r
    milter.stage = {}
    r = send(srv)
    assert r.stage == "DATA" and r.code == 250, r
    assert len(stored(srv)) == 1


def test_rcpt_refused_one_by_one(srv, milter):
    """A filter's reject or tempfail at RCPT refuses that recipient at RCPT;
    the others get the message."""
    milter.stage = {b"R": lambda d: packet(b"r") if b"bob" in d else packet(b"c")}
    r = send(srv, rcpts=(ALICE, BOB))
    assert r.stage == "DATA" and r.code == 250, r
    assert [x.code for x in r.refused] == [550] and "5.7.1" in r.refused[0].text
    assert len(stored(srv, ALICE)) == 1 and stored(srv, BOB) == []
    assert milter.received(b"R")[-1] == b"<bob@example.test>\x00"
    milter.stage = {b"R": lambda d: packet(b"t") if b"alice" in d else packet(b"c")}
    r = send(srv, rcpts=(ALICE, BOB))
    assert r.code == 250 and [x.code for x in r.refused] == [451], r
    assert len(stored(srv, ALICE)) == 1 and len(stored(srv, BOB)) == 1
    milter.stage = {b"R": packet(b"r")}
    r = send(srv)
    assert r.stage == "RCPT" and r.code == 550, r
    assert len(stored(srv, ALICE)) == 1 and len(stored(srv, BOB)) == 1


def test_discard_at_rcpt(srv, milter):
    milter.stage = {b"R": packet(b"d")}
    r = send(srv, rcpts=(ALICE, BOB))
    assert r.stage == "DATA" and r.code == 250 and r.refused == [], r
    assert stored(srv, ALICE) == [] and stored(srv, BOB) == []


def test_tempfail(srv, milter):
    milter.eom = [packet(b"t")]
    r = send(srv)
    assert r.code == 451 and "4.7.1" in r.text, r
    assert stored(srv) == []


def test_discard(srv, milter):
    milter.eom = [packet(b"d")]
    r = send(srv, rcpts=(ALICE, BOB))
    assert r.code == 250, r
    assert stored(srv, ALICE) == [] and stored(srv, BOB) == []
    assert srv.wait_log("milter-discard")


def test_accept_at_connect_skips_the_rest(srv, milter):
    milter.stage = {b"C": packet(b"a")}
    r = send(srv)
    assert r.code == 250, r
    assert only(srv) == MSG.replace(b"\r\n", b"\n")
    assert milter.received(b"L") == [] and milter.received(b"E") == []


def test_quarantine_marks_the_copy(srv, milter):
    milter.eom = [packet(b"q", b"looks odd\x00"), packet(b"a")]
    r = send(srv)
    assert r.code == 250, r
    body = only(srv)
    assert body.startswith(b"X-Quarantine: looks odd\n"), body


# --------------------------------------------------------------------------
# changes


def test_header_changes(srv, milter):
    milter.eom = [
        packet(b"h", b"X-Added\x00one\x00"),
        packet(b"h", b"X-Folded\x00a\r\nb\x00"),
        packet(b"m", struct.pack(">I", 1) + b"Subject\x00changed\x00"),
        packet(b"m", struct.pack(">I", 1) + b"X-Drop\x00\x00"),
        packet(b"m", struct.pack(">I", 3) + b"X-None\x00\x00"),
        packet(b"i", struct.pack(">I", 0) + b"X-First\x00top\x00"),
        packet(b"c"),
    ]
    r = send(srv)
    assert r.code == 250, r
    body = only(srv)
    head, _, rest = body.partition(b"\n\n")
    assert head.split(b"\n") == [
        b"X-First: top", b"From: x@y.test", b"To: alice@example.test",
        b"Subject: changed", b"X-Added: one", b"X-Folded: a", b"\tb"], body
    assert rest == b"body line 1\nbody line 2\n"


def test_body_replaced(srv, milter):
    milter.eom = [packet(b"b", b"new\r\nbody"), packet(b"b", b"\r\n"), packet(b"c")]
    r = send(srv)
    assert r.code == 250, r
    body = only(srv)
    assert body.endswith(b"\n\nnew\nbody\n"), body
    assert b"Subject: hello\n" in body


def test_change_not_negotiated_is_a_failure(srv, milter):
    milter.optneg = (0x01, 0)   # may only add header fields
    milter.eom = [packet(b"b", b"sneaky\r\n"), packet(b"c")]
    r = send(srv)
    assert r.code == 451, r
    assert stored(srv) == []


def test_add_recipient_is_not_offered(srv, milter):
    """Adding recipients is not offered; a filter that asks for every action
    (as rspamd does) gets the others, and one that adds a recipient anyway
    has broken the protocol."""
    milter.optneg = (0x1ff, 0)
    milter.eom = [packet(b"h", b"X-Ok\x00yes\x00"), packet(b"c")]
    assert send(srv).code == 250
    assert b"\nX-Ok: yes\n" in only(srv)
    milter.eom = [packet(b"+", b"<bob@example.test>\x00"), packet(b"c")]
    assert send(srv).code == 451
    assert len(stored(srv)) == 1 and stored(srv, BOB) == []


def test_steps_not_wanted_are_not_sent(srv, milter):
    milter.optneg = (0x01, 0x01 | 0x02 | 0x10 | 0x20 | 0x80)  # no connect/helo/body/headers
    r = send(srv)
    assert r.code == 250, r
    assert milter.received(b"C") == [] and milter.received(b"H") == []
    assert milter.received(b"L") == [] and milter.received(b"B") == []
    assert len(milter.received(b"E")) == 1 and len(stored(srv)) == 1


def test_large_message_from_the_disk_spool(srv, milter):
    """A message over 1 MiB (spilled to a file while received): the filter
    gets all of its body in chunks of at most 64 KiB, and its header change
    is stored with the body intact."""
    body = b"".join(b"line %06d %s\r\n" % (i, b"x" * 60) for i in range(20000))
    msg = b"From: x@y.test\r\nSubject: big\r\n\r\n" + body
    milter.eom = [packet(b"h", b"X-Big\x00seen\x00"), packet(b"c")]
    r = send(srv, msg)
    assert r.code == 250, r
    chunks = milter.received(b"B")
    assert len(chunks) > 16 and max(len(c) for c in chunks) <= 65535
    assert b"".join(chunks) == body
    stored_body = only(srv)
    assert stored_body == b"From: x@y.test\nSubject: big\nX-Big: seen\n\n" + body.replace(b"\r\n", b"\n")


def test_submission_is_filtered(out_instance, petrel_start, milter):
    """Submission asks the filters too, with the login in {auth_authen}."""
    import mx_util
    milter.reset()
    srv = petrel_start(out_instance, ("milters=inet:127.0.0.1:%d" % milter.port,))
    milter.eom = [packet(b"y", b"550 5.7.1 Outgoing spam\x00")]
    msg = b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: s\r\n\r\nhi\r\n"
    r = srv.submit(mx_util.ALICE, mx_util.ALICE, [mx_util.BOB], msg)
    assert r.code == 550 and "Outgoing spam" in r.text, r
    macros = b"".join(milter.received(b"D"))
    assert b"{auth_authen}\x00alice@example.test\x00" in macros
    assert b"{daemon_name}\x00submission\x00" in macros
    milter.eom = [packet(b"c")]
    assert srv.submit(mx_util.ALICE, mx_util.ALICE, [mx_util.BOB], msg).code == 250
    assert len(read_new(out_instance, mx_util.BOB)) == 1


# --------------------------------------------------------------------------
# a broken filter gets milter_default_action (tempfail here)


@pytest.mark.parametrize("raw", [
    packet(b"O", struct.pack(">III", 6, 0, 0))[:9],          # cut short, then closed
    struct.pack(">I", 0xFFFFFFF0) + b"O",                     # a length past any bound
    struct.pack(">I", 0) + b"O",                              # an empty packet
    struct.pack(">I", 40) + b"Oshort",                        # lies: says 40, sends 6, closes
    packet(b"O", b"\x00\x00"),                                # option reply too short
    packet(b"Z"),                                             # no such reply
], ids=["truncated", "huge-length", "zero-length", "short-length", "short-optneg", "unknown"])
def test_broken_filter_tempfails(srv, milter, raw):
    milter.raw = raw
    r = send(srv)
    assert r.stage == "MAIL" and r.code == 451, r
    assert stored(srv) == []


def test_bad_header_from_filter(srv, milter):
    milter.eom = [packet(b"h", b"Bad Name\x00x\x00"), packet(b"c")]
    assert send(srv).code == 451
    milter.reset()
    milter.eom = [packet(b"h", b"X-No-Value\x00"), packet(b"c")]   # no NUL for the value
    assert send(srv).code == 451
    assert stored(srv) == []


def test_silent_filter_times_out(srv, milter):
    milter.silent = True
    t = time.monotonic()
    r = send(srv)
    assert r.stage == "MAIL" and r.code == 451, r
    assert time.monotonic() - t < 5 * TIMEOUT_SCALE
    assert stored(srv) == []


@pytest.fixture(scope="module")
def accept_srv(petrel_bin, tmp_path_factory):
    """petrel with a milter that is not there and the default action accept."""
    inst = _instance(petrel_bin, tmp_path_factory, "milter-accept")
    with server.running(smtp_util.start_smtp, inst,
                        ("milters=inet:127.0.0.1:%d" % free_port(),
                         "milter_default_action = accept", "milter_timeout=1")) as s:
        yield s


def test_default_accept_when_unreachable(accept_srv):
    r = send(accept_srv)
    assert r.code == 250, r
    assert len(stored(accept_srv)) == 1
    assert "default action accept" in accept_srv.log()


def test_bad_milters_value_is_refused(petrel_bin, tmp_path):
    """A milters value that does not parse: serve stops with one line."""
    inst = make_instance(petrel_bin, tmp_path / "inst", "sqlite")
    p = subprocess.run([petrel_bin, "-c", inst.conf, "-o", "milters=tcp:1.2.3.4",
                        "-o", "smtp_listen=127.0.0.1:%d" % free_port(), "serve"],
                       capture_output=True, text=True, timeout=20, cwd=inst.dir)
    assert p.returncode != 0
    assert "milters: " in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    # and petrel check names it
    cp = inst.run("-o", "milters=inet:127.0.0.1:11332,unix:relative", "check", check=False)
    assert cp.returncode == 1 and "milters: " in cp.stderr and "unix:" in cp.stderr, cp.stderr


# --------------------------------------------------------------------------
# rspamd's milter proxy

GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

RSPAMD_CONF = """
.include "$CONFDIR/common.conf"
options {
    # quick to start: no regexp compilation, a short suffix list, no
    # network (DNS to a closed loopback port); before the defaults, which
    # would win otherwise
    disable_hyperscan = true;
    url_tld = "%(dir)s/tld.dat";
    dns { nameserver = ["127.0.0.1:9"]; timeout = 0.2s; retransmits = 1; }
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
}
logging { type = "file"; filename = "$LOGDIR/rspamd.log"; level = "info"; }
worker "rspamd_proxy" {
    bind_socket = "127.0.0.1:%(port)d";
    milter = yes;
    timeout = 30s;
    count = 1;
    upstream "local" { default = yes; self_scan = yes; }
}
"""

MILTER_HEADERS = """
use = ["x-spamd-result", "x-spam-status", "authentication-results"];
skip_local = false;
skip_authenticated = false;
"""


class Rspamd:
    """rspamd -f with its own configuration directory, the proxy worker in
    milter mode on 127.0.0.1:port (scanning itself: no normal worker, no
    redis). As root it runs as _rspamd."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="petrel-rspamd-")
        os.chmod(self.dir, 0o755)
        os.makedirs(os.path.join(self.dir, "local.d"))
        self.port = free_port()
        with open(os.path.join(self.dir, "rspamd.conf"), "w") as f:
            f.write(RSPAMD_CONF % {"dir": self.dir, "port": self.port})
        with open(os.path.join(self.dir, "local.d", "milter_headers.conf"), "w") as f:
            f.write(MILTER_HEADERS)
        with open(os.path.join(self.dir, "tld.dat"), "w") as f:
            f.write("test\ncom\norg\nnet\n")
        self.proc = None

    def start(self):
        assert shutil.which("rspamd"), "rspamd is not installed (scripts/install-deps.sh --test)"
        args = [shutil.which("rspamd"), "-f", "-c", os.path.join(self.dir, "rspamd.conf")]
        for var in ("LOCAL_CONFDIR", "RUNDIR", "LOGDIR", "DBDIR"):
            args.append("--var=%s=%s" % (var, self.dir))
        if os.geteuid() == 0:
            import pwd
            pw = pwd.getpwnam("_rspamd")
            for dirpath, _, files in os.walk(self.dir):
                os.chown(dirpath, pw.pw_uid, pw.pw_gid)
                for n in files:
                    os.chown(os.path.join(dirpath, n), pw.pw_uid, pw.pw_gid)
            args += ["-u", "_rspamd", "-g", "_rspamd"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "rspamd exited:\n" + self.log()[-3000:]
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("rspamd did not listen:\n" + self.log()[-3000:])

    def kill(self):
        """SIGKILL to rspamd's process group (its main process and workers)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def log(self):
        try:
            with open(os.path.join(self.dir, "rspamd.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def cleanup(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def rspamd():
    r = Rspamd()
    r.start()
    yield r
    r.cleanup()


@pytest.fixture(scope="module")
def rspamd_srvs(petrel_bin, tmp_path_factory, rspamd):
    """Two petrels with rspamd as their milter: default tempfail, default accept."""
    out = {}
    with contextlib.ExitStack() as stack:
        for action in ("tempfail", "accept"):
            inst = _instance(petrel_bin, tmp_path_factory, "rspamd-" + action)
            out[action] = stack.enter_context(server.running(
                smtp_util.start_smtp, inst,
                ("milters=inet:127.0.0.1:%d" % rspamd.port,
                 "milter_default_action=" + action, "milter_timeout=10")))
        yield out


def test_rspamd_gtube_rejected_clean_delivered(rspamd, rspamd_srvs):
    srv = rspamd_srvs["tempfail"]
    spam = (b"From: x@y.test\r\nTo: alice@example.test\r\nSubject: spam\r\n"
            b"Message-ID: <gtube@y.test>\r\n\r\n" + GTUBE + b"\r\n")
    r = send(srv, spam)
    assert r.stage == "DATA", r
    assert 500 <= r.code < 600, (r, srv.log()[-2000:], rspamd.log()[-3000:])
    assert stored(srv) == []
    clean = (b"From: x@y.test\r\nTo: alice@example.test\r\nSubject: lunch\r\n"
             b"Message-ID: <clean@y.test>\r\nDate: Sun, 6 Dec 2026 01:00:00 +0000\r\n\r\n"
             b"Shall we meet at noon?\r\n")
    r = send(srv, clean)
    assert r.code == 250, r
    body = only(srv)
    head = body.partition(b"\n\n")[0]
    fields = [l.split(b":")[0] for l in head.split(b"\n") if l[:1] not in (b" ", b"\t")]
    for name in (b"X-Spamd-Result", b"X-Spam-Status", b"Authentication-Results"):
        assert fields.count(name) == 1, body
    assert b"\nX-Spam-Status: No," in head, body
    assert body.endswith(b"\n\nShall we meet at noon?\n"), body


def test_rspamd_killed_gives_default_action(rspamd, rspamd_srvs):
    rspamd.kill()
    msg = (b"From: x@y.test\r\nTo: alice@example.test\r\nSubject: while down\r\n\r\nhi\r\n")
    r = send(rspamd_srvs["tempfail"], msg)
    assert r.stage == "MAIL" and r.code == 451, r
    r = send(rspamd_srvs["accept"], msg)
    assert r.code == 250, r
    # nothing lost, nothing twice: the tempfailed copy is nowhere, the
    # accepted one once, unchanged
    assert [m for m in stored(rspamd_srvs["tempfail"]) if b"while down" in m] == []
    got = [m for m in stored(rspamd_srvs["accept"]) if b"while down" in m]
    assert len(got) == 1 and split_stored(got[0])[1] == msg.replace(b"\r\n", b"\n")
