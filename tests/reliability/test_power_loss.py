"""Power loss, simulated: mail_root and queue_dir live on durafs (a FUSE
file system that keeps only what was synced; see durafs.py), SMTP clients
deliver to one and two local mailboxes and to a remote address (the queue),
and an IMAP client APPENDs, COPYs and flags messages. At a random moment the
power fails: durafs saves its durable state, every petrel process is
SIGKILLed, and the saved state is all that is left.

Then every message a client saw acknowledged (250 after DATA, the tagged OK
of APPEND and COPY) before the cut must be there, whole: in each
recipient's Maildir, in the queue, in the IMAP folder; and a new
`petrel serve` on what is left serves it over IMAP.

This complements test_syscall_order.py (which reads the order of the
syscalls of single commands) with a load: many sessions at once, the
queue manager and IMAP flag changes running beside the deliveries.
Two layouts: the Maildirs and the queue directly on durafs (every missing
fsync of a file or a directory shows), and on an ext4 file system in an
image file on durafs, mounted through a loop device (the loop device turns
ext4's cache flushes into fsyncs of the image: what is left at the cut is
the disk as ext4 had flushed it, with its journal, so petrel's ext4 path,
sync_file_range before the directory's journal commit, is what runs).

Seeded: PETREL_POWER_SEED=N replays a run's choices (not its timing).
"""

import imaplib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from harness import procs, server
from harness.instance import PASSWORD
from crash_util import (ACKED, Load, build_message, maildir_path, maildir_report,
                        pick_size)

HERE = os.path.dirname(os.path.abspath(__file__))
ALICE = "alice@example.test"
BOB = "bob@example.test"
FWD = "fwd@example.test"          # an alias to a remote address: the queue
MOUNT_WAIT = 15
LOAD_TIME = (2.0, 5.0)            # seconds of load before the cut (random)
MIN_ACKED = 20                    # ... and at least this many SMTP acknowledgements
MIN_IMAP = 4                      # ... and IMAP ones
LOAD_BOUND = 60                   # never more than this, whatever happens

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="no /dev/fuse")


