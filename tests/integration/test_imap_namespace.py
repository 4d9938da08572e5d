"""IMAP mailbox names over a maildir moved from Courier-IMAP (issue 18 item
2): imap_namespace_prefix = INBOX. gives Courier's view (RFC 2342 personal
namespace "INBOX." with separator ".", INBOX.Work is the folder .Work) for
every command that takes a mailbox name, and refuses names outside it; the
default "" takes Courier's INBOX.<x> for an existing folder x instead of
making a second .INBOX.x beside it. The maildirs are planted as Courier
leaves them (Maildir++ folders, maildirfolder, courierimapsubscribed)."""

import imaplib
import os

import pytest

from imap_util import (ALICE, imap_inst, imap_instance, imap_start,  # noqa: F401
                       list_attrs, list_names, maildir_of, make_folder, message,
                       message_files, parse, put)

PREFIX = ("imap_namespace_prefix=INBOX.",)
COURIER_FOLDERS = ["Drafts", "Sent", "Trash", "Work", "Work.Projects"]
COURIER_SUBSCRIBED = "INBOX\nINBOX.Sent\nINBOX.Drafts\nINBOX.Trash\nINBOX.Work\n"


def courier_maildir(inst, addr=ALICE):
    """A maildir as Courier-IMAP leaves it: Maildir++ folders, one message
    in INBOX, .Work and .Sent, and Courier's subscription file."""
    md = maildir_of(inst, addr)
    for f in COURIER_FOLDERS:
        make_folder(inst, addr, f)
    put(inst, addr, message(1), flags="S")
    put(inst, addr, message(2), folder="Work", flags="S")
    put(inst, addr, message(3), folder="Sent", flags="S")
    path = os.path.join(md, "courierimapsubscribed")
    with open(path, "w") as f:
        f.write(COURIER_SUBSCRIBED)
    st = os.stat(md)
    os.chown(path, st.st_uid, st.st_gid)
    return md


def text(v):
    """An atom or string of a parsed response as str (lists item by item)."""
    if isinstance(v, list):
        return [text(x) for x in v]
    return v.decode() if isinstance(v, bytes) else v


def dot_dirs(md):
    return sorted(n for n in os.listdir(md) if n.startswith(".") and n not in (".", ".."))


def count(inst, folder):
    return len(message_files(inst, ALICE, folder))


def names(c, ref="", pat="*"):
    return list_names(c.ok('LIST "%s" "%s"' % (ref, pat)))


@pytest.fixture
def courier(imap_inst):
    courier_maildir(imap_inst)
    return imap_inst


# --------------------------------------------------------------------------
# imap_namespace_prefix = INBOX.


def test_namespace_answers_inbox_prefix(courier, imap_start):
    srv = imap_start(courier, PREFIX)
    with srv.session() as c:
        ns = c.ok("NAMESPACE").data("NAMESPACE")
        assert len(ns) == 1 and parse(ns[0]) == [[[b"INBOX.", b"."]], None, None], ns
        c.logout()


def test_prefix_list_shows_courier_names(courier, imap_start):
    srv = imap_start(courier, PREFIX)
    with srv.session() as c:
        assert names(c) == ["INBOX"] + ["INBOX." + f for f in COURIER_FOLDERS]
        at = list_attrs(c.ok('LIST "" "*"'))
        assert "\\haschildren" in at["INBOX"], at
        assert "\\haschildren" in at["INBOX.Work"], at
        assert "\\hasnochildren" in at["INBOX.Work.Projects"], at
        assert "\\sent" in at["INBOX.Sent"] and "\\drafts" in at["INBOX.Drafts"], at
        assert "\\trash" in at["INBOX.Trash"], at
        assert names(c, "", "%") == ["INBOX"]
        assert names(c, "INBOX.", "%") == ["INBOX.Drafts", "INBOX.Sent", "INBOX.Trash",
                                           "INBOX.Work"]
        assert names(c, "", "inbox.W*") == ["INBOX.Work", "INBOX.Work.Projects"]
        assert names(c, "", "INBOX.Work.%") == ["INBOX.Work.Projects"]
        assert names(c, "", "Work*") == []
        su = list_names(c.ok('LIST (SPECIAL-USE) "" "*"'))
        assert su == ["INBOX.Drafts", "INBOX.Sent", "INBOX.Trash"], su
        # Courier's subscriptions, by Courier's names
        assert list_names(c.ok('LSUB "" "*"')) == ["INBOX", "INBOX.Drafts", "INBOX.Sent",
                                                   "INBOX.Trash", "INBOX.Work"]
        c.logout()
    # a Courier maildir is no first login: no Junk or Archive made
    assert dot_dirs(maildir_of(courier, ALICE)) == ["." + f for f in COURIER_FOLDERS]


