"""IMAP4rev2 (RFC 9051) beside IMAP4rev1: both advertised; ENABLE
IMAP4rev2 switches one session to rev2's rules and leaves every other
session as it was. After it: no \\Recent flag and no RECENT response,
SELECT without the UNSEEN code but with the mailbox's LIST response and
OK [CLOSED] when another mailbox was selected, SEARCH answered by ESEARCH,
mailbox names in UTF-8 both ways (modified UTF-7 on disk and for rev1
sessions), and STATUS DELETED. Two sessions and a delivery in the same
test, one rev1 and one rev2. One server for the module (SQLite)."""

import re

import pytest

from imap_util import (ALICE, PASSWORD, Literal, check_stopped,  # noqa: F401
                       folders_on_disk, imap_instance, message, mutf7_encode, reset_maildirs,
                       start_imap)

from harness.conn import capabilities

DAVE = "dave@example.test"


@pytest.fixture(scope="module")
def srv(imap_instance):
    reset_maildirs(imap_instance)
    imap_instance.add_user(DAVE, PASSWORD)
    s = start_imap(imap_instance)
    yield s
    problems = check_stopped([s])
    assert not problems, problems


def rev2(srv, user=ALICE):
    c = srv.session(user=user)
    r = c.ok("ENABLE IMAP4rev2")
    assert r.data("ENABLED") == [b"IMAP4rev2"], r
    return c


def test_capability_and_enable(srv):
    with srv.conn() as c:
        caps = capabilities(c.ok("CAPABILITY").data("CAPABILITY")[0])
        assert "IMAP4REV1" in caps and "IMAP4REV2" in caps, caps
        c.bad("ENABLE IMAP4rev2")          # not before login (RFC 5161)
        c.login()
        caps = capabilities(c.ok("CAPABILITY").data("CAPABILITY")[0])
        assert "IMAP4REV2" in caps and "ENABLE" in caps, caps
        # unknown names are ignored; the known one is named once
        r = c.ok("ENABLE X-NOTHING imap4REV2")
        assert r.data("ENABLED") == [b"IMAP4rev2"], r
        r = c.ok("ENABLE IMAP4rev2")
        assert r.data("ENABLED") == [b""] or r.find(r"^\* ENABLED$"), r
        c.bad('ENABLE "IMAP4rev2"')
        c.logout()


def test_recent_and_select(srv):
    """A delivery seen by a rev1 and a rev2 session: RECENT and \\Recent
    for rev1 only; rev2's SELECT has no UNSEEN code, has the LIST of
    the mailbox, and OK [CLOSED] when it replaces a selected mailbox."""
    srv.deliver(DAVE, message(1))
    srv.deliver(DAVE, message(2))
    with srv.session(user=DAVE) as old, rev2(srv, DAVE) as new:
        r = new.ok("EXAMINE INBOX")
        assert not r.numbered("RECENT"), r
        assert not r.find(r"\[UNSEEN "), r
        assert r.find(r'^\* LIST \(\\HasNoChildren\) "\." INBOX$'), r
        assert not r.find(r"\[CLOSED\]"), r
        assert r.numbered("EXISTS") == [2], r
        r = new.ok("FETCH 1:* FLAGS")
        assert not r.find(r"\\Recent"), r
        r = old.ok("SELECT INBOX")           # takes \Recent (rev1 rules)
        assert r.numbered("RECENT") == [2], r
        assert r.find(r"\[UNSEEN 1\]"), r
        assert not r.data("LIST"), r
        flags = old.ok("FETCH 1 FLAGS").fetches()[1]["FLAGS"]
        assert "\\Recent" in [f.decode() if isinstance(f, bytes) else f for f in flags], flags

        # a delivery while both are selected: EXISTS to both, RECENT to rev1
        srv.deliver(DAVE, message(3))
        r = old.ok("NOOP")
        deadline = 50
        while not r.numbered("EXISTS") and deadline:
            r = old.ok("NOOP")
            deadline -= 1
        assert r.numbered("EXISTS") == [3] and r.numbered("RECENT") == [3], r
        r = new.ok("NOOP")
        while not r.numbered("EXISTS") and deadline:
            r = new.ok("NOOP")
            deadline -= 1
        assert r.numbered("EXISTS") == [3], r
        assert not r.numbered("RECENT"), r

        # SELECT while selected: OK [CLOSED] first (RFC 9051 6.3.2), then
        # the new mailbox's responses; a special-use folder's LIST
        r = new.ok("SELECT Sent")          # made at the first login
        assert r.untagged and re.match(rb"\* OK \[CLOSED\]", r.untagged[0]), r
        assert r.find(r'^\* LIST \(\\HasNoChildren \\Sent\) "\." Sent$'), r
        r = old.ok("SELECT Sent")
        assert not r.find(r"\[CLOSED\]"), r
        new.logout()
        old.logout()


