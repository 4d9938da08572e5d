"""IMAP METADATA and METADATA-SERVER (RFC 5464): the RFC's examples
(sections 4.2, 4.2.1, 4.2.2, 4.3 and 4.4.1) on server and mailbox
annotations, /private and /shared; entry names (section 3.2) refused with
BAD; MAXSIZE and LONGENTRIES; DEPTH 0, 1 and infinity; removal with NIL;
literal and literal8 values (CRLF, NUL, 8-bit) given back byte for byte;
the limits ([METADATA MAXSIZE n], [METADATA TOOMANY]) with nothing changed
by a refused command; the annotations surviving a restart, following
RENAME (children too), copied by RENAME INBOX, gone with DELETE (and not
inherited by a folder created again under the name); two sessions of a user
seeing each other's changes; another user seeing none; the file beside the
Maildir. One server for the module, restarted once."""

import os

import pytest

from imap_util import (ALICE, PASSWORD, Literal, check_stopped, folder_dir,  # noqa: F401
                       imap_instance, reset_maildirs, start_imap)

from harness.conn import capabilities, parse

CAROL = "carol@example.test"
VALUE_MAX = 16 * 1024
ENTRIES_MAX = 1000
TOTAL_MAX = 512 * 1024


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


def metadata(r):
    """The METADATA responses of a Result -> (mailbox, {entry: value}) with
    entry names as sent and values bytes or None; every response must name
    the same mailbox."""
    box, out = None, {}
    for d in r.data("METADATA"):
        v = parse(d.replace(b"~{", b"{"))
        name = v[0].decode() if isinstance(v[0], bytes) else v[0]
        assert box is None or box == name, r
        box = name
        items = v[1]
        assert isinstance(items, list) and items and len(items) % 2 == 0, r
        for i in range(0, len(items), 2):
            k = items[i].decode() if isinstance(items[i], bytes) else items[i]
            assert k not in out, r
            out[k] = items[i + 1]
    return box, out


def get(c, args):
    return metadata(c.ok("GETMETADATA " + args))


def test_capability(srv):
    with srv.conn() as c:
        before = capabilities(c.ok("CAPABILITY").data("CAPABILITY")[0])
        assert "METADATA" not in before and "METADATA-SERVER" not in before
        c.bad('GETMETADATA "" /shared/comment')
        c.login()
        caps = capabilities(c.ok("CAPABILITY").data("CAPABILITY")[0])
        assert "METADATA" in caps and "METADATA-SERVER" in caps, caps
        c.logout()


def test_rfc5464_server_and_mailbox_examples(c):
    """4.2 and 4.4.1: a server entry and mailbox entries, alone and as a
    list, answered in one METADATA response; names are case-insensitive."""
    c.ok('SETMETADATA "" (/shared/comment "Shared comment")')
    assert get(c, '"" /shared/comment') == ("", {"/shared/comment": b"Shared comment"})
    c.ok('SETMETADATA INBOX (/private/comment "My own comment" '
         '/shared/comment "Its sunny outside!")')
    assert get(c, '"INBOX" /private/comment') == ("INBOX", {"/private/comment": b"My own comment"})
    box, got = get(c, '"INBOX" (/shared/comment /private/comment)')
    assert box == "INBOX"
    assert got == {"/shared/comment": b"Its sunny outside!",
                   "/private/comment": b"My own comment"}
    assert get(c, 'inbox /PRIVATE/Comment') == ("INBOX", {"/private/comment": b"My own comment"})
    # the server's and INBOX's entries are apart
    assert get(c, '"" /private/comment') == ("", {"/private/comment": None})
    # an entry that has no value: NIL
    assert get(c, 'INBOX /shared/vendor/test/none') == (
        "INBOX", {"/shared/vendor/test/none": None})


