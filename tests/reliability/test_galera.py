"""The directory on a three-node MariaDB Galera cluster (galera-4 and
mariadb-server, three private mariadbd on 127.0.0.1, galera_util.py):
one cluster for the whole run, shared with test_cluster.py (the `galera`
fixture of conftest.py: it takes a minute to start).

- A user added through node 2 logs in at once through a server on node 1,
  even while node 1 is behind the cluster (its applying paused by FLUSH
  TABLES WITH READ LOCK): the driver's wsrep_sync_wait makes the lookup
  wait for node 1 to catch up instead of answering "no such user".
- Two commands writing the same row on two nodes at once (petrel user
  passwd in a loop on each): each run ends with exit 0 or a one-line
  temporary error, and the row holds a value one of them wrote.
- petrel's writes refused by the cluster (error 1213, certification
  failures made likely by a flood of writes of the same row on another
  node) are run again and go through.
- A node that answers 1047 (not ready) is left for the next one.
- kill -9 of the node petrel uses while SMTP and IMAP load runs: every
  message that got 250 is in its maildir, logins go on through another
  node, petrel check reports the killed node down and the others up.

The nodes run with wsrep_retry_autocommit=0, so that a certification
failure reaches petrel (which retries it) instead of being retried by
the server itself first.

Run:  /usr/bin/python3 -m pytest -q tests/reliability/test_galera.py
"""

import imaplib
import os
import smtplib
import subprocess
import threading
import time

import pytest

import fault_util
import galera_util
import mariadb_ctl
from conftest import make_instance
from harness import server
from harness.instance import PASSWORD

SCALE = galera_util.SCALE


@pytest.fixture
def inst(petrel_bin, tmp_path, galera):
    """`petrel init` with the URL listing the three nodes (node 1 first)."""
    i = make_instance(petrel_bin, tmp_path / "inst", "mariadb", mariadb=galera)
    assert i.url.count(",") == 2, i.url
    return i


def via(galera, inst, order):
    return "database=" + galera.url(inst.db, order)


def login(srv, user, password=PASSWORD):
    m = imaplib.IMAP4(srv.host, srv.ports["imap"], timeout=60 * SCALE)
    try:
        return m.login(user, password)[0] == "OK"
    except imaplib.IMAP4.error:
        return False
    finally:
        try:
            m.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


