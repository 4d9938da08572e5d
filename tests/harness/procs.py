"""Process lookups in /proc: children of a master, worker pids, memory and
CPU of a process tree."""

import os
import subprocess


def stat(pid):
    """The fields of /proc/PID/stat after the command name (fields[0] is the
    state, [1] the ppid, [2] the process group), or None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def live_pids(match):
    """Sorted live (not zombie) pids whose (ppid, pgrp) satisfy match."""
    out = []
    for pid in pids():
        st = stat(pid)
        if st is not None and st[0] not in ("Z", "X") and match(int(st[1]), int(st[2])):
            out.append(pid)
    return sorted(out)


def children(pid):
    """Live children of pid (a master's workers and queue manager)."""
    return live_pids(lambda ppid, pgrp: ppid == pid)


def worker_pids(master):
    """The pids of the children of `petrel serve` (zombies included)."""
    out = []
    for pid in pids():
        st = stat(pid)
        if st is not None and int(st[1]) == master:
            out.append(pid)
    return out


def alive(pid):
    st = stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def gone(pid):
    """True if pid has exited (a zombie child of ours is reaped here)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except (ChildProcessError, OSError):
        pass
    return not alive(pid)


def _status_kb(pid, key):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kb(pid):
    """VmRSS of pid in kB (0 if gone)."""
    return _status_kb(pid, "VmRSS:")


def role(pid):
    """'queue' (the queue manager), 'worker' (a protocol worker), 'auth' (the
    auth/directory process), or None (not a petrel child, or a freshly
    forked one that has not exec'd yet): read from its environment."""
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            env = f.read().split(b"\0")
    except OSError:
        return None
    if b"PETREL_ROLE=queue" in env:
        return "queue"
    if b"PETREL_ROLE=auth" in env:
        return "auth"
    if any(e.startswith(b"PETREL_WORKER_FDS=") for e in env):
        return "worker"
    return None


def protocol_workers(master):
    """The live protocol workers of `petrel serve` (not the queue manager
    or the auth process)."""
    return [p for p in children(master) if role(p) == "worker"]


def workers_rss_kb(master):
    """Resident memory of the protocol workers of `petrel serve`, in kB;
    AssertionError when there is none (a figure of 0 would prove nothing)."""
    found = protocol_workers(master)
    assert found, "no protocol worker under pid %d" % master
    return sum(rss_kb(p) for p in found)


def fds_linking(pid, targets):
    """The descriptors of pid whose /proc link is one of targets (say
    "socket:[INODE]"), in no order; [] if pid is gone."""
    try:
        fds = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return []
    out = []
    for fd in fds:
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)) in targets:
                out.append(int(fd))
        except OSError:
            continue
    return out


def proc_table():
    """{pid: (ppid, cpu_ticks incl. reaped children)}"""
    out = {}
    for pid in pids():
        st = stat(pid)
        if st is not None:
            out[pid] = (int(st[1]), int(st[11]) + int(st[12]) + int(st[13]) + int(st[14]))
    return out


def tree(root, table=None):
    """(root and all its descendants, the proc table used)."""
    table = table if table is not None else proc_table()
    kids = {}
    for pid, (ppid, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        if p in table:
            out.append(p)
            todo.extend(kids.get(p, ()))
    return out, table


def tree_cpu(root):
    """CPU seconds of a process tree (reaped children included)."""
    pids_, table = tree(root)
    return sum(table[p][1] for p in pids_) / os.sysconf("SC_CLK_TCK")


def tree_mem(root):
    """(summed VmRSS KiB, summed Pss KiB, number of processes) of a tree."""
    pids_, _ = tree(root)
    rss = pss = 0
    n = 0
    for p in pids_:
        try:
            with open("/proc/%d/status" % p) as f:
                for l in f:
                    if l.startswith("VmRSS:"):
                        rss += int(l.split()[1])
                        break
            with open("/proc/%d/smaps_rollup" % p) as f:
                for l in f:
                    if l.startswith("Pss:"):
                        pss += int(l.split()[1])
                        break
            n += 1
        except OSError:
            pass
    return rss, pss, n


def terminate(proc, timeout=10):
    """SIGTERM a subprocess.Popen we started; SIGKILL it after `timeout`
    seconds; reap it either way."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)
