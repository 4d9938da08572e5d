"""Directory outage under load: the MariaDB directory is stopped (SIGTERM) and
started again on the same port, then killed (SIGKILL) and started again
(test_directory_down_under_load), or hung (SIGSTOP, then SIGCONT:
test_directory_hung_under_load), in the middle of a load, while petrel keeps
running.

The load: 10 MX clients and 2 submission clients (STARTTLS, AUTH PLAIN)
sending mail all along, some waiting between RCPT and DATA so that an outage
falls between the two; IMAP clients logging in (LOGIN, AUTHENTICATE PLAIN)
and selecting INBOX; POP3 clients logging in (USER/PASS, AUTH PLAIN); one
IMAP session logged in before the outage doing NOOP, UID FETCH, STATUS.

What it shows (SPEC 1: "while the database is unreachable every SMTP command
that needs it answers a 4xx temporary error (never 5xx) and logins fail with
a temporary error -- no mail is ever bounced or lost because the directory
was briefly down"):
  - SMTP: every reply is 2xx/3xx or 4xx, never 5xx, never a dropped
    connection; RCPT while the directory is gone is 451 4.3.0, AUTH on the
    submission port 454 4.7.0;
  - IMAP and POP3 logins fail while it is gone with a tagged NO [UNAVAILABLE]
    (RFC 5530) and -ERR [SYS/TEMP] (RFC 3206), never BAD,
    [AUTHENTICATIONFAILED] or a dropped connection; the session logged in
    before keeps working;
  - a login during the outage with a password cached a moment before (SPEC:
    auth_cache_ttl) is a temporary failure too: the cache only spares the
    hash computation, a login still needs the directory to say that the user
    exists and may log in (lib/auth/login.c);
  - after the restart every client succeeds again within RECOVERY_MAX
    seconds, petrel not restarted (same master, same workers);
  - the clients retry what got a 4xx (as real ones do): in the end every
    message was acknowledged with 250 and is in its recipient's maildir
    exactly once, complete; no bounce (queue empty, nothing in the local
    sender's mailbox); no dead worker or sanitizer report in the log;
  - while the directory hangs, work that does not need it (the logged-in
    session's commands, the end of DATA of a transaction whose recipient was
    accepted before) answers within STALL_MAX seconds (SPEC 5: "work that
    blocks (fsync, a remote SQL query) must not stall other clients").

It starts its own mariadbd (fault_util.PrivateMariaDB) so that the
session-wide one of the other tests is never disturbed.

Run:  cd /work/main && /usr/bin/python3 -m pytest -q tests/reliability/test_outage.py
      PETREL_BIN=/work/main/build-asan/petrel /usr/bin/python3 -m pytest -q \\
          tests/reliability/test_outage.py          # the ASan+UBSan build
"""

import os
import re
import threading
import time
import traceback

import pytest

import fault_util
import hostile_util
import imap_util
import mariadb_ctl
import pop3_util
from conftest import make_instance
from fault_util import crlf, message, scan_messages
from harness.instance import TIMEOUT_SCALE
from mx_util import SubClient, plain_b64
from smtp_util import maildir_of, queue_files

PASSWORD = "pw"
RCPTS = ["r%d@example.test" % i for i in range(5)]
IMAP_USERS = ["i0@example.test", "i1@example.test"]
POP3_USERS = ["p0@example.test", "p1@example.test"]
SESSION_USER = "k0@example.test"       # one IMAP session logged in all along
LOCAL_SENDER = "s0@example.test"       # a local user: a bounce would land in its INBOX
REMOTE_SENDER = "sender@remote.test"   # a bounce to it would wait in the queue
USERS = RCPTS + IMAP_USERS + POP3_USERS + [SESSION_USER, LOCAL_SENDER]

