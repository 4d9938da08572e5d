"""IMAP mailboxes (RFC 3501 6.3, RFC 2342 NAMESPACE, RFC 3348 CHILDREN, RFC
6154 SPECIAL-USE): SELECT/EXAMINE, CREATE DELETE RENAME (INBOX too),
SUBSCRIBE/LSUB, LIST patterns, STATUS, modified UTF-7 names, and how folders
map to Maildir++ directories. SQLite (the directory does not matter here)."""

import os
import re

import pytest

from imap_util import (ALICE, BOB, SPECIAL, Literal, folder_dir, folders_on_disk,  # noqa: F401
                       imap_inst, imap_instance, imap_server, imap_start, list_attrs,
                       list_entries, list_names, maildir_of, make_folder, message,
                       message_files, mutf7_decode, mutf7_encode, parse, put, put_many)

DEFAULT = ["Archive", "Drafts", "INBOX", "Junk", "Sent", "Trash"]


def names(c, ref="", pat="*"):
    return list_names(c.ok('LIST "%s" "%s"' % (ref, pat)))


def attrs(c, ref="", pat="*"):
    return list_attrs(c.ok('LIST "%s" "%s"' % (ref, pat)))


@pytest.fixture
def c(imap_server):
    conn = imap_server.session()
    yield conn
    conn.close()


# --------------------------------------------------------------------------
# first login, NAMESPACE, LIST


def test_special_use_folders_at_first_login(imap_server):
    inst = imap_server.instance
    assert folders_on_disk(inst, ALICE) == []
    with imap_server.session() as c:
        r = c.ok('LIST "" "*"')
        ents = list_entries(r)
        assert sorted(n for _, _, n in ents) == DEFAULT, ents
        for a, sep, n in ents:
            assert sep == ".", ents
        at = list_attrs(r)
        for name, flag in SPECIAL.items():
            assert flag.lower() in at[name], (name, at)
            assert "\\hasnochildren" in at[name], (name, at)
        assert not any(f.lower() in at["INBOX"] for f in SPECIAL.values()), at
        c.logout()
    assert folders_on_disk(inst, ALICE) == sorted(SPECIAL)
    for f in SPECIAL:
        for sub in ("cur", "new", "tmp"):
            assert os.path.isdir(os.path.join(folder_dir(inst, ALICE, f), sub)), (f, sub)
    # a second login does not duplicate or re-create what the user deleted
    with imap_server.session() as c:
        c.ok("DELETE Junk")
        c.logout()
    with imap_server.session() as c:
        assert "Junk" not in names(c)
        assert names(c).count("Sent") == 1
        c.logout()
    # bob's maildir is not touched by alice's login
    assert folders_on_disk(inst, BOB) == []


def test_namespace(c):
    r = c.ok("NAMESPACE")
    ns = r.data("NAMESPACE")
    assert len(ns) == 1, r
    assert parse(ns[0]) == [[[b"", b"."]], None, None], ns


def test_list_empty_pattern_gives_separator(c):
    r = c.ok('LIST "" ""')
    ents = list_entries(r)
    assert len(ents) == 1, r
    a, sep, name = ents[0]
    assert sep == "." and name == "", ents
    assert "\\noselect" in {x.lower() for x in a}, ents


def test_list_patterns_and_children(c):
    for m in ("Work", "Work.Sub", "Work.Sub.Deep", "Play", "Workshop"):
        c.ok("CREATE " + m)
    everything = names(c)
    assert everything == sorted(DEFAULT + ["Play", "Work", "Work.Sub", "Work.Sub.Deep",
                                           "Workshop"]), everything
    assert names(c, "", "%") == sorted(DEFAULT + ["Play", "Work", "Workshop"])
    assert names(c, "", "Work.%") == ["Work.Sub"]
    assert names(c, "", "Work.*") == ["Work.Sub", "Work.Sub.Deep"]
    assert names(c, "", "Work*") == ["Work", "Work.Sub", "Work.Sub.Deep", "Workshop"]
    assert names(c, "", "Work%") == ["Work", "Workshop"]
    assert names(c, "", "*.Deep") == ["Work.Sub.Deep"]
    assert names(c, "Work.", "%") == ["Work.Sub"]
    assert names(c, "", "Nothing*") == []
    # INBOX matches case-insensitively and is always reported as INBOX
    assert names(c, "", "inbox") == ["INBOX"]
    assert names(c, "", "InBoX") == ["INBOX"]
    at = attrs(c)
    assert "\\haschildren" in at["Work"] and "\\haschildren" in at["Work.Sub"], at
    for n in ("Work.Sub.Deep", "Play", "Workshop", "INBOX"):
        assert "\\hasnochildren" in at[n], (n, at)
    for n, a in at.items():
        assert not ({"\\haschildren", "\\hasnochildren"} <= a), (n, a)
    # imaplib agrees
    c.logout()