def test_rfc5464_setmetadata_examples(c):
    """4.3: a multi-line value in a synchronising literal, removal with NIL,
    several entries in one command."""
    c.ok("CREATE ex43")
    r = c.ok("SETMETADATA ex43 (/private/comment ",
             Literal(b"My new comment across\r\ntwo lines.\r\n"), ")")
    assert r.cont, r
    assert get(c, "ex43 /private/comment")[1] == {
        "/private/comment": b"My new comment across\r\ntwo lines.\r\n"}
    c.ok("SETMETADATA ex43 (/private/comment NIL)")
    assert get(c, "ex43 /private/comment")[1] == {"/private/comment": None}
    c.ok('SETMETADATA ex43 (/private/comment "My new comment" '
         '/shared/comment "This one is for you!")')
    assert get(c, "ex43 (/private/comment /shared/comment)")[1] == {
        "/private/comment": b"My new comment",
        "/shared/comment": b"This one is for you!"}
    # NIL removes an entry that does not exist: fine
    c.ok("SETMETADATA ex43 (/private/never NIL)")


def test_rfc5464_maxsize_example(c):
    """4.2.1: the entry over MAXSIZE is left out and the OK says the size
    of the largest one left out; options before or after the mailbox."""
    c.ok("CREATE ex421")
    big = b"x" * 2199
    c.ok("SETMETADATA ex421 (/shared/comment ", Literal(big, plus=True),
         ' /private/comment "My own comment" /private/mid ',
         Literal(b"y" * 1500, plus=True), ")")
    for cmd in ("GETMETADATA ex421 (MAXSIZE 1024) (/shared/comment /private/comment)",
                "GETMETADATA (MAXSIZE 1024) ex421 (/shared/comment /private/comment)"):
        r = c.ok(cmd)
        assert r.code() == "METADATA LONGENTRIES 2199", r
        assert metadata(r)[1] == {"/private/comment": b"My own comment"}
    r = c.ok("GETMETADATA ex421 (MAXSIZE 2000) (/shared/comment /private/mid)")
    assert r.code() == "METADATA LONGENTRIES 2199", r
    assert metadata(r)[1] == {"/private/mid": b"y" * 1500}
    # the largest of those left out
    r = c.ok("GETMETADATA ex421 (MAXSIZE 10) (/shared/comment /private/mid)")
    assert r.code() == "METADATA LONGENTRIES 2199", r
    assert r.data("METADATA") == []
    # equal to MAXSIZE is returned, and no response code then
    r = c.ok("GETMETADATA ex421 (MAXSIZE 2199) /shared/comment")
    assert r.code() is None, r
    assert metadata(r)[1] == {"/shared/comment": big}
    r = c.ok("GETMETADATA ex421 (MAXSIZE 0) /private/never")
    assert r.code() is None and metadata(r)[1] == {"/private/never": None}


