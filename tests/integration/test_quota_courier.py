"""Courier quota strings (docs/migration.md "Quotas"): the quota column and
maildirsize may hold "<bytes>S,<count>C". The count is a message limit (a
count-only "5C" is no 5-byte quota), deliveries over it are refused like
those over the size (RCPT 452 4.2.2, IMAP APPEND [OVERQUOTA]), and the
maildirsize definition keeps both parts. SQLite: its quota column takes
text as the Courier howtos' varchar column does."""

import os

from imap_util import ALICE, PASSWORD, deliver, imap_start, message, parse  # noqa: F401
from smtp_util import maildir_of, new_files

Q = "q@example.test"


def set_quota(inst, address, value):
    inst.sql("UPDATE users SET quota = ? WHERE address = ?", (value, address))


def rcpt(srv, address):
    with srv.client() as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<x@y.test>", 250)
        return c.cmd("RCPT TO:<%s>" % address)


def send(srv, address, body):
    with srv.client() as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<x@y.test>", 250)
        c.expect("RCPT TO:<%s>" % address, 250)
        c.expect("DATA", 354)
        c.send(b"Subject: q\r\n\r\n" + body + b"\r\n.\r\n")
        assert c.reply().code == 250


def header(inst, address):
    with open(os.path.join(maildir_of(inst, address), "maildirsize")) as f:
        return f.readline().rstrip("\n")


def test_count_only_quota(sqlite_instance, smtp_start):
    sqlite_instance.run("user", "add", Q)
    set_quota(sqlite_instance, Q, "2C")
    srv = smtp_start(sqlite_instance)
    # a message far larger than 2 bytes is taken: "2C" counts messages
    send(srv, Q, b"x" * 5000)
    send(srv, Q, b"y" * 5000)
    r = rcpt(srv, Q)
    assert r.code == 452 and r.text.startswith("4.2.2"), r
    assert len(new_files(sqlite_instance, Q)) == 2
    assert header(sqlite_instance, Q) == "2C"


def test_bytes_and_count(sqlite_instance, smtp_start):
    sqlite_instance.run("user", "add", Q)
    set_quota(sqlite_instance, Q, "100000S,2C")
    srv = smtp_start(sqlite_instance)
    send(srv, Q, b"a" * 100)
    assert header(sqlite_instance, Q) == "100000S,2C"
    send(srv, Q, b"b" * 100)
    r = rcpt(srv, Q)
    assert r.code == 452, r
    # the byte part still counts on its own
    set_quota(sqlite_instance, Q, "1000S,9C")
    with srv.client() as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<x@y.test> SIZE=5000", 250)
        r = c.cmd("RCPT TO:<%s>" % Q)
        assert r.code == 452, r
    assert header(sqlite_instance, Q) == "1000S,9C"


def test_courier_header_kept(sqlite_instance, smtp_start):
    """A maildirsize Courier wrote, with the same quota in the column: the
    definition line stays as it was, deliveries only append."""
    sqlite_instance.run("user", "add", Q)
    set_quota(sqlite_instance, Q, "1000000S,50C")
    srv = smtp_start(sqlite_instance)
    send(srv, Q, b"first")
    path = os.path.join(maildir_of(sqlite_instance, Q), "maildirsize")
    with open(path, "w") as f:
        f.write("1000000S,50C\n4000 3\n")
    send(srv, Q, b"second")
    with open(path) as f:
        lines = f.read().splitlines()
    assert lines[0] == "1000000S,50C" and lines[1] == "4000 3", lines
    assert len(lines) == 3 and lines[2].endswith(" 1"), lines


def test_imap_count_quota(sqlite_instance, imap_start):
    sqlite_instance.add_user(ALICE, PASSWORD)
    set_quota(sqlite_instance, ALICE, "1000000S,2C")
    srv = imap_start(sqlite_instance)
    deliver(srv, ALICE, message(1))
    with srv.session() as c:
        r = c.ok('GETQUOTA ""')
        q = parse(r.data("QUOTA")[0])[1]
        res = {q[i].upper() if isinstance(q[i], str) else q[i].decode().upper():
               (int(q[i + 1]), int(q[i + 2])) for i in range(0, len(q), 3)}
        assert res["MESSAGE"] == (1, 2), res
        assert res["STORAGE"][1] == 1000000 // 1024, res
        assert c.append("INBOX", b"Subject: a\r\n\r\nx\r\n").status == "OK"
        r = c.append("INBOX", b"Subject: b\r\n\r\ny\r\n")
        assert r.status == "NO" and (r.code() or "").upper() == "OVERQUOTA", r
        c.logout()