def test_imaplib_list(imap_server):
    m = imap_server.login()
    assert m.create("Projects")[0] == "OK"
    assert m.create("Projects.2026")[0] == "OK"
    typ, data = m.list()
    assert typ == "OK"
    text = b"\n".join(data).decode()
    assert re.search(r'\(.*\\HasChildren.*\) "\." "?Projects"?$', text, re.M | re.I), text
    assert re.search(r'\(.*\\HasNoChildren.*\) "\." "?Projects\.2026"?$', text, re.M | re.I), text
    typ, data = m.list('""', "Projects.%")
    assert typ == "OK" and len(data) == 1, data
    assert data[0].rstrip(b'"').endswith(b"Projects.2026"), data
    m.logout()


# --------------------------------------------------------------------------
# SELECT / EXAMINE


def test_select_and_examine_responses(imap_server):
    inst = imap_server.instance
    put(inst, ALICE, message(1))
    put(inst, ALICE, message(2), flags="S")
    put(inst, ALICE, message(3))
    with imap_server.session() as c:
        r = c.examine("INBOX")
        assert r.text.upper().startswith("[READ-ONLY]"), r
        assert r.numbered("EXISTS") == [3], r
        flags = r.data("FLAGS")
        assert len(flags) == 1, r
        fl = {f.lower() for f in parse(flags[0])[0]}
        assert {"\\seen", "\\answered", "\\flagged", "\\deleted", "\\draft"} <= fl, fl
        assert r.find(r"^\* OK \[UIDVALIDITY \d+\]"), r
        assert r.find(r"^\* OK \[UIDNEXT 4\]"), r
        assert r.find(r"^\* OK \[UNSEEN 1\]"), r
        uv = int(r.find(r"UIDVALIDITY")[0].split("UIDVALIDITY ")[1].split("]")[0])
        assert uv > 0
        # EXAMINE does not take \Recent away and moves nothing
        assert r.numbered("RECENT") in ([2], [3]), r
        r = c.select("inbox")
        assert r.text.upper().startswith("[READ-WRITE]"), r
        assert r.numbered("EXISTS") == [3], r
        pf = r.find(r"PERMANENTFLAGS")
        assert pf and "\\*" in pf[0], r
        # the two in new/ (or all three: none was seen by a session before)
        assert r.numbered("RECENT") in ([2], [3]), r
        assert r.find(r"UIDVALIDITY %d\]" % uv), r
        c.ok("UNSELECT")
        r = c.select("INBOX")
        assert r.numbered("RECENT") == [0], r   # this session already had them
        c.no("SELECT Nonexistent")
        # a failed SELECT leaves no mailbox selected (RFC 3501 6.3.1)
        c.bad("FETCH 1 FLAGS")
        c.logout()
    assert all_in_cur(inst)


def all_in_cur(inst):
    return [os.path.basename(os.path.dirname(p)) for p in message_files(inst, ALICE)] == \
        ["cur"] * 3


def test_select_every_special_folder(c):
    for f in DEFAULT:
        r = c.select(f)
        assert r.numbered("EXISTS") == [0], (f, r)
    c.no('SELECT ""')
    c.logout()


# --------------------------------------------------------------------------
# CREATE / DELETE


