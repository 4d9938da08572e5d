"""IMAP NOTIFY (RFC 5465): two sessions of a user and SMTP deliveries in
each test. Session A asks with NOTIFY SET and then only reads: it learns of
a delivery to INBOX and of session B's APPEND, flag change and EXPUNGE in
other folders as untagged STATUS, of B's CREATE, RENAME (OLDNAME) and
DELETE as LIST, of B's SUBSCRIBE and UNSUBSCRIBE as LIST (\\Subscribed),
and, for SELECTED, of EXISTS with MessageNew's FETCH attributes, FETCH
FLAGS and EXPUNGE in the selected mailbox without sending a command;
SELECTED-DELAYED keeps EXPUNGE for the next command; NOTIFY SET STATUS
answers the current state first; NOTIFY NONE stops it all; the events and
syntax refused (BADEVENT, BAD). One server for the module."""

import re
import time

import pytest

from imap_util import (ALICE, PASSWORD, Literal, check_stopped, imap_instance,  # noqa: F401
                       message, reset_maildirs, start_imap)

from harness.conn import capabilities, parse

WAIT = 10  # seconds a notification may take at most (it takes well under one)


@pytest.fixture(scope="module")
def box(imap_instance):
    reset_maildirs(imap_instance)
    holder = {"srv": start_imap(imap_instance)}
    yield holder
    problems = check_stopped([holder["srv"]])
    assert not problems, problems


@pytest.fixture
def srv(box):
    return box["srv"]


@pytest.fixture
def two(srv):
    """Sessions A (the one that asks) and B (the one that changes)."""
    a = srv.session()
    b = srv.session()
    yield a, b
    a.close()
    b.close()


def status_of(line):
    """'* STATUS name (K v ...)' -> (name, {K: int})."""
    m = re.match(rb"\* STATUS ", line)
    assert m, line
    v = parse(line[m.end():])
    name = v[0].decode() if isinstance(v[0], bytes) else v[0]
    items = v[1]
    return name, {items[i].upper(): int(items[i + 1]) for i in range(0, len(items), 2)}


def wait_for(conn, pattern):
    got, seen = conn.read_until(pattern, timeout=WAIT)
    assert got is not None, "no %r within %ss; got %r" % (pattern, WAIT, seen)
    return got, seen


def wait_status(conn, name):
    got, _ = wait_for(conn, rb"^\* STATUS \"?" + re.escape(name.encode()) + rb"\"? ")
    return status_of(got)[1]


def test_capability(srv):
    with srv.conn() as c:
        assert "NOTIFY" not in capabilities(c.ok("CAPABILITY").data("CAPABILITY")[0])
        c.bad("NOTIFY NONE")
        c.login()
        assert "NOTIFY" in capabilities(c.ok("CAPABILITY").data("CAPABILITY")[0])
        c.logout()


def test_delivery_and_other_folders_reported_as_status(srv, two):
    """RFC 5465 5.2, 5.3, 5.1: a delivery to INBOX, B's APPEND to another
    folder, B's flag change and EXPUNGE there: A gets STATUS each time
    without a command; with STATUS the current state comes first."""
    a, b = two
    b.ok("CREATE work")
    b.ok("APPEND work ", Literal(message(1), plus=True))
    r = a.ok("NOTIFY SET STATUS (INBOXES (MessageNew MessageExpunge)) "
             "(PERSONAL (MessageNew MessageExpunge FlagChange))")
    first = dict(status_of(u) for u in r.untagged if u.startswith(b"* STATUS"))
    assert first["INBOX"].keys() == {"MESSAGES", "UIDNEXT", "UIDVALIDITY"}, first
    assert first["work"]["MESSAGES"] == 1 and first["work"]["UNSEEN"] == 1, first
    inbox0 = first["INBOX"]["MESSAGES"]

    srv.deliver(ALICE, message(2))
    st = wait_status(a, "INBOX")
    assert st["MESSAGES"] == inbox0 + 1 and st["UIDNEXT"] > first["INBOX"]["UIDNEXT"]

    b.ok("APPEND work ", Literal(message(3), plus=True))
    st = wait_status(a, "work")
    assert st["MESSAGES"] == 2 and st["UNSEEN"] == 2, st

    b.select("work")
    b.ok("STORE 1 +FLAGS (\\Seen)")
    st = wait_status(a, "work")
    assert st["MESSAGES"] == 2 and st["UNSEEN"] == 1, st

    b.ok("STORE 2 +FLAGS (\\Deleted)")
    b.ok("EXPUNGE")
    st = wait_status(a, "work")
    assert st["MESSAGES"] == 1, st
    # nothing else is pending: one change, one line
    assert a.nothing_pending(0.5)
    a.ok("NOOP")


