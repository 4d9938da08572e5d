"""A busy SQLite directory (another program holds its write lock, as `petrel
user add` or an admin's sqlite3 shell may) makes lookups wait, then answer a
temporary failure: RCPT gets 451 4.3.0 (the client retries), never a 550
that would bounce mail for an existing user, and the server serves normally
once the lock is gone."""

import sqlite3
import time

DOMAIN = "example.test"
BUSY_WAIT = 5       # seconds: SQLITE_BUSY_MS in lib/dir/dir_sqlite.c


def test_locked_sqlite_directory_gives_4xx(sqlite_instance, smtp_start):
    inst = sqlite_instance
    inst.add_user("alice@" + DOMAIN, "pw")
    srv = smtp_start(inst)
    locker = sqlite3.connect(inst.sqlite_path(), timeout=30, isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        with srv.client(timeout=60) as c:
            c.cmd("EHLO busy.test")
            assert c.cmd("MAIL FROM:<x@remote.test>").code == 250
            t0 = time.monotonic()
            r = c.cmd("RCPT TO:<alice@%s>" % DOMAIN)
            waited = time.monotonic() - t0
            assert r.code == 451 and r.lines[-1].startswith("451 4.3.0"), r
            # it waited for the lock before giving up (a busy wait, not an
            # immediate failure)
            assert waited >= BUSY_WAIT - 1, waited
            locker.execute("ROLLBACK")
            r = c.cmd("RCPT TO:<alice@%s>" % DOMAIN)
            assert r.code == 250, r
    finally:
        locker.close()
    # the auth process says why
    assert srv.wait_log(r"route alice@example\.test: directory unavailable: .*locked")
