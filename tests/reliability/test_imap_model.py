"""Concurrency against a model: 50 IMAP sessions on one INBOX do STORE,
EXPUNGE (plain and UID), APPEND, COPY, MOVE, FETCH, SEARCH, STATUS, IDLE
and SELECTs of their own folder while SMTP delivers into the same INBOX;
the final state matches the model: no lost flag, no reused UID, no
message lost or duplicated, in a fresh session and again after a restart.

The ownership rules that make the model exact despite the interleaving,
and the invariants every session checks while it runs, are described in
imap_model.py. At the end (a fresh session, then again after SIGTERM and
a new `petrel serve`):
  - INBOX holds exactly delivered + appended - expunged - moved, each
    Message-ID once, under the UID it had during the run, with exactly
    the flags the model says (every flag of every message has one owner)
    and its body intact;
  - each session's folder holds exactly its copies and moved-in messages
    under the COPYUID UIDs, with the flags known for them;
  - the Maildirs hold as many files as messages, nothing left in tmp/;
  - UIDVALIDITY never changed and a new APPEND after the restart gets a
    UID above every UID ever given in INBOX;
  - petrel exits 0 on SIGTERM and its log has no sanitizer report, no
    dead worker and no error (every command of the run was legal).

Run:  /usr/bin/python3 -m pytest -q tests/reliability/test_imap_model.py
Env:  PETREL_BIN=build-asan/petrel   the ASan+UBSan build
      PETREL_STRESS=1                more operations and deliveries, a longer time bound
      PETREL_SEED=N                  the seed of the operation choices (printed by every
                                     run; the interleaving still differs between runs)
Default: 50 sessions x 100 operations, 30 deliveries before and a steady
stream (at most 400) during the run, at most 75 s of operations (under 2
minutes in all with the ASan build). PETREL_STRESS=1: 50 x 600
operations, at most 4000 deliveries, at most 10 minutes of operations.
"""

import os
import random
import re
import smtplib
import threading
import time

from conftest import STRESS
from imap_model import (INBOX, HEADER_ITEM, Client, Model, body_of, message_bytes,
                        own_folder)
from imap_util import ALICE, PASSWORD, folder_dir, imap_start, listdir, message_files  # noqa: F401

SESSIONS = 50
OPS = 600 if STRESS else 100               # per session
PRE_DELIVERIES = 30                         # before the sessions start
DELIVERIES = 4000 if STRESS else 400        # at most, while they run
DELIVERY_PAUSE = 0.1                        # at most, between two deliveries
RUN_SECONDS = 600 if STRESS else 75         # time bound of the operations
OPTS = ("workers=4",)                       # sessions spread over processes: flock() matters
SANITIZER = re.compile(r"Sanitizer|runtime error:|==\d+==ERROR")
LOGGED_ERROR = re.compile(r"\]: error: ")
LOGGED_WARNING = re.compile(r"\]: warning: ")


class Deliverer(threading.Thread):
    """Delivers messages with unique Message-IDs to alice over SMTP, a few
    per connection with random pauses; stops at `count`, the deadline
    or when told."""

    def __init__(self, srv, model, count, deadline, done, errors, seed, pause=0.25):
        super().__init__(daemon=True)
        self.srv, self.model, self.count = srv, model, count
        self.deadline, self.done, self.errors = deadline, done, errors
        self.rng = random.Random(seed)
        self.pause = pause
        self.sent = 0

    def run(self):
        try:
            while self.sent < self.count and not self.done.is_set() and \
                    time.monotonic() < self.deadline:
                with smtplib.SMTP(self.srv.host, self.srv.smtp_port, local_hostname="client.test",
                                  timeout=30) as s:
                    for _ in range(self.rng.randint(1, 5)):
                        if self.sent >= self.count or self.done.is_set():
                            break
                        msgid = self.model.new_message("smtp")
                        s.sendmail("sender@example.org", [ALICE], message_bytes(msgid, "smtp"))
                        with self.model.lock:
                            self.model.delivered.add(msgid)
                        self.sent += 1
                        time.sleep(self.rng.uniform(0, self.pause))
        except Exception as e:      # reported by the test
            self.errors.append("SMTP delivery %d failed: %r" % (self.sent + 1, e))
            self.done.set()


# --------------------------------------------------------------------------
# the final state


