"""Helpers for the crash-consistency tests (test_crash.py).

- stable_port(): a free loopback port below the kernel's ephemeral range, so
  that no client connection takes it while petrel is down between rounds.
- Harness: `petrel serve` on one instance and one fixed MX port, started,
  SIGKILLed (all processes at once, one worker, the queue manager, or the
  master alone) and started again; it records every kill, how long the
  master took to replace a killed child, what the children did when their
  master died, and every problem seen (kept for the final assertion).
- Load: N SMTP client threads sending messages with a unique X-Crash-Id
  header and an END-OF-MESSAGE marker; each message ends up ACKED (250
  after DATA), REJECTED (another reply), UNKNOWN (connection lost or timed
  out after the final dot, before the reply), INCOMPLETE (the final dot was
  never sent) or NOT_SENT (the transaction failed before DATA).
- Maildir checks: every visible file parsed and compared with what was sent.
"""

import hashlib
import os
import random
import re
import signal
import socket
import subprocess
import threading
import time

from harness import procs, server
from harness.procs import role  # noqa: F401 (the tests import it from here)
from harness.conn import SmtpConn as Client
from harness.maildir import listdir as _names, maildir_of as maildir_path  # noqa: F401
from harness.maildir import split_stored
from harness.ports import stable_port  # noqa: F401
from harness.server import Server
from mx_util import wire

HOSTNAME = "mx.petrel.test"
START_TIMEOUT = 30        # petrel serve greets and has all its children (ASan: slower)
RESTART_WAIT = 12         # the master replaces a killed child (its back-off is 5 s)
ORPHAN_GRACE = 3          # children of a killed master: port and queue released by then
DRAIN_GRACE = 20          # lib/base/limits.h: a draining worker finishes its sessions
GONE_WAIT = 10            # SIGKILLed processes disappear
STOP_TIMEOUT = 30         # SIGTERM of a clean server
IO_TIMEOUT = 30           # a client waits this long for any reply: longer is a hang
CONNECT_PAUSE = (0.02, 0.1)

ACKED, REJECTED, UNKNOWN, INCOMPLETE, NOT_SENT = (
    "acked", "rejected", "unknown", "incomplete", "not_sent")

SANITIZER = re.compile(r"AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|"
                       r"runtime error:")
CHILD_DEATH = re.compile(r"worker (\d+) \(pid (\d+)\) (killed by signal (\d+)|"
                         r"exited with status (\d+))")
RESTARTED = re.compile(r"worker (\d+) restarted \(pid (\d+)\)")


# --------------------------------------------------------------------------
# ports and processes


def children(pid):
    return procs.children(pid)


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def group(pgid, conf):
    """Every live process of a server's process group (the master runs in a
    session of its own: its workers stay in the group after it dies) whose
    command line names the instance's config file `conf` (never another
    process that got a recycled pid)."""
    return [p for p in procs.live_pids(lambda ppid, pgrp: pgrp == pgid)
            if conf.encode() in _cmdline(p)]


alive = procs.alive


def listeners(port, pids):
    """Those of pids that hold a socket listening on 127.0.0.1:port."""
    inodes = set()
    try:
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:
                    inodes.add("socket:[%s]" % fields[9])
    except OSError:
        return []
    return [pid for pid in pids if procs.fds_linking(pid, inodes)]


def greets(port, timeout=3):
    """True if something on 127.0.0.1:port answers 220 (then QUIT)."""
    return server.greets("127.0.0.1", port, timeout=timeout)


# --------------------------------------------------------------------------
# the server, killed and restarted


# Remote mail without a transport of its own goes to a closed port (never to
# real MX records); a 1 s queue scan and retry so that the queue drains quickly.
DEFAULTS = ("hostname=" + HOSTNAME, "relayhost=[127.0.0.1]:9", "queue_retry_min=1",
            "queue_scan_interval=1")


def serve_args(inst, port, opts=()):
    """`petrel serve` with only the MX listener, on a fixed port."""
    return server.serve_args(inst, {"smtp": port}, opts=DEFAULTS + tuple(opts))


