"""IMAP subscriptions in the files the previous server left (issue 18 item
7): Dovecot's "subscriptions" (version 1: one name a line; version 2: "V\\t2",
an empty line, levels separated by TAB) and Courier's
"courierimapsubscribed" (INBOX.<name> lines) are read, and SUBSCRIBE /
UNSUBSCRIBE write back each file the maildir has, in its own format and
version, keeping the lines petrel does not understand; a maildir with
neither gets petrel's own (Dovecot version 1). Files are planted as Dovecot
2.3 and Courier-IMAP 5 write them."""

import os
import stat

import pytest

from imap_util import (ALICE, imap_inst, imap_instance, imap_server, imap_start,  # noqa: F401
                       list_attrs, maildir_of, make_folder)

DOVECOT = "subscriptions"
COURIER = "courierimapsubscribed"


def plant(inst, name, text, mode=0o600):
    md = maildir_of(inst, ALICE)
    make_folder(inst, ALICE)
    path = os.path.join(md, name)
    with open(path, "w") as f:
        f.write(text)
    st = os.stat(md)
    os.chown(path, st.st_uid, st.st_gid)
    os.chmod(path, mode)
    return path


def content(inst, name):
    path = os.path.join(maildir_of(inst, ALICE), name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return f.read()


def lsub(c, pat="*"):
    """The subscribed names LSUB shows (not the \\Noselect levels above)."""
    at = list_attrs(c.ok('LSUB "" "%s"' % pat))
    return sorted(n for n, a in at.items() if "\\noselect" not in a)


def leftovers(inst):
    """Files left in the maildir's tmp/ (a write that was not renamed)."""
    return os.listdir(os.path.join(maildir_of(inst, ALICE), "tmp"))


def folders(inst, *names):
    for n in names:
        make_folder(inst, ALICE, n)


def test_dovecot_v2_read_and_kept_v2(imap_inst, imap_start):
    inst = imap_inst
    folders(inst, "Work", "Work.Projects", "Sent")
    plant(inst, DOVECOT, "V\t2\n\nINBOX\nWork\nWork\tProjects\nshared/bob/INBOX\n")
    srv = imap_start(inst)
    with srv.session() as c:
        assert lsub(c) == ["INBOX", "Work", "Work.Projects"]
        assert lsub(c, "Work.%") == ["Work.Projects"]
        at = list_attrs(c.ok('LIST (SUBSCRIBED) "" "*"'))
        assert sorted(at) == ["INBOX", "Work", "Work.Projects"], at
        c.ok("SUBSCRIBE Sent")
        assert content(inst, DOVECOT) == (
            "V\t2\n\nINBOX\nWork\nWork\tProjects\nshared/bob/INBOX\nSent\n")
        c.ok("UNSUBSCRIBE Work.Projects")
        assert content(inst, DOVECOT) == "V\t2\n\nINBOX\nWork\nshared/bob/INBOX\nSent\n"
        assert lsub(c) == ["INBOX", "Sent", "Work"]
        c.logout()
    assert content(inst, COURIER) is None
    assert leftovers(inst) == []
    # no first-login folders on a maildir Dovecot used
    assert not os.path.exists(os.path.join(maildir_of(inst, ALICE), ".Archive"))


def test_dovecot_v1_kept_v1(imap_inst, imap_start):
    inst = imap_inst
    folders(inst, "Work", "Work.Projects", "Sent")
    plant(inst, DOVECOT, "INBOX\nWork.Projects\n")
    srv = imap_start(inst)
    with srv.session() as c:
        assert lsub(c) == ["INBOX", "Work.Projects"]
        # '%' shows the unsubscribed parent as \Noselect (RFC 3501 6.3.9)
        at = list_attrs(c.ok('LSUB "" "%"'))
        assert "\\noselect" in at["Work"], at
        c.ok("SUBSCRIBE Sent")
        c.ok("SUBSCRIBE Sent")
        assert content(inst, DOVECOT) == "INBOX\nWork.Projects\nSent\n"
        c.logout()


def test_courier_file_read_and_kept_courier(imap_inst, imap_start):
    inst = imap_inst
    folders(inst, "Work", "Work.Projects", "Sent", "Trash")
    plant(inst, COURIER, "INBOX\nINBOX.Sent\nshared.bob.Work\nINBOX.Work.Projects\n",
          mode=0o640)
    srv = imap_start(inst)
    with srv.session() as c:
        assert lsub(c) == ["INBOX", "Sent", "Work.Projects"]
        c.ok("SUBSCRIBE Trash")
        c.ok("UNSUBSCRIBE Sent")
        assert lsub(c) == ["INBOX", "Trash", "Work.Projects"]
        c.logout()
    assert content(inst, COURIER) == (
        "INBOX\nshared.bob.Work\nINBOX.Work.Projects\nINBOX.Trash\n")
    st = os.stat(os.path.join(maildir_of(inst, ALICE), COURIER))
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert content(inst, DOVECOT) is None
    assert leftovers(inst) == []


def test_both_files_kept_current(imap_inst, imap_start):
    inst = imap_inst
    folders(inst, "Work", "Work.Projects", "Sent")
    plant(inst, DOVECOT, "V\t2\n\nINBOX\nWork\tProjects\n")
    plant(inst, COURIER, "INBOX\nINBOX.Sent\n")
    srv = imap_start(inst, ("imap_namespace_prefix=INBOX.",))
    with srv.session() as c:
        # the union, by the names of the configured namespace
        assert lsub(c) == ["INBOX", "INBOX.Sent", "INBOX.Work.Projects"]
        c.ok("SUBSCRIBE INBOX.Work")
        c.ok("UNSUBSCRIBE INBOX.Sent")
        c.ok("UNSUBSCRIBE INBOX.Work.Projects")
        assert lsub(c) == ["INBOX", "INBOX.Work"]
        c.logout()
    assert content(inst, DOVECOT) == "V\t2\n\nINBOX\nWork\n"
    assert content(inst, COURIER) == "INBOX\nINBOX.Work\n"


def test_first_login_writes_petrel_file(imap_server):
    inst = imap_server.instance
    with imap_server.session() as c:
        assert lsub(c) == ["Archive", "Drafts", "INBOX", "Junk", "Sent", "Trash"]
        c.logout()
    lines = content(inst, DOVECOT).splitlines()
    assert sorted(lines) == ["Archive", "Drafts", "INBOX", "Junk", "Sent", "Trash"], lines
    assert content(inst, COURIER) is None


@pytest.mark.parametrize("name", [DOVECOT, COURIER])
def test_unreadable_subscription_file_is_refused(imap_inst, imap_start, tmp_path, name):
    """A subscription file that is a symbolic link (it could lead into
    another user's files) is neither read nor replaced: NO, no crash, the
    link and its target unchanged."""
    inst = imap_inst
    target = tmp_path / "elsewhere"
    target.write_text("INBOX.Secret\nSecret\n")
    md = maildir_of(inst, ALICE)
    make_folder(inst, ALICE)
    os.symlink(str(target), os.path.join(md, name))
    srv = imap_start(inst)
    with srv.session() as c:
        assert c.no('LSUB "" "*"').code() == "SERVERBUG"
        assert c.no("SUBSCRIBE INBOX").code() == "SERVERBUG"
        c.ok("NOOP")
        c.logout()
    assert os.path.islink(os.path.join(md, name))
    assert target.read_text() == "INBOX.Secret\nSecret\n"


def test_concurrent_subscribes_lose_nothing(imap_inst, imap_start):
    """Sessions subscribing at the same time (each a read, change, rename of
    the same file) lose none of each other's names: the maildir's lock."""
    import threading
    inst = imap_inst
    plant(inst, DOVECOT, "V\t2\n\nINBOX\n")
    srv = imap_start(inst)
    errors = []

    def worker(k):
        try:
            with srv.session() as c:
                for i in range(15):
                    c.ok("SUBSCRIBE S%d.N%d" % (k, i))
                c.logout()
        except Exception as e:  # reported below, in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    lines = content(inst, DOVECOT).split("\n")
    assert lines[:2] == ["V\t2", ""], lines
    want = {"S%d\tN%d" % (k, i) for k in range(3) for i in range(15)}
    assert want <= set(lines) and len(lines) == 2 + 1 + 45 + 1, lines
    assert leftovers(inst) == []
