"""Hostile IMAP clients: unbalanced and deeply nested parentheses, literals
over the limit (refused before the bytes are sent), invalid sequence sets, bad
modified UTF-7, overlong lines, path tricks in mailbox names, NUL bytes,
garbage. Each gets BAD or NO (or, for the worst, a closed connection), the
server keeps running, other sessions are not disturbed, and nothing is created
outside the user's maildir. SQLite."""

import os
import socket
import time

import pytest

from harness.instance import TIMEOUT_SCALE
from imap_util import (ALICE, BOB, Literal, check_stopped, folders_on_disk,  # noqa: F401
                       imap_instance, maildir_of, put_many, reset_maildirs, start_imap, tree)


@pytest.fixture(scope="module")
def imap_server(imap_instance):
    """One server for the module (3 messages in alice's INBOX); at the end it
    must stop cleanly with no dead worker."""
    reset_maildirs(imap_instance)
    put_many(imap_instance, ALICE, 3)
    srv = start_imap(imap_instance)
    yield srv
    problems = check_stopped([srv])
    assert not problems, "\n\n".join(problems)


@pytest.fixture
def c(imap_server):
    conn = imap_server.session(select="INBOX")
    yield conn
    conn.close()


def still_fine(srv):
    """The server answers a new session normally."""
    with srv.session(select="INBOX") as x:
        x.ok("NOOP")
        x.logout()
    assert srv.alive()
    assert not srv.crashes(), srv.log()


def outside_snapshot(inst):
    """Every path under the instance dir except alice's maildir and files the
    database engine may touch."""
    md = os.path.relpath(maildir_of(inst, ALICE), inst.dir)
    return {p for p in tree(inst.dir)
            if not (p == md or p.startswith(md + os.sep)) and "petrel.db" not in p}


# --------------------------------------------------------------------------
# syntax


@pytest.mark.parametrize("line", [
    "FETCH 1 (FLAGS", "FETCH 1 FLAGS)", "FETCH 1 ((FLAGS)", "FETCH 1 (FLAGS))",
    "SEARCH ((SEEN)", "SEARCH (SEEN))", "SEARCH )(", "STORE 1 +FLAGS (\\Seen",
    "STORE 1 +FLAGS \\Seen)", "FETCH 1 BODY[HEADER.FIELDS (FROM]", "FETCH 1 BODY[",
    "FETCH 1 BODY[]<", "FETCH 1 BODY[]<0.", 'SELECT "INBOX', 'LIST "" "*', "FETCH",
    "FETCH 1", "FETCH 1 NOTANITEM", "FETCH 1 (FLAGS NOTANITEM)", "STORE", "COPY 1",
    "UID", "UID FROB 1", "UID FETCH", "NOOP extra", "CHECK (", "APPEND", "APPEND INBOX",
    "APPEND INBOX (\\Seen", "SELECT", "LIST", 'LIST ""', "STATUS", "RENAME a",
    "FETCH 1 (ALL)", "FETCH 1 (FAST FLAGS)", "FETCH 1 BODY[HEADER.FIELDS ()]", "FETCH 1 BODY[0]",
    "FETCH 1 BODY[1.0]", "FETCH 1 BODY[]<0.0>", "SEARCH CHARSET", "CHECK 1", "UID EXPUNGE",
    "STORE 1 +FLAGS.LOUD (\\Seen)", "UID SEARCH", "NAMESPACE x",
    "STORE 1 +FLAGS (foo{bar)", "STORE 1 +FLAGS (foo]bar)", "STORE 1 +FLAGS (\\)",
    "STORE 1 +FLAGS (a%b)", "STORE 1 +FLAGS (a*b)", 'STORE 1 +FLAGS (a"b)',
])
def test_syntax_errors_are_bad(c, line):
    r = c.command(line)
    if r.status == "OK" and line.startswith("STORE"):
        # do not leave an invalid keyword behind for the next tests
        c.command("STORE 1:* FLAGS.SILENT ()")
    assert r.status == "BAD", (line, r)
    c.ok("NOOP")


