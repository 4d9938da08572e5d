"""APPEND messages are spooled to disk while they arrive (docs/security.md,
"Resource limits", after login): a message larger than IMAP_APPEND_MEM_MAX
(64 KiB) goes to a file in the user's tmp/ as it comes, IMAP_SPOOL_CHUNK
bytes at a time, instead of being assembled in memory. SQLite.

- six concurrent 40 MB APPENDs, each paused with half its literal sent:
  the server grows by less than 30 MB in all (each of them used to hold
  its 40 MB and more); finished, they arrive byte-exact (CRLF stored as
  LF), and tmp/ is empty again;
- a client that disconnects in the middle of a literal leaves no file in
  tmp/ once the server has noticed, synchronising literal or LITERAL+;
- over quota: NO [OVERQUOTA], nothing stored, no file left in tmp/;
- spooled APPENDs keep flags, date (INTERNALDATE) and APPENDUID, a
  LITERAL+ command pipelined after one runs, and a message just over or at
  the threshold is stored byte-exact (the integration suite covers small
  APPENDs).
"""

import base64
import calendar
import os
import re
import socket
import time

import hostile_util
from hostile_util import ALICE, BOB, PASSWORD, healthy
from harness import procs
from harness.maildir import folder_dir

MEM_MAX = 64 * 1024            # IMAP_APPEND_MEM_MAX
BIG = 40 * 1024 * 1024
CLIENTS = 6
GROWTH_MAX_KB = 30 * 1024
# ASan keeps freed blocks (every input buffer the literals were read
# through) in a quarantine of up to 256 MB, resident: that server gets a
# small one (ASAN_OPTIONS quarantine_size_mb), and a bound with room for
# its redzones and shadow memory.
GROWTH_MAX_KB_ASAN = 40 * 1024


def is_asan(petrel_bin):
    out = os.popen("nm -D '%s' 2>/dev/null" % petrel_bin).read()
    return "__asan_init" in out


def server_rss_kb(srv):
    """VmRSS of `petrel serve` and all its children, in kB."""
    master = srv.proc.pid
    return procs.rss_kb(master) + sum(procs.rss_kb(p) for p in procs.children(master))


