"""Symbolic links in maildirs (SPEC: a maildir's files and directories are
its own): a message file, a folder, or the new/ cur/ tmp/ of a maildir that
is a symbolic link is never followed -- not by POP3, not by IMAP, not by
delivery. A refused delivery is a temporary error (451), logged, and nothing
is written outside. SQLite; one fresh instance per test."""

import os

import pytest

import hostile_util
from hostile_util import ALICE, BOB, PASSWORD, pop3_login
from harness.conn import Literal
from harness.maildir import make_folder, maildir_of, put
from pop3_util import message

SECRET = b"SECRET-OUTSIDE-THE-MAILDIR-4711"
BOBS = b"BOB-PRIVATE-MAIL-0815"


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


def test_message_file_replaced_by_symlink_after_listing(srv, outside):
    """The file of a listed message becomes a symbolic link before it is
    read: IMAP FETCH and POP3 RETR/TOP do not follow it."""
    inst = srv.instance
    md = maildir_of(inst, ALICE)
    name = put(inst, ALICE, message(1))
    path = os.path.join(md, "new", name)
    with srv.imap() as c:
        c.login(ALICE, PASSWORD)
        c.ok("EXAMINE INBOX")
        os.unlink(path)
        os.symlink(str(outside / "secret"), path)
        r = c.command("FETCH 1 BODY.PEEK[]")
        got = b"\n".join([r.line] + r.untagged)
        c.logout()
    assert SECRET not in got, got
    os.unlink(path)
    name = put(inst, BOB, message(2))
    path = os.path.join(maildir_of(inst, BOB), "new", name)
    c = pop3_login(srv, BOB)
    try:
        assert c.cmd("STAT").startswith("+OK 1 ")
        os.unlink(path)
        os.symlink(str(outside / "secret"), path)
        got = b""
        for cmd in ("RETR 1", "TOP 1 5"):
            r = c.cmd(cmd)
            got += r.encode()
            if r.startswith("+OK"):
                got += repr(c.multi()).encode()
        c.quit()
    finally:
        c.close()
    assert SECRET not in got, got
    os.unlink(path)
    hostile_util.no_crash(srv)


def bob_with_mail(inst):
    put(inst, BOB, b"Subject: bob\n\n" + BOBS + b"\n")
    make_folder(inst, BOB, "Private")
    put(inst, BOB, b"Subject: bob2\n\n" + BOBS + b"\n", folder="Private")
    return maildir_of(inst, BOB)


def test_imap_symlinked_folder_to_another_maildir(srv):
    inst = srv.instance
    bob = bob_with_mail(inst)
    put(inst, ALICE, message(1))
    with srv.imap() as c:   # first login: the special-use folders
        c.login(ALICE, PASSWORD)
        c.logout()
    md = maildir_of(inst, ALICE)
    os.symlink(bob, os.path.join(md, ".Evil"))
    os.symlink(os.path.join(bob, ".Private"), os.path.join(md, ".Evil2"))
    before = snapshot(bob)
    seen = []
    with srv.imap() as c:
        c.login(ALICE, PASSWORD)
        r = c.ok('LIST "" "*"')
        assert not r.find(r"Evil"), "a symbolic link is listed: %r" % r.untagged
        r = c.ok('LSUB "" "*"')
        seen += r.untagged
        for box in ("Evil", "Evil2"):
            for cmd in ("SELECT %s" % box, "EXAMINE %s" % box,
                        "STATUS %s (MESSAGES UIDNEXT UNSEEN)" % box):
                r = c.command(cmd)
                seen += [r.line] + r.untagged
                assert r.status == "NO" and r.code() == "NONEXISTENT", (cmd, r)
            r = c.command("APPEND %s " % box, Literal(b"Subject: x\r\n\r\nhello\r\n"))
            assert r.status == "NO" and r.code() == "TRYCREATE", r
            c.ok("SELECT INBOX")
            r = c.command("COPY 1 %s" % box)
            assert r.status == "NO" and r.code() == "TRYCREATE", r
            r = c.command("MOVE 1 %s" % box)
            assert r.status == "NO" and r.code() == "TRYCREATE", r
            r = c.command("FETCH 1:* BODY.PEEK[]")
            seen += r.untagged
            c.ok("CLOSE")
            r = c.command("RENAME %s Stolen" % box)
            assert r.status == "NO", r
            r = c.command("RENAME INBOX %s" % box)
            assert r.status == "NO", r
            r = c.command("DELETE %s" % box)
            assert r.status == "NO", r
        c.logout()
    assert BOBS not in b"\n".join(seen)
    assert snapshot(bob) == before, "bob's maildir changed"
    assert os.path.islink(os.path.join(md, ".Evil"))
    hostile_util.healthy(srv)


