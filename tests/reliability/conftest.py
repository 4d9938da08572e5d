"""Fixtures for petrel's reliability tests (faults, load, concurrency,
privileges): the integration fixtures and helper modules, re-exported.
The shared harness (instances, `petrel serve`, raw connections, ports,
/proc lookups) lives in tests/harness (see tests/integration/README.md).

Run:  /usr/bin/python3 -m pytest -q tests/reliability
Env:  PETREL_BIN (binary under test), as for tests/integration;
      PETREL_STRESS=1 for the long variants (tests/stress/run.sh sets it).
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
INTEGRATION = os.path.abspath(os.path.join(HERE, "..", "integration"))
HOSTILE = os.path.abspath(os.path.join(HERE, "..", "hostile"))
for _p in (HOSTILE, INTEGRATION, HERE):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import reexport  # noqa: E402

globals().update(reexport.integration_names())

import pytest  # noqa: E402

import galera_util  # noqa: E402
import mariadb_ctl  # noqa: E402

STRESS = os.environ.get("PETREL_STRESS") == "1"


@pytest.fixture(scope="session")
def galera():
    """A private three-node MariaDB Galera cluster (galera_util.py), started
    once for the run (about a minute) and shared by test_cluster.py and
    test_galera.py; each test makes its own database in it. A test that
    kills a node starts it again, or leaves it for the next user of the
    fixture to restart (galera_util.Cluster.heal)."""
    missing = galera_util.available()
    if missing:
        pytest.fail("cannot make a Galera cluster: %s" % missing)
    c = galera_util.Cluster()
    try:
        c.start()
    except (galera_util.GaleraError, mariadb_ctl.MariaDBError) as e:
        c.stop()
        pytest.fail("could not start the Galera cluster: %s" % e)
    yield c
    c.stop()
