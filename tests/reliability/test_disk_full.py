"""Disk full: petrel's mail root and queue on a small tmpfs (DISK_SIZE) that
is filled up, by SMTP deliveries of 500 KiB messages and by filler files; the
SQLite directory stays on the ordinary disk.

What it shows (SPEC 4: "250 after DATA means the message is on stable
storage"; a full disk is a temporary condition, as for Postfix and Dovecot):
  - SMTP (MX and submission): once the disk is full a message is refused with
    a 4xx (at RCPT or at the end of DATA), never with a 5xx and never with a
    250 for a message that is not stored whole -- also a message of more than
    1 MiB, which is spooled to the queue's tmp/ while it comes in;
  - IMAP: APPEND gets a tagged NO with a response code, never an OK for a
    message not stored, never a BYE or a dropped connection; STORE and FETCH
    go on working; COPY either works or leaves the target folder as it was
    (RFC 3501 6.4.7); a user can still open INBOX and EXPUNGE to make room;
    UIDs and UIDVALIDITY survive;
  - POP3: RETR, DELE and QUIT work on a full disk;
  - the outbound queue on the full disk: submission for a relay domain gets a
    4xx and leaves nothing half-written; a message queued before goes out;
    a deferred or rejected message keeps its retry back-off although its
    state file cannot be written, and its bounce arrives once, later;
  - nothing partial is ever visible: every file in new/ or cur/ of any maildir
    and in the queue holds its whole message (the test messages regenerate
    themselves from X-Fault-Id / X-Fault-Size, see fault_util), tmp/ is left
    empty;
  - petrel stays up (same worker processes, no sanitizer report) and, once
    the filler files are deleted, delivery, APPEND and relay work again
    without a restart; every refused message is accepted when sent again and
    arrives once.

Needs root (mount -t tmpfs); without it the tests fail, they do not skip.

Run:  cd /work/main && /usr/bin/python3 -m pytest -q tests/reliability/test_disk_full.py
      PETREL_BIN=/work/main/build-asan/petrel /usr/bin/python3 -m pytest -q \\
          tests/reliability/test_disk_full.py          # the ASan+UBSan build
"""

import os
import re
import shutil
import time

import pytest

import fault_util
import hostile_util
import mx_util
from conftest import make_instance
from fault_util import check_stored, crlf, message, scan_messages, still_up
from hostile_util import ALICE, BOB, PASSWORD
from smtp_util import maildir_of, queue_dir

DISK_SIZE = "6m"
BIG = 500 * 1024                 # "large" message: half a MiB
SPILLED = 1536 * 1024            # more than SPOOL_MEM_MAX (1 MiB): spooled to queue/tmp
SMALL = 2 * 1024
MAX_FILL_MESSAGES = 16           # bound on the SMTP fill loop (6 MiB / 500 KiB + margin)
RELAY_DOMAIN = "relay.test"
SERVE_OPTS = ("queue_retry_min=1", "queue_retry_max=2", "queue_scan_interval=1")
QUEUE_WINDOW = 4.0               # seconds of watching the queue manager on the full disk
TEMP_IMAP_CODES = ("OVERQUOTA", "SERVERBUG", "LIMIT", "UNAVAILABLE", "INUSE")


# --------------------------------------------------------------------------
# fixtures: a tmpfs, an instance whose mail root and queue live on it, serve


@pytest.fixture
def disk(tmp_path):
    """A DISK_SIZE tmpfs mounted on tmp_path/disk; unmounted at teardown."""
    path = str(tmp_path / "disk")
    try:
        fault_util.mount_tmpfs(path, DISK_SIZE)
    except AssertionError as e:
        pytest.fail(str(e))
    yield path
    fault_util.umount(path)


def set_conf(inst, key, value):
    """Replace `key = ...` in the instance's petrel.conf."""
    with open(inst.conf) as f:
        text = f.read()
    text, n = re.subn(r"(?m)^%s\s*=.*$" % re.escape(key), "%s = %s" % (key, value), text)
    assert n == 1, "no %s line in %s" % (key, inst.conf)
    with open(inst.conf, "w") as f:
        f.write(text)


