"""durafs: a FUSE file system that forgets what was never synced, to
simulate a power loss in user space (no device-mapper here).

It keeps every file and directory in memory, twice: the state a program sees
(volatile) and the state that would survive a power loss (durable). Only a
sync moves data from one to the other, and only the narrow thing it syncs:
  - fsync/fdatasync of a file makes that file's contents durable;
  - fsync of a directory makes that directory's entries durable (which
    names exist and the files they point to);
  - a rename between two directories is one change, as in every journaling
    file system: it becomes durable in both when either is fsync'd;
nothing else does: not close, not the passing of time, not another file's
sync. That is stricter than ext4 or XFS (whose journal commits carry every
earlier metadata change along), so a program that is safe here is safe
there, and every missing sync shows.

A control socket (a Unix socket given with --control) takes one-line
commands, each answered with one line:
  sync        make everything durable (the state set up before a test);
  cut         the power fails now: the durable state is copied aside, and
              every later operation is irrelevant to it;
  dump DIR    write the state saved by `cut` under DIR (files, directories,
              symlinks, modes, owners, mtimes);
  stats       counts of file syncs, directory syncs and operations.
Every file system operation and every command hold one lock, so `cut` is an
instant between operations: whatever a client saw acknowledged before it
sent `cut` was acknowledged after the syncs the server made for it.

Usage: durafs.py MOUNTPOINT --control SOCKET   (stays in the foreground;
unmount with `umount`). Built on llfuse (Debian's python3-llfuse).
"""

import errno
import os
import socket
import stat
import sys
import threading
import time

import llfuse

FUSEError = llfuse.FUSEError


class Node:
    def __init__(self, ino, kind, mode, uid, gid, target=None):
        self.ino = ino
        self.kind = kind            # "f", "d" or "l"
        self.mode = mode & 0o7777
        self.uid, self.gid = uid, gid
        now = time.time_ns()
        self.atime = self.mtime = self.ctime = now
        self.nlink = 0
        self.data = bytearray()     # files: what readers see
        self.dur_data = bytearray() # files: what a power loss leaves
        self.dirty = []             # files: (offset, length) written since the last sync
        self.entries = {}           # directories: name (bytes) -> Node
        self.dur_entries = {}
        self.parent = None          # directories: for ".."
        self.target = target        # symlinks (durable with the inode)

    def type_bits(self):
        return {"f": stat.S_IFREG, "d": stat.S_IFDIR, "l": stat.S_IFLNK}[self.kind]