def test_inboxes_alone_ignores_other_folders(srv, two):
    a, b = two
    b.ok("CREATE quiet")
    a.ok("NOTIFY SET (INBOXES (MessageNew MessageExpunge))")
    b.ok("APPEND quiet ", Literal(message(1), plus=True))
    srv.deliver(ALICE, message(4))
    got, seen = wait_for(a, rb"^\* STATUS")
    assert status_of(got)[0] == "INBOX", seen
    assert a.nothing_pending(0.5)
    b.ok("DELETE quiet")


def test_mailbox_name_and_subscription_events(two):
    """5.4 and 5.5: CREATE, RENAME (with OLDNAME, children too), DELETE;
    SUBSCRIBE and UNSUBSCRIBE."""
    a, b = two
    a.ok("NOTIFY SET (PERSONAL (MailboxName SubscriptionChange))")
    b.ok("CREATE newbox")
    got, _ = wait_for(a, rb"^\* LIST ")
    assert got == b'* LIST () "." "newbox"', got
    b.ok("CREATE newbox.kid")
    got, _ = wait_for(a, rb"^\* LIST ")
    assert got == b'* LIST () "." "newbox.kid"', got
    b.ok("RENAME newbox renamed")
    lines = []
    deadline = time.monotonic() + WAIT
    while len(lines) < 2 and time.monotonic() < deadline:
        got, _ = wait_for(a, rb"^\* LIST ")
        lines.append(got)
    assert sorted(lines) == [b'* LIST () "." "renamed" ("OLDNAME" ("newbox"))',
                             b'* LIST () "." "renamed.kid" ("OLDNAME" ("newbox.kid"))'], lines
    b.ok("DELETE renamed.kid")
    got, _ = wait_for(a, rb"^\* LIST ")
    assert got == b'* LIST (\\NonExistent) "." "renamed.kid"', got
    b.ok("SUBSCRIBE renamed")
    got, _ = wait_for(a, rb"^\* LIST ")
    assert got == b'* LIST (\\Subscribed) "." "renamed"', got
    b.ok("UNSUBSCRIBE renamed")
    got, _ = wait_for(a, rb"^\* LIST ")
    assert got == b'* LIST () "." "renamed"', got
    b.ok("DELETE renamed")
    got, _ = wait_for(a, rb"^\* LIST ")
    assert got == b'* LIST (\\NonExistent) "." "renamed"', got
    # the new folder is watched for message events once it exists
    a.ok("NOTIFY SET (PERSONAL (MessageNew MessageExpunge MailboxName))")
    b.ok("CREATE later")
    wait_for(a, rb'^\* LIST \(\) "\." "later"')
    b.ok("APPEND later ", Literal(message(1), plus=True))
    assert wait_status(a, "later")["MESSAGES"] == 1
    b.ok("DELETE later")
    wait_for(a, rb"^\* LIST \(\\NonExistent\)")


def test_subtree_and_mailboxes_filters(two):
    a, b = two
    for n in ("proj", "proj.a", "other"):
        b.ok("CREATE " + n)
    a.ok("NOTIFY SET (SUBTREE proj (MessageNew MessageExpunge)) "
         "(MAILBOXES (other nosuchyet) (MailboxName))")
    b.ok("APPEND other ", Literal(message(1), plus=True))
    b.ok("APPEND proj.a ", Literal(message(1), plus=True))
    assert wait_status(a, "proj.a")["MESSAGES"] == 1
    b.ok("CREATE nosuchyet")
    got, _ = wait_for(a, rb"^\* LIST ")
    assert got == b'* LIST () "." "nosuchyet"', got
    b.ok("CREATE unrelated")
    assert a.nothing_pending(0.7)
    for n in ("proj.a", "proj", "other", "nosuchyet", "unrelated"):
        b.ok("DELETE " + n)