@pytest.fixture
def inst(petrel_bin, tmp_path, disk):
    """A SQLite instance (users alice@, bob@example.test, password "pw") whose
    mail_root and queue_dir are on the tmpfs (the database is not)."""
    inst = make_instance(petrel_bin, tmp_path / "inst", "sqlite")
    conf = inst.config()
    for key, sub in (("mail_root", "mail"), ("queue_dir", "queue")):
        new = os.path.join(disk, sub)
        shutil.copytree(conf[key], new)      # the directories `petrel init` made
        set_conf(inst, key, new)
    assert inst.mail_root.startswith(disk) and queue_dir(inst).startswith(disk)
    hostile_util.add_users(inst)
    inst.disk = disk
    inst.filler = os.path.join(disk, "filler")
    os.mkdir(inst.filler)
    return inst


@pytest.fixture
def srv(inst):
    """`petrel serve` (MX, submission, IMAP, POP3) on inst; at teardown it must
    exit 0 with no dead worker or sanitizer report (before the unmount)."""
    s = hostile_util.start_all(inst, SERVE_OPTS)
    fault_util.note_workers(s)
    yield s
    problems = hostile_util.check_stopped([s])
    if problems:
        pytest.fail("\n\n".join(problems))


# --------------------------------------------------------------------------
# helpers


def fill_disk(inst, leave=0):
    """Fill the tmpfs with filler files, leaving about `leave` bytes free."""
    limit = max(0, fault_util.free_bytes(inst.disk) - leave)
    paths = fault_util.fill(inst.filler, prefix="f%d" % time.monotonic_ns(), limit=limit)
    if leave == 0:
        assert fault_util.free_bytes(inst.disk) == 0, fault_util.free_bytes(inst.disk)
    return paths


def free_disk(inst):
    for n in os.listdir(inst.filler):
        os.unlink(os.path.join(inst.filler, n))


def transaction(c, sender, rcpts, data):
    """MAIL, RCPT..., DATA and the message (LF bytes, sent as CRLF) on an SMTP
    client after EHLO. Returns [(step, Reply)], ending at the first refusal
    (or with the reply to the end of DATA)."""
    out = []
    r = c.cmd("MAIL FROM:<%s>" % sender)
    out.append(("MAIL", r))
    if r.code != 250:
        return out
    accepted = 0
    for a in rcpts:
        r = c.cmd("RCPT TO:<%s>" % a)
        out.append(("RCPT", r))
        accepted += r.code == 250
    if not accepted:
        c.cmd("RSET")
        return out
    r = c.cmd("DATA")
    out.append(("DATA", r))
    if r.code != 354:
        return out
    c.send(crlf(data) + b".\r\n")
    out.append(("DATA-END", c.reply()))
    return out


def mx_send(srv, rcpts, data, sender="sender@remote.test"):
    """One message over the MX port in a new session; [(step, Reply)]."""
    with srv.client(timeout=60) as c:
        c.expect("EHLO client.test", 250)
        out = transaction(c, sender, rcpts, data)
        c.cmd("QUIT")
    return out


def sub_send(srv, rcpts, data, user=ALICE):
    """One message over the submission port (STARTTLS, AUTH); [(step, Reply)]."""
    with srv.sub(timeout=60) as c:
        c.login(user, PASSWORD)
        out = transaction(c, user, rcpts, data)
        c.cmd("QUIT")
    return out


def final(replies):
    """The last reply of a transaction (the one that decides)."""
    return replies[-1][1]


def no_5xx(replies, what):
    bad = [(s, r) for s, r in replies if r.code >= 500]
    assert not bad, "%s: a permanent error for a temporary condition: %r" % (what, bad)


def refused_temporarily(replies, what):
    """The transaction was refused with a 4xx (at RCPT or at the end of DATA),
    not with a 5xx and not accepted."""
    no_5xx(replies, what)
    step, r = replies[-1]
    assert 400 <= r.code < 500 and step in ("RCPT", "DATA-END", "DATA", "MAIL"), (
        "%s on a full disk: expected a 4xx, got %s %r (all replies %r)" % (what, step, r, replies))


def accepted(replies, what):
    step, r = replies[-1]
    assert step == "DATA-END" and r.code == 250, "%s: expected 250, got %r" % (what, replies)


