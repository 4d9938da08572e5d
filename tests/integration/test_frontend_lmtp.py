"""Scale-out: a frontend (role = frontend) takes mail for every hosted user
and hands it to the user's backend by LMTP: the host column of the user's
row, else backend_default, on the first port of backend_ports. With
lmtp_cut_through (the default) the receiving job hands it over before its
250, the queue file (published only then) kept for any recipient the
backend did not take; with lmtp_cut_through = no the message is queued
(fsync'd before the 250) and the queue manager hands it over. Backends (role = backend) are `petrel serve` with
only the LMTP listener, on 127.0.0.2 and 127.0.0.3, one port number for
both; all three nodes share one SQLite directory (the first backend's).

Shown: users land in their own backend's Maildir and never in the
frontend's mail_root; aliases expand on the frontend (each user to its own
backend); recipients for one backend share one LMTP transaction; a backend
that is down leaves the message queued (no bounce) until it is up, and one
that closes the connection is logged as such; a 452
after the data defers that recipient alone; a 550 from the backend bounces
that recipient alone; a user with no backend is 451 4.3.0 at RCPT; the
transport form lmtp:[host]:port works on a single node too; a bad
backend_ports stops `petrel check` and `petrel serve`; with proxy_tls_ca
the backend's certificate is verified (its address, the test CA): a
certificate from another CA or for another address, or no STARTTLS,
leaves the message queued with the reason until the backend presents the
right one. Cut-through: the message is in the backend's new/ when the
client has its 250 and nothing was ever queued; kept connections per job
thread; mixed replies queue only the refused recipient; a backend down or
silent (bounded by smtp_timeout) leaves the message to the queue."""

import contextlib
import smtplib

import re
import socket
import threading
import time

import pytest

from harness import server
from harness.instance import TIMEOUT_SCALE, add_users, make_instance
from harness.maildir import all_delivered, put, queue_files
from dns_util import LocalDNS
from mx_util import dsn_parts, parse_stored, wait_for, wire
from pki_util import make_pki, server_cert_opts
from smtp_util import read_new, start_smtp

ALICE, BOB, CAROL, DAVE = ("alice@example.test", "bob@example.test", "carol@example.test",
                           "dave@example.test")
FULL, GHOST, TEAM = "full@example.test", "ghost@example.test", "team@example.test"
BE1, BE2 = "127.0.0.2", "127.0.0.3"
BE1_NAME = "be1.backends.mxtest"     # 127.0.0.2 in a test DNS server
WAIT = 20 * TIMEOUT_SCALE
QUERY_USER = ("SELECT id, address, crypt, name, uid, gid, home, maildir, host FROM users "
              "WHERE address = :address")
HOSTNAME = "mx.petrel.test"


def free_shared_port():
    """A port free on both backend addresses."""
    for _ in range(50):
        s1 = socket.socket()
        try:
            s1.bind((BE1, 0))
            port = s1.getsockname()[1]
            s2 = socket.socket()
            try:
                s2.bind((BE2, port))
                return port
            except OSError:
                continue
            finally:
                s2.close()
        finally:
            s1.close()
    raise AssertionError("no port free on both %s and %s" % (BE1, BE2))


def start_backend(inst, host, port, db_url, opts=()):
    """`petrel serve` for inst with only LMTP on host:port (role=backend, the
    shared directory); waits (bounded) for the LMTP greeting."""
    ports = {"lmtp": port}
    args = server.serve_args(inst, ports, host, (
        "hostname=" + host.replace(".", "-") + ".petrel.test", "role=backend",
        "database=" + db_url, "relayhost=[127.0.0.1]:9") + tuple(opts))
    srv = server.Server.launch(inst, args, ports, host)
    deadline = time.monotonic() + server.START_TIMEOUT
    while time.monotonic() < deadline and srv.alive():
        if server.ready(host, port, "lmtp", "greet", deadline):
            return srv
        time.sleep(0.05)
    srv.kill()
    raise AssertionError("backend %s:%d did not greet\nlog:\n%s" % (host, port, srv.log()))


class Cluster:
    """Two backend instances and a frontend instance over be1's directory."""

    def __init__(self, petrel_bin, tmp_path, start, start_fe):
        self.be1 = make_instance(petrel_bin, tmp_path / "be1", "sqlite")
        self.be2 = make_instance(petrel_bin, tmp_path / "be2", "sqlite")
        self.fe = make_instance(petrel_bin, tmp_path / "fe", "sqlite")
        self.db = "sqlite:" + self.be1.sqlite_path()
        self.port = free_shared_port()
        self._start = start
        self._start_fe = start_fe
        self.fe_srv = None
        self.be1.sql("ALTER TABLE users ADD COLUMN host TEXT NOT NULL DEFAULT ''")
        add_users(self.be1, (ALICE, BOB, CAROL, DAVE), password=None)
        self.set_host(ALICE, BE1)
        self.set_host(DAVE, BE1)
        self.set_host(CAROL, BE2)          # bob: empty host -> backend_default

    def set_host(self, address, host):
        self.be1.sql("UPDATE users SET host = ? WHERE address = ?", (host, address))

    def backend(self, which, opts=()):
        inst, host = (self.be1, BE1) if which == 1 else (self.be2, BE2)
        return self._start(inst, host, self.port, self.db, opts)

    def frontend(self, backend_default=BE2, opts=()):
        self.fe_srv = self._start_fe(self.fe, (
            "role=frontend", "database=" + self.db, "query_user=" + QUERY_USER,
            "backend_default=" + backend_default,
            "backend_ports=%d,143,110,4190" % self.port,
            "queue_retry_min=1", "queue_retry_max=2", "queue_scan_interval=1") + tuple(opts))
        return self.fe_srv

    def send(self, rcpts, subject, body=b"hello\r\n", sender="sender@outside.test"):
        data = wire(b"From: <%s>\r\nTo: <x@example.test>\r\nSubject: %s\r\n\r\n"
                    % (sender.encode(), subject.encode()) + body)
        with self.fe_srv.client() as c:
            r = c.send_message(sender, rcpts, data)
            c.cmd("QUIT")
        assert r.code == 250, r
        return data