def read_folder(c, folder, model, problems, label):
    """{uid: (msgid, flags, body)} of a folder, through EXAMINE."""
    r = c.examine(folder)
    m = re.search(r"UIDVALIDITY (\d+)", " ".join(r.find(r"UIDVALIDITY")))
    v = int(m.group(1)) if m else None
    if folder in model.uidvalidity and v != model.uidvalidity[folder]:
        problems.append("%s: %s has UIDVALIDITY %s, it was %d during the run"
                        % (label, folder, v, model.uidvalidity[folder]))
    exists = r.numbered("EXISTS")
    if not exists or exists[-1] == 0:
        return {}
    r = c.ok("FETCH 1:* (UID FLAGS %s BODY.PEEK[TEXT])" % HEADER_ITEM)
    out = {}
    for n, d in sorted(r.fetches().items()):
        hdr = [v for k, v in d.items() if k.startswith("BODY[HEADER.FIELDS")]
        mm = re.search(rb"Message-ID:\s*(<[^>\r\n]*>)", hdr[0] or b"", re.I) if hdr else None
        msgid = mm.group(1).decode() if mm else None
        out[int(d["UID"])] = (msgid, set(d["FLAGS"]) - {"\\Recent"}, d.get("BODY[TEXT]"))
    return out


def describe_flags(got, want):
    return "flags %s; missing %s, extra %s" % (sorted(got), sorted(want - got),
                                               sorted(got - want))


def verify(srv, model, label):
    """Every difference between the server and the model, as text."""
    problems = []
    expected = model.expected_inbox()
    with srv.session(timeout=120) as c:
        inbox = read_folder(c, INBOX, model, problems, label)
        uids_of = {}
        for uid, (msgid, flags, body) in sorted(inbox.items()):
            uids_of.setdefault(msgid, []).append(uid)
            where = "%s: INBOX UID %d (%s)" % (label, uid, msgid)
            if msgid not in model.messages:
                problems.append("%s: a message nobody sent" % where)
                continue
            if msgid not in expected:
                why = ("its owner (session %d) expunged it" % model.owner(msgid)
                       if msgid in model.doomed else
                       "its owner (session %d) moved it" % model.owner(msgid)
                       if msgid in model.moved else "it was never delivered or appended")
                problems.append("%s: still in INBOX, but %s" % (where, why))
                continue
            bound = model.bound.get((INBOX, uid))
            if bound is not None and bound != msgid:
                problems.append("%s: during the run UID %d was %s" % (where, uid, bound))
            if model.inbox_uid.get(msgid, uid) != uid:
                problems.append("%s: during the run it had UID %d"
                                % (where, model.inbox_uid[msgid]))
            want = model.expected_flags(msgid)
            if flags != want:
                problems.append("%s: %s (the model: %s)" % (where, describe_flags(flags, want),
                                                            sorted(want)))
            if body != body_of(msgid):
                problems.append("%s: body %r" % (where, (body or b"")[:80]))
        for msgid, uids in uids_of.items():
            if len(uids) > 1:
                problems.append("%s: %s is in INBOX %d times: UIDs %r"
                                % (label, msgid, len(uids), uids))
        for msgid in sorted(expected - set(uids_of)):
            m = model.messages[msgid]
            problems.append("%s: lost: %s (%s, owner session %d, UID during the run %s)"
                            % (label, msgid, m.origin, m.owner, model.inbox_uid.get(msgid)))
        for i in range(model.n):
            folder = own_folder(i)
            got = read_folder(c, folder, model, problems, label)
            want = model.folders[i]
            for uid in sorted(set(got) | set(want)):
                where = "%s: %s UID %d" % (label, folder, uid)
                if uid not in want:
                    problems.append("%s (%s): a message session %d did not put there"
                                    % (where, got[uid][0], i))
                    continue
                if uid not in got:
                    problems.append("%s (%s): lost" % (where, want[uid].msgid))
                    continue
                msgid, flags, body = got[uid]
                cp = want[uid]
                if msgid != cp.msgid:
                    problems.append("%s: %s, COPYUID said %s" % (where, msgid, cp.msgid))
                    continue
                wrong = sorted(f for f, v in cp.known.items() if (f in flags) != v)
                if wrong or (cp.exact and flags != {f for f, v in cp.known.items() if v}):
                    problems.append("%s (%s): flags %s, wrong: %s (known: %s)" % (
                        where, msgid, sorted(flags), wrong,
                        sorted(f for f, v in cp.known.items() if v)))
                if body != body_of(msgid):
                    problems.append("%s (%s): body %r" % (where, msgid, (body or b"")[:80]))
        c.logout()
    return problems


def verify_disk(inst, model):
    """The Maildirs: one file per message, tmp/ empty."""
    problems = []
    want = {INBOX: len(model.expected_inbox())}
    for i in range(model.n):
        want[own_folder(i)] = len(model.folders[i])
    for folder, n in want.items():
        files = message_files(inst, ALICE, folder)
        if len(files) != n:
            problems.append("on disk: %s has %d message files, the model %d messages"
                            % (folder, len(files), n))
        tmp = listdir(os.path.join(folder_dir(inst, ALICE, folder), "tmp"))
        if tmp:
            problems.append("on disk: %s/tmp holds %r" % (folder, tmp[:5]))
    return problems


