"""IMAP QUOTA (RFC 2087 / 9208): GETQUOTAROOT and GETQUOTA from the users
table's quota column (bytes; 0 = none) in KiB, SETQUOTA refused, APPEND and
COPY over the quota refused with [OVERQUOTA] (RFC 5530). SQLite and MariaDB
where the directory matters."""

import math

import pytest

from imap_util import (ALICE, BOB, PASSWORD, crlf, deliver, imap_start, message,  # noqa: F401
                       message_files, parse)


def quota_resources(r):
    """{'root': name, 'res': {NAME: (used, limit)}} of the '* QUOTA' response."""
    q = r.data("QUOTA")
    assert len(q) == 1, r
    v = parse(q[0])
    root = v[0].decode() if isinstance(v[0], bytes) else v[0]
    lst = v[1]
    res = {}
    for i in range(0, len(lst), 3):
        res[lst[i].upper()] = (int(lst[i + 1]), int(lst[i + 2]))
    return root, res


def quotaroot(r, mailbox):
    qr = r.data("QUOTAROOT")
    assert len(qr) == 1, r
    v = parse(qr[0])
    name = v[0].decode() if isinstance(v[0], bytes) else v[0]
    assert name.upper() == mailbox.upper(), r
    return [x.decode() if isinstance(x, bytes) else x for x in v[1:]]


def bytes_on_disk(inst, address):
    import os
    total = 0
    for folder in [None] + [f for f in ("Sent", "Drafts", "Trash", "Junk", "Archive")]:
        for p in message_files(inst, address, folder or "INBOX"):
            total += os.path.getsize(p)
    return total


