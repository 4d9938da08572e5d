"""A petrel instance: `petrel init` in a directory, then the CLI, SQL and
users of it; the environment petrel runs in and the time bounds.

Env: PETREL_TIMEOUT_SCALE multiplies every start/stop/IO bound of the
harness, for a slow binary (scripts/valgrind.sh sets it).
"""

import json
import os
import shutil
import sqlite3
import subprocess
import tempfile

DOMAIN = "example.test"
PASSWORD = "pw"
ALICE = "alice@example.test"
BOB = "bob@example.test"
USERS = (ALICE, BOB)

TIMEOUT_SCALE = float(os.environ.get("PETREL_TIMEOUT_SCALE", "1"))
RUN_TIMEOUT = 60 * TIMEOUT_SCALE


def _fail(msg):
    import pytest
    pytest.fail(msg)


def clean_env(extra=None):
    """The environment for petrel: no PETREL_CONF unless a test sets one."""
    env = dict(os.environ)
    env.pop("PETREL_CONF", None)
    env.setdefault("LC_ALL", "C.UTF-8")
    if extra:
        env.update(extra)
    return env


def run_petrel(petrel_bin, args, input=None, cwd=None, env=None, timeout=RUN_TIMEOUT):
    """Run petrel with exactly `args` (no -c added)."""
    cmd = [petrel_bin] + [str(a) for a in args]
    try:
        return subprocess.run(cmd, input=input, cwd=cwd, env=clean_env(env),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, timeout=timeout,
                              stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        _fail("petrel did not finish within %ss: %s\nstdout: %s\nstderr: %s"
              % (timeout, cmd, e.stdout, e.stderr))


def describe(cp):
    return ("command: %s\nexit status: %s\n--- stdout ---\n%s--- stderr ---\n%s"
            % (" ".join(repr(a) if (" " in a or a == "") else a for a in cp.args),
               cp.returncode, cp.stdout, cp.stderr))


def assert_ok(cp):
    assert cp.returncode == 0, "expected exit 0\n" + describe(cp)
    return cp


def parse_conf(path):
    """key = value lines, # comments -> dict."""
    out = {}
    with open(path) as f:
        for line in f:
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            if "=" not in s:
                continue
            k, v = s.split("=", 1)
            out[k.strip()] = v.strip()
    return out


class Instance:
    def __init__(self, petrel_bin, directory, backend, mariadb=None, db=None, url=None):
        self.bin = petrel_bin
        self.dir = str(directory)
        self.conf = os.path.join(self.dir, "petrel.conf")
        self.backend = backend
        self.mariadb = mariadb
        self.db = db  # mariadb database name
        self.url = url  # database setting (mysql url or sqlite:PATH)

    # --- petrel
    def run(self, *args, input=None, check=True, env=None, cwd=None, timeout=RUN_TIMEOUT):
        cp = run_petrel(self.bin, ["-c", self.conf] + [str(a) for a in args],
                        input=input, env=env, cwd=cwd or self.dir, timeout=timeout)
        if check:
            assert_ok(cp)
        return cp

    def config(self):
        return parse_conf(self.conf)

    @property
    def mail_root(self):
        mr = self.config().get("mail_root") or os.path.join(self.dir, "mail")
        return os.path.join(self.dir, mr) if not os.path.isabs(mr) else mr

    def sqlite_path(self):
        db = self.config().get("database", "")
        assert db.startswith("sqlite:"), db
        p = db[len("sqlite:"):]
        return p if os.path.isabs(p) else os.path.join(self.dir, p)

    # --- raw SQL against the instance's database
    def sql(self, statement, params=()):
        """Rows as tuples of str (None for NULL), same shape for both backends."""
        if self.backend == "sqlite":
            con = sqlite3.connect(self.sqlite_path(), timeout=30)
            try:
                cur = con.execute(statement, params)
                rows = cur.fetchall()
                con.commit()
            finally:
                con.close()
            return [tuple(None if v is None else str(v) for v in r) for r in rows]
        assert not params, "params are only supported for sqlite"
        return self.mariadb.sql(self.db, statement)

    def quote(self, value):
        """An SQL string literal for this backend."""
        s = str(value).replace("'", "''")
        if self.backend == "mariadb":
            s = s.replace("\\", "\\\\")
        return "'" + s + "'"

    def user_row(self, address):
        rows = self.sql("SELECT id, address, crypt, clear, name, uid, gid, home, domain, maildir, "
                        "imapok, bool1, bool2 FROM users WHERE address = " + self.quote(address))
        if not rows:
            return None
        assert len(rows) == 1, rows
        keys = ("id", "address", "crypt", "clear", "name", "uid", "gid", "home", "domain",
                "maildir", "imapok", "bool1", "bool2")
        return dict(zip(keys, rows[0]))

    def insert_user(self, id, address, crypt, name="", uid=1000, gid=1000, home="",
                    domain=None, maildir=None, imapok=1, bool1=1, bool2=1, quota=None):
        local, dom = address.rsplit("@", 1)
        domain = dom if domain is None else domain
        maildir = "%s/%s/" % (dom, local) if maildir is None else maildir
        q = self.quote
        cols = ["id", "address", "crypt", "clear", "name", "uid", "gid", "home", "domain",
                "maildir", "imapok", "bool1", "bool2"]
        vals = [q(id), q(address), q(crypt), "''", q(name), str(uid), str(gid), q(home),
                q(domain), q(maildir), str(imapok), str(bool1), str(bool2)]
        if quota is not None:
            cols.append("quota")
            vals.append(str(quota))
        self.sql("INSERT INTO users (%s) VALUES (%s)" % (", ".join(cols), ", ".join(vals)))

    # --- conveniences
    def add_user(self, address, password=None, *extra):
        args = ["user", "add", address] + list(extra)
        if password is not None:
            args.append("--password-stdin")
            return self.run(*args, input=password + "\n")
        return self.run(*args)

    def auth(self, login, password, newline=True):
        cp = self.run("user", "auth", login, input=password + ("\n" if newline else ""), check=False)
        assert cp.returncode in (0, 1), "user auth must exit 0 or 1\n" + describe(cp)
        return cp.returncode == 0

    def json(self, *args):
        cp = self.run(*args)
        try:
            return json.loads(cp.stdout)
        except ValueError as e:
            _fail("not JSON (%s)\n%s" % (e, describe(cp)))


# The first instance's self-signed pair (tls/cert.pem, tls/key.pem), kept
# for later instances: `petrel init` keeps an existing pair, and a 2048-bit
# RSA key costs 0.1-0.3 s to make, for each of the suite's instances. Tests
# of the generation itself ask for fresh_tls (test_init.py).
_tls_cache = None


def _place_tls(directory):
    """Copy the kept pair into directory/tls/; True when it did."""
    if _tls_cache is None:
        return False
    tls = os.path.join(directory, "tls")
    os.makedirs(tls, exist_ok=True)
    for name in ("cert.pem", "key.pem"):
        shutil.copy2(os.path.join(_tls_cache, name), os.path.join(tls, name))
    return True


def _own_tls(inst):
    """As init does for the pair it makes: owned by the account the
    server runs as (`user`, `group`), when run as root."""
    if os.geteuid() != 0:
        return
    import grp
    import pwd
    conf = inst.config()
    try:
        uid = pwd.getpwnam(conf.get("user", "")).pw_uid
        gid = grp.getgrnam(conf.get("group", "")).gr_gid
    except KeyError:
        return
    for name in ("cert.pem", "key.pem"):
        os.chown(os.path.join(inst.dir, "tls", name), uid, gid)


def _keep_tls(directory):
    global _tls_cache
    tls = os.path.join(directory, "tls")
    if _tls_cache is not None or not all(
            os.path.isfile(os.path.join(tls, n)) for n in ("cert.pem", "key.pem")):
        return
    keep = os.path.join(tempfile.mkdtemp(prefix="petrel-tls-"), "tls")
    shutil.copytree(tls, keep, copy_function=shutil.copy2)
    _tls_cache = keep


def make_instance(petrel_bin, directory, backend, mariadb=None, domain=DOMAIN,
                  fresh_tls=False):
    """`petrel init` in directory (sqlite, or a new database of `mariadb`);
    with the suite's one TLS pair unless fresh_tls."""
    directory = str(directory)
    os.makedirs(directory, exist_ok=True)
    placed = not fresh_tls and _place_tls(directory)
    args = []
    db = url = None
    if backend == "mariadb":
        db, url = mariadb.new_database()
        args += ["-o", "database=" + url]
    args += ["init", "--dir", directory]
    if domain:
        args += ["--domain", domain]
    cp = run_petrel(petrel_bin, args, cwd=directory)
    assert cp.returncode == 0, "petrel init failed\n" + describe(cp)
    if not fresh_tls:
        _keep_tls(directory)
    inst = Instance(petrel_bin, directory, backend, mariadb=mariadb, db=db, url=url)
    if placed:
        _own_tls(inst)
    inst.init_result = cp
    if backend == "sqlite":
        inst.url = inst.config().get("database")
    return inst


def add_users(inst, users=USERS, password=PASSWORD):
    """`petrel user add` each address (with password, or none if None)."""
    for a in users:
        inst.add_user(a, password)
