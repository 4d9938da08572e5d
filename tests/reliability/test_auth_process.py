"""The auth/directory process: the only one that opens the directory.

`petrel serve` starts it (PETREL_ROLE=auth) beside the workers and the
queue manager, which ask it for routes, logins and quotas over the auth
channel. Killed with SIGKILL, it is restarted by the master: meanwhile a
login answers a temporary failure (IMAP NO [UNAVAILABLE]) or waits for the
new process, never a crash, a hang or a wrong "authentication failed";
afterwards logins work again, and no worker or queue manager died.

Run:  /usr/bin/python3 -m pytest -q tests/reliability/test_auth_process.py
"""

import os
import signal
import time

import crash_util
import hostile_util
from hostile_util import ALICE, BOB, PASSWORD


def env_of(pid):
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def auth_pids(srv):
    return [p for p in crash_util.children(srv.proc.pid)
            if b"PETREL_ROLE=auth" in env_of(p) and crash_util.alive(p)]


def test_auth_process_killed_and_restarted(mail_user_instance):
    inst = mail_user_instance
    srv = hostile_util.start_all(inst)
    try:
        srv.allow_log(r"killed by signal 9")
        hostile_util.healthy(srv)
        auth = auth_pids(srv)
        assert len(auth) == 1, auth
        others = [p for p in crash_util.children(srv.proc.pid) if p not in auth]
        assert others, "no workers"

        os.kill(auth[0], signal.SIGKILL)
        answers = []
        deadline = time.monotonic() + 20
        while True:
            assert time.monotonic() < deadline, "logins never worked again: %r\n%s" % (
                answers, srv.log())
            t0 = time.monotonic()
            with srv.imap(timeout=30) as c:
                r = c.cmd('LOGIN "%s" "%s"' % (ALICE, PASSWORD))
            answers.append((r.status, r.text, round(time.monotonic() - t0, 2)))
            # never "wrong password" for a right one, never a hang
            assert r.status == "OK" or "[UNAVAILABLE]" in r.text, answers
            if r.status == "OK" and auth_pids(srv) and auth_pids(srv) != auth:
                break
            time.sleep(0.05)
        new = auth_pids(srv)
        assert len(new) == 1 and new != auth, (auth, new)
        # the workers and the queue manager lived through it
        for p in others:
            assert crash_util.alive(p), "pid %d died\n%s" % (p, srv.log())
        # RCPT lookups and every protocol work again
        hostile_util.healthy(srv)
        with srv.mx() as c:
            c.expect("EHLO t.test", 250)
            c.expect("MAIL FROM:<x@remote.test>", 250)
            c.expect("RCPT TO:<%s>" % ALICE, 250)
            c.expect("RCPT TO:<nobody@example.test>", 550)
            c.expect("QUIT", 221)
    finally:
        problems = hostile_util.check_stopped([srv])
    assert not problems, "\n\n".join(problems)
