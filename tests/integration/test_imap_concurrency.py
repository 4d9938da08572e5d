"""IMAP concurrency and persistence: two sessions on one mailbox see each
other's changes (EXISTS, EXPUNGE, FETCH FLAGS; RFC 3501 5.2, 7.4.1), IDLE
(RFC 2177) reports deliveries within a second, UIDs / UIDVALIDITY / flags
survive a restart and are never reused, and Courier's courierimapuiddb and
Dovecot's dovecot-uidlist keep their UIDs. SQLite."""

import os
import threading
import time

import pytest

from harness.instance import TIMEOUT_SCALE
from imap_util import (ALICE, BOB, crlf, deliver, folder_dir, imap_inst,  # noqa: F401 (fixtures)
                       imap_instance, imap_server, imap_start, list_entries, make_folder, message,
                       parse, put, put_many)


def uids_flags(c, seqset="1:*"):
    """[(uid, set(flags))] in sequence order."""
    r = c.ok("FETCH %s (UID FLAGS)" % seqset)
    f = r.fetches()
    return [(int(f[n]["UID"]), set(f[n]["FLAGS"]) - {"\\Recent"}) for n in sorted(f)]


def status(c, mailbox="INBOX"):
    r = c.ok("STATUS %s (MESSAGES UIDNEXT UIDVALIDITY)" % mailbox)
    v = parse(r.data("STATUS")[0])[1]
    return {k.upper(): int(x) for k, x in zip(v[::2], v[1::2])}


# --------------------------------------------------------------------------
# two sessions


def test_two_sessions_see_each_other(imap_server):
    inst = imap_server.instance
    put_many(inst, ALICE, 3)
    with imap_server.session(select="INBOX") as a, imap_server.session(select="INBOX") as b:
        # a new message appended by A: B learns at its next command
        r = a.append("INBOX", crlf(message(4)))
        assert r.status == "OK", r
        r = b.ok("NOOP")
        assert r.numbered("EXISTS") == [4], r
        # flags changed by A: B gets an untagged FETCH with the new FLAGS
        a.ok("STORE 2 +FLAGS.SILENT (\\Flagged $Todo)")
        r = b.ok("NOOP")
        f = r.fetches()
        assert 2 in f and {"\\Flagged", "$Todo"} <= set(f[2]["FLAGS"]), r
        # an EXPUNGE by A: B gets '* 2 EXPUNGE' ...
        a.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
        r = a.ok("EXPUNGE")
        assert r.numbered("EXPUNGE") == [2], r
        # ... but not in answer to FETCH / STORE / SEARCH (RFC 3501 7.4.1)
        r = b.command("FETCH 1:* (FLAGS)")
        assert r.status in ("OK", "NO"), r
        assert not r.numbered("EXPUNGE"), r
        r = b.command("SEARCH ALL")
        assert not r.numbered("EXPUNGE"), r
        r = b.ok("NOOP")
        assert r.numbered("EXPUNGE") == [2], r
        assert [u for u, _ in uids_flags(b)] == [u for u, _ in uids_flags(a)]
        assert len(uids_flags(b)) == 3
        # the same through UID FETCH, where EXPUNGE may be sent at once
        a.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        a.ok("EXPUNGE")
        r = b.ok("UID FETCH 1:* FLAGS")
        r2 = b.ok("NOOP")
        assert (r.numbered("EXPUNGE") + r2.numbered("EXPUNGE")) == [1], (r, r2)
        a.logout()
        b.logout()