class DuraFS(llfuse.Operations):
    def __init__(self):
        super().__init__()
        self.nodes = {}
        self.next_ino = llfuse.ROOT_INODE
        self.root = self.new("d", 0o755, 0, 0)
        self.root.nlink = 2
        self.root.parent = self.root
        self.saved = None
        self.moves = []             # renames across directories not yet durable
        self.counts = {"fsync": 0, "fsyncdir": 0, "ops": 0}

    def new(self, kind, mode, uid, gid, target=None):
        n = Node(self.next_ino, kind, mode, uid, gid, target)
        self.nodes[n.ino] = n
        self.next_ino += 1
        return n

    def node(self, ino):
        n = self.nodes.get(ino)
        if n is None:
            raise FUSEError(errno.ENOENT)
        return n

    def attrs(self, n):
        a = llfuse.EntryAttributes()
        a.st_ino = n.ino
        a.generation = 0
        a.entry_timeout = 0
        a.attr_timeout = 0
        a.st_mode = n.type_bits() | n.mode
        a.st_nlink = max(n.nlink, 1)
        a.st_uid, a.st_gid = n.uid, n.gid
        a.st_rdev = 0
        a.st_size = len(n.data) if n.kind == "f" else (
            len(n.target) if n.kind == "l" else 4096)
        a.st_blksize = 4096
        a.st_blocks = (a.st_size + 511) // 512
        a.st_atime_ns, a.st_mtime_ns, a.st_ctime_ns = n.atime, n.mtime, n.ctime
        return a

    def dir(self, ino):
        d = self.node(ino)
        if d.kind != "d":
            raise FUSEError(errno.ENOTDIR)
        return d

    def add(self, d, name, n):
        if name in d.entries:
            raise FUSEError(errno.EEXIST)
        d.entries[name] = n
        n.nlink += 2 if n.kind == "d" else 1
        if n.kind == "d":
            d.nlink += 1
            n.parent = d
        d.mtime = d.ctime = time.time_ns()
        self.counts["ops"] += 1
        return self.attrs(n)

    # --- lookups and attributes
    def lookup(self, parent_inode, name, ctx):
        d = self.dir(parent_inode)
        if name == b".":
            return self.attrs(d)
        if name == b"..":
            return self.attrs(d.parent)
        n = d.entries.get(name)
        if n is None:
            raise FUSEError(errno.ENOENT)
        return self.attrs(n)

    def getattr(self, inode, ctx):
        return self.attrs(self.node(inode))

    def setattr(self, inode, attr, fields, fh, ctx):
        n = self.node(inode)
        now = time.time_ns()
        if fields.update_size:
            size = attr.st_size
            if size < len(n.data):
                del n.data[size:]
            else:
                n.data.extend(b"\0" * (size - len(n.data)))
            n.mtime = now
        if fields.update_mode:
            n.mode = attr.st_mode & 0o7777
        if fields.update_uid:
            n.uid = attr.st_uid
        if fields.update_gid:
            n.gid = attr.st_gid
        if fields.update_atime:
            n.atime = attr.st_atime_ns
        if fields.update_mtime:
            n.mtime = attr.st_mtime_ns
        n.ctime = now
        return self.attrs(n)

    def access(self, inode, mode, ctx):
        return True

    def statfs(self, ctx):
        st = llfuse.StatvfsData()
        st.f_bsize = st.f_frsize = 4096
        st.f_blocks = st.f_bfree = st.f_bavail = 1 << 20
        st.f_files = st.f_ffree = st.f_favail = 1 << 20
        st.f_namemax = 255
        return st

    def forget(self, inode_list):
        pass

    # --- directories
    def mkdir(self, parent_inode, name, mode, ctx):
        d = self.dir(parent_inode)
        return self.add(d, name, self.new("d", mode, ctx.uid, ctx.gid))

    def rmdir(self, parent_inode, name, ctx):
        d = self.dir(parent_inode)
        n = d.entries.get(name)
        if n is None:
            raise FUSEError(errno.ENOENT)
        if n.kind != "d":
            raise FUSEError(errno.ENOTDIR)
        if n.entries:
            raise FUSEError(errno.ENOTEMPTY)
        del d.entries[name]
        d.nlink -= 1
        n.nlink = 0
        d.mtime = d.ctime = time.time_ns()

    def opendir(self, inode, ctx):
        self.dir(inode)
        return inode

    def readdir(self, fh, off):
        d = self.dir(fh)
        names = sorted(d.entries)
        for i, name in enumerate(names[off:], off + 1):
            yield name, self.attrs(d.entries[name]), i

    def releasedir(self, fh):
        pass

    def fsyncdir(self, fh, datasync):
        d = self.dir(fh)
        d.dur_entries = dict(d.entries)
        keep = []
        for od, oname, nd, nname, n in self.moves:
            if d is not od and d is not nd:
                keep.append((od, oname, nd, nname, n))
                continue
            if od.dur_entries.get(oname) is n:
                del od.dur_entries[oname]
            nd.dur_entries[nname] = n
        self.moves = keep
        self.counts["fsyncdir"] += 1

    # --- files
    def create(self, parent_inode, name, mode, flags, ctx):
        d = self.dir(parent_inode)
        n = d.entries.get(name)
        if n is not None:
            if flags & os.O_EXCL:
                raise FUSEError(errno.EEXIST)
            if flags & os.O_TRUNC:
                del n.data[:]
            return n.ino, self.attrs(n)
        n = self.new("f", mode, ctx.uid, ctx.gid)
        return n.ino, self.add(d, name, n)

    def mknod(self, parent_inode, name, mode, rdev, ctx):
        if not stat.S_ISREG(mode):
            raise FUSEError(errno.EPERM)
        d = self.dir(parent_inode)
        return self.add(d, name, self.new("f", mode, ctx.uid, ctx.gid))

    def open(self, inode, flags, ctx):
        n = self.node(inode)
        if n.kind == "d":
            raise FUSEError(errno.EISDIR)
        if flags & os.O_TRUNC:
            del n.data[:]
        return inode

    def read(self, fh, off, size):
        n = self.node(fh)
        return bytes(n.data[off:off + size])

    def write(self, fh, off, buf):
        n = self.node(fh)
        if off > len(n.data):
            n.data.extend(b"\0" * (off - len(n.data)))
        n.data[off:off + len(buf)] = buf
        n.dirty.append((off, len(buf)))
        n.mtime = n.ctime = time.time_ns()
        self.counts["ops"] += 1
        return len(buf)

    def fsync(self, fh, datasync):
        sync_data(self.node(fh))
        self.counts["fsync"] += 1

    def flush(self, fh):
        pass

    def release(self, fh):
        pass

    # --- names
    def unlink(self, parent_inode, name, ctx):
        d = self.dir(parent_inode)
        n = d.entries.get(name)
        if n is None:
            raise FUSEError(errno.ENOENT)
        if n.kind == "d":
            raise FUSEError(errno.EISDIR)
        del d.entries[name]
        n.nlink -= 1
        n.ctime = d.mtime = d.ctime = time.time_ns()
        self.counts["ops"] += 1

    def link(self, inode, new_parent_inode, new_name, ctx):
        n = self.node(inode)
        if n.kind == "d":
            raise FUSEError(errno.EPERM)
        n.ctime = time.time_ns()
        return self.add(self.dir(new_parent_inode), new_name, n)

    def symlink(self, parent_inode, name, target, ctx):
        d = self.dir(parent_inode)
        return self.add(d, name, self.new("l", 0o777, ctx.uid, ctx.gid, target=target))

    def readlink(self, inode, ctx):
        n = self.node(inode)
        if n.kind != "l":
            raise FUSEError(errno.EINVAL)
        return n.target

    def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, ctx):
        od, nd = self.dir(parent_inode_old), self.dir(parent_inode_new)
        n = od.entries.get(name_old)
        if n is None:
            raise FUSEError(errno.ENOENT)
        victim = nd.entries.get(name_new)
        if victim is n:
            return
        if victim is not None:
            if victim.kind == "d":
                if n.kind != "d":
                    raise FUSEError(errno.EISDIR)
                if victim.entries:
                    raise FUSEError(errno.ENOTEMPTY)
                nd.nlink -= 1
            elif n.kind == "d":
                raise FUSEError(errno.ENOTDIR)
            victim.nlink -= 1
        del od.entries[name_old]
        nd.entries[name_new] = n
        if od is not nd:
            self.moves.append((od, name_old, nd, name_new, n))
        if n.kind == "d" and od is not nd:
            od.nlink -= 1
            nd.nlink += 1
            n.parent = nd
        now = time.time_ns()
        od.mtime = od.ctime = nd.mtime = nd.ctime = n.ctime = now
        self.counts["ops"] += 1

    # --- control (called with llfuse.lock held)
    def command(self, line):
        words = line.split(None, 1)
        if not words:
            return "ERR empty"
        if words[0] == "sync":
            seen, stack = set(), [self.root]
            while stack:
                x = stack.pop()
                if id(x) in seen:
                    continue
                seen.add(id(x))
                sync_data(x)
                x.dur_entries = dict(x.entries)
                stack.extend(x.entries.values())
            self.moves = []
            return "OK"
        if words[0] == "cut":
            self.saved = self.snapshot()
            return "OK %d" % len(self.saved)
        if words[0] == "stats":
            return "OK fsync=%(fsync)d fsyncdir=%(fsyncdir)d ops=%(ops)d" % self.counts
        if words[0] == "dump" and len(words) == 2:
            if self.saved is None:
                return "ERR no cut yet"
            write_tree(self.saved, words[1])
            return "OK"
        return "ERR unknown command"

    def snapshot(self):
        """The durable tree as a list of (path, kind, mode, uid, gid, mtime,
        contents or target), parents first."""
        out, seen = [], set()

        def walk(d, prefix):
            for name in sorted(d.dur_entries):
                n = d.dur_entries[name]
                p = prefix + b"/" + name
                payload = bytes(n.dur_data) if n.kind == "f" else n.target
                out.append((p, n.kind, n.mode, n.uid, n.gid, n.mtime, payload))
                if n.kind == "d" and id(n) not in seen:
                    seen.add(id(n))
                    walk(n, p)
        walk(self.root, b"")
        return out