SMTP_THREADS = 10      # clients of the MX port
SUBMISSION_THREADS = 2  # clients of the submission port (STARTTLS, AUTH PLAIN)
WARM = 3.0            # seconds of load before the first outage
OUTAGE = 4.0          # seconds the directory stays down (after it is gone)
HANG = 10.0           # seconds it stays hung (petrel's connect timeout is 5 s)
SETTLE = 3.0          # seconds of load after recovery, before the next step
RECOVERY_MAX = 20.0   # bound: every client succeeds again within this after the restart
STALL_MAX = 3.0       # bound on replies that do not need the directory, while it hangs
DAWDLE = 0.5          # some clients wait this long between RCPT and DATA
PAUSE = 0.15          # between two messages / logins of one client
RETRY_PAUSE = 0.3     # before a client retries a message that got a 4xx
MAX_MESSAGES = 1000   # per SMTP client (the time limit comes first)
MAX_LOGINS = 1000     # per IMAP / POP3 client (likewise)
IO_TIMEOUT = 40       # a reply must come within this (petrel's connect timeout is 5 s)
DROPPED = "DROPPED: "


# --------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def own_mariadb():
    """A mariadbd of this module's own, stopped and removed at the end."""
    try:
        mariadb_ctl.binaries()
        m = fault_util.PrivateMariaDB.create()
    except mariadb_ctl.MariaDBError as e:
        pytest.fail("could not start a private MariaDB: %s" % e)
    yield m
    m.destroy()


@pytest.fixture
def srv(petrel_bin, tmp_path, own_mariadb):
    """`petrel serve` (MX, submission, IMAP, POP3) on a MariaDB instance with
    the USERS (password "pw"); at teardown: exit 0, no dead worker."""
    own_mariadb.ensure_running()
    inst = make_instance(petrel_bin, tmp_path / "inst", "mariadb", mariadb=own_mariadb)
    hostile_util.add_users(inst, USERS, PASSWORD)
    s = hostile_util.start_all(inst)
    fault_util.note_workers(s)
    yield s
    own_mariadb.ensure_running()
    problems = hostile_util.check_stopped([s])
    if problems:
        pytest.fail("\n\n".join(problems))


# --------------------------------------------------------------------------
# the load


