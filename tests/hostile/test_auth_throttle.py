"""Password guessing limits (auth_max_failures_per_ip, auth_max_failures_per_user,
docs/security.md "Password guessing") and login timing for unknown users.

The limits are meant per node. The servers here run workers=2: the counts
live in the auth process, which checks every password, so they hold across
both workers (a count per worker would let each worker check its own share).
"""

import re
import selectors
import socket
import statistics
import threading
import time

import pytest

import hostile_util
from hostile_util import ALICE, BOB, PASSWORD, TIMEOUT_SCALE, healthy

ATTACK_SECONDS = 60
CONNECTIONS = 300
LIMIT = 10
OWNER_IP = "127.0.0.2"
LIMITS = ("workers=2", "auth_max_failures_per_ip=%d" % LIMIT,
          "auth_max_failures_per_user=%d" % LIMIT, "auth_lockout_time=900",
          "imap_max_connections=2000", "imap_max_connections_per_ip=1000",
          "pop3_max_connections=2000", "pop3_max_connections_per_ip=1000")


@pytest.fixture
def limited(sqlite_instance, all_start):
    def start(*opts):
        hostile_util.add_users(sqlite_instance)
        return all_start(sqlite_instance, LIMITS + tuple(opts))
    return start


def imap_login(srv, user, pw, source=None, timeout=10 * TIMEOUT_SCALE):
    """One IMAP LOGIN on a new connection: (ok, seconds the LOGIN took)."""
    s = socket.create_connection((srv.host, srv.imap_port), timeout=timeout,
                                 source_address=(source, 0) if source else None)
    try:
        f = s.makefile("rb")
        assert f.readline().startswith(b"* OK")
        t0 = time.monotonic()
        s.sendall(b"a LOGIN %s %s\r\n" % (user.encode(), pw.encode()))
        while True:
            line = f.readline()
            assert line, "connection closed during LOGIN"
            if line.startswith(b"a "):
                break
        took = time.monotonic() - t0
        try:
            s.sendall(b"b LOGOUT\r\n")
        except OSError:
            pass
        return line.startswith(b"a OK"), took
    finally:
        s.close()


def counts(srv, user):
    log = srv.log()
    failed = len(re.findall(r"login failed: user=<%s>" % re.escape(user), log))
    refused = len(re.findall(r"login refused \(locked\): user=<%s>" % re.escape(user), log))
    return failed, refused


def attack(srv, user, seconds, conns, stop):
    """conns IMAP connections from 127.0.0.1, each sending LOGIN user <guess>
    again as soon as the last one is answered, for seconds. Returns the number
    of answers."""
    sel = selectors.DefaultSelector()
    answers = 0
    n = 0
    deadline = time.monotonic() + seconds

    def guess(s):
        nonlocal n
        n += 1
        s.sendall(b"g LOGIN %s guess%d\r\n" % (user.encode(), n))

    def connect():
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((srv.host, srv.imap_port))
        sel.register(s, selectors.EVENT_READ, [b"", False])

    for _ in range(conns):
        connect()
    while time.monotonic() < deadline and not stop.is_set():
        for key, _ in sel.select(timeout=0.5):
            s, st = key.fileobj, key.data
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data:
                sel.unregister(s)
                s.close()
                connect()
                continue
            st[0] += data
            while b"\r\n" in st[0]:
                line, st[0] = st[0].split(b"\r\n", 1)
                if line.startswith(b"* OK") and not st[1]:
                    st[1] = True
                    guess(s)
                elif line.startswith(b"g "):
                    answers += 1
                    guess(s)
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    sel.close()
    return answers


def test_parallel_guessing_bounded_owner_gets_in(limited):
    """300 parallel connections guess ALICE's password for 60 s over two
    workers: at most the limit (plus what leaks away during the attack) of
    passwords are actually checked, the rest are refused; ALICE logging in
    from 127.0.0.2 gets in at once during and after the attack."""
    srv = limited("auth_fail_delay=50")
    stop = threading.Event()
    result = {}
    t = threading.Thread(target=lambda: result.setdefault(
        "answers", attack(srv, ALICE, ATTACK_SECONDS, CONNECTIONS, stop)))
    t.start()
    owner = []
    try:
        time.sleep(5)
        while t.is_alive() and len(owner) < 5:
            owner.append(imap_login(srv, ALICE, PASSWORD, source=OWNER_IP))
            time.sleep(10)
    finally:
        t.join(ATTACK_SECONDS + 30)
        stop.set()
    assert not t.is_alive()
    owner.append(imap_login(srv, ALICE, PASSWORD, source=OWNER_IP))
    failed, refused = counts(srv, ALICE)
    print("attack: %d answers, %d checked, %d refused; owner logins: %s"
          % (result.get("answers", 0), failed, refused, owner))
    assert refused > 10 * LIMIT, (failed, refused, result)
    # one count per node: LIMIT, plus one failure forgotten per
    # auth_lockout_time / LIMIT = 90 s of attack
    assert failed <= LIMIT + 1, (failed, refused)
    assert all(ok for ok, _ in owner), owner
    # "at once": no failed-login delay, only the check itself
    assert max(took for _, took in owner) < 2 * TIMEOUT_SCALE, owner
    # 127.0.0.1 stays locked (healthy() logs in from there): alive, no crash
    hostile_util.no_crash(srv)


def test_own_account_success_does_not_reset(limited):
    """An attacker that logs into its own account (BOB) between guesses at
    ALICE's password gets no more checks for ALICE than without. Two
    workers: the counts are the auth process's, one per node, so BOB's
    logins reach the same count whichever worker serves them."""
    srv = limited("auth_fail_delay=1")
    for i in range(6 * LIMIT):
        ok, _ = imap_login(srv, ALICE, "guess%d" % i)
        assert not ok
        ok, _ = imap_login(srv, BOB, PASSWORD)
        assert ok, "the attacker's own login is refused at guess %d" % i
    failed, refused = counts(srv, ALICE)
    assert failed <= LIMIT + 1, (failed, refused)
    assert refused >= 6 * LIMIT - failed, (failed, refused)
    healthy(srv)


def test_unknown_user_takes_as_long(sqlite_instance, all_start):
    """Login timing does not tell whether an account exists: the median time of
    a wrong-password LOGIN for ALICE and for an unknown user, 40 tries each,
    interleaved, differ by less than 30% (or 5 ms). Without a dummy hash check
    the unknown user answers a whole yescrypt faster."""
    hostile_util.add_users(sqlite_instance)
    srv = all_start(sqlite_instance, ("auth_fail_delay=1", "workers=2"))
    known, unknown = [], []
    for i in range(40):
        for user, out in ((ALICE, known), ("nobody%d@example.test" % i, unknown)):
            ok, took = imap_login(srv, user, "wrong%d" % i)
            assert not ok
            out.append(took)
    mk, mu = statistics.median(known), statistics.median(unknown)
    print("median LOGIN: known %.1f ms, unknown %.1f ms" % (mk * 1000, mu * 1000))
    assert abs(mk - mu) < max(0.3 * max(mk, mu), 0.005), (mk, mu)
    healthy(srv)
