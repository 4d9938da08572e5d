"""IMAP OBJECTID (RFC 8474): MAILBOXID in the CREATE OK, SELECT/EXAMINE,
STATUS and LIST RETURN (STATUS (MAILBOXID)); the same across RENAME, a
restart and a re-index, a new one for a folder deleted and created again;
EMAILID in FETCH, the same across flag changes, new/ to cur/, a restart and
a re-index, kept by MOVE, new for COPY; THREADID NIL (threads are not
tracked); SEARCH EMAILID and THREADID. The RFC's examples (sections 4.1,
4.2, 5.3 and 6) and the id syntax (1-255 of letters, digits, '-', '_').
One server for the module (SQLite), restarted once."""

import os
import re

import pytest

from imap_util import (ALICE, PASSWORD, Literal, check_stopped, folder_dir,  # noqa: F401
                       imap_instance, make_folder, message, put, reset_maildirs,
                       start_imap)

from harness.conn import capabilities, parse

CAROL = "carol@example.test"
ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")


@pytest.fixture(scope="module")
def box(imap_instance):
    reset_maildirs(imap_instance)
    imap_instance.add_user(CAROL, PASSWORD)
    holder = {"srv": start_imap(imap_instance)}
    yield holder
    problems = check_stopped([holder["srv"]])
    assert not problems, problems


@pytest.fixture
def srv(box):
    return box["srv"]


@pytest.fixture
def c(srv):
    conn = srv.session()
    yield conn
    conn.close()


def restart(box, inst):
    box["srv"].stop()
    box["srv"] = start_imap(inst)
    return box["srv"]


def created_id(r):
    m = re.match(r"\[MAILBOXID \(([^)]*)\)\]", r.text)
    assert m, r
    assert ID_RE.match(m.group(1)), r
    return m.group(1)


def status_id(c, name):
    r = c.ok("STATUS %s (MAILBOXID)" % name)
    v = parse(r.data("STATUS")[0])
    assert v[1][0].upper() == "MAILBOXID", v
    mid = v[1][1][0]
    assert ID_RE.match(mid), v
    return mid


def select_id(r):
    ids = [re.match(rb"\* OK \[MAILBOXID \(([^)]*)\)\]", u) for u in r.untagged]
    ids = [m.group(1).decode() for m in ids if m]
    assert len(ids) == 1, r
    return ids[0]


def fetch_ids(c, rng="1:*"):
    """{UID: (EMAILID, THREADID)} of UID FETCH rng."""
    r = c.ok("UID FETCH %s (EMAILID THREADID)" % rng)
    out = {}
    for d in r.fetches().values():
        assert isinstance(d["EMAILID"], list) and len(d["EMAILID"]) == 1, d
        assert ID_RE.match(d["EMAILID"][0]), d
        out[int(d["UID"])] = (d["EMAILID"][0], d["THREADID"])
    return out


def search(c, keys, uid=False):
    r = c.ok(("UID " if uid else "") + "SEARCH " + keys)
    return [int(x) for x in r.data("SEARCH")[0].split()]


def test_capability(srv):
    with srv.conn() as c:
        before = capabilities(c.ok("CAPABILITY").data("CAPABILITY")[0])
        assert "OBJECTID" not in before
        c.login()
        caps = capabilities(c.ok("CAPABILITY").data("CAPABILITY")[0])
        assert "OBJECTID" in caps, caps
        c.logout()


def test_rfc8474_create_and_rename(c):
    """4.1 and 4.2: CREATE answers the new id, a second CREATE of the name
    fails; RENAME keeps the id; SELECT and EXAMINE tell it."""
    foo = created_id(c.ok("CREATE foo"))
    bar = created_id(c.ok("CREATE bar"))
    assert foo != bar
    c.no("CREATE foo")
    assert status_id(c, "foo") == foo
    c.ok("RENAME foo renamed")
    assert status_id(c, "renamed") == foo
    assert status_id(c, "bar") == bar
    c.no("STATUS foo (MAILBOXID)")
    assert select_id(c.select("renamed")) == foo
    assert select_id(c.examine("bar")) == bar
    c.ok("UNSELECT")
    # more items around it, in the order asked
    r = c.ok("STATUS bar (MESSAGES MAILBOXID UIDNEXT)")
    v = parse(r.data("STATUS")[0])[1]
    assert v == ["MESSAGES", "0", "MAILBOXID", [bar], "UIDNEXT", "1"], v


def test_delete_and_create_again_gives_a_new_id(c):
    old = created_id(c.ok("CREATE again"))
    c.ok("DELETE again")
    new = created_id(c.ok("CREATE again"))
    assert new != old
    assert status_id(c, "again") == new


def test_children_keep_their_ids_when_the_parent_moves(c):
    p = created_id(c.ok("CREATE parent"))
    k = created_id(c.ok("CREATE parent.kid"))
    c.ok("RENAME parent other")
    assert status_id(c, "other") == p
    assert status_id(c, "other.kid") == k


def test_inbox_and_foreign_folders_get_one_id(c, srv):
    """INBOX and a folder another program made have an id the first time
    one is asked for; a second session sees the same."""
    inst = srv.instance
    make_folder(inst, ALICE, "Foreign")
    inbox = status_id(c, "INBOX")
    foreign = status_id(c, "Foreign")
    assert inbox != foreign
    with srv.session() as c2:
        assert status_id(c2, "inbox") == inbox
        assert status_id(c2, "Foreign") == foreign
        c2.logout()
    assert select_id(c.select("INBOX")) == inbox


