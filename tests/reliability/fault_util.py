"""Helpers shared by the fault tests (test_outage.py, test_disk_full.py).

- PrivateMariaDB: a mariadbd of the test's own (not the session-wide one), so
  that a test may stop it, SIGKILL it and start it again on the same port.
- A thread-safe event record (Record) for load threads: every reply with the
  time it was asked and answered, so that the main thread can tell what
  happened while a fault was on.
- Test messages that carry their own identity and size (X-Fault-Id,
  X-Fault-Size) with a body that can be regenerated from them: a stored copy
  (maildir file, queue file, APPENDed message) is complete exactly when it ends
  with the regenerated message (check_stored).
- Maildir / queue scans, the master's worker PIDs, tmpfs mounting.
"""

import errno
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import mariadb_ctl
from conftest import MariaDB
from harness import procs
from harness.procs import gone as process_gone

# --------------------------------------------------------------------------
# a private MariaDB


class PrivateMariaDB(MariaDB):
    """conftest.MariaDB (same shape: .port, .sql(), .new_database(), ...) on a
    mariadbd in its own /tmp directory. stop() is an orderly SIGTERM shutdown,
    kill() a SIGKILL, pause()/resume() SIGSTOP/SIGCONT; start() reuses the
    port of the first start."""

    @classmethod
    def create(cls):
        base = tempfile.mkdtemp(prefix="petrel-mdbf-", dir="/tmp")  # short: socket path limit
        m = cls(base)
        try:
            mariadb_ctl.init(base)
            m.start()
            m.setup_users()
        except mariadb_ctl.MariaDBError:
            m.destroy()
            raise
        return m

    def pid(self):
        return mariadb_ctl.read_pid(self.dir)

    def kill(self, timeout=15):
        """SIGKILL mariadbd and wait (bounded) until it is gone."""
        pid = self.pid()
        assert pid is not None, "mariadbd in %s has no pid file" % self.dir
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while not process_gone(pid):
            assert time.monotonic() < deadline, "mariadbd %d survived SIGKILL" % pid
            time.sleep(0.02)

    def pause(self):
        """SIGSTOP mariadbd: a hung server (connections accepted by the
        kernel, never answered)."""
        os.kill(self.pid(), signal.SIGSTOP)

    def resume(self):
        """SIGCONT mariadbd (if it runs at all)."""
        pid = self.pid()
        if pid is not None and not process_gone(pid):
            os.kill(pid, signal.SIGCONT)

    def start(self):
        port = self.port
        MariaDB.start(self)
        assert port is None or self.port == port, (port, self.port)
        return self.port

    def destroy(self):
        try:
            mariadb_ctl.stop(self.dir)
        finally:
            if not os.environ.get("PETREL_KEEP_MARIADB"):
                shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------
# processes


def child_pids(pid):
    """PIDs whose parent is pid (the master's workers)."""
    return set(procs.children(pid))


def note_workers(srv):
    """Remember the master's children (workers, queue manager) for still_up()."""
    srv.workers = child_pids(srv.proc.pid)
    assert srv.workers, "petrel serve has no worker processes"


def still_up(srv):
    """Alive, every process noted by note_workers() still running (none died
    and was replaced), no dead worker or sanitizer report in the log."""
    assert srv.alive(), "petrel serve died\nlog:\n%s" % srv.log()
    crashes = sanitizer_lines(srv)
    assert not crashes, "worker died / sanitizer report:\n%s" % "".join(crashes)
    now = child_pids(srv.proc.pid)
    assert srv.workers <= now, (
        "petrel processes gone (died and replaced?): %r, now %r\nlog:\n%s"
        % (sorted(srv.workers - now), sorted(now), srv.log()[-3000:]))


def sanitizer_lines(srv):
    """Log lines of a sanitizer report or a dead worker (srv.crashes() plus
    LeakSanitizer / 'ERROR: ...Sanitizer' / 'SUMMARY: ...Sanitizer' lines)."""
    crashes = srv.crashes()
    extra = [l for l in srv.log_lines()
             if re.search(r"LeakSanitizer|ERROR: \w+Sanitizer|SUMMARY: \w+Sanitizer", l)]
    return crashes + [l for l in extra if l not in crashes]


# --------------------------------------------------------------------------
# recording what the load threads saw


