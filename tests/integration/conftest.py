"""pytest fixtures for petrel's integration tests.

Run:   cd /work/main && /usr/bin/python3 -m pytest tests/integration
Env:   PETREL_BIN        binary under test (default <repo>/build/petrel), e.g. an ASan build
       PETREL_BUILD_DIR  build dir holding tests/unit/test_* (default <repo>/build)
       PETREL_TIMEOUT_SCALE  multiply the helpers' time bounds (a slow binary, e.g. under valgrind)
       PETREL_KEEP_MARIADB=1  keep the private MariaDB dir after the session (for debugging)
"""

import itertools
import os
import secrets
import shutil
import sys
import tempfile
import urllib.parse

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
REPO = os.path.dirname(TESTS)
for _p in (TESTS, HERE):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import mariadb_ctl  # noqa: E402
from harness import server  # noqa: E402
# in CI a skip is a failure unless CI cannot have its reason (tests/harness/ci_skips.py);
# tests/hostile and tests/reliability get the hook through reexport
from harness.ci_skips import pytest_runtest_makereport  # noqa: E402,F401
# the instance side of the harness, re-exported: tests and helper modules
# import these names from conftest
from harness.instance import (DOMAIN, RUN_TIMEOUT, TIMEOUT_SCALE, Instance,  # noqa: E402,F401
                              add_users, assert_ok, clean_env, describe, make_instance,
                              parse_conf, run_petrel)


# Run in parallel (pytest -n N --dist loadgroup, python3-pytest-xdist): one
# worker runs a module's tests in order (some build on what the ones before
# them left, with a module-wide server), and the modules whose fake MX hosts
# listen on port 25 of fixed 127.0.0.x addresses (they play MX hosts found
# through DNS) share one group, so they run one after another; every other
# test listens on free ports.
FIXED_PORT_MODULES = {"test_dane.py", "test_mta_sts.py", "test_tls_rpt.py",
                      "test_outbound_dns.py"}


@pytest.hookimpl(tryfirst=True)     # before xdist's own hook reads the marks
def pytest_collection_modifyitems(config, items):
    for item in items:
        name = os.path.basename(str(item.fspath))
        item.add_marker(pytest.mark.xdist_group(
            "port25" if name in FIXED_PORT_MODULES else name))


# --------------------------------------------------------------------------
# running the binary (run_petrel, describe, assert_ok: harness.instance)