def nothing_partial(inst):
    """Every message file in new/ and cur/ of every maildir is complete, tmp/
    dirs are empty, and the queue's incoming/ holds only complete messages and
    its tmp/ nothing. Returns {msg_id: [paths]} of the maildirs."""
    found, problems = scan_messages(inst.mail_root)
    tmp = fault_util.maildir_files(inst.mail_root)["tmp"]
    problems += ["left in a maildir's tmp/: %s (%d bytes)" % (p, os.path.getsize(p))
                 for p in tmp]
    q = queue_dir(inst)
    for sub in ("incoming", "tmp"):
        d = os.path.join(q, sub)
        for n in os.listdir(d):
            p = os.path.join(d, n)
            if sub == "tmp":
                problems.append("left in the queue's tmp/: %s (%d bytes)" % (p, os.path.getsize(p)))
                continue
            _, problem = check_stored(p)
            if problem:
                problems.append("queue: " + problem)
    assert not problems, "partial or stray files:\n" + "\n".join(problems)
    return found


def in_maildirs(inst, paths):
    """The sorted addresses (of alice, bob) whose INBOX holds the paths."""
    owners = {maildir_of(inst, a): a for a in (ALICE, BOB)}
    return sorted(owners[os.path.dirname(os.path.dirname(p))] for p in paths)


def imap_code(r):
    """The response code's atom of a tagged IMAP result ('OVERQUOTA'...) or None."""
    code = r.code()
    return code.split()[0].upper() if code else None


def assert_imap_temp_no(r, what):
    """A tagged NO with a response code saying why; never OK, BAD or BYE."""
    assert r.status == "NO", "%s on a full disk: expected NO, got %r" % (what, r)
    assert imap_code(r) in TEMP_IMAP_CODES, (
        "%s on a full disk: NO without a fitting response code: %r" % (what, r))
    assert not r.find(r"^\* BYE"), "%s: BYE on a full disk: %r" % (what, r)


# --------------------------------------------------------------------------
# SMTP


def test_smtp_fill_until_refused(srv, inst):
    """500 KiB messages over SMTP until refused: 250 only while they fit, then
    4xx (never 5xx); a small message and a spooled (> 1 MiB) one are refused
    with 4xx too; nothing partial is visible; after the filler goes, the
    refused messages are accepted and each arrives exactly once."""
    fill_disk(inst, leave=2 * 1024 * 1024)        # about 4 messages' room left
    acked, refused = [], []
    log = []
    for n in range(MAX_FILL_MESSAGES):
        msg_id = "fill-%02d" % n
        replies = mx_send(srv, [BOB], message(msg_id, BIG))
        log.append((msg_id, replies))
        no_5xx(replies, msg_id)
        if final(replies).code == 250:
            assert not refused, "%s accepted after an earlier refusal: %r" % (msg_id, log)
            acked.append(msg_id)
        else:
            refused_temporarily(replies, msg_id)
            refused.append(msg_id)
            if len(refused) == 2:              # it stays refused
                break
    assert len(refused) == 2, "the disk never filled up: %r" % log
    assert acked, "nothing fitted on the disk: %r" % log
    found = nothing_partial(inst)
    assert sorted(found) == sorted(acked), (found, acked)
    assert all(len(p) == 1 for p in found.values()), found

    # now really full: the last bytes taken by filler
    fill_disk(inst)
    small = mx_send(srv, [BOB, ALICE], message("small-1", SMALL))
    refused_temporarily(small, "a small message")
    found = nothing_partial(inst)
    assert sorted(found) == sorted(acked), "refused mail is visible: %r" % found
    still_up(srv)
    with srv.client() as c:               # the MX still talks
        c.expect("EHLO client.test", 250)
        c.expect("QUIT", 221)

    # recovery, without a restart
    free_disk(inst)
    for msg_id in refused:
        accepted(mx_send(srv, [BOB], message(msg_id, BIG)), "resending " + msg_id)
    accepted(mx_send(srv, [BOB, ALICE], message("small-1", SMALL)), "resending small-1")
    found = nothing_partial(inst)
    want = acked + refused + ["small-1"]
    assert sorted(found) == sorted(want), (sorted(found), sorted(want))
    counts = {k: len(v) for k, v in found.items()}
    assert all(n == 1 for k, n in counts.items() if k != "small-1"), counts
    assert in_maildirs(inst, found["small-1"]) == [ALICE, BOB], found["small-1"]
    still_up(srv)