def test_expunge_while_other_session_fetches(imap_server):
    """B has 5 messages selected; A expunges 2 and 4. B can still work and,
    after a NOOP, its sequence numbers and UIDs agree with A's."""
    put_many(imap_server.instance, ALICE, 5)
    with imap_server.session(select="INBOX") as a, imap_server.session(select="INBOX") as b:
        before = [u for u, _ in uids_flags(b)]
        a.ok("STORE 2,4 +FLAGS.SILENT (\\Deleted)")
        a.ok("EXPUNGE")
        # B fetches the bodies of messages that are gone for A: OK with the
        # data (still readable) or NO; never a crash, never a wrong message
        r = b.command("FETCH 1:5 (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert r.status in ("OK", "NO"), r
        for n, v in r.fetches().items():
            if "BODY[HEADER.FIELDS (SUBJECT)]" in v and v["BODY[HEADER.FIELDS (SUBJECT)]"]:
                assert v["BODY[HEADER.FIELDS (SUBJECT)]"].strip() == \
                    b"Subject: test message %d" % n, r
        r = b.ok("NOOP")
        left = list(before)
        for n in r.numbered("EXPUNGE"):
            del left[n - 1]
        assert left == [before[0], before[2], before[4]], (r, before)
        assert [u for u, _ in uids_flags(b)] == left
        a.logout()
        b.logout()


def test_concurrent_first_logins(imap_inst, imap_start):
    """Several clients logging in at the same moment as a user who never
    logged in before (mbsync and a phone at once): every login succeeds and
    the special-use folders exist once."""
    srv = imap_start(imap_inst)
    results = []
    for rnd in range(4):
        user = "first%d@example.test" % rnd
        imap_inst.add_user(user, "pw")
        bar = threading.Barrier(6)

        def worker():
            with srv.conn() as c:
                try:
                    bar.wait(10)
                except threading.BrokenBarrierError:
                    pass
                r = c.command('LOGIN %s pw' % user)
                results.append((user, r.status, r.text))
        ts = [threading.Thread(target=worker) for _ in range(6)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
    bad = [r for r in results if r[1] != "OK"]
    assert len(results) == 24 and not bad, (bad, "".join(
        l for l in srv.log_lines() if "error" in l or "warning" in l))
    with srv.session("first0@example.test", "pw") as c:
        r = c.ok('LIST "" "*"')
        names = sorted(n for _, _, n in list_entries(r))
        assert names == ["Archive", "Drafts", "INBOX", "Junk", "Sent", "Trash"], names
        c.logout()


def test_concurrent_appends_get_distinct_uids(imap_server):
    errors = []
    got = {}
    # (the first login, which makes the folders, is not what this is about)
    with imap_server.session() as c:
        c.logout()

    def worker(name):
        try:
            with imap_server.session() as c:
                uids = []
                for i in range(15):
                    r = c.append("INBOX", b"Subject: %s %d\r\n\r\nx\r\n" % (name.encode(), i),
                                 plus=True)
                    assert r.status == "OK", r
                    uids.append(int(r.code().split()[2]))
                got[name] = uids
                c.logout()
        except Exception as e:  # reported below
            errors.append(repr(e))

    ts = [threading.Thread(target=worker, args=(n,)) for n in ("one", "two", "three")]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors, errors
    allu = sum(got.values(), [])
    assert len(allu) == 45 and len(set(allu)) == 45, got
    for u in got.values():
        assert u == sorted(u), got
    with imap_server.session(select="INBOX") as c:
        assert sorted(u for u, _ in uids_flags(c)) == sorted(allu)
        c.logout()


# --------------------------------------------------------------------------
# IDLE


def test_idle_gets_delivery(imap_server):
    """A session in IDLE is told of a delivery and of another session's
    flag change without asking (how fast: bench/, not here)."""
    with imap_server.session(select="INBOX") as c, imap_server.session() as other:
        c.idle()
        assert c.nothing_pending(0.3)
        deliver(imap_server, ALICE, message(1))
        hit, got = c.read_until(r"^\* 1 EXISTS", timeout=10 * TIMEOUT_SCALE)
        assert hit, "no EXISTS after the delivery: %r" % got
        # a flag change by another session
        other.select("INBOX")
        other.ok("STORE 1 +FLAGS.SILENT (\\Flagged)")
        hit, got = c.read_until(r"^\* 1 FETCH \(.*\\Flagged", timeout=1.0)
        assert hit, got
        # an expunge by another session
        other.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        other.ok("EXPUNGE")
        hit, got = c.read_until(r"^\* 1 EXPUNGE", timeout=1.0)
        assert hit, got
        r = c.done()
        assert r.status == "OK", r
        # and the session goes on
        r = c.ok("NOOP")
        assert not r.numbered("EXISTS") or r.numbered("EXISTS") == [0]
        other.logout()
        c.logout()


def test_idle_sees_file_dropped_into_new(imap_server):
    """Another delivery agent writes straight into new/."""
    inst = imap_server.instance
    put(inst, ALICE, message(1))
    with imap_server.session(select="INBOX") as c:
        c.idle()
        put(inst, ALICE, message(2))
        hit, got = c.read_until(r"^\* 2 EXISTS", timeout=2.0)
        assert hit, got
        assert c.done().status == "OK"
        c.logout()


def test_idle_done_and_errors(imap_server):
    with imap_server.session(select="INBOX") as c:
        c.idle()
        c.send(b"done\r\n")              # case-insensitive
        r = c.read_tagged(c.idle_tag)
        assert r.status == "OK", r
        c.idle()
        c.send(b"NOT DONE\r\n")
        r = c.read_tagged(c.idle_tag)
        assert r.status in ("BAD", "NO"), r
        c.ok("NOOP")
        c.logout()
    # IDLE in the authenticated state is allowed (RFC 2177)
    with imap_server.session() as c:
        c.idle()
        assert c.done().status == "OK"
        c.logout()


def test_idle_many_clients_all_notified(imap_server):
    conns = [imap_server.session(select="INBOX") for _ in range(8)]
    try:
        for c in conns:
            c.idle()
        deliver(imap_server, ALICE, message(1))
        for c in conns:
            hit, got = c.read_until(r"^\* 1 EXISTS", timeout=1.5)
            assert hit, got
        for c in conns:
            assert c.done().status == "OK"
    finally:
        for c in conns:
            c.close()


# --------------------------------------------------------------------------
# persistence across restarts


def test_restart_keeps_uids_uidvalidity_flags(imap_inst, imap_start):
    put_many(imap_inst, ALICE, 4)
    srv = imap_start(imap_inst)
    with srv.session(select="INBOX") as c:
        c.ok("STORE 1 +FLAGS.SILENT (\\Seen $Keep)")
        c.ok("STORE 3 +FLAGS.SILENT (\\Answered \\Flagged)")
        c.ok("STORE 4 +FLAGS.SILENT (\\Deleted)")
        c.ok("EXPUNGE")                   # the highest UID is gone
        before = uids_flags(c)
        st = status(c)
        c.ok("CREATE Other")
        c.ok("APPEND Other {3+}\r\nabc")
        st_other = status(c, "Other")
        c.logout()
    assert srv.stop() == 0
    srv2 = imap_start(imap_inst)
    with srv2.session(select="INBOX") as c:
        assert uids_flags(c) == before
        st2 = status(c)
        assert st2["UIDVALIDITY"] == st["UIDVALIDITY"], (st, st2)
        assert st2["UIDNEXT"] == st["UIDNEXT"], (st, st2)
        assert status(c, "Other") == st_other
        # the expunged UID is not reused
        r = c.append("INBOX", b"Subject: after\r\n\r\nx\r\n")
        new_uid = int(r.code().split()[2])
        assert new_uid >= st["UIDNEXT"] and new_uid > max(u for u, _ in before) + 1, (r, before)
        c.logout()
    # the index files are where the header says
    assert os.path.isfile(os.path.join(folder_dir(imap_inst, ALICE), "petrel-index"))
    assert os.path.isfile(os.path.join(folder_dir(imap_inst, ALICE, "Other"), "petrel-index"))


def test_lost_index_keeps_flags_from_file_names(imap_inst, imap_start):
    """Flags live in the Maildir file names: a deleted petrel-index loses the
    UIDs (new UIDVALIDITY allowed) but not the flags."""
    put_many(imap_inst, ALICE, 2)
    srv = imap_start(imap_inst)
    with srv.session(select="INBOX") as c:
        c.ok("STORE 2 +FLAGS.SILENT (\\Seen \\Flagged)")
        st = status(c)
        c.logout()
    srv.stop()
    os.unlink(os.path.join(folder_dir(imap_inst, ALICE), "petrel-index"))
    srv = imap_start(imap_inst)
    with srv.session(select="INBOX") as c:
        uf = uids_flags(c)
        assert [f for _, f in uf] == [set(), {"\\Seen", "\\Flagged"}], uf
        st2 = status(c)
        # if the UIDVALIDITY is kept, the UIDs must be the same too
        if st2["UIDVALIDITY"] == st["UIDVALIDITY"]:
            assert [u for u, _ in uf] == [1, 2], uf
        c.logout()


# --------------------------------------------------------------------------
# Courier and Dovecot maildirs


def _legacy_maildir(inst, folder="INBOX"):
    d = make_folder(inst, ALICE, folder)
    names = []
    for i, fl in enumerate(("S", "FS", ""), 1):
        base = "12000000%02d.M%dP%d.oldhost" % (i, i, i)
        put(inst, ALICE, message(i), folder=folder, name=base, flags=fl)
        names.append(base)
    # one message that the uid list does not know yet
    put(inst, ALICE, message(4), folder=folder, name="1300000000.M9P9.oldhost", flags="")
    return d, names


def _check_legacy(srv, folder, uidvalidity, uids, nextuid):
    with srv.session() as c:
        r = c.select(folder)
        assert r.find(r"UIDVALIDITY %d\]" % uidvalidity), r
        uf = uids_flags(c)
        assert [u for u, _ in uf][:3] == uids, uf
        assert [f for _, f in uf][:3] == [{"\\Seen"}, {"\\Seen", "\\Flagged"}, set()], uf
        assert uf[3][0] >= nextuid, uf            # the unknown one gets a new UID
        r = c.append(folder, b"Subject: new\r\n\r\nx\r\n")
        assert int(r.code().split()[2]) > uf[3][0], r
        c.logout()


def test_courier_uiddb_keeps_uids(imap_inst, imap_start):
    d, names = _legacy_maildir(imap_inst)
    with open(os.path.join(d, "courierimapuiddb"), "w") as f:
        f.write("1 1111111111 40\n")
        for uid, n in zip((5, 9, 17), names):
            f.write("%d %s\n" % (uid, n))
    srv = imap_start(imap_inst)
    _check_legacy(srv, "INBOX", 1111111111, [5, 9, 17], 40)


def test_dovecot_uidlist_keeps_uids(imap_inst, imap_start):
    d, names = _legacy_maildir(imap_inst, "Old")
    with open(os.path.join(d, "dovecot-uidlist"), "w") as f:
        f.write("3 V1222333444 N30 G3085f01b7f11094c501100008c4a11c1\n")
        for uid, n in zip((3, 11, 12), names):
            f.write("%d :%s\n" % (uid, n))
    srv = imap_start(imap_inst)
    _check_legacy(srv, "Old", 1222333444, [3, 11, 12], 30)


def test_dovecot_uidlist_v1_and_extensions(imap_inst, imap_start):
    """Version-1 uidlists and v3 records with extension fields (W<vsize>
    S<size>) are read too."""
    d, names = _legacy_maildir(imap_inst)
    with open(os.path.join(d, "dovecot-uidlist"), "w") as f:
        f.write("3 V1333444555 N25\n")
        f.write("2 W1234 :%s\n" % names[0])
        f.write("4 S999 W1000 :%s\n" % names[1])
        f.write("7 :%s\n" % names[2])
    d2, names2 = _legacy_maildir(imap_inst, "V1")
    with open(os.path.join(d2, "dovecot-uidlist"), "w") as f:
        f.write("1 1444555666 21\n")
        for uid, n in zip((1, 2, 20), names2):
            f.write("%d %s\n" % (uid, n))
    srv = imap_start(imap_inst)
    _check_legacy(srv, "INBOX", 1333444555, [2, 4, 7], 25)
    _check_legacy(srv, "V1", 1444555666, [1, 2, 20], 21)


def test_dovecot_keywords_are_read(imap_inst, imap_start):
    d = make_folder(imap_inst, ALICE, "INBOX")
    with open(os.path.join(d, "dovecot-keywords"), "w") as f:
        f.write("0 $Forwarded\n1 Project-X\n")
    put(imap_inst, ALICE, message(1), flags="Sab")
    put(imap_inst, ALICE, message(2), flags="b")
    srv = imap_start(imap_inst)
    with srv.session(select="INBOX") as c:
        uf = uids_flags(c)
        assert [f for _, f in uf] == [{"\\Seen", "$Forwarded", "Project-X"}, {"Project-X"}], uf
        c.logout()


# --------------------------------------------------------------------------
# scale and shutdown


def test_idle_clients_cost_kilobytes(imap_inst, imap_start):
    """SPEC 5: thousands of idle IMAP clients must cost kilobytes each. 300
    logged-in sessions in IDLE on INBOX: the workers grow by less than 100 KB
    per session, and one delivery still reaches them all. (All from
    127.0.0.1: the per-address limit is raised.)"""
    srv = imap_start(imap_inst, ["imap_max_connections_per_ip=1000"])
    put_many(imap_inst, ALICE, 20)
    warm = [srv.session(select="INBOX") for _ in range(5)]
    for c in warm:
        c.idle()
    time.sleep(0.3)
    before = srv.workers_rss_kb()
    n = 300
    conns = []
    try:
        for i in range(n):
            c = srv.session(ALICE if i % 2 else BOB, select="INBOX", timeout=30)
            c.idle()
            conns.append(c)
        time.sleep(0.5)
        after = srv.workers_rss_kb()
        per = (after - before) / n
        with open(imap_inst.bin, "rb") as f:
            sanitized = b"__asan_init" in f.read()
        limit = 400 if sanitized else 100     # ASan's redzones and quarantine
        assert per < limit, "%.1f KB per idle IMAP session (%d -> %d kB)" % (per, before, after)
        deliver(srv, ALICE, message(99))
        deliver(srv, BOB, message(99))
        late = []
        for i, c in enumerate(conns):
            hit, got = c.read_until(r"EXISTS", timeout=3)
            if not hit:
                late.append(i)
        assert not late, "%d of %d IDLE sessions got no EXISTS within 3 s" % (len(late), n)
    finally:
        for c in conns + warm:
            c.close()


def test_sigterm_with_idle_clients(imap_inst, imap_start):
    """SIGTERM: IDLE and selected sessions get '* BYE' (RFC 3501 7.1.5), the
    connections are closed and the server exits 0 in time."""
    srv = imap_start(imap_inst)
    a = srv.session(select="INBOX")
    a.idle()
    b = srv.session(select="INBOX")
    c = srv.conn()
    t0 = time.monotonic()
    srv.proc.send_signal(15)
    for x in (a, b, c):
        data, closed = x.read_rest(timeout=10)
        assert closed, data
        assert b"* BYE" in data, data
        x.close()
    assert srv.stop() == 0
    assert time.monotonic() - t0 < 10 * TIMEOUT_SCALE


def test_large_mailbox_indexed_once(imap_inst, imap_start):
    """3000 messages: the first SELECT indexes them, FETCH of all flags and
    a SEARCH of every body answer for all of them, and a later SELECT in a
    new session reads that index as it is (the file is not written again).
    Speed is measured in bench/, not here."""
    n = 3000
    for i in range(n):
        put(imap_inst, ALICE, message(i, body=b"body %d %s\n" % (i, b"needle" if i % 1000 == 7
                                                                   else b"hay")),
            name="1600000000.M%dP1.big" % i)
    srv = imap_start(imap_inst)
    index = os.path.join(folder_dir(imap_inst, ALICE, "INBOX"), "petrel-index")
    with srv.session(timeout=60 * TIMEOUT_SCALE) as c:
        r = c.select("INBOX")
        assert r.numbered("EXISTS") == [n], r
        r = c.ok("FETCH 1:* (UID FLAGS RFC822.SIZE)")
        assert len(r.fetches()) == n
        r = c.ok("SEARCH BODY needle")
        assert r.search() == [8, 1008, 2008], r.search()
        c.logout()
    before = os.stat(index)
    with srv.session(timeout=60 * TIMEOUT_SCALE) as c:
        r = c.select("INBOX")
        assert r.numbered("EXISTS") == [n], r
        c.logout()
    after = os.stat(index)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == \
        (before.st_ino, before.st_size, before.st_mtime_ns), "the index was written again"


# --------------------------------------------------------------------------
# races between sessions


def test_folder_deleted_and_recreated_under_other_sessions(imap_server):
    """Another session DELETEs and re-CREATEs the folder A and B have
    selected (A idles, B keeps sending commands). Each of them is told
    once (an untagged NO [UNAVAILABLE]), commands that need the folder
    get NO [UNAVAILABLE], SELECT works again (a new UIDVALIDITY), and the
    log stays small: at most a few lines per session, however long they
    go on, not one or more per command or IDLE wakeup."""
    inst = imap_server.instance
    put_many(inst, ALICE, 3, folder="Work")
    with imap_server.session() as a, imap_server.session() as b, \
            imap_server.session() as c:
        r = a.select("Work")
        uv = int(r.find(r"UIDVALIDITY")[0].split("UIDVALIDITY ")[1].split("]")[0])
        b.select("Work")
        a.idle()
        before = len(imap_server.log_lines())
        c.ok("DELETE Work")
        c.ok("CREATE Work")
        c.append("Work", crlf(message(9)))
        # the idling session is told once, at once
        hit, got = a.read_until(r"^\* NO \[UNAVAILABLE\]", timeout=10)
        assert hit is not None, got
        # B keeps working for a while: one NO, then NO per command
        first = b.command("NOOP")
        assert first.status == "OK", first
        assert len(first.find(r"^\* NO \[UNAVAILABLE\]")) == 1, first
        deadline = time.monotonic() + 5
        n = added = 0
        while time.monotonic() < deadline and n < 2000:
            n += 1
            r = b.command("FETCH 1 FLAGS")
            assert r.status == "NO" and "UNAVAILABLE" in r.text, r
            assert not r.find(r"^\* NO"), r
            r = b.ok("NOOP")
            assert not r.untagged, r
            if n % 10 == 1:
                c.append("Work", crlf(message(n)))
                added += 1
        assert n > 10, n
        # IDLE saw all those appends in the new folder: nothing more said
        r = a.done()
        assert r.status == "OK", r
        assert not r.find(r"EXISTS|FETCH|EXPUNGE"), r
        lines = imap_server.log_lines()[before:]
        # the DELETE/CREATE may log a line or two; each session one
        assert len(lines) <= 6, (len(lines), lines[:40])
        # SELECT again: the new folder
        r = b.select("Work")
        assert r.numbered("EXISTS") == [added + 1], r
        uv2 = int(r.find(r"UIDVALIDITY")[0].split("UIDVALIDITY ")[1].split("]")[0])
        assert uv2 != uv
        r = a.ok("UNSELECT")
        r = a.fails("FETCH 1 FLAGS")
        # deleted for good: the same
        c.ok("DELETE Work")
        r = b.ok("NOOP")
        assert len(r.find(r"^\* NO \[UNAVAILABLE\]")) == 1, r
        b.no("UID FETCH 1:* FLAGS", contains="UNAVAILABLE")
        b.ok("CLOSE")
        b.fails("FETCH 1 FLAGS")
        a.logout()
        b.logout()
        c.logout()


def test_folder_recreated_before_the_next_look(imap_server):
    """A has Work selected and is silent while C deletes it and another
    program makes it again the way it was made (tmp/, new/, cur/) and
    drops one message in: on ext4 the new cur/ then gets the old one's
    inode number back. A must
    still see another folder: at its next command an untagged NO
    [UNAVAILABLE], no EXPUNGE of its old messages, and the new folder
    keeps what was put there (A writes nothing into it)."""
    inst = imap_server.instance
    reused = 0
    for rnd in range(4):
        put_many(inst, ALICE, 3, folder="Work")
        with imap_server.session() as a, imap_server.session() as c:
            r = a.select("Work")
            assert r.numbered("EXISTS") == [3], r
            a.ok("STORE 1 +FLAGS.SILENT (\\Seen)")
            d = folder_dir(inst, ALICE, "Work")
            ino = os.stat(os.path.join(d, "cur")).st_ino
            c.ok("DELETE Work")
            assert not os.path.exists(d)
            make_folder(inst, ALICE, "Work")
            reused += os.stat(os.path.join(d, "cur")).st_ino == ino
            put(inst, ALICE, crlf(message(100 + rnd)), folder="Work")
            r = a.ok("NOOP")
            assert len(r.find(r"^\* NO \[UNAVAILABLE\]")) == 1, (rnd, r)
            assert not r.numbered("EXPUNGE"), (rnd, r)
            a.no("FETCH 1 FLAGS", contains="UNAVAILABLE")
            r = c.select("Work")
            assert r.numbered("EXISTS") == [1], (rnd, r)
            assert [u for u, _ in uids_flags(c)] == [1], (rnd, r)
            a.logout()
            c.ok("DELETE Work")
            c.logout()
    # the case this is about happened at least once (it does on ext4;
    # on a file system that never reuses the number the test is weaker)
    print("cur/ inode reused in %d of 4 rounds" % reused)


def test_fetch_of_message_expunged_by_another_session(imap_server):
    """RFC 2180 4.1.1/4.1.2: until B is told of an expunge (it cannot be
    during FETCH), a FETCH of the message answers what the index and the
    cache still hold -- FLAGS, UID, INTERNALDATE, RFC822.SIZE, ENVELOPE,
    BODYSTRUCTURE, even when only another session looked at them -- not
    NO [EXPUNGEISSUED]; that is left for what only the file had."""
    put_many(imap_server.instance, ALICE, 3)
    items = "(UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE)"
    with imap_server.session(select="INBOX") as a, \
            imap_server.session(select="INBOX") as b:
        want = a.ok("FETCH 2 " + items).fetches()[2]
        a.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
        a.ok("EXPUNGE")
        r = b.ok("FETCH 2 " + items)
        assert not r.numbered("EXPUNGE"), r
        got = r.fetches()[2]
        for k in ("UID", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE"):
            assert got[k] == want[k], (k, got, want)
        # the flags this session last knew (it never saw the \Deleted)
        assert "\\Seen" not in got["FLAGS"], got
        r = b.ok("FETCH 1:3 (UID RFC822.SIZE ENVELOPE)")
        assert sorted(r.fetches()) == [1, 2, 3], r
        # the bytes went with the file
        r = b.no("FETCH 2 BODY.PEEK[]", contains="EXPUNGEISSUED")
        assert not r.numbered("EXPUNGE"), r
        r = b.ok("NOOP")
        assert r.numbered("EXPUNGE") == [2], r
        a.logout()
        b.logout()


def test_recent_goes_to_exactly_one_session(imap_server):
    """RFC 3501 2.3.2: a message is \\Recent in at most one session. Six
    sessions SELECT at the same moment: the RECENT counts add up to 5."""
    put_many(imap_server.instance, ALICE, 5)
    conns = [imap_server.session() for _ in range(6)]
    try:
        bar = threading.Barrier(len(conns))
        counts = []

        def sel(c):
            bar.wait(10)
            r = c.select("INBOX")
            counts.append(r.numbered("RECENT")[-1])

        ts = [threading.Thread(target=sel, args=(c,)) for c in conns]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        assert len(counts) == 6 and sum(counts) == 5, counts
        total = 0
        for c in conns:
            r = c.ok("FETCH 1:* FLAGS")
            total += sum("\\Recent" in v["FLAGS"] for v in r.fetches().values())
        assert total == 5, total
    finally:
        for c in conns:
            c.close()


def recent_seqs(c):
    """The sequence numbers whose FLAGS show \\Recent."""
    r = c.ok("FETCH 1:* FLAGS")
    return sorted(n for n, v in r.fetches().items() if "\\Recent" in v["FLAGS"])


def test_recent_of_copied_appended_moved_messages(imap_server):
    """RFC 3501 2.3.2: a message that COPY, APPEND or MOVE puts into a
    folder another session has selected is \\Recent in exactly that
    session (the first to see it), not in sessions that select it later;
    STATUS counts it until then; SEARCH RECENT/NEW/OLD agree. A session
    APPENDing into its own selected folder gets it \\Recent itself."""
    inst = imap_server.instance
    put(inst, ALICE, message(1), flags="")
    put(inst, ALICE, message(2), flags="")
    make_folder(inst, ALICE, "Work")
    with imap_server.session(select="Work") as a, \
            imap_server.session(select="INBOX") as b:
        r = a.ok("NOOP")
        b.ok("COPY 1 Work")
        r = b.append("Work", crlf(message(3)))
        assert r.status == "OK", r
        b.ok("MOVE 2 Work")
        r = b.ok("STATUS Work (MESSAGES RECENT)")
        assert r.find(r"MESSAGES 3 RECENT 3"), r
        r = a.ok("NOOP")
        assert r.numbered("EXISTS") == [3], r
        assert r.numbered("RECENT") == [3], r
        assert recent_seqs(a) == [1, 2, 3]
        assert a.ok("SEARCH RECENT").search() == [1, 2, 3]
        assert a.ok("SEARCH NEW").search() == [1, 2, 3]
        assert a.ok("SEARCH OLD").search() == []
        r = b.ok("STATUS Work (MESSAGES RECENT)")
        assert r.find(r"MESSAGES 3 RECENT 0"), r
        with imap_server.session() as c:
            r = c.select("Work")
            assert r.numbered("RECENT") == [0], r
            assert recent_seqs(c) == []
            assert c.ok("SEARCH RECENT").search() == []
            assert c.ok("SEARCH OLD").search() == [1, 2, 3]
            # an APPEND into the folder A has selected, by A itself
            r = a.append("Work", crlf(message(4)))
            assert r.status == "OK", r
            assert r.numbered("EXISTS") == [4], r
            assert r.numbered("RECENT") == [4], r
            assert recent_seqs(a) == [1, 2, 3, 4]
            r = c.ok("NOOP")
            assert r.numbered("EXISTS") == [4], r
            assert r.numbered("RECENT") == [0], r
            assert recent_seqs(c) == []
            c.logout()
        a.logout()
        b.logout()


def test_both_sessions_expunge_the_same_message(imap_server):
    put_many(imap_server.instance, ALICE, 3)
    with imap_server.session(select="INBOX") as a, imap_server.session(select="INBOX") as b:
        uids = [u for u, _ in uids_flags(a)]
        a.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
        b.ok("NOOP")
        res = []
        ts = [threading.Thread(target=lambda c=c: res.append(c.command("EXPUNGE")))
              for c in (a, b)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        assert [r.status for r in res] == ["OK", "OK"], res
        for c in (a, b):
            c.ok("NOOP")
            assert [u for u, _ in uids_flags(c)] == [uids[0], uids[2]]
        # a STORE on a message the other session expunged: no crash, and the
        # EXPUNGE is reported at the next NOOP
        a.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
        a.ok("EXPUNGE")
        r = b.command("STORE 2 +FLAGS (\\Flagged)")
        assert r.status in ("OK", "NO"), r
        r = b.ok("NOOP")
        assert r.numbered("EXPUNGE") == [2], r
        assert [u for u, _ in uids_flags(b)] == [uids[0]]
        a.logout()
        b.logout()


def test_idle_on_examined_mailbox_and_move_into_it(imap_server):
    put_many(imap_server.instance, ALICE, 2)
    with imap_server.session() as watcher, imap_server.session(select="INBOX") as mover:
        watcher.examine("Archive")
        watcher.idle()
        mover.ok("MOVE 1 Archive")
        hit, got = watcher.read_until(r"^\* 1 EXISTS", timeout=1.5)
        assert hit, got
        mover.ok("COPY 1 Archive")
        hit, got = watcher.read_until(r"^\* 2 EXISTS", timeout=1.5)
        assert hit, got
        assert watcher.done().status == "OK"
        r = watcher.ok("STATUS Archive (MESSAGES UIDNEXT)")
        st = status(watcher, "Archive")
        assert st["MESSAGES"] == 2 and st["UIDNEXT"] > max(u for u, _ in uids_flags(watcher)), r
        watcher.logout()
        mover.logout()


def test_rename_of_selected_mailbox_by_other_session(imap_server):
    with imap_server.session() as a, imap_server.session() as b:
        a.ok("CREATE Proj")
        a.ok("APPEND Proj {3+}\r\nabc")
        b.select("Proj")
        a.ok("RENAME Proj Proj2")
        try:
            r = b.command("NOOP")
            assert r.status in ("OK", "NO", "BAD"), r
            r = b.command("FETCH 1:* (UID)")
            assert r.status in ("OK", "NO", "BAD"), r
        except ConnectionError:
            pass   # BYE and close is allowed
        r = a.select("Proj2")
        assert r.numbered("EXISTS") == [1], r
        a.logout()
    assert imap_server.alive()


# --------------------------------------------------------------------------
# caches and damaged state files


def test_cached_structures_survive_restart(imap_inst, imap_start):
    from imap_util import MULTIPART
    put(imap_inst, ALICE, MULTIPART)
    put(imap_inst, ALICE, message(2))
    items = "(UID FLAGS ENVELOPE BODYSTRUCTURE BODY RFC822.SIZE INTERNALDATE)"
    srv = imap_start(imap_inst)
    with srv.session(select="INBOX") as c:
        first = c.ok("FETCH 1:* " + items).fetches()
        again = c.ok("FETCH 1:* " + items).fetches()
        assert first == again
        c.ok("STORE 1 +FLAGS.SILENT (\\Seen)")   # renames the file
        c.logout()
    srv.stop()
    srv = imap_start(imap_inst)
    with srv.session(select="INBOX") as c:
        after = c.ok("FETCH 1:* " + items).fetches()
        for n in first:
            for k in first[n]:
                if k != "FLAGS":
                    assert after[n][k] == first[n][k], (n, k, first[n][k], after[n][k])
        assert "\\Seen" in after[1]["FLAGS"]
        c.logout()


@pytest.mark.parametrize("victim,how", [
    ("petrel-index", "garbage"), ("petrel-index", "truncate"), ("petrel-index", "empty"),
    ("petrel-cache", "garbage"), ("petrel-cache", "truncate"),
    ("dovecot-keywords", "garbage"), ("dovecot-uidlist", "garbage"),
    ("courierimapuiddb", "garbage"),
])
def test_damaged_state_files(imap_inst, imap_start, victim, how):
    """A damaged index, cache or uid list is rebuilt or ignored: every message
    is still there with its content and its Maildir flags, and nothing
    crashes."""
    from imap_util import MULTIPART
    datas = [MULTIPART, message(2), message(3)]
    for i, d in enumerate(datas):
        put(imap_inst, ALICE, d, name="1500000000.M%dP1.dmg" % i)
    srv = imap_start(imap_inst)
    with srv.session(select="INBOX") as c:
        c.ok("STORE 2 +FLAGS.SILENT (\\Flagged $Label)")
        c.ok("FETCH 1:* (BODYSTRUCTURE ENVELOPE)")
        c.logout()
    srv.stop()
    path = os.path.join(folder_dir(imap_inst, ALICE), victim)
    size = os.path.getsize(path) if os.path.exists(path) else 0
    with open(path, "r+b" if os.path.exists(path) else "wb") as f:
        if how == "garbage":
            f.seek(size // 3)
            f.write(b"\xff\x00garbage\n\n%%%\x01" * 40 + b"-1 :\n99999999999999999999 x\n")
        elif how == "truncate":
            f.truncate(size // 2)
        else:
            f.truncate(0)
    srv = imap_start(imap_inst)
    with srv.session(select="INBOX") as c:
        r = c.ok("FETCH 1:* (FLAGS BODY.PEEK[] BODYSTRUCTURE RFC822.SIZE)")
        f = r.fetches()
        assert sorted(f) == [1, 2, 3], r
        assert [f[n]["BODY[]"] for n in (1, 2, 3)] == [crlf(d) for d in datas]
        assert "\\Flagged" in f[2]["FLAGS"], f
        for n in (1, 2, 3):
            assert int(f[n]["RFC822.SIZE"]) == len(f[n]["BODY[]"])
        assert c.append("INBOX", b"Subject: after\r\n\r\nx\r\n").status == "OK"
        c.logout()
    assert not srv.crashes(), srv.log()


def test_lost_index_after_expunge_does_not_remap_uids(imap_inst, imap_start):
    """RFC 3501 2.3.1.1: a UID, once given to a message, never means another
    message under the same UIDVALIDITY. Message 1 (UID 1) is expunged, then
    the index is lost: if the rebuilt folder keeps the UIDVALIDITY, the
    remaining message must keep UID 2, not become UID 1."""
    put_many(imap_inst, ALICE, 2)
    srv = imap_start(imap_inst)
    with srv.session(select="INBOX") as c:
        before = uids_flags(c)
        uv = status(c)["UIDVALIDITY"]
        c.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        c.ok("EXPUNGE")
        c.logout()
    srv.stop()
    os.unlink(os.path.join(folder_dir(imap_inst, ALICE), "petrel-index"))
    srv = imap_start(imap_inst)
    with srv.session(select="INBOX") as c:
        after = uids_flags(c)
        uv2 = status(c)["UIDVALIDITY"]
        assert uv2 != uv or after[0][0] == before[1][0], (uv, before, uv2, after)
        c.logout()


def test_rename_inbox_while_selected_elsewhere(imap_server):
    put_many(imap_server.instance, ALICE, 2)
    with imap_server.session(select="INBOX") as a, imap_server.session() as b:
        b.ok("RENAME INBOX Old")
        try:
            r = a.ok("NOOP")
            assert len(r.numbered("EXPUNGE")) == 2, r
            r = a.command("SEARCH ALL")
            assert r.status == "OK" and r.search() == [], r
        except ConnectionError:
            pass    # BYE and close is allowed
        st = status(b, "Old")
        assert st["MESSAGES"] == 2, st
        b.logout()