def test_deep_nesting(imap_server, c):
    for line in ("SEARCH " + "(" * 5000 + "SEEN" + ")" * 5000,
                 "SEARCH " + "NOT " * 5000 + "SEEN",
                 "SEARCH " + "OR SEEN " * 3000 + "SEEN",
                 "FETCH 1 " + "(" * 3000 + "FLAGS" + ")" * 3000,
                 "STORE 1 +FLAGS " + "(" * 3000 + "\\Seen" + ")" * 3000,
                 'ID ' + '(' * 3000 + '"a" "b"' + ')' * 3000):
        r = c.command(line)
        # a parser with a depth limit says BAD; an iterative one may say OK
        # to the SEARCH ones (they are valid); never a crash
        assert r.status in ("BAD", "NO", "OK"), (line[:40], r)
        if line.startswith("FETCH") or line.startswith("STORE"):
            assert r.status in ("BAD", "NO"), (line[:40], r)
    c.ok("NOOP")
    still_fine(imap_server)


def test_bad_tags_and_garbage(imap_server):
    with imap_server.session() as c:
        for raw in (b"\r\n", b" \r\n", b"NOOP\r\n", b"* NOOP\r\n", b"+ NOOP\r\n",
                    b"A{ NOOP\r\n", b"A% NOOP\r\n", b"A\x01 NOOP\r\n", b"\xff\xfe NOOP\r\n",
                    b"A  NOOP\r\n", b"\x16\x03\x01\x00\x05hello\r\n"):
            c.send(raw + b"Z NOOP\r\n")
            r = c.read_tagged("Z")
            assert r.status == "OK", (raw, r)
            bads = [u for u in r.untagged if b"BAD" in u[:30]]
            if raw.strip():
                assert len(bads) == 1, (raw, r)
            else:
                assert len(bads) <= 1 and len(r.untagged) == len(bads), (raw, r)
        c.logout()
    still_fine(imap_server)


def test_nul_bytes(imap_server, c):
    c.send(b"N1 NOOP\0\r\n")
    assert b"BAD" in c.line()[:12]
    c.send(b"N2 SELECT IN\0BOX\r\n")
    l = c.line()
    assert l.startswith(b"N2 BAD") or l.startswith(b"N2 NO") or l.startswith(b"* BAD"), l
    r = c.command("CREATE ", Literal(b"evil\0name"))
    assert r.status in ("NO", "BAD"), r
    r = c.command("LOGIN ", Literal(b"a\0b"), " x")
    assert r.status == "BAD", r
    r = c.command("SEARCH CHARSET UTF-8 BODY ", Literal(b"a\0b"))
    assert r.status in ("NO", "BAD", "OK"), r
    c.ok("CREATE NulTest")
    r = c.append("NulTest", b"Subject: nul\r\n\r\nbody\0with nul\r\n")
    assert r.status in ("NO", "BAD", "OK"), r
    c.ok("NOOP")
    assert not any("\0" in n for n in folders_on_disk(imap_server.instance, ALICE))
    still_fine(imap_server)


# --------------------------------------------------------------------------
# literals and lines over the limits


def test_huge_literal_refused_before_it_is_sent(imap_server):
    """RFC 3501 7.5 / 7888: a synchronising literal the server will not take is
    refused instead of '+': the answer comes without our sending the bytes."""
    with imap_server.session() as c:
        for cmd in (b"L1 APPEND INBOX {999999999999}\r\n",
                    b"L2 APPEND INBOX (\\Seen) {4294967296}\r\n",
                    b"L3 APPEND INBOX {60000000}\r\n",      # > message_size_limit
                    b"L4 CREATE {99999999}\r\n",
                    b"L5 SEARCH CHARSET UTF-8 BODY {99999999}\r\n"):
            tag = cmd.split(b" ")[0].decode()
            r = c.no_continuation(cmd, tag)
            assert r.status in ("NO", "BAD"), (cmd, r)
            c.ok("NOOP")
        r = c.no_continuation(b"L6 APPEND INBOX {99999999999999999999999}\r\n", "L6")
        assert r.status in ("NO", "BAD"), r
        c.ok("NOOP")
        c.logout()
    # before login the limit is small
    with imap_server.conn() as c:
        try:
            r = c.no_continuation(b"P1 LOGIN {10000000}\r\n", "P1")
            assert r.status in ("NO", "BAD"), r
        except ConnectionError:
            pass  # closing is fine too
    still_fine(imap_server)