@pytest.mark.parametrize("port", ["mx", "submission"])
def test_spooled_message_on_full_disk(srv, inst, port):
    """A message of more than 1 MiB is spooled to the queue's tmp/ while it
    comes in; on a full disk that spooling fails, and the message must be
    refused with a 4xx like any other (not as "too big" with a 5xx: it is not,
    and the client would bounce it). After the filler goes it is accepted."""
    if port == "submission":
        mx_util.add_relay_domain(inst, RELAY_DOMAIN, 9)   # stays queued (closed port)

    def send(data):
        if port == "mx":
            return mx_send(srv, [BOB, ALICE], data)
        return sub_send(srv, ["x@" + RELAY_DOMAIN], data)

    fill_disk(inst)
    replies = send(message("spilled-1", SPILLED, sender=ALICE))
    print("%s, %d bytes, full disk: %r" % (port, SPILLED, replies))
    refused_temporarily(replies, "a 1.5 MiB message (spooled to the queue's tmp/) on " + port)
    assert nothing_partial(inst) == {}
    still_up(srv)
    free_disk(inst)
    accepted(send(message("spilled-1", SPILLED, sender=ALICE)), "after freeing")
    found = nothing_partial(inst)
    if port == "mx":
        assert in_maildirs(inst, found["spilled-1"]) == [ALICE, BOB], found
    else:
        assert found == {} and len(mx_util.queue_ids(inst)) == 1, (found, mx_util.queue_ids(inst))
    still_up(srv)


# --------------------------------------------------------------------------
# IMAP


def uid_map(c):
    """{X-Fault-Id: uid} of the selected mailbox."""
    r = c.ok("UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (X-Fault-Id)])")
    out = {}
    for items in r.fetches().values():
        hdr = [v for k, v in items.items() if str(k).startswith("BODY[")][0]
        m = re.search(rb"X-Fault-Id: (\S+)", hdr)
        out[m.group(1).decode()] = int(items["UID"])
    return out


def uidvalidity(r):
    m = re.search(r"UIDVALIDITY (\d+)", " ".join(u.decode() for u in r.untagged))
    return int(m.group(1))