class Event:
    __slots__ = ("sent", "got", "proto", "who", "step", "reply", "ok")

    def __init__(self, sent, got, proto, who, step, reply, ok):
        self.sent = sent        # when the command was sent (seconds since Record.t0)
        self.got = got          # when the reply (or the failure) came
        self.proto = proto      # "smtp", "imap", "pop3", "imap-session"
        self.who = who          # the thread's name
        self.step = step        # "RCPT", "DATA-END", "LOGIN", ...
        self.reply = reply      # the reply line(s), or "DROPPED: <error>"
        self.ok = ok            # True: success

    def __repr__(self):
        return "<%s %s %s +%.2f..%.2f %r>" % (self.proto, self.who, self.step,
                                              self.sent, self.got, self.reply)


class Record:
    """Thread-safe list of Events, and per client (thread name) the times of
    its complete successes (a message accepted, a login that could SELECT...)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.events = []
        self.successes = {}     # who -> [times]
        self.t0 = time.monotonic()

    def now(self):
        return time.monotonic() - self.t0

    def add(self, sent, proto, who, step, reply, ok):
        """A reply (or DROPPED) to a command sent at monotonic time `sent`."""
        ev = Event(sent - self.t0, self.now(), proto, who, step, reply, ok)
        with self.lock:
            self.events.append(ev)
        return ev

    def success(self, who):
        with self.lock:
            self.successes.setdefault(who, []).append(self.now())

    def select(self, proto=None, step=None, start=None, end=None):
        """Events of proto/step (a name or a tuple) whose command was sent at
        or after `start` and answered at or before `end` (times relative to t0)."""
        steps = step if isinstance(step, tuple) else (step,)
        with self.lock:
            evs = list(self.events)
        return [e for e in evs
                if (proto is None or e.proto == proto)
                and (step is None or e.step in steps)
                and (start is None or e.sent >= start)
                and (end is None or e.got <= end)]

    def first_success(self, who, since):
        """The time of who's first success after `since`, or None."""
        with self.lock:
            later = [t for t in self.successes.get(who, ()) if t > since]
        return later[0] if later else None

    def not_recovered(self, names, since):
        """The clients in names without a success after `since`."""
        return sorted(w for w in names if self.first_success(w, since) is None)

    def recovery_time(self, names, since):
        """Seconds from `since` until the last of names had its first success
        after it (None if one has not)."""
        firsts = [self.first_success(w, since) for w in names]
        if None in firsts:
            return None
        return max(firsts) - since


def summary(events, limit=12):
    """Distinct replies with their counts, for failure messages and reports
    (IMAP tags, queue ids, numbered recipients and POP3 counts folded)."""
    counts = {}
    for e in events:
        reply = re.sub(r"^[A-Z]\d{3} ", "TAG ", e.reply)          # IMAP tags
        reply = re.sub(r"queued as [0-9A-F]+", "queued as ID", reply)
        reply = re.sub(r"<([a-z]+)\d+@", r"<\1N@", reply)
        reply = re.sub(r"\d+", "N", reply) if e.proto == "pop3" else reply
        key = (e.proto, e.step, reply)
        counts[key] = counts.get(key, 0) + 1
    lines = ["%5d x %s %s: %s" % (n, p, s, r) for (p, s, r), n in
             sorted(counts.items(), key=lambda kv: -kv[1])]
    if len(lines) > limit:
        lines = lines[:limit] + ["... %d more kinds" % (len(lines) - limit)]
    return "\n".join(lines)


# --------------------------------------------------------------------------
# self-describing test messages


def body_for(msg_id, size):
    """About `size` bytes of body lines (LF), each naming msg_id and its number."""
    lines = []
    n = 0
    total = 0
    while total < size:
        line = ("%s line %07d " % (msg_id, n)).ljust(76, "x") + "\n"
        lines.append(line)
        total += len(line)
        n += 1
    return "".join(lines).encode()


def message(msg_id, size=800, sender="sender@remote.test", to="rcpt@example.test"):
    """A message (LF line ends, no line starting with '.') whose stored copy
    can be checked by check_stored()."""
    head = ("From: <%s>\nTo: <%s>\nSubject: fault test %s\nMessage-ID: <%s@fault.test>\n"
            "X-Fault-Id: %s\nX-Fault-Size: %d\n\n" % (sender, to, msg_id, msg_id, msg_id, size))
    return head.encode() + body_for(msg_id, size) + ("END-OF-MESSAGE %s\n" % msg_id).encode()


