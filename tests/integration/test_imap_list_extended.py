"""IMAP LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819) and the LIST parts
of SPECIAL-USE (RFC 6154): selection options SUBSCRIBED, REMOTE,
RECURSIVEMATCH and SPECIAL-USE, return options SUBSCRIBED, CHILDREN,
SPECIAL-USE and STATUS, several patterns, \\NonExistent, \\Subscribed and
CHILDINFO. The mailboxes of the RFC 5258 section 5 examples are made for one
user, with '.' as the hierarchy separator instead of '/'."""

import os

import pytest

from imap_util import (ALICE, SPECIAL, capabilities, crlf, folders_on_disk,  # noqa: F401
                       imap_inst, imap_instance, imap_server, imap_start, list_attrs,
                       list_names, maildir_of, make_folder, message, parse, put, running)

from test_imap_namespace import PREFIX, courier_maildir


def entries(r):
    """The LIST responses of a Result, in order: [(name, {attrs lower}, ext)]
    where ext is the parsed extended data (a list) or None."""
    out = []
    for d in r.data("LIST"):
        v = parse(d)
        name = v[2].decode() if isinstance(v[2], bytes) else v[2]
        out.append((name, {a.lower() for a in v[0]}, v[3] if len(v) > 3 else None))
    return out


def by_name(r):
    return {n: (a, x) for n, a, x in entries(r)}


def childinfo(ext):
    """["CHILDINFO", [criteria]] -> the criteria, upper-case, or None."""
    if not ext:
        return None
    assert len(ext) == 2, ext
    tag = ext[0].decode() if isinstance(ext[0], bytes) else ext[0]
    assert tag.upper() == "CHILDINFO", ext
    return [(x.decode() if isinstance(x, bytes) else x).upper() for x in ext[1]]


def order(r):
    """'LIST name' / 'STATUS name' for each untagged response, in order."""
    out = []
    for u in r.untagged:
        v = u.decode()
        kind = v.split(" ")[1].upper()
        if kind == "LIST":
            name = parse(v[len("* LIST "):])[2]
        elif kind == "STATUS":
            name = parse(v[len("* STATUS "):])[0]
        else:
            continue
        out.append("%s %s" % (kind, name.decode() if isinstance(name, bytes) else name))
    return out


def statuses(r):
    """{name: {ITEM: int}} of the STATUS responses."""
    out = {}
    for d in r.data("STATUS"):
        v = parse(d)
        name = v[0].decode() if isinstance(v[0], bytes) else v[0]
        out[name] = {k.upper(): int(x) for k, x in zip(v[1][::2], v[1][1::2])}
    return out


def clear(c):
    """Only INBOX left, nothing subscribed (the first login made and
    subscribed the special-use folders)."""
    for f in SPECIAL:
        c.ok("DELETE %s" % f)
        c.ok("UNSUBSCRIBE %s" % f)
    c.ok("UNSUBSCRIBE INBOX")


def rfc5258_setup(c):
    """The mailboxes and subscriptions of the RFC 5258 section 5 examples:
    Fruit.Peach is subscribed but does not exist."""
    clear(c)
    for m in ("Fruit", "Fruit.Apple", "Fruit.Banana", "Tofu", "Vegetable",
              "Vegetable.Broccoli", "Vegetable.Corn"):
        c.ok("CREATE %s" % m)
    for m in ("INBOX", "Fruit.Banana", "Fruit.Peach", "Vegetable", "Vegetable.Broccoli"):
        c.ok("SUBSCRIBE %s" % m)


@pytest.fixture
def c(imap_server):
    with imap_server.session() as conn:
        yield conn


# --------------------------------------------------------------------------
# RFC 5258 section 5


def test_capabilities(c):
    caps = capabilities(c.ok("CAPABILITY").data("CAPABILITY")[0])
    for cap in ("LIST-EXTENDED", "LIST-STATUS", "SPECIAL-USE", "CHILDREN"):
        assert cap in caps, caps


def test_example_list_all(c):
    rfc5258_setup(c)
    r = c.ok('LIST "" "*"')
    assert list_names(r) == ["Fruit", "Fruit.Apple", "Fruit.Banana", "INBOX", "Tofu",
                             "Vegetable", "Vegetable.Broccoli", "Vegetable.Corn"]
    # an empty selection and return option list is the same LIST
    r2 = c.ok('LIST () "" "*" RETURN ()')
    assert entries(r2) == entries(r)


