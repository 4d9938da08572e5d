"""The server's end of a test's connection, read without a clock.

server_option(master, sock, level, name) finds the socket that a process of
the tree under `master` (the pid of `petrel serve`) holds for the other end of
the client socket `sock`, takes a copy of it with pidfd_getfd(2), and returns
getsockopt(level, name) on that copy. Used to check, for example, that a
session's socket has TCP_NODELAY set, which is what keeps a reply from
waiting for the client's delayed ACK: a property of the socket, not of how
fast this machine is today.

Needs Linux >= 5.6 and permission to ptrace the server (root, or the server
being a descendant of the test under Yama's ptrace_scope 1)."""

import ctypes
import os
import socket
import time

from harness import procs
from harness.instance import TIMEOUT_SCALE

SYS_pidfd_getfd = 438   # the same number on every Linux architecture

_libc = ctypes.CDLL(None, use_errno=True)


def _hexaddr(host, port):
    """(host, port) as /proc/net/tcp{,6} writes a local or remote address."""
    if ":" in host:
        raw = socket.inet_pton(socket.AF_INET6, host)
        # four 32-bit words, each in host (little-endian) byte order
        words = "".join("%08X" % int.from_bytes(raw[i:i + 4], "little")
                        for i in range(0, 16, 4))
        return "%s:%04X" % (words, port)
    raw = socket.inet_aton(host)
    return "%08X:%04X" % (int.from_bytes(raw, "little"), port)


def _inode(local, remote):
    """The inode of the TCP socket whose local end is `local` and remote end
    `remote` (each (host, port)), or None."""
    want = (_hexaddr(*local[:2]), _hexaddr(*remote[:2]))
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    # inode 0: no socket holds it any more (TIME_WAIT)
                    if (fields[1], fields[2]) == want and int(fields[9]):
                        return int(fields[9])
        except OSError:
            continue
    return None


def _holder(master, inode):
    """(pid, fd) of a process under master that holds socket `inode`."""
    target = {"socket:[%d]" % inode}
    for pid in procs.tree(master)[0]:
        fds = procs.fds_linking(pid, target)
        if fds:
            return pid, fds[0]
    return None


def server_socket(master, sock, wait=10 * TIMEOUT_SCALE):
    """A copy (a new socket object of ours) of the server's end of `sock`.
    A connection the server has not accepted yet is waited for, up to
    `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        inode = _inode(sock.getpeername(), sock.getsockname())
        found = inode and _holder(master, inode)
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert inode, "no server socket for %r" % (sock.getsockname(),)
    assert found is not None, "no process under %d holds socket %d" % (master, inode)
    pid, fd = found
    pidfd = os.pidfd_open(pid)
    try:
        copy = _libc.syscall(SYS_pidfd_getfd, pidfd, fd, 0)
        if copy < 0:
            err = ctypes.get_errno()
            raise OSError(err, "pidfd_getfd(%d, %d): %s" % (pid, fd, os.strerror(err)))
    finally:
        os.close(pidfd)
    return socket.socket(fileno=copy)


def server_option(master, sock, level, name):
    """getsockopt(level, name) on the server's end of the client socket sock
    (an ssl.SSLSocket works too: it is a socket.socket)."""
    theirs = server_socket(master, sock)
    try:
        return theirs.getsockopt(level, name)
    finally:
        theirs.close()    # our copy only; the server's descriptor stays open
