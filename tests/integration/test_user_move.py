"""`petrel user move ADDRESS HOST` (docs/scale-out.md, "Moving a user"):
two backends (127.0.0.2 and 127.0.0.3, LMTP and IMAP on the same ports)
and a frontend on 127.0.0.1 share one SQLite directory (be1's). The
command runs on be1 and copies to be2 over the network (XMOVE on be2's
LMTP listener, which writes under its own mail_root) or, with
--dest-root, writes be2's mail_root itself. XMOVE spoken to directly:
refused from an untrusted address or without proof of proxy_secret;
paths that leave the staging directory refused, nothing written outside;
a PUT cut short leaves no file.

Shown: under IMAP load through the frontend (SELECT, UID FETCH FLAGS,
APPEND, STORE in a loop) while SMTP delivers through the frontend, the
user is moved from be1 to be2; the client is told BYE [UNAVAILABLE] and
reconnects, and a client in IDLE on a folder nothing else touches is told
BYE without sending a command; afterwards every folder has the same UIDVALIDITY, every
message from before the same UID, flags and keywords, the subscriptions
are the same, every acknowledged message (SMTP or APPEND) is there exactly
once (by Message-ID), the row names be2, and be1 keeps the old maildir
renamed, with a marker at its old name through which mail still sent to
be1 by LMTP reaches be2 (backend_ports on be1). Errors (unknown user,
the same host, an unreachable host, a destination that holds mail) are
one line, exit 1, nothing changed."""

import hashlib
import hmac
import imaplib
import os
import re
import smtplib
import socket
import threading
import time

import pytest

from harness import server
from harness.instance import TIMEOUT_SCALE, add_users, make_instance

ALICE = "alice@example.test"
PASSWORD = "pw"
SECRET = "move-test-secret"
BE1, BE2 = "127.0.0.2", "127.0.0.3"
WAIT = 30 * TIMEOUT_SCALE
QUERY_USER = ("SELECT id, address, crypt, name, uid, gid, home, maildir, host FROM users "
              "WHERE address = :address")
QUERY_LOGIN = ("SELECT id, address, crypt, name, uid, gid, home, maildir, host FROM users "
               "WHERE (id = :login OR address = :login) AND imapok = 1 "
               "AND bool1 = 1 AND bool2 = 1")
FOLDERS = ("INBOX", "Work", "Projects", "Projects.2024")


def shared_ports(n):
    """n ports free on both backend addresses."""
    got = []
    socks = []
    try:
        while len(got) < n:
            s1 = socket.socket()
            s1.bind((BE1, 0))
            port = s1.getsockname()[1]
            s2 = socket.socket()
            try:
                s2.bind((BE2, port))
            except OSError:
                s1.close()
                s2.close()
                continue
            socks += [s1, s2]
            got.append(port)
    finally:
        for s in socks:
            s.close()
    return got


def start_backend(inst, host, ports, db_url):
    args = server.serve_args(inst, ports, host, (
        "hostname=" + host.replace(".", "-") + ".petrel.test", "role=backend",
        "database=" + db_url, "query_user=" + QUERY_USER, "query_login=" + QUERY_LOGIN,
        "proxy_secret=" + SECRET,
        # the frontend, and the backends for XMOVE (a connection to
        # 127.0.0.3 comes from 127.0.0.3)
        "proxy_trusted_networks=127.0.0.1,127.0.0.2,127.0.0.3",
        "backend_ports=%d,%d,110,4190" % (ports["lmtp"], ports["imap"]),
        "queue_retry_min=1", "queue_retry_max=2", "queue_scan_interval=1",
        "relayhost=[127.0.0.1]:9"))
    srv = server.Server.launch(inst, args, ports, host)
    deadline = time.monotonic() + server.START_TIMEOUT
    while time.monotonic() < deadline and srv.alive():
        if all(server.ready(host, p, n, "greet", deadline) for n, p in ports.items()):
            return srv
        time.sleep(0.05)
    srv.kill()
    raise AssertionError("backend %s did not greet\nlog:\n%s" % (host, srv.log()))