def test_example_subscribed(c):
    """LIST (SUBSCRIBED): the subscribed names, Fruit.Peach that does not
    exist as \\NonExistent, each \\Subscribed."""
    rfc5258_setup(c)
    r = c.ok('LIST (SUBSCRIBED) "" "*"')
    got = by_name(r)
    assert sorted(got) == ["Fruit.Banana", "Fruit.Peach", "INBOX", "Vegetable",
                           "Vegetable.Broccoli"], r
    for name, (attrs, ext) in got.items():
        assert "\\subscribed" in attrs and ext is None, (name, attrs)
    assert "\\nonexistent" in got["Fruit.Peach"][0]
    assert "\\nonexistent" not in got["Vegetable"][0]
    # REMOTE changes nothing: there are no remote mailboxes
    assert by_name(c.ok('LIST (SUBSCRIBED REMOTE) "" "*"')) == got


def test_example_return_children(c):
    rfc5258_setup(c)
    for cmd in ('LIST "" "%" RETURN (CHILDREN)', 'LIST (REMOTE) "" "%" RETURN (CHILDREN)'):
        at = list_attrs(c.ok(cmd))
        assert sorted(at) == ["Fruit", "INBOX", "Tofu", "Vegetable"], at
        assert "\\haschildren" in at["Fruit"] and "\\haschildren" in at["Vegetable"]
        assert "\\hasnochildren" in at["Tofu"] and "\\hasnochildren" in at["INBOX"]


def test_example_return_subscribed(c):
    """RETURN (SUBSCRIBED) marks the subscribed names among all those LIST
    selects; Fruit.Peach does not exist and is not shown."""
    rfc5258_setup(c)
    at = list_attrs(c.ok('LIST "" "*" RETURN (SUBSCRIBED)'))
    assert "Fruit.Peach" not in at
    marked = sorted(n for n, a in at.items() if "\\subscribed" in a)
    assert marked == ["Fruit.Banana", "INBOX", "Vegetable", "Vegetable.Broccoli"], at
    assert "\\subscribed" not in at["Fruit"]


