"""In CI (CI=true) a skipped test is a failure, unless its reason is one CI
cannot have by design (listed below with why). CI runs as root on Debian 12
with everything scripts/install-deps.sh --test installs, and scripts/test.sh
adds a non-loopback IPv4 and IPv6 address to `lo` when the machine has none,
so "needs root", "no 'mail' account", "no non-loopback address" and the like
mean that something CI should provide is missing: that must fail, not hide.

tests/integration/conftest.py imports `pytest_runtest_makereport` from here;
tests/hostile and tests/reliability re-export that conftest's names."""

import os

import pytest

# Reasons (substrings of the skip message) that are not missing features.
CI_CANNOT = (
    # test_packaging.py builds the Debian package from the tree once per CI
    # run, in the plain build's pass; the sanitizer pass skips it.
    "built from the tree once, in the plain build's pass",
    # test_webmail.py (Roundcube under php -S, driven in headless Chromium)
    # is heavy and exercises the protocol, not memory safety: it runs once
    # per CI run, in the plain build's pass; the sanitizer pass skips it.
    "webmail run once per CI run, in the plain build's pass",
    # Other heavy suites whose subject is the protocol or the files on disk,
    # not memory safety (testssl.sh's scan of the TLS setup, the migration
    # round trip through Courier and Dovecot): run_once() skips them in the
    # sanitizer pass; they run once, in the plain build's pass.
    "heavy: run once per CI run, in the plain build's pass",
)


def sanitized(petrel_bin):
    """Is this petrel built with AddressSanitizer?"""
    with open(petrel_bin, "rb") as f:
        return b"__asan_init" in f.read()


def run_once(petrel_bin):
    """Skip a heavy test against the sanitizer build (see CI_CANNOT)."""
    if sanitized(petrel_bin):
        pytest.skip("heavy: run once per CI run, in the plain build's pass")


def in_ci():
    return os.environ.get("CI", "").lower() == "true"


def skip_reason(rep):
    if isinstance(rep.longrepr, tuple) and len(rep.longrepr) == 3:
        return str(rep.longrepr[2])
    return str(rep.longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not in_ci() or not rep.skipped or hasattr(rep, "wasxfail"):
        return
    reason = skip_reason(rep)
    if any(r in reason for r in CI_CANNOT):
        return
    rep.outcome = "failed"
    rep.longrepr = ("skipped in CI: %s\n(a skip in CI is a failure unless its reason is one "
                    "CI cannot have: tests/harness/ci_skips.py)" % reason)