class Cluster:
    def __init__(self, petrel_bin, tmp_path, start_be, start_fe):
        self.be1 = make_instance(petrel_bin, tmp_path / "be1", "sqlite")
        self.be2 = make_instance(petrel_bin, tmp_path / "be2", "sqlite")
        self.fe = make_instance(petrel_bin, tmp_path / "fe", "sqlite")
        self.db = "sqlite:" + self.be1.sqlite_path()
        self.lmtp, self.imap_port = shared_ports(2)
        self.be1.sql("ALTER TABLE users ADD COLUMN host TEXT NOT NULL DEFAULT ''")
        add_users(self.be1, (ALICE,), password=PASSWORD)
        self.be1.sql("UPDATE users SET host = ? WHERE address = ?", (BE1, ALICE))
        ports = {"lmtp": self.lmtp, "imap": self.imap_port}
        self.s1 = start_be(self.be1, BE1, ports, self.db)
        self.s2 = start_be(self.be2, BE2, dict(ports), self.db)
        self.f = start_fe(self.fe, ("smtp", "imap"), (
            "hostname=frontend.test", "role=frontend", "database=" + self.db,
            "query_user=" + QUERY_USER, "query_login=" + QUERY_LOGIN,
            "backend_ports=%d,%d,110,4190" % (self.lmtp, self.imap_port),
            "proxy_secret=" + SECRET, "queue_retry_min=1", "queue_retry_max=2",
            "queue_scan_interval=1", "queue_destination_concurrency=20"))

    def host(self):
        return self.be1.sql("SELECT host FROM users WHERE address = ?", (ALICE,))[0][0]

    def move(self, host, *extra, check=False, secret=SECRET):
        return self.be1.run("-o", "backend_ports=%d,%d,110,4190" % (self.lmtp, self.imap_port),
                            "-o", "proxy_secret=" + secret,
                            "user", "move", ALICE, host, *extra, check=check,
                            timeout=120)

    def imap(self):
        c = imaplib.IMAP4("127.0.0.1", self.f.port_of("imap"), timeout=20)
        c.login(ALICE, PASSWORD)
        return c

    def smtp_send(self, mid, subject="smtp"):
        data = ("From: <sender@outside.test>\r\nTo: <%s>\r\nMessage-ID: <%s>\r\n"
                "Subject: %s\r\n\r\nbody of %s\r\n" % (ALICE, mid, subject, mid)).encode()
        with smtplib.SMTP("127.0.0.1", self.f.port_of("smtp"), timeout=20) as s:
            s.sendmail("sender@outside.test", [ALICE], data)


@pytest.fixture
def cluster(petrel_bin, tmp_path):
    with server.tracked(start_backend) as start_be, server.tracked(server.start) as start_fe:
        yield Cluster(petrel_bin, tmp_path, start_be, start_fe)


def msg(mid, subject="seed"):
    return ("From: <a@example.org>\r\nTo: <%s>\r\nMessage-ID: <%s>\r\nSubject: %s\r\n\r\n"
            "text of %s\r\n" % (ALICE, mid, subject, mid)).encode()


def snapshot(c):
    """{folder: (uidvalidity, {message-id: (uid, sorted flags)})}, subscriptions."""
    out = {}
    for folder in FOLDERS:
        typ, _ = c.select(folder, readonly=True)
        assert typ == "OK", folder
        typ, d = c.status(folder, "(UIDVALIDITY)")
        uidv = int(re.search(rb"UIDVALIDITY (\d+)", d[0]).group(1))
        msgs = {}
        typ, data = c.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        assert typ == "OK"
        for item in data:
            if not isinstance(item, tuple):
                continue
            meta, hdr = item
            uid = int(re.search(rb"UID (\d+)", meta).group(1))
            flags = sorted(re.search(rb"FLAGS \(([^)]*)\)", meta).group(1).split())
            m = re.search(rb"<([^>]+)>", hdr)
            mid = m.group(1).decode()
            assert mid not in msgs, "duplicate %s in %s" % (mid, folder)
            # \Recent belongs to the session, not to the message
            msgs[mid] = (uid, [f.decode() for f in flags if f != b"\\Recent"])
        out[folder] = (uidv, msgs)
        c.close()
    typ, data = c.lsub('""', "*")
    subs = sorted(d.decode().rsplit(" ", 1)[-1].strip('"') for d in data if d)
    return out, subs