def test_search_is_esearch(srv):
    with srv.session(user=DAVE) as old, rev2(srv, DAVE) as new:
        old.select("INBOX")
        new.select("INBOX")
        r = old.ok("SEARCH ALL")
        assert r.search() == [1, 2, 3] and not r.data("ESEARCH"), r
        r = new.ok("SEARCH ALL")
        assert not r.data("SEARCH"), r
        assert r.data("ESEARCH") == [b'(TAG "%s") ALL 1:3' % r.tag], r
        r = new.ok("UID SEARCH 2:3")
        uids = old.ok("UID SEARCH 2:3").search()
        assert r.data("ESEARCH") == [b'(TAG "%s") UID ALL %d:%d' % (r.tag, uids[0], uids[1])], r
        r = new.ok("SEARCH SUBJECT no-such-subject-anywhere")
        assert r.data("ESEARCH") == [b'(TAG "%s")' % r.tag], r
        # an explicit RETURN is kept
        r = new.ok("SEARCH RETURN (COUNT) ALL")
        assert r.data("ESEARCH") == [b'(TAG "%s") COUNT 3' % r.tag], r
        new.logout()
        old.logout()


def test_utf8_mailbox_names(srv):
    """rev2 names are UTF-8 both ways; on disk and for rev1 sessions the
    same folders have their modified UTF-7 names."""
    name = "Entwürfe"
    m7 = "Entw&APw-rfe"
    with srv.session(user=DAVE) as old, rev2(srv, DAVE) as new:
        new.ok('CREATE "%s"' % name)
        assert m7 in folders_on_disk(srv.instance, DAVE), folders_on_disk(srv.instance, DAVE)
        r = new.ok('LIST "" "Entw*"')
        assert r.find(r'^\* LIST \(\\HasNoChildren\) "\." "Entwürfe"$'), r
        r = old.ok('LIST "" "Entw*"')
        assert r.find(r'^\* LIST \(\\HasNoChildren\) "\." %s$' % re.escape(m7)), r
        # the same folder by either name, each session its own way
        r = new.ok('STATUS "%s" (MESSAGES)' % name)
        assert r.data("STATUS") == ['"Entwürfe" (MESSAGES 0)'.encode()], r
        r = old.ok("STATUS %s (MESSAGES)" % m7)
        assert r.data("STATUS") == [("%s (MESSAGES 0)" % m7).encode()], r
        # a rev2 client's "&" is a plain character
        new.ok('CREATE "R&D"')
        assert "R&-D" in folders_on_disk(srv.instance, DAVE)
        assert new.ok('LIST "" "R*"').find(r'"\." "?R&D"?$')
        assert old.ok('LIST "" "R*"').find(r'"\." "?R&-D"?$')
        # APPEND, COPY, MOVE, RENAME, SUBSCRIBE, GETQUOTAROOT with UTF-8
        new.ok('APPEND "%s" ' % name, Literal(message(9), plus=True))
        new.select("INBOX")
        new.ok('COPY 1 "%s"' % name)
        new.ok('MOVE 2 "%s"' % name)
        assert new.ok('STATUS "%s" (MESSAGES)' % name).data("STATUS") == \
            ['"Entwürfe" (MESSAGES 3)'.encode()]
        new.ok('RENAME "%s" "Черновики"' % name)
        r = old.ok('LIST "" "*"')
        assert r.find(r'"\." %s$' % re.escape(mutf7_encode("Черновики"))), r
        new.ok('SUBSCRIBE "Черновики"')
        r = new.ok('LSUB "" "Ч*"')
        assert r.find(r'^\* LSUB \(\\HasNoChildren\) "\." "Черновики"$'), r
        r = new.ok('GETQUOTAROOT "Черновики"')
        assert r.find(r'^\* QUOTAROOT "Черновики"'), r
        # patterns match the UTF-8 names, prefixes of non-ASCII included
        r = new.ok('LIST "" "Черн%"')
        assert r.find(r'"\." "Черновики"$'), r
        r = new.ok('LIST "" ("Ч*" "nothing*")')
        assert len(r.data("LIST")) == 1, r
        r = new.ok('LIST "" "*ики"')
        assert len(r.data("LIST")) == 1, r
        r = new.ok('SELECT "Черновики"')
        assert r.numbered("EXISTS") == [3], r
        assert r.find(r'^\* LIST \(\\HasNoChildren\) "\." "Черновики"$'), r
        # not UTF-8: BAD, nothing made
        before = folders_on_disk(srv.instance, DAVE)
        r = new.command(b'CREATE "bad\xff\xfename"')
        assert r.status == "BAD", r
        assert folders_on_disk(srv.instance, DAVE) == before
        # a rev1 session's 8-bit name is refused as before
        r = old.command('CREATE "Entwürfe2"'.encode())
        assert r.status in ("BAD", "NO"), r
        new.logout()
        old.logout()