def test_huge_nonsync_literal(imap_server):
    """A LITERAL+ literal over the limit cannot be refused in advance: the
    server reads and drops it (or closes) and completes the command with a
    tagged BAD or NO [TOOBIG] (RFC 7888 4), or '* BYE' and closes; it does not
    buffer 100 MB."""
    with imap_server.session() as c:
        total = 100000000
        ok = send_bounded(c, b"H1 APPEND INBOX {%d+}\r\n" % total)
        chunk = b"x" * 65536
        sent = 0
        while ok and sent < total:
            n = min(len(chunk), total - sent)
            ok = send_bounded(c, chunk[:n])
            sent += n
        if ok:
            send_bounded(c, b"\r\n")
        try:
            hit, got = c.read_until(rb"^(H1 |\* BYE)", timeout=5)
        except ConnectionError:
            hit, got = b"* BYE (closed)", []
        assert hit is not None, "no tagged answer to the 100 MB LITERAL+ APPEND: %r" % got
        if hit.startswith(b"H1 "):
            assert hit.startswith(b"H1 BAD") or hit.startswith(b"H1 NO"), hit
            try:
                c.ok("NOOP")
            except (ConnectionError, OSError):
                pass   # closing after the answer is allowed (RFC 7888 4)
    still_fine(imap_server)


def send_bounded(c, data, timeout=5):
    """Send as much of data as the server takes within timeout; True if all."""
    c.sock.settimeout(timeout)
    try:
        view = memoryview(data)
        while view:
            n = c.sock.send(view[:65536])
            view = view[n:]
        return True
    except (socket.timeout, BrokenPipeError, ConnectionResetError):
        return False
    finally:
        c.sock.settimeout(c.timeout)


@pytest.mark.parametrize("size", [20000, 200000, 2000000])
def test_overlong_line(imap_server, size):
    """Every command gets a tagged completion (RFC 3501 2.2.2, 7.1): a line
    that is too long is answered 'O1 BAD' (its tag is known: it starts the
    line), or the server says '* BYE' and closes. An untagged '* BAD' alone
    leaves the client waiting for O1 for ever."""
    with imap_server.session() as c:
        all_sent = send_bounded(c, b"O1 SEARCH SUBJECT " + b"a" * size + b"\r\n")
        try:
            hit, got = c.read_until(rb"^(O1 |\* BYE)", timeout=5)
        except ConnectionError:
            hit, got = b"* BYE (closed)", []
        assert hit is not None, \
            "no tagged answer to a %d-byte command line within 5 s: %r" % (size, got)
        if hit.startswith(b"O1 "):
            assert hit.startswith(b"O1 BAD") or (size < 100000 and hit.startswith(b"O1 OK")), hit
            if all_sent:
                c.ok("NOOP")
        else:
            assert size >= 100000, "a %d-byte line closed the connection" % size
    with imap_server.session() as c:
        # a line without an end is bounded too: BAD and/or close
        send_bounded(c, b"O2 NOOP " + b"b" * 3000000)
        try:
            hit, got = c.read_until(rb"BAD|BYE", timeout=3)
            assert hit is not None, got
        except ConnectionError:
            pass
    still_fine(imap_server)


def test_many_pipelined_commands(imap_server, c):
    n = 500
    c.send(b"".join(b"Q%d NOOP\r\n" % i for i in range(n)))
    for i in range(n):
        r = c.read_tagged("Q%d" % i)
        assert r.status == "OK", (i, r)
    c.send(b"".join(b"F%d FETCH %d FLAGS\r\n" % (i, i % 3 + 1) for i in range(200)))
    seen = []
    for i in range(200):
        r = c.read_tagged("F%d" % i)
        assert r.status == "OK", (i, r)
        # untagged responses are not tied to a tag: count them over all
        seen += r.numbered("FETCH")
    assert len(seen) >= 200 and set(seen) == {1, 2, 3}, seen


# --------------------------------------------------------------------------
# sequence sets