def test_rfc5464_depth_example(c):
    """4.2.2: DEPTH 1 gives the children, not the grandchildren; DEPTH
    infinity all of them; DEPTH 0 (the default) the entry alone."""
    c.ok("CREATE ex422")
    c.ok('SETMETADATA ex422 (/private/filters/values/small "SMALLER 5000" '
         '/private/filters/values/boss "FROM \\"boss@example.com\\"" '
         '/private/filters/values/boss/deeper "grandchild" '
         '/private/filters/valuesx "a sibling, not a child")')
    want1 = {"/private/filters/values/small": b"SMALLER 5000",
             "/private/filters/values/boss": b'FROM "boss@example.com"'}
    assert get(c, "ex422 (DEPTH 1) (/private/filters/values)") == ("ex422", want1)
    assert get(c, "(DEPTH 1) ex422 /private/filters/values")[1] == want1
    wantinf = dict(want1)
    wantinf["/private/filters/values/boss/deeper"] = b"grandchild"
    assert get(c, "ex422 (DEPTH infinity) /private/filters/values")[1] == wantinf
    assert get(c, "ex422 (DEPTH INFINITY) /private")[1] == dict(
        wantinf, **{"/private/filters/valuesx": b"a sibling, not a child"})
    assert get(c, "ex422 (DEPTH 0) /private/filters/values")[1] == {
        "/private/filters/values": None}
    assert get(c, "ex422 /private/filters/values/boss")[1] == {
        "/private/filters/values/boss": b'FROM "boss@example.com"'}
    # the entry itself comes with its children; overlapping requests show
    # each entry once
    c.ok('SETMETADATA ex422 (/private/filters "top")')
    assert get(c, "ex422 (DEPTH 1) (/private/filters /private/filters/values)")[1] == dict(
        want1, **{"/private/filters": b"top",
                  "/private/filters/valuesx": b"a sibling, not a child"})
    box, got = get(c, "ex422 (DEPTH infinity) (/private/filters /private/filters/values)")
    assert got == dict(wantinf, **{"/private/filters": b"top",
                                   "/private/filters/valuesx": b"a sibling, not a child"})
    # nothing below: no METADATA response at all under DEPTH
    r = c.ok("GETMETADATA ex422 (DEPTH 1) /shared/nothing")
    assert r.data("METADATA") == []
    # DEPTH and MAXSIZE together
    r = c.ok("GETMETADATA ex422 (DEPTH infinity MAXSIZE 12) /private/filters/values")
    assert r.code() == "METADATA LONGENTRIES 23", r
    assert metadata(r)[1] == {"/private/filters/values/small": b"SMALLER 5000",
                              "/private/filters/values/boss/deeper": b"grandchild"}


@pytest.mark.parametrize("entry", [
    "/private/a*b", "/shared/a%", "/private//comment", "/private/comment/",
    "private/comment", "/other/comment", "/privatex/comment", "/", "//",
    '"/private/a\\"b\x7f"', "/private", "/shared", '""',
])
def test_bad_entry_names_are_bad(c, entry):
    """3.2: '*', '%', '//', a trailing '/', control octets, a prefix other
    than /private or /shared: BAD, in SETMETADATA and GETMETADATA alike
    (the bare /private and /shared may be read under DEPTH, never set)."""
    c.bad("SETMETADATA INBOX (%s \"v\")" % entry)
    if entry not in ("/private", "/shared"):
        c.bad("GETMETADATA INBOX %s" % entry)
        c.bad("GETMETADATA INBOX (/private/comment %s)" % entry)


def test_bad_entry_8bit_and_long(c):
    c.bad(b'SETMETADATA INBOX (/private/caf\xc3\xa9 "v")')
    c.bad("SETMETADATA INBOX (", Literal(b"/private/\x01x", plus=True), ' "v")')
    c.bad("SETMETADATA INBOX (/private/" + "a" * 300 + ' "v")')
    c.ok("SETMETADATA INBOX (/private/" + "a" * 240 + ' "v")')
    c.ok("SETMETADATA INBOX (/private/" + "a" * 240 + " NIL)")


@pytest.mark.parametrize("cmd", [
    "GETMETADATA", "GETMETADATA INBOX", "GETMETADATA INBOX ()",
    "GETMETADATA INBOX (MAXSIZE) /private/comment",
    "GETMETADATA INBOX (MAXSIZE -1) /private/comment",
    "GETMETADATA INBOX (MAXSIZE x) /private/comment",
    "GETMETADATA INBOX (DEPTH 2) /private/comment",
    "GETMETADATA INBOX (DEPTH 0 DEPTH 1) /private/comment",
    "GETMETADATA INBOX (BOGUS 1) /private/comment",
    "GETMETADATA INBOX () /private/comment",
    "GETMETADATA INBOX /private/comment extra",
    "SETMETADATA", "SETMETADATA INBOX", "SETMETADATA INBOX ()",
    "SETMETADATA INBOX (/private/comment)",
    "SETMETADATA INBOX /private/comment \"v\"",
    "SETMETADATA INBOX (/private/comment atom)",
    "SETMETADATA INBOX (/private/comment (\"list\"))",
])
def test_bad_syntax(c, cmd):
    c.bad(cmd)