def test_status_deleted(srv):
    with rev2(srv, DAVE) as new, srv.session(user=DAVE) as old:
        new.ok("CREATE Del")
        for k in range(4):
            new.ok("APPEND Del ", Literal(message(20 + k), plus=True))
        new.select("Del")
        new.ok("STORE 2:3 +FLAGS.SILENT (\\Deleted)")
        r = old.ok("STATUS Del (MESSAGES DELETED)")
        assert r.data("STATUS") == [b"Del (MESSAGES 4 DELETED 2)"], r
        new.ok("EXPUNGE")
        r = new.ok("STATUS Del (DELETED SIZE)")
        assert re.match(rb"Del \(DELETED 0 SIZE \d+\)$", r.data("STATUS")[0]), r
        new.logout()
        old.logout()


def test_metadata_and_notify_names(srv):
    """METADATA and NOTIFY take and give UTF-8 names in a rev2 session;
    a rev1 session sees the same folder by its modified UTF-7 name."""
    name = "Übersicht"
    m7 = mutf7_encode(name)
    with rev2(srv, DAVE) as new, srv.session(user=DAVE) as old:
        new.ok('CREATE "%s"' % name)
        new.ok('SETMETADATA "%s" (/private/comment "für später")' % name)
        r = new.ok('GETMETADATA "%s" /private/comment' % name)
        assert r.find(r'^\* METADATA "Übersicht" \(/private/comment '), r
        r = old.ok("GETMETADATA %s /private/comment" % m7)
        assert r.find(r'^\* METADATA %s \(/private/comment ' % re.escape(m7)), r
        r = new.ok('GETMETADATA (DEPTH 1) "%s" /private' % name)
        assert r.find(r'^\* METADATA "Übersicht" '), r
        # NOTIFY by a UTF-8 name; an append by the rev1 session is told
        # as a STATUS with the UTF-8 name
        new.ok('NOTIFY SET (MAILBOXES "%s" (MessageNew MessageExpunge))' % name)
        old.ok("APPEND %s " % m7, Literal(message(40), plus=True))
        got, seen = new.read_until(rb'^\* STATUS "\xc3\x9cbersicht" \(MESSAGES 1 ', timeout=20)
        assert got is not None, seen
        new.ok("NOTIFY NONE")
        r = new.command(b'NOTIFY SET (MAILBOXES "bad\xff" (MessageNew))')
        assert r.status == "BAD", r
        new.logout()
        old.logout()