class Load:
    """SMTP, IMAP and POP3 clients in threads, each bounded in count and
    time, recording every reply in a fault_util.Record."""

    def __init__(self, srv):
        self.srv = srv
        self.rec = fault_util.Record()
        self.stop = threading.Event()
        self.hard_deadline = None
        self.lock = threading.Lock()
        self.tried = {}        # msg_id -> recipient, every message a client started
        self.acked = {}        # msg_id -> recipient, answered 250 at the end of DATA
        self.unfinished = []   # msg_ids given up (5xx, or retries out of time)
        self.errors = []       # exceptions in the client threads (test bugs)
        self.threads = []
        self.names = []

    # --- running
    def start(self, limit):
        self.hard_deadline = time.monotonic() + limit
        self._spawn("imap-session", self.imap_session)
        for i in range(SMTP_THREADS):
            self._spawn("smtp%d" % i, self.smtp_client, i, False)
        for i in range(SUBMISSION_THREADS):
            self._spawn("sub%d" % i, self.smtp_client, i, True)
        for j, user in enumerate(IMAP_USERS):
            self._spawn("imap%d" % j, self.imap_client, user)
        for j, user in enumerate(POP3_USERS):
            self._spawn("pop3%d" % j, self.pop3_client, user)

    def _spawn(self, name, fn, *args):
        def run():
            try:
                fn(name, *args)
            except Exception:
                with self.lock:
                    self.errors.append("%s: %s" % (name, traceback.format_exc()))
        t = threading.Thread(target=run, name=name, daemon=True)
        self.threads.append(t)
        self.names.append(name)
        t.start()

    def running(self):
        return not self.stop.is_set() and time.monotonic() < self.hard_deadline

    def finish(self, timeout=90):
        self.stop.set()
        end = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, end - time.monotonic()))
        return [t.name for t in self.threads if t.is_alive()]

    # --- SMTP
    def smtp_client(self, who, i, submission):
        """Messages to one recipient over the MX port (or, submission=True,
        over the submission port with STARTTLS and AUTH as LOCAL_SENDER)."""
        rcpt = RCPTS[i % len(RCPTS)]
        sender = LOCAL_SENDER if i % 2 or submission else REMOTE_SENDER
        for n in range(MAX_MESSAGES):
            if not self.running():
                return
            msg_id = "%s-%04d" % (who, n)
            data = crlf(message(msg_id, 500 + (97 * n) % 1500, sender=sender, to=rcpt))
            with self.lock:
                self.tried[msg_id] = rcpt
            # a 4xx or a lost connection: the client keeps the message and
            # retries, until the hard deadline (the test's own bound)
            while True:
                outcome = self.smtp_once(who, sender, rcpt, data, dawdle=i % 3 == 0,
                                         submission=submission)
                if outcome == "250":
                    with self.lock:
                        self.acked[msg_id] = rcpt
                    self.rec.success(who)
                    break
                if outcome == "5xx" or time.monotonic() > self.hard_deadline:
                    with self.lock:
                        self.unfinished.append(msg_id)
                    return
                time.sleep(RETRY_PAUSE)
            time.sleep(PAUSE)

    def smtp_once(self, who, sender, rcpt, data, dawdle=False, submission=False):
        """One transaction in a new session: '250', '4xx', '5xx' or 'dropped'.
        dawdle: wait DAWDLE seconds after RCPT, so that some transactions
        have their recipient accepted before the outage and DATA during it."""
        step, t = "CONNECT", time.monotonic()
        port = self.srv.sub_port if submission else self.srv.port
        try:
            with SubClient(self.srv.host, port, timeout=IO_TIMEOUT) as c:
                if c.greeting.code != 220:
                    self.rec.add(t, "smtp", who, "GREETING", c.greeting.lines[-1], False)
                    return "5xx" if c.greeting.code >= 500 else "4xx"
                steps = [("EHLO", "EHLO load.test")]
                if submission:
                    step, t = "STARTTLS", time.monotonic()
                    c.cmd("EHLO load.test")
                    c.starttls()
                    steps.append(("AUTH", "AUTH PLAIN " + plain_b64(sender, PASSWORD)))
                steps += [("MAIL", "MAIL FROM:<%s>" % sender),
                          ("RCPT", "RCPT TO:<%s>" % rcpt),
                          ("DATA", "DATA")]
                for step, line in steps:
                    t = time.monotonic()
                    r = c.cmd(line)
                    self.rec.add(t, "smtp", who, step, r.lines[-1], r.code < 400)
                    if r.code >= 400:
                        c.cmd("QUIT")
                        return "5xx" if r.code >= 500 else "4xx"
                    if step == "RCPT" and dawdle:
                        time.sleep(DAWDLE)
                step, t = "DATA-END", time.monotonic()
                c.send(data + b".\r\n")
                r = c.reply()
                self.rec.add(t, "smtp", who, step, r.lines[-1], r.code < 400)
                step = "QUIT"
                c.cmd("QUIT")
                if r.code == 250:
                    return "250"
                return "5xx" if r.code >= 500 else "4xx"
        except (OSError, ConnectionError, AssertionError) as e:
            if step == "QUIT":
                return "250" if r.code == 250 else "4xx"   # the decision was made
            self.rec.add(t, "smtp", who, step, DROPPED + repr(e), False)
            return "dropped"

    # --- IMAP
    def imap_client(self, who, user):
        for k in range(MAX_LOGINS):
            if not self.running():
                return
            step = "LOGIN" if k % 2 == 0 else "AUTHENTICATE"
            t = time.monotonic()
            try:
                with imap_util.Conn(self.srv.host, self.srv.imap_port,
                                    timeout=IO_TIMEOUT) as c:
                    t = time.monotonic()
                    if step == "LOGIN":
                        r = c.command('LOGIN "%s" "%s"' % (user, PASSWORD))
                    else:
                        r = c.auth_plain(user, PASSWORD)
                    self.rec.add(t, "imap", who, step, r.line.decode(), r.status == "OK")
                    if r.status == "OK":
                        step, t = "SELECT", time.monotonic()
                        r = c.command("SELECT INBOX")
                        self.rec.add(t, "imap", who, step, r.line.decode(), r.status == "OK")
                        if r.status == "OK":
                            self.rec.success(who)
                    step, t = "LOGOUT", time.monotonic()
                    r = c.command("LOGOUT")
                    self.rec.add(t, "imap", who, step, r.line.decode(), r.status == "OK")
            except (OSError, ConnectionError, AssertionError) as e:
                self.rec.add(t, "imap", who, step, DROPPED + repr(e), False)
            time.sleep(PAUSE)

    def imap_session(self, who):
        """One session logged in before the outage: NOOP, UID FETCH, STATUS
        all along (a new session only if it is dropped)."""
        c = None
        try:
            while self.running():
                step, t = "LOGIN", time.monotonic()
                try:
                    if c is None:
                        c = imap_util.Conn(self.srv.host, self.srv.imap_port, timeout=IO_TIMEOUT)
                        r = c.command('LOGIN "%s" "%s"' % (SESSION_USER, PASSWORD))
                        self.rec.add(t, "imap-session", who, step, r.line.decode(),
                                     r.status == "OK")
                        if r.status != "OK":
                            c.close()
                            c = None
                            time.sleep(PAUSE)
                            continue
                        c.ok("SELECT INBOX")
                    ok = True
                    for step, line in (("NOOP", "NOOP"), ("UID FETCH", "UID FETCH 1:* (FLAGS)"),
                                       ("STATUS", "STATUS INBOX (MESSAGES UIDNEXT)")):
                        t = time.monotonic()
                        r = c.command(line)
                        self.rec.add(t, "imap-session", who, step, r.line.decode(),
                                     r.status == "OK")
                        ok = ok and r.status == "OK"
                    if ok:
                        self.rec.success(who)
                except (OSError, ConnectionError, AssertionError) as e:
                    self.rec.add(t, "imap-session", who, step, DROPPED + repr(e), False)
                    if c is not None:
                        c.close()
                    c = None
                time.sleep(PAUSE)
        finally:
            if c is not None:
                c.close()

    # --- POP3
    def pop3_client(self, who, user):
        for k in range(MAX_LOGINS):
            if not self.running():
                return
            step = "PASS" if k % 2 == 0 else "AUTH"
            t = time.monotonic()
            try:
                with pop3_util.Conn(self.srv.host, self.srv.pop3_port,
                                    timeout=IO_TIMEOUT) as c:
                    t = time.monotonic()
                    if step == "PASS":
                        r = c.cmd("USER " + user)
                        if r.startswith("+OK"):
                            r = c.cmd("PASS " + PASSWORD)
                    else:
                        r = c.auth_plain(user, PASSWORD)
                    self.rec.add(t, "pop3", who, step, r, r.startswith("+OK"))
                    if r.startswith("+OK"):
                        step, t = "STAT", time.monotonic()
                        r = c.cmd("STAT")
                        self.rec.add(t, "pop3", who, step, r, r.startswith("+OK"))
                        if r.startswith("+OK"):
                            self.rec.success(who)
                    step, t = "QUIT", time.monotonic()
                    r = c.cmd("QUIT")
                    self.rec.add(t, "pop3", who, step, r, r.startswith("+OK"))
                    c.read_rest(timeout=5)   # the maildrop lock goes with the connection
            except (OSError, ConnectionError, AssertionError) as e:
                self.rec.add(t, "pop3", who, step, DROPPED + repr(e), False)
            time.sleep(PAUSE)