def control(sock_path, command, timeout=60):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(sock_path)
        s.sendall(command.encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    reply = buf.decode().strip()
    assert reply.startswith("OK"), "durafs %s: %r" % (command, reply)
    return reply


class DuraMount:
    """durafs mounted at `mountpoint`, controlled through `ctl`."""

    def __init__(self, mountpoint, ctl, logpath):
        self.mountpoint, self.ctl = mountpoint, ctl
        os.makedirs(mountpoint, exist_ok=True)
        self.log = open(logpath, "wb")
        self.proc = subprocess.Popen(
            [sys.executable if sys.executable.startswith("/usr/bin/") else "/usr/bin/python3",
             os.path.join(HERE, "durafs.py"), mountpoint, "--control", ctl],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + MOUNT_WAIT
        while time.monotonic() < deadline:
            if os.path.ismount(mountpoint) and os.path.exists(ctl):
                return
            assert self.proc.poll() is None, "durafs exited: %s" % open(logpath).read()
            time.sleep(0.05)
        self.close()
        raise AssertionError("durafs did not mount %s in %d s" % (mountpoint, MOUNT_WAIT))

    def command(self, line):
        return control(self.ctl, line)

    def close(self):
        if os.path.ismount(self.mountpoint):
            subprocess.run(["umount", "-l", self.mountpoint], check=False)
        procs.terminate(self.proc)
        self.log.close()


def move_onto(src, dest):
    """Put src's tree at dest (which is on durafs) and leave a symlink at src,
    so that every path petrel knows (the users' home and maildir columns
    included) now leads onto durafs."""
    shutil.copytree(src, dest, symlinks=True)
    for root, dirs, files in os.walk(src):
        rel = os.path.relpath(root, src)
        st = os.lstat(root)
        os.chown(os.path.join(dest, rel), st.st_uid, st.st_gid)
        for n in files:
            st = os.lstat(os.path.join(root, n))
            os.lchown(os.path.join(dest, rel, n), st.st_uid, st.st_gid)
    shutil.rmtree(src)
    os.symlink(dest, src)


def relink(link, target):
    os.unlink(link)
    os.symlink(target, link)


class ImapLoad:
    """One IMAP session as alice: APPEND a message to Work, COPY it to Keep,
    flag it (a rename in cur/), again and again (INBOX gets the SMTP load)."""

    def __init__(self, port, rng):
        self.port, self.rng = port, rng
        self.acked = []           # (id, folder, data) whose tagged OK arrived
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.error = None
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        try:
            c = imaplib.IMAP4("127.0.0.1", self.port, timeout=30)
            c.login(ALICE, PASSWORD)
            c.create("Keep")
            c.create("Work")
            c.select("Work")
            n = 0
            while not self.stop_ev.is_set() and n < 500:
                mid = "a-%05d" % n
                data = build_message(self.rng, mid, ALICE, [ALICE], pick_size(self.rng, 40000))
                typ, resp = c.append("Work", None, None, data)
                if typ != "OK":
                    break
                with self.lock:
                    self.acked.append((mid, "Work", data))
                m = re.search(rb"APPENDUID \d+ (\d+)", resp[0] or b"")
                if m:
                    uid = m.group(1).decode()
                    typ, _ = c.uid("COPY", uid, "Keep")
                    if typ == "OK":
                        with self.lock:
                            self.acked.append((mid, "Keep", data))
                    c.uid("STORE", uid, "+FLAGS", "(\\Seen)")
                n += 1
        except (OSError, imaplib.IMAP4.error, EOFError) as e:
            # the cut kills the server under it: only errors before it count
            if not self.stop_ev.is_set():
                self.error = repr(e)
        finally:
            self.done = True

    def snapshot(self):
        with self.lock:
            return list(self.acked)


def folder_files(maildir):
    out = {}
    for sub in ("new", "cur"):
        d = os.path.join(maildir, sub)
        if not os.path.isdir(d):
            continue
        for n in os.listdir(d):
            with open(os.path.join(d, n), "rb") as f:
                out[os.path.join(sub, n)] = f.read()
    return out


class Ext4Image:
    """An ext4 file system in `image` (on durafs), mounted at `mountpoint`
    through a loop device."""

    SIZE = "96M"

    def __init__(self, image, mountpoint):
        self.image, self.mountpoint, self.dev = image, mountpoint, None
        os.makedirs(mountpoint, exist_ok=True)
        subprocess.run(["truncate", "-s", self.SIZE, image], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-b", "4096", "-N", "8192", "-E",
                        "lazy_itable_init=0,lazy_journal_init=0,nodiscard", image],
                       check=True)

    def mount(self, image=None, readonly=False):
        self.dev = subprocess.run(["losetup", "-f", "--show", image or self.image],
                                  check=True, capture_output=True, text=True).stdout.strip()
        subprocess.run(["mount", "-t", "ext4"] + (["-o", "ro"] if readonly else [])
                       + [self.dev, self.mountpoint], check=True)

    def sync(self):
        subprocess.run(["sync", "-f", self.mountpoint], check=True)

    def unmount(self):
        if os.path.ismount(self.mountpoint):
            subprocess.run(["umount", self.mountpoint], check=False)
            if os.path.ismount(self.mountpoint):
                subprocess.run(["umount", "-l", self.mountpoint], check=False)
        if self.dev:
            subprocess.run(["losetup", "-d", self.dev], check=False)
            self.dev = None


@pytest.mark.parametrize("layout", ["durafs", "ext4"])
def test_acknowledged_mail_survives_power_loss(sqlite_instance, tmp_path, layout):
    seed = int(os.environ.get("PETREL_POWER_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    inst = sqlite_instance
    for a in (ALICE, BOB):
        inst.add_user(a, PASSWORD)
    inst.run("alias", "add", FWD, "someone@remote.test")
    mail_root = os.path.realpath(inst.mail_root)
    queue_dir = os.path.realpath(os.path.join(inst.dir, inst.config()["queue_dir"]))
    os.makedirs(queue_dir, exist_ok=True)
    for d in (maildir_path(inst, ALICE), maildir_path(inst, BOB)):
        assert os.path.isdir(d), d

    mnt = str(tmp_path / "durafs")
    fs = DuraMount(mnt, str(tmp_path / "durafs.ctl"), str(tmp_path / "durafs.log"))
    srv = ext4 = None
    try:
        top = mnt
        if layout == "ext4":
            top = str(tmp_path / "ext4")
            ext4 = Ext4Image(os.path.join(mnt, "disk.img"), top)
            fs.command("sync")
            ext4.mount()
        move_onto(mail_root, os.path.join(top, "mail"))
        move_onto(queue_dir, os.path.join(top, "queue"))
        if ext4:
            ext4.sync()
        fs.command("sync")

        # a relayhost that refuses: remote mail stays in the queue
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead_port = s.getsockname()[1]
        srv = server.start(inst, ("smtp", "imap"),
                           ("relayhost=[127.0.0.1]:%d" % dead_port, "queue_retry_min=1",
                            "workers=2"), timeout=60)
        choices = [[ALICE], [BOB], [ALICE, BOB], [FWD], [ALICE, FWD]]
        load = Load(srv.ports["smtp"], "sender@example.org", lambda r: r.choice(choices),
                    lambda r: pick_size(r, 65536), threads=6, tag="p", seed=seed)
        imap = ImapLoad(srv.ports["imap"], random.Random(seed + 1))
        load.start()
        imap.thread.start()
        until = time.monotonic() + rng.uniform(*LOAD_TIME)
        bound = time.monotonic() + LOAD_BOUND
        while time.monotonic() < bound and (time.monotonic() < until
                                            or load.acked_count() < MIN_ACKED
                                            or len(imap.snapshot()) < MIN_IMAP):
            assert imap.error is None, imap.error
            time.sleep(0.05)

        # the power fails: first what the clients have seen, then the cut
        with load.lock:
            acked = [s for s in load.sent if s.status == ACKED]
        imap_acked = imap.snapshot()
        load.stop_ev.set()
        imap.stop_ev.set()
        cut = fs.command("cut")
        pids, _ = procs.tree(srv.proc.pid)
        os.killpg(srv.proc.pid, signal.SIGKILL)
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        srv.proc.wait(timeout=30)
        load.stop(timeout=40)
        imap.thread.join(timeout=40)
        stats = fs.command("stats")
        saved = str(tmp_path / "saved")
        fs.command("dump " + saved)
    finally:
        if srv is not None and srv.proc.poll() is None:
            os.killpg(srv.proc.pid, signal.SIGKILL)
            srv.proc.wait(timeout=30)
        if ext4:
            ext4.unmount()
        fs.close()

    after = saved
    if layout == "ext4":
        # the disk as it was at the cut, mounted: the kernel replays the
        # journal; afterwards e2fsck must find the file system consistent
        img = os.path.join(saved, "disk.img")
        after = str(tmp_path / "after")
        ext4 = Ext4Image.__new__(Ext4Image)
        ext4.image, ext4.mountpoint, ext4.dev = img, after, None
        os.makedirs(after, exist_ok=True)
        ext4.mount()
    try:
        check_after(inst, after, mail_root, queue_dir, seed, cut, stats, acked, load,
                    imap, imap_acked)
    finally:
        if layout == "ext4":
            ext4.unmount()
    if layout == "ext4":
        fsck = subprocess.run(["e2fsck", "-fn", img], capture_output=True, text=True)
        assert fsck.returncode == 0, "e2fsck after the cut: %d\n%s%s" % (
            fsck.returncode, fsck.stdout, fsck.stderr)


def check_after(inst, after, mail_root, queue_dir, seed, cut, stats, acked, load,
                imap, imap_acked):
    assert len(acked) >= MIN_ACKED, "only %d SMTP acknowledgements in %d s (%s)" % (
        len(acked), LOAD_BOUND, load.counts())
    relink(mail_root, os.path.join(after, "mail"))
    relink(queue_dir, os.path.join(after, "queue"))

    # 1. every acknowledged local copy is in its Maildir, whole
    by_id = {s.id: s for s in load.sent}
    copies, problems, _ = maildir_report(inst, (ALICE, BOB), by_id)
    # APPENDed messages carry no trace fields: checked below, by content
    problems = [p for p in problems if "X-Crash-Id: a-" not in p]
    lost = []
    for s in acked:
        for r in s.rcpts:
            if r != FWD and not copies.get((s.id, r.lower())):
                lost.append("%s for %s (250 before the cut)" % (s.id, r))
    # 2. every acknowledged remote copy is in the queue
    queued = b""
    for root, _, files in os.walk(os.path.join(after, "queue")):
        for n in files:
            p = os.path.join(root, n)
            if os.path.isfile(p) and not os.path.islink(p):   # not the control socket
                with open(p, "rb") as f:
                    queued += f.read() + b"\0"
    for s in acked:
        if FWD in s.rcpts and ("X-Crash-Id: %s\r\n" % s.id).encode() not in queued \
                and ("X-Crash-Id: %s\n" % s.id).encode() not in queued:
            lost.append("%s for %s: not in the queue (250 before the cut)" % (s.id, FWD))
    # 3. every acknowledged APPEND and COPY is in its folder, whole
    base = maildir_path(inst, ALICE)
    folders = {f: folder_files(os.path.join(base, "." + f)) for f in ("Work", "Keep")}
    for mid, folder, data in imap_acked:
        want = data.replace(b"\r\n", b"\n")
        if not any(v == want or v == data for v in folders[folder].values()):
            partial = [k for k, v in folders[folder].items()
                       if ("X-Crash-Id: %s" % mid).encode() in v]
            lost.append("%s in %s (tagged OK before the cut)%s" % (
                mid, folder, ": only a partial copy %s" % partial if partial else ""))
    report = "seed %d, %s, %s; %d SMTP and %d IMAP acknowledgements%s" % (
        seed, cut, stats, len(acked), len(imap_acked),
        "; IMAP client: " + imap.error if imap.error else "")
    assert imap_acked, "no IMAP acknowledgement before the cut (%s)" % report
    assert not lost, "lost at the power cut (%s):\n%s" % (report, "\n".join(lost))
    assert not problems, "damaged files after the power cut (%s):\n%s" % (
        report, "\n".join(problems))

    # 4. a new petrel serves what is left
    srv2 = server.start(inst, ("imap",), ("workers=1",), timeout=60)
    try:
        c = imaplib.IMAP4("127.0.0.1", srv2.ports["imap"], timeout=30)
        c.login(ALICE, PASSWORD)
        typ, data = c.select("INBOX", readonly=True)
        assert typ == "OK", data
        typ, data = c.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (X-Crash-Id)])") \
            if int(data[0]) else ("OK", [])
        assert typ == "OK", data
        seen = set(re.findall(rb"X-Crash-Id: (\S+)", b"".join(
            x[1] for x in data if isinstance(x, tuple))))
        want = {s.id.encode() for s in acked if ALICE in s.rcpts}
        assert want <= seen, "not served after the power cut: %s (%s)" % (
            sorted(want - seen), report)
        typ, data = c.status("Work", "(MESSAGES)")
        assert typ == "OK", data
        n = int(re.search(rb"MESSAGES (\d+)", data[0]).group(1))
        assert n >= sum(1 for _, f, _ in imap_acked if f == "Work"), (data, report)
        c.logout()
    finally:
        srv2.stop()
