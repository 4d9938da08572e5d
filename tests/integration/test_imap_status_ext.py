"""IMAP STATUS extensions: STATUS=SIZE (RFC 8438: the sum of the
RFC822.SIZEs of a mailbox's messages, from the index) and APPENDLIMIT (RFC
7889: the one limit message_size_limit advertised as APPENDLIMIT=<n>, the
STATUS item APPENDLIMIT, and APPEND over it refused with NO [TOOBIG])."""

import os

from imap_util import (ALICE, Literal, capabilities, crlf, folder_dir,  # noqa: F401
                       imap_inst, imap_instance, imap_server, imap_start,
                       message, message_files, parse, put)


def status(c, mailbox, items):
    """STATUS mailbox (items) -> [(ITEM, int)] in the order of the reply."""
    r = c.ok("STATUS %s (%s)" % (mailbox, items))
    st = r.data("STATUS")
    assert len(st) == 1, r
    v = parse(st[0])[1]
    return [(k.upper(), int(x)) for k, x in zip(v[::2], v[1::2])]


def size_of(c, mailbox):
    return dict(status(c, mailbox, "SIZE"))["SIZE"]


def fetched_sizes(c, mailbox):
    c.select(mailbox)
    r = c.ok("FETCH 1:* (RFC822.SIZE)")
    c.ok("UNSELECT")
    return sorted(int(d["RFC822.SIZE"]) for d in r.fetches().values())


# --------------------------------------------------------------------------
# capabilities


def test_capabilities_after_login(imap_server):
    with imap_server.conn() as c:
        r = c.ok("CAPABILITY")
        before = capabilities(r.data("CAPABILITY")[0])
        c.login()
        r = c.ok("CAPABILITY")
        caps = capabilities(r.data("CAPABILITY")[0])
        assert "STATUS=SIZE" in caps, caps
        # the default message_size_limit (SPEC section 3)
        assert "APPENDLIMIT=52428800" in caps, caps
        assert "STATUS=SIZE" not in before, before
        c.logout()


# --------------------------------------------------------------------------
# STATUS=SIZE (RFC 8438)


def test_size_is_sum_of_rfc822_sizes(imap_server):
    """Messages stored with LF line ends count as CRLF (RFC822.SIZE), one
    stored with CRLF counts as it is, a delivered one (its name carries
    S= and W=) by its W=; SIZE equals the FETCH RFC822.SIZE sum."""
    inst = imap_server.instance
    m1, m2 = message(1), message(2, body_lines=40)
    m3 = crlf(message(3))                     # already CRLF on disk
    put(inst, ALICE, m1)
    put(inst, ALICE, m2, flags="S")
    put(inst, ALICE, m3, flags="")
    imap_server.deliver(ALICE, message(4, body_lines=7))
    with imap_server.session() as c:
        sizes = fetched_sizes(c, "INBOX")
        assert len(sizes) == 4, sizes
        assert len(crlf(m1)) in sizes and len(crlf(m2)) in sizes and len(m3) in sizes
        got = status(c, "INBOX", "MESSAGES UIDNEXT SIZE")
        assert [k for k, _ in got] == ["MESSAGES", "UIDNEXT", "SIZE"], got
        assert dict(got)["MESSAGES"] == 4
        assert dict(got)["SIZE"] == sum(sizes), (got, sizes)
        c.logout()


def test_size_of_a_folder_never_opened(imap_server):
    """STATUS SIZE of a folder no session has selected: messages written
    by another program, nothing in the index yet."""
    inst = imap_server.instance
    data = [message(i, body_lines=i) for i in range(1, 6)]
    for d in data:
        put(inst, ALICE, d, folder="Archive")
    with imap_server.session() as c:
        assert size_of(c, "Archive") == sum(len(crlf(d)) for d in data)
        assert size_of(c, "Trash") == 0
        # RFC 8438 3: as any STATUS item, for a mailbox that exists
        r = c.no("STATUS Nonexistent (SIZE)")
        assert "NONEXISTENT" in (r.code() or ""), r
        c.bad("STATUS INBOX (SIZE BOGUS)")
        c.logout()


def test_size_follows_append_and_expunge(imap_server):
    with imap_server.session() as c:
        assert size_of(c, "INBOX") == 0
        a = b"Subject: a\r\n\r\n" + b"a" * 100 + b"\r\n"
        b = b"Subject: b\r\n\r\n" + b"b" * 333 + b"\r\n"
        assert c.append("INBOX", a).status == "OK"
        assert size_of(c, "INBOX") == len(a)
        assert c.append("INBOX", b).status == "OK"
        assert size_of(c, "INBOX") == len(a) + len(b)
        c.select("INBOX")
        c.ok("STORE 1 +FLAGS (\\Deleted)")
        c.ok("EXPUNGE")
        c.ok("UNSELECT")
        assert size_of(c, "INBOX") == len(b)
        c.logout()


def test_size_comes_from_the_index(imap_server):
    """Once known, a message's size is taken from the index, not from its
    file: shrinking a file in place (its name and directory unchanged)
    does not change SIZE."""
    inst = imap_server.instance
    data = [message(i, body_lines=20) for i in range(1, 4)]
    for d in data:
        put(inst, ALICE, d, folder="Drafts", flags="S")
    with imap_server.session() as c:
        first = size_of(c, "Drafts")
        assert first == sum(len(crlf(d)) for d in data)
        for path in message_files(inst, ALICE, "Drafts"):
            os.truncate(path, 10)
        assert size_of(c, "Drafts") == first
        c.logout()


# --------------------------------------------------------------------------
# APPENDLIMIT (RFC 7889)


def test_appendlimit_advertised_and_in_status(imap_inst, imap_start):
    srv = imap_start(imap_inst, ("message_size_limit=2000",))
    with srv.session() as c:
        r = c.ok("CAPABILITY")
        caps = capabilities(r.data("CAPABILITY")[0])
        assert "APPENDLIMIT=2000" in caps, caps
        assert [x for x in caps if x.startswith("APPENDLIMIT")] == ["APPENDLIMIT=2000"]
        assert status(c, "INBOX", "APPENDLIMIT") == [("APPENDLIMIT", 2000)]
        # in any order with the other items, for any mailbox
        got = status(c, "Sent", "APPENDLIMIT MESSAGES SIZE")
        assert got == [("APPENDLIMIT", 2000), ("MESSAGES", 0), ("SIZE", 0)], got
        c.logout()


def test_append_over_the_limit_is_toobig(imap_inst, imap_start):
    """RFC 7889 4: an APPEND larger than APPENDLIMIT gets NO [TOOBIG]; a
    synchronising literal is refused before it is sent, a LITERAL+ one is
    read and dropped; the message of exactly the limit is taken."""
    srv = imap_start(imap_inst, ("message_size_limit=2000",))
    exact = b"Subject: exact\r\n\r\n" + b"e" * (2000 - 20) + b"\r\n"
    assert len(exact) == 2000
    with srv.session() as c:
        r = c.no_continuation(b"T1 APPEND INBOX {2001}\r\n", "T1")
        assert r.status == "NO" and (r.code() or "").upper() == "TOOBIG", r
        r = c.command("APPEND INBOX ", Literal(exact + b"x", plus=True))
        assert r.status == "NO" and (r.code() or "").upper() == "TOOBIG", r
        c.ok("NOOP")
        r = c.append("INBOX", exact)
        assert r.status == "OK", r
        got = status(c, "INBOX", "MESSAGES SIZE APPENDLIMIT")
        assert got == [("MESSAGES", 1), ("SIZE", 2000), ("APPENDLIMIT", 2000)], got
        c.logout()
