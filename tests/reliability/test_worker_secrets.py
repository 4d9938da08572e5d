"""Privilege separation: the processes that read the network hold no database
password and no password hash, and their account cannot reach the directory.

As root, `petrel init` in a directory that the accounts `mail` and
`petrel-auth` can reach makes an instance that runs its workers and queue
manager as `mail` and its auth process as `auth_user = petrel-auth` (both
accounts are created here when missing). Three directories:

- sqlite: the SQLite file, owned by petrel-auth, mode 0600;
- mariadb-url: `database = mysql://USER:PASSWORD@...` in petrel.conf (the
  password the other processes wipe from memory at start);
- mariadb-file: `database = mysql://USER@...` and `database_password_file`,
  a file only petrel-auth may read.

For the master, every worker and the queue manager, found as children of
`petrel serve` by their PETREL_* environment, the test reads
/proc/PID/environ, /proc/PID/cmdline and every readable mapping of
/proc/PID/mem (regions with resident pages, up to 1 GiB: the sanitizer's
shadow is larger and holds no data) and asserts that neither the MariaDB
password nor a user's crypt hash is there. Then a child process with the
worker's uid and gid tries to open the SQLite file, the password file, and
to connect to MariaDB with the credentials the worker's configuration gives
it: each must fail; none of them has the SQLite file open. The same scan
of the auth process must find the password (MariaDB) and a hash (after a
login, in its login cache), so the scan itself is shown to work.

Run:  /usr/bin/python3 -m pytest -q tests/reliability/test_worker_secrets.py
      (as root, as the test command runs)
"""

import errno
import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile

import pytest

import hostile_util
import mariadb_ctl
import mx_util
from harness import procs
from harness.instance import make_instance
from hostile_util import ALICE, BOB, PASSWORD

SCAN_REGION_MAX = 1 << 30
CHUNK = 16 << 20


def ensure_account(name):
    """The system account name, created (no home, no shell) if missing."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                        "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name],
                       check=True, capture_output=True)
        return pwd.getpwnam(name)


def environ(pid):
    with open("/proc/%d/environ" % pid, "rb") as f:
        return f.read()


def cmdline(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return f.read()


def ids(pid):
    uid = gid = None
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Uid:"):
                uid = int(line.split()[1])
            elif line.startswith("Gid:"):
                gid = int(line.split()[1])
    return uid, gid


def regions(pid):
    """(start, end) of the readable mappings of pid that have resident
    pages, from /proc/PID/smaps."""
    out = []
    cur = None
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$", line)
            if m:
                start, end = int(m.group(1), 16), int(m.group(2), 16)
                name = m.group(4)
                cur = None
                if m.group(3)[0] == "r" and name not in ("[vvar]", "[vsyscall]") \
                        and end - start <= SCAN_REGION_MAX:
                    cur = [start, end]
                continue
            if cur is not None and line.startswith("Rss:"):
                if int(line.split()[1]) > 0:
                    out.append(tuple(cur))
                cur = None
    return out


def memory_holds(pid, needles):
    """The needles (bytes) found anywhere in pid's readable memory."""
    found = set()
    longest = max(len(n) for n in needles)
    with open("/proc/%d/mem" % pid, "rb", buffering=0) as mem:
        for start, end in regions(pid):
            pos, tail = start, b""
            while pos < end:
                try:
                    mem.seek(pos)
                    data = mem.read(min(CHUNK, end - pos))
                except OSError:
                    break
                if not data:
                    break
                buf = tail + data
                for n in needles:
                    if n in buf:
                        found.add(n)
                tail = buf[-(longest - 1):] if longest > 1 else b""
                pos += len(data)
    return found