def test_quota_from_users_table(instance, imap_start):
    instance.add_user(ALICE, PASSWORD, "--quota", "1000000")
    instance.add_user(BOB, PASSWORD)
    srv = imap_start(instance)
    for i in range(1, 6):
        deliver(srv, ALICE, message(i, body=b"y" * 3000 + b"\n"))
    with srv.session() as c:
        r = c.ok("GETQUOTAROOT INBOX")
        assert quotaroot(r, "INBOX") == [""], r
        root, res = quota_resources(r)
        assert root == "" and set(res) == {"STORAGE"}, r
        used, limit = res["STORAGE"]
        assert limit in (1000000 // 1024, math.ceil(1000000 / 1024)), res
        lo = bytes_on_disk(instance, ALICE) // 1024
        hi = math.ceil(sum(len(crlf(message(i, body=b"y" * 3000 + b"\n"))) for i in range(1, 6))
                       * 1.1 / 1024) + 1
        assert lo <= used <= hi, (used, lo, hi)
        r2 = c.ok('GETQUOTA ""')
        assert quota_resources(r2) == (root, res), (r, r2)
        # every folder has the same root
        r = c.ok("GETQUOTAROOT Sent")
        assert quotaroot(r, "Sent") == [""], r
        r = c.ok("GETQUOTAROOT inbox")
        c.no("GETQUOTAROOT Nonexistent")
        r = c.command('GETQUOTA "nonexistent-root"')
        assert r.status == "NO", r
        # users may not set their own quota
        r = c.command('SETQUOTA "" (STORAGE 99999999)')
        assert r.status in ("NO", "BAD"), r
        assert quota_resources(c.ok('GETQUOTA ""'))[1]["STORAGE"][1] == limit
        # usage grows with an APPEND
        data = b"Subject: grow\r\n\r\n" + b"z" * 20000 + b"\r\n"
        assert c.append("INBOX", data).status == "OK"
        used2 = quota_resources(c.ok('GETQUOTA ""'))[1]["STORAGE"][0]
        assert used + 18 <= used2 <= used + 22, (used, used2)
        c.logout()
    # quota 0: no limits
    with srv.session(BOB) as c:
        r = c.ok("GETQUOTAROOT INBOX")
        assert quotaroot(r, "INBOX") == [""], r
        q = r.data("QUOTA")
        assert len(q) == 1 and parse(q[0]) in ([b"", []], ["", []]), r
        c.logout()


def test_quota_change_takes_effect(instance, imap_start):
    instance.add_user(ALICE, PASSWORD, "--quota", "2048000")
    srv = imap_start(instance)
    with srv.session() as c:
        assert quota_resources(c.ok('GETQUOTA ""'))[1]["STORAGE"][1] == 2000
        c.logout()
    instance.sql("UPDATE users SET quota = 4096000 WHERE address = " + instance.quote(ALICE))
    with srv.session() as c:
        assert quota_resources(c.ok('GETQUOTA ""'))[1]["STORAGE"][1] == 4000
        c.logout()


def test_over_quota_append_and_copy(sqlite_instance, imap_start):
    sqlite_instance.add_user(ALICE, PASSWORD, "--quota", "30000")
    srv = imap_start(sqlite_instance)
    with srv.session() as c:
        big = b"Subject: big\r\n\r\n" + b"q" * 20000 + b"\r\n"
        assert c.append("INBOX", big).status == "OK"
        r = c.append("INBOX", big)
        assert r.status == "NO", r
        assert (r.code() or "").upper() == "OVERQUOTA", r
        r = c.select("INBOX")
        assert r.numbered("EXISTS") == [1], r
        r = c.command("COPY 1 Archive")
        assert r.status == "NO" and (r.code() or "").upper() == "OVERQUOTA", r
        # MOVE does not add usage and is allowed (or refused cleanly)
        r = c.command("MOVE 1 Archive")
        assert r.status in ("OK", "NO"), r
        # deleting makes room again
        c.ok("UNSELECT")
        for mb in ("INBOX", "Archive"):
            c.select(mb)
            if c.ok("SEARCH ALL").search():
                c.ok("STORE 1:* +FLAGS.SILENT (\\Deleted)")
            c.ok("EXPUNGE")
        assert c.append("INBOX", big).status == "OK"
        c.logout()


def test_no_quota_column(sqlite_instance, imap_start):
    """The Postfix howto's schema has no quota column: query_quota empty means
    no quotas, and GETQUOTAROOT still answers."""
    sqlite_instance.add_user(ALICE, PASSWORD, "--quota", "1000")
    srv = imap_start(sqlite_instance, ("query_quota=",))
    with srv.session() as c:
        r = c.ok("GETQUOTAROOT INBOX")
        q = r.data("QUOTA")
        assert len(q) == 1 and parse(q[0]) in ([b"", []], ["", []]), r
        big = b"Subject: big\r\n\r\n" + b"q" * 5000 + b"\r\n"
        assert c.append("INBOX", big).status == "OK"
        c.logout()


def test_quota_shared_with_smtp_delivery(sqlite_instance, imap_start):
    """IMAP APPEND and EXPUNGE keep the Maildir++ usage that SMTP delivery
    checks: once APPENDs fill the quota RCPT gets 452, after an EXPUNGE mail
    is accepted again."""
    import smtplib
    sqlite_instance.add_user(ALICE, PASSWORD, "--quota", "30000")
    srv = imap_start(sqlite_instance)
    small = message(1)
    deliver(srv, ALICE, small)
    with srv.session() as c:
        big = b"Subject: big\r\n\r\n" + b"q" * 31000 + b"\r\n"
        r = c.append("INBOX", big)
        # over the quota with this one: refused, or accepted as the last one
        if r.status == "OK":
            with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
                deliver(srv, ALICE, small)
            assert list(e.value.recipients.values())[0][0] == 452, e.value.recipients
            c.select("INBOX")
            c.ok("STORE 1:* +FLAGS.SILENT (\\Deleted)")
            c.ok("EXPUNGE")
        else:
            assert r.status == "NO" and (r.code() or "").upper() == "OVERQUOTA", r
        used = quota_resources(c.ok('GETQUOTA ""'))[1]["STORAGE"][0]
        assert used <= 2, used
        c.logout()
    deliver(srv, ALICE, small)
    assert len(message_files(sqlite_instance, ALICE)) >= 1