@pytest.fixture
def cluster(petrel_bin, tmp_path):
    """Every server it starts (backends and the frontend) stopped at the end."""
    with server.tracked(start_backend) as start, server.tracked(start_smtp) as start_fe:
        yield Cluster(petrel_bin, tmp_path, start, start_fe)


def subjects(inst, address):
    return [m.group(1).decode() for m in
            (re.search(rb"(?m)^Subject: (.*?)\r?$", d) for d in read_new(inst, address)) if m]


def wait_subject(inst, address, subject, count=1):
    return wait_for(lambda: subjects(inst, address).count(subject) >= count, WAIT)


def status_lines(srv, rcpt, status):
    """The queue's status lines for rcpt, waited for (bounded): the log
    reader may be a moment behind the queue file's removal."""
    rx = r": to=<%s>, relay=.*status=%s" % (re.escape(rcpt), status)
    wait_for(lambda: any(re.search(rx, l) for l in srv.log_lines()), WAIT)
    return [l for l in srv.log_lines() if re.search(rx, l)]


@contextlib.contextmanager
def stand_in_backend(cluster, serve, timeout=5):
    """A Python listener on backend 1's address and port in place of
    petrel: serve(conn) for each connection (timeout seconds a read),
    in a thread stopped at the end of the with block."""
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((BE1, cluster.port))
    ls.listen(8)
    ls.settimeout(0.2)
    stop = []

    def accept_loop():
        while not stop:
            try:
                c, _ = ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with c:
                c.settimeout(timeout)
                try:
                    serve(c)
                except OSError:
                    pass
    t = threading.Thread(target=accept_loop, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.append(True)
        ls.close()
        t.join(5)


def test_users_reach_their_own_backends(cluster):
    """alice and dave (host 127.0.0.2) land on the first backend, bob
    (empty host: backend_default 127.0.0.3) on the second; nothing is
    delivered on the frontend."""
    cluster.backend(1)
    be2 = cluster.backend(2)
    fe = cluster.frontend()
    cluster.send([ALICE, BOB, DAVE], "spread")
    assert wait_subject(cluster.be1, ALICE, "spread"), fe.log()
    assert wait_subject(cluster.be1, DAVE, "spread"), fe.log()
    assert wait_subject(cluster.be2, BOB, "spread"), fe.log() + be2.log()
    assert wait_for(lambda: not queue_files(cluster.fe), WAIT), fe.log()
    assert subjects(cluster.be2, ALICE) == [] and subjects(cluster.be1, BOB) == []
    assert all_delivered(cluster.fe) == [], all_delivered(cluster.fe)
    # the handover: sent by LMTP to each backend
    assert status_lines(fe, ALICE, r"sent \(250 2\.0\.0 <alice@example\.test>"), fe.log()
    assert re.search(r"to=<%s>, relay=%s\[%s\]:%d, .*status=sent" % (
        re.escape(BOB), re.escape(BE2), re.escape(BE2), cluster.port), fe.log()), fe.log()
    [stored] = read_new(cluster.be1, ALICE)
    assert b"with LMTP" in stored, stored[:400]


def test_alias_to_users_on_two_backends(cluster):
    """An alias expands on the frontend; each user goes to its own backend."""
    be1 = cluster.backend(1)
    cluster.backend(2)
    fe = cluster.frontend()
    cluster.be1.run("alias", "add", TEAM, "%s, %s" % (ALICE, CAROL))
    cluster.send([TEAM], "team")
    assert wait_subject(cluster.be1, ALICE, "team"), fe.log()
    assert wait_subject(cluster.be2, CAROL, "team"), fe.log()
    assert subjects(cluster.be1, CAROL) == [] and subjects(cluster.be2, ALICE) == []
    assert all_delivered(cluster.fe) == []
    assert wait_for(lambda: not queue_files(cluster.fe), WAIT), fe.log()
    assert be1.wait_log(r"nrcpt=1 \(accepted\)"), be1.log()


def test_one_transaction_per_backend(cluster):
    """Two recipients of one message on the same backend: one LMTP
    transaction with both RCPTs, a reply for each after the data."""
    be1 = cluster.backend(1)
    fe = cluster.frontend()
    cluster.send([ALICE, DAVE], "together")
    assert wait_subject(cluster.be1, ALICE, "together"), fe.log()
    assert wait_subject(cluster.be1, DAVE, "together"), fe.log()
    assert be1.wait_log(r"nrcpt=2 \(accepted\)"), be1.log()
    assert not [l for l in be1.log_lines() if "nrcpt=1 (accepted)" in l], be1.log()


def test_connection_kept_between_deliveries(cluster):
    """Messages to one backend one after another (one delivery at a time)
    share an LMTP connection: after a delivery the frontend sends RSET and
    keeps it, the next starts at MAIL (logged conn_use=N, as Postfix's
    lmtp client does); the idle connection is closed within seconds."""
    be1 = cluster.backend(1)
    fe = cluster.frontend(opts=("lmtp_destination_concurrency=1", "lmtp_cut_through=no"))
    data = [wire(b"From: <s@outside.test>\r\nSubject: kept %d\r\n\r\nbody %d\r\n" % (n, n))
            for n in range(4)]
    with fe.client() as c:
        for d in data:
            assert c.send_message("s@outside.test", [ALICE], d).code == 250
        c.cmd("QUIT")
    for n in range(4):
        assert wait_subject(cluster.be1, ALICE, "kept %d" % n), fe.log()
    assert wait_for(lambda: not queue_files(cluster.fe), WAIT), fe.log()
    sent = status_lines(fe, ALICE, "sent")
    assert len(sent) == 4, sent
    assert any("conn_use=2" in l for l in sent), fe.log()
    # the backend's LMTP sessions that carried a transaction
    ports = {m.group(1) for m in (re.search(r"client=\[127\.0\.0\.1\]:(\d+)", l)
                                  for l in be1.log_lines()) if m}
    assert 1 <= len(ports) < 4, be1.log()
    # the kept connection is let go once idle
    for port in ports:
        assert be1.wait_log(r"smtp disconnect from \[127\.0\.0\.1\]:%s$" % port,
                            timeout=WAIT), be1.log()
    assert sorted(subjects(cluster.be1, ALICE)) == ["kept %d" % n for n in range(4)]


def test_kept_connection_after_backend_restart(cluster):
    """The backend restarts while the frontend keeps a connection to it:
    the next message still goes out at once on a new connection (never
    deferred), and is delivered once."""
    be1 = cluster.backend(1)
    fe = cluster.frontend(opts=("lmtp_destination_concurrency=1",))
    cluster.send([ALICE], "before")
    assert wait_subject(cluster.be1, ALICE, "before"), fe.log()
    assert status_lines(fe, ALICE, "sent")
    be1.stop()
    cluster.backend(1)
    cluster.send([ALICE], "after")
    assert wait_subject(cluster.be1, ALICE, "after"), fe.log()
    assert wait_for(lambda: not queue_files(cluster.fe), WAIT), fe.log()
    assert "deferred" not in fe.log(), fe.log()
    assert sorted(subjects(cluster.be1, ALICE)) == ["after", "before"]


def test_backend_down_queues_then_drains(cluster):
    """With the backend not running the message stays queued (deferred,
    retried, never bounced); once it is up the queue drains into it."""
    fe = cluster.frontend()
    cluster.send([ALICE], "later")
    [qf] = queue_files(cluster.fe)
    # cut-through tried first, then the message left to the queue
    assert fe.wait_log(r"to=<%s>, cut-through to lmtp:\[%s\]:%d not done \(connect to %s" % (
        re.escape(ALICE), re.escape(BE1), cluster.port, re.escape(BE1)), timeout=0), fe.log()
    assert fe.wait_log(r"to=<%s>, relay=none, .*status=deferred \(connect to %s" % (
        re.escape(ALICE), re.escape(BE1)), count=2, timeout=WAIT), fe.log()
    assert queue_files(cluster.fe) == [qf]
    assert "bounced" not in fe.log() and "non-delivery" not in fe.log(), fe.log()
    cluster.backend(1)
    assert wait_subject(cluster.be1, ALICE, "later"), fe.log()
    assert wait_for(lambda: not queue_files(cluster.fe), WAIT), fe.log()
    assert status_lines(fe, ALICE, "sent")
    assert "bounced" not in fe.log(), fe.log()
    assert subjects(cluster.be1, ALICE) == ["later"]


def test_backend_closing_the_connection_is_named(cluster):
    """A backend that closes the connection after its greeting (as one
    killed or restarted then does): the message stays queued, deferred
    with "connection closed by the server", not errno's stale text
    ("Success" was logged before)."""
    def greet_and_close(c):
        c.sendall(b"220 be1 LMTP\r\n")
        c.recv(1024)        # the LHLO
    with stand_in_backend(cluster, greet_and_close):
        fe = cluster.frontend()
        cluster.send([ALICE], "closed")
        lines = fe.wait_log(r"to=<%s>, relay=.*status=deferred \(lost connection to "
                            % re.escape(ALICE), timeout=WAIT)
        assert lines, fe.log()
        assert "connection closed by the server)" in lines[0], lines
        assert "Success" not in fe.log(), fe.log()
        assert len(queue_files(cluster.fe)) == 1


def test_quota_452_defers_that_recipient_alone(cluster):
    """The backend answers 250 for alice and 452 4.2.2 (mailbox full) for
    full@ after the data: alice has it once, full@ stays queued and gets it
    on a retry after its quota is raised."""
    cluster.be1.add_user(FULL, None, "--quota", "1000")
    cluster.set_host(FULL, BE1)
    # 900 of the 1000 bytes used: the RCPT fits, the message does not
    put(cluster.be1, FULL, b"Subject: old\r\n\r\n" + b"x" * 880 + b"\r\n")
    be1 = cluster.backend(1)
    fe = cluster.frontend()
    cluster.send([ALICE, FULL], "quota", b"y" * 300 + b"\r\n")
    assert wait_subject(cluster.be1, ALICE, "quota"), fe.log()
    assert fe.wait_log(r"to=<%s>, relay=.*status=deferred \(452 4\.2\.2" % re.escape(FULL),
                       timeout=WAIT), fe.log() + be1.log()
    assert status_lines(fe, ALICE, "sent")
    assert len(queue_files(cluster.fe)) == 1
    assert subjects(cluster.be1, FULL) == ["old"]
    # cut-through: alice's copy at once, the queue file names full@ alone
    assert fe.wait_log(r"to=<%s>, relay=.*status=sent \(250 .*, cut-through$" % re.escape(ALICE),
                       timeout=0), fe.log()
    [qf] = queue_files(cluster.fe)
    rcpts = [l for l in open(qf, "rb").read().split(b"\n\n", 1)[0].split(b"\n")
             if l.startswith(b"rcpt ")]
    assert rcpts == [b"rcpt %s lmtp:[%s]:%d" % (FULL.encode(), BE1.encode(), cluster.port)], rcpts
    cluster.be1.sql("UPDATE users SET quota = 1000000 WHERE address = ?", (FULL,))
    assert wait_subject(cluster.be1, FULL, "quota"), fe.log() + be1.log()
    assert wait_for(lambda: not queue_files(cluster.fe), WAIT), fe.log()
    assert subjects(cluster.be1, ALICE) == ["quota"], "alice's copy is not sent again"
    assert "bounced" not in fe.log()


def test_unknown_at_backend_bounces_that_recipient_alone(cluster):
    """ghost@ is deleted while its mail waits for the backend: the backend
    answers 550 5.1.1 at RCPT; ghost@ bounces (a DSN to the sender, a user
    whose own backend gets it), alice in the same message is delivered."""
    cluster.be1.add_user(GHOST, None)
    cluster.set_host(GHOST, BE1)
    fe = cluster.frontend(backend_default=BE1)
    cluster.send([ALICE, GHOST], "ghostly", sender=BOB)
    assert fe.wait_log(r"to=<%s>, relay=none, .*status=deferred" % re.escape(GHOST),
                       timeout=WAIT), fe.log()
    cluster.be1.sql("DELETE FROM users WHERE address = ?", (GHOST,))
    be1 = cluster.backend(1)
    assert wait_subject(cluster.be1, ALICE, "ghostly"), fe.log()
    assert fe.wait_log(r"to=<%s>, relay=.*status=bounced \(550 5\.1\.1" % re.escape(GHOST),
                       timeout=WAIT), fe.log() + be1.log()
    assert status_lines(fe, ALICE, "sent")
    # the DSN to bob (empty host: backend_default, the same backend)
    assert wait_for(lambda: read_new(cluster.be1, BOB), WAIT), fe.log()
    [raw] = read_new(cluster.be1, BOB)
    msg = parse_stored(raw)
    _, per_rcpt, _ = dsn_parts(msg)
    assert [r.get("final-recipient", "").split(";", 1)[1].strip().lower()
            for r in per_rcpt] == [GHOST], per_rcpt
    assert wait_for(lambda: not queue_files(cluster.fe), WAIT), fe.log()
    assert subjects(cluster.be1, ALICE) == ["ghostly"]


def test_lmtp_transport_on_a_single_node(cluster):
    """The transport form lmtp:inet:host:port on a role = single node: the
    domain's users go to that LMTP server (by cut-through) (here the
    second backend, with a directory of its own that hosts the domain)."""
    cluster.be2.run("domain", "add", "example.net")
    cluster.be2.add_user("u@example.net", None)
    be2 = cluster._start(cluster.be2, BE2, cluster.port, cluster.be2.url)
    single = cluster.be1
    single.run("domain", "add", "example.net", "--transport",
               "lmtp:inet:%s:%d" % (BE2, cluster.port))
    single.add_user("u@example.net", None)
    srv = cluster._start_fe(single, ("queue_retry_min=1", "queue_scan_interval=1"))
    cluster.fe_srv = srv
    cluster.send(["u@example.net"], "by transport")
    assert wait_subject(cluster.be2, "u@example.net", "by transport"), srv.log() + be2.log()
    assert subjects(single, "u@example.net") == []
    assert wait_for(lambda: not queue_files(single), WAIT), srv.log()
    assert status_lines(srv, "u@example.net", r"sent \(250 2\.0\.0")


def test_no_backend_is_451_at_rcpt(cluster):
    """With no host column value and no backend_default, RCPT gets 451 4.3.0
    (logged with the address) and nothing is delivered on the frontend;
    users with a host are taken as before."""
    fe = cluster.frontend(backend_default="")
    with fe.client() as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<sender@outside.test>", 250)
        r = c.cmd("RCPT TO:<%s>" % BOB)
        assert r.code == 451 and r.text.startswith("4.3.0"), r
        c.expect("RCPT TO:<%s>" % ALICE, 250)
        c.cmd("QUIT")
    assert fe.wait_log(r"<%s>: no mailbox backend" % re.escape(BOB)), fe.log()
    assert len(fe.wait_log(r"no mailbox backend")) == 1, fe.log()
    # said once, by the auth process; not taken for a database failure
    assert not fe.wait_log(r"route .*: directory unavailable", timeout=0), fe.log()
    assert all_delivered(cluster.fe) == []


@pytest.mark.parametrize("value", ["24,143,110", "24,143,110,0", "24,143,110,70000",
                                   "24;143;110;4190", "24,143,110,4190,1"])
def test_bad_backend_ports_refused(petrel_bin, tmp_path, value):
    """backend_ports must be four ports from 1 to 65535: `petrel check` and
    `petrel serve` stop with one line naming the key."""
    inst = make_instance(petrel_bin, tmp_path / "inst", "sqlite")
    for cmd in ("check", "serve"):
        cp = inst.run("-o", "backend_ports=" + value, cmd, check=False)
        assert cp.returncode == 1, (cmd, cp.stdout, cp.stderr)
        lines = cp.stderr.strip().splitlines()
        assert len(lines) == 1 and "backend_ports must be 4 ports" in lines[0], cp.stderr
    cp = inst.run("-o", "backend_ports=2424, 143,110,4190", "check", check=False)
    assert "backend_ports" not in cp.stderr, cp.stderr


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """Backend certificates for 127.0.0.2: from the test CA, from another
    CA, and one from the test CA for another address."""
    return make_pki(tmp_path_factory.mktemp("pki"), (
        ("be1", "ca", "IP:%s" % BE1), ("be1other", "otherca", "IP:%s" % BE1),
        ("elsewhere", "ca", "IP:127.0.0.9,DNS:elsewhere.test"),
        ("be1name", "ca", "DNS:%s" % BE1_NAME)))


def test_proxy_tls_ca_verified_lmtp(cluster, pki):
    """proxy_tls_ca set and the backend's certificate from that CA for its
    address: delivered over STARTTLS."""
    be1 = cluster.backend(1, server_cert_opts(pki, "be1"))
    fe = cluster.frontend(backend_default=BE1, opts=("proxy_tls_ca=" + pki["ca"],))
    cluster.send([ALICE], "verified")
    assert wait_subject(cluster.be1, ALICE, "verified"), fe.log() + be1.log()
    assert status_lines(fe, ALICE, r"sent \(250 2\.0\.0"), fe.log()
    [stored] = read_new(cluster.be1, ALICE)
    assert b"with LMTPS" in stored, stored[:600]


@pytest.mark.parametrize("cert,reason", [
    ("be1other", r"certificate not verified: unable to get local issuer certificate"),
    ("elsewhere", r"certificate not verified: IP address mismatch"),
    (None, r"LMTP server offers no STARTTLS \(proxy_tls_ca is set\)"),
])
def test_proxy_tls_ca_unverified_lmtp_stays_queued(cluster, pki, cert, reason):
    """A backend whose certificate does not verify (another CA, another
    address) or that offers no STARTTLS: the message is deferred with the
    reason, nothing is delivered or bounced, and the transaction never
    starts; with the right certificate it drains."""
    opts = server_cert_opts(pki, cert) if cert else ("tls_cert=", "tls_key=", "tls_sni_dir=")
    be1 = cluster.backend(1, opts)
    fe = cluster.frontend(backend_default=BE1, opts=("proxy_tls_ca=" + pki["ca"],))
    cluster.send([ALICE], "held")
    [qf] = queue_files(cluster.fe)
    assert fe.wait_log(r"to=<%s>, relay=.*status=deferred \(.*%s" % (re.escape(ALICE), reason),
                       count=2, timeout=WAIT), fe.log()
    assert queue_files(cluster.fe) == [qf]
    assert subjects(cluster.be1, ALICE) == []
    assert "bounced" not in fe.log(), fe.log()
    assert not re.search(r"client=|nrcpt=|from=<", be1.log()), be1.log()
    be1.stop()
    cluster.backend(1, server_cert_opts(pki, "be1"))
    assert wait_subject(cluster.be1, ALICE, "held"), fe.log()
    assert wait_for(lambda: not queue_files(cluster.fe), WAIT), fe.log()
    assert subjects(cluster.be1, ALICE) == ["held"]


def test_proxy_tls_ca_checks_backend_name(cluster, pki, tmp_path):
    """A backend named by a host name (the user's host column; its address
    from a test DNS server): a certificate with that DNS name delivers;
    one that only carries the backend's address does not (the name as
    written is what is checked), and the message waits for the right one."""
    dns = LocalDNS(tmp_path / "dns", ["%s. 300 IN A %s" % (BE1_NAME, BE1)])
    try:
        cluster.set_host(ALICE, BE1_NAME)
        be1 = cluster.backend(1, server_cert_opts(pki, "be1name"))
        fe = cluster.frontend(opts=("proxy_tls_ca=" + pki["ca"], "dns_resolver=" + dns.resolver))
        cluster.send([ALICE], "by name")
        assert wait_subject(cluster.be1, ALICE, "by name"), fe.log() + be1.log()
        # the name looked up through dns_resolver, by cut-through as by
        # the queue: handed over at once
        assert fe.wait_log(r"to=<%s>, relay=%s\[%s\]:%d, .*status=sent .*cut-through$" % (
            re.escape(ALICE), re.escape(BE1_NAME), re.escape(BE1), cluster.port),
            timeout=WAIT), fe.log()
        be1.stop()
        be1 = cluster.backend(1, server_cert_opts(pki, "be1"))
        cluster.send([ALICE], "name mismatch")
        assert fe.wait_log(r"to=<%s>, relay=.*status=deferred \(.*certificate not verified: "
                           r"[Hh]ostname mismatch" % re.escape(ALICE), timeout=WAIT), fe.log()
        assert subjects(cluster.be1, ALICE) == ["by name"]
        be1.stop()
        cluster.backend(1, server_cert_opts(pki, "be1name"))
        assert wait_subject(cluster.be1, ALICE, "name mismatch"), fe.log()
    finally:
        dns.stop()


def test_check_reads_proxy_tls_ca(petrel_bin, tmp_path, pki):
    """`petrel check` loads proxy_tls_ca: a file that is not there or holds
    no certificate is a problem naming the key; the test CA is not."""
    inst = make_instance(petrel_bin, tmp_path / "inst", "sqlite")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    for bad in (str(tmp_path / "missing.pem"), str(junk)):
        cp = inst.run("-o", "proxy_tls_ca=" + bad, "check", check=False)
        assert cp.returncode == 1, (cp.stdout, cp.stderr)
        assert re.search(r"proxy_tls_ca: cannot load the CA certificates of %s"
                         % re.escape(bad), cp.stdout + cp.stderr), (cp.stdout, cp.stderr)
    cp = inst.run("-o", "proxy_tls_ca=" + pki["ca"], "check", check=False)
    assert cp.returncode == 0 and "cannot load" not in cp.stdout + cp.stderr, \
        (cp.stdout, cp.stderr)


class SlowLmtp:
    """An LMTP receiver on (host, port) that holds every transaction for
    `hold` seconds before its replies after the data, and counts how many
    transactions were under way at once."""

    def __init__(self, host, port, hold):
        self.hold = hold
        self.lock = threading.Lock()
        self.now = self.peak = self.done = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        f = c.makefile("rb")
        c.settimeout(30)
        try:
            c.sendall(b"220 slow LMTP\r\n")
            rcpts = 0
            for line in f:
                verb = line.split(b" ", 1)[0].split(b":", 1)[0].upper().strip()
                if verb == b"LHLO":
                    c.sendall(b"250-slow\r\n250 8BITMIME\r\n")
                elif verb == b"MAIL":
                    rcpts = 0
                    with self.lock:
                        self.now += 1
                        self.peak = max(self.peak, self.now)
                    c.sendall(b"250 2.1.0 Ok\r\n")
                elif verb == b"RCPT":
                    rcpts += 1
                    c.sendall(b"250 2.1.5 Ok\r\n")
                elif verb == b"DATA":
                    c.sendall(b"354 go\r\n")
                    for d in f:
                        if d == b".\r\n":
                            break
                    time.sleep(self.hold)
                    with self.lock:
                        self.now -= 1
                        self.done += 1
                    c.sendall(b"250 2.0.0 Ok\r\n" * rcpts)
                elif verb == b"RSET":
                    c.sendall(b"250 2.0.0 Ok\r\n")
                elif verb == b"QUIT":
                    c.sendall(b"221 2.0.0 Bye\r\n")
                    return
                else:
                    c.sendall(b"500 5.5.2 what\r\n")
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.stopping = True
        self.sock.close()
        self.thread.join(5)


@pytest.mark.parametrize("limit,expect", [(None, (8, 20)), ("3", (2, 3))])
def test_lmtp_destination_concurrency(cluster, limit, expect):
    """The queue's deliveries to one backend at once: lmtp_destination_
    concurrency (default 20), not queue_destination_concurrency (5, for
    other sites' MXs)."""
    fake = SlowLmtp(BE2, cluster.port, hold=1.0)
    try:
        opts = ("queue_destination_concurrency=2", "lmtp_cut_through=no")
        if limit is not None:
            opts += ("lmtp_destination_concurrency=" + limit,)
        fe = cluster.frontend(opts=opts)
        n = 12
        for i in range(n):
            cluster.send([BOB], "conc %d" % i)
        assert wait_for(lambda: fake.done >= n, WAIT), (fake.done, fe.log())
        assert expect[0] <= fake.peak <= expect[1], (fake.peak, fe.log())
        assert wait_for(lambda: not queue_files(cluster.fe), WAIT), fe.log()
    finally:
        fake.close()


def sendmail(fe, rcpts, subject):
    """smtplib's sendmail to the frontend: its refusals (none expected)."""
    data = (b"From: <s@outside.test>\r\nSubject: %s\r\n\r\nbody\r\n.leading dot\r\n"
            % subject.encode())
    with smtplib.SMTP("127.0.0.1", fe.smtp_port, timeout=60 * TIMEOUT_SCALE) as c:
        return c.sendmail("s@outside.test", rcpts, data)


def test_cut_through_delivered_before_the_250(cluster):
    """With cut-through (the default) the message is in the backend's new/
    when the client has its 250: nothing polled, nothing was ever in the
    frontend's queue, and the log says it was handed over directly
    (no queue manager delivery line)."""
    be1 = cluster.backend(1)
    fe = cluster.frontend(opts=("worker_threads=1",))
    assert sendmail(fe, [ALICE, DAVE], "direct") == {}
    # no waiting: the backend's copies are durable before the 250
    assert subjects(cluster.be1, ALICE) == ["direct"], fe.log() + be1.log()
    assert subjects(cluster.be1, DAVE) == ["direct"], fe.log()
    assert queue_files(cluster.fe) == [] and queue_files(cluster.fe, "tmp") == []
    [stored] = read_new(cluster.be1, ALICE)
    assert b"\n.leading dot" in stored, stored       # dot-stuffing undone there
    for rcpt in (ALICE, DAVE):
        assert fe.wait_log(r"to=<%s>, relay=%s\[%s\]:%d(, tls=encrypted)?, delay=[0-9.]+, dsn=2\.0\.0, "
                           r"status=sent \(250 2\.0\.0 .*\), cut-through$" % (
                               re.escape(rcpt), re.escape(BE1), re.escape(BE1), cluster.port),
                           timeout=WAIT), fe.log()
    assert be1.wait_log(r"nrcpt=2 \(accepted\)"), be1.log()
    # never published: no queue delivery (its lines end in attempts=N)
    assert not re.search(r"attempts=\d|status=queued|status=deferred", fe.log()), fe.log()
    # the connection is kept for the job thread's next message (RSET,
    # then MAIL on it): three more messages on one client session (one
    # worker process, one job thread) reuse it
    with smtplib.SMTP("127.0.0.1", fe.smtp_port, timeout=60 * TIMEOUT_SCALE) as c:
        for n in range(3):
            assert c.sendmail("s@outside.test", [ALICE],
                              b"Subject: again %d\r\n\r\nbody\r\n" % n) == {}
            assert "again %d" % n in subjects(cluster.be1, ALICE)
    lines = fe.wait_log(r"to=<%s>, relay=.*, conn_use=\d+, .*cut-through$" % re.escape(ALICE),
                        count=2, timeout=WAIT)
    assert len(lines) >= 2, fe.log()
    assert queue_files(cluster.fe) == []


def test_cut_through_mixed_replies(cluster):
    """One recipient the backend does not know (550 at RCPT: deleted after
    the frontend routed it) and one it takes: the good one is delivered at
    once, the other is in the frontend's queue, alone, and bounced by the
    queue as before."""
    cluster.be1.add_user(GHOST, None)
    cluster.set_host(GHOST, BE1)
    fe = cluster.frontend(backend_default=BE1)
    be1 = cluster.backend(1)
    # the backend's own directory lookups say no for ghost@ (the
    # frontend's RCPT check happened before): a user deleted since
    with fe.client() as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<%s>" % BOB, 250)
        c.expect("RCPT TO:<%s>" % ALICE, 250)
        c.expect("RCPT TO:<%s>" % GHOST, 250)
        cluster.be1.sql("DELETE FROM users WHERE address = ?", (GHOST,))
        c.expect("DATA", 354)
        c.send(wire(b"Subject: mixed\r\n\r\nbody\r\n") + b".\r\n")
        r = c.reply()
        assert r.code == 250, r
        c.cmd("QUIT")
    assert subjects(cluster.be1, ALICE) == ["mixed"], fe.log() + be1.log()
    assert fe.wait_log(r"to=<%s>, relay=.*cut-through refused \(550 5\.1\.1.*left to the "
                       r"queue" % re.escape(GHOST), timeout=WAIT), fe.log()
    assert fe.wait_log(r"to=<%s>, .*status=sent .*cut-through$" % re.escape(ALICE),
                       timeout=WAIT), fe.log()
    # the queue file (published at once, the queue manager takes it
    # then) names ghost@ alone: the queue bounces it, alice is not sent
    # again; the DSN reaches bob on his backend
    assert fe.wait_log(r"to=<%s>, relay=.*status=bounced \(550 5\.1\.1.*attempts=1$"
                       % re.escape(GHOST), timeout=WAIT), fe.log()
    assert not [l for l in fe.log_lines() if re.search(r"to=<%s>, .*attempts=" % re.escape(ALICE), l)], \
        fe.log()
    assert fe.wait_log(r"to=<%s>, status=queued \(remote\)" % re.escape(GHOST), timeout=0), fe.log()
    assert not fe.wait_log(r"to=<%s>, status=queued" % re.escape(ALICE), timeout=0), fe.log()
    assert wait_for(lambda: read_new(cluster.be1, BOB), WAIT), fe.log()
    assert subjects(cluster.be1, ALICE) == ["mixed"]


def test_cut_through_silent_backend_falls_back_in_bounds(cluster):
    """A backend that takes the connection and never says a word: the
    client still has its 250 once smtp_timeout (the queue's own bound for
    the greeting) has passed, and the message is queued, not lost and not
    bounced."""
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((BE1, cluster.port))
    ls.listen(16)                          # accepted by the kernel, never answered
    timeout = max(2, int(2 * TIMEOUT_SCALE))
    try:
        fe = cluster.frontend(backend_default=BE1, opts=("smtp_timeout=%d" % timeout,))
        c = smtplib.SMTP("127.0.0.1", fe.smtp_port, timeout=60 * TIMEOUT_SCALE)
        t0 = time.monotonic()
        assert c.sendmail("s@outside.test", [ALICE], b"Subject: silent\r\n\r\nbody\r\n") == {}
        took = time.monotonic() - t0
        # the job took the session's own smtp_timeout: its goodbye (421)
        # follows the 250
        c.close()
        assert timeout * 0.9 <= took < timeout + 30 * TIMEOUT_SCALE, (took, fe.log())
        [qf] = queue_files(cluster.fe)
        assert fe.wait_log(r"to=<%s>, cut-through to .* not done \(timed out\), left to the "
                           r"queue" % re.escape(ALICE), timeout=WAIT), fe.log()
        assert "bounced" not in fe.log(), fe.log()
    finally:
        ls.close()
    cluster.backend(1)
    assert wait_subject(cluster.be1, ALICE, "silent"), fe.log()
    assert wait_for(lambda: not queue_files(cluster.fe), WAIT), fe.log()
    assert subjects(cluster.be1, ALICE) == ["silent"]


def test_cut_through_off_queues_as_before(cluster):
    """lmtp_cut_through = no: the message is queued before the 250 and the
    queue manager delivers it (its line with attempts=N); no handover
    from the receiving job."""
    cluster.backend(1)
    fe = cluster.frontend(backend_default=BE1, opts=("lmtp_cut_through=no",
                                                     "queue_scan_interval=3600"))
    assert sendmail(fe, [ALICE], "queued") == {}
    assert wait_subject(cluster.be1, ALICE, "queued"), fe.log()
    assert wait_for(lambda: not queue_files(cluster.fe), WAIT), fe.log()
    lines = status_lines(fe, ALICE, r"sent \(250 2\.0\.0")
    assert lines and all(re.search(r"attempts=1$", l) for l in lines), lines
    assert fe.wait_log(r"to=<%s>, status=queued \(remote\)" % re.escape(ALICE), timeout=0), \
        fe.log()
    assert "cut-through" not in fe.log(), fe.log()


def test_cut_through_bdat_in_one_write(cluster):
    """A backend offering PIPELINING and CHUNKING (RFC 3030) gets the
    envelope and the whole message as one BDAT LAST in one exchange: no
    DATA, no wait for 354; the chunk is the message in CRLF form, not
    dot-stuffed, its length the BDAT's. A recording stand-in backend
    answers RFC 2033's one reply per recipient after the chunk."""
    got = []

    def backend(c):
        buf = b""
        c.sendall(b"220 be1 LMTP\r\n")
        while b"\r\n" not in buf:
            buf += c.recv(65536)
        assert buf.startswith(b"LHLO "), buf
        buf = b""
        c.sendall(b"250-be1\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n"
                  b"250 CHUNKING\r\n")
        # one read loop until the chunk is whole; nothing is answered
        # before, so a client waiting for a reply (354, say) would stall
        # here and fail the test
        while True:
            m = re.search(rb"BDAT (\d+) LAST\r\n", buf)
            if m and len(buf) >= m.end() + int(m.group(1)):
                break
            if b"DATA\r\n" in buf:
                break
            chunk = c.recv(65536)
            if not chunk:
                return
            buf += chunk
        got.append(buf)
        if m is None:
            return
        n = buf.count(b"RCPT TO:")
        c.sendall(b"250 2.1.0 Ok\r\n" + b"250 2.1.5 Ok\r\n" * n +
                  b"250 2.0.0 <x> stored\r\n" * n)
        while b"QUIT" not in buf and b"RSET" not in buf[m.end():]:
            more = c.recv(65536)
            if not more:
                break
            buf += more
        c.sendall(b"221 2.0.0 Bye\r\n")
    with stand_in_backend(cluster, backend, timeout=10 * TIMEOUT_SCALE):
        fe = cluster.frontend(backend_default=BE1, opts=("worker_threads=1",))
        assert sendmail(fe, [ALICE, DAVE], "chunked") == {}
        assert len(got) == 1, got
        wire_in = got[0]
        assert b"DATA\r\n" not in wire_in, wire_in
        m = re.search(rb"BDAT (\d+) LAST\r\n", wire_in)
        head, chunk = wire_in[:m.start()], wire_in[m.end():]
        assert head.count(b"RCPT TO:") == 2 and head.startswith(b"MAIL FROM:<s@outside.test>"), head
        assert len(chunk) == int(m.group(1))
        assert chunk.endswith(b"body\r\n.leading dot\r\n"), chunk   # not dot-stuffed
        assert b"\n" not in chunk.replace(b"\r\n", b""), chunk
        for rcpt in (ALICE, DAVE):
            assert fe.wait_log(r"to=<%s>, relay=.*status=sent \(250 2\.0\.0 <x> stored\), "
                               r"cut-through$" % re.escape(rcpt), timeout=WAIT), fe.log()
        assert queue_files(cluster.fe) == []


def test_cut_through_stores_what_the_queue_stores(cluster):
    """The same awkward messages (a bare CR, lines of dots, no last line
    end, 8-bit bytes; one of 1.5 MiB, which goes by DATA, streamed) reach
    the backend's Maildir byte for byte as the queue's DATA leg stores
    them."""
    cluster.backend(1)
    small = (b"From: <s@outside.test>\r\nSubject: awkward\r\n\r\n.\r\n..two\r\n"
             b"bare\rcr\r\n\xc3\xa9t\xc3\xa9\r\nno end")
    line = b"x" * 70 + b"\r\n"
    big = (b"From: <s@outside.test>\r\nSubject: big\r\n\r\n" + b".dot\r\n" +
           line * (1536 * 1024 // len(line)))

    def stored(opts):
        fe = cluster.frontend(backend_default=BE1, opts=opts)
        before = len(read_new(cluster.be1, BOB))
        for data in (small, big):
            with smtplib.SMTP("127.0.0.1", fe.smtp_port, timeout=60 * TIMEOUT_SCALE) as c:
                assert c.sendmail("s@outside.test", [BOB], data) == {}
        assert wait_for(lambda: len(read_new(cluster.be1, BOB)) >= before + 2, WAIT), fe.log()
        fe.stop()
        out = read_new(cluster.be1, BOB)[before:]
        # from the message's own first header on (the Received lines differ)
        return sorted(d[d.index(b"From: <s@outside.test>"):] for d in out)

    cut = stored(())
    queued = stored(("lmtp_cut_through=no",))
    assert cut == queued
    # as sent: the dots not doubled, the bare CR a line end, the last
    # line ended (the Maildir keeps LF line ends)
    awkward = [d.replace(b"\r\n", b"\n") for d in cut if b"awkward" in d][0]
    assert awkward.endswith(b"\n.\n..two\nbare\ncr\n\xc3\xa9t\xc3\xa9\nno end\n"), awkward
    assert max(len(d) for d in cut) > 1024 * 1024    # over the BDAT bound


@pytest.mark.parametrize("cut", ["yes", "no"])
def test_handover_is_not_a_forward(cluster, cut):
    """Mail from outside handed to a backend by LMTP is delivered, not
    forwarded off-site: with SRS and ARC sealing on and a DKIM key for the
    hosted domain on the frontend, the stored copy keeps the sender's own
    Return-Path and gets no ARC set, by cut-through and by the queue."""
    be1 = cluster.backend(1)
    cluster.fe.run("dkim", "keygen", "example.test", "--selector", "seal")
    fe = cluster.frontend(backend_default=BE1, opts=(
        "srs_secret=a test secret", "srs_domain=example.test", "arc=seal",
        "lmtp_cut_through=" + cut))
    cluster.send([ALICE], "not a forward " + cut, sender="someone@outside.test")
    assert wait_subject(cluster.be1, ALICE, "not a forward " + cut), fe.log() + be1.log()
    [stored] = read_new(cluster.be1, ALICE)
    head = stored.split(b"\n\n", 1)[0]
    assert head.startswith(b"Return-Path: <someone@outside.test>"), head
    assert b"SRS0" not in stored and b"ARC-Seal" not in head, head
    assert not re.search(r"srs: sender|arc: sealed", fe.log()), fe.log()