def body(size):
    """CRLF lines of base64 text, a bare CR now and then; size bytes."""
    chunk = b"".join(base64.b64encode(os.urandom(57)) + (b"\r\n" if i % 97 else b"\r x\r\n")
                     for i in range(4096))
    return (chunk * (size // len(chunk) + 1))[:size - 2] + b"\r\n"


def message(i, size):
    head = b"Subject: spooled %d\r\nMessage-ID: <spool-%d@petrel.test>\r\n\r\n" % (i, i)
    return head + body(size - len(head))


def tmp_dir(inst, address=ALICE):
    return os.path.join(folder_dir(inst, address, "INBOX"), "tmp")


def tmp_files(inst, address=ALICE):
    d = tmp_dir(inst, address)
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def stored(inst, address=ALICE):
    """{Message-ID: file bytes} of every message in INBOX."""
    out = {}
    d = folder_dir(inst, address, "INBOX")
    for sub in ("new", "cur"):
        p = os.path.join(d, sub)
        for n in os.listdir(p) if os.path.isdir(p) else []:
            with open(os.path.join(p, n), "rb") as f:
                data = f.read()
            m = re.search(rb"Message-ID: <([^>]*)>", data)
            out[m.group(1).decode() if m else n] = data
    return out


def wait_for(cond, timeout=15):
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


def start_append(c, size, tag="S1", plus=False, extra=b""):
    """Send an APPEND's command line; for a synchronising literal wait for
    the '+' (an answer instead of it is returned)."""
    c.send(b"%s APPEND INBOX%s {%d%s}\r\n" % (tag.encode(), extra, size, b"+" if plus else b""))
    if plus:
        return None
    r = c.response()
    assert r.startswith(b"+"), r
    return r


def test_six_paused_40mb_appends(sqlite_instance, all_start, petrel_bin, monkeypatch):
    """Six 40 MB APPENDs at once, each paused with half its literal sent:
    the server grows by less than 30 MB while they wait (each used to hold
    its literal in memory: 120 MB more), the spool files are in tmp/;
    finished, every message is stored byte-exact and tmp/ is empty."""
    hostile_util.add_users(sqlite_instance)
    if is_asan(petrel_bin):
        monkeypatch.setenv("ASAN_OPTIONS", ":".join(
            o for o in (os.environ.get("ASAN_OPTIONS"), "quarantine_size_mb=4") if o))
    srv = all_start(sqlite_instance, ("message_size_limit=%d" % (BIG + 1024),))
    msgs = [message(i, BIG) for i in range(CLIENTS)]
    conns = []
    try:
        for i in range(CLIENTS):
            c = srv.imap(timeout=120)
            c.login(ALICE, PASSWORD)
            conns.append(c)
        before = server_rss_kb(srv)
        for i, c in enumerate(conns):
            start_append(c, len(msgs[i]), plus=(i % 2 == 1))
            c.sock.sendall(memoryview(msgs[i])[:BIG // 2])
        # the server reads what is in the socket buffers, then waits
        time.sleep(2.0)
        rss = server_rss_kb(srv)
        limit = GROWTH_MAX_KB_ASAN if is_asan(petrel_bin) else GROWTH_MAX_KB
        print("server RSS %d kB before, %d kB with %d APPENDs of %d MB half sent "
              "(limit +%d kB)" % (before, rss, CLIENTS, BIG >> 20, limit))
        assert rss - before < limit, "server RSS grew by %d kB" % (rss - before)
        assert wait_for(lambda: len(tmp_files(sqlite_instance)) == CLIENTS), \
            tmp_files(sqlite_instance)
        sizes = [os.path.getsize(os.path.join(tmp_dir(sqlite_instance), n))
                 for n in tmp_files(sqlite_instance)]
        assert all(s > BIG // 4 for s in sizes), sizes
        # the rest
        for i, c in enumerate(conns):
            c.sock.sendall(memoryview(msgs[i])[BIG // 2:])
            c.send(b"\r\n")
        for i, c in enumerate(conns):
            r = c.read_tagged("S1")
            assert r.status == "OK" and (r.code() or "").startswith("APPENDUID"), r
        got = stored(sqlite_instance)
        assert len(got) == CLIENTS, sorted(got)
        for i in range(CLIENTS):
            want = msgs[i].replace(b"\r\n", b"\n")
            have = got.get("spool-%d@petrel.test" % i)
            assert have is not None and len(have) == len(want) and have == want, \
                (i, None if have is None else len(have), len(want))
        assert tmp_files(sqlite_instance) == []
        # RFC822.SIZE counts CRLF; the first bytes as sent
        c = conns[0]
        c.select("INBOX")
        r = c.ok("FETCH 1:* (RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        sizes = sorted(int(f["RFC822.SIZE"]) for f in r.fetches().values())
        assert sizes == sorted(len(m) for m in msgs), sizes
        for c in conns:
            c.logout()
        conns = []
    finally:
        for c in conns:
            c.close()
    healthy(srv)


def test_disconnect_mid_literal_leaves_no_file(sqlite_instance, all_start):
    """A client that goes away in the middle of an APPEND's literal
    (synchronising or LITERAL+) leaves nothing in tmp/ once the server has
    noticed, and nothing is stored."""
    hostile_util.add_users(sqlite_instance)
    srv = all_start(sqlite_instance)
    data = message(1, 8 * 1024 * 1024)
    for plus in (False, True):
        c = srv.imap(timeout=60)
        c.login(ALICE, PASSWORD)
        start_append(c, len(data), plus=plus)
        c.sock.sendall(memoryview(data)[:3 * 1024 * 1024])
        assert wait_for(lambda: len(tmp_files(sqlite_instance)) == 1), \
            tmp_files(sqlite_instance)
        c.sock.shutdown(socket.SHUT_RDWR)
        c.close()
        assert wait_for(lambda: tmp_files(sqlite_instance) == []), tmp_files(sqlite_instance)
    # killed while a chunk is being written, too: many clients at once
    conns = []
    for i in range(8):
        c = srv.imap(timeout=60)
        c.login(ALICE, PASSWORD)
        start_append(c, len(data), plus=True)
        conns.append(c)
    for c in conns:
        c.sock.sendall(memoryview(data)[:1024 * 1024 + 12345])
    for c in conns:
        c.sock.shutdown(socket.SHUT_RDWR)
        c.close()
    assert wait_for(lambda: tmp_files(sqlite_instance) == []), tmp_files(sqlite_instance)
    assert stored(sqlite_instance) == {}
    healthy(srv)


def test_spooled_append_over_quota(sqlite_instance, all_start):
    """A spooled APPEND over the user's quota: NO [OVERQUOTA] after the
    literal, nothing stored, nothing left in tmp/; the session goes on."""
    sqlite_instance.add_user(ALICE, PASSWORD, "--quota", "1000000")
    sqlite_instance.add_user(BOB, PASSWORD)
    srv = all_start(sqlite_instance)
    with srv.imap(timeout=60) as c:
        c.login(ALICE, PASSWORD)
        for plus in (False, True):
            data = message(7, 3 * 1024 * 1024)
            start_append(c, len(data), plus=plus, tag="Q1")
            c.sock.sendall(data)
            c.send(b"\r\n")
            r = c.read_tagged("Q1")
            assert r.status == "NO" and (r.code() or "").upper() == "OVERQUOTA", r
            assert tmp_files(sqlite_instance) == []
        # under the quota: stored
        small = message(8, 200 * 1024)
        r = c.append("INBOX", small)
        assert r.status == "OK", r
        assert list(stored(sqlite_instance).values()) == [small.replace(b"\r\n", b"\n")]
        assert tmp_files(sqlite_instance) == []
        c.logout()
    healthy(srv)


def test_spooled_append_flags_date_and_pipelining(sqlite_instance, all_start):
    """Messages at and just over the threshold are stored byte-exact and
    fetched back as sent; a spooled APPEND keeps its flags, its date
    (INTERNALDATE) and answers APPENDUID; a command pipelined after a
    LITERAL+ one runs; a second large literal in the command (MULTIAPPEND)
    is spooled too."""
    hostile_util.add_users(sqlite_instance)
    srv = all_start(sqlite_instance)
    at = message(1, MEM_MAX)
    over = message(2, MEM_MAX + 1)
    big = message(3, 600 * 1024)
    with srv.imap(timeout=60) as c:
        c.login(ALICE, PASSWORD)
        assert c.append("INBOX", at).status == "OK"
        assert c.append("INBOX", over, plus=True).status == "OK"
        r = c.append("INBOX", big, flags="\\Flagged $Work", date="03-Feb-2001 04:05:06 +0000")
        assert r.status == "OK" and (r.code() or "").startswith("APPENDUID"), r
        # LITERAL+ with a NOOP in the same write
        c.send(b"P1 APPEND INBOX {%d+}\r\n%s\r\nP2 NOOP\r\n" % (len(over), over))
        assert c.read_tagged("P1").status == "OK"
        assert c.read_tagged("P2").status == "OK"
        # a second large literal in the same command (MULTIAPPEND): spooled
        # too, after its '+'
        second = message(4, MEM_MAX + 10)
        c.send(b"P3 APPEND INBOX {%d+}\r\n%s {%d}\r\n" % (len(over), over, len(second)))
        assert c.line().startswith(b"+")
        c.send(second + b"\r\n")
        r = c.read_tagged("P3")
        assert r.status == "OK" and (r.code() or "").startswith("APPENDUID"), r
        assert tmp_files(sqlite_instance) == []
        c.select("INBOX")
        r = c.ok("FETCH 1:* (UID FLAGS INTERNALDATE BODY.PEEK[])")
        f = r.fetches()
        assert [f[n]["BODY[]"] for n in sorted(f)] == [at, over, big, over, over, second], \
            [len(f[n]["BODY[]"]) for n in sorted(f)]
        assert {"\\Flagged", "$Work"} <= set(f[3]["FLAGS"]), f[3]["FLAGS"]
        d = f[3]["INTERNALDATE"]
        d = d.decode() if isinstance(d, bytes) else d
        t = time.strptime(d[:20].strip(), "%d-%b-%Y %H:%M:%S")
        off = d.strip()[-5:]
        ts = calendar.timegm(t) - (1 if off[0] != "-" else -1) * (
            int(off[1:3]) * 3600 + int(off[3:5]) * 60)
        assert ts == calendar.timegm((2001, 2, 3, 4, 5, 6, 0, 0, 0)), d
        c.logout()
    healthy(srv)
