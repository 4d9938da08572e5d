"""Moving in and moving back (issue 18): the real old server, then petrel,
then the old server again, on one maildir. Dovecot 2.3 and Courier-IMAP 5
from Debian's packages (legacy_imap.py; unpacked by
scripts/install-legacy-imap.sh).

1. The old server makes the state: messages delivered to new/ as an MTA
   would and APPENDed, a folder and a subfolder with messages, system
   flags, $Label1 and a custom keyword, an expunge (so UIDNEXT is above
   the last UID), subscriptions (Dovecot's file keeps the subfolder as a
   TAB-separated hierarchy), and a POP3 session of the old POP3 server
   (Dovecot's pop3, Courier's pop3d, which writes courierpop3dsizelist)
   that leaves the mail on the server.
2. petrel on the same maildir shows exactly that: the folder list, the
   subscriptions (LSUB), UIDVALIDITY, UIDNEXT, every UID with its flags
   and keywords, and over POP3 the UIDLs the old POP3 server gave. Then it
   changes things: SMTP deliveries, APPEND, flag and keyword changes, a
   MOVE, an expunge of the newest message, a new folder, subscribed.
3. The old servers again show exactly what petrel last showed (zero
   differences besides the changes made: folders, subscriptions, flags,
   POP3 UIDLs), and a message arriving now gets the UID petrel would have
   given next: no UID is given twice.

Heavy: once per CI run, in the plain build's pass (tests/harness/ci_skips.py).
"""

import os
import poplib
import pwd
import re
import shutil

import pytest

import legacy_imap
from harness import ci_skips, server
from imap_util import (ALICE, DEFAULTS, PASSWORD, ImapServer, deliver, maildir_of,
                       message)

FOLDERS = ("INBOX", "Work", "Work.Projects")
IGNORED = {"\\recent"}


def mbox(prefix, folder):
    return folder if folder == "INBOX" else prefix + folder


def q(name):
    return '"%s"' % name


def ok(res, what):
    typ, data = res
    assert typ == "OK", "%s: %s %r" % (what, typ, data)
    return data


def snapshot(m, prefix):
    """{folder: (UIDVALIDITY, UIDNEXT, {uid: frozenset(flags)})} of every
    folder LIST shows (names without the namespace prefix); flags in lower
    case, \\Recent left out (it belongs to one session)."""
    names = []
    for line in ok(m.list('""', '"*"'), "LIST"):
        mt = re.match(rb'\(([^)]*)\) (?:"."|NIL) "?([^"]*)"?$', line)
        assert mt, line
        name = mt.group(2).decode()
        if name != "INBOX":
            assert name.startswith(prefix), name
            name = name[len(prefix):]
        names.append(name)
    out = {}
    for f in sorted(names):
        name = mbox(prefix, f)
        ok(m.select(q(name)), "SELECT " + name)
        msgs = {}
        typ, data = m.uid("FETCH", "1:*", "(FLAGS)")
        assert typ == "OK", (name, data)
        for item in data:
            if item is None:
                continue
            if isinstance(item, tuple):
                item = item[0]
            mt = re.search(rb"UID (\d+)", item)
            fl = re.search(rb"FLAGS \(([^)]*)\)", item)
            if mt is None or fl is None:
                continue
            flags = frozenset(x.lower() for x in fl.group(1).decode().split()) - IGNORED
            msgs[int(mt.group(1))] = flags
        ok(m.close(), "CLOSE")
        st = ok(m.status(q(name), "(UIDNEXT UIDVALIDITY)"), "STATUS")[0].decode()
        uidnext = int(re.search(r"UIDNEXT (\d+)", st).group(1))
        uidvalidity = int(re.search(r"UIDVALIDITY (\d+)", st).group(1))
        out[f] = (uidvalidity, uidnext, msgs)
    return out


def legacy_snapshot(srv):
    m = srv.imaplib()
    try:
        return snapshot(m, srv.prefix)
    finally:
        m.logout()


def subscriptions(m, prefix):
    """The LSUB names, without the namespace prefix, sorted."""
    out = []
    for line in ok(m.lsub('""', '"*"'), "LSUB"):
        if line is None:
            continue
        mt = re.match(rb'\(([^)]*)\) (?:"."|NIL) "?([^"]*)"?$', line)
        assert mt, line
        name = mt.group(2).decode()
        if name != "INBOX":
            assert name.startswith(prefix), name
            name = name[len(prefix):]
        out.append(name)
    return sorted(out)


def uidls(p):
    """[(size, UIDL)] of every message of a POP3 session in the
    TRANSACTION state, in message order; the session ends with QUIT and
    leaves the mail where it is."""
    try:
        sizes = {}
        for line in p.list()[1]:
            n, size = line.split()
            sizes[int(n)] = int(size)
        out = []
        for line in p.uidl()[1]:
            n, uidl = line.split()
            out.append((sizes[int(n)], uidl.decode()))
        return out
    finally:
        p.quit()