def test_prefix_every_command_maps_to_the_folder(courier, imap_start):
    inst = courier
    md = maildir_of(inst, ALICE)
    srv = imap_start(inst, PREFIX)
    with srv.session() as c:
        assert c.select("INBOX.Work").numbered("EXISTS") == [1]
        assert c.examine("inbox.Work.Projects").numbered("EXISTS") == [0]
        r = c.ok("STATUS INBOX.Sent (MESSAGES UIDNEXT)")
        st = [text(x) for x in parse(r.data("STATUS")[0])]
        assert st[0] == "INBOX.Sent" and st[1][:2] == ["MESSAGES", "1"], st
        r = c.ok("GETQUOTAROOT INBOX.Work")
        assert r.data("QUOTAROOT"), r
        assert text(parse(r.data("QUOTAROOT")[0])[0]) == "INBOX.Work", r
        c.ok("APPEND INBOX.Sent {5+}\r\nhello")
        assert count(inst, "Sent") == 2
        c.select("INBOX.Work")
        c.ok("COPY 1 INBOX.Trash")
        assert count(inst, "Trash") == 1
        c.ok("MOVE 1 INBOX.Drafts")
        assert count(inst, "Drafts") == 1 and count(inst, "Work") == 0
        c.ok("UNSELECT")
        c.ok("CREATE INBOX.Clients")
        c.ok("CREATE INBOX.Clients.Acme")
        assert os.path.isdir(os.path.join(md, ".Clients", "cur"))
        assert os.path.isdir(os.path.join(md, ".Clients.Acme", "cur"))
        assert c.no("CREATE INBOX.Clients").code() == "ALREADYEXISTS"
        assert c.no("CREATE INBOX.Sent").code() == "ALREADYEXISTS"
        c.ok("RENAME INBOX.Clients INBOX.Customers")
        assert os.path.isdir(os.path.join(md, ".Customers.Acme"))
        assert not os.path.exists(os.path.join(md, ".Clients"))
        c.ok("SUBSCRIBE INBOX.Customers")
        assert "INBOX.Customers" in list_names(c.ok('LSUB "" "*"'))
        c.ok("UNSUBSCRIBE INBOX.Customers")
        c.ok("DELETE INBOX.Customers.Acme")
        c.ok("DELETE INBOX.Customers")
        assert not os.path.exists(os.path.join(md, ".Customers"))
        # RENAME INBOX moves INBOX's messages into the new folder
        c.ok("RENAME INBOX INBOX.Old")
        assert count(inst, "Old") == 1 and count(inst, "INBOX") == 0
        c.logout()
    # nothing was made under Courier's INBOX. twice
    assert not [d for d in dot_dirs(md) if d.upper().startswith(".INBOX")], dot_dirs(md)
    # the subscription file stayed Courier's, in Courier's form
    with open(os.path.join(md, "courierimapsubscribed")) as f:
        assert f.read() == COURIER_SUBSCRIBED
    assert not os.path.exists(os.path.join(md, "subscriptions"))


def test_prefix_refuses_names_outside_it(courier, imap_start):
    inst = courier
    md = maildir_of(inst, ALICE)
    before = dot_dirs(md)
    root = os.listdir(os.path.dirname(md))
    srv = imap_start(inst, PREFIX)
    with srv.session() as c:
        for cmd in ("SELECT Work", "EXAMINE Sent", "STATUS Work (MESSAGES)",
                    "DELETE Sent", "GETQUOTAROOT Work", "SUBSCRIBE Work",
                    "RENAME Work INBOX.W", "APPEND Sent {3+}\r\nabc"):
            assert c.no(cmd).code() == "NONEXISTENT", cmd
        assert c.no("CREATE Foo").code() == "CANNOT"
        assert c.no("RENAME INBOX.Work Work2").code() == "CANNOT"
        c.select("INBOX")
        assert c.no("COPY 1 Trash").code() == "NONEXISTENT"
        assert c.no("MOVE 1 Trash").code() == "NONEXISTENT"
        # hostile names inside the prefix: refused, nothing made anywhere
        for name in ("INBOX.INBOX", "INBOX..", "INBOX...x", "INBOX.a/b",
                     "INBOX.../../x", "INBOX.Work.", "INBOX.%"):
            r = c.command('CREATE "%s"' % name)
            assert r.status in ("NO", "BAD") or name == "INBOX.Work.", (name, r)
            r = c.command('SELECT "%s"' % name)
            assert r.status in ("NO", "BAD"), (name, r)
        c.ok("NOOP")
        c.logout()
    assert dot_dirs(md) == before
    assert os.listdir(os.path.dirname(md)) == root


