"""Run the C unit test binaries (build/tests/unit/test_*), one pytest case each,
and test_dir once more against the private MariaDB (with a stop/start of the
server in the middle, to exercise reconnect)."""

import glob
import os
import shlex
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
BUILD = os.path.abspath(os.environ.get("PETREL_BUILD_DIR") or os.path.join(REPO, "build"))
UNIT_DIR = os.path.join(BUILD, "tests", "unit")
TIMEOUT = 180


def unit_binaries():
    out = []
    for p in sorted(glob.glob(os.path.join(UNIT_DIR, "test_*"))):
        if os.path.isfile(p) and os.access(p, os.X_OK) and not p.endswith((".p", ".o", ".c", ".h")):
            out.append(p)
    return out


UNITS = unit_binaries()


def run_unit(path, env=None):
    e = dict(os.environ)
    e.pop("PETREL_CONF", None)
    if env:
        e.update(env)
    try:
        return subprocess.run([path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, errors="replace", timeout=TIMEOUT, env=e,
                              cwd=os.path.dirname(path), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as ex:
        pytest.fail("%s did not finish within %d s\n%s" % (path, TIMEOUT, ex.stdout))


def test_unit_binaries_exist():
    assert UNITS, ("no C unit test binaries in %s (build first: meson setup build && "
                   "meson compile -C build, or set PETREL_BUILD_DIR)" % UNIT_DIR)


@pytest.mark.parametrize("path", UNITS, ids=[os.path.basename(p) for p in UNITS])
def test_unit(path):
    r = run_unit(path)
    assert r.returncode == 0, "%s exited %d\n%s" % (os.path.basename(path), r.returncode, r.stdout)


def test_unit_dir_mariadb(mariadb):
    path = os.path.join(UNIT_DIR, "test_dir")
    assert os.path.isfile(path), "no %s" % path
    _, url = mariadb.new_database("unitdir")
    ctl = "%s %s" % (shlex.quote(sys.executable), shlex.quote(os.path.join(HERE, "mariadb_ctl.py")))
    env = {
        "PETREL_TEST_MYSQL_URL": url,
        "PETREL_TEST_MYSQL_STOP": "%s stop %s" % (ctl, shlex.quote(mariadb.dir)),
        "PETREL_TEST_MYSQL_START": "%s start %s" % (ctl, shlex.quote(mariadb.dir)),
    }
    try:
        r = run_unit(path, env)
    finally:
        mariadb.ensure_running()
    assert r.returncode == 0, "test_dir (MariaDB) exited %d\nenv: %s\n%s" % (r.returncode, env, r.stdout)
    assert mariadb.is_running()