def test_selected_events_without_a_command(srv, two):
    """5.2: EXISTS and MessageNew's FETCH attributes; 5.1: FETCH FLAGS;
    5.3: EXPUNGE: all in the selected mailbox, unsolicited."""
    a, b = two
    b.ok("CREATE sel")
    b.ok("APPEND sel ", Literal(message(1), plus=True))
    a.select("sel")
    a.ok("NOTIFY SET (SELECTED (MessageNew (UID FLAGS) MessageExpunge FlagChange)) "
         "(PERSONAL (MessageNew MessageExpunge))")
    b.ok("APPEND sel (\\Flagged) ", Literal(message(2), plus=True))
    wait_for(a, rb"^\* 2 EXISTS")
    got, _ = wait_for(a, rb"^\* 2 FETCH")
    assert b"UID 2" in got and b"\\Flagged" in got, got
    b.select("sel")
    b.ok("STORE 1 +FLAGS (\\Answered)")
    got, _ = wait_for(a, rb"^\* 1 FETCH")
    assert b"\\Answered" in got, got
    b.ok("STORE 1 +FLAGS (\\Deleted)")
    b.ok("EXPUNGE")
    wait_for(a, rb"^\* 1 EXPUNGE")
    # no STATUS for the selected mailbox; other folders still reported
    srv.deliver(ALICE, message(5))
    st = wait_status(a, "INBOX")
    assert st["MESSAGES"] >= 1
    a.ok("NOOP")


def test_selected_delayed_keeps_expunge_for_a_command(two):
    a, b = two
    b.ok("CREATE dly")
    for k in (1, 2):
        b.ok("APPEND dly ", Literal(message(k), plus=True))
    a.select("dly")
    a.ok("NOTIFY SET (SELECTED-DELAYED (MessageNew MessageExpunge))")
    b.select("dly")
    b.ok("STORE 1 +FLAGS (\\Deleted)")
    b.ok("EXPUNGE")
    b.ok("APPEND dly ", Literal(message(3), plus=True))
    # the new message is told at once, the expunge is not
    got, seen = wait_for(a, rb"^\* \d+ RECENT")
    assert any(re.match(rb"\* 3 EXISTS", x) for x in seen), seen
    assert not any(b"EXPUNGE" in x for x in seen), seen
    assert a.nothing_pending(0.5)
    r = a.ok("NOOP")
    assert r.numbered("EXPUNGE") == [1], r


def test_notify_none_stops_everything(srv, two):
    a, b = two
    b.ok("CREATE hush")
    a.ok("NOTIFY SET (PERSONAL (MessageNew MessageExpunge MailboxName))")
    b.ok("APPEND hush ", Literal(message(1), plus=True))
    wait_status(a, "hush")
    a.ok("NOTIFY NONE")
    b.ok("APPEND hush ", Literal(message(2), plus=True))
    srv.deliver(ALICE, message(6))
    b.ok("CREATE hush2")
    assert a.nothing_pending(1.0)
    r = a.ok("NOOP")
    assert not r.untagged, r
    # and it can be set again
    a.ok("NOTIFY SET (MAILBOXES hush (MessageNew MessageExpunge))")
    b.ok("APPEND hush ", Literal(message(3), plus=True))
    assert wait_status(a, "hush")["MESSAGES"] == 3
    b.ok("DELETE hush2")
    b.ok("DELETE hush")