def test_bad_entry_changes_nothing(c):
    """One bad entry among good ones: BAD and nothing set."""
    c.bad('SETMETADATA INBOX (/private/okay "v" /private/no* "w")')
    assert get(c, "INBOX /private/okay")[1] == {"/private/okay": None}


def test_nonexistent_mailbox(c):
    c.no('SETMETADATA nosuch (/private/comment "v")', contains="[NONEXISTENT]")
    c.no("GETMETADATA nosuch /private/comment", contains="[NONEXISTENT]")


def test_binary_values_round_trip(c):
    """value = nstring / literal8: NUL, CR, LF, 8-bit and '%' come back
    byte for byte; a value with a NUL comes back as a literal8."""
    data = bytes(range(256)) + b"%41%%"
    c.ok("SETMETADATA INBOX (/private/vendor/test/bin ~",
         Literal(data, plus=True), ")")
    r = c.ok("GETMETADATA INBOX /private/vendor/test/bin")
    assert any(b"~{%d}" % len(data) in u for u in r.untagged), r
    assert metadata(r)[1] == {"/private/vendor/test/bin": data}
    text = "caf\u00e9 \u2603\r\nline two".encode()
    c.ok("SETMETADATA INBOX (/private/vendor/test/utf8 ", Literal(text), ")")
    assert get(c, "INBOX /private/vendor/test/utf8")[1] == {"/private/vendor/test/utf8": text}
    c.ok('SETMETADATA INBOX (/private/vendor/test/empty "")')
    assert get(c, "INBOX /private/vendor/test/empty")[1] == {"/private/vendor/test/empty": b""}
    c.ok("SETMETADATA INBOX (/private/vendor/test/bin NIL /private/vendor/test/utf8 NIL "
         "/private/vendor/test/empty NIL)")
    # literal8 is for values only in SETMETADATA, not elsewhere
    c.bad("GETMETADATA INBOX ~", Literal(b"/private/x", plus=True))


def test_limits(c):
    """Over the value limit: NO [METADATA MAXSIZE n]; over the entry count
    or the user's total: NO [METADATA TOOMANY]; removing is allowed; a
    refused command changes none of its entries."""
    c.ok("CREATE lim")
    c.ok("SETMETADATA lim (/private/max ", Literal(b"m" * VALUE_MAX, plus=True), ")")
    r = c.no("SETMETADATA lim (/private/first \"kept?\" /private/over ",
             Literal(b"o" * (VALUE_MAX + 1), plus=True), ")")
    assert r.code() == "METADATA MAXSIZE %d" % VALUE_MAX, r
    assert get(c, "lim (/private/first /private/over)")[1] == {
        "/private/first": None, "/private/over": None}
    c.ok("SETMETADATA lim (/private/max NIL)")
    # the count: the user's entries (of every mailbox) up to ENTRIES_MAX
    n = 0
    while True:
        pairs = " ".join('/private/c/%d "%d"' % (n + k, n + k) for k in range(200))
        r = c.command("SETMETADATA lim (%s)" % pairs)
        if r.status != "OK":
            break
        n += 200
        assert n <= ENTRIES_MAX
    assert r.status == "NO" and r.code() == "METADATA TOOMANY", r
    # one at a time up to the limit, then one more is refused
    while True:
        r = c.command('SETMETADATA lim (/private/c/%d "%d")' % (n, n))
        if r.status != "OK":
            break
        n += 1
        assert n <= ENTRIES_MAX
    assert r.code() == "METADATA TOOMANY", r
    assert n > ENTRIES_MAX - 200
    # replacing a value and removing stay possible at the limit
    c.ok('SETMETADATA lim (/private/c/0 "zero")')
    c.ok("SETMETADATA lim (/private/c/1 NIL)")
    c.ok('SETMETADATA lim (/private/c/1 "back")')
    got = get(c, "lim (DEPTH 1) /private/c")[1]
    assert len(got) == n and got["/private/c/0"] == b"zero"
    c.ok("SETMETADATA lim (%s)" % " ".join("/private/c/%d NIL" % k for k in range(n)))
    assert c.ok("GETMETADATA lim (DEPTH 1) /private/c").data("METADATA") == []
    # the total: values of VALUE_MAX until TOTAL_MAX
    blob = b"t" * VALUE_MAX
    k = 0
    while True:
        r = c.command("SETMETADATA lim (/shared/t/%d " % k, Literal(blob, plus=True), ")")
        if r.status != "OK":
            break
        k += 1
        assert k * VALUE_MAX <= TOTAL_MAX
    assert r.code() == "METADATA TOOMANY", r
    assert k >= TOTAL_MAX // VALUE_MAX - 2
    # a smaller value still fits in what is left, if anything is
    c.ok("SETMETADATA lim (%s)" % " ".join("/shared/t/%d NIL" % j for j in range(k)))
    assert c.ok("GETMETADATA lim (DEPTH 1) /shared/t").data("METADATA") == []


