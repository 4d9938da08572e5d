"""Privileges: after binding, no petrel process runs as root, and a user's
session reaches only that user's maildir.

The instance lives in a directory the `mail` account can reach (the
`mail_user_instance` fixture: mode 0755 under /tmp), so `petrel init` run as root writes `user = mail` and
`petrel serve` drops to it after binding, as in production. Every process
of the server (master, workers, queue manager) is then checked in
/proc/PID/status: real, effective, saved and filesystem uid and gid, the
supplementary groups and the effective capabilities. The auth process runs
as auth_user (petrel-auth, which init creates), and the master keeps that
account as its saved uid/gid only, to start and signal it. Then alice, logged in
over IMAP and POP3, tries to reach bob's maildir and the rest of the file
system by every name form the protocols allow; bob's maildir must be
byte-for-byte unchanged and nothing may appear outside alice's.

Run:  /usr/bin/python3 -m pytest -q tests/reliability/test_privileges.py
      (as root, as the test command runs)
"""

import hashlib
import os
import pwd

import pytest

import crash_util
import hostile_util
from hostile_util import ALICE, BOB, PASSWORD
from imap_util import quote

MAIL = pwd.getpwnam("mail")


def snapshot(root):
    """{relative path: (mode, uid, sha256 or None)} of everything under root."""
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            st = os.lstat(p)
            digest = None
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_uid, digest)
    return out


def status_fields(pid):
    fields = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.split()
    return fields


def environ(pid):
    with open("/proc/%d/environ" % pid, "rb") as f:
        return f.read().split(b"\0")


@pytest.fixture
def all_start():
    """Factory: all_start(inst) -> a serve with SMTP, submission, IMAP, POP3;
    stopped (and checked: exit 0, no crash report) at teardown."""
    servers = []

    def start(inst, opts=()):
        servers.append(hostile_util.start_all(inst, opts))
        return servers[-1]

    yield start
    problems = hostile_util.check_stopped(servers)
    assert not problems, "\n\n".join(problems)


def test_no_process_runs_as_root(mail_user_instance, all_start):
    inst = mail_user_instance
    assert inst.config().get("user") == "mail", inst.init_result.stderr
    srv = all_start(inst)
    hostile_util.healthy(srv)            # every service has served a session
    pids = [srv.proc.pid] + crash_util.children(srv.proc.pid)
    assert len(pids) >= 3, "expected a master, workers and a queue manager: %r" % pids
    assert inst.config().get("auth_user") == "petrel-auth", inst.config()
    auth = pwd.getpwnam("petrel-auth")
    assert auth.pw_uid not in (0, MAIL.pw_uid)
    auth_pids = [p for p in pids if b"PETREL_ROLE=auth" in environ(p)]
    assert len(auth_pids) == 1, pids
    for pid in pids:
        st = status_fields(pid)
        name = st["Name"][0]
        uid, gid = (auth.pw_uid, auth.pw_gid) if pid in auth_pids else (MAIL.pw_uid, MAIL.pw_gid)
        want_uid, want_gid = [uid] * 4, [gid] * 4
        if pid == srv.proc.pid:
            want_uid[2], want_gid[2] = auth.pw_uid, auth.pw_gid
        assert [int(x) for x in st["Uid"]] == want_uid, (pid, name, st["Uid"])
        assert [int(x) for x in st["Gid"]] == want_gid, (pid, name, st["Gid"])
        assert "0" not in st.get("Groups", []), (pid, name, st.get("Groups"))
        assert int(st["CapEff"][0], 16) == 0, (pid, name, st["CapEff"])
        assert int(st["CapPrm"][0], 16) == 0, (pid, name, st["CapPrm"])
    # what it wrote belongs to mail, not root
    with srv.mx() as c:
        assert c.send_message("x@remote.test", [ALICE], b"Subject: t\r\n\r\nhi\r\n",
                              ehlo="client.test").code == 250
    md = os.path.join(inst.dir, "mail", "example.test", "alice")
    for d, dirs, files in os.walk(md):
        for n in dirs + files:
            assert os.lstat(os.path.join(d, n)).st_uid == MAIL.pw_uid, os.path.join(d, n)


# Mailbox names that try to leave alice's maildir; none may succeed.
ESCAPES = ["../bob", "../../example.test/bob", "..", "/etc", "/tmp/petrel-escape",
           "~/../bob", "INBOX/../../bob", "INBOX.../bob", ".../bob",
           "INBOX/..", "../bob/.Private", "&AC4ALgAv-bob", "&AC4-&AC4-/bob"]