class Kill:
    """One SIGKILL we sent."""

    def __init__(self, rnd, what, role_, pid, snapshot):
        self.round = rnd
        self.what = what          # "all", "worker", "queue", "master", "orphans"
        self.role = role_         # the role of this process: master, worker, queue
        self.pid = pid
        self.time = time.monotonic()
        self.snapshot = snapshot  # what the test saw just before (e.g. queue length)

    def __repr__(self):
        return "<Kill r%d %s %s pid %d %r>" % (self.round, self.what, self.role, self.pid,
                                             self.snapshot)


class Harness:
    """`petrel serve` on inst and a fixed port, killed and restarted.

    snapshot(): called just before each kill; its value is kept in the Kill
    record (the tests pass the queue length, deliveries in flight...)."""

    def __init__(self, inst, port, opts=(), snapshot=None):
        self.inst = inst
        self.port = port
        self.opts = list(opts)
        self.snapshot = snapshot or (lambda: None)
        self.servers = []      # every harness Server started (their logs)
        self.pgids = []        # every process group we made
        self.killed = set()    # every pid we SIGKILLed
        self.kills = []        # Kill records
        self.restarts = []     # (role, seconds until the master replaced it)
        self.orphans = []      # dicts: what the children did when the master died
        self.problems = []     # strings: each one fails the test in the end
        self.durations = []    # (round, mode, seconds to start, seconds in all)

    # --- processes of a running server
    def group(self, pgid):
        return group(pgid, self.inst.conf)

    def processes(self, srv):
        """{pid: role} for the master and its children (None: not exec'd yet)."""
        out = {srv.proc.pid: "master"}
        for p in children(srv.proc.pid):
            out[p] = role(p)
        return out

    def _ready(self, srv):
        kids = [role(p) for p in children(srv.proc.pid)]
        return ("queue" in kids and "worker" in kids and None not in kids
                and srv.wait_log(r"queue manager started", timeout=0))

    def start(self, timeout=START_TIMEOUT):
        """Start petrel serve; wait until it greets on the port and its queue
        manager and workers run. A start that fails because someone else holds
        the port (not one of our processes) is retried a few times."""
        for attempt in range(5):
            args = serve_args(self.inst, self.port, self.opts)
            srv = Server.launch(self.inst, args, {"smtp": self.port})
            proc = srv.proc
            self.servers.append(srv)
            self.pgids.append(proc.pid)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and proc.poll() is None:
                if self._ready(srv) and greets(self.port):
                    return srv
                time.sleep(0.05)
            if proc.poll() is None:
                self.kill_all(srv, -1, "start")
                raise AssertionError("petrel serve did not get ready within %ss\nlog:\n%s"
                                     % (timeout, srv.log()))
            srv.join_reader()
            ours = [p for g in self.pgids for p in self.group(g)]
            if "Address already in use" in srv.log() and not ours:
                time.sleep(1)          # another program on our port: try again
                continue
            raise AssertionError("petrel serve exited with %s at start (our processes "
                                 "still running: %s)\nlog:\n%s"
                                 % (proc.returncode, ours, srv.log()))
        raise AssertionError("port %d stays in use by another program" % self.port)

    # --- kills
    def _kill(self, rnd, what, role_, pid, snapshot):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        self.killed.add(pid)
        self.kills.append(Kill(rnd, what, role_, pid, snapshot))
        return True

    def _wait_gone(self, pgid, rnd=-1):
        """Wait (bounded) until every process of the group is gone; one that
        was not in our list (forked just before its master died) gets its
        SIGKILL too."""
        deadline = time.monotonic() + GONE_WAIT
        while time.monotonic() < deadline:
            left = self.group(pgid)
            if not left:
                return True
            for pid in left:
                if pid not in self.killed:
                    self._kill(rnd, "late", role(pid) or "?", pid, None)
            time.sleep(0.02)
        self.problems.append("processes %s of group %d still alive %ss after SIGKILL"
                             % (self.group(pgid), pgid, GONE_WAIT))
        return False

    def _reap(self, srv):
        """Wait for the SIGKILLed master (our child). Its log reader ends when
        the last process holding its stderr is gone (see _wait_gone)."""
        try:
            srv.proc.wait(timeout=GONE_WAIT)
        except subprocess.TimeoutExpired:
            self.problems.append("master %d not dead %ss after SIGKILL"
                                 % (srv.proc.pid, GONE_WAIT))
        srv.returncode = srv.proc.returncode

    def kill_all(self, srv, rnd, what="all"):
        """SIGKILL the master and every child, as close together as we can
        (the master first, so that it cannot start a replacement)."""
        snap = self.snapshot()
        procs = self.processes(srv) if srv.proc.poll() is None else {}
        for p in self.group(srv.proc.pid):
            procs.setdefault(p, role(p) or "?")
        for pid in sorted(procs, key=lambda p: p != srv.proc.pid):
            self._kill(rnd, what, procs[pid], pid, snap)
        self._reap(srv)
        if self._wait_gone(srv.proc.pid, rnd):
            srv.join_reader()

    def kill_child(self, srv, which, rnd, rng):
        """SIGKILL one child of the given role ('worker' or 'queue'); wait
        (bounded) until the master has started its replacement."""
        procs = self.processes(srv)
        pids = sorted(p for p, r in procs.items() if r == which)
        if not pids:
            self.problems.append("round %d: no %s process to kill: %r" % (rnd, which, procs))
            return
        victim = rng.choice(pids)
        before = set(procs)
        t0 = time.monotonic()
        self._kill(rnd, which, which, victim, self.snapshot())
        while time.monotonic() - t0 < RESTART_WAIT:
            new = [p for p in children(srv.proc.pid) if p not in before and role(p) == which]
            if new and alive(srv.proc.pid):
                self.restarts.append((which, time.monotonic() - t0))
                return
            time.sleep(0.02)
        self.problems.append("round %d: the master did not replace the killed %s (pid %d) "
                             "within %ss" % (rnd, which, victim, RESTART_WAIT))

    def kill_master(self, srv, rnd, load=None):
        """SIGKILL the master alone and watch its children. Within ORPHAN_GRACE
        seconds they must let go of the listening port and the queue manager
        must be gone (so that petrel serve can start again on the same port
        with one queue manager, as Postfix's and Dovecot's children leave when
        their master dies); workers finishing their sessions must be gone
        within DRAIN_GRACE (+5) seconds. Children that stay are a problem,
        recorded with what they still do (greet, acknowledge mail, hold the
        port against a new `petrel serve`), then SIGKILLed by pid so that the
        test can go on."""
        pgid = srv.proc.pid
        kids = {p: role(p) for p in children(pgid)}
        snap = self.snapshot()
        t0 = time.monotonic()
        self._kill(rnd, "master", "master", pgid, snap)
        self._reap(srv)
        acked0 = load.acked_count() if load else 0

        def holding():
            left = self.group(pgid)
            return left, listeners(self.port, left), [p for p in left if kids.get(p) == "queue"]

        left, port_held, queue = holding()
        while (port_held or queue) and time.monotonic() - t0 < ORPHAN_GRACE:
            time.sleep(0.05)
            left, port_held, queue = holding()
        obs = {"round": rnd, "children": kids, "after": round(time.monotonic() - t0, 2),
               "left": {p: kids.get(p) or role(p) for p in left},
               "port_held": port_held, "queue_alive": queue}
        if port_held or queue:
            obs["greets"] = greets(self.port)
            obs["acked_meanwhile"] = (load.acked_count() - acked0) if load else None
            obs["restart"] = self._trial_start(rnd)
            self.problems.append(
                "round %d: kill -9 of the master (pid %d) left its children %s running "
                "%.1fs later (holding the listening port: %s; queue manager: %s); they still "
                "greet on port %d: %s; messages acknowledged meanwhile: %s; a new `petrel "
                "serve` on the same port: %s"
                % (rnd, pgid, obs["left"], ORPHAN_GRACE, port_held or "none", queue or "gone",
                   self.port, obs["greets"], obs["acked_meanwhile"], obs["restart"]))
        elif left:
            # workers finishing their sessions after letting go of the port
            while self.group(pgid) and time.monotonic() - t0 < DRAIN_GRACE + 5:
                time.sleep(0.1)
            if self.group(pgid):
                self.problems.append("round %d: children %s of the killed master still "
                                     "running %ds later"
                                     % (rnd, self.group(pgid), DRAIN_GRACE + 5))
        obs["gone_after"] = None if self.group(pgid) else round(time.monotonic() - t0, 2)
        snap = self.snapshot()
        for pid in self.group(pgid):
            self._kill(rnd, "orphans", kids.get(pid) or role(pid) or "?", pid, snap)
        if self._wait_gone(pgid, rnd):
            srv.join_reader()
        self.orphans.append(obs)

    def _trial_start(self, rnd):
        """Start petrel serve on the port while the old children hold it: how
        it ends (it should not start: the port is taken)."""
        args = serve_args(self.inst, self.port, self.opts)
        trial = Server.launch(self.inst, args, {"smtp": self.port})
        proc = trial.proc
        self.servers.append(trial)
        self.pgids.append(proc.pid)
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            self.kill_all(trial, rnd, "trial")
            return "started"
        trial.join_reader()
        lines = [l.strip() for l in trial.log_lines() if "error" in l]
        return "exit %s: %s" % (proc.returncode, lines[-1] if lines else trial.log())

    def cleanup(self):
        """SIGKILL whatever is left of every server we started (by pid)."""
        for pgid in self.pgids:
            for pid in self.group(pgid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for srv in self.servers:
            if srv.proc.poll() is None:
                try:
                    srv.proc.kill()
                except ProcessLookupError:
                    pass
            try:
                srv.proc.wait(timeout=GONE_WAIT)
            except subprocess.TimeoutExpired:
                pass

    # --- one round
    def round(self, rnd, mode, rng, window, load=None):
        """Start petrel serve, let the load run for a random moment, then kill:
        'all' at once; 'worker' / 'queue': one (or two) such children, each
        replaced by the master, then all at a second random moment; 'master':
        the master alone (see kill_master), then whatever is left."""
        t0 = time.monotonic()
        srv = self.start()
        started = time.monotonic() - t0
        time.sleep(rng.uniform(*window))
        if mode == "all":
            self.kill_all(srv, rnd)
        elif mode in ("worker", "queue"):
            for _ in range(rng.randint(1, 2)):
                self.kill_child(srv, mode, rnd, rng)
                time.sleep(rng.uniform(0.2, window[1] / 2))
            self.kill_all(srv, rnd)
        elif mode == "master":
            self.kill_master(srv, rnd, load)
        else:
            raise ValueError(mode)
        self.durations.append((rnd, mode, started, time.monotonic() - t0, t0))

    # --- logs
    def log_problems(self):
        """Sanitizer reports and children that died of something else than
        our SIGKILL, in every server's log."""
        out = []
        for srv in self.servers:
            for line in srv.log_lines():
                if SANITIZER.search(line):
                    out.append("sanitizer: " + line.rstrip())
                m = CHILD_DEATH.search(line)
                if m:
                    pid = int(m.group(2))
                    if not (m.group(4) == "9" and pid in self.killed):
                        out.append("unexpected death: " + line.rstrip())
        return out

    def kill_summary(self):
        by = {}
        for k in self.kills:
            by[(k.what, k.role)] = by.get((k.what, k.role), 0) + 1
        return ", ".join("%s/%s: %d" % (w, r, n) for (w, r), n in sorted(by.items()))


def round_modes(rng, rounds, base=("all", "all", "worker", "queue", "master")):
    """Kill modes for the rounds: `base` shuffled, repeated, cut to `rounds`
    (so every mode of base comes once when rounds >= len(base))."""
    modes = []
    while len(modes) < rounds:
        chunk = list(base)
        rng.shuffle(chunk)
        modes += chunk
    return modes[:rounds]


# --------------------------------------------------------------------------
# messages


_FILLER = None


def _filler():
    global _FILLER
    if _FILLER is None:
        r = random.Random(1047)
        alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:-"
        _FILLER = "".join(r.choice(alphabet) for _ in range(8192))
    return _FILLER


def pick_size(rng, large=204800):
    """1 KiB .. `large` bytes, mostly small: 60% up to 4 KiB, 30% up to 32 KiB."""
    x = rng.random()
    if x < 0.6:
        return rng.randint(1024, 4096)
    if x < 0.9:
        return rng.randint(4096, min(32768, large))
    return rng.randint(min(32768, large), large)


def build_message(rng, mid, sender, rcpts, size):
    """A message of about `size` bytes in CRLF form (not dot-stuffed): a
    unique X-Crash-Id, text lines (some starting with a dot) and a last line
    END-OF-MESSAGE <id>."""
    head = ("From: <%s>\r\nTo: %s\r\nSubject: crash test %s\r\n"
            "Message-ID: <%s@client.test>\r\nX-Crash-Id: %s\r\n\r\n"
            % (sender, ", ".join("<%s>" % r for r in rcpts), mid, mid, mid))
    filler = _filler()
    lines = []
    total = len(head)
    i = 0
    while total < size - 40:
        width = rng.randint(20, 76)
        off = rng.randrange(0, len(filler) - width)
        line = "%06d %s" % (i, filler[off:off + width])
        if i % 53 == 7:
            line = "." + line          # dot-stuffed on the wire
        lines.append(line)
        total += len(line) + 2
        i += 1
    lines.append("END-OF-MESSAGE " + mid)
    return (head + "\r\n".join(lines) + "\r\n").encode()


def socket_report(port):
    """The TCP sockets of a port and the processes that hold them (ss -tanp),
    for a report of a connection that got no answer."""
    try:
        out = subprocess.run(["ss", "-tanpH", "( sport = :%d or dport = :%d )" % (port, port)],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return "(ss failed: %s)" % e
    return "\n" + out.strip()


class Sent:
    """One message a client tried to send."""

    __slots__ = ("id", "rcpts", "phase", "length", "sha", "status", "reply", "t_end",
                 "crlf_sha", "crlf_length")

    def __init__(self, mid, rcpts, phase, data):
        self.id = mid
        self.rcpts = list(rcpts)
        self.phase = phase
        stored = data.replace(b"\r\n", b"\n")     # what a maildir holds (LF)
        self.length = len(stored)
        self.sha = hashlib.sha256(stored).hexdigest()
        self.crlf_length = len(data)                # what an MX receives (CRLF)
        self.crlf_sha = hashlib.sha256(data).hexdigest()
        self.status = NOT_SENT
        self.reply = None
        self.t_end = None

    def __repr__(self):
        return "<Sent %s %s %s %r>" % (self.id, self.status, self.rcpts, self.reply)


# --------------------------------------------------------------------------
# the SMTP load


class Load:
    """`threads` SMTP clients on 127.0.0.1:port, each sending messages one
    after the other (one to four per connection) until stop(). While the
    server is down they retry the connection after a short pause.

    rcpts(rng) -> list of recipients; size(rng) -> bytes; think: (lo, hi)
    seconds of pause after each message; gate() -> False holds every client
    back (0.1 s at a time) before its next message."""

    def __init__(self, port, sender, rcpts, size, threads=20, tag="m", seed=0,
                 think=(0, 0), gate=None):
        self.port = port
        self.sender = sender
        self.rcpts = rcpts
        self.size = size
        self.nthreads = threads
        self.tag = tag
        self.seed = seed
        self.think = think
        self.gate = gate or (lambda: True)
        self.phase = "crash"
        self.sent = []            # Sent records, in creation order
        self.by_id = {}
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.threads = []
        self.counters = {}        # per client thread: messages made (ids stay unique)
        self.refused = 0          # connections that failed (server down)
        self.timeouts = []        # (message id or stage, seconds): hangs
        self.garbled = []         # malformed replies
        self.t0 = None            # first start (times in reports are from it)
        self.errors = []          # exceptions in the client code itself

    def start(self):
        self.stop_ev.clear()
        if self.t0 is None:
            self.t0 = time.monotonic()
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True)
                        for n in range(self.nthreads)]
        for t in self.threads:
            t.start()

    def stop(self, timeout=2 * IO_TIMEOUT + 10):
        """Ask every client to finish its current message and stop (bounded)."""
        self.stop_ev.set()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(timeout=max(0.1, deadline - time.monotonic()))
        stuck = [t.name for t in self.threads if t.is_alive()]
        self.threads = []
        return stuck

    def acked_count(self):
        with self.lock:
            return sum(1 for s in self.sent if s.status == ACKED)

    def counts(self, phase=None):
        out = {}
        with self.lock:
            for s in self.sent:
                if phase is None or s.phase == phase:
                    out[s.status] = out.get(s.status, 0) + 1
        return out

    def _new(self, rng, n, count):
        mid = "%s-%02d-%05d" % (self.tag, n, count)
        rcpts = self.rcpts(rng)
        data = build_message(rng, mid, self.sender, rcpts, self.size(rng))
        rec = Sent(mid, rcpts, self.phase, data)
        with self.lock:
            self.sent.append(rec)
            self.by_id[mid] = rec
        return rec, data

    def _run(self, n):
        count = self.counters.get(n, 0)
        rng = random.Random(self.seed * 1009 + n * 7 + count)
        while not self.stop_ev.is_set():
            t_conn = time.monotonic()
            try:
                c = Client("127.0.0.1", self.port, timeout=IO_TIMEOUT, greeting=False)
            except socket.timeout:
                with self.lock:
                    self.timeouts.append(("connect, at +%.1f s: %s" % (
                        t_conn - self.t0, socket_report(self.port)), IO_TIMEOUT))
                continue
            except (OSError, ConnectionError):
                with self.lock:
                    self.refused += 1
                time.sleep(rng.uniform(*CONNECT_PAUSE))
                continue
            try:
                c.greeting = c.read_greeting()
            except socket.timeout:
                # who holds the other end: a process that accepted it, or
                # a listener's queue (no process on the server side)
                with self.lock:
                    self.timeouts.append(("greeting, connected at +%.1f s from port %d: %s"
                                          % (t_conn - self.t0, c.sock.getsockname()[1],
                                             socket_report(self.port)), IO_TIMEOUT))
                c.close()
                continue
            except (OSError, ConnectionError):
                c.close()
                with self.lock:
                    self.refused += 1
                time.sleep(rng.uniform(*CONNECT_PAUSE))
                continue
            except AssertionError as e:
                c.close()
                with self.lock:
                    self.garbled.append("greeting: %s" % e)
                continue
            try:
                count = self._session(c, rng, n, count)
            except Exception as e:  # a bug in this client: make it visible
                with self.lock:
                    self.errors.append(repr(e))
            finally:
                c.close()
                self.counters[n] = count

    def _session(self, c, rng, n, count):
        if c.greeting.code != 220:
            time.sleep(rng.uniform(*CONNECT_PAUSE))
            return count
        stage = "EHLO"
        try:
            if c.cmd("EHLO client.test").code != 250:
                return count
            for _ in range(rng.randint(1, 4)):
                while not self.gate() and not self.stop_ev.is_set():
                    time.sleep(0.1)
                if self.stop_ev.is_set():
                    break
                count += 1
                rec, data = self._new(rng, n, count)
                stage = "MAIL"
                r = c.cmd("MAIL FROM:<%s>" % self.sender)
                if r.code != 250:
                    rec.reply = r.first
                    return count
                stage = "RCPT"
                bad = None
                for a in rec.rcpts:
                    r = c.cmd("RCPT TO:<%s>" % a)
                    if r.code != 250:
                        bad = r
                if bad is not None:
                    rec.reply = bad.first
                    c.cmd("RSET")
                    continue
                stage = "DATA"
                r = c.cmd("DATA")
                if r.code != 354:
                    rec.reply = r.first
                    return count
                stage = "message"
                try:
                    c.send(wire(data) + b".\r\n")
                except socket.timeout:
                    rec.status = INCOMPLETE
                    with self.lock:
                        self.timeouts.append((rec.id + " (sending)", IO_TIMEOUT))
                    return count
                except OSError:
                    rec.status = INCOMPLETE
                    return count
                stage = "reply"
                try:
                    r = c.reply()
                except socket.timeout:
                    rec.status = UNKNOWN
                    with self.lock:
                        self.timeouts.append((rec.id, IO_TIMEOUT))
                    return count
                except (OSError, ConnectionError):
                    rec.status = UNKNOWN
                    return count
                rec.t_end = time.monotonic()
                rec.reply = r.first
                rec.status = ACKED if r.code == 250 else REJECTED
                if self.think[1] > 0:
                    time.sleep(rng.uniform(*self.think))
            stage = "QUIT"
            c.cmd("QUIT")
        except socket.timeout:
            with self.lock:
                self.timeouts.append((stage, IO_TIMEOUT))
        except (OSError, ConnectionError):
            pass
        except AssertionError as e:          # SmtpConn: a malformed reply line
            with self.lock:
                self.garbled.append("%s: %s" % (stage, e))
        return count