def seed(c, cl):
    for f in FOLDERS[1:]:
        r = c.create(f)
        assert r[0] == "OK", (f, r)
    for f in ("Work", "Projects.2024"):
        assert c.subscribe(f)[0] == "OK"
    flags = ["", "\\Seen", "\\Seen \\Flagged", "$Important", "\\Answered custom1",
             "\\Draft $Label2 custom1"]
    n = 0
    for f in FOLDERS:
        for i, fl in enumerate(flags):
            n += 1
            assert c.append(f, "(%s)" % fl if fl else None, None,
                            msg("seed-%d@test" % n))[0] == "OK"
    # an expunged one: UIDs with a hole
    c.select("Work")
    c.uid("STORE", "2", "+FLAGS", "(\\Deleted)")
    c.expunge()
    c.close()
    for i in range(3):
        cl.smtp_send("seed-smtp-%d@test" % i)


class Load:
    """One IMAP client through the frontend (SELECT, UID FETCH FLAGS,
    APPEND to Work, STORE on its own appends) and SMTP through the
    frontend, until stopped; what was acknowledged is remembered."""

    def __init__(self, cl):
        self.cl = cl
        self.stop = threading.Event()
        self.appended, self.append_unsure, self.sent = [], [], []
        self.errors, self.byes, self.reconnects = [], 0, 0
        self.threads = [threading.Thread(target=self.imap_loop),
                        threading.Thread(target=self.smtp_loop)]

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(60)
        assert not any(t.is_alive() for t in self.threads)

    def imap_loop(self):
        n = 0
        c = None
        deadline = time.monotonic() + 120
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                if c is None:
                    c = self.cl.imap()
                    self.reconnects += 1
                typ, _ = c.select("INBOX")
                if typ != "OK":
                    raise imaplib.IMAP4.abort("select: %s" % typ)
                typ, _ = c.uid("FETCH", "1:*", "(UID FLAGS)")
                if typ != "OK":
                    raise imaplib.IMAP4.abort("fetch")
                n += 1
                mid = "load-%d@test" % n
                try:
                    typ, d = c.append("Work", "(custom1)", None, msg(mid, "load"))
                except (imaplib.IMAP4.abort, OSError):
                    self.append_unsure.append(mid)
                    raise
                if typ == "OK":
                    self.appended.append(mid)
                    m = re.search(rb"APPENDUID \d+ (\d+)", d[0])
                    if m:
                        c.select("Work")
                        c.uid("STORE", m.group(1).decode(), "+FLAGS", "(\\Seen)")
                else:
                    self.append_unsure.append(mid)
                time.sleep(0.01)
            except (imaplib.IMAP4.abort, imaplib.IMAP4.error, OSError) as e:
                if "UNAVAILABLE" in str(e) or "moved" in str(e):
                    self.byes += 1
                self.errors.append(str(e))
                try:
                    if c is not None:
                        c.shutdown()
                except OSError:
                    pass
                c = None
                time.sleep(0.1)
        if c is not None:
            try:
                c.logout()
            except (imaplib.IMAP4.abort, imaplib.IMAP4.error, OSError):
                pass

    def smtp_loop(self):
        n = 0
        deadline = time.monotonic() + 120
        while not self.stop.is_set() and time.monotonic() < deadline:
            n += 1
            mid = "smtp-%d@test" % n
            try:
                self.cl.smtp_send(mid)
                self.sent.append(mid)
            except (smtplib.SMTPException, OSError):
                pass
            time.sleep(0.02)