def refused(r):
    return r.status in ("NO", "BAD")


def test_session_reaches_only_its_own_maildir(mail_user_instance, all_start):
    inst = mail_user_instance
    srv = all_start(inst)
    mail_root = os.path.join(inst.dir, "mail")
    # bob has mail and a folder of his own
    with srv.mx() as c:
        assert c.send_message("x@remote.test", [BOB], b"Subject: bob's\r\n\r\nsecret\r\n",
                              ehlo="client.test").code == 250
    with srv.imap() as c:
        c.login(BOB, PASSWORD)
        c.ok("CREATE Private")
        c.logout()
    bob_dir = os.path.join(mail_root, "example.test", "bob")
    before_bob = snapshot(bob_dir)
    before_root = sorted(os.listdir(mail_root))
    before_domain = sorted(os.listdir(os.path.join(mail_root, "example.test")))

    with srv.imap() as c:
        c.login(ALICE, PASSWORD)
        c.append("INBOX", b"Subject: mine\r\n\r\nmine\r\n")
        for name in ESCAPES:
            q = quote(name)
            for line in ("SELECT " + q, "EXAMINE " + q, "CREATE " + q, "DELETE " + q,
                         "STATUS %s (MESSAGES)" % q, "RENAME INBOX " + q,
                         "RENAME %s Stolen" % q, "GETQUOTAROOT " + q):
                r = c.cmd(line)
                assert refused(r), (line, r)
            r = c.append(name, b"Subject: x\r\n\r\nx\r\n")
            assert refused(r), ("APPEND", name, r)
            for ref, pat in (("", name), ("", name + "*"), (name, "*"), (name, "%")):
                r = c.cmd("LIST %s %s" % (quote(ref), quote(pat)))
                assert r.status in ("OK", "NO", "BAD"), r
                listed = [str(u) for u in r.untagged if u.startswith(b"* LIST")]
                assert not any("private" in u.lower() or "bob" in u.lower() for u in listed), \
                    (ref, pat, listed)
        c.select("INBOX")
        for name in ESCAPES:
            for verb in ("COPY", "MOVE"):
                r = c.cmd("%s 1 %s" % (verb, quote(name)))
                assert refused(r), (verb, name, r)
        # a name that only looks like another user's is a folder of alice's
        c.ok('CREATE "~bob"')
        assert os.path.isdir(os.path.join(mail_root, "example.test", "alice", ".~bob"))
        # alice's folders are alice's: LIST "*" names none of bob's
        r = c.ok('LIST "" "*"')
        assert not any(b"Private" in u for u in r.untagged), r
        c.logout()

    # POP3: alice sees her own message only
    with srv.pop3() as p:
        p.login(ALICE, PASSWORD)
        assert p.ok("STAT").split()[1] == "1"
        _, lines = p.ok_multi("RETR 1")
        assert not any(b"secret" in l for l in lines), lines
        p.quit()

    assert snapshot(bob_dir) == before_bob, "bob's maildir changed"
    assert sorted(os.listdir(mail_root)) == before_root
    assert sorted(os.listdir(os.path.join(mail_root, "example.test"))) == before_domain
    assert not os.path.exists("/tmp/petrel-escape"), "a folder was made outside the mail root"
    hostile_util.healthy(srv)


def test_missing_auth_user_falls_back_to_user(mail_user_instance, all_start):
    """auth_user names no account: the auth process runs as `user`, with a
    warning in the log, and logins work (the directory file is then the
    workers' account's, as `petrel init` leaves it without the account)."""
    inst = mail_user_instance
    os.chown(inst.sqlite_path(), MAIL.pw_uid, MAIL.pw_gid)
    srv = all_start(inst, ("auth_user=petrel-nosuch-account",))
    hostile_util.healthy(srv)
    srv.wait_log(r"auth_user petrel-nosuch-account does not exist")
    pids = crash_util.children(srv.proc.pid)
    auth = [p for p in pids if b"PETREL_ROLE=auth" in environ(p)]
    assert len(auth) == 1, pids
    st = status_fields(auth[0])
    assert [int(x) for x in st["Uid"]] == [MAIL.pw_uid] * 4, st["Uid"]
    assert [int(x) for x in st["Gid"]] == [MAIL.pw_gid] * 4, st["Gid"]
    st = status_fields(srv.proc.pid)
    assert [int(x) for x in st["Uid"]] == [MAIL.pw_uid] * 4, st["Uid"]