def test_shared_admin_is_read_only(c):
    c.no('SETMETADATA "" (/shared/admin "mailto:me@example.test")', contains="NOPERM")
    assert get(c, '"" /shared/admin')[1] == {"/shared/admin": None}
    # on a mailbox it is an ordinary entry
    c.ok('SETMETADATA INBOX (/shared/admin "x")')
    c.ok("SETMETADATA INBOX (/shared/admin NIL)")


def test_follows_rename_and_goes_with_delete(c):
    c.ok("CREATE mv")
    c.ok("CREATE mv.kid")
    c.ok('SETMETADATA mv (/private/comment "parent" /shared/comment "p shared")')
    c.ok('SETMETADATA mv.kid (/private/comment "kid")')
    c.ok("RENAME mv moved")
    assert get(c, "moved (/private/comment /shared/comment)")[1] == {
        "/private/comment": b"parent", "/shared/comment": b"p shared"}
    assert get(c, "moved.kid /private/comment")[1] == {"/private/comment": b"kid"}
    c.no("GETMETADATA mv /private/comment", contains="[NONEXISTENT]")
    # a new folder under the old name starts empty
    c.ok("CREATE mv")
    assert get(c, "mv /private/comment")[1] == {"/private/comment": None}
    # DELETE takes the entries; a folder created again does not inherit
    c.ok("DELETE moved.kid")
    c.ok("CREATE moved.kid")
    assert get(c, "moved.kid /private/comment")[1] == {"/private/comment": None}
    c.ok("DELETE moved.kid")
    c.ok("DELETE moved")
    c.ok("CREATE moved")
    assert get(c, "moved (/private/comment /shared/comment)")[1] == {
        "/private/comment": None, "/shared/comment": None}


def test_delete_removes_entries_from_the_file(c, srv):
    path = os.path.join(folder_dir(srv.instance, ALICE), "petrel-metadata")
    c.ok("CREATE gone")
    c.ok('SETMETADATA gone (/private/comment "marker-for-delete")')
    with open(path, "rb") as f:
        assert b"marker-for-delete" in f.read()
    c.ok("DELETE gone")
    with open(path, "rb") as f:
        assert b"marker-for-delete" not in f.read()


def test_rename_inbox_copies(c, srv):
    """4.1: RENAME INBOX copies INBOX's annotations to the new folder;
    INBOX keeps its own."""
    with srv.session(user=CAROL) as k:
        k.ok('SETMETADATA INBOX (/private/comment "inbox note")')
        k.ok("RENAME INBOX old-inbox")
        assert get(k, "old-inbox /private/comment")[1] == {"/private/comment": b"inbox note"}
        assert get(k, "INBOX /private/comment")[1] == {"/private/comment": b"inbox note"}
        k.ok('SETMETADATA INBOX (/private/comment "changed")')
        assert get(k, "old-inbox /private/comment")[1] == {"/private/comment": b"inbox note"}
        k.ok('SETMETADATA INBOX (/private/comment NIL)')
        k.logout()