class Idler:
    """A raw IMAP client through the frontend in IDLE on Projects, a
    folder nothing else changes: it is told BYE [UNAVAILABLE] by the move
    itself, without sending a command."""

    def __init__(self, cl):
        self.sock = socket.create_connection(("127.0.0.1", cl.f.port_of("imap")), timeout=20)
        self.r = self.sock.makefile("rb")
        assert self.r.readline().startswith(b"* OK")
        for tag, cmd in ((b"a", b"LOGIN %s %s" % (ALICE.encode(), PASSWORD.encode())),
                         (b"b", b"SELECT Projects")):
            self.sock.sendall(tag + b" " + cmd + b"\r\n")
            while True:
                line = self.r.readline()
                assert line, cmd
                if line.startswith(tag + b" "):
                    assert line.startswith(tag + b" OK"), line
                    break
        self.sock.sendall(b"c IDLE\r\n")
        assert self.r.readline().startswith(b"+ ")

    def wait_bye(self, timeout):
        """The BYE line (or None)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                line = self.r.readline()
                if not line:
                    return None
                if line.startswith(b"* BYE"):
                    return line
        except OSError:
            return None
        finally:
            self.sock.close()


def all_ids(c, folder):
    c.select(folder, readonly=True)
    typ, data = c.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    ids = [re.search(rb"<([^>]+)>", item[1]).group(1).decode()
           for item in data if isinstance(item, tuple)]
    c.close()
    return ids


def maildir_path(inst):
    return os.path.join(inst.mail_root, "example.test", "alice")


@pytest.mark.parametrize("how", ["network", "dest-root"])
def test_move_under_imap_load(cluster, how):
    """how: "network", the copy goes to be2's LMTP listener (XMOVE) and
    be2 writes it under its own mail_root; "dest-root", this machine
    writes be2's mail_root itself."""
    cl = cluster
    extra = ("--dest-root", cl.be2.mail_root) if how == "dest-root" else ()
    c = cl.imap()
    seed(c, cl)
    # the seed's SMTP mail is in before the snapshot
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and len(all_ids(c, "INBOX")) < 9:
        time.sleep(0.1)
    before, subs_before = snapshot(c)
    c.logout()
    assert len(before["INBOX"][1]) == 9 and len(before["Work"][1]) == 5

    idler = Idler(cl)
    load = Load(cl)
    load.start()
    time.sleep(2)
    cp = cl.move(BE2, *extra)
    assert cp.returncode == 0, cp.stderr
    assert "moved user %s to %s" % (ALICE, BE2) in cp.stdout
    if how == "network":
        # over STARTTLS, which be2's LMTP listener offers
        assert cl.s2.wait_log(r"XMOVE from \[127\.0\.0\.\d\]:\d+: maildir example\.test/alice/ "
                              r"\(TLS\)")
    time.sleep(3)
    load.finish()
    print("move: %s; load: %d appended (%d unsure), %d sent, %d BYE, %d logins, errors %r"
          % (cp.stdout.strip(), len(load.appended), len(load.append_unsure), len(load.sent),
             load.byes, load.reconnects, load.errors[:5]))

    assert cl.host() == BE2
    # the client in IDLE was told (it sent nothing after IDLE)
    bye = idler.wait_bye(10)
    assert bye is not None and b"[UNAVAILABLE]" in bye and b"moved" in bye, bye
    # the client was told to go, reconnected, and went on on be2
    assert load.byes >= 1 or cl.s1.wait_log(r"the mailbox moved to another backend"), \
        load.errors
    assert load.reconnects >= 2, load.errors
    assert cl.s2.wait_log(r"imap login: user=<%s>" % re.escape(ALICE))
    assert len(load.appended) > 5 and len(load.sent) > 5

    # every acknowledged SMTP message has arrived (the frontend's queue
    # drains; mail queued for be1 goes on from be1 to be2)
    c = cl.imap()
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        inbox = all_ids(c, "INBOX")
        if set(load.sent) <= set(inbox):
            break
        time.sleep(0.2)
    inbox = all_ids(c, "INBOX")
    work = all_ids(c, "Work")
    for mid in load.sent:
        assert inbox.count(mid) == 1, (mid, inbox.count(mid))
    for mid in load.appended:
        assert work.count(mid) == 1, (mid, work.count(mid))
    for mid in load.append_unsure:
        assert work.count(mid) <= 1, mid
    assert len(inbox) == len(set(inbox)) and len(work) == len(set(work))

    after, subs_after = snapshot(c)
    c.logout()
    assert subs_after == subs_before
    for folder in FOLDERS:
        uidv, msgs = before[folder]
        assert after[folder][0] == uidv, folder
        for mid, (uid, flags) in msgs.items():
            assert after[folder][1].get(mid) == (uid, flags), (folder, mid)

    # be1 kept the old maildir, renamed, and a marker at its name
    old = maildir_path(cl.be1)
    kept = [n for n in os.listdir(os.path.dirname(old)) if n.startswith("alice.moved-")]
    assert len(kept) == 1
    assert os.path.isdir(os.path.join(os.path.dirname(old), kept[0], "cur"))
    with open(old) as f:
        assert f.read() == "moved %s\n" % BE2
    assert os.path.isdir(os.path.join(maildir_path(cl.be2), ".Projects.2024", "cur"))

    # mail sent to be1 by LMTP after the move is passed on to be2 once
    with smtplib.LMTP(BE1, cl.lmtp, timeout=20) as s:
        s.sendmail("late@outside.test", [ALICE], msg("late-lmtp@test", "late"))
    c = cl.imap()
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and "late-lmtp@test" not in all_ids(c, "INBOX"):
        time.sleep(0.2)
    assert all_ids(c, "INBOX").count("late-lmtp@test") == 1
    c.logout()