def test_imap_on_full_disk(srv, inst):
    """APPEND (small, large, to a folder) gets NO with a response code; COPY,
    STORE, SELECT, FETCH keep working or answer NO, never BAD/BYE; nothing
    partial; after the filler goes APPEND works, and the UIDs and UIDVALIDITY
    of the mailbox are what they were."""
    for n in range(3):
        accepted(mx_send(srv, [ALICE], message("a-%d" % n, SMALL)), "a-%d" % n)
    c = srv.imap(timeout=60)
    try:
        c.login(ALICE, PASSWORD)
        c.ok('CREATE "Keep"')
        r = c.select("INBOX")
        validity = uidvalidity(r)
        uids = uid_map(c)
        assert sorted(uids) == ["a-0", "a-1", "a-2"], uids

        fill_disk(inst)
        seen = {}
        for what, box, data in (("APPEND small", "INBOX", message("ap-1", SMALL)),
                                ("APPEND 500 KiB", "INBOX", message("ap-2", BIG)),
                                ("APPEND to a folder", "Keep", message("ap-3", SMALL))):
            r = c.append(box, crlf(data))
            seen[what] = r.line.decode()
            assert_imap_temp_no(r, what)
        # COPY: hard links, which need no data blocks: OK, or NO with a code
        r = c.command("COPY 1:3 \"Keep\"")
        seen["COPY"] = r.line.decode()
        assert r.status in ("OK", "NO"), r
        if r.status == "NO":
            assert_imap_temp_no(r, "COPY")
        copied = r.status == "OK"
        # STORE: a rename
        r = c.command("STORE 1 +FLAGS (\\Flagged)")
        seen["STORE"] = r.line.decode()
        assert r.status in ("OK", "NO"), r
        if r.status == "NO":
            assert_imap_temp_no(r, "STORE")
        stored = r.status == "OK"
        # reading what is there
        r = c.command("FETCH 1:3 (FLAGS BODY.PEEK[])")
        seen["FETCH"] = r.line.decode()
        assert r.status == "OK", r
        for n, items in r.fetches().items():
            body = items["BODY[]"]
            _, problem = check_stored("FETCH %d" % n, body.replace(b"\r\n", b"\n"))
            assert problem is None, problem
        if stored:
            assert "\\Flagged" in r.fetches()[1]["FLAGS"], r
        # a second session on the full disk: LOGIN, SELECT
        with srv.imap(timeout=60) as c2:
            r = c2.command('LOGIN "%s" "%s"' % (ALICE, PASSWORD))
            seen["LOGIN (2nd session)"] = r.line.decode()
            assert r.status == "OK", r
            r = c2.command("SELECT INBOX")
            seen["SELECT (2nd session)"] = r.line.decode()
            assert r.status in ("OK", "NO"), r
            if r.status == "NO":
                assert_imap_temp_no(r, "SELECT")
            c2.logout()
        print("IMAP replies on the full disk:\n  " +
              "\n  ".join("%s: %s" % kv for kv in seen.items()))

        found = nothing_partial(inst)
        assert not [k for k in found if k.startswith("ap-")], found
        kept = [p for ps in found.values() for p in ps if "/.Keep/" in p]
        assert len(kept) == (3 if copied else 0), (copied, kept)
        still_up(srv)

        # recovery, without a restart
        free_disk(inst)
        got = {}
        for box, msg_id, size in (("INBOX", "ap-1", SMALL), ("INBOX", "ap-2", BIG),
                                  ("Keep", "ap-3", SMALL)):
            r = c.append(box, crlf(message(msg_id, size)))
            assert r.status == "OK" and imap_code(r) == "APPENDUID", (msg_id, r)
            got[msg_id] = int(r.code().split()[2])
        if not copied:
            c.ok("COPY 1:3 \"Keep\"")
        c.ok("STORE 2 +FLAGS (\\Seen)")
        c.ok("UNSELECT")
        r = c.select("INBOX")
        assert uidvalidity(r) == validity, "UIDVALIDITY changed: %r" % r
        now = uid_map(c)
        for k, v in uids.items():
            assert now[k] == v, "UID of %s changed: %d -> %d" % (k, v, now[k])
        assert now["ap-1"] == got["ap-1"] and now["ap-2"] == got["ap-2"], (now, got)
        assert min(got["ap-1"], got["ap-2"]) > max(uids.values()), (uids, got)
        if stored:      # the flag set on the full disk stayed
            r = c.fetch("1", "FLAGS")
            assert "\\Flagged" in r.fetches()[1]["FLAGS"], r
        c.logout()
    finally:
        c.close()
    found = nothing_partial(inst)
    inbox = sorted(k for k, ps in found.items() for p in ps if "/.Keep/" not in p)
    assert inbox == ["a-0", "a-1", "a-2", "ap-1", "ap-2"], inbox
    still_up(srv)