@pytest.mark.parametrize("seqset", [
    "0", "0:2", "1:0", "-1", "1,,2", ",1", "1,", ":", "1:", ":3", "4294967296",
    "99999999999999999999", "1:2:3", "a", "1.5", "**", "*:*:*", "1 2",
])
def test_invalid_seqsets(c, seqset):
    for cmd in ("FETCH %s FLAGS", "STORE %s +FLAGS (\\Seen)", "COPY %s Trash",
                "UID FETCH %s FLAGS", "SEARCH %s"):
        if seqset == "1 2" and cmd.startswith("SEARCH"):
            continue   # two valid keys
        line = cmd % seqset
        r = c.command(line)
        if seqset == "1 2" and cmd.startswith("COPY"):
            assert r.status in ("BAD", "NO"), (line, r)   # or: COPY 1 to "2"
            continue
        assert r.status == "BAD", (line, r)
    c.ok("NOOP")


def test_out_of_range_seqsets(c):
    r = c.command("FETCH 4 FLAGS")           # only 3 messages
    assert r.status in ("BAD", "NO"), r
    r = c.command("FETCH 2:99 FLAGS")
    assert r.status in ("BAD", "NO", "OK"), r
    r = c.ok("UID FETCH 999999 FLAGS")       # UIDs that do not exist: nothing, OK
    assert not r.fetches(), r
    r = c.ok("UID FETCH 4294967295 FLAGS")
    assert not r.fetches(), r
    r = c.ok("FETCH *:* FLAGS")
    assert list(r.fetches()) == [3], r
    r = c.ok("FETCH 3,1,2,1 FLAGS")
    assert sorted(r.fetches()) == [1, 2, 3], r


def test_empty_mailbox_seqsets(imap_server):
    with imap_server.session(select="Trash") as c:
        r = c.command("FETCH 1:* FLAGS")
        assert r.status in ("BAD", "NO", "OK") and not r.fetches(), r
        r = c.ok("UID FETCH 1:* FLAGS")
        assert not r.fetches(), r
        r = c.ok("SEARCH ALL")
        assert r.search() == []
        r = c.command("STORE * +FLAGS (\\Seen)")
        assert r.status in ("BAD", "NO", "OK"), r
        c.ok("UID EXPUNGE 1:*")
        c.ok("EXPUNGE")
        c.logout()


# --------------------------------------------------------------------------
# mailbox names


BAD_MUTF7 = ["&Jjo", "&AGE-", "&", "a&b", "&ZeVnLIqe", "&-&", "&U,BTFw-&ZeVnLIqe",
             "&AAA-", "&2D0-"]
PATHS = ["..", ".", "../escape", "../../etc", "a/b", "/abs", "Foo..Bar", ".hidden",
         "Work/../../x", "INBOX..", "..INBOX", "tmp/../new", "new/x", "Sub./x", "x" * 1000]


@pytest.mark.parametrize("name", BAD_MUTF7)
def test_bad_modified_utf7(imap_server, c, name):
    inst = imap_server.instance
    before = folders_on_disk(inst, ALICE)
    r = c.command('CREATE "%s"' % name)
    assert r.status in ("NO", "BAD"), (name, r)
    assert folders_on_disk(inst, ALICE) == before
    r = c.command('SELECT "%s"' % name)
    assert r.status in ("NO", "BAD"), (name, r)
    c.select("INBOX")


def test_raw_8bit_names(imap_server, c):
    inst = imap_server.instance
    before = folders_on_disk(inst, ALICE)
    for raw in ("Entwürfe".encode(), b"\xff\xfe", "日本".encode()):
        r = c.command("CREATE ", Literal(raw))
        assert r.status in ("NO", "BAD"), (raw, r)
    assert folders_on_disk(inst, ALICE) == before
    c.ok("NOOP")


@pytest.mark.parametrize("name", PATHS, ids=[n[:20] for n in PATHS])
def test_path_tricks_in_names(imap_server, c, name):
    inst = imap_server.instance
    outside = outside_snapshot(inst)
    before = set(folders_on_disk(inst, ALICE))
    exists = c.select("INBOX").numbered("EXISTS")[0]
    q = '"%s"' % name.replace("\\", "\\\\")
    r = c.command("CREATE " + q)
    assert r.status in ("NO", "BAD"), (name, r)
    for cmd in ("SELECT %s", "EXAMINE %s", "DELETE %s", "STATUS %s (MESSAGES)",
                "RENAME INBOX %s", "RENAME Trash %s", "COPY 1 %s", "MOVE 1 %s",
                "SUBSCRIBE %s", "APPEND %s {1+}\r\nx"):
        line = cmd % q
        r = c.command(line)
        assert r.status in ("NO", "BAD"), (line[:80], r)
        if r.status == "BAD" or cmd.startswith("SELECT") or cmd.startswith("EXAMINE"):
            c.select("INBOX")
    r = c.command('LIST "" "%s"' % name.replace("\\", "\\\\"))
    assert r.status in ("OK", "NO", "BAD"), r
    r = c.command('LIST "%s" "*"' % name.replace("\\", "\\\\"))
    assert r.status in ("OK", "NO", "BAD"), r
    if r.status == "OK":
        for u in r.untagged:
            assert b"/" not in u and b".." not in u.split(b'"')[-1], r
    after = set(folders_on_disk(inst, ALICE))
    assert after == before, (after ^ before)
    assert outside_snapshot(inst) == outside, outside_snapshot(inst) ^ outside
    # INBOX still holds its messages
    r = c.select("INBOX")
    assert r.numbered("EXISTS") == [exists], r