def as_account(uid, gid, fn):
    """Run fn() in a child with uid/gid (no supplementary groups); its return
    value (a small int) is the child's exit status."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            code = fn()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def open_errno(path):
    def fn():
        try:
            os.close(os.open(path, os.O_RDONLY))
            return 0
        except OSError as e:
            return 100 + (e.errno if e.errno < 100 else 99)
    return fn


@pytest.fixture(params=["sqlite", "mariadb-url", "mariadb-file"])
def separated(request, petrel_bin):
    """(kind, instance, password or None): an instance made by root for
    user = mail, auth_user = petrel-auth."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    try:
        pwd.getpwnam("mail")
    except KeyError:
        pytest.skip("no 'mail' account")
    ensure_account("petrel-auth")
    kind = request.param
    base = tempfile.mkdtemp(prefix="petrel-sep-", dir="/tmp")
    os.chmod(base, 0o755)
    try:
        if kind == "sqlite":
            inst = make_instance(petrel_bin, os.path.join(base, "inst"), "sqlite")
            secret = None
        else:
            mdb = request.getfixturevalue("mariadb")
            inst = make_instance(petrel_bin, os.path.join(base, "inst"), "mariadb", mariadb=mdb)
            # an account of its own, with a password found nowhere else
            user = "sep" + secrets.token_hex(4)
            secret = "Sep" + secrets.token_hex(16)
            mdb.new_user(user, secret, inst.db)
            if kind == "mariadb-url":
                url = "mysql://%s:%s@127.0.0.1:%d/%s" % (user, secret, mdb.port, inst.db)
                extra = ""
            else:
                url = "mysql://%s@127.0.0.1:%d/%s" % (user, mdb.port, inst.db)
                pwfile = os.path.join(inst.dir, "db.secret")
                with open(pwfile, "w") as f:
                    f.write(secret + "\n")
                auth = pwd.getpwnam("petrel-auth")
                os.chown(pwfile, auth.pw_uid, auth.pw_gid)
                os.chmod(pwfile, 0o600)
                extra = "database_password_file = %s\n" % pwfile
            with open(inst.conf) as f:
                text = f.read()
            text = re.sub(r"(?m)^database = .*$", lambda _: "database = " + url, text)
            with open(inst.conf, "w") as f:
                f.write(text + extra)
            inst.url = url
        conf = inst.config()
        assert conf.get("user") == "mail", inst.init_result.stderr
        assert conf.get("auth_user") == "petrel-auth", inst.init_result.stderr
        # the CLI (root) still edits the directory
        mx_util.add_users(inst)
        yield kind, inst, secret
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_workers_hold_no_database_secret(separated):
    kind, inst, secret = separated
    mail = pwd.getpwnam("mail")
    auth = pwd.getpwnam("petrel-auth")
    if kind == "sqlite":
        st = os.stat(inst.sqlite_path())
        assert (st.st_uid, st.st_mode & 0o777) == (auth.pw_uid, 0o600), \
            "the SQLite directory must be petrel-auth's, mode 0600: %o uid %d" % (
                st.st_mode, st.st_uid)
    hashes = [r[0].encode() for r in inst.sql(
        "SELECT crypt FROM users WHERE address IN ('%s', '%s')" % (ALICE, BOB))]
    assert len(hashes) == 2 and all(len(h) > 20 for h in hashes), hashes
    needles = hashes + ([secret.encode()] if secret else [])

    srv = hostile_util.start_all(inst)
    try:
        hostile_util.healthy(srv)
        with srv.imap() as c:             # a hash in the auth process's cache
            c.login(ALICE, PASSWORD)
            c.logout()
        children = procs.children(srv.proc.pid)
        roles = {p: environ(p) for p in children}
        auth_pids = [p for p, e in roles.items() if b"PETREL_ROLE=auth" in e]
        workers = [p for p, e in roles.items() if b"PETREL_WORKER_FDS=" in e]
        queue = [p for p, e in roles.items() if b"PETREL_ROLE=queue" in e]
        assert len(auth_pids) == 1 and len(workers) == 2 and len(queue) == 1, roles
        assert ids(auth_pids[0]) == (auth.pw_uid, auth.pw_gid)

        for pid in [srv.proc.pid] + workers + queue:
            env, argv = environ(pid), cmdline(pid)
            for n in needles:
                assert n not in env, (kind, pid, "environ")
                assert n not in argv, (kind, pid, "cmdline")
            held = memory_holds(pid, needles)
            assert not held, (kind, pid, "memory holds", held)

        # the scan finds what the auth process holds
        held = memory_holds(auth_pids[0], needles)
        if secret:
            assert secret.encode() in held, (kind, "auth process: no password found")
        assert any(h in held for h in hashes), (kind, "auth process: no hash found")

        # nothing but the auth process has the directory open
        if kind == "sqlite":
            db = os.path.realpath(inst.sqlite_path())
            for pid in [srv.proc.pid] + workers + queue:
                fds = os.listdir("/proc/%d/fd" % pid)
                links = [os.path.realpath("/proc/%d/fd/%s" % (pid, fd)) for fd in fds]
                assert not [l for l in links if l.startswith(db)], (pid, links)

        for pid in workers:
            uid, gid = ids(pid)
            assert (uid, gid) == (mail.pw_uid, mail.pw_gid), (pid, uid, gid)
            if kind == "sqlite":
                code = as_account(uid, gid, open_errno(inst.sqlite_path()))
                assert code == 100 + errno.EACCES, (pid, code)
                continue
            if kind == "mariadb-file":
                pwfile = inst.config()["database_password_file"]
                code = as_account(uid, gid, open_errno(pwfile))
                assert code == 100 + errno.EACCES, (pid, code)
            # what the worker's account can read of the configuration
            code = as_account(uid, gid, open_errno(inst.conf))
            assert code == 0, "the workers read petrel.conf"
            if kind == "mariadb-url":
                continue   # petrel.conf holds it: see docs/security.md
            m = re.match(r"mysql://([^:@]+)(?::([^@]*))?@([^:/]+):(\d+)/(.+)$",
                         inst.config()["database"])
            assert m and m.group(2) is None, inst.config()["database"]
            for candidate in ("", "****"):
                def connect(candidate=candidate, m=m):
                    cp = subprocess.run(
                        [mariadb_ctl.CLIENT, "--no-defaults", "--protocol=TCP",
                         "-h", m.group(3), "-P", m.group(4), "-u", m.group(1),
                         "--password=" + candidate, "-e", "SELECT 1", m.group(5)],
                        capture_output=True, timeout=30)
                    return 0 if cp.returncode == 0 else 1
                assert as_account(uid, gid, connect) == 1, (pid, candidate)
        # the auth process's account can do all of it
        if kind == "sqlite":
            assert as_account(auth.pw_uid, auth.pw_gid, open_errno(inst.sqlite_path())) == 0
    finally:
        problems = hostile_util.check_stopped([srv])
    assert not problems, "\n\n".join(problems)