def assert_error(cp, *needles):
    """Exit status 1 and exactly one non-empty line on stderr starting with
    'petrel: ' that contains every needle (case-insensitive)."""
    assert cp.returncode == 1, "expected exit status 1\n" + describe(cp)
    lines = [l for l in cp.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, "expected exactly one line on stderr\n" + describe(cp)
    assert lines[0].startswith("petrel: "), "stderr must start with 'petrel: '\n" + describe(cp)
    for n in needles:
        assert n.lower() in lines[0].lower(), ("stderr should mention %r\n" % n) + describe(cp)
    return lines[0]


def table(stdout):
    """Tab-separated lines -> list of lists."""
    return [l.split("\t") for l in stdout.splitlines() if l.strip()]


@pytest.fixture(scope="session")
def petrel_bin():
    path = os.environ.get("PETREL_BIN") or os.path.join(REPO, "build", "petrel")
    path = os.path.abspath(path)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail("petrel binary not found at %s (build it: meson setup build && "
                    "meson compile -C build, or set PETREL_BIN)" % path)
    return path


@pytest.fixture(scope="session")
def build_dir():
    return os.path.abspath(os.environ.get("PETREL_BUILD_DIR") or os.path.join(REPO, "build"))


# --------------------------------------------------------------------------
# the private MariaDB server


class MariaDB:
    """One private mariadbd for the whole session, per-test databases."""

    USER = "petrel"

    def __init__(self, base):
        self.dir = base
        self.password = "pw-" + secrets.token_hex(6)
        self.port = None
        self._n = itertools.count(1)

    @property
    def socket(self):
        return mariadb_ctl.socket_path(self.dir)

    def start(self):
        self.port = mariadb_ctl.start(self.dir)
        return self.port

    def stop(self):
        mariadb_ctl.stop(self.dir)

    def ensure_running(self):
        if not mariadb_ctl.is_running(self.dir):
            self.start()

    def is_running(self):
        return mariadb_ctl.is_running(self.dir)

    def setup_users(self):
        pw = self.password.replace("'", "''")
        self.root_sql([
            "CREATE USER IF NOT EXISTS '%s'@'127.0.0.1' IDENTIFIED BY '%s'" % (self.USER, pw),
            "CREATE USER IF NOT EXISTS '%s'@'localhost' IDENTIFIED BY '%s'" % (self.USER, pw),
        ])

    def root_sql(self, statements, database=None, check=True):
        return mariadb_ctl.sql(self.dir, statements, database=database, check=check)

    def sql(self, db, statements):
        """Run statements as root in database db; rows of the last result (tuples of str/None)."""
        return self.root_sql(statements, database=db)

    def url(self, name, socket=False, user=None, password=None):
        user = self.USER if user is None else user
        password = self.password if password is None else password
        cred = "%s:%s" % (urllib.parse.quote(user, safe=""), urllib.parse.quote(password, safe=""))
        if socket:
            return "mysql://%s@localhost/%s?socket=%s" % (cred, name, self.socket)
        return "mysql://%s@127.0.0.1:%d/%s" % (cred, self.port, name)

    def socket_url(self, name, **kw):
        """mysql://petrel:PASS@localhost/NAME?socket=PATH"""
        return self.url(name, socket=True, **kw)

    def new_database(self, prefix="petrel_t"):
        """A fresh empty database petrel may use; returns (name, tcp url)."""
        self.ensure_running()
        name = "%s%d_%s" % (prefix, next(self._n), secrets.token_hex(3))
        self.root_sql([
            "CREATE DATABASE `%s`" % name,
            "GRANT ALL PRIVILEGES ON `%s`.* TO '%s'@'127.0.0.1'" % (name, self.USER),
            "GRANT ALL PRIVILEGES ON `%s`.* TO '%s'@'localhost'" % (name, self.USER),
        ])
        return name, self.url(name)

    def new_user(self, user, password, db):
        """Another account (e.g. with an awkward password) granted on db."""
        pw = password.replace("\\", "\\\\").replace("'", "''")
        self.root_sql([
            "CREATE USER '%s'@'127.0.0.1' IDENTIFIED BY '%s'" % (user, pw),
            "CREATE USER '%s'@'localhost' IDENTIFIED BY '%s'" % (user, pw),
            "GRANT ALL PRIVILEGES ON `%s`.* TO '%s'@'127.0.0.1'" % (db, user),
            "GRANT ALL PRIVILEGES ON `%s`.* TO '%s'@'localhost'" % (db, user),
        ])


@pytest.fixture(scope="session")
def mariadb():
    try:
        mariadb_ctl.binaries()
    except mariadb_ctl.MariaDBError as e:
        pytest.fail(str(e))
    base = tempfile.mkdtemp(prefix="petrel-mdb-", dir="/tmp")  # short: unix socket path limit
    m = MariaDB(base)
    try:
        mariadb_ctl.init(base)
        m.start()
        m.setup_users()
    except mariadb_ctl.MariaDBError as e:
        pytest.fail("could not start the private MariaDB: %s" % e)
    yield m
    try:
        m.stop()
    finally:
        if not os.environ.get("PETREL_KEEP_MARIADB"):
            shutil.rmtree(base, ignore_errors=True)


# --------------------------------------------------------------------------
# a petrel instance


# Instance and make_instance(): harness.instance


@pytest.fixture(params=["sqlite", "mariadb"])
def backend(request):
    return request.param


@pytest.fixture
def instance(request, petrel_bin, backend, tmp_path):
    mdb = request.getfixturevalue("mariadb") if backend == "mariadb" else None
    return make_instance(petrel_bin, tmp_path / "inst", backend, mariadb=mdb,
                         fresh_tls=getattr(request.module, "FRESH_TLS", False))


@pytest.fixture
def sqlite_instance(request, petrel_bin, tmp_path):
    """For tests that do not depend on the directory backend."""
    return make_instance(petrel_bin, tmp_path / "inst", "sqlite",
                         fresh_tls=getattr(request.module, "FRESH_TLS", False))


@pytest.fixture
def new_instance(request, petrel_bin, tmp_path):
    """Factory: new_instance(backend, name, domain=...) -> another Instance."""
    def make(backend, name, domain=DOMAIN):
        mdb = request.getfixturevalue("mariadb") if backend == "mariadb" else None
        return make_instance(petrel_bin, tmp_path / name, backend, mariadb=mdb, domain=domain)
    return make


def pycrypt():
    """Python's crypt module (libxcrypt underneath) or None."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import crypt
        except ImportError:
            return None
    return crypt


# --------------------------------------------------------------------------
# SMTP (test_smtp*.py; helpers in smtp_util.py)

SMTP_USERS = ("alice@example.test", "bob@example.test")


@pytest.fixture
def smtp_start():
    """Factory: smtp_start(instance, opts=()) -> smtp_util.SmtpServer, `petrel serve`
    with only the SMTP listener on a free loopback port (opts: "key=value" for -o).
    At teardown every server still running gets SIGTERM; a server that does not
    exit 0 in time, or whose log shows a dead worker, fails the test."""
    import smtp_util
    with server.tracked(smtp_util.start_smtp) as start:
        yield start


def _smtp_users(inst):
    add_users(inst, SMTP_USERS, password=None)


@pytest.fixture
def smtp_server(instance, smtp_start):
    """petrel serve (SMTP only) on `instance` (sqlite and mariadb), with users
    alice@ and bob@example.test. Attributes: host, port, instance, log(), proc."""
    _smtp_users(instance)
    return smtp_start(instance)


@pytest.fixture
def sqlite_smtp_server(sqlite_instance, smtp_start):
    """As smtp_server, SQLite only: for tests of the protocol itself."""
    _smtp_users(sqlite_instance)
    return smtp_start(sqlite_instance)


# --------------------------------------------------------------------------
# POP3 (test_pop3*.py; helpers in pop3_util.py)


@pytest.fixture
def pop3_start():
    """Factory: pop3_start(instance, opts=(), host="127.0.0.1") -> pop3_util.Pop3Server,
    `petrel serve` with SMTP, POP3 and POP3S on free ports (auth_fail_delay=100).
    At teardown every server still running gets SIGTERM; one that does not exit 0
    in time, or whose log shows a dead worker, fails the test."""
    import pop3_util
    with server.tracked(pop3_util.start_pop3) as start:
        yield start


@pytest.fixture(scope="module", params=["sqlite", "mariadb"])
def pop3_instance(request, petrel_bin, tmp_path_factory):
    """One instance per test module and backend (sqlite, mariadb) with users
    alice@ and bob@example.test, password "pw". Shared: tests that change users
    or the database use `instance` instead; use it through `pop3_inst`, which
    empties the maildirs first."""
    import pop3_util
    mdb = request.getfixturevalue("mariadb") if request.param == "mariadb" else None
    inst = make_instance(petrel_bin, tmp_path_factory.mktemp("pop3-" + request.param),
                         request.param, mariadb=mdb)
    pop3_util.add_users(inst)
    return inst


@pytest.fixture
def pop3_inst(pop3_instance):
    """pop3_instance with every maildir emptied (the users stay)."""
    import pop3_util
    pop3_util.reset_maildirs(pop3_instance)
    return pop3_instance


@pytest.fixture
def pop3_server(pop3_inst, pop3_start):
    """A fresh `petrel serve` (SMTP, POP3, POP3S) on pop3_inst (sqlite and mariadb)."""
    return pop3_start(pop3_inst)


# --------------------------------------------------------------------------
# Submission and outbound (test_submission*.py, test_outbound*.py,
# test_dkim*.py; helpers in mx_util.py)


@pytest.fixture
def petrel_start():
    """Factory: petrel_start(instance, opts=()) -> mx_util.PetrelServer, `petrel serve`
    with the MX, submission (STARTTLS) and submissions (TLS) ports on free loopback
    ports, auth_fail_delay=100, queue_retry_min=1, queue_scan_interval=1 and
    relayhost=[127.0.0.1]:9 (opts "key=value" come after and win).
    At teardown every server still running gets SIGTERM; one that does not exit 0
    in time, or whose log shows a dead worker, fails the test."""
    import mx_util
    with server.tracked(mx_util.start_petrel) as start:
        yield start


@pytest.fixture
def fake_mx():
    """Factory: fake_mx(**kw) -> mx_util.FakeMX, a scripted SMTP receiver on
    127.0.0.1 (see mx_util.FakeMX); stopped at teardown."""
    import mx_util
    made = []

    def make(**kw):
        mx = mx_util.FakeMX(**kw)
        made.append(mx)
        return mx

    yield make
    for mx in made:
        mx.stop()


@pytest.fixture
def out_instance(sqlite_instance):
    """A SQLite instance with users alice@ and bob@example.test, password "pw"."""
    import mx_util
    mx_util.add_users(sqlite_instance)
    return sqlite_instance


@pytest.fixture
def sub_instance(instance):
    """As out_instance, on both backends (sqlite, mariadb)."""
    import mx_util
    mx_util.add_users(instance)
    return instance


@pytest.fixture
def mail_user_instance(petrel_bin):
    """A SQLite instance (users alice@, bob@example.test, password "pw") in a
    directory the `mail` account can reach, so that `petrel init` (as root)
    makes it run as mail:mail like a real installation, while the CLI (the
    administrator) runs as root. Skips unless root with a `mail` account."""
    import pwd
    import mx_util
    try:
        pwd.getpwnam("mail")
    except KeyError:
        pytest.skip("no 'mail' account")
    if os.geteuid() != 0:
        pytest.skip("needs root")
    base = tempfile.mkdtemp(prefix="petrel-mail-", dir="/tmp")
    os.chmod(base, 0o755)
    try:
        inst = make_instance(petrel_bin, os.path.join(base, "inst"), "sqlite")
        assert inst.config().get("user") == "mail", inst.config().get("user")
        mx_util.add_users(inst)
        yield inst
    finally:
        shutil.rmtree(base, ignore_errors=True)