def test_create_and_delete(imap_server):
    inst = imap_server.instance
    with imap_server.session() as c:
        c.ok("CREATE Work")
        d = folder_dir(inst, ALICE, "Work")
        assert os.path.isdir(os.path.join(d, "cur")) and os.path.isdir(os.path.join(d, "new"))
        assert os.path.isdir(os.path.join(d, "tmp"))
        c.no("CREATE Work")
        c.no("CREATE INBOX")
        c.no("CREATE inbox")
        c.ok('CREATE "Work.Sub"')
        assert os.path.isdir(folder_dir(inst, ALICE, "Work.Sub"))
        r = c.select("Work.Sub")
        assert r.numbered("EXISTS") == [0]
        c.ok("APPEND Work.Sub {5+}\r\nhello")
        c.ok("UNSELECT")
        # deleting a folder removes it and its messages
        c.ok("DELETE Work.Sub")
        assert not os.path.exists(folder_dir(inst, ALICE, "Work.Sub"))
        assert "Work.Sub" not in names(c)
        c.no("DELETE Work.Sub")
        c.no("DELETE Nonexistent")
        c.no("DELETE INBOX")
        c.no("DELETE inbox")
        assert os.path.isdir(os.path.join(maildir_of(inst, ALICE), "cur"))
        c.ok("DELETE Work")
        assert names(c) == DEFAULT
        c.logout()


def test_create_superior_names(c):
    """RFC 3501 6.3.3: CREATE a.b.c SHOULD create the superiors; a trailing
    separator declares the intent to create children."""
    c.ok("CREATE A.B.C")
    n = names(c)
    assert "A.B.C" in n, n
    at = attrs(c)
    for sup in ("A", "A.B"):
        if sup in at:
            assert "\\haschildren" in at[sup], at
            if "\\noselect" in at[sup]:
                c.no('SELECT "%s"' % sup)
    # RFC 3501 6.3.8: '%' returns the levels of hierarchy, \Noselect if they
    # are not mailboxes
    at = attrs(c, "", "%")
    assert "A" in at and "\\haschildren" in at["A"], at
    assert "A.B" not in at and "A.B.C" not in at, at
    r = c.command("CREATE Parent.")
    if r.status == "OK":
        n = names(c)
        assert "Parent" in n and "Parent." not in n, n
    else:
        assert r.status in ("NO", "BAD"), r
    c.logout()


def test_delete_with_children(imap_server):
    """RFC 3501 6.3.4: deleting a name with inferiors either fails or leaves it
    \\Noselect; either way the children stay and LIST stays consistent."""
    inst = imap_server.instance
    with imap_server.session() as c:
        c.ok("CREATE Top")
        c.ok("CREATE Top.Child")
        c.ok("APPEND Top.Child {3+}\r\nabc")
        r = c.command("DELETE Top")
        assert r.status in ("OK", "NO"), r
        at = attrs(c)
        assert "Top.Child" in at, at
        if r.status == "OK":
            assert "Top" not in at or "\\noselect" in at["Top"], at
        else:
            assert "Top" in at and "\\haschildren" in at["Top"], at
        r = c.select("Top.Child")
        assert r.numbered("EXISTS") == [1], r
        c.logout()
    assert len(message_files(inst, ALICE, "Top.Child")) == 1


def test_delete_selected_mailbox_from_other_session(imap_server):
    with imap_server.session() as a, imap_server.session() as b:
        a.ok("CREATE Gone")
        a.ok("APPEND Gone {3+}\r\nabc")
        b.select("Gone")
        a.ok("DELETE Gone")
        # the other session is not crashed: it gets answers, or a BYE and
        # the connection is closed
        try:
            r = b.command("NOOP")
            assert r.status in ("OK", "NO", "BAD"), r
        except ConnectionError:
            assert b"* BYE" in b.buf or True
        assert imap_server.alive()
        a.logout()


# --------------------------------------------------------------------------
# RENAME


def test_rename(imap_server):
    inst = imap_server.instance
    with imap_server.session() as c:
        c.ok("CREATE Old")
        c.ok("CREATE Old.Kid")
        c.ok("APPEND Old {3+}\r\nabc")
        c.ok("APPEND Old.Kid {3+}\r\ndef")
        r = c.ok("STATUS Old (UIDVALIDITY UIDNEXT MESSAGES)")
        c.ok("RENAME Old New")
        n = names(c)
        assert "New" in n and "New.Kid" in n, n       # inferiors are renamed too
        assert "Old" not in n and "Old.Kid" not in n, n
        assert folders_on_disk(inst, ALICE).count("New.Kid") == 1
        r = c.select("New")
        assert r.numbered("EXISTS") == [1], r
        r = c.ok("FETCH 1 BODY.PEEK[]")
        assert r.fetches()[1]["BODY[]"] == b"abc", r
        c.ok("UNSELECT")
        c.no("RENAME Nonexistent Other")
        c.ok("CREATE Taken")
        c.no("RENAME New Taken")
        c.no("RENAME New INBOX")
        c.no("RENAME New New")
        c.ok("RENAME New.Kid Solo")
        assert "Solo" in names(c) and "New.Kid" not in names(c)
        r = c.select("Solo")
        assert r.numbered("EXISTS") == [1], r
        c.logout()


