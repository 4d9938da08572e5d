"""The model and the tracking IMAP client of test_imap_model.py.

Many IMAP sessions work on one INBOX at the same time while SMTP delivers
into it. For the final state to be predictable despite the interleaving,
everything that can change is owned by exactly one session:

- every message has one owner: the session that APPENDed it, or (for a
  message delivered over SMTP) the session picked by a hash of its
  Message-ID. Only the owner changes the message's system flags (\\Seen,
  \\Flagged, \\Answered, \\Draft; \\Seen also through a FETCH BODY[...]
  without PEEK), sets \\Deleted on it, expunges it or MOVEs it;
- keyword $kNN (NN < 25) on a message of class C (a hash of the
  Message-ID) belongs to session NN + 25 * C: only that session sets or
  clears it (25 keywords, so a folder never needs more than petrel's 26
  keyword letters);
- session i is the only writer of its own folder "SessNN" (COPY of any
  message, MOVE of the messages it owns, STORE and EXPUNGE there);
- \\Deleted is set only by an owner that then expunges the message in
  the same step (UID EXPUNGE, or a plain EXPUNGE, which may also remove
  other owners' \\Deleted messages: all of them are "doomed" anyway).

So the value of every (message, flag) pair is decided by one session's
last STORE, and the final INBOX is exactly delivered + appended - doomed
- moved. A message may disappear from a session's view only when it is
doomed or being moved: the owner records that in the model *before* it
sends the command. A copy (COPY or MOVE) carries the flags its source had
at that moment; the copier knows the ones it owns, and all of them once
it has looked at its folder (nobody else changes them there).

The operations (Client.WEIGHTS): STORE +/-FLAGS[.SILENT] of the own
keyword (by UID or sequence number, 1-3 messages) and of owned system
flags, APPEND (flags, date, LITERAL+ or not), COPY 1-3 messages, MOVE,
\\Deleted + UID EXPUNGE or EXPUNGE, FETCH BODY[TEXT] (sets \\Seen), a
consistency check (NOOP, FETCH 1:*, UID SEARCH ALL, Message-IDs and
bodies), IDLE, STATUS of the own folder, a visit of the own folder
(leaving INBOX by SELECT, CLOSE or UNSELECT), NOOP.

Each Client keeps its session's view of the selected mailbox (the UID of
every sequence number, maintained from EXISTS, EXPUNGE and FETCH
responses in the order they arrive) and checks as it goes: UIDs strictly
increase with the sequence numbers, EXPUNGE only for doomed or moving
messages and never during FETCH, STORE or SEARCH (RFC 3501 7.4.1),
FETCH only for announced sequence numbers, one UID <-> one Message-ID
forever (also across sessions and after expunges), UIDVALIDITY fixed,
APPENDUID/COPYUID UIDs above every UID seen before the command, and the
flags it owns reported as it set them.
"""

import collections
import random
import re
import threading
import time
import traceback
import zlib

from imap_util import Literal, imap_date, parse, quote

INBOX = "INBOX"
NKEYWORDS = 25
SYSFLAGS = ("\\Seen", "\\Flagged", "\\Answered", "\\Draft")
DELETED = "\\Deleted"
HEADER_ITEM = "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"
MSGID_RE = re.compile(rb"Message-ID:\s*(<[^>\r\n]*>)", re.I)


class Violation(AssertionError):
    """petrel broke an invariant (or the protocol) as one session saw it."""


def keyword(j):
    return "$k%02d" % j


KEYWORDS = tuple(keyword(j) for j in range(NKEYWORDS))
VOCABULARY = set(SYSFLAGS) | {DELETED} | set(KEYWORDS)


def own_folder(i):
    return "Sess%02d" % i


def _h(msgid):
    return zlib.crc32(msgid.encode())


def body_of(msgid):
    """The body of a message (CRLF), derived from its Message-ID."""
    n = 1 + _h(msgid) % 12
    return b"".join(b"line %d of %s: %s\r\n" % (k, msgid.encode(), b"x" * (k * 7 % 50))
                    for k in range(n))


def message_bytes(msgid, origin):
    return (b"From: Model <model@example.org>\r\n"
            b"To: alice@example.test\r\n"
            b"Subject: " + origin.encode() + b" " + msgid.encode() + b"\r\n"
            b"Date: Mon, 2 Mar 2026 10:00:00 +0000\r\n"
            b"Message-ID: " + msgid.encode() + b"\r\n"
            b"\r\n" + body_of(msgid))


def uidset(text):
    """An RFC 4315 uid-set ('3,5:7') -> the UIDs in the order given."""
    out = []
    for part in text.split(","):
        if ":" in part:
            a, b = (int(x) for x in part.split(":"))
            out += list(range(a, b + 1)) if a <= b else list(range(a, b - 1, -1))
        else:
            out.append(int(part))
    return out