def test_example_recursivematch(c):
    """With '%', Fruit (not subscribed) has a subscribed child that is not
    shown: CHILDINFO ("SUBSCRIBED") and no \\Subscribed; Vegetable is
    subscribed and has one too; Tofu has none and is not shown."""
    rfc5258_setup(c)
    r = c.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" "%" RETURN (CHILDREN)')
    got = by_name(r)
    assert sorted(got) == ["Fruit", "INBOX", "Vegetable"], r
    attrs, ext = got["Fruit"]
    assert "\\subscribed" not in attrs and childinfo(ext) == ["SUBSCRIBED"], r
    attrs, ext = got["Vegetable"]
    assert "\\subscribed" in attrs and childinfo(ext) == ["SUBSCRIBED"], r
    attrs, ext = got["INBOX"]
    assert "\\subscribed" in attrs and ext is None, r
    # the same without RECURSIVEMATCH: Fruit is not there at all
    got = by_name(c.ok('LIST (SUBSCRIBED) "" "%"'))
    assert sorted(got) == ["INBOX", "Vegetable"]
    assert all(x is None for _, x in got.values())
    # with '*' every subscribed child is shown itself: no CHILDINFO
    got = by_name(c.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" "*"'))
    assert sorted(got) == ["Fruit.Banana", "Fruit.Peach", "INBOX", "Vegetable",
                           "Vegetable.Broccoli"], got
    assert all(x is None for _, x in got.values()), got


def test_example_multiple_patterns(c):
    clear(c)
    for m in ("Drafts", "Sent", "Sent.March2004", "Sent.December2003", "Sent.August2004",
              "Unlisted", "Unlisted.Foo"):
        c.ok("CREATE %s" % m)
    r = c.ok('LIST "" ("INBOX" "Drafts" "Sent.%")')
    assert list_names(r) == ["Drafts", "INBOX", "Sent.August2004", "Sent.December2003",
                             "Sent.March2004"], r
    # a name two patterns match is shown once; the reference applies to each
    r = c.ok('LIST "" ("Sent*" "Sent.M*" "*2004")')
    assert sorted(n for n, _, _ in entries(r)) == [
        "Sent", "Sent.August2004", "Sent.December2003", "Sent.March2004"], r
    r = c.ok('LIST "Sent." ("M%" "A%")')
    assert list_names(r) == ["Sent.August2004", "Sent.March2004"], r


def test_example_childinfo_hierarchy(c):
    """Foo, Foo.Bar, Foo.Baz, Moo: CHILDREN, then CHILDINFO as Foo.Baz and
    then Foo are subscribed."""
    clear(c)
    for m in ("Foo", "Foo.Bar", "Foo.Baz", "Moo"):
        c.ok("CREATE %s" % m)
    at = list_attrs(c.ok('LIST "" "%" RETURN (CHILDREN)'))
    assert sorted(at) == ["Foo", "INBOX", "Moo"]
    assert "\\haschildren" in at["Foo"] and "\\hasnochildren" in at["Moo"]
    c.ok("SUBSCRIBE Foo.Baz")
    got = by_name(c.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" "%" RETURN (CHILDREN)'))
    assert sorted(got) == ["Foo"], got
    assert "\\haschildren" in got["Foo"][0] and "\\subscribed" not in got["Foo"][0]
    assert childinfo(got["Foo"][1]) == ["SUBSCRIBED"]
    # Foo.Baz is shown itself: no redundant CHILDINFO for Foo
    got = by_name(c.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" "*"'))
    assert sorted(got) == ["Foo.Baz"], got
    c.ok("SUBSCRIBE Foo")
    got = by_name(c.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"'))
    assert "\\subscribed" in got["Foo"][0] and childinfo(got["Foo"][1]) == ["SUBSCRIBED"]
    got = by_name(c.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" "*"'))
    assert sorted(got) == ["Foo", "Foo.Baz"] and got["Foo"][1] is None, got


def test_subscribed_level_that_does_not_exist(c):
    """A subscribed name whose parent level is no mailbox: with '%' and
    RECURSIVEMATCH the level is shown as \\NonExistent with CHILDINFO."""
    clear(c)
    c.ok("CREATE Gone.Box")
    c.ok("SUBSCRIBE Gone.Box")
    c.ok("DELETE Gone.Box")
    got = by_name(c.ok('LIST (SUBSCRIBED) "" "Gone*"'))
    assert sorted(got) == ["Gone.Box"]
    assert {"\\nonexistent", "\\subscribed"} <= got["Gone.Box"][0]
    got = by_name(c.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"'))
    assert sorted(got) == ["Gone"], got
    assert "\\nonexistent" in got["Gone"][0] and childinfo(got["Gone"][1]) == ["SUBSCRIBED"]
    # without the SUBSCRIBED selection option only existing names are listed
    assert "Gone.Box" not in list_names(c.ok('LIST "" "*" RETURN (SUBSCRIBED)'))


def test_bad_options(c):
    """RFC 5258 3: unknown options, RECURSIVEMATCH without a base option,
    and malformed pattern lists are BAD; the session goes on."""
    for cmd in ('LIST (RECURSIVEMATCH) "" "*"', 'LIST (REMOTE RECURSIVEMATCH) "" "*"',
                'LIST (BOGUS) "" "*"', 'LIST "" "*" RETURN (BOGUS)',
                'LIST "" "*" RETURN (STATUS (MESSAGES BOGUS))', 'LIST "" "*" RETURN (STATUS)',
                'LIST "" "*" RETURN (STATUS ())', 'LIST "" ()', 'LIST "" "*" RETURN',
                'LIST "" "*" RETURN (CHILDREN) extra', 'LIST "" (("x"))',
                'LIST ("SUBSCRIBED") "" "*"'):
        r = c.command(cmd)
        assert r.status == "BAD", (cmd, r)
    # bounded: 32 patterns are taken, 33 are not; a pattern of 1024 bytes is
    r = c.ok('LIST "" (%s)' % " ".join(['"x%d"' % i for i in range(31)] + ['"INBOX"']))
    assert list_names(r) == ["INBOX"]
    c.bad('LIST "" (%s)' % " ".join('"x%d"' % i for i in range(33)))
    c.ok('LIST "" "%s"' % ("*" * 1024))
    c.bad('LIST "" "%s"' % ("*" * 1025))
    c.ok("NOOP")


# --------------------------------------------------------------------------
# SPECIAL-USE in LIST (RFC 6154 5.1, 5.2)


def test_special_use_selection_and_return(c):
    c.ok("CREATE Projects.Foo")
    c.ok("CREATE ToDo")
    r = c.ok('LIST "" "%" RETURN (SPECIAL-USE)')
    at = list_attrs(r)
    for folder, attr in SPECIAL.items():
        assert attr.lower() in at[folder], at
    assert at["ToDo"] == {"\\hasnochildren"} and "\\noselect" in at["Projects"]
    r = c.ok('LIST (SPECIAL-USE) "" "*"')
    at = list_attrs(r)
    assert sorted(at) == sorted(SPECIAL), at
    for folder, attr in SPECIAL.items():
        assert attr.lower() in at[folder] and "\\subscribed" not in at[folder]
    c.ok("UNSUBSCRIBE Junk")
    at = list_attrs(c.ok('LIST (SPECIAL-USE) "" "*" RETURN (SUBSCRIBED)'))
    assert sorted(n for n, a in at.items() if "\\subscribed" in a) == \
        sorted(set(SPECIAL) - {"Junk"}), at
    # both base options: special-use and subscribed
    at = list_attrs(c.ok('LIST (SPECIAL-USE SUBSCRIBED) "" "*"'))
    assert sorted(at) == sorted(set(SPECIAL) - {"Junk"}), at


# --------------------------------------------------------------------------
# LIST-STATUS (RFC 5819)


def test_list_status_example(imap_server):
    """RFC 5819 example: each selectable mailbox's STATUS right after its
    LIST response, none for a \\Noselect level."""
    inst = imap_server.instance
    put(inst, ALICE, message(1))
    put(inst, ALICE, message(2), flags="S")
    put(inst, ALICE, message(3), flags="")
    make_folder(inst, ALICE, "foo")
    make_folder(inst, ALICE, "bar.baz")
    foo = [message(10), message(11, body_lines=9)]
    for d in foo:
        put(inst, ALICE, d, folder="foo")
    with imap_server.session() as c:
        r = c.ok('LIST "" % RETURN (STATUS (MESSAGES UNSEEN))')
        seq = order(r)
        for name in ["INBOX", "foo"] + sorted(SPECIAL):
            i = seq.index("LIST %s" % name)
            assert seq[i + 1] == "STATUS %s" % name, seq
        i = seq.index("LIST bar")
        assert i + 1 == len(seq) or not seq[i + 1].startswith("STATUS"), seq
        assert len([x for x in seq if x.startswith("STATUS")]) == 2 + len(SPECIAL), seq
        st = statuses(r)
        assert st["INBOX"] == {"MESSAGES": 3, "UNSEEN": 2}, st
        assert st["foo"] == {"MESSAGES": 2, "UNSEEN": 2}, st
        assert "bar" not in st
        # the items of STATUS=SIZE and APPENDLIMIT, in the order asked
        r = c.ok('LIST "" ("foo" "bar.baz") RETURN (STATUS (SIZE UIDNEXT APPENDLIMIT)'
                 ' CHILDREN)')
        st = statuses(r)
        assert list(st["foo"]) == ["SIZE", "UIDNEXT", "APPENDLIMIT"], r.untagged
        assert st["foo"]["SIZE"] == sum(len(crlf(d)) for d in foo), st
        assert st["bar.baz"] == {"SIZE": 0, "UIDNEXT": 1, "APPENDLIMIT": 52428800}, st
        # the same numbers as STATUS
        r2 = c.ok("STATUS foo (SIZE UIDNEXT APPENDLIMIT)")
        assert statuses(r2)["foo"] == st["foo"]
        c.logout()


def test_list_status_not_for_nonexistent_or_childinfo(c):
    rfc5258_setup(c)
    r = c.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" "%" RETURN (STATUS (MESSAGES))')
    st = statuses(r)
    # Fruit is shown only for CHILDINFO, INBOX and Vegetable are selected
    assert sorted(st) == ["INBOX", "Vegetable"], r.untagged
    r = c.ok('LIST (SUBSCRIBED) "" "*" RETURN (STATUS (MESSAGES))')
    st = statuses(r)
    assert "Fruit.Peach" not in st and sorted(st) == ["Fruit.Banana", "INBOX", "Vegetable",
                                                      "Vegetable.Broccoli"], r.untagged


# --------------------------------------------------------------------------
# imap_namespace_prefix = INBOX. (Courier's names)


@pytest.fixture
def courier_inst(imap_inst):
    courier_maildir(imap_inst)
    return imap_inst


def test_extended_list_with_inbox_prefix(courier_inst, imap_start):
    srv = imap_start(courier_inst, PREFIX)
    with srv.session() as c:
        got = by_name(c.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"'))
        assert sorted(got) == ["INBOX"], got
        assert "\\subscribed" in got["INBOX"][0]
        assert childinfo(got["INBOX"][1]) == ["SUBSCRIBED"]
        got = by_name(c.ok('LIST (SUBSCRIBED) "" "*"'))
        assert sorted(got) == ["INBOX", "INBOX.Drafts", "INBOX.Sent", "INBOX.Trash",
                               "INBOX.Work"], got
        r = c.ok('LIST "" ("INBOX.Work" "INBOX.Sent") RETURN (STATUS (MESSAGES) SUBSCRIBED)')
        assert statuses(r) == {"INBOX.Sent": {"MESSAGES": 1}, "INBOX.Work": {"MESSAGES": 1}}
        assert order(r) == ["LIST INBOX.Sent", "STATUS INBOX.Sent", "LIST INBOX.Work",
                            "STATUS INBOX.Work"], r.untagged
        at = list_attrs(r)
        assert "\\haschildren" in at["INBOX.Work"] and "\\subscribed" in at["INBOX.Work"]
        at = list_attrs(c.ok('LIST (SPECIAL-USE) "" "*"'))
        assert sorted(at) == ["INBOX.Drafts", "INBOX.Sent", "INBOX.Trash"], at
        c.logout()


# --------------------------------------------------------------------------
# CREATE-SPECIAL-USE (RFC 6154 3)


def special_file(inst, folder):
    return os.path.join(maildir_of(inst, ALICE), "." + folder, "petrel-special-use")


def test_create_special_use_example(imap_server):
    """RFC 6154 5.3: CREATE MySpecial (USE (\\Drafts \\Sent)), then LIST
    shows both attributes, in this session, the next one and after a
    restart (kept in the folder's petrel-special-use)."""
    inst = imap_server.instance
    with imap_server.session() as c:
        caps = capabilities(c.ok("CAPABILITY").data("CAPABILITY")[0])
        assert "CREATE-SPECIAL-USE" in caps, caps
        c.ok("CREATE MySpecial (USE (\\Drafts \\Sent))")
        at = list_attrs(c.ok('LIST "" MySpecial'))
        assert at == {"MySpecial": {"\\hasnochildren", "\\drafts", "\\sent"}}, at
        at = list_attrs(c.ok('LIST (SPECIAL-USE) "" "*"'))
        assert sorted(at) == sorted(list(SPECIAL) + ["MySpecial"]), at
        c.logout()
    with open(special_file(inst, "MySpecial")) as f:
        assert f.read().split() == ["\\Drafts", "\\Sent"]
    assert not os.path.exists(special_file(inst, "MySpecial") + ".tmp")
    imap_server.stop()
    with running(inst) as srv:
        with srv.session() as c:
            at = list_attrs(c.ok('LIST "" "My*" RETURN (SPECIAL-USE)'))
            assert at == {"MySpecial": {"\\hasnochildren", "\\drafts", "\\sent"}}, at
            c.logout()


def test_create_special_use_follows_rename_and_delete(c):
    c.ok("CREATE Lists (USE (\\junk))")           # any case, kept as \Junk
    at = list_attrs(c.ok('LIST "" Lists'))
    assert at["Lists"] == {"\\hasnochildren", "\\junk"}, at
    c.ok("RENAME Lists Filtered")
    at = list_attrs(c.ok('LIST "" "*"'))
    assert "Lists" not in at and "\\junk" in at["Filtered"], at
    c.ok("DELETE Filtered")
    c.ok("CREATE Filtered")
    at = list_attrs(c.ok('LIST "" Filtered'))
    assert at["Filtered"] == {"\\hasnochildren"}, at
    # a special-use name already there is [ALREADYEXISTS], not re-used
    r = c.no("CREATE Sent (USE (\\Sent))")
    assert r.code() == "ALREADYEXISTS", r


def test_create_unsupported_use_is_useattr(imap_server):
    """\\All and \\Flagged (virtual mailboxes) and unknown attributes: NO
    [USEATTR], and no mailbox is made (RFC 6154 3)."""
    inst = imap_server.instance
    with imap_server.session() as c:
        before = folders_on_disk(inst, ALICE)
        for attr in ("\\All", "\\Flagged", "\\Bogus", "\\Sent \\Important"):
            r = c.no("CREATE Foo (USE (%s))" % attr)
            assert r.code() == "USEATTR", (attr, r)
        assert folders_on_disk(inst, ALICE) == before
        assert "Foo" not in list_names(c.ok('LIST "" "*"'))
        for cmd in ("CREATE Foo (FOO (\\Sent))", "CREATE Foo (USE)", "CREATE Foo (USE ())",
                    "CREATE Foo ()", "CREATE Foo (USE (\\Sent) USE (\\Drafts))",
                    'CREATE Foo (USE ("Sent"))', "CREATE Foo (USE (Sent))",
                    "CREATE Foo (USE (\\Sent)) extra"):
            r = c.command(cmd)
            assert r.status == "BAD", (cmd, r)
        assert folders_on_disk(inst, ALICE) == before
        c.ok("CREATE Foo")
        c.logout()


def test_special_use_recursivematch(c):
    """SPECIAL-USE as the base of RECURSIVEMATCH: a folder with a special
    use below a level '%' shows gets CHILDINFO ("SPECIAL-USE")."""
    c.ok("CREATE Old")
    c.ok("CREATE Old.Y2024 (USE (\\Archive))")
    got = by_name(c.ok('LIST (SPECIAL-USE RECURSIVEMATCH) "" "%"'))
    assert sorted(got) == sorted(list(SPECIAL) + ["Old"]), got
    assert childinfo(got["Old"][1]) == ["SPECIAL-USE"] and "\\archive" not in got["Old"][0]
    assert all(got[f][1] is None for f in SPECIAL), got
    got = by_name(c.ok('LIST (SPECIAL-USE RECURSIVEMATCH) "" "*"'))
    assert "Old" not in got and "\\archive" in got["Old.Y2024"][0], got


def test_create_special_use_with_inbox_prefix(courier_inst, imap_start):
    srv = imap_start(courier_inst, PREFIX)
    with srv.session() as c:
        c.ok("CREATE INBOX.Lists (USE (\\Junk))")
        at = list_attrs(c.ok('LIST "" "INBOX.L*"'))
        assert at == {"INBOX.Lists": {"\\hasnochildren", "\\junk"}}, at
        assert os.path.exists(os.path.join(maildir_of(courier_inst, ALICE), ".Lists",
                                           "petrel-special-use"))
        r = c.no("CREATE Lists2 (USE (\\Junk))")
        assert r.code() == "CANNOT", r
        c.logout()


def test_create_special_use_repeated_attributes(imap_server):
    """An attribute named more than once is kept once: the file stays a
    few bytes (it is read up to 256) and keeps every attribute given."""
    inst = imap_server.instance
    with imap_server.session() as c:
        c.ok("CREATE Dup (USE (\\Sent \\sent \\SENT \\Drafts))")
        many = " ".join(["\\Sent"] * 2000 + ["\\Trash"])
        c.ok("CREATE Many (USE (%s))" % many)
        at = list_attrs(c.ok('LIST "" ("Dup" "Many")'))
        assert at == {"Dup": {"\\hasnochildren", "\\sent", "\\drafts"},
                      "Many": {"\\hasnochildren", "\\sent", "\\trash"}}, at
        c.logout()
    with open(special_file(inst, "Dup")) as f:
        assert sorted(f.read().split()) == ["\\Drafts", "\\Sent"]
    assert os.path.getsize(special_file(inst, "Many")) < 64