# --------------------------------------------------------------------------
# maildirs


CRASH_ID = re.compile(rb"(?m)^X-Crash-Id: (\S+)\r?$")


def check_stored(path, data, address, by_id):
    """A visible maildir file -> (message id or None, problem or None)."""
    try:
        head, rest = split_stored(data)
    except AssertionError:
        return None, "%s: no Return-Path/Delivered-To/Received in front: %r" % (
            path, data[:200])
    m = CRASH_ID.search(rest.split(b"\n\n", 1)[0])
    if not m:
        return None, "%s: a file that is none of our messages (a bounce?): %r" % (
            path, data[:300])
    mid = m.group(1).decode()
    rec = by_id.get(mid)
    if rec is None:
        return mid, "%s: unknown message id %s" % (path, mid)
    if head["Delivered-To"].lower() != address.lower():
        return mid, "%s: Delivered-To %s in the maildir of %s" % (
            path, head["Delivered-To"], address)
    if (len(rest) != rec.length or hashlib.sha256(rest).hexdigest() != rec.sha):
        end = b"END-OF-MESSAGE " + mid.encode() + b"\n"
        return mid, ("%s: message %s is not what was sent: %d bytes after the trace "
                     "fields, %d sent; end marker %s"
                     % (path, mid, len(rest), rec.length,
                        "present" if rest.endswith(end) else "MISSING"))
    return mid, None