def test_list_patterns_do_not_escape(imap_server, c):
    for ref, pat in (("..", "*"), ("../", "*"), ("/", "*"), ("", "../*"), ("", "/*"),
                     ("", "*/*"), ("~", "*"), ("%", "%"), ("", "*" * 500), ("", "%.%.%.%.%" * 50)):
        r = c.command('LIST "%s" "%s"' % (ref, pat))
        assert r.status in ("OK", "NO", "BAD"), (ref, pat, r)
        if r.status == "OK":
            for u in r.untagged:
                assert b"/" not in u.split(b")", 1)[1], (ref, pat, u)
                assert b"etc" not in u and b"mail" not in u.split(b")", 1)[1], (ref, pat, u)
    still_fine(imap_server)


def test_other_users_mailboxes_unreachable(imap_server):
    inst = imap_server.instance
    put_many(inst, BOB, 1)
    with imap_server.session() as c:
        for name in ("../bob", "../bob/", "#users.bob", "~bob", "../../example.test/bob",
                     "..bob", "bob"):
            r = c.command('SELECT "%s"' % name)
            assert r.status in ("NO", "BAD"), (name, r)
            r = c.command('STATUS "%s" (MESSAGES)' % name)
            assert r.status in ("NO", "BAD"), (name, r)
        c.logout()


def test_symlinked_folder_is_not_followed_outside(imap_server):
    """A folder that is a symlink to somewhere outside the maildir must not
    let the user read or write there."""
    inst = imap_server.instance
    target = os.path.join(inst.dir, "outside-target")
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(target, sub))
    md = maildir_of(inst, ALICE)
    os.makedirs(md, exist_ok=True)
    os.symlink(target, os.path.join(md, ".Linked"))
    with imap_server.session() as c:
        r = c.command("APPEND Linked {3+}\r\nabc")
        if r.status == "OK":
            # following a symlink the administrator put there is tolerable,
            # but then it must be the real target, not a path escape
            assert os.listdir(os.path.join(target, "cur")) or \
                os.listdir(os.path.join(target, "new"))
        r = c.command("DELETE Linked")
        assert r.status in ("OK", "NO"), r
        c.logout()
    assert os.path.isdir(os.path.join(target, "cur")), "DELETE followed the symlink"
    still_fine(imap_server)


# --------------------------------------------------------------------------
# connections


def test_many_connections_and_abrupt_disconnects(imap_server):
    socks = []
    for i in range(50):
        s = socket.create_connection((imap_server.host, imap_server.port), timeout=10)
        if i % 3 == 0:
            s.sendall(b"A LOGIN %s pw\r\nB SELECT INBOX\r\nC FETCH 1:* (BODY[])\r\n" %
                      ALICE.encode())
        elif i % 3 == 1:
            s.sendall(b"A APPEND INBOX {50}\r\n")
        socks.append(s)
    time.sleep(0.3)
    for s in socks:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()
    still_fine(imap_server)