def test_prefix_with_imaplib(courier, imap_start):
    srv = imap_start(courier, PREFIX)
    m = srv.login()
    typ, ns = m.namespace()
    assert typ == "OK" and b'(("INBOX." "."))' in ns[0], ns
    typ, data = m.list()
    assert typ == "OK"
    listed = sorted(line.rsplit(b" ", 1)[1].strip(b'"').decode() for line in data)
    assert listed == ["INBOX"] + ["INBOX." + f for f in COURIER_FOLDERS], data
    assert m.select("INBOX.Work") == ("OK", [b"1"])
    typ, _ = m.append("INBOX.Sent", None, None, message(9))
    assert typ == "OK" and count(courier, "Sent") == 2
    assert m.create("INBOX.Lists")[0] == "OK"
    assert m.subscribe("INBOX.Lists")[0] == "OK"
    typ, data = m.lsub()
    assert any(line.endswith(b"INBOX.Lists") for line in data), data
    typ, data = m.select("Sent")
    assert typ == "NO", data
    m.logout()
    with open(os.path.join(maildir_of(courier, ALICE), "courierimapsubscribed")) as f:
        assert f.read() == COURIER_SUBSCRIBED + "INBOX.Lists\n"


# --------------------------------------------------------------------------
# the default, "": Courier's names of existing folders still work


def test_default_takes_courier_names_of_existing_folders(courier, imap_start):
    inst = courier
    md = maildir_of(inst, ALICE)
    srv = imap_start(inst)
    with srv.session() as c:
        ns = c.ok("NAMESPACE").data("NAMESPACE")
        assert parse(ns[0]) == [[[b"", b"."]], None, None], ns
        assert names(c) == sorted(["INBOX"] + COURIER_FOLDERS)
        assert c.select("INBOX.Work").numbered("EXISTS") == [1]
        assert c.examine("INBOX.Work.Projects").numbered("EXISTS") == [0]
        c.ok("STATUS INBOX.Sent (MESSAGES)")
        c.ok("APPEND INBOX.Sent {5+}\r\nhello")
        assert count(inst, "Sent") == 2
        # a client set up under Courier cannot split its Sent folder
        assert c.no("CREATE INBOX.Sent").code() == "ALREADYEXISTS"
        assert c.no("CREATE INBOX.Work.Projects").code() == "ALREADYEXISTS"
        c.ok("SUBSCRIBE INBOX.Work.Projects")
        assert "Work.Projects" in list_names(c.ok('LSUB "" "*"'))
        # a new child of a Courier-named folder goes beside its siblings
        c.ok("CREATE INBOX.Work.Reports")
        assert os.path.isdir(os.path.join(md, ".Work.Reports", "cur"))
        assert c.select("Work.Reports").numbered("EXISTS") == [0]
        c.ok("RENAME INBOX.Work.Reports INBOX.Work.Old")
        assert os.path.isdir(os.path.join(md, ".Work.Old"))
        assert not [d for d in dot_dirs(md) if d.upper().startswith(".INBOX")], dot_dirs(md)
        # a name that is no folder at all is INBOX's child, as Dovecot has it
        c.ok("CREATE INBOX.Fresh")
        assert os.path.isdir(os.path.join(md, ".INBOX.Fresh", "cur"))
        assert "INBOX.Fresh" in names(c)
        assert "\\haschildren" in list_attrs(c.ok('LIST "" "INBOX"'))["INBOX"]
        assert c.select("INBOX.Fresh").numbered("EXISTS") == [0]
        c.logout()
    with open(os.path.join(md, "courierimapsubscribed")) as f:
        assert f.read() == COURIER_SUBSCRIBED + "INBOX.Work.Projects\n"


def test_default_prefers_an_existing_inbox_child(imap_inst, imap_start):
    """Dovecot with a "" namespace keeps INBOX's children as .INBOX.x: such a
    folder keeps its name even when a folder x exists too."""
    inst = imap_inst
    make_folder(inst, ALICE, "Sent")
    make_folder(inst, ALICE, "INBOX.Sent")
    put(inst, ALICE, message(1), folder="INBOX.Sent")
    put(inst, ALICE, message(2), folder="INBOX.Sent")
    srv = imap_start(inst)
    with srv.session() as c:
        assert c.select("INBOX.Sent").numbered("EXISTS") == [2]
        assert c.select("Sent").numbered("EXISTS") == [0]
        assert "INBOX.Sent" in names(c) and "Sent" in names(c)
        c.logout()


def test_prefix_shows_a_dovecot_inbox_child_as_courier_does(imap_inst, imap_start):
    """A folder .INBOX.Old (INBOX's child under a "" namespace) is
    INBOX.INBOX.Old in Courier's view, and only that name opens it."""
    inst = imap_inst
    make_folder(inst, ALICE, "Sent")
    make_folder(inst, ALICE, "INBOX.Old")
    put(inst, ALICE, message(1), folder="INBOX.Old")
    srv = imap_start(inst, PREFIX)
    with srv.session() as c:
        n = names(c)
        assert "INBOX.INBOX.Old" in n and "INBOX.Sent" in n, n
        assert c.select("INBOX.INBOX.Old").numbered("EXISTS") == [1]
        assert c.no("SELECT INBOX.Old").code() == "NONEXISTENT"
        assert c.no("SELECT INBOX.INBOX").code() == "CANNOT"
        c.logout()