def stop_checked(srv, label):
    """SIGTERM: exit 0, no dead worker, no sanitizer report, no error
    logged (every command of the run was legal); warnings are printed."""
    rc = srv.stop()
    problems = []
    if rc != 0:
        problems.append("%s: petrel serve exited %s on SIGTERM" % (label, rc))
    lines = srv.log_lines()
    bad = srv.crashes() + [l for l in lines if SANITIZER.search(l) or LOGGED_ERROR.search(l)]
    if bad:
        problems.append("%s: the log reports:\n%s" % (label, "".join(sorted(set(bad)))[:4000]))
    warnings = [l for l in lines if LOGGED_WARNING.search(l) and "running as root" not in l]
    if warnings:
        print("%s: %d warnings logged, e.g. %s" % (label, len(warnings), warnings[0].strip()))
    return problems


def report(problems, seed, limit=40):
    more = "\n... and %d more" % (len(problems) - limit) if len(problems) > limit else ""
    return "seed %d: %d problems:\n%s%s" % (seed, len(problems), "\n".join(problems[:limit]), more)


# --------------------------------------------------------------------------
# the test


def test_fifty_sessions_match_the_model(sqlite_instance, imap_start, tmp_path):
    seed = int(os.environ.get("PETREL_SEED") or random.SystemRandom().randrange(1, 10 ** 9))
    print("\nseed %d (PETREL_SEED=%d replays the operation choices)" % (seed, seed))
    inst = sqlite_instance
    inst.add_user(ALICE, PASSWORD)
    srv = imap_start(inst, OPTS)
    model = Model(SESSIONS, seed)
    errors = []
    # the first login makes the special-use folders; some mail to work on
    with srv.session() as c:
        c.logout()
    done = threading.Event()
    pre = Deliverer(srv, model, PRE_DELIVERIES, time.monotonic() + 60, done, errors, seed, 0)
    pre.run()
    assert not errors, errors

    t0 = time.monotonic()
    deadline = t0 + RUN_SECONDS
    clients = [Client(srv, model, i, seed) for i in range(SESSIONS)]
    barrier = threading.Barrier(SESSIONS)
    threads = [threading.Thread(target=c.run, args=(OPS, deadline, done, errors, barrier),
                                daemon=True) for c in clients]
    smtp = Deliverer(srv, model, DELIVERIES, deadline, done, errors, seed + 1,
                     pause=DELIVERY_PAUSE)
    for t in threads:
        t.start()
    smtp.start()
    for t in threads:
        t.join(max(1, deadline + 90 - time.monotonic()))
    done.set()
    smtp.join(60)
    elapsed = time.monotonic() - t0
    if errors or any(t.is_alive() for t in threads):
        # every session's dialogue, for the post-mortem
        path = os.path.join(str(tmp_path), "transcripts.txt")
        with open(path, "w") as f:
            for c in clients:
                f.write("=== session %d\n%s\n" % (c.i, "\n".join(list(c.transcript))))
        errors.append("all transcripts: %s" % path)
    hung = [c for c, t in zip(clients, threads) if t.is_alive()]
    if hung:
        srv.kill()
        raise AssertionError("seed %d: %d sessions still running %.0f s after the deadline; "
                             "the last commands of session %d:\n    %s"
                             % (seed, len(hung), time.monotonic() - deadline, hung[0].i,
                                "\n    ".join(list(hung[0].transcript)[-40:])))
    assert not errors, "seed %d: %d failures:\n%s\n\nthe first in full:\n%s" % (
        seed, len(errors), "\n".join(e.split("\n")[0][:400] for e in errors), errors[0])

    ops = sum(model.ops.values())
    copies = sum(len(f) for f in model.folders.values())
    print("%d operations in %.1f s: %s" % (ops, elapsed, dict(sorted(model.ops.items()))))
    print("%d delivered, %d appended, %d expunged, %d moved; INBOX %d, own folders %d"
          % (len(model.delivered), len(model.appended), len(model.doomed), len(model.moved),
             len(model.expected_inbox()), copies))
    assert ops >= SESSIONS * 5, "only %d operations in %.0f s" % (ops, elapsed)

    problems = verify(srv, model, "fresh session")
    problems += stop_checked(srv, "first server")
    problems += verify_disk(inst, model)
    assert not problems, report(problems, seed)

    srv = imap_start(inst, OPTS)
    problems = verify(srv, model, "after a restart")
    with srv.session(select=INBOX) as c:
        highest = model.highest(INBOX)
        r = c.append(INBOX, message_bytes(model.new_message("append", owner=0), "append"))
        m = re.match(r"APPENDUID (\d+) (\d+)$", r.code() or "")
        if r.status != "OK" or not m:
            problems.append("APPEND after the restart: %r" % r.line)
        elif int(m.group(2)) <= highest:
            problems.append("after the restart APPEND got UID %s; UID %d was given before"
                            % (m.group(2), highest))
        c.logout()
    problems += stop_checked(srv, "restarted server")
    assert not problems, report(problems, seed)
    print("total %.1f s" % (time.monotonic() - t0))
