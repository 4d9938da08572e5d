"""petrel status: what the running master answers on its control socket
(QUEUE_DIR/control) -- its processes with their pids, listeners,
connections per service from the node's counts, logins, messages -- and the
queue on disk; a one-line error when no server runs."""

import os
import socket
import time

from conftest import assert_error
from mx_util import ALICE, make_message, queue_ids, wire


def status(inst):
    cp = inst.run("status", check=False)
    assert cp.returncode == 0, cp.stderr
    lines = [ln.split() for ln in cp.stdout.splitlines()]
    return lines


def field(lines, *prefix):
    """The words after the first line starting with prefix."""
    for ln in lines:
        if tuple(ln[:len(prefix)]) == prefix:
            return ln[len(prefix):]
    raise AssertionError("no %r in %r" % (prefix, lines))


def test_status_of_a_running_server(out_instance, petrel_start):
    inst = out_instance
    srv = petrel_start(inst, opts=("workers=2",))
    st = status(inst)
    assert field(st, "pid") == [str(srv.proc.pid)]
    procs = [ln for ln in st if ln[0] == "process"]
    assert sorted(ln[1] for ln in procs) == ["auth", "queue", "worker", "worker"]
    # the pids are the master's children
    assert sorted(int(ln[2]) for ln in procs) == sorted(srv.worker_pids())
    assert ["listener", "smtp", "127.0.0.1:%d" % srv.port] in st
    assert field(st, "connections", "smtp") == ["0", "max", "2000"]

    # sessions open: counted for the node
    held = [socket.create_connection(("127.0.0.1", srv.port), timeout=5) for _ in range(3)]
    try:
        for s in held:
            assert s.recv(512).startswith(b"220")
        deadline = time.monotonic() + 5
        while field(status(inst), "connections", "smtp")[0] != "3":
            assert time.monotonic() < deadline, status(inst)
            time.sleep(0.05)
    finally:
        for s in held:
            s.close()

    # a message for a host that does not answer stays in the queue; the
    # login and the message are counted
    r = srv.submit(ALICE, ALICE, ["x@relay.test"], wire(make_message("held")))
    assert r.code == 250, r
    st = status(inst)
    assert int(field(st, "logins", "ok")[0]) >= 1
    assert field(st, "messages", "received") == ["1"]
    assert field(st, "queue", "messages")[0] == str(len(queue_ids(inst))) == "1"


def test_status_without_a_server(out_instance):
    cp = out_instance.run("status", check=False)
    assert_error(cp, "not running", os.path.join(out_instance.config()["queue_dir"], "control"))


def test_status_names_a_dead_worker(out_instance, petrel_start):
    import signal
    inst = out_instance
    srv = petrel_start(inst, opts=("workers=1",))
    srv.allow_log(r"killed by signal 9")
    victim = [int(ln[2]) for ln in status(inst) if ln[:2] == ["process", "worker"]][0]
    assert not [ln for ln in status(inst) if ln[0] == "error"]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while True:
        st = status(inst)
        errors = [ln for ln in st if ln[0] == "error"]
        worker = field(st, "process", "worker")
        if errors and worker[0] not in ("-", str(victim)):
            break
        assert time.monotonic() < deadline, st
        time.sleep(0.05)
    assert len(errors) == 1 and int(errors[0][1]) >= 0
    assert " ".join(errors[0][2:]) == "worker 0 (pid %d) killed by signal 9" % victim