# --------------------------------------------------------------------------
# a login with a cached password, while the directory is down


def cached_logins(srv):
    """IMAP LOGIN and POP3 USER/PASS for users whose password was checked
    (and so cached) moments ago by the load; the replies."""
    out = {}
    with imap_util.Conn(srv.host, srv.imap_port, timeout=IO_TIMEOUT) as c:
        t0 = time.monotonic()
        r = c.command('LOGIN "%s" "%s"' % (IMAP_USERS[0], PASSWORD))
        out["imap"] = (r.status, r.line.decode(), time.monotonic() - t0)
        c.command("LOGOUT")
    with pop3_util.Conn(srv.host, srv.pop3_port, timeout=IO_TIMEOUT) as c:
        t0 = time.monotonic()
        c.cmd("USER " + POP3_USERS[1])
        r = c.cmd("PASS " + PASSWORD)
        out["pop3"] = (r[:4], r, time.monotonic() - t0)
        c.cmd("QUIT")
    return out


# --------------------------------------------------------------------------
# the test


def slowest(events, start, end):
    """{(proto, step): seconds} of the slowest reply to a command sent
    between start and end."""
    out = {}
    for e in events:
        if start <= e.sent <= end:
            k = "%s %s" % (e.proto, e.step)
            out[k] = round(max(out.get(k, 0), e.got - e.sent), 1)
    return out


