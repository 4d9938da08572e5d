"""Durability by syscall order: `petrel serve` runs under strace, and for
every acknowledgement a client gets (SMTP "250" after DATA, IMAP's tagged OK
of APPEND, COPY and MOVE) the trace must show, before the reply was written:
every file linked or renamed into a directory during the command had its
data synced (fsync, fdatasync or sync_file_range with WAIT_AFTER) before the
link, and every such directory was fsync'd after the link. A crash (or a
power loss, which kill -9 cannot show) after the reply then finds the mail.

Commands run one at a time on one connection, so the syscalls between the
reply to the previous command and this reply are this command's work.
"""

import os
import re
import shutil
import signal
import subprocess

import pytest

from harness import server
from harness.instance import PASSWORD
from imap_util import ImapServer, crlf, message
from smtp_util import DEFAULTS, SmtpServer

ALICE = "alice@example.test"
BOB = "bob@example.test"
STRACE = shutil.which("strace")

CALLS = ("openat,fsync,fdatasync,sync_file_range,link,linkat,rename,renameat,"
         "renameat2,write,writev,sendmsg,sendto")

# "PID HH:MM:SS.uuuuuu rest"
LINE = re.compile(r"^(\d+)\s+\S+\s+(.*)$")
UNFINISHED = re.compile(r"^(.*) <unfinished \.\.\.>$")
RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>(.*)$")
FD = r"(-?\d+)<([^>]*)>"


class Event:
    def __init__(self, start, end, name, args, ok):
        self.start, self.end, self.name, self.args, self.ok = start, end, name, args, ok

    def __repr__(self):
        return "%d-%d %s(%s)" % (self.start, self.end, self.name, self.args[:120])


def parse_trace(path):
    """Completed syscalls in order, with the line of their start and end (a
    call interrupted by another thread's line ends at its "resumed" line)."""
    events, pending = [], {}
    with open(path, errors="replace") as f:
        for i, raw in enumerate(f):
            m = LINE.match(raw.rstrip("\n"))
            if not m:
                continue
            pid, rest = m.group(1), m.group(2)
            u = UNFINISHED.match(rest)
            if u:
                pending[pid] = (i, u.group(1))
                continue
            r = RESUMED.match(rest)
            if r:
                if pid not in pending:
                    continue
                start, head = pending.pop(pid)
                rest = head + r.group(2)
            else:
                start = i
            c = re.match(r"^(\w+)\((.*)\)\s+=\s+(-?\d+|\?)", rest)
            if not c:
                continue
            events.append(Event(start, i, c.group(1), c.group(2),
                                c.group(3) not in ("?",) and not c.group(3).startswith("-")))
    return events


def fd_path(args):
    m = re.match(FD, args)
    return m.group(2) if m else None


def link_target(e):
    """The absolute destination of a successful link/rename, or None."""
    a = e.args
    if e.name in ("link", "rename"):
        m = re.match(r'^"([^"]*)", "([^"]*)"', a)
        return m.group(2) if m else None
    if e.name in ("linkat", "renameat", "renameat2"):
        m = re.match(r'^(?:AT_FDCWD|' + FD + r')(?:<[^>]*>)?, "([^"]*)", (?:AT_FDCWD|' + FD
                     + r')(?:<[^>]*>)?, "([^"]*)"', a)
        if not m:
            return None
        dirpath, name = m.group(5), m.group(6)
        return name if name.startswith("/") or dirpath is None else dirpath + "/" + name
    return None


def link_source(e):
    a = e.args
    if e.name in ("link", "rename"):
        m = re.match(r'^"([^"]*)"', a)
        return m.group(1) if m else None
    m = re.match(r'^(?:AT_FDCWD|' + FD + r')(?:<[^>]*>)?, "([^"]*)"', a)
    if not m:
        return None
    dirpath, name = m.group(2), m.group(3)
    return name if name.startswith("/") or dirpath is None else dirpath + "/" + name


def is_data_sync(e):
    if not e.ok:
        return False
    if e.name in ("fsync", "fdatasync"):
        return True
    return e.name == "sync_file_range" and "WAIT_AFTER" in e.args


def replies(events, pattern):
    """Writes to a TCP socket whose data matches pattern (a bytes-ish regex
    over strace's escaped string)."""
    rx = re.compile(pattern)
    out = []
    for e in events:
        if e.name in ("write", "writev", "sendmsg", "sendto") and "TCP" in e.args[:200] \
                and rx.search(e.args):
            out.append(e)
    return out


