"""log_target = journald: every process sends its lines to journald's
native socket (journald_socket) with structured fields, and journalctl
shows them. The journald is a real one (systemd's systemd-journald run in a
journal namespace of its own, so the host's journal is untouched), read
back with `journalctl --namespace=... -o json`: the Postfix-shaped lines
with SYSLOG_IDENTIFIER petrel/smtpd, petrel/virtual, petrel/imap, and the
fields QUEUE_ID, SESSION_ID, CLIENT, USER, PROTOCOL. SQLite."""

import glob
import imaplib
import json
import os
import shutil
import smtplib
import subprocess
import time

import pytest

from harness import server
from harness.instance import ALICE, PASSWORD, TIMEOUT_SCALE, add_users, make_instance

JOURNALD = "/lib/systemd/systemd-journald"

pytestmark = [
    pytest.mark.skipif(not os.path.exists(JOURNALD) or shutil.which("journalctl") is None,
                       reason="no systemd-journald/journalctl (package systemd)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="a journald namespace needs root"),
]


@pytest.fixture
def journal():
    """A systemd-journald for namespace petreltestPID; (socket path, a
    function returning its records as dicts). Everything it made is removed
    afterwards."""
    ns = "petreltest%d" % os.getpid()
    rundir = "/run/systemd/journal." + ns
    proc = subprocess.Popen([JOURNALD, ns], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    sock = os.path.join(rundir, "socket")
    deadline = time.monotonic() + 10 * TIMEOUT_SCALE
    while not os.path.exists(sock) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)

    def records():
        cp = subprocess.run(["journalctl", "--namespace=" + ns, "-o", "json", "--no-pager"],
                            capture_output=True, text=True, timeout=30)
        assert cp.returncode == 0, cp.stderr
        return [json.loads(l) for l in cp.stdout.splitlines() if l.strip()]

    try:
        assert os.path.exists(sock), "systemd-journald did not start: %s" % (
            proc.stderr.read().decode() if proc.poll() is not None else "no socket")
        yield sock, records
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        shutil.rmtree(rundir, ignore_errors=True)
        for d in glob.glob("/var/log/journal/*." + ns) + glob.glob("/run/log/journal/*." + ns):
            shutil.rmtree(d, ignore_errors=True)


def wait_records(records, pred, timeout=10):
    deadline = time.monotonic() + timeout * TIMEOUT_SCALE
    while True:
        found = [r for r in records() if r.get("SYSLOG_IDENTIFIER", "").startswith("petrel")
                 and pred(r)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_journald_fields(journal, petrel_bin, tmp_path):
    sock, records = journal
    inst = make_instance(petrel_bin, tmp_path / "inst", "sqlite")
    add_users(inst)
    opts = ("hostname=mx.petrel.test", "relayhost=[127.0.0.1]:9", "queue_retry_min=3600",
            "log_target=journald", "journald_socket=" + sock)
    with server.running(server.start, inst, ("smtp", "imap"), opts) as srv:
        s = smtplib.SMTP("127.0.0.1", srv.ports["smtp"], local_hostname="client.test",
                         timeout=30)
        s.sendmail("x@y.test", [ALICE], b"Subject: to the journal\r\n\r\nhello\r\n")
        try:
            s.sendmail("x@y.test", ["nobody@example.test"], b"Subject: no\r\n\r\nno\r\n")
        except smtplib.SMTPRecipientsRefused:
            pass
        s.quit()
        m = imaplib.IMAP4("127.0.0.1", srv.ports["imap"], timeout=30)
        m.login(ALICE, PASSWORD)
        m.logout()

        accepted = wait_records(records, lambda r: "(accepted)" in r.get("MESSAGE", ""))
        assert accepted, records()
        qid = accepted[0]["QUEUE_ID"]
        assert accepted[0]["MESSAGE"].startswith(qid + ": from=<x@y.test>")
        assert accepted[0]["SYSLOG_IDENTIFIER"] == "petrel/smtpd"
        assert accepted[0]["PROTOCOL"] == "smtpd"
        assert accepted[0]["PRIORITY"] == "6" and accepted[0]["SYSLOG_FACILITY"] == "2"
        assert int(accepted[0]["SYSLOG_PID"]) in srv.worker_pids()

        # the same queue id on the client= and the delivery lines
        client = wait_records(records, lambda r: r.get("QUEUE_ID") == qid
                              and "client=" in r["MESSAGE"])
        assert client and client[0]["CLIENT"] == "127.0.0.1", client
        sent = wait_records(records, lambda r: r.get("QUEUE_ID") == qid
                            and "status=sent" in r["MESSAGE"])
        assert sent and "to=<%s>" % ALICE in sent[0]["MESSAGE"], records()

        rejected = wait_records(records, lambda r: "reject: RCPT" in r.get("MESSAGE", ""))
        assert rejected and rejected[0]["CLIENT"] == "127.0.0.1", rejected
        assert "nobody@example.test" in rejected[0]["MESSAGE"]

        login = wait_records(records, lambda r: "imap login" in r.get("MESSAGE", ""))
        assert login, records()
        rec = login[0]
        assert rec["SYSLOG_IDENTIFIER"] == "petrel/imap" and rec["PROTOCOL"] == "imap"
        assert rec["USER"] == ALICE and rec["CLIENT"] == "127.0.0.1"
        assert rec["MESSAGE"].startswith(rec["SESSION_ID"] + ": imap login: user=<")
        logout = wait_records(records, lambda r: "imap logout" in r.get("MESSAGE", ""))
        assert logout and logout[0]["SESSION_ID"] == rec["SESSION_ID"], logout
    # nothing went to stderr but what the journal could not take
    assert "imap login" not in srv.log()


def test_journald_socket_missing(petrel_bin, tmp_path):
    """An unusable journald_socket: serve refuses to start, in one line."""
    inst = make_instance(petrel_bin, tmp_path / "inst", "sqlite")
    cp = inst.run("-o", "log_target=journald", "-o",
                  "journald_socket=" + str(tmp_path / "no-such-socket"), "serve", check=False,
                  timeout=30)
    assert cp.returncode == 1
    err = cp.stderr.strip().splitlines()
    assert len(err) == 1 and "journald_socket" in err[0] and "no-such-socket" in err[0], err
