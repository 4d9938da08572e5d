"""A real local DNS server for the tests: Unbound (Debian's `unbound`
package) on a free loopback port, answering from local-data records, which
petrel reaches through `dns_resolver = 127.0.0.1:PORT` (libunbound forwards
every query there).

    dns = LocalDNS(tmp_path, ["dest.mxtest. 300 IN MX 10 mx1.dest.mxtest.", ...],
                   servfail=["broken.mxtest."], slow=["slow.mxtest."])
    dns.resolver        # "127.0.0.1:PORT" for dns_resolver
    dns.stop()

Every owner's zone is made a static local zone, so a name not listed is
NXDOMAIN. Zones in `servfail` are stubs pointing at a closed port (SERVFAIL
at once); zones in `slow` at a UDP socket that never answers (Unbound
retries until its own timeouts, several seconds). The test TLD is `.mxtest`:
Unbound and libunbound keep `.test` (RFC 6761) to themselves.
"""

import os
import random
import shutil
import socket
import struct
import subprocess
import time

from harness import procs
from harness.instance import TIMEOUT_SCALE
from harness.ports import free_ports

UNBOUND = shutil.which("unbound") or "/usr/sbin/unbound"


def query(port, name, qtype=1, timeout=1.0):
    """One UDP query to 127.0.0.1:port; the rcode, or None without answer."""
    qid = random.randint(0, 0xffff)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\x00" + struct.pack(">HH", qtype, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(q, ("127.0.0.1", port))
        try:
            data = s.recv(4096)
        except socket.timeout:
            return None
    if len(data) < 12 or struct.unpack(">H", data[:2])[0] != qid:
        return None
    return data[3] & 0x0f


class LocalDNS:
    def __init__(self, workdir, records, servfail=(), slow=(), log_queries=False):
        self.dir = os.path.join(str(workdir), "dns")
        os.makedirs(self.dir, exist_ok=True)
        self.blackhole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.blackhole.bind(("127.0.0.1", 0))
        dead = free_ports(1)[0]
        zones = set()
        for r in records:
            owner = r.split()[0].rstrip(".").split(".")
            zones.add(".".join(owner[-2:]) + ".")
        lines = ["server:",
                 "    interface: 127.0.0.1", "    port: %d", "    do-daemonize: no",
                 "    use-syslog: no", '    logfile: ""', '    username: ""', '    chroot: ""',
                 '    directory: "%s"' % self.dir, '    pidfile: ""', "    do-ip6: no",
                 "    access-control: 127.0.0.0/8 allow", '    module-config: "iterator"',
                 "    verbosity: 1", "    do-not-query-localhost: no"]
        if log_queries:
            # "info: 127.0.0.1 NAME. A IN" per query: what was asked
            lines.append("    log-queries: yes")
        for z in sorted(zones):
            lines.append('    local-zone: "%s" static' % z)
        for r in records:
            # a TXT record's own quotes go inside single ones
            lines.append(("    local-data: '%s'" if '"' in r else '    local-data: "%s"') % r)
        stubs = [(z, "127.0.0.1@%d" % dead) for z in servfail] + \
                [(z, "127.0.0.1@%d" % self.blackhole.getsockname()[1]) for z in slow]
        for z, _ in stubs:
            lines.append('    local-zone: "%s" transparent' % z)
        for z, addr in stubs:
            lines += ["stub-zone:", '    name: "%s"' % z, "    stub-addr: %s" % addr]
        lines += ["remote-control:", "    control-enable: no"]
        self.proc = None
        for _ in range(4):
            self.port = free_ports(1)[0]
            conf = os.path.join(self.dir, "unbound.conf")
            with open(conf, "w") as f:
                f.write("\n".join(lines).replace("port: %d", "port: %d" % self.port) + "\n")
            self.log = open(os.path.join(self.dir, "unbound.log"), "w")
            self.proc = subprocess.Popen([UNBOUND, "-d", "-c", conf], stdout=self.log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + 10 * TIMEOUT_SCALE
            while time.monotonic() < deadline and self.proc.poll() is None:
                if query(self.port, "ready.invalid", timeout=0.3) is not None:
                    return
                time.sleep(0.05)
            self._end()
        self.blackhole.close()
        raise AssertionError("unbound did not answer on 127.0.0.1:%d:\n%s"
                             % (self.port, self.read_log()))

    @property
    def resolver(self):
        return "127.0.0.1:%d" % self.port

    def read_log(self):
        try:
            with open(os.path.join(self.dir, "unbound.log")) as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        self._end()
        self.blackhole.close()

    def _end(self):
        procs.terminate(self.proc)
        self.log.close()


NSD = shutil.which("nsd") or "/usr/sbin/nsd"


class Nsd:
    """Debian's nsd serving one zone (its zone-file text) on 127.0.0.1:port, a
    free port, with its own configuration (never the system service); it
    answers only for that zone (REFUSED elsewhere). Runs as root.

        ns = Nsd(tmp_path, "example.mxtest", zone_text)
        ns.resolver     # "127.0.0.1:PORT" for dns_resolver
        ns.stop()
    """

    def __init__(self, workdir, zone, text, subdir="nsd"):
        self.dir = os.path.join(str(workdir), subdir)
        os.makedirs(self.dir, exist_ok=True)
        with open(os.path.join(self.dir, "z.zone"), "w") as f:
            f.write(text)
        self.proc = None
        for _ in range(4):
            self.port = free_ports(1)[0]
            conf = os.path.join(self.dir, "nsd.conf")
            with open(conf, "w") as f:
                f.write(NSD_CONF.format(dir=self.dir, port=self.port, zone=zone))
            self.proc = subprocess.Popen([NSD, "-d", "-c", conf],
                                         stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 10 * TIMEOUT_SCALE
            while time.monotonic() < deadline and self.proc.poll() is None:
                if query(self.port, zone, qtype=6, timeout=0.2) == 0:
                    self.resolver = "127.0.0.1:%d" % self.port
                    return
                time.sleep(0.05)
            self.stop()
        log = os.path.join(self.dir, "nsd.log")
        raise RuntimeError("nsd did not start: %s" % (open(log).read() if os.path.exists(log) else "?"))

    def stop(self):
        procs.terminate(self.proc)


NSD_CONF = """server:
	ip-address: 127.0.0.1
	port: {port}
	do-ip6: no
	username: ""
	chroot: ""
	zonesdir: "{dir}"
	pidfile: "{dir}/nsd.pid"
	zonelistfile: "{dir}/zone.list"
	xfrdfile: "{dir}/xfrd.state"
	xfrdir: "{dir}"
	logfile: "{dir}/nsd.log"
	database: ""
	server-count: 1
	verbosity: 1
remote-control:
	control-enable: no
zone:
	name: {zone}
	zonefile: z.zone
"""