class MaildirScanner:
    """Looks at new/ and cur/ of some maildirs while the load runs: every
    file that becomes visible must already be complete (checked once)."""

    def __init__(self, inst, addresses, load, interval=0.3):
        self.inst = inst
        self.addresses = addresses
        self.load = load
        self.interval = interval
        self.seen = set()
        self.problems = []
        self.checked = 0
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()

    def stop(self):
        self.stop_ev.set()
        self.thread.join(timeout=30)

    def _run(self):
        while not self.stop_ev.wait(self.interval):
            for a in self.addresses:
                base = maildir_path(self.inst, a)
                for sub in ("new", "cur"):
                    d = os.path.join(base, sub)
                    for n in _names(d):
                        if n in self.seen:
                            continue
                        self.seen.add(n)
                        try:
                            with open(os.path.join(d, n), "rb") as f:
                                data = f.read()
                        except FileNotFoundError:
                            continue
                        with self.load.lock:
                            by_id = dict(self.load.by_id)
                        _, problem = check_stored(os.path.join(d, n), data, a, by_id)
                        self.checked += 1
                        if problem:
                            self.problems.append("seen during the load: " + problem)


def maildir_report(inst, addresses, by_id):
    """Every file in new/ and cur/ of each address checked against what was
    sent. Returns (copies {(id, address): count}, problems, tmp leftovers
    [(path, description)])."""
    copies = {}
    problems = []
    leftovers = []
    for a in addresses:
        base = maildir_path(inst, a)
        for sub in ("new", "cur"):
            d = os.path.join(base, sub)
            for n in _names(d):
                p = os.path.join(d, n)
                with open(p, "rb") as f:
                    data = f.read()
                mid, problem = check_stored(p, data, a, by_id)
                if problem:
                    problems.append(problem)
                if mid is not None:
                    copies[(mid, a.lower())] = copies.get((mid, a.lower()), 0) + 1
        d = os.path.join(base, "tmp")
        for n in _names(d):
            p = os.path.join(d, n)
            with open(p, "rb") as f:
                data = f.read()
            mid, problem = check_stored(p, data, a, by_id)
            leftovers.append((p, "complete copy of %s" % mid if mid and not problem
                              else "partial (%d bytes)" % len(data)))
    return copies, problems, leftovers
