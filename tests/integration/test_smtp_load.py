"""SMTP server under load: Postfix's smtp-source (Debian package `postfix`; only the
binary is used, no Postfix daemon). 20 parallel sessions, 10,000 messages of 2 KiB
to one user; every acknowledged message must be exactly one file in new/.
SQLite backend only. Bounded in time (LOAD_TIMEOUT)."""

import os
import re
import subprocess
import time

import pytest

from smtp_util import new_files, tmp_files

SMTP_SOURCE = "/usr/sbin/smtp-source"
SESSIONS = 20
MESSAGES = 10000
LENGTH = 2048
LOAD_TIMEOUT = 300


def test_smtp_source_load(sqlite_smtp_server):
    if not os.access(SMTP_SOURCE, os.X_OK):
        pytest.fail("%s is missing (Debian package 'postfix': apt-get install postfix)"
                    % SMTP_SOURCE)
    srv = sqlite_smtp_server
    inst = srv.instance
    cmd = [SMTP_SOURCE, "-c", "-s", str(SESSIONS), "-m", str(MESSAGES), "-l", str(LENGTH),
           "-f", "sender@x.test", "-t", "alice@example.test", "%s:%d" % (srv.host, srv.port)]
    t0 = time.monotonic()
    try:
        cp = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, timeout=LOAD_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        pytest.fail("smtp-source did not finish within %ss (%d files in new/)\n%s"
                    % (LOAD_TIMEOUT, len(new_files(inst, "alice@example.test")),
                       (e.stdout or b"")[-2000:].decode("utf-8", "replace")))
    took = time.monotonic() - t0
    out = cp.stdout.decode("utf-8", "replace")
    # smtp-source exits 0 only when every message got its 250
    assert cp.returncode == 0, "smtp-source failed:\n%s\nserver log tail:\n%s" % (
        out[-2000:], "".join(srv.log_lines()[-30:]))
    files = new_files(inst, "alice@example.test")
    assert len(files) == MESSAGES, "%d files in new/ for %d acknowledged messages" % (
        len(files), MESSAGES)
    assert tmp_files(inst, "alice@example.test") == []
    # every message has its own file: sizes look like a 2 KiB payload plus headers
    sizes = {os.path.getsize(f) for f in files[:200]}
    assert all(LENGTH < s < LENGTH + 2048 for s in sizes), sizes
    accepted = srv.wait_log(r"\(accepted\)$", count=MESSAGES, timeout=30)
    assert len(accepted) == MESSAGES, "%d '(accepted)' log lines" % len(accepted)
    delivered = [l for l in srv.log_lines() if re.search(r"relay=maildir, .*status=sent", l)]
    assert len(delivered) == MESSAGES
    qids = {m.group(1) for m in (re.search(r" ([0-9A-F]{16}): from=<sender@x.test>", l)
                                 for l in accepted) if m}
    assert len(qids) == MESSAGES, "queue ids must be unique: %d distinct" % len(qids)
    print("smtp-source: %d messages in %.1f s (%.0f/s)" % (MESSAGES, took, MESSAGES / took))
    assert srv.stop() == 0
