"""Maildirs the workers' account cannot write (SPEC 6.1, per-user uid/gid):
the Postfix howto's tree is owned per user (uid 5001, mode 770). `petrel
check` names every such maildir by path, and `petrel serve` refuses to
start (one line, exit 1, nothing listening) instead of answering 451 for
those users at run time. As root the server runs as `mail` and the maildirs
are given to another uid; otherwise they are made mode 000."""

import os
import shutil
import socket
import subprocess

import pytest

from harness import server
from harness.instance import ALICE, BOB, RUN_TIMEOUT, add_users, clean_env, make_instance
from harness.ports import free_port
from smtp_util import start_smtp

OTHER_UID = 5001      # the howto's per-user owner
EXTRA = ["u%d@example.test" % i for i in range(1, 7)]


@pytest.fixture
def owned_inst(request, petrel_bin, tmp_path):
    """(instance, lock, unlock): an instance whose workers run as an account
    that lock(path) takes a maildir away from (chown to another uid, mode
    770, as root; mode 000 otherwise) and unlock(path) gives back."""
    if os.geteuid() == 0:
        inst = request.getfixturevalue("mail_user_instance")
        import pwd
        mail = pwd.getpwnam("mail")

        def lock(path):
            for root, dirs, files in os.walk(path):
                for n in dirs + files:
                    os.chown(os.path.join(root, n), OTHER_UID, OTHER_UID)
            os.chown(path, OTHER_UID, OTHER_UID)
            os.chmod(path, 0o770)

        def unlock(path):
            for root, dirs, files in os.walk(path):
                for n in dirs + files:
                    os.chown(os.path.join(root, n), mail.pw_uid, mail.pw_gid)
            os.chown(path, mail.pw_uid, mail.pw_gid)
            os.chmod(path, 0o700)
        return inst, lock, unlock, "mail"
    inst = make_instance(petrel_bin, tmp_path / "inst", "sqlite")
    add_users(inst)
    return inst, lambda p: os.chmod(p, 0), lambda p: os.chmod(p, 0o700), "this account"


def maildir(inst, address):
    local, domain = address.split("@")
    return os.path.join(inst.mail_root, domain, local)


def ensure_maildir(inst, address):
    path = maildir(inst, address)
    if not os.path.isdir(os.path.join(path, "new")):
        inst.run("maildirmake", path)
    return path


def serve(inst, port):
    """`petrel serve` with only an SMTP listener on port; (rc, stderr) or
    AssertionError if it is still running after the bound."""
    args = [inst.bin, "-c", inst.conf, "-o", "smtp_listen=127.0.0.1:%d" % port]
    for name in server.LISTENERS:
        if name != "smtp":
            args += ["-o", name + "_listen="]
    p = subprocess.Popen(args + ["serve"], cwd=inst.dir, env=clean_env(),
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    try:
        _, err = p.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise AssertionError("petrel serve started although maildirs are not writable")
    return p.returncode, err


def listening(port):
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_check_and_serve_name_unwritable_maildirs(owned_inst):
    inst, lock, unlock, who = owned_inst
    alice = ensure_maildir(inst, ALICE)
    ensure_maildir(inst, BOB)
    cp = inst.run("check", check=False)
    assert cp.returncode == 0, cp.stderr
    lock(alice)
    cp = inst.run("check", check=False)
    assert cp.returncode == 1, cp.stdout + cp.stderr
    lines = [l for l in cp.stderr.splitlines() if "maildir" in l]
    assert lines == ["petrel: check: maildir %s is not writable by %s" % (alice, who)], \
        cp.stderr
    assert BOB.split("@")[0] not in cp.stderr
    port = free_port()
    rc, err = serve(inst, port)
    assert rc == 1, err
    err_lines = [l for l in err.splitlines() if l.startswith("petrel: ")]
    assert len(err_lines) == 1, err
    assert "1 maildir(s) not writable by %s: %s " % (who, alice) in err_lines[0], err
    assert "not starting" in err_lines[0], err
    assert not listening(port)
    # given back: check is happy and serve starts
    unlock(alice)
    cp = inst.run("check", check=False)
    assert cp.returncode == 0, cp.stderr
    srv = start_smtp(inst)
    try:
        assert srv.alive()
    finally:
        assert not server.check_stopped([srv])


def test_many_and_not_yet_made(owned_inst):
    """Every unwritable maildir is named by check; serve names five and
    counts the rest. A maildir not made yet is judged by its nearest parent:
    under a domain directory taken away it is reported, elsewhere not."""
    inst, lock, unlock, who = owned_inst
    for a in EXTRA:
        inst.run("user", "add", a)
    paths = [ensure_maildir(inst, a) for a in EXTRA]
    for p in paths:
        lock(p)
    # a user whose maildir does not exist yet, in another domain
    inst.run("domain", "add", "locked.test")
    inst.run("user", "add", "new@locked.test")
    inst.run("user", "add", "new@example.test")
    for a in ("new@locked.test", "new@example.test"):
        shutil.rmtree(maildir(inst, a), ignore_errors=True)
    dom = os.path.dirname(maildir(inst, "new@locked.test"))
    os.makedirs(dom, exist_ok=True)
    lock(dom)
    cp = inst.run("check", check=False)
    assert cp.returncode == 1
    named = sorted(l.split()[3] for l in cp.stderr.splitlines() if " maildir " in l)
    want = sorted(paths + [maildir(inst, "new@locked.test")])
    assert [n.rstrip("/") for n in named] == [w.rstrip("/") for w in want], cp.stderr
    rc, err = serve(inst, free_port())
    assert rc == 1
    line = [l for l in err.splitlines() if l.startswith("petrel: ")][0]
    assert line.count(inst.mail_root) == 5, line
    assert "7 maildir(s) not writable" in line and "and 2 more" in line, line