def test_list_status_mailboxid(c):
    """LIST-STATUS (RFC 5819) carries the id as STATUS does."""
    ids = {n: status_id(c, n) for n in ("INBOX", "bar")}
    r = c.ok('LIST "" "*" RETURN (STATUS (MAILBOXID MESSAGES))')
    got = {}
    for st in r.data("STATUS"):
        v = parse(st)
        d = dict(zip(v[1][::2], v[1][1::2]))
        got[v[0] if isinstance(v[0], str) else v[0].decode()] = d["MAILBOXID"][0]
    for n, mid in ids.items():
        assert got[n] == mid, (n, got)
    c.bad('LIST "" "*" RETURN (STATUS (MAILBOXID BOGUS))')


def test_fetch_emailid_rfc_example(c):
    """5.3: UID FETCH 1:* (EMAILID THREADID): one id per message, all
    different, THREADID NIL."""
    c.ok("CREATE ex53")
    for k in range(1, 4):
        c.ok("APPEND ex53 ", Literal(message(k), plus=True))
    c.select("ex53")
    ids = fetch_ids(c)
    assert sorted(ids) == [1, 2, 3]
    assert len({e for e, _ in ids.values()}) == 3, ids
    assert all(t is None for _, t in ids.values()), ids
    # alone, and beside other items
    r = c.ok("FETCH 2 (FLAGS EMAILID RFC822.SIZE)")
    assert r.fetches()[2]["EMAILID"] == [ids[2][0]]
    r = c.ok("FETCH 1 THREADID")
    assert r.fetches()[1]["THREADID"] is None


def test_emailid_stable_across_flags_restart_reindex(box, srv):
    """The id of a delivered message and of one put in new/ by another
    program: the same after new/ to cur/, flag changes, a restart, and a
    re-index (petrel-index, its log and the cache removed)."""
    inst = srv.instance
    srv.deliver(CAROL, message(1))
    put(inst, CAROL, message(2))
    with srv.session(user=CAROL) as c:
        c.select("INBOX")
        first = fetch_ids(c)
        assert len(first) == 2
        c.ok("STORE 1:* +FLAGS (\\Seen \\Flagged $Label)")
        c.ok("STORE 1 -FLAGS (\\Flagged)")
        assert fetch_ids(c) == first
        mid = status_id(c, "INBOX")
        c.logout()
    srv = restart(box, inst)
    d = folder_dir(inst, CAROL, "INBOX")
    with srv.session(user=CAROL) as c:
        c.select("INBOX")
        assert fetch_ids(c) == first
        c.logout()
    for f in ("petrel-index", "petrel-index.log", "petrel-cache"):
        if os.path.exists(os.path.join(d, f)):
            os.unlink(os.path.join(d, f))
    with srv.session(user=CAROL) as c:
        c.select("INBOX")
        assert sorted(fetch_ids(c).values()) == sorted(first.values())
        assert status_id(c, "INBOX") == mid
        c.logout()


def test_move_keeps_copy_renews(c):
    c.ok("CREATE mv1")
    c.ok("CREATE mv2")
    for k in range(1, 4):
        c.ok("APPEND mv1 ", Literal(message(k), plus=True))
    c.select("mv1")
    ids = fetch_ids(c)
    c.ok("UID COPY 1 mv2")
    c.ok("UID MOVE 2:3 mv2")
    c.select("mv2")
    got = fetch_ids(c)
    assert len(got) == 3
    copied, moved2, moved3 = (got[u][0] for u in sorted(got))
    assert copied != ids[1][0]
    assert (moved2, moved3) == (ids[2][0], ids[3][0])
    # moved back again: still the same
    c.ok("UID MOVE %d mv1" % sorted(got)[1])
    c.select("mv1")
    assert ids[2][0] in [e for e, _ in fetch_ids(c).values()]
    assert search(c, "EMAILID " + ids[2][0]) == [2]


def test_search_emailid_threadid(c):
    """6: SEARCH EMAILID finds the message with that id (and nothing for an
    unknown one), THREADID finds nothing; an invalid id is BAD."""
    c.ok("CREATE srch")
    for k in range(1, 5):
        c.ok("APPEND srch ", Literal(message(k), plus=True))
    c.select("srch")
    ids = fetch_ids(c)
    for uid, (e, _) in ids.items():
        assert search(c, "EMAILID " + e, uid=True) == [uid]
    e3 = ids[3][0]
    assert search(c, "OR EMAILID %s EMAILID %s" % (ids[1][0], e3)) == [1, 3]
    assert search(c, "NOT EMAILID " + e3) == [1, 2, 4]
    assert search(c, "EMAILID Mnosuchid") == []
    assert search(c, "THREADID T1234") == []
    assert search(c, "NOT THREADID T1234") == [1, 2, 3, 4]
    assert search(c, "EMAILID " + "a" * 255) == []
    for bad in ("EMAILID", "EMAILID a.b", 'EMAILID ""', "EMAILID " + "a" * 256,
                "THREADID (x)", 'THREADID "a b"'):
        c.bad("SEARCH " + bad)


def test_rename_inbox(c):
    """RFC 3501 6.3.5: RENAME INBOX moves its messages to a new folder and
    leaves INBOX empty; INBOX keeps its id, the new folder gets another."""
    inbox = status_id(c, "INBOX")
    c.ok("APPEND INBOX ", Literal(message(1), plus=True))
    c.select("INBOX")
    (eid, _), = fetch_ids(c).values()
    c.ok("UNSELECT")
    c.ok("RENAME INBOX oldinbox")
    assert status_id(c, "INBOX") == inbox
    assert status_id(c, "oldinbox") != inbox
    c.select("oldinbox")
    assert [e for e, _ in fetch_ids(c).values()] == [eid]