def test_add_then_login_on_a_lagging_node(galera, inst):
    """user add through node 2 (node 3 every other time), then at once an
    IMAP login on a server whose URL lists node 1 first. Half of the
    pairs run while node 1 has stopped applying (FLUSH TABLES WITH READ
    LOCK held for 3 s): the login still succeeds at the first try."""
    node1 = galera.nodes[0]
    with server.running(server.start, inst, ("imap",),
                        [via(galera, inst, [1, 2, 3]), "workers=1"]) as srv:
        for i in range(8):
            user = "g%d@example.test" % i
            lag = i % 2 == 1
            holder = None
            if lag:
                holder = subprocess.Popen(
                    [mariadb_ctl.binaries()[2], "--no-defaults", "-uroot", "--socket=" + node1.socket,
                     "-e", "FLUSH TABLES WITH READ LOCK; SELECT SLEEP(3); UNLOCK TABLES"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                deadline = time.monotonic() + 10 * SCALE
                while node1.status("wsrep_local_state_comment") == "Synced":
                    assert time.monotonic() < deadline, "FTWRL did not desync node 1"
                    time.sleep(0.05)
            try:
                inst.run("-o", via(galera, inst, [2 + i % 2, 1, 3]), "user", "add", user,
                         "--password-stdin", input=PASSWORD + "\n")
                if lag:
                    # node 1 has not applied the new row yet
                    assert node1.sql("SELECT count(*) FROM users WHERE address = '%s'"
                                     % user, database=inst.db) == [("0",)]
                assert login(srv, user), ("login of %s (lagging node: %s) failed\nlog:\n%s"
                                          % (user, lag, srv.log()[-3000:]))
            finally:
                if holder is not None:
                    _, err = holder.communicate(timeout=30 * SCALE)
                    assert holder.returncode == 0, err
        assert not srv.crashes(), srv.log()


def test_same_row_written_on_two_nodes(galera, inst):
    """petrel user passwd of one user, 12 times through node 1 and 12
    times through node 2 at once: every run exits 0, or 1 with a one-line
    temporary error; the user's password is afterwards one of the last two
    that were set."""
    user = "race@example.test"
    inst.add_user(user, PASSWORD)
    results = {1: [], 2: []}

    def writer(node):
        for k in range(12):
            pw = "n%d-pw-%d" % (node, k)
            cp = inst.run("-o", via(galera, inst, [node, 1 if node == 2 else 2, 3]),
                          "user", "passwd", user, input=pw + "\n", check=False)
            results[node].append((pw, cp))

    def conflicts():
        return sum(int(n.status("wsrep_local_cert_failures")) +
                   int(n.status("wsrep_local_bf_aborts")) for n in galera.nodes)

    before = conflicts()
    threads = [threading.Thread(target=writer, args=(n,)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300 * SCALE)
        assert not t.is_alive(), "petrel user passwd loop did not finish"
    # how often the cluster refused one of the writes (seldom: see the next test)
    print("certification failures and aborts: %d" % (conflicts() - before))
    last = []
    for node, runs in results.items():
        assert len(runs) == 12
        ok = None
        for pw, cp in runs:
            if cp.returncode == 0:
                ok = pw
                continue
            lines = cp.stderr.strip().split("\n")
            assert cp.returncode == 1 and len(lines) == 1 and \
                "temporarily unavailable" in lines[0], (
                    "node %d: %s: exit %d\n%s" % (node, pw, cp.returncode, cp.stderr))
        assert ok is not None, "no run through node %d succeeded: %r" % (
            node, [(pw, cp.stderr) for pw, cp in runs])
        last.append(ok)
    assert inst.auth(user, last[0]) or inst.auth(user, last[1]), last
    # every node holds the same value
    crypts = {n.sql("SELECT crypt FROM users WHERE address = '%s'" % user,
                    database=inst.db)[0][0] for n in galera.nodes}
    assert len(crypts) == 1, crypts


def test_write_refused_by_the_cluster_is_run_again(galera, inst):
    """While a client floods node 2 with UPDATEs of a user's row, petrel
    user passwd of that user runs 8 times through node 1 (log_level =
    debug). Some of its writes are refused by the cluster (error 1213, a
    certification failure or an abort by the applier): at least one run
    logs that it ran the statement again and exits 0. Every run exits 0,
    or 1 with a one-line temporary error after its debug lines."""
    user = "flood@example.test"
    inst.add_user(user, PASSWORD)
    node2 = galera.nodes[1]
    stmts = "".join("UPDATE users SET name = 'n%d' WHERE address = '%s';\n" % (i, user)
                    for i in range(40000))
    flood = subprocess.Popen(
        [mariadb_ctl.binaries()[2], "--no-defaults", "--force", "-uroot",
         "--socket=" + node2.socket, "--database=" + inst.db],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    feeder = threading.Thread(target=lambda: flood.communicate(stmts.encode()))
    feeder.start()
    runs = []
    try:
        time.sleep(0.5)
        for k in range(8):
            assert flood.poll() is None, "the flood ended too early"
            cp = inst.run("-o", via(galera, inst, [1, 2, 3]), "-o", "log_level=debug",
                          "user", "passwd", user, input="flood-%d\n" % k, check=False)
            again = cp.stderr.count("running the statement again")
            rest = [l for l in cp.stderr.strip().split("\n") if l and ": debug: " not in l]
            if cp.returncode != 0:
                assert cp.returncode == 1 and len(rest) == 1 and \
                    "temporarily unavailable" in rest[0] and again == 3, cp.stderr
            runs.append((cp.returncode, again))
    finally:
        flood.kill()
        feeder.join(timeout=60)
    assert any(rc == 0 and again > 0 for rc, again in runs), runs


def test_node_that_rejects_queries_is_left(galera, inst):
    """Node 2 (listed first) starts answering 1047 "WSREP has not yet
    prepared node for application use" to queries on tables (as a node
    that is not ready does; here wsrep_reject_queries = ALL, which keeps
    the connections): the next login's lookup goes on through node 3 at
    the first try, and the log says node 2 was left."""
    user = "reject@example.test"
    inst.add_user(user, PASSWORD)
    node2 = galera.nodes[1]
    with server.running(server.start, inst, ("imap",),
                        [via(galera, inst, [2, 3, 1]), "workers=1"]) as srv:
        assert login(srv, user), srv.log()
        node2.sql("SET GLOBAL wsrep_reject_queries = ALL")
        try:
            for _ in range(3):
                assert login(srv, user), srv.log()[-3000:]
            assert srv.wait_log(r"lost MariaDB host 127\.0\.0\.1:%d" % node2.port), srv.log()
        finally:
            node2.sql("SET GLOBAL wsrep_reject_queries = NONE")
        assert not srv.crashes(), srv.log()


def test_kill_the_node_in_use_under_load(galera, inst):
    """SMTP (200 messages to 4 users, two clients) and IMAP logins run; after
    a quarter of the messages the node petrel uses (node 1, listed first) is
    killed with SIGKILL. Every message answered 250 is stored; logins go on
    through another node (a temporary failure while the cluster notices is
    allowed); petrel check says node 1 is down, nodes 2 and 3 up."""
    users = ["load%d@example.test" % i for i in range(4)]
    for u in users:
        inst.add_user(u, PASSWORD)
    node1 = galera.nodes[0]
    total, per_client = 200, 100
    accepted, refused, logins = [], [], []
    lock = threading.Lock()
    killed = threading.Event()
    done = threading.Event()

    with server.running(server.start, inst, ("smtp", "imap"),
                        [via(galera, inst, [1, 2, 3]), "workers=2"], timeout=60) as srv:
        def sender(c):
            n = 0
            while n < per_client:
                try:
                    with smtplib.SMTP(srv.host, srv.ports["smtp"], timeout=90 * SCALE) as s:
                        while n < per_client:
                            msg_id = "gal-%d-%03d" % (c, n)
                            rcpt = users[n % len(users)]
                            n += 1
                            try:
                                s.sendmail("sender@remote.test", [rcpt], fault_util.crlf(
                                    fault_util.message(msg_id, 600, to=rcpt)))
                                with lock:
                                    accepted.append(msg_id)
                            except smtplib.SMTPResponseException as e:
                                with lock:
                                    refused.append((msg_id, e.smtp_code, e.smtp_error))
                                if e.smtp_code < 400 or e.smtp_code >= 500:
                                    raise
                                s.rset()
                            except smtplib.SMTPRecipientsRefused as e:
                                with lock:
                                    refused.append((msg_id, e.recipients))
                                s.rset()
                except (smtplib.SMTPServerDisconnected, OSError) as e:
                    with lock:
                        refused.append(("connection", str(e)))

        def imap_logins():
            i = 0
            while not done.is_set() and i < 400:
                ok = login(srv, users[i % len(users)])
                with lock:
                    logins.append((time.monotonic(), killed.is_set(), ok))
                i += 1
                time.sleep(0.05)

        threads = [threading.Thread(target=sender, args=(c,)) for c in (1, 2)]
        threads.append(threading.Thread(target=imap_logins))
        for t in threads:
            t.start()
        deadline = time.monotonic() + 120 * SCALE
        while len(accepted) < total // 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(accepted) >= total // 4, (accepted, refused)
        node1.kill()
        t_kill = time.monotonic()
        killed.set()
        for t in threads[:2]:
            t.join(timeout=600 * SCALE)
            assert not t.is_alive(), "SMTP load did not finish"
        done.set()
        threads[2].join(timeout=120 * SCALE)
        assert not threads[2].is_alive()

        # after the switch: logins work at the first try
        for u in users:
            assert login(srv, u), srv.log()[-3000:]
        assert srv.wait_log(r"lost MariaDB host 127\.0\.0\.1:%d" % node1.port), srv.log()
        assert not srv.crashes(), srv.log()

        # every accepted message is stored, whole
        deadline = time.monotonic() + 60 * SCALE
        while True:
            found, problems = fault_util.scan_messages(inst.mail_root)
            missing = [m for m in accepted if m not in found]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert not problems, problems
        assert not missing, ("accepted but not stored: %r\nrefused: %r"
                             % (missing, refused))
        assert len(accepted) > total // 4, (len(accepted), refused)
        after = [ok for t, k, ok in logins if k and t > t_kill + 20 * SCALE]
        assert all(after), logins
        before = [ok for t, k, ok in logins if not k]
        assert all(before), logins

    cp = inst.run("-o", via(galera, inst, [1, 2, 3]), "check", check=False)
    out = cp.stdout + cp.stderr
    assert cp.returncode == 1, out
    assert "database host 127.0.0.1:%d: down" % node1.port in out, out
    for n in galera.nodes[1:]:
        assert "database host 127.0.0.1:%d: up" % n.port in out, out