def test_works_during_idle(srv, two):
    """RFC 5465 4: notifications come during IDLE too."""
    a, b = two
    b.ok("CREATE idl")
    a.ok("NOTIFY SET (PERSONAL (MessageNew MessageExpunge))")
    a.send(b"I1 IDLE\r\n")
    wait_for(a, rb"^\+")
    b.ok("APPEND idl ", Literal(message(1), plus=True))
    assert status_of(wait_for(a, rb"^\* STATUS \"?idl")[0])[1]["MESSAGES"] == 1
    a.send(b"DONE\r\n")
    r = a.read_tagged("I1")
    assert r.status == "OK", r
    b.ok("DELETE idl")


@pytest.mark.parametrize("cmd", [
    "NOTIFY", "NOTIFY SET", "NOTIFY SET STATUS", "NOTIFY BOGUS",
    "NOTIFY SET (PERSONAL)", "NOTIFY SET (PERSONAL ())",
    "NOTIFY SET (PERSONAL (MessageNew))", "NOTIFY SET (PERSONAL (MessageExpunge))",
    "NOTIFY SET (PERSONAL (FlagChange))",
    "NOTIFY SET (PERSONAL (MessageNew (UID) MessageExpunge))",
    "NOTIFY SET (NOSUCHFILTER (MessageNew MessageExpunge))",
    "NOTIFY SET (SUBTREE (MessageNew MessageExpunge))",
    "NOTIFY SET (MAILBOXES () (MessageNew MessageExpunge))",
    "NOTIFY SET (SELECTED (MessageNew (BOGUS) MessageExpunge))",
    "NOTIFY SET (SELECTED NONE) (SELECTED-DELAYED NONE)",
    "NOTIFY SET PERSONAL (MessageNew MessageExpunge)",
    "NOTIFY SET (SELECTED (MailboxName))",
])
def test_bad_syntax(srv, cmd):
    with srv.session() as c:
        c.bad(cmd)
        c.logout()


@pytest.mark.parametrize("event", ["AnnotationChange", "MailboxMetadataChange",
                                   "ServerMetadataChange", "NoSuchEvent"])
def test_unsupported_events_are_badevent(srv, event):
    with srv.session() as c:
        r = c.no("NOTIFY SET (PERSONAL (MessageNew MessageExpunge %s))" % event)
        assert r.code().startswith("BADEVENT ("), r
        assert "MessageNew" in r.code() and "MailboxName" in r.code(), r
        # a refused NOTIFY leaves none in place
        c.ok("NOTIFY SET (PERSONAL (MailboxName))")
        c.logout()


def test_subscribed_filter_follows_subscriptions(two):
    """SUBSCRIBED: a subscribed folder is reported, another is not, and a
    folder subscribed later is reported from then on."""
    a, b = two
    b.ok("CREATE subd")
    b.ok("CREATE unsubd")
    b.ok("SUBSCRIBE subd")
    a.ok("NOTIFY SET (SUBSCRIBED (MessageNew MessageExpunge SubscriptionChange))")
    b.ok("APPEND unsubd ", Literal(message(1), plus=True))
    b.ok("APPEND subd ", Literal(message(1), plus=True))
    got, seen = wait_for(a, rb"^\* STATUS")
    assert status_of(got)[0] == "subd", seen
    assert a.nothing_pending(0.5)
    b.ok("SUBSCRIBE unsubd")
    got, _ = wait_for(a, rb"^\* LIST ")
    assert got == b'* LIST (\\Subscribed) "." "unsubd"', got
    b.ok("APPEND unsubd ", Literal(message(2), plus=True))
    assert wait_status(a, "unsubd")["MESSAGES"] == 2
    for n in ("subd", "unsubd"):
        b.ok("UNSUBSCRIBE " + n)
        b.ok("DELETE " + n)


def test_too_many_mailbox_names(srv):
    """At most 1000 names in a NOTIFY's SUBTREE and MAILBOXES together."""
    with srv.session() as c:
        names = " ".join("m%d" % i for i in range(600))
        c.bad("NOTIFY SET (MAILBOXES (%s) (MessageNew MessageExpunge)) "
              "(SUBTREE (%s) (MailboxName))" % (names, names))
        c.ok("NOTIFY SET (MAILBOXES (%s) (MessageNew MessageExpunge))" % names)
        c.ok("NOTIFY NONE")
        c.logout()