def synced_links(events):
    """For each successful link or rename: was its file's data synced before
    it started? A sync counts for every later name of the same file: a
    hard link (COPY, MOVE, delivery to several mailboxes) or a rename (a
    flag change) carries it along."""
    synced, out = set(), {}
    for e in sorted(events, key=lambda e: (e.end, e.start)):
        if is_data_sync(e) and fd_path(e.args):
            synced.add(fd_path(e.args))
        dest = link_target(e) if e.ok else None
        if dest is not None:
            src = link_source(e)
            out[id(e)] = src in synced or dest in synced
            if out[id(e)]:
                synced.add(dest)
    return out


def check_window(events, lo, ack, under, synced=None, leaf_dirs=("new", "cur")):
    """The problems of the work done in events after line lo and before the
    reply `ack`, for files linked into a directory named in leaf_dirs (any,
    if None) under `under`."""
    if synced is None:
        synced = synced_links(events)
    problems = []
    window = [e for e in events if e.end > lo and e.start < ack.start]
    # Message files land in a Maildir's new/ or cur/; the small state files
    # beside them (petrel-recent, subscriptions) are rewritten by rename and
    # may be lost without losing mail, so they are not held to this order.
    links = [e for e in window if e.ok and link_target(e) is not None
             and link_target(e).startswith(under + "/")
             and (leaf_dirs is None
                  or os.path.basename(os.path.dirname(link_target(e))) in leaf_dirs)]
    if not links:
        problems.append("no file was linked before reply %r" % ack)
    for ln in links:
        dest, src = link_target(ln), link_source(ln)
        d = os.path.dirname(dest)
        if not synced.get(id(ln)):
            problems.append("no data sync of %s before its link %r" % (src, ln))
        dsync = [e for e in window if e.ok and e.name == "fsync" and e.start > ln.end
                 and e.end < ack.start and fd_path(e.args) == d]
        if not dsync:
            problems.append("no fsync of %s between the link %r and the reply %r"
                            % (d, ln, ack))
    return problems