def sync_data(n):
    """A file's contents become durable: only what changed since the last
    sync is copied (a disk image syncs often and changes little)."""
    if len(n.dur_data) != len(n.data) or len(n.dirty) > 4096:
        n.dur_data = bytearray(n.data)
    else:
        for off, length in n.dirty:
            n.dur_data[off:off + length] = n.data[off:off + length]
    n.dirty = []


def write_tree(entries, dest):
    dest = os.fsencode(dest)
    os.makedirs(dest, exist_ok=True)
    dirs = []
    for path, kind, mode, uid, gid, mtime, payload in entries:
        p = dest + path
        if kind == "d":
            os.makedirs(p, exist_ok=True)
            dirs.append((p, mode, uid, gid, mtime))
            continue
        if kind == "l":
            os.symlink(payload, p)
            os.lchown(p, uid, gid)
            continue
        with open(p, "wb") as f:
            f.write(payload)
        os.chown(p, uid, gid)
        os.chmod(p, mode)
        os.utime(p, ns=(mtime, mtime))
    for p, mode, uid, gid, mtime in reversed(dirs):
        os.chown(p, uid, gid)
        os.chmod(p, mode)
        os.utime(p, ns=(mtime, mtime))


def serve_control(fs, path):
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.path.exists(path):
        os.unlink(path)
    srv.bind(path)
    srv.listen(4)

    def loop():
        while True:
            conn, _ = srv.accept()
            with conn, conn.makefile("rw") as f:
                for line in f:
                    try:
                        with llfuse.lock:
                            reply = fs.command(line.strip())
                    except Exception as e:  # a reply, not a dead control thread
                        reply = "ERR %r" % e
                    f.write(reply + "\n")
                    f.flush()
    threading.Thread(target=loop, daemon=True).start()


def main(argv):
    if len(argv) != 4 or argv[2] != "--control":
        sys.stderr.write("usage: durafs.py MOUNTPOINT --control SOCKET\n")
        return 2
    mountpoint, control = argv[1], argv[3]
    fs = DuraFS()
    opts = set(llfuse.default_options)
    opts.discard("default_permissions")
    opts |= {"fsname=durafs", "allow_other", "default_permissions"}
    llfuse.init(fs, mountpoint, opts)
    serve_control(fs, control)
    try:
        llfuse.main(workers=1)
    finally:
        llfuse.close(unmount=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