def is_temp_imap(reply):
    return re.match(r"^\S+ NO \[UNAVAILABLE\]", reply) is not None


def is_temp_pop3(reply):
    return reply.startswith("-ERR [SYS/TEMP]")


def run_outages(srv, mdb, kinds):
    """Run the load; after WARM seconds each outage of kinds in turn ("stop":
    SIGTERM, "kill": SIGKILL, then a restart on the same port; "hang":
    SIGSTOP, then SIGCONT), each followed by a wait for every client to
    succeed again and SETTLE seconds more; then stop the load.
    Returns (load, phases): per outage its times (relative to the record's
    t0), the cached-login replies, the clients that did not recover."""
    load = Load(srv)
    rec = load.rec
    load.start(limit=150)
    phases = []
    try:
        time.sleep(WARM)
        warm = rec.not_recovered(load.names, since=0)
        assert not warm, "clients without a success before any outage: %r\n%s" % (
            warm, fault_util.summary(rec.select()))
        for kind in kinds:
            ph = {"kind": kind, "begin": rec.now()}
            if kind == "stop":
                mdb.stop()              # orderly shutdown (SIGTERM), waits until it is gone
            elif kind == "kill":
                mdb.kill()              # SIGKILL, no goodbye to the clients
            else:
                mdb.pause()             # SIGSTOP: connects and queries time out
            ph["down"] = rec.now()
            if kind == "hang":
                time.sleep(HANG)
            else:
                ph["cached"] = cached_logins(srv)
                time.sleep(OUTAGE)
            ph["restart"] = rec.now()
            if kind == "hang":
                mdb.resume()
            else:
                mdb.start()             # same port, waits until it answers
            ph["up"] = rec.now()
            end = time.monotonic() + RECOVERY_MAX
            while rec.not_recovered(load.names, ph["up"]) and time.monotonic() < end:
                time.sleep(0.1)
            ph["lagging"] = rec.not_recovered(load.names, ph["up"])
            ph["recovered_after"] = rec.recovery_time(load.names, ph["up"])
            phases.append(ph)
            time.sleep(SETTLE)
    finally:
        mdb.resume()
        if not mdb.is_running():
            mdb.start()
        stuck = load.finish()
    assert not load.errors, "client threads failed:\n" + "\n".join(load.errors)
    assert not stuck, "client threads did not finish: %r" % stuck
    assert len(phases) == len(kinds), phases
    events = rec.select()
    report = "\n".join(
        "%s: down %.1f..%.1f s, every client ok again %.1f s after the restart; "
        "logins with a cached password: %r\n  slowest replies (s): %s"
        % (ph["kind"], ph["down"], ph["restart"], ph["recovered_after"] or -1,
           ph.get("cached"), slowest(events, ph["begin"], ph["up"]))
        for ph in phases)
    print("outage report:\n%s\nreplies:\n%s" % (report, fault_util.summary(events, 40)))
    return load, phases


def check_no_harm(srv, load, phases):
    """What must hold whatever the outage: no SMTP 5xx, no connection lost
    without a reply, login failures only temporary ones, nothing failing
    after a login, the long session undisturbed, recovery within
    RECOVERY_MAX; every message acknowledged, stored once, complete, in the
    right mailbox; no bounce; the same petrel processes, no sanitizer report."""
    inst = srv.instance
    events = load.rec.select()
    bad = [e for e in events if e.proto == "smtp" and e.reply[:1] == "5"]
    assert not bad, "SMTP 5xx (the mail would bounce):\n%s" % fault_util.summary(bad)
    dropped = [e for e in events if e.reply.startswith(DROPPED)]
    assert not dropped, "connections lost without a reply:\n%s" % "\n".join(map(repr, dropped))

    bad = [e for e in events if e.proto == "imap" and e.step in ("LOGIN", "AUTHENTICATE")
           and not e.ok and not is_temp_imap(e.reply)]
    assert not bad, "IMAP login failures that are not NO [UNAVAILABLE]:\n%s" % (
        fault_util.summary(bad))
    bad = [e for e in events if e.proto == "pop3" and e.step in ("PASS", "AUTH")
           and not e.ok and not is_temp_pop3(e.reply)]
    assert not bad, "POP3 login failures that are not -ERR [SYS/TEMP]:\n%s" % (
        fault_util.summary(bad))
    bad = [e for e in events if e.proto in ("imap", "pop3") and not e.ok
           and e.step not in ("LOGIN", "AUTHENTICATE", "PASS", "AUTH")]
    assert not bad, "failures after a successful login:\n%s" % fault_util.summary(bad)
    bad = [e for e in events if e.proto == "imap-session" and not e.ok]
    assert not bad, "the session logged in before the outage was disturbed:\n%s" % (
        fault_util.summary(bad))

    for ph in phases:
        assert not ph["lagging"], (
            "%s: no success within %ss of the restart for %r\nlast replies:\n%s"
            % (ph["kind"], RECOVERY_MAX, ph["lagging"], fault_util.summary(
                [e for e in events if e.who in ph["lagging"] and e.sent > ph["up"]])))

    # every message was in the end acknowledged, and is stored exactly once
    assert not load.unfinished, "messages never accepted: %r" % load.unfinished
    assert set(load.acked) == set(load.tried), set(load.tried) - set(load.acked)
    found, problems = scan_messages(inst.mail_root)
    assert not problems, "damaged files:\n" + "\n".join(problems)
    assert "DSN" not in found, "bounces: %r" % found["DSN"]
    missing = sorted(set(load.acked) - set(found))
    assert not missing, "acknowledged with 250 but not delivered: %r" % missing
    extra = sorted(set(found) - set(load.acked))
    assert not extra, "delivered but never acknowledged: %r" % extra
    twice = {k: v for k, v in found.items() if len(v) != 1}
    assert not twice, "delivered more than once: %r" % twice
    wrong = {k: v[0] for k, v in found.items()
             if os.path.dirname(os.path.dirname(v[0])) != maildir_of(inst, load.acked[k])}
    assert not wrong, "delivered to the wrong mailbox: %r" % wrong
    tmp = fault_util.maildir_files(inst.mail_root)["tmp"]
    assert not tmp, "left in tmp/: %r" % tmp

    # no bounce: nothing queued, nothing for the local sender, none logged
    assert queue_files(inst) == [] and queue_files(inst, "tmp") == [], queue_files(inst)
    listing = inst.json("queue", "list", "--json")
    assert not listing, listing
    sender_box = fault_util.maildir_files(maildir_of(inst, LOCAL_SENDER))
    assert not sender_box["new"] and not sender_box["cur"], sender_box
    assert not re.search(r"status=(bounced|expired)", srv.log())

    # the same petrel, alive and well
    fault_util.still_up(srv)


def test_directory_down_under_load(srv, own_mariadb):
    """MariaDB stopped, restarted; killed, restarted: while it is surely gone
    RCPT gets 451 4.3.0, logins NO [UNAVAILABLE] / -ERR [SYS/TEMP] (also with
    a password cached moments before), promptly; then everything works again."""
    load, phases = run_outages(srv, own_mariadb, ("stop", "kill"))
    rec = load.rec
    for ph in phases:
        # commands sent after the server was gone and answered before it was back
        window = dict(start=ph["down"], end=ph["restart"])
        rcpt = rec.select(proto="smtp", step="RCPT", **window)
        assert rcpt, "no RCPT while the directory was down (%s)" % ph["kind"]
        bad = [e for e in rcpt if not e.reply.startswith("451 4.3.0")]
        assert not bad, "%s: RCPT while down:\n%s" % (ph["kind"], fault_util.summary(bad))
        logins = rec.select(proto="imap", step=("LOGIN", "AUTHENTICATE"), **window)
        assert logins and all(is_temp_imap(e.reply) for e in logins), (
            "%s: IMAP logins while down:\n%s" % (ph["kind"], fault_util.summary(logins)))
        logins = rec.select(proto="pop3", step=("PASS", "AUTH"), **window)
        assert logins and all(is_temp_pop3(e.reply) for e in logins), (
            "%s: POP3 logins while down:\n%s" % (ph["kind"], fault_util.summary(logins)))
        # the cached password does not let a login through without the directory
        status, line, secs = ph["cached"]["imap"]
        assert is_temp_imap(line) and secs < 30 * TIMEOUT_SCALE, (ph["kind"], ph["cached"])
        status, line, secs = ph["cached"]["pop3"]
        assert is_temp_pop3(line) and secs < 30 * TIMEOUT_SCALE, (ph["kind"], ph["cached"])
    check_no_harm(srv, load, phases)


def test_directory_hung_under_load(srv, own_mariadb):
    """MariaDB hung (SIGSTOP) for HANG seconds, then resumed: the clients
    that need the directory wait (petrel's MariaDB timeouts: 5 s connect, 30 s
    read) and then succeed or fail temporarily, nothing is lost; and work that
    does not need the directory -- commands of an IMAP session logged in
    before, delivery of a message whose recipient was accepted before -- is
    not stalled behind the hung queries (SPEC 5: "work that blocks (fsync, a
    remote SQL query) must not stall other clients")."""
    load, phases = run_outages(srv, own_mariadb, ("hang",))
    check_no_harm(srv, load, phases)
    [ph] = phases
    rec = load.rec
    window = dict(start=ph["down"], end=ph["restart"])
    bad = [e for e in rec.select(proto="smtp", step="RCPT", **window)
           if not e.reply.startswith("451 4.3.0")]
    assert not bad, "RCPT while hung:\n%s" % fault_util.summary(bad)
    stalled = [e for e in rec.select()
               if ph["down"] <= e.sent <= ph["restart"] and e.got - e.sent > STALL_MAX
               and (e.proto == "imap-session" or e.step in ("DATA-END", "EHLO", "MAIL"))]
    assert not stalled, (
        "work that does not need the directory waited for the hung one (more than "
        "%ss):\n%s" % (STALL_MAX, "\n".join(
            "%s %s sent at +%.1f s, answered %.1f s later: %s"
            % (e.who, e.step, e.sent - ph["down"], e.got - e.sent, e.reply)
            for e in stalled[:12])))