def assert_one_line_fail(cp, pattern):
    assert cp.returncode == 1, cp
    lines = cp.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(pattern, lines[0]), cp.stderr


def tree_state(path):
    out = []
    for root, dirs, files in os.walk(path):
        for n in files:
            p = os.path.join(root, n)
            out.append((os.path.relpath(p, path), os.path.getsize(p)))
    return sorted(out)


def test_move_errors_change_nothing(cluster):
    cl = cluster
    c = cl.imap()
    c.append("INBOX", None, None, msg("e1@test"))
    c.logout()
    src = maildir_path(cl.be1)
    state = tree_state(src)
    listing = sorted(os.listdir(os.path.dirname(src)))
    dest = ("--dest-root", cl.be2.mail_root)

    assert_one_line_fail(cl.be1.run("user", "move", "nobody@example.test", BE2, *dest,
                                    check=False), r"no such user nobody@example\.test")
    assert_one_line_fail(cl.move(BE1, *dest), r"already on 127\.0\.0\.2")
    # nothing listens on 127.0.0.9
    assert_one_line_fail(cl.move("127.0.0.9", *dest), r"unreachable")
    assert_one_line_fail(cl.move("no-such-host.invalid", *dest), r"unreachable.*unknown host")
    assert_one_line_fail(cl.move("bad host", *dest), r"not a host name")
    assert_one_line_fail(cl.move(BE2, "--dest-root", ""), r"--dest-root")
    # over the network, proxy_secret is needed
    assert_one_line_fail(cl.move(BE2, secret=""), r"proxy_secret is not set")
    assert_one_line_fail(cl.move(BE2, "--dest-root", cl.be1.mail_root), r"own mail_root")
    # a destination that already holds mail
    d = maildir_path(cl.be2)
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(d, sub))
    with open(os.path.join(d, "new", "1.x.host"), "wb") as f:
        f.write(msg("other@test"))
    assert_one_line_fail(cl.move(BE2, *dest), r"destination maildir .* is not empty")
    assert_one_line_fail(cl.move(BE2), r"127\.0\.0\.3 refused XMOVE: 550 5\.7\.0 the maildir "
                         r"is not empty")

    assert cl.host() == BE1
    assert tree_state(src) == state
    assert sorted(os.listdir(os.path.dirname(src))) == listing
    assert not os.path.exists(d + ".petrel-move")
    assert os.listdir(os.path.join(d, "new")) == ["1.x.host"]
    # and the user still works where it was
    c = cl.imap()
    assert "e1@test" in all_ids(c, "INBOX")
    c.logout()


def test_moving_marker_defers_and_closes(cluster):
    """While a move freezes the source (its maildir replaced by a file
    "moving HOST"), be1 defers the user's mail with 451 and ends the
    user's IMAP sessions at their next command; "moved HOST" passes the
    mail on to HOST by LMTP."""
    cl = cluster
    c = cl.imap()
    c.select("INBOX")
    src = maildir_path(cl.be1)
    aside = src + ".aside"
    os.rename(src, aside)
    with open(src, "w") as f:
        f.write("moving %s\n" % BE2)
    with pytest.raises(imaplib.IMAP4.abort) as e:
        c.noop()
    assert "UNAVAILABLE" in str(e.value)
    assert cl.s1.wait_log(r"imap: user=<%s>: the mailbox moved to another backend"
                          % re.escape(ALICE))
    with smtplib.LMTP(BE1, cl.lmtp, timeout=20) as s:
        s.ehlo("test")   # smtplib.LMTP sends LHLO
        s.mail("x@outside.test")
        code, text = s.rcpt(ALICE)
        assert code == 451 and text.startswith(b"4.3.0"), (code, text)
    assert cl.s1.wait_log(r"<%s>: the mailbox is being moved" % re.escape(ALICE))
    # moved: be1 queues it for be2, where it lands in be2's maildir
    with open(src, "w") as f:
        f.write("moved %s\n" % BE2)
    with smtplib.LMTP(BE1, cl.lmtp, timeout=20) as s:
        s.sendmail("x@outside.test", [ALICE], msg("forwarded@test"))
    new = os.path.join(maildir_path(cl.be2), "new")
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and not (os.path.isdir(new) and os.listdir(new)):
        time.sleep(0.1)
    names = os.listdir(new)
    assert len(names) == 1
    with open(os.path.join(new, names[0]), "rb") as f:
        assert b"<forwarded@test>" in f.read()
    assert not os.listdir(os.path.join(aside, "new"))