def legacy_uidls(kind, md, work, owner):
    with legacy_imap.LegacyImap(kind, md, work, *owner, protocol="pop3") as pop:
        got = uidls(pop.poplib())
    assert not pop.errors, pop.errors
    return got


def put_new(md, n, owner):
    """A message delivered into new/ as an MTA does (tmp/, then rename)."""
    name = "%d.M%dP%d.mta.test" % (1700000000 + n, n, os.getpid())
    tmp = os.path.join(md, "tmp", name)
    with open(tmp, "wb") as f:
        f.write(message(n))
    os.chown(tmp, *owner)
    os.rename(tmp, os.path.join(md, "new", name))


def uid_of_seq(m, seq):
    data = ok(m.fetch(str(seq), "(UID)"), "FETCH UID")
    return int(re.search(rb"UID (\d+)", data[0]).group(1))


def old_server_state(srv, md, owner):
    """Step 1, with the old server."""
    put_new(md, 1, owner)
    put_new(md, 2, owner)
    m = srv.imaplib()
    p = srv.prefix
    ok(m.append("INBOX", None, None, message(3)), "APPEND")
    ok(m.append("INBOX", None, None, message(4)), "APPEND")
    ok(m.create(q(p + "Work")), "CREATE")
    ok(m.append(q(p + "Work"), "(\\Seen)", None, message(5)), "APPEND")
    ok(m.append(q(p + "Work"), "(\\Seen \\Flagged)", None, message(6)), "APPEND")
    ok(m.select("INBOX"), "SELECT")
    ok(m.store("1", "+FLAGS", "(\\Seen)"), "STORE")
    ok(m.store("2", "+FLAGS", "(\\Answered \\Flagged)"), "STORE")
    ok(m.store("3", "+FLAGS", "($Label1 custom1)"), "STORE")
    ok(m.store("4", "+FLAGS", "(\\Deleted)"), "STORE")
    ok(m.expunge(), "EXPUNGE")
    ok(m.select(q(p + "Work")), "SELECT")
    ok(m.store("2", "+FLAGS", "(custom2)"), "STORE")
    ok(m.create(q(p + "Work.Projects")), "CREATE")
    ok(m.append(q(p + "Work.Projects"), "(\\Answered)", None, message(7)), "APPEND")
    ok(m.subscribe(q(p + "Work")), "SUBSCRIBE")
    ok(m.subscribe(q(p + "Work.Projects")), "SUBSCRIBE")
    m.logout()


@pytest.fixture(params=legacy_imap.KINDS)
def kind(request, petrel_bin):
    ci_skips.run_once(petrel_bin)
    why = legacy_imap.available()
    if why:
        pytest.skip(why)
    return request.param


