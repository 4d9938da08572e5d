"""A directory on several MariaDB hosts (database =
mysql://USER:PASS@h1:P1,h2:P2/DB, the nodes of a cluster): two private
mariadbd with the same database and users, the first listed stopped
(SIGTERM) while petrel runs, or hung (SIGSTOP) from the start. Logins and
deliveries keep working on the second host without a temporary error;
`petrel check` says which host is up and which is down.

The two servers are not replicated: the test writes the same rows into
both, as a Galera cluster would hold them.

Run:  /usr/bin/python3 -m pytest -q tests/reliability/test_failover.py
"""

import imaplib
import os
import smtplib
import time

import pytest

import fault_util
import mariadb_ctl
from conftest import make_instance
from harness import server
from harness.instance import PASSWORD, TIMEOUT_SCALE, run_petrel
from harness.maildir import listdir, maildir_of

USERS = ("alice@example.test", "bob@example.test")


@pytest.fixture(scope="module")
def pair():
    """Two private mariadbd with the same account (user and password)."""
    try:
        mariadb_ctl.binaries()
        a = fault_util.PrivateMariaDB.create()
    except mariadb_ctl.MariaDBError as e:
        pytest.fail("could not start a private MariaDB: %s" % e)
    try:
        b = fault_util.PrivateMariaDB.create()
    except mariadb_ctl.MariaDBError as e:
        a.destroy()
        pytest.fail("could not start a private MariaDB: %s" % e)
    pw = a.password.replace("'", "''")
    b.root_sql(["ALTER USER '%s'@'%s' IDENTIFIED BY '%s'" % (b.USER, h, pw)
                for h in ("127.0.0.1", "localhost")])
    b.password = a.password
    yield a, b
    for m in (a, b):
        m.resume()
        m.destroy()


@pytest.fixture
def cluster(petrel_bin, tmp_path, pair):
    """An instance whose database lists both hosts, the same schema and users
    in each; (instance, first, second, the two-host URL)."""
    a, b = pair
    for m in pair:
        m.resume()
        m.ensure_running()
    inst = make_instance(petrel_bin, tmp_path / "inst", "mariadb", mariadb=a)
    name = inst.db
    b.root_sql(["CREATE DATABASE `%s`" % name] +
               ["GRANT ALL PRIVILEGES ON `%s`.* TO '%s'@'%s'" % (name, b.USER, h)
                for h in ("127.0.0.1", "localhost")])
    os.makedirs(str(tmp_path / "init-b"))
    cp = run_petrel(petrel_bin, ["-o", "database=" + b.url(name), "init", "--dir",
                                 str(tmp_path / "init-b"), "--domain", "example.test"],
                    cwd=str(tmp_path / "init-b"))
    assert cp.returncode == 0, cp.stderr
    for m in pair:
        for u in USERS:
            inst.run("-o", "database=" + m.url(name), "user", "add", u, "--password-stdin",
                     input=PASSWORD + "\n")
    both = "mysql://%s:%s@127.0.0.1:%d,127.0.0.1:%d/%s" % (a.USER, a.password, a.port,
                                                            b.port, name)
    return inst, a, b, both


def works(srv, inst, tag):
    """An IMAP login of each user and a message to each over SMTP, all
    accepted at the first try; the messages are in the maildirs."""
    for u in USERS:
        m = imaplib.IMAP4(srv.host, srv.ports["imap"], timeout=30)
        try:
            typ, data = m.login(u, PASSWORD)
            assert typ == "OK", (u, data)
        finally:
            m.logout()
    with smtplib.SMTP(srv.host, srv.ports["smtp"], timeout=30) as c:
        refused = c.sendmail("x@outside.test", list(USERS),
                             b"Subject: %s\r\n\r\nfailover\r\n" % tag.encode())
        assert refused == {}, refused
    for u in USERS:
        names = listdir(os.path.join(maildir_of(inst, u), "new"))
        assert any(open(os.path.join(maildir_of(inst, u), "new", n), "rb").read()
                   .find(b"Subject: " + tag.encode()) >= 0 for n in names), (u, tag)


def check(inst, both):
    cp = inst.run("-o", "database=" + both, "check", check=False)
    return cp.returncode, cp.stdout + cp.stderr


def test_first_host_stopped(cluster):
    """Both up: check says so; petrel on the first host. The first stopped
    (SIGTERM) while petrel runs: logins and mail go on through the second at
    the first try, the log says so, check reports the first down."""
    inst, a, b, both = cluster
    rc, out = check(inst, both)
    assert "database host 127.0.0.1:%d: up" % a.port in out, out
    assert "database host 127.0.0.1:%d: up" % b.port in out, out
    with server.running(server.start, inst, ("smtp", "imap"),
                        ["database=" + both, "workers=1"]) as srv:
        works(srv, inst, "before")
        a.stop()
        works(srv, inst, "first-stopped")
        assert srv.wait_log(r"lost MariaDB host 127\.0\.0\.1:%d" % a.port), srv.log()
        rc, out = check(inst, both)
        assert rc == 1, out
        assert "database host 127.0.0.1:%d: down" % a.port in out, out
        assert "database host 127.0.0.1:%d: up" % b.port in out, out
    a.start()


def test_first_host_hung(cluster):
    """The first host hung (SIGSTOP) before petrel starts: each connection
    gives up on it after the connect timeout (5 s) and uses the second, and
    stays there: logins and mail work at the first try."""
    inst, a, b, both = cluster
    a.pause()
    try:
        # each process's first connection waits for the hung host first
        with server.running(server.start, inst, ("smtp", "imap"),
                            ["database=" + both, "workers=1", "worker_threads=1"],
                            timeout=60) as srv:
            t0 = time.monotonic()
            works(srv, inst, "first-hung")
            assert time.monotonic() - t0 < 60 * TIMEOUT_SCALE
            works(srv, inst, "still-hung")
            assert srv.wait_log(r"now on MariaDB host 127\.0\.0\.1:%d" % b.port), srv.log()
    finally:
        a.resume()