def test_move_keeps_owners_and_modes(cluster):
    """Run as root (as an admin does), the copy keeps each file's and
    directory's owner and mode: the new backend's account can use them."""
    cl = cluster
    c = cl.imap()
    c.create("Work")
    c.append("Work", "(\\Seen $Label1)", None, msg("own@test"))
    c.logout()
    src = maildir_path(cl.be1)
    if os.geteuid() == 0:
        for root, dirs, files in os.walk(src):
            for n in [root] + [os.path.join(root, f) for f in files]:
                os.lchown(n, 4242, 4243)
    os.chmod(os.path.join(src, ".Work", "cur"), 0o750)
    cp = cl.move(BE2, "--dest-root", cl.be2.mail_root)
    assert cp.returncode == 0, cp.stderr
    moved = [n for n in os.listdir(os.path.dirname(src)) if n.startswith("alice.moved-")]
    old = os.path.join(os.path.dirname(src), moved[0])
    new = maildir_path(cl.be2)
    seen = 0
    for root, dirs, files in os.walk(old):
        for n in [root] + [os.path.join(root, f) for f in files]:
            rel = os.path.relpath(n, old)
            if rel.startswith("tmp") or "/tmp/" in rel + "/":
                continue
            a, b = os.lstat(n), os.lstat(os.path.join(new, rel))
            assert (a.st_uid, a.st_gid, a.st_mode) == (b.st_uid, b.st_gid, b.st_mode), rel
            if os.path.isfile(n) and "/cur/" in "/" + rel:
                assert a.st_mtime_ns == b.st_mtime_ns, rel    # INTERNALDATE
            seen += 1
    assert seen > 10
    for sub in ("cur", "new", "tmp"):
        a, b = os.lstat(os.path.join(old, sub)), os.lstat(os.path.join(new, sub))
        assert (a.st_uid, a.st_gid, a.st_mode) == (b.st_uid, b.st_gid, b.st_mode), sub


def test_move_there_and_back(cluster):
    """be1 -> be2, then back (run on be2): be1's marker is replaced by the
    maildir, be2 gets one; UIDs and flags survive both moves, and mail to
    be1 is stored there again."""
    cl = cluster
    c = cl.imap()
    c.create("Work")
    for i in range(4):
        c.append("Work", "(\\Flagged k%d)" % i, None, msg("rt-%d@test" % i))
    before = snapshot_folder(c, "Work")
    c.logout()
    cp = cl.move(BE2, "--dest-root", cl.be2.mail_root)
    assert cp.returncode == 0, cp.stderr
    cp = cl.be2.run("-o", "database=" + cl.db,
                    "-o", "backend_ports=%d,%d,110,4190" % (cl.lmtp, cl.imap_port),
                    "user", "move", ALICE, BE1, "--dest-root", cl.be1.mail_root,
                    check=False, timeout=120)
    assert cp.returncode == 0, cp.stderr
    assert cl.host() == BE1
    assert os.path.isdir(os.path.join(maildir_path(cl.be1), "cur"))
    with open(maildir_path(cl.be2)) as f:
        assert f.read() == "moved %s\n" % BE1
    c = cl.imap()
    assert snapshot_folder(c, "Work") == before
    c.logout()
    with smtplib.LMTP(BE1, cl.lmtp, timeout=20) as s:
        s.sendmail("x@outside.test", [ALICE], msg("back@test"))
    new = os.listdir(os.path.join(maildir_path(cl.be1), "new"))
    assert len(new) == 1


def snapshot_folder(c, folder):
    typ, _ = c.select(folder, readonly=True)
    assert typ == "OK"
    typ, d = c.status(folder, "(UIDVALIDITY UIDNEXT)")
    typ, data = c.uid("FETCH", "1:*", "(UID FLAGS)")
    c.close()
    return d[0], sorted(x.replace(b" \\Recent", b"").replace(b"\\Recent", b"")
                        for x in data if x)


# ---- XMOVE on be2's LMTP listener, spoken to directly ----

