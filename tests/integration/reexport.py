"""Load tests/integration/conftest.py under another module name, for the
other test trees (tests/hostile, tests/reliability): their conftest does

    globals().update(reexport.integration_names())

so that the integration fixtures (petrel_bin, mariadb, instance, ...) and
helpers exist there too (and `from conftest import MariaDB` works in their
helper modules). Loading it also puts tests/ on sys.path, for the shared
harness (tests/harness).
"""

import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def integration_names():
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    base = sys.modules.get("petrel_integration_conftest")
    if base is None:
        spec = importlib.util.spec_from_file_location("petrel_integration_conftest",
                                                      os.path.join(HERE, "conftest.py"))
        base = importlib.util.module_from_spec(spec)
        sys.modules["petrel_integration_conftest"] = base
        spec.loader.exec_module(base)
    return {k: getattr(base, k) for k in dir(base) if not k.startswith("_")}