@pytest.mark.parametrize("sub", ["new", "tmp", "cur", "maildir"])
def test_delivery_into_symlinked_dir_is_refused(srv, tmp_path, sub):
    """SMTP to a user whose maildir (or its new/ tmp/ cur/) is a symbolic
    link: 451, logged, and nothing is written outside."""
    inst = srv.instance
    bob = bob_with_mail(inst)
    out = tmp_path / "elsewhere"
    if sub == "maildir":
        os.rename(bob, str(out))
        os.symlink(str(out), bob)
    else:
        os.rename(os.path.join(bob, sub), str(out))
        os.symlink(str(out), os.path.join(bob, sub))
    before = snapshot(str(out))
    with srv.mx() as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<x@example.org>", 250)
        c.expect("RCPT TO:<%s>" % BOB, 250)
        c.expect("DATA", 354)
        c.send(b"Subject: in\r\n\r\nDELIVERED-OUTSIDE\r\n.\r\n")
        r = c.reply()
        assert r.code == 451, r
        c.expect("QUIT", 221)
    assert snapshot(str(out)) == before, "written outside the maildir"
    # stderr is read by a thread: the line may come a moment after the 451
    assert srv.wait_log(r"delivery failed.*symbolic link"), srv.log()[-2000:]
    hostile_util.no_crash(srv)


def test_symlinked_cur_is_not_followed(srv, outside):
    """alice's cur/ is a symbolic link to a directory with a message in
    it: neither IMAP nor POP3 shows it, nothing there changes."""
    inst = srv.instance
    put(inst, ALICE, message(1))
    md = maildir_of(inst, ALICE)
    ext = outside / "cur"
    ext.mkdir()
    (ext / "1700000000.M9P9Q9.ext:2,").write_bytes(b"Subject: s\n\n" + SECRET + b"\n")
    os.rename(os.path.join(md, "cur"), str(outside / "oldcur"))
    os.symlink(str(ext), os.path.join(md, "cur"))
    before = snapshot(str(outside))
    got = imap_fetch_all(srv, ALICE)
    assert SECRET not in got, got
    c = srv.pop3()
    c.ok("USER " + ALICE)
    r = c.cmd("PASS " + PASSWORD)
    got = r.encode()
    if r.startswith("+OK"):
        for cmd in ("STAT", "RETR 1", "RETR 2"):
            r = c.cmd(cmd)
            got += r.encode()
            if r.startswith("+OK") and cmd.startswith("RETR"):
                got += repr(c.multi()).encode()
    c.close()
    assert SECRET not in got, got
    assert snapshot(str(outside)) == before
    hostile_util.no_crash(srv)


def test_symlinked_maildir_is_not_opened(srv):
    """alice's maildir itself is a symbolic link to bob's: neither POP3 nor
    IMAP shows bob's mail, and nothing is created there (lock, folders)."""
    inst = srv.instance
    bob = bob_with_mail(inst)
    md = maildir_of(inst, ALICE)
    if os.path.isdir(md):
        os.rename(md, md + ".old")
    os.symlink(bob, md)
    before = snapshot(bob)
    c = srv.pop3()
    c.ok("USER " + ALICE)
    r = c.cmd("PASS " + PASSWORD)
    got = r.encode()
    if r.startswith("+OK"):
        for cmd in ("STAT", "RETR 1", "TOP 1 5"):
            r = c.cmd(cmd)
            got += r.encode()
            if r.startswith("+OK") and cmd != "STAT":
                got += repr(c.multi()).encode()
    c.close()
    got += imap_fetch_all(srv, ALICE)
    assert BOBS not in got, got
    assert snapshot(bob) == before, "bob's maildir changed"
    hostile_util.no_crash(srv)