def xmove_open(cl, maildir="example.test/alice/", secret=SECRET, source=None):
    """A connection to be2's LMTP listener after XMOVE maildir and the
    answer to its challenge; returns (socket, reader, last reply line)."""
    s = socket.create_connection((BE2, cl.lmtp), timeout=20,
                                 source_address=(source, 0) if source else None)
    f = s.makefile("rb")

    def reply():
        while True:
            line = f.readline()
            if len(line) < 4 or line[3:4] != b"-":
                return line

    assert reply().startswith(b"220")
    s.sendall(b"LHLO test\r\n")
    assert reply().startswith(b"250")
    s.sendall(b"XMOVE " + maildir.encode() + b"\r\n")
    line = reply()
    if line.startswith(b"334 "):
        nonce = line[4:].strip().decode()
        mac = hmac.new(secret.encode(), ("petrel-xmove:%s:%s" % (nonce, maildir)).encode(),
                       hashlib.sha256).hexdigest()
        s.sendall(mac.encode() + b"\r\n")
        line = reply()
    return s, f, line


def xmove_cmd(s, f, line, data=b""):
    s.sendall(line.encode() + b"\r\n" + data)
    while True:
        r = f.readline()
        if len(r) < 4 or r[3:4] != b"-":
            return r


def all_files(root):
    out = []
    for d, dirs, files in os.walk(root):
        out += [os.path.relpath(os.path.join(d, n), root) for n in files + dirs]
    return sorted(out)


def test_xmove_refused_without_trust_or_secret(cluster):
    cl = cluster
    stage = maildir_path(cl.be2) + ".petrel-move"
    # 127.0.0.5 is not in proxy_trusted_networks
    s, f, line = xmove_open(cl, source="127.0.0.5")
    assert line.startswith(b"550 5.7.1"), line
    s.close()
    # the wrong secret: refused, the connection closed
    s, f, line = xmove_open(cl, secret="not-the-secret")
    assert line.startswith(b"535 5.7.8"), line
    assert f.readline() == b""
    s.close()
    # a maildir outside mail_root
    for bad in ("../x", "/etc/x", "a/../../x"):
        s, f, line = xmove_open(cl, maildir=bad)
        assert line.startswith(b"501 5.5.4"), (bad, line)
        s.close()
    assert not os.path.exists(stage)
    assert cl.s2.wait_log(r"XMOVE from .*: wrong proof of proxy_secret")
    # and the move itself fails, one line, without the secret
    cp = cl.move(BE2, secret="not-the-secret")
    assert_one_line_fail(cp, r"refused XMOVE: 535")
    assert cl.host() == BE1