def test_round_trip(kind, mail_user_instance, tmp_path):
    inst = mail_user_instance
    acct = pwd.getpwnam(inst.config().get("user"))
    owner = (acct.pw_uid, acct.pw_gid)
    md = maildir_of(inst, ALICE)
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(md, sub), exist_ok=True)
    for d, _, _ in os.walk(os.path.dirname(md)):
        os.chown(d, *owner)
    work = os.path.join(os.path.dirname(inst.mail_root), "legacy-" + kind)
    old = legacy_imap.LegacyImap(kind, md, work, *owner)
    opts = ("imap_namespace_prefix=INBOX.",) if kind == "courier" else ()
    uidfile = "dovecot-uidlist" if kind == "dovecot" else "courierimapuiddb"

    # 1. the old servers
    with old:
        old_server_state(old, md, owner)
        pop_before = legacy_uidls(kind, md, work + "-pop", owner)
        before = legacy_snapshot(old)
        m = old.imaplib()
        subs_before = subscriptions(m, old.prefix)
        m.logout()
    assert not old.errors, old.errors
    assert sorted(before) == ["INBOX", "Work", "Work.Projects"], before
    # Courier subscribes INBOX itself
    assert [n for n in subs_before if n != "INBOX"] == ["Work", "Work.Projects"], subs_before
    assert len(pop_before) == 3, pop_before
    uv, nxt, msgs = before["INBOX"]
    assert len(msgs) == 3 and nxt == max(msgs) + 2, before["INBOX"]
    assert {"$label1", "custom1"} <= msgs[sorted(msgs)[2]], msgs
    assert "custom2" in before["Work"][2][max(before["Work"][2])], before["Work"]
    assert os.path.exists(os.path.join(md, uidfile))

    # 2. petrel on the same maildir
    opts += ("pop3_uidl_format=auto",)
    with server.running(server.start, inst, ("imap", "imaps", "smtp", "pop3"),
                        DEFAULTS + opts, cls=ImapServer) as srv:
        pop = poplib.POP3(srv.host, srv.ports["pop3"], timeout=30)
        pop.user(ALICE)
        pop.pass_(PASSWORD)
        assert uidls(pop) == pop_before, "petrel's POP3 UIDLs differ from %s's" % kind
        m = srv.login()
        adopted = snapshot(m, old.prefix)
        assert adopted == before, "petrel shows another state than %s:\n%r\n%r" % (
            kind, before, adopted)
        assert subscriptions(m, old.prefix) == subs_before
        p = old.prefix
        deliver(srv, ALICE, message(10))
        deliver(srv, ALICE, message(11))
        ok(m.select("INBOX"), "SELECT")
        uids = sorted(before["INBOX"][2])
        data = ok(m.uid("SEARCH", None, "ALL"), "SEARCH")[0].split()
        new_uids = [int(x) for x in data if int(x) not in uids]
        assert new_uids == [nxt, nxt + 1], (new_uids, nxt)
        ok(m.uid("STORE", str(uids[0]), "+FLAGS", "(petrelkw \\Draft)"), "STORE")
        ok(m.uid("STORE", str(uids[2]), "-FLAGS", "(custom1)"), "STORE")
        ok(m.uid("STORE", str(new_uids[0]), "+FLAGS", "(\\Seen $Label2)"), "STORE")
        # the newest message goes: its UID must never come back
        ok(m.uid("STORE", "%d,%d" % (uids[1], new_uids[1]), "+FLAGS", "(\\Deleted)"), "STORE")
        ok(m.expunge(), "EXPUNGE")
        ok(m.append(q(p + "Work"), "(\\Flagged worklabel)", None, message(12)), "APPEND")
        ok(m.select("INBOX"), "SELECT")
        ok(m.uid("MOVE", str(uids[2]), q(p + "Work")), "MOVE")
        ok(m.create(q(p + "New")), "CREATE")
        ok(m.subscribe(q(p + "New")), "SUBSCRIBE")
        ok(m.append(q(p + "New"), "(\\Seen newkw)", None, message(13)), "APPEND")
        after = snapshot(m, old.prefix)
        subs_after = subscriptions(m, old.prefix)
        m.logout()
        pop = poplib.POP3(srv.host, srv.ports["pop3"], timeout=30)
        pop.user(ALICE)
        pop.pass_(PASSWORD)
        pop_after = uidls(pop)
    assert subs_after == sorted(subs_before + ["New"]), subs_after
    # the messages that stayed keep their UIDLs; the new one got one
    kept = [u for u in pop_before if u in pop_after]
    assert len(kept) == 1 and len(pop_after) == 2, (pop_before, pop_after)

    # what petrel shows is the old state plus exactly the changes made
    expect_inbox = dict(before["INBOX"][2])
    expect_inbox[uids[0]] = expect_inbox[uids[0]] | {"petrelkw", "\\draft"}
    moved = expect_inbox.pop(uids[2]) - {"custom1"}
    del expect_inbox[uids[1]]
    expect_inbox[new_uids[0]] = frozenset({"\\seen", "$label2"})
    assert after["INBOX"] == (uv, nxt + 2, expect_inbox), after["INBOX"]
    wuv, wnxt, wmsgs = before["Work"]
    assert moved == {"$label1"}, moved
    assert after["Work"][:2] == (wuv, wnxt + 2), after["Work"]
    assert after["Work"][2] == {**wmsgs, wnxt: frozenset({"\\flagged", "worklabel"}),
                                wnxt + 1: moved}, after

    assert sorted(after) == ["INBOX", "New", "Work", "Work.Projects"], after
    assert after["New"][1:] == (2, {1: frozenset({"\\seen", "newkw"})}), after["New"]

    # 3. the old servers again: the same state, and no UID given twice
    shutil.rmtree(work)
    shutil.rmtree(work + "-pop")
    back = legacy_imap.LegacyImap(kind, md, work, *owner)
    with back:
        again = legacy_snapshot(back)
        assert again == after, "%s after the rollback differs from petrel:\n%r\n%r" % (
            kind, after, again)
        m = back.imaplib()
        assert subscriptions(m, back.prefix) == subs_after
        m.logout()
        assert legacy_uidls(kind, md, work + "-pop", owner) == pop_after
        put_new(md, 20, owner)
        m = back.imaplib()
        ok(m.select("INBOX"), "SELECT")
        data = ok(m.uid("SEARCH", None, "ALL"), "SEARCH")[0].split()
        assert [int(x) for x in data] == sorted(expect_inbox) + [nxt + 2], data
        m.logout()
    assert not back.errors, back.errors
