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

STRESS = os.environ.get("PETREL_STRESS") == "1"
