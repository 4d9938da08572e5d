"""Fixtures for petrel's hostile-input tests.

Re-uses tests/integration: its directory goes on sys.path, its conftest is
loaded under another module name and every public name of it (fixtures
included: petrel_bin, mariadb, backend, instance, sqlite_instance, ...) is
re-exported from here. The shared harness (tests/harness: instances, `petrel
serve`, raw connections) comes on sys.path with it.

Run:  cd /work/main && /usr/bin/python3 -m pytest -q tests/hostile
Env:  PETREL_BIN (binary under test), as for tests/integration.
"""

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
INTEGRATION = os.path.abspath(os.path.join(HERE, "..", "integration"))
for _p in (INTEGRATION, HERE):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import reexport  # noqa: E402

globals().update(reexport.integration_names())

import hostile_util  # noqa: E402
from harness import server  # noqa: E402


@pytest.fixture
def all_start():
    """Factory: all_start(instance, opts=()) -> hostile_util.AllServer, `petrel serve`
    with MX, submission, submissions, IMAP and POP3 on free loopback ports.
    At teardown: SIGTERM, exit status 0, no dead worker / sanitizer report."""
    with server.tracked(hostile_util.start_all) as start:
        yield start


@pytest.fixture(scope="module")
def shared_sqlite(petrel_bin, tmp_path_factory):
    """One SQLite instance + AllServer per test module (users alice@, bob@,
    password "pw"; auth_fail_delay=1 so that many failures stay fast)."""
    inst = make_instance(petrel_bin, tmp_path_factory.mktemp("hostile-sqlite"), "sqlite")  # noqa: F821
    hostile_util.add_users(inst)
    srv = hostile_util.start_all(inst, ("auth_fail_delay=1",))
    yield srv
    problems = hostile_util.check_stopped([srv])
    assert not problems, "\n\n".join(problems)


@pytest.fixture(scope="module", params=["sqlite", "mariadb"])
def shared_any(request, petrel_bin, tmp_path_factory):
    """As shared_sqlite, once per directory backend (sqlite, mariadb)."""
    mdb = request.getfixturevalue("mariadb") if request.param == "mariadb" else None
    inst = make_instance(petrel_bin, tmp_path_factory.mktemp("hostile-" + request.param),  # noqa: F821
                         request.param, mariadb=mdb)
    hostile_util.add_users(inst)
    srv = hostile_util.start_all(inst, ("auth_fail_delay=1",))
    yield srv
    problems = hostile_util.check_stopped([srv])
    assert not problems, "\n\n".join(problems)