def test_xmove_paths_stay_inside(cluster, tmp_path):
    cl = cluster
    root = cl.be2.mail_root
    stage = maildir_path(cl.be2) + ".petrel-move"
    outside = tmp_path / "outside"
    outside.mkdir()
    s, f, line = xmove_open(cl)
    assert line.startswith(b"250"), line
    assert os.path.isdir(stage)
    before = [p for p in all_files(root) if not p.startswith("example.test/alice.petrel-move")]
    assert xmove_cmd(s, f, "MKDIR 700 cur").startswith(b"250")
    # a file, its bytes exact, its mode and mtime kept; a name with a space
    body = b"Subject: x\r\n\r\nbody\x00\xff\r\n"
    r = xmove_cmd(s, f, "PUT 640 1234567890 5 %d cur/1.a%%20b:2,S" % len(body), body)
    assert r.startswith(b"250"), r
    p = os.path.join(stage, "cur", "1.a b:2,S")
    with open(p, "rb") as fh:
        assert fh.read() == body
    st = os.stat(p)
    assert st.st_mtime_ns == 1234567890 * 10**9 + 5 and st.st_mode & 0o777 == 0o640
    r = xmove_cmd(s, f, "LIST cur")
    assert r.startswith(b"250 "), r
    s.close()
    # climbing out, absolute, NUL, "." components: 501, nothing written
    # (a session per path: too many errors end a session)
    for path in ("../x", "/etc/x", "a/../../x", "cur/../../x", "./x", "cur//x", "a%00b",
                 "%2E%2E/x", "..", "."):
        s, f, line = xmove_open(cl)
        assert line.startswith(b"250"), line
        assert xmove_cmd(s, f, "MKDIR 700 cur").startswith(b"250")
        r = xmove_cmd(s, f, "PUT 644 0 0 3 " + path, b"abc")
        assert r.startswith(b"501 5.5.4"), (path, r)
        for verb in ("DEL ", "MKDIR 755 ", "RENAME cur/1 "):
            if path == "." and verb == "MKDIR 755 ":
                continue
            r = xmove_cmd(s, f, verb + path)
            assert r.startswith(b"501 5.5.4"), (verb, path, r)
        assert xmove_cmd(s, f, "QUIT").startswith(b"221")
        s.close()
    s, f, line = xmove_open(cl)
    assert line.startswith(b"250"), line
    r = xmove_cmd(s, f, "LIST ../..")
    assert r.startswith(b"501 5.5.4"), r
    r = xmove_cmd(s, f, "LINK esc ../../..")
    assert r.startswith(b"501 5.5.4"), r
    # a symbolic link inside the copy is not followed out of it
    os.symlink(str(outside), os.path.join(stage, "esc"))
    r = xmove_cmd(s, f, "PUT 644 0 0 3 esc/x", b"abc")
    assert r.startswith(b"451"), r
    r = xmove_cmd(s, f, "MKDIR 755 esc/d")
    assert r.startswith(b"451"), r
    assert os.listdir(outside) == []
    assert [p for p in all_files(root)
            if not p.startswith("example.test/alice.petrel-move")] == before
    # a PUT without a size: its bytes cannot be skipped, the session ends
    r = xmove_cmd(s, f, "PUT 644 0 0 many cur/x", b"abc")
    assert r.startswith(b"501 5.5.4"), r
    assert f.readline() == b""
    s.close()
    s, f, line = xmove_open(cl)
    assert line.startswith(b"250"), line
    assert xmove_cmd(s, f, "MKDIR 700 cur").startswith(b"250")
    # larger than any file taken: refused, the session ends
    r = xmove_cmd(s, f, "PUT 644 0 0 99999999999999 cur/big")
    assert r.startswith(b"552 5.3.4"), r
    assert f.readline() == b""
    s.close()
    assert not os.path.exists(os.path.join(stage, "cur", "big"))

    # a PUT whose bytes stop: no partial file, no temporary file left
    s, f, line = xmove_open(cl)
    assert line.startswith(b"250"), line
    assert xmove_cmd(s, f, "MKDIR 700 cur").startswith(b"250")
    s.sendall(b"PUT 600 0 0 100000 cur/partial\r\n" + b"x" * 5000)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and not os.listdir(os.path.join(stage, "cur")):
        time.sleep(0.05)
    assert os.listdir(os.path.join(stage, "cur")) == [".petrel-move.tmp"]
    s.shutdown(socket.SHUT_RDWR)    # the reader keeps the socket open
    f.close()
    s.close()
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and os.listdir(os.path.join(stage, "cur")):
        time.sleep(0.1)
    assert os.listdir(os.path.join(stage, "cur")) == []
    # ABORT removes the staging directory
    s, f, line = xmove_open(cl)
    assert line.startswith(b"250"), line
    assert xmove_cmd(s, f, "ABORT").startswith(b"250")
    assert not os.path.exists(stage)
    assert xmove_cmd(s, f, "QUIT").startswith(b"221")
    s.close()


def test_move_over_network_verifies_with_proxy_tls_ca(cluster):
    """proxy_tls_ca set: STARTTLS required and be2's certificate verified;
    one that does not chain to the CA (be1's own here) stops the move
    before anything is copied."""
    cl = cluster
    c = cl.imap()
    c.append("INBOX", None, None, msg("tls@test"))
    c.logout()
    src = maildir_path(cl.be1)
    state = tree_state(src)
    ca = os.path.join(cl.be1.dir, "tls", "cert.pem")
    assert os.path.exists(ca)
    cp = cl.be1.run("-o", "backend_ports=%d,%d,110,4190" % (cl.lmtp, cl.imap_port),
                    "-o", "proxy_secret=" + SECRET, "-o", "proxy_tls_ca=" + ca,
                    "user", "move", ALICE, BE2, check=False, timeout=120)
    assert_one_line_fail(cp, r"127\.0\.0\.3 STARTTLS: certificate not verified")
    assert cl.host() == BE1
    assert tree_state(src) == state
    assert not os.path.exists(maildir_path(cl.be2) + ".petrel-move")
