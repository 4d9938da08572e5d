"""Symbolic links in maildirs (SPEC: a maildir's files and directories are
its own): a message file, a folder, or the new/ cur/ tmp/ of a maildir that
is a symbolic link is never followed -- not by POP3, not by IMAP, not by
delivery. A refused delivery is a temporary error (451), logged, and nothing
is written outside. SQLite; one fresh instance per test."""

import os

import pytest

import hostile_util
from hostile_util import ALICE, BOB, PASSWORD, pop3_login
from harness.maildir import maildir_of, put
from pop3_util import message

SECRET = b"SECRET-OUTSIDE-THE-MAILDIR-4711"


@pytest.fixture
def srv(sqlite_instance, all_start):
    hostile_util.add_users(sqlite_instance)
    return all_start(sqlite_instance)


@pytest.fixture
def outside(tmp_path):
    """A directory outside mail_root with a file of secret content."""
    d = tmp_path / "outside"
    d.mkdir()
    (d / "secret").write_bytes(b"Subject: secret\n\n" + SECRET + b"\n")
    return d


def snapshot(path):
    """Names, sizes and contents of every file below path."""
    out = {}
    for root, dirs, files in os.walk(path):
        for n in files:
            p = os.path.join(root, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, path)] = f.read()
        for n in dirs:
            out[os.path.relpath(os.path.join(root, n), path) + "/"] = None
    return out


def pop3_everything(srv, user):
    """STAT, LIST, UIDL and RETR/TOP of every number up to 3: all answers."""
    c = pop3_login(srv, user)
    got = []
    try:
        got.append(c.cmd("STAT").encode())
        for cmd in ("LIST", "UIDL"):
            got.append(repr(c.cmd(cmd)).encode())
            got.append(repr(c.multi() if got[-1].startswith(b"'+OK") else "").encode())
        for i in (1, 2, 3):
            for cmd in ("RETR %d" % i, "TOP %d 5" % i, "LIST %d" % i, "UIDL %d" % i):
                r = c.cmd(cmd)
                got.append(r.encode())
                if r.startswith("+OK") and cmd.split()[0] in ("RETR", "TOP"):
                    got.append(repr(c.multi()).encode())
        c.quit()
    finally:
        c.close()
    return b"\n".join(got)


def test_pop3_symlinked_message_file(srv, outside):
    inst = srv.instance
    put(inst, ALICE, message(1))
    md = maildir_of(inst, ALICE)
    for sub in ("new", "cur"):
        os.symlink(str(outside / "secret"),
                   os.path.join(md, sub, "1700000000.M1P1Q1.evil%s%s" % (sub, ":2," if sub == "cur" else "")))
    got = pop3_everything(srv, ALICE)
    assert SECRET not in got, got
    assert b"+OK 1 " in got, "the symbolic links were listed: %r" % got[:200]
    hostile_util.healthy(srv)


def imap_fetch_all(srv, user, mailbox="INBOX"):
    with srv.imap() as c:
        r = c.command('LOGIN "%s" "%s"' % (user, PASSWORD))
        if r.status != "OK":    # the maildir refused at login
            return r.line
        r = c.command("SELECT ", mailbox)
        out = [r.line] + r.untagged
        if r.status == "OK":
            r = c.command("FETCH 1:* (RFC822.SIZE BODY.PEEK[])")
            out += [r.line] + r.untagged
        c.logout()
    return b"\n".join(out)


def test_imap_symlinked_message_file(srv, outside):
    inst = srv.instance
    put(inst, ALICE, message(1))
    md = maildir_of(inst, ALICE)
    os.symlink(str(outside / "secret"), os.path.join(md, "new", "1700000000.M2P2Q2.evil"))
    os.symlink(str(outside / "secret"), os.path.join(md, "cur", "1700000000.M3P3Q3.evil:2,S"))
    got = imap_fetch_all(srv, ALICE)
    assert SECRET not in got, got
    assert b"* 1 EXISTS" in got, got
    hostile_util.healthy(srv)
