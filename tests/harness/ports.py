"""Free ports and local addresses for test servers."""

import random
import re
import socket
import subprocess


def free_port(host="127.0.0.1"):
    """A port free on host right now (the kernel's choice)."""
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def free_ports(n, host="127.0.0.1"):
    """n distinct free ports on host, or None if the kernel repeated one."""
    ports = [free_port(host) for _ in range(n)]
    return ports if len(set(ports)) == n else None


def stable_port():
    """A free 127.0.0.1 port under net.ipv4.ip_local_port_range: outgoing
    connections never get it, so it stays free while a server is down."""
    low = 32768
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(max(1025, low - 12000), max(2048, low - 1000))
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise AssertionError("no free port below %d" % low)


def _host_addresses():
    """The host's addresses, those on the loopback interface (other than
    127.0.0.0/8 and ::1, e.g. the ones scripts/test.sh adds in CI) first:
    a test that needs a non-loopback address then listens where nothing
    outside the machine can reach."""
    try:
        out = subprocess.run(["ip", "-o", "addr", "show"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    on_lo, others = [], []
    for line in out.splitlines():
        m = re.match(r"^\d+:\s+(\S+)\s+inet6?\s+([0-9A-Fa-f.:]+)/", line)
        if m:
            (on_lo if m.group(1) == "lo" else others).append(m.group(2))
    if on_lo or others:
        return on_lo + others
    try:
        return subprocess.run(["hostname", "-I"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, timeout=5).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return []


def _bindable(family, addr):
    try:
        s = socket.socket(family)
        s.bind((addr, 0))
        s.close()
        return True
    except OSError:
        return False


def nonloopback_ipv6():
    """A local global/ULA IPv6 address (not ::1, not link-local), or None."""
    for a in _host_addresses():
        if ":" in a and a != "::1" and not a.lower().startswith("fe80"):
            if _bindable(socket.AF_INET6, a):
                return a
    return None


def has_ipv6_loopback():
    return _bindable(socket.AF_INET6, "::1")


def nonloopback_ipv4():
    """A local IPv4 address outside 127.0.0.0/8 that we can listen on, or None."""
    for a in _host_addresses():
        if re.match(r"^\d+\.\d+\.\d+\.\d+$", a) and not a.startswith("127."):
            if _bindable(socket.AF_INET, a):
                return a
    return None


def shared_free_ports(n, hosts, attempts=50):
    """n distinct ports, each free on every address of hosts right now (the
    backends of a cluster share one backend_ports); AssertionError if none
    are found."""
    found = []
    for _ in range(attempts):
        if len(found) == n:
            break
        port = free_port(hosts[0])
        if port in found:
            continue
        for h in hosts[1:]:
            s = socket.socket()
            try:
                s.bind((h, port))
            except OSError:
                break
            finally:
                s.close()
        else:
            found.append(port)
    if len(found) < n:
        raise AssertionError("no %d ports free on all of %s" % (n, ", ".join(hosts)))
    return found