def fmt_set(uids):
    return ",".join(str(u) for u in uids)


class Msg:
    """A message of the run: where it came from, its owner, its class."""

    def __init__(self, msgid, origin, owner, cls):
        self.msgid = msgid
        self.origin = origin        # "smtp" or "append"
        self.owner = owner
        self.cls = cls


class Copy:
    """A message in a session's own folder: the flags whose value is known
    (flag -> bool) and whether that is all of them (exact)."""

    def __init__(self, msgid, known, exact=False):
        self.msgid = msgid
        self.known = dict(known)
        self.exact = exact


class Model:
    """What the server must hold, shared by every session (one lock)."""

    def __init__(self, nsessions, seed):
        self.n = nsessions
        self.seed = seed
        self.nclasses = -(-nsessions // NKEYWORDS)
        self.lock = threading.Lock()
        self.messages = {}          # msgid -> Msg (once the command is about to go out)
        self.delivered = set()      # SMTP said 250
        self.appended = set()       # APPEND said OK
        self.flags = {}             # msgid -> {flag: bool} in INBOX (each flag: one writer)
        self.doomed = set()         # \Deleted set by the owner: will be expunged
        self.moving = set()         # the owner sent a MOVE
        self.moved = set()          # ... that said OK
        self.uidvalidity = {}       # folder -> UIDVALIDITY first seen
        self.bound = {}             # (folder, uid) -> msgid, forever
        self.inbox_uid = {}         # msgid -> its UID in INBOX
        self.max_uid = collections.defaultdict(int)  # folder -> highest UID seen
        self.folders = {i: {} for i in range(nsessions)}  # i -> {uid: Copy}
        self.ops = collections.Counter()
        self._seq = collections.Counter()

    # --- ownership
    def new_message(self, origin, owner=None):
        with self.lock:
            self._seq[origin] += 1
            msgid = "<%s%d.%s.%d@model.petrel.test>" % (
                origin[0], self._seq[origin], owner if owner is not None else "x", self.seed)
            h = _h(msgid)
            if owner is None:
                owner = (h // self.nclasses) % self.n
            self.messages[msgid] = Msg(msgid, origin, owner, h % self.nclasses)
            self.flags[msgid] = {}
            return msgid

    def owner(self, msgid):
        return self.messages[msgid].owner

    def session_keyword(self, i):
        return keyword(i % NKEYWORDS)

    def session_class(self, i):
        return i // NKEYWORDS

    def flags_of(self, i, msgid):
        """The INBOX flags of msgid that session i owns."""
        m = self.messages[msgid]
        out = []
        if m.owner == i:
            out += list(SYSFLAGS) + [DELETED]
        if m.cls == self.session_class(i):
            out.append(self.session_keyword(i))
        return out

    def flag(self, msgid, f):
        return self.flags[msgid].get(f, False)

    def gone(self, msgid):
        """May this message have left INBOX?"""
        return msgid in self.doomed or msgid in self.moving

    def expected_flags(self, msgid):
        return {f for f, v in self.flags[msgid].items() if v}

    def expected_inbox(self):
        with self.lock:
            return (self.delivered | self.appended) - self.doomed - self.moved

    # --- UIDs
    def check_uidvalidity(self, folder, v, where):
        with self.lock:
            old = self.uidvalidity.setdefault(folder, v)
        if old != v:
            raise Violation("%s: UIDVALIDITY of %s changed from %d to %d" % (where, folder, old, v))

    def bind(self, folder, uid, msgid, where):
        """Record that UID uid of folder is msgid; a UID that ever meant
        another message, or an INBOX message with a second UID, fails."""
        with self.lock:
            if msgid not in self.messages:
                raise Violation("%s: %s UID %d has Message-ID %s, which nobody sent"
                                % (where, folder, uid, msgid))
            old = self.bound.get((folder, uid))
            if old is None:
                if folder == INBOX:
                    prev = self.inbox_uid.get(msgid)
                    if prev is not None and prev != uid:
                        raise Violation("%s: %s is in INBOX twice: UID %d and UID %d"
                                        % (where, msgid, prev, uid))
                    self.inbox_uid[msgid] = uid
                self.bound[(folder, uid)] = msgid
                if uid > self.max_uid[folder]:
                    self.max_uid[folder] = uid
            elif old != msgid:
                raise Violation("%s: UID %d of %s was %s and is now %s (UID reused)"
                                % (where, uid, folder, old, msgid))

    def msgid_of(self, folder, uid):
        return self.bound.get((folder, uid))

    def seen_uid(self, folder, uid):
        with self.lock:
            if uid > self.max_uid[folder]:
                self.max_uid[folder] = uid

    def highest(self, folder):
        with self.lock:
            return self.max_uid[folder]


# --------------------------------------------------------------------------
# one session


class Client:
    """One IMAP session of the model test: its view of the selected mailbox
    and the operations it may do under the ownership rules."""

    WEIGHTS = (("keyword", 30), ("sysflag", 8), ("append", 12), ("copy", 10),
               ("move", 6), ("expunge", 9), ("check", 8), ("idle", 4),
               ("fetch_seen", 3), ("status", 4), ("visit", 3), ("noop", 3))

    def __init__(self, srv, model, i, seed, io_timeout=30):
        self.srv = srv
        self.model = model
        self.i = i
        self.rng = random.Random(seed * 1009 + i)
        self.io_timeout = io_timeout
        self.conn = None
        self.folder = None          # the selected mailbox
        self.seq = []               # UID (or None, not known yet) per sequence number
        self.pending = {}           # (msgid, flag) -> old value, while a STORE is out
        self.own_expunging = set()  # own-folder UIDs this session is expunging
        self.transcript = collections.deque(maxlen=4000)   # the test writes it out on failure
        self.ops = collections.Counter()
        self._cmd = None            # the command being processed
        self._fetched = []          # (seq, uid, items) of the FETCHes of that command
        self._search = None
        self._copyuid = None
        self._view_at_search = None
        self.learned = set()        # every UID a FETCH put into the view

    # --- helpers
    def where(self):
        return "session %d (%s)" % (self.i, self._cmd or "-")

    def fail(self, text):
        raise Violation("%s: %s" % (self.where(), text))

    def log(self, sent, result=None, lines=None):
        """Add a command (with the monotonic clock, to line the sessions up)
        and its responses to the transcript."""
        self.transcript.append("C: %s  [t=%.3f]" % (sent, time.monotonic()))
        if result is not None:
            lines = list(result.untagged) + [result.line]
        for l in (lines or [])[-300:]:
            self.transcript.append("S: %s" % l[:300].decode("utf-8", "replace")
                                   .replace("\r\n", "\\r\\n"))

    def connect(self):
        self.conn = self.srv.conn(timeout=self.io_timeout)
        r = self.conn.login()
        self.log("LOGIN", r)
        r = self.cmd("CREATE ", quote(own_folder(self.i)))
        if r.status != "OK":
            self.fail("CREATE %s -> %r" % (own_folder(self.i), r.line))
        self.select(INBOX)

    def logout(self):
        self._cmd = "LOGOUT"
        self.conn.logout()
        self.conn.close()

    def msgid(self, uid):
        return self.model.msgid_of(self.folder, uid) if uid is not None else None

    def may_vanish(self, uid):
        """May this INBOX message be gone? (Unknown ones: not checkable.)"""
        msgid = self.msgid(uid)
        return msgid is None or self.model.gone(msgid)

    def known(self):
        """[(uid, msgid)] of the view with both known."""
        return [(u, self.msgid(u)) for u in self.seq if u is not None and self.msgid(u)]

    # --- commands and responses
    def cmd(self, *parts, expunge=True, no_ok=False):
        """Send one command, absorb its untagged responses into the view.
        expunge=False: EXPUNGE responses are not allowed (FETCH, STORE,
        SEARCH by sequence number). BAD always fails; NO fails unless
        no_ok."""
        text = "".join(p if isinstance(p, str) else
                       ("{%d}" % len(p.data) if isinstance(p, Literal) else p.decode())
                       for p in parts)
        self._cmd = text[:120]
        self._fetched = []
        self._search = None
        self._copyuid = None
        r = self.conn.command(*parts)
        self.log(text[:200], r)
        self.absorb(r.untagged, expunge)
        if r.status == "BAD" or (r.status == "NO" and not no_ok):
            self.fail("%r -> %r" % (text[:200], r.line))
        if r.status not in ("OK", "NO", "BAD"):
            self.fail("tagged status %r" % r.line)
        return r

    def absorb(self, responses, expunge=True):
        for u in responses:
            m = re.match(rb"\* (\d+) (EXISTS|EXPUNGE|FETCH|RECENT)\b ?", u, re.I)
            if m:
                n = int(m.group(1))
                kind = m.group(2).upper()
                if kind == b"EXISTS":
                    self.on_exists(n)
                elif kind == b"EXPUNGE":
                    self.on_expunge(n, expunge)
                elif kind == b"FETCH":
                    self.on_fetch(n, u[m.end():])
                continue
            up = u.upper()
            if up.startswith(b"* SEARCH"):
                self._search = [int(x) for x in u[8:].split()]
                self._view_at_search = list(self.seq)
            elif up.startswith(b"* OK [COPYUID "):
                self._copyuid = u[len(b"* OK ["):].split(b"]")[0].decode()
            elif up.startswith(b"* OK [UIDVALIDITY "):
                self.model.check_uidvalidity(self.folder, int(u.split()[3].rstrip(b"]")),
                                             self.where())
            elif up.startswith(b"* FLAGS "):
                names = set(parse(u[8:])[0])
                if not names <= VOCABULARY:
                    self.fail("FLAGS names flags nobody set: %r" % (names - VOCABULARY))
            elif up.startswith((b"* BYE", b"* NO", b"* BAD")):
                self.fail("unexpected %r" % u[:200])

    def on_exists(self, n):
        if n < len(self.seq):
            self.fail("EXISTS %d with %d messages in the view and no EXPUNGE"
                      % (n, len(self.seq)))
        self.seq += [None] * (n - len(self.seq))

    def on_expunge(self, n, allowed):
        if not allowed:
            self.fail("EXPUNGE %d sent during a command that forbids it (RFC 3501 7.4.1)" % n)
        if not 1 <= n <= len(self.seq):
            self.fail("EXPUNGE %d with %d messages in the view" % (n, len(self.seq)))
        uid = self.seq.pop(n - 1)
        if uid is None:
            return
        msgid = self.msgid(uid)
        if self.folder == INBOX:
            if msgid is not None and not self.model.gone(msgid):
                self.fail("EXPUNGE of UID %d (%s), which its owner (session %d) neither "
                          "deleted nor moved" % (uid, msgid, self.model.owner(msgid)))
        elif uid not in self.own_expunging:
            self.fail("EXPUNGE of UID %d in %s, which this session did not expunge"
                      % (uid, self.folder))

    def on_fetch(self, n, rest):
        if not 1 <= n <= len(self.seq):
            self.fail("FETCH for sequence number %d, but EXISTS said %d" % (n, len(self.seq)))
        items = parse(rest)[0]
        d = {}
        for k in range(0, len(items) - 1, 2):
            d[items[k].upper() if isinstance(items[k], str) else items[k]] = items[k + 1]
        uid = self.seq[n - 1]
        if "UID" in d:
            got = int(d["UID"])
            if uid is None:
                self.seq[n - 1] = uid = got
                self.learned.add(got)
                self.check_order(n - 1)
                self.model.seen_uid(self.folder, got)
            elif uid != got:
                self.fail("FETCH %d says UID %d, the view says UID %d" % (n, got, uid))
        self._fetched.append((n, uid, d))
        hdr = [v for k, v in d.items() if isinstance(k, str) and k.startswith("BODY[HEADER.FIELDS")]
        if hdr and uid is not None and hdr[0] is not None:
            mm = MSGID_RE.search(hdr[0])
            if not mm:
                self.fail("UID %d has no Message-ID: %r" % (uid, hdr[0]))
            self.model.bind(self.folder, uid, mm.group(1).decode(), self.where())
        if "FLAGS" in d and uid is not None:
            self.check_flags(uid, set(d["FLAGS"]) - {"\\Recent"})

    def check_order(self, k):
        prev = next((u for u in reversed(self.seq[:k]) if u is not None), 0)
        nxt = next((u for u in self.seq[k + 1:] if u is not None), None)
        u = self.seq[k]
        if not prev < u or (nxt is not None and not u < nxt):
            self.fail("UIDs not strictly increasing with sequence numbers at %d: %d, %d, %s"
                      % (k + 1, prev, u, nxt))

    def check_view(self):
        """The whole view: known UIDs strictly increasing."""
        known = [u for u in self.seq if u is not None]
        if any(a >= b for a, b in zip(known, known[1:])):
            self.fail("UIDs of the view not strictly increasing: %r" % known)

    def check_flags(self, uid, flags):
        if not flags <= VOCABULARY:
            self.fail("UID %d has flags nobody set: %r" % (uid, flags - VOCABULARY))
        msgid = self.msgid(uid)
        if msgid is None:
            return
        if self.folder == INBOX:
            for f in self.model.flags_of(self.i, msgid):
                want = self.model.flag(msgid, f)
                if (f in flags) == want:
                    continue
                if (msgid, f) in self.pending and (f in flags) == self.pending[(msgid, f)]:
                    continue
                self.fail("lost flag: UID %d (%s) shows %s %s, but session %d (its only "
                          "writer) %s it; flags %r" % (uid, msgid, f, "set" if f in flags else
                                                       "clear", self.i,
                                                       "set" if want else "cleared",
                                                       sorted(flags)))
        else:
            c = self.model.folders[self.i].get(uid)
            if c is None:
                return
            for f, want in c.known.items():
                if (f in flags) != want:
                    self.fail("%s UID %d (%s): %s %s, expected %s" % (
                        self.folder, uid, msgid, f, "set" if f in flags else "clear",
                        "set" if want else "clear"))
            if c.exact and flags != {f for f, v in c.known.items() if v}:
                self.fail("%s UID %d flags %r, expected %r" % (
                    self.folder, uid, sorted(flags),
                    sorted(f for f, v in c.known.items() if v)))

    # --- the view
    def select(self, folder):
        self.folder = folder
        self.seq = []
        r = self.cmd("SELECT ", quote(folder))
        m = re.search(r"UIDVALIDITY (\d+)", " ".join(r.find(r"UIDVALIDITY")))
        if not m:
            self.fail("SELECT %s without UIDVALIDITY" % folder)
        self.fill()
        return r

    def fill(self, rounds=40, patience=6):
        """Learn the UID and Message-ID of every message of the view.
        New messages may keep coming while it works: it gives up quietly
        after `rounds` commands, and fails only when the same entry stays
        unresolved through `patience` rounds (with NOOPs between)."""
        stuck, since = None, 0
        for _ in range(rounds):
            missing = [k for k, u in enumerate(self.seq) if u is None]
            unbound = [u for u in self.seq if u is not None and self.msgid(u) is None]
            if not missing and not unbound:
                self.check_view()
                return
            if missing:
                # (after a SELECT most UIDs are bound already: no headers then)
                r = self.cmd("FETCH %d:%d (UID FLAGS%s)" % (
                    missing[0] + 1, missing[-1] + 1,
                    "" if len(missing) > 20 else " " + HEADER_ITEM), expunge=False, no_ok=True)
                self.expect_expunged_no(r)
            unbound = [u for u in self.seq if u is not None and self.msgid(u) is None]
            if unbound:
                r = self.cmd("UID FETCH %s (UID FLAGS %s)" % (fmt_set(unbound), HEADER_ITEM),
                             no_ok=True)
                self.expect_expunged_no(r)
            # the first unresolved entry (UID, or the sequence number of a
            # placeholder), to tell slow progress from none
            first = next((("uid", u) for u in self.seq
                          if u is not None and self.msgid(u) is None), None)
            if first is None and None in self.seq:
                first = ("uid-after", next((u for u in reversed(self.seq[:self.seq.index(None)])
                                            if u is not None), 0))
            if first is None:
                continue
            since = since + 1 if first == stuck else 0
            stuck = first
            if since >= patience:
                self.fail("the view keeps a message without UID or Message-ID (%s %s): %r"
                          % (first + (self.seq,)))
            self.cmd("NOOP")
        self.check_view()

    def expect_expunged_no(self, r):
        if r.status == "NO" and "EXPUNGEISSUED" not in r.text:
            self.fail("%r" % r.line)

    # --- ownership helpers
    def mine(self):
        """(uid, msgid) of the messages of the view this session owns and
        that are neither doomed nor moving."""
        return [(u, m) for u, m in self.known()
                if self.model.owner(m) == self.i and not self.model.gone(m)]

    def fetch_result(self, uid):
        return [d for _, u, d in self._fetched if u == uid]

    def copy_known(self, msgid):
        """The flags a copy of msgid made now certainly has."""
        return {f: self.model.flag(msgid, f) for f in self.model.flags_of(self.i, msgid)}

    def add_copies(self, code, sources, where):
        """Record the COPYUID of a COPY/MOVE into the own folder; the
        sources it does not list must be gone."""
        folder = own_folder(self.i)
        parts = (code or "").split()
        if not parts or parts[0].upper() != "COPYUID":
            return []
        if len(parts) != 4:
            self.fail("malformed %r" % code)
        v, src, dst = int(parts[1]), uidset(parts[2]), uidset(parts[3])
        self.model.check_uidvalidity(folder, v, self.where())
        if len(src) != len(dst):
            self.fail("COPYUID %s: %d source and %d destination UIDs" % (code, len(src), len(dst)))
        before = self.model.highest(folder)
        for s, d in zip(src, dst):
            if s not in sources:
                self.fail("COPYUID names source UID %d, not in %r" % (s, sorted(sources)))
            if d <= before:
                self.fail("%s gave UID %d in %s, not above %d seen before" % (where, d, folder,
                                                                              before))
            msgid = sources[s]
            self.model.bind(folder, d, msgid, self.where())
            self.model.folders[self.i][d] = Copy(msgid, self.copy_known(msgid))
        return src

    # --- operations
    def step(self):
        ops, weights = zip(*self.WEIGHTS)
        op = self.rng.choices(ops, weights)[0]
        done = getattr(self, "op_" + op)()
        if done is not False:
            self.ops[op] += 1
        self.fill()

    def op_noop(self):
        self.cmd("NOOP")

    def _store(self, targets, flag, new, silent, use_uid):
        """STORE +/-flag on targets [(uid, msgid)], all owned by this session
        for that flag; the model is updated first, the reply checked."""
        olds = {}
        for u, m in targets:
            olds[m] = self.model.flag(m, flag)
            self.pending[(m, flag)] = olds[m]
            self.model.flags[m][flag] = new
        if use_uid:
            what = "UID STORE " + fmt_set(u for u, _ in targets)
        else:
            what = "STORE " + ",".join(str(self.seq.index(u) + 1) for u, _ in targets)
        try:
            r = self.cmd("%s %sFLAGS%s (%s)" % (what, "+" if new else "-",
                                                ".SILENT" if silent else "", flag),
                         expunge=use_uid, no_ok=True)
        finally:
            self.pending.clear()
        if r.status == "NO" and not any(self.model.gone(m) for _, m in targets):
            self.fail("STORE refused though no message is gone: %r" % r.line)
        if r.status == "OK" and not silent:
            for u, m in targets:
                if self.model.gone(m) or olds[m] == new:
                    continue
                got = [d for d in self.fetch_result(u) if "FLAGS" in d]
                if not got:
                    self.fail("STORE %s: no FETCH FLAGS for UID %d" % (flag, u))
                if (flag in got[-1]["FLAGS"]) != new:
                    self.fail("STORE %s%s on UID %d answered FLAGS %r" % (
                        "+" if new else "-", flag, u, got[-1]["FLAGS"]))

    def op_keyword(self):
        kw = self.model.session_keyword(self.i)
        cls = self.model.session_class(self.i)
        cands = [(u, m) for u, m in self.known() if self.model.messages[m].cls == cls]
        if not cands:
            return False
        targets = sorted(self.rng.sample(cands, min(len(cands), self.rng.choice((1, 1, 1, 2, 3)))))
        if len(targets) == 1 and self.rng.random() < 0.85:
            new = not self.model.flag(targets[0][1], kw)      # a toggle
        else:
            new = self.rng.random() < 0.6
        self._store(targets, kw, new, self.rng.random() < 0.5, self.rng.random() < 0.7)

    def op_sysflag(self):
        cands = self.mine()
        if not cands:
            return False
        u, m = self.rng.choice(cands)
        f = self.rng.choice(SYSFLAGS)
        self._store([(u, m)], f, not self.model.flag(m, f), self.rng.random() < 0.5,
                    self.rng.random() < 0.7)

    def op_append(self):
        msgid = self.model.new_message("append", owner=self.i)
        flags = [f for f in SYSFLAGS if self.rng.random() < 0.25]
        if self.model.messages[msgid].cls == self.model.session_class(self.i) and \
                self.rng.random() < 0.5:
            flags.append(self.model.session_keyword(self.i))
        self.model.flags[msgid].update((f, True) for f in flags)
        before = self.model.highest(INBOX)
        parts = ["APPEND INBOX"]
        if flags or self.rng.random() < 0.5:
            parts.append(" (%s)" % " ".join(flags))
        if self.rng.random() < 0.3:
            parts.append(' "%s"' % imap_date(time.time() - self.rng.randrange(86400 * 30)))
        parts += [" ", Literal(message_bytes(msgid, "append"), plus=self.rng.random() < 0.5)]
        r = self.cmd(*parts)
        code = r.code() or ""
        mm = re.match(r"APPENDUID (\d+) (\d+)$", code, re.I)
        if not mm:
            self.fail("APPEND OK without APPENDUID: %r" % r.line)
        self.model.check_uidvalidity(INBOX, int(mm.group(1)), self.where())
        uid = int(mm.group(2))
        if uid <= before:
            self.fail("APPENDUID %d is not above UID %d, seen before the APPEND" % (uid, before))
        self.model.bind(INBOX, uid, msgid, self.where())
        with self.model.lock:
            self.model.appended.add(msgid)

    def op_copy(self):
        cands = self.known()
        if not cands:
            return False
        picked = sorted(self.rng.sample(cands, min(len(cands), self.rng.choice((1, 1, 2, 3)))))
        sources = dict(picked)
        use_uid = self.rng.random() < 0.8
        if use_uid:
            what = "UID COPY " + fmt_set(sources)
        else:
            what = "COPY " + ",".join(str(self.seq.index(u) + 1) for u in sources)
        r = self.cmd("%s %s" % (what, own_folder(self.i)), no_ok=True)
        if r.status == "NO":
            if not any(self.model.gone(m) for m in sources.values()):
                self.fail("COPY refused though no message is gone: %r" % r.line)
            return
        copied = self.add_copies(r.code(), sources, "COPY")
        if not copied and not all(self.model.gone(m) for m in sources.values()):
            self.fail("COPY OK without COPYUID: %r" % r.line)
        for u, m in sources.items():
            if u not in copied and not self.model.gone(m):
                self.fail("COPY left out UID %d (%s), which is not gone" % (u, m))

    def op_move(self):
        cands = self.mine()
        if not cands:
            return False
        u, m = self.rng.choice(cands)
        with self.model.lock:
            self.model.moving.add(m)
        if self.rng.random() < 0.75:
            what = "UID MOVE %d" % u
        else:
            what = "MOVE %d" % (self.seq.index(u) + 1)
        r = self.cmd("%s %s" % (what, own_folder(self.i)))
        # RFC 6851: COPYUID in an untagged OK (or the tagged one)
        code = self._copyuid or r.code()
        if not (code or "").upper().startswith("COPYUID "):
            self.fail("MOVE without COPYUID: %r" % r.line)
        if self.add_copies(code, {u: m}, "MOVE") != [u]:
            self.fail("MOVE of UID %d: COPYUID %s" % (u, code))
        if u in self.seq:
            self.fail("MOVE of UID %d: no EXPUNGE for it" % u)
        with self.model.lock:
            self.model.moved.add(m)

    def op_expunge(self):
        cands = self.mine()
        if not cands:
            return False
        targets = sorted(self.rng.sample(cands, min(len(cands), self.rng.choice((1, 1, 2)))))
        with self.model.lock:
            for _, m in targets:
                self.model.doomed.add(m)
        self._store(targets, DELETED, True, True, True)
        uids = [u for u, _ in targets]
        if self.rng.random() < 0.65:
            self.cmd("UID EXPUNGE " + fmt_set(uids))
        else:
            self.cmd("EXPUNGE")
        if any(u in self.seq for u in uids):
            self.cmd("NOOP")
        left = [u for u in uids if u in self.seq]
        if left:
            self.fail("UIDs %r still there after EXPUNGE and NOOP" % left)

    def op_check(self):
        """The view against FETCH 1:*, UID SEARCH ALL and the Message-IDs."""
        self.cmd("NOOP")
        self.fill()
        if self.seq:
            view = list(self.seq)
            r = self.cmd("FETCH 1:* (UID FLAGS)", expunge=False, no_ok=True)
            self.expect_expunged_no(r)
            got = {n: u for n, u, d in self._fetched if "UID" in d}
            if any(n > len(view) for n in got):
                self.fail("FETCH 1:* answered beyond the %d announced messages" % len(view))
            for n, u in enumerate(view, 1):
                if n not in got and not self.may_vanish(u):
                    self.fail("FETCH 1:* left out %d (UID %d), which is not gone" % (n, u))
        self.fill()
        self.learned = set()
        r = self.cmd("UID SEARCH ALL")
        found = self._search
        if found is None:
            self.fail("UID SEARCH ALL without * SEARCH: %r" % r)
        # the view when '* SEARCH' came, and (new messages announced after
        # it in the same response) every UID learned since: while fill()
        # works, new mail keeps coming and others expunge, so a message
        # may enter the view and leave it again before fill() returns
        before = [u for u in self._view_at_search if u is not None]
        self.fill()
        allowed = set(before) | set(self.seq) | self.learned
        extra = set(found) - allowed
        if extra:
            self.fail("UID SEARCH ALL returned UIDs %r that the view never had" % sorted(extra))
        for u in before:
            if u not in found and not self.may_vanish(u):
                self.fail("UID SEARCH ALL left out UID %d (%s), which is not gone"
                          % (u, self.msgid(u)))
        # the UID <-> Message-ID binding and the content still hold
        sample = self.rng.sample(self.known(), min(4, len(self.known())))
        if sample:
            uids = sorted(u for u, _ in sample)
            r = self.cmd("UID FETCH %s (UID %s BODY.PEEK[TEXT])" % (fmt_set(uids), HEADER_ITEM),
                         no_ok=True)
            self.expect_expunged_no(r)
            for _, u, d in self._fetched:
                if u in uids and d.get("BODY[TEXT]") is not None and \
                        d["BODY[TEXT]"] != body_of(self.msgid(u)):
                    self.fail("UID %d (%s): wrong body %r" % (u, self.msgid(u),
                                                              d["BODY[TEXT]"][:100]))

    def op_idle(self):
        self._cmd = "IDLE"
        tag = self.conn.tag()
        self.conn.send(tag + " IDLE\r\n")
        self.log(tag + " IDLE")
        got = []
        for _ in range(100):
            resp = self.conn.response()
            if resp.startswith(b"+"):
                break
            if resp.startswith(tag.encode() + b" "):
                self.fail("IDLE refused: %r" % resp)
            got.append(resp)
        else:
            self.fail("no continuation for IDLE")
        _, more = self.conn.read_until(r"\A(?!)", timeout=self.rng.uniform(0.1, 0.6))
        got += more
        self.conn.send(b"DONE\r\n")
        r = self.conn.read_tagged(tag)
        self.log("DONE", r, got + list(r.untagged))
        self.absorb(got + list(r.untagged))
        if r.status != "OK":
            self.fail("IDLE ended with %r" % r.line)

    def op_fetch_seen(self):
        cands = self.mine()
        if not cands:
            return False
        u, m = self.rng.choice(cands)
        self.pending[(m, "\\Seen")] = self.model.flag(m, "\\Seen")
        self.model.flags[m]["\\Seen"] = True
        try:
            self.cmd("UID FETCH %d (BODY[TEXT])" % u)
        finally:
            self.pending.clear()
        got = self.fetch_result(u)
        bodies = [d["BODY[TEXT]"] for d in got if "BODY[TEXT]" in d]
        if bodies != [body_of(m)]:
            self.fail("UID %d (%s): BODY[TEXT] %r" % (u, m, [b[:80] for b in bodies]))

    def op_status(self):
        folder = own_folder(self.i)
        r = self.cmd("STATUS %s (MESSAGES UIDNEXT UIDVALIDITY)" % folder)
        v = parse(r.data("STATUS")[0])[1]
        st = {k.upper(): int(x) for k, x in zip(v[::2], v[1::2])}
        self.model.check_uidvalidity(folder, st["UIDVALIDITY"], self.where())
        mine = self.model.folders[self.i]
        if st["MESSAGES"] != len(mine):
            self.fail("STATUS %s: MESSAGES %d, the session put %d there" % (folder, st["MESSAGES"],
                                                                           len(mine)))
        if st["UIDNEXT"] <= self.model.highest(folder):
            self.fail("STATUS %s: UIDNEXT %d, but UID %d exists" % (folder, st["UIDNEXT"],
                                                                   self.model.highest(folder)))

    def op_visit(self):
        """Leave INBOX (by SELECT, CLOSE or UNSELECT), SELECT the own
        folder: exactly the copies, with their flags; change some, expunge
        one; then back to INBOX, where only doomed or moved messages may
        have gone meanwhile."""
        old = [u for u in self.seq if u is not None]
        folder = own_folder(self.i)
        mine = self.model.folders[self.i]
        leave = self.rng.choice(("CLOSE", "UNSELECT", None))
        if leave:
            # CLOSE expunges every \Deleted message silently: all doomed
            self.cmd(leave)
            self.folder, self.seq = None, []
        self.select(folder)
        if sorted(self.seq) != sorted(mine):
            self.fail("%s holds UIDs %r, the session put %r there" % (folder, self.seq,
                                                                      sorted(mine)))
        if self.seq:
            # the COPYUID bindings against the Message-IDs, the flags known
            self.cmd("FETCH 1:* (UID FLAGS %s)" % HEADER_ITEM, expunge=False)
            for _, u, d in self._fetched:
                c = mine[u]
                c.known = {f: f in d["FLAGS"] for f in VOCABULARY}
                c.exact = True
            for u in self.rng.sample(self.seq, min(2, len(self.seq))):
                flags = sorted(self.rng.sample(sorted(VOCABULARY - {DELETED}), 3))
                mine[u].known = {f: f in flags for f in VOCABULARY}
                self.cmd("UID STORE %d FLAGS (%s)" % (u, " ".join(flags)))
            if self.rng.random() < 0.5:
                u = self.rng.choice(self.seq)
                self.own_expunging.add(u)
                mine[u].known[DELETED] = True
                self.cmd("UID STORE %d +FLAGS.SILENT (\\Deleted)" % u)
                self.cmd("UID EXPUNGE %d" % u)
                if u in self.seq:
                    self.fail("%s UID %d still there after UID EXPUNGE" % (folder, u))
                del mine[u]
        self.select(INBOX)
        for u in old:
            if u not in self.seq and not self.may_vanish(u):
                self.fail("UID %d (%s) vanished from INBOX while %s was selected"
                          % (u, self.msgid(u), folder))

    # --- the thread
    def run(self, ops, deadline, stop, errors, barrier=None):
        try:
            self.connect()
            if barrier is not None:
                barrier.wait(60)
            for _ in range(ops):
                if stop.is_set() or time.monotonic() > deadline:
                    break
                self.step()
            self.cmd("NOOP")
            self.fill()
            self.logout()
        except threading.BrokenBarrierError:
            stop.set()      # another session failed before the start
        except Exception as e:      # reported by the test, with the transcript
            detail = "" if isinstance(e, Violation) else "\n" + traceback.format_exc()
            errors.append("%s: %s%s\n  seed %d; the last commands of session %d:\n    %s"
                          % (type(e).__name__, e, detail, self.model.seed, self.i,
                             "\n    ".join(list(self.transcript)[-40:])))
            stop.set()
            if barrier is not None:
                barrier.abort()
        finally:
            if self.conn is not None:
                self.conn.close()
            with self.model.lock:
                self.model.ops.update(self.ops)