def crlf(data):
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


FAULT_ID = re.compile(rb"^X-Fault-Id: (\S+)$", re.M)
FAULT_SIZE = re.compile(rb"^X-Fault-Size: (\d+)$", re.M)


def check_stored(path, data=None):
    """(msg_id, problem or None) for a stored copy of a test message: it must
    name itself, end with the whole regenerated message, and (maildir files)
    have the size given by ,S= in its name. A bounce is ("DSN", problem)."""
    if data is None:
        with open(path, "rb") as f:
            data = f.read()
    head = data.split(b"\n\n", 1)[0]
    if re.search(rb"(?im)^Content-Type: multipart/report;", head):
        # a bounce (it quotes the headers of a test message): "DSN", whole if
        # its MIME structure is closed
        if not data.rstrip().endswith(b"--"):
            return "DSN", "%s: a truncated DSN (%d bytes)" % (path, len(data))
        return "DSN", None
    m = FAULT_ID.search(data)
    s = FAULT_SIZE.search(data)
    if not m or not s:
        return None, "%s: not a complete test message (%d bytes): %r..." % (
            path, len(data), data[:200])
    msg_id = m.group(1).decode()
    want = message(msg_id, int(s.group(1)))
    # the headers in `want` name another sender/recipient; compare from X-Fault-Id on
    tail = want[want.index(b"X-Fault-Id: "):]
    if not data.endswith(tail):
        return msg_id, "%s: %s is truncated or altered (%d bytes, ends %r)" % (
            path, msg_id, len(data), data[-80:])
    sz = re.search(r",S=(\d+)", os.path.basename(path))
    if sz and int(sz.group(1)) != len(data):
        return msg_id, "%s: ,S=%s but %d bytes" % (path, sz.group(1), len(data))
    return msg_id, None


def maildir_files(root):
    """Every file in a new/, cur/ or tmp/ directory under root, as
    {"new"|"cur"|"tmp": [paths]}."""
    out = {"new": [], "cur": [], "tmp": []}
    for d, dirs, files in os.walk(root):
        base = os.path.basename(d)
        if base in out:
            out[base] += [os.path.join(d, f) for f in files]
    return out


def scan_messages(root):
    """Check every message file in new/ and cur/ under root.
    Returns ({msg_id: [paths]}, [problems])."""
    found, problems = {}, []
    files = maildir_files(root)
    for p in files["new"] + files["cur"]:
        try:
            msg_id, problem = check_stored(p)
        except FileNotFoundError:
            continue  # expunged meanwhile
        if problem:
            problems.append(problem)
        if msg_id:
            found.setdefault(msg_id, []).append(p)
    return found, problems


# --------------------------------------------------------------------------
# a small tmpfs


def mount_tmpfs(path, size):
    """Mount a tmpfs of `size` (e.g. "6m") on path (created). Raises
    AssertionError with the reason if that is impossible."""
    os.makedirs(path, exist_ok=True)
    cp = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0755" % size,
                         "tmpfs", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        text=True, timeout=30)
    assert cp.returncode == 0, (
        "cannot mount a tmpfs on %s (needs root / CAP_SYS_ADMIN): exit %d: %s"
        % (path, cp.returncode, cp.stderr.strip()))
    assert os.path.ismount(path), "%s is not a mount point after mount" % path


def umount(path):
    """Unmount path (bounded). If it is busy it is detached lazily (never
    left mounted) and AssertionError says so."""
    if not os.path.ismount(path):
        return
    cp = subprocess.run(["umount", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        text=True, timeout=30)
    if cp.returncode != 0:
        # never leave it mounted behind: detach it, and say so
        subprocess.run(["umount", "-l", path], timeout=30)
        raise AssertionError("umount %s failed (lazily detached): %s"
                             % (path, cp.stderr.strip()))


def fill(directory, prefix="filler", chunk=64 * 1024, limit=1 << 30):
    """Write filler files into directory until ENOSPC; their paths. The last
    writes go down to 512 bytes so that the file system is really full
    (at most `limit` bytes in all)."""
    paths = []
    size = chunk
    written = 0
    while size >= 512 and written < limit:
        p = os.path.join(directory, "%s-%03d" % (prefix, len(paths)))
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        paths.append(p)
        try:
            while written < limit:
                written += os.write(fd, b"\0" * size)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            size //= 4
        finally:
            os.close(fd)
    return paths


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize
