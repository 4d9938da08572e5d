"""Crash consistency: kill -9 of petrel at random moments, restart, repeat.

What it shows (SPEC section 4: "250 after DATA means the message is on
stable storage"; section 5: the outbound queue is durable):

- test_kill9_during_smtp_load: 20 SMTP sessions send messages (1 KiB to
  200 KiB, some to two recipients) to local users while, at random moments,
  every petrel process is SIGKILLed at once, or one worker, or the queue
  manager (the master must replace it), or the master alone (its children
  should then exit); petrel serve is started again on the same port, and so
  on for several rounds. After a clean restart: every message answered 250
  is in each recipient's Maildir exactly once, the others at most once (and
  never if the final dot was not sent), every visible file is complete
  (byte for byte what was sent, after the trace fields) also while the load
  runs, no bounce, the queue is empty, no sanitizer report, no child died of
  anything else than our SIGKILL.
- test_kill9_during_queue_runs: the same with mail for a relay domain whose
  transport is a slow test MX (FakeMX), kills landing while deliveries are
  in flight. After a clean restart the queue drains; every message answered
  250 reached the MX. A kill after the MX's 250 and before the queue records
  it makes a duplicate (RFC 1047): those are counted and must stay within
  (kills of the queue manager, a kill of the master alone included: the
  queue manager stops with it) x (deliveries in flight at most); every other
  message arrives exactly once and complete.
- test_children_exit_when_the_master_is_killed: kill -9 of the master
  alone; within 3 s its children must let go of the listening port and the
  queue manager must be gone (workers may finish their sessions first, up
  to the drain grace), so that petrel serve starts again on the same port
  with a single queue manager. The same is checked in every 'master' round
  of the two tests above.

Every kill, restart and observation is printed (run with -s to see them on
success); the seed is printed too. Problems are collected and reported
together at the end of each test, after every check has run.

Run:  /usr/bin/python3 -m pytest -q -s tests/reliability/test_crash.py   (~1 minute)
Env:  PETREL_BIN=build-asan/petrel   another binary (as for tests/integration)
      PETREL_STRESS=1                60 + 45 rounds instead of 7 + 6 (about 8 minutes)
      PETREL_CRASH_SEED=N            replay the kill schedule of a printed seed
                                     (the timing of the processes still varies)
"""

import hashlib
import os
import random
import re
import threading
import time

from conftest import STRESS
from crash_util import (ACKED, CRASH_ID, INCOMPLETE, NOT_SENT, REJECTED, STOP_TIMEOUT,
                        UNKNOWN, Harness, Load, MaildirScanner, maildir_report, pick_size,
                        round_modes, stable_port)
from mx_util import add_relay_domain, queue_json, wait_for
from smtp_util import queue_dir, queue_files

DOMAIN = "example.test"
USERS = ["u%d@%s" % (i, DOMAIN) for i in range(6)]
SENDER = "sender@" + DOMAIN          # a local user: a bounce would land in its Maildir
RELAY = "relay.test"

INBOUND_ROUNDS = 60 if STRESS else 7
OUTBOUND_ROUNDS = 45 if STRESS else 6
WINDOW = (0.05, 4.0) if STRESS else (0.2, 2.0)   # seconds from ready to the kill
CLEAN_LOAD = 1.5        # seconds of load on the final, clean server
SESSIONS = 20
OUT_SESSIONS = 4        # outbound: the queue stays busy but drains in seconds
PER_DEST = 5            # queue_destination_concurrency: deliveries in flight at most
MAX_BACKLOG = 150       # outbound clients wait while the queue holds more
DRAIN_TIMEOUT = 120
MAX_LISTED = 40         # problems shown in the failure message


def seed_for(name):
    env = os.environ.get("PETREL_CRASH_SEED")
    seed = int(env) if env else random.SystemRandom().randrange(1, 2 ** 31)
    print("%s: seed %d (PETREL_CRASH_SEED=%d replays the schedule)" % (name, seed, seed))
    return seed


def report(problems):
    """The final assertion: every problem, the first MAX_LISTED in full."""
    shown = problems[:MAX_LISTED]
    more = len(problems) - len(shown)
    return "%d problem(s):\n%s%s" % (len(problems), "\n".join(shown),
                                    "\n... and %d more" % more if more else "")


def print_harness(h, load=None):
    if load is not None and load.t0 is not None and load.timeouts:
        # the times of the rounds and kills beside those in the hang reports
        print("timeline (s from the load's start): " + ", ".join(
            "round %d %s at +%.1f" % (d[0], d[1], d[4] - load.t0) for d in h.durations))
        print("kills at: " + ", ".join("+%.1f %s/%s" % (k.time - load.t0, k.what, k.role)
                                       for k in h.kills))
    if h.durations:
        slow = max(h.durations, key=lambda d: d[3])
        print("rounds: start %.1f..%.1f s, whole round %.1f..%.1f s (slowest: round %d, %s)"
              % (min(d[2] for d in h.durations), max(d[2] for d in h.durations),
                 min(d[3] for d in h.durations), slow[3], slow[0], slow[1]))
    print("kills: %d (%s)" % (len(h.kills), h.kill_summary()))
    for which in ("worker", "queue"):
        delays = [d for r, d in h.restarts if r == which]
        if delays:
            print("the master replaced a killed %s %d time(s), after %.2f..%.2f s"
                  % (which, len(delays), min(delays), max(delays)))
    for o in h.orphans:
        print("master killed (round %d): children %s; after %.1f s still running: %s, "
              "holding the port: %s, queue manager: %s%s; all gone after: %s"
              % (o["round"], o["children"], o["after"], o["left"] or "none",
                 o["port_held"] or "none", o["queue_alive"] or "gone",
                 "; they greet: %s, acknowledged meanwhile: %s, new serve: %s"
                 % (o["greets"], o["acked_meanwhile"], o["restart"]) if "greets" in o else "",
                 "%s s" % o["gone_after"] if o["gone_after"] is not None else "never"))


def queue_leftovers(inst):
    """Files left in QUEUE_DIR/tmp and state files without a message."""
    q = queue_dir(inst)
    tmp = sorted(os.listdir(os.path.join(q, "tmp"))) if os.path.isdir(
        os.path.join(q, "tmp")) else []
    incoming = set(os.path.basename(p) for p in queue_files(inst))
    state = os.path.join(q, "state")
    stale = sorted(n for n in (os.listdir(state) if os.path.isdir(state) else [])
                   if n not in incoming)
    return tmp, stale


def deferrals(h):
    """{reason: count} of the queue manager's status=deferred log lines
    (numbers and addresses blanked out so that alike reasons add up)."""
    out = {}
    for srv in h.servers:
        for line in srv.log_lines():
            m = re.search(r"status=deferred \((.*)\), attempts=\d+$", line.rstrip())
            if m:
                why = re.sub(r"\d+", "N", m.group(1))
                out[why] = out.get(why, 0) + 1
    return out


def client_problems(load, stuck):
    out = ["client hang: no reply within %ss (%s)" % (t, what) for what, t in load.timeouts]
    out += ["malformed reply: " + g for g in load.garbled]
    out += ["test client error: " + e for e in load.errors]
    if stuck:
        out.append("client threads still running after stop: %s" % stuck)
    return out


# --------------------------------------------------------------------------
# inbound: local delivery under a 20-session load


def test_kill9_during_smtp_load(sqlite_instance):
    inst = sqlite_instance
    for a in USERS + [SENDER]:
        inst.add_user(a)
    seed = seed_for("inbound")
    rng = random.Random(seed)
    port = stable_port()
    h = Harness(inst, port)
    load = Load(port, SENDER, rcpts=lambda r: r.sample(USERS, 2 if r.random() < 0.3 else 1),
                size=pick_size, threads=SESSIONS, tag="in%d" % (seed % 1000), seed=seed,
                think=(0, 0.2))
    scanner = MaildirScanner(inst, USERS + [SENDER], load)
    modes = round_modes(rng, INBOUND_ROUNDS)
    problems = []
    t0 = time.monotonic()
    try:
        load.start()
        scanner.start()
        for rnd, mode in enumerate(modes):
            h.round(rnd, mode, rng, WINDOW, load)
        stuck = load.stop()
        # a clean server after all that: the service goes on
        load.phase = "clean"
        srv = h.start()
        load.start()
        time.sleep(CLEAN_LOAD)
        stuck += load.stop()
        scanner.stop()
        if not wait_for(lambda: not queue_files(inst), 30):
            problems.append("the queue is not empty: %s" % queue_files(inst))
        rc = srv.stop(timeout=STOP_TIMEOUT)
        if rc != 0:
            problems.append("the clean server exited %s on SIGTERM" % rc)
    finally:
        load.stop()
        scanner.stop()
        h.cleanup()
    took = time.monotonic() - t0

    copies, stored_problems, leftovers = maildir_report(inst, USERS + [SENDER], load.by_id)
    problems += h.problems + stored_problems + scanner.problems + h.log_problems()
    problems += client_problems(load, stuck)
    partial_rcpts = 0
    for rec in load.sent:
        got = [copies.get((rec.id, a.lower()), 0) for a in rec.rcpts]
        if rec.phase == "clean" and rec.status != ACKED:
            problems.append("%s: not acknowledged by the clean server after the "
                            "crashes: %s %r" % (rec.id, rec.status, rec.reply))
        for a, n in zip(rec.rcpts, got):
            if rec.status == ACKED and n != 1:
                problems.append("%s: acknowledged with 250, %d cop%s in the Maildir of %s"
                                % (rec.id, n, "y" if n == 1 else "ies", a))
            elif rec.status in (REJECTED, UNKNOWN) and n > 1:
                problems.append("%s (%s, %r): %d copies in the Maildir of %s"
                                % (rec.id, rec.status, rec.reply, n, a))
            elif rec.status in (NOT_SENT, INCOMPLETE) and n != 0:
                problems.append("%s: delivered to %s although its transaction never "
                                "reached the end of the data (%s, %r)"
                                % (rec.id, a, rec.status, rec.reply))
        if len(got) > 1 and 0 < sum(got) < len(got):
            partial_rcpts += 1
    if queue_json(inst) != []:
        problems.append("petrel queue list is not empty: %s" % queue_json(inst))
    qtmp, qstale = queue_leftovers(inst)

    counts = load.counts()
    replies = sorted(set(r.reply for r in load.sent if r.status == REJECTED))
    print("inbound: %d rounds (%s) in %.0f s on port %d" % (len(modes), " ".join(modes),
                                                          took, port))
    print_harness(h, load)
    print("messages: %s; clean phase: %s; refused connections while down: %d"
          % (counts, load.counts("clean"), load.refused))
    if replies:
        print("non-250 replies after DATA: %s" % replies)
    print("files: %d copies in new/ and cur/ (%d checked while the load ran); "
          "unacknowledged 2-recipient messages delivered to one recipient only: %d"
          % (sum(copies.values()), scanner.checked, partial_rcpts))
    complete = sum(1 for _, what in leftovers if what.startswith("complete"))
    print("tmp/ leftovers: %d (%d complete copies, %d partial); queue tmp/: %d, "
          "stale state files: %d" % (len(leftovers), complete, len(leftovers) - complete,
                                      len(qtmp), len(qstale)))
    assert counts.get(ACKED, 0) > 0, "no message was acknowledged at all"
    assert not problems, report(problems)


# --------------------------------------------------------------------------
# outbound: the queue manager killed while it delivers to a slow MX


# what petrel puts in front of a relayed message: its Received, its DKIM
# signature, the Authentication-Results of its checks at SMTP time
TRACE_PREFIX = re.compile(rb"^(?:(?:Received|DKIM-Signature|Authentication-Results):"
                          rb"[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*)+$")


class SlowMX:
    """The FakeMX's end-of-data hook: the MX takes 50..250 ms per message,
    then commits it (recorded here), then its 250 takes up to 50 ms more to
    go out. Like a real MX that has the whole message, it commits even if
    the client is gone meanwhile: a kill of the queue manager anywhere from
    the final dot until it has recorded the 250 makes a duplicate (RFC 1047)."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.accepted = []      # (id or None, mail_from, [rcpts], data)
        self.inflight = 0

    def __call__(self, txn):
        with self.lock:
            self.inflight += 1
            pause, later = self.rng.uniform(0.05, 0.25), self.rng.uniform(0, 0.05)
        time.sleep(pause)
        m = CRASH_ID.search(txn.data.split(b"\r\n\r\n", 1)[0])
        with self.lock:
            self.accepted.append((m.group(1).decode() if m else None, txn.mail_from,
                                  list(txn.rcpts), txn.data))
            self.inflight -= 1
        time.sleep(later)
        return None             # the default 250


def test_kill9_during_queue_runs(sqlite_instance, fake_mx):
    inst = sqlite_instance
    inst.add_user(SENDER)
    seed = seed_for("outbound")
    rng = random.Random(seed)
    hook = SlowMX(seed)
    mx = fake_mx(eod=hook)
    add_relay_domain(inst, RELAY, mx.port)
    port = stable_port()
    h = Harness(inst, port,
                opts=["queue_concurrency=20", "queue_destination_concurrency=%d" % PER_DEST],
                snapshot=lambda: {"queued": len(queue_files(inst)),
                                  "mx_inflight": hook.inflight})
    load = Load(port, SENDER,
                rcpts=lambda r: ["r%d@%s" % (i, RELAY)
                                 for i in r.sample(range(50), 2 if r.random() < 0.3 else 1)],
                size=lambda r: pick_size(r, large=65536), threads=OUT_SESSIONS,
                tag="out%d" % (seed % 1000), seed=seed, think=(0.05, 0.3),
                gate=lambda: len(queue_files(inst)) < MAX_BACKLOG)
    modes = round_modes(rng, OUTBOUND_ROUNDS,
                        base=("queue", "queue", "all", "worker", "master"))
    problems = []
    t0 = time.monotonic()
    try:
        load.start()
        for rnd, mode in enumerate(modes):
            h.round(rnd, mode, rng, WINDOW, load)
        stuck = load.stop()
        load.phase = "clean"
        srv = h.start()
        load.start()
        time.sleep(CLEAN_LOAD)
        stuck += load.stop()
        t_drain, backlog = time.monotonic(), len(queue_files(inst))
        if not wait_for(lambda: not queue_files(inst), DRAIN_TIMEOUT, interval=0.2):
            problems.append("the queue did not drain within %ss: %d message(s) left\n%s"
                            % (DRAIN_TIMEOUT, len(queue_files(inst)),
                               inst.run("queue", "list").stdout[:3000]))
        drained = time.monotonic() - t_drain
        time.sleep(1.5)         # > one queue scan: nothing is sent again after the drain
        rc = srv.stop(timeout=STOP_TIMEOUT)
        if rc != 0:
            problems.append("the clean server exited %s on SIGTERM" % rc)
    finally:
        load.stop()
        h.cleanup()
    took = time.monotonic() - t0

    problems += h.problems + h.log_problems() + client_problems(load, stuck)
    with hook.lock:
        accepted = list(hook.accepted)
    by_id = {}
    for mid, sender, rcpts, data in accepted:
        rec = load.by_id.get(mid)
        if rec is None:
            problems.append("the MX got a message that is none of ours (sender <%s>, a "
                            "bounce?): %r" % (sender, data[:300]))
            continue
        by_id.setdefault(mid, []).append(rcpts)
        if sender != SENDER:
            problems.append("%s: envelope sender <%s> at the MX" % (mid, sender))
        if sorted(a.lower() for a in rcpts) != sorted(rec.rcpts):
            problems.append("%s: recipients %s at the MX, %s sent" % (mid, rcpts, rec.rcpts))
        body, prefix = data[-rec.crlf_length:], data[:-rec.crlf_length]
        if (len(data) < rec.crlf_length or hashlib.sha256(body).hexdigest() != rec.crlf_sha
                or not TRACE_PREFIX.match(prefix)):
            problems.append("%s: the MX got %d bytes that are not the %d sent (plus trace "
                            "fields); end: %r" % (mid, len(data), rec.crlf_length, data[-80:]))
    duplicates = {}
    for rec in load.sent:
        n = len(by_id.get(rec.id, []))
        if rec.phase == "clean" and rec.status != ACKED:
            problems.append("%s: not acknowledged by the clean server after the crashes: "
                            "%s %r" % (rec.id, rec.status, rec.reply))
        if rec.status == ACKED and n == 0:
            problems.append("%s: acknowledged with 250, never reached the MX" % rec.id)
        elif rec.status in (NOT_SENT, INCOMPLETE) and n:
            problems.append("%s: reached the MX although its transaction never reached "
                            "the end of the data (%s, %r)" % (rec.id, rec.status, rec.reply))
        if n > 1:
            duplicates[rec.id] = n - 1
    # A kill -9 of the master alone stops the queue manager too (SIGTERM by
    # PR_SET_PDEATHSIG; deliveries in flight are dropped, not recorded), so
    # it ends deliveries in flight just as a kill of the queue manager does.
    queue_kills = [k for k in h.kills if k.role == "queue" or k.what == "master"]
    bound = len(queue_kills) * PER_DEST
    extra = sum(duplicates.values())
    if extra > bound:
        problems.append("%d duplicate deliveries at the MX, more than %d kills of the queue "
                        "manager x %d deliveries in flight: %s"
                        % (extra, len(queue_kills), PER_DEST, duplicates))
    if queue_json(inst) != []:
        problems.append("petrel queue list is not empty: %s" % queue_json(inst))
    copies, stored_problems, leftovers = maildir_report(inst, [SENDER], load.by_id)
    if copies or stored_problems:
        problems.append("files in the sender's Maildir (a bounce?): %s %s"
                        % (copies, stored_problems))
    bounced = [l for s in h.servers for l in s.log_lines()
               if re.search(r"status=(bounced|expired)|returned to sender", l)]
    problems += ["bounce: " + l.rstrip() for l in bounced]
    qtmp, qstale = queue_leftovers(inst)

    print("outbound: %d rounds (%s) in %.0f s, MX port %d, petrel port %d"
          % (len(modes), " ".join(modes), took, mx.port, port))
    print_harness(h, load)
    in_flight = sum(1 for k in queue_kills if k.snapshot and k.snapshot["mx_inflight"])
    busy = sum(1 for k in queue_kills if k.snapshot and k.snapshot["queued"])
    print("queue manager kills: %d (%d with a non-empty queue, %d while the MX was "
          "receiving a message)" % (len(queue_kills), busy, in_flight))
    print("messages: %s; clean phase: %s; at the MX: %d transactions for %d messages"
          % (load.counts(), load.counts("clean"), len(accepted), len(by_id)))
    print("duplicates at the MX (RFC 1047 window): %d (bound %d): %s"
          % (extra, bound, sorted(duplicates)))
    print("the final drain: %d message(s) in %.1f s; queue tmp/ leftovers: %d, stale "
          "state files: %d" % (backlog, drained, len(qtmp), len(qstale)))
    print("deferrals: %s" % (deferrals(h) or "none"))
    assert load.counts().get(ACKED, 0) > 0, "no message was acknowledged at all"
    assert not problems, report(problems)


# --------------------------------------------------------------------------
# the master alone


def test_children_exit_when_the_master_is_killed(sqlite_instance):
    """kill -9 of the master, no load: its children must not keep the
    listening socket, nor the queue manager run on (Harness.kill_master), so
    that petrel serve starts again on the same port."""
    inst = sqlite_instance
    inst.add_user(USERS[0])
    h = Harness(inst, stable_port())
    try:
        srv = h.start()
        h.kill_master(srv, 0)
        srv = h.start()             # the same port
        assert srv.stop(timeout=STOP_TIMEOUT) == 0, srv.log()
    finally:
        h.cleanup()
    print_harness(h)
    problems = h.problems + h.log_problems()
    assert not problems, report(problems)