def test_idle_hostile(imap_server):
    with imap_server.session(select="INBOX") as c:
        c.idle()
        c.send(b"x" * 100000 + b"\r\n")
        # IDLE ends with a tagged BAD, or the server complains ('* BAD') and
        # IDLE goes on until DONE, or it closes
        try:
            hit, got = c.read_until(rb"^(%s |\* BAD|\* BYE)" % c.idle_tag.encode(), timeout=5)
            assert hit is not None, got
            if hit.startswith(c.idle_tag.encode()):
                assert b" BAD " in hit or b" NO " in hit, hit
            elif hit.startswith(b"* BAD"):
                assert c.done().status == "OK"
        except ConnectionError:
            pass
    with imap_server.session(select="INBOX") as c:
        c.idle()
        c.send(b"A NOOP\r\n")   # a command instead of DONE
        r = c.read_tagged(c.idle_tag)
        assert r.status in ("BAD", "NO"), r
        c.ok("NOOP")
        c.logout()
    still_fine(imap_server)


def test_plaintext_on_the_imaps_port(imap_server):
    """A client speaking plain IMAP to the TLS port is dropped quickly."""
    s = socket.create_connection((imap_server.host, imap_server.ssl_port), timeout=10)
    try:
        s.sendall(b"A LOGIN alice@example.test pw\r\n" * 10)
        t0 = time.monotonic()
        data = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except (socket.timeout, ConnectionResetError):
            pass
        assert time.monotonic() - t0 < 10 * TIMEOUT_SCALE
        assert b"OK" not in data, data
    finally:
        s.close()
    still_fine(imap_server)


def test_preauth_literal_plus_is_bounded(imap_server):
    """Before login a LITERAL+ literal larger than a login needs is not
    buffered, and the command gets a tagged BAD (or BYE and close)."""
    before = imap_server.workers_rss_kb()
    with imap_server.conn() as c:
        ok = send_bounded(c, b"P2 LOGIN {20000000+}\r\n")
        sent = 0
        chunk = b"u" * 65536
        while ok and sent < 20000000:
            n = min(len(chunk), 20000000 - sent)
            ok = send_bounded(c, chunk[:n], timeout=3)
            sent += n
        grown = imap_server.workers_rss_kb() - before
        assert grown < 8000, "workers grew by %d kB" % grown
        if ok:
            send_bounded(c, b" pw\r\n")
        try:
            hit, got = c.read_until(rb"^(P2 |\* BYE)", timeout=5)
            assert hit is not None, "no tagged answer: %r" % got
            assert hit.startswith(b"P2 BAD") or hit.startswith(b"P2 NO") or \
                hit.startswith(b"* BYE"), hit
        except ConnectionError:
            pass
    still_fine(imap_server)


def _too_long_with_literal(kind, payload):
    if kind == "literals":      # literals adding up to more than the command limit
        parts = [b"C1 SEARCH"]
        for i in range(17):
            parts.append(b" BODY {63000+}\r\n" + b"z" * 63000)
        for i in range(3):
            parts.append(b" BODY {%d+}\r\n" % len(payload) + payload)
        return b"".join(parts) + b"\r\n"
    # one line over the line limit that ends in a LITERAL+ literal
    return (b"C1 SEARCH SUBJECT " + b"a" * 70000 + b" BODY {%d+}\r\n" % len(payload) +
            payload + b"\r\n")


@pytest.mark.parametrize("kind", ["literals", "long-line"])
def test_command_too_long_does_not_desync(imap_server, c, kind):
    """A command refused for its length must be refused as a whole: the bytes
    of a LITERAL+ literal that follows the point of refusal are literal data,
    never commands (else text that a webmail or proxy puts into a literal
    becomes IMAP commands), and the command gets a tagged BAD."""
    send_bounded(c, _too_long_with_literal(kind, b"INJ CREATE Injected\r\n"))
    try:
        try:
            hit, got = c.read_until(rb"^(C1 |INJ |\* BYE)", timeout=5)
        except ConnectionError:
            hit, got = b"* BYE (closed)", []
        assert hit is not None, "no tagged answer to the overlong command: %r" % got
        assert not hit.startswith(b"INJ "), "literal data was run as a command: %r" % got
        if hit.startswith(b"C1 "):
            assert hit.startswith(b"C1 BAD") or hit.startswith(b"C1 NO"), hit
            r = c.ok("NOOP")
            assert not any(u.startswith(b"INJ ") for u in r.untagged), r
    finally:
        with imap_server.session() as x:
            r = x.ok('LIST "" "Inj*"')
            if r.data("LIST"):
                x.ok("DELETE Injected")    # (clean up for the next test)
            x.logout()
    assert not r.data("LIST"), "the injected CREATE was run: %r" % r