def test_rename_inbox(imap_server):
    """RFC 3501 6.3.5: RENAME INBOX moves all messages to the new name and
    leaves INBOX empty (it stays)."""
    inst = imap_server.instance
    put_many(inst, ALICE, 3)
    with imap_server.session() as c:
        c.select("INBOX")
        c.ok("STORE 2 +FLAGS (\\Flagged)")
        c.ok("UNSELECT")
        uv_before, next_before = _uv_next(c, "INBOX")
        c.ok("RENAME INBOX Saved")
        n = names(c)
        assert "INBOX" in n and "Saved" in n, n
        r = c.select("INBOX")
        assert r.numbered("EXISTS") == [0], r
        r = c.select("Saved")
        assert r.numbered("EXISTS") == [3], r
        r = c.ok("FETCH 1:3 (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        f = r.fetches()
        assert [f[i]["BODY[HEADER.FIELDS (SUBJECT)]"].strip() for i in (1, 2, 3)] == \
            [b"Subject: test message %d" % i for i in (1, 2, 3)], f
        assert "\\Flagged" in f[2]["FLAGS"], f
        # INBOX can take new mail, and its UIDs are not the old ones again
        uv, uid = _append_uid(c, "INBOX")
        assert uv != uv_before or uid >= next_before, (uv_before, next_before, uv, uid)
        r = c.ok("STATUS INBOX (MESSAGES)")
        assert r.find(r"MESSAGES 1\b"), r
        c.logout()
    assert len(message_files(inst, ALICE, "Saved")) == 3
    assert len(message_files(inst, ALICE)) == 1
    # a second RENAME INBOX into an existing name fails
    with imap_server.session() as c:
        c.no("RENAME INBOX Saved")
        c.logout()


# --------------------------------------------------------------------------
# SUBSCRIBE / LSUB


def test_subscribe_lsub(c):
    c.ok("CREATE Lists")
    c.ok("CREATE Lists.Dev")
    c.ok("SUBSCRIBE Lists")
    c.ok("SUBSCRIBE Lists.Dev")
    r = c.ok('LSUB "" "*"')
    n = list_names(r)
    assert "Lists" in n and "Lists.Dev" in n, r
    assert list_names(c.ok('LSUB "" "Lists.%"')) == ["Lists.Dev"]
    c.ok("UNSUBSCRIBE Lists.Dev")
    n = list_names(c.ok('LSUB "" "*"'))
    assert "Lists" in n and "Lists.Dev" not in n, n
    # idempotent enough: subscribing twice lists it once
    c.ok("SUBSCRIBE Lists")
    assert list_names(c.ok('LSUB "" "*"')).count("Lists") == 1
    # subscriptions follow a RENAME? at least the old name must still be
    # consistent with LIST after DELETE
    c.ok("DELETE Lists.Dev")
    c.ok("UNSUBSCRIBE Lists")
    assert "Lists" not in list_names(c.ok('LSUB "" "*"'))
    c.logout()


def test_lsub_percent_returns_unsubscribed_parent_as_noselect(c):
    """RFC 3501 6.3.9: "foo.bar" subscribed but not "foo": LSUB with '%' MUST
    return "foo", flagged \\Noselect, not "foo.bar"."""
    c.ok("CREATE Lists")
    c.ok("CREATE Lists.Dev")
    c.ok("SUBSCRIBE Lists.Dev")
    at = list_attrs(c.ok('LSUB "" "%"'))
    assert "Lists.Dev" not in at, at
    assert "Lists" in at and "\\noselect" in at["Lists"], at
    c.logout()


def test_subscriptions_persist(imap_server):
    with imap_server.session() as c:
        c.ok("CREATE Keep")
        c.ok("SUBSCRIBE Keep")
        c.logout()
    imap_server.stop()
    from imap_util import start_imap
    srv = start_imap(imap_server.instance)
    try:
        with srv.session() as c:
            assert "Keep" in list_names(c.ok('LSUB "" "*"'))
            c.logout()
    finally:
        srv.stop()


# --------------------------------------------------------------------------
# STATUS


def test_status(imap_server):
    inst = imap_server.instance
    put(inst, ALICE, message(1))
    put(inst, ALICE, message(2), flags="S")
    put(inst, ALICE, message(3), flags="")
    with imap_server.session() as c:
        r = c.ok("STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)")
        st = r.data("STATUS")
        assert len(st) == 1, r
        v = parse(st[0])
        assert v[0] in ("INBOX", b"INBOX"), v
        d = dict(zip(v[1][::2], v[1][1::2]))
        d = {k.upper(): int(x) for k, x in d.items()}
        assert d["MESSAGES"] == 3 and d["UNSEEN"] == 2, d
        assert d["UIDNEXT"] >= 1 and d["UIDVALIDITY"] > 0, d
        assert d["RECENT"] in (1, 3), d   # the one in new/ (or every not-yet-seen one)
        uv = d["UIDVALIDITY"]
        r = c.select("INBOX")
        assert r.find(r"UIDVALIDITY %d\]" % uv), r
        uidnext = int(re.search(r"UIDNEXT (\d+)", " ".join(r.find("UIDNEXT"))).group(1))
        c.ok("UNSELECT")
        r = c.ok("STATUS inbox (UIDNEXT MESSAGES)")
        assert r.find(r"UIDNEXT %d\b" % uidnext) and r.find(r"MESSAGES 3\b"), r
        r = c.ok("STATUS Sent (MESSAGES UNSEEN)")
        assert r.find(r'\* STATUS "?Sent"? \((MESSAGES 0 UNSEEN 0|UNSEEN 0 MESSAGES 0)\)'), r
        c.no("STATUS Nonexistent (MESSAGES)")
        c.bad("STATUS INBOX (BOGUS)")
        c.bad("STATUS INBOX")
        c.logout()


# --------------------------------------------------------------------------
# modified UTF-7 names


def test_mutf7_names(imap_server):
    inst = imap_server.instance
    name = "Entw&APw-rfe"
    assert mutf7_decode(name) == "Entwürfe"
    with imap_server.session() as c:
        c.ok('CREATE "%s"' % name)
        c.ok('CREATE "%s"' % mutf7_encode("Ablage.Größe"))
        c.ok('CREATE "%s"' % mutf7_encode("日本語"))
        c.ok('CREATE "%s"' % mutf7_encode("A&B"))
        n = names(c)
        for want in (name, "Ablage." + mutf7_encode("Größe"), mutf7_encode("日本語"), "A&-B"):
            assert want in n, (want, n)
        r = c.select(name)
        assert r.numbered("EXISTS") == [0]
        c.ok('APPEND "%s" {2+}\r\nhi' % name)
        r = c.ok('STATUS "%s" (MESSAGES)' % name)
        assert r.find("MESSAGES 1"), r
        c.ok('RENAME "%s" "%s"' % (name, mutf7_encode("Entwürfe alt")))
        assert mutf7_encode("Entwürfe alt") in names(c)
        c.logout()
    # on disk like Dovecot and Courier: the modified UTF-7 name itself
    disk = folders_on_disk(inst, ALICE)
    assert "Entw&APw-rfe alt" in disk, disk
    assert "A&-B" in disk, disk


def test_imaplib_mutf7(imap_server):
    m = imap_server.login()
    typ, _ = m.create('"Entw&APw-rfe"')
    assert typ == "OK"
    typ, data = m.list('""', '"Entw*"')
    assert typ == "OK" and b"Entw&APw-rfe" in data[0], data
    m.logout()


# --------------------------------------------------------------------------
# folders made from the outside


def test_folder_made_outside_appears(imap_server):
    inst = imap_server.instance
    with imap_server.session() as c:
        assert "Outside" not in names(c)
        make_folder(inst, ALICE, "Outside")
        put(inst, ALICE, message(1), folder="Outside")
        assert "Outside" in names(c)
        r = c.ok("STATUS Outside (MESSAGES)")
        assert r.find("MESSAGES 1"), r
        c.logout()
    inst.run("maildirmake", folder_dir(inst, ALICE, "INBOX"), "--folder", "Made")
    with imap_server.session() as c:
        assert "Made" in names(c)
        c.logout()


# --------------------------------------------------------------------------
# UIDVALIDITY of re-created names (RFC 3501 2.3.1.1)


def _uv_next(c, mailbox):
    r = c.ok("STATUS %s (UIDVALIDITY UIDNEXT)" % mailbox)
    v = parse(r.data("STATUS")[0])[1]
    d = {k.upper(): int(x) for k, x in zip(v[::2], v[1::2])}
    return d["UIDVALIDITY"], d["UIDNEXT"]


def _append_uid(c, mailbox):
    r = c.ok("APPEND %s {3+}\r\nabc" % mailbox)
    code = (r.code() or "").split()
    assert code and code[0].upper() == "APPENDUID", r
    return int(code[1]), int(code[2])


def test_recreated_mailbox_does_not_reuse_uids(c):
    """A name deleted (or renamed away) and created again must get a new
    UIDVALIDITY, or UIDs above every UID the old one had: a client's cache
    keyed by (name, UIDVALIDITY, UID) must never show the wrong message."""
    c.ok("CREATE Again")
    old = [_append_uid(c, "Again") for _ in range(3)]
    c.ok("DELETE Again")
    c.ok("CREATE Again")
    uv, uid = _append_uid(c, "Again")
    assert uv != old[0][0] or uid > old[-1][1], (old, uv, uid)
    c.logout()


def test_renamed_away_name_does_not_reuse_uids(c):
    """The same through RENAME: the old name created again."""
    c.ok("CREATE Moving")
    old = [_append_uid(c, "Moving") for _ in range(2)]
    c.ok("RENAME Moving Moved")
    assert _uv_next(c, "Moved")[1] > old[-1][1]
    c.ok("CREATE Moving")
    uv, uid = _append_uid(c, "Moving")
    assert uv != old[0][0] or uid > old[-1][1], (old, uv, uid)
    c.logout()


def test_names_with_spaces_quotes_and_specials(c):
    """Names that need quoting (or a literal) come back from LIST in a form
    that parses to the same name."""
    names_in = ["My Folder", 'He said "hi"', "back\\slash", "percent%sign", "star*name",
                "tab-less {braces}", "(parens)", "x]y"]
    made = []
    for n in names_in:
        r = c.command("CREATE ", Literal(n.encode()))
        if r.status == "OK":
            made.append(n)
        else:
            assert r.status in ("NO", "BAD"), (n, r)
    # (refusing '"' '\\' '%' '*' in names is a policy choice, not an error)
    assert "My Folder" in made and "(parens)" in made, made
    listed = names(c)
    for n in made:
        assert n in listed, (n, listed)
        r = c.ok("STATUS ", Literal(n.encode()), " (MESSAGES)")
        assert r.data("STATUS"), r
        r = c.ok("SELECT ", Literal(n.encode()))
        assert r.numbered("EXISTS") == [0], r
    c.ok("UNSELECT")
    c.logout()


def test_many_and_deep_folders(imap_server):
    """500 folders list quickly; a very deep name is created or refused
    cleanly (names are bounded by the file system's 255-byte limit)."""
    inst = imap_server.instance
    for i in range(500):
        make_folder(inst, ALICE, "Bulk%03d" % i)
    with imap_server.session() as c:
        n = names(c)
        assert len([x for x in n if x.startswith("Bulk")]) == 500
        deep = ".".join("L%d" % i for i in range(60))
        r = c.command('CREATE "%s"' % deep)
        assert r.status in ("OK", "NO", "BAD"), r
        if r.status == "OK":
            assert deep in names(c)
        deeper = ".".join("level%03d" % i for i in range(40))   # > 255 bytes
        r = c.command('CREATE "%s"' % deeper)
        assert r.status in ("NO", "BAD"), r
        c.ok("NOOP")
        c.logout()