def test_imap_copy_on_full_disk(srv, inst):
    """COPY into a folder that was opened before the disk filled up (so its
    index exists): the hard links need no data blocks. Either OK with COPYUID
    and every copy complete, or NO and the folder as it was (RFC 3501 6.4.7:
    "If the COPY command is unsuccessful for any reason, server
    implementations MUST restore the destination mailbox to its state before
    the COPY attempt"), so that the client's retry after space is freed does
    not make duplicates."""
    for n in range(3):
        accepted(mx_send(srv, [ALICE], message("a-%d" % n, SMALL)), "a-%d" % n)
    keep = os.path.join(maildir_of(inst, ALICE), ".Keep")
    with srv.imap(timeout=60) as c:
        c.login(ALICE, PASSWORD)
        c.ok('CREATE "Keep"')
        c.select("Keep")
        c.select("INBOX")
        fill_disk(inst)
        r = c.command('COPY 1:3 "Keep"')
        print("COPY on the full disk: %r" % r.line)
        assert r.status in ("OK", "NO"), r
        copies = sorted(k for k, ps in nothing_partial(inst).items() for p in ps
                        if p.startswith(keep + "/"))
        if r.status == "OK":
            assert imap_code(r) == "COPYUID", r
            assert copies == ["a-0", "a-1", "a-2"], copies
        else:
            assert_imap_temp_no(r, "COPY")
            assert copies == [], (
                "COPY answered %r but left %d message(s) in the target folder: the "
                "client will copy them again" % (r.line, len(copies)))
        still_up(srv)
        free_disk(inst)
        if r.status == "NO":       # what a client does: try again
            r = c.ok('COPY 1:3 "Keep"')
            assert imap_code(r) == "COPYUID", r
        r = c.ok('STATUS "Keep" (MESSAGES)')
        assert r.find(r"MESSAGES 3\)"), r
        c.logout()
    copies = sorted(k for k, ps in nothing_partial(inst).items() for p in ps
                    if p.startswith(keep + "/"))
    assert copies == ["a-0", "a-1", "a-2"], copies
    still_up(srv)


def test_imap_open_and_expunge_on_full_disk(srv, inst):
    """Mail that arrived after the folder index was last written, then the
    disk fills up: a new IMAP session must still open INBOX (SELECT and
    EXAMINE) and STORE \\Deleted + EXPUNGE to make room (as POP3 DELE can):
    failing to rewrite the index must not lock the user out of the mail. The
    new message gets its UID, and is shown, once the index can be written."""
    for n, size in enumerate((BIG, BIG, SMALL)):
        accepted(mx_send(srv, [ALICE], message("a-%d" % n, size)), "a-%d" % n)
    with srv.imap(timeout=60) as c:
        c.login(ALICE, PASSWORD)
        r = c.select("INBOX")
        validity = uidvalidity(r)
        uids = uid_map(c)
        c.logout()
    accepted(mx_send(srv, [ALICE], message("a-3", SMALL)), "a-3")
    fill_disk(inst)
    with srv.imap(timeout=60) as c:
        c.login(ALICE, PASSWORD)
        r = c.command("EXAMINE INBOX")
        print("EXAMINE INBOX on the full disk: %r" % r.line)
        assert r.status == "OK", "EXAMINE INBOX on a full disk: %r\nlog errors:\n%s" % (
            r, "".join(l for l in srv.log_lines() if " error: " in l))
        r = c.command("SELECT INBOX")
        print("SELECT INBOX on the full disk: %r" % r.line)
        assert r.status == "OK", "SELECT INBOX on a full disk: %r" % r
        assert uidvalidity(r) == validity, r
        # a-3 is shown only if its UID could be recorded: a record appended
        # to the index's change log often fits in the file's last block even
        # on a full disk; else it waits, unseen (a UID handed out but not
        # written could be given to another message by the next process).
        # The others are usable either way.
        exists = r.numbered("EXISTS")
        assert exists in ([3], [4]), r
        m = uid_map(c)
        if exists == [4]:
            assert m.pop("a-3") > max(uids.values()), m
        assert m == uids
        c.ok("STORE 1:2 +FLAGS.SILENT (\\Deleted)")
        r = c.ok("EXPUNGE")
        assert sorted(r.numbered("EXPUNGE")) in ([1, 1], [1, 2]), r
        # the room the EXPUNGE made lets the index be written: a-3 appears
        c.ok("NOOP")
        now = uid_map(c)
        assert sorted(now) == ["a-2", "a-3"], now
        assert now["a-2"] == uids["a-2"] and now["a-3"] > max(uids.values()), now
        r = c.fetch("2", "BODY.PEEK[]")
        _, problem = check_stored("FETCH 2", r.fetches()[2]["BODY[]"].replace(b"\r\n", b"\n"))
        assert problem is None, problem
        c.logout()
    found = nothing_partial(inst)
    assert sorted(found) == ["a-2", "a-3"], found
    still_up(srv)
    # the room made by EXPUNGE (two 500 KiB messages) is usable at once
    accepted(mx_send(srv, [ALICE], message("a-4", SMALL)), "a-4 after the EXPUNGE")
    free_disk(inst)
    with srv.imap(timeout=60) as c:
        c.login(ALICE, PASSWORD)
        r = c.select("INBOX")
        assert uidvalidity(r) == validity, r
        now = uid_map(c)
        assert sorted(now) == ["a-2", "a-3", "a-4"] and now["a-2"] == uids["a-2"], now
        c.logout()
    still_up(srv)


