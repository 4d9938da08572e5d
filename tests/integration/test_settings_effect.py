"""Settings that no other test changes, each shown to do what its help says:
worker_threads (the threads of a protocol worker), log_level (which lines
reach the log), auth_cache_ttl (a login's password hash is computed once
while the cache holds it) -- and a check that every key of the table in
lib/config/config.c is set by at least one test."""

import imaplib
import os
import re

import pytest

from harness import procs
from imap_util import (ALICE, PASSWORD, imap_inst, imap_instance, imap_start)  # noqa: F401

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TESTS = os.path.join(ROOT, "tests")


def threads_of(pid):
    return len(os.listdir("/proc/%d/task" % pid))


def test_worker_threads(imap_inst, imap_start):
    """worker_threads=N gives each protocol worker N job threads and N
    directory threads beside its event loop: 1 -> 3 threads, 3 -> 7."""
    counts = {}
    for n in (1, 3):
        srv = imap_start(imap_inst, ["workers=1", "worker_threads=%d" % n])
        with srv.login() as m:       # a login: the threads have run
            assert m.noop()[0] == "OK"
        workers = procs.protocol_workers(srv.proc.pid)
        assert len(workers) == 1, workers
        counts[n] = threads_of(workers[0])
        assert srv.stop() == 0
    assert counts[3] - counts[1] == 4, counts
    assert counts[1] >= 3, counts


@pytest.mark.parametrize("level", ["warning", "debug"])
def test_log_level(imap_inst, imap_start, level):
    """log_level=warning drops the info lines (connects, logins) but keeps
    warnings (a refused connection); debug keeps both."""
    srv = imap_start(imap_inst, ["log_level=%s" % level, "imap_max_connections_per_ip=1"])
    c1 = srv.conn()
    try:
        c2 = srv.conn(greeting=False)
        c2.read_greeting()
        c2.close()
    finally:
        c1.close()
    assert srv.wait_log(r"imap connection from \[127\.0\.0\.1\]:\d+ refused")
    assert srv.stop() == 0
    connects = re.findall(r"imap connect from", srv.log())
    if level == "warning":
        assert connects == [], srv.log()
    else:
        assert connects, srv.log()


def auth_cpu(srv):
    """CPU seconds used so far by the auth process of srv."""
    pids = [p for p in procs.children(srv.proc.pid) if procs.role(p) == "auth"]
    assert len(pids) == 1, pids
    st = procs.stat(pids[0])
    return (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK")


def test_auth_cache_ttl(imap_inst, imap_start):
    """With a slow hash (bcrypt) eight logins cost the auth process eight
    hashes when auth_cache_ttl=0 and about one with the cache: CPU time of
    that process, not wall-clock time, is compared."""
    slow = imap_inst.run("hash", "--scheme", "bcrypt", input=PASSWORD + "\n").stdout.strip()
    assert slow.startswith("$2b$"), slow
    imap_inst.sql("UPDATE users SET crypt = '%s' WHERE address = '%s'" % (slow, ALICE))
    used = {}
    try:
        for ttl in (0, 300):
            srv = imap_start(imap_inst, ["auth_cache_ttl=%d" % ttl])
            before = auth_cpu(srv)
            for _ in range(8):
                m = imaplib.IMAP4(srv.host, srv.imap_port, timeout=60)
                assert m.login(ALICE, PASSWORD)[0] == "OK"
                m.logout()
            used[ttl] = auth_cpu(srv) - before
            assert srv.stop() == 0
    finally:
        imap_inst.run("user", "passwd", ALICE, input=PASSWORD + "\n")
    print("auth process CPU seconds by auth_cache_ttl:", used)
    assert used[0] > 3 * used[300], used


def table_keys():
    with open(os.path.join(ROOT, "lib", "config", "config.c")) as f:
        text = f.read()
    return re.findall(r'^\s*\{ "([a-z0-9_]+)", KT_', text, re.M)


def test_every_key_is_set_by_a_test():
    """Each key of the configuration table appears as `key=` / `key =` or as
    a quoted name in some test, so that no setting goes untested."""
    keys = table_keys()
    assert len(keys) > 50, keys
    texts = []
    for top in ("integration", "hostile", "reliability"):
        for dirpath, _, files in os.walk(os.path.join(TESTS, top)):
            for name in files:
                if name.endswith(".py"):
                    with open(os.path.join(dirpath, name), encoding="utf-8") as f:
                        texts.append(f.read())
    text = "\n".join(texts)
    missing = [k for k in keys
               if not re.search(r"\b%s ?=|[\"']%s[\"']" % (k, k), text)]
    assert not missing, "keys no test sets: %s" % missing
