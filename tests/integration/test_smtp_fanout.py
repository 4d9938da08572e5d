"""One message to an alias of 1,000 local users (ALIAS_TARGETS_MAX): after the
250 every user has exactly one copy in new/ with its own Delivered-To (so the
copies are distinct files, not hard links of one), no tmp/ file is left, and
the quota of each user with one is counted once (a maildirsize line per
copy). The directories' fsyncs are made together at the end of the message
(lib/maildir's batch); tests/reliability/test_syscall_order.py checks they
all come before the 250."""

import os

from smtp_util import maildir_of, split_stored, tmp_files

N = 1000
DOMAIN = "example.test"


def add_users(inst, n, quota_every=10):
    """n users u0..u(n-1) in one INSERT (the CLI would take minutes); every
    quota_every-th has a quota of 10 MB."""
    cols = "id, address, crypt, clear, name, uid, gid, home, domain, maildir, imapok, bool1, bool2, quota"
    rows = []
    for i in range(n):
        a = "u%d@%s" % (i, DOMAIN)
        rows.append("(%s, %s, '', '', '', 1000, 1000, '', %s, %s, 1, 1, 1, %d)" % (
            inst.quote(a), inst.quote(a), inst.quote(DOMAIN), inst.quote("%s/u%d/" % (DOMAIN, i)),
            10000000 if i % quota_every == 0 else 0))
    inst.sql("INSERT INTO users (%s) VALUES %s" % (cols, ", ".join(rows)))


def test_alias_of_1000_users(sqlite_instance, smtp_start):
    inst = sqlite_instance
    add_users(inst, N)
    inst.run("alias", "add", "all@" + DOMAIN, ",".join("u%d@%s" % (i, DOMAIN) for i in range(N)))
    srv = smtp_start(inst)
    # two messages first to each user with a quota: the RCPT check of the
    # second (the maildir exists then) makes the maildirsize file that the
    # fan-out's copies add to
    quota_users = ["u%d@%s" % (i, DOMAIN) for i in range(0, N, 10)]
    with srv.client() as c:
        c.expect("EHLO client.test", 250)
        for _ in range(2):
            c.expect("MAIL FROM:<sender@y.test>", 250)
            for a in quota_users:
                c.expect("RCPT TO:<%s>" % a, 250)
            c.expect("DATA", 354)
            c.send(b"Subject: first\r\n\r\nfirst\r\n.\r\n")
            assert c.reply().code == 250
        c.expect("QUIT", 221)
    first = {}
    for a in quota_users:
        ms = os.path.join(maildir_of(inst, a), "maildirsize")
        with open(ms) as f:
            first[a] = f.read().splitlines()
        assert len(first[a]) >= 1, (ms, first[a])
    body = b"From: x@y.test\r\nSubject: to all\r\n\r\n" + b"fan-out line\r\n" * 200
    with srv.client(timeout=120) as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<sender@y.test>", 250)
        c.expect("RCPT TO:<all@%s>" % DOMAIN, 250)
        c.expect("DATA", 354)
        c.send(body + b".\r\n")
        rep = c.reply()
        assert rep.code == 250, rep
        # every copy is in place when the 250 is read
        inodes = set()
        for i in range(N):
            a = "u%d@%s" % (i, DOMAIN)
            d = os.path.join(maildir_of(inst, a), "new")
            names = [n for n in os.listdir(d)
                     if a not in first or b"to all" in open(os.path.join(d, n), "rb").read()]
            assert len(names) == 1, (a, names)
            p = os.path.join(d, names[0])
            st = os.stat(p)
            # one name each: the tmp/ name is gone, and no other copy shares it
            assert st.st_nlink == 1, (p, st.st_nlink)
            inodes.add(st.st_ino)
            with open(p, "rb") as f:
                head, stored = split_stored(f.read())
            assert head["Delivered-To"] == a
            assert stored.endswith(b"fan-out line\n" * 200)
            assert tmp_files(inst, a) == []
            ms = os.path.join(maildir_of(inst, a), "maildirsize")
            if i % 10 == 0:
                with open(ms) as f:
                    lines = f.read().splitlines()
                # what it held before, then this copy: its size and one message
                assert lines == first[a] + ["%d 1" % st.st_size], (ms, first[a], lines)
            else:
                assert not os.path.exists(ms)
        assert len(inodes) == N
        c.expect("QUIT", 221)