# --------------------------------------------------------------------------
# POP3


def test_pop3_on_full_disk(srv, inst):
    """On a full disk: login, RETR of a whole message, DELE + QUIT (unlink and
    rename need no space) all work; the deleted message is gone, the others
    complete; delivery works again once the filler goes."""
    for n in range(3):
        accepted(mx_send(srv, [BOB], message("b-%d" % n, SMALL)), "b-%d" % n)
    fill_disk(inst)
    c = hostile_util.pop3_login(srv, BOB)
    try:
        r = c.ok("STAT")
        assert r.split()[1] == "3", r
        r, lines = c.ok_multi("RETR 1")
        data = b"\n".join(l[1:] if l.startswith(b"..") else l for l in lines) + b"\n"
        first, problem = check_stored("RETR 1", data)
        assert problem is None, problem
        r, lines = c.ok_multi("TOP 2 0")
        second = re.search(rb"X-Fault-Id: (\S+)", b"\n".join(lines)).group(1).decode()
        dele = c.cmd("DELE 2")
        quit_reply = c.cmd("QUIT")
    finally:
        c.close()
    print("POP3 on the full disk: DELE 2 -> %r, QUIT -> %r" % (dele, quit_reply))
    assert dele.startswith("+OK"), dele
    assert quit_reply.startswith("+OK"), quit_reply
    found = nothing_partial(inst)
    assert sorted(found) == sorted({"b-0", "b-1", "b-2"} - {second}), (found, second)
    assert first in found
    still_up(srv)
    c = hostile_util.pop3_login(srv, BOB)
    try:
        assert c.ok("STAT").split()[1] == "2"
        c.quit()
    finally:
        c.close()
    free_disk(inst)
    accepted(mx_send(srv, [BOB], message("b-3", BIG)), "after freeing")
    assert sorted(nothing_partial(inst)) == sorted({"b-0", "b-1", "b-2", "b-3"} - {second})
    still_up(srv)


# --------------------------------------------------------------------------
# submission to a relay domain: the queue on the full disk


def test_relay_queue_on_full_disk(srv, inst, fake_mx):
    """Submission for a relay domain while the queue's disk is full: 4xx,
    nothing half-written in the queue. A message deferred before the disk
    filled goes out once the remote accepts (the disk still full). After the
    filler goes, the refused messages are submitted again and relayed; no
    bounce anywhere."""
    state = {"defer": False}
    mx = fake_mx(eod=lambda t: "451 4.3.0 fake MX busy" if state["defer"] else None)
    mx_util.add_relay_domain(inst, RELAY_DOMAIN, mx.port)
    to = "x@" + RELAY_DOMAIN

    accepted(sub_send(srv, [to], message("r-0", SMALL, sender=ALICE, to=to)), "r-0")
    assert len(mx.wait_messages(1)) == 1, mx
    assert mx_util.wait_queue_empty(inst), mx_util.queue_json(inst)

    # r-1 is queued and deferred (the fake MX says 451), then the disk fills
    state["defer"] = True
    accepted(sub_send(srv, [to], message("r-1", SMALL, sender=ALICE, to=to)), "r-1")
    assert len(mx.wait_transactions(2)) >= 2, mx
    fill_disk(inst)
    for msg_id, size in (("r-2", SMALL), ("r-3", BIG)):
        replies = sub_send(srv, [to], message(msg_id, size, sender=ALICE, to=to))
        print("submission of %s on the full disk: %r" % (msg_id, replies))
        refused_temporarily(replies, "submission of %s" % msg_id)
    nothing_partial(inst)
    ids = mx_util.queue_ids(inst)
    assert len(ids) == 1, "only r-1 may be queued: %r" % ids
    _, problem = check_stored(os.path.join(queue_dir(inst), "incoming", ids[0]))
    assert problem is None, problem
    # a few failed attempts (state file writes on the full disk), then the
    # remote accepts: r-1 leaves the queue although the disk is still full
    time.sleep(3)
    state["defer"] = False
    assert mx_util.wait_queue_empty(inst, timeout=30), (mx_util.queue_json(inst), srv.log())
    still_up(srv)

    # recovery, without a restart
    free_disk(inst)
    for msg_id, size in (("r-2", SMALL), ("r-3", BIG)):
        accepted(sub_send(srv, [to], message(msg_id, size, sender=ALICE, to=to)),
                 "resubmitting " + msg_id)
    assert mx_util.wait_queue_empty(inst, timeout=30), mx_util.queue_json(inst)
    got = {}
    for t in mx.messages():
        msg_id, problem = check_stored("fake MX", t.data.replace(b"\r\n", b"\n"))
        assert problem is None, problem
        got[msg_id] = got.get(msg_id, 0) + 1
    assert got == {"r-0": 1, "r-1": 1, "r-2": 1, "r-3": 1}, got
    # no bounce: nothing in any maildir (alice is the sender), none queued, none logged
    found = nothing_partial(inst)
    assert found == {}, "a bounce or stray message: %r" % found
    assert not fault_util.maildir_files(inst.mail_root)["new"], "a bounce arrived"
    assert not re.search(r"status=(bounced|expired)", srv.log()), srv.log()
    still_up(srv)