class Traced(server.Server):
    """petrel serve under strace -f; the trace in <instance>/trace.txt."""

    @classmethod
    def launch(cls, inst, args, ports, host="127.0.0.1"):
        trace = os.path.join(inst.dir, "trace.txt")
        wrapped = [STRACE, "-f", "-qq", "-yy", "-tt", "-s", "48", "-e", "trace=" + CALLS,
                   "-o", trace] + list(args)
        proc = subprocess.Popen(wrapped, cwd=inst.dir, env=dict(os.environ),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True)
        srv = cls(inst, proc, wrapped, ports, host)
        srv.trace = trace
        return srv

    def stop(self, sig=signal.SIGTERM, timeout=60):
        """Signal petrel (strace's child), then strace ends with it."""
        if self.proc.poll() is None:
            with open("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)) as f:
                for pid in f.read().split():
                    os.kill(int(pid), sig)
        return super().stop(sig=0, timeout=timeout)


class TracedSmtp(Traced, SmtpServer):
    pass


class TracedImap(Traced, ImapServer):
    pass


@pytest.fixture
def traced_instance(sqlite_instance):
    if STRACE is None:
        pytest.fail("strace is not installed (scripts/install-deps.sh --test)")
    for a in (ALICE, BOB):
        sqlite_instance.add_user(a, PASSWORD)
    sqlite_instance.run("alias", "add", "fwd@example.test", "someone@remote.test")
    return sqlite_instance


def stop(srv):
    srv.stop()
    return parse_trace(srv.trace)


def test_smtp_250_after_file_and_directory_sync(traced_instance):
    """Local delivery to one and to two mailboxes, and a remote recipient
    (the queue file): each 250 comes after every copy's data sync and its
    directory's fsync."""
    inst = traced_instance
    srv = server.start(inst, ("smtp",), DEFAULTS + ("workers=1",), cls=TracedSmtp,
                       timeout=60)
    cases = [[ALICE], [ALICE, BOB], ["fwd@example.test"]]
    with srv.client() as c:
        c.expect("EHLO client.test", 250)
        for i, rcpts in enumerate(cases):
            c.expect("MAIL FROM:<sender@example.org>", 250)
            for r in rcpts:
                c.expect("RCPT TO:<%s>" % r, 250)
            c.expect("DATA", 354)
            c.send(b"Subject: durable %d\r\n\r\nbody\r\n.\r\n" % i)
            assert c.reply().code == 250
        c.expect("QUIT", 221)
    events = stop(srv)
    queue_dir = os.path.realpath(os.path.join(inst.dir, inst.config()["queue_dir"]))
    acks = replies(events, r'"250 2\.0\.0 Ok: queued')
    starts = replies(events, r'"354 ')
    assert len(acks) == 3 and len(starts) == 3, (acks, starts)
    problems = []
    for st, ack, rcpts in zip(starts, acks, cases):
        # the message's queue file (the queue manager's retry state, which
        # may be written meanwhile, is not what the 250 promises)
        under = os.path.join(queue_dir, "incoming") if "fwd@example.test" in rcpts \
            else os.path.realpath(inst.mail_root)
        problems += check_window(events, st.end, ack, under,
                                 leaf_dirs=None if "fwd@example.test" in rcpts else ("new", "cur"))
        linked = {os.path.dirname(link_target(e)) for e in events
                  if st.end < e.end < ack.start and e.ok and link_target(e)
                  and link_target(e).startswith(under)}
        if "fwd@example.test" not in rcpts:
            assert len(linked) == len(rcpts), (linked, rcpts)
    assert not problems, "\n".join(problems)


def test_smtp_fanout_250_after_every_directory_sync(traced_instance):
    """One message to an alias of 40 users: the copies' directories are
    fsync'd together at the end of the message (from several threads once
    there are 16 or more), and the 250 still comes after every copy's data
    sync and after the fsync of each of the 40 new/ directories."""
    inst = traced_instance
    n = 40
    cols = "id, address, crypt, clear, name, uid, gid, home, domain, maildir, imapok, bool1, bool2"
    rows = ", ".join("(%s, %s, '', '', '', 1000, 1000, '', 'example.test', %s, 1, 1, 1)" % (
        inst.quote("f%d@example.test" % i), inst.quote("f%d@example.test" % i),
        inst.quote("example.test/f%d/" % i)) for i in range(n))
    inst.sql("INSERT INTO users (%s) VALUES %s" % (cols, rows))
    inst.run("alias", "add", "fans@example.test",
             ",".join("f%d@example.test" % i for i in range(n)))
    srv = server.start(inst, ("smtp",), DEFAULTS + ("workers=1",), cls=TracedSmtp,
                       timeout=60)
    with srv.client(timeout=60) as c:
        c.expect("EHLO client.test", 250)
        c.expect("MAIL FROM:<sender@example.org>", 250)
        c.expect("RCPT TO:<fans@example.test>", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: fan-out\r\n\r\nbody\r\n.\r\n")
        assert c.reply().code == 250
        c.expect("QUIT", 221)
    events = stop(srv)
    [ack] = replies(events, r'"250 2\.0\.0 Ok: queued')
    [st] = replies(events, r'"354 ')
    under = os.path.realpath(inst.mail_root)
    problems = check_window(events, st.end, ack, under)
    linked = {os.path.dirname(link_target(e)) for e in events
              if st.end < e.end < ack.start and e.ok and link_target(e)
              and link_target(e).startswith(under)}
    assert len(linked) == n, sorted(linked)
    assert not problems, "\n".join(problems)


def test_imap_append_copy_move_after_sync(traced_instance):
    """APPEND, COPY and MOVE: the tagged OK follows the data sync of each new
    file and the fsync of the folder directory it was linked into."""
    inst = traced_instance
    srv = server.start(inst, ("imap",), ("workers=1",), cls=TracedImap, timeout=60)
    data = crlf(message(1))
    with srv.session(ALICE, PASSWORD) as c:
        c.ok("CREATE Keep")
        c.ok("CREATE Other")
        c.ok("APPEND INBOX {%d+}\r\n" % len(data), data)
        c.select("INBOX")
        c.ok("COPY 1 Keep")
        c.ok("MOVE 1 Other")
        c.logout()
    events = stop(srv)
    problems = []
    # every write to the client, in order; an acknowledgement's window opens
    # at the write before it (the previous command's answer)
    ordered = sorted(replies(events, r"."), key=lambda e: e.start)
    for pattern in (r'"A\d+ OK \[APPENDUID', r'"A\d+ OK \[COPYUID', r'"\* OK \[COPYUID'):
        hits = [e for e in ordered if re.search(pattern, e.args)]
        assert len(hits) == 1, (pattern, ordered)
        ack = hits[0]
        before = [e for e in ordered if e.start < ack.start]
        problems += check_window(events, before[-1].end, ack,
                                 os.path.realpath(inst.mail_root))
    assert not problems, "\n".join(problems)