def test_sessions_and_users(c, srv):
    """A second session of the user sees a change at once; another user
    sees none of alice's entries, /shared included (no shared folders)."""
    c.ok('SETMETADATA "" (/shared/comment "alice only" /private/vendor/test/x "1")')
    with srv.session() as c2:
        assert get(c2, '"" (/shared/comment /private/vendor/test/x)')[1] == {
            "/shared/comment": b"alice only", "/private/vendor/test/x": b"1"}
        c2.ok('SETMETADATA "" (/private/vendor/test/x "2")')
        c2.logout()
    assert get(c, '"" /private/vendor/test/x')[1] == {"/private/vendor/test/x": b"2"}
    with srv.session(user=CAROL) as k:
        assert get(k, '"" (/shared/comment /private/vendor/test/x)')[1] == {
            "/shared/comment": None, "/private/vendor/test/x": None}
        r = k.ok('GETMETADATA "" (DEPTH infinity) (/shared /private)')
        assert b"alice only" not in b"".join(r.untagged)
        k.logout()


def test_selected_state_and_imaplib(srv):
    """The commands work in the selected state too, and through imaplib."""
    m = srv.login()
    try:
        m.select("INBOX")
        typ, _ = m.xatom("SETMETADATA", "INBOX", '(/private/vendor/test/lib "via imaplib")')
        assert typ == "OK"
        typ, dat = m.xatom("GETMETADATA", "INBOX", "/private/vendor/test/lib")
        assert typ == "OK"
        typ, dat = m._untagged_response(typ, dat, "METADATA")
        assert dat and b"via imaplib" in dat[0], dat
        typ, _ = m.xatom("SETMETADATA", "INBOX", "(/private/vendor/test/lib NIL)")
        assert typ == "OK"
    finally:
        m.logout()


def test_survives_restart(box, srv):
    inst = srv.instance
    with srv.session() as c:
        c.ok("CREATE keep")
        c.ok('SETMETADATA keep (/private/comment "kept" /shared/comment ',
             Literal(b"two\r\nlines"), ")")
        c.ok('SETMETADATA "" (/shared/vendor/test/restart "server")')
        c.logout()
    srv = restart(box, inst)
    with srv.session() as c:
        assert get(c, "keep (/private/comment /shared/comment)")[1] == {
            "/private/comment": b"kept", "/shared/comment": b"two\r\nlines"}
        assert get(c, '"" /shared/vendor/test/restart')[1] == {
            "/shared/vendor/test/restart": b"server"}
        c.logout()
    # the file beside the Maildir, no temporary file left
    md = folder_dir(inst, ALICE)
    assert os.path.isfile(os.path.join(md, "petrel-metadata"))
    assert not os.path.exists(os.path.join(md, "petrel-metadata.tmp"))


def test_damaged_file_lines_are_skipped(box, srv):
    """A damaged line in the file is skipped, the rest read; the next
    change writes the file anew."""
    inst = srv.instance
    path = os.path.join(folder_dir(inst, CAROL), "petrel-metadata")
    with open(path, "wb") as f:
        f.write(b"petrel-metadata 1\n-\t/private/good\tfine%0D%0A\n"
                b"-\t/private/bad\t%zz\n-\t/BAD*\tx\nno tabs here\n"
                b"-\t/private/cut\tno newline")
    with srv.session(user=CAROL) as k:
        assert get(k, '"" (DEPTH infinity) /private')[1] == {"/private/good": b"fine\r\n"}
        k.ok('SETMETADATA "" (/private/new "n")')
        k.logout()
    with open(path, "rb") as f:
        assert f.read() == b"petrel-metadata 1\n-\t/private/good\tfine%0D%0A\n-\t/private/new\tn\n"