@pytest.mark.parametrize("remote", ["defers", "rejects"])
def test_queue_backoff_on_full_disk(srv, inst, fake_mx, remote):
    """A queued message whose remote answers 451 (defers) or 550 (rejects,
    so a bounce must be written into the sender's maildir) while the disk is
    full: the queue manager cannot write the message's state file (nor the
    bounce), yet it must keep its back-off (queue_retry_min = 1 s here) and
    not send the same message to the remote again and again. Once the disk
    has room: delivered once (defers) or exactly one bounce (rejects), the
    queue empty."""
    mode = {"eod": "451 4.3.0 fake MX busy"}
    mx = fake_mx(eod=lambda t: mode["eod"])
    mx_util.add_relay_domain(inst, RELAY_DOMAIN, mx.port)
    to = "x@" + RELAY_DOMAIN
    accepted(sub_send(srv, [to], message("q-1", SMALL, sender=ALICE, to=to)), "q-1")
    assert mx.wait_transactions(1), mx
    fill_disk(inst)
    if remote == "rejects":
        mode["eod"] = "550 5.7.1 fake MX rejects"
    n0 = len(mx.transactions)
    time.sleep(QUEUE_WINDOW)
    attempts = len(mx.transactions) - n0
    print("remote %s, full disk: %d attempts in %.0f s" % (remote, attempts, QUEUE_WINDOW))
    errors = [l for l in srv.log_lines() if "q-1" in l or " error: " in l]
    assert attempts <= QUEUE_WINDOW + 2, (
        "%d delivery attempts of one message in %.0f s with queue_retry_min=1: the "
        "back-off is lost when the state file cannot be written\nlog errors (last 6):\n%s"
        % (attempts, QUEUE_WINDOW, "".join(errors[-6:])))
    nothing_partial(inst)
    still_up(srv)

    if remote == "defers":
        mode["eod"] = None                 # the remote accepts now
    free_disk(inst)
    assert mx_util.wait_queue_empty(inst, timeout=30), mx_util.queue_json(inst)
    still_up(srv)
    box = fault_util.maildir_files(maildir_of(inst, ALICE))
    if remote == "defers":
        assert len(mx.messages()) == 1, mx
        assert box["new"] == [] and box["cur"] == [], "a bounce: %r" % box
        return
    assert mx.messages() == [], mx
    assert len(box["new"]) == 1 and box["cur"] == [] and box["tmp"] == [], (
        "exactly one bounce expected: %r" % box)
    with open(box["new"][0], "rb") as f:
        dsn = mx_util.parse_stored(f.read())
    per_msg, per_rcpt, headers = mx_util.dsn_parts(dsn)
    assert [r.get("action") for r in per_rcpt] == ["failed"], per_rcpt
    assert "X-Fault-Id: q-1" in headers, headers
